//! Multicast transport: simulation of whole sessions, and decoder robustness.

mod decode_props;
mod deploy;
mod lab;
mod scenarios;
mod sessions;
pub mod sim;
