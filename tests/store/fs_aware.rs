//! File-system-aware images (issue 14) on real file systems made by the real tools
//! (`roomcast_lab::dirty_disk`: GPT, ESP FAT32, NTFS, ext4, swap, written then mostly deleted):
//! capture takes only the used bytes and never the deleted data, restore writes only the used
//! ranges (the file systems check clean, every file's sha256 is the master's), a delta writes
//! nothing on a disk whose used bytes are the image's, unclean file systems are refused naming the
//! partition, an unknown partition is taken whole; and a property test of arbitrary masks.

use super::util::{Fixture, label, random};
use proptest::prelude::*;
use roomcast_lab::dirty_disk::{self, DirtyDisk, DirtySpec, FsKind};
use roomcast_store::capture::{self, CaptureError, CaptureOptions};
use roomcast_store::chunk::{ChunkSize, decode_verified};
use roomcast_store::layout::Extents;
use roomcast_store::manifest::{CaptureMode, ImageLayout, Manifest, sign};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

const CHUNK: u32 = 1 << 20;

fn opts() -> CaptureOptions {
    CaptureOptions {
        chunk_size: ChunkSize::new(CHUNK).unwrap(),
        level: 3,
        workers: 2,
    }
}

fn build(fx: &Fixture, name: &str, spec: &DirtySpec) -> DirtyDisk {
    dirty_disk::build(&fx.path(name), spec).unwrap()
}

/// A file of `size` random bytes (a PC's disk before the restore: old content everywhere).
fn random_disk(path: &Path, size: u64, seed: u64) {
    let f = fs::File::create(path).unwrap();
    let mut at = 0;
    while at < size {
        let n = (size - at).min(1 << 20);
        f.write_all_at(&random(seed ^ at, n as usize), at).unwrap();
        at += n;
    }
}

/// Every file system checks clean and holds the master's tree (names, directories, sha256).
fn assert_same_trees(master: &DirtyDisk, target: &Path) {
    for p in &master.parts {
        dirty_disk::fsck(target, p).unwrap_or_else(|e| panic!("partition {}: {e}", p.number));
        let want = dirty_disk::tree(&master.path, p).unwrap();
        let got = dirty_disk::tree(target, p).unwrap();
        assert_eq!(got, want, "partition {} ({:?})", p.number, p.fs);
    }
}

fn manifest(fx: &Fixture, id: &roomcast_store::manifest::ImageId) -> Manifest {
    (*fx.store.open_verified(id).unwrap()).clone()
}

