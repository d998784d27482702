//! The kernel modules of the boot environment, taken from the unpacked `linux-image-*` package:
//! which ones go in (the drivers real school PCs need, [`DRIVERS`], plus a technician's
//! `--modules`), with every dependency (`depends=` and `softdep pre:` of each module's
//! `.modinfo`), and the tables the agent loads them by (`modules.dep`, `modules.alias`, in kmod's
//! formats, trimmed to what is inside) plus [`ABSENT_ALIAS`]: the PCI ids of the kernel's other
//! network and storage drivers, so a PC whose card has no driver inside can say which module it
//! lacks.
//!
//! A package unpacked with `dpkg -x` has no `modules.dep` (depmod runs at install time), so the
//! `.modinfo` section of each `.ko` (an ELF64 relocatable) is read here.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The drivers every boot environment carries: wired network cards (Intel, Realtek, Broadcom,
/// Aquantia, virtio), disk controllers (AHCI and legacy IDE-mode SATA, NVMe, virtio, USB mass
/// storage and the USB host controllers it sits behind), SCSI disks. Their dependencies come
/// with them.
pub const DRIVERS: &[&str] = &[
    // network cards
    "e1000",
    "e1000e",
    "igb",
    "igc",
    "r8169",
    "8139too",
    // RTL8139C+ (and qemu's `rtl8139`): 8139too declines it in favour of this one.
    "8139cp",
    "tg3",
    "bnx2",
    "atlantic",
    "virtio_net",
    "virtio_pci",
    // disk controllers and disks
    "ahci",
    "ata_piix",
    "nvme",
    "sd_mod",
    "virtio_blk",
    "virtio_scsi",
    "usb_storage",
    "uas",
    "xhci_pci",
    "ehci_pci",
    "uhci_hcd",
    "ohci_pci",
    // loop devices: a Windows PC's step h writes its unattend.xml with ntfscp through one
    "loop",
    // device-mapper, linear and zero targets: an NTFS shrunk onto a smaller disk (issue 23) is
    // resized by ntfsresize on a view of its old size (`store::fit`)
    "dm_mod",
    "dm_zero",
];

/// Folders (under `kernel/`) whose modules' PCI ids go into [`ABSENT_ALIAS`] when they are not in.
const ABSENT_FROM: &[&str] = &[
    "drivers/net/ethernet",
    "drivers/net",
    "drivers/ata",
    "drivers/nvme",
    "drivers/scsi",
    "drivers/block",
    "drivers/mmc/host",
];

/// File (under `lib/modules/<release>/`) listing `alias <pattern> <module>` for the kernel's
/// network and storage drivers left out of this initramfs.
pub const ABSENT_ALIAS: &str = "roomcast.absent.alias";

/// `e1000e`, `usb-storage` → the kernel's own name (`-` becomes `_`).
pub fn normalize(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// What a module's `.modinfo` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `depends=` (comma-separated in the file).
    pub depends: Vec<String>,
    /// `softdep=pre: a b post: c`: the `pre` ones.
    pub softdep_pre: Vec<String>,
    /// `alias=` patterns.
    pub aliases: Vec<String>,
    /// `firmware=` files it may ask for.
    pub firmware: Vec<String>,
}

/// Parses the NUL-separated `key=value` strings of a `.modinfo` section.
pub fn parse_modinfo(section: &[u8]) -> ModInfo {
    let mut m = ModInfo::default();
    for entry in section.split(|&b| b == 0) {
        let Ok(s) = std::str::from_utf8(entry) else {
            continue;
        };
        let Some((k, v)) = s.split_once('=') else {
            continue;
        };
        match k {
            "depends" => m
                .depends
                .extend(v.split(',').filter(|d| !d.is_empty()).map(normalize)),
            "softdep" => {
                let mut pre = false;
                for w in v.split_whitespace() {
                    match w {
                        "pre:" => pre = true,
                        "post:" => pre = false,
                        _ if pre => m.softdep_pre.push(normalize(w)),
                        _ => {}
                    }
                }
            }
            "alias" => m.aliases.push(v.to_string()),
            "firmware" => m.firmware.push(v.to_string()),
            _ => {}
        }
    }
    m
}

