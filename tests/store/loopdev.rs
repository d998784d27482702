//! Capture from and restore onto real block devices (loop devices; the tests run as root).

use super::util::{Fixture, LoopDev, sparse_disk};

#[test]
fn loop_device_capture_and_restore_round_trip() {
    let fx = Fixture::new();
    let size = 6 * 1024 * 1024 + 512 * 3; // a multiple of the sector size, not of the chunk size
    let src_file = fx.path("src.img");
    sparse_disk(
        &src_file,
        size,
        &[
            (0, 40_000, 2),
            (1_000_000, 2_000_000, 3),
            (size - 5000, 5000, 4),
        ],
    );
    let src = LoopDev::attach(&src_file);
    let r = fx.capture(&src.dev);
    assert_eq!(r.disk_size, size);

    // The target device holds other data everywhere, zero chunks included: they must be zeroed.
    let dst_file = fx.path("dst.img");
    sparse_disk(
        &dst_file,
        size + 1024 * 1024,
        &[(0, size as usize + 1024 * 1024, 9)],
    );
    let dst = LoopDev::attach(&dst_file);
    let rep = fx.restore(&r.id, &dst.dev).unwrap();
    assert!(rep.zeroed_chunks > 0, "{rep:?}");
    let got = std::fs::read(&dst.dev).unwrap();
    let want = std::fs::read(&src_file).unwrap();
    assert!(got[..size as usize] == want[..]);

    // Delta: nothing left to write.
    let again = fx.restore(&r.id, &dst.dev).unwrap();
    assert_eq!(again.unchanged_chunks, again.chunks);

    // A smaller device is refused.
    let tiny_file = fx.path("tiny.img");
    sparse_disk(&tiny_file, 1024 * 1024, &[]);
    let tiny = LoopDev::attach(&tiny_file);
    let err = fx.restore(&r.id, &tiny.dev).unwrap_err().to_string();
    assert!(err.contains("smaller than the image"), "{err}");
}

#[test]
fn restore_refuses_a_mounted_device() {
    let fx = Fixture::new();
    let src = fx.path("src.img");
    sparse_disk(&src, 4 << 20, &[(0, 100_000, 2)]);
    let r = fx.capture(&src);
    let dst_file = fx.path("dst.img");
    sparse_disk(&dst_file, 8 << 20, &[]);
    let dst = LoopDev::attach(&dst_file);
    super::util::run(
        std::process::Command::new("mkfs.ext4")
            .args(["-q"])
            .arg(&dst.dev),
    );
    let mounted = super::util::Mounted::mount(&dst.dev, &fx.path("mnt"));
    let err = fx.restore(&r.id, &dst.dev).unwrap_err().to_string();
    assert!(err.contains("busy"), "{err}");
    drop(mounted);
    fx.restore(&r.id, &dst.dev).unwrap();
}

/// A mounted source is refused before anything is stored (its file systems would change under the
/// read); unmounted, the same device is captured file-system-aware.
#[test]
fn capture_refuses_a_mounted_device() {
    let fx = Fixture::new();
    let file = fx.path("src.img");
    sparse_disk(&file, 16 << 20, &[]);
    let src = LoopDev::attach(&file);
    super::util::run(
        std::process::Command::new("mkfs.ext4")
            .args(["-q", "-b", "4096"])
            .arg(&src.dev),
    );
    let mounted = super::util::Mounted::mount(&src.dev, &fx.path("mnt"));
    let err = fx.capture_with(&src.dev, 64 * 1024).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, roomcast_store::capture::CaptureError::InUse { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("in use") && msg.contains("nothing was captured"),
        "{msg}"
    );
    assert!(fx.store.image_ids().unwrap().is_empty());
    drop(mounted);
    let r = fx.capture_with(&src.dev, 64 * 1024).unwrap();
    assert_eq!(fx.store.image_ids().unwrap(), vec![r.id]);
    // A bare file system (no table) is read as one: only its used bytes are taken.
    let p = &r.layout.partitions;
    assert!(
        p.len() == 1 && p[0].fs == "ext4" && p[0].whole.is_none(),
        "{p:?}"
    );
    assert!(r.used_bytes < r.disk_size / 2, "{r:?}");
}
