//! The `image` and `key` commands through the real binary: outputs and exit codes.

use super::util::sparse_disk;
use std::path::Path;
use std::process::{Command, Output};

fn roomcast(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(args)
        .env("ROOMCAST_STORE", store)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn key_capture_list_show_diff_verify_restore_rm_gc() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let keys = dir.path().join("keys");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let out = ok(&roomcast(&store, &["key", "generate", "--out", &s(&keys)]));
    assert!(out.contains("fingerprint"), "{out}");
    let key = s(&keys.join("signer.key"));

    let v1 = dir.path().join("v1.img");
    let v2 = dir.path().join("v2.img");
    sparse_disk(&v1, 8 << 20, &[(0, 3 << 20, 2), (5 << 20, 1 << 20, 4)]);
    sparse_disk(&v2, 8 << 20, &[(0, 3 << 20, 2), (5 << 20, 1 << 20, 6)]);
    let capture = |f: &Path, v: &str| {
        roomcast(
            &store,
            &[
                "image",
                "capture",
                "--from",
                &s(f),
                "--name",
                "b12",
                "--version",
                v,
                "--key",
                &key,
            ],
        )
    };

    // Not trusted yet: refused, with the command that fixes it.
    let o = capture(&v1, "1");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("roomcast key trust"));
    ok(&roomcast(
        &store,
        &["key", "trust", &s(&keys.join("signer.pub"))],
    ));

    let id1 = ok(&capture(&v1, "1"))
        .lines()
        .next()
        .unwrap()
        .strip_prefix("image ")
        .unwrap()
        .to_string();
    let out2 = ok(&capture(&v2, "2"));
    assert!(out2.contains("3 already stored, 1 new"), "{out2}");
    let id2 = out2
        .lines()
        .next()
        .unwrap()
        .strip_prefix("image ")
        .unwrap()
        .to_string();

    let list = ok(&roomcast(&store, &["image", "list"]));
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(list.contains(&id1[..12]) && list.contains("ok ("), "{list}");

    let show = ok(&roomcast(&store, &["image", "show", &id2[..8]]));
    assert!(
        show.contains("version      2") && show.contains("signature    ok"),
        "{show}"
    );

    let diff = ok(&roomcast(&store, &["image", "diff", &id1, &id2]));
    assert!(diff.contains("changed chunks  1 (1.0 MiB)"), "{diff}");
    assert!(diff.contains("shared chunks   3 of 4"), "{diff}");

    ok(&roomcast(&store, &["image", "verify"]));
    let pc = dir.path().join("pc.img");
    let out = ok(&roomcast(
        &store,
        &["image", "restore", &id1, "--to", &s(&pc)],
    ));
    assert!(out.contains("4 written"), "{out}");
    let out = ok(&roomcast(
        &store,
        &["image", "restore", &id2, "--to", &s(&pc)],
    ));
    assert!(out.contains("1 written (1.0 MiB)"), "{out}");
    assert_eq!(std::fs::read(&pc).unwrap(), std::fs::read(&v2).unwrap());

    // A flipped bit in a chunk: verify names it and exits 1.
    let st = roomcast_store::Store::open(&store).unwrap();
    let m = st.open_unverified(&id2.parse().unwrap()).unwrap();
    let chunk = st.chunk_path(&m.manifest_unchecked().chunks[1].sha256.unwrap());
    let good = std::fs::read(&chunk).unwrap();
    let mut b = good.clone();
    let last = b.len() - 1;
    b[last] ^= 1;
    std::fs::write(&chunk, &b).unwrap();
    let o = roomcast(&store, &["image", "verify"]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("BAD chunk #") && out.contains(&chunk.display().to_string()),
        "{out}"
    );
    std::fs::write(&chunk, &good).unwrap();

    ok(&roomcast(&store, &["image", "rm", &id1[..12]]));
    let gc = ok(&roomcast(&store, &["image", "gc"]));
    assert!(gc.contains("removed 1 unused chunks"), "{gc}");
    let o = roomcast(&store, &["image", "show", "ffff"]);
    assert_eq!(o.status.code(), Some(2));
}
