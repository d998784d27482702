//! The server's one configuration file, `/etc/roomcast/roomcast.toml` (or `$ROOMCAST_CONFIG`, or
//! `--config FILE`), read by every command.
//!
//! One table, [`SETTINGS`], says for each key of the file which command-line options it feeds and
//! which environment variable overrides it. The file's values become those options' defaults
//! ([`apply`] walks the clap tree before parsing), so the precedence is clap's own:
//! **flag > environment > file > built-in default**, the same for every command. A key the table
//! does not know, a value of the wrong type, a relative path or a URL that is not http(s) is refused
//! with the file's name and line ([`ConfigError`]). Secrets are never in this file: the GLPI tokens
//! are `secret:NAME` references (`crate::secrets`), and [`Loaded::show`] prints any other value of a
//! secret key as `***`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the installed package puts the file (a Debian conffile).
pub const DEFAULT_PATH: &str = "/etc/roomcast/roomcast.toml";
/// Environment variable naming another file (tests, a second instance).
pub const PATH_ENV: &str = "ROOMCAST_CONFIG";
/// The option naming another file, before the subcommand: `roomcast --config FILE ...`.
pub const PATH_FLAG: &str = "--config";

/// What kind of value a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An absolute path.
    Path,
    /// An `http://` or `https://` URL.
    Url,
    /// A `secret:NAME` reference (or a value printed as `***`).
    Secret,
    /// A whole number of days, 1 to 3650.
    Days,
}

/// One key of the file.
#[derive(Debug)]
pub struct Setting {
    /// The key in the file.
    pub key: &'static str,
    /// The environment variable that overrides the file (an option that already reads another
    /// variable keeps it too).
    pub env: &'static str,
    /// The options it feeds: `(command path, option id)`; an empty path means every command with
    /// that option.
    pub options: &'static [(&'static str, &'static str)],
    /// Its kind.
    pub kind: Kind,
    /// One line for `config show` and the docs.
    pub about: &'static str,
}

/// Every key of the file: the one place that maps it to options and variables.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "store",
        env: "ROOMCAST_STORE",
        options: &[("", "store")],
        kind: Kind::Path,
        about: "the image store",
    },
    Setting {
        key: "database",
        env: "ROOMCAST_DB",
        options: &[("", "db")],
        kind: Kind::Path,
        about: "the campaign journal and inventory (SQLite)",
    },
    Setting {
        key: "signer_key",
        env: "ROOMCAST_KEY",
        options: &[("image capture", "key"), ("", "signer_key")],
        kind: Kind::Path,
        about: "the server's manifest signing key",
    },
    Setting {
        key: "secrets",
        env: "ROOMCAST_SECRETS",
        options: &[("", "secrets"), ("", "secrets_file")],
        kind: Kind::Path,
        about: "the secrets file (NAME=value lines, mode 0600)",
    },
    Setting {
        key: "boot_dir",
        env: "ROOMCAST_BOOT_DIR",
        options: &[("", "boot_dir"), ("bootenv build", "out")],
        kind: Kind::Path,
        about: "the boot environment (`bootenv build --out`), served over TFTP/HTTP",
    },
    Setting {
        key: "kernel_dir",
        env: "ROOMCAST_KERNEL_DIR",
        options: &[("", "kernel_dir")],
        kind: Kind::Path,
        about: "an unpacked Debian kernel package for `bootenv build`",
    },
    Setting {
        key: "reports",
        env: "ROOMCAST_REPORTS",
        options: &[("serve", "reports"), ("deploy", "reports")],
        kind: Kind::Path,
        about: "where agent reports are written",
    },
    Setting {
        key: "ssh_key",
        env: "ROOMCAST_SSH_KEY",
        options: &[("", "ssh_key")],
        kind: Kind::Path,
        about: "the SSH private key for the PCs",
    },
    Setting {
        key: "log_retention_days",
        env: "ROOMCAST_LOG_RETENTION_DAYS",
        options: &[("campaign start", "log_retention_days")],
        kind: Kind::Days,
        about: "days a campaign's per-PC logs are kept (the journal and reports stay)",
    },
    Setting {
        key: "glpi_url",
        env: "ROOMCAST_GLPI_URL",
        options: &[("", "glpi_url")],
        kind: Kind::Url,
        about: "GLPI's root URL",
    },
    Setting {
        key: "glpi_app_token",
        env: "ROOMCAST_GLPI_APP_TOKEN",
        options: &[("", "app_token")],
        kind: Kind::Secret,
        about: "GLPI's App-Token, as a secret:NAME reference",
    },
    Setting {
        key: "glpi_user_token",
        env: "ROOMCAST_GLPI_USER_TOKEN",
        options: &[("", "user_token")],
        kind: Kind::Secret,
        about: "the technician's GLPI API token, as a secret:NAME reference",
    },
];

