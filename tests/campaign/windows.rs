//! Windows rooms (issue 15) with real components: a Windows-shaped disk (GPT: ESP FAT32, MSR, NTFS
//! made by mkntfs holding `Windows\Setup\State\State.ini` and the usual folders) through b, f, g
//! and h in the virtual room, the real agent binary in each PC's namespace (lab boot), the real
//! Samba AD DC provisioning each PC's offline join blob, ntfs-3g reading each PC's disk back. And
//! step f's refusal of a Linux master that keeps its machine identity, against a real sshd.

use crate::store::util::Fixture;
use roomcast::campaign::driver::{Stop, Worker, drive};
use roomcast::campaign::imaging::{
    ImagingConfig, ImagingWorker, Machine, MasterIdentity, MasterSsh, WindowsJoin,
};
use roomcast::campaign::journal::Journal;
use roomcast::campaign::steps::join::Domain;
use roomcast::campaign::unattend::{WINDOWS_UNATTEND, WindowsSettings};
use roomcast::demo::lab_boot::LabBoot;
use roomcast::remote::ssh::SshConfig;
use roomcast::secrets::NamedSecret;
use roomcast_lab::dirty_disk::{self, FsKind};
use roomcast_lab::samba::DomainConfig;
use roomcast_lab::sshd::{SshKeys, Sshd};
use roomcast_lab::{Lab, Node, RoomConfig, VirtualRoom};
use roomcast_proto::mac::Mac;
use roomcast_proto::procedure::{DeployMode, Event, Phase, Plan, State, Status, Step, Timestamp};
use roomcast_store::capture::{self, CaptureOptions};
use roomcast_store::chunk::ChunkSize;
use roomcast_store::manifest::ImageLabel;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ADMIN_PASSWORD: &str = "Rc-W1nd0ws!Pw-5520";
const OU: &str = "OU=B204,OU=Salles,DC=eiffel,DC=test";
const GENERALISED: &str = "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE";
const CHUNK: u32 = 256 * 1024;
const SUBNET: &str = "198.18.0.0/16";

fn mac_of(node: &Node) -> Mac {
    let out = node
        .command("ip")
        .args(["-o", "link", "show", node.ifname()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    out.split("link/ether ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

/// Every step goes to the imaging worker as `StepRunner` hands them in a Windows room (b, f, g and
/// h); a, c, d are not the subject and pass.
struct Campaign<'a> {
    imaging: &'a mut ImagingWorker,
}

impl Worker for Campaign<'_> {
    fn run_step(&mut self, step: Step, state: &State) -> Event {
        match step {
            Step::Master | Step::Capture => self.imaging.run_step(step, state),
            _ => Event::StepSucceeded { step },
        }
    }
    fn run_on_machine(&self, step: Step, machine: &str, attempt: u32) -> Event {
        self.imaging.run_on_machine(step, machine, attempt)
    }
    fn begin_batch(&mut self, step: Step, machines: &[(String, u32)], state: &State) {
        self.imaging.begin_batch(step, machines, state);
    }
    fn end_batch(&mut self, step: Step) {
        self.imaging.end_batch(step);
    }
}

/// The text of the one element `tag` of `xml`.
fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no {tag} in {xml}"))
        + open.len();
    let end = start + xml[start..].find('<').unwrap();
    &xml[start..end]
}

/// Every file under `dir` whose content holds `needle`, except those `skip` says.
fn files_holding(dir: &Path, needle: &[u8], skip: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                todo.push(p);
            } else if meta.is_file()
                && !skip(&p)
                && let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(p);
            }
        }
    }
    found
}

