//! A real Samba Active Directory domain controller on a lab machine, for step h (the joins) of the
//! campaign tests and of `roomcast demo`.
//!
//! The domain is provisioned by `samba-tool domain provision --targetdir` in a folder the caller
//! owns, with an empty `-s` config, so nothing in `/etc/samba` or `/var/lib/samba` is read or
//! written; the DC runs in its own UTS and mount namespace (hostname, resolv.conf pointing at
//! itself, private `/run/samba`, see [`Identity`]). Dropping the handle stops the DC.

use super::daemon::Daemon;
use super::sshd::Identity;
use super::{LabError, LabIpv4, Node, cmd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The domain to provision.
#[derive(Debug, Clone)]
pub struct DomainConfig {
    /// Kerberos realm / AD DNS domain in upper case, e.g. `DEMO.ROOMCAST.TEST`.
    pub realm: String,
    /// NetBIOS domain name, e.g. `DEMO`.
    pub workgroup: String,
    /// The Administrator's password (the join account of the tests and the demo).
    pub admin_password: String,
    /// The DC's hostname.
    pub dc_hostname: String,
    /// OUs to create, as full DNs; each OU's parents are created first.
    pub ous: Vec<String>,
}

impl DomainConfig {
    /// The domain's base DN: `DC=demo,DC=roomcast,DC=test` for `DEMO.ROOMCAST.TEST`.
    pub fn base_dn(&self) -> String {
        self.realm
            .to_lowercase()
            .split('.')
            .map(|p| format!("DC={p}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The OUs to create for `ou` (a full DN under `base`), outermost first.
fn ou_chain(ou: &str, base: &str) -> Vec<String> {
    let Some(rel) = ou
        .strip_suffix(base)
        .map(|r| r.trim_end_matches(','))
        .filter(|r| !r.is_empty())
    else {
        return Vec::new();
    };
    let parts: Vec<&str> = rel.split(',').collect();
    (0..parts.len())
        .rev()
        .map(|i| format!("{},{base}", parts[i..].join(",")))
        .collect()
}

/// A running DC; stopped on drop.
#[derive(Debug)]
pub struct SambaDc {
    daemon: Daemon,
    dir: PathBuf,
    addr: LabIpv4,
    base_dn: String,
}

impl SambaDc {
    /// Provisions `config` into `dir` and starts the DC on `node`, waiting (up to `timeout`)
    /// until its LDAP server answers. Provisioning takes about 5 s, the start 1-2 s.
    pub fn start(
        node: &Node,
        config: &DomainConfig,
        dir: &Path,
        timeout: Duration,
    ) -> Result<SambaDc, LabError> {
        std::fs::create_dir_all(dir).map_err(|source| LabError::Io {
            step: format!("creating {}", dir.display()),
            source,
        })?;
        let addr = node.addr();
        let base = config.base_dn();
        let identity = Identity {
            hostname: config.dc_hostname.clone(),
            nameserver: Some(addr),
            dir: dir.join("host"),
        };
        let target = dir.join("dc");
        let conf = target.join("etc/smb.conf");
        let sam = target.join("private/sam.ldb");
        let mut ous: Vec<String> = Vec::new();
        for ou in &config.ous {
            for o in ou_chain(ou, &base) {
                if !ous.contains(&o) {
                    ous.push(o);
                }
            }
        }
        let mut script = String::new();
        let provisioned = conf.exists();
        if !provisioned {
            // The password is in this one command line for the ~5 s of provisioning (samba-tool
            // has no other way); it is the lab's own test domain, never a school's.
            script.push_str(&format!(
                "samba-tool domain provision --realm={realm} --domain={wg} --server-role=dc \
                 --dns-backend=SAMBA_INTERNAL --adminpass='{pw}' --targetdir={t} \
                 --host-ip={addr} --host-name={host} -s /dev/null \
                 --option='dns forwarder = {addr}' > {d}/provision.log 2>&1; ",
                realm = config.realm,
                wg = config.workgroup,
                pw = config.admin_password.replace('\'', ""),
                t = target.display(),
                host = config.dc_hostname,
                d = dir.display(),
            ));
            for ou in &ous {
                script.push_str(&format!(
                    "samba-tool ou create '{ou}' -H {} -s {} >> {}/provision.log 2>&1; ",
                    sam.display(),
                    conf.display(),
                    dir.display()
                ));
            }
        }
        script.push_str(&format!("exec samba -F -s {}", conf.display()));
        let command = identity.command(node, &script)?;
        let mut daemon = Daemon::spawn(
            &format!("samba AD DC on {}", node.role()),
            command,
            &dir.join("samba.log"),
        )?;
        let url = format!("ldap://{addr}");
        let ready = daemon.wait_ready(timeout, || {
            node.command("ldbsearch")
                .args(["-H", &url, "-s", "base", "-b", "", "defaultNamingContext"])
                .output()
                .is_ok_and(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .to_lowercase()
                        .contains(&base.to_lowercase())
                })
        });
        if let Err(e) = ready {
            let provision = std::fs::read_to_string(dir.join("provision.log")).unwrap_or_default();
            return Err(LabError::Io {
                step: format!("{e}\nprovision log:\n{provision}"),
                source: std::io::Error::other("the domain controller never answered"),
            });
        }
        Ok(SambaDc {
            daemon,
            dir: dir.to_path_buf(),
            addr,
            base_dn: base,
        })
    }

    /// The DC's address (also the room's DNS server).
    pub fn addr(&self) -> LabIpv4 {
        self.addr
    }

    /// The domain's base DN.
    pub fn base_dn(&self) -> &str {
        &self.base_dn
    }

    /// The directory database (`private/sam.ldb`), readable with `ldbsearch -H` or `samba-tool -H`.
    pub fn sam_ldb(&self) -> PathBuf {
        self.dir.join("dc/private/sam.ldb")
    }

    /// The DC's smb.conf.
    pub fn smb_conf(&self) -> PathBuf {
        self.dir.join("dc/etc/smb.conf")
    }

    /// Every computer account, as full DNs (`samba-tool computer list --full-dn` on the database).
    pub fn computers(&self) -> Result<Vec<String>, LabError> {
        let sam = self.sam_ldb();
        let conf = self.smb_conf();
        let out = cmd::run(
            "listing the DC's computers",
            "samba-tool",
            &[
                "computer",
                "list",
                "--full-dn",
                "-H",
                &sam.to_string_lossy(),
                "-s",
                &conf.to_string_lossy(),
            ],
        )?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    /// The DC's log (provision and daemon output are next to it).
    pub fn log(&self) -> &Path {
        self.daemon.log()
    }

    /// A command for the DC's own tools in its namespaces (e.g. `samba-tool` over LDAP).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args([
            "--target",
            &self.daemon.pid().to_string(),
            "--mount",
            "--uts",
            "--net",
            program,
        ]);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ou_chain_creates_parents_first() {
        let base = "DC=demo,DC=roomcast,DC=test";
        assert_eq!(
            ou_chain(&format!("OU=B204,OU=Salles,{base}"), base),
            vec![
                format!("OU=Salles,{base}"),
                format!("OU=B204,OU=Salles,{base}")
            ]
        );
        assert!(ou_chain("OU=X,DC=other,DC=test", base).is_empty());
    }

    #[test]
    fn base_dn_follows_the_realm() {
        let c = DomainConfig {
            realm: "DEMO.ROOMCAST.TEST".into(),
            workgroup: "DEMO".into(),
            admin_password: String::new(),
            dc_hostname: "dc1".into(),
            ous: vec![],
        };
        assert_eq!(c.base_dn(), "DC=demo,DC=roomcast,DC=test");
    }
}
