//! roomcast's protocols as sans-IO state machines: bytes and time in, decisions and bytes out.
//!
//! This crate has no tokio, no sockets, no files and no clock among its dependencies: the
//! invariant "the protocols do no I/O" is a fact of its `Cargo.toml`. Drivers (`roomcast-mcast`,
//! the tool's `net` services) feed it sockets and time; the campaign feeds [`procedure`] events.

pub mod contract;
pub mod dhcp;
pub mod dhcp_authoritative;
pub mod hash;
pub mod mac;
pub mod mcast;
pub mod procedure;
pub mod time;
pub mod wol;
