//! Command line: clap derive, one file per subcommand. This is the only place that prints for humans
//! and decides exit codes (see [`exit`]).

pub mod bootenv;
pub mod campaign;
pub mod campaign_run;
pub mod config;
pub mod console;
pub mod demo;
pub mod deploy;
pub mod doctor;
pub mod doctor_server;
pub mod exit;
pub mod generate;
pub mod image;
pub mod image_prune;
pub mod image_region;
pub mod inventory;
pub mod key;
pub mod lab;
pub mod plan;
pub mod repair;
pub mod room;
pub mod schema;
pub mod serve;
pub mod validate;
pub mod wake;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// roomcast: rebuild a school computer room overnight from declarative YAML.
#[derive(Debug, Parser)]
#[command(name = "roomcast", version, about, long_about = None)]
pub struct Cli {
    /// The configuration file (default /etc/roomcast/roomcast.toml, or $ROOMCAST_CONFIG), before
    /// the subcommand. Precedence: flag > environment > file > built-in default.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand, one module each.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print version and build facts.
    Version,
    /// The main job on built-in defaults: build a virtual room (namespaces, OpenSSH PCs, a Samba
    /// AD DC) and run a whole campaign a-h on it (root; a few minutes).
    Demo(demo::DemoArgs),
    /// Campaigns: start, resume, status, report, sign-off (step e), abort.
    Campaign(campaign::CampaignArgs),
    /// The local inventory and its delivery to GLPI.
    Inventory(inventory::InventoryArgs),
    /// Check catalog, profiles and rooms; print findings (exit 1 on errors).
    Validate(validate::ValidateArgs),
    /// Print the JSON Schema of a file kind (catalog, profile, room).
    Schema(schema::SchemaArgs),
    /// Show what steps a–h will do for a room, offline.
    Plan(plan::PlanArgs),
    /// Disk images: capture, list, show, verify, diff, rm, gc, restore; push/pull a region's repository.
    Image(image::ImageArgs),
    /// Manifest signing keys: generate, trust.
    Key(key::KeyArgs),
    /// Virtual rooms (network namespaces) for tests, benchmarks and trying things by hand.
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// The boot environment PCs PXE-boot into (iPXE, kernel, initramfs).
    #[command(subcommand)]
    Bootenv(bootenv::BootenvCommand),
    /// Run the boot services (proxyDHCP, TFTP, HTTP) of one campaign on the room interface.
    Serve(serve::ServeArgs),
    /// Wake the machines of a room (Wake-on-LAN, staggered) on the room interface.
    Wake(wake::WakeArgs),
    /// Stream an image to a room's PCs by multicast (with HTTP catch-up), then summarise per PC.
    Deploy(deploy::DeployArgs),
    /// Check a room's network before the night: a few seconds of multicast test stream to the PCs
    /// that are up (`doctor --listen SERVER` on each), reporting who receives it.
    Doctor(doctor::DoctorArgs),
    /// Re-image one PC by day: wake it (or PXE-boot it by hand), re-apply the room's current image
    /// (only the chunks that differ), join it (h), record the intervention.
    Repair(repair::RepairArgs),
    /// The web console: live rooms, reports, images, inventory, teachers' sign-off links.
    Console(console::ConsoleArgs),
    /// On a PXE-booted PC: restore the campaign's image from the server onto the disk, then report.
    Agent(roomcast_agent::cli::AgentArgs),
    /// The configuration file: `config show` prints the merged view and where each value comes
    /// from.
    Config(config::ConfigArgs),
    /// Write the man pages and shell completions into a folder (for the Debian package).
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

/// Parses the arguments, runs the command and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The configuration file is read first: its values are the options' defaults
    // (`crate::config`), and a bad file stops every command with its file and line.
    let (path, must_exist) = crate::config::locate(&args);
    let loaded = match crate::config::load(&path, must_exist) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::code(exit::USAGE_OR_IO);
        }
    };
    let parsed = crate::config::apply(Cli::command(), &loaded)
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
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
    let outcome = match cli.command {
        Command::Version => {
            println!("roomcast {}", env!("CARGO_PKG_VERSION"));
            Ok(exit::OK)
        }
        Command::Demo(args) => demo::run(args),
        Command::Campaign(args) => Ok(campaign::run(args)),
        Command::Inventory(args) => Ok(inventory::run(args)),
        Command::Validate(args) => Ok(validate::run(args)),
        Command::Schema(args) => Ok(schema::run(args)),
        Command::Plan(args) => plan::run(args),
        Command::Image(args) => image::run(args),
        Command::Key(args) => key::run(args),
        Command::Lab(cmd) => lab::run(cmd),
        Command::Bootenv(cmd) => bootenv::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::Wake(args) => wake::run(args),
        Command::Deploy(args) => deploy::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Repair(args) => repair::run(args),
        Command::Console(args) => Ok(console::run(args)),
        // The agent's own binary maps its outcome with the same table (`roomcast_agent::cli`).
        Command::Agent(args) => return roomcast_agent::cli::run(args),
        Command::Config(args) => config::run(args, &loaded),
        Command::Generate(args) => generate::run(args),
    };
    exit::finish(outcome)
}
