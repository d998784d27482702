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
use roomcast_lab::bench::{self, CaseResult, Contender, Udpcast, UnicastTcp};
use roomcast_lab::{Lab, Tbf};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
struct Args {
    /// Room sizes, loss, image size, link rate.
    #[command(flatten)]
    case: bench::CaseArgs,
    /// Also measure unicast imaging (every PC pulls its own copy over TCP; unaffected by the UDP
    /// loss rules).
    #[arg(long)]
    unicast: bool,
    /// Where the image and the PCs' copies go (/dev/shm keeps disk writes out of the figures,
    /// but holds N + 1 copies in RAM).
    #[arg(long, default_value = "/tmp")]
    dir: PathBuf,
}

/// Everything measured side by side. The first one is the reference for the "x ref" column.
fn contenders(args: &Args) -> Vec<Box<dyn Contender>> {
    let mut c: Vec<Box<dyn Contender>> = vec![Box::new(Udpcast)];
    if args.unicast {
        c.push(Box::new(UnicastTcp));
    }
    c
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
    bench::random_image(&image, args.case.mib << 20)?;
    let sha = bench::sha256_file(&image)?;
    let tbf = Tbf::mbit(args.case.mbit);
    println!(
        "image {} MiB random, links {} Mbit/s tbf (both ends), line-rate time {:.2} s",
        args.case.mib,
        args.case.mbit,
        tbf.line_rate_secs(args.case.mib << 20)
    );
    println!(
        "| contender | PCs | loss % | end to end s | image Mbit/s | x line-rate time | x ref |"
    );
    println!("|---|---|---|---|---|---|---|");
    let contenders = contenders(args);
    let mut failures = 0;
    for &n in &args.case.pcs {
        let setup = std::time::Instant::now();
        let lab = Lab::builder().pcs(n).rate(tbf).build()?;
        eprintln!(
            "lab {} with {n} PCs up in {:.2} s",
            lab.prefix(),
            setup.elapsed().as_secs_f64()
        );
        for &loss in &args.case.loss {
            for pc in lab.pcs() {
                if loss == 0 {
                    lab.clear_loss(pc)?;
                } else {
                    lab.set_loss(pc, loss, bench::PORTS)?;
                }
            }
            let mut reference: Option<CaseResult> = None;
            for c in &contenders {
                let r = match bench::run_case(c.as_ref(), &lab, &image, &sha, work.path(), loss) {
                    Ok(r) => r,
                    // One failed case (a hang, a corrupt copy) is a result, not the end of the run.
                    Err(e) => {
                        println!("| {} | {n} | {loss} | failed: {e} | | | |", c.name());
                        failures += 1;
                        continue;
                    }
                };
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
    if failures > 0 {
        return Err(format!("{failures} case(s) failed").into());
    }
    Ok(())
}
