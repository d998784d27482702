//! Step c (and g `--software-only`): install the profile's software on a machine over
//! [`RemoteExec`], idempotently.
//!
//! For each software: if its detection rule already holds, it is skipped; otherwise its installer is
//! uploaded, the install command rendered from the catalog template is run, and both the exit code and
//! the detection rule must then agree. Every software gets its own log, with secrets redacted.

use super::{RoomSpec, connect};
use crate::campaign::render::{RenderError, render};
use crate::remote::{RemoteError, RemoteExec, shell_quote};
use crate::secrets::NamedSecret;
use roomcast_proto::procedure::Step;
use std::path::{Path, PathBuf};

/// The shell family of the target, which decides how detection rules become commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// Linux PCs (sh).
    Posix,
    /// Windows PCs with OpenSSH's default shell (cmd.exe).
    Windows,
}

/// A catalog detection rule (exactly one kind per software version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detect {
    /// A file that exists once installed.
    File(String),
    /// A Windows registry key (optionally a value, optionally equal to something).
    Registry {
        /// The key.
        key: String,
        /// The value name.
        value: Option<String>,
        /// Its expected data.
        equals: Option<String>,
    },
    /// A dpkg package that is installed.
    Package(String),
    /// A command that exits 0 once installed.
    Command(String),
}

impl Detect {
    /// The command that exits 0 when the software is installed.
    pub fn command(&self, shell: Shell) -> String {
        match (self, shell) {
            (Detect::File(p), Shell::Posix) => format!("test -e {}", shell_quote(p)),
            (Detect::File(p), Shell::Windows) => {
                format!("if exist \"{p}\" (exit 0) else (exit 1)")
            }
            (Detect::Package(p), Shell::Posix) => format!(
                "dpkg-query -W -f='${{Status}}' {} 2>/dev/null | grep -q 'install ok installed'",
                shell_quote(p)
            ),
            (Detect::Package(p), Shell::Windows) => {
                format!(
                    "powershell -NoProfile -Command \"if (Get-Package -Name '{p}' -ErrorAction SilentlyContinue) {{ exit 0 }} else {{ exit 1 }}\""
                )
            }
            (Detect::Registry { key, value, equals }, _) => {
                let mut cmd = format!("reg query \"{key}\"");
                if let Some(v) = value {
                    cmd.push_str(&format!(" /v \"{v}\""));
                }
                if let Some(eq) = equals {
                    cmd.push_str(&format!(" | findstr /C:\"{eq}\""));
                }
                cmd
            }
            (Detect::Command(c), _) => c.clone(),
        }
    }
}

/// One software to install, taken from the catalog entry and the profile.
#[derive(Debug, Clone)]
pub struct Software {
    /// Catalog id.
    pub id: String,
    /// Version string.
    pub version: String,
    /// The installer in the local store (checked at step a).
    pub installer: PathBuf,
    /// The installer's file name in the catalog.
    pub installer_file: String,
    /// The catalog's install command template (minijinja).
    pub install: String,
    /// The detection rule.
    pub detect: Detect,
    /// The licence key, when the profile has one for this software.
    pub licence_key: Option<NamedSecret>,
}

/// Where and how to install on one machine.
#[derive(Debug, Clone)]
pub struct Target {
    /// The machine's hostname (template variable `machine.hostname`).
    pub hostname: String,
    /// Its shell family.
    pub shell: Shell,
    /// Remote directory installers are uploaded to.
    pub staging_dir: String,
}

/// How one software ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Detected before anything was done.
    AlreadyInstalled,
    /// Installed now and detected afterwards.
    Installed,
    /// Not installed; why.
    Failed(String),
}

/// The result and log of one software on one machine.
#[derive(Debug, Clone)]
pub struct SoftwareReport {
    /// Catalog id.
    pub id: String,
    /// Version.
    pub version: String,
    /// What happened.
    pub outcome: Outcome,
    /// Command lines, exit codes and output, secrets redacted.
    pub log: String,
}

