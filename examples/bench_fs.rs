//! File-system-aware images against partclone (issue 14), side by side in one run, on a dirty disk
//! built by `roomcast_lab::dirty_disk`: GPT, ESP FAT32, NTFS (with a pagefile.sys), ext4, each
//! filled to 85 % with files (half random, half text) then 80 % of the files deleted; nothing
//! trimmed, so the free space holds the deleted files.
//!
//! ```text
//! cargo run --release --example bench_fs [SIZE_MIB]   # as root; default 2048; the disk is built
//!                                                     # once into target/bench-data/fs/
//! ```
//!
//! For roomcast (`capture`, file-system-aware, into an empty store, best of 2) and for
//! `partclone.<fs> -c -s <partition> -O <file>` of each partition (each partition extracted to its
//! own file first, best of 2), plus `zstd -3 -T0` of partclone's images: stored bytes, bytes a
//! deploy sends, bytes written on a PC, capture time; then the issue's targets as ratios.

use roomcast_lab::dirty_disk::{self, DirtySpec, DiskPart, FsKind};
use roomcast_store::Store;
use roomcast_store::capture::{self, CaptureOptions};
use roomcast_store::keys::{self, Signer};
use roomcast_store::manifest::ImageLabel;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const ROUNDS: usize = 2;
const MIB: u64 = 1 << 20;

fn main() {
    let size_mib: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("SIZE_MIB"))
        .unwrap_or(2048);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("target/bench-data/fs");
    fs::create_dir_all(&data).unwrap();
    let disk = data.join(format!("dirty-{size_mib}.img"));
    let marker = data.join(format!("dirty-{size_mib}.parts"));
    let parts = match read_marker(&marker) {
        Some(p) if disk.exists() => p,
        _ => {
            eprintln!("building {} ({size_mib} MiB)...", disk.display());
            let t = Instant::now();
            let d = dirty_disk::build(&disk, &DirtySpec::sized(size_mib * MIB)).unwrap();
            eprintln!("built in {:.0} s: {:?}", t.elapsed().as_secs_f64(), d.stats);
            write_marker(&marker, &d.parts);
            d.parts
        }
    };
    let disk_size = fs::metadata(&disk).unwrap().len();

    // roomcast
    let run = data.join("run");
    let _ = fs::remove_dir_all(&run);
    let (_, pub_file, _) = keys::generate_files(&run.join("keys")).unwrap();
    let signer = Signer::load(&run.join("keys/signer.key")).unwrap();
    let label = ImageLabel {
        name: "bench-fs".into(),
        version: "1".into(),
        profile: None,
        captured_by: "bench".into(),
        captured_at: "2026-12-07T00:00:00Z".into(),
    };
    let mut rc_secs = f64::MAX;
    let mut report = None;
    for round in 0..ROUNDS {
        let dir = run.join("store");
        let _ = fs::remove_dir_all(&dir);
        let s = Store::open_or_create(&dir).unwrap();
        s.trust(&pub_file).unwrap();
        warm(&disk);
        let t = Instant::now();
        let r = capture::capture(
            &s,
            &disk,
            label.clone(),
            &signer,
            &CaptureOptions::default(),
            &|_| {},
        )
        .unwrap();
        let secs = t.elapsed().as_secs_f64();
        rc_secs = rc_secs.min(secs);
        eprintln!("round {round}: roomcast capture {secs:.2} s");
        report = Some((s, r));
    }
    let (store, r) = report.unwrap();
    let m = store.open_verified(&r.id).unwrap();
    let rc_used = m.used_bytes();
    let rc_stored = dir_bytes(&store.root().join("chunks"));
    let rc_wire = m.stored_bytes();
    let used_compressed = used_bytes_compressed(&disk, &m);

    // partclone, each partition from its own file
    let mut pc_secs_total = 0.0;
    let mut pc_zstd_secs_total = 0.0;
    let mut rows = Vec::new();
    let (mut pc_bytes, mut pc_zstd) = (0u64, 0u64);
    for p in parts.iter().filter(|p| tool(p.fs).is_some()) {
        let tool = tool(p.fs).unwrap();
        let part = data.join(format!("part{}.img", p.number));
        if fs::metadata(&part).map(|m| m.len()).ok() != Some(p.len) {
            dirty_disk::extract(&disk, p, &part).unwrap();
        }
        let out = data.join(format!("part{}.pc", p.number));
        let mut best = f64::MAX;
        for _ in 0..ROUNDS {
            let _ = fs::remove_file(&out);
            warm(&part);
            let t = Instant::now();
            let o = Command::new(tool)
                .args(["-c", "-q", "-s"])
                .arg(&part)
                .arg("-O")
                .arg(&out)
                .arg("-L")
                .arg(data.join("partclone.log"))
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{tool}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            best = best.min(t.elapsed().as_secs_f64());
        }
        let img = fs::metadata(&out).unwrap().len();
        let t = Instant::now();
        let z = zstd_size(&out);
        let zsecs = t.elapsed().as_secs_f64();
        pc_secs_total += best;
        pc_zstd_secs_total += zsecs;
        pc_bytes += img;
        pc_zstd += z;
        let rec = m
            .layout
            .as_ref()
            .and_then(|l| l.partitions.iter().find(|x| x.number == p.number));
        rows.push(format!(
            "| {} {} | {} | {} | {} | {} |",
            p.number,
            rec.map_or("?".to_string(), |r| r.fs.clone()),
            mib(p.len),
            rec.map_or("?".into(), |r| mib(r.used_bytes)),
            mib(img),
            mib(z)
        ));
        eprintln!(
            "{tool} partition {}: {best:.2} s, {} ({} zstd)",
            p.number,
            mib(img),
            mib(z)
        );
    }
    let _ = fs::remove_dir_all(&run);

    println!(
        "disk {} ({}), chunk 1 MiB, zstd 3",
        disk.display(),
        mib(disk_size)
    );
    println!();
    println!("| partition | size | roomcast used | partclone image | partclone + zstd -3 |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    if let Some(l) = &m.layout {
        for p in &l.partitions {
            for d in &p.discarded {
                println!(
                    "(partition {}: {} discarded, {})",
                    p.number,
                    d.name,
                    mib(d.bytes)
                );
            }
            if let Some(w) = &p.whole {
                println!("(partition {} taken whole: {w})", p.number);
            }
        }
    }
    println!();
    println!("| figure | roomcast | partclone | partclone + zstd -3 |");
    println!("|---|---|---|---|");
    println!(
        "| stored bytes | {} | {} | {} |",
        mib(rc_stored),
        mib(pc_bytes),
        mib(pc_zstd)
    );
    println!(
        "| bytes a deploy sends | {} | {} | {} |",
        mib(rc_wire),
        mib(pc_bytes),
        mib(pc_zstd)
    );
    println!(
        "| bytes written on a PC | {} | {} (image) | |",
        mib(rc_used),
        mib(pc_bytes)
    );
    println!(
        "| capture time | {rc_secs:.2} s | {pc_secs_total:.2} s | {:.2} s |",
        pc_secs_total + pc_zstd_secs_total
    );
    println!(
        "| used bytes compressed (zstd -3 of the used bytes, one stream) | {} | | |",
        mib(used_compressed)
    );
    println!();
    let check = |name: &str, v: f64, max: f64| {
        println!(
            "{name}: {v:.3} (target <= {max}) {}",
            if v <= max { "MET" } else { "NOT MET" }
        );
    };
    check(
        "roomcast used / partclone image bytes",
        rc_used as f64 / pc_bytes as f64,
        1.02,
    );
    check(
        "roomcast stored / partclone+zstd -3",
        rc_stored as f64 / pc_zstd as f64,
        1.0,
    );
    check(
        "roomcast capture time / partclone's",
        rc_secs / pc_secs_total,
        1.0,
    );
    check(
        "roomcast wire / used bytes compressed",
        rc_wire as f64 / used_compressed as f64,
        1.05,
    );
    println!(
        "(whole disk {}; roomcast took {:.1} % of it)",
        mib(disk_size),
        100.0 * rc_used as f64 / disk_size as f64
    );
    let ranges: usize = m
        .chunks
        .iter()
        .filter_map(|c| c.used.as_ref())
        .map(Vec::len)
        .sum();
    println!(
        "(manifest {} bytes, {} used ranges over {} masked chunks, {} chunks with no used byte)",
        m.to_bytes().len(),
        ranges,
        m.chunks
            .iter()
            .filter(|c| c.used.as_ref().is_some_and(|u| !u.is_empty()))
            .count(),
        m.unused_chunks()
    );
}