/// A value the file gave, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileValue {
    /// The value, as the options take it.
    pub value: String,
    /// 1-based line of the key.
    pub line: usize,
}

/// The file as read: its path (when there is one) and its values by key.
#[derive(Debug, Default, Clone)]
pub struct Loaded {
    /// The file read, or `None` when there is none at the default place.
    pub path: Option<PathBuf>,
    /// Its values.
    pub values: BTreeMap<&'static str, FileValue>,
}

/// A file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A syntax error, an unknown key or a bad value.
    #[error("{path}:{line}: {message}")]
    At {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong (never a secret's value).
        message: String,
    },
}

/// The file the command line and environment name: `--config FILE` (before the subcommand),
/// else `$ROOMCAST_CONFIG`, else [`DEFAULT_PATH`]. The second half says whether it must exist
/// (only the default may be missing).
pub fn locate(args: &[std::ffi::OsString]) -> (PathBuf, bool) {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let Some(s) = a.to_str() else { break };
        if s == PATH_FLAG {
            if let Some(p) = it.next() {
                return (PathBuf::from(p), true);
            }
        } else if let Some(p) = s.strip_prefix("--config=") {
            return (PathBuf::from(p), true);
        } else if !s.starts_with('-') {
            break; // the subcommand: `--config` goes before it
        }
    }
    match std::env::var_os(PATH_ENV) {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (PathBuf::from(DEFAULT_PATH), false),
    }
}

/// Reads the file at `path`; a missing file is an empty configuration unless `must_exist`.
pub fn load(path: &Path, must_exist: bool) -> Result<Loaded, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => Ok(Loaded::default()),
        Err(source) => Err(ConfigError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Parses and checks the text of a configuration file.
pub fn parse(path: &Path, text: &str) -> Result<Loaded, ConfigError> {
    type Table = BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>;
    let at = |offset: usize, message: String| ConfigError::At {
        path: path.to_path_buf(),
        line: line_of(text, offset),
        message,
    };
    let table: Table = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        // toml's message carries an excerpt of the line; the first line is what went wrong.
        let message = e
            .message()
            .lines()
            .next()
            .unwrap_or("syntax error")
            .to_string();
        at(offset, message)
    })?;
    let mut values = BTreeMap::new();
    for (key, value) in &table {
        let line_offset = key.span().start;
        let Some(setting) = SETTINGS.iter().find(|s| s.key == key.get_ref()) else {
            let known: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
            let hint = closest(key.get_ref(), &known)
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            return Err(at(
                line_offset,
                format!(
                    "unknown key `{}`{hint}; known keys: {}",
                    key.get_ref(),
                    known.join(", ")
                ),
            ));
        };
        let value = check(setting, value.get_ref()).map_err(|m| at(line_offset, m))?;
        values.insert(
            setting.key,
            FileValue {
                value,
                line: line_of(text, line_offset),
            },
        );
    }
    Ok(Loaded {
        path: Some(path.to_path_buf()),
        values,
    })
}

/// The value of `setting` as the options take it, or why it is refused (never echoing a secret).
fn check(setting: &Setting, value: &toml::Value) -> Result<String, String> {
    let key = setting.key;
    match (setting.kind, value) {
        (Kind::Days, toml::Value::Integer(n)) if (1..=3650).contains(n) => Ok(n.to_string()),
        (Kind::Days, _) => Err(format!("`{key}` takes a number of days from 1 to 3650")),
        (_, toml::Value::String(s)) => {
            match setting.kind {
                Kind::Path if !Path::new(s).is_absolute() => {
                    return Err(format!("`{key}` must be an absolute path, not `{s}`"));
                }
                Kind::Url if !(s.starts_with("http://") || s.starts_with("https://")) => {
                    return Err(format!("`{key}` must be an http:// or https:// URL"));
                }
                Kind::Secret if !s.starts_with(crate::secrets::REFERENCE_PREFIX) => {
                    return Err(format!(
                        "`{key}` must be a `secret:NAME` reference (the value goes in the secrets file)"
                    ));
                }
                _ => {}
            }
            Ok(s.clone())
        }
        (_, other) => Err(format!(
            "`{key}` takes a string, not a {}",
            other.type_str()
        )),
    }
}

