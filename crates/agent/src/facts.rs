//! The PC's hardware facts (the contract's [`HardwareFacts`]): read from sysfs and procfs under a
//! root folder (`/` on a PC; a tree in tests), then sent to the server FIRST ([`clear`]), before
//! anything is written. The one reader of these facts: the server builds the GLPI document from
//! what arrives (`roomcast::inventory::native::document`), the tool reads a Linux machine's own
//! facts with this same function.
//!
//! Read: `sys/class/dmi/id/*` (vendor, product, serial, UUID, board, BIOS, chassis),
//! `proc/cpuinfo`, `proc/meminfo`, `sys/class/net/*`, the disks as [`crate::hw::disks`] lists them
//! (removable ones left out), `etc/os-release`, `proc/sys/kernel/{hostname,osrelease}`. A missing
//! file gives an empty field (the serial and UUID need root); nothing about users is read.

use crate::AgentError;
use crate::hw::read_trim;
use roomcast_proto::contract::facts::{Cpu, Disk, NetInterface, OsFacts};
use roomcast_proto::contract::{Clearance, HardwareFacts, path};
use std::collections::BTreeMap;
use std::path::Path;

/// Biggest answer to the facts POST the agent reads.
const MAX_CLEARANCE: u64 = 64 * 1024;

/// Sends `facts` to the server and returns its go/no-go. An `Err` is a failed exchange (the
/// server unreachable, a refused token, an unreadable answer): the caller writes nothing then.
pub(crate) fn clear(
    client: &crate::http::Client,
    facts: &HardwareFacts,
) -> Result<Clearance, AgentError> {
    let url = client.url(path::FACTS);
    let body = serde_json::to_vec(facts).expect("facts serialise");
    let (status, answer) = client.exchange("POST", &url, &body, MAX_CLEARANCE)?;
    let text = String::from_utf8_lossy(&answer);
    if status != 200 {
        return Err(AgentError::Http {
            url,
            reason: format!("{status}: {}", text.trim()),
        });
    }
    serde_json::from_slice(&answer).map_err(|e| AgentError::Http {
        url,
        reason: format!("clearance: {e}"),
    })
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

/// `/sys/class/dmi/id/bios_date` is `MM/DD/YYYY`; GLPI's schema wants `YYYY-MM-DD`.
fn bios_date(raw: &str) -> Option<String> {
    let mut parts = raw.split('/');
    let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
    let ok = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    (ok(m, 2) && ok(d, 2) && ok(y, 4)).then(|| format!("{y}-{m}-{d}"))
}

/// The processor packages of `/proc/cpuinfo` (x86: `physical id`, `cpu cores`, `siblings`; a
/// file without them is one package).
fn cpus(cpuinfo: &str) -> Vec<Cpu> {
    let mut packages: BTreeMap<String, Cpu> = BTreeMap::new();
    for block in cpuinfo.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let field = |k: &str| {
            block.lines().find_map(|l| {
                let (key, v) = l.split_once(':')?;
                (key.trim() == k).then(|| v.trim().to_string())
            })
        };
        let id = field("physical id").unwrap_or_default();
        let cpu = packages.entry(id).or_insert_with(|| Cpu {
            name: field("model name").unwrap_or_default(),
            manufacturer: field("vendor_id").unwrap_or_default(),
            cores: field("cpu cores").and_then(|c| c.parse().ok()).unwrap_or(0),
            threads: 0,
        });
        cpu.threads += 1;
    }
    packages
        .into_values()
        .map(|mut c| {
            if c.cores == 0 {
                c.cores = c.threads;
            }
            c
        })
        .collect()
}

/// Reads the hardware facts of the running Linux system under `root` (see the module doc).
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

    let disks = crate::hw::disks(&root.join("sys"))
        .into_iter()
        .filter(|d| !d.removable)
        .map(|d| Disk {
            name: d.name,
            size_bytes: d.bytes,
            model: d.model,
            serial: d.serial,
        })
        .collect();

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
        board_vendor: d("board_vendor"),
        board_name: d("board_name"),
        chassis: chassis_name(&d("chassis_type")),
        bios_vendor: d("bios_vendor"),
        bios_version: d("bios_version"),
        bios_date: bios_date(&d("bios_date")),
        memory_mib,
        cpus: cpus(&std::fs::read_to_string(root.join("proc/cpuinfo")).unwrap_or_default()),
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
    fn cpuinfo_gives_one_entry_per_package() {
        let one = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) \
                   i5-10500 CPU @ 3.10GHz\nphysical id\t: 0\ncpu cores\t: 6\n\n";
        let text = (0..12).map(|_| one).collect::<String>();
        let c = cpus(&text);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].cores, c[0].threads), (6, 12));
        assert_eq!(c[0].manufacturer, "GenuineIntel");
        // qemu's TCG CPU: no physical id, no cores.
        let q = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: QEMU Virtual CPU \
                 version 2.5+\n\n";
        assert_eq!(cpus(q)[0].cores, 1);
        assert!(cpus("").is_empty());
    }
}