fn tool(fs: FsKind) -> Option<&'static str> {
    match fs {
        FsKind::Fat32 => Some("partclone.fat32"),
        FsKind::Ntfs => Some("partclone.ntfs"),
        FsKind::Ext4 => Some("partclone.ext4"),
        _ => None,
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / MIB as f64)
}

/// Reads a file once so both contenders start from the page cache.
fn warm(p: &Path) {
    let mut f = fs::File::open(p).unwrap();
    let mut buf = vec![0u8; 4 << 20];
    while f.read(&mut buf).unwrap() > 0 {}
}

fn dir_bytes(p: &Path) -> u64 {
    let mut n = 0;
    for e in fs::read_dir(p).unwrap().flatten() {
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    n
}

/// `zstd -3 -T0` of a file: compressed size.
fn zstd_size(p: &Path) -> u64 {
    let o = Command::new("zstd")
        .args(["-3", "-T0", "-q", "-c"])
        .arg(p)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(o.status.success());
    o.stdout.len() as u64
}

/// Every used byte of the image, in disk order, through `zstd -3 -T0` as one stream: the floor a
/// deploy's wire bytes are measured against.
fn used_bytes_compressed(disk: &Path, m: &roomcast_store::manifest::Manifest) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut child = Command::new("zstd")
        .args(["-3", "-T0", "-q", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let counter = std::thread::spawn(move || {
        let mut n = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let k = out.read(&mut buf).unwrap();
            if k == 0 {
                return n;
            }
            n += k as u64;
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let f = fs::File::open(disk).unwrap();
    let mut buf = Vec::new();
    for c in &m.chunks {
        for u in c.used_ranges() {
            buf.resize(u.end - u.start, 0);
            f.read_exact_at(&mut buf, c.offset + u.start as u64)
                .unwrap();
            stdin.write_all(&buf).unwrap();
        }
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    counter.join().unwrap()
}

fn write_marker(p: &Path, parts: &[DiskPart]) {
    let s: String = parts
        .iter()
        .map(|p| format!("{} {:?} {} {}\n", p.number, p.fs, p.start, p.len))
        .collect();
    fs::write(p, s).unwrap();
}

fn read_marker(p: &Path) -> Option<Vec<DiskPart>> {
    let s = fs::read_to_string(p).ok()?;
    s.lines()
        .map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            let fs = match *w.get(1)? {
                "Fat32" => FsKind::Fat32,
                "Ntfs" => FsKind::Ntfs,
                "Ext4" => FsKind::Ext4,
                "Swap" => FsKind::Swap,
                _ => FsKind::Unknown,
            };
            Some(DiskPart {
                number: w.first()?.parse().ok()?,
                fs,
                start: w.get(2)?.parse().ok()?,
                len: w.get(3)?.parse().ok()?,
            })
        })
        .collect()
}
