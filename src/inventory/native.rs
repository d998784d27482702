//! GLPI native inventory: a PC's hardware facts become the JSON document GLPI's
//! `/front/inventory.php` accepts (the glpi-agent format, `shared/glpi/inventory.schema.json`).
//!
//! GLPI matches the existing asset by serial (`bios.ssn`), `hardware.uuid` and MAC addresses, so the
//! document always carries all three when known.
//!
//! No personal data (framework 7.4.1.2): the document never has users, logins, last logged-in user,
//! processes, environment or user folders. [`PERSONAL_DATA_KEYS`] lists the keys that must never
//! appear; [`personal_data_keys`] finds them, and the GLPI adapter refuses to send a document that
//! has any.

use super::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::path::Path;

/// Keys of the inventory format that carry personal data, which roomcast never sends.
pub const PERSONAL_DATA_KEYS: &[&str] = &[
    "users",
    "local_users",
    "local_groups",
    "login",
    "lastloggeduser",
    "datelastloggeduser",
    "userid",
    "username",
    "accesslog",
    "winowner",
    "wincompany",
    "processes",
    "envs",
    "folder",
];

/// The hardware facts the agent gathers on a PC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardwareFacts {
    /// The PC's hostname.
    pub hostname: String,
    /// System serial number (SMBIOS), GLPI's main matching key.
    pub serial: String,
    /// System UUID (SMBIOS).
    pub uuid: String,
    /// System manufacturer, e.g. `Dell Inc.`.
    pub vendor: String,
    /// System model, e.g. `OptiPlex 7090`.
    pub model: String,
    /// Chassis type name (`Desktop`, `Notebook`, ...), when known.
    pub chassis: Option<String>,
    /// BIOS manufacturer.
    pub bios_vendor: String,
    /// BIOS version.
    pub bios_version: String,
    /// BIOS date, `YYYY-MM-DD`.
    pub bios_date: Option<String>,
    /// Physical memory in MiB.
    pub memory_mib: Option<u64>,
    /// Network interfaces (loopback excluded).
    pub interfaces: Vec<NetInterface>,
    /// Fixed disks.
    pub disks: Vec<Disk>,
    /// The operating system.
    pub os: OsFacts,
}

/// One network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInterface {
    /// Kernel name, e.g. `enp0s31f6`.
    pub name: String,
    /// MAC address, lowercase.
    pub mac: String,
    /// Wireless interface.
    pub wifi: bool,
    /// Virtual interface (bridge, veth, ...), not a physical card.
    pub virtual_dev: bool,
    /// Link up.
    pub up: bool,
}

/// One fixed disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// Kernel name, e.g. `nvme0n1`.
    pub name: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Model, when the device reports one.
    pub model: String,
    /// Serial, when the device reports one.
    pub serial: String,
}

/// The operating system running (or installed) on the PC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsFacts {
    /// Short name, e.g. `Windows`, `Debian GNU/Linux`.
    pub name: String,
    /// Full name, e.g. `Microsoft Windows 11 Education`.
    pub full_name: String,
    /// Version, e.g. `23H2`, `12`.
    pub version: String,
    /// Kernel name, e.g. `linux`, `MSWin32`.
    pub kernel_name: String,
    /// Kernel version.
    pub kernel_version: String,
    /// Architecture, e.g. `x86_64`.
    pub arch: String,
}

/// A software of the profile with its version, as installed by the campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Software {
    /// Name as the catalog gives it.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Publisher.
    pub publisher: String,
}

/// The `versionclient` roomcast announces (GLPI shows it as the agent version).
pub fn version_client() -> String {
    format!("roomcast_v{}", env!("CARGO_PKG_VERSION"))
}

fn put(map: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        map.insert(key.to_string(), Value::String(value.to_string()));
    }
}