#[test]
fn a_windows_room_gets_each_pcs_own_unattend_xml_with_an_offline_join_blob_written_into_its_ntfs() {
    let f = Fixture::new();
    let dir = f.dir.path().to_path_buf();
    // The master as sysprep left it: a Windows-shaped disk whose image state is sealed for OOBE.
    let win = dirty_disk::build_windows(&dir.join("win.img"), GENERALISED).unwrap();
    let ntfs = win.part(FsKind::Ntfs).unwrap().clone();
    let base = capture::capture(
        &f.store,
        &win.path,
        ImageLabel {
            name: "win11-base".into(),
            version: "2026.11".into(),
            profile: Some("win11".into()),
            captured_by: "test".into(),
            captured_at: "2026-11-28T12:00:00Z".into(),
        },
        &f.signer,
        &CaptureOptions {
            chunk_size: ChunkSize::new(CHUNK).unwrap(),
            level: 3,
            workers: 2,
        },
        &|_| {},
    )
    .unwrap()
    .id;

    let room = VirtualRoom::build(
        &RoomConfig {
            pcs: 3,
            disk_bytes: win.size,
            domain: Some(DomainConfig {
                realm: "EIFFEL.TEST".into(),
                workgroup: "EIFFEL".into(),
                admin_password: ADMIN_PASSWORD.into(),
                dc_hostname: "dc1".into(),
                ous: vec![OU.into()],
            }),
            rate: None,
        },
        &dir.join("room"),
    )
    .unwrap();
    let dc_ip = room.dc().unwrap().addr().to_string();
    // The master's disk holds the Windows that sysprep sealed; the PCs' disks are blank.
    std::fs::copy(&win.path, room.master().disk()).unwrap();
    let hosts = ["B204-M", "B204-P01", "B204-P02"];
    let mut machines = Vec::new();
    let mut boot = LabBoot::new(
        Path::new(env!("CARGO_BIN_EXE_roomcast")),
        &f.pub_file,
        &dir.join("agents"),
    );
    for (h, pc) in hosts.iter().zip(room.pcs()) {
        machines.push(Machine {
            hostname: h.to_string(),
            mac: mac_of(pc.node()),
        });
        boot = boot.pc(h, pc.node().netns(), pc.disk());
    }

    // The deploy server's Samba client config and `net` (resolving through the DC, as a school
    // server does): each PC's computer account is provisioned from here.
    let srv_state = dir.join("srv-samba");
    for d in ["private", "lock", "state", "cache", "run", "ncalrpc"] {
        std::fs::create_dir_all(srv_state.join(d)).unwrap();
    }
    let srv_conf = dir.join("srv.conf");
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
    let resolv = dir.join("srv-resolv.conf");
    std::fs::write(&resolv, format!("nameserver {dc_ip}\n")).unwrap();
    let wrapper = format!(
        "mount --bind {} /etc/resolv.conf && exec net \"$@\"",
        resolv.display()
    );
    let net: Vec<String> = ["unshare", "--mount", "sh", "-c", &wrapper, "net"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let settings = WindowsSettings {
        locale: "fr-FR".into(),
        time_zone: "Romance Standard Time".into(),
    };
    let work = dir.join("work");
    let mut cfg = ImagingConfig::new(
        "B204",
        machines,
        "B204-M",
        room.server().ifname(),
        SUBNET.parse().unwrap(),
        f.store.root().to_path_buf(),
        f.key_file.clone(),
        &base.to_hex()[..12],
        work.clone(),
    );
    cfg.http_port = 0;
    cfg.chunk_size = ChunkSize::new(CHUNK).unwrap();
    cfg.boot_timeout = Duration::from_secs(10);
    cfg.agent_timeout = Duration::from_secs(300);
    cfg.windows_join = Some(WindowsJoin {
        net,
        smb_conf: srv_conf.clone(),
        domain: Domain {
            realm: "EIFFEL.TEST".into(),
            workgroup: "EIFFEL".into(),
            ou: OU.into(),
            server: Some(dc_ip.clone()),
            user: "Administrator".into(),
            password: NamedSecret::new("AD_JOIN_EIFFEL", ADMIN_PASSWORD),
        },
        template: WINDOWS_UNATTEND.to_string(),
        settings: settings.clone(),
    });
    let plan = Plan {
        room: "B204".into(),
        machines: hosts.iter().map(|h| h.to_string()).collect(),
        master: "B204-M".into(),
        mode: DeployMode::Image,
        // A DC just started may refuse its first binds: the engine's retries are the cure.
        retries: 2,
        signoff_required: false,
        signoff_allowed: vec![],
    };
    // Every command line and environment seen while the room is imaged: searched for the blobs
    // afterwards (they are not known before their PCs' accounts are provisioned).
    let stop_watch = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(HashSet::<String>::new()));
    let watcher = {
        let (stop_watch, seen) = (stop_watch.clone(), seen.clone());
        std::thread::spawn(move || {
            while !stop_watch.load(Ordering::SeqCst) {
                let out = Command::new("ps")
                    .args(["-eww", "-o", "args"])
                    .output()
                    .unwrap();
                let mut seen = seen.lock().unwrap();
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    seen.insert(line.to_string());
                }
                if let Ok(entries) = std::fs::read_dir("/proc") {
                    for e in entries.flatten() {
                        if let Ok(env) = std::fs::read(e.path().join("environ")) {
                            seen.insert(String::from_utf8_lossy(&env).into_owned());
                        }
                    }
                }
                drop(seen);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let db = dir.join("journal.db");
    let (state, stop) = room
        .server()
        .run(move || {
            let mut imaging = ImagingWorker::new(cfg, Box::new(boot));
            let mut journal = Journal::open(&db).unwrap();
            let (id, actions) = journal.start(&plan, Timestamp(1)).unwrap();
            let state = journal.state(id).unwrap();
            let mut t = 1;
            let mut clock = || {
                t += 1;
                Timestamp(t)
            };
            let mut campaign = Campaign {
                imaging: &mut imaging,
            };
            drive(
                &mut journal,
                id,
                1,
                state,
                actions,
                &mut campaign,
                3,
                &mut clock,
            )
            .unwrap()
        })
        .unwrap();
    stop_watch.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    assert_eq!(stop, Stop::Ended(Phase::Finished), "{state:#?}");
    for step in [Step::Master, Step::Capture] {
        assert!(
            matches!(state.step_status(step), Status::Succeeded { .. }),
            "{step}: {state:#?}"
        );
    }
    for h in hosts {
        eprintln!("{h}: g {:?}", state.machine_status(h, Step::Deploy));
        for step in [Step::Deploy, Step::Join] {
            assert!(
                matches!(state.machine_status(h, step), Status::Succeeded { .. }),
                "{h} {step}: {state:#?}"
            );
        }
    }

    // Each PC's NTFS holds its own unattend.xml, read back with ntfs-3g.
    let listed = room.dc().unwrap().computers().unwrap().join("\n");
    let mut blobs = Vec::new();
    for (h, pc) in hosts.iter().zip(room.pcs()) {
        let part = dir.join(format!("{h}-ntfs.img"));
        dirty_disk::extract(pc.disk(), &ntfs, &part).unwrap();
        let out = Command::new("ntfscat")
            .arg(&part)
            .arg("Windows/Panther/unattend.xml")
            .output()
            .unwrap();
        assert!(out.status.success(), "{h}: {out:?}");
        let xml = String::from_utf8(out.stdout).unwrap();
        assert_eq!(element(&xml, "ComputerName"), *h, "{h}");
        assert_eq!(element(&xml, "TimeZone"), "Romance Standard Time");
        assert_eq!(element(&xml, "UILanguage"), "fr-FR");
        let blob = element(&xml, "AccountData").to_string();
        assert!(blob.len() > 64, "{h}: blob {} bytes", blob.len());
        // The blob is this PC's: its computer name is inside (UTF-16LE, as Windows reads it).
        let decoded = Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(blob.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap()
            .stdout;
        let name16: Vec<u8> = h
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect::<Vec<u8>>();
        assert!(
            decoded
                .windows(name16.len())
                .any(|w| w == name16.as_slice()),
            "{h}: the blob does not name this PC"
        );
        // Its computer account exists in the profile's OU of the real DC.
        assert!(
            listed.contains(&format!("CN={h},{OU}")),
            "{h} not in {OU}:\n{listed}"
        );
        // The file is intact for ntfs-3g: the volume checks clean.
        let fsck = Command::new("ntfsfix")
            .args(["--no-action"])
            .arg(&part)
            .output()
            .unwrap();
        assert!(fsck.status.success(), "{h}: {fsck:?}");
        std::fs::remove_file(&part).unwrap();
        blobs.push(blob);
    }
    blobs.sort();
    blobs.dedup();
    assert_eq!(blobs.len(), hosts.len(), "one blob per PC");

    // The blobs are nowhere but in the PCs' disks: not in the agents' logs, the reports, the
    // journal (SQLite), the records of step h, nor anything else the deploy server wrote.
    let disks: Vec<PathBuf> = room.pcs().iter().map(|p| p.disk().to_path_buf()).collect();
    for blob in &blobs {
        // The search finds it where it is: in exactly one PC's disk.
        let everywhere = files_holding(&dir, blob.as_bytes(), &|_| false);
        assert_eq!(everywhere.len(), 1, "{everywhere:?}");
        assert!(disks.contains(&everywhere[0]), "{everywhere:?}");
        let holding = files_holding(&dir, blob.as_bytes(), &|p| disks.iter().any(|d| d == p));
        assert_eq!(holding, Vec::<PathBuf>::new(), "files holding a blob");
    }
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter().any(|l| l.contains("offlinejoin provision")),
        "the watcher saw the provisioning run"
    );
    for blob in &blobs {
        assert!(
            !seen.iter().any(|l| l.contains(blob.as_str())),
            "a blob in a process's command line or environment"
        );
    }
    assert!(dir.join("agents").read_dir().unwrap().count() >= 3);
    assert!(work.join("unattend").join("B204-P01.written").exists());
    room.teardown().unwrap();
}

/// Step f for a Linux master (issue 15): a master that still holds its machine identity (a
/// non-empty `/etc/machine-id`, SSH host keys) is refused before any capture, naming what is left;
/// the profile's `keep_machine_identity` lets it through; a clean master passes.
#[test]
fn a_linux_master_keeping_its_machine_identity_is_refused_at_f_unless_the_profile_says_why() {
    let f = Fixture::new();
    let dir = f.dir.path().to_path_buf();
    let keys = SshKeys::generate(&dir.join("ssh")).unwrap();
    let lab = Lab::builder().pcs(1).build().unwrap();
    let master = lab.pc(0).unwrap();
    let _sshd = Sshd::start(
        master,
        &keys,
        &keys.host_key("m").unwrap(),
        None,
        &dir.join("ssh"),
    )
    .unwrap();
    // The master's system, as its SSH session sees it.
    let root = dir.join("master-root");
    std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
    std::fs::write(
        root.join("etc/machine-id"),
        "5f2b7a0c9e4d4c1fa0b3d2e1f0a9b8c7\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/ssh/ssh_host_ed25519_key"), "k").unwrap();
    std::fs::write(root.join("etc/ssh/ssh_host_ed25519_key.pub"), "k").unwrap();
    std::fs::write(root.join("etc/ssh/sshd_config"), "").unwrap();
    let mut cfg = ImagingConfig::new(
        "B204",
        vec![Machine {
            hostname: "B204-M".into(),
            mac: mac_of(master),
        }],
        "B204-M",
        lab.server().ifname(),
        SUBNET.parse().unwrap(),
        f.store.root().to_path_buf(),
        f.key_file.clone(),
        "none",
        dir.join("work"),
    );
    cfg.http_port = 0;
    cfg.boot_timeout = Duration::from_secs(2);
    cfg.agent_timeout = Duration::from_secs(4);
    cfg.master_ssh = Some(MasterSsh {
        address: master.addr().to_string(),
        port: 22,
        ssh: SshConfig::new("root", keys.client(), keys.known_hosts()),
    });
    let run_f = |keep: Option<&str>| -> String {
        let mut cfg = cfg.clone();
        cfg.master_identity = Some(MasterIdentity {
            root: root.to_string_lossy().into_owned(),
            keep: keep.map(str::to_string),
        });
        // No PC ever boots here: what matters is whether f gets as far as booting the master.
        let boot = LabBoot::new(
            Path::new(env!("CARGO_BIN_EXE_roomcast")),
            &f.pub_file,
            &dir.join("agents"),
        )
        .powered_off("B204-M");
        lab.server()
            .run(move || {
                let mut w = ImagingWorker::new(cfg, Box::new(boot));
                match w.run_step(Step::Capture, &State::default()) {
                    Event::StepFailed { reason, .. } => reason,
                    other => panic!("{other:?}"),
                }
            })
            .unwrap()
    };

    let refused = run_f(None);
    assert!(
        refused.contains("B204-M: the master still holds its machine identity")
            && refused.contains("/etc/machine-id is not empty")
            && refused.contains("/etc/ssh/ssh_host_ed25519_key exists")
            && refused.contains("/etc/ssh/ssh_host_ed25519_key.pub exists")
            && !refused.contains("sshd_config")
            && refused.contains("keep_machine_identity")
            && refused.contains("nothing was captured"),
        "{refused}"
    );
    assert!(f.store.image_ids().unwrap().is_empty(), "nothing captured");
    assert!(
        !dir.join("work/reports/f").exists(),
        "no capture session was opened"
    );

    // Only the host keys left: still refused, naming them alone.
    std::fs::write(root.join("etc/machine-id"), "").unwrap();
    let refused = run_f(None);
    assert!(
        !refused.contains("/etc/machine-id is not empty")
            && refused.contains("ssh_host_ed25519_key exists"),
        "{refused}"
    );

    // The profile says why: f goes on to the capture (the master, switched off, never boots).
    let kept = run_f(Some(
        "lab machines keep their SSH host keys (pinned by the teachers' tools)",
    ));
    assert!(!kept.contains("machine identity"), "{kept}");
    assert!(kept.contains("B204-M"), "{kept}");

    // A clean master passes the check too.
    for k in ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"] {
        std::fs::remove_file(root.join("etc/ssh").join(k)).unwrap();
    }
    let clean = run_f(None);
    assert!(!clean.contains("machine identity"), "{clean}");
    assert!(f.store.image_ids().unwrap().is_empty());
}

/// A Windows room file set up for a real campaign: the imaging backend's config carries the
/// Windows join (the unattend template, the profile's domain and OU, the default locale and time
/// zone) and no Linux identity check; step h's runner is the imaging worker.
#[test]
fn a_windows_rooms_campaign_setup_hands_the_unattend_to_the_imaging_worker() {
    use roomcast::campaign::setup::{self, SetupOptions};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::write(
        &secrets,
        "SOLIDWORKS_KEY=AAAA-BBBB\nAD_JOIN_EIFFEL=Administrator%Join-Pw-1\n",
    )
    .unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/good");
    let opts = SetupOptions {
        room_file: root.join("rooms/0330021U/B204.yaml"),
        installers: dir.path().join("installers"),
        shares: dir.path().join("shares"),
        dir: PathBuf::new(),
        ssh_user: "root".into(),
        ssh_key: dir.path().join("key"),
        known_hosts: dir.path().join("known_hosts"),
        port: 22,
        connect_timeout_secs: 1,
        software_only: false,
        retries: None,
        staging_dir: None,
        join_paths: None,
        domain_controller: None,
        secrets: Some(secrets),
    };
    let built =
        setup::build(&opts, "2026-03-02".parse().unwrap()).unwrap_or_else(|e| panic!("{e}"));
    let cfg = roomcast::campaign::run::imaging_config(
        &built,
        &dir.path().join("store"),
        &dir.path().join("key.pem"),
        &dir.path().join("work"),
    )
    .unwrap();
    assert!(
        cfg.master_identity.is_none(),
        "Windows masters: the agent checks"
    );
    let join = cfg
        .windows_join
        .expect("a Windows room joins through unattend.xml");
    assert_eq!(join.template, WINDOWS_UNATTEND);
    assert_eq!(join.settings, WindowsSettings::default());
    assert_eq!(join.net, ["net"]);
    assert_eq!(join.smb_conf, Path::new("/etc/samba/smb.conf"));
    assert_eq!(join.domain.user, "Administrator");
    assert!(join.domain.ou.starts_with("OU="), "{}", join.domain.ou);
    assert_eq!(
        format!("{:?}", join.domain.password),
        "secret:AD_JOIN_EIFFEL"
    );
}
