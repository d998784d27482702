//! The YAML model: catalog entries, profiles and rooms, from raw files to a checked [`Region`]
//! with [`Finding`]s that carry file, line and column.
//!
//! Stages: [`load`] reads files (the only I/O here) → [`source`] decodes and parses each one
//! under fixed limits into the serde types of [`catalog`], [`profile`], [`room`] (whose doc
//! comments are the format reference) → [`check`] applies every rule across files and returns a
//! [`Validation`]. [`checked`] is the one way a command gets a room to act on (refused on any
//! error in the files it depends on); [`plan`] turns it into what steps a–h will do.

pub mod catalog;
pub mod check;
pub mod checked;
pub mod date;
pub mod finding;
pub mod load;
pub mod plan;
pub mod profile;
pub mod render;
pub mod room;
pub mod source;

pub use catalog::CatalogEntry;
pub use check::{Catalog, Loaded, Region, Validation, validate};
pub use date::Date;
pub use finding::{Code, Finding, Severity};
pub use profile::Profile;
pub use room::Room;
