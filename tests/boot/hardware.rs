//! The boot environment on PC hardware that is not virtio (issue 21): qemu (TCG) with real
//! firmware (SeaBIOS + qemu's iPXE ROM of the card, or OVMF), PXE-booting from `roomcast serve`
//! in the lab into `roomcast bootenv build`'s initramfs, whose agent loads the drivers by modalias,
//! takes the booting card, picks the system disk by the rule and restores the image.
//!
//! One case is one test: the matrix covers every card (e1000, e1000e, rtl8139, virtio) and every
//! disk controller (AHCI, NVMe, virtio) at least once, and both firmwares; then a PC with two
//! disks, a rule matching no disk, and a card left without a driver on purpose (AMD PCnet, not in
//! the boot environment). Each prints its PXE boot time (qemu start to report) for
//! docs/PERFORMANCE.md: `cargo test --test main boot::hardware:: -- --nocapture --test-threads=1`.

use super::pxe::{
    Guard, IMAGE_SIZE, Image, capture_dirty, capture_image, kernel_dir, qemu, school_dhcp, sha256,
};
use roomcast_lab::Lab;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Firmware {
    Bios,
    Uefi,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Controller {
    Ahci,
    Nvme,
    Virtio,
    /// A USB stick behind an xHCI controller.
    Usb,
}

struct Disk {
    controller: Controller,
    /// Bytes; the file is created with this size.
    size: u64,
    /// Fill byte (0: an empty disk).
    fill: u8,
}

struct Case {
    name: &'static str,
    firmware: Firmware,
    /// qemu's device name of the card.
    nic: &'static str,
    disks: Vec<Disk>,
    /// Extra kernel command line (the system-disk rule).
    cmdline: &'static str,
    /// Extra `roomcast bootenv build` arguments.
    build: &'static [&'static str],
    /// The image served, captured into a store under the work folder.
    image: fn(&Path) -> Image,
}

struct Outcome {
    /// The report file's JSON, when one came.
    report: Option<serde_json::Value>,
    /// The serial console.
    serial: String,
    disk_files: Vec<PathBuf>,
    before: Vec<String>,
    source_sha256: String,
    image_id: String,
    image: Image,
    _work: tempfile::TempDir,
}

const MAC: &str = "52:54:00:21:00:01";

fn drive_args(i: usize, d: &Disk, file: &Path) -> Vec<String> {
    let mut a = vec![
        "-drive".into(),
        format!("if=none,id=d{i},format=raw,file={}", file.display()),
    ];
    match d.controller {
        Controller::Ahci => {
            a.extend(["-device".into(), format!("ich9-ahci,id=ahci{i}")]);
            a.extend(["-device".into(), format!("ide-hd,bus=ahci{i}.0,drive=d{i}")]);
        }
        Controller::Nvme => {
            a.extend([
                "-device".into(),
                format!("nvme,serial=RCNVME{i:02},drive=d{i}"),
            ]);
        }
        Controller::Virtio => {
            a.extend(["-device".into(), format!("virtio-blk-pci,drive=d{i}")]);
        }
        Controller::Usb => {
            a.extend(["-device".into(), format!("qemu-xhci,id=xhci{i}")]);
            a.extend([
                "-device".into(),
                format!("usb-storage,bus=xhci{i}.0,drive=d{i},removable=on"),
            ]);
        }
    }
    a
}

