//! The PC's hardware as the PXE-booted agent meets it, read from sysfs under a root folder (`/` on a
//! PC, a fake tree in tests): kernel modules loaded by the devices' modalias, the network card that
//! booted, the PCI network and disk controllers left without a driver, the disks, and
//! Wake-on-LAN.

use roomcast_proto::contract::disk::glob;
use roomcast_proto::contract::{Bus, DiskSeen};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module tables `roomcast bootenv build` puts under `lib/modules/<release>/`.
#[derive(Debug, Default)]
pub struct ModuleTables {
    dir: PathBuf,
    /// name → (path relative to `dir`, dependencies in load order).
    deps: BTreeMap<String, (String, Vec<String>)>,
    /// (pattern, module) from `modules.alias`.
    aliases: Vec<(String, String)>,
    /// (pattern, module) of the kernel's drivers left out (`roomcast.absent.alias`).
    absent: Vec<(String, String)>,
}

fn module_name(rel: &str) -> String {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    file.strip_suffix(".ko").unwrap_or(file).replace('-', "_")
}

fn parse_aliases(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "alias").then_some(())?;
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

impl ModuleTables {
    /// Reads `modules.dep`, `modules.alias` and the absent list from `dir`; a missing file is an
    /// empty table.
    pub fn load(dir: &Path) -> ModuleTables {
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
        let mut deps = BTreeMap::new();
        for line in read("modules.dep").lines() {
            let Some((rel, rest)) = line.split_once(':') else {
                continue;
            };
            // kmod's order: the last dependency loads first.
            let d: Vec<String> = rest.split_whitespace().rev().map(module_name).collect();
            deps.insert(module_name(rel), (rel.to_string(), d));
        }
        ModuleTables {
            dir: dir.to_path_buf(),
            deps,
            aliases: parse_aliases(&read("modules.alias")),
            absent: parse_aliases(&read("roomcast.absent.alias")),
        }
    }

    /// The modules inside whose alias matches `modalias`.
    pub fn matching(&self, modalias: &str) -> BTreeSet<String> {
        self.aliases
            .iter()
            .filter(|(p, _)| glob(p, modalias))
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// The modules of the kernel, left out of this boot environment, that would drive `modalias`.
    pub fn absent_for(&self, modalias: &str) -> BTreeSet<String> {
        self.absent
            .iter()
            .filter(|(p, _)| glob(p, modalias))
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// `name` after its dependencies, as files to load.
    pub fn load_order(&self, name: &str) -> Vec<(String, PathBuf)> {
        let Some((rel, deps)) = self.deps.get(name) else {
            return Vec::new();
        };
        deps.iter()
            .filter_map(|d| self.deps.get(d).map(|(r, _)| (d.clone(), self.dir.join(r))))
            .chain([(name.to_string(), self.dir.join(rel))])
            .collect()
    }
}

/// `finit_module(2)` of one `.ko`; already loaded counts as done.
pub fn insert_module(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    // SAFETY: a valid fd and a NUL-terminated empty parameter string; flags 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            f.as_raw_fd(),
            c"".as_ptr(),
            0 as libc::c_int,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EEXIST) {
        Ok(())
    } else {
        Err(e)
    }
}

/// Every `modalias` under `<sys>/bus/*/devices/*`.
pub fn modaliases(sys: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(buses) = std::fs::read_dir(sys.join("bus")) else {
        return out;
    };
    for bus in buses.filter_map(Result::ok) {
        let Ok(devs) = std::fs::read_dir(bus.path().join("devices")) else {
            continue;
        };
        for d in devs.filter_map(Result::ok) {
            if let Ok(a) = std::fs::read_to_string(d.path().join("modalias")) {
                let a = a.trim();
                if !a.is_empty() {
                    out.insert(a.to_string());
                }
            }
        }
    }
    out
}

/// What loading did: modules loaded, and those that failed with why.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Loaded (or already there), in order.
    pub loaded: Vec<String>,
    /// `module: error`.
    pub failed: Vec<String>,
}

