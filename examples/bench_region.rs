//! The region benchmark (issue 18, docs/PERFORMANCE.md): a three-node Garage cluster publishes v1 then
//! v2 of a synthetic master; N school stores pull v1 then v2 from it. All figures come from one run.
//!
//! ```text
//! cargo run --release --example bench_region -- [--schools 20] [--mib 2048] [--chunk-kib 1024] [--jobs N]   # as root, Garage built
//! ```
//!
//! Reports, per school and pull: payload bytes received and bytes on the school's link (the veth's
//! counters) against the compressed bytes of the distinct chunks the school lacked (target ≤ 1.02×);
//! the same against downloading the zstd-compressed image file whole from the same bucket, and against
//! rsync of the raw image file (v1 whole, then v2 onto v1, `rsync -z --no-whole-file --stats`); and the
//! time of one pull of v1 into an empty store against `rclone copy` of the same chunk objects from the
//! same cluster with the same parallelism (target ≤ 1.1×).

use roomcast::region::{self, Credentials, Remote, RemoteOptions};
use roomcast::secrets::Secret;
use roomcast_lab::dirty_disk::file_content;
use roomcast_lab::garage::{self, Cluster, Key};
use roomcast_store::Store;
use roomcast_store::capture::{self, CaptureOptions};
use roomcast_store::keys::{self, Signer};
use roomcast_store::manifest::{ImageId, ImageLabel};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const BUCKET: &str = "region-images";
const URL: &str = "s3://region-images/bench";

/// Chunks in flight (`--jobs`, default `region::auto_jobs` of the chunk size, as `image pull`),
/// rclone's `--transfers` too.
fn jobs() -> usize {
    let chunk = arg("--chunk-kib", 1024) as u32 * 1024;
    arg("--jobs", region::auto_jobs(chunk) as u64) as usize
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// What v2 of the master changes from v1 (docs/PERFORMANCE.md): one region rewritten whole (a
/// software update: MiB blocks from 30 % of the disk, 1/16 of it), new files in free space (MiB
/// blocks from 80 %, 1/16 of the disk) and `mib / 8` scattered 4 KiB writes in the used part
/// (metadata, logs), at deterministic offsets.
struct Changes {
    rewritten: std::ops::Range<u64>,
    added: std::ops::Range<u64>,
    /// Byte offsets of the 4 KiB writes, sorted.
    writes: Vec<u64>,
}

/// MiB blocks of v1 that hold data: the first 80 %; the rest is free space (zeros).
fn used(mib: u64) -> u64 {
    mib * 4 / 5
}

fn changes(mib: u64) -> Changes {
    let n = (mib / 16).max(1);
    let from = mib * 3 / 10;
    let mut x = 0x9e37_79b9_7f4a_7c15;
    let mut writes: Vec<u64> = (0..(mib / 8).max(1))
        .map(|_| {
            x = xorshift(x);
            (x % (used(mib) << 20)) & !4095
        })
        .collect();
    writes.sort_unstable();
    Changes {
        rewritten: from..from + n,
        added: used(mib)..(used(mib) + n).min(mib),
        writes,
    }
}

/// One MiB block of a used file system: files of 4–256 KiB, each random (already compressed
/// data) or text-like (`dirty_disk::file_content`, the dirty disks' generator), one in five a
/// zero gap (a deleted file).
fn block(seed: u64, buf: &mut [u8]) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut at = 0;
    while at < buf.len() {
        x = xorshift(x);
        let len = ((4096usize) << (x % 7)).min(buf.len() - at);
        let part = &mut buf[at..at + len];
        if x.is_multiple_of(5) {
            part.fill(0);
        } else {
            part.copy_from_slice(&file_content(x, len));
        }
        at += len;
    }
}

/// Deterministic master of `mib` MiB, version 1 or 2 ([`Changes`]).
fn make_master(path: &Path, mib: u64, version: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let ch = changes(mib);
    let v2 = version == 2;
    let mut buf = vec![0u8; 1 << 20];
    for b in 0..mib {
        let new = v2 && (ch.rewritten.contains(&b) || ch.added.contains(&b));
        if b < used(mib) || new {
            block(if new { b + (1 << 40) } else { b }, &mut buf);
        } else {
            buf.fill(0);
        }
        if v2 {
            let (lo, hi) = (b << 20, (b + 1) << 20);
            let first = ch.writes.partition_point(|&w| w < lo);
            for &w in ch.writes[first..].iter().take_while(|&&w| w < hi) {
                let at = (w - lo) as usize;
                buf[at..at + 4096].copy_from_slice(&file_content(w ^ (1 << 41), 4096));
            }
        }
        f.write_all(&buf).unwrap();
    }
    f.flush().unwrap();
}

