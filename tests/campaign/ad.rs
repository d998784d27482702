//! Step h against a real Samba AD DC: the DC and two Linux "PCs" live in namespaces (each PC its own
//! UTS and mount namespace, with a real sshd); roomcast joins them over SSH into the profile's OU, and
//! the test checks the DC's directory, the process list during the joins, the logs and the files.

use roomcast::campaign::steps::join::{Domain, JoinOutcome, LINUX_NET_ADS, Paths, join_linux};
use roomcast::campaign::unattend::{
    WINDOWS_UNATTEND, WindowsSettings, offline_provision, render_unattend,
};
use roomcast::remote::RemoteExec;
use roomcast::remote::ssh::{SshClient, SshConfig};
use roomcast::secrets::NamedSecret as Secret;
use roomcast_lab::samba::DomainConfig;
use roomcast_lab::{RoomConfig, VirtualRoom};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const ADMIN_PASSWORD: &str = "Rc-J0in!Pw-7341";
const OU: &str = "OU=B204,OU=Salles,DC=eiffel,DC=test";

#[test]
fn linux_pcs_join_a_real_samba_ad_in_the_profiles_ou_without_leaking_the_password() {
    let dir = tempfile::tempdir().unwrap();
    // A virtual room: a DC (198.18.0.10) and two not-yet-named PCs with sshd in their own UTS and
    // mount namespaces, resolving through the DC.
    let room = VirtualRoom::build(
        &RoomConfig {
            pcs: 2,
            disk_bytes: 1 << 20,
            domain: Some(DomainConfig {
                realm: "EIFFEL.TEST".into(),
                workgroup: "EIFFEL".into(),
                admin_password: ADMIN_PASSWORD.into(),
                dc_hostname: "dc1".into(),
                ous: vec![OU.into()],
            }),
            rate: None,
        },
        dir.path(),
    )
    .unwrap();
    let dc_ip = room.dc().unwrap().addr().to_string();
    let pcs: Vec<(&str, String)> = ["B204-PC01", "B204-PC02"]
        .into_iter()
        .zip(room.pcs().iter().map(|pc| pc.node().addr().to_string()))
        .collect();

    // Watch the whole process list while the joins run.
    let stop = Arc::new(AtomicBool::new(false));
    let saw_join = Arc::new(AtomicUsize::new(0));
    let leaks = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let watcher = {
        let (stop, saw_join, leaks) = (stop.clone(), saw_join.clone(), leaks.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let out = Command::new("ps")
                    .args(["-eww", "-o", "pid,args"])
                    .output()
                    .unwrap();
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    if line.contains("net ads join") {
                        saw_join.fetch_add(1, Ordering::SeqCst);
                    }
                    if line.contains(ADMIN_PASSWORD) {
                        leaks.lock().unwrap().push(line.to_string());
                    }
                }
                // Nor in any process's environment.
                if let Ok(entries) = std::fs::read_dir("/proc") {
                    for e in entries.flatten() {
                        if let Ok(env) = std::fs::read(e.path().join("environ"))
                            && String::from_utf8_lossy(&env).contains(ADMIN_PASSWORD)
                        {
                            leaks
                                .lock()
                                .unwrap()
                                .push(format!("environ of {:?}", e.file_name()));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let state_root = dir.path().join("pcstate");
    let mut cfg = SshConfig::new("root", room.keys().client(), room.keys().known_hosts());
    cfg.command_timeout = Duration::from_secs(180);
    let pcs_in = pcs.clone();
    let dc_in = dc_ip.clone();
    let results = room
        .server()
        .run(move || {
        let domain = Domain {
            realm: "EIFFEL.TEST".into(),
            workgroup: "EIFFEL".into(),
            ou: OU.into(),
            server: Some(dc_in.clone()),
            user: "Administrator".into(),
            password: Secret::new("AD_JOIN_EIFFEL", ADMIN_PASSWORD),
        };
        // A Windows PC of the same room: its computer account is provisioned from the deploy server
        // (this namespace) and its blob goes into a per-machine unattend.xml.
        let srv_state = state_root.join("srv");
        for d in ["private", "lock", "state", "cache", "run", "ncalrpc"] {
            std::fs::create_dir_all(srv_state.join(d)).unwrap();
        }
        let srv_conf = state_root.join("srv.conf");
        std::fs::write(
            &srv_conf,
            format!(
                "[global]\n workgroup = EIFFEL\n realm = EIFFEL.TEST\n security = ads\n netbios name = ROOMCAST\n \
                 private dir = {s}/private\n lock directory = {s}/lock\n state directory = {s}/state\n \
                 cache directory = {s}/cache\n pid directory = {s}/run\n ncalrpc dir = {s}/ncalrpc\n",
                s = srv_state.display()
            ),
        )
        .unwrap();
        // The deploy server resolves the domain through the DC, like a school server would.
        let resolv = state_root.join("srv-resolv.conf");
        std::fs::write(&resolv, format!("nameserver {dc_in}\n")).unwrap();
        let wrapper = format!(
            "mount --bind {} /etc/resolv.conf && exec net \"$@\"",
            resolv.display()
        );
        let net: Vec<String> = ["unshare", "--mount", "sh", "-c", &wrapper, "net"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let blob = offline_provision(&net, &domain, &srv_conf, "B204-PC03")
            .unwrap_or_else(|e| panic!("{e}"));
        let unattend = render_unattend(
            WINDOWS_UNATTEND,
            "B204-PC03",
            &blob,
            &WindowsSettings::default(),
        )
        .unwrap();
        assert!(unattend.contains("<ComputerName>B204-PC03</ComputerName>"));
        let mut results = Vec::new();
        for (hostname, addr) in pcs_in {
            let paths = Paths {
                smb_conf: state_root
                    .join(format!("{hostname}.conf"))
                    .to_string_lossy()
                    .into(),
                state_dir: state_root.join(hostname).to_string_lossy().into(),
            };
            let mut c = SshClient::connect(&addr, 22, &cfg).unwrap();
            // The state machine retries a failed PC; a freshly started DC may refuse the first bind.
            let mut attempt = join_linux(&mut c, LINUX_NET_ADS, &domain, &paths, hostname);
            for _ in 0..2 {
                if attempt.is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(2));
                attempt = join_linux(&mut c, LINUX_NET_ADS, &domain, &paths, hostname);
            }
            let first = attempt.unwrap_or_else(|e| panic!("{e}"));
            // Idempotent: the second run finds the PC named and joined.
            let again = join_linux(&mut c, LINUX_NET_ADS, &domain, &paths, hostname).unwrap();
            let name = c.run("hostname").unwrap().stdout_text();
            results.push((hostname, first, again.0, name));
        }
        results
    })
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();

    for (hostname, (outcome, log), again, name) in &results {
        assert_eq!(*outcome, JoinOutcome::Joined, "{hostname}");
        assert_eq!(*again, JoinOutcome::AlreadyJoined, "{hostname}");
        assert_eq!(name.trim(), *hostname);
        assert!(
            !log.contains(ADMIN_PASSWORD),
            "password in the log of {hostname}"
        );
        assert!(log.contains("Joined '"), "{log}");
    }
    assert!(
        saw_join.load(Ordering::SeqCst) > 0,
        "the watcher never saw a join running"
    );
    assert_eq!(
        *leaks.lock().unwrap(),
        Vec::<String>::new(),
        "password in the process list or an environment"
    );

    // The DC has both computers, in the profile's OU.
    let listed = room.dc().unwrap().computers().unwrap().join("\n");
    for hostname in ["B204-PC01", "B204-PC02", "B204-PC03"] {
        assert!(
            listed.contains(&format!("CN={hostname},{OU}")),
            "{hostname} not in {OU}:\n{listed}"
        );
    }
    // No file left on the "PCs" (their state, their /tmp) holds the password.
    let grep = Command::new("grep")
        .args(["-rl", ADMIN_PASSWORD])
        .arg(dir.path().join("pcstate"))
        .arg(room.pcs()[0].dir())
        .arg(room.pcs()[1].dir())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&grep.stdout),
        "",
        "files holding the password"
    );
    for (hostname, _) in &pcs {
        assert!(!Path::new(&format!("/tmp/roomcast-join-{hostname}.sh")).exists());
    }
}
