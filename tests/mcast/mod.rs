//! Multicast transport over real sockets: sessions, the lab, the deploy. The simulation of whole
//! sessions and the decoders' robustness are the protocol crate's own tests (`crates/proto/tests/mcast/`).

mod deploy;
mod doctor;
mod lab;
mod network;
mod sessions;
