//! The agent's command line, shared by the `roomcast-agent` binary (what the boot environment's
//! init runs) and `roomcast agent` (the same code, for a technician or a test).
//!
//! Exit codes, as the tool's: 0 the image is written (or captured) and reported; 1 the work failed
//! and that was reported; 2 the key is unreadable or the report could not be delivered.
//! Prints the report it sent (one JSON line) on stdout. `roomcast-agent pc` (what the init runs)
//! exits 0 done, 1 failed (shown on the screen, reported when the network was up).

use crate::AgentOptions;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// The agent's flags.
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
    #[arg(long, default_value = crate::TRUSTED_KEY)]
    trusted_key: PathBuf,
    /// Restore worker threads (0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// On a disk larger than the image, grow the last partition and its file system (ext2/3/4,
    /// NTFS) to the disk's end (`roomcast.grow=last`). Off: the extra space stays unallocated.
    #[arg(long)]
    grow_last: bool,
    /// Capture instead of restore (step f, `roomcast.capture=1`): read the disk and upload it to the
    /// server, which verifies every chunk and signs the image. Needs no trusted key.
    #[arg(long)]
    capture: bool,
    /// With `--capture`: take every byte of the disk, as before file-system maps (no partition is
    /// read, deleted data included). The server's plan can ask for it too.
    #[arg(long, requires = "capture")]
    whole_disk: bool,
}

/// `roomcast-agent`'s own parser (the tool embeds [`AgentArgs`] as `roomcast agent`).
#[derive(Debug, clap::Parser)]
#[command(
    name = "roomcast-agent",
    version,
    about = "roomcast's agent on a PXE-booted PC: restore or capture its disk, then report"
)]
pub struct AgentCli {
    #[command(flatten)]
    args: AgentArgs,
}

const OK: u8 = 0;
const FAILURE: u8 = 1;
const USAGE_OR_IO: u8 = 2;

/// Parses the process arguments and runs (the binary's `main`). `roomcast-agent pc` is the boot
/// environment's whole PC run, configured by the kernel command line ([`crate::pc`]).
pub fn main() -> ExitCode {
    use clap::Parser;
    if std::env::args_os().nth(1).is_some_and(|a| a == "pc") {
        return crate::pc::main();
    }
    match AgentCli::try_parse() {
        Ok(cli) => run(cli.args),
        Err(e) => {
            let _ = e.print();
            match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::from(OK)
                }
                _ => ExitCode::from(USAGE_OR_IO),
            }
        }
    }
}

/// Runs the agent with `a`; see the module doc for the exit codes.
pub fn run(a: AgentArgs) -> ExitCode {
    if a.capture {
        return capture(a);
    }
    let trusted = match crate::load_trusted(&a.trusted_key) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("roomcast agent: {e}");
            return ExitCode::from(USAGE_OR_IO);
        }
    };
    let opts = AgentOptions {
        server: a.server,
        token: a.token,
        disk: a.disk,
        trusted,
        workers: a.workers,
        fit: roomcast_store::fit::FitOptions {
            grow_last: a.grow_last,
        },
    };
    // The multicast path says on stderr why it left the stream (the report says it too).
    init_tracing();
    finish(
        "roomcast agent",
        crate::run(&opts).map(|out| (out.report, out.result)),
    )
}

/// `--capture`: same exit codes, the report names the signed image.
fn capture(a: AgentArgs) -> ExitCode {
    let opts = crate::capture::CaptureAgentOptions {
        server: a.server,
        token: a.token,
        disk: a.disk,
        whole_disk: a.whole_disk,
    };
    finish(
        "roomcast agent --capture",
        crate::capture::run_capture(&opts).map(|out| (out.report, out.result)),
    )
}

/// Logs to stderr, `RUST_LOG` or roomcast's info level: the one tracing set-up of roomcast's
/// binaries (the tool's long-running commands use it too).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "roomcast=info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints the report the agent sent (one JSON line) and maps its outcome to an exit code.
fn finish<T, E: std::fmt::Display, F: std::fmt::Display>(
    who: &str,
    outcome: Result<(crate::Report, Result<T, E>), F>,
) -> ExitCode {
    match outcome {
        Ok((report, result)) => {
            println!(
                "{}",
                serde_json::to_string(&report).expect("report serialises")
            );
            match result {
                Ok(_) => ExitCode::from(OK),
                Err(e) => {
                    eprintln!("{who}: {e}");
                    ExitCode::from(FAILURE)
                }
            }
        }
        Err(e) => {
            eprintln!("{who}: report not delivered: {e}");
            ExitCode::from(USAGE_OR_IO)
        }
    }
}
