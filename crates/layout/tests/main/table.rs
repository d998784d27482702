//! Partition tables made by sgdisk, sfdisk and fdisk, read by `table::read` and compared with what
//! the tools themselves list; damaged and contradictory tables.

use crate::util::{have, patch, peek, run};
use roomcast_layout::{LayoutError, PartitionType, TableKind, table};
use std::fs::File;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

fn image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    File::create(&p).unwrap().set_len(size).unwrap();
    p
}

/// (start sector, sectors, type) of each partition `sfdisk -d` lists, extended ones left out.
fn sfdisk_dump(img: &Path) -> Vec<(u32, u64, u64, String)> {
    run("sfdisk", &["-d", img.to_str().unwrap()])
        .lines()
        .filter_map(|l| {
            let (dev, rest) = l.split_once(" : ")?;
            let number: u32 = dev.rsplit("img").next()?.parse().ok()?;
            let field = |k: &str| {
                rest.split(", ")
                    .find_map(|f| f.trim().strip_prefix(k))
                    .map(|v| v.trim().to_string())
            };
            let start = field("start=")?.parse().ok()?;
            let size = field("size=")?.parse().ok()?;
            let kind = field("type=")?.to_lowercase();
            Some((number, start, size, kind))
        })
        .filter(|(_, _, _, t)| !matches!(t.as_str(), "5" | "f" | "85"))
        .collect()
}

fn read(img: &Path) -> Result<table::Table, LayoutError> {
    table::read(&File::open(img).unwrap())
}

fn sgdisk_disk(dir: &Path) -> PathBuf {
    let img = image(dir, "gpt.img", 64 * MIB);
    run(
        "sgdisk",
        &[
            "-n",
            "1:2048:+8M",
            "-t",
            "1:ef00",
            "-c",
            "1:ESP",
            "-n",
            "2:0:+20M",
            "-t",
            "2:8300",
            "-c",
            "2:root",
            "-n",
            "3:0:+4M",
            "-t",
            "3:8200",
            "-n",
            "4:0:+1M",
            "-t",
            "4:ef02",
            "-n",
            "6:0:+2M",
            "-t",
            "6:0b3a1f48-7cb2-4c57-a4c1-2c5a1b7a9e11",
            img.to_str().unwrap(),
        ],
    );
    img
}