/// The known key at edit distance 1 or 2 of `word`, for a misspelt key.
fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    known
        .iter()
        .map(|k| (distance(word, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// The setting that feeds option `id` of the command at `path` (`"image capture"`), if any.
pub fn setting_for(path: &str, id: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| {
        s.options
            .iter()
            .any(|(p, o)| *o == id && (p.is_empty() || *p == path))
    })
}

/// The command tree with the file's values as the defaults of the options they feed, and each
/// such option reading its setting's environment variable when it reads none yet.
pub fn apply(cmd: clap::Command, loaded: &Loaded) -> clap::Command {
    walk(cmd, "", loaded)
}

fn walk(mut cmd: clap::Command, path: &str, loaded: &Loaded) -> clap::Command {
    let ids: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    for id in ids {
        let Some(setting) = setting_for(path, &id) else {
            continue;
        };
        let value = loaded.values.get(setting.key).map(|v| v.value.clone());
        cmd = cmd.mut_arg(id, |mut arg| {
            if arg.get_env().is_none() {
                arg = arg.env(setting.env);
            }
            match value {
                // A process reads its configuration once: leaking these few strings is the price
                // of clap's `'static` defaults.
                Some(v) => arg
                    .default_value(&*Box::leak(v.into_boxed_str()))
                    .required(false),
                None => arg,
            }
        });
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in subs {
        let sub_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        cmd = cmd.mut_subcommand(&name, |sc| walk(sc, &sub_path, loaded));
    }
    cmd
}

/// Where a value of the merged view comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An environment variable.
    Env(&'static str),
    /// The file, at this line.
    File(PathBuf, usize),
    /// The options' built-in default.
    Default,
    /// Nothing: the commands that use it want a flag.
    Unset,
}

/// One line of `config show`.
#[derive(Debug, Clone)]
pub struct Shown {
    /// The key.
    pub key: &'static str,
    /// The value as printed (`***` for a secret that is not a reference).
    pub value: String,
    /// Where it comes from.
    pub source: Source,
}

impl Loaded {
    /// The merged view of file, environment and built-in defaults (`cmd`, the command tree before
    /// [`apply`], gives the defaults), one entry per key of [`SETTINGS`].
    pub fn show(&self, cmd: &clap::Command) -> Vec<Shown> {
        let mut defaults: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        collect_defaults(cmd, "", &mut defaults);
        SETTINGS
            .iter()
            .map(|s| {
                let envs = std::iter::once(s.env).chain(other_envs(cmd, s));
                let from_env = envs
                    .filter_map(|e| std::env::var(e).ok().map(|v| (e, v)))
                    .find(|(_, v)| !v.is_empty());
                let (value, source) = match (from_env, self.values.get(s.key)) {
                    (Some((e, v)), _) => (v, Source::Env(e)),
                    (None, Some(f)) => (
                        f.value.clone(),
                        Source::File(self.path.clone().unwrap_or_default(), f.line),
                    ),
                    (None, None) => match defaults.get(s.key).map(Vec::as_slice) {
                        Some([one]) => (one.clone(), Source::Default),
                        Some(many) if !many.is_empty() => (many.join(" | "), Source::Default),
                        _ => (String::new(), Source::Unset),
                    },
                };
                let hidden = s.kind == Kind::Secret
                    && !value.is_empty()
                    && !value.starts_with(crate::secrets::REFERENCE_PREFIX);
                Shown {
                    key: s.key,
                    value: if hidden { "***".into() } else { value },
                    source,
                }
            })
            .collect()
    }
}

/// The variables the setting's options already read besides [`Setting::env`] (kept working).
fn other_envs(cmd: &clap::Command, s: &Setting) -> Vec<&'static str> {
    let mut found = Vec::new();
    collect_envs(cmd, "", s, &mut found);
    found.retain(|e| *e != s.env);
    found.sort();
    found.dedup();
    found
        .into_iter()
        .map(|e| &*Box::leak(e.into_boxed_str()))
        .collect()
}

fn collect_envs(cmd: &clap::Command, path: &str, s: &Setting, out: &mut Vec<String>) {
    for a in cmd.get_arguments() {
        if setting_for(path, a.get_id().as_str()).is_some_and(|x| x.key == s.key)
            && let Some(e) = a.get_env()
        {
            out.push(e.to_string_lossy().into_owned());
        }
    }
    for sc in cmd.get_subcommands() {
        collect_envs(sc, &join(path, sc.get_name()), s, out);
    }
}

fn collect_defaults(
    cmd: &clap::Command,
    path: &str,
    out: &mut BTreeMap<&'static str, Vec<String>>,
) {
    for a in cmd.get_arguments() {
        if let Some(s) = setting_for(path, a.get_id().as_str()) {
            for d in a.get_default_values() {
                let d = d.to_string_lossy().into_owned();
                let list = out.entry(s.key).or_default();
                if !list.contains(&d) {
                    list.push(d);
                }
            }
        }
    }
    for sc in cmd.get_subcommands() {
        collect_defaults(sc, &join(path, sc.get_name()), out);
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path} {name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_file_gives_values_with_lines() {
        let text = "# server\nstore = \"/srv/store\"\n\nglpi_url = \"https://glpi.example/\"\n";
        let l = parse(Path::new("/etc/r.toml"), text).unwrap();
        assert_eq!(l.values["store"].value, "/srv/store");
        assert_eq!(l.values["store"].line, 2);
        assert_eq!(l.values["glpi_url"].line, 4);
    }

    #[test]
    fn a_misspelt_key_names_file_line_and_the_likely_key() {
        let text = "store = \"/srv/store\"\nglpi_ulr = \"https://glpi/\"\n";
        let e = parse(Path::new("/etc/r.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/etc/r.toml:2: unknown key `glpi_ulr`"),
            "{e}"
        );
        assert!(e.contains("did you mean `glpi_url`?"), "{e}");
    }

    #[test]
    fn bad_values_and_syntax_are_refused_with_their_line() {
        let cases = [
            ("store = 3\n", 1, "takes a string"),
            ("\n\nstore = \"relative/dir\"\n", 3, "absolute path"),
            ("glpi_url = \"ftp://x\"\n", 1, "http"),
            ("glpi_user_token = \"s3cr3t-value\"\n", 1, "secret:NAME"),
            ("store = \"/a\"\nstore = \"/b\"\n", 2, ""),
            ("store = \"/a\n", 1, ""),
        ];
        for (text, line, words) in cases {
            let e = parse(Path::new("f.toml"), text).unwrap_err().to_string();
            assert!(e.starts_with(&format!("f.toml:{line}: ")), "{text:?}: {e}");
            assert!(e.contains(words), "{text:?}: {e}");
            assert!(!e.contains("s3cr3t"), "a secret echoed: {e}");
        }
    }

    #[test]
    fn every_setting_feeds_an_existing_option() {
        use clap::CommandFactory;
        let cmd = crate::cli::Cli::command();
        for s in SETTINGS {
            let mut found = Vec::new();
            find(&cmd, "", s, &mut found);
            assert!(!found.is_empty(), "{} feeds no option", s.key);
        }
        fn find(cmd: &clap::Command, path: &str, s: &Setting, out: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                if setting_for(path, a.get_id().as_str()).is_some_and(|x| x.key == s.key) {
                    out.push(format!("{path} --{}", a.get_id()));
                }
            }
            for sc in cmd.get_subcommands() {
                find(sc, &join(path, sc.get_name()), s, out);
            }
        }
    }

    #[test]
    fn the_file_is_a_default_that_a_flag_overrides() {
        use clap::{CommandFactory, FromArgMatches};
        let l = parse(Path::new("f.toml"), "store = \"/from/file\"\n").unwrap();
        let cmd = apply(crate::cli::Cli::command(), &l);
        let m = cmd
            .clone()
            .try_get_matches_from(["roomcast", "image", "list"])
            .unwrap();
        let cli = crate::cli::Cli::from_arg_matches(&m).unwrap();
        assert!(format!("{cli:?}").contains("/from/file"), "{cli:?}");
        let m = cmd
            .try_get_matches_from(["roomcast", "image", "list", "--store", "/flag"])
            .unwrap();
        let cli = crate::cli::Cli::from_arg_matches(&m).unwrap();
        assert!(format!("{cli:?}").contains("/flag") && !format!("{cli:?}").contains("/from/file"));
    }
}