fn boot(case: &Case) -> Outcome {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let image = (case.image)(w);
    let boot = w.join("boot");
    let status = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["bootenv", "build", "--out"])
        .arg(&boot)
        .arg("--kernel-dir")
        .arg(kernel_dir())
        .arg("--trusted-key")
        .arg(&image.pub_file)
        .args(case.build)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "bootenv build");
    let initrd_bytes = std::fs::metadata(boot.join("initrd.gz")).unwrap().len();

    let mut lab = Lab::builder().pcs(0).build().expect("lab");
    let school = lab.add_node("school").expect("school node").clone();
    let tap = lab.add_tap().expect("tap");
    let server = lab.server().clone();
    let _dhcp = school_dhcp(&school, w);
    let reports = w.join("reports");
    let cmdline = format!(
        "console=tty0 console=ttyS0,115200 quiet roomcast.wait=3 {}",
        case.cmdline
    );
    let _serve = Guard(
        server
            .command(env!("CARGO_BIN_EXE_roomcast"))
            .args(["serve", "--interface", server.ifname()])
            .args(["--subnet", "198.18.0.0/16", "--campaign", "hw"])
            // iPXE otherwise waits ~16 s for IPv6 router advertisements (docs/PERFORMANCE.md).
            .arg("--announce-ra")
            .arg("--boot-dir")
            .arg(&boot)
            .arg("--reports")
            .arg(&reports)
            .arg("--store")
            .arg(&image.store)
            .args(["--image", &image.id])
            .args(["--cmdline", cmdline.trim()])
            .arg("--machine")
            .arg(format!("{MAC}=PC-21"))
            .stdout(std::fs::File::create(w.join("serve.out")).unwrap())
            .stderr(std::fs::File::create(w.join("serve.log")).unwrap())
            .spawn()
            .expect("roomcast serve"),
    );
    std::thread::sleep(Duration::from_millis(1500));

    let mut disk_files = Vec::new();
    let mut before = Vec::new();
    let mut qemu_cmd = Command::new(qemu());
    qemu_cmd
        .args(["-accel", "tcg", "-m", "768", "-nodefaults", "-no-reboot"])
        .args(["-display", "none"])
        .args(["-L", "/usr/lib/ipxe/qemu", "-L", "/usr/share/seabios"])
        .args(["-L", "/usr/share/qemu", "-boot", "n"]);
    let serial = w.join("pc.serial");
    let sercon = w.join("sercon");
    std::fs::write(&sercon, [0xf8, 0x03]).unwrap();
    qemu_cmd
        .arg("-fw_cfg")
        .arg(format!("name=etc/sercon-port,file={}", sercon.display()))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-netdev")
        .arg(format!("tap,id=n0,ifname={tap},script=no,downscript=no"))
        .arg("-device")
        .arg(
            if case.nic == "virtio-net-pci" && case.firmware == Firmware::Uefi {
                // OVMF's own virtio driver and PXE, as on a real UEFI PC.
                format!("{},netdev=n0,mac={MAC},romfile=", case.nic)
            } else {
                format!("{},netdev=n0,mac={MAC}", case.nic)
            },
        );
    if case.firmware == Firmware::Uefi {
        let vars = w.join("vars.fd");
        std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).expect("OVMF");
        qemu_cmd
            .arg("-drive")
            .arg("if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd")
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()));
    }
    for (i, d) in case.disks.iter().enumerate() {
        let file = w.join(format!("disk{i}.img"));
        let f = std::fs::File::create(&file).unwrap();
        f.set_len(d.size).unwrap();
        if d.fill != 0 {
            std::fs::write(&file, vec![d.fill; d.size as usize]).unwrap();
        }
        drop(f);
        before.push(sha256(&file));
        qemu_cmd.args(drive_args(i, d, &file));
        disk_files.push(file);
    }
    let report_file = reports.join(format!("{}.json", MAC.replace(':', "-")));
    let start = Instant::now();
    let mut vm = Guard(
        qemu_cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(w.join("qemu.err")).unwrap())
            .spawn()
            .expect("qemu"),
    );
    // Generous: TCG on a shared machine; the PC powers itself off in every case.
    let deadline = start + Duration::from_secs(900);
    let mut reported_at = None;
    loop {
        if reported_at.is_none() && report_file.exists() {
            reported_at = Some(start.elapsed());
        }
        if vm.0.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let s = std::fs::read_to_string(&serial).unwrap_or_default();
            panic!("{}: the PC did not power off in 900 s\n{s}", case.name);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let seconds = reported_at.unwrap_or_else(|| start.elapsed()).as_secs_f64();
    let report = report_file.exists().then(|| {
        let text = std::fs::read_to_string(&report_file).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    });
    let serial = std::fs::read_to_string(&serial).unwrap_or_default();
    eprintln!(
        "hardware: {}: {seconds:.1} s from qemu start to {} (initrd.gz {initrd_bytes} bytes)",
        case.name,
        if report.is_some() {
            "the report"
        } else {
            "power-off"
        }
    );
    Outcome {
        report,
        serial,
        disk_files,
        before,
        source_sha256: image.source_sha256.clone(),
        image_id: image.id.clone(),
        image,
        _work: work,
    }
}

