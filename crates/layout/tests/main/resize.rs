//! Issue 23's table half: a GPT image written onto a larger or smaller disk, fixed with
//! `gpt_resize_patches` computed from the image's head and tail alone, then checked by `sgdisk -v`.

use crate::util::{have, patch, peek, put_at, random_file, run, run_status};
use roomcast_layout::table::{self, HeadTail, gpt_resize_patches, last_partition_end};
use roomcast_layout::{LayoutError, TableKind};
use std::fs::File;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;
const IMAGE: u64 = 64 * MIB;

/// A 64 MiB GPT image: FAT16 in partition 1 (1..9 MiB), partition 2 (9..29 MiB).
fn image(dir: &Path) -> PathBuf {
    let img = dir.join("image.img");
    File::create(&img).unwrap().set_len(IMAGE).unwrap();
    run(
        "sgdisk",
        &[
            "-n",
            "1:2048:+8M",
            "-t",
            "1:ef00",
            "-n",
            "2:0:+20M",
            "-t",
            "2:8300",
            img.to_str().unwrap(),
        ],
    );
    let esp = dir.join("esp.img");
    random_file(&esp, 8 * MIB, 9);
    run("mkfs.vfat", &["-F", "16", "-s", "1", esp.to_str().unwrap()]);
    put_at(&img, &esp, MIB);
    img
}

/// The image's first and last MiB, as a manifest would keep them.
fn head_tail(img: &Path) -> (Vec<u8>, Vec<u8>) {
    (
        peek(img, 0, MIB as usize),
        peek(img, IMAGE - MIB, MIB as usize),
    )
}

/// The image written onto a disk of `size` bytes (what fits of it), then the patches.
fn write_onto(img: &Path, dir: &Path, size: u64) -> Result<PathBuf, LayoutError> {
    let (head, tail) = head_tail(img);
    let patches = gpt_resize_patches(
        &HeadTail {
            head: &head,
            tail: &tail,
            size: IMAGE,
        },
        size,
    )?;
    let target = dir.join(format!("target-{size}.img"));
    random_file(&target, size, 17);
    std::fs::write(&target, peek(img, 0, IMAGE.min(size) as usize)).unwrap();
    File::options()
        .write(true)
        .open(&target)
        .unwrap()
        .set_len(size)
        .unwrap();
    for p in patches {
        patch(&target, p.offset, &p.bytes);
    }
    Ok(target)
}

fn sgdisk_clean(disk: &Path) {
    let (code, out) = run_status("sgdisk", &["-v", disk.to_str().unwrap()]);
    assert!(code == 0 && out.contains("No problems found"), "{out}");
    assert!(!out.to_lowercase().contains("warning"), "{out}");
}

