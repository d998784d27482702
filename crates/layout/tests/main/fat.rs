//! FAT12/16/32 made by mkfs.vfat, filled and mostly emptied with mtools, mapped by `fat::probe`,
//! checked against mshowfat and fsck.fat, and restored from the used ranges alone onto random bytes.

use crate::util::{have, make_files, patch, peek, random_file, restore_used, run, run_status};
use roomcast_layout::{FsError, fat};
use std::fs::File;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

/// A number after `key` in minfo's output.
fn minfo(info: &str, key: &str) -> u64 {
    info.lines()
        .find_map(|l| {
            let v = l
                .trim()
                .strip_prefix(key)?
                .trim_start_matches([':', '=', ' ']);
            v.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("minfo has no `{key}`:\n{info}"))
}

/// Where the data area starts and how big a cluster is, as mtools reads the boot sector.
fn geometry(img: &str) -> (u64, u64) {
    let info = run("minfo", &["-i", img]);
    let ss = minfo(&info, "sector size");
    let fat_len = match minfo(&info, "sectors per fat") {
        0 => minfo(&info, "Big fatlen"),
        n => n,
    };
    let first_data = minfo(&info, "reserved (boot) sectors")
        + minfo(&info, "fats") * fat_len
        + (minfo(&info, "max available root directory slots") * 32).div_ceil(ss);
    (first_data * ss, minfo(&info, "cluster size") * ss)
}

/// A FAT image with files written, most deleted: (image, kept files as (path, content)).
pub fn churned(dir: &Path, bits: &str, spc: &str, size: u64) -> (PathBuf, Vec<(String, Vec<u8>)>) {
    let img = dir.join("fat.img");
    random_file(&img, size, 21);
    let img_s = img.to_str().unwrap().to_string();
    run("mkfs.vfat", &["-F", bits, "-s", spc, &img_s]);
    let max = size / 40;
    let files = make_files(&dir.join("src"), 30, max, 23);
    let more = make_files(&dir.join("src2"), 8, max, 29);
    run("mmd", &["-i", &img_s, "::/sub"]);
    let dest = |i: usize| {
        if i.is_multiple_of(2) {
            "::/"
        } else {
            "::/sub/"
        }
    };
    for (i, (_, path, _)) in files.iter().enumerate() {
        run("mcopy", &["-i", &img_s, path.to_str().unwrap(), dest(i)]);
    }
    for (i, (name, _, _)) in files.iter().enumerate() {
        if !i.is_multiple_of(4) {
            run("mdel", &["-i", &img_s, &format!("{}{name}", dest(i))]);
        }
    }
    for (name, path, _) in &more {
        run(
            "mcopy",
            &[
                "-i",
                &img_s,
                path.to_str().unwrap(),
                &format!("::/late-{name}"),
            ],
        );
    }
    for (i, (name, _, _)) in more.iter().enumerate() {
        if i % 2 == 1 {
            run("mdel", &["-i", &img_s, &format!("::/late-{name}")]);
        }
    }
    let mut kept = Vec::new();
    for (i, (name, _, data)) in files.into_iter().enumerate() {
        if i.is_multiple_of(4) {
            kept.push((format!("{}{name}", dest(i)), data));
        }
    }
    for (i, (name, _, data)) in more.into_iter().enumerate() {
        if i.is_multiple_of(2) {
            kept.push((format!("::/late-{name}"), data));
        }
    }
    let (code, out) = run_status("fsck.fat", &["-n", &img_s]);
    assert_eq!(
        code, 0,
        "the source file system itself is not clean:\n{out}"
    );
    (img, kept)
}

/// Cluster numbers in mshowfat's output ("::/x <2-148> <150>").
fn clusters(showfat: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for part in showfat.split('<').skip(1) {
        let r = part.split('>').next().unwrap();
        if r.is_empty() {
            continue;
        }
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        out.extend(a.trim().parse::<u64>().unwrap()..=b.trim().parse::<u64>().unwrap());
    }
    out
}

fn check(bits: &str, spc: &str, size: u64) {
    if !have(&[
        "mkfs.vfat",
        "fsck.fat",
        "mcopy",
        "mdel",
        "mmd",
        "minfo",
        "mshowfat",
    ]) {
        return;
    }
    let label = format!("fat{bits}");
    let dir = tempfile::tempdir().unwrap();
    let (img, kept) = churned(dir.path(), bits, spc, size);
    let img_s = img.to_str().unwrap();
    let map = match fat::probe(&File::open(&img).unwrap()) {
        Some(Ok(m)) => m,
        other => panic!("{label}: {other:?}"),
    };
    assert_eq!(map.fs, label);
    let (data, cluster) = geometry(img_s);
    // (a) every cluster of every remaining file is used.
    for (path, content) in &kept {
        let chain = clusters(&run("mshowfat", &["-i", img_s, path]));
        assert_eq!(
            chain.len() as u64,
            (content.len() as u64).div_ceil(cluster),
            "{path}"
        );
        for c in chain {
            let at = data + (c - 2) * cluster;
            assert!(
                map.used.contains(at, at + cluster),
                "{label}: cluster {c} of {path} is not used"
            );
        }
    }
    // (b) used bytes = everything before the data area + fsck.fat's count of used clusters.
    let verbose = run("fsck.fat", &["-n", "-v", img_s]);
    let line = verbose.lines().rfind(|l| l.ends_with(" clusters")).unwrap();
    let counts = line
        .rsplit(", ")
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let (used_clusters, _) = counts.split_once('/').unwrap();
    let used_clusters: u64 = used_clusters.parse().unwrap();
    assert_eq!(
        map.used.bytes(),
        data + used_clusters * cluster,
        "{label}: used bytes vs fsck.fat -v"
    );
    assert!(
        map.used.bytes() < size / 2,
        "{label}: most data was deleted"
    );
    // (c) restore only the used ranges onto random bytes.
    let dst = dir.path().join("restored.img");
    restore_used(&img, &map.used, &dst, 77);
    let dst_s = dst.to_str().unwrap();
    let (code, out) = run_status("fsck.fat", &["-n", dst_s]);
    assert_eq!(code, 0, "{label}: fsck.fat -n on the restored copy:\n{out}");
    for (path, content) in &kept {
        let out = dir.path().join("out.bin");
        let _ = std::fs::remove_file(&out);
        run("mcopy", &["-n", "-i", dst_s, path, out.to_str().unwrap()]);
        assert!(
            std::fs::read(&out).unwrap() == *content,
            "{label}: {path} differs after restore"
        );
    }
    eprintln!(
        "{label}: {} of {size} bytes used, {} files kept",
        map.used.bytes(),
        kept.len()
    );
}

#[test]
fn fat12_churned_and_restored() {
    check("12", "4", 6 * MIB);
}

#[test]
fn fat16_churned_and_restored() {
    check("16", "4", 24 * MIB);
}

#[test]
fn fat32_churned_and_restored() {
    check("32", "1", 40 * MIB);
}

fn fresh(dir: &Path, bits: &str, size: u64) -> PathBuf {
    let img = dir.join(format!("fat{bits}.img"));
    random_file(&img, size, 4);
    run("mkfs.vfat", &["-F", bits, "-s", "1", img.to_str().unwrap()]);
    img
}

#[test]
fn dirty_fat_is_refused_and_exfat_is_not_fat() {
    if !have(&["mkfs.vfat"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Linux's dirty flag in the boot sector (FAT16 at 37, FAT32 at 65), and Windows' clean-shutdown
    // bit in FAT[1].
    for (bits, size, state_at, fat1_byte, clean_bit) in [
        ("16", 24 * MIB, 37, 3u64, 0x80u8),
        ("32", 40 * MIB, 65, 7, 0x08),
    ] {
        let img = fresh(dir.path(), bits, size);
        assert!(matches!(
            fat::probe(&File::open(&img).unwrap()),
            Some(Ok(_))
        ));
        let state = peek(&img, state_at, 1)[0];
        patch(&img, state_at, &[state | 1]);
        match fat::probe(&File::open(&img).unwrap()) {
            Some(Err(FsError::NotClean { reason, fix })) => {
                assert!(reason.contains("dirty"), "{reason}");
                assert!(fix.contains("fsck.vfat -a"), "{fix}");
            }
            other => panic!("fat{bits} boot-sector dirty flag: {other:?}"),
        }
        let (code, _) = run_status("fsck.fat", &["-n", img.to_str().unwrap()]);
        assert_ne!(code, 0, "fsck.fat agrees it is dirty");
        patch(&img, state_at, &[state]);
        let reserved = u64::from(u16::from_le_bytes(peek(&img, 14, 2).try_into().unwrap()));
        let at = reserved * 512 + fat1_byte;
        let b = peek(&img, at, 1)[0];
        patch(&img, at, &[b & !clean_bit]);
        match fat::probe(&File::open(&img).unwrap()) {
            Some(Err(FsError::NotClean { reason, .. })) => {
                assert!(reason.contains("Windows"), "{reason}")
            }
            other => panic!("fat{bits} FAT[1] clean bit: {other:?}"),
        }
    }
    // exFAT's boot sector is not read as FAT.
    let img = fresh(dir.path(), "32", 40 * MIB);
    patch(&img, 3, b"EXFAT   ");
    assert!(fat::probe(&File::open(&img).unwrap()).is_none());
    // A FAT larger than its partition is taken whole.
    let img = fresh(dir.path(), "16", 24 * MIB);
    let short = dir.path().join("short.img");
    std::fs::write(&short, peek(&img, 0, 8 << 20)).unwrap();
    match fat::probe(&File::open(&short).unwrap()) {
        Some(Err(FsError::Unsupported(why))) => {
            assert!(why.contains("larger than its partition"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}
