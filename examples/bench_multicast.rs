//! roomcast's multicast against Debian's udpcast in the virtual room, in one run: every contender
//! delivers the same random image from the server to N PCs over tbf-shaped links, with independent
//! nftables loss per PC, and every copy is checked bit for bit. Ratios are taken within the run
//! (the machine is shared and noisy).
//!
//! ```text
//! sudo cargo run --release --example bench_multicast                       # N = 1,3,10 x loss 0,1,5
//! sudo cargo run --release --example bench_multicast -- --pcs 3 --loss 0 --mib 64   # quick look
//! sudo cargo run --release --example bench_multicast -- --pcs 1 --loss 0 --delta  # delta only
//! sudo cargo run --release --example bench_multicast -- --pcs 3 --loss 0 --network all --rounds 2
//! sudo cargo run --release --example bench_multicast -- --pcs 3 --loss 0 --mib 256 --clear-too \
//!     --with roomcast-lib --rounds 4        # the sealed stream against the same stream in clear
//! ```
//!
//! `--clear-too` adds `roomcast-lib-clear` after every `roomcast-lib` and `roomcast-clear` after
//! every `roomcast`: the same drivers, or the same binaries, with the stream in clear (issue 20:
//! what sealing every datagram with AES-256-GCM costs). For the in-process contenders the last
//! column is the CPU time of the PCs' receiver threads, summed; for each pair a line gives the PCs'
//! CPU (for `roomcast`: the agent processes', from `wait4`) and the sealed/clear ratios of every
//! round. `roomcast-clear` needs a binary built with the `bench-clear-stream` feature (D29):
//!
//! ```text
//! cargo build --release --features bench-clear-stream --example bench_multicast --bin roomcast
//! target/release/examples/bench_multicast --pcs 3 --loss 0 --mib 256 --with roomcast --clear-too --rounds 4
//! ```
//!
//! `--network CASE,...` (or `all`): the network matrix of issue 22 (`roomcast_lab::Network`:
//! snooping-off, snooping-no-querier, igmpv2-querier, igmpv3-querier, router-port, fast-leave,
//! mtu-1400, unreached-pc). Each round builds one lab per case and runs udpcast and roomcast there
//! back to back (the order alternating between rounds), so every ratio compares deliveries a few
//! seconds apart: roomcast over udpcast in the same cell, roomcast over its own snooping-off time
//! of the same round, and, where one PC never gets the group, the other PCs' time over that
//! snooping-off time. udpcast gets 60 s per cell (it cannot finish where its datagrams never
//! arrive).
//!
//! Columns: end to end (first process started to last PC done), image Mbit/s (image bytes over
//! that time), x line (over the time the image bytes take at the link rate), steady (image bytes
//! per second between 10 % and 90 % of PC 0's link traffic) over the payload limit (image bytes
//! the link can carry after Ethernet/IP/UDP/roomcast headers at 1400-byte symbols), wire/image
//! (bytes the switch delivered to PC 0 over the image bytes), and x udpcast (end-to-end time over
//! udpcast's in the same lab and loss). Needs root, iproute2, nftables and udpcast. A run killed
//! with Ctrl-C leaves its lab behind: `roomcast lab cleanup --stale` removes it.

