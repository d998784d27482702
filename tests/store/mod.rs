//! Image store: capture, restore, verify, gc, on files and real loop devices, with bad input and crashes.

mod bad_input;
mod cli;
mod crash;
mod fs_aware;
mod loopdev;
pub(crate) mod other_size;
mod roundtrip;
pub(crate) mod util;
