//! The multicast protocol in memory: whole sessions of up to 30 receivers with loss, reordering,
//! late joins and crashes on a simulated clock ([`sim`], [`scenarios`]), and the decoders fed
//! arbitrary bytes ([`decode_props`]). No socket, no clock: the protocol crate's own tests.

mod decode_props;
mod scenarios;
pub mod sim;
