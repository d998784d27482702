//! Inventory: the embedded database, native inventory documents, the GLPI REST adapter against a
//! stand-in that enforces GLPI's documented contract, and the outbox delivered by `sync`.

mod cli;
mod contract;
mod native_doc;
mod queue;
pub mod standin;
