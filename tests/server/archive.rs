//! `roomcast image export ID > file`, `image rm` + `gc`, `image import file` through the real binary:
//! the same image id comes back and verifies; a tampered archive is refused (exit 1) and leaves the
//! store without the image.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn roomcast(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(args)
        .env("ROOMCAST_STORE", store)
        .env_remove("ROOMCAST_CONFIG")
        .stdin(Stdio::null())
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
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn export_delete_import_gives_the_same_verified_image_and_a_tampered_archive_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let keys = dir.path().join("keys");
    ok(&roomcast(&store, &["key", "generate", "--out", &s(&keys)]));
    let disk = dir.path().join("master.img");
    let mut bytes = vec![0u8; 6 << 20];
    for (i, b) in bytes.iter_mut().enumerate().take(4 << 20) {
        *b = (i % 241) as u8 ^ (i >> 12) as u8;
    }
    std::fs::write(&disk, &bytes).unwrap();
    std::fs::create_dir_all(&store).unwrap();
    ok(&roomcast(
        &store,
        &["key", "trust", &s(&keys.join("signer.pub"))],
    ));
    let out = ok(&roomcast(
        &store,
        &[
            "image",
            "capture",
            "--from",
            &s(&disk),
            "--name",
            "b204",
            "--version",
            "2026.12",
            "--whole-disk",
            "--key",
            &s(&keys.join("signer.key")),
        ],
    ));
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("image "))
        .unwrap()
        .trim()
        .to_string();

    let archive = dir.path().join("b204.rcarch");
    let exported = roomcast(&store, &["image", "export", &id[..12]]);
    ok(&exported);
    std::fs::write(&archive, &exported.stdout).unwrap();
    ok(&roomcast(&store, &["image", "rm", &id]));
    ok(&roomcast(&store, &["image", "gc"]));
    assert!(!ok(&roomcast(&store, &["image", "list"])).contains(&id[..12]));

    // One byte changed in the middle of the chunks: refused, the image does not come back.
    let mut bad = exported.stdout.clone();
    let at = bad.len() / 2 + 17;
    bad[at] ^= 0x01;
    let tampered = dir.path().join("tampered.rcarch");
    std::fs::write(&tampered, &bad).unwrap();
    let o = roomcast(&store, &["image", "import", &s(&tampered)]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refused") || err.contains("not in the signed manifest"),
        "{err}"
    );
    assert!(!ok(&roomcast(&store, &["image", "list"])).contains(&id[..12]));

    let out = ok(&roomcast(&store, &["image", "import", &s(&archive)]));
    assert!(out.contains(&format!("image {id} imported")), "{out}");
    let list = ok(&roomcast(&store, &["image", "list"]));
    assert!(list.contains(&format!("{}  b204", &id[..12])), "{list}");
    assert!(list.contains("ok ("), "signature checked: {list}");
    ok(&roomcast(&store, &["image", "verify", &id]));
}
