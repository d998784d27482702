//! Crash during g on the real imaging path: the virtual room of `roomcast demo` (`lab::VirtualRoom`:
//! OpenSSH PCs with disk files, a Samba AD DC), the imaging worker booting the real `roomcast agent`
//! per PC (`LabBoot`), `campaign::run` as the orchestrator. This process builds the room and runs
//! a–d; a child process (this test binary, re-executed) resumes after the sign-off (f, then g) and
//! is killed with SIGKILL while g's multicast session streams; a second child resumes with
//! `campaign::run::resume`. (`roomcast campaign resume` boots PCs by Wake-on-LAN + PXE; it has no
//! lab boot, so the library entry point is used, as `roomcast demo` does.)

use roomcast::campaign::driver::{self, Stop, Worker};
use roomcast::campaign::imaging::{ImagingConfig, ImagingWorker, Machine, MasterSsh};
use roomcast::campaign::journal::Journal;
use roomcast::campaign::run::{self, Progress, ResumeOptions, StartOptions};
use roomcast::clock::{Clock, SystemClock};
use roomcast::demo::lab_boot::LabBoot;
use roomcast::demo::region;
use roomcast::remote::ssh::SshConfig;
use roomcast_lab::samba::DomainConfig;
use roomcast_lab::shaping::Tbf;
use roomcast_lab::{RoomConfig, RoomPc, VirtualRoom};
use roomcast_proto::procedure::{Event, Phase, State, Step, Verdict};
use roomcast_store::Store;
use roomcast_store::capture::{CaptureOptions, capture};
use roomcast_store::keys::{self, Signer};
use roomcast_store::manifest::ImageLabel;
use roomcast_store::restore::{RestoreOptions, restore};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a child orchestrator needs to rebuild the imaging worker over the parent's room.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Params {
    db: PathBuf,
    campaign: i64,
    server_netns: String,
    server_if: String,
    master_addr: String,
    client_key: PathBuf,
    known_hosts: PathBuf,
    public: PathBuf,
    key: PathBuf,
    store: PathBuf,
    base: String,
    work: PathBuf,
    /// hostname, netns, disk.
    pcs: Vec<(String, String, PathBuf)>,
}

fn imaging(p: &Params) -> ImagingWorker {
    let mut boot = LabBoot::new(
        Path::new(env!("CARGO_BIN_EXE_roomcast")),
        &p.public,
        &p.work.join("agents"),
    );
    let mut machines = Vec::new();
    for (i, (host, netns, disk)) in p.pcs.iter().enumerate() {
        boot = boot.pc(host, netns, disk);
        machines.push(Machine {
            hostname: host.clone(),
            mac: format!("52:54:00:de:00:{:02x}", i + 1).parse().unwrap(),
        });
    }
    let mut config = ImagingConfig::new(
        region::ROOM,
        machines,
        &region::hostname(0),
        &p.server_if,
        "198.18.0.0/16".parse().unwrap(),
        p.store.clone(),
        p.key.clone(),
        &p.base,
        p.work.join("imaging"),
    );
    let mut ssh = SshConfig::new("root", &p.client_key, &p.known_hosts);
    ssh.connect_timeout = Duration::from_secs(10);
    config.master_ssh = Some(MasterSsh {
        address: p.master_addr.clone(),
        port: 22,
        ssh,
    });
    config.generalise = Some("rm -f /mnt/etc/machine-id && touch /mnt/etc/machine-id".into());
    // The lab master "reboots" by unmounting its disk, which the capture then reads.
    config.reboot = Some("sync && umount /mnt".into());
    config.image_name = "crash-debian12".into();
    config.profile = Some("demo-debian12@1".into());
    config.captured_by = "imaging_crash test".into();
    config.boot_timeout = Duration::from_secs(60);
    config.agent_timeout = Duration::from_secs(600);
    ImagingWorker::new(config, Box::new(boot))
}

/// Step b in the lab: the restore needs the master's disk unmounted, and the master then "boots
/// from it" (mounted at /mnt in its namespace, where step c's installers write).
struct LabMaster<'a> {
    inner: ImagingWorker,
    master: &'a RoomPc,
}

