//! Secrets are never written in configuration: configuration holds `secret:NAME` references, resolved
//! at run time from the environment (`ROOMCAST_SECRET_<NAME>`) or from a secrets file kept outside
//! the repository (`KEY=VALUE` lines, mode 0600 or stricter).
//!
//! The resolved value lives in a [`Secret`], whose `Debug` and `Display` print `***`, so a secret that
//! ends up in a log line, an error message or a `{:?}` dump shows nothing.

use std::fmt;
use std::path::{Path, PathBuf};

/// Prefix of a secret reference in configuration: `secret:NAME`.
pub const REFERENCE_PREFIX: &str = "secret:";
/// Prefix of the environment variable that holds secret `NAME`: `ROOMCAST_SECRET_NAME`.
pub const ENV_PREFIX: &str = "ROOMCAST_SECRET_";

/// A resolved secret value. Printing it (Debug or Display) shows `***`; only [`Secret::expose`]
/// gives the value, at the one place that puts it on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value that must never be printed.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the HTTP header or command that needs it. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A resolved [`Secret`] that keeps the name of its reference, for the runners that put it on the
/// wire and must keep it out of their logs. Printing it (Debug or Display) shows the reference,
/// `secret:NAME`, never the value; [`NamedSecret::redact`] turns the value into that reference.
#[derive(Clone, PartialEq, Eq)]
pub struct NamedSecret {
    name: String,
    secret: Secret,
}

impl NamedSecret {
    /// A secret called `name` (the `NAME` of `secret:NAME`) with its value.
    pub fn new(name: &str, value: &str) -> NamedSecret {
        NamedSecret {
            name: name.to_string(),
            secret: Secret::new(value),
        }
    }

    /// The reference name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value, as a [`Secret`].
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The value, for the one place that must send it (a remote stdin).
    pub fn expose(&self) -> &str {
        self.secret.expose()
    }

    /// `text` with every occurrence of the value replaced by `secret:NAME`.
    pub fn redact(&self, text: &str) -> String {
        if self.expose().is_empty() {
            return text.to_string();
        }
        text.replace(self.expose(), &format!("{REFERENCE_PREFIX}{}", self.name))
    }
}

impl fmt::Debug for NamedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{REFERENCE_PREFIX}{}", self.name)
    }
}

impl fmt::Display for NamedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{REFERENCE_PREFIX}{}", self.name)
    }
}

