//! The region benchmark (issue 18, docs/PERFORMANCE.md): a three-node Garage cluster publishes v1 then
//! v2 of a synthetic master; N school stores pull v1 then v2 from it. All figures come from one run.
//!
//! ```text
//! cargo run --release --example bench_region -- [--schools 20] [--mib 2048]   # as root, Garage built
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
const JOBS: usize = 8;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// Deterministic master: per MiB, a mix of text-like (compressible), random and zero regions;
/// `changed` is the share of MiB blocks v2 rewrites.
fn make_master(path: &Path, mib: u64, version: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; 1 << 20];
    for b in 0..mib {
        // v2 rewrites one MiB block in 16 (6 %), the rest as v1.
        let base = if version == 2 && b % 16 == 5 {
            b + 1_000_000
        } else {
            b
        };
        let seed = base * 2654435761 + 1;
        let mut x = seed;
        let kind = b % 8;
        for (i, byte) in block.iter_mut().enumerate() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = match kind {
                0 => 0,
                1 | 2 => x as u8,
                _ => b"the region's qualified base image, "[(i + (x as usize % 5)) % 35],
            };
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
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
        jobs: JOBS,
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
    c.env("RCLONE_CONFIG_GARAGE_TYPE", "s3")
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
        "{c:?}: {}{}",
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
    let bin = garage::garage_bin().expect("Garage is not installed: run tests/setup.sh");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-region");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let (v1, v2) = (root.join("v1.img"), root.join("v2.img"));
    make_master(&v1, mib, 1);
    make_master(&v2, mib, 2);

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
    let opts = CaptureOptions::default();
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
        let store = Store::open_or_create(&root.join(format!("school{i}"))).unwrap();
        store.trust(&pub_file).unwrap();
        let p1 = pull(&cluster, &reader, &store, &sne, &id1);
        let p2 = pull(&cluster, &reader, &store, &sne, &id2);
        eprintln!(
            "school {i}: v1 {:.1} s {} B payload / {} B lacked; v2 {:.1} s {} / {}",
            p1.secs, p1.payload, p1.lacked, p2.secs, p2.payload, p2.lacked
        );
        pulls.push((p1, p2));
    }

    // Whole zstd files in the same bucket.
    let mut zst = Vec::new();
    for (v, name) in [(&v1, "v1.img.zst"), (&v2, "v2.img.zst")] {
        let out = root.join(name);
        ok(Command::new("zstd")
            .args(["-q", "-3", "-f", "-o"])
            .arg(&out)
            .arg(v));
        zst.push(std::fs::metadata(&out).unwrap().len());
        ok(rclone(&cluster, &writer)
            .args(["copyto", "--s3-no-check-bucket"])
            .arg(&out)
            .arg(format!("garage:{BUCKET}/bench-whole/{name}")));
    }

    // rsync of the raw file: v1 onto nothing, then v2 onto v1.
    let dest = root.join("rsync-dest.img");
    let rsync_v1 = rsync_bytes(&v1, &dest);
    let rsync_v2 = rsync_bytes(&v2, &dest);

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
    let rclone_dir = root.join("rclone-copy");
    let t = Instant::now();
    ok(rclone(&cluster, &reader)
        .args([
            "copy",
            "--transfers",
            &JOBS.to_string(),
            "--checkers",
            &JOBS.to_string(),
        ])
        .arg("--files-from-raw")
        .arg(&list_file)
        .arg(format!("garage:{BUCKET}/{}", url.chunks_prefix()))
        .arg(&rclone_dir));
    let rclone_secs = t.elapsed().as_secs_f64();
    let fresh = Store::open_or_create(&root.join("timed-school")).unwrap();
    fresh.trust(&pub_file).unwrap();
    let timed = pull(&cluster, &reader, &fresh, &sne, &id1);

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
    println!("region benchmark: {schools} schools, master {mib} MiB, 1 MiB chunks, {JOBS} jobs");
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
        "whole zstd files from the bucket: v1 {:.1} MB + v2 {:.1} MB = {:.1} MB ({:.2}x the pulls' link bytes; v2 alone {:.1}x)",
        mb(zst[0] as f64),
        mb(zst[1] as f64),
        mb((zst[0] + zst[1]) as f64),
        (zst[0] + zst[1]) as f64 / wire,
        zst[1] as f64 / v2_wire
    );
    println!(
        "rsync -z of the raw file: v1 {:.1} MB, v2 onto v1 {:.1} MB = {:.1} MB ({:.2}x; v2 alone {:.2}x)",
        mb(rsync_v1 as f64),
        mb(rsync_v2 as f64),
        mb((rsync_v1 + rsync_v2) as f64),
        (rsync_v1 + rsync_v2) as f64 / wire,
        rsync_v2 as f64 / v2_wire
    );
    println!(
        "time of one v1 pull into an empty store {:.2} s, rclone copy of the same {} objects {:.2} s: {:.2}x",
        timed.secs,
        seen.len(),
        rclone_secs,
        timed.secs / rclone_secs
    );
    drop(cluster);
}