/// Builds the native inventory document for one PC. `at` is when the facts were gathered: it
/// makes the `deviceid` (glpi-agent's `<hostname>-YYYY-MM-DD-HH-MM-SS`).
pub fn document(facts: &HardwareFacts, software: &[Software], at: Timestamp) -> Value {
    let mut hardware = Map::new();
    put(&mut hardware, "name", &facts.hostname);
    put(&mut hardware, "uuid", &facts.uuid);
    if let Some(c) = &facts.chassis {
        put(&mut hardware, "chassis_type", c);
    }
    if let Some(m) = facts.memory_mib {
        hardware.insert("memory".into(), json!(m));
    }
    hardware.insert("vmsystem".into(), json!("Physical"));

    let mut bios = Map::new();
    put(&mut bios, "ssn", &facts.serial);
    put(&mut bios, "smanufacturer", &facts.vendor);
    put(&mut bios, "smodel", &facts.model);
    put(&mut bios, "bmanufacturer", &facts.bios_vendor);
    put(&mut bios, "bversion", &facts.bios_version);
    if let Some(d) = &facts.bios_date {
        put(&mut bios, "bdate", d);
    }

    let networks: Vec<Value> = facts
        .interfaces
        .iter()
        .map(|i| {
            json!({
                "description": i.name,
                "mac": i.mac,
                "type": if i.wifi { "wifi" } else { "ethernet" },
                "virtualdev": i.virtual_dev,
                "status": if i.up { "up" } else { "down" },
            })
        })
        .collect();

    let storages: Vec<Value> = facts
        .disks
        .iter()
        .map(|d| {
            let mut s = Map::new();
            put(&mut s, "name", &d.name);
            put(&mut s, "model", &d.model);
            put(&mut s, "serial", &d.serial);
            s.insert("type".into(), json!("disk"));
            // GLPI stores disk sizes in MB.
            s.insert("disksize".into(), json!(d.size_bytes / 1_000_000));
            Value::Object(s)
        })
        .collect();

    let mut os = Map::new();
    put(&mut os, "name", &facts.os.name);
    put(&mut os, "full_name", &facts.os.full_name);
    put(&mut os, "version", &facts.os.version);
    put(&mut os, "kernel_name", &facts.os.kernel_name);
    put(&mut os, "kernel_version", &facts.os.kernel_version);
    put(&mut os, "arch", &facts.os.arch);

    let softwares: Vec<Value> = software
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("name".into(), json!(s.name));
            put(&mut m, "version", &s.version);
            put(&mut m, "publisher", &s.publisher);
            Value::Object(m)
        })
        .collect();

    let host = if facts.hostname.is_empty() {
        "roomcast-agent"
    } else {
        &facts.hostname
    };
    json!({
        "action": "inventory",
        "itemtype": "Computer",
        "deviceid": format!("{host}-{}", at.to_device_suffix()),
        "content": {
            "versionclient": version_client(),
            "hardware": hardware,
            "bios": bios,
            "networks": networks,
            "storages": storages,
            "operatingsystem": os,
            "softwares": softwares,
        }
    })
}

/// Every key in `doc` (at any depth) that carries personal data; empty for a document roomcast may send.
pub fn personal_data_keys(doc: &Value) -> Vec<String> {
    let mut found = Vec::new();
    fn walk(v: &Value, path: &str, found: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let p = format!("{path}/{k}");
                    if PERSONAL_DATA_KEYS.contains(&k.to_ascii_lowercase().as_str()) {
                        found.push(p.clone());
                    }
                    walk(v, &p, found);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, &format!("{path}/{i}"), found);
                }
            }
            _ => {}
        }
    }
    walk(doc, "", &mut found);
    found
}

