//! Secure Boot (issue 20): qemu q35 with SMM and Debian's OVMF built for Secure Boot
//! (`OVMF_CODE_4M.secboot.fd`) with a copy of `OVMF_VARS_4M.ms.fd` (Microsoft's keys enrolled,
//! Secure Boot on) PXE-boots from `roomcast serve --secure-boot`: the firmware takes Debian's shim
//! by TFTP (proxyDHCP named it), shim the Debian-signed GRUB beside it, GRUB its static
//! `grub/grub.cfg` and the machine's `boot/<mac>.grub` from the PXE gate, then the Debian-signed
//! kernel and the initramfs, all by TFTP; the agent restores the image. The same VM given an
//! unsigned GRUB stops at shim's refusal: Secure Boot was really on.

use super::pxe::{
    Guard, IMAGE_SIZE, capture_image, kernel_dir, qemu, school_dhcp, school_dhcp_with, sha256,
};
use roomcast_lab::Lab;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where tests/setup.sh unpacks shim-signed, grub-efi-amd64-signed and grub-efi-amd64-bin.
fn packages() -> PathBuf {
    let p = std::env::var_os("ROOMCAST_SECUREBOOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/roomcast-test/secureboot/root"));
    assert!(
        p.join(roomcast::bootenv::secureboot::GRUB_IN_PACKAGE)
            .exists(),
        "{}: missing, run tests/setup.sh (it unpacks Debian's signed shim and GRUB)",
        p.display()
    );
    p
}

/// Debian's unsigned network GRUB (grub-efi-amd64-bin), the same program as the signed one.
const UNSIGNED_GRUB: &str = "usr/lib/grub/x86_64-efi/monolithic/grubnetx64.efi";
/// shim's message when the image it loads does not verify (on the serial console via OVMF).
const SHIM_REFUSAL: &str = "Verification failed: (0x1A) Security Violation";
const MAC: &str = "52:54:00:18:05:01";

fn build_bootenv(w: &Path, trusted: Option<&Path>) -> PathBuf {
    let boot = w.join("boot");
    let out = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["bootenv", "build", "--out"])
        .arg(&boot)
        .arg("--kernel-dir")
        .arg(kernel_dir())
        .arg("--secure-boot")
        .arg("--secure-boot-dir")
        .arg(packages())
        .args(trusted.iter().flat_map(|t| [Path::new("--trusted-key"), t]))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bootenv build: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The build names who signed each link of the chain.
    assert!(text.contains("signed  shimx64.efi (Microsoft"), "{text}");
    assert!(
        text.contains("signed  grubx64.efi (Debian Secure Boot CA"),
        "{text}"
    );
    assert!(
        text.contains("signed  vmlinuz (Debian Secure Boot CA"),
        "{text}"
    );
    boot
}

