//! The real binary: exit codes, formats, `schema` and `plan`.

use std::path::Path;
use std::process::{Command, Output};

use super::region;

fn roomcast(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn validate_exit_codes() {
    let good = region(None);
    let o = roomcast(good.path(), &["validate", "--today", "2026-01-15"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("0 error(s), 0 warning(s)"));

    let bad = region(Some("RC013-malformed-mac"));
    let o = roomcast(bad.path(), &["validate", "--today", "2026-01-15"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("error[RC013]"));

    let o = roomcast(good.path(), &["validate", "no/such/folder"]);
    assert_eq!(o.status.code(), Some(2));
    let o = roomcast(good.path(), &["validate", "--today", "2026-02-30"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn deny_warnings_turns_warnings_into_failure() {
    let dir = region(Some("RC028-licence-expires-soon"));
    let o = roomcast(dir.path(), &["validate", "--today", "2026-01-15"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("warning[RC028]"));
    let o = roomcast(
        dir.path(),
        &["validate", "--today", "2026-01-15", "--deny-warnings"],
    );
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn single_room_is_checked_against_its_repository() {
    let dir = region(Some("RC036-unknown-profile"));
    let o = roomcast(
        dir.path(),
        &[
            "validate",
            "--format",
            "github",
            "--today",
            "2026-01-15",
            "rooms/0330021U/B204.yaml",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o).trim(),
        "::error file=rooms/0330021U/B204.yaml,line=13,col=10,title=RC036::no profile `sti2d-cao@4` (hint: known: sti2d-cao@3)"
    );
}

#[test]
fn plan_shows_every_machine_with_its_final_hostname() {
    let dir = region(None);
    let o = roomcast(
        dir.path(),
        &["plan", "rooms/0330021U/B204.yaml", "--today", "2026-01-15"],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = stdout(&o);
    for h in ["B204-PC01", "B204-PC02", "B204-PC03", "B204-PC04"] {
        assert!(text.contains(h), "{h} missing:\n{text}");
    }
    // The key itself is never shown: the installer gets the path of the 0600 file holding it.
    assert!(
        text.contains(r#"/serialfile "C:\roomcast\installers\.roomcast-solidworks-edu.key""#),
        "{text}"
    );
    assert!(text.contains("unknown until captured"));

    let o = roomcast(
        dir.path(),
        &[
            "plan",
            "rooms/0330021U/B204.yaml",
            "--format",
            "json",
            "--today",
            "2026-01-15",
        ],
    );
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["machines"].as_array().unwrap().len(), 4);
    assert_eq!(plan["machines"][2]["hostname"], "B204-PC03");
    assert_eq!(plan["bytes"]["installers"], 356876288u64 + 17179869184u64);
    assert!(plan["bytes"]["image"].is_null());
    assert!(
        plan["secure_boot"].is_null(),
        "no secure_boot in B204: not in the plan"
    );
    // The profile's system-disk rule, and a room's that replaces it (issue 21).
    assert_eq!(plan["system_disk"], serde_json::json!({"bus": "sata"}));
    let o = roomcast(
        dir.path(),
        &[
            "plan",
            "rooms/0330021U/B205.yaml",
            "--format",
            "json",
            "--today",
            "2026-01-15",
        ],
    );
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        plan["system_disk"],
        serde_json::json!({"bus": "nvme", "size_min": 200_000_000_000u64})
    );
    // The room's Secure Boot switch (issue 20) reaches the plan campaigns boot from; B204 has none.
    assert_eq!(plan["secure_boot"], true);
}

#[test]
fn plan_refuses_a_room_with_errors() {
    let dir = region(Some("RC025-not-enough-seats"));
    let o = roomcast(
        dir.path(),
        &["plan", "rooms/0330021U/B204.yaml", "--today", "2026-01-15"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("RC025"));
}

#[test]
fn schema_prints_json_schema() {
    let dir = region(None);
    for kind in ["catalog", "profile", "room"] {
        let o = roomcast(dir.path(), &["schema", kind]);
        assert_eq!(o.status.code(), Some(0));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["additionalProperties"], false, "{kind}");
    }
}

#[test]
fn serve_and_deploy_refuse_a_room_whose_profile_has_an_error() {
    // The room file itself is fine; its profile names a software the catalog lacks.
    let room = "rooms/0330021U/B204.yaml";
    let serve = [
        "serve",
        "--room",
        room,
        "--boot-dir",
        "boot",
        "--reports",
        "reports",
    ];
    let deploy = ["deploy", "--room", room, "--image", "ab", "--expect", "1"];
    let deploy = [&deploy[..], &["--store", "store"]].concat();
    let bad = region(Some("RC020-software-not-in-catalog"));
    for args in [&serve[..], &deploy[..]] {
        let o = roomcast(bad.path(), args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("not serving it")
                && err.contains("error(s) in the files this room depends on")
                && err.contains("profiles/sti2d-cao.yaml:")
                && err.contains("error[RC020]"),
            "{args:?}: {err}"
        );
    }
    // The same commands on the good region get past the room and stop later (no interface
    // `enp3s0` or no store here): the refusal above came from the profile. (These commands check
    // licences as of today: the fixture's licence is moved past it.)
    let good = region(None);
    let profile = good.path().join("profiles/sti2d-cao.yaml");
    let text = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(
        &profile,
        text.replace("expires: 2026-08-31", "expires: 2099-08-31"),
    )
    .unwrap();
    for args in [&serve[..], &deploy[..]] {
        let o = roomcast(good.path(), args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("not serving it"), "{args:?}: {err}");
    }
}
