//! A real OpenSSH server for the tests: private host key, private authorized_keys, private config,
//! `sshd -D` on port 22 of a lab namespace.

use super::lab::{Lab, sh};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Files of one test's SSH setup.
pub struct Keys {
    /// Client private key (what roomcast uses).
    pub client: PathBuf,
    /// roomcast's known-hosts file.
    pub known_hosts: PathBuf,
    dir: PathBuf,
}

impl Keys {
    /// Generates a client key in `dir`.
    pub fn new(dir: &Path) -> Keys {
        let client = dir.join("id_ed25519");
        sh(&[
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            client.to_str().unwrap(),
        ]);
        Keys {
            client,
            known_hosts: dir.join("known_hosts"),
            dir: dir.to_path_buf(),
        }
    }

    /// Generates a host key named `name`.
    pub fn host_key(&self, name: &str) -> PathBuf {
        let key = self.dir.join(format!("host_{name}"));
        if !key.exists() {
            sh(&[
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                key.to_str().unwrap(),
            ]);
        }
        key
    }
}

/// Starts sshd in namespace `ns` listening on `addr:22` with `host_key`; returns its pid.
/// A non-empty `prelude` (shell commands) runs first in a private UTS + mount namespace
/// (`unshare --uts --mount`): the "PC" gets its own hostname and bind mounts there.
pub fn start(
    lab: &mut Lab,
    keys: &Keys,
    ns: &str,
    addr: &str,
    host_key: &Path,
    prelude: &str,
) -> u32 {
    let tag = host_key.file_name().unwrap().to_string_lossy().to_string();
    let cfg = keys.dir.join(format!("sshd_{ns}_{tag}.conf"));
    std::fs::write(
        &cfg,
        format!(
            "Port 22\nListenAddress {addr}\nHostKey {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n\
             StrictModes no\nPidFile none\nSubsystem sftp internal-sftp\nLogLevel ERROR\n",
            host_key.display(),
            keys.client.with_extension("pub").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let mut cmd = Command::new("ip");
    let sshd = format!("exec /usr/sbin/sshd -D -e -f {}", cfg.display());
    if prelude.is_empty() {
        cmd.args(["netns", "exec", ns, "sh", "-c", &sshd]);
    } else {
        cmd.args([
            "netns", "exec", ns, "unshare", "--uts", "--mount", "sh", "-c",
        ])
        .arg(format!("set -e; {prelude}; {sshd}"));
    }
    let pid = lab.spawn(&mut cmd);
    wait_listening(ns, addr);
    pid
}

fn wait_listening(ns: &str, addr: &str) {
    for _ in 0..100 {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ss", "-ltnH"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains(&format!("{addr}:22")) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("sshd in {ns} never listened on {addr}:22");
}
