//! `roomcast deploy`: stream one image to the PCs of a room by multicast, on the room interface
//! only, with HTTP beside it (signed manifest, chunks for PCs catching up, reports, session info).
//! Prints progress and a per-machine summary; exit 0 when every PC that joined holds the image and
//! at least `--expect` do, 1 otherwise, 2 on usage or I/O errors.
//!
//! Each machine gets a token, written to `--tokens` (mode 0600): run
//! `roomcast agent --server URL --token TOKEN --disk DISK` on the PC (or let PXE do it with
//! `roomcast serve --multicast`).

use super::exit::{self, CliError};
use super::image::bytes;
use super::room::{DataPlaneArgs, RoomArgs, init_tracing};
use crate::serve::{DeployOptions, DeployReport, Deployment, IssuedToken, Outcome, Progress};
use clap::Args;
use roomcast_proto::mac::Mac;
use roomcast_store::{DEFAULT_STORE, STORE_ENV, Store};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `roomcast deploy` flags.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The image id (or a unique prefix).
    #[arg(long)]
    image: String,
    /// Store folder.
    #[arg(long, env = STORE_ENV, default_value = DEFAULT_STORE)]
    store: PathBuf,
    /// PCs to wait for before streaming; also the number of successes the deploy needs.
    #[arg(long)]
    expect: usize,
    /// The room (`--room`, or `--interface`; without a room and machines, `--expect` anonymous
    /// slots are made).
    #[command(flatten)]
    room: RoomArgs,
    /// HTTP port on the interface's address.
    #[arg(long, default_value_t = crate::serve::services::DEFAULT_HTTP_PORT)]
    http_port: u16,
    /// Where agent reports are written.
    #[arg(long, default_value = "deploy-reports")]
    reports: PathBuf,
    /// Where the machines' tokens are written (mode 0600), one `MAC HOSTNAME TOKEN` line each.
    /// Default: `<reports>/tokens`.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Also print the summary as one JSON object, last line of stdout (for benchmarks and scripts).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    data: DataPlaneArgs,
}

/// Runs `roomcast deploy` to the end of the session and the catch-up wait.
pub fn run(a: DeployArgs) -> Result<u8, CliError> {
    init_tracing();
    deploy(a).map_err(|e| e.prefixed("roomcast deploy: "))
}

fn deploy(a: DeployArgs) -> Result<u8, CliError> {
    let room = a.room.resolve()?;
    if room.interface.is_empty() {
        return Err("need --interface or --room".into());
    }
    let interface = room.interface.clone();
    let mut machines = room.machines.clone();
    if machines.is_empty() {
        // By hand without a room: anonymous slots, locally administered MACs.
        machines = (1..=a.expect.min(250))
            .map(|i| (Mac([0x02, 0x72, 0x63, 0, 0, i as u8]), format!("pc{i:02}")))
            .collect();
    }
    if a.expect == 0 || a.expect > machines.len() {
        return Err(format!(
            "--expect {}: want 1 to {} (the machines of the deploy)",
            a.expect,
            machines.len()
        )
        .into());
    }
    let data = a.data.data_plane(room.group.as_deref(), room.link_mbps)?;
    let store = Store::open(&a.store).map_err(|e| e.to_string())?;
    let image = store
        .resolve(&a.image)
        .map_err(|e| format!("--image {}: {e}", a.image))?;
    let hostnames: std::collections::BTreeMap<Mac, String> = machines.iter().cloned().collect();
    let opts = DeployOptions {
        store,
        image,
        interface: interface.clone(),
        subnet: room.subnet,
        machines,
        expect: a.expect,
        data: data.clone(),
        http_port: a.http_port,
        reports_dir: a.reports.clone(),
        catch_up_wait: a.data.catch_up_wait(),
    };
    let names = hostnames.clone();
    let d = Deployment::start(
        opts,
        Box::new(move |p: &Progress| print_progress(p, &names)),
    )
    .map_err(|e| e.to_string())?;
    let tokens_file = a.tokens.clone().unwrap_or_else(|| a.reports.join("tokens"));
    write_tokens(&tokens_file, d.tokens())?;
    println!(
        "deploy of image {} on {interface}: {}, stream {} at {}, waiting for {} PC(s); tokens in {}",
        image.short(),
        d.base_url(),
        data.group,
        rate_text(data.rate_bps),
        a.expect,
        tokens_file.display()
    );
    let _ = std::io::stdout().flush();
    let report = d.wait().map_err(|e| e.to_string())?;
    print_summary(&report, &hostnames);
    if a.json {
        println!("{}", summary_json(&report, &hostnames));
    }
    Ok(verdict(&report, a.expect))
}

/// 0 when every PC that joined holds the image and at least `expect` do.
pub(super) fn verdict(report: &DeployReport, expect: usize) -> u8 {
    let joined_failed = report
        .machines
        .iter()
        .any(|m| (m.joined || m.report.is_some()) && !m.outcome.is_success());
    if joined_failed || report.succeeded() < expect {
        exit::FAILURE
    } else {
        exit::OK
    }
}