fn read_trim(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// SMBIOS chassis type number (DMI table 3) to the names glpi-agent uses.
fn chassis_name(code: &str) -> Option<String> {
    let name = match code.parse::<u32>().ok()? {
        3 => "Desktop",
        4 => "Low Profile Desktop",
        6 => "Mini Tower",
        7 => "Tower",
        8 => "Portable",
        9 => "Laptop",
        10 => "Notebook",
        13 => "All in One",
        14 => "Sub Notebook",
        15 => "Space-saving",
        30 => "Tablet",
        31 => "Convertible",
        35 => "Mini PC",
        36 => "Stick PC",
        _ => return None,
    };
    Some(name.to_string())
}

/// `/sys/class/dmi/id/bios_date` is `MM/DD/YYYY`; the schema wants `YYYY-MM-DD`.
fn bios_date(raw: &str) -> Option<String> {
    let mut parts = raw.split('/');
    let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
    let ok = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    (ok(m, 2) && ok(d, 2) && ok(y, 4)).then(|| format!("{y}-{m}-{d}"))
}

/// Reads the hardware facts of the running Linux system under `root` (`/` on a PC; a directory
/// tree in tests): `sys/class/dmi/id/*`, `sys/class/net/*`, `sys/block/*`, `etc/os-release`,
/// `proc/meminfo`, `proc/sys/kernel/{hostname,osrelease}`. Missing files give empty fields (the
/// serial and UUID need root); nothing about users is read.
pub fn read_linux_facts(root: &Path) -> HardwareFacts {
    let dmi = root.join("sys/class/dmi/id");
    let d = |f: &str| read_trim(&dmi.join(f));

    let mut interfaces = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.join("sys/class/net")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let dir = e.path();
            let mac = read_trim(&dir.join("address")).to_ascii_lowercase();
            if name == "lo" || mac.is_empty() || mac == "00:00:00:00:00:00" {
                continue;
            }
            // A physical card has a `device` link; bridges, veths and tunnels do not.
            let virtual_dev = !dir.join("device").exists();
            interfaces.push(NetInterface {
                wifi: dir.join("wireless").exists() || dir.join("phy80211").exists(),
                up: read_trim(&dir.join("operstate")) == "up",
                name,
                mac,
                virtual_dev,
            });
        }
    }
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));

    let mut disks = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.join("sys/block")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let skip = ["loop", "ram", "zram", "dm-", "sr", "md", "nbd", "fd"];
            if skip.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let dir = e.path();
            if read_trim(&dir.join("removable")) == "1" {
                continue;
            }
            let sectors: u64 = read_trim(&dir.join("size")).parse().unwrap_or(0);
            disks.push(Disk {
                model: read_trim(&dir.join("device/model")),
                serial: read_trim(&dir.join("device/serial")),
                // The kernel counts `size` in 512-byte sectors whatever the device's block size.
                size_bytes: sectors * 512,
                name,
            });
        }
    }
    disks.sort_by(|a, b| a.name.cmp(&b.name));

    let os_release = std::fs::read_to_string(root.join("etc/os-release")).unwrap_or_default();
    let field = |key: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let memory_mib = std::fs::read_to_string(root.join("proc/meminfo"))
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib / 1024);

    HardwareFacts {
        hostname: read_trim(&root.join("proc/sys/kernel/hostname")),
        serial: d("product_serial"),
        uuid: d("product_uuid").to_ascii_uppercase(),
        vendor: d("sys_vendor"),
        model: d("product_name"),
        chassis: chassis_name(&d("chassis_type")),
        bios_vendor: d("bios_vendor"),
        bios_version: d("bios_version"),
        bios_date: bios_date(&d("bios_date")),
        memory_mib,
        interfaces,
        disks,
        os: OsFacts {
            name: field("NAME"),
            full_name: field("PRETTY_NAME"),
            version: field("VERSION_ID"),
            kernel_name: "linux".into(),
            kernel_version: read_trim(&root.join("proc/sys/kernel/osrelease")),
            arch: std::env::consts::ARCH.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bios_dates_are_reordered_or_dropped() {
        assert_eq!(bios_date("02/06/2023").as_deref(), Some("2023-02-06"));
        assert_eq!(bios_date("2023-02-06"), None);
        assert_eq!(bios_date(""), None);
    }

    #[test]
    fn personal_keys_are_found_at_any_depth() {
        let doc =
            json!({"content": {"hardware": {"lastloggeduser": "x"}, "users": [{"login": "y"}]}});
        assert_eq!(
            personal_data_keys(&doc),
            [
                "/content/hardware/lastloggeduser",
                "/content/users",
                "/content/users/0/login"
            ]
        );
    }
}
