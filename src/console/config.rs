//! The console's configuration file (YAML): where it listens, the database, the store, the
//! certificate, the technicians and their password hashes, the region's directory (`ldap:`).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The console's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The one address to listen on (the school's admin side). `0.0.0.0`/`::` are refused: the
    /// console must never answer on a room's PXE interface.
    pub listen: SocketAddr,
    /// The journal and inventory database (`roomcast.db`).
    pub db: PathBuf,
    /// The image store, for the images page and the report's image facts.
    #[serde(default)]
    pub store: Option<PathBuf>,
    /// Certificate and key (PEM). Absent: generated at first start next to the database
    /// (`console-cert.pem`, `console-key.pem`, mode 0600).
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Plain HTTP on a loopback address, for a reverse proxy that terminates TLS.
    #[serde(default)]
    pub plain_http_behind_proxy: bool,
    /// The URL people reach the console at (`https://console.school.example`): sign-off links
    /// start with it.
    pub public_url: String,
    /// Technicians allowed to log in.
    #[serde(default)]
    pub technicians: Vec<Technician>,
    /// Arguments given to `roomcast campaign --db DB resume ID ...` after an accepted sign-off
    /// (the imaging backend, as at `start`). Absent: the console records the sign-off and the
    /// technician resumes.
    #[serde(default)]
    pub resume_args: Option<Vec<String>>,
    /// Days a sign-off link lives at most (default 7).
    #[serde(default = "default_link_days")]
    pub link_days: u32,
    /// Technicians may also log in with their account of the region's Active Directory, when
    /// they are members of its group ([`super::ldap`]).
    #[serde(default)]
    pub ldap: Option<super::ldap::LdapConfig>,
}

fn default_link_days() -> u32 {
    7
}

/// Certificate and key files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// A technician: a name and an argon2 hash (`roomcast console hash-password`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Technician {
    /// Login name.
    pub name: String,
    /// PHC string of the argon2 hash.
    pub password_hash: String,
}

impl std::fmt::Debug for Technician {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Technician({}, ***)", self.name)
    }
}

/// Errors of the console; each names its file or address.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The configuration file is wrong.
    #[error("{file}: {message}")]
    Config {
        /// The file.
        file: PathBuf,
        /// What is wrong (with line and column when the parser gives them).
        message: String,
    },
    /// I/O on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// Binding or serving failed.
    #[error("{addr}: {source}")]
    Net {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

impl ConsoleConfig {
    /// Reads and checks the file.
    pub fn load(file: &Path) -> Result<ConsoleConfig, ConsoleError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConsoleError::Io {
            path: file.to_path_buf(),
            source,
        })?;
        let config: ConsoleConfig =
            serde_saphyr::from_str(&text).map_err(|e| ConsoleError::Config {
                file: file.to_path_buf(),
                message: e.to_string(),
            })?;
        config.check().map_err(|message| ConsoleError::Config {
            file: file.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// The rules a file must keep beyond its types.
    pub fn check(&self) -> Result<(), String> {
        if self.listen.ip().is_unspecified() {
            return Err(format!(
                "field `listen`: {} listens on every interface, a room's PXE interface too; \
                 give the one admin-side address",
                self.listen
            ));
        }
        if self.plain_http_behind_proxy && !self.listen.ip().is_loopback() {
            return Err(format!(
                "field `listen`: plain HTTP (`plain_http_behind_proxy`) only on a loopback \
                 address behind the proxy, not {}",
                self.listen
            ));
        }
        if !(self.public_url.starts_with("https://") || self.public_url.starts_with("http://")) {
            return Err("field `public_url`: must start with https:// (or http://)".into());
        }
        for (i, t) in self.technicians.iter().enumerate() {
            if argon2::PasswordHash::new(&t.password_hash).is_err() {
                return Err(format!(
                    "field `technicians[{i}].password_hash` ({}): not an argon2 PHC string; make \
                     one with `roomcast console hash-password`",
                    t.name
                ));
            }
        }
        if let Some(l) = &self.ldap {
            l.check()?;
            // The CA file is read now: a wrong one is said at start, naming the field.
            super::ldap::Directory::new(l.clone()).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConsoleConfig, String> {
        let c: ConsoleConfig = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        c.check()?;
        Ok(c)
    }

    #[test]
    fn every_interface_and_plain_http_off_loopback_are_refused() {
        let base = "db: /x.db\npublic_url: https://c.example\n";
        let e = parse(&format!("listen: 0.0.0.0:8443\n{base}")).unwrap_err();
        assert!(e.contains("field `listen`"), "{e}");
        let e = parse(&format!(
            "listen: 198.18.0.1:8080\nplain_http_behind_proxy: true\n{base}"
        ))
        .unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        assert!(
            parse(&format!(
                "listen: 127.0.0.1:8080\nplain_http_behind_proxy: true\n{base}"
            ))
            .is_ok()
        );
        let e = parse(&format!(
            "listen: 198.18.0.1:8443\n{base}technicians:\n  - name: a\n    password_hash: plain\n"
        ))
        .unwrap_err();
        assert!(e.contains("technicians[0].password_hash"), "{e}");
        assert!(!e.contains("plain"), "the value is not echoed: {e}");
    }
}
