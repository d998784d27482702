//! Multicast transport: simulation of whole sessions, and decoder robustness.

mod decode_props;
mod scenarios;
mod sessions;
pub mod sim;
