//! Sans-IO protocol state machines: they take inputs and the current time as arguments and return
//! outputs as plain values. No sockets, no clock, no randomness inside, so tests can drive them
//! deterministically in memory.

pub mod mcast;
