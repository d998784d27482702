//! A whole disk through `read_layout`: GPT with a BIOS boot partition, an ESP (FAT32), ext4, swap and
//! a partition of an unknown type, each file system written then mostly emptied, the free space and
//! the gaps full of random bytes. Restored from the used ranges alone onto random bytes.

use crate::util::{have, patch, peek, put_at, random_file, restore_used, run, run_status};
use roomcast_layout::{DiskLayout, Extents, LayoutError, TableKind, read_layout};
use std::fs::File;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;
/// Where sgdisk puts the partitions (1 MiB alignment after a 1 MiB BIOS boot partition at 1 MiB).
const ESP: u64 = 2 * MIB;
const EXT: u64 = 38 * MIB;
const SWAP: u64 = 58 * MIB;
const UNKNOWN: u64 = 62 * MIB;
const UNKNOWN_GUID: &str = "0b3a1f48-7cb2-4c57-a4c1-2c5a1b7a9e11";

struct Disk {
    img: PathBuf,
    fat_files: Vec<(String, Vec<u8>)>,
    ext_files: Vec<(String, Vec<u8>)>,
}

fn build(dir: &Path) -> Disk {
    let img = dir.join("disk.img");
    random_file(&img, 66 * MIB, 41);
    run(
        "sgdisk",
        &[
            "-n",
            "1:2048:+1M",
            "-t",
            "1:ef02",
            "-n",
            "2:0:+36M",
            "-t",
            "2:ef00",
            "-n",
            "3:0:+20M",
            "-t",
            "3:8300",
            "-n",
            "4:0:+4M",
            "-t",
            "4:8200",
            "-n",
            "5:0:+2M",
            "-t",
            &format!("5:{UNKNOWN_GUID}"),
            img.to_str().unwrap(),
        ],
    );
    let (esp_dir, ext_dir) = (dir.join("esp"), dir.join("ext"));
    std::fs::create_dir_all(&esp_dir).unwrap();
    std::fs::create_dir_all(&ext_dir).unwrap();
    let (esp, fat_files) = crate::fat::churned(&esp_dir, "32", "1", 36 * MIB);
    let (ext, ext_files) = crate::ext::churned(&ext_dir, "mkfs.ext4", &[], 20 * MIB);
    let swap = dir.join("swap.img");
    random_file(&swap, 4 * MIB, 43);
    run("mkswap", &[swap.to_str().unwrap()]);
    put_at(&img, &esp, ESP);
    put_at(&img, &ext, EXT);
    put_at(&img, &swap, SWAP);
    Disk {
        img,
        fat_files,
        ext_files,
    }
}

fn layout(img: &Path) -> Result<DiskLayout, LayoutError> {
    read_layout(&File::open(img).unwrap())
}

/// Bytes `[start, start + len)` of `img` into a file of their own.
fn extract(img: &Path, start: u64, len: u64, to: &Path) -> String {
    std::fs::write(to, peek(img, start, len as usize)).unwrap();
    to.to_str().unwrap().to_string()
}