/// Free bytes of the file system holding `dir`.
fn free_bytes(dir: &Path) -> u64 {
    let out = ok(Command::new("df").args(["-B1", "--output=avail"]).arg(dir));
    out.lines().nth(1).unwrap().trim().parse().unwrap()
}

/// The benchmark stops rather than fill the shared disk (at least 15 GB must stay free).
fn check_disk(dir: &Path) {
    let free = free_bytes(dir);
    assert!(
        free >= 15_000_000_000,
        "only {:.1} GB free on the disk of {}: stopping",
        free as f64 / 1e9,
        dir.display()
    );
}

struct Pull {
    secs: f64,
    lacked: u64,
    payload: u64,
    wire: u64,
    requests: u64,
}

fn lacked_bytes(store: &Store, m: &roomcast_store::manifest::Manifest) -> u64 {
    let mut seen = HashSet::new();
    m.chunks
        .iter()
        .filter_map(|c| Some((c.sha256?, u64::from(c.compressed_len?))))
        .filter(|(h, len)| seen.insert(*h) && store.chunk_len(h) != Some(*len))
        .map(|(_, len)| len)
        .sum()
}

fn veth_rx(cluster: &Cluster) -> u64 {
    // The host side of the school's veth transmits what the school receives.
    let p = format!(
        "/sys/class/net/{}/statistics/tx_bytes",
        cluster.school().host_if()
    );
    std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
}

fn remote(cluster: &Cluster, key: &Key) -> Remote {
    let opts = RemoteOptions {
        endpoint: cluster.endpoint(0),
        region: "garage".into(),
        credentials: Credentials {
            key_id: Secret::new(key.id.clone()),
            secret: Secret::new(key.secret.clone()),
        },
        jobs: jobs(),
        max_rate: None,
    };
    Remote::connect(URL.parse().unwrap(), &opts).unwrap()
}

fn pull(cluster: &Cluster, key: &Key, store: &Store, region_store: &Store, id: &ImageId) -> Pull {
    let m = region_store.open_verified(id).unwrap();
    let lacked = lacked_bytes(store, &m);
    let r = remote(cluster, key);
    let before = veth_rx(cluster);
    let t = Instant::now();
    let store2 = store.clone();
    let hex = id.to_hex();
    let report = cluster
        .school()
        .run(move || region::pull(&store2, &r, &hex, &|_| {}))
        .unwrap()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    Pull {
        secs,
        lacked,
        payload: report.bytes_in,
        wire: veth_rx(cluster) - before,
        requests: report.requests,
    }
}

/// rclone's environment for the cluster (credentials in the environment, never in argv).
fn rclone(cluster: &Cluster, key: &Key) -> Command {
    let mut c = cluster.school().command("rclone");
    // The endpoint is plain HTTP in the lab; rclone's S3 SDK fails on a CA bundle named here.
    c.env_remove("AWS_CA_BUNDLE")
        .env("RCLONE_CONFIG_GARAGE_TYPE", "s3")
        .env("RCLONE_CONFIG_GARAGE_PROVIDER", "Other")
        .env("RCLONE_CONFIG_GARAGE_ENDPOINT", cluster.endpoint(0))
        .env("RCLONE_CONFIG_GARAGE_REGION", "garage")
        .env("RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE", "true")
        .env("RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID", &key.id)
        .env("RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY", &key.secret);
    c
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        // The program and its arguments only: the environment holds the S3 secret.
        "{:?} {:?}: {}{}",
        c.get_program(),
        c.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn rsync_bytes(src: &Path, dest: &Path) -> u64 {
    let out = ok(Command::new("rsync")
        .args(["-z", "--no-whole-file", "--inplace", "--stats"])
        .arg(src)
        .arg(dest));
    let field = |name: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| {
                v.split_whitespace()
                    .next()
                    .unwrap()
                    .replace(',', "")
                    .parse()
                    .unwrap()
            })
            .unwrap_or_else(|| panic!("no {name} in rsync --stats"))
    };
    field("Total bytes sent: ") + field("Total bytes received: ")
}

