//! Steps f and g through the real boot chain: the imaging worker with `PxeBoot` (proxyDHCP + TFTP on
//! the room interface, boot scripts over HTTP) and qemu PCs (TCG, SeaBIOS + iPXE ROM) on a tap of the
//! lab's switch, next to a school DHCP server (dnsmasq). The master PXE-boots roomcast's boot
//! environment, whose init reads `roomcast.capture=1` and runs `roomcast agent --capture` on
//! `/dev/vda`; then a blank PC PXE-boots into `roomcast agent` and takes the journaled image from a
//! multicast session.

use crate::boot::pxe::{
    TEST_CMDLINE, VmSpec, build_bootenv, local_disk_boot_sector, pxe_room_with_school_dhcp, qemu,
    start_vm,
};
use roomcast::campaign::driver::Worker;
use roomcast::campaign::imaging::{ImagingConfig, ImagingWorker, Machine, PxeBoot};
use roomcast::serve::DataPlane;
use roomcast_proto::procedure::{Event, State, Step};
use roomcast_store::Store;
use roomcast_store::keys;
use sha2::{Digest, Sha256};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const DISK: u64 = 32 << 20;

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn master_captured_and_pc_deployed_through_real_pxe() {
    let _ = qemu(); // fails early with a clear message when tests/run.sh was not run
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (key, public, _) = keys::generate_files(&w.join("keys")).unwrap();
    let store = Store::open_or_create(&w.join("store")).unwrap();
    store.trust(&public).unwrap();
    let boot_dir = w.join("boot");
    build_bootenv(&boot_dir, &[&public]);

    let room = pxe_room_with_school_dhcp(2, w);
    let (lab, taps) = (&room.lab, &room.taps);

    // The master's disk: a boot sector, data, text; the PC's disk is blank.
    let master = VmSpec {
        mac: "52:54:00:18:06:01".into(),
        disk: w.join("master.img"),
        serial: w.join("master.serial"),
        boot_order: "n",
        uefi: false,
    };
    let f = std::fs::File::create(&master.disk).unwrap();
    f.set_len(DISK).unwrap();
    f.write_all_at(&local_disk_boot_sector(), 0).unwrap();
    f.write_all_at(
        &crate::store::util::random(0x2545_F491_4F6C_DD1D, 6 << 20),
        2 << 20,
    )
    .unwrap();
    f.write_all_at(&b"captured by PXE ".repeat(100_000), 20 << 20)
        .unwrap();
    drop(f);
    let pc = VmSpec {
        mac: "52:54:00:18:06:02".into(),
        disk: w.join("pc.img"),
        serial: w.join("pc.serial"),
        boot_order: "n",
        uefi: false,
    };
    std::fs::File::create(&pc.disk)
        .unwrap()
        .set_len(DISK)
        .unwrap();

    let machines = vec![
        Machine {
            hostname: "B204-M".into(),
            mac: master.mac.parse().unwrap(),
        },
        Machine {
            hostname: "B204-P01".into(),
            mac: pc.mac.parse().unwrap(),
        },
    ];
    let server = lab.server().clone();
    let mut cfg = ImagingConfig::new(
        "B204",
        machines,
        "B204-M",
        server.ifname(),
        "198.18.0.0/16".parse().unwrap(),
        store.root().to_path_buf(),
        key,
        "unused-at-f-and-g",
        w.join("work"),
    );
    cfg.boot_dir = Some(boot_dir);
    cfg.cmdline = TEST_CMDLINE.into();
    cfg.boot_timeout = Duration::from_secs(120);
    cfg.agent_timeout = Duration::from_secs(240);
    // A TCG-emulated PC running a debug agent drinks far below line rate: at 40 Mbit/s it writes
    // some blocks from the stream, starves, is declared dead after 10 s and catches up over HTTP
    // (the report says which); either way every chunk is verified before it is written.
    cfg.multicast = Some(DataPlane {
        group: SocketAddrV4::new(Ipv4Addr::new(239, 255, 78, 9), 9000),
        rate_bps: 40_000_000,
        min_rate_bps: 5_000_000,
        dead_after: Duration::from_secs(10),
        start_wait: Duration::from_secs(60),
        ..DataPlane::default()
    });
    let boot = PxeBoot {
        announce_ra: true,
        wake_packets: 1,
        ..PxeBoot::default()
    };

    // f: the worker serves; the master is powered on a moment later (as Wake-on-LAN would).
    let (master_tap, pc_tap) = (taps[0].clone(), taps[1].clone());
    let master_vm = std::thread::spawn({
        let (master, w) = (VmSpec::clone(&master), w.to_path_buf());
        move || {
            std::thread::sleep(Duration::from_secs(2));
            start_vm(&master_tap, &master, &w)
        }
    });
    let (event, mut imaging) = server
        .run(move || {
            let mut imaging = ImagingWorker::new(cfg, Box::new(boot));
            let event = imaging.run_step(Step::Capture, &State::default());
            (event, imaging)
        })
        .unwrap();
    let mut master_guard = master_vm.join().unwrap();
    let serial = |s: &VmSpec| std::fs::read_to_string(&s.serial).unwrap_or_default();
    let Event::ImageCaptured { image } = event else {
        panic!("{event:?}\n--- master ---\n{}", serial(&master));
    };
    master_guard.wait_at_most(Duration::from_secs(120));
    assert!(
        serial(&master).contains("roomcast: image captured"),
        "{}",
        serial(&master)
    );
    let id = store.resolve(&image).unwrap();
    let m = store.open_verified(&id).unwrap();
    assert_eq!(m.disk_size, DISK);
    assert_eq!(
        m.partition_table.kind(),
        "mbr",
        "the boot sector's signature"
    );

    // g: one PC, blank disk, through the same boot chain, served the journaled image.
    let state = State {
        image: Some(image.clone()),
        ..State::default()
    };
    let pc_vm = std::thread::spawn({
        let (pc, w) = (VmSpec::clone(&pc), w.to_path_buf());
        move || {
            std::thread::sleep(Duration::from_secs(2));
            start_vm(&pc_tap, &pc, &w)
        }
    });
    let event = server
        .run(move || {
            imaging.begin_batch(Step::Deploy, &[("B204-P01".into(), 1)], &state);
            let event = imaging.run_on_machine(Step::Deploy, "B204-P01", 1);
            imaging.end_batch(Step::Deploy);
            event
        })
        .unwrap();
    let mut pc_guard = pc_vm.join().unwrap();
    pc_guard.wait_at_most(Duration::from_secs(120));
    assert_eq!(
        event,
        Event::MachineSucceeded {
            step: Step::Deploy,
            machine: "B204-P01".into()
        },
        "{}",
        serial(&pc)
    );
    assert!(
        serial(&pc).contains("roomcast: image written"),
        "{}",
        serial(&pc)
    );
    assert_eq!(
        sha256(&pc.disk),
        sha256(&master.disk),
        "the PC's disk is the master's"
    );
    let report = w
        .join("work/reports/g")
        .join(format!("{}.json", pc.mac.replace(':', "-")));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(r["result"], "ok", "{r}");
    assert_eq!(r["image"], image, "{r}");
    assert_eq!(r["transport"], "multicast", "{r}");
    eprintln!("PC report: {r}");
    drop(room);
}