#[test]
fn gpt_disk_with_esp_ext4_swap_and_unknown_restores_from_used_bytes_alone() {
    if !have(&[
        "sgdisk",
        "mkfs.vfat",
        "mkfs.ext4",
        "mkswap",
        "debugfs",
        "e2fsck",
        "fsck.fat",
        "mcopy",
        "blkid",
    ]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = build(dir.path());
    let l = layout(&disk.img).unwrap();
    assert_eq!(l.table, TableKind::Gpt);
    assert!(l.notes.is_empty(), "{:?}", l.notes);
    let fs: Vec<&str> = l.partitions.iter().map(|p| p.fs.as_str()).collect();
    assert_eq!(fs, ["unknown", "fat32", "ext4", "swap", "unknown"]);
    assert!(
        l.partitions[0]
            .whole
            .as_deref()
            .unwrap()
            .contains("BIOS boot")
    );
    assert!(
        l.partitions[4]
            .whole
            .as_deref()
            .unwrap()
            .contains("no file system")
    );
    for p in &l.partitions[1..4] {
        assert!(p.whole.is_none(), "{p:?}");
    }
    let mut inside = Extents::new();
    for (p, start) in l.partitions.iter().zip([MIB, ESP, EXT, SWAP, UNKNOWN]) {
        assert_eq!(p.partition.start, start);
        let (s, e) = (p.partition.start, p.partition.start + p.partition.len);
        inside.insert(s, e);
        assert_eq!(
            p.used.clipped(s, e),
            p.used,
            "partition {}'s map stays inside it",
            p.partition.number
        );
        assert!(
            p.used
                .ranges()
                .iter()
                .all(|r| l.used.contains(r.start, r.end))
        );
        if p.whole.is_some() {
            assert_eq!(p.used, Extents::from_range(s, e));
        }
    }
    // Everything outside the partitions (protective MBR, GPTs, the gaps) is taken whole.
    let outside = inside.complement(l.disk_size);
    assert!(outside.bytes() > 2 * MIB);
    for r in outside.ranges() {
        assert!(
            l.used.contains(r.start, r.end),
            "{r:?} outside every partition is not used"
        );
    }
    let parts: u64 = l.partitions.iter().map(|p| p.used.bytes()).sum();
    assert_eq!(l.used.bytes(), outside.bytes() + parts);
    assert!(
        l.used.bytes() < l.disk_size / 2,
        "{} of {}",
        l.used.bytes(),
        l.disk_size
    );

    // Restore the used bytes alone onto a disk of random bytes.
    let dst = dir.path().join("restored.img");
    restore_used(&disk.img, &l.used, &dst, 1234);
    let (code, out) = run_status("sgdisk", &["-v", dst.to_str().unwrap()]);
    assert!(code == 0 && out.contains("No problems found"), "{out}");
    let esp = extract(&dst, ESP, 36 * MIB, &dir.path().join("esp.out"));
    let (code, out) = run_status("fsck.fat", &["-n", &esp]);
    assert_eq!(code, 0, "{out}");
    for (path, content) in &disk.fat_files {
        let out = dir.path().join("f.out");
        let _ = std::fs::remove_file(&out);
        run("mcopy", &["-n", "-i", &esp, path, out.to_str().unwrap()]);
        assert!(std::fs::read(&out).unwrap() == *content, "ESP {path}");
    }
    let ext = extract(&dst, EXT, 20 * MIB, &dir.path().join("ext.out"));
    let (code, out) = run_status("e2fsck", &["-fn", &ext]);
    assert_eq!(code, 0, "{out}");
    for (path, content) in &disk.ext_files {
        let out = dir.path().join("e.out");
        let _ = std::fs::remove_file(&out);
        run(
            "debugfs",
            &["-R", &format!("dump {path} {}", out.display()), &ext],
        );
        assert!(std::fs::read(&out).unwrap() == *content, "ext4 {path}");
    }
    let swap = extract(&dst, SWAP, 4 * MIB, &dir.path().join("swap.out"));
    assert!(run("blkid", &["-p", "-o", "export", &swap]).contains("TYPE=swap"));
    assert!(
        peek(&dst, UNKNOWN, (2 * MIB) as usize) == peek(&disk.img, UNKNOWN, (2 * MIB) as usize)
    );
    eprintln!("disk: {} of {} bytes used", l.used.bytes(), l.disk_size);
}

#[test]
fn unclean_partitions_are_refused_with_their_number() {
    if !have(&[
        "sgdisk",
        "mkfs.vfat",
        "mkfs.ext4",
        "mkswap",
        "debugfs",
        "fsck.fat",
        "mcopy",
    ]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = build(dir.path());
    // ext4 needing journal recovery (feature_incompat |= RECOVER).
    let at = EXT + 1024 + 96;
    let saved = peek(&disk.img, at, 1);
    patch(&disk.img, at, &[saved[0] | 0x04]);
    match layout(&disk.img) {
        Err(e @ LayoutError::NotClean { number: 3, .. }) => {
            let m = e.to_string();
            assert!(
                m.starts_with("partition 3 (ext4): the journal needs recovery"),
                "{m}"
            );
            assert!(m.contains("fix: run `e2fsck -f`"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    patch(&disk.img, at, &saved);
    // The ESP marked dirty by Linux.
    let at = ESP + 65;
    let saved = peek(&disk.img, at, 1);
    patch(&disk.img, at, &[saved[0] | 1]);
    match layout(&disk.img) {
        Err(e @ LayoutError::NotClean { number: 2, .. }) => {
            assert!(
                e.to_string()
                    .starts_with("partition 2 (fat32): the volume is marked dirty"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    patch(&disk.img, at, &saved);
    // The swap holding a hibernation image.
    patch(&disk.img, SWAP + 4086, b"S1SUSPEND\0");
    match layout(&disk.img) {
        Err(e @ LayoutError::NotClean { number: 4, .. }) => {
            assert!(e.to_string().contains("partition 4 (swap)"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_disk_without_table_is_probed_as_one_file_system() {
    if !have(&["mkfs.ext4", "debugfs"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = crate::ext::churned(dir.path(), "mkfs.ext4", &[], 16 * MIB);
    let l = layout(&img).unwrap();
    assert_eq!(l.table, TableKind::None);
    assert_eq!(l.partitions.len(), 1);
    assert_eq!(
        (
            l.partitions[0].fs.as_str(),
            l.partitions[0].whole.as_deref()
        ),
        ("ext4", None)
    );
    assert_eq!(l.used, l.partitions[0].used);
    assert!(l.used.bytes() < 8 * MIB);
    // Zeros: no table, no file system, taken whole.
    let zero = dir.path().join("zero.img");
    File::create(&zero).unwrap().set_len(MIB).unwrap();
    let l = layout(&zero).unwrap();
    assert_eq!(l.used, Extents::from_range(0, MIB));
    assert!(l.partitions[0].whole.is_some());
}

#[test]
fn recognised_but_unread_file_systems_are_named_and_taken_whole() {
    let linux = roomcast_layout::PartitionType::Gpt {
        type_guid: "0fc63daf-8483-4772-8e79-3d69d8477de4".into(),
        name: String::new(),
    };
    for (off, sig, want) in [
        (0usize, &b"LUKS\xba\xbe"[..], Some("luks")),
        (3, b"EXFAT   ", Some("exfat")),
        (0, b"XFSB", Some("xfs")),
        (0x10040, b"_BHRfS_M", Some("btrfs")),
        // BitLocker: the NTFS reader may name it first; taken whole either way.
        (3, b"-FVE-FS-", None),
    ] {
        let mut part = vec![0u8; MIB as usize];
        part[off..off + sig.len()].copy_from_slice(sig);
        let (fs, map) = roomcast_layout::probe_fs(&part, &linux);
        assert!(
            matches!(map, Err(roomcast_layout::FsError::Unsupported(_))),
            "{fs}: {map:?}"
        );
        if let Some(want) = want {
            assert_eq!(fs, want);
        }
    }
}
