//! Steps f and g through the real boot chain: the imaging worker with `PxeBoot` (proxyDHCP + TFTP on
//! the room interface, boot scripts over HTTP) and qemu PCs (TCG, SeaBIOS + iPXE ROM) on a tap of the
//! lab's switch, next to a school DHCP server (dnsmasq). The master PXE-boots roomcast's boot
//! environment, whose init reads `roomcast.capture=1` and runs `roomcast agent --capture` on
//! `/dev/vda`; then a blank PC PXE-boots into `roomcast agent` and takes the journaled image from a
//! multicast session.

use crate::boot::pxe::{VmSpec, kernel_dir, local_disk_boot_sector, qemu, school_dhcp, start_vm};
use roomcast::campaign::driver::Worker;
use roomcast::campaign::imaging::{ImagingConfig, ImagingWorker, Machine, PxeBoot};
use roomcast::serve::DataPlane;
use roomcast_lab::Lab;
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
    let status = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["bootenv", "build", "--out"])
        .arg(&boot_dir)
        .arg("--kernel-dir")
        .arg(kernel_dir())
        .arg("--trusted-key")
        .arg(&public)
        .status()
        .unwrap();
    assert!(status.success(), "bootenv build");

    let mut lab = Lab::builder().pcs(0).build().unwrap();
    let school = lab.add_node("school").unwrap().clone();
    let taps = [lab.add_tap().unwrap(), lab.add_tap().unwrap()];
    let _dhcp = school_dhcp(&school, w);

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
    cfg.cmdline = "console=ttyS0".into();
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
        let (master, w) = (clone_spec(&master), w.to_path_buf());
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
    let _ = master_guard.0.wait();
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
        let (pc, w) = (clone_spec(&pc), w.to_path_buf());
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
    let _ = pc_guard.0.wait();
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
    drop(lab);
}

fn clone_spec(s: &VmSpec) -> VmSpec {
    VmSpec {
        mac: s.mac.clone(),
        disk: s.disk.clone(),
        serial: s.serial.clone(),
        boot_order: s.boot_order,
        uefi: s.uefi,
    }
}