#[test]
fn gpt_image_onto_larger_and_smaller_disks() {
    if !have(&["sgdisk", "mkfs.vfat", "fsck.fat"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (head, tail) = head_tail(&img);
    let ht = HeadTail {
        head: &head,
        tail: &tail,
        size: IMAGE,
    };
    assert_eq!(last_partition_end(&ht).unwrap(), 29 * MIB);
    let want = table::read(&File::open(&img).unwrap()).unwrap().partitions;
    for size in [
        128 * MIB,
        IMAGE,
        IMAGE + 512,
        40 * MIB,
        29 * MIB + 17 * 1024,
    ] {
        let target = write_onto(&img, dir.path(), size).unwrap();
        sgdisk_clean(&target);
        let t = table::read(&File::open(&target).unwrap()).unwrap();
        assert_eq!(t.partitions, want, "{size}");
        assert!(t.notes.is_empty(), "{size}: {:?}", t.notes);
        let dump = run("sfdisk", &["-d", target.to_str().unwrap()]);
        assert!(
            dump.contains(&format!("last-lba: {}", size / 512 - 34)),
            "{size}: {dump}"
        );
        let esp = dir.path().join("esp.out");
        std::fs::write(&esp, peek(&target, MIB, (8 * MIB) as usize)).unwrap();
        assert_eq!(run_status("fsck.fat", &["-n", esp.to_str().unwrap()]).0, 0);
    }
    // Too small for partition 2: refused, naming it and the bytes missing.
    match write_onto(&img, dir.path(), 24 * MIB) {
        Err(LayoutError::Table(m)) => {
            assert!(
                m.contains("partition 2") && m.contains("bytes missing"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn damaged_primary_is_rebuilt_from_the_backup_on_resize() {
    if !have(&["sgdisk", "mkfs.vfat"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let byte = peek(&img, 512 + 40, 1)[0];
    patch(&img, 512 + 40, &[byte ^ 1]);
    patch(&img, 1024, &[0x77; 64]);
    let target = write_onto(&img, dir.path(), 96 * MIB).unwrap();
    sgdisk_clean(&target);
    let t = table::read(&File::open(&target).unwrap()).unwrap();
    assert!(t.notes.is_empty(), "{:?}", t.notes);
    assert_eq!(t.partitions.len(), 2);
}

#[test]
fn mbr_needs_no_resize() {
    if !have(&["sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("mbr.img");
    File::create(&img).unwrap().set_len(16 * MIB).unwrap();
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
        .write_all(b"label: dos\n,4M,83\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let disk = File::open(&img).unwrap();
    assert_eq!(table::read(&disk).unwrap().kind, TableKind::Mbr);
    assert_eq!(last_partition_end(&disk).unwrap(), 5 * MIB);
    assert!(matches!(
        gpt_resize_patches(&disk, 32 * MIB),
        Err(LayoutError::Table(_))
    ));
}

/// `fit_patches` with a new end for the last partition: grown to the new usable end and shrunk,
/// from the image's head and tail alone (GPT); the MBR's last primary partition likewise.
#[test]
fn the_last_partition_is_grown_or_shrunk_with_the_table() {
    if !have(&["sgdisk", "mkfs.vfat", "sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let (head, tail) = head_tail(&img);
    let ht = HeadTail {
        head: &head,
        tail: &tail,
        size: IMAGE,
    };
    for (size, end) in [
        (128 * MIB, None),
        (128 * MIB, Some(0)),
        (24 * MIB, Some(20 * MIB)),
    ] {
        let usable = table::usable_end(&ht, size).unwrap();
        // The last usable sector is 34 from the end: it ends 33 sectors before.
        assert_eq!(usable, (size / 512 - 33) * 512);
        let end = end.map(|e| if e == 0 { usable } else { e });
        let patches = table::fit_patches(&ht, size, end).unwrap();
        let target = dir.path().join(format!("fit-{size}.img"));
        random_file(&target, size, 5);
        std::fs::write(&target, peek(&img, 0, IMAGE.min(size) as usize)).unwrap();
        File::options()
            .write(true)
            .open(&target)
            .unwrap()
            .set_len(size)
            .unwrap();
        for p in patches {
            patch(&target, p.offset, &p.bytes);
        }
        sgdisk_clean(&target);
        let t = table::read(&File::open(&target).unwrap()).unwrap();
        let last = table::last_partition(&t).unwrap();
        assert_eq!(last.number, 2);
        assert_eq!(last.start + last.len, end.unwrap_or(29 * MIB), "{size}");
    }
    // Beyond the usable end: refused.
    assert!(table::fit_patches(&ht, 24 * MIB, Some(24 * MIB)).is_err());

    // MBR: the last primary partition's sector count; nothing without a new end.
    let mbr = dir.path().join("mbr.img");
    File::create(&mbr).unwrap().set_len(16 * MIB).unwrap();
    let mut child = std::process::Command::new("sfdisk")
        .args(["-q", mbr.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\n,4M,83\n,4M,83\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let disk = File::open(&mbr).unwrap();
    assert!(
        table::fit_patches(&disk, 32 * MIB, None)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        table::usable_end(&disk, 32 * MIB).unwrap(),
        32 * MIB - 33 * 512
    );
    let patches = table::fit_patches(&disk, 32 * MIB, Some(31 * MIB)).unwrap();
    drop(disk);
    File::options()
        .write(true)
        .open(&mbr)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    for p in patches {
        patch(&mbr, p.offset, &p.bytes);
    }
    sgdisk_clean(&mbr);
    let t = table::read(&File::open(&mbr).unwrap()).unwrap();
    assert_eq!(
        table::last_partition(&t).unwrap().start + table::last_partition(&t).unwrap().len,
        31 * MIB
    );
}
