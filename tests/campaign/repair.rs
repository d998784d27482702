//! `repair` of one PC by day (issue 15, item 5), through the real boot chain: a room file (the
//! demo's region), the room's current image recorded in the inventory, two qemu PCs holding that
//! image, one of them changed by hand. `campaign::repair` wakes and serves that PC alone: it
//! PXE-boots into the agent, whose delta restore writes only the changed chunks; h runs for it (the
//! campaign's step runner: the Linux join over SSH, which fails here, the PC booting a bare boot
//! sector rather than a system with sshd, and is recorded so); the other PC of the room is never
//! booted into the agent (it PXE-boots its local disk) and its disk is unchanged.

use crate::boot::pxe::{
    IMAGE_SIZE, TEST_CMDLINE, VmSpec, build_bootenv, capture_image, pxe_room_with_school_dhcp,
    qemu, sha256, smbios, start_vm_with,
};
use roomcast::campaign::imaging::PxeBoot;
use roomcast::campaign::repair::{self, RepairOptions};
use roomcast::campaign::setup::SetupOptions;
use roomcast::clock::{Clock, SystemClock};
use roomcast::inventory::db::{InventoryDb, OutboxPayload};
use roomcast::inventory::{ImageDeployed, MachineRecord, Outcome, Timestamp};
use roomcast_proto::procedure::Step;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn repair_rewrites_only_the_changed_chunks_of_one_pc_and_runs_h() {
    let _ = qemu(); // fails early with a clear message when tests/run.sh was not run
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let image = capture_image(w);
    let boot_dir = w.join("boot");
    build_bootenv(&boot_dir, &[&image.pub_file]);

    let room = pxe_room_with_school_dhcp(2, w);
    let (lab, taps) = (&room.lab, &room.taps);
    let server = lab.server().clone();

    // The room: the demo's region (two PCs, 52:54:00:de:00:01 and :02, "Virtual PC").
    let addresses = ["198.18.1.1".to_string(), "198.18.1.2".to_string()];
    let region =
        roomcast::demo::region::write(&w.join("repo"), &addresses, server.ifname()).unwrap();
    let secrets = w.join("secrets");
    std::fs::write(
        &secrets,
        format!("{}=Administrator%pw\n", roomcast::demo::region::JOIN_SECRET),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ssh_key = w.join("id_ed25519");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&ssh_key)
        .status()
        .unwrap();
    assert!(keygen.success());

    // Both PCs hold the room's image since last night's campaign; one was changed by hand since.
    let pc = |n: u8, boot_order: &'static str| VmSpec {
        mac: format!("52:54:00:de:00:{n:02x}"),
        disk: w.join(format!("pc{n}.img")),
        serial: w.join(format!("pc{n}.serial")),
        boot_order,
        uefi: false,
    };
    let other = pc(1, "order=nc");
    let target = pc(2, "n");
    for p in [&other, &target] {
        std::fs::copy(&image.source, &p.disk).unwrap();
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&target.disk)
        .unwrap();
    // Two chunks changed by hand (1 MiB chunks): one in the random data, one in the text.
    f.write_all_at(b"changed by hand", (2 << 20) + 100).unwrap();
    f.write_all_at(b"changed by hand", (12 << 20) + 4096)
        .unwrap();
    drop(f);
    let other_before = sha256(&other.disk);
    assert_ne!(sha256(&target.disk), image.source_sha256);

    // The inventory knows the room's current image (last night's deploy).
    let db = w.join("roomcast.db");
    {
        let mut inv = InventoryDb::open(&db).unwrap();
        for (i, p) in [&other, &target].iter().enumerate() {
            inv.upsert_machine(
                &MachineRecord {
                    school_uai: roomcast::demo::region::UAI.into(),
                    room: roomcast::demo::region::ROOM.into(),
                    hostname: roomcast::demo::region::hostname(i),
                    mac: p.mac.clone(),
                    serial: format!("DEMO{:04}", i + 1),
                    model: "Virtual PC".into(),
                    glpi_id: None,
                },
                Timestamp(1_000),
            )
            .unwrap();
            inv.record_image_deployed(
                &ImageDeployed {
                    campaign: "last-night".into(),
                    machine: p.mac.clone(),
                    image_id: image.id.clone(),
                    image_version: "night".into(),
                    at: Timestamp(2_000),
                    result: Outcome::Ok,
                },
                Timestamp(2_000),
            )
            .unwrap();
        }
    }

    let hostname = roomcast::demo::region::hostname(1);
    let opts = RepairOptions {
        setup: SetupOptions {
            room_file: region.room_file.clone(),
            installers: w.join("installers"),
            shares: w.join("shares"),
            dir: w.join("repair"),
            ssh_user: "root".into(),
            ssh_key,
            known_hosts: w.join("known_hosts"),
            port: 22,
            connect_timeout_secs: 3,
            software_only: false,
            retries: Some(0),
            staging_dir: None,
            join_paths: None,
            domain_controller: None,
            secrets: Some(secrets),
        },
        hostname: hostname.to_lowercase(),
        store: image.store.clone(),
        signer_key: w.join("unused-signer"),
        image: None,
        db: db.clone(),
        work_dir: w.join("repair"),
        today: SystemClock.today(),
    };
    let mut prepared = repair::prepare(&opts).unwrap();
    assert_eq!(prepared.image(), image.id, "the room's current image");
    assert_eq!(prepared.mac().to_string(), target.mac);
    prepared.config.boot_dir = Some(boot_dir);
    prepared.config.cmdline = format!("{TEST_CMDLINE} roomcast.wait=2");
    prepared.config.boot_timeout = Duration::from_secs(120);
    prepared.config.agent_timeout = Duration::from_secs(240);
    let boot = PxeBoot {
        announce_ra: true,
        wake_packets: 1,
        ..PxeBoot::default()
    };

    // Both PCs power on (say the technician pressed both buttons, or the other one was in use).
    let vms = std::thread::spawn({
        let w = w.to_path_buf();
        // The room's model ("Virtual PC", the demo profile's), with the room file's serials.
        let specs = [
            (taps[0].clone(), other.clone(), "DEMO0001"),
            (taps[1].clone(), target.clone(), "DEMO0002"),
        ];
        move || {
            std::thread::sleep(Duration::from_secs(2));
            specs
                .iter()
                .map(|(tap, vm, serial)| {
                    let id = smbios("roomcast", "Virtual PC", serial, "RB-1");
                    start_vm_with(tap, vm, &w, &id)
                })
                .collect::<Vec<_>>()
        }
    });
    let out = server
        .run(move || {
            prepared.run(Box::new(boot), &SystemClock, &|p| {
                eprintln!("repair: {p:?}")
            })
        })
        .unwrap()
        .unwrap();
    let mut vms = vms.join().unwrap();
    vms[1].wait_at_most(Duration::from_secs(120));
    let serial = |p: &VmSpec| std::fs::read_to_string(&p.serial).unwrap_or_default();
    // The other PC boots its own disk; wait (bounded) until its boot sector printed.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !serial(&other).contains("LOCAL-DISK-BOOTED") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(vms);

    eprintln!("{out:?}");
    assert_eq!(out.deploy, Ok(()), "{}", serial(&target));
    assert_eq!(sha256(&target.disk), image.source_sha256, "repaired");
    let f = out.figures.as_ref().expect("the agent's figures");
    assert_eq!(f.written_chunks, 2, "only the changed chunks: {f:?}");
    assert_eq!(f.zeroed_chunks, 0, "{f:?}");
    assert_eq!(
        f.unchanged_chunks + f.written_chunks + f.unused_chunks + f.zeroed_chunks,
        f.chunks,
        "{f:?}"
    );
    assert!(f.unchanged_chunks > 0, "{f:?}");
    assert_eq!(f.chunks, IMAGE_SIZE >> 20);
    // h ran for it: the Linux join over SSH, which cannot succeed on a PC without sshd.
    let join = out.join.clone().expect("h ran");
    let why = join.expect_err("no sshd on this PC");
    assert!(
        why.contains(&hostname) || why.contains("198.18.1.2"),
        "{why}"
    );
    // The other PC never booted into the agent and its disk is unchanged.
    assert!(
        serial(&other).contains("LOCAL-DISK-BOOTED"),
        "{}",
        serial(&other)
    );
    assert!(!serial(&other).contains("roomcast:"), "{}", serial(&other));
    assert_eq!(sha256(&other.disk), other_before);
    assert!(
        !w.join("repair/reports/g")
            .join(format!("{}.json", other.mac.replace(':', "-")))
            .exists()
    );

    // The intervention is in the inventory and queued for GLPI under its own ticket.
    let inv = InventoryDb::open(&db).unwrap();
    let steps: Vec<(Step, Outcome, String)> = inv
        .interventions(None)
        .unwrap()
        .into_iter()
        .filter(|i| i.campaign == out.intervention)
        .map(|i| (i.step, i.result, i.machine))
        .collect();
    assert_eq!(
        steps,
        [
            (Step::Deploy, Outcome::Ok, target.mac.clone()),
            (Step::Join, Outcome::Failed, target.mac.clone())
        ]
    );
    let row = inv.machine(&target.mac).unwrap().unwrap();
    assert_eq!(row.last_image_id.as_deref(), Some(image.id.as_str()));
    let queued: Vec<String> = inv
        .outbox_all()
        .unwrap()
        .into_iter()
        .map(|r| match r.payload {
            OutboxPayload::NativeInventory { .. } => "inventory".to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    assert!(
        queued.iter().any(|q| q.contains(&out.intervention)),
        "{queued:#?}"
    );
    assert!(queued.iter().any(|q| q == "inventory"), "{queued:#?}");
    drop(room);
}

/// The room file's `model_exception` (no root, no qemu): `validate` accepts a machine of another
/// model only with it, the campaign's PC expectations carry that model, and `repair` names what
/// it cannot find (a hostname not in the room, no image recorded for the room).
#[test]
fn a_model_exception_is_written_down_and_repair_names_what_is_missing() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let addresses = ["198.18.1.1".to_string(), "198.18.1.2".to_string()];
    let region = roomcast::demo::region::write(&w.join("repo"), &addresses, "vsrv").unwrap();
    let room = std::fs::read_to_string(&region.room_file).unwrap();
    let second = "serial: 'DEMO0002'\n    model: 'Virtual PC'";
    assert!(room.contains(second), "{room}");
    let validate = |text: &str| {
        std::fs::write(&region.room_file, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .arg("validate")
            .arg(w.join("repo/region"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let other = room.replace(second, "serial: 'DEMO0002'\n    model: 'OptiPlex 7010'");
    let (code, text) = validate(&other);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("RC015"), "{text}");
    let excepted = other.replace(
        "model: 'OptiPlex 7010'",
        "model: 'OptiPlex 7010'\n    model_exception: 'spare PC after the flood, image tested on it'",
    );
    let (code, text) = validate(&excepted);
    assert_eq!(code, Some(0), "{text}");
    // An exception must say why: a blank one is refused, naming the file, line and field.
    let (code, text) = validate(&other.replace(
        "model: 'OptiPlex 7010'",
        "model: 'OptiPlex 7010'\n    model_exception: '  '",
    ));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("RC040") && text.contains("`model_exception` is empty"),
        "{text}"
    );
    assert!(text.contains("DEMO.yaml:"), "{text}");
    std::fs::write(&region.room_file, &excepted).unwrap();

    let secrets = w.join("secrets");
    std::fs::write(
        &secrets,
        format!("{}=Administrator%pw\n", roomcast::demo::region::JOIN_SECRET),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let setup = SetupOptions {
        room_file: region.room_file.clone(),
        installers: w.join("installers"),
        shares: w.join("shares"),
        dir: w.join("repair"),
        ssh_user: "root".into(),
        ssh_key: w.join("no-key"),
        known_hosts: w.join("known_hosts"),
        port: 22,
        connect_timeout_secs: 3,
        software_only: false,
        retries: None,
        staging_dir: None,
        join_paths: None,
        domain_controller: None,
        secrets: Some(secrets),
    };
    let today = SystemClock.today();
    let built = roomcast::campaign::setup::build(&setup, today).unwrap();
    let config = roomcast::campaign::run::imaging_config(&built, w, w, w).unwrap();
    let expected: Vec<(String, String, Option<String>, String)> = config
        .expected
        .iter()
        .map(|(mac, e)| {
            (
                mac.to_string(),
                e.profile_model.clone(),
                e.exception_model.clone(),
                e.serial.clone(),
            )
        })
        .collect();
    assert_eq!(
        expected,
        [
            (
                "52:54:00:de:00:01".into(),
                "Virtual PC".into(),
                None,
                "DEMO0001".into()
            ),
            (
                "52:54:00:de:00:02".into(),
                "Virtual PC".into(),
                Some("OptiPlex 7010".into()),
                "DEMO0002".into()
            ),
        ]
    );

    let opts = |hostname: &str| RepairOptions {
        setup: setup.clone(),
        hostname: hostname.into(),
        store: w.join("store"),
        signer_key: w.join("key"),
        image: None,
        db: w.join("roomcast.db"),
        work_dir: w.join("repair"),
        today,
    };
    let e = repair::prepare(&opts("DEMO-PC09"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("has no machine `DEMO-PC09`") && e.contains("DEMO-PC01, DEMO-PC02"),
        "{e}"
    );
    assert!(e.contains(&region.room_file.display().to_string()), "{e}");
    let e = repair::prepare(&opts("DEMO-PC02"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("records no image deployed") && e.contains("--image"),
        "{e}"
    );
    // The same through the binary: exit 1, the reason on stderr.
    let out = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .arg("repair")
        .arg(&region.room_file)
        .arg("DEMO-PC09")
        .arg("--db")
        .arg(w.join("roomcast.db"))
        .args(["--store", "/nonexistent"])
        .arg("--secrets")
        .arg(setup.secrets.as_ref().unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("has no machine `DEMO-PC09`"), "{stderr}");
}