/// The whole round trip: capture of a dirty master, restore onto a disk full of random bytes.
#[test]
fn dirty_master_restores_onto_a_random_disk_with_clean_file_systems_and_equal_trees() {
    let fx = Fixture::new();
    let spec = DirtySpec {
        unknown: 4 << 20,
        ..DirtySpec::small()
    };
    let master = build(&fx, "master.img", &spec);
    let r = capture::capture(
        &fx.store,
        &master.path,
        label("m"),
        &fx.signer,
        &opts(),
        &|_| {},
    )
    .unwrap();
    let m = manifest(&fx, &r.id);
    let l = m.layout.as_ref().expect("a layout is recorded");
    assert_eq!(l.mode, CaptureMode::FileSystems);
    assert_eq!(l.table, "gpt");

    // Each partition found with its file system; the unknown one taken whole, and said so.
    let fs_of = |n: u32| l.partitions.iter().find(|p| p.number == n).unwrap();
    for (p, want) in master
        .parts
        .iter()
        .zip(["fat32", "ntfs", "ext4", "swap", "unknown"])
    {
        let rec = fs_of(p.number);
        assert_eq!(
            (rec.start, rec.len),
            (p.start, p.len),
            "partition {}",
            p.number
        );
        assert_eq!(rec.fs, want, "partition {}: {rec:?}", p.number);
        if p.fs == FsKind::Unknown {
            assert!(rec.whole.is_some(), "{rec:?}");
            assert_eq!(rec.used_bytes, rec.len);
        } else {
            assert!(rec.whole.is_none(), "{rec:?}");
            assert!(rec.used_bytes < rec.len, "{rec:?}");
        }
    }
    assert!(
        fs_of(2)
            .discarded
            .iter()
            .any(|d| d.name.eq_ignore_ascii_case("pagefile.sys"))
    );
    assert!(
        r.used_bytes < r.disk_size / 2,
        "used {} of {}",
        r.used_bytes,
        r.disk_size
    );
    assert_eq!(r.used_bytes, m.used_bytes());

    // Deleted data never reaches the store: every stored chunk reads zero in its free ranges,
    // although the master holds data there.
    let src = fs::read(&master.path).unwrap();
    let mut dirty_free = 0u64;
    for (i, c) in m.chunks.iter().enumerate() {
        let used = c.used_ranges();
        let chunk = &src[c.offset as usize..(c.offset + c.len as u64) as usize];
        let mut masked = chunk.to_vec();
        c.mask(&mut masked);
        dirty_free += chunk.iter().zip(&masked).filter(|(a, b)| a != b).count() as u64;
        if let Some(r) = c.chunk_ref(i as u64) {
            let z = fx.store.read_chunk_compressed(&r.sha256).unwrap();
            let bytes = decode_verified(r, c.len as u64, &z).unwrap();
            assert_eq!(bytes, masked, "chunk {i}");
        } else if !c.is_unused() {
            assert!(
                used.iter()
                    .all(|u| chunk[u.clone()].iter().all(|&b| b == 0))
            );
        }
    }
    assert!(
        dirty_free > 8 << 20,
        "the master's free space holds {dirty_free} non-zero bytes"
    );

    // Restore onto a disk full of random bytes: used bytes are the master's, free bytes are
    // untouched (still the target's own random bytes), the file systems are clean and whole.
    let target = fx.path("pc.img");
    random_disk(&target, master.size, 99);
    let before = fs::read(&target).unwrap();
    let rr = fx.restore(&r.id, &target).unwrap();
    assert_eq!(rr.written_bytes + rr.zeroed_bytes, m.used_bytes());
    assert_eq!(rr.unused_chunks, m.unused_chunks() as u64);
    let after = fs::read(&target).unwrap();
    for c in &m.chunks {
        let (s, e) = (c.offset as usize, (c.offset + c.len as u64) as usize);
        let mut used = vec![false; c.len as usize];
        for u in c.used_ranges() {
            used[u].fill(true);
        }
        for (k, &u) in used.iter().enumerate() {
            let want = if u { src[s + k] } else { before[s + k] };
            if after[s + k] != want {
                panic!(
                    "byte {} ({}): {} restored, {} expected",
                    s + k,
                    if u { "used" } else { "free" },
                    after[s + k],
                    want
                );
            }
        }
        let _ = e;
    }
    drop((src, before, after));
    assert_same_trees(&master, &target);
}

