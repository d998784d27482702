//! Sans-IO protocol state machines: bytes and time in, decisions and bytes out. No sockets, no clock.

pub mod dhcp;
pub mod dhcp_authoritative;
pub mod mac;
pub mod mcast;
pub mod wol;
