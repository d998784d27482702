//! roomcast's own known-hosts file: one line per machine, `host:port <openssh public key>`.
//!
//! Trust on first use: the first key a machine presents is pinned; any later different key is refused
//! (see [`super::RemoteError::HostKeyChanged`]). Kept apart from `~/.ssh/known_hosts` so a technician's
//! interactive `ssh -o StrictHostKeyChecking=no` never weakens what roomcast trusts.

use russh::keys::{HashAlg, PublicKey};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What checking a presented key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The key matches the pinned one.
    Known,
    /// First contact: the key is now pinned.
    Pinned,
    /// A different key was pinned: refuse.
    Changed {
        /// Fingerprint of the pinned key.
        pinned: String,
        /// Fingerprint of the presented key.
        presented: String,
    },
}

/// The file and its checks.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    /// A known-hosts file at `path` (created at the first pin).
    pub fn new(path: impl Into<PathBuf>) -> KnownHosts {
        KnownHosts { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `key` presented by `host` (`host:port`), pinning it on first contact.
    pub fn check(&self, host: &str, key: &PublicKey) -> std::io::Result<Verdict> {
        let presented = fingerprint(key);
        if let Some(pinned) = self.lookup(host)? {
            return Ok(if pinned.key_data() == key.key_data() {
                Verdict::Known
            } else {
                Verdict::Changed {
                    pinned: fingerprint(&pinned),
                    presented,
                }
            });
        }
        let line = format!(
            "{host} {}\n",
            key.to_openssh()
                .map_err(|e| std::io::Error::other(e.to_string()))?
        );
        // One write of a whole line in append mode: concurrent pins of different PCs never interleave.
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(line.as_bytes())?;
        f.sync_all()?;
        Ok(Verdict::Pinned)
    }

    /// The pinned key of `host`, if any.
    pub fn lookup(&self, host: &str) -> std::io::Result<Option<PublicKey>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((h, key)) = line.split_once(' ') else {
                continue;
            };
            if h == host {
                let key = PublicKey::from_openssh(key.trim()).map_err(|e| {
                    std::io::Error::other(format!("{}:{}: {e}", self.path.display(), n + 1))
                })?;
                return Ok(Some(key));
            }
        }
        Ok(None)
    }
}

/// SHA256 fingerprint as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}
