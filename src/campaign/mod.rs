//! Running a campaign: the journal that persists the procedure's events, and the step runners that do
//! the work on machines through [`crate::remote::RemoteExec`].
//!
//! The pure engine lives in [`roomcast_proto::procedure`]; this module does the I/O around it.

pub mod checks;
pub mod collect;
pub mod driver;
pub mod fetch;
pub mod imaging;
pub mod install;
pub mod join;
pub mod journal;
pub mod render;
pub mod report;
pub mod run;
pub mod setup;
pub mod ssh_worker;
pub mod unattend;
