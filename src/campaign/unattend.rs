//! Step h for Windows PCs: an offline domain join blob per machine (`net offlinejoin provision` run on
//! the deploy server against the DC) and the per-machine `unattend.xml` that carries it into the
//! specialize pass. The PC never receives a reusable domain credential: the blob holds only its own
//! computer account's secret.
//!
//! The rendered file is checked before it is written anywhere: well-formed XML, the computer name
//! obeys NetBIOS rules and is the one asked for, and the blob is the expected base64.

use super::render::render;
use super::steps::join::{Domain, JoinError, check_hostname};
use crate::secrets::NamedSecret;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The Windows unattend template shipped with roomcast.
pub const WINDOWS_UNATTEND: &str = include_str!("../../templates/join/windows-unattend.xml.j2");

/// Errors of offline provisioning and unattend rendering.
#[derive(Debug, thiserror::Error)]
pub enum UnattendError {
    /// Hostname, OU or template problem.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// `net offlinejoin provision` could not run or failed.
    #[error("{hostname}: offline join provisioning failed: {detail}")]
    Provision {
        /// The machine.
        hostname: String,
        /// What failed (password redacted).
        detail: String,
    },
    /// The rendered unattend.xml is not acceptable.
    #[error("unattend.xml for {hostname}: {detail}")]
    Invalid {
        /// The machine.
        hostname: String,
        /// Which check failed.
        detail: String,
    },
}

