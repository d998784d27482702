//! `roomcast doctor --server-only` in a lab namespace, real binary: an interface without an
//! address, a busy proxyDHCP port (4011) and a store that trusts no key are each reported with
//! their fix (exit 1); the same server set right passes (exit 0). The clock check is skipped in
//! both: this machine's kernel clock is not NTP-synchronised, which the check would rightly report.

use roomcast_lab::{Lab, Node};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

const BIN: &str = env!("CARGO_BIN_EXE_roomcast");

fn doctor(server: &Node, store: &Path, ssh_key: &Path) -> Output {
    let a = server.addr().addr().octets();
    server
        .command(BIN)
        .args(["doctor", "--server-only", "--skip", "clock"])
        .args(["--interface", server.ifname()])
        .args(["--subnet", &format!("{}.{}.0.0/16", a[0], a[1])])
        .args(["--machine", "02:00:00:00:00:01=PC01"])
        .arg("--store")
        .arg(store)
        .arg("--ssh-key")
        .arg(ssh_key)
        .args(["--min-free-gib", "0"])
        .env_remove("ROOMCAST_CONFIG")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn doctor_reports_each_problem_with_its_fix_and_passes_a_good_server() {
    let lab = Lab::builder().pcs(1).build().unwrap();
    let server = lab.server();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    roomcast_store::Store::open_or_create(&store).unwrap();
    let key = dir.path().join("id_ed25519");
    std::fs::write(&key, "not read by doctor\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Three problems at once: no address, UDP 4011 held, nobody trusted.
    let cidr = format!("{}/16", server.addr().addr());
    let ip = |args: &[&str]| {
        let st = server.command("ip").args(args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    ip(&["addr", "del", &cidr, "dev", server.ifname()]);
    let holder = server
        .run(|| UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4011)).unwrap())
        .unwrap();
    let out = doctor(server, &store, &key);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let fail = |words: &str, fix: &str| {
        let line = t
            .lines()
            .find(|l| l.contains("FAIL") && l.contains(words))
            .unwrap_or_else(|| panic!("no FAIL line with {words:?}:\n{t}"));
        assert!(line.contains(&format!("Fix: {fix}")), "{line}");
    };
    fail(
        &format!("{} has no address in the room's subnet", server.ifname()),
        "give it one (`ip addr add <address>/16",
    );
    fail(
        "another program holds UDP 4011 (proxyDHCP)",
        "`ss -ulpn 'sport = :4011'` names it",
    );
    fail(
        "trusts no signing key",
        &format!("`roomcast key trust --store {}", store.display()),
    );
    // What is fine is said to be fine.
    assert!(t.contains("ok   UDP 69 (TFTP) is free"), "{t}");
    assert!(t.contains("is writable"), "{t}");

    // Set right: address back, port released, a key trusted.
    ip(&["addr", "add", &cidr, "dev", server.ifname()]);
    drop(holder);
    let (_, public, _) = roomcast_store::keys::generate_files(&dir.path().join("keys")).unwrap();
    roomcast_store::Store::open(&store)
        .unwrap()
        .trust(&public)
        .unwrap();
    let out = doctor(server, &store, &key);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(!t.contains("FAIL"), "{t}");
    assert!(t.contains("store trusts 1 signing key(s)"), "{t}");
    assert!(t.contains("ok   skipped (--skip)"), "{t}");
}
