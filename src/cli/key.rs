//! `roomcast key generate | trust`: manifest signing keys.

use super::exit::{self, CliError};
use clap::{Args, Subcommand};
use roomcast_store::{DEFAULT_STORE, STORE_ENV, Store, keys};
use std::path::PathBuf;

/// Signing keys for image manifests.
#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Write a new ed25519 key pair: DIR/signer.key (mode 0600) and DIR/signer.pub.
    Generate {
        /// Folder to write the two files into (created if needed).
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a store trust a public key (copies it into the store's trusted-signers/).
    Trust {
        /// Public key file (signer.pub).
        file: PathBuf,
        /// Store folder.
        #[arg(long, env = STORE_ENV, default_value = DEFAULT_STORE)]
        store: PathBuf,
    },
}

/// Runs a `key` subcommand.
pub fn run(args: KeyArgs) -> Result<u8, CliError> {
    match args.command {
        KeyCommand::Generate { out } => match keys::generate_files(&out) {
            Ok((k, p, fp)) => {
                println!("signer key  {} (keep it secret)", k.display());
                println!("public key  {}", p.display());
                println!("fingerprint {fp}");
                Ok(exit::OK)
            }
            Err(e) => Err(CliError::UsageOrIo(format!("error: {e}"))),
        },
        KeyCommand::Trust { file, store } => {
            match Store::open_or_create(&store).and_then(|s| s.trust(&file)) {
                Ok(fp) => {
                    println!("store {} now trusts signer {fp}", store.display());
                    Ok(exit::OK)
                }
                Err(e) => Err(CliError::UsageOrIo(format!("error: {e}"))),
            }
        }
    }
}
