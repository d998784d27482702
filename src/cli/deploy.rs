//! `roomcast deploy`: stream one image to the PCs of a room by multicast, on the room interface
//! only, with HTTP beside it (signed manifest, chunks for PCs catching up, reports, session info).
//! Prints progress and a per-machine summary; exit 0 when every PC that joined holds the image and
//! at least `--expect` do, 1 otherwise, 2 on usage or I/O errors.
//!
//! Each machine gets a token, written to `--tokens` (mode 0600): run
//! `roomcast agent --server URL --token TOKEN --disk DISK` on the PC (or let PXE do it with
//! `roomcast serve --multicast`).

use super::exit;
use super::image::bytes;
use crate::serve::{
    DataPlane, DeployOptions, DeployReport, Deployment, IssuedToken, Outcome, Progress,
};
use clap::Args;
use roomcast_proto::mac::Mac;
use roomcast_store::{DEFAULT_STORE, STORE_ENV, Store};
use std::io::Write;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The data-plane flags shared by `deploy` and `serve --multicast`.
#[derive(Debug, Args, Clone)]
pub struct DataPlaneArgs {
    /// Highest stream rate on the wire, e.g. `950M`, `190M`, `1G` (bits per second). Default: 95 %
    /// of the room's link speed, or 950M.
    #[arg(long)]
    rate: Option<String>,
    /// Multicast group and port, in 239.255.0.0/16. Default: the room's group (or 239.255.0.1),
    /// port 9000.
    #[arg(long)]
    group: Option<String>,
    /// TCP port of the control channel.
    #[arg(long, default_value_t = 9500)]
    control_port: u16,
    /// Seconds of silence after which a PC is declared dead (it may still catch up over HTTP).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    dead_after: u64,
    /// Longest wait, in seconds, for `--expect` PCs before the stream starts.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    start_wait: u64,
    /// After the stream, seconds to wait for PCs catching up over HTTP to report.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    catch_up_wait: u64,
}

impl DataPlaneArgs {
    /// The data plane from these flags and the room's group and link speed.
    pub(super) fn data_plane(
        &self,
        room_group: Option<&str>,
        link_mbps: Option<u32>,
    ) -> Result<DataPlane, String> {
        let mut d = DataPlane {
            control_port: self.control_port,
            dead_after: Duration::from_secs(self.dead_after),
            start_wait: Duration::from_secs(self.start_wait),
            ..DataPlane::default()
        };
        if let Some(mbps) = link_mbps {
            d.rate_bps = u64::from(mbps) * 950_000;
        }
        if let Some(r) = &self.rate {
            d.rate_bps = parse_rate(r).ok_or_else(|| {
                format!("--rate {r:?}: want bits per second, e.g. 950M, 190M or 1G")
            })?;
        }
        d.min_rate_bps = d.min_rate_bps.min(d.rate_bps / 4);
        let group = self.group.as_deref().or(room_group);
        if let Some(g) = group {
            d.group = match g.parse::<SocketAddrV4>() {
                Ok(a) => a,
                Err(_) => SocketAddrV4::new(
                    g.parse()
                        .map_err(|_| format!("multicast group {g:?}: want IP or IP:port"))?,
                    d.group.port(),
                ),
            };
        }
        d.check().map_err(|e| e.to_string())?;
        Ok(d)
    }

    pub(super) fn catch_up_wait(&self) -> Duration {
        Duration::from_secs(self.catch_up_wait)
    }
}

/// `950M`, `1G`, `190Mbit`, `2500k` or plain bits per second.
fn parse_rate(s: &str) -> Option<u64> {
    let t = s.trim().trim_end_matches("bit").trim_end_matches("bps");
    let (num, mult) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 1e3),
        'm' | 'M' => (&t[..t.len() - 1], 1e6),
        'g' | 'G' => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v > 0.0).then_some((v * mult) as u64)
}

