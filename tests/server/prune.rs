//! `roomcast image prune --keep N` through the real binary: per profile, the most recent stay, an
//! older image the journal says a room runs stays, the others go (and gc frees their chunks);
//! an image without a profile is never pruned.

use roomcast::campaign::journal::Journal;
use roomcast_proto::procedure::{DeployMode, Event, Plan, Timestamp};
use std::path::Path;
use std::process::{Command, Output};

fn roomcast(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(args)
        .env("ROOMCAST_STORE", store)
        .env_remove("ROOMCAST_CONFIG")
        .env_remove("ROOMCAST_DB")
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
fn prune_keeps_the_recent_and_the_images_rooms_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let keys = dir.path().join("keys");
    ok(&roomcast(&store, &["key", "generate", "--out", &s(&keys)]));
    std::fs::create_dir_all(&store).unwrap();
    ok(&roomcast(
        &store,
        &["key", "trust", &s(&keys.join("signer.pub"))],
    ));
    let key = s(&keys.join("signer.key"));
    let capture = |n: u8, profile: Option<&str>| {
        let disk = dir.path().join(format!("d{n}.img"));
        std::fs::write(&disk, vec![n; 2 << 20]).unwrap();
        let mut args = vec![
            "image".to_string(),
            "capture".into(),
            "--whole-disk".into(),
            "--from".into(),
            s(&disk),
            "--name".into(),
            "b204".into(),
            "--version".into(),
            format!("v{n}"),
            "--key".into(),
            key.clone(),
        ];
        if let Some(p) = profile {
            args.extend(["--profile".into(), p.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ok(&roomcast(&store, &args));
        // Captures one second apart: `captured_at` orders them.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        out.lines()
            .find_map(|l| l.strip_prefix("image "))
            .unwrap()
            .trim()
            .to_string()
    };
    let oldest = capture(1, Some("win11-sti2d-cao@3"));
    let middle = capture(2, Some("win11-sti2d-cao@3"));
    let newest = capture(3, Some("win11-sti2d-cao@4"));
    let loose = capture(4, None);

    // Room B204's latest campaign captured (and so runs) the oldest image.
    let db = dir.path().join("roomcast.db");
    {
        let mut j = Journal::open(&db).unwrap();
        let plan = Plan {
            room: "B204".into(),
            machines: vec!["PC01".into()],
            master: "PC01".into(),
            mode: DeployMode::Image,
            retries: 0,
            signoff_required: false,
            signoff_allowed: vec![],
        };
        let (id, _) = j.start(&plan, Timestamp(1)).unwrap();
        let state = j.state(id).unwrap();
        j.record_on(
            id,
            1,
            state,
            &Event::ImageCaptured {
                image: oldest.clone(),
            },
            Timestamp(2),
        )
        .unwrap();
    }
    let dry = ok(&roomcast(
        &store,
        &[
            "image",
            "prune",
            "--keep",
            "1",
            "--db",
            &s(&db),
            "--dry-run",
        ],
    ));
    assert!(dry.contains("1 image(s) would be removed"), "{dry}");
    assert_eq!(ok(&roomcast(&store, &["image", "list"])).lines().count(), 5);

    let out = ok(&roomcast(
        &store,
        &["image", "prune", "--keep", "1", "--db", &s(&db)],
    ));
    let line = |id: &str| {
        out.lines()
            .find(|l| l.contains(&id[..12]))
            .unwrap_or_else(|| panic!("{id} not reported: {out}"))
            .to_string()
    };
    assert!(line(&newest).contains("kept (recent)"), "{out}");
    assert!(line(&oldest).contains("kept (in use by B204)"), "{out}");
    assert!(line(&middle).contains("removed"), "{out}");
    assert!(out.contains("gc freed"), "{out}");
    let list = ok(&roomcast(&store, &["image", "list"]));
    for kept in [&oldest, &newest, &loose] {
        assert!(list.contains(&kept[..12]), "{kept} gone: {list}");
    }
    assert!(!list.contains(&middle[..12]), "{list}");
}
