//! Steps b, f and image-mode g with real components: the imaging worker serving on the room
//! interface of a server namespace, a real OpenSSH master with a disk file, and the real `roomcast
//! agent` binary started in each PC's namespace by the lab boot (which fetches each PC's boot script
//! over HTTP, as iPXE does). The campaign goes through the real driver and journal.

use crate::store::util::{Fixture, random};
use roomcast::campaign::driver::{Stop, Worker, drive};
use roomcast::campaign::imaging::session::{Session, SessionSpec};
use roomcast::campaign::imaging::{ImagingConfig, ImagingWorker, Machine, MasterSsh};
use roomcast::campaign::journal::Journal;
use roomcast::demo::lab_boot::LabBoot;
use roomcast::net::capture::CaptureConfig;
use roomcast::remote::ssh::SshConfig;
use roomcast::serve::DataPlane;
use roomcast_lab::sshd::{SshKeys, Sshd};
use roomcast_lab::{Lab, Node};
use roomcast_proto::contract::AgentMode;
use roomcast_proto::contract::{CONTRACT_HEADER, CONTRACT_VERSION, TOKEN_HEADER};
use roomcast_proto::mac::Mac;
use roomcast_proto::procedure::{DeployMode, Event, Phase, Plan, State, Status, Step, Timestamp};
use roomcast_store::Store;
use roomcast_store::capture::{self, CaptureOptions};
use roomcast_store::chunk::{ChunkHash, ChunkSize, Compressor};
use roomcast_store::keys::{self, Signer, TrustedSigners};
use roomcast_store::manifest::{ImageId, ImageLabel, UnverifiedManifest};
use sha2::{Digest, Sha256};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const CHUNK: u32 = 256 * 1024;
const DISK: u64 = 8 << 20;
const SUBNET: &str = "198.18.0.0/16";

pub(crate) fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// A disk file of `DISK` bytes with data at the given offsets.
pub(crate) fn disk(path: &Path, parts: &[(u64, Vec<u8>)]) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(DISK).unwrap();
    for (at, bytes) in parts {
        f.write_all_at(bytes, *at).unwrap();
    }
}

/// The MAC of the node's interface: the PC's real identity on the switch.
pub(crate) fn mac_of(node: &Node) -> Mac {
    let out = node
        .command("ip")
        .args(["-o", "link", "show", node.ifname()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let mac = out
        .split("link/ether ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap();
    mac.parse().unwrap()
}

/// Store with the server's key trusted, and the profile's base image captured in it.
pub(crate) struct Server {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) store: Store,
    pub(crate) key: PathBuf,
    pub(crate) public: PathBuf,
    pub(crate) base: ImageId,
    pub(crate) base_disk: PathBuf,
}

fn server() -> Server {
    let Fixture {
        dir,
        store,
        signer,
        key_file: key,
        pub_file: public,
    } = Fixture::new();
    let base_disk = dir.path().join("base.img");
    disk(
        &base_disk,
        &[
            (0, random(1, 2 << 20)),
            (4 << 20, b"base system ".repeat(50_000)),
            (DISK - (256 << 10), random(2, 256 << 10)),
        ],
    );
    let report = capture::capture(
        &store,
        &base_disk,
        ImageLabel {
            name: "lycee-base".into(),
            version: "2026.11".into(),
            profile: Some("lycee".into()),
            captured_by: "test".into(),
            captured_at: "2026-11-28T12:00:00Z".into(),
        },
        &signer,
        &CaptureOptions {
            chunk_size: ChunkSize::new(CHUNK).unwrap(),
            level: 3,
            workers: 2,
        },
        &|_| {},
    )
    .unwrap();
    Server {
        store,
        key,
        public,
        base: report.id,
        base_disk,
        dir,
    }
}

pub(crate) fn config(
    srv: &Server,
    lab: &Lab,
    machines: Vec<Machine>,
    master: &str,
) -> ImagingConfig {
    let mut c = ImagingConfig::new(
        "B204",
        machines,
        master,
        lab.server().ifname(),
        SUBNET.parse().unwrap(),
        srv.store.root().to_path_buf(),
        srv.key.clone(),
        &srv.base.to_hex()[..12],
        srv.dir.path().join("work"),
    );
    c.http_port = 0;
    c.chunk_size = ChunkSize::new(CHUNK).unwrap();
    c.boot_timeout = Duration::from_secs(6);
    c.agent_timeout = Duration::from_secs(120);
    c.profile = Some("lycee".into());
    c.multicast = Some(DataPlane {
        group: SocketAddrV4::new(Ipv4Addr::new(239, 255, 30, 1), 9300),
        control_port: 0,
        // P04 never comes: the stream starts with the PCs present after this wait.
        start_wait: Duration::from_secs(8),
        ..DataPlane::default()
    });
    c
}

/// The orchestrator's glue for this test: a, c, d and h are not the subject and pass; b, f and g
/// go to the imaging worker, as `StepRunner` delegates them.
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
        match step {
            Step::Deploy => self.imaging.run_on_machine(step, machine, attempt),
            _ => Event::MachineSucceeded {
                step,
                machine: machine.into(),
            },
        }
    }
    fn begin_batch(&mut self, step: Step, machines: &[(String, u32)], state: &State) {
        self.imaging.begin_batch(step, machines, state);
    }
    fn end_batch(&mut self, step: Step) {
        self.imaging.end_batch(step);
    }
}