fn one_disk(c: Controller) -> Vec<Disk> {
    vec![Disk {
        controller: c,
        size: IMAGE_SIZE,
        fill: 0,
    }]
}

/// The PC PXE-boots, the agent loads its card's and controller's drivers, restores the image onto
/// the one internal disk (the default rule), reports ok and powers off; the disk equals the image.
fn restores(name: &'static str, firmware: Firmware, nic: &'static str, c: Controller) {
    let o = boot(&Case {
        name,
        firmware,
        nic,
        disks: one_disk(c),
        cmdline: "",
        build: &[],
        image: capture_image,
    });
    let r = o
        .report
        .unwrap_or_else(|| panic!("{name}: no report\n{}", o.serial));
    let dev = match c {
        Controller::Ahci => "/dev/sda",
        Controller::Nvme => "/dev/nvme0n1",
        Controller::Virtio => "/dev/vda",
        Controller::Usb => unreachable!("no PC restores onto a stick here"),
    };
    assert_eq!(r["result"], "ok", "{r}\n{}", o.serial);
    assert_eq!(r["image"], o.image_id.as_str(), "{r}");
    assert_eq!(r["disk"], dev, "{r}");
    assert!(
        r["nic"].as_str().unwrap().contains(MAC),
        "the booting card: {r}"
    );
    assert!(r["wake_on_lan"].is_string(), "{r}");
    eprintln!(
        "hardware: {name}: wake_on_lan {}, nic {}",
        r["wake_on_lan"], r["nic"]
    );
    if nic == "rtl8139" {
        // qemu's RTL8139C+ lets 8139cp arm magic-packet wake (its e1000 refuses, virtio has none).
        assert_eq!(r["wake_on_lan"], "armed (magic packet) on eth0", "{r}");
    }
    assert_eq!(
        sha256(&o.disk_files[0]),
        o.source_sha256,
        "{name}: the disk equals the image\n{}",
        o.serial
    );
    assert!(o.serial.contains("roomcast: image written"), "{}", o.serial);
    assert!(
        o.serial.contains("roomcast: restoring 100%"),
        "{}",
        o.serial
    );
}

#[test]
fn bios_e1000_ahci_restores() {
    restores("BIOS e1000 AHCI", Firmware::Bios, "e1000", Controller::Ahci);
}

#[test]
fn uefi_e1000e_nvme_restores() {
    restores(
        "UEFI e1000e NVMe",
        Firmware::Uefi,
        "e1000e",
        Controller::Nvme,
    );
}

#[test]
fn bios_rtl8139_virtio_restores() {
    restores(
        "BIOS rtl8139 virtio-blk",
        Firmware::Bios,
        "rtl8139",
        Controller::Virtio,
    );
}

#[test]
fn uefi_virtio_ahci_restores() {
    restores(
        "UEFI virtio-net AHCI",
        Firmware::Uefi,
        "virtio-net-pci",
        Controller::Ahci,
    );
}

