//! Push, pull and list through the real binary against a real Garage cluster.

use super::cluster::{Started, any_file_contains, processes_with_in_argv, with_remote};
use crate::store::util::{Fixture, label, sparse_disk};
use roomcast_lab::garage::Key;
use roomcast_store::Store;
use roomcast_store::capture::{self, CaptureOptions};
use roomcast_store::chunk::ChunkSize;
use roomcast_store::manifest::ImageId;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BUCKET: &str = "region-images";
pub(super) const URL: &str = "s3://region-images/sti2d";
const CHUNK: u32 = 64 * 1024;

/// The region (SNE): a Garage cluster, its own store and signing key, a read-write key for itself
/// and a read-only key for the schools.
pub(super) struct Region {
    pub(super) cluster: Started,
    pub(super) sne: Fixture,
    pub(super) writer: Key,
    pub(super) reader: Key,
    /// Every output of roomcast in this test, for the no-secret check.
    outputs: std::cell::RefCell<Vec<String>>,
}

impl Region {
    fn start() -> Option<Region> {
        Self::start_with_room(0)
    }

    /// [`Region::start`], the lab also holding `room_pcs` PCs of a school's room.
    pub(super) fn start_with_room(room_pcs: usize) -> Option<Region> {
        let cluster = super::cluster::start_with_room(room_pcs)?;
        let writer = cluster
            .cluster
            .bucket_with_key(BUCKET, "sne", true)
            .unwrap();
        let reader = cluster
            .cluster
            .bucket_with_key(BUCKET, "schools", false)
            .unwrap();
        Some(Region {
            cluster,
            sne: Fixture::new(),
            writer,
            reader,
            outputs: Default::default(),
        })
    }

    /// A master disk of `mib` MiB, random (incompressible) data, captured in the SNE's store.
    pub(super) fn master(&self, name: &str, mib: u64, seed: u64) -> (PathBuf, ImageId) {
        let disk = self.sne.path(&format!("{name}.img"));
        sparse_disk(
            &disk,
            (mib + 1) << 20,
            &[(0, (mib << 20) as usize, seed | 1)],
        );
        (disk.clone(), self.capture(&disk, name))
    }

    pub(super) fn capture(&self, disk: &Path, name: &str) -> ImageId {
        let opts = CaptureOptions {
            chunk_size: ChunkSize::new(CHUNK).unwrap(),
            level: 3,
            workers: 2,
        };
        capture::capture(
            &self.sne.store,
            disk,
            label(name),
            &self.sne.signer,
            &opts,
            &|_| {},
        )
        .unwrap()
        .id
    }

    fn cmd(&self, key: &Key, store: &Path, args: &[&str]) -> Command {
        let mut c = super::cluster::roomcast(&self.cluster.cluster, key, args);
        c.env("ROOMCAST_STORE", store);
        c
    }

