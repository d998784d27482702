//! Drivers that put the sans-IO protocols of `proto/` on real sockets, on one named interface.

pub mod wol;