/// Reads the `.modinfo` section of an ELF64 little-endian `.ko`.
pub fn read_modinfo(path: &Path) -> std::io::Result<ModInfo> {
    let bad = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an ELF64 kernel module ({what})"),
        )
    };
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut h = [0u8; 64];
    f.read_exact_at(&mut h, 0)?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return Err(bad("header"));
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let shoff = u64_at(&h, 0x28);
    let shentsize = u16_at(&h, 0x3A) as u64;
    let shnum = u16_at(&h, 0x3C) as u64;
    let shstrndx = u16_at(&h, 0x3E) as u64;
    if shentsize < 64 || shnum == 0 || shstrndx >= shnum || shoff + shnum * shentsize > len {
        return Err(bad("section table"));
    }
    let mut table = vec![0u8; (shnum * shentsize) as usize];
    f.read_exact_at(&mut table, shoff)?;
    let section = |i: u64| {
        let o = (i * shentsize) as usize;
        (
            u32_at(&table, o),
            u64_at(&table, o + 24),
            u64_at(&table, o + 32),
        )
    };
    let read = |off: u64, size: u64| -> std::io::Result<Vec<u8>> {
        if off.checked_add(size).is_none_or(|end| end > len) || size > 16 << 20 {
            return Err(bad("section bounds"));
        }
        let mut b = vec![0u8; size as usize];
        f.read_exact_at(&mut b, off)?;
        Ok(b)
    };
    let (_, stroff, strsize) = section(shstrndx);
    let names = read(stroff, strsize)?;
    for i in 0..shnum {
        let (name, off, size) = section(i);
        let name = names.get(name as usize..).unwrap_or_default();
        if name.starts_with(b".modinfo\0") {
            return Ok(parse_modinfo(&read(off, size)?));
        }
    }
    Ok(ModInfo::default())
}

/// A module the build was asked for that the kernel package does not have.
#[derive(Debug, thiserror::Error)]
#[error("kernel module {name} is not in the kernel package ({dir})")]
pub struct UnknownModule {
    /// The name asked for.
    pub name: String,
    /// Where it was looked for.
    pub dir: PathBuf,
}

/// The modules of one kernel release: name → path relative to `lib/modules/<release>/`.
#[derive(Debug)]
pub struct KernelModules {
    /// `lib/modules/<release>`.
    pub dir: PathBuf,
    /// Normalized name → relative path (`kernel/drivers/...ko`).
    pub files: BTreeMap<String, String>,
}

/// The modules chosen, with their tables.
#[derive(Debug, Default)]
pub struct Selection {
    /// Normalized name → (relative path, modinfo), every module going in.
    pub modules: BTreeMap<String, (String, ModInfo)>,
}

impl KernelModules {
    /// Lists every `.ko` under `dir`.
    pub fn index(dir: &Path) -> std::io::Result<KernelModules> {
        let mut files = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)? {
                let e = e?;
                let p = e.path();
                if e.file_type()?.is_dir() {
                    stack.push(p);
                } else if let Some(stem) =
                    e.file_name().to_str().and_then(|n| n.strip_suffix(".ko"))
                {
                    let rel = p
                        .strip_prefix(dir)
                        .unwrap_or(&p)
                        .to_string_lossy()
                        .into_owned();
                    files.insert(normalize(stem), rel);
                }
            }
        }
        Ok(KernelModules {
            dir: dir.to_path_buf(),
            files,
        })
    }

    /// `wanted` and everything they depend on (hard and `softdep pre:`). A wanted name the package
    /// lacks is an error; a missing soft dependency is skipped (some are optional by design).
    pub fn select(&self, wanted: &[String]) -> Result<Selection, super::BootEnvError> {
        let mut sel = Selection::default();
        let mut todo: Vec<(String, bool)> = wanted.iter().map(|w| (normalize(w), true)).collect();
        while let Some((name, hard)) = todo.pop() {
            if sel.modules.contains_key(&name) {
                continue;
            }
            let Some(rel) = self.files.get(&name) else {
                if hard {
                    return Err(super::BootEnvError::Module(UnknownModule {
                        name,
                        dir: self.dir.clone(),
                    }));
                }
                continue;
            };
            let path = self.dir.join(rel);
            let info = read_modinfo(&path).map_err(super::io("reading a module", &path))?;
            todo.extend(info.depends.iter().map(|d| (d.clone(), true)));
            todo.extend(info.softdep_pre.iter().map(|d| (d.clone(), false)));
            sel.modules.insert(name, (rel.clone(), info));
        }
        Ok(sel)
    }

    /// `alias <pattern> <module>` lines of the network and storage drivers not in `sel` (PCI ids
    /// only: the cards and controllers a PC may have).
    pub fn absent_aliases(&self, sel: &Selection) -> String {
        let mut out = String::new();
        for (name, rel) in &self.files {
            if sel.modules.contains_key(name) {
                continue;
            }
            let inside = ABSENT_FROM.iter().any(|d| {
                rel.strip_prefix("kernel/")
                    .and_then(|r| r.strip_prefix(d))
                    .is_some_and(|r| r.starts_with('/'))
            });
            if !inside {
                continue;
            }
            let Ok(info) = read_modinfo(&self.dir.join(rel)) else {
                continue;
            };
            for a in info.aliases.iter().filter(|a| a.starts_with("pci:")) {
                out.push_str(&format!("alias {a} {name}\n"));
            }
        }
        out
    }
}

