//! Linux swap made by mkswap: its header page alone is used; a hibernation image is refused.

use crate::util::{have, patch, random_file, restore_used, run};
use roomcast_layout::{FsError, swap};
use std::fs::File;

#[test]
fn swap_header_only_and_restored_copy_is_the_same_swap() {
    if !have(&["mkswap", "blkid"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("swap.img");
    random_file(&img, 8 << 20, 31);
    let img_s = img.to_str().unwrap();
    run("mkswap", &["-L", "roomswap", img_s]);
    let map = match swap::probe(&File::open(&img).unwrap()) {
        Some(Ok(m)) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(map.fs, "swap");
    assert_eq!(map.used, roomcast_layout::Extents::from_range(0, 4096));
    let dst = dir.path().join("restored.img");
    restore_used(&img, &map.used, &dst, 5);
    let probe = |p: &std::path::Path| run("blkid", &["-p", "-o", "export", p.to_str().unwrap()]);
    let (a, b) = (probe(&img), probe(&dst));
    assert!(
        b.contains("TYPE=swap") && b.contains("LABEL=roomswap"),
        "{b}"
    );
    assert_eq!(a, b.replace(dst.to_str().unwrap(), img_s));
}

#[test]
fn hibernated_swap_is_refused() {
    if !have(&["mkswap"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("swap.img");
    random_file(&img, 4 << 20, 8);
    run("mkswap", &[img.to_str().unwrap()]);
    patch(&img, 4096 - 10, b"S1SUSPEND\0");
    match swap::probe(&File::open(&img).unwrap()) {
        Some(Err(FsError::NotClean { reason, fix })) => {
            assert!(reason.contains("hibernation"), "{reason}");
            assert!(
                fix.contains("resume or discard the hibernation image"),
                "{fix}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Not swap at all.
    patch(&img, 4096 - 10, &[0; 10]);
    assert!(swap::probe(&File::open(&img).unwrap()).is_none());
}
