//! Drivers that put the sans-IO protocols of `proto/` on real sockets, on one named interface.

pub mod capture;
pub mod files;
pub mod http;
pub mod proxydhcp;
pub mod ra;
pub mod tftp;
pub mod wol;
