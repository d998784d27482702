//! Technicians' login against the region's directory: a real Samba AD DC in the lab, the real
//! `roomcast console serve` in the lab server's namespace (it reaches the DC there), the login form
//! over HTTPS from that namespace. LDAPS and StartTLS with the region's CA (which signed the
//! certificate the DC serves); a CA that did not sign
//! the DC's certificate refuses every login; a wrong password, a user outside the group, an empty
//! password and a name made to inject a filter are refused; no password in the console's log.

use super::{TECH, hash, wait_until};
use roomcast_lab::samba::{DomainConfig, SambaDc};
use roomcast_lab::{Lab, Node};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ADMIN_PW: &str = "Lab-Admin-pw-2026";
const ALICE_PW: &str = "Alice-pw-2026!x";
const BOB_PW: &str = "Bob-pw-2026!yz";
const GROUP: &str = "CN=roomcast-techs,CN=Users,DC=region,DC=test";

/// `roomcast console serve` in `node`'s namespace; killed on drop.
struct LabConsole {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
}

impl Drop for LabConsole {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn console_in(node: &Node, dir: &Path, name: &str, ldap: &str) -> LabConsole {
    let addr = node.addr();
    let port = node
        .run(|| {
            std::net::TcpListener::bind((addr.to_string().as_str(), 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .unwrap();
    let url = format!("https://{addr}:{port}");
    let db = dir.join(format!("{name}.db"));
    roomcast::campaign::journal::Journal::open(&db).unwrap();
    let yaml = format!(
        "listen: {addr}:{port}\ndb: {}\npublic_url: {url}\ntechnicians:\n  - name: \"{TECH}\"\n    \
         password_hash: \"{}\"\nldap:\n{ldap}",
        db.display(),
        hash(super::PASSWORD)
    );
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, yaml).unwrap();
    let mut child = node
        .command(env!("CARGO_BIN_EXE_roomcast"))
        .args(["console", "serve", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = super::listening_log(&mut child);
    LabConsole { child, url, log }
}

/// A login through the form, from inside `node`'s namespace: the answer's status.
fn login(node: &Node, url: &str, name: &str, password: &str) -> u16 {
    let (url, name, password) = (url.to_string(), name.to_string(), password.to_string());
    node.run(move || super::post_login(&super::anonymous(), &url, &name, &password))
        .unwrap()
}

fn ldap_section(url: &str, starttls: bool, ca: &Path) -> String {
    format!(
        "  url: {url}\n  starttls: {starttls}\n  ca_file: {}\n  tls_name: dc1.region.test\n  \
         upn_suffix: region.test\n  base_dn: \"DC=region,DC=test\"\n  group: \"{GROUP}\"\n  \
         timeout_secs: 5\n",
        ca.display()
    )
}

#[test]
fn technicians_of_the_directory_group_log_in_over_ldaps_or_starttls_and_no_one_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::builder().pcs(1).build().unwrap();
    let node = lab.add_node("dc").unwrap().clone();
    let domain = DomainConfig {
        realm: "REGION.TEST".into(),
        workgroup: "REGION".into(),
        admin_password: ADMIN_PW.into(),
        dc_hostname: "dc1".into(),
        ous: vec![],
    };
    // Started twice: once to make the accounts, again to serve the region's certificate.
    let start_dc = || {
        SambaDc::start(
            &node,
            &domain,
            &dir.path().join("dc"),
            Duration::from_secs(180),
        )
        .unwrap()
    };
    let dc = start_dc();
    // The region's accounts: alice in the technicians' group, bob not. (The lab's own test
    // domain: samba-tool takes these passwords on its command line, a console never does.)
    let (sam, conf) = (dc.sam_ldb(), dc.smb_conf());
    let tool = |dc: &SambaDc, args: &[&str]| {
        let out = dc
            .command("samba-tool")
            .args(args)
            .arg("-H")
            .arg(&sam)
            .arg("-s")
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "samba-tool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    tool(&dc, &["group", "add", "roomcast-techs"]);
    tool(&dc, &["user", "create", "alice", ALICE_PW]);
    tool(&dc, &["user", "create", "bob", BOB_PW]);
    tool(&dc, &["group", "addmembers", "roomcast-techs", "alice"]);
    // The region's CA signs the DC's certificate (for dc1.region.test), which the DC serves from
    // its private/tls/ after a restart, as a region installs its own.
    drop(dc);
    let (ca, dc_cert, dc_key) = region_ca();
    let tls = sam.parent().unwrap().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::write(tls.join("ca.pem"), &ca).unwrap();
    std::fs::write(tls.join("cert.pem"), dc_cert).unwrap();
    std::fs::write(tls.join("key.pem"), dc_key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tls.join("key.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let ca = {
        let f = dir.path().join("region-ca.pem");
        std::fs::write(&f, ca).unwrap();
        f
    };
    let dc = start_dc();
    let server = lab.server().clone();
    let dc_ip = dc.addr();

    // LDAPS (636): the group's member gets in; everyone else is refused, nothing logged of a
    // password.
    let ldaps = console_in(
        &server,
        dir.path(),
        "ldaps",
        &ldap_section(&format!("ldaps://{dc_ip}"), false, &ca),
    );
    let login_ok = login(&server, &ldaps.url, "alice", ALICE_PW);
    assert_eq!(login_ok, 303, "{}", ldaps.log.lock().unwrap());
    assert_eq!(login(&server, &ldaps.url, "alice", "Alice-wrong-1"), 401);
    assert_eq!(
        login(&server, &ldaps.url, "bob", BOB_PW),
        401,
        "not in the group"
    );
    assert_eq!(
        login(&server, &ldaps.url, "alice", ""),
        401,
        "no anonymous bind"
    );
    assert_eq!(
        login(&server, &ldaps.url, "alice)(userPrincipalName=*", ALICE_PW),
        401,
        "a filter in the name"
    );
    wait_until("the attempts in the log", Duration::from_secs(30), || {
        ldaps
            .log
            .lock()
            .unwrap()
            .matches("console login failed")
            .count()
            >= 4
    });
    let log = ldaps.log.lock().unwrap().clone();
    assert!(log.contains("directory login (group member)"), "{log}");
    for pw in [ALICE_PW, BOB_PW, "Alice-wrong-1"] {
        assert!(!log.contains(pw), "a password in the log: {log}");
    }
    drop(ldaps);

    // StartTLS on 389: the same.
    let starttls = console_in(
        &server,
        dir.path(),
        "starttls",
        &ldap_section(&format!("ldap://{dc_ip}"), true, &ca),
    );
    assert_eq!(
        login(&server, &starttls.url, "alice", ALICE_PW),
        303,
        "{}",
        starttls.log.lock().unwrap()
    );
    assert_eq!(login(&server, &starttls.url, "bob", BOB_PW), 401);
    drop(starttls);

    // A CA that did not sign the DC's certificate: the TLS handshake fails, no bind is sent, and
    // the right password is refused.
    let other = rcgen::generate_simple_self_signed(vec!["dc1.region.test".to_string()]).unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, other.cert.pem()).unwrap();
    let untrusted = console_in(
        &server,
        dir.path(),
        "untrusted",
        &ldap_section(&format!("ldaps://{dc_ip}"), false, &other_ca),
    );
    assert_eq!(login(&server, &untrusted.url, "alice", ALICE_PW), 401);
    wait_until("the refusal in the log", Duration::from_secs(30), || {
        untrusted
            .log
            .lock()
            .unwrap()
            .contains("directory not reachable")
    });
    let log = untrusted.log.lock().unwrap().clone();
    assert!(!log.contains(ALICE_PW), "{log}");
    drop(untrusted);
    drop(dc);
}

/// A region CA and the DC's certificate and key signed by it (PEM): CA, certificate, key.
fn region_ca() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Region test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut dc_params = CertificateParams::new(vec!["dc1.region.test".to_string()]).unwrap();
    dc_params
        .distinguished_name
        .push(DnType::CommonName, "dc1.region.test");
    let dc_key = KeyPair::generate().unwrap();
    let dc_cert = dc_params.signed_by(&dc_key, &issuer).unwrap();
    (ca_cert.pem(), dc_cert.pem(), dc_key.serialize_pem())
}