use clap::Parser;
use roomcast_lab::bench::{self, CaseResult, Contender, Udpcast};
use roomcast_lab::mcast_contender::{self, LinkMeter, RoomcastCli, RoomcastLib};
use roomcast_lab::{Lab, LabGroup, Network, Tbf};
use roomcast_proto::mcast::DEFAULT_SYMBOL_SIZE;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
struct Args {
    /// Room sizes, loss, image size, link rate.
    #[command(flatten)]
    case: bench::CaseArgs,
    /// Contenders, comma-separated: udpcast (the reference), roomcast (the real binaries: deploy
    /// and agent, from a store), roomcast-lib (the library's drivers in process, no store),
    /// roomcast-clear and roomcast-lib-clear (the same, the stream in clear).
    #[arg(long, value_delimiter = ',', default_value = "udpcast,roomcast")]
    with: Vec<String>,
    /// Token bucket depth of roomcast's pacing, KiB (default: `RateConfig::for_link`, 256).
    #[arg(long)]
    burst_kib: Option<u32>,
    /// roomcast's pacing rate in percent of the link rate (frames as tbf counts them; default:
    /// `RateConfig::for_link`, 105).
    #[arg(long)]
    pace_pct: Option<u64>,
    /// Write PC 0's link counter (seconds, bytes) every 20 ms to DIR/<contender>-<pcs>-<loss>.txt.
    #[arg(long, value_name = "DIR")]
    samples: Option<PathBuf>,
    /// Only the delta case: each PC holds an older image where 1 block in 8 differs.
    #[arg(long)]
    delta: bool,
    /// The network matrix instead of the loss cases: comma-separated cases, or `all`.
    #[arg(long, value_delimiter = ',')]
    network: Vec<String>,
    /// Rounds: of the network matrix (each round runs every case once per contender), or of each
    /// loss case (the contenders' order reversed every other round; with `--clear-too`, the
    /// sealed/clear ratios of each round and their median).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// The `roomcast` binary to measure (default: the one built next to this example), e.g. a
    /// build of an earlier commit, to compare two versions in one run.
    #[arg(long, value_name = "PATH")]
    roomcast_bin: Option<PathBuf>,
    /// Also run the stream in clear after each `roomcast-lib` (`roomcast-lib-clear`) and each
    /// `roomcast` (`roomcast-clear`, a `bench-clear-stream` build), to measure what the stream's
    /// encryption costs.
    #[arg(long)]
    clear_too: bool,
    /// Only the last N PCs get the loss (default: every PC), e.g. `--lossy 1`: one bad cable in
    /// a healthy room, as `roomcast demo --loss-pct` sets it.
    #[arg(long, value_name = "N")]
    lossy: Option<usize>,
    /// What the image holds: `random` (incompressible, the worst case for every per-byte cost
    /// of the stream) or `system` (this machine's /usr files with one MiB of random data in three:
    /// `bench::system_files_image`, which roomcast's store compresses; the `roomcast` contenders
    /// stream it compressed, `roomcast-lib` and udpcast as it is).
    #[arg(long, default_value = "random", value_parser = ["random", "system"])]
    content: String,
    /// Where the image and the PCs' copies go (/dev/shm keeps disk writes out of the figures,
    /// but holds N + 1 copies in RAM).
    #[arg(long, default_value = "/dev/shm")]
    dir: PathBuf,
}

fn contenders(args: &Args) -> Result<Vec<Box<dyn Contender>>, String> {
    let mut names = Vec::new();
    for n in &args.with {
        names.push(n.clone());
        if args.clear_too && matches!(n.as_str(), "roomcast-lib" | "roomcast") {
            names.push(format!("{n}-clear"));
        }
    }
    names
        .iter()
        .map(|name| -> Result<Box<dyn Contender>, String> {
            match name.as_str() {
                "udpcast" => Ok(Box::new(Udpcast)),
                "roomcast-lib-clear" => {
                    let mut c = RoomcastLib::new();
                    c.sealed = false;
                    Ok(Box::new(c))
                }
                "roomcast-lib" => Ok(Box::new(
                    RoomcastLib::new()
                        .with_burst(args.burst_kib.map(|k| k << 10))
                        .with_pace(args.pace_pct.map(|p| {
                            // Percent of the rate that fills the link with 1464-byte datagrams.
                            args.case.mbit * 10_000 * p * 1464 / 1478
                        })),
                )),
                "roomcast" | "roomcast-clear" => {
                    let bin = roomcast_bin(args)?;
                    let mut c = RoomcastCli::new(bin);
                    c.rate_bps = args
                        .pace_pct
                        .map(|p| args.case.mbit * 10_000 * p * 1464 / 1478);
                    c.clear = name == "roomcast-clear";
                    Ok(Box::new(c))
                }
                other => Err(format!("unknown contender {other}")),
            }
        })
        .collect()
}