fn main() {
    let schools = arg("--schools", 20) as usize;
    let mib = arg("--mib", 2048);
    let chunk_kib = arg("--chunk-kib", 1024);
    let load_start = loadavg();
    let bin = garage::garage_bin().expect("Garage is not installed: run tests/setup.sh");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-region");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let (v1, v2) = (root.join("v1.img"), root.join("v2.img"));
    check_disk(&root);
    make_master(&v1, mib, 1);
    make_master(&v2, mib, 2);
    let ch = changes(mib);
    eprintln!(
        "master: {mib} MiB, v1 data in the first {} MiB; v2 rewrites MiB {:?}, adds MiB {:?}, {} scattered 4 KiB writes",
        used(mib),
        ch.rewritten,
        ch.added,
        ch.writes.len()
    );

    // The region's store and key.
    let (_, pub_file, _) = keys::generate_files(&root.join("keys")).unwrap();
    let signer = Signer::load(&root.join("keys/signer.key")).unwrap();
    let sne = Store::open_or_create(&root.join("sne")).unwrap();
    sne.trust(&pub_file).unwrap();
    let label = |v: &str| ImageLabel {
        name: "bench-master".into(),
        version: v.into(),
        profile: None,
        captured_by: "bench".into(),
        captured_at: "2026-12-07T00:00:00Z".into(),
    };
    let opts = CaptureOptions {
        chunk_size: roomcast_store::chunk::ChunkSize::new(chunk_kib as u32 * 1024)
            .expect("--chunk-kib: a chunk size the store accepts"),
        ..CaptureOptions::default()
    };
    let id1 = capture::capture(&sne, &v1, label("1"), &signer, &opts, &|_| {})
        .unwrap()
        .id;
    let id2 = capture::capture(&sne, &v2, label("2"), &signer, &opts, &|_| {})
        .unwrap()
        .id;

    let cluster = Cluster::start(&bin, &root.join("garage"), "100G").unwrap();
    let writer = cluster.bucket_with_key(BUCKET, "sne", true).unwrap();
    let reader = cluster.bucket_with_key(BUCKET, "schools", false).unwrap();
    for id in [id1, id2] {
        let (s, r, hex) = (sne.clone(), remote(&cluster, &writer), id.to_hex());
        cluster
            .school()
            .run(move || region::push(&s, &r, &hex, &|_| {}))
            .unwrap()
            .unwrap();
    }

    // The schools.
    let mut pulls = Vec::new();
    for i in 0..schools {
        check_disk(&root);
        let dir = root.join(format!("school{i}"));
        let store = Store::open_or_create(&dir).unwrap();
        store.trust(&pub_file).unwrap();
        let p1 = pull(&cluster, &reader, &store, &sne, &id1);
        let p2 = pull(&cluster, &reader, &store, &sne, &id2);
        eprintln!(
            "school {i}: v1 {:.1} s {} B payload / {} B lacked; v2 {:.1} s {} / {}",
            p1.secs, p1.payload, p1.lacked, p2.secs, p2.payload, p2.lacked
        );
        pulls.push((p1, p2));
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // Whole zstd files in the same bucket: uploaded, downloaded by the school (its link's bytes
    // counted as for the pulls), then removed (disk use stays bounded).
    let mut zst = Vec::new();
    let mut zst_wire = Vec::new();
    for (v, name) in [(&v1, "v1.img.zst"), (&v2, "v2.img.zst")] {
        check_disk(&root);
        let out = root.join(name);
        ok(Command::new("zstd")
            .args(["-q", "-3", "-f", "-o"])
            .arg(&out)
            .arg(v));
        zst.push(std::fs::metadata(&out).unwrap().len());
        let object = format!("garage:{BUCKET}/bench-whole/{name}");
        ok(rclone(&cluster, &writer)
            .args(["copyto", "--s3-no-check-bucket"])
            .arg(&out)
            .arg(&object));
        std::fs::remove_file(&out).unwrap();
        let before = veth_rx(&cluster);
        let status = rclone(&cluster, &reader)
            .arg("cat")
            .arg(&object)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "rclone cat {object}: {status}");
        zst_wire.push(veth_rx(&cluster) - before);
        ok(rclone(&cluster, &writer).arg("deletefile").arg(&object));
    }

    // rsync of the raw file: v1 onto nothing, then v2 onto v1.
    let dest = root.join("rsync-dest.img");
    let rsync_v1 = rsync_bytes(&v1, &dest);
    let rsync_v2 = rsync_bytes(&v2, &dest);
    // The raw files are not needed any more (disk use stays bounded).
    for f in [&v1, &v2, &dest] {
        std::fs::remove_file(f).unwrap();
    }

    // Time: one pull of v1 into an empty store against rclone copy of the same chunk objects.
    let m1 = sne.open_verified(&id1).unwrap();
    let url: region::RemoteUrl = URL.parse().unwrap();
    let prefix = format!("{}/", url.chunks_prefix());
    let mut seen = HashSet::new();
    let list: String = m1
        .chunks
        .iter()
        .filter_map(|c| c.sha256)
        .filter(|h| seen.insert(*h))
        .map(|h| format!("{}\n", url.chunk_key(&h).strip_prefix(&prefix).unwrap()))
        .collect();
    let list_file = root.join("v1-chunks.txt");
    std::fs::write(&list_file, list).unwrap();
    // Alternated, twice, so that neither side alone meets a warm cache.
    let rclone_dir = root.join("rclone-copy");
    let mut timings = Vec::new();
    for round in 0..2 {
        check_disk(&root);
        let t = Instant::now();
        ok(rclone(&cluster, &reader)
            .args([
                "copy",
                "--transfers",
                &jobs().to_string(),
                "--checkers",
                &jobs().to_string(),
            ])
            .arg("--files-from-raw")
            .arg(&list_file)
            .arg(format!("garage:{BUCKET}/{}", url.chunks_prefix()))
            .arg(&rclone_dir));
        let rclone_secs = t.elapsed().as_secs_f64();
        std::fs::remove_dir_all(&rclone_dir).unwrap();
        let dir = root.join("timed-school");
        let fresh = Store::open_or_create(&dir).unwrap();
        fresh.trust(&pub_file).unwrap();
        let timed = pull(&cluster, &reader, &fresh, &sne, &id1);
        drop(fresh);
        std::fs::remove_dir_all(&dir).unwrap();
        eprintln!(
            "timing round {round}: rclone {rclone_secs:.2} s, pull {:.2} s",
            timed.secs
        );
        timings.push((timed.secs, rclone_secs));
    }

    // Figures.
    let n = pulls.len() as f64;
    let avg = |f: &dyn Fn(&(Pull, Pull)) -> f64| pulls.iter().map(f).sum::<f64>() / n;
    let lacked = avg(&|(a, b)| (a.lacked + b.lacked) as f64);
    let payload = avg(&|(a, b)| (a.payload + b.payload) as f64);
    let wire = avg(&|(a, b)| (a.wire + b.wire) as f64);
    let v2_lacked = avg(&|(_, b)| b.lacked as f64);
    let v2_payload = avg(&|(_, b)| b.payload as f64);
    let v2_wire = avg(&|(_, b)| b.wire as f64);
    let requests = avg(&|(a, b)| (a.requests + b.requests) as f64);
    let mb = |b: f64| b / 1e6;
    println!(
        "region benchmark: {schools} schools, master {mib} MiB, {chunk_kib} KiB chunks, {} jobs; load average at the start {load_start}, at the end {}",
        jobs(),
        loadavg()
    );
    println!(
        "per school, v1 then v2: lacked {:.1} MB, payload {:.1} MB ({:.4}x), on the link {:.1} MB ({:.4}x), {:.0} requests",
        mb(lacked),
        mb(payload),
        payload / lacked,
        mb(wire),
        wire / lacked,
        requests
    );
    println!(
        "v2 alone: lacked {:.1} MB, payload {:.1} MB ({:.4}x), on the link {:.1} MB ({:.4}x)",
        mb(v2_lacked),
        mb(v2_payload),
        v2_payload / v2_lacked,
        mb(v2_wire),
        v2_wire / v2_lacked
    );
    println!(
        "whole zstd files from the bucket: v1 {:.1} MB + v2 {:.1} MB = {:.1} MB, on the link {:.1} MB ({:.2}x the pulls' link bytes; v2 alone {:.2}x)",
        mb(zst[0] as f64),
        mb(zst[1] as f64),
        mb((zst[0] + zst[1]) as f64),
        mb((zst_wire[0] + zst_wire[1]) as f64),
        (zst_wire[0] + zst_wire[1]) as f64 / wire,
        zst_wire[1] as f64 / v2_wire
    );
    println!(
        "rsync -z of the raw file: v1 {:.1} MB, v2 onto v1 {:.1} MB = {:.1} MB ({:.2}x; v2 alone {:.2}x)",
        mb(rsync_v1 as f64),
        mb(rsync_v2 as f64),
        mb((rsync_v1 + rsync_v2) as f64),
        (rsync_v1 + rsync_v2) as f64 / wire,
        rsync_v2 as f64 / v2_wire
    );
    for (round, (pull_secs, rclone_secs)) in timings.iter().enumerate() {
        println!(
            "time of one v1 pull into an empty store {pull_secs:.2} s, rclone copy of the same {} objects {rclone_secs:.2} s: {:.3}x (round {round})",
            seen.len(),
            pull_secs / rclone_secs
        );
    }
    drop(cluster);
    std::fs::remove_dir_all(&root).unwrap();
}