impl Selection {
    /// kmod's `modules.dep`: `path: dep-path dep-path`, dependencies in load order reversed (the
    /// last one loads first), as modprobe reads it.
    pub fn modules_dep(&self) -> String {
        let mut out = String::new();
        for (name, (rel, _)) in &self.modules {
            let order = self.load_order(name);
            let deps: Vec<&str> = order
                .iter()
                .rev()
                .filter(|d| *d != name)
                .filter_map(|d| self.modules.get(d).map(|(r, _)| r.as_str()))
                .collect();
            out.push_str(&format!("{rel}: {}\n", deps.join(" ")).replace(": \n", ":\n"));
        }
        out
    }

    /// kmod's `modules.alias`: `alias <pattern> <module>`.
    pub fn modules_alias(&self) -> String {
        let mut out = String::new();
        for (name, (_, info)) in &self.modules {
            for a in &info.aliases {
                out.push_str(&format!("alias {a} {name}\n"));
            }
        }
        out
    }

    /// `name` and its dependencies, each after what it needs (hard dependencies only).
    pub fn load_order(&self, name: &str) -> Vec<String> {
        fn visit(sel: &Selection, n: &str, seen: &mut BTreeSet<String>, out: &mut Vec<String>) {
            if !seen.insert(n.to_string()) {
                return;
            }
            if let Some((_, info)) = sel.modules.get(n) {
                for d in &info.depends {
                    visit(sel, d, seen, out);
                }
            }
            out.push(n.to_string());
        }
        let mut out = Vec::new();
        visit(self, name, &mut BTreeSet::new(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_fields() {
        let m = parse_modinfo(
            b"license=GPL\0depends=libphy,mdio-devres\0softdep=pre: realtek post: x\0\
              alias=pci:v000010ECd00008168sv*sd*bc*sc*i*\0firmware=rtl_nic/rtl8168d-1.fw\0\0\0",
        );
        assert_eq!(m.depends, ["libphy", "mdio_devres"]);
        assert_eq!(m.softdep_pre, ["realtek"]);
        assert_eq!(m.aliases, ["pci:v000010ECd00008168sv*sd*bc*sc*i*"]);
        assert_eq!(m.firmware, ["rtl_nic/rtl8168d-1.fw"]);
        assert_eq!(parse_modinfo(b"depends=\0"), ModInfo::default());
    }

    /// On the cached Debian kernel of the tests (tests/setup.sh), when present.
    #[test]
    fn the_debian_kernel_gives_every_driver_with_its_dependencies() {
        let root = std::env::var_os("ROOMCAST_KERNEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/roomcast-test/kernel"));
        let Ok(mut releases) = std::fs::read_dir(root.join("lib/modules")) else {
            eprintln!("no cached kernel: skipped");
            return;
        };
        let dir = releases.next().unwrap().unwrap().path();
        let k = KernelModules::index(&dir).unwrap();
        let wanted: Vec<String> = DRIVERS.iter().map(|s| s.to_string()).collect();
        let sel = k.select(&wanted).unwrap();
        for m in [
            "e1000e",
            "nvme_core",
            "libata",
            "scsi_mod",
            "usbcore",
            "realtek",
            "virtio",
        ] {
            assert!(sel.modules.contains_key(m), "{m} missing");
        }
        let order = sel.load_order("nvme");
        assert!(
            order.iter().position(|m| m == "nvme_core") < order.iter().position(|m| m == "nvme")
        );
        let dep = sel.modules_dep();
        assert!(
            dep.lines()
                .any(|l| l.starts_with("kernel/drivers/nvme/host/nvme.ko: ")
                    && l.contains("nvme-core.ko")),
            "{dep}"
        );
        assert!(
            sel.modules_alias()
                .contains("alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n")
        );
        let absent = k.absent_aliases(&sel);
        assert!(
            absent.contains(" pcnet32\n"),
            "pcnet32 is left out and named"
        );
        assert!(!absent.contains(" e1000e\n"));
        assert!(matches!(
            k.select(&["no_such_driver".into()]),
            Err(crate::bootenv::BootEnvError::Module(_))
        ));
    }
}
