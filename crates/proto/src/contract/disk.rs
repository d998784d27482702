//! Which disk of a PC is its system disk: the rule (profile or room `system_disk`, on the kernel
//! command line as `roomcast.sysdisk=`), the disks the agent sees, and the choice.
//!
//! The choice is pure: the agent lists `/sys/block` into [`DiskSeen`] values and calls [`choose`];
//! it writes only the one disk chosen. No rule: the single disk that is neither removable nor on USB
//! or a card reader. A rule naming no bus never matches a USB, card-reader or removable disk: a
//! stick left in a port, a second data disk or a card reader is never written by accident.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a disk is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    /// SATA (AHCI) or PATA, through libata: `sd*`.
    Sata,
    /// NVMe: `nvme*n*`.
    Nvme,
    /// virtio-blk (`vd*`) or virtio-scsi.
    Virtio,
    /// USB mass storage: `sd*` behind a USB host controller.
    Usb,
    /// SD/MMC card reader (`mmcblk*`).
    Mmc,
    /// Any other SCSI host (SAS, RAID controller).
    Scsi,
}

impl Bus {
    /// The lowercase name (as in YAML and on the command line).
    pub fn as_str(self) -> &'static str {
        match self {
            Bus::Sata => "sata",
            Bus::Nvme => "nvme",
            Bus::Virtio => "virtio",
            Bus::Usb => "usb",
            Bus::Mmc => "mmc",
            Bus::Scsi => "scsi",
        }
    }

    /// Parses [`Bus::as_str`].
    pub fn parse(s: &str) -> Option<Bus> {
        [
            Bus::Sata,
            Bus::Nvme,
            Bus::Virtio,
            Bus::Usb,
            Bus::Mmc,
            Bus::Scsi,
        ]
        .into_iter()
        .find(|b| b.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One disk as the agent saw it (`/sys/block/<name>`); listed in failed reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSeen {
    /// Kernel name (`sda`, `nvme0n1`, `vda`).
    pub name: String,
    /// How it is attached.
    pub bus: Bus,
    /// The model string the disk reports (may be empty).
    pub model: String,
    /// The serial number the disk reports (may be empty).
    pub serial: String,
    /// Size in bytes.
    pub bytes: u64,
    /// The kernel's `removable` flag.
    pub removable: bool,
}

impl DiskSeen {
    /// Never chosen without a rule naming its bus: USB, card readers, removable media.
    pub fn is_external(&self) -> bool {
        self.removable || matches!(self.bus, Bus::Usb | Bus::Mmc)
    }
}

impl fmt::Display for DiskSeen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.name, self.bus)?;
        if !self.model.is_empty() {
            write!(f, ", {}", self.model)?;
        }
        write!(f, ", {}", human_bytes(self.bytes))?;
        if !self.serial.is_empty() {
            write!(f, ", serial {}", self.serial)?;
        }
        if self.removable {
            f.write_str(", removable")?;
        }
        f.write_str(")")
    }
}

/// `12.3 GB` style (decimal, as disks are sold).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The system-disk rule: every field given must hold. Sizes in bytes; `model` and `serial` are
/// patterns (`*` any text, `?` one character), compared without case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskRule {
    /// The bus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<Bus>,
    /// Model pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Smallest size, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_min: Option<u64>,
    /// Largest size, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_max: Option<u64>,
    /// Serial pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

impl DiskRule {
    /// True when `d` satisfies every field given (and, without `bus: usb|mmc`, is not external).
    pub fn matches(&self, d: &DiskSeen) -> bool {
        match self.bus {
            Some(b) if b != d.bus => return false,
            Some(Bus::Usb | Bus::Mmc) => {}
            _ if d.is_external() => return false,
            _ => {}
        }
        self.model.as_deref().is_none_or(|p| glob(p, &d.model))
            && self.serial.as_deref().is_none_or(|p| glob(p, &d.serial))
            && self.size_min.is_none_or(|m| d.bytes >= m)
            && self.size_max.is_none_or(|m| d.bytes <= m)
    }