/// The sealed/clear pair a contender belongs to, and its side (0 sealed, 1 clear).
fn sealing_pair(name: &str) -> Option<(&'static str, usize)> {
    match name {
        "roomcast-lib" => Some(("roomcast-lib", 0)),
        "roomcast-lib-clear" => Some(("roomcast-lib", 1)),
        "roomcast" => Some(("roomcast", 0)),
        "roomcast-clear" => Some(("roomcast", 1)),
        _ => None,
    }
}

/// What "the PCs' CPU" of a pair measures.
fn pcs_cpu_is(pair: &str) -> &'static str {
    if pair == "roomcast" {
        "agent processes' CPU"
    } else {
        "receiver threads' CPU"
    }
}

/// The `roomcast` binary to measure: `--roomcast-bin`, else the one built with this example
/// (`target/<profile>/roomcast`).
fn roomcast_bin(args: &Args) -> Result<PathBuf, String> {
    if let Some(bin) = &args.roomcast_bin {
        return Ok(bin.clone());
    }
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("roomcast"))
        .ok_or("no target folder")?;
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} is missing: run `cargo build --release --bin roomcast` first",
            bin.display()
        ))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // RUST_LOG=roomcast=debug shows the sender's pacing decisions.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_multicast: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// One delivery, metered on PC 0's link.
