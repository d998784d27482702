//! ext2/3/4 made by mke2fs, filled and mostly emptied with debugfs, mapped by `ext::probe`, checked
//! against debugfs and dumpe2fs, and restored from the used ranges alone onto random bytes.

use crate::util::{have, make_files, patch, peek, random_file, restore_used, run, run_status};
use roomcast_layout::{FsError, ext};
use std::fs::File;
use std::path::Path;

const MIB: u64 = 1 << 20;

/// A value of `dumpe2fs -h`.
fn field(dump: &str, name: &str) -> u64 {
    dump.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("dumpe2fs has no `{name}`:\n{dump}"))
}

/// A file system made with `mkfs args`, written with files, most deleted: (image, kept files as
/// (path in the fs, content)).
pub fn churned(
    dir: &Path,
    mkfs: &str,
    args: &[&str],
    size: u64,
) -> (std::path::PathBuf, Vec<(String, Vec<u8>)>) {
    let img = dir.join("fs.img");
    // Never-zeroed free space, as on a used disk.
    random_file(&img, size, 7);
    let mut a = vec!["-F", "-q", "-E", "nodiscard"];
    a.extend_from_slice(args);
    let img_s = img.to_str().unwrap();
    a.push(img_s);
    run(mkfs, &a);
    let files = make_files(&dir.join("src"), 40, 600 * 1024, 11);
    let more = make_files(&dir.join("src2"), 12, 900 * 1024, 13);
    let mut script = String::from("mkdir sub\n");
    let place = |i: usize| if i.is_multiple_of(2) { "" } else { "sub/" };
    for (i, (name, path, _)) in files.iter().enumerate() {
        script += &format!("cd /{}\nwrite {} {name}\n", place(i), path.display());
    }
    script += "cd /\n";
    for (i, (name, _, _)) in files.iter().enumerate() {
        if !i.is_multiple_of(5) {
            script += &format!("rm /{}{name}\n", place(i));
        }
    }
    for (name, path, _) in &more {
        script += &format!("write {} late-{name}\n", path.display());
    }
    for (i, (name, _, _)) in more.iter().enumerate() {
        if i % 2 == 1 {
            script += &format!("rm /late-{name}\n");
        }
    }
    let script_path = dir.join("fill.debugfs");
    std::fs::write(&script_path, script).unwrap();
    run(
        "debugfs",
        &["-w", "-f", script_path.to_str().unwrap(), img_s],
    );
    let mut kept = Vec::new();
    for (i, (name, _, data)) in files.into_iter().enumerate() {
        if i.is_multiple_of(5) {
            kept.push((format!("/{}{name}", place(i)), data));
        }
    }
    for (i, (name, _, data)) in more.into_iter().enumerate() {
        if i.is_multiple_of(2) {
            kept.push((format!("/late-{name}"), data));
        }
    }
    let (code, out) = run_status("e2fsck", &["-fn", img_s]);
    assert_eq!(
        code, 0,
        "the source file system itself is not clean:\n{out}"
    );
    (img, kept)
}

