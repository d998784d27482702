//! Native inventory documents: built from hardware facts (given, read from a sysfs tree, read from
//! this machine), valid against GLPI's schema, free of personal data, accepted by the stand-in's
//! `/front/inventory.php` as JSON and zlib.

use super::contract::{APP, USER};
use super::standin::{StandIn, State, assert_valid_inventory, schema_errors};
use roomcast::inventory::Timestamp;
use roomcast::inventory::glpi::{GlpiError, InventoryEncoding, send_native_inventory};
use roomcast::inventory::native::{
    Cpu, Disk, HardwareFacts, NetInterface, OsFacts, PERSONAL_DATA_KEYS, Software, document,
    personal_data_keys, read_linux_facts,
};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

pub fn facts(n: u32) -> HardwareFacts {
    HardwareFacts {
        hostname: format!("B204-PC{n:02}"),
        serial: format!("SN{n:04}"),
        uuid: format!("4C4C4544-0034-3010-8048-B6C04F5037{n:02}"),
        vendor: "Dell Inc.".into(),
        model: "OptiPlex 7090".into(),
        board_vendor: "Dell Inc.".into(),
        board_name: "0W0CHX".into(),
        chassis: Some("Desktop".into()),
        bios_vendor: "Dell Inc.".into(),
        bios_version: "1.4.3".into(),
        bios_date: Some("2023-02-06".into()),
        memory_mib: Some(16384),
        cpus: vec![Cpu {
            name: "11th Gen Intel(R) Core(TM) i5-11500 @ 2.70GHz".into(),
            manufacturer: "GenuineIntel".into(),
            cores: 6,
            threads: 12,
        }],
        interfaces: vec![NetInterface {
            name: "enp0s31f6".into(),
            mac: format!("b0:5d:95:11:32:{n:02x}"),
            wifi: false,
            virtual_dev: false,
            up: true,
        }],
        disks: vec![Disk {
            name: "nvme0n1".into(),
            size_bytes: 512_110_190_592,
            model: "PC SN730 NVMe WDC 512GB".into(),
            serial: format!("WD{n:06}"),
        }],
        os: OsFacts {
            name: "Windows".into(),
            full_name: "Microsoft Windows 11 Education".into(),
            version: "23H2".into(),
            kernel_name: "MSWin32".into(),
            kernel_version: "10.0.22631".into(),
            arch: "64-bit".into(),
        },
    }
}

pub fn software() -> Vec<Software> {
    vec![
        Software {
            name: "Mozilla Firefox".into(),
            version: "128.0".into(),
            publisher: "Mozilla".into(),
        },
        Software {
            name: "GeoGebra Classic".into(),
            version: "6.0.846".into(),
            publisher: "International GeoGebra Institute".into(),
        },
    ]
}

const AT: Timestamp = Timestamp(1_795_874_709);

#[test]
fn document_carries_serial_uuid_macs_os_and_software_and_validates() {
    let doc = document(&facts(7), &software(), AT);
    assert_valid_inventory(&doc);
    assert_eq!(doc["deviceid"], "B204-PC07-2026-11-28-14-05-09");
    assert_eq!(doc["itemtype"], "Computer");
    let c = &doc["content"];
    assert_eq!(c["bios"]["ssn"], "SN0007");
    assert_eq!(
        c["hardware"]["uuid"],
        "4C4C4544-0034-3010-8048-B6C04F503707"
    );
    assert_eq!(c["networks"][0]["mac"], "b0:5d:95:11:32:07");
    assert_eq!(
        c["operatingsystem"]["full_name"],
        "Microsoft Windows 11 Education"
    );
    assert_eq!(c["softwares"][1]["name"], "GeoGebra Classic");
    assert_eq!(c["softwares"][1]["version"], "6.0.846");
    assert_eq!(c["storages"][0]["disksize"], 512_110);
}

#[test]
fn document_has_no_personal_data_keys() {
    let doc = document(&facts(1), &software(), AT);
    assert_eq!(personal_data_keys(&doc), Vec::<String>::new());
    // Belt and braces: no forbidden key appears anywhere in the serialized text either.
    let text = serde_json::to_string(&doc).unwrap();
    for k in PERSONAL_DATA_KEYS {
        assert!(!text.contains(&format!("\"{k}\"")), "{k} in {text}");
    }
}

