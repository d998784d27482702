//! Crash safety with the real binary: a capture or restore killed half-way.

use super::util::{Fixture, assert_chunk_files_intact, pattern, run};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn roomcast() -> Command {
    Command::new(env!("CARGO_BIN_EXE_roomcast"))
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Kills `child` once `ready()` holds (or fails the test if it exits first).
fn kill_when(mut child: Child, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child finished ({status}) before it could be killed mid-way");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "child never got going"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn killed_capture_leaves_no_image_and_no_corrupt_chunk() {
    let fx = Fixture::new();
    let src = fx.path("master.img");
    // Half text, half noise: zstd at level 19 takes seconds over it, plenty of time to kill it.
    let mut disk = pattern(31, 24 * 1024 * 1024, true);
    disk.extend(pattern(32, 24 * 1024 * 1024, false));
    std::fs::write(&src, &disk).unwrap();
    let root = fx.store.root().to_path_buf();
    let child = roomcast()
        .args([
            "image",
            "capture",
            "--name",
            "m",
            "--version",
            "1",
            "--chunk-size",
            "64K",
            "--level",
            "19",
        ])
        .arg("--from")
        .arg(&src)
        .arg("--store")
        .arg(&root)
        .arg("--key")
        .arg(&fx.key_file)
        .spawn()
        .unwrap();
    // Wait for the first batch of chunks to be renamed into place, then kill.
    kill_when(child, || count_files(&root.join("chunks")) > 0);

    assert!(
        fx.store.image_ids().unwrap().is_empty(),
        "an image became visible"
    );
    assert_chunk_files_intact(&fx.store);
    let list = run(roomcast().args(["image", "list", "--store"]).arg(&root));
    assert_eq!(list.lines().count(), 1, "{list}");
    let verify = run(roomcast().args(["image", "verify", "--store"]).arg(&root));
    assert!(verify.contains("0 chunks checked, 0 bad"), "{verify}");
    let gc = fx.store.gc().unwrap();
    assert!(gc.chunks_removed > 0, "{gc:?}");
    assert_eq!(count_files(&root.join("chunks")), 0);
    assert_eq!(count_files(&root.join("tmp")), 0);

    // The store works after the crash: capture again, restore, compare.
    let r = fx.capture(&src);
    let out = fx.path("out.img");
    fx.restore(&r.id, &out).unwrap();
    assert!(std::fs::read(&out).unwrap() == disk);
}

#[test]
fn killed_restore_resumes_from_its_progress_file() {
    let fx = Fixture::new();
    let src = fx.path("master.img");
    let disk = pattern(41, 64 * 1024 * 1024, true);
    std::fs::write(&src, &disk).unwrap();
    let r = fx.capture_with(&src, 64 * 1024).unwrap();
    let target = fx.path("pc.img");
    let root = fx.store.root().to_path_buf();
    let progress = roomcast_store::restore::progress_path(&fx.store, &target);
    let child = roomcast()
        .args(["image", "restore", &r.id.to_hex(), "--store"])
        .arg(&root)
        .arg("--to")
        .arg(&target)
        .spawn()
        .unwrap();
    kill_when(child, || progress.exists());
    assert_eq!(
        roomcast_store::restore::interrupted_restore(&fx.store, &target),
        Some(r.id)
    );
    let out = run(roomcast()
        .args(["image", "restore", &r.id.to_hex()[..10], "--store"])
        .arg(&root)
        .arg("--to")
        .arg(&target));
    let resumed: u64 = out
        .split(", ")
        .find_map(|p| p.strip_suffix(" done before a resume\n"))
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .unwrap();
    assert!(resumed >= 256, "{out}");
    assert!(std::fs::read(&target).unwrap() == disk);
    assert!(!progress.exists());
}

#[test]
fn gc_refuses_to_run_while_a_capture_holds_the_store() {
    let fx = Fixture::new();
    let src = fx.path("master.img");
    let mut disk = pattern(51, 16 * 1024 * 1024, true);
    disk.extend(pattern(52, 16 * 1024 * 1024, false));
    std::fs::write(&src, &disk).unwrap();
    let root = fx.store.root().to_path_buf();
    let mut child = roomcast()
        .args([
            "image",
            "capture",
            "--name",
            "m",
            "--version",
            "1",
            "--chunk-size",
            "64K",
            "--level",
            "19",
        ])
        .arg("--from")
        .arg(&src)
        .arg("--store")
        .arg(&root)
        .arg("--key")
        .arg(&fx.key_file)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while count_files(&root.join("tmp")) + count_files(&root.join("chunks")) == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "capture ended too soon"
        );
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = roomcast()
        .args(["image", "gc", "--store"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        child.try_wait().unwrap().is_none(),
        "capture ended before gc ran: test proves nothing"
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("store busy"));
    assert!(child.wait().unwrap().success());
    let id = fx.store.image_ids().unwrap()[0];
    let target = fx.path("pc.img");
    fx.restore(&id, &target).unwrap();
    assert!(std::fs::read(&target).unwrap() == disk);
}