/// Loads, until nothing new appears, the modules matching the devices' modaliases (a controller's
/// driver makes new devices appear: disks behind AHCI, USB devices behind xHCI). `settle` is the
/// pause between rounds.
pub fn load_for_devices(
    sys: &Path,
    tables: &ModuleTables,
    settle: std::time::Duration,
    insert: &dyn Fn(&Path) -> std::io::Result<()>,
) -> Loaded {
    let mut out = Loaded::default();
    let mut seen_aliases = BTreeSet::new();
    let mut tried = BTreeSet::new();
    let mut quiet_rounds = 0;
    for _ in 0..20 {
        let mut new = false;
        for a in modaliases(sys) {
            if !seen_aliases.insert(a.clone()) {
                continue;
            }
            for m in tables.matching(&a) {
                for (name, path) in tables.load_order(&m) {
                    if !tried.insert(name.clone()) {
                        continue;
                    }
                    new = true;
                    match insert(&path) {
                        Ok(()) => out.loaded.push(name),
                        Err(e) => out.failed.push(format!("{name}: {e}")),
                    }
                }
            }
        }
        if new {
            quiet_rounds = 0;
        } else {
            quiet_rounds += 1;
            // Two quiet looks: USB devices take a moment to enumerate behind their controller.
            if quiet_rounds >= 2 {
                break;
            }
        }
        std::thread::sleep(settle);
    }
    out
}

/// A PCI device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDevice {
    /// `0000:00:03.0`.
    pub slot: String,
    /// `8086:10d3`.
    pub id: String,
    /// The class code, `0x020000`.
    pub class: u32,
    /// The bound driver, if any.
    pub driver: Option<String>,
    /// Its modalias.
    pub modalias: String,
}

impl PciDevice {
    /// A network controller (class 02).
    pub fn is_network(&self) -> bool {
        self.class >> 16 == 0x02
    }

    /// A mass-storage controller (class 01) or a USB controller (0c03).
    pub fn is_storage(&self) -> bool {
        self.class >> 16 == 0x01 || self.class >> 8 == 0x0c03
    }
}

pub(crate) fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn link_name(p: &Path) -> Option<String> {
    std::fs::read_link(p)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// Every PCI device under `<sys>/bus/pci/devices`.
pub fn pci_devices(sys: &Path) -> Vec<PciDevice> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(sys.join("bus/pci/devices")) else {
        return out;
    };
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        let hex = |n: &str| read_trim(&p.join(n)).trim_start_matches("0x").to_string();
        out.push(PciDevice {
            slot: e.file_name().to_string_lossy().into_owned(),
            id: format!("{}:{}", hex("vendor"), hex("device")),
            class: u32::from_str_radix(&hex("class"), 16).unwrap_or(0),
            driver: link_name(&p.join("driver")),
            modalias: read_trim(&p.join("modalias")),
        });
    }
    out.sort_by(|a, b| a.slot.cmp(&b.slot));
    out
}

/// A network or disk controller without a driver, in plain words: its PCI id and the module it
/// needs, when the kernel has one.
pub fn undriven(sys: &Path, tables: &ModuleTables, network: bool) -> Vec<String> {
    pci_devices(sys)
        .into_iter()
        .filter(|d| {
            d.driver.is_none()
                && if network {
                    d.is_network()
                } else {
                    d.is_storage()
                }
        })
        .map(|d| {
            let what = if network {
                "network card"
            } else {
                "disk controller"
            };
            let need = tables.absent_for(&d.modalias);
            if need.is_empty() {
                format!(
                    "no driver for {what} PCI {} (slot {}): this kernel has none",
                    d.id, d.slot
                )
            } else {
                let m = need.into_iter().collect::<Vec<_>>().join(" or ");
                format!(
                    "no driver for {what} PCI {} (slot {}): module {m} is not in this boot \
                     environment (roomcast bootenv build --modules {m})",
                    d.id, d.slot
                )
            }
        })
        .collect()
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// `eth0`.
    pub name: String,
    /// Its MAC, lowercase.
    pub mac: String,
    /// Its driver.
    pub driver: Option<String>,
    /// PCI id when on PCI.
    pub pci: Option<String>,
}

impl std::fmt::Display for Nic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}", self.name, self.mac)?;
        if let Some(d) = &self.driver {
            write!(f, ", {d}")?;
        }
        if let Some(p) = &self.pci {
            write!(f, ", PCI {p}")?;
        }
        f.write_str(")")
    }
}

