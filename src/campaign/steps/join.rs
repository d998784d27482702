//! Step h for Linux PCs: rename the PC and join it to the AD domain, in the profile's OU, with the
//! script rendered from `templates/join/linux-net-ads.sh.j2` and run over [`RemoteExec`].
//!
//! The join password goes only through the remote command's stdin (read by `net` through
//! `PASSWD_FD=0`): never in a command line (visible in `ps` on the PC), an environment variable, a
//! file, the rendered script or the log.

use super::{RoomSpec, connect};
use crate::campaign::render::{RenderError, render};
use crate::campaign::steps::install::Shell;
use crate::remote::{RemoteError, RemoteExec, shell_quote};
use crate::secrets::NamedSecret;

/// The Linux join template shipped with roomcast.
pub const LINUX_NET_ADS: &str = include_str!("../../../templates/join/linux-net-ads.sh.j2");

/// Where and how to join, from the profile's `domain:` and the secrets file.
#[derive(Debug, Clone)]
pub struct Domain {
    /// Kerberos realm (the AD DNS domain, upper case).
    pub realm: String,
    /// NetBIOS domain name.
    pub workgroup: String,
    /// The OU's distinguished name (profile `domain.ou`).
    pub ou: String,
    /// A domain controller to talk to; `None` lets Samba find one through DNS.
    pub server: Option<String>,
    /// The join account (profile `domain.join_account` resolves to user + password).
    pub user: String,
    /// Its password.
    pub password: NamedSecret,
}

/// Files the join writes on the PC (real PCs: Samba's defaults; tests: private paths).
#[derive(Debug, Clone)]
pub struct Paths {
    /// smb.conf to write and use.
    pub smb_conf: String,
    /// Directory for Samba's state (secrets.tdb, keytab, caches).
    pub state_dir: String,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            smb_conf: "/etc/samba/smb.conf".into(),
            state_dir: "/var/lib/samba".into(),
        }
    }
}

/// Errors of step h on one machine; each names the machine.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The hostname breaks NetBIOS rules (the domain would truncate or refuse it).
    #[error("{hostname}: not a valid NetBIOS computer name: {why}")]
    BadHostname {
        /// The name.
        hostname: String,
        /// Which rule.
        why: &'static str,
    },
    /// The OU is not a DN made of OU= components under DC= components.
    #[error("OU {ou:?}: {why}")]
    BadOu {
        /// The DN.
        ou: String,
        /// Why.
        why: &'static str,
    },
    /// Rendering the template failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The transport failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The join script failed on the PC.
    #[error("{hostname}: join failed (exit {code}): {detail}")]
    Failed {
        /// The machine.
        hostname: String,
        /// Exit code of the script.
        code: u32,
        /// Last lines of its output, password redacted.
        detail: String,
    },
}

/// How step h ended on one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// Already named and joined: nothing done.
    AlreadyJoined,
    /// Renamed and joined now.
    Joined,
}

