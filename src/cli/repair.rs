//! `roomcast repair <room file> <hostname>`: re-image one PC by day (`campaign::repair`): wake it
//! (or PXE-boot it by hand), re-apply the room's current image by delta over HTTP, join it (h),
//! record the intervention. Exit 0 when g and h succeeded, 1 when one failed, 2 for usage or I/O.

use super::campaign_run::{RemoteArgs, beside};
use super::exit::{self, CliError};
use crate::campaign::imaging::PxeBoot;
use crate::campaign::repair::{self, RepairOptions, RepairProgress};
use crate::clock::{Clock, SystemClock};
use crate::model::Date;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `roomcast repair`.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The room file, e.g. rooms/0330107X/B204.yaml.
    pub room: PathBuf,
    /// The PC to re-image, by its hostname.
    pub hostname: String,
    /// The journal and inventory database (where the room's current image is recorded).
    #[arg(long, env = "ROOMCAST_DB", default_value = "roomcast.db")]
    pub db: PathBuf,
    /// The image store.
    #[arg(long)]
    pub store: PathBuf,
    /// The deploy server's signing key (not needed: a repair captures and signs nothing).
    #[arg(long)]
    pub signer_key: Option<PathBuf>,
    /// The image to re-apply (id or prefix); default: the room's current image (the inventory's).
    #[arg(long)]
    pub image: Option<String>,
    /// Boot root served over TFTP/HTTP (iPXE, kernel, initramfs; see `roomcast bootenv`).
    #[arg(long)]
    pub boot_dir: Option<PathBuf>,
    /// The date licences are checked against, YYYY-MM-DD (default: today, UTC).
    #[arg(long, value_parser = super::validate::parse_date)]
    pub today: Option<Date>,
    /// SSH to the PC (h), secrets, the join.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Runs `roomcast repair`.
pub fn run(a: RepairArgs) -> Result<u8, CliError> {
    super::room::init_tracing();
    let clock = SystemClock;
    let work_dir = beside(&a.db, "repairs").join(&a.hostname);
    let mut setup = a.remote.setup(a.room, &a.db);
    setup.dir = work_dir.clone();
    let opts = RepairOptions {
        setup,
        hostname: a.hostname,
        store: a.store,
        signer_key: a.signer_key.unwrap_or_default(),
        image: a.image,
        db: a.db,
        work_dir,
        today: a.today.unwrap_or_else(|| clock.today()),
    };
    let mut prepared = repair::prepare(&opts).map_err(|e| match e {
        repair::RepairError::Db(_) => CliError::UsageOrIo(e.to_string()),
        _ => CliError::Failure(e.to_string()),
    })?;
    prepared.config.boot_dir = a.boot_dir;
    let boot = PxeBoot {
        secure_boot: prepared.secure_boot(),
        ..PxeBoot::default()
    };
    let out = prepared
        .run(Box::new(boot), &clock, &|p| match p {
            RepairProgress::Waking {
                hostname,
                mac,
                image,
            } => println!(
                "{hostname} ({mac}): serving image {} to this PC only; waking it (Wake-on-LAN). \
                 If it does not start within a minute, power it on and PXE-boot it by hand \
                 (the firmware's network boot key, often F12).",
                &image[..image.len().min(12)]
            ),
            RepairProgress::Deployed(Ok(())) => println!("g: image re-applied"),
            RepairProgress::Deployed(Err(e)) => println!("g: failed: {e}"),
            RepairProgress::Joining => println!("h: joining the domain"),
        })
        .map_err(|e| CliError::UsageOrIo(e.to_string()))?;
    if let Some(f) = &out.figures {
        println!(
            "{}: {} chunk(s) rewritten, {} unchanged, {} zeroed ({} bytes written)",
            out.hostname, f.written_chunks, f.unchanged_chunks, f.zeroed_chunks, f.written_bytes
        );
    }
    match &out.join {
        Some(Ok(())) => println!("h: joined"),
        Some(Err(e)) => println!("h: failed: {e}"),
        None => println!("h: not run (g failed)"),
    }
    println!("recorded in the inventory as {}", out.intervention);
    Ok(if out.is_ok() { exit::OK } else { exit::FAILURE })
}