/// Errors that stop the runner (as opposed to one software failing, which is an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The machine could not be reached or the transport failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// A catalog template did not render.
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// Installs every software on `remote`, in order, and returns one report per software. A software that
/// fails does not stop the others: the technician gets the full picture in one pass.
pub fn install_all(
    remote: &mut dyn RemoteExec,
    target: &Target,
    software: &[Software],
) -> Result<Vec<SoftwareReport>, InstallError> {
    let mut reports = Vec::new();
    let mkdir = match target.shell {
        Shell::Posix => format!("mkdir -p {}", shell_quote(&target.staging_dir)),
        Shell::Windows => format!("if not exist \"{0}\" mkdir \"{0}\"", target.staging_dir),
    };
    let mut staged = false;
    for sw in software {
        let mut log = String::new();
        let detect = sw.detect.command(target.shell);
        let before = remote.run(&detect)?;
        log.push_str(&format!("$ {detect}\n  exit {}\n", before.code));
        if before.code == 0 {
            reports.push(SoftwareReport {
                id: sw.id.clone(),
                version: sw.version.clone(),
                outcome: Outcome::AlreadyInstalled,
                log,
            });
            continue;
        }
        if !staged {
            let out = remote.run(&mkdir)?;
            if out.code != 0 {
                return Err(RemoteError::Protocol {
                    host: remote.target().to_string(),
                    message: format!(
                        "cannot create {}: {}",
                        target.staging_dir,
                        out.stderr_text().trim()
                    ),
                }
                .into());
            }
            staged = true;
        }
        let sep = if target.shell == Shell::Windows {
            '\\'
        } else {
            '/'
        };
        let remote_path = format!(
            "{}{sep}{}",
            target.staging_dir.trim_end_matches(sep),
            sw.installer_file
        );
        remote.upload(&sw.installer, &remote_path)?;
        log.push_str(&format!(
            "uploaded {} -> {remote_path}\n",
            sw.installer.display()
        ));
        let out = match &sw.licence_key {
            None => {
                let command = render_install(sw, target, &remote_path, None, false)?;
                let out = remote.run(&command)?;
                log.push_str(&format!("$ {command}\n"));
                out
            }
            Some(key) => run_with_secret(remote, sw, target, &remote_path, key, &mut log)?,
        };
        let redact = |t: &str| match &sw.licence_key {
            Some(k) => k.redact(t),
            None => t.to_string(),
        };
        log.push_str(&format!(
            "  exit {}\n{}{}",
            out.code,
            indent("stdout", &redact(&out.stdout_text())),
            indent("stderr", &redact(&out.stderr_text()))
        ));
        let outcome = if out.code != 0 {
            Outcome::Failed(format!("install command exited with {}", out.code))
        } else {
            let after = remote.run(&detect)?;
            log.push_str(&format!("$ {detect}\n  exit {}\n", after.code));
            if after.code == 0 {
                Outcome::Installed
            } else {
                Outcome::Failed(format!(
                    "install command exited 0 but the detection rule does not hold ({detect})"
                ))
            }
        };
        tracing::info!(machine = %target.hostname, software = %sw.id, outcome = ?outcome, "step c");
        reports.push(SoftwareReport {
            id: sw.id.clone(),
            version: sw.version.clone(),
            outcome,
            log,
        });
    }
    Ok(reports)
}