/// Every interface but loopback.
pub fn nics(sys: &Path) -> Vec<Nic> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(sys.join("class/net")) else {
        return out;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if name == "lo" {
            continue;
        }
        let dev = p.join("device");
        let pci = {
            let v = read_trim(&dev.join("vendor"));
            let d = read_trim(&dev.join("device"));
            (!v.is_empty() && !d.is_empty()).then(|| {
                format!(
                    "{}:{}",
                    v.trim_start_matches("0x"),
                    d.trim_start_matches("0x")
                )
            })
        };
        out.push(Nic {
            name,
            mac: read_trim(&p.join("address")).to_ascii_lowercase(),
            driver: link_name(&dev.join("driver")),
            pci,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// True when the interface has carrier.
pub fn has_carrier(sys: &Path, iface: &str) -> bool {
    read_trim(&sys.join("class/net").join(iface).join("carrier")) == "1"
}

/// Every whole disk under `<sys>/block` (no loop, RAM, optical, floppy, device-mapper, md or
/// network block devices, no empty reader).
pub fn disks(sys: &Path) -> Vec<DiskSeen> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(sys.join("block")) else {
        return out;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        const SKIP: [&str; 9] = ["loop", "ram", "zram", "sr", "fd", "dm-", "md", "nbd", "mtd"];
        if SKIP.iter().any(|s| name.starts_with(s)) {
            continue;
        }
        let p = e.path();
        let sectors: u64 = read_trim(&p.join("size")).parse().unwrap_or(0);
        if sectors == 0 {
            continue;
        }
        let real = std::fs::canonicalize(&p)
            .unwrap_or_else(|_| p.clone())
            .to_string_lossy()
            .into_owned();
        let bus = if name.starts_with("nvme") {
            Bus::Nvme
        } else if name.starts_with("vd") {
            Bus::Virtio
        } else if name.starts_with("mmcblk") {
            Bus::Mmc
        } else if real.contains("/usb") {
            Bus::Usb
        } else if real.contains("/ata") {
            Bus::Sata
        } else if real.contains("/virtio") {
            Bus::Virtio
        } else {
            Bus::Scsi
        };
        let dev = p.join("device");
        let mut serial = read_trim(&dev.join("serial"));
        if serial.is_empty() {
            serial = read_trim(&p.join("serial"));
        }
        if serial.is_empty() {
            // SCSI/SATA: VPD page 0x80, the unit serial number (4-byte header).
            if let Ok(b) = std::fs::read(dev.join("vpd_pg80")) {
                serial = String::from_utf8_lossy(b.get(4..).unwrap_or_default())
                    .trim_matches(|c: char| c.is_whitespace() || c == '\0')
                    .to_string();
            }
        }
        out.push(DiskSeen {
            name,
            bus,
            model: read_trim(&dev.join("model")),
            serial,
            bytes: sectors * 512,
            removable: read_trim(&p.join("removable")) == "1",
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Arms Wake-on-LAN by magic packet on `iface` (`ETHTOOL_SWOL`, as `ethtool -s <if> wol g`),
/// keeping the other wake options the card had. The answer says what happened, in words.
pub fn arm_wake_on_lan(iface: &str) -> Result<String, String> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GWOL: u32 = 0x5;
    const ETHTOOL_SWOL: u32 = 0x6;
    const WAKE_MAGIC: u32 = 1 << 5;
    #[repr(C)]
    #[derive(Default)]
    struct WolInfo {
        cmd: u32,
        supported: u32,
        wolopts: u32,
        sopass: [u8; 6],
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        data: *mut WolInfo,
        _pad: [u8; 16],
    }
    if iface.len() >= 16 {
        return Err(format!("{iface}: interface name too long"));
    }
    // SAFETY: plain socket(2); the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    let mut info = WolInfo {
        cmd: ETHTOOL_GWOL,
        ..WolInfo::default()
    };
    let mut req = IfReq {
        name: [0; 16],
        data: &mut info,
        _pad: [0; 16],
    };
    req.name[..iface.len()].copy_from_slice(iface.as_bytes());
    let ioctl = |req: &mut IfReq| {
        // SAFETY: SIOCETHTOOL with an ifreq whose data points at a live ethtool_wolinfo.
        let r = unsafe { libc::ioctl(fd, SIOCETHTOOL as _, req as *mut IfReq) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let result = (|| {
        ioctl(&mut req).map_err(|e| format!("not supported by {iface} ({e})"))?;
        // SAFETY: `info` is alive and only read through `req.data` during the ioctl.
        let (supported, current) = unsafe { ((*req.data).supported, (*req.data).wolopts) };
        if supported & WAKE_MAGIC == 0 {
            return Err(format!(
                "not supported by {iface} (the card offers no magic-packet wake)"
            ));
        }
        // SAFETY: as above.
        unsafe {
            (*req.data).cmd = ETHTOOL_SWOL;
            (*req.data).wolopts = current | WAKE_MAGIC;
        }
        ioctl(&mut req).map_err(|e| format!("{iface} refused it ({e})"))?;
        Ok(format!("armed (magic packet) on {iface}"))
    })();
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(fd) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn tables_give_matches_load_order_and_absent_drivers() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        write(
            d,
            "modules.dep",
            "kernel/drivers/nvme/host/nvme.ko: kernel/drivers/nvme/host/nvme-core.ko kernel/lib/a.ko\n\
             kernel/drivers/nvme/host/nvme-core.ko: kernel/lib/a.ko\nkernel/lib/a.ko:\n",
        );
        write(
            d,
            "modules.alias",
            "alias pci:v*d*sv*sd*bc01sc08i02* nvme\nalias pci:v0000106Bd00002001sv*sd*bc*sc*i* nvme\n",
        );
        write(
            d,
            "roomcast.absent.alias",
            "alias pci:v00001022d00002000sv*sd*bc*sc*i* pcnet32\n",
        );
        let tables = ModuleTables::load(d);
        let nvme = "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02";
        assert_eq!(tables.matching(nvme), BTreeSet::from(["nvme".to_string()]));
        assert!(tables.matching("pci:v00008086d0000100Esv*").is_empty());
        let order: Vec<String> = tables
            .load_order("nvme")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(order, ["a", "nvme_core", "nvme"]);
        let pcnet = "pci:v00001022d00002000sv00001022sd00002000bc02sc00i00";
        assert_eq!(
            tables.absent_for(pcnet),
            BTreeSet::from(["pcnet32".to_string()])
        );

        // A fake sysfs: the NVMe controller loads its driver (and its dependencies, once); the
        // network card has none here and is named with the module it lacks.
        let sys = d.join("sys");
        for (slot, vendor, device, class, alias) in [
            ("0000:00:04.0", "0x1b36", "0x0010", "0x010802", nvme),
            ("0000:00:03.0", "0x1022", "0x2000", "0x020000", pcnet),
        ] {
            let dev = format!("bus/pci/devices/{slot}");
            write(&sys, &format!("{dev}/vendor"), vendor);
            write(&sys, &format!("{dev}/device"), device);
            write(&sys, &format!("{dev}/class"), class);
            write(&sys, &format!("{dev}/modalias"), alias);
        }
        let inserted = std::cell::RefCell::new(Vec::new());
        let loaded = load_for_devices(&sys, &tables, std::time::Duration::ZERO, &|p| {
            inserted
                .borrow_mut()
                .push(p.file_name().unwrap().to_string_lossy().into_owned());
            Ok(())
        });
        assert_eq!(loaded.loaded, ["a", "nvme_core", "nvme"]);
        assert_eq!(inserted.into_inner(), ["a.ko", "nvme-core.ko", "nvme.ko"]);
        let missing = undriven(&sys, &tables, true);
        assert_eq!(missing.len(), 1);
        assert!(
            missing[0].contains("PCI 1022:2000") && missing[0].contains("module pcnet32"),
            "{}",
            missing[0]
        );
        assert_eq!(
            undriven(&sys, &tables, false).len(),
            1,
            "the NVMe controller has no driver link here"
        );
    }

    #[test]
    fn disks_from_sysfs() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path();
        write(sys, "block/nvme0n1/size", "1000215216\n");
        write(sys, "block/nvme0n1/removable", "0\n");
        write(
            sys,
            "block/nvme0n1/device/model",
            "Samsung SSD 980 500GB           \n",
        );
        write(sys, "block/nvme0n1/device/serial", "S64DNX0R123456  \n");
        write(sys, "block/loop0/size", "100\n");
        write(sys, "block/sr0/size", "100\n");
        write(sys, "block/vdb/size", "0\n");
        write(sys, "block/sda/size", "65536\n");
        write(sys, "block/sda/removable", "1\n");
        write(sys, "block/sda/device/model", "Cruzer\n");
        let mut pg80 = vec![0, 0x80, 0, 8];
        pg80.extend_from_slice(b"4C530001");
        std::fs::write(sys.join("block/sda/device/vpd_pg80"), pg80).unwrap();
        let d = disks(sys);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(
            d[0],
            DiskSeen {
                name: "nvme0n1".into(),
                bus: Bus::Nvme,
                model: "Samsung SSD 980 500GB".into(),
                serial: "S64DNX0R123456".into(),
                bytes: 1000215216 * 512,
                removable: false,
            }
        );
        assert_eq!(
            (d[1].bus, d[1].serial.as_str(), d[1].removable),
            (Bus::Scsi, "4C530001", true)
        );
    }
}