/// Provisions the computer account `hostname` in the profile's OU and returns its offline join blob
/// (base64, a secret). Runs Samba's `net` locally with `smb_conf` (a member config of the realm);
/// the join password goes on `net`'s stdin (`PASSWD_FD=0`), never on its command line.
/// `net` is the program and leading arguments to run Samba's `net` with (normally `["net"]`; a
/// wrapper such as a resolver or namespace helper can be put in front).
pub fn offline_provision(
    net: &[String],
    domain: &Domain,
    smb_conf: &Path,
    hostname: &str,
) -> Result<NamedSecret, UnattendError> {
    check_hostname(hostname)?;
    let fail = |detail: String| UnattendError::Provision {
        hostname: hostname.to_string(),
        detail: domain.password.redact(&detail),
    };
    let (program, lead) = net
        .split_first()
        .ok_or_else(|| fail("no net program given".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(lead)
        .args(["offlinejoin", "provision", "-s"])
        .arg(smb_conf)
        .args(["-U", &domain.user])
        .arg(format!("domain={}", domain.realm))
        .arg(format!("machine_name={hostname}"))
        .arg(format!("machine_account_ou={}", domain.ou))
        // A PC imaged again (next year, a retry) keeps its computer account, with a new secret.
        .arg("reuse")
        .arg("printblob")
        .env("PASSWD_FD", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(server) = &domain.server {
        cmd.arg(format!("dcname={server}")).args(["-S", server]);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot run net: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{}\n", domain.password.expose()).as_bytes())
            .map_err(|e| fail(format!("cannot pass the password: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("net: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!("{} {}", stdout.trim(), stderr.trim())));
    }
    // The blob is the last non-empty line that is pure base64.
    let blob = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| l.len() > 64 && is_base64(l))
        .ok_or_else(|| fail("no offline join blob in the output of net".into()))?;
    Ok(NamedSecret::new(&format!("ODJ_{hostname}"), blob))
}

fn is_base64(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

/// The profile's regional settings written into each PC's unattend.xml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsSettings {
    /// Language and locale tag, e.g. `fr-FR` (UI language, system, user and input locale).
    pub locale: String,
    /// Windows time zone name, e.g. `Romance Standard Time` (Paris).
    pub time_zone: String,
}

impl Default for WindowsSettings {
    /// France: `fr-FR`, `Romance Standard Time`.
    fn default() -> Self {
        WindowsSettings {
            locale: "fr-FR".into(),
            time_zone: "Romance Standard Time".into(),
        }
    }
}

/// Renders and checks the unattend.xml of one machine. The result contains the blob: write it only
/// into that machine's deployed disk, never into a log.
pub fn render_unattend(
    template: &str,
    hostname: &str,
    blob: &NamedSecret,
    windows: &WindowsSettings,
) -> Result<String, UnattendError> {
    check_hostname(hostname)?;
    let invalid = |detail: String| UnattendError::Invalid {
        hostname: hostname.to_string(),
        detail: blob.redact(&detail),
    };
    if !is_base64(blob.expose()) {
        return Err(invalid("the offline join blob is not base64".into()));
    }
    let ctx = minijinja::context! {
        machine => minijinja::context! { hostname },
        join => minijinja::context! { account_data => blob.expose() },
        windows => minijinja::context! { locale => &windows.locale, time_zone => &windows.time_zone },
    };
    let xml = render("templates/join/windows-unattend.xml.j2", template, &ctx)
        .map_err(|e| invalid(e.to_string()))?;
    let doc =
        roxmltree::Document::parse(&xml).map_err(|e| invalid(format!("not well-formed: {e}")))?;
    let names: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("ComputerName"))
        .filter_map(|n| n.text())
        .collect();
    if names != [hostname] {
        return Err(invalid(format!(
            "expected one ComputerName {hostname}, found {names:?}"
        )));
    }
    let data: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("AccountData"))
        .filter_map(|n| n.text())
        .collect();
    if data != [blob.expose()] {
        return Err(invalid(
            "expected exactly one AccountData holding the blob".into(),
        ));
    }
    for (tag, want) in [
        ("TimeZone", &windows.time_zone),
        ("UILanguage", &windows.locale),
    ] {
        let found: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name(tag))
            .filter_map(|n| n.text())
            .collect();
        if found != [want.as_str()] {
            return Err(invalid(format!(
                "expected one {tag} {want:?}, found {found:?}"
            )));
        }
    }
    Ok(xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob() -> NamedSecret {
        NamedSecret::new("ODJ_B204-PC01", &"QUJD".repeat(40))
    }

    #[test]
    fn renders_a_well_formed_file_with_name_and_blob() {
        let xml = render_unattend(
            WINDOWS_UNATTEND,
            "B204-PC01",
            &blob(),
            &WindowsSettings::default(),
        )
        .unwrap();
        assert!(xml.contains("<ComputerName>B204-PC01</ComputerName>"));
        assert!(xml.contains(&format!("<AccountData>{}</AccountData>", "QUJD".repeat(40))));
        assert!(xml.contains("<TimeZone>Romance Standard Time</TimeZone>"));
        assert!(xml.contains("<UILanguage>fr-FR</UILanguage>"));
    }

    #[test]
    fn refuses_bad_names_broken_templates_and_non_base64_blobs() {
        assert!(
            render_unattend(
                WINDOWS_UNATTEND,
                "B204-PC01-TOOLONG",
                &blob(),
                &WindowsSettings::default()
            )
            .is_err()
        );
        let broken = WINDOWS_UNATTEND.replace("</unattend>", "");
        let err = render_unattend(&broken, "B204-PC01", &blob(), &WindowsSettings::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not well-formed"), "{err}");
        assert!(
            !err.contains(&"QUJD".repeat(40)),
            "the blob never reaches an error"
        );
        let evil = NamedSecret::new("ODJ", "<x/>");
        assert!(
            render_unattend(
                WINDOWS_UNATTEND,
                "B204-PC01",
                &evil,
                &WindowsSettings::default()
            )
            .is_err()
        );
        let twice = WINDOWS_UNATTEND.replace(
            "<ComputerName>{{ machine.hostname }}</ComputerName>",
            "<ComputerName>{{ machine.hostname }}</ComputerName><ComputerName>X</ComputerName>",
        );
        assert!(
            render_unattend(&twice, "B204-PC01", &blob(), &WindowsSettings::default()).is_err()
        );
    }
}
