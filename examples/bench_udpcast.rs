//! Multicast imaging benchmark in the virtual room: every contender delivers the same random image
//! from the server to N PCs over rate-limited links, with independent loss per PC, and every copy
//! is checked bit for bit. Today's contender is Debian's udpcast (the reference); roomcast's own
//! sender is added to `contenders()` and then measured side by side in the same run.
//!
//! ```text
//! sudo cargo run --release --example bench_udpcast -- --pcs 1,3,10 --loss 0,1,5 --mib 256 --mbit 200
//! ```
//!
//! Needs root, iproute2, nftables and udpcast. A run killed with Ctrl-C leaves its lab behind:
//! `roomcast lab cleanup --stale` removes it.

use clap::Parser;
use roomcast::lab::bench::{self, CaseResult, Contender, Udpcast};
use roomcast::lab::{Lab, Tbf};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
struct Args {
    /// Room sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,3,10")]
    pcs: Vec<usize>,
    /// Loss per PC in percent, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1,5")]
    loss: Vec<u8>,
    /// Image size in MiB (random, incompressible).
    #[arg(long, default_value_t = 256)]
    mib: u64,
    /// Link rate of every veth, both ends, in Mbit/s.
    #[arg(long, default_value_t = 200)]
    mbit: u64,
    /// Where the image and the PCs' copies go (/dev/shm keeps disk writes out of the figures,
    /// but holds N + 1 copies in RAM).
    #[arg(long, default_value = "/tmp")]
    dir: PathBuf,
}

/// Everything measured side by side. The first one is the reference for the "x ref" column.
fn contenders() -> Vec<Box<dyn Contender>> {
    vec![Box::new(Udpcast)]
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_udpcast: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let work = tempfile::Builder::new()
        .prefix("roomcast-bench-")
        .tempdir_in(&args.dir)?;
    let image = work.path().join("image.bin");
    bench::random_image(&image, args.mib << 20)?;
    let sha = bench::sha256_file(&image)?;
    let tbf = Tbf::mbit(args.mbit);
    println!(
        "image {} MiB random, links {} Mbit/s tbf (both ends), line-rate time {:.2} s",
        args.mib,
        args.mbit,
        tbf.line_rate_secs(args.mib << 20)
    );
    println!(
        "| contender | PCs | loss % | end to end s | image Mbit/s | x line-rate time | x ref |"
    );
    println!("|---|---|---|---|---|---|---|");
    let contenders = contenders();
    for &n in &args.pcs {
        let setup = std::time::Instant::now();
        let lab = Lab::builder().pcs(n).rate(tbf).build()?;
        eprintln!(
            "lab {} with {n} PCs up in {:.2} s",
            lab.prefix(),
            setup.elapsed().as_secs_f64()
        );
        for &loss in &args.loss {
            for pc in lab.pcs() {
                if loss == 0 {
                    lab.clear_loss(pc)?;
                } else {
                    lab.set_loss(pc, loss, 9000..=9099)?;
                }
            }
            let mut reference: Option<CaseResult> = None;
            for c in &contenders {
                let r = bench::run_case(c.as_ref(), &lab, &image, &sha, work.path(), loss)?;
                let x_ref = reference
                    .as_ref()
                    .map(|f| r.elapsed.as_secs_f64() / f.elapsed.as_secs_f64());
                println!(
                    "| {} | {} | {} | {:.2} | {:.1} | {:.3} | {} |",
                    r.contender,
                    r.pcs,
                    r.loss_percent,
                    r.elapsed.as_secs_f64(),
                    r.throughput_mbit(),
                    r.ratio_to_line_rate().unwrap_or(f64::NAN),
                    x_ref.map_or("ref".to_owned(), |x| format!("{x:.3}")),
                );
                reference.get_or_insert(r);
            }
        }
        lab.teardown()?;
    }
    Ok(())
}
