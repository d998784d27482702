//! A real OpenSSH server on a lab machine: the master PC and the Linux PCs of a virtual room, and the
//! machines of the SSH tests. Keys, configuration and logs are private files in a directory the
//! caller owns; nothing in `/etc/ssh` is read or changed.
//!
//! A machine can get its own identity ([`Identity`]): `sshd` then runs in a private UTS and mount
//! namespace (`unshare --uts --mount`) with its own hostname, a `resolv.conf` pointing at the room's
//! domain controller and a private `/run/samba`, so that `hostname X` or `net ads join` run over SSH
//! change that "PC" and nothing on the host.

use super::daemon::Daemon;
use super::{LabError, LabIpv4, Node, cmd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Key material of one room: roomcast's client key and known-hosts file, and host keys by name.
#[derive(Debug, Clone)]
pub struct SshKeys {
    dir: PathBuf,
    client: PathBuf,
    known_hosts: PathBuf,
}

fn keygen(path: &Path) -> Result<(), LabError> {
    if path.exists() {
        return Ok(());
    }
    let file = path.to_string_lossy();
    cmd::run(
        &format!("generating SSH key {file}"),
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "roomcast-lab",
            "-f",
            &file,
        ],
    )
    .map(drop)
}

impl SshKeys {
    /// Generates roomcast's client key (`id_ed25519`) in `dir` (created if needed).
    pub fn generate(dir: &Path) -> Result<SshKeys, LabError> {
        std::fs::create_dir_all(dir).map_err(|source| LabError::Io {
            step: format!("creating {}", dir.display()),
            source,
        })?;
        let client = dir.join("id_ed25519");
        keygen(&client)?;
        Ok(SshKeys {
            dir: dir.to_path_buf(),
            client,
            known_hosts: dir.join("known_hosts"),
        })
    }

    /// The client's private key (what `SshConfig::key` takes).
    pub fn client(&self) -> &Path {
        &self.client
    }

    /// roomcast's known-hosts file (host keys pinned at first contact).
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// The folder holding the keys.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The host key called `name`, generated on first use: two servers given the same name
    /// present the same key, a new name is a "reinstalled PC".
    pub fn host_key(&self, name: &str) -> Result<PathBuf, LabError> {
        let key = self.dir.join(format!("host_{name}"));
        keygen(&key)?;
        Ok(key)
    }
}

/// A machine's own hostname and name resolution, applied in a private UTS + mount namespace, with
/// private (initially empty) `/etc/samba`, `/var/lib/samba` and `/run/samba`: a join run on one
/// "PC" writes its smb.conf, keytab and secrets there, never on the host nor on another PC.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Hostname at start (a join may change it).
    pub hostname: String,
    /// The resolver the machine uses (the room's DC), or the host's resolv.conf when `None`.
    pub nameserver: Option<LabIpv4>,
    /// Folder for its private `resolv.conf`, `hostname` and `/run/samba`.
    pub dir: PathBuf,
}

impl Identity {
    /// Writes the private files and returns the shell commands that put them in place inside the
    /// new namespaces (run before the daemon is exec'd).
    pub fn prelude(&self) -> Result<String, LabError> {
        let io = |what: &str, source| LabError::Io {
            step: format!("identity of {}: {what}", self.hostname),
            source,
        };
        for d in ["run-samba", "etc-samba", "var-lib-samba"] {
            std::fs::create_dir_all(self.dir.join(d)).map_err(|e| io("creating its folders", e))?;
        }
        std::fs::write(self.dir.join("hostname"), format!("{}\n", self.hostname))
            .map_err(|e| io("writing hostname", e))?;
        let d = self.dir.display();
        let mut sh = format!(
            "hostname {h}; mount --bind {d}/hostname /etc/hostname; \
             mkdir -p /run/samba /etc/samba /var/lib/samba; mount --bind {d}/run-samba /run/samba; \
             mount --bind {d}/etc-samba /etc/samba; mount --bind {d}/var-lib-samba /var/lib/samba",
            h = self.hostname
        );
        if let Some(ns) = self.nameserver {
            std::fs::write(self.dir.join("resolv.conf"), format!("nameserver {ns}\n"))
                .map_err(|e| io("writing resolv.conf", e))?;
            sh.push_str(&format!("; mount --bind {d}/resolv.conf /etc/resolv.conf"));
        }
        Ok(sh)
    }