/// Delta: the same used blocks with other free bytes get nothing written; one changed file gets
/// its chunks only.
#[test]
fn delta_writes_nothing_for_equal_used_bytes_and_only_a_changed_files_chunks() {
    let fx = Fixture::new();
    let master = build(&fx, "master.img", &DirtySpec::small());
    let r = capture::capture(
        &fx.store,
        &master.path,
        label("m"),
        &fx.signer,
        &opts(),
        &|_| {},
    )
    .unwrap();
    let m = manifest(&fx, &r.id);

    // The master itself: its free space holds deleted files, the image's free bytes are zero.
    let copy = fx.path("master-copy.img");
    fs::copy(&master.path, &copy).unwrap();
    let d = fx.restore(&r.id, &copy).unwrap();
    assert_eq!((d.written_bytes, d.zeroed_bytes), (0, 0), "{d:?}");
    assert_eq!(fs::read(&copy).unwrap(), fs::read(&master.path).unwrap());

    // A PC restored once (random free space), then restored again: nothing.
    let pc = fx.path("pc.img");
    random_disk(&pc, master.size, 7);
    fx.restore(&r.id, &pc).unwrap();
    let again = fx.restore(&r.id, &pc).unwrap();
    assert_eq!(
        (again.written_bytes, again.zeroed_bytes),
        (0, 0),
        "{again:?}"
    );

    // One file of the ext4 partition changed in place on the PC: only the chunks holding its
    // blocks are written back.
    let ext = master.part(FsKind::Ext4).unwrap();
    let tree = dirty_disk::tree(&pc, ext).unwrap();
    let file = tree
        .iter()
        .find(|(_, e)| matches!(e, dirty_disk::Entry::File(_)))
        .map(|(p, _)| p.clone())
        .expect("a kept file");
    let dev = format!("{}?offset={}", pc.display(), ext.start);
    let out = Command::new("debugfs")
        .args(["-R", &format!("blocks /{file}"), &dev])
        .output()
        .unwrap();
    let blocks: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect();
    assert!(
        !blocks.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = fs::OpenOptions::new().write(true).open(&pc).unwrap();
    let mut chunks = std::collections::BTreeSet::new();
    for b in &blocks {
        let at = ext.start + b * 4096;
        f.write_all_at(&random(*b, 4096), at).unwrap();
        chunks.insert(at / CHUNK as u64);
    }
    drop(f);
    assert_ne!(dirty_disk::tree(&pc, ext).unwrap(), tree);
    let d = fx.restore(&r.id, &pc).unwrap();
    assert_eq!(d.written_chunks, chunks.len() as u64, "{d:?}");
    let most: u64 = chunks
        .iter()
        .map(|&i| m.chunks[i as usize].used_bytes())
        .sum();
    assert!(d.written_bytes <= most && d.written_bytes >= 4096, "{d:?}");
    assert_eq!(dirty_disk::tree(&pc, ext).unwrap(), tree);
}

fn assert_refused(fx: &Fixture, disk: &Path, number: u32, fs_name: &str, words: &str) {
    let err =
        capture::capture(&fx.store, disk, label("x"), &fx.signer, &opts(), &|_| {}).unwrap_err();
    let msg = err.to_string();
    match &err {
        CaptureError::NotClean { number: n, .. } => assert_eq!(*n, number, "{msg}"),
        _ => panic!("not a NotClean refusal: {msg}"),
    }
    assert!(
        msg.contains(&format!("partition {number}"))
            && msg.contains(fs_name)
            && msg.to_lowercase().contains(words),
        "{msg}"
    );
    assert!(msg.contains("fix: "), "{msg}");
    assert!(fx.store.image_ids().unwrap().is_empty(), "nothing captured");
    let chunks = fs::read_dir(fx.store.root().join("chunks"))
        .unwrap()
        .count();
    assert_eq!(chunks, 0, "no chunk stored");
}

fn small_master(fx: &Fixture) -> DirtyDisk {
    let spec = DirtySpec {
        swap: 0,
        ..DirtySpec::small()
    };
    build(fx, "master.img", &spec)
}

/// An ext4 needing journal recovery is refused, naming the partition, the reason and the fix;
/// nothing is stored. The clean master itself is captured.
#[test]
fn an_ext4_needing_recovery_is_refused_naming_the_partition() {
    let fx = Fixture::new();
    let master = small_master(&fx);
    let ext = master.part(FsKind::Ext4).unwrap().clone();
    let journal = fx.path("journal.img");
    fs::copy(&master.path, &journal).unwrap();
    dirty_disk::mark_ext4_needs_recovery(&journal, &ext).unwrap();
    assert_refused(&fx, &journal, ext.number, "ext4", "recovery");
    capture::capture(
        &fx.store,
        &master.path,
        label("m"),
        &fx.signer,
        &opts(),
        &|_| {},
    )
    .unwrap();
}

/// A hibernated NTFS (Windows Fast Startup) and a dirty one are refused, naming the partition,
/// the reason and the fix; nothing is stored.
#[test]
fn a_hibernated_or_dirty_ntfs_is_refused_naming_the_partition() {
    let fx = Fixture::new();
    let master = small_master(&fx);
    let ntfs = master.part(FsKind::Ntfs).unwrap().clone();

    let hib = fx.path("hibernated.img");
    fs::copy(&master.path, &hib).unwrap();
    dirty_disk::mark_ntfs_hibernated(&hib, &ntfs).unwrap();
    assert_refused(&fx, &hib, ntfs.number, "ntfs", "hibernat");
    fs::remove_file(&hib).unwrap();

    let dirty = fx.path("dirty.img");
    fs::copy(&master.path, &dirty).unwrap();
    dirty_disk::mark_ntfs_dirty(&dirty, &ntfs).unwrap();
    assert_refused(&fx, &dirty, ntfs.number, "ntfs", "dirty");
}

/// `--whole-disk`: every byte, no mask, named as such; restore writes the whole disk.
#[test]
fn whole_disk_capture_takes_every_byte_and_says_so() {
    let fx = Fixture::new();
    let master = small_master(&fx);
    let r = capture::capture_as(
        &fx.store,
        &master.path,
        label("w"),
        &fx.signer,
        &opts(),
        CaptureMode::WholeDisk,
        &|_| {},
    )
    .unwrap();
    let m = manifest(&fx, &r.id);
    assert_eq!(m.mode(), CaptureMode::WholeDisk);
    assert!(m.chunks.iter().all(|c| c.used.is_none()));
    assert_eq!(r.used_bytes, r.disk_size);
    let l = m.layout.as_ref().unwrap();
    assert_eq!(l.partitions.len(), master.parts.len(), "{l:?}");
    assert!(
        l.partitions
            .iter()
            .all(|p| p.whole.as_deref() == Some("--whole-disk"))
    );
    let pc = fx.path("pc.img");
    random_disk(&pc, master.size, 3);
    fx.restore(&r.id, &pc).unwrap();
    assert_eq!(fs::read(&pc).unwrap(), fs::read(&master.path).unwrap());
}

/// An image from before masks (no `layout`, no `used`): still restores bit for bit, and a
/// manifest with them is read back the same.
#[test]
fn a_mask_less_manifest_still_restores() {
    let fx = Fixture::new();
    let src = fx.path("src.img");
    fs::write(&src, random(5, 3 << 20)).unwrap();
    let r = capture::capture_as(
        &fx.store,
        &src,
        label("old"),
        &fx.signer,
        &opts(),
        CaptureMode::WholeDisk,
        &|_| {},
    )
    .unwrap();
    let mut m = manifest(&fx, &r.id);
    m.layout = None;
    let json = String::from_utf8(m.to_bytes()).unwrap();
    assert!(
        !json.contains("layout") && !json.contains("\"used\""),
        "{json}"
    );
    let (id, env) = sign(&m, &fx.signer);
    fx.store.commit_manifest(&id, &env).unwrap();
    let v = fx.store.open_verified(&id).unwrap();
    assert_eq!(v.mode(), CaptureMode::WholeDisk);
    let pc = fx.path("pc.img");
    random_disk(&pc, 3 << 20, 1);
    fx.restore(&id, &pc).unwrap();
    assert_eq!(fs::read(&pc).unwrap(), fs::read(&src).unwrap());
}

fn used_ranges() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((0u64..(1 << 20), 1u64..40_000), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Arbitrary masks over arbitrary contents: restore puts the used bytes back and leaves every
    /// free byte as the target had it; the chunks' hashes do not depend on the free bytes.
    #[test]
    fn random_masks_round_trip_and_hashes_ignore_free_bytes(
        size in 1u64..(1 << 20),
        ranges in used_ranges(),
        seed in any::<u64>(),
    ) {
        let fx = Fixture::new();
        let mut used = Extents::new();
        for (s, l) in ranges {
            used.insert(s.min(size), (s + l).min(size));
        }
        let a = random(seed, size as usize);
        // Same used bytes, other free bytes.
        let mut b = random(seed ^ 0x5555, size as usize);
        for r in used.ranges() {
            b[r.start as usize..r.end as usize].copy_from_slice(&a[r.start as usize..r.end as usize]);
        }
        let (pa, pb) = (fx.path("a.img"), fx.path("b.img"));
        fs::write(&pa, &a).unwrap();
        fs::write(&pb, &b).unwrap();
        let layout = ImageLayout {
            mode: CaptureMode::FileSystems,
            table: "none".into(),
            partitions: Vec::new(),
            used_bytes: used.bytes(),
        };
        let o = CaptureOptions { chunk_size: ChunkSize::new(64 * 1024).unwrap(), level: 1, workers: 2 };
        let cap = |p: &Path| capture::capture_with_layout(
            &fx.store, p, label("p"), &fx.signer, &o, layout.clone(), used.clone(), &|_| {},
        ).unwrap();
        let (ra, rb) = (cap(&pa), cap(&pb));
        let (ma, mb) = (manifest(&fx, &ra.id), manifest(&fx, &rb.id));
        prop_assert_eq!(&ma.chunks, &mb.chunks);
        prop_assert_eq!(ma.used_bytes(), used.bytes());

        let t = fx.path("t.img");
        let before = random(seed ^ 0xaaaa, size as usize);
        fs::write(&t, &before).unwrap();
        let rr = fx.restore(&ra.id, &t).unwrap();
        prop_assert_eq!(rr.written_bytes + rr.zeroed_bytes, used.bytes());
        let after = fs::read(&t).unwrap();
        let mut want = before.clone();
        for r in used.ranges() {
            want[r.start as usize..r.end as usize].copy_from_slice(&a[r.start as usize..r.end as usize]);
        }
        prop_assert!(after == want);
        // Restoring B's image (same used bytes) writes nothing.
        let again = fx.restore(&rb.id, &t).unwrap();
        prop_assert_eq!(again.written_bytes + again.zeroed_bytes, 0);
    }
}

/// The capture summary and `image show`: used bytes per partition, the partition taken whole and
/// why, the bytes saved.
#[test]
fn cli_capture_summary_and_show_give_used_bytes_per_partition() {
    let fx = Fixture::new();
    let spec = DirtySpec {
        swap: 0,
        unknown: 2 << 20,
        ..DirtySpec::small()
    };
    let master = build(&fx, "master.img", &spec);
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .args(args)
            .env("ROOMCAST_STORE", fx.store.root())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };
    let key = fx.key_file.to_str().unwrap();
    let from = master.path.to_str().unwrap();
    let out = run(&[
        "image",
        "capture",
        "--from",
        from,
        "--name",
        "b12",
        "--version",
        "1",
        "--key",
        key,
    ]);
    assert!(
        out.contains("mode file-systems, partition table gpt"),
        "{out}"
    );
    let line = |n: u32| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("partition {n} ")))
            .unwrap_or_else(|| panic!("no line for partition {n}: {out}"))
            .to_string()
    };
    assert!(
        line(1).contains("fat32") && line(1).contains("used"),
        "{out}"
    );
    assert!(
        line(2).contains("ntfs") && line(2).contains("discarded pagefile.sys"),
        "{out}"
    );
    assert!(line(3).contains("ext4"), "{out}");
    assert!(
        line(4).contains("unknown") && line(4).contains("taken whole: "),
        "{out}"
    );
    assert!(
        out.contains("saved ") && out.contains("discarded files"),
        "{out}"
    );
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("image "))
        .expect("image id line")
        .to_string();
    let show = run(&["image", "show", &id]);
    assert!(show.contains("capture      file-systems, used "), "{show}");
    assert!(show.contains("partition 3  ext4"), "{show}");

    let out = run(&[
        "image",
        "capture",
        "--from",
        from,
        "--name",
        "b12",
        "--version",
        "2",
        "--key",
        key,
        "--whole-disk",
    ]);
    assert!(out.contains("mode whole-disk"), "{out}");
    assert!(out.contains("saved 0 B"), "{out}");
}