/// Runs the install command of a software that has a licence key without the key ever being on a
/// command line roomcast starts: the key goes into a 0600 file (`licence.key_file`), the rendered
/// command into a 0600 script, both over SFTP; the script is run by path, and both files are removed
/// afterwards, whatever the outcome. (A template that puts `licence.key` itself on the installer's
/// command line still exposes it there: `roomcast validate` warns, RC038.)
fn run_with_secret(
    remote: &mut dyn RemoteExec,
    sw: &Software,
    target: &Target,
    remote_path: &str,
    key: &NamedSecret,
    log: &mut String,
) -> Result<crate::remote::Output, InstallError> {
    let (key_file, script, run, remove) = secret_paths(sw, target);
    let command = render_install(sw, target, remote_path, Some(&key_file), false)?;
    let shown = render_install(sw, target, remote_path, Some(&key_file), true)?;
    let result = (|| {
        remote.upload_secret(key.expose().as_bytes(), &key_file)?;
        let body = match target.shell {
            Shell::Posix => format!("{command}\n"),
            Shell::Windows => format!("@echo off\r\n{command}\r\n"),
        };
        remote.upload_secret(body.as_bytes(), &script)?;
        remote.run(&run)
    })();
    // Removed also when the install failed or the transport broke mid-way (best effort then: a
    // file left by a lost connection is replaced, not reused, by the next run's upload_secret).
    let removed = remote.run(&remove);
    log.push_str(&format!(
        "wrote {key_file} (0600, the licence key) and {script} (0600)\n$ {run}   # {shown}\n"
    ));
    let out = result?;
    let removed = removed?;
    if removed.code != 0 {
        return Err(RemoteError::Protocol {
            host: remote.target().to_string(),
            message: format!(
                "cannot remove {key_file} and {script}: {}",
                removed.stderr_text().trim()
            ),
        }
        .into());
    }
    log.push_str(&format!("removed {key_file} and {script}\n"));
    Ok(out)
}

/// The key file, the script, the command running it and the one removing both, per shell.
fn secret_paths(sw: &Software, target: &Target) -> (String, String, String, String) {
    let sep = if target.shell == Shell::Windows {
        '\\'
    } else {
        '/'
    };
    let dir = target.staging_dir.trim_end_matches(sep);
    let key_file = format!("{dir}{sep}.roomcast-{}.key", sw.id);
    match target.shell {
        Shell::Posix => {
            let script = format!("{dir}{sep}.roomcast-{}-install.sh", sw.id);
            let run = format!("sh {}", shell_quote(&script));
            let remove = format!("rm -f {} {}", shell_quote(&key_file), shell_quote(&script));
            (key_file, script, run, remove)
        }
        Shell::Windows => {
            let script = format!("{dir}{sep}.roomcast-{}-install.cmd", sw.id);
            let run = format!("cmd /c \"{script}\"");
            let remove = format!("del /f /q \"{key_file}\" \"{script}\"");
            (key_file, script, run, remove)
        }
    }
}

/// Renders the install command. `key_file`: where the licence key file is (for software with a
/// key); with `redacted`, `licence.key` is shown as `secret:NAME`.
fn render_install(
    sw: &Software,
    target: &Target,
    remote_path: &str,
    key_file: Option<&str>,
    redacted: bool,
) -> Result<String, RenderError> {
    let installer = minijinja::context! { path => remote_path, file => &sw.installer_file };
    let software = minijinja::context! { id => &sw.id, version => &sw.version };
    let machine = minijinja::context! { hostname => &target.hostname };
    let name = format!("catalog {}@{} install", sw.id, sw.version);
    let ctx = match &sw.licence_key {
        Some(key) => {
            let shown = if redacted {
                key.to_string()
            } else {
                key.expose().to_string()
            };
            let licence = minijinja::context! { key => shown, key_file => key_file };
            minijinja::context! { installer, software, machine, licence }
        }
        None => minijinja::context! { installer, software, machine },
    };
    render(&name, &sw.install, &ctx)
}

fn indent(label: &str, text: &str) -> String {
    if text.trim().is_empty() {
        return String::new();
    }
    let mut out = format!("  {label}:\n");
    for line in text.lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Runs step c on the master or g `--software-only` on one PC: every software of `spec` installed on
/// `machine`, one log per software under `<logs>/<step>/<machine>/`; `Err` names every failure.
pub fn install_on(spec: &RoomSpec, step: Step, machine: &str) -> Result<(), String> {
    let mut remote = connect(spec, machine)?;
    let target = Target {
        hostname: machine.to_string(),
        shell: spec.shell,
        staging_dir: spec.staging_dir.clone(),
    };
    let reports =
        install_all(&mut remote, &target, &spec.software).map_err(|e| format!("{machine}: {e}"))?;
    let dir = spec.logs.join(step.letter().to_string()).join(machine);
    write_logs(&dir, &reports).map_err(|e| format!("{}: {e}", dir.display()))?;
    let failed: Vec<String> = reports
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed(why) => Some(format!("{}@{}: {why}", r.id, r.version)),
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{machine}: {}", failed.join("; ")))
    }
}

