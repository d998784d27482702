//! One PC model per room, checked on the PC (issue 15, items 3 and 4), through the real boot chain:
//! the imaging worker with `PxeBoot` and two qemu PCs given SMBIOS tables (`-smbios type=1,...`).
//! The PC of the profile's model is imaged; the one qemu calls another product is refused at g
//! before anything is written (its disk hashes the same before and after) while the other
//! finishes. Both PCs' facts reach the inventory, and the GLPI document queued for each validates
//! against GLPI's schema and carries the SMBIOS values qemu was given.

use crate::boot::pxe::{
    IMAGE_SIZE, TEST_CMDLINE, VmSpec, build_bootenv, capture_image, local_disk_boot_sector,
    pxe_room_with_school_dhcp, qemu, sha256, smbios, start_vm_with,
};
use crate::inventory::standin::assert_valid_inventory;
use roomcast::campaign::driver::Worker;
use roomcast::campaign::imaging::{ImagingConfig, ImagingWorker, Machine, PxeBoot};
use roomcast::inventory::db::{InventoryDb, OutboxPayload};
use roomcast_proto::contract::PcExpected;
use roomcast_proto::procedure::{Event, State, Step};
use std::os::unix::fs::FileExt;
use std::time::Duration;

const PROFILE_MODEL: &str = "Virtual PC";

struct Pc {
    vm: VmSpec,
    hostname: &'static str,
    smbios: Vec<String>,
}