/// Step g then h of a Windows PC through the real boot chain (issue 15): a qemu PC PXE-boots the
/// boot environment, restores a Windows-shaped image (GPT: ESP, MSR, NTFS) onto `/dev/vda`, then
/// fetches its unattend.xml and writes it with the initramfs' own `ntfscp` through a loop device (the
/// `loop` module loaded by name) before powering off. The offline join blob comes from a stand-in
/// for Samba's `net` here: the real DC's provisioning is proven in `campaign::windows`.
#[test]
fn a_windows_pc_gets_its_unattend_xml_written_by_the_pxe_booted_agent() {
    use roomcast::campaign::imaging::WindowsJoin;
    use roomcast::campaign::steps::join::Domain;
    use roomcast::campaign::unattend::{WINDOWS_UNATTEND, WindowsSettings};
    use roomcast::secrets::NamedSecret;
    use roomcast_lab::dirty_disk::{self, FsKind};
    let _ = qemu();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (key, public, _) = keys::generate_files(&w.join("keys")).unwrap();
    let store = Store::open_or_create(&w.join("store")).unwrap();
    store.trust(&public).unwrap();
    let boot_dir = w.join("boot");
    build_bootenv(&boot_dir, &[&public]);
    let win =
        dirty_disk::build_windows(&w.join("win.img"), "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE")
            .unwrap();
    let signer = roomcast_store::keys::Signer::load(&key).unwrap();
    let id = roomcast_store::capture::capture(
        &store,
        &win.path,
        roomcast_store::manifest::ImageLabel {
            name: "win11".into(),
            version: "1".into(),
            profile: None,
            captured_by: "test".into(),
            captured_at: "2026-11-28T12:00:00Z".into(),
        },
        &signer,
        &roomcast_store::capture::CaptureOptions {
            chunk_size: roomcast_store::chunk::ChunkSize::new(1 << 20).unwrap(),
            level: 3,
            workers: 2,
        },
        &|_| {},
    )
    .unwrap()
    .id;
    // The stand-in for `net offlinejoin provision … printblob`: reads the password, prints a blob.
    let blob = "T0RKLWJsb2ItZm9yLXRoZS1weGUtdGVzdA".repeat(4);
    let net = w.join("net-stand-in");
    std::fs::write(
        &net,
        format!("#!/bin/sh\nread -r _pw\necho 'Provisioned'\necho '{blob}'\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&net, std::fs::Permissions::from_mode(0o755)).unwrap();

    let room = pxe_room_with_school_dhcp(1, w);
    let (lab, tap) = (&room.lab, room.taps[0].clone());
    let pc = VmSpec {
        mac: "52:54:00:18:07:02".into(),
        disk: w.join("pc.img"),
        serial: w.join("pc.serial"),
        boot_order: "n",
        uefi: false,
    };
    std::fs::File::create(&pc.disk)
        .unwrap()
        .set_len(win.size)
        .unwrap();
    let server = lab.server().clone();
    let mut cfg = ImagingConfig::new(
        "B204",
        vec![Machine {
            hostname: "B204-P07".into(),
            mac: pc.mac.parse().unwrap(),
        }],
        "B204-P07",
        server.ifname(),
        "198.18.0.0/16".parse().unwrap(),
        store.root().to_path_buf(),
        key,
        "unused-at-g",
        w.join("work"),
    );
    cfg.boot_dir = Some(boot_dir);
    cfg.cmdline = TEST_CMDLINE.into();
    cfg.boot_timeout = Duration::from_secs(120);
    cfg.agent_timeout = Duration::from_secs(400);
    cfg.multicast = None;
    cfg.windows_join = Some(WindowsJoin {
        net: vec![net.to_string_lossy().into_owned()],
        smb_conf: w.join("smb.conf"),
        domain: Domain {
            realm: "EIFFEL.TEST".into(),
            workgroup: "EIFFEL".into(),
            ou: "OU=B204,OU=Salles,DC=eiffel,DC=test".into(),
            server: None,
            user: "Administrator".into(),
            password: NamedSecret::new("AD_JOIN_EIFFEL", "not-used-by-the-stand-in"),
        },
        template: WINDOWS_UNATTEND.to_string(),
        settings: WindowsSettings::default(),
    });
    let boot = PxeBoot {
        announce_ra: true,
        wake_packets: 1,
        ..PxeBoot::default()
    };
    let state = State {
        image: Some(id.to_hex()),
        ..State::default()
    };
    let pc_vm = std::thread::spawn({
        let (pc, w) = (VmSpec::clone(&pc), w.to_path_buf());
        move || {
            std::thread::sleep(Duration::from_secs(2));
            start_vm(&tap, &pc, &w)
        }
    });
    let (g, h) = server
        .run(move || {
            let mut imaging = ImagingWorker::new(cfg, Box::new(boot));
            imaging.begin_batch(Step::Deploy, &[("B204-P07".into(), 1)], &state);
            let g = imaging.run_on_machine(Step::Deploy, "B204-P07", 1);
            imaging.end_batch(Step::Deploy);
            let h = imaging.run_on_machine(Step::Join, "B204-P07", 1);
            (g, h)
        })
        .unwrap();
    let mut pc_guard = pc_vm.join().unwrap();
    pc_guard.wait_at_most(Duration::from_secs(120));
    let serial = std::fs::read_to_string(&pc.serial).unwrap_or_default();
    assert_eq!(
        (g, h),
        (
            Event::MachineSucceeded {
                step: Step::Deploy,
                machine: "B204-P07".into()
            },
            Event::MachineSucceeded {
                step: Step::Join,
                machine: "B204-P07".into()
            }
        ),
        "{serial}"
    );
    assert!(!serial.contains(&blob), "the blob on the PC's console");
    let ntfs = win.part(FsKind::Ntfs).unwrap();
    let part = w.join("pc-ntfs.img");
    dirty_disk::extract(&pc.disk, ntfs, &part).unwrap();
    let out = Command::new("ntfscat")
        .arg(&part)
        .arg("Windows/Panther/unattend.xml")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let xml = String::from_utf8(out.stdout).unwrap();
    assert!(
        xml.contains("<ComputerName>B204-P07</ComputerName>"),
        "{xml}"
    );
    assert!(xml.contains(&format!("<AccountData>{blob}</AccountData>")));
    let report = w
        .join("work/reports/g")
        .join(format!("{}.json", pc.mac.replace(':', "-")));
    let text = std::fs::read_to_string(report).unwrap();
    assert!(!text.contains(&blob), "the blob in the report");
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["unattend"]["partition"], 3, "{r}");
    assert_eq!(
        r["unattend"]["path"], "Windows\\Panther\\unattend.xml",
        "{r}"
    );
    eprintln!("PC report: {r}");
    drop(room);
}