fn measured(
    samples_dir: Option<&Path>,
    c: &dyn Contender,
    lab: &Lab,
    image: &Path,
    sha: &str,
    work: &Path,
    loss: u8,
) -> Result<(CaseResult, Option<mcast_contender::LinkUse>), bench::BenchError> {
    let meter = LinkMeter::start(lab.pcs()[0].host_if(), Duration::from_millis(20));
    let r = bench::run_case(c, lab, image, sha, work, loss);
    let samples = meter.finish();
    if let Some(dir) = samples_dir {
        let dir = dir.display();
        let text: String = samples
            .iter()
            .map(|(t, v)| format!("{t:.3} {v}\n"))
            .collect();
        let _ = std::fs::write(
            format!("{dir}/{}-{}-{loss}.txt", c.name(), lab.pcs().len()),
            text,
        );
    }
    r.map(|r| (r, mcast_contender::link_use(&samples)))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let work = tempfile::Builder::new()
        .prefix("roomcast-bench-")
        .tempdir_in(&args.dir)?;
    let image = work.path().join("image.bin");
    let bytes = args.case.mib << 20;
    if args.content == "system" {
        bench::system_files_image(&image, bytes)?;
    } else {
        bench::random_image(&image, bytes)?;
    }
    let sha = bench::sha256_file(&image)?;
    let tbf = Tbf::mbit(args.case.mbit);
    let limit = mcast_contender::payload_limit_bps(tbf.rate_bit, DEFAULT_SYMBOL_SIZE);
    println!(
        "image {} MiB {}, links {} Mbit/s tbf (both ends), line-rate time {:.2} s, payload \
         limit {:.1} Mbit/s of image bytes ({:.2} s); load average {} at start",
        args.case.mib,
        args.content,
        args.case.mbit,
        tbf.line_rate_secs(bytes),
        limit / 1e6,
        bytes as f64 * 8.0 / limit,
        load()
    );
    if !args.network.is_empty() {
        return network_matrix(args, &image, &sha, work.path(), tbf);
    }
    let contenders = contenders(args)?;
    if args.delta {
        return delta(args, &image, work.path(), tbf);
    }
    println!(
        "| contender | PCs | loss % | end to end s | image Mbit/s | x line | steady / payload limit | wire / image | x udpcast | CPU busy | process CPU s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut failures = 0;
    for &n in &args.case.pcs {
        let lab = Lab::builder().pcs(n).rate(tbf).build()?;
        for &loss in &args.case.loss {
            let healthy = n - args.lossy.unwrap_or(n).min(n);
            for (i, pc) in lab.pcs().iter().enumerate() {
                if loss == 0 || i < healthy {
                    lab.clear_loss(pc)?;
                } else {
                    lab.set_loss(pc, loss, bench::PORTS)?;
                }
            }
            let mut reference: Option<CaseResult> = None;
            // Sealed over clear per pair and round: (end to end, the PCs' CPU).
            let mut sealing: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
            for round in 0..args.rounds {
                let mut order: Vec<&Box<dyn Contender>> = contenders.iter().collect();
                if round % 2 == 1 {
                    // Alternate which goes first, so neither always gets the quieter moment.
                    order.reverse();
                }
                let mut sealed_clear: BTreeMap<&str, [Option<(f64, f64)>; 2]> = BTreeMap::new();
                for c in order {
                    let (r, link) = match measured(
                        args.samples.as_deref(),
                        c.as_ref(),
                        &lab,
                        &image,
                        &sha,
                        work.path(),
                        loss,
                    ) {
                        Ok(r) => r,
                        Err(e) => {
                            println!(
                                "| {} | {n} | {loss} | failed: {e} | | | | | | | |",
                                c.name()
                            );
                            failures += 1;
                            continue;
                        }
                    };
                    let x_ref = reference
                        .as_ref()
                        .filter(|f| f.contender == "udpcast")
                        .map(|f| r.elapsed.as_secs_f64() / f.elapsed.as_secs_f64());
                    let (steady, wire) = link.map_or((f64::NAN, f64::NAN), |u| {
                        let image_share = r.bytes as f64 / u.bytes as f64;
                        (
                            u.steady_bps * image_share / limit,
                            u.bytes as f64 / r.bytes as f64,
                        )
                    });
                    println!(
                        "| {} | {} | {} | {:.2} | {:.1} | {:.3} | {:.3} | {:.3} | {} | {:.2} | {} |",
                        r.contender,
                        r.pcs,
                        r.loss_percent,
                        r.elapsed.as_secs_f64(),
                        r.throughput_mbit(),
                        r.ratio_to_line_rate().unwrap_or(f64::NAN),
                        steady,
                        wire,
                        x_ref.map_or("-".to_owned(), |x| format!("{x:.3}")),
                        r.cpu_busy,
                        r.process_cpu
                            .or(c.receiver_cpu())
                            .map_or("-".to_owned(), |d| format!("{:.2}", d.as_secs_f64())),
                    );
                    if let Some((pair, side)) = sealing_pair(c.name()) {
                        let cpu = c.receiver_cpu().map_or(f64::NAN, |d| d.as_secs_f64());
                        println!(
                            "{}: the PCs' CPU {cpu:.2} s ({})",
                            c.name(),
                            pcs_cpu_is(pair)
                        );
                        sealed_clear.entry(pair).or_default()[side] =
                            Some((r.elapsed.as_secs_f64(), cpu));
                    }
                    if reference.is_none() {
                        reference = Some(r);
                    }
                }
                for (pair, sides) in sealed_clear {
                    if let [Some(s), Some(c)] = sides {
                        sealing
                            .entry(pair)
                            .or_default()
                            .push((s.0 / c.0, s.1 / c.1));
                    }
                }
            }
            for (pair, rounds) in &sealing {
                for (i, (t, cpu)) in rounds.iter().enumerate() {
                    println!(
                        "{pair}, round {}: sealed / clear, end to end x{t:.3}, {} x{cpu:.3}",
                        i + 1,
                        pcs_cpu_is(pair)
                    );
                }
                println!(
                    "{pair}, median over {} rounds: sealed / clear, end to end x{}, {} x{}; load average {} now",
                    rounds.len(),
                    fmt(median(rounds.iter().map(|x| x.0).collect()), 3),
                    pcs_cpu_is(pair),
                    fmt(median(rounds.iter().map(|x| x.1).collect()), 3),
                    load()
                );
            }
        }
        lab.teardown()?;
    }
    println!("load average {} at end", load());
    if failures > 0 {
        return Err(format!("{failures} case(s) failed").into());
    }
    Ok(())
}

/// The delta case: every PC already holds an older image in which one block in eight differs;
/// the figure is the bytes the switch delivered to PC 0 over the zstd-compressed size (level 3,
/// as the store) of the changed 1 MiB chunks.
fn delta(
    args: &Args,
    image: &Path,
    work: &Path,
    tbf: Tbf,
) -> Result<(), Box<dyn std::error::Error>> {
    const CHUNK: usize = 1 << 20;
    let new = std::fs::read(image)?;
    let mut old = new.clone();
    let mut changed = 0u64;
    let mut changed_compressed = 0u64;
    for (i, chunk) in old.chunks_mut(CHUNK).enumerate() {
        if i % 8 == 3 {
            // The old version of this chunk: other bytes.
            for b in chunk.iter_mut().step_by(4096) {
                *b ^= 0x5a;
            }
            let fresh = &new[i * CHUNK..(i * CHUNK + CHUNK).min(new.len())];
            changed += 1;
            changed_compressed += zstd::bulk::compress(fresh, 3)?.len() as u64;
        }
    }
    let sha = bench::sha256_file(image)?;
    println!(
        "delta: {changed} of {} chunks changed, {:.1} MiB compressed",
        new.len().div_ceil(CHUNK),
        changed_compressed as f64 / f64::from(1 << 20)
    );
    println!("| contender | PCs | end to end s | bytes to PC 0 / compressed changed chunks |");
    println!("|---|---|---|---|");
    let lab = Lab::builder().pcs(args.case.pcs[0]).rate(tbf).build()?;
    for c in contenders(args)? {
        if c.name() == "udpcast" {
            continue; // udpcast always sends the whole image
        }
        for pc in lab.pcs() {
            std::fs::write(work.join(format!("{}-{}.out", c.name(), pc.role())), &old)?;
        }
        match measured(
            args.samples.as_deref(),
            c.as_ref(),
            &lab,
            image,
            &sha,
            work,
            0,
        ) {
            Ok((r, link)) => println!(
                "| {} | {} | {:.2} | {:.3} |",
                r.contender,
                r.pcs,
                r.elapsed.as_secs_f64(),
                link.map_or(f64::NAN, |u| u.bytes as f64 / changed_compressed as f64)
            ),
            Err(e) => println!("| {} | {} | failed: {e} | |", c.name(), lab.pcs().len()),
        }
    }
    lab.teardown()?;
    Ok(())
}

/// The network cases asked for, snooping-off first (every roomcast time is compared with it).
fn network_cases(names: &[String]) -> Result<Vec<Network>, String> {
    let mut cases = vec![Network::Flood];
    for n in names {
        if n == "all" {
            cases.extend(Network::ALL);
        } else {
            cases.push(n.parse::<Network>()?);
        }
    }
    let mut seen = Vec::new();
    cases.retain(|c| {
        let new = !seen.contains(c);
        seen.push(*c);
        new
    });
    Ok(cases)
}

/// One round's figures of one cell.
#[derive(Debug, Clone, Default)]
struct Cell {
    udpcast: Option<f64>,
    roomcast: Option<f64>,
    /// The last PC the stream reaches, done (unreached-pc: all PCs but the cut one).
    reached: Option<f64>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    })
}

