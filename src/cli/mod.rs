//! Command line: clap derive, one file per subcommand. This is the only place that prints for humans
//! and decides exit codes (see [`exit`]).

pub mod campaign;
pub mod exit;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// roomcast: rebuild a school computer room overnight from declarative YAML.
#[derive(Debug, Parser)]
#[command(name = "roomcast", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand, one module each.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print version and build facts.
    Version,
    /// Follow a campaign: status, report, sign-off (step e), abort.
    Campaign(campaign::CampaignArgs),
}

/// Parses the arguments, runs the command and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::code(exit::OK)
                }
                _ => exit::code(exit::USAGE_OR_IO),
            };
        }
    };
    match cli.command {
        Command::Version => {
            println!("roomcast {}", env!("CARGO_PKG_VERSION"));
            exit::code(exit::OK)
        }
        Command::Campaign(args) => exit::code(campaign::run(args)),
    }
}
