//! Issue 23 on the agent's HTTP path: the same dirty GPT image (ESP, NTFS, ext4 last) onto a
//! larger disk with `grow_last`, a smaller one (ext4 shrunk) and one too small (refused untouched,
//! the failure reported); a Windows disk (ESP, MSR, NTFS last) onto a smaller one (NTFS shrunk by
//! ntfsresize) and one too small; each report names the disk's size and what was adjusted.

use super::{Image, Server, mac, options};
use crate::store::other_size::{
    assert_ntfs_shrunk, assert_same_files, sgdisk_clean, spec, windows_master,
};
use crate::store::util::{Fixture, label};
use roomcast_lab::dirty_disk::{self, DirtyDisk};
use roomcast_proto::contract::Verdict;
use roomcast_store::capture::{self, CaptureOptions};
use roomcast_store::chunk::ChunkSize;
use roomcast_store::fit::FitOptions;
use std::path::Path;

/// The master built by `build` in a fresh store, captured, served.
fn served(build: impl FnOnce(&Path) -> DirtyDisk) -> (DirtyDisk, Image, Server) {
    let Fixture {
        dir,
        store,
        signer,
        pub_file,
        ..
    } = Fixture::new();
    let master = build(&dir.path().join("master.img"));
    let id = capture::capture(
        &store,
        &master.path,
        label("m"),
        &signer,
        &CaptureOptions {
            chunk_size: ChunkSize::new(1 << 20).unwrap(),
            level: 3,
            workers: 2,
        },
        &|_| {},
    )
    .unwrap()
    .id;
    let img = Image {
        dir,
        store,
        id,
        source: master.path.clone(),
        pub_file,
    };
    let server = Server::start(&img);
    (master, img, server)
}

/// Runs the agent onto a disk of `size` bytes full of 0x5a; `Some(holder)`: the restore must be
/// refused naming the partition `holder`, with nothing written; else it must succeed with the
/// last partition `want` ("grown", "shrunk").
fn onto(
    master: &DirtyDisk,
    img: &Image,
    server: &Server,
    (name, size, grow): (&str, u64, bool),
    refused: Option<&str>,
    want: &str,
) {
    let disk = img.dir.path().join(format!("{name}.img"));
    std::fs::write(&disk, vec![0x5a; size as usize]).unwrap();
    let mut opts = options(server, &server.token(mac(1)), &disk, img);
    opts.fit = FitOptions { grow_last: grow };
    let out = roomcast_agent::run(&opts).unwrap();
    let r = out.report.restore().unwrap();
    if let Some(holder) = refused {
        assert_eq!(out.report.result, Verdict::Failed);
        let e = out.report.error.clone().unwrap();
        assert!(e.contains("bytes missing") && e.contains(holder), "{e}");
        assert_eq!(r.written_chunks, 0);
        assert_eq!(r.disk_size, size);
        assert!(
            std::fs::read(&disk).unwrap().iter().all(|&b| b == 0x5a),
            "a refused disk was written"
        );
        return;
    }
    out.result.as_ref().unwrap();
    assert_eq!(r.disk_size, size, "{name}");
    assert!(r.adjusted[0].starts_with("GPT rewritten"), "{name}: {r:?}");
    assert!(r.adjusted.iter().any(|a| a.contains(want)), "{name}: {r:?}");
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), size);
    sgdisk_clean(&disk);
    assert_same_files(master, &disk);
}

#[test]
fn the_agent_fits_the_image_to_larger_smaller_and_too_small_disks() {
    let (master, img, server) = served(|p| dirty_disk::build(p, &spec(false)).unwrap());
    let ext_start = master.part(dirty_disk::FsKind::Ext4).unwrap().start;
    onto(
        &master,
        &img,
        &server,
        ("larger", master.size + (20 << 20), true),
        None,
        "grown",
    );
    onto(
        &master,
        &img,
        &server,
        ("smaller", master.size - (12 << 20), false),
        None,
        "(ext4) and its file system shrunk",
    );
    onto(
        &master,
        &img,
        &server,
        ("tiny", ext_start + (2 << 20), false),
        Some("partition 3 (ext4)"),
        "",
    );
}

#[test]
fn the_agent_shrinks_the_ntfs_of_a_windows_disk_onto_a_smaller_one() {
    let (master, img, server) = served(windows_master);
    let ntfs_start = master.part(dirty_disk::FsKind::Ntfs).unwrap().start;
    let size = master.size - (12 << 20);
    onto(
        &master,
        &img,
        &server,
        ("smaller", size, false),
        None,
        "partition 3 (ntfs) and its file system shrunk",
    );
    assert_ntfs_shrunk(&master, &img.dir.path().join("smaller.img"), size);
    onto(
        &master,
        &img,
        &server,
        ("tiny", ntfs_start + (4 << 20), false),
        Some("partition 3 (ntfs)"),
        "",
    );
}