#[test]
fn b_f_g_restore_the_base_generalise_capture_sign_and_deploy_to_the_room() {
    let srv = server();
    let keys = SshKeys::generate(&srv.dir.path().join("ssh")).unwrap();
    let hosts = ["B204-P01", "B204-P02", "B204-P03", "B204-P04", "B204-P05"];
    let lab = Lab::builder().pcs(1 + hosts.len()).build().unwrap();
    let master_node = lab.pc(0).unwrap();
    let pc_nodes: Vec<&Node> = (1..=hosts.len()).map(|i| lab.pc(i).unwrap()).collect();
    let _sshd = Sshd::start(
        master_node,
        &keys,
        &keys.host_key("m").unwrap(),
        None,
        &srv.dir.path().join("ssh"),
    )
    .unwrap();

    // The master's disk holds last year's system; each PC's disk holds something else again.
    let master_disk = srv.dir.path().join("master.img");
    disk(&master_disk, &[(0, random(9, 8 << 20))]);
    let pc_disks: Vec<PathBuf> = (0..hosts.len())
        .map(|i| {
            let p = srv.dir.path().join(format!("pc{i}.img"));
            disk(&p, &[(1 << 20, random(20 + i as u64, 3 << 20))]);
            p
        })
        .collect();
    // P05's disk is smaller than the image: its agent refuses it and says so.
    std::fs::File::options()
        .write(true)
        .open(&pc_disks[4])
        .unwrap()
        .set_len(DISK / 2)
        .unwrap();

    let mut machines = vec![Machine {
        hostname: "B204-M".into(),
        mac: mac_of(master_node),
    }];
    let mut boot = LabBoot::new(
        Path::new(env!("CARGO_BIN_EXE_roomcast")),
        &srv.public,
        &srv.dir.path().join("agents"),
    )
    .pc("B204-M", master_node.netns(), &master_disk)
    // P04 is switched off at the wall: woken, it never comes.
    .powered_off("B204-P04");
    for (i, h) in hosts.iter().enumerate() {
        machines.push(Machine {
            hostname: h.to_string(),
            mac: mac_of(pc_nodes[i]),
        });
        boot = boot.pc(h, pc_nodes[i].netns(), &pc_disks[i]);
    }
    let mut cfg = config(&srv, &lab, machines, "B204-M");
    let marker = srv.dir.path().join("generalised");
    // The "sysprep" of this master: stamps the disk (so the capture must carry it) and leaves a trace.
    cfg.generalise = Some(format!(
        "printf 'GENERALISED-FOR-B204' | dd of={} bs=1 seek={} conv=notrunc 2>/dev/null && touch {}",
        master_disk.display(),
        5 << 20,
        marker.display()
    ));
    // The master's "reboot into network boot": leaves one line per call (b and f).
    let reboots = srv.dir.path().join("reboots");
    cfg.reboot = Some(format!("echo reboot >> {}", reboots.display()));
    cfg.master_ssh = Some(MasterSsh {
        address: master_node.addr().to_string(),
        port: 22,
        ssh: SshConfig::new("root", keys.client(), keys.known_hosts()),
    });
    let plan = Plan {
        room: "B204".into(),
        machines: std::iter::once("B204-M".to_string())
            .chain(hosts.iter().map(|h| h.to_string()))
            .collect(),
        master: "B204-M".into(),
        mode: DeployMode::Image,
        retries: 0,
        signoff_required: false,
        signoff_allowed: vec![],
    };
    let db = srv.dir.path().join("journal.db");
    let work = srv.dir.path().join("work");
    let base_sha = sha256(&srv.base_disk);
    let (state, stop) = lab
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
            let (state, stop) = drive(
                &mut journal,
                id,
                1,
                state,
                actions,
                &mut campaign,
                4,
                &mut clock,
            )
            .unwrap();
            (state, stop)
        })
        .unwrap();
    assert_eq!(stop, Stop::Ended(Phase::Finished), "{state:#?}");
    assert!(matches!(
        state.step_status(Step::Master),
        Status::Succeeded { .. }
    ));

    // f ran the generalise command over SSH, then captured through the agent's upload.
    assert!(marker.exists(), "the generalise command ran on the master");
    assert_eq!(
        std::fs::read_to_string(&reboots).unwrap(),
        "reboot\nreboot\n",
        "the master was sent into network boot at b and after the generalise command at f"
    );
    let image: ImageId = state.image.as_deref().unwrap().parse().unwrap();
    let envelope = std::fs::read(srv.store.manifest_path(&image)).unwrap();
    let trusted = TrustedSigners::from_keys(vec![keys::load_public(&srv.public).unwrap()]);
    let m = UnverifiedManifest::from_envelope(&envelope)
        .unwrap()
        .verify(&trusted)
        .expect("the manifest verifies with the server's key");
    assert_eq!(m.label.profile.as_deref(), Some("lycee"));
    // The image's content is the master's disk: the base image (restored over last year's system at
    // step b) plus the generalise stamp.
    let restored = srv.dir.path().join("check.img");
    std::fs::File::create(&restored)
        .unwrap()
        .set_len(DISK)
        .unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&restored)
        .unwrap();
    for (i, c) in m.chunks.iter().enumerate() {
        if c.sha256.is_some() {
            f.write_all_at(&srv.store.read_chunk_verified(&m, i).unwrap(), c.offset)
                .unwrap();
        }
    }
    drop(f);
    let mut expected = std::fs::read(&srv.base_disk).unwrap();
    expected[5 << 20..(5 << 20) + 20].copy_from_slice(b"GENERALISED-FOR-B204");
    assert_eq!(
        std::fs::read(&restored).unwrap(),
        expected,
        "image = base image (step b) + generalise stamp (step f)"
    );
    assert_ne!(sha256(&restored), base_sha);
    assert_eq!(std::fs::read(&master_disk).unwrap(), expected);
    // Only the stamped chunk crossed the network at f: the rest was in the store since b.
    let reports: Vec<_> = std::fs::read_dir(work.join("reports/f"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(reports.len(), 1);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reports[0]).unwrap()).unwrap();
    assert_eq!(r["mode"], "capture");
    assert_eq!(r["uploaded_chunks"], 1, "{r}");
    assert_eq!(r["image"], image.to_hex());

    // g: one multicast session for the room; the three live PCs hold exactly the captured disk,
    // written from the stream after each chunk's sha256 matched the signed manifest; P04 failed
    // alone, named.
    for (i, h) in hosts.iter().enumerate().take(3) {
        let pc_mac = mac_of(pc_nodes[i]);
        let file = work
            .join("reports/g")
            .join(format!("{}.json", pc_mac.hyphenated()));
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(r["result"], "ok", "{h}: {r}");
        assert_eq!(r["image"], image.to_hex(), "{h}: {r}");
        assert_eq!(r["transport"], "multicast", "{h}: {r}");
        assert_eq!(r["multicast"]["complete"], true, "{h}: {r}");
        assert_eq!(
            std::fs::read(&pc_disks[i]).unwrap(),
            expected,
            "{h}'s disk is the image"
        );
        assert!(matches!(
            state.machine_status(h, Step::Deploy),
            Status::Succeeded { .. }
        ));
    }
    match state.machine_status("B204-P04", Step::Deploy) {
        Status::Failed { reason, .. } => {
            assert!(
                reason.contains("step g:deploy") && reason.contains("B204-P04"),
                "{reason}"
            );
            assert!(reason.contains("never booted into the agent"), "{reason}");
        }
        other => panic!("P04: {other:?}"),
    }
    assert!(matches!(
        state.machine_status("B204-P04", Step::Join),
        Status::Skipped { .. }
    ));
    assert_eq!(
        std::fs::read(&pc_disks[3]).unwrap()[1 << 20..(1 << 20) + 64],
        random(23, 64)[..],
        "P04's disk untouched"
    );
    match state.machine_status("B204-P05", Step::Deploy) {
        Status::Failed { reason, .. } => assert!(
            reason.contains("step g:deploy")
                && reason.contains("B204-P05: the agent failed")
                && reason.contains("smaller than the image"),
            "{reason}"
        ),
        other => panic!("P05: {other:?}"),
    }
}