/// The three checks of every case: files inside `used`, used = the tool's count, restore from used
/// ranges alone is clean with identical files.
fn check(label: &str, mkfs: &str, args: &[&str], size: u64, want_fs: &str) {
    if !have(&[mkfs, "debugfs", "dumpe2fs", "e2fsck"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, kept) = churned(dir.path(), mkfs, args, size);
    let img_s = img.to_str().unwrap();
    let map = match ext::probe(&File::open(&img).unwrap()) {
        Some(Ok(m)) => m,
        other => panic!("{label}: {other:?}"),
    };
    assert_eq!(map.fs, want_fs, "{label}");
    let dump = run("dumpe2fs", &["-h", img_s]);
    let bs = field(&dump, "Block size:");
    // (a) every block of every remaining file is used.
    for (path, _) in &kept {
        let blocks = run("debugfs", &["-R", &format!("blocks {path}"), img_s]);
        for b in blocks.split_whitespace() {
            let b: u64 = b.parse().unwrap();
            assert!(
                map.used.contains(b * bs, (b + 1) * bs),
                "{label}: block {b} of {path} is not in the used map"
            );
        }
    }
    // (b) used bytes = the tool's own count.
    let count = field(&dump, "Block count:");
    let free = field(&dump, "Free blocks:");
    assert_eq!(
        map.used.bytes(),
        (count - free) * bs,
        "{label}: used bytes vs dumpe2fs"
    );
    assert!(
        map.used.bytes() < size / 2,
        "{label}: most data was deleted"
    );
    // (c) restore only the used ranges onto random bytes.
    let dst = dir.path().join("restored.img");
    restore_used(&img, &map.used, &dst, 99);
    let dst_s = dst.to_str().unwrap();
    let (code, out) = run_status("e2fsck", &["-fn", dst_s]);
    assert_eq!(code, 0, "{label}: e2fsck -fn on the restored copy:\n{out}");
    for (path, data) in &kept {
        let out = dir.path().join("out.bin");
        let _ = std::fs::remove_file(&out);
        run(
            "debugfs",
            &["-R", &format!("dump {path} {}", out.display()), dst_s],
        );
        assert!(
            std::fs::read(&out).unwrap() == *data,
            "{label}: {path} differs after restore"
        );
    }
    eprintln!(
        "{label}: {} of {} bytes used, {} files kept",
        map.used.bytes(),
        size,
        kept.len()
    );
}

#[test]
fn ext4_defaults_small_blocks_flex_bg() {
    // 1 KiB blocks on a small file system (mke2fs.conf's "small"), flex_bg, uninit groups.
    check("ext4 defaults", "mkfs.ext4", &[], 32 * MIB, "ext4");
}

#[test]
fn ext4_4k_many_groups_flex_bg_64bit() {
    check(
        "ext4 4k 64bit flex_bg",
        "mkfs.ext4",
        &["-b", "4096", "-g", "1024", "-G", "4", "-O", "64bit"],
        40 * MIB,
        "ext4",
    );
}

#[test]
fn ext4_without_flex_bg() {
    check(
        "ext4 ^flex_bg",
        "mkfs.ext4",
        &["-b", "4096", "-g", "2048", "-O", "^flex_bg"],
        40 * MIB,
        "ext4",
    );
}

#[test]
fn ext4_without_journal_sparse_super2() {
    check(
        "ext4 ^has_journal sparse_super2",
        "mkfs.ext4",
        &[
            "-b",
            "4096",
            "-g",
            "1024",
            "-O",
            "^has_journal,sparse_super2",
        ],
        40 * MIB,
        "ext4",
    );
}

#[test]
fn ext4_meta_bg() {
    check(
        "ext4 meta_bg",
        "mkfs.ext4",
        &["-b", "1024", "-g", "1024", "-O", "meta_bg,^resize_inode"],
        32 * MIB,
        "ext4",
    );
}

#[test]
fn ext3_and_ext2() {
    check("ext3", "mkfs.ext3", &["-b", "1024"], 24 * MIB, "ext3");
    check(
        "ext2",
        "mkfs.ext2",
        &["-b", "4096", "-g", "2048"],
        24 * MIB,
        "ext2",
    );
}

/// A small ext4 with a change made by `debugfs -w -R cmd`, probed.
fn probe_after(cmd: &str) -> Result<roomcast_layout::FsMap, FsError> {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fs.img");
    random_file(&img, 16 * MIB, 3);
    run(
        "mkfs.ext4",
        &[
            "-F",
            "-q",
            "-b",
            "4096",
            "-g",
            "1024",
            img.to_str().unwrap(),
        ],
    );
    run("debugfs", &["-w", "-R", cmd, img.to_str().unwrap()]);
    ext::probe(&File::open(&img).unwrap()).expect("still ext4")
}

#[test]
fn unclean_ext4_is_refused_with_reason_and_fix() {
    if !have(&["mkfs.ext4", "debugfs"]) {
        return;
    }
    for (cmd, want) in [
        ("feature needs_recovery", "journal needs recovery"),
        ("ssv state 3", "errors are recorded"),
        ("ssv state 0", "not cleanly unmounted"),
        ("ssv last_orphan 12", "orphan inodes"),
    ] {
        match probe_after(cmd) {
            Err(FsError::NotClean { reason, fix }) => {
                assert!(reason.contains(want), "{cmd}: {reason}");
                assert!(fix.contains("e2fsck -f"), "{cmd}: {fix}");
            }
            other => panic!("{cmd}: {other:?}"),
        }
    }
}

#[test]
fn contradicting_counts_and_unknown_features_are_taken_whole() {
    if !have(&["mkfs.ext4", "debugfs"]) {
        return;
    }
    for (cmd, want) in [
        ("set_bg 2 free_blocks_count 5", "group 2's block bitmap has"),
        ("ssv free_blocks_count 17", "the superblock says 17"),
        ("ssv feature_incompat 0x100000", "incompatible features"),
    ] {
        match probe_after(cmd) {
            Err(FsError::Unsupported(why)) => assert!(why.contains(want), "{cmd}: {why}"),
            other => panic!("{cmd}: {other:?}"),
        }
    }
}

#[test]
fn a_journal_block_freed_in_the_bitmap_is_seen() {
    if !have(&["mkfs.ext4", "debugfs"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fs.img");
    let img_s = img.to_str().unwrap();
    random_file(&img, 16 * MIB, 5);
    run(
        "mkfs.ext4",
        &[
            "-F",
            "-q",
            "-b",
            "4096",
            "-g",
            "8192",
            "-O",
            "^flex_bg,^metadata_csum,^uninit_bg",
            img_s,
        ],
    );
    // The journal's last block, freed in the bitmap, the counts kept in step (one group) as a
    // buggy tool would: only the journal check sees it.
    let blocks = run("debugfs", &["-R", "blocks <8>", img_s]);
    let last: u64 = blocks.split_whitespace().last().unwrap().parse().unwrap();
    let free = field(&run("dumpe2fs", &["-h", img_s]), "Free blocks:") + 1;
    let script = dir.path().join("free.debugfs");
    std::fs::write(
        &script,
        format!("freeb {last}\nset_bg 0 free_blocks_count {free}\nssv free_blocks_count {free}\n"),
    )
    .unwrap();
    run("debugfs", &["-w", "-f", script.to_str().unwrap(), img_s]);
    match ext::probe(&File::open(&img).unwrap()) {
        Some(Err(FsError::Unsupported(why))) => assert!(why.contains("journal"), "{why}"),
        other => panic!("{other:?}"),
    }
    // A truncated partition is taken whole, never read past its end.
    let short = dir.path().join("short.img");
    std::fs::write(&short, peek(&img, 0, 8 << 20)).unwrap();
    match ext::probe(&File::open(&short).unwrap()) {
        Some(Err(FsError::Unsupported(why))) => {
            assert!(why.contains("larger than its partition"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    // Not ext at all.
    patch(&img, 1024 + 56, &[0, 0]);
    assert!(ext::probe(&File::open(&img).unwrap()).is_none());
}
