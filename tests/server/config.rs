//! `/etc/roomcast/roomcast.toml` through the real binary: refused with file:line, the merged view of
//! `config show`, and the precedence flag > environment > file for a command.

use std::path::Path;
use std::process::{Command, Output};

fn roomcast(config: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roomcast"));
    cmd.arg("--config").arg(config).args(args);
    for v in [
        "ROOMCAST_STORE",
        "ROOMCAST_DB",
        "ROOMCAST_CONFIG",
        "ROOMCAST_GLPI_USER_TOKEN",
    ] {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_misspelt_key_is_refused_with_file_and_line_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("roomcast.toml");
    std::fs::write(
        &file,
        "# server\nstore = \"/srv/roomcast/store\"\n\ndatabse = \"/srv/roomcast/roomcast.db\"\n",
    )
    .unwrap();
    for args in [&["config", "show"][..], &["image", "list"][..]] {
        let out = roomcast(&file, &[], args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(
                "{}:4: unknown key `databse` (did you mean `database`?)",
                file.display()
            )),
            "{args:?}: {err}"
        );
    }
    // A value of the wrong kind: its line too.
    std::fs::write(&file, "store = \"/srv/s\"\nssh_key = \"id_ed25519\"\n").unwrap();
    let err = text(&roomcast(&file, &[], &["config", "show"]).stderr);
    assert!(
        err.contains(&format!(
            "{}:2: `ssh_key` must be an absolute path",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn config_show_says_where_each_value_comes_from_and_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("roomcast.toml");
    std::fs::write(
        &file,
        "store = \"/srv/roomcast/store\"\nglpi_url = \"https://glpi.test/\"\n",
    )
    .unwrap();
    let out = roomcast(
        &file,
        &[
            ("ROOMCAST_DB", "/env/roomcast.db"),
            ("ROOMCAST_GLPI_USER_TOKEN", "hunter2-token"),
        ],
        &["config", "show"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let line = |key: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} in {shown}"))
            .to_string()
    };
    assert!(
        line("store").contains(&format!("/srv/roomcast/store    # {}:1", file.display())),
        "{shown}"
    );
    assert!(
        line("glpi_url").contains(&format!("{}:2", file.display())),
        "{shown}"
    );
    assert!(
        line("database").contains("/env/roomcast.db    # environment ROOMCAST_DB"),
        "{shown}"
    );
    assert!(line("ssh_key").contains("built-in default"), "{shown}");
    assert!(line("glpi_user_token").contains("= ***"), "{shown}");
    assert!(!shown.contains("hunter2"), "a secret echoed: {shown}");
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("roomcast.toml");
    let store_of = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(&file, format!("store = \"{}\"\n", store_of("file-store"))).unwrap();
    // `image list` on a store that does not exist names the store it was given.
    let err = |env: &[(&str, &str)], args: &[&str]| text(&roomcast(&file, env, args).stderr);
    let from_file = err(&[], &["image", "list"]);
    assert!(from_file.contains("file-store"), "{from_file}");
    let env_store = store_of("env-store");
    let from_env = err(&[("ROOMCAST_STORE", &env_store)], &["image", "list"]);
    assert!(
        from_env.contains("env-store") && !from_env.contains("file-store"),
        "{from_env}"
    );
    let flag_store = store_of("flag-store");
    let from_flag = err(
        &[("ROOMCAST_STORE", &env_store)],
        &["image", "list", "--store", &flag_store],
    );
    assert!(
        from_flag.contains("flag-store") && !from_flag.contains("env-store"),
        "{from_flag}"
    );
}