/// Runs step h on one PC: the Linux join of `spec`'s domain. Windows PCs are named and joined by the
/// unattend.xml their agent writes at the end of g (offline join blob, [`crate::campaign::unattend`],
/// checked by the imaging worker): without the imaging backend they fail with that reason.
pub fn run(spec: &RoomSpec, machine: &str) -> Result<(), String> {
    if spec.shell == Shell::Windows {
        return Err(format!(
            "{machine}: Windows PCs join through the unattend.xml their agent writes at the end of \
             an image deploy (step g), which this run does not do"
        ));
    }
    match &spec.join {
        None => Err("the profile has no domain to join".to_string()),
        Some(j) => {
            let mut remote = connect(spec, machine)?;
            join_linux(&mut remote, &j.template, &j.domain, &j.paths, machine)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
}

/// Checks a computer name against NetBIOS rules (≤ 15 chars, letters/digits/`-`, not all digits, no
/// leading `-`).
pub fn check_hostname(hostname: &str) -> Result<(), JoinError> {
    let bad = |why| {
        Err(JoinError::BadHostname {
            hostname: hostname.to_string(),
            why,
        })
    };
    if hostname.is_empty() || hostname.len() > 15 {
        return bad("must be 1 to 15 characters");
    }
    if !hostname
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return bad("only letters, digits and '-' are allowed");
    }
    if hostname.starts_with('-') {
        return bad("must not start with '-'");
    }
    if hostname.chars().all(|c| c.is_ascii_digit()) {
        return bad("must not be all digits");
    }
    Ok(())
}

/// Turns `OU=B204,OU=Salles,DC=lycee,DC=fr` into Samba's `createcomputer` path `Salles/B204`.
pub fn ou_path(ou: &str) -> Result<String, JoinError> {
    let bad = |why| {
        Err(JoinError::BadOu {
            ou: ou.to_string(),
            why,
        })
    };
    let mut ous = Vec::new();
    let mut in_dc = false;
    for part in ou.split(',') {
        let Some((kind, value)) = part.trim().split_once('=') else {
            return bad("every component must be KIND=value");
        };
        match kind.trim().to_ascii_uppercase().as_str() {
            "OU" if !in_dc => {
                if value.contains('/') {
                    return bad("an OU name containing '/' cannot be passed to net ads join");
                }
                ous.push(value.trim().to_string());
            }
            "DC" => in_dc = true,
            _ => return bad("expected OU=... components followed by DC=... components"),
        }
    }
    if ous.is_empty() || !in_dc {
        return bad("needs at least one OU= and one DC= component");
    }
    ous.reverse();
    Ok(ous.join("/"))
}

/// Renders the join script for one machine. The result holds no secret.
pub fn render_script(
    template: &str,
    domain: &Domain,
    paths: &Paths,
    hostname: &str,
) -> Result<String, JoinError> {
    check_hostname(hostname)?;
    let ctx = minijinja::context! {
        machine => minijinja::context! { hostname },
        domain => minijinja::context! {
            realm => &domain.realm,
            workgroup => &domain.workgroup,
            ou => &domain.ou,
            ou_path => ou_path(&domain.ou)?,
            server => &domain.server,
        },
        join => minijinja::context! { user => &domain.user },
        paths => minijinja::context! { smb_conf => &paths.smb_conf, state_dir => &paths.state_dir },
    };
    Ok(render(
        "templates/join/linux-net-ads.sh.j2",
        template,
        &ctx,
    )?)
}

/// Renames and joins one Linux PC. Idempotent: a PC that already carries its name and passes
/// `net ads testjoin` is left alone. Returns the outcome and a log with the password redacted.
pub fn join_linux(
    remote: &mut dyn RemoteExec,
    template: &str,
    domain: &Domain,
    paths: &Paths,
    hostname: &str,
) -> Result<(JoinOutcome, String), JoinError> {
    let script = render_script(template, domain, paths, hostname)?;
    let probe = format!(
        "test \"$(hostname)\" = {} && test -f {} && net ads testjoin -s {} -P >/dev/null 2>&1",
        shell_quote(hostname),
        shell_quote(&paths.smb_conf),
        shell_quote(&paths.smb_conf)
    );
    if remote.run(&probe)?.code == 0 {
        return Ok((
            JoinOutcome::AlreadyJoined,
            format!("{hostname}: already joined\n"),
        ));
    }
    // The script travels on stdin to a private file; the password travels on the stdin of the run.
    let script_path = format!("/tmp/roomcast-join-{hostname}.sh");
    let put = format!("umask 077 && cat > {}", shell_quote(&script_path));
    let out = remote.exec(&put, script.as_bytes())?;
    if out.code != 0 {
        return Err(JoinError::Failed {
            hostname: hostname.to_string(),
            code: out.code,
            detail: format!("cannot write {script_path}: {}", out.stderr_text().trim()),
        });
    }
    let run = format!(
        "sh {0}; rc=$?; rm -f {0}; exit $rc",
        shell_quote(&script_path)
    );
    let stdin = format!("{}\n", domain.password.expose());
    let out = remote.exec(&run, stdin.as_bytes())?;
    let log = domain.password.redact(&format!(
        "$ {run}\nexit {}\nstdout:\n{}stderr:\n{}",
        out.code,
        out.stdout_text(),
        out.stderr_text()
    ));
    tracing::info!(machine = %hostname, exit = out.code, "step h join");
    if out.code != 0 {
        let detail = log
            .lines()
            .rev()
            .filter(|l| !l.trim().is_empty())
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ");
        return Err(JoinError::Failed {
            hostname: hostname.to_string(),
            code: out.code,
            detail,
        });
    }
    Ok((JoinOutcome::Joined, log))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::fake::FakeRemote;

    fn domain() -> Domain {
        Domain {
            realm: "EIFFEL.TEST".into(),
            workgroup: "EIFFEL".into(),
            ou: "OU=B204,OU=Salles,DC=eiffel,DC=test".into(),
            server: Some("198.18.0.1".into()),
            user: "Administrator".into(),
            password: NamedSecret::new("AD_JOIN_EIFFEL", "S3cret!pass"),
        }
    }

    #[test]
    fn ou_dn_becomes_a_createcomputer_path() {
        assert_eq!(
            ou_path("OU=B204,OU=Salles,OU=Pedagogie,DC=x,DC=fr").unwrap(),
            "Pedagogie/Salles/B204"
        );
        assert!(ou_path("CN=Computers,DC=x").is_err());
        assert!(ou_path("OU=B204").is_err());
        assert!(ou_path("DC=x,OU=B204").is_err());
    }

    #[test]
    fn netbios_rules() {
        assert!(check_hostname("B204-PC01").is_ok());
        for bad in ["B204-PC01-TOO-LONG", "-PC", "1234", "PC_01", ""] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn script_has_no_password_and_password_goes_on_stdin_only() {
        let script =
            render_script(LINUX_NET_ADS, &domain(), &Paths::default(), "B204-PC02").unwrap();
        assert!(!script.contains("S3cret!pass"));
        assert!(script.contains("createcomputer='Salles/B204'"));
        assert!(script.contains("-S 198.18.0.1"));
        let mut remote = FakeRemote::new("pc").on("testjoin -s '/etc", vec![(1, "")]);
        let (outcome, log) = join_linux(
            &mut remote,
            LINUX_NET_ADS,
            &domain(),
            &Paths::default(),
            "B204-PC02",
        )
        .unwrap();
        assert_eq!(outcome, JoinOutcome::Joined);
        assert!(!log.contains("S3cret!pass"));
        for call in &remote.calls {
            assert!(!call.command.contains("S3cret!pass"), "{}", call.command);
        }
        let with_password: Vec<_> = remote
            .calls
            .iter()
            .filter(|c| String::from_utf8_lossy(&c.stdin).contains("S3cret!pass"))
            .collect();
        assert_eq!(with_password.len(), 1);
        assert!(
            with_password[0]
                .command
                .starts_with("sh '/tmp/roomcast-join-B204-PC02.sh'")
        );
    }

    #[test]
    fn an_already_joined_pc_is_left_alone_and_failures_are_redacted() {
        let mut remote = FakeRemote::new("pc").on("testjoin", vec![(0, "")]);
        let (outcome, _) = join_linux(
            &mut remote,
            LINUX_NET_ADS,
            &domain(),
            &Paths::default(),
            "B204-PC02",
        )
        .unwrap();
        assert_eq!(outcome, JoinOutcome::AlreadyJoined);
        assert_eq!(remote.calls.len(), 1);
        let mut remote = FakeRemote::new("pc").on("testjoin", vec![(1, "")]).on(
            "sh '/tmp",
            vec![(255, "Failed to join domain: password S3cret!pass rejected")],
        );
        let err = join_linux(
            &mut remote,
            LINUX_NET_ADS,
            &domain(),
            &Paths::default(),
            "B204-PC02",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("B204-PC02: join failed (exit 255)"), "{err}");
        assert!(
            !err.contains("S3cret!pass") && err.contains("secret:AD_JOIN_EIFFEL"),
            "{err}"
        );
    }
}