/// `roomcast deploy` flags.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The image id (or a unique prefix).
    #[arg(long)]
    image: String,
    /// Store folder.
    #[arg(long, env = STORE_ENV, default_value = DEFAULT_STORE)]
    store: PathBuf,
    /// The room interface: everything is bound to its address only (overrides the room file).
    #[arg(long, required_unless_present = "room")]
    interface: Option<String>,
    /// PCs to wait for before streaming; also the number of successes the deploy needs.
    #[arg(long)]
    expect: usize,
    /// The room file: interface, subnet, machines, multicast group, link speed (validated first).
    #[arg(long)]
    room: Option<PathBuf>,
    /// A machine, `MAC` or `MAC=hostname` (repeat; replaces the room's machines). Without a room
    /// and machines, `--expect` anonymous slots are made.
    #[arg(long = "machine")]
    machines: Vec<String>,
    /// HTTP port on the interface's address.
    #[arg(long, default_value_t = 8080)]
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
pub fn run(a: DeployArgs) -> ExitCode {
    super::serve::init_tracing();
    match deploy(a) {
        Ok(code) => exit::code(code),
        Err(e) => {
            eprintln!("roomcast deploy: {e}");
            exit::code(exit::USAGE_OR_IO)
        }
    }
}

fn deploy(a: DeployArgs) -> Result<u8, String> {
    let room = match &a.room {
        Some(p) => Some(super::serve::from_room(p)?),
        None => None,
    };
    let interface = a
        .interface
        .clone()
        .or_else(|| room.as_ref().map(|r| r.interface.clone()))
        .ok_or("need --interface or --room")?;
    let mut machines: Vec<(Mac, String)> = room.as_ref().map_or(Vec::new(), |r| r.machines.clone());
    if !a.machines.is_empty() {
        machines = parse_machines(&a.machines)?;
    }
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
        ));
    }
    let data = a.data.data_plane(
        room.as_ref().and_then(|r| r.group.as_deref()),
        room.as_ref().and_then(|r| r.link_mbps),
    )?;
    let store = Store::open(&a.store).map_err(|e| e.to_string())?;
    let image = store
        .resolve(&a.image)
        .map_err(|e| format!("--image {}: {e}", a.image))?;
    let hostnames: std::collections::BTreeMap<Mac, String> = machines.iter().cloned().collect();
    let opts = DeployOptions {
        store,
        image,
        interface: interface.clone(),
        subnet: room.as_ref().map(|r| r.subnet),
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

fn parse_machines(flags: &[String]) -> Result<Vec<(Mac, String)>, String> {
    flags
        .iter()
        .map(|m| {
            let (mac, host) = m.split_once('=').unwrap_or((m, ""));
            let mac: Mac = mac.parse().map_err(|e| format!("--machine {m}: {e}"))?;
            let host = if host.is_empty() {
                mac.hyphenated()
            } else {
                host.to_string()
            };
            Ok((mac, host))
        })
        .collect()
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
        "stream_secs": r.stream_time.as_secs_f64(),
        "total_secs": r.total_time.as_secs_f64(),
        "succeeded": r.succeeded(),
        "machines": machines,
    })
}

/// The per-machine table and the stream's figures.
pub(super) fn print_summary(r: &DeployReport, names: &std::collections::BTreeMap<Mac, String>) {
    println!(
        "summary: image {} ({} blocks, {}), {} on the wire in {} datagrams ({} repair), first join to end of stream {:.1} s, total {:.1} s",
        &r.image[..12],
        r.blocks,
        bytes(r.image_bytes),
        bytes(r.wire_bytes),
        r.packets,
        r.repair_symbols,
        r.stream_time.as_secs_f64(),
        r.total_time.as_secs_f64()
    );
    for m in &r.machines {
        let why = match &m.outcome {
            Outcome::Failed(e) => format!(": {e}"),
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

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_in_bits_per_second() {
        assert_eq!(parse_rate("950M"), Some(950_000_000));
        assert_eq!(parse_rate("1G"), Some(1_000_000_000));
        assert_eq!(parse_rate("190Mbit"), Some(190_000_000));
        assert_eq!(parse_rate("2500k"), Some(2_500_000));
        assert_eq!(parse_rate("12345"), Some(12_345));
        assert_eq!(parse_rate("fast"), None);
        assert_eq!(parse_rate("-3M"), None);
    }
}
