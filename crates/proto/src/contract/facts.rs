//! The PC's own facts, sent FIRST (`POST /agent/facts`, before anything is written), and the
//! server's go/no-go answer (issue 15, items 3 and 4).
//!
//! The agent reads its firmware's DMI table, CPU, memory, disks and network cards
//! ([`HardwareFacts`], read by `roomcast_agent::facts`), the server judges them against what the
//! room file expects of that PC ([`PcExpected::judge`]: one model per room, the profile's, unless
//! the room file lists an exception for that PC; a serial that differs is a warning) and answers a
//! [`Clearance`]. A PC refused here gets no image: the server also refuses it the manifest, the
//! chunks and the multicast session. The same facts become the PC's GLPI native inventory document
//! on the server (`roomcast::inventory::native::document`): the contract carries typed facts, the
//! server alone knows GLPI's format.

use serde::{Deserialize, Serialize};

/// The hardware facts of one PC, as its agent read them (also what a Linux machine reads of itself
/// for its inventory).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardwareFacts {
    /// The PC's hostname (the server puts the room file's name in the inventory document).
    pub hostname: String,
    /// System serial number (DMI `product_serial`), GLPI's main matching key.
    pub serial: String,
    /// System UUID (DMI `product_uuid`).
    pub uuid: String,
    /// System manufacturer (DMI `sys_vendor`), e.g. `Dell Inc.`.
    pub vendor: String,
    /// System model (DMI `product_name`), e.g. `OptiPlex 7090`: what the homogeneity check compares.
    pub model: String,
    /// Board manufacturer (DMI `board_vendor`).
    #[serde(default)]
    pub board_vendor: String,
    /// Board model (DMI `board_name`).
    #[serde(default)]
    pub board_name: String,
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
    /// Processors (one per physical package).
    #[serde(default)]
    pub cpus: Vec<Cpu>,
    /// Network interfaces (loopback excluded).
    pub interfaces: Vec<NetInterface>,
    /// Fixed disks.
    pub disks: Vec<Disk>,
    /// The operating system.
    pub os: OsFacts,
}

/// One processor package.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    /// Model name, e.g. `Intel(R) Core(TM) i5-10500 CPU @ 3.10GHz`.
    pub name: String,
    /// Manufacturer as the CPU says it (`GenuineIntel`, `AuthenticAMD`).
    pub manufacturer: String,
    /// Cores of this package.
    pub cores: u32,
    /// Hardware threads of this package.
    pub threads: u32,
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

/// What the room file expects of one PC: the server's side of the homogeneity check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcExpected {
    /// The profile's `pc_model.model` (the room's one model).
    pub profile_model: String,
    /// The room file's exception for this PC (`model_exception`): the model written on its
    /// machine line, which it may have instead of the profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_model: Option<String>,
    /// The serial the room file gives this PC.
    pub serial: String,
}

/// The server's answer to a PC's facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clearance {
    /// Why this PC must not be imaged; `None`: go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// What does not match the room file but does not stop the imaging (a serial that differs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Clearance {
    /// True when the PC may be imaged.
    pub fn is_go(&self) -> bool {
        self.refused.is_none()
    }
}

/// Two DMI strings name the same thing: firmware pads with spaces and varies in case.
fn same(a: &str, b: &str) -> bool {
    let words = |s: &str| {
        s.split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
    };
    words(a) == words(b)
}

/// A DMI value as a message shows it: quoted, cut, control characters dropped.
fn shown(s: &str) -> String {
    let clean: String = s
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    if clean.is_empty() {
        "no DMI product name".to_string()
    } else {
        format!("`{clean}`")
    }
}

impl PcExpected {
    /// The go/no-go of one PC: refused when its DMI product name is neither the profile's model
    /// nor its exception's; a serial other than the room file's is a warning.
    pub fn judge(&self, facts: &HardwareFacts) -> Clearance {
        let refused = if same(&facts.model, &self.profile_model)
            || self
                .exception_model
                .as_deref()
                .is_some_and(|m| same(&facts.model, m))
        {
            None
        } else {
            Some(match &self.exception_model {
                None => format!(
                    "wrong model: found {}, the room's profile wants `{}`",
                    shown(&facts.model),
                    self.profile_model
                ),
                Some(m) => format!(
                    "wrong model: found {}, the room's profile wants `{}` and the room file's \
                     exception for this PC allows `{m}`",
                    shown(&facts.model),
                    self.profile_model
                ),
            })
        };
        let mut warnings = Vec::new();
        if !same(&facts.serial, &self.serial) {
            warnings.push(format!(
                "serial differs: found {}, the room file says `{}`",
                if facts.serial.trim().is_empty() {
                    "none".to_string()
                } else {
                    format!("`{}`", shown(&facts.serial).trim_matches('`'))
                },
                self.serial
            ));
        }
        Clearance { refused, warnings }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(model: &str, serial: &str) -> HardwareFacts {
        HardwareFacts {
            model: model.into(),
            serial: serial.into(),
            ..HardwareFacts::default()
        }
    }

    #[test]
    fn one_model_per_room_unless_the_room_file_says_otherwise() {
        let e = PcExpected {
            profile_model: "OptiPlex 7090".into(),
            exception_model: None,
            serial: "SN1".into(),
        };
        assert_eq!(
            e.judge(&facts("  optiplex  7090 ", "SN1")),
            Clearance::default()
        );
        let c = e.judge(&facts("Standard PC (i440FX + PIIX, 1996)", "SN1"));
        assert_eq!(
            c.refused.as_deref(),
            Some(
                "wrong model: found `Standard PC (i440FX + PIIX, 1996)`, the room's profile \
                 wants `OptiPlex 7090`"
            )
        );
        assert!(!c.is_go() && c.warnings.is_empty());
        let c = e.judge(&facts("", "SN1"));
        assert!(c.refused.unwrap().contains("found no DMI product name"));
        let x = PcExpected {
            exception_model: Some("OptiPlex 7010".into()),
            ..e.clone()
        };
        assert!(x.judge(&facts("OptiPlex 7010", "SN1")).is_go());
        assert!(x.judge(&facts("OptiPlex 7090", "SN1")).is_go());
        let c = x.judge(&facts("ThinkCentre", "SN1"));
        assert!(
            c.refused
                .unwrap()
                .contains("exception for this PC allows `OptiPlex 7010`")
        );
    }

    #[test]
    fn another_serial_is_a_warning_only() {
        let e = PcExpected {
            profile_model: "M".into(),
            exception_model: None,
            serial: "SN1".into(),
        };
        let c = e.judge(&facts("M", "SN2\u{7}"));
        assert!(c.is_go());
        assert_eq!(
            c.warnings,
            ["serial differs: found `SN2`, the room file says `SN1`"]
        );
        let c = e.judge(&facts("M", ""));
        assert_eq!(
            c.warnings,
            ["serial differs: found none, the room file says `SN1`"]
        );
    }
}