    fn run(&self, key: &Key, store: &Path, args: &[&str]) -> Output {
        let o = self.cmd(key, store, args).output().unwrap();
        self.outputs.borrow_mut().push(format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
        o
    }

    pub(super) fn push(&self, id: &ImageId) -> serde_json::Value {
        json(&self.run(
            &self.writer,
            self.sne.store.root(),
            &["image", "push", &id.to_hex(), "--to", URL, "--json"],
        ))
    }

    /// A school's store, trusting the region's key through `roomcast key trust`.
    fn school(&self, name: &str) -> PathBuf {
        let store = self.sne.path(name);
        let o = Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .args([
                "key",
                "trust",
                self.sne.pub_file.to_str().unwrap(),
                "--store",
            ])
            .arg(&store)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        store
    }

    fn pull_args(id: &ImageId) -> Vec<String> {
        ["image", "pull", &id.to_hex(), "--from", URL, "--json"]
            .map(String::from)
            .to_vec()
    }

    fn pull(&self, store: &Path, id: &ImageId) -> serde_json::Value {
        let args = Self::pull_args(id);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        json(&self.run(&self.reader, store, &args))
    }

    /// A pull held to `rate` (bits/s) so it can be interrupted or disturbed half-way.
    fn slow_pull(&self, store: &Path, id: &ImageId, rate: &str) -> Child {
        let mut args = Self::pull_args(id);
        args.extend([
            "--max-rate".into(),
            rate.into(),
            "--jobs".into(),
            "2".into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cmd(&self.reader, store, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// No roomcast output of this test, and no Garage log, holds a secret key.
    fn assert_no_secret_anywhere(&self) {
        for key in [&self.writer, &self.reader] {
            for out in self.outputs.borrow().iter() {
                assert!(!out.contains(&key.secret), "a secret key in: {out}");
            }
            assert_eq!(
                any_file_contains(&self.cluster.cluster.logs(), &key.secret),
                None
            );
        }
    }
}

fn json(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
}

fn n(v: &serde_json::Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

fn stored_chunks(store: &Path) -> usize {
    walk(&store.join("chunks"))
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.flatten()
            .map(|e| {
                if e.path().is_dir() {
                    walk(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

fn verify_and_restore(region: &Region, store: &Path, id: &ImageId, source: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["image", "verify", &id.to_hex()])
        .env("ROOMCAST_STORE", store)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let target = region
        .sne
        .path(&format!("restored-{}.img", &id.to_hex()[..8]));
    let _ = std::fs::remove_file(&target);
    let o = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["image", "restore", &id.to_hex(), "--to"])
        .arg(&target)
        .env("ROOMCAST_STORE", store)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&target).unwrap() == std::fs::read(source).unwrap(),
        "restored image differs from the master"
    );
}

/// Waits until the child stored at least `k` chunks in `store`; fails if it exits first.
fn wait_chunks(child: &mut Child, store: &Path, k: usize) {
    let start = Instant::now();
    while stored_chunks(store) < k {
        if let Some(s) = child.try_wait().unwrap() {
            panic!("pull ended ({s}) before it stored {k} chunks");
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "pull never got going"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn push_pull_round_trip_then_only_the_manifest_moves_and_no_secret_shows() {
    let Some(region) = Region::start() else {
        return;
    };
    let (disk, v1) = region.master("master-v1", 4, 7);

    let p = region.push(&v1);
    let chunks = n(&p, "chunks");
    assert!(chunks >= 60, "{p}");
    assert_eq!((n(&p, "uploaded"), n(&p, "present")), (chunks, 0), "{p}");
    // Pushed again: nothing to upload, the bucket is listed once and the manifest rewritten.
    let again = region.push(&v1);
    assert_eq!(
        (n(&again, "uploaded"), n(&again, "present")),
        (0, chunks),
        "{again}"
    );

    // School A: everything comes over, checked; the image verifies and restores bit-identical.
    let a = region.school("school-a");
    let pulled = region.pull(&a, &v1);
    assert_eq!(
        (n(&pulled, "fetched"), n(&pulled, "present")),
        (chunks, 0),
        "{pulled}"
    );
    assert_eq!(stored_chunks(&a) as u64, chunks);
    verify_and_restore(&region, &a, &v1, &disk);

    // The same pull again changes nothing: one request, the manifest's bytes.
    let again = region.pull(&a, &v1);
    assert_eq!(n(&again, "fetched"), 0, "{again}");
    assert_eq!(n(&again, "requests"), 1, "{again}");
    assert_eq!(
        n(&again, "bytes_in"),
        n(&again, "manifest_bytes"),
        "{again}"
    );

    // The region re-releases the same master under another name: a school that holds v1 gets
    // only the new manifest.
    let rerelease = region.capture(&disk, "master-rerelease");
    assert_ne!(rerelease, v1);
    let p = region.push(&rerelease);
    assert_eq!(n(&p, "uploaded"), 0, "{p}");
    let r = region.pull(&a, &rerelease);
    assert_eq!(n(&r, "fetched"), 0, "{r}");
    assert_eq!(n(&r, "requests"), 1, "{r}");
    assert_eq!(n(&r, "bytes_in"), n(&r, "manifest_bytes"), "{r}");
    assert_eq!(stored_chunks(&a) as u64, chunks);

    // The region's catalogue, each signature checked against the school's trusted keys.
    let o = region.run(&region.reader, &a, &["image", "list", "--from", URL]);
    let list = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{list}");
    for id in [&v1, &rerelease] {
        let line = list
            .lines()
            .find(|l| l.starts_with(&id.short()))
            .unwrap_or_else(|| panic!("{list}"));
        assert!(line.contains("ok ("), "{line}");
    }

    // Credentials: never in a process's arguments while a pull runs (school B, held slow).
    let b = region.school("school-b");
    let mut child = region.slow_pull(&b, &v1, "4M");
    wait_chunks(&mut child, &b, 2);
    for key in [&region.reader, &region.writer] {
        assert_eq!(processes_with_in_argv(&key.secret), Vec::<String>::new());
    }
    let out = child.wait_with_output().unwrap();
    region.outputs.borrow_mut().push(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ));
    assert!(out.status.success());
    // A wrong secret: refused by Garage, and the error does not echo the secret given.
    let wrong = Key {
        id: region.reader.id.clone(),
        secret: "wrong-secret-0123456789abcdef".into(),
    };
    let o = region.run(&wrong, &b, &["image", "list", "--from", URL]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&o.stderr).contains(&wrong.secret));
    region.assert_no_secret_anywhere();
}

#[test]
fn a_pull_killed_half_way_resumes_with_only_what_is_missing() {
    let Some(region) = Region::start() else {
        return;
    };
    let (disk, id) = region.master("master", 4, 11);
    let chunks = n(&region.push(&id), "chunks");
    let school = region.school("school");

    let mut child = region.slow_pull(&school, &id, "4M");
    wait_chunks(&mut child, &school, (chunks / 4) as usize);
    // kill -9 of the roomcast process.
    child.kill().unwrap();
    child.wait().unwrap();
    let had = stored_chunks(&school) as u64;
    assert!(had < chunks, "the pull finished before it was killed");
    assert!(
        Store::open(&school)
            .unwrap()
            .image_ids()
            .unwrap()
            .is_empty(),
        "an interrupted pull left a visible image"
    );

    let r = region.pull(&school, &id);
    assert_eq!(n(&r, "present"), had, "{r}");
    assert_eq!(n(&r, "fetched"), chunks - had, "{r}");
    verify_and_restore(&region, &school, &id, &disk);
}

#[test]
fn a_site_going_dark_during_a_pull_does_not_stop_it() {
    let Some(mut region) = Region::start() else {
        return;
    };
    let (disk, id) = region.master("master", 4, 13);
    let chunks = n(&region.push(&id), "chunks");
    let school = region.school("school");

    let mut child = region.slow_pull(&school, &id, "4M");
    wait_chunks(&mut child, &school, (chunks / 4) as usize);
    // The school talks to site 0; site 2 dies. Two copies of each block remain.
    region.cluster.cluster.stop_node(2);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(n(&r, "fetched"), chunks, "{r}");
    verify_and_restore(&region, &school, &id, &disk);
}

#[test]
fn altered_chunks_and_foreign_signers_are_refused_and_named() {
    let Some(region) = Region::start() else {
        return;
    };
    let (_disk, id) = region.master("master", 1, 17);
    region.push(&id);
    let url: roomcast::region::RemoteUrl = URL.parse().unwrap();

    // A school that does not trust the region's key refuses the manifest, naming the signer.
    let stranger = region.sne.path("stranger");
    Store::open_or_create(&stranger).unwrap();
    let o = region.run(
        &region.reader,
        &stranger,
        &["image", "pull", &id.to_hex(), "--from", URL],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let fp = roomcast_store::keys::fingerprint(&region.sne.signer.verifying_key());
    assert!(
        err.contains(&format!("signer {fp} is not a trusted signer")),
        "{err}"
    );
    assert!(err.contains(&url.object(&url.manifest_key(&id))), "{err}");
    assert_eq!(stored_chunks(&stranger), 0);

    // A manifest signed by another key, put in the bucket by someone with write access: refused.
    let rogue = Fixture::new();
    let rogue_disk = rogue.path("rogue.img");
    sparse_disk(&rogue_disk, 1 << 20, &[(0, 256 << 10, 5)]);
    let rogue_id = rogue.capture(&rogue_disk).id;
    let envelope = std::fs::read(rogue.store.manifest_path(&rogue_id)).unwrap();
    with_remote(&region.cluster.cluster, &region.writer, URL, |r| {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(r.put(&url.manifest_key(&rogue_id), envelope))
            .unwrap()
    });
    let school = region.school("school");
    let o = region.run(
        &region.reader,
        &school,
        &["image", "pull", &rogue_id.to_hex(), "--from", URL],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let rogue_fp = roomcast_store::keys::fingerprint(&rogue.signer.verifying_key());
    assert!(
        err.contains(&format!("signer {rogue_fp} is not a trusted signer")),
        "{err}"
    );
    assert_eq!(stored_chunks(&school), 0);

    // One chunk object altered in the bucket (same size, one byte flipped): refused and named;
    // nothing of it enters the store, and the image does not become visible.
    let m = region.sne.store.open_verified(&id).unwrap();
    let victim = m.chunks.iter().find_map(|c| c.sha256).unwrap();
    let key = url.chunk_key(&victim);
    let mut bytes = region.sne.store.read_chunk_compressed(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    with_remote(&region.cluster.cluster, &region.writer, URL, |r| {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(r.put(&key, bytes))
            .unwrap()
    });
    let o = region.run(
        &region.reader,
        &school,
        &["image", "pull", &id.to_hex(), "--from", URL, "--jobs", "1"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&url.object(&key)), "{err}");
    assert!(err.contains("refused"), "{err}");
    let school_store = Store::open(&school).unwrap();
    assert_eq!(school_store.chunk_len(&victim), None);
    assert!(school_store.image_ids().unwrap().is_empty());
    assert_eq!(
        walk(&school.join("tmp")),
        0,
        "a refused chunk left a temporary file"
    );
    region.assert_no_secret_anywhere();
}