#[test]
fn a_pc_of_another_model_is_refused_at_g_and_the_other_finishes() {
    let _ = qemu(); // fails early with a clear message when tests/run.sh was not run
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let image = capture_image(w);
    let boot_dir = w.join("boot");
    build_bootenv(&boot_dir, &[&image.pub_file]);

    let room = pxe_room_with_school_dhcp(2, w);
    let (lab, taps) = (&room.lab, &room.taps);

    let vm = |n: u8| VmSpec {
        mac: format!("52:54:00:18:15:{n:02x}"),
        disk: w.join(format!("pc{n}.img")),
        serial: w.join(format!("pc{n}.serial")),
        boot_order: "n",
        uefi: false,
    };
    let pcs = [
        // The room's model, but its serial is not the room file's: a warning, imaged all the same.
        Pc {
            vm: vm(1),
            hostname: "B204-P01",
            smbios: smbios("Roomcast Lab", PROFILE_MODEL, "VPC-0001-SWAPPED", "RB-1"),
        },
        // Another model: refused, nothing written.
        Pc {
            vm: vm(2),
            hostname: "B204-P02",
            smbios: smbios("Roomcast Lab", "Other PC 9000", "VPC-0002", "RB-9"),
        },
    ];
    for (i, pc) in pcs.iter().enumerate() {
        let f = std::fs::File::create(&pc.vm.disk).unwrap();
        f.set_len(IMAGE_SIZE).unwrap();
        // What the PC held before: its own system (a boot sector and data).
        f.write_all_at(&local_disk_boot_sector(), 0).unwrap();
        f.write_all_at(
            &crate::store::util::random(0x15 + i as u64, 3 << 20),
            4 << 20,
        )
        .unwrap();
    }
    let before: Vec<String> = pcs.iter().map(|p| sha256(&p.vm.disk)).collect();
    assert_ne!(before[0], image.source_sha256);

    let machines: Vec<Machine> = pcs
        .iter()
        .map(|p| Machine {
            hostname: p.hostname.into(),
            mac: p.vm.mac.parse().unwrap(),
        })
        .collect();
    let server = lab.server().clone();
    let mut cfg = ImagingConfig::new(
        "B204",
        machines.clone(),
        "B204-P01",
        server.ifname(),
        "198.18.0.0/16".parse().unwrap(),
        image.store.clone(),
        w.join("unused-signer-at-g"),
        "unused-at-g",
        w.join("work"),
    );
    cfg.boot_dir = Some(boot_dir);
    cfg.cmdline = format!("{TEST_CMDLINE} roomcast.wait=2");
    cfg.boot_timeout = Duration::from_secs(120);
    cfg.agent_timeout = Duration::from_secs(240);
    cfg.multicast = None;
    cfg.expected = machines
        .iter()
        .zip(["VPC-0001", "VPC-0002"])
        .map(|(m, serial)| {
            (
                m.mac,
                PcExpected {
                    profile_model: PROFILE_MODEL.into(),
                    exception_model: None,
                    serial: serial.into(),
                },
            )
        })
        .collect();
    let db = w.join("roomcast.db");
    cfg.inventory = Some(db.clone());
    let boot = PxeBoot {
        announce_ra: true,
        wake_packets: 1,
        ..PxeBoot::default()
    };

    let specs: Vec<(String, VmSpec, Vec<String>)> = pcs
        .iter()
        .zip(taps)
        .map(|(p, tap)| {
            (
                tap.clone(),
                VmSpec {
                    mac: p.vm.mac.clone(),
                    disk: p.vm.disk.clone(),
                    serial: p.vm.serial.clone(),
                    boot_order: "n",
                    uefi: false,
                },
                p.smbios.clone(),
            )
        })
        .collect();
    // Powered on a moment after the session opens, as Wake-on-LAN would.
    let vms = std::thread::spawn({
        let w = w.to_path_buf();
        move || {
            std::thread::sleep(Duration::from_secs(2));
            specs
                .iter()
                .map(|(tap, vm, extra)| start_vm_with(tap, vm, &w, extra))
                .collect::<Vec<_>>()
        }
    });
    let state = State {
        image: Some(image.id.clone()),
        ..State::default()
    };
    let events = server
        .run(move || {
            let mut imaging = ImagingWorker::new(cfg, Box::new(boot));
            let batch = [("B204-P01".to_string(), 1), ("B204-P02".to_string(), 1)];
            imaging.begin_batch(Step::Deploy, &batch, &state);
            let events: Vec<Event> = batch
                .iter()
                .map(|(m, _)| imaging.run_on_machine(Step::Deploy, m, 1))
                .collect();
            imaging.end_batch(Step::Deploy);
            events
        })
        .unwrap();
    for mut g in vms.join().unwrap() {
        g.wait_at_most(Duration::from_secs(120));
    }
    let serial = |p: &Pc| std::fs::read_to_string(&p.vm.serial).unwrap_or_default();

    // The PC of the profile's model is imaged, its serial a warning.
    assert_eq!(
        events[0],
        Event::MachineSucceeded {
            step: Step::Deploy,
            machine: "B204-P01".into()
        },
        "{}",
        serial(&pcs[0])
    );
    assert_eq!(sha256(&pcs[0].vm.disk), image.source_sha256);
    assert!(
        serial(&pcs[0]).contains("roomcast: warning: serial differs: found `VPC-0001-SWAPPED`"),
        "{}",
        serial(&pcs[0])
    );
    // The other is refused with the reason, on the PC's screen too, and nothing was written.
    let want =
        format!("wrong model: found `Other PC 9000`, the room's profile wants `{PROFILE_MODEL}`");
    match &events[1] {
        Event::MachineFailed {
            machine, reason, ..
        } => {
            assert_eq!(machine, "B204-P02");
            assert!(reason.contains(&want), "{reason}");
        }
        other => panic!("{other:?}\n{}", serial(&pcs[1])),
    }
    assert!(serial(&pcs[1]).contains(&want), "{}", serial(&pcs[1]));
    assert_eq!(
        sha256(&pcs[1].vm.disk),
        before[1],
        "the refused PC's disk is unchanged"
    );

    // Both PCs' facts are in the inventory, with the warning and the refusal.
    let inv = InventoryDb::open(&db).unwrap();
    let f1 = inv
        .machine_facts(&pcs[0].vm.mac)
        .unwrap()
        .expect("P01's facts");
    assert_eq!(f1.hostname, "B204-P01");
    assert_eq!(f1.refused, None);
    assert_eq!(
        f1.warnings,
        ["serial differs: found `VPC-0001-SWAPPED`, the room file says `VPC-0001`"]
    );
    let f2 = inv
        .machine_facts(&pcs[1].vm.mac)
        .unwrap()
        .expect("P02's facts");
    assert!(
        f2.refused.as_deref().unwrap_or("").contains(&want),
        "{f2:?}"
    );

    // And a GLPI document for each, valid against GLPI's schema, carrying qemu's SMBIOS values.
    let docs: Vec<serde_json::Value> = inv
        .outbox_all()
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.payload {
            OutboxPayload::NativeInventory { document, .. } => Some(document),
            _ => None,
        })
        .collect();
    assert_eq!(docs.len(), 2, "{docs:#?}");
    for (pc, (product, serial_no, board)) in pcs.iter().zip([
        (PROFILE_MODEL, "VPC-0001-SWAPPED", "RB-1"),
        ("Other PC 9000", "VPC-0002", "RB-9"),
    ]) {
        let doc = docs
            .iter()
            .find(|d| d["content"]["hardware"]["name"] == pc.hostname)
            .unwrap_or_else(|| panic!("no document for {}: {docs:#?}", pc.hostname));
        eprintln!("{}: {doc}", pc.hostname);
        assert_valid_inventory(doc);
        let c = &doc["content"];
        assert_eq!(c["bios"]["smanufacturer"], "Roomcast Lab", "{doc}");
        assert_eq!(c["bios"]["smodel"], product, "{doc}");
        assert_eq!(c["bios"]["ssn"], serial_no, "{doc}");
        assert_eq!(c["bios"]["mmodel"], board, "{doc}");
        assert!(
            c["networks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["mac"] == pc.vm.mac.as_str()),
            "{doc}"
        );
        assert!(c["hardware"]["memory"].as_u64().unwrap_or(0) > 256, "{doc}");
        assert!(!c["cpus"].as_array().unwrap().is_empty(), "{doc}");
        assert_eq!(
            c["storages"][0]["disksize"].as_u64(),
            Some(IMAGE_SIZE / 1_000_000),
            "{doc}"
        );
    }
    drop(room);
}
