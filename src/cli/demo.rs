//! `roomcast demo`: the main job on built-in defaults (see [`crate::demo`]). Prints each stage and
//! every step and PC of the campaign, the visible note that step e was signed off by the demo, and
//! where the report and the journal are. Ctrl-C (or SIGTERM) removes the virtual room before exiting.

use super::exit::{self, CliError};
use crate::campaign::run::Progress;
use crate::demo::{self, DemoError, DemoOptions, Note};
use clap::Args;
use roomcast_lab::cleanup;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `roomcast demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of PCs in the virtual room (the first is the master).
    #[arg(long, default_value_t = 3)]
    pub pcs: usize,
    /// Disk size of each PC in MiB.
    #[arg(long, default_value_t = 64)]
    pub disk_mib: u64,
    /// Workspace (journal, reports, logs, store, disks); must be empty or absent.
    /// Default: a new folder under /var/tmp.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Wait up to SECS for a person's sign-off of step e (web console link or `roomcast campaign
    /// signoff`) instead of signing it automatically.
    #[arg(long, value_name = "SECS")]
    pub wait_signoff: Option<u64>,
    /// Limit every link of the virtual room to MBIT Mbit/s (the stream is paced at it).
    #[arg(long, value_name = "MBIT")]
    pub link_mbit: Option<u64>,
    /// Add MIB MiB of random bytes to the base image (with --link-mbit: a step g to watch).
    #[arg(long, value_name = "MIB", default_value_t = 0)]
    pub payload_mib: u64,
    /// The last PC drops PCT % of the multicast stream's datagrams (the sender repairs them).
    #[arg(long, value_name = "PCT", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=50))]
    pub loss_pct: u8,
}

/// Removes every lab this process owns, then exits: what Ctrl-C does during the demo.
fn watch_signals() {
    std::thread::spawn(|| {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
        {
            Ok(rt) => rt,
            Err(_) => return,
        };
        let name = rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return None;
            };
            tokio::select! {
                _ = int.recv() => Some("interrupted"),
                _ = term.recv() => Some("terminated"),
            }
        });
        let Some(name) = name else { return };
        eprintln!("\nroomcast demo: {name}; removing the virtual room");
        let me = std::process::id();
        if let Ok(labs) = cleanup::list() {
            for lab in labs.into_iter().filter(|l| l.owner == Some(me)) {
                if let Err(e) = cleanup::remove(&lab.prefix) {
                    eprintln!("roomcast demo: {e}");
                }
            }
        }
        std::process::exit(130);
    });
}

