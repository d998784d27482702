//! roomcast rebuilds school computer rooms overnight: it reads declarative YAML (a qualified software
//! catalog, profiles, rooms) and drives the region's eight-step room procedure (a–h).
//!
//! See `docs/ARCHITECTURE.md` for the code map and the invariants each module keeps.

pub mod bootenv;
pub mod campaign;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod demo;
pub mod inventory;
pub mod model;
pub mod net;
pub mod region;
pub mod remote;
pub mod secrets;
pub mod serve;
