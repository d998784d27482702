//! The server as a Debian service (issue 17): the package, its configuration file, `doctor`.
mod archive;
mod config;
mod deb;
mod doctor;
mod prune;
