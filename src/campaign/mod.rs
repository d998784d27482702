//! Running a campaign: the journal that persists the procedure's events, the driver that turns the
//! engine's actions into work, the step runners that do the work on machines through
//! [`crate::remote::RemoteExec`] (and the imaging backend for b, f and image-mode g), and the
//! overnight run around them (`start`/`resume`, reports, inventory).
//!
//! The pure engine lives in [`roomcast_proto::procedure`]; this module does the I/O around it.
//! See `docs/ARCHITECTURE.md`, "Campaign", for the map of this module.

pub mod driver;
pub mod imaging;
pub mod journal;
pub mod live;
pub mod render;
pub mod repair;
pub mod report;
pub mod run;
pub mod setup;
pub mod steps;
pub mod unattend;