#[test]
fn step_b_restores_the_base_image_on_the_master() {
    let srv = server();
    let lab = Lab::builder().pcs(1).build().unwrap();
    let master_node = lab.pc(0).unwrap();
    let master_disk = srv.dir.path().join("master.img");
    disk(&master_disk, &[(0, random(9, 8 << 20))]);
    let machines = vec![Machine {
        hostname: "B204-M".into(),
        mac: mac_of(master_node),
    }];
    let boot = LabBoot::new(
        Path::new(env!("CARGO_BIN_EXE_roomcast")),
        &srv.public,
        &srv.dir.path().join("agents"),
    )
    .pc("B204-M", master_node.netns(), &master_disk);
    let cfg = config(&srv, &lab, machines, "B204-M");
    let event = lab
        .server()
        .run(move || {
            let mut w = ImagingWorker::new(cfg, Box::new(boot));
            w.run_step(Step::Master, &State::default())
        })
        .unwrap();
    assert_eq!(event, Event::StepSucceeded { step: Step::Master });
    assert_eq!(sha256(&master_disk), sha256(&srv.base_disk));
}

#[test]
fn a_chunk_corrupted_in_upload_is_refused_and_named() {
    let srv = server();
    let lab = Lab::builder().pcs(2).build().unwrap();
    let (master_node, pc_node) = (lab.pc(0).unwrap(), lab.pc(1).unwrap());
    let master = Machine {
        hostname: "B204-M".into(),
        mac: mac_of(master_node),
    };
    let pc_mac = mac_of(pc_node);
    let interface = lab.server().ifname().to_string();
    let store = srv.store.clone();
    let key = srv.key.clone();
    let work = srv.dir.path().join("work");
    let (tx, rx) = std::sync::mpsc::channel::<(String, roomcast::net::pxe_gate::SharedGate)>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server_thread = lab.server().spawn({
        let master = master.clone();
        move || {
            let capture = CaptureConfig {
                machine: master.mac,
                store,
                signer: Arc::new(Signer::load(&key).unwrap()),
                label: ImageLabel {
                    name: "b204".into(),
                    version: "1".into(),
                    profile: None,
                    captured_by: "test".into(),
                    captured_at: "2026-11-28T18:00:00Z".into(),
                },
                chunk_size: ChunkSize::new(CHUNK).unwrap(),
                level: 3,
                whole_disk: false,
            };
            let session = Session::start(
                SessionSpec {
                    campaign: "B204".into(),
                    interface,
                    subnet: SUBNET.parse().unwrap(),
                    http_port: 0,
                    boot_dir: work.join("boot"),
                    reports_dir: work.join("reports"),
                    cmdline: String::new(),
                    mode: AgentMode::Capture,
                    machines: vec![master],
                    multicast: None,
                    catch_up_wait: Duration::from_secs(1),
                    live: None,
                },
                None,
                Some(capture),
                &LabBoot::new(Path::new("/nonexistent"), Path::new("/x"), &work),
            )
            .unwrap();
            let info = session.info();
            tx.send((info.base_url.clone(), info.pxe_gate.clone()))
                .unwrap();
            done_rx.recv().unwrap();
        }
    });
    let (base, gate) = rx.recv().unwrap();
    // What proxyDHCP would have seen of the master's PXE boot: the address it takes.
    gate.lock().unwrap().observe(
        roomcast_proto::dhcp::Sighting {
            mac: master.mac,
            kind: roomcast_proto::dhcp::Sighted::Address(master_node.addr().addr()),
        },
        std::time::Instant::now(),
    );
    let data = random(77, CHUNK as usize);
    let hash = ChunkHash::of(&data);
    let mut corrupted = data.clone();
    corrupted[1000] ^= 0x40; // one bit flipped on the way
    let mut frame = Vec::new();
    Compressor::new(3)
        .unwrap()
        .compress(&corrupted, &mut frame)
        .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let (master_mac, b) = (master.mac, base.clone());
    let (script, pc_script) = master_node
        .run(move || {
            let get = |mac: Mac| {
                ureq::get(&format!("{b}/boot/{}.ipxe", mac.hyphenated()))
                    .call()
                    .unwrap()
                    .body_mut()
                    .read_to_string()
                    .unwrap()
            };
            (get(master_mac), get(pc_mac))
        })
        .unwrap();
    assert!(
        !pc_script.contains("roomcast.token="),
        "a PC outside the session gets no token"
    );
    let cmd = roomcast_proto::contract::AgentCmdline::parse_script(&script).unwrap();
    assert_eq!(cmd.mode, AgentMode::Capture);
    let url = format!(
        "{base}/capture/chunks/{}?index=2&len={CHUNK}",
        hash.to_hex()
    );
    let (refused, text, no_token, _) = master_node
        .run({
            let (agent, url, token, frame) = (agent.clone(), url.clone(), cmd.token.clone(), frame);
            move || {
                let mut r = agent
                    .put(&url)
                    .header(TOKEN_HEADER, &token)
                    .header(CONTRACT_HEADER, CONTRACT_VERSION.to_string())
                    .send(&frame[..])
                    .unwrap();
                let status = r.status().as_u16();
                let text = r.body_mut().read_to_string().unwrap();
                let anon = agent.put(&url).send(&frame[..]).unwrap().status().as_u16();
                (status, text, anon, ())
            }
        })
        .unwrap();
    assert_eq!(refused, 422, "{text}");
    assert!(
        text.contains(&format!("chunk #2 at offset {}", 2 * CHUNK))
            && text.contains(&hash.to_hex()),
        "the refusal names the chunk: {text}"
    );
    assert_eq!(no_token, 401);
    assert_eq!(srv.store.chunk_len(&hash), None, "nothing of it was stored");
    assert!(
        std::fs::read_dir(srv.store.tmp_dir())
            .unwrap()
            .next()
            .is_none(),
        "no temporary file left"
    );
    done_tx.send(()).unwrap();
    server_thread.join().unwrap().unwrap();
}
