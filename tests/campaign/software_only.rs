//! A whole `--software-only` campaign (a then g) driven through the journal against real OpenSSH
//! "PCs": one PC that never answers fails alone after its retries; a bad installer hash refuses the
//! campaign before any PC is contacted.

use roomcast::campaign::driver::{Stop, drive};
use roomcast::campaign::journal::Journal;
use roomcast::campaign::steps::install::{Detect, Shell, Software};
use roomcast::campaign::steps::{Installer, RoomSpec, StepRunner};
use roomcast::remote::ssh::SshConfig;
use roomcast_lab::sshd::{Identity, SshKeys, Sshd};
use roomcast_lab::{Lab, addr};
use roomcast_proto::procedure::licences::{CatalogLicence, Grant};
use roomcast_proto::procedure::{DeployMode, Phase, Plan, Refusal, Status, Step, Timestamp};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

fn spec(dir: &Path, keys: &SshKeys, root: &Path, sha_override: Option<&str>) -> RoomSpec {
    let installer = dir.join("geo-setup.sh");
    std::fs::write(
        &installer,
        format!(
            "#!/bin/sh\nmkdir -p {r}/$1 && touch {r}/$1/geogebra && echo installed on $1\n",
            r = root.display()
        ),
    )
    .unwrap();
    let bytes = std::fs::read(&installer).unwrap();
    let mut ssh = SshConfig::new("root", keys.client(), keys.known_hosts());
    // Generous: the live PCs must answer even on a loaded CI machine (the AD test runs alongside).
    ssh.connect_timeout = Duration::from_secs(5);
    let machines = ["PC01", "PC02", "PC03"];
    RoomSpec {
        plan: Plan {
            room: "B204".into(),
            machines: machines.iter().map(|m| m.to_string()).collect(),
            master: "PC01".into(),
            mode: DeployMode::SoftwareOnly,
            retries: 1,
            signoff_required: true,
            signoff_allowed: vec!["M. Dupont".into()],
        },
        addresses: machines
            .iter()
            .enumerate()
            .map(|(i, m)| (m.to_string(), addr::pc_addr(i).unwrap().to_string()))
            .collect::<BTreeMap<_, _>>(),
        port: 22,
        ssh,
        installers: vec![Installer {
            path: installer.clone(),
            file: "geo-setup.sh".into(),
            size: bytes.len() as u64,
            sha256: sha_override
                .map(String::from)
                .unwrap_or_else(|| hex::encode(Sha256::digest(&bytes))),
        }],
        licensed: vec![("geogebra".into(), CatalogLicence::PerSeat)],
        grants: vec![Grant {
            software: "geogebra".into(),
            kind: CatalogLicence::PerSeat,
            seats: Some(3),
            expires: None,
        }],
        today: "2026-11-28".into(),
        software: vec![Software {
            id: "geogebra".into(),
            version: "6.0".into(),
            installer,
            installer_file: "geo-setup.sh".into(),
            install: "sh {{ installer.path }} {{ machine.hostname }}".into(),
            detect: Detect::Command(format!("test -e {}/$(hostname)/geogebra", root.display())),
            licence_key: None,
        }],
        checks: vec![],
        shell: Shell::Posix,
        staging_dir: root.join("staging").to_string_lossy().into(),
        join: None,
        logs: dir.join("logs"),
    }
}

#[test]
fn software_only_campaign_pushes_to_running_pcs_and_one_dead_pc_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let keys = SshKeys::generate(dir.path()).unwrap();
    // PC03 (pc2's address) is switched off: the lab has only two PCs, nobody answers there.
    let lab = Lab::builder().pcs(2).build().unwrap();
    let srv = lab.server();
    let mut servers = Vec::new();
    for (i, pc) in lab.pcs().iter().enumerate() {
        // Each PC has its own hostname (UTS namespace), which the detection rule uses.
        let identity = Identity {
            hostname: format!("PC0{}", i + 1),
            nameserver: None,
            dir: dir.path().join(pc.role()),
        };
        let host_key = keys.host_key("pc").unwrap();
        servers.push(Sshd::start(pc, &keys, &host_key, Some(&identity), dir.path()).unwrap());
    }
    let pc03 = addr::pc_addr(2).unwrap();
    let spec = spec(dir.path(), &keys, root.path(), None);
    let db = dir.path().join("roomcast.db");
    let (state, stop, events) = srv
        .run(move || {
            let mut journal = Journal::open(&db).unwrap();
            let mut t = 0;
            let mut clock = move || {
                t += 1;
                Timestamp(t)
            };
            let (id, actions) = journal.start(&spec.plan, clock()).unwrap();
            let state = journal.state(id).unwrap();
            let mut worker = StepRunner::new(&spec, None);
            let (state, stop) = drive(
                &mut journal,
                id,
                1,
                state,
                actions,
                &mut worker,
                3,
                &mut clock,
            )
            .unwrap();
            (state, stop, journal.events(id).unwrap())
        })
        .unwrap();
    assert_eq!(stop, Stop::Ended(Phase::Finished));
    for pc in ["PC01", "PC02"] {
        let status = state.machine_status(pc, Step::Deploy);
        assert!(
            // A live PC may need its retry on a loaded machine; it must end up done.
            matches!(status, Status::Succeeded { .. }),
            "{pc}: {status:?}; events: {events:#?}"
        );
        assert!(
            root.path().join(pc).join("geogebra").exists(),
            "{pc} got the software"
        );
        let log = std::fs::read_to_string(dir.path().join("logs/g").join(pc).join("geogebra.log"))
            .unwrap();
        assert!(log.contains(&format!("installed on {pc}")), "{log}");
    }
    match state.machine_status("PC03", Step::Deploy) {
        Status::Failed {
            attempts, reason, ..
        } => {
            assert_eq!(attempts, 2, "first try + one retry");
            // Either the connect timeout, or the kernel's failed ARP resolution (EHOSTUNREACH),
            // whichever comes first.
            assert!(
                reason.starts_with(&format!("PC03: {pc03}:22: ")),
                "{reason}"
            );
            assert!(
                reason.contains("no answer within 5 s") || reason.contains("No route to host"),
                "{reason}"
            );
        }
        other => panic!("PC03: {other:?}"),
    }
}

#[test]
fn a_bad_installer_hash_refuses_before_any_pc_is_contacted() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let keys = SshKeys::generate(dir.path()).unwrap();
    let lab = Lab::builder().pcs(0).build().unwrap();
    let srv = lab.server();
    let spec = spec(dir.path(), &keys, root.path(), Some(&"0".repeat(64)));
    let known_hosts = keys.known_hosts().to_path_buf();
    let (state, stop) = srv
        .run(move || {
            let mut journal = Journal::open_in_memory().unwrap();
            let (id, actions) = journal.start(&spec.plan, Timestamp(1)).unwrap();
            let state = journal.state(id).unwrap();
            let mut worker = StepRunner::new(&spec, None);
            drive(
                &mut journal,
                id,
                1,
                state,
                actions,
                &mut worker,
                3,
                &mut || Timestamp(2),
            )
            .unwrap()
        })
        .unwrap();
    match stop {
        Stop::Ended(Phase::Refused(r)) => {
            assert!(
                matches!(&r[..], [Refusal::InstallerMismatch { file, .. }] if file == "geo-setup.sh"),
                "{r:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(state.machines.values().all(|m| m.is_empty()));
    assert!(!known_hosts.exists(), "no PC was contacted");
    assert!(!root.path().join("staging").exists());
}