/// A PC with a blank disk of `disk_len` bytes (`w/pc.img`) and its serial console in
/// `w/pc.serial`, started under Secure Boot: the VM, the disk and the serial file.
fn secure_boot_pc(tap: &str, disk_len: u64, w: &Path) -> (Guard, PathBuf, PathBuf) {
    let disk = w.join("pc.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(disk_len)
        .unwrap();
    let serial = w.join("pc.serial");
    let vm = start_secure_boot_vm(tap, &disk, &serial, w);
    (vm, disk, serial)
}

/// The Secure Boot VM: q35 with SMM, OVMF's Secure Boot build, Microsoft's keys enrolled.
fn start_secure_boot_vm(tap: &str, disk: &Path, serial: &Path, w: &Path) -> Guard {
    let vars = w.join("vars.fd");
    std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.ms.fd", &vars)
        .expect("OVMF with Microsoft's keys (apt-get install ovmf)");
    let child = Command::new(qemu())
        .args(["-accel", "tcg", "-m", "768", "-nodefaults", "-no-reboot"])
        .args(["-display", "none", "-L", "/usr/share/qemu", "-boot", "n"])
        .args(["-machine", "q35,smm=on"])
        .args(["-global", "driver=cfi.pflash01,property=secure,value=on"])
        .arg("-drive")
        .arg("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-netdev")
        .arg(format!("tap,id=n0,ifname={tap},script=no,downscript=no"))
        // An empty romfile: OVMF's own virtio driver and PXE, as on a real UEFI PC.
        .arg("-device")
        .arg(format!("virtio-net-pci,netdev=n0,mac={MAC},romfile="))
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu");
    Guard(child)
}

/// `s` without its terminal colour sequences (`ESC [ ... m`: the services' log is coloured).
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `roomcast serve --secure-boot` for the one machine, in the lab's server namespace; with
/// `authoritative`, roomcast also hands out the addresses (no school DHCP server).
fn serve(
    server: &roomcast_lab::Node,
    boot: &Path,
    w: &Path,
    image: Option<&super::pxe::Image>,
    authoritative: bool,
) -> Guard {
    let mut serve = server.command(env!("CARGO_BIN_EXE_roomcast"));
    serve
        .args(["serve", "--interface", server.ifname()])
        .args(
            authoritative
                .then_some(["--authoritative", "198.18.3.1-198.18.3.100"])
                .into_iter()
                .flatten(),
        )
        .args(["--subnet", "198.18.0.0/16", "--campaign", "sb"])
        .arg("--secure-boot")
        .arg("--boot-dir")
        .arg(boot)
        .arg("--reports")
        .arg(w.join("reports"))
        // Without `quiet`: the kernel's own Secure Boot and lockdown lines reach the serial log.
        .args(["--cmdline", "console=tty0 console=ttyS0,115200"])
        .arg("--machine")
        .arg(format!("{MAC}=PC-SB"))
        .args(image.iter().flat_map(|i| {
            [
                "--store".to_string(),
                i.store.display().to_string(),
                "--image".into(),
                i.id.clone(),
            ]
        }))
        .stdout(std::fs::File::create(w.join("serve.out")).unwrap())
        .stderr(std::fs::File::create(w.join("serve.log")).unwrap());
    let guard = Guard(serve.spawn().expect("roomcast serve"));
    std::thread::sleep(Duration::from_millis(1500));
    guard
}

#[test]
fn secure_boot_pc_boots_shim_grub_signed_kernel_and_restores() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let image = capture_image(w);
    let boot = build_bootenv(w, Some(&image.pub_file));
    let mut lab = Lab::builder().pcs(0).build().expect("lab");
    let tap = lab.add_tap().expect("tap");
    let server = lab.server().clone();
    // roomcast answers DHCP itself: Debian 12's GRUB takes its TFTP server from the DHCPACK, not
    // from a proxy offer (docs/BOOT.md, "Secure Boot").
    let _serve = serve(&server, &boot, w, Some(&image), true);
    let report = w
        .join("reports")
        .join(format!("{}.json", MAC.replace(':', "-")));
    let (mut vm, disk, serial) = secure_boot_pc(&tap, IMAGE_SIZE, w);
    let start = Instant::now();
    // A bound, not a timed assertion: TCG and TFTP of 17 MB take a few minutes.
    let deadline = start + Duration::from_secs(600);
    while !(report.exists() && vm.0.try_wait().unwrap().is_some()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let screen = plain(&String::from_utf8_lossy(
        &std::fs::read(&serial).unwrap_or_default(),
    ));
    let log = plain(&std::fs::read_to_string(w.join("serve.log")).unwrap_or_default());
    let logs = || format!("{log}\n--- serial ---\n{screen}");
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|_| panic!("no report in 600 s\n{}", logs()));
    eprintln!(
        "secure boot: PXE to report in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["result"], "ok", "{text}\n{}", logs());
    assert_eq!(r["image"], image.id.as_str(), "{text}");
    assert_eq!(
        sha256(&disk),
        image.source_sha256,
        "the PC's disk equals the image's source"
    );
    // The chain it took: GRUB ran the gate's configuration, the kernel saw Secure Boot on.
    for line in [
        "roomcast: PC-SB (52:54:00:18:05:01) joins campaign sb",
        "EFI stub: UEFI Secure Boot is enabled.",
        "Kernel is locked down from EFI Secure Boot",
    ] {
        assert!(
            screen.contains(line),
            "{line:?} not on the serial console\n{}",
            logs()
        );
    }
    for served in [
        "shimx64.efi",
        "grubx64.efi",
        "grub/grub.cfg",
        "vmlinuz",
        "initrd.gz",
    ] {
        assert!(
            log.contains(&format!("file={served}")) || log.contains(&format!("file=/{served}")),
            "TFTP did not serve {served}\n{log}"
        );
    }
    assert!(
        log.contains("Grub") && log.contains("agent, new token"),
        "{log}"
    );
}

#[test]
fn secure_boot_refuses_an_unsigned_grub() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let boot = build_bootenv(w, None);
    // Debian's unsigned build of the same network GRUB where shim looks for it.
    std::fs::copy(
        packages().join(UNSIGNED_GRUB),
        boot.join(roomcast::bootenv::secureboot::GRUB),
    )
    .unwrap();
    let mut lab = Lab::builder().pcs(0).build().expect("lab");
    let school = lab.add_node("school").expect("school node").clone();
    let tap = lab.add_tap().expect("tap");
    let server = lab.server().clone();
    let _dhcp = school_dhcp(&school, w);
    let _serve = serve(&server, &boot, w, None, false);
    let (_vm, _disk, serial) = secure_boot_pc(&tap, 64 << 20, w);
    let read = || {
        plain(&String::from_utf8_lossy(
            &std::fs::read(&serial).unwrap_or_default(),
        ))
    };
    // shim's refusal waits for a key press: the VM stays there until killed.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !read().contains(SHIM_REFUSAL) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let screen = read();
    let log = plain(&std::fs::read_to_string(w.join("serve.log")).unwrap_or_default());
    assert!(
        screen.contains(SHIM_REFUSAL),
        "no Secure Boot refusal on the serial console\n{log}\n--- serial ---\n{screen}"
    );
    assert!(
        log.contains("file=grubx64.efi") || log.contains("file=/grubx64.efi"),
        "shim fetched the unsigned GRUB\n{log}"
    );
    assert!(!screen.contains("Welcome to GRUB"), "{screen}");
    assert!(!log.contains("new token"), "{log}");
    assert!(
        !w.join("reports")
            .join(format!("{}.json", MAC.replace(':', "-")))
            .exists()
    );
}