/// Writes one `<id>.log` per software into `dir` (created if needed), each file complete or absent.
pub fn write_logs(dir: &Path, reports: &[SoftwareReport]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for r in reports {
        let path = dir.join(format!("{}.log", r.id));
        let tmp = dir.join(format!(".{}.log.part", r.id));
        let header = format!("{}@{}: {:?}\n", r.id, r.version, r.outcome);
        std::fs::write(&tmp, format!("{header}{}", r.log))?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::fake::FakeRemote;

    fn sw(dir: &Path, id: &str, install: &str) -> Software {
        let installer = dir.join(format!("{id}.sh"));
        std::fs::write(&installer, format!("installer of {id}")).unwrap();
        Software {
            id: id.into(),
            version: "1.0".into(),
            installer,
            installer_file: format!("{id}.sh"),
            install: install.into(),
            detect: Detect::File(format!("/opt/{id}/ok")),
            licence_key: None,
        }
    }

    fn target() -> Target {
        Target {
            hostname: "B204-PC01".into(),
            shell: Shell::Posix,
            staging_dir: "/var/tmp/roomcast".into(),
        }
    }

    #[test]
    fn detected_software_is_skipped_and_missing_one_installed() {
        let dir = tempfile::tempdir().unwrap();
        let a = sw(dir.path(), "gimp", "sh {{ installer.path }}");
        let b = sw(
            dir.path(),
            "geogebra",
            "sh {{ installer.path }} --host {{ machine.hostname }}",
        );
        let mut remote = FakeRemote::new("pc")
            .on("test -e '/opt/gimp/ok'", vec![(0, "")])
            .on("test -e '/opt/geogebra/ok'", vec![(1, ""), (0, "")]);
        let reports = install_all(&mut remote, &target(), &[a, b]).unwrap();
        assert_eq!(reports[0].outcome, Outcome::AlreadyInstalled);
        assert_eq!(reports[1].outcome, Outcome::Installed);
        assert_eq!(
            remote.ran("sh /var/tmp/roomcast/geogebra.sh --host B204-PC01"),
            1
        );
        assert_eq!(
            remote.ran("gimp.sh"),
            0,
            "nothing run for an installed software"
        );
        assert_eq!(
            remote.uploads.keys().collect::<Vec<_>>(),
            vec!["/var/tmp/roomcast/geogebra.sh"]
        );
    }

    #[test]
    fn exit_code_and_detection_must_both_agree() {
        let dir = tempfile::tempdir().unwrap();
        let a = sw(dir.path(), "bad", "sh {{ installer.path }}");
        let b = sw(dir.path(), "liar", "sh {{ installer.path }}");
        let mut remote = FakeRemote::new("pc")
            .on("sh /var/tmp/roomcast/bad.sh", vec![(3, "")])
            .on("test -e", vec![(1, "")]);
        let reports = install_all(&mut remote, &target(), &[a, b]).unwrap();
        assert_eq!(
            reports[0].outcome,
            Outcome::Failed("install command exited with 3".into())
        );
        assert!(
            matches!(&reports[1].outcome, Outcome::Failed(r) if r.contains("detection rule does not hold"))
        );
    }

    #[test]
    fn licence_key_reaches_the_installer_through_0600_files_never_a_command_line_or_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sw(
            dir.path(),
            "cad",
            "sh {{ installer.path }} --key-file {{ licence.key_file }}",
        );
        s.licence_key = Some(NamedSecret::new("CAD_KEY", "AAAA-BBBB-CCCC"));
        let mut remote = FakeRemote::new("pc")
            .on("test -e", vec![(1, ""), (0, "")])
            .on("sh '/var", vec![(0, "licence AAAA-BBBB-CCCC accepted")]);
        let reports = install_all(&mut remote, &target(), &[s]).unwrap();
        assert_eq!(reports[0].outcome, Outcome::Installed);
        assert!(remote.calls.iter().all(|c| {
            !c.command.contains("AAAA-BBBB-CCCC")
                && !String::from_utf8_lossy(&c.stdin).contains("AAAA")
        }));
        let key_file = "/var/tmp/roomcast/.roomcast-cad.key";
        let script = "/var/tmp/roomcast/.roomcast-cad-install.sh";
        assert_eq!(remote.secret_uploads[key_file], b"AAAA-BBBB-CCCC");
        assert_eq!(
            String::from_utf8_lossy(&remote.secret_uploads[script]),
            format!("sh /var/tmp/roomcast/cad.sh --key-file {key_file}\n")
        );
        assert_eq!(remote.ran(&format!("sh '{script}'")), 1);
        assert_eq!(remote.ran(&format!("rm -f '{key_file}' '{script}'")), 1);
        assert!(
            !reports[0].log.contains("AAAA-BBBB-CCCC"),
            "{}",
            reports[0].log
        );
        assert!(reports[0].log.contains("licence secret:CAD_KEY accepted"));
        let logs = dir.path().join("logs");
        write_logs(&logs, &reports).unwrap();
        let text = std::fs::read_to_string(logs.join("cad.log")).unwrap();
        assert!(text.starts_with("cad@1.0: Installed"));
        assert!(!text.contains("AAAA-BBBB-CCCC"));
    }

    #[test]
    fn a_raw_licence_key_goes_into_the_script_only_and_both_files_go_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sw(
            dir.path(),
            "cad",
            "sh {{ installer.path }} KEY={{ licence.key }}",
        );
        s.licence_key = Some(NamedSecret::new("CAD_KEY", "AAAA-BBBB-CCCC"));
        let mut remote = FakeRemote::new("pc")
            .on("test -e", vec![(1, "")])
            .on("sh '/var", vec![(5, "")]);
        let reports = install_all(&mut remote, &target(), &[s]).unwrap();
        assert_eq!(
            reports[0].outcome,
            Outcome::Failed("install command exited with 5".into())
        );
        assert_eq!(remote.ran("AAAA"), 0);
        assert!(
            String::from_utf8_lossy(
                &remote.secret_uploads["/var/tmp/roomcast/.roomcast-cad-install.sh"]
            )
            .contains("KEY=AAAA-BBBB-CCCC")
        );
        assert_eq!(remote.ran("rm -f '/var/tmp/roomcast/.roomcast-cad.key'"), 1);
        assert!(
            reports[0].log.contains("KEY=secret:CAD_KEY"),
            "{}",
            reports[0].log
        );
        assert!(!reports[0].log.contains("AAAA"));
    }

    #[test]
    fn a_template_naming_an_unknown_variable_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = sw(
            dir.path(),
            "cad",
            "sh {{ installer.path }} KEY={{ licence.key }}",
        );
        let mut remote = FakeRemote::new("pc").on("test -e", vec![(1, "")]);
        let err = install_all(&mut remote, &target(), &[s]).unwrap_err();
        assert!(err.to_string().contains("catalog cad@1.0 install"), "{err}");
        assert_eq!(remote.ran("sh /var/tmp"), 0);
    }

    #[test]
    fn detection_commands_per_shell() {
        assert_eq!(
            Detect::Package("gimp".into()).command(Shell::Posix),
            "dpkg-query -W -f='${Status}' 'gimp' 2>/dev/null | grep -q 'install ok installed'"
        );
        assert_eq!(
            Detect::File(r"C:\Program Files\X\x.exe".into()).command(Shell::Windows),
            r#"if exist "C:\Program Files\X\x.exe" (exit 0) else (exit 1)"#
        );
        let reg = Detect::Registry {
            key: r"HKLM\SOFTWARE\X".into(),
            value: Some("Version".into()),
            equals: Some("2.1".into()),
        };
        assert_eq!(
            reg.command(Shell::Windows),
            r#"reg query "HKLM\SOFTWARE\X" /v "Version" | findstr /C:"2.1""#
        );
    }
}
