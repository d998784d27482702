//! `roomcast plan rooms/<UAI>/<room>.yaml`: what steps a–h will do for a room, offline.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::exit::{self, CliError};
use super::image::bytes;
use super::validate::{human_finding, today_utc};
use crate::model::Date;
use crate::model::checked::{RoomRefused, load_room};
use crate::model::plan::RoomPlan;

/// Output format of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Text, step by step.
    Human,
    /// One JSON document.
    Json,
}

/// Arguments of `roomcast plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The room file, e.g. rooms/0330021U/B204.yaml.
    pub room: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// The date licences are checked against, YYYY-MM-DD (default: today, UTC).
    #[arg(long, value_parser = super::validate::parse_date)]
    pub today: Option<Date>,
}

/// Runs the command: validate the room with its context, refuse on errors in the files the
/// plan depends on, print the plan.
pub fn run(args: PlanArgs) -> Result<u8, CliError> {
    let checked = match load_room(&args.room, args.today.unwrap_or_else(today_utc)) {
        Ok(c) => c,
        Err(e @ (RoomRefused::Load(_) | RoomRefused::NoYaml(_))) => {
            return Err(CliError::UsageOrIo(format!("error: {e}")));
        }
        Err(RoomRefused::NotARoom { path, findings }) => {
            for f in &findings {
                eprint!("{}", human_finding(f));
            }
            return Err(CliError::Failure(format!(
                "error: {path}: not a room that can be planned"
            )));
        }
        Err(RoomRefused::Invalid { findings, .. }) => {
            for f in &findings {
                eprintln!("{}", human_finding(f));
            }
            return Err(CliError::Failure(format!(
                "error: {} error(s) in the files this room depends on; no plan",
                findings.len()
            )));
        }
    };
    let p = checked
        .plan()
        .map_err(|e| CliError::Failure(format!("error: {e}")))?;
    match args.format {
        Format::Human => print!("{}", human(&p)),
        Format::Json => {
            let s = serde_json::to_string_pretty(&p)
                .map_err(|e| CliError::UsageOrIo(format!("error: {e}")))?;
            println!("{s}");
        }
    }
    Ok(exit::OK)
}

/// The plan as text.
pub fn human(p: &RoomPlan) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Plan for room {} of {} {} ({}), profile {} ({}, {}), {} machine(s)",
        p.room,
        p.uai,
        p.school,
        p.file,
        p.profile,
        p.os,
        p.pc_model,
        p.machines.len()
    );
    let _ = writeln!(o, "\na. collect installers and licences");
    for s in &p.software {
        let _ = writeln!(
            o,
            "   {}@{} ({}): {} {} sha256 {}…\n      from {}\n      licence: {}",
            s.id,
            s.version,
            s.name,
            s.installer,
            bytes(s.size),
            &s.sha256[..s.sha256.len().min(12)],
            s.source,
            s.licence
        );
    }
    let _ = writeln!(
        o,
        "   total to fetch: {} ({} bytes)",
        bytes(p.bytes.installers),
        p.bytes.installers
    );
    let _ = writeln!(
        o,
        "\nb. format the master {}: restore base image {}",
        p.master, p.base_image
    );
    let _ = writeln!(
        o,
        "\nc. install software on {} (upload {}, at least {} s at {} Mbit/s)",
        p.master,
        bytes(p.bytes.installers),
        p.bytes.installer_upload_seconds,
        p.network.link_speed_mbps
    );
    for s in &p.software {
        let _ = writeln!(o, "   {}: {}", s.id, s.command);
        let _ = writeln!(
            o,
            "      check: {}{}",
            s.detect,
            if s.reboot { "; then reboot" } else { "" }
        );
    }
    let _ = writeln!(o, "\nd. technical tests on {}", p.master);
    if p.tests.is_empty() {
        let _ = writeln!(o, "   (none declared)");
    }
    for (name, cmd) in &p.tests {
        let _ = writeln!(o, "   {name}: {cmd}");
    }
    let _ = writeln!(o, "\ne. teachers' sign-off");
    match &p.signoff {
        Some(who) => {
            let _ = writeln!(o, "   required, by one of: {}", who.join(", "));
        }
        None => {
            let _ = writeln!(o, "   not required");
        }
    }
    let _ = writeln!(o, "\nf. capture the image of {}", p.master);
    if let Some(g) = &p.generalize {
        let _ = writeln!(o, "   generalise: {g}");
    }
    match p.bytes.image {
        Some(b) => {
            let _ = writeln!(o, "   image size: {}", bytes(b));
        }
        None => {
            let _ = writeln!(
                o,
                "   image size: unknown until captured (the plan does not consult the image store)"
            );
        }
    }
    let _ = writeln!(
        o,
        "\ng. deploy to {} machine(s) on {} ({}), multicast {}",
        p.machines.len(),
        p.network.interface,
        p.network.subnet,
        p.network.multicast_group
    );
    for m in &p.machines {
        let _ = writeln!(
            o,
            "   {:>3}  {:<15}  {}  {}{}",
            m.index,
            m.hostname,
            m.mac,
            m.serial,
            if m.master { "  (master)" } else { "" }
        );
    }
    let _ = writeln!(
        o,
        "\nh. join {} in {} (account {})",
        p.domain.name, p.domain.ou, p.domain.join_account
    );
    let _ = writeln!(
        o,
        "\nthen record every machine in the inventory (GLPI ids when known)"
    );
    o
}