/// Why a `secret:NAME` reference could not be resolved. No variant carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The configured value is not of the form `secret:NAME`.
    #[error("{value:?} is not a secret reference: write `secret:NAME` (NAME: letters, digits, _)")]
    NotAReference {
        /// What the configuration held (a reference, so safe to show; values are never references).
        value: String,
    },
    /// Neither the environment nor the secrets file defines the name.
    #[error("secret {name} is not defined: set {ENV_PREFIX}{name} or add `{name}=...` to {where_}")]
    Missing {
        /// The secret name.
        name: String,
        /// Where it was looked for in a file (or "a secrets file" when none is configured).
        where_: String,
    },
    /// The secrets file is readable by group or others.
    #[error(
        "secrets file {path}: mode {mode:04o} is too open; run `chmod 600 {path}` (0600 or stricter required)"
    )]
    FileTooOpen {
        /// The secrets file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The secrets file could not be read.
    #[error("secrets file {path}: {source}")]
    FileRead {
        /// The secrets file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of the secrets file is not `KEY=VALUE`, a comment or blank.
    #[error(
        "secrets file {path}, line {line}: expected KEY=VALUE (the line is not shown: it may hold a secret)"
    )]
    FileSyntax {
        /// The secrets file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

/// Where secrets come from: the process environment first, then an optional secrets file.
#[derive(Debug, Clone, Default)]
pub struct SecretStore {
    file: Option<PathBuf>,
}

impl SecretStore {
    /// A store reading the environment, and `file` when given.
    pub fn new(file: Option<PathBuf>) -> Self {
        SecretStore { file }
    }

    /// Resolves `reference` (`secret:NAME`) from the process environment or the secrets file.
    pub fn resolve(&self, reference: &str) -> Result<Secret, SecretError> {
        self.resolve_with(reference, |var| std::env::var(var).ok())
    }

    /// [`SecretStore::resolve`], keeping the reference's name (for redaction).
    pub fn resolve_named(&self, reference: &str) -> Result<NamedSecret, SecretError> {
        let name = parse_reference(reference)?;
        let secret = self.resolve(reference)?;
        Ok(NamedSecret {
            name: name.to_string(),
            secret,
        })
    }

    /// Like [`SecretStore::resolve`], with the environment given as a lookup function, so tests need
    /// not mutate the process environment.
    pub fn resolve_with(
        &self,
        reference: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Secret, SecretError> {
        let name = parse_reference(reference)?;
        if let Some(v) = env(&format!("{ENV_PREFIX}{name}")) {
            return Ok(Secret(v));
        }
        match &self.file {
            Some(path) => match read_secrets_file(path)?.remove(name) {
                Some(v) => Ok(Secret(v)),
                None => Err(SecretError::Missing {
                    name: name.to_string(),
                    where_: path.display().to_string(),
                }),
            },
            None => Err(SecretError::Missing {
                name: name.to_string(),
                where_: "a secrets file (none configured)".to_string(),
            }),
        }
    }
}

/// Checks `reference` is `secret:NAME` and returns NAME.
pub fn parse_reference(reference: &str) -> Result<&str, SecretError> {
    let not_ref = || SecretError::NotAReference {
        // A non-reference may be a pasted secret: show only its shape, never its content.
        value: if reference.starts_with(REFERENCE_PREFIX) {
            reference.to_string()
        } else {
            format!("<{} characters>", reference.chars().count())
        },
    };
    let name = reference
        .strip_prefix(REFERENCE_PREFIX)
        .ok_or_else(not_ref)?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(not_ref());
    }
    Ok(name)
}

/// Reads a `KEY=VALUE` secrets file after checking nobody but its owner can read it.
fn read_secrets_file(
    path: &Path,
) -> Result<std::collections::HashMap<String, String>, SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| SecretError::FileRead {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::FileTooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut out = std::collections::HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(SecretError::FileSyntax {
                path: path.to_path_buf(),
                line: i + 1,
            });
        };
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn file_with(mode: u32, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn environment_wins_over_file() {
        let (_d, path) = file_with(0o600, "GLPI_USER=fromfile\n");
        let store = SecretStore::new(Some(path));
        let env = |k: &str| (k == "ROOMCAST_SECRET_GLPI_USER").then(|| "fromenv".to_string());
        assert_eq!(
            store
                .resolve_with("secret:GLPI_USER", env)
                .unwrap()
                .expose(),
            "fromenv"
        );
        assert_eq!(
            store
                .resolve_with("secret:GLPI_USER", no_env)
                .unwrap()
                .expose(),
            "fromfile"
        );
    }

    #[test]
    fn file_parses_comments_blanks_and_equals_in_values() {
        let (_d, path) = file_with(0o400, "# tokens\n\nA = x=y\nB=2\n");
        let store = SecretStore::new(Some(path));
        assert_eq!(
            store.resolve_with("secret:A", no_env).unwrap().expose(),
            "x=y"
        );
        assert_eq!(
            store.resolve_with("secret:B", no_env).unwrap().expose(),
            "2"
        );
    }

    #[test]
    fn group_readable_file_is_refused_naming_it() {
        let (_d, path) = file_with(0o640, "A=1\n");
        let store = SecretStore::new(Some(path.clone()));
        let err = store.resolve_with("secret:A", no_env).unwrap_err();
        assert!(matches!(err, SecretError::FileTooOpen { mode: 0o640, .. }));
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("0640"), "{msg}");
    }

    #[test]
    fn syntax_error_names_line_but_not_content() {
        let (_d, path) = file_with(0o600, "A=1\nsupersecretvalue\n");
        let err = SecretStore::new(Some(path))
            .resolve_with("secret:A", no_env)
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 2"), "{msg}");
        assert!(!msg.contains("supersecretvalue"), "{msg}");
    }

    #[test]
    fn missing_and_malformed_references() {
        let store = SecretStore::new(None);
        let err = store.resolve_with("secret:NOPE", no_env).unwrap_err();
        assert!(err.to_string().contains("ROOMCAST_SECRET_NOPE"), "{err}");
        let err = store.resolve_with("plaintexttoken", no_env).unwrap_err();
        assert!(matches!(err, SecretError::NotAReference { .. }));
        assert!(!err.to_string().contains("plaintexttoken"), "{err}");
        assert!(parse_reference("secret:").is_err());
        assert!(parse_reference("secret:A-B").is_err());
    }

    #[test]
    fn resolved_with_its_name_prints_the_reference_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets");
        std::fs::write(&file, "AD_JOIN_EIFFEL=Tr0ub4dor&3\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let store = SecretStore::new(Some(file));
        match store.resolve_named("secret:AD_JOIN_EIFFEL") {
            Ok(s) => {
                assert_eq!(s.expose(), "Tr0ub4dor&3");
                assert_eq!(s.to_string(), "secret:AD_JOIN_EIFFEL");
                assert_eq!(s.secret().to_string(), "***");
            }
            Err(e) => panic!("{e}"),
        }
        assert!(store.resolve_named("Tr0ub4dor&3").is_err());
        let s = NamedSecret::new("AD_JOIN", "Tr0ub4dor&3");
        assert_eq!(format!("{s} {s:?}"), "secret:AD_JOIN secret:AD_JOIN");
        assert_eq!(s.redact("pw=Tr0ub4dor&3!"), "pw=secret:AD_JOIN!");
    }
}