fn show(note: &Note, t0: Instant) {
    let at = format!("[{:>5.1}s]", t0.elapsed().as_secs_f64());
    let mut err = std::io::stderr().lock();
    let _ = match note {
        Note::Stage(s) => writeln!(err, "{at} {s}"),
        Note::RoomUp { prefix, machines } => {
            let _ = writeln!(
                err,
                "{at} virtual room {prefix} up (namespaces {prefix}-*, bridge {prefix}br):"
            );
            for m in machines {
                let _ = writeln!(err, "          {m}");
            }
            Ok(())
        }
        Note::WaitingForSignoff { campaign, allowed } => writeln!(
            err,
            "{at} campaign {campaign} waits for the sign-off of step e by one of: {} \
             (web console link, or `roomcast campaign signoff --id {campaign}`)",
            allowed.join(", ")
        ),
        Note::SignedOff { by } => writeln!(
            err,
            "\n{at} ************************************************************************\n\
             {at} DEMO: step e signed off automatically (as \"{by}\"); a real campaign waits\n\
             {at} for a teacher's sign-off via `roomcast campaign signoff`.\n\
             {at} ************************************************************************\n"
        ),
        Note::Campaign(p) => match p {
            Progress::Journaled {
                campaign,
                room,
                machines,
            } => writeln!(
                err,
                "{at} campaign {campaign} journaled: room {room}, {machines} PCs"
            ),
            Progress::Scheduled { at: when } => writeln!(err, "{at} scheduled at {when}"),
            Progress::StepStarted { step } => writeln!(err, "{at}   step {step} ..."),
            Progress::Fetched { file, bytes } => {
                writeln!(err, "{at}   fetched {file} ({bytes} bytes)")
            }
            Progress::StepEnded {
                step,
                result,
                detail,
            } => writeln!(
                err,
                "{at}   step {step}: {result}{}",
                detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            Progress::MachineStarted {
                step,
                machine,
                attempt,
            } => writeln!(
                err,
                "{at}   step {step} on {machine} (attempt {attempt}) ..."
            ),
            Progress::MachineEnded {
                step,
                machine,
                result,
                detail,
            } => writeln!(
                err,
                "{at}   step {step} on {machine}: {result}{}",
                detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            Progress::Stopped { why, .. } => writeln!(err, "{at} campaign run stopped: {why}"),
        },
    };
}

/// Runs `roomcast demo`.
pub fn run(args: DemoArgs) -> Result<u8, CliError> {
    let t0 = Instant::now();
    let workspace = args.dir.unwrap_or_else(|| {
        let secs = crate::clock::Clock::now(&crate::clock::SystemClock).0;
        PathBuf::from(format!(
            "/var/tmp/roomcast-demo-{secs}-{}",
            std::process::id()
        ))
    });
    let binary = match std::env::current_exe() {
        Ok(b) => b,
        Err(e) => {
            return Err(CliError::UsageOrIo(format!(
                "roomcast demo: cannot find my own executable: {e}"
            )));
        }
    };
    if let Err(e) = demo::check_prerequisites() {
        return Err(CliError::UsageOrIo(format!("roomcast demo: {e}")));
    }
    watch_signals();
    let opts = DemoOptions {
        pcs: args.pcs.max(1),
        disk_mib: args.disk_mib,
        workspace: workspace.clone(),
        binary,
        wait_signoff: args.wait_signoff.map(std::time::Duration::from_secs),
        link_mbit: args.link_mbit,
        payload_mib: args.payload_mib,
        loss_pct: args.loss_pct,
    };
    eprintln!(
        "roomcast demo: a whole campaign (steps a-h) on a virtual room of {} PCs; workspace {}",
        opts.pcs,
        workspace.display()
    );
    match demo::run(&opts, &|n| show(n, t0)) {
        Ok(o) => {
            println!(
                "\nroomcast demo: campaign finished in {:.1} s",
                o.elapsed.as_secs_f64()
            );
            println!("  base image (step b): {}", &o.base_image[..16]);
            if let Some(image) = &o.campaign.state.image {
                println!(
                    "  captured image (step f): {}",
                    &image[..16.min(image.len())]
                );
            }
            println!("  PCs (disk sha256 after step g, hostname after step h):");
            for pc in &o.pcs {
                println!(
                    "    {:<10} disk {}  hostname {}",
                    pc.hostname,
                    &pc.disk_sha256[..16],
                    pc.reported_hostname
                );
            }
            println!("  computers in {}:", demo::region::OU);
            for dn in &o.in_ou {
                println!("    {dn}");
            }
            println!("  report:  {}", o.campaign.report_md.display());
            println!("           {}", o.campaign.report_html.display());
            println!("  journal: {}", o.journal.display());
            println!(
                "           roomcast campaign --db {} report --id {}",
                o.journal.display(),
                o.campaign.campaign
            );
            println!(
                "  the virtual room is removed; the workspace is kept: {}",
                o.workspace.display()
            );
            Ok(exit::OK)
        }
        Err(e) => {
            let words = format!(
                "roomcast demo: {e}\n  workspace (logs, journal): {}",
                workspace.display()
            );
            Err(match e {
                DemoError::Stopped(_) => CliError::Failure(words),
                _ => CliError::UsageOrIo(words),
            })
        }
    }
}