    /// A shell `script` run inside a new UTS + mount namespace with this identity applied, in
    /// `node`'s network namespace: `sh -c "<prelude>; <script>"`. A daemon's script ends with
    /// `exec <daemon>`, so that the process handle is the daemon's.
    pub fn command(&self, node: &Node, script: &str) -> Result<Command, LabError> {
        let mut c = node.command("unshare");
        c.args(["--uts", "--mount", "sh", "-c"])
            .arg(format!("set -e; {}; {script}", self.prelude()?));
        Ok(c)
    }
}

/// `sshd -D` on port 22 of a lab machine; stopped on drop.
#[derive(Debug)]
pub struct Sshd {
    daemon: Daemon,
    addr: LabIpv4,
    netns: String,
}

impl Sshd {
    /// Starts sshd on `node` (listening on its address, port 22) with `host_key`, accepting
    /// roomcast's client key for root. Its config and log go to `dir`. With an `identity`, it runs
    /// in a private UTS + mount namespace (see [`Identity`]). Returns once it listens.
    pub fn start(
        node: &Node,
        keys: &SshKeys,
        host_key: &Path,
        identity: Option<&Identity>,
        dir: &Path,
    ) -> Result<Sshd, LabError> {
        let role = node.role();
        let io = |what: String, source| LabError::Io { step: what, source };
        std::fs::create_dir_all(dir).map_err(|e| io(format!("creating {}", dir.display()), e))?;
        let cfg = dir.join(format!("sshd-{role}.conf"));
        std::fs::write(
            &cfg,
            format!(
                "Port 22\nListenAddress {addr}\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nPidFile none\n\
                 Subsystem sftp internal-sftp\nLogLevel ERROR\n",
                addr = node.addr(),
                hk = host_key.display(),
                ak = keys.client().with_extension("pub").display()
            ),
        )
        .map_err(|e| io(format!("writing {}", cfg.display()), e))?;
        // sshd refuses to start without its privilege-separation directory.
        std::fs::create_dir_all("/run/sshd").map_err(|e| io("creating /run/sshd".into(), e))?;
        let sshd = format!("/usr/sbin/sshd -D -e -f {}", cfg.display());
        let command = match identity {
            Some(id) => id.command(node, &format!("exec {sshd}"))?,
            None => {
                let mut c = node.command("sh");
                c.args(["-c", &format!("exec {sshd}")]);
                c
            }
        };
        let log = dir.join(format!("sshd-{role}.log"));
        let mut daemon = Daemon::spawn(&format!("sshd on {role}"), command, &log)?;
        let want = format!("{}:22", node.addr());
        daemon.wait_ready(Duration::from_secs(10), || {
            node.command("ss")
                .arg("-ltnH")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&want))
        })?;
        Ok(Sshd {
            daemon,
            addr: node.addr(),
            netns: node.netns().to_owned(),
        })
    }

    /// Where it listens (port 22).
    pub fn addr(&self) -> LabIpv4 {
        self.addr
    }

    /// Its process id: `nsenter --target <pid> --mount --uts` reaches the machine's own namespaces.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Runs `program args` inside this machine's network, UTS and mount namespaces (what a command
    /// over SSH would see), returning stdout.
    pub fn exec(&self, step: &str, program: &str, args: &[&str]) -> Result<String, LabError> {
        let pid = self.pid().to_string();
        let mut c = Command::new("nsenter");
        c.args(["--target", &pid, "--mount", "--uts", "--net", program])
            .args(args);
        cmd::run_command(&format!("{}: {step}", self.netns), &mut c)
    }

    /// Stops it now (a "PC switched off" or a "reinstalled PC" in tests).
    pub fn stop(&mut self) {
        self.daemon.stop();
    }
}