/// Next to the school's DHCP server, proxyDHCP hands out the shim, but Debian 12's GRUB takes its
/// TFTP server from the school server's DHCPACK (its next-server, `siaddr`), not from the proxy
/// offer: the school's server must name roomcast's address as next server for the room. Here
/// dnsmasq does (`--dhcp-boot=,,198.18.0.1`): the PC boots the chain into the agent and reports.
#[test]
fn secure_boot_next_to_a_school_dhcp_server_naming_roomcast_as_next_server() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let boot = build_bootenv(w, None);
    let mut lab = Lab::builder().pcs(0).build().expect("lab");
    let school = lab.add_node("school").expect("school node").clone();
    let tap = lab.add_tap().expect("tap");
    let server = lab.server().clone();
    let _dhcp = school_dhcp_with(&school, w, &["--dhcp-boot=,,198.18.0.1"]);
    let _serve = serve(&server, &boot, w, None, false);
    let report = w
        .join("reports")
        .join(format!("{}.json", MAC.replace(':', "-")));
    let (_vm, _disk, serial) = secure_boot_pc(&tap, 64 << 20, w);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !report.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let screen = plain(&String::from_utf8_lossy(
        &std::fs::read(&serial).unwrap_or_default(),
    ));
    let log = plain(&std::fs::read_to_string(w.join("serve.log")).unwrap_or_default());
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|_| panic!("no report in 600 s\n{log}\n--- serial ---\n{screen}"));
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["mac"], MAC, "{text}");
    assert!(
        screen.contains("EFI stub: UEFI Secure Boot is enabled."),
        "{screen}"
    );
    assert!(
        log.contains("Grub") && log.contains("agent, new token"),
        "{log}"
    );
}