    /// The value of `roomcast.sysdisk=`: `bus:nvme,model:Samsung%20SSD*,min:N,max:N,serial:S`
    /// (bytes; `%`-escapes for anything but letters, digits and `*?._-`).
    pub fn to_word(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = self.bus {
            parts.push(format!("bus:{b}"));
        }
        if let Some(m) = &self.model {
            parts.push(format!("model:{}", escape(m)));
        }
        if let Some(n) = self.size_min {
            parts.push(format!("min:{n}"));
        }
        if let Some(n) = self.size_max {
            parts.push(format!("max:{n}"));
        }
        if let Some(s) = &self.serial {
            parts.push(format!("serial:{}", escape(s)));
        }
        parts.join(",")
    }

    /// Parses [`DiskRule::to_word`]; the error names the part that is wrong.
    pub fn parse(word: &str) -> Result<DiskRule, String> {
        let mut r = DiskRule::default();
        for part in word.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once(':')
                .ok_or_else(|| format!("system-disk rule: `{part}` is not key:value"))?;
            let num = || {
                v.parse::<u64>()
                    .map_err(|_| format!("system-disk rule: {k}: `{v}` is not a number of bytes"))
            };
            match k {
                "bus" => {
                    r.bus = Some(
                        Bus::parse(v)
                            .ok_or_else(|| format!("system-disk rule: unknown bus `{v}`"))?,
                    )
                }
                "model" => r.model = Some(unescape(v)?),
                "serial" => r.serial = Some(unescape(v)?),
                "min" => r.size_min = Some(num()?),
                "max" => r.size_max = Some(num()?),
                _ => return Err(format!("system-disk rule: unknown key `{k}`")),
            }
        }
        Ok(r)
    }
}

impl fmt::Display for DiskRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(b) = self.bus {
            parts.push(format!("bus {b}"));
        }
        if let Some(m) = &self.model {
            parts.push(format!("model \"{m}\""));
        }
        if let Some(n) = self.size_min {
            parts.push(format!("at least {}", human_bytes(n)));
        }
        if let Some(n) = self.size_max {
            parts.push(format!("at most {}", human_bytes(n)));
        }
        if let Some(s) = &self.serial {
            parts.push(format!("serial \"{s}\""));
        }
        if parts.is_empty() {
            f.write_str("any internal disk")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Why no disk was chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskChoiceError {
    /// Nothing matches.
    #[error("no disk matches the system-disk rule ({rule}); disks seen: {}", list(.seen))]
    NoMatch {
        /// The rule, in words (or the default).
        rule: String,
        /// Every disk seen.
        seen: Vec<DiskSeen>,
    },
    /// More than one matches: the rule must say which.
    #[error(
        "{} disks match the system-disk rule ({rule}): {}; say which one in the profile or room (system_disk)",
        .matching.len(), .matching.join(", ")
    )]
    Ambiguous {
        /// The rule, in words.
        rule: String,
        /// Names of the matching disks.
        matching: Vec<String>,
    },
}

fn list(seen: &[DiskSeen]) -> String {
    if seen.is_empty() {
        return "none".into();
    }
    seen.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The one disk `rule` (or the default rule) names among `seen`.
pub fn choose<'a>(
    rule: Option<&DiskRule>,
    seen: &'a [DiskSeen],
) -> Result<&'a DiskSeen, DiskChoiceError> {
    let default = DiskRule::default();
    let r = rule.unwrap_or(&default);
    let words = match rule {
        Some(r) => r.to_string(),
        None => "default: the one disk neither removable nor on USB".into(),
    };
    let matching: Vec<&DiskSeen> = seen.iter().filter(|d| r.matches(d)).collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(DiskChoiceError::NoMatch {
            rule: words,
            seen: seen.to_vec(),
        }),
        many => Err(DiskChoiceError::Ambiguous {
            rule: words,
            matching: many.iter().map(|d| d.name.clone()).collect(),
        }),
    }
}

