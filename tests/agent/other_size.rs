//! Issue 23 on the agent's HTTP path: the same dirty GPT image (ESP, NTFS, ext4 last) onto a
//! larger disk with `grow_last`, a smaller one (ext4 shrunk) and one too small (refused untouched,
//! the failure reported); each report names the disk's size and what was adjusted.

use super::{Image, Server, mac, options};
use crate::store::other_size::{assert_same_files, sgdisk_clean, spec};
use crate::store::util::{Fixture, label};
use roomcast_lab::dirty_disk;
use roomcast_proto::contract::Verdict;
use roomcast_store::capture::{self, CaptureOptions};
use roomcast_store::chunk::ChunkSize;
use roomcast_store::fit::FitOptions;

#[test]
fn the_agent_fits_the_image_to_larger_smaller_and_too_small_disks() {
    let Fixture {
        dir,
        store,
        signer,
        pub_file,
        ..
    } = Fixture::new();
    let master = dirty_disk::build(&dir.path().join("master.img"), &spec(false)).unwrap();
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
    let ext_start = master.part(dirty_disk::FsKind::Ext4).unwrap().start;
    for (name, size, grow) in [
        ("larger", master.size + (20 << 20), true),
        ("smaller", master.size - (12 << 20), false),
        ("tiny", ext_start + (2 << 20), false),
    ] {
        let disk = img.dir.path().join(format!("{name}.img"));
        std::fs::write(&disk, vec![0x5a; size as usize]).unwrap();
        let mut opts = options(&server, &server.token(mac(1)), &disk, &img);
        opts.fit = FitOptions { grow_last: grow };
        let out = roomcast_agent::run(&opts).unwrap();
        let r = out.report.restore().unwrap();
        if name == "tiny" {
            assert_eq!(out.report.result, Verdict::Failed);
            let e = out.report.error.clone().unwrap();
            assert!(
                e.contains("bytes missing") && e.contains("partition 3 (ext4)"),
                "{e}"
            );
            assert_eq!(r.written_chunks, 0);
            assert_eq!(r.disk_size, size);
            assert!(
                std::fs::read(&disk).unwrap().iter().all(|&b| b == 0x5a),
                "a refused disk was written"
            );
            continue;
        }
        out.result.as_ref().unwrap();
        assert_eq!(r.disk_size, size, "{name}");
        assert!(r.adjusted[0].starts_with("GPT rewritten"), "{name}: {r:?}");
        let want = if grow { "grown" } else { "shrunk" };
        assert!(r.adjusted.iter().any(|a| a.contains(want)), "{name}: {r:?}");
        assert_eq!(std::fs::metadata(&disk).unwrap().len(), size);
        sgdisk_clean(&disk);
        assert_same_files(&master, &disk);
    }
}
