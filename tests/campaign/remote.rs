//! The real SSH client against a real OpenSSH server in a namespace.

use roomcast::remote::ssh::{SshClient, SshConfig};
use roomcast::remote::{RemoteError, RemoteExec};
use roomcast_lab::Lab;
use roomcast_lab::sshd::{SshKeys, Sshd};
use sha2::{Digest, Sha256};
use std::time::Duration;

fn config(keys: &SshKeys) -> SshConfig {
    let mut c = SshConfig::new("root", keys.client(), keys.known_hosts());
    c.connect_timeout = Duration::from_secs(3);
    c.command_timeout = Duration::from_secs(30);
    c
}

#[test]
fn runs_commands_and_uploads_files_over_real_ssh() {
    let dir = tempfile::tempdir().unwrap();
    let keys = SshKeys::generate(dir.path()).unwrap();
    let lab = Lab::builder().pcs(1).build().unwrap();
    let (srv, pc) = (lab.server(), lab.pc(0).unwrap());
    let pc_addr = pc.addr().to_string();
    let _sshd = Sshd::start(pc, &keys, &keys.host_key("a").unwrap(), None, dir.path()).unwrap();

    let payload = dir.path().join("installer.bin");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&payload, &data).unwrap();
    let want = hex::encode(Sha256::digest(&data));
    let remote_path = dir.path().join("uploaded.bin");
    let cfg = config(&keys);
    let rp = remote_path.to_str().unwrap().to_string();
    let (echo, stdin_echo, failing, remote_sum) = srv
        .run(|| {
            let mut c = SshClient::connect(&pc_addr, 22, &cfg).unwrap();
            let echo = c.run("echo hello; echo oops >&2; exit 3").unwrap();
            let stdin_echo = c.exec("tr a-z A-Z", b"from stdin").unwrap();
            let failing = c.run("exit 42").unwrap();
            c.upload(&payload, &rp).unwrap();
            let sum = c.run(&format!("sha256sum {rp}")).unwrap();
            (echo, stdin_echo, failing, sum)
        })
        .unwrap();
    assert_eq!(echo.code, 3);
    assert_eq!(echo.stdout_text(), "hello\n");
    assert_eq!(echo.stderr_text(), "oops\n");
    assert_eq!(stdin_echo.stdout_text(), "FROM STDIN");
    assert_eq!(failing.code, 42);
    assert_eq!(remote_sum.code, 0);
    assert!(
        remote_sum.stdout_text().starts_with(&want),
        "{}",
        remote_sum.stdout_text()
    );
    assert!(!dir.path().join("uploaded.bin.roomcast-part").exists());
    // The host key was pinned at first contact.
    let pinned = std::fs::read_to_string(keys.known_hosts()).unwrap();
    assert!(
        pinned.starts_with(&format!("{pc_addr}:22 ssh-ed25519 ")),
        "{pinned}"
    );
}

#[test]
fn a_changed_host_key_is_refused_naming_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let keys = SshKeys::generate(dir.path()).unwrap();
    let lab = Lab::builder().pcs(1).build().unwrap();
    let (srv, pc) = (lab.server(), lab.pc(0).unwrap());
    let pc_addr = pc.addr().to_string();
    let mut first = Sshd::start(pc, &keys, &keys.host_key("a").unwrap(), None, dir.path()).unwrap();
    let cfg = config(&keys);
    let c2 = cfg.clone();
    let ok = srv
        .run(|| SshClient::connect(&pc_addr, 22, &c2).map(|mut c| c.run("true").unwrap().code))
        .unwrap();
    assert_eq!(ok.unwrap(), 0);
    // The "PC" is reinstalled, or someone sits in the middle: same address, new key.
    first.stop();
    let _sshd = Sshd::start(pc, &keys, &keys.host_key("b").unwrap(), None, dir.path()).unwrap();
    let err = srv
        .run(|| SshClient::connect(&pc_addr, 22, &cfg).err())
        .unwrap();
    let err = err.expect("a changed key must be refused");
    assert!(matches!(err, RemoteError::HostKeyChanged { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("host key of {pc_addr}:22 CHANGED")),
        "{msg}"
    );
    assert!(msg.contains("refusing to connect"), "{msg}");
    // The pin was not replaced.
    let lines = std::fs::read_to_string(keys.known_hosts()).unwrap();
    assert_eq!(lines.lines().count(), 1);
}

#[test]
fn an_unreachable_host_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let keys = SshKeys::generate(dir.path()).unwrap();
    let lab = Lab::builder().pcs(0).build().unwrap();
    let srv = lab.server();
    let mut cfg = config(&keys);
    cfg.connect_timeout = Duration::from_secs(1);
    // Nobody has 198.18.5.77 on the lab's switch.
    let err = srv
        .run(|| SshClient::connect("198.18.5.77", 22, &cfg).err())
        .unwrap()
        .unwrap();
    assert!(
        matches!(&err, RemoteError::Timeout { host, seconds: 1 } if host == "198.18.5.77:22"),
        "{err}"
    );
}

#[test]
fn a_key_the_server_does_not_know_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = SshKeys::generate(dir.path()).unwrap();
    let lab = Lab::builder().pcs(1).build().unwrap();
    let (srv, pc) = (lab.server(), lab.pc(0).unwrap());
    let pc_addr = pc.addr().to_string();
    let _sshd = Sshd::start(pc, &keys, &keys.host_key("a").unwrap(), None, dir.path()).unwrap();
    let other = tempfile::tempdir().unwrap();
    let stranger = SshKeys::generate(other.path()).unwrap();
    let cfg = config(&stranger);
    let err = srv
        .run(|| SshClient::connect(&pc_addr, 22, &cfg).err())
        .unwrap()
        .unwrap();
    assert!(matches!(err, RemoteError::AuthRefused { .. }), "{err}");
}
