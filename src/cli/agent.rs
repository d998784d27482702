//! `roomcast agent`: restore the campaign's image from the server onto this PC's disk and report;
//! with `--capture`, upload this PC's disk to the server as a new image (step f).
//! Run by the boot environment's init; prints the report (JSON) on stdout.

use super::exit;
use crate::agent::{self, AgentOptions};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// `roomcast agent` flags.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Base URL of `roomcast serve` (`roomcast.server=` on the kernel command line).
    #[arg(long)]
    server: String,
    /// This boot's one-time token (`roomcast.token=`).
    #[arg(long, env = "ROOMCAST_TOKEN", hide_env_values = true)]
    token: String,
    /// The disk to restore onto (a block device, or an image file for tests).
    #[arg(long)]
    disk: PathBuf,
    /// The signer key the manifest must be signed with (baked in by `bootenv build --trusted-key`).
    #[arg(long, default_value = agent::TRUSTED_KEY)]
    trusted_key: PathBuf,
    /// Restore worker threads (0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Capture instead of restore (step f, `roomcast.capture=1`): read the disk and upload it to the
    /// server, which verifies every chunk and signs the image. Needs no trusted key.
    #[arg(long)]
    capture: bool,
}

/// Exit 0 when the image is written and reported, 1 when the restore failed (and that was reported),
/// 2 when the key is unreadable or the report could not be delivered.
pub fn run(a: AgentArgs) -> ExitCode {
    if a.capture {
        return capture(a);
    }
    let trusted = match agent::load_trusted(&a.trusted_key) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("roomcast agent: {e}");
            return exit::code(exit::USAGE_OR_IO);
        }
    };
    let opts = AgentOptions {
        server: a.server,
        token: a.token,
        disk: a.disk,
        trusted,
        workers: a.workers,
    };
    // The multicast path says on stderr why it left the stream (the report says it too).
    super::serve::init_tracing();
    finish(
        "roomcast agent",
        agent::run(&opts).map(|out| (out.report, out.result)),
    )
}

/// `--capture`: same exit codes, the report names the signed image.
fn capture(a: AgentArgs) -> ExitCode {
    let opts = agent::capture::CaptureAgentOptions {
        server: a.server,
        token: a.token,
        disk: a.disk,
    };
    finish(
        "roomcast agent --capture",
        agent::capture::run_capture(&opts).map(|out| (out.report, out.result)),
    )
}

/// Prints the report the agent sent (one JSON line) and maps its outcome to an exit code: 0 done,
/// 1 the work failed (and was reported), 2 the report itself could not be delivered.
fn finish<R: serde::Serialize, T, E: std::fmt::Display, F: std::fmt::Display>(
    who: &str,
    outcome: Result<(R, Result<T, E>), F>,
) -> ExitCode {
    match outcome {
        Ok((report, result)) => {
            println!(
                "{}",
                serde_json::to_string(&report).expect("report serialises")
            );
            match result {
                Ok(_) => exit::code(exit::OK),
                Err(e) => {
                    eprintln!("{who}: {e}");
                    exit::code(exit::FAILURE)
                }
            }
        }
        Err(e) => {
            eprintln!("{who}: report not delivered: {e}");
            exit::code(exit::USAGE_OR_IO)
        }
    }
}
