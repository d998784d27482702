//! The real `roomcast inventory` binary: show, export, sync (configuration from flags, environment
//! and a secrets file), exit codes, and tokens never printed.

use super::contract::{APP, USER};
use super::queue::{PCS, run_campaign, start_glpi};
use roomcast::inventory::db::InventoryDb;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn roomcast(db: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_roomcast"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ROOMCAST_") {
            c.env_remove(k);
        }
    }
    c.arg("inventory")
        .arg("--db")
        .arg(db)
        .args(args)
        .envs(env.iter().copied());
    c.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn show_export_and_sync_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("roomcast.db");
    let queued = {
        let mut db = InventoryDb::open(&db_path).unwrap();
        run_campaign(&mut db, 1_795_800_000)
    };

    let o = roomcast(&db_path, &["show", "B204"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.contains("B204-PC03") && out.contains("SN0003"), "{out}");
    assert!(
        out.contains(&format!("{PCS} machine(s), {} intervention(s)", PCS * 2)),
        "{out}"
    );
    assert!(out.contains(&format!("0 sent, {queued} pending")), "{out}");
    let o = roomcast(&db_path, &["show", "A001"], &[]);
    assert!(text(&o).0.contains("0 machine(s)"));

    let o = roomcast(&db_path, &["export", "--format", "csv"], &[]);
    let (out, _) = text(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1 + PCS as usize, "{out}");
    assert!(
        lines[0].starts_with("school_uai,room,hostname,mac,serial"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("0350001A,B204,B204-PC01,b0:5d:95:11:32:01,SN0001,"),
        "{out}"
    );
    assert!(lines[1].contains("college-2026.11"), "{out}");
    let o = roomcast(&db_path, &["export", "--format", "json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["machines"].as_array().unwrap().len(), PCS as usize);
    assert_eq!(
        v["interventions"].as_array().unwrap().len(),
        (PCS * 2) as usize
    );
    assert_eq!(v["interventions"][0]["step"], "g");

    let s = start_glpi(TcpListener::bind("127.0.0.1:0").unwrap());
    let secrets = dir.path().join("secrets");
    std::fs::write(&secrets, format!("# GLPI\nGLPI_USER_TOKEN={USER}\n")).unwrap();
    let secrets_s = secrets.to_str().unwrap();

    // A secrets file others can read is refused, naming it; nothing is sent.
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = s.url();
    let o = roomcast(
        &db_path,
        &["sync", "--glpi-url", &url, "--secrets-file", secrets_s],
        &[("ROOMCAST_SECRET_GLPI_APP_TOKEN", APP)],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(secrets_s) && err.contains("0644"), "{err}");
    s.with(|st| assert_eq!(st.count("initSession"), 0));

    // A wrong user token: exit 1, a clear message, the token never printed.
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = roomcast(
        &db_path,
        &["sync", "--glpi-url", &url, "--user-token", "secret:OTHER"],
        &[
            ("ROOMCAST_SECRET_GLPI_APP_TOKEN", APP),
            ("ROOMCAST_SECRET_OTHER", "bogus-token-xyz"),
        ],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("GLPI refused the user_token"), "{err}");
    assert!(!out.contains("bogus-token-xyz") && !err.contains("bogus-token-xyz"));

    // Configured from the environment and the secrets file: everything delivered.
    let o = roomcast(
        &db_path,
        &["sync"],
        &[
            ("ROOMCAST_GLPI_URL", url.as_str()),
            ("ROOMCAST_SECRETS_FILE", secrets_s),
            ("ROOMCAST_SECRET_GLPI_APP_TOKEN", APP),
        ],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains(&format!("sent {queued} record(s)")), "{out}");
    for secret in [APP, USER] {
        assert!(!out.contains(secret) && !err.contains(secret), "{out}{err}");
    }
    s.with(|st| {
        assert_eq!(st.tickets.len(), 1);
        assert_eq!(st.followups.len(), (PCS * 2) as usize);
    });
}