/// Onto a real block device (a loop device over a disk of random bytes), as the agent writes a PC:
/// the master's file systems come out clean with the master's trees, the free bytes are untouched,
/// and a second restore writes nothing.
#[test]
fn masked_restore_onto_a_block_device() {
    let fx = Fixture::new();
    let master = small_master(&fx);
    let r = capture::capture(
        &fx.store,
        &master.path,
        label("m"),
        &fx.signer,
        &opts(),
        &|_| {},
    )
    .unwrap();
    let m = manifest(&fx, &r.id);
    let file = fx.path("pc.img");
    random_disk(&file, master.size, 21);
    let before = fs::read(&file).unwrap();
    {
        let dev = super::util::LoopDev::attach(&file);
        let rr = fx.restore(&r.id, &dev.dev).unwrap();
        assert_eq!(rr.written_bytes + rr.zeroed_bytes, m.used_bytes(), "{rr:?}");
        let again = fx.restore(&r.id, &dev.dev).unwrap();
        assert_eq!(
            (again.written_bytes, again.zeroed_bytes),
            (0, 0),
            "{again:?}"
        );
    }
    let after = fs::read(&file).unwrap();
    for c in &m.chunks {
        let mut used = vec![false; c.len as usize];
        for u in c.used_ranges() {
            used[u].fill(true);
        }
        for (k, &u) in used.iter().enumerate() {
            if !u {
                let at = c.offset as usize + k;
                assert_eq!(after[at], before[at], "free byte {at} written");
            }
        }
    }
    drop((before, after));
    assert_same_trees(&master, &file);
}