#[test]
fn uefi_rtl8139_nvme_restores() {
    restores(
        "UEFI rtl8139 NVMe",
        Firmware::Uefi,
        "rtl8139",
        Controller::Nvme,
    );
}

#[test]
fn bios_virtio_nvme_restores() {
    restores(
        "BIOS virtio-net NVMe",
        Firmware::Bios,
        "virtio-net-pci",
        Controller::Nvme,
    );
}

/// An NVMe system disk, a SATA data disk and a USB stick: the rule (`bus: nvme`) names the first;
/// the data disk's and the stick's sha256 are unchanged.
#[test]
fn two_disks_only_the_rules_disk_is_written() {
    let o = boot(&Case {
        name: "BIOS e1000e, NVMe system + SATA data",
        firmware: Firmware::Bios,
        nic: "e1000e",
        disks: vec![
            Disk {
                controller: Controller::Nvme,
                size: IMAGE_SIZE,
                fill: 0,
            },
            Disk {
                controller: Controller::Ahci,
                size: 48 << 20,
                fill: 0xD7,
            },
            Disk {
                controller: Controller::Usb,
                size: 16 << 20,
                fill: 0x5B,
            },
        ],
        cmdline: "roomcast.sysdisk=bus:nvme",
        build: &[],
        image: capture_image,
    });
    let r = o
        .report
        .unwrap_or_else(|| panic!("no report\n{}", o.serial));
    assert_eq!(r["result"], "ok", "{r}\n{}", o.serial);
    assert_eq!(r["disk"], "/dev/nvme0n1", "{r}");
    assert_eq!(sha256(&o.disk_files[0]), o.source_sha256, "{}", o.serial);
    assert_eq!(
        sha256(&o.disk_files[1]),
        o.before[1],
        "the data disk is untouched"
    );
    assert_eq!(
        sha256(&o.disk_files[2]),
        o.before[2],
        "the stick is untouched"
    );
    let seen: Vec<(&str, &str)> = r["disks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d["bus"].as_str().unwrap()))
        .collect();
    // The stick (usb-storage loaded by its modalias behind xhci_pci) is listed when it was
    // scanned in time; either way it is never chosen.
    assert!(
        seen == [("nvme0n1", "nvme"), ("sda", "sata")]
            || seen == [("nvme0n1", "nvme"), ("sda", "sata"), ("sdb", "usb")],
        "{r}"
    );
    eprintln!("hardware: two disks and a stick: disks seen {seen:?}");
}

/// Without a rule, two internal disks are ambiguous; a rule matching none of them is refused too:
/// the server's report names the reason and every disk seen, and no disk is written.
#[test]
fn a_rule_matching_no_disk_is_reported_with_the_disks_seen() {
    let o = boot(&Case {
        name: "BIOS virtio-net, rule bus nvme, virtio + SATA disks",
        firmware: Firmware::Bios,
        nic: "virtio-net-pci",
        disks: vec![
            Disk {
                controller: Controller::Virtio,
                size: IMAGE_SIZE,
                fill: 0,
            },
            Disk {
                controller: Controller::Ahci,
                size: IMAGE_SIZE,
                fill: 0x11,
            },
        ],
        cmdline: "roomcast.sysdisk=bus:nvme",
        build: &[],
        image: capture_image,
    });
    let r = o
        .report
        .unwrap_or_else(|| panic!("no report\n{}", o.serial));
    assert_eq!(r["result"], "failed", "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("no disk matches the system-disk rule (bus nvme)")
            && error.contains("vda (virtio")
            && error.contains("sda (sata, QEMU HARDDISK"),
        "{error}"
    );
    let seen: Vec<(&str, &str)> = r["disks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d["bus"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [("sda", "sata"), ("vda", "virtio")], "{r}");
    for (f, b) in o.disk_files.iter().zip(&o.before) {
        assert_eq!(&sha256(f), b, "no disk written");
    }
    assert!(o.serial.contains("no disk matches"), "{}", o.serial);
    assert!(
        o.serial.contains("This was reported to the server."),
        "{}",
        o.serial
    );
}

/// A boot environment built without the e1000 driver (`--without-modules e1000`), on a PC with an
/// Intel 82540EM (qemu `e1000`, PCI 8086:100e): iPXE's ROM boots it, then the agent finds no card
/// with the booting MAC and shows the card's PCI id and the module it lacks on the screen (the
/// serial console here); nothing can be reported, the PC waits and powers off.
#[test]
fn a_card_without_a_driver_shows_its_pci_id() {
    let o = boot(&Case {
        name: "BIOS e1000 left out of the initramfs",
        firmware: Firmware::Bios,
        nic: "e1000",
        disks: one_disk(Controller::Virtio),
        cmdline: "",
        build: &["--without-modules", "e1000"],
        image: capture_image,
    });
    assert!(o.report.is_none(), "no network, no report");
    assert!(
        o.serial.contains("8086:100e") && o.serial.contains("module e1000 "),
        "{}",
        o.serial
    );
    assert!(
        o.serial
            .contains("No network card with the booting MAC 52:54:00:21:00:01"),
        "{}",
        o.serial
    );
    assert_eq!(sha256(&o.disk_files[0]), o.before[0], "disk untouched");
}

/// `bootenv build --modules`, `--without-modules`, `--firmware`: the extra module comes with its
/// tables' lines, the left-out one is absent but named in `roomcast.absent.alias`, the firmware
/// folder lands under `/lib/firmware`; a module the kernel lacks fails the build, named. ntfscp
/// and the loop driver are in (issue 15).
#[test]
fn bootenv_build_takes_extra_modules_and_firmware() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let fw = w.join("fw/rtl_nic");
    std::fs::create_dir_all(&fw).unwrap();
    std::fs::write(fw.join("rtl8168h-2.fw"), b"firmware bytes").unwrap();
    let build = |out: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .args(["bootenv", "build", "--out"])
            .arg(w.join(out))
            .arg("--kernel-dir")
            .arg(kernel_dir())
            .args(extra)
            .output()
            .unwrap()
    };
    // Two signers trusted together: the school's and the region's (issue 18, a base image from
    // the region restored at b, the school's capture at g).
    let (_, school_key, _) = roomcast_store::keys::generate_files(&w.join("school")).unwrap();
    let (_, region_key, _) = roomcast_store::keys::generate_files(&w.join("region")).unwrap();
    let o = build(
        "boot",
        &[
            "--modules",
            "e100",
            "--without-modules",
            "tg3",
            "--firmware",
            w.join("fw").to_str().unwrap(),
            "--trusted-key",
            school_key.to_str().unwrap(),
            "--trusted-key",
            region_key.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let x = w.join("x");
    std::fs::create_dir_all(&x).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zcat {} | cpio -id --quiet",
            w.join("boot/initrd.gz").display()
        ))
        .current_dir(&x)
        .status()
        .unwrap();
    assert!(st.success(), "unpacking the initramfs");
    assert_eq!(
        std::fs::read(x.join("lib/firmware/rtl_nic/rtl8168h-2.fw")).unwrap(),
        b"firmware bytes"
    );
    let trusted = roomcast_agent::load_trusted(&x.join("etc/roomcast/trusted.pub")).unwrap();
    for key in [&school_key, &region_key] {
        let key = roomcast_store::keys::load_public(key).unwrap();
        assert!(trusted.contains(&key), "the agent trusts both signers");
    }
    assert_eq!(trusted.keys().len(), 2);
    let mdir = std::fs::read_dir(x.join("lib/modules"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let read = |n: &str| std::fs::read_to_string(mdir.join(n)).unwrap();
    let (dep, alias, absent) = (
        read("modules.dep"),
        read("modules.alias"),
        read("roomcast.absent.alias"),
    );
    assert!(dep.contains("/e100.ko:"), "{dep}");
    assert!(
        alias.lines().any(|l| l.ends_with(" e100")),
        "e100's aliases"
    );
    assert!(!dep.contains("/tg3.ko"), "tg3 left out");
    assert!(
        absent.lines().any(|l| l.ends_with(" tg3")),
        "and named as absent"
    );
    assert!(
        dep.contains("/e1000e.ko:"),
        "the built-in list is still there"
    );
    // Step h of a Windows PC (issue 15): ntfs-3g's ntfscp runs from the initramfs with the
    // libraries it came with, and the loop driver is there.
    assert!(dep.contains("/loop.ko:"), "{dep}");
    let v = Command::new("chroot")
        .arg(&x)
        .args(["/bin/ntfscp", "--version"])
        .output()
        .unwrap();
    assert!(
        v.status.success() && String::from_utf8_lossy(&v.stderr).contains("ntfscp v"),
        "{v:?}"
    );

    let o = build("bad", &["--modules", "no_such_driver"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("kernel module no_such_driver is not in the kernel package"),
        "{err}"
    );
}

/// The Windows disk of [`windows_image`]: ESP 40 MiB, MSR 16 MiB, NTFS 48 MiB, 1 MiB each end.
const WINDOWS_DISK: u64 = 106 << 20;

/// A Windows disk (ESP, MSR, NTFS last; `store::other_size::windows_master`) captured masked.
fn windows_image(w: &Path) -> Image {
    let disk = crate::store::other_size::windows_master(&w.join("master.img"));
    assert_eq!(disk.size, WINDOWS_DISK);
    capture_dirty(w, &disk, "windows")
}

/// Issue 23 on a PC that is not virtio (e1000e card, AHCI disk): the Windows disk onto a disk 12 MiB
/// smaller. The agent writes the bytes below the disk's end, the GPT for its size, and shrinks the
/// NTFS with the boot environment's `ntfsresize` on a device-mapper view of the partition's old
/// size (its `dmsetup`, `dm_mod` and `dm_zero`): on a block device there is no other way, the
/// plan refuses without device-mapper. The result passes `sgdisk -v`, `ntfsfix --no-action`,
/// `ntfsresize --info`, `ntfsinfo -m`, holds the master's files, and its partition ends at the
/// last MiB boundary before the GPT's backup.
#[test]
fn bios_e1000e_ahci_smaller_disk_gets_the_windows_ntfs_shrunk() {
    use crate::store::other_size::{assert_ntfs_shrunk, assert_same_files, sgdisk_clean};
    let size = WINDOWS_DISK - (12 << 20);
    let o = boot(&Case {
        name: "BIOS e1000e AHCI smaller disk, NTFS last",
        firmware: Firmware::Bios,
        nic: "e1000e",
        disks: vec![Disk {
            controller: Controller::Ahci,
            size,
            fill: 0x5a,
        }],
        cmdline: "",
        build: &[],
        image: windows_image,
    });
    let r = o
        .report
        .unwrap_or_else(|| panic!("no report\n{}", o.serial));
    assert_eq!(r["result"], "ok", "{r}\n{}", o.serial);
    assert_eq!(r["disk"], "/dev/sda", "{r}");
    assert_eq!(r["disk_size"], size, "{r}");
    assert!(
        r["adjusted"]
            .to_string()
            .contains("partition 3 (ntfs) and its file system shrunk"),
        "{r}"
    );
    let master = roomcast_lab::dirty_disk::DirtyDisk {
        path: o.image.source.clone(),
        size: WINDOWS_DISK,
        parts: o.image.parts.clone(),
        stats: Default::default(),
    };
    let disk = &o.disk_files[0];
    assert_eq!(std::fs::metadata(disk).unwrap().len(), size);
    sgdisk_clean(disk);
    assert_same_files(&master, disk);
    assert_ntfs_shrunk(&master, disk, size);
}
