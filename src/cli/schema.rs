//! `roomcast schema catalog|profile|room`: the JSON Schema of a file kind, generated from the
//! Rust types, for editors (yaml-language-server) and CI.

use clap::{Args, ValueEnum};

use super::exit;
use crate::model::{catalog::CatalogEntry, profile::Profile, room::Room};

/// A file kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// `profiles/catalog/<id>.yaml`
    Catalog,
    /// `profiles/<name>.yaml`
    Profile,
    /// `rooms/<UAI>/<room>.yaml`
    Room,
}

/// Arguments of `roomcast schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file kind.
    #[arg(value_enum)]
    pub kind: Kind,
}

/// The schema of a kind, as a JSON value.
pub fn schema(kind: Kind) -> serde_json::Value {
    let s = match kind {
        Kind::Catalog => schemars::schema_for!(CatalogEntry),
        Kind::Profile => schemars::schema_for!(Profile),
        Kind::Room => schemars::schema_for!(Room),
    };
    s.to_value()
}

/// Runs the command.
pub fn run(args: SchemaArgs) -> u8 {
    match serde_json::to_string_pretty(&schema(args.kind)) {
        Ok(s) => {
            println!("{s}");
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE_OR_IO
        }
    }
}