impl Worker for LabMaster<'_> {
    fn run_step(&mut self, step: Step, state: &State) -> Event {
        if step == Step::Master && self.master.disk_mounted().unwrap() {
            self.master.unmount_disk().unwrap();
        }
        let event = self.inner.run_step(step, state);
        if step == Step::Master && matches!(event, Event::StepSucceeded { .. }) {
            self.master.mount_disk().unwrap();
        }
        event
    }

    fn run_on_machine(&self, step: Step, machine: &str, attempt: u32) -> Event {
        self.inner.run_on_machine(step, machine, attempt)
    }

    fn begin_batch(&mut self, step: Step, machines: &[(String, u32)], state: &State) {
        self.inner.begin_batch(step, machines, state);
    }

    fn end_batch(&mut self, step: Step) {
        self.inner.end_batch(step);
    }
}

/// Not a test of its own: the orchestrator process the crash test starts (and kills once).
#[test]
#[ignore = "run by the imaging crash test as a child process"]
fn imaging_crash_child() {
    let Ok(file) = std::env::var("ROOMCAST_GCRASH_PARAMS") else {
        return;
    };
    let p: Params = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let events = PathBuf::from(std::env::var("ROOMCAST_GCRASH_EVENTS").unwrap());
    let observe = |e: &Progress| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&events)
            .unwrap();
        // One write per line: PCs report from parallel threads, and `writeln!` may split a line in two
        // writes that another thread's line lands between.
        f.write_all(format!("{}\n", serde_json::to_string(e).unwrap()).as_bytes())
            .unwrap();
        f.sync_all().unwrap();
    };
    let mut worker = imaging(&p);
    let opts = ResumeOptions {
        db: p.db.clone(),
        campaign: Some(p.campaign),
        until: None,
        parallel: 8,
        today: None,
    };
    let out = roomcast_lab::netns::run_in(&p.server_netns, || {
        run::resume(&opts, &SystemClock, Some(&mut worker), &observe)
    })
    .unwrap()
    .unwrap();
    assert_eq!(out.stop, Stop::Ended(Phase::Finished), "{out:?}");
}

fn child(params: &Path, events: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "campaign::imaging_crash::imaging_crash_child",
            "--ignored",
            "--nocapture",
        ])
        .env("ROOMCAST_GCRASH_PARAMS", params)
        .env("ROOMCAST_GCRASH_EVENTS", events)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn progress(events: &Path) -> Vec<Progress> {
    std::fs::read_to_string(events)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Processes running `roomcast agent` on one of `disks` (pids).
fn agents_on(disks: &[PathBuf]) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "agent")
            && disks
                .iter()
                .any(|d| args.iter().any(|a| Path::new(a) == d.as_path()))
        {
            pids.push(pid);
        }
    }
    pids
}

fn base_image(ws: &Path, store: &Store, signer: &Signer, bytes: u64) -> String {
    let tree = ws.join("base/tree");
    region::base_tree(&tree).unwrap();
    // Incompressible content, so that g's stream lasts seconds on the shaped links.
    let mut noise = vec![0u8; 24 << 20];
    rand::fill(&mut noise[..]);
    std::fs::write(tree.join("noise.bin"), &noise).unwrap();
    let file = ws.join("base/base.img");
    std::fs::File::create(&file)
        .unwrap()
        .set_len(bytes)
        .unwrap();
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "crash-base", "-d"])
        .arg(&tree)
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let label = ImageLabel {
        name: "demo-base".into(),
        version: "1".into(),
        profile: None,
        captured_by: "imaging_crash test".into(),
        captured_at: "2026-01-01T00:00:00Z".into(),
    };
    capture(
        store,
        &file,
        label,
        signer,
        &CaptureOptions::default(),
        &|_| {},
    )
    .unwrap()
    .id
    .to_hex()
}