/// `*` and `?` glob, ASCII case-insensitive, whole string; leading/trailing blanks of `text` are
/// ignored (sysfs pads model strings).
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let t: Vec<char> = text
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"*?._-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("system-disk rule: bad escape in `{s}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("system-disk rule: `{s}` is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, bus: Bus, model: &str, gb: u64, removable: bool) -> DiskSeen {
        DiskSeen {
            name: name.into(),
            bus,
            model: model.into(),
            serial: format!("SN-{name}"),
            bytes: gb * 1_000_000_000,
            removable,
        }
    }

    fn pc() -> Vec<DiskSeen> {
        vec![
            disk("nvme0n1", Bus::Nvme, "Samsung SSD 980 500GB", 500, false),
            disk("sda", Bus::Sata, "ST1000DM010-2EP102", 1000, false),
            disk("sdb", Bus::Usb, "SanDisk Cruzer", 16, true),
            disk("mmcblk0", Bus::Mmc, "SD32G", 32, false),
        ]
    }

    #[test]
    fn default_rule_takes_the_one_internal_disk_or_refuses() {
        let seen = pc();
        let e = choose(None, &seen).unwrap_err();
        assert_eq!(
            e,
            DiskChoiceError::Ambiguous {
                rule: "default: the one disk neither removable nor on USB".into(),
                matching: vec!["nvme0n1".into(), "sda".into()]
            }
        );
        let one: Vec<DiskSeen> = seen.iter().filter(|d| d.name != "sda").cloned().collect();
        assert_eq!(choose(None, &one).unwrap().name, "nvme0n1");
        // A stick and a card reader alone: nothing to write.
        let ext: Vec<DiskSeen> = seen[2..].to_vec();
        let msg = choose(None, &ext).unwrap_err().to_string();
        assert!(
            msg.contains("no disk matches")
                && msg.contains("sdb (usb, SanDisk Cruzer, 16.0 GB, serial SN-sdb, removable)"),
            "{msg}"
        );
    }

    #[test]
    fn a_rule_picks_by_bus_model_size_or_serial() {
        let seen = pc();
        let by = |r: DiskRule| choose(Some(&r), &seen).map(|d| d.name.clone());
        let bus = |b| DiskRule {
            bus: Some(b),
            ..DiskRule::default()
        };
        assert_eq!(by(bus(Bus::Nvme)), Ok("nvme0n1".into()));
        assert_eq!(by(bus(Bus::Sata)), Ok("sda".into()));
        assert_eq!(by(bus(Bus::Usb)), Ok("sdb".into()), "only when asked");
        assert_eq!(
            by(DiskRule {
                model: Some("samsung ssd*".into()),
                ..DiskRule::default()
            }),
            Ok("nvme0n1".into())
        );
        assert_eq!(
            by(DiskRule {
                size_min: Some(600_000_000_000),
                ..DiskRule::default()
            }),
            Ok("sda".into())
        );
        assert_eq!(
            by(DiskRule {
                serial: Some("SN-sd?".into()),
                ..DiskRule::default()
            }),
            Ok("sda".into()),
            "the stick's serial matches too, but it is external"
        );
        let e = by(DiskRule {
            bus: Some(Bus::Virtio),
            ..DiskRule::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("(bus virtio)") && e.contains("nvme0n1 (nvme, Samsung"),
            "{e}"
        );
    }

    #[test]
    fn the_command_line_word_round_trips() {
        let r = DiskRule {
            bus: Some(Bus::Sata),
            model: Some("WDC WD10,EZEX*".into()),
            size_min: Some(100),
            size_max: Some(2_000_000_000_000),
            serial: Some("WD-%1?".into()),
        };
        let w = r.to_word();
        assert!(!w.contains(' '), "{w}");
        assert_eq!(DiskRule::parse(&w), Ok(r));
        assert_eq!(DiskRule::parse(""), Ok(DiskRule::default()));
        assert!(
            DiskRule::parse("bus:floppy")
                .unwrap_err()
                .contains("floppy")
        );
        assert!(DiskRule::parse("min:lots").unwrap_err().contains("min"));
        assert!(
            DiskRule::parse("colour:red")
                .unwrap_err()
                .contains("colour")
        );
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("QEMU*", "QEMU HARDDISK   "));
        assert!(glob("?EMU h*k", "QEMU HARDDISK"));
        assert!(!glob("QEMU", "QEMU HARDDISK"));
        assert!(glob("*980*", "Samsung SSD 980 500GB"));
        assert!(!glob("*990*", "Samsung SSD 980 500GB"));
    }
}