fn fmt(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".into(), |x| format!("{x:.digits$}"))
}

fn network_matrix(
    args: &Args,
    image: &Path,
    sha: &str,
    work: &Path,
    tbf: Tbf,
) -> Result<(), Box<dyn std::error::Error>> {
    let cases = network_cases(&args.network)?;
    let n = args.case.pcs[0];
    let loss = args.case.loss.first().copied().unwrap_or(0);
    let udpcast = Udpcast;
    let bin = roomcast_bin(args)?;
    let mut roomcast = RoomcastCli::new(bin);
    roomcast.rate_bps = args
        .pace_pct
        .map(|p| args.case.mbit * 10_000 * p * 1464 / 1478);
    let group = LabGroup::from_low(42, 1).addr();
    println!(
        "network matrix: {n} PCs, {loss} % loss, {} round(s); udpcast gets 60 s per cell",
        args.rounds
    );
    println!(
        "| round | network | udpcast s | roomcast s | x udpcast | x own snooping-off | reached PCs done s | reached x own snooping-off | CPU busy | load |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut table: Vec<Vec<Cell>> = vec![Vec::new(); cases.len()];
    let mut failures = 0;
    for round in 0..args.rounds {
        let mut flood: Option<f64> = None;
        for (k, &case) in cases.iter().enumerate() {
            let lab = Lab::builder().pcs(n).rate(tbf).network(case).build()?;
            for pc in lab.pcs() {
                if loss > 0 {
                    lab.set_loss(pc, loss, bench::PORTS)?;
                }
            }
            if case.unreached_pc() {
                let last = lab.pcs().last().ok_or("no PC")?;
                lab.block_group(last, group)?;
            }
            let mut cell = Cell::default();
            let mut busy = f64::NAN;
            let order: [&dyn Contender; 2] = if round % 2 == 0 {
                [&udpcast, &roomcast]
            } else {
                [&roomcast, &udpcast]
            };
            for c in order {
                let is_udpcast = c.name() == "udpcast";
                let timeout = is_udpcast.then(|| Duration::from_secs(60));
                match bench::run_case_within(c, &lab, image, sha, work, loss, timeout) {
                    Ok(r) => {
                        let t = r.elapsed.as_secs_f64();
                        if is_udpcast {
                            cell.udpcast = Some(t);
                        } else {
                            busy = r.cpu_busy;
                            cell.roomcast = Some(t);
                            let cut = case
                                .unreached_pc()
                                .then(|| lab.pcs().last().map(|p| p.role().to_owned()))
                                .flatten();
                            cell.reached = roomcast
                                .last_pc_times()
                                .iter()
                                .filter(|(role, _)| Some(role) != cut.as_ref())
                                .map(|(_, d)| d.as_secs_f64())
                                .reduce(f64::max);
                        }
                    }
                    Err(e) => {
                        eprintln!("round {round}, {case}, {}: {e}", c.name());
                        if !is_udpcast {
                            failures += 1;
                        }
                    }
                }
            }
            lab.teardown()?;
            if case == Network::Flood {
                flood = cell.roomcast;
            }
            let over = |x: Option<f64>, y: Option<f64>| x.zip(y).map(|(x, y)| x / y);
            println!(
                "| {round} | {case} | {} | {} | {} | {} | {} | {} | {:.2} | {} |",
                fmt(cell.udpcast, 2),
                fmt(cell.roomcast, 2),
                fmt(over(cell.roomcast, cell.udpcast), 3),
                fmt(over(cell.roomcast, flood), 3),
                fmt(cell.reached, 2),
                fmt(over(cell.reached, flood), 3),
                busy,
                load()
            );
            table[k].push(cell);
        }
    }
    println!();
    println!(
        "medians over {} round(s), ratios taken within each round:",
        args.rounds
    );
    println!(
        "| network | udpcast s | roomcast s | x udpcast | x own snooping-off | reached x own snooping-off |"
    );
    println!("|---|---|---|---|---|---|");
    let flood_of = |round: usize| table[0].get(round).and_then(|c| c.roomcast);
    for (k, case) in cases.iter().enumerate() {
        let cells = &table[k];
        let col = |f: &dyn Fn(usize, &Cell) -> Option<f64>| {
            median(
                cells
                    .iter()
                    .enumerate()
                    .filter_map(|(r, c)| f(r, c))
                    .collect(),
            )
        };
        println!(
            "| {case} | {} | {} | {} | {} | {} |",
            fmt(col(&|_, c| c.udpcast), 2),
            fmt(col(&|_, c| c.roomcast), 2),
            fmt(
                col(&|_, c| c.roomcast.zip(c.udpcast).map(|(a, b)| a / b)),
                3
            ),
            fmt(
                col(&|r, c| c.roomcast.zip(flood_of(r)).map(|(a, b)| a / b)),
                3
            ),
            fmt(
                col(&|r, c| c.reached.zip(flood_of(r)).map(|(a, b)| a / b)),
                3
            ),
        );
    }
    println!("load average {} at end", load());
    if failures > 0 {
        return Err(format!("{failures} roomcast cell(s) failed").into());
    }
    Ok(())
}