/// Writes the tokens file with mode 0600, complete or not at all.
fn write_tokens(path: &Path, tokens: &[IssuedToken]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    for t in tokens {
        writeln!(f, "{} {} {}", t.mac, t.hostname, t.token).map_err(err)?;
    }
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn rate_text(bps: u64) -> String {
    format!("{:.0} Mbit/s", bps as f64 / 1e6)
}

fn name(mac: &Mac, names: &std::collections::BTreeMap<Mac, String>) -> String {
    match names.get(mac) {
        Some(h) => format!("{h} ({mac})"),
        None => mac.to_string(),
    }
}

/// One line per progress event, on stdout.
pub(super) fn print_progress(p: &Progress, names: &std::collections::BTreeMap<Mac, String>) {
    let line = match p {
        Progress::Offered {
            control,
            group,
            blocks,
            bytes: b,
        } => format!(
            "session offered: control {control}, group {group}, {blocks} blocks, {}",
            bytes(*b)
        ),
        Progress::Joined(m) => format!("{} joined", name(m, names)),
        Progress::Rejected(r) => format!("refused: {r}"),
        Progress::Streaming { blocks: b, of } => {
            format!("stream: {b}/{of} blocks read for the first pass")
        }
        Progress::Done(m) => format!("{} has every block", name(m, names)),
        Progress::Dead(m) => format!("{} silent: declared dead, left behind", name(m, names)),
        Progress::Unreached(m) => crate::serve::unreached_note(&name(m, names)),
        Progress::Failed(m, r) => format!("{} gave up the stream: {r}", name(m, names)),
        Progress::StreamEnded { wire_bytes } => {
            format!(
                "stream ended, {} on the wire; waiting for reports",
                bytes(*wire_bytes)
            )
        }
        Progress::Reported(m, ok) => format!(
            "{} reported {}",
            name(m, names),
            if *ok { "success" } else { "FAILURE" }
        ),
        Progress::Sample(_) => return,
    };
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// The summary as JSON: the stream's figures and one object per machine.
pub(super) fn summary_json(
    r: &DeployReport,
    names: &std::collections::BTreeMap<Mac, String>,
) -> serde_json::Value {
    let machines: Vec<serde_json::Value> = r
        .machines
        .iter()
        .map(|m| {
            serde_json::json!({
                "mac": m.mac.to_string(),
                "hostname": names.get(&m.mac),
                "outcome": m.outcome.word(),
                "failure": match &m.outcome { Outcome::Failed(e) => Some(e), _ => None },
                "joined": m.joined,
                "multicast_complete": m.multicast_complete,
                "unreached": m.unreached,
                "note": m.unreached.then(|| crate::serve::unreached_note(&name(&m.mac, names))),
                "from_start": m.from_start,
                "blocks_written": m.blocks_written,
                "bytes_written": m.bytes_written,
                "catch_up_bytes": m.catch_up_bytes,
                "report": m.report,
            })
        })
        .collect();
    serde_json::json!({
        "image": r.image,
        "blocks": r.blocks,
        "image_bytes": r.image_bytes,
        "wire_bytes": r.wire_bytes,
        "packets": r.packets,
        "repair_symbols": r.repair_symbols,
        "symbol_size": r.symbol_size,
        "stream_secs": r.stream_time.as_secs_f64(),
        "total_secs": r.total_time.as_secs_f64(),
        "succeeded": r.succeeded(),
        "machines": machines,
    })
}

/// The per-machine table and the stream's figures.
pub(super) fn print_summary(r: &DeployReport, names: &std::collections::BTreeMap<Mac, String>) {
    println!(
        "summary: image {} ({} blocks, {}), {} on the wire in {} datagrams of {} bytes ({} repair), first join to end of stream {:.1} s, total {:.1} s",
        &r.image[..12],
        r.blocks,
        bytes(r.image_bytes),
        bytes(r.wire_bytes),
        r.packets,
        usize::from(r.symbol_size)
            + roomcast_proto::mcast::wire::DATA_HEADER_LEN
            + roomcast_proto::mcast::IP_UDP_OVERHEAD,
        r.repair_symbols,
        r.stream_time.as_secs_f64(),
        r.total_time.as_secs_f64()
    );
    for m in &r.machines {
        let why = match &m.outcome {
            Outcome::Failed(e) => format!(": {e}"),
            _ if m.unreached => format!(": {}", crate::serve::unreached_note("it")),
            _ => String::new(),
        };
        println!(
            "  {} {:<12} written {} (multicast blocks {}), catch-up {}{why}",
            name(&m.mac, names),
            m.outcome.word(),
            bytes(m.bytes_written),
            m.blocks_written,
            bytes(m.catch_up_bytes),
        );
    }
    println!(
        "{} of {} machine(s) hold the image",
        r.succeeded(),
        r.machines.len()
    );
}
