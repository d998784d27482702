//! Multicast transport: simulation of whole sessions, and decoder robustness.

mod decode_props;
mod scenarios;
pub mod sim;