#[test]
fn kill_9_during_the_multicast_of_g_then_resume_finishes_bit_identical_without_redoing() {
    let ws_dir = tempfile::tempdir().unwrap();
    let ws = ws_dir.path();
    let disk_bytes = 64u64 << 20;
    let password = "Crash-Test-Passw0rd!".to_string();
    let room = VirtualRoom::build(
        &RoomConfig {
            pcs: 3,
            disk_bytes,
            domain: Some(DomainConfig {
                realm: region::REALM.into(),
                workgroup: region::WORKGROUP.into(),
                admin_password: password.clone(),
                dc_hostname: "dc1".into(),
                ous: vec![region::OU.into()],
            }),
            // Slow links so g's stream lasts long enough to be cut.
            rate: Some(Tbf::mbit(40)),
        },
        &ws.join("room"),
    )
    .unwrap();
    let dc = room.dc().unwrap();
    let addresses: Vec<String> = room
        .pcs()
        .iter()
        .map(|pc| pc.node().addr().to_string())
        .collect();
    let reg = region::write(ws, &addresses, room.server().ifname()).unwrap();
    let secrets = ws.join("secrets");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&secrets)
            .unwrap();
        writeln!(f, "{}=Administrator%{password}", region::JOIN_SECRET).unwrap();
    }
    let store_dir = ws.join("store");
    let store = Store::open_or_create(&store_dir).unwrap();
    let (key, public, _) = keys::generate_files(&ws.join("keys")).unwrap();
    store.trust(&public).unwrap();
    let signer = Signer::load(&key).unwrap();
    let base = base_image(ws, &store, &signer, disk_bytes);

    let db = ws.join("roomcast.db");
    let keys = room.keys();
    let start = StartOptions {
        db: db.clone(),
        setup: roomcast::demo::setup_options(ws, &reg.room_file, keys, dc.addr(), secrets),
        at: None,
        until: None,
        parallel: 8,
        today: None,
    };
    let mut params = Params {
        db: db.clone(),
        campaign: 0,
        server_netns: room.server().netns().to_string(),
        server_if: room.server().ifname().to_string(),
        master_addr: room.master().node().addr().to_string(),
        client_key: keys.client().to_path_buf(),
        known_hosts: keys.known_hosts().to_path_buf(),
        public: public.clone(),
        key: key.clone(),
        store: store_dir.clone(),
        base: base.clone(),
        work: ws.to_path_buf(),
        pcs: room
            .pcs()
            .iter()
            .enumerate()
            .map(|(i, pc)| {
                (
                    region::hostname(i),
                    pc.node().netns().to_string(),
                    pc.disk().to_path_buf(),
                )
            })
            .collect(),
    };

    // Run 1, in this process: a–d, then the campaign waits at e; the sign-off is given.
    let mut first_worker = LabMaster {
        inner: imaging(&params),
        master: room.master(),
    };
    let first = room
        .server()
        .run(|| run::start(&start, &SystemClock, Some(&mut first_worker), &|_| {}))
        .unwrap()
        .unwrap();
    drop(first_worker);
    assert!(
        matches!(first.stop, Stop::AwaitingSignoff { .. }),
        "{:?}",
        first.stop
    );
    let mut journal = Journal::open(&db).unwrap();
    driver::signoff(
        &mut journal,
        first.campaign,
        region::SIGNER,
        Verdict::Ok,
        None,
        SystemClock.now(),
    )
    .unwrap();
    drop(journal);
    params.campaign = first.campaign;
    let params_file = ws.join("params.json");
    std::fs::write(&params_file, serde_json::to_vec(&params).unwrap()).unwrap();

    // Run 2, a child: f, then g; killed once g's PCs are receiving the stream.
    let events2 = ws.join("events-2.jsonl");
    let mut orchestrator = child(&params_file, &events2);
    let deadline = Instant::now() + Duration::from_secs(600);
    let streaming = loop {
        let ev = progress(&events2);
        let g_started = ev
            .iter()
            .any(|e| matches!(e, Progress::MachineStarted { step: 'g', .. }));
        // The agents' logs exist once the PCs booted into the session and joined the stream.
        let agents = std::fs::read_dir(ws.join("agents"))
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().contains("capture"))
                    .count()
            })
            .unwrap_or(0);
        if g_started && agents >= 3 {
            break true;
        }
        if Instant::now() > deadline || orchestrator.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(streaming, "g never started: {:?}", progress(&events2));
    std::thread::sleep(Duration::from_millis(300));
    orchestrator.kill().unwrap(); // SIGKILL
    orchestrator.wait().unwrap();
    let at_kill = progress(&events2);
    let g_done_before: Vec<String> = at_kill
        .iter()
        .filter_map(|e| match e {
            Progress::MachineEnded {
                step: 'g',
                machine,
                result,
                ..
            } if result == "ok" => Some(machine.clone()),
            _ => None,
        })
        .collect();
    assert!(
        g_done_before.len() < 3,
        "g finished before the kill: nothing was cut ({at_kill:?})"
    );
    let disks: Vec<PathBuf> = params.pcs.iter().map(|(_, _, d)| d.clone()).collect();
    // The killed run's agents are left alone (a real PC is not power-cycled by a crash of the
    // server); the resumed session must cope with them.
    let orphans = agents_on(&disks).len();

    // Run 3, a new child: resume.
    let events3 = ws.join("events-3.jsonl");
    let status = child(&params_file, &events3).wait().unwrap();
    let after = progress(&events3);
    assert!(status.success(), "resume failed: {after:?}");

    // Nothing of a–f started again; a PC done before the kill was not redeployed.
    assert!(
        !after
            .iter()
            .any(|e| matches!(e, Progress::StepStarted { .. })),
        "{after:?}"
    );
    for m in &g_done_before {
        assert!(
            !after.iter().any(|e| matches!(e,
                Progress::MachineStarted { step: 'g', machine, .. } if machine == m)),
            "{m} redeployed: {after:?}"
        );
    }
    // The PCs the kill cut short were deployed again, by the resumed run.
    for (host, _, _) in &params.pcs {
        if !g_done_before.contains(host) {
            assert!(
                after.iter().any(|e| matches!(e,
                    Progress::MachineStarted { step: 'g', machine, .. } if machine == host)),
                "{host} not redeployed: {after:?}"
            );
        }
    }
    eprintln!(
        "killed during g with {} of 3 PCs done and {orphans} agents left running; resume deployed the others",
        g_done_before.len()
    );
    assert_eq!(agents_on(&disks), Vec::<i32>::new(), "agents left behind");
    // The journal shows the three runs; a–f each succeeded once; every PC once at g.
    let journal = Journal::open(&db).unwrap();
    let recorded = journal.events(first.campaign).unwrap();
    let mut runs: Vec<i64> = recorded.iter().map(|r| r.run).collect();
    runs.dedup();
    assert_eq!(runs, vec![1, 2, 3]);
    for step in [Step::Collect, Step::Master, Step::Install, Step::Tests] {
        let n = recorded
            .iter()
            .filter(|r| r.event == Event::StepSucceeded { step })
            .count();
        assert_eq!(n, 1, "step {step} succeeded {n} times");
    }
    // f ends with the image it captured, journaled once, in run 2 (before the kill).
    let captured: Vec<i64> = recorded
        .iter()
        .filter(|r| matches!(r.event, Event::ImageCaptured { .. }))
        .map(|r| r.run)
        .collect();
    assert_eq!(captured, vec![2]);
    for (host, _, _) in &params.pcs {
        let n = recorded
            .iter()
            .filter(|r| {
                matches!(&r.event, Event::MachineSucceeded { step: Step::Deploy, machine } if machine == host)
            })
            .count();
        assert_eq!(n, 1, "{host} deployed {n} times");
    }
    let state = journal.state(first.campaign).unwrap();
    assert_eq!(state.phase, Phase::Finished);
    // Every PC's disk is bit-identical to the captured image.
    let image = state.image.clone().expect("f journaled the captured image");
    let id = store.resolve(&image).unwrap();
    let manifest = store.open_verified(&id).unwrap();
    let expected = ws.join("expected.img");
    restore(
        &store,
        &manifest,
        &expected,
        &RestoreOptions::default(),
        &|_| {},
    )
    .unwrap();
    // Compared on the bytes the image's file systems use (free bytes read as zero): a masked
    // restore never writes free space (issue 14).
    let used = |p: &Path| {
        roomcast_store::masked::used_digest(
            &roomcast_store::disk::Disk::open_read(p).unwrap(),
            &manifest,
        )
        .unwrap()
    };
    let want = used(&expected);
    for (host, _, disk) in &params.pcs {
        assert_eq!(used(disk), want, "{host}'s disk");
    }
    drop(journal);
    room.teardown().unwrap();
}