#[test]
fn gpt_from_sgdisk_matches_sfdisk() {
    if !have(&["sgdisk", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sgdisk_disk(dir.path());
    let t = read(&img).unwrap();
    assert_eq!((t.kind, t.sector_size), (TableKind::Gpt, 512));
    assert!(t.notes.is_empty(), "{:?}", t.notes);
    let want = sfdisk_dump(&img);
    assert_eq!(want.len(), 5);
    assert_eq!(t.partitions.len(), want.len());
    for (p, (n, start, size, kind)) in t.partitions.iter().zip(&want) {
        assert_eq!((p.number, p.start, p.len), (*n, start * 512, size * 512));
        let PartitionType::Gpt { type_guid, .. } = &p.kind else {
            panic!()
        };
        assert_eq!(type_guid, kind);
    }
    let descr: Vec<String> = t.partitions.iter().map(|p| p.kind.describe()).collect();
    assert_eq!(
        descr[..4],
        ["EFI System", "Linux filesystem", "Linux swap", "BIOS boot"]
    );
    assert_eq!(descr[4], "0b3a1f48-7cb2-4c57-a4c1-2c5a1b7a9e11");
    let PartitionType::Gpt { name, .. } = &t.partitions[0].kind else {
        panic!()
    };
    assert_eq!(name, "ESP");
    assert!(
        t.partitions[3]
            .kind
            .taken_whole()
            .unwrap()
            .contains("BIOS boot")
    );
    assert!(t.partitions[0].kind.taken_whole().is_none());
    assert!(t.partitions[4].kind.taken_whole().is_none());
}

#[test]
fn damaged_gpt_primary_or_backup_is_read_from_the_other_and_said() {
    if !have(&["sgdisk", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sgdisk_disk(dir.path());
    let good = read(&img).unwrap().partitions;
    let last = 64 * MIB - 512;
    // Primary header, then primary entries, then backup header damaged, one at a time.
    for (at, want) in [
        (512 + 40, "primary header is damaged (header CRC32"),
        (
            1024 + 200,
            "primary header is damaged (partition entries CRC32",
        ),
        (last + 40, "backup header at sector 131071 is damaged"),
    ] {
        let byte = peek(&img, at, 1)[0];
        patch(&img, at, &[byte ^ 0x5a]);
        let t = read(&img).unwrap();
        assert_eq!(t.partitions, good, "{want}");
        assert!(
            t.notes.iter().any(|n| n.contains(want)),
            "{want}: {:?}",
            t.notes
        );
        patch(&img, at, &[byte]);
    }
    // Both damaged: refused, both reasons given.
    let (p, b) = (peek(&img, 512 + 40, 1), peek(&img, last + 40, 1));
    patch(&img, 512 + 40, &[p[0] ^ 0xff]);
    patch(&img, last + 40, &[b[0] ^ 0xff]);
    match read(&img) {
        Err(LayoutError::Table(m)) => assert!(m.contains("primary") && m.contains("backup"), "{m}"),
        other => panic!("{other:?}"),
    }
    patch(&img, 512 + 40, &p);
    patch(&img, last + 40, &b);
    // The image written onto a smaller disk: the table reaches past its end.
    let small = dir.path().join("small.img");
    std::fs::write(&small, peek(&img, 0, (32 * MIB) as usize)).unwrap();
    match read(&small) {
        Err(LayoutError::Table(m)) => assert!(m.contains("beyond the disk's end"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A protective MBR with no GPT behind it.
    let bare = image(dir.path(), "pmbr.img", 8 * MIB);
    patch(&bare, 0, &peek(&img, 0, 512));
    match read(&bare) {
        Err(LayoutError::Table(m)) => assert!(m.contains("no GPT header"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn gpt_with_4096_byte_sectors() {
    if !have(&["fdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "4k.img", 64 * MIB);
    let mut child = std::process::Command::new("fdisk")
        .args(["-b", "4096", img.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"g\nn\n1\n\n+8M\nt\n1\nn\n2\n\n+20M\nw\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    // fdisk's own listing: "4k.img1  256  2303  2048  8M EFI System".
    let listing = run("fdisk", &["-b", "4096", "-l", img.to_str().unwrap()]);
    let want: Vec<(u64, u64)> = listing
        .lines()
        .filter(|l| l.contains("4k.img"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(1)?.parse().ok()?, f.get(3)?.parse().ok()?))
        })
        .collect();
    let t = read(&img).unwrap();
    assert_eq!((t.kind, t.sector_size), (TableKind::Gpt, 4096));
    let got: Vec<(u64, u64)> = t
        .partitions
        .iter()
        .map(|p| (p.start / 4096, p.len / 4096))
        .collect();
    assert_eq!(got, want);
    assert_eq!(t.partitions[0].kind.describe(), "EFI System");
}

fn sfdisk_mbr(dir: &Path) -> PathBuf {
    let img = image(dir, "mbr.img", 64 * MIB);
    let mut child = std::process::Command::new("sfdisk")
        .args(["-q", img.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\n,8M,c\n,4M,83\n,,E\n,6M,83\n,6M,82\n,,8e\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    img
}

#[test]
fn mbr_with_extended_partition_matches_sfdisk() {
    if !have(&["sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sfdisk_mbr(dir.path());
    let t = read(&img).unwrap();
    assert_eq!(t.kind, TableKind::Mbr);
    let want = sfdisk_dump(&img);
    let got: Vec<(u32, u64, u64, String)> = t
        .partitions
        .iter()
        .map(|p| {
            let PartitionType::Mbr { type_byte, .. } = p.kind else {
                panic!()
            };
            (
                p.number,
                p.start / 512,
                p.len / 512,
                format!("{type_byte:x}"),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [1, 2, 5, 6, 7]);
    assert!(matches!(
        t.partitions[2].kind,
        PartitionType::Mbr { logical: true, .. }
    ));
    assert_eq!(t.partitions[0].kind.describe(), "W95 FAT32 (LBA) (0x0c)");
    assert!(t.partitions[4].kind.taken_whole().unwrap().contains("LVM"));
}

#[test]
fn contradictory_mbr_tables_are_refused_with_the_partition_named() {
    if !have(&["sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = sfdisk_mbr(dir.path());
    let entry = |i: u64| 446 + 16 * i;
    let le = |v: u32| v.to_le_bytes();
    // Partition 2 starting inside partition 1.
    let saved = peek(&img, 0, 512);
    patch(&img, entry(1) + 8, &le(4096));
    match read(&img) {
        Err(LayoutError::Table(m)) => assert!(
            m.contains("partitions 1") && m.contains("and 2") && m.contains("overlap"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    // Partition 1 running past the disk's end.
    patch(&img, 0, &saved);
    patch(&img, entry(0) + 12, &le(200_000));
    match read(&img) {
        Err(LayoutError::Table(m)) => assert!(m.contains("beyond the disk's end"), "{m}"),
        other => panic!("{other:?}"),
    }
    patch(&img, 0, &saved);
    // The second logical partition's boot record pointing back at the first: a loop.
    let ext_start = 26624u64;
    let first_ebr = peek(&img, ext_start * 512, 512);
    let next_rel = u32::from_le_bytes(first_ebr[446 + 16 + 8..446 + 16 + 12].try_into().unwrap());
    let second = (ext_start + u64::from(next_rel)) * 512;
    patch(&img, second + 446 + 16 + 8, &le(0));
    patch(&img, second + 446 + 16 + 4, &[0x05]);
    patch(&img, second + 446 + 16 + 12, &le(2048));
    match read(&img) {
        Err(LayoutError::Table(m)) => assert!(m.contains("loops"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bare_file_system_is_no_table() {
    if !have(&["mkfs.vfat", "mkfs.ext4"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (mkfs, args) in [
        ("mkfs.vfat", &["-F", "32"][..]),
        ("mkfs.ext4", &["-q", "-F"][..]),
    ] {
        let img = image(dir.path(), "bare.img", 40 * MIB);
        let mut a = args.to_vec();
        a.push(img.to_str().unwrap());
        run(mkfs, &a);
        let t = read(&img).unwrap();
        assert_eq!(t.kind, TableKind::None, "{mkfs}");
        assert!(t.partitions.is_empty());
    }
    // Nothing at all.
    let img = image(dir.path(), "zero.img", MIB);
    assert_eq!(read(&img).unwrap().kind, TableKind::None);
}
