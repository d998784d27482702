//! Tokio drivers: they feed sockets and timers into the sans-IO state machines of [`crate::proto`].

pub mod mcast;