#[test]
fn schema_rejects_what_glpi_rejects() {
    // The validator is not vacuous: a document without versionclient, or with a bad network type,
    // fails.
    let mut doc = document(&facts(1), &[], AT);
    doc["content"]
        .as_object_mut()
        .unwrap()
        .remove("versionclient");
    assert!(!schema_errors(&doc).is_empty());
    let mut doc = document(&facts(1), &[], AT);
    doc["content"]["networks"][0]["type"] = json!("carrier-pigeon");
    assert!(!schema_errors(&doc).is_empty());
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn facts_are_read_from_a_sysfs_tree() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    for (f, v) in [
        ("product_serial", "640HP72\n"),
        ("product_uuid", "4c4c4544-0034-3010-8048-b6c04f503732\n"),
        ("sys_vendor", "Dell Inc.\n"),
        ("product_name", "OptiPlex 7090\n"),
        ("bios_vendor", "Dell Inc.\n"),
        ("bios_version", "1.4.3\n"),
        ("bios_date", "02/06/2023\n"),
        ("chassis_type", "3\n"),
    ] {
        write(r, &format!("sys/class/dmi/id/{f}"), v);
    }
    write(r, "sys/class/net/lo/address", "00:00:00:00:00:00\n");
    write(r, "sys/class/net/enp0s31f6/address", "B0:5D:95:11:32:32\n");
    write(r, "sys/class/net/enp0s31f6/operstate", "up\n");
    std::fs::create_dir_all(r.join("sys/class/net/enp0s31f6/device")).unwrap();
    write(r, "sys/class/net/br0/address", "02:00:00:00:00:01\n");
    write(r, "sys/block/nvme0n1/size", "1000215216\n");
    write(r, "sys/block/nvme0n1/removable", "0\n");
    write(r, "sys/block/nvme0n1/device/model", "PC SN730\n");
    write(r, "sys/block/loop0/size", "100\n");
    write(r, "sys/block/sdb/size", "100\n");
    write(r, "sys/block/sdb/removable", "1\n");
    write(
        r,
        "etc/os-release",
        "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
    );
    write(r, "proc/meminfo", "MemTotal:       16318480 kB\n");
    write(r, "proc/sys/kernel/hostname", "b204-pc07\n");
    write(r, "proc/sys/kernel/osrelease", "6.1.0-13-amd64\n");

    let f = read_linux_facts(r);
    assert_eq!(f.serial, "640HP72");
    assert_eq!(f.uuid, "4C4C4544-0034-3010-8048-B6C04F503732");
    assert_eq!(f.bios_date.as_deref(), Some("2023-02-06"));
    assert_eq!(f.chassis.as_deref(), Some("Desktop"));
    assert_eq!(f.memory_mib, Some(15936));
    assert_eq!(f.hostname, "b204-pc07");
    let names: Vec<_> = f
        .interfaces
        .iter()
        .map(|i| (i.name.as_str(), i.virtual_dev))
        .collect();
    assert_eq!(names, [("br0", true), ("enp0s31f6", false)]);
    assert_eq!(f.interfaces[1].mac, "b0:5d:95:11:32:32");
    assert_eq!(
        f.disks.len(),
        1,
        "loop and removable devices skipped: {:?}",
        f.disks
    );
    assert_eq!(f.disks[0].size_bytes, 1_000_215_216 * 512);
    assert_eq!(f.os.full_name, "Debian GNU/Linux 12 (bookworm)");
    let doc = document(&f, &software(), AT);
    assert_valid_inventory(&doc);
    assert!(personal_data_keys(&doc).is_empty());
}

#[test]
fn facts_of_this_machine_make_a_valid_document() {
    let f = read_linux_facts(Path::new("/"));
    assert!(!f.os.kernel_version.is_empty(), "{f:?}");
    let doc = document(&f, &[], AT);
    assert_valid_inventory(&doc);
    assert!(personal_data_keys(&doc).is_empty());
}

#[test]
fn inventory_posts_as_json_and_zlib_and_bad_documents_get_400() {
    let s = StandIn::start(State::new(Some(APP), USER, &[]));
    let t = Duration::from_secs(5);
    let good = document(&facts(3), &software(), AT);
    send_native_inventory(&s.url(), t, "agent-3", &good, InventoryEncoding::Json).unwrap();
    send_native_inventory(&s.url(), t, "agent-3", &good, InventoryEncoding::Zlib).unwrap();
    let mut bad = good.clone();
    bad["content"]["networks"][0]["status"] = json!("sideways");
    let e =
        send_native_inventory(&s.url(), t, "agent-3", &bad, InventoryEncoding::Zlib).unwrap_err();
    match &e {
        GlpiError::InventoryRejected {
            status, message, ..
        } => {
            assert_eq!(*status, 400);
            assert!(message.contains("does not validate"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    s.with(|st| {
        assert_eq!(st.inventories.len(), 2);
        assert_eq!(st.inventories[0].0, "agent-3");
        assert_eq!(st.inventories[0].2, "application/json");
        assert_eq!(st.inventories[1].2, "application/x-compress-zlib");
        for (_, doc, _) in &st.inventories {
            assert_valid_inventory(doc);
        }
    });
}

#[test]
fn a_document_with_personal_data_is_never_sent() {
    let s = StandIn::start(State::new(Some(APP), USER, &[]));
    let mut doc = document(&facts(3), &[], AT);
    doc["content"]["users"] = json!([{"login": "eleve42"}]);
    // Still schema-valid: the refusal is roomcast's rule, not GLPI's.
    assert_valid_inventory(&doc);
    let e = send_native_inventory(
        &s.url(),
        Duration::from_secs(5),
        "a",
        &doc,
        InventoryEncoding::Json,
    )
    .unwrap_err();
    assert!(matches!(e, GlpiError::PersonalData { .. }), "{e:?}");
    s.with(|st| assert_eq!(st.count("POST inventory"), 0));
}
