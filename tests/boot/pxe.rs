//! End to end with real PXE firmware: qemu (TCG) with its own iPXE option ROM on a tap in the lab's
//! switch, Debian's dnsmasq as the school's DHCP server (addresses only) in one namespace, `roomcast
//! serve` in another. A PC of the campaign PXE-boots into roomcast's boot environment, which reports
//! its hardware over HTTP and powers off — or, when the campaign serves an image, runs the agent,
//! which restores the image onto its empty virtio disk, reports and powers off; a PC outside the
//! campaign boots its own disk, untouched.

use roomcast_lab::Lab;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// qemu-system-x86_64 unpacked by tests/run.sh (see docs/BOOT.md for why not apt-get install).
pub(crate) fn qemu() -> PathBuf {
    let p = std::env::var_os("ROOMCAST_QEMU")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from("/var/cache/roomcast-test/qemu/usr/bin/qemu-system-x86_64")
        });
    assert!(
        p.exists(),
        "{}: missing, run tests/run.sh (it unpacks qemu)",
        p.display()
    );
    p
}

pub(crate) fn kernel_dir() -> PathBuf {
    std::env::var_os("ROOMCAST_KERNEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/roomcast-test/kernel"))
}

/// A child process killed on drop (qemu, dnsmasq, roomcast serve).
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    /// Waits for a VM that should power off by itself (its agent done), at most `limit`; then
    /// kills it. A guest that never powers off (a failed step, a kernel panic under TCG) so
    /// fails its test with what it printed instead of hanging the suite.
    pub(crate) fn wait_at_most(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The agent's kernel command line in the campaign's qemu tests: the serial console, and
/// `no_timer_check`, without which Linux under TCG on a loaded host sometimes panics at boot
/// ("IO-APIC + timer doesn't work!", seen once in a CI run with three jobs on 2 cores).
pub(crate) const TEST_CMDLINE: &str = "console=ttyS0 no_timer_check";

/// A 512-byte boot sector that prints `LOCAL-DISK-BOOTED` on COM1 and halts: what "boots its local
/// disk" looks like on the serial log.
pub(crate) fn local_disk_boot_sector() -> Vec<u8> {
    let msg_at: u16 = 0x7c00 + 23;
    let [lo, hi] = msg_at.to_le_bytes();
    #[rustfmt::skip]
    let mut s = vec![
        0xFC,             // 0: cld
        0x31, 0xC0,       // 1: xor ax, ax
        0x8E, 0xD8,       // 3: mov ds, ax
        0xBA, 0xF8, 0x03, // 5: mov dx, 0x3f8 (COM1)
        0xBE, lo, hi,     // 8: mov si, message
        0xAC,             // 11: lodsb
        0x84, 0xC0,       // 12: test al, al
        0x74, 0x03,       // 14: jz 19
        0xEE,             // 16: out dx, al
        0xEB, 0xF8,       // 17: jmp 11
        0xFA,             // 19: cli
        0xF4,             // 20: hlt
        0xEB, 0xFD,       // 21: jmp 20
    ];
    s.extend_from_slice(b"LOCAL-DISK-BOOTED\r\n\0");
    s.resize(510, 0);
    s.extend_from_slice(&[0x55, 0xAA]);
    s
}

pub(crate) fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[derive(Clone)]
pub(crate) struct VmSpec {
    pub(crate) mac: String,
    pub(crate) disk: PathBuf,
    pub(crate) serial: PathBuf,
    pub(crate) boot_order: &'static str,
    /// OVMF firmware PXE (TFTP of snponly.efi, port 4011) instead of SeaBIOS + qemu's iPXE ROM.
    pub(crate) uefi: bool,
}

fn uefi_args(vm: &VmSpec, work: &Path) -> Vec<String> {
    if !vm.uefi {
        return Vec::new();
    }
    let vars = work.join(format!("vars-{}.fd", vm.mac.replace(':', "")));
    std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).expect("OVMF (apt-get install ovmf)");
    vec![
        "-drive".into(),
        "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
        "-drive".into(),
        format!("if=pflash,format=raw,file={}", vars.display()),
    ]
}

/// The school's DHCP server (addresses only, 198.18.2.10-250) on `school`'s interface: Debian's
/// dnsmasq, killed on drop.
pub(crate) fn school_dhcp(school: &roomcast_lab::Node, w: &Path) -> Guard {
    school_dhcp_with(school, w, &[])
}

/// [`school_dhcp`] with more dnsmasq options (e.g. `--dhcp-boot` naming a next server).
pub(crate) fn school_dhcp_with(school: &roomcast_lab::Node, w: &Path, extra: &[&str]) -> Guard {
    Guard(
        school
            .command("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--port=0",
                "--bind-interfaces",
                "--no-ping",
            ])
            .args(extra)
            .arg(format!("--interface={}", school.ifname()))
            .args([
                "--dhcp-range=198.18.2.10,198.18.2.250,255.255.0.0",
                "--dhcp-authoritative",
            ])
            .arg(format!("--dhcp-leasefile={}", w.join("leases").display()))
            .arg(format!("--pid-file={}", w.join("dnsmasq.pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq"),
    )
}

/// qemu arguments giving a PC its SMBIOS identity (system: vendor, product, serial; board:
/// vendor, product), what the agent reads under `/sys/class/dmi/id`. No commas in the values.
pub(crate) fn smbios(vendor: &str, product: &str, serial: &str, board: &str) -> Vec<String> {
    vec![
        "-smbios".into(),
        format!("type=1,manufacturer={vendor},product={product},serial={serial}"),
        "-smbios".into(),
        format!("type=2,manufacturer={vendor},product={board}"),
    ]
}

pub(crate) fn start_vm(tap: &str, vm: &VmSpec, work: &Path) -> Guard {
    start_vm_with(tap, vm, work, &[])
}

/// [`start_vm`] with more qemu arguments (`-smbios type=1,product=...`: another PC model).
pub(crate) fn start_vm_with(tap: &str, vm: &VmSpec, work: &Path, extra: &[String]) -> Guard {
    let sercon = work.join("sercon");
    std::fs::write(&sercon, [0xf8, 0x03]).unwrap();
    let child = Command::new(qemu())
        .args([
            "-accel",
            "tcg",
            "-m",
            "512",
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
        ])
        .args([
            "-L",
            "/usr/lib/ipxe/qemu",
            "-L",
            "/usr/share/seabios",
            "-L",
            "/usr/share/qemu",
        ])
        .args(["-boot", vm.boot_order])
        .arg("-fw_cfg")
        .arg(format!("name=etc/sercon-port,file={}", sercon.display()))
        .arg("-serial")
        .arg(format!("file:{}", vm.serial.display()))
        .arg("-netdev")
        .arg(format!("tap,id=n0,ifname={tap},script=no,downscript=no"))
        .arg("-device")
        .arg(if vm.uefi {
            // An empty romfile: OVMF's own virtio driver and PXE run, as on a real UEFI PC.
            format!("virtio-net-pci,netdev=n0,mac={},romfile=", vm.mac)
        } else {
            format!("virtio-net-pci,netdev=n0,mac={}", vm.mac)
        })
        .args(uefi_args(vm, work))
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", vm.disk.display()))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu");
    Guard(child)
}

/// Size of the image the agent restores (and of the campaign PCs' disks when an image is served).
pub(crate) const IMAGE_SIZE: u64 = 32 << 20;

/// What the campaign serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serve {
    /// No image: the boot environment reports and powers off.
    Nothing,
    /// A 32 MiB image of random, text and zero regions, captured whole (no partition table).
    Plain,
    /// A masked image of a small dirty disk (GPT: ESP FAT32, NTFS, ext4, files written then mostly
    /// deleted), restored onto PCs whose disks hold random bytes.
    Masked,
    /// The masked image onto PCs whose disks are [`LARGER_BY`] bytes larger than the image, with
    /// `roomcast.grow=last` (issue 23).
    MaskedLarger,
}

/// How much larger than the image the PCs' disks of [`Serve::MaskedLarger`] are.
const LARGER_BY: u64 = 32 << 20;

/// A captured image, in a store whose key is trusted.
pub(crate) struct Image {
    pub(crate) store: PathBuf,
    pub(crate) id: String,
    pub(crate) source: PathBuf,
    pub(crate) source_sha256: String,
    pub(crate) pub_file: PathBuf,
    /// The dirty disk's partitions, for a masked image.
    pub(crate) parts: Vec<roomcast_lab::dirty_disk::DiskPart>,
}

impl Image {
    /// The size of the disk the PCs need.
    fn disk_size(&self) -> u64 {
        std::fs::metadata(&self.source).unwrap().len()
    }
}

/// The masked image: a dirty disk small enough for a TCG guest (about 70 MiB).
fn capture_masked_image(w: &Path) -> Image {
    use roomcast_lab::dirty_disk::{self, DirtySpec};
    let spec = DirtySpec {
        esp: 36 << 20,
        ntfs: 16 << 20,
        ext4: 16 << 20,
        swap: 0,
        unknown: 0,
        pagefile: 1 << 20,
        fill: 0.7,
        max_file: 1 << 20,
        ..DirtySpec::small()
    };
    let disk = dirty_disk::build(&w.join("master.img"), &spec).unwrap();
    capture_dirty(w, &disk, "e2e-masked")
}

/// A dirty disk captured masked into a store under `w` whose key is trusted, named `name`.
pub(crate) fn capture_dirty(
    w: &Path,
    disk: &roomcast_lab::dirty_disk::DirtyDisk,
    name: &str,
) -> Image {
    use roomcast_store::capture::{CaptureOptions, capture};
    use roomcast_store::keys::{Signer, generate_files};
    let (key_file, pub_file, _) = generate_files(&w.join("keys")).unwrap();
    let store = roomcast_store::Store::open_or_create(&w.join("store")).unwrap();
    store.trust(&pub_file).unwrap();
    let report = capture(
        &store,
        &disk.path,
        roomcast_store::manifest::ImageLabel {
            name: name.into(),
            version: "1".into(),
            profile: None,
            captured_by: "test@host".into(),
            captured_at: "2026-11-28T12:00:00Z".into(),
        },
        &Signer::load(&key_file).unwrap(),
        &CaptureOptions::default(),
        &|_| {},
    )
    .unwrap();
    assert!(
        report.unused_chunks > 0 && report.used_bytes < disk.size / 2,
        "the dirty disk's image is masked: {report:?}"
    );
    Image {
        store: store.root().to_path_buf(),
        id: report.id.to_hex(),
        source_sha256: sha256(&disk.path),
        source: disk.path.clone(),
        pub_file,
        parts: disk.parts.clone(),
    }
}

/// Checks a PC's disk after a masked restore: used bytes equal the master's, free bytes still hold
/// what the PC's disk held before, every file system checks clean.
fn check_masked_disk(img: &Image, before: &[u8], pc: &Path) {
    let store = roomcast_store::Store::open(&img.store).unwrap();
    let m = store.open_verified(&img.id.parse().unwrap()).unwrap();
    let (master, after) = (
        std::fs::read(&img.source).unwrap(),
        std::fs::read(pc).unwrap(),
    );
    let mut free = 0u64;
    for c in &m.chunks {
        let base = c.offset as usize;
        let mut at = 0usize;
        let end = c.len as usize..c.len as usize;
        for r in c.used_ranges().iter().chain(std::iter::once(&end)) {
            let (fa, fb, ub) = (base + at, base + r.start, base + r.end);
            assert!(
                after[fa..fb] == before[fa..fb],
                "{}: free bytes {fa}..{fb} were written",
                pc.display()
            );
            assert!(
                after[fb..ub] == master[fb..ub],
                "{}: used bytes {fb}..{ub} differ from the master's",
                pc.display()
            );
            free += (fb - fa) as u64;
            at = r.end;
        }
    }
    assert!(free > 0);
    for p in &img.parts {
        roomcast_lab::dirty_disk::fsck(pc, p)
            .unwrap_or_else(|e| panic!("{}: partition {}: {e}", pc.display(), p.number));
    }
}

/// Checks a PC's disk larger than the image after a restore with `roomcast.grow=last`: the report
/// names the disk's size and what was adjusted, `sgdisk -v` finds no problem, the last partition
/// ends at the last MiB before the backup GPT with its ext4 grown, every file system checks clean
/// and holds the master's files.
fn check_grown_disk(img: &Image, pc: &Path, report: &str) {
    use roomcast_lab::dirty_disk::{self, DiskPart};
    let r: serde_json::Value = serde_json::from_str(report).unwrap();
    let size = std::fs::metadata(pc).unwrap().len();
    assert_eq!(r["disk_size"], size, "{report}");
    let adjusted = r["adjusted"].to_string();
    assert!(
        adjusted.contains("GPT rewritten") && adjusted.contains("(ext4) and its file system grown"),
        "{report}"
    );
    let out = Command::new("sgdisk").arg("-v").arg(pc).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("No problems found"), "sgdisk -v: {text}");
    let f = std::fs::File::open(pc).unwrap();
    let t = roomcast_store::layout::table::read(&f).unwrap();
    let usable = roomcast_store::layout::table::usable_end(&f, size).unwrap();
    let last = roomcast_store::layout::table::last_partition(&t).unwrap();
    assert_eq!(last.start + last.len, usable / (1 << 20) * (1 << 20));
    for p in &img.parts {
        let q = DiskPart {
            len: t
                .partitions
                .iter()
                .find(|x| x.number == p.number)
                .unwrap()
                .len,
            ..p.clone()
        };
        dirty_disk::fsck(pc, &q).unwrap_or_else(|e| panic!("partition {}: {e}", p.number));
        assert_eq!(
            dirty_disk::tree(pc, &q).unwrap(),
            dirty_disk::tree(&img.source, p).unwrap(),
            "partition {}",
            p.number
        );
    }
}

pub(crate) fn capture_image(w: &Path) -> Image {
    use roomcast_store::capture::{CaptureOptions, capture};
    use roomcast_store::keys::{Signer, generate_files};
    use roomcast_store::manifest::ImageLabel;
    use std::os::unix::fs::FileExt;
    let (key_file, pub_file, _) = generate_files(&w.join("keys")).unwrap();
    let store = roomcast_store::Store::open_or_create(&w.join("store")).unwrap();
    store.trust(&pub_file).unwrap();
    let source = w.join("source.img");
    let f = std::fs::File::create(&source).unwrap();
    f.set_len(IMAGE_SIZE).unwrap();
    let random = crate::store::util::random(0x9E37_79B9_7F4A_7C15, 12 << 20);
    f.write_all_at(&local_disk_boot_sector(), 0).unwrap();
    f.write_all_at(&random[..8 << 20], 1 << 20).unwrap();
    f.write_all_at(&b"roomcast e2e ".repeat(400_000), 12 << 20)
        .unwrap();
    f.write_all_at(&random[8 << 20..], IMAGE_SIZE - (4 << 20))
        .unwrap();
    drop(f);
    let label = ImageLabel {
        name: "e2e".into(),
        version: "1".into(),
        profile: None,
        captured_by: "test@host".into(),
        captured_at: "2026-11-28T12:00:00Z".into(),
    };
    let report = capture(
        &store,
        &source,
        label,
        &Signer::load(&key_file).unwrap(),
        &CaptureOptions::default(),
        &|_| {},
    )
    .unwrap();
    Image {
        store: store.root().to_path_buf(),
        id: report.id.to_hex(),
        source_sha256: sha256(&source),
        source,
        pub_file,
        parts: Vec::new(),
    }
}

/// Sets up the room and boots `campaign` PCs (plus one PC outside the campaign when `stranger`);
/// with `image`, the campaign serves a captured image the agents restore. Returns seconds from the
/// VMs' start to the last report. With `multicast`, serve also offers a multicast session of the
/// image and every agent must have taken it.
fn pxe_room(
    campaign: usize,
    stranger: bool,
    uefi: bool,
    authoritative: bool,
    serve_image: Serve,
    multicast: bool,
) -> f64 {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let boot = w.join("boot");
    let image = match serve_image {
        Serve::Nothing => None,
        Serve::Plain => Some(capture_image(w)),
        Serve::Masked | Serve::MaskedLarger => Some(capture_masked_image(w)),
    };
    let status = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["bootenv", "build", "--out"])
        .arg(&boot)
        .arg("--kernel-dir")
        .arg(kernel_dir())
        .args(
            image
                .iter()
                .flat_map(|i| [PathBuf::from("--trusted-key"), i.pub_file.clone()]),
        )
        .status()
        .unwrap();
    assert!(status.success(), "bootenv build");

    let mut lab = Lab::builder().pcs(0).build().expect("lab");
    let school = lab.add_node("school").expect("school node").clone();
    let taps: Vec<String> = (0..campaign + usize::from(stranger))
        .map(|_| lab.add_tap().expect("tap"))
        .collect();
    let server = lab.server().clone();
    // Authoritative mode: an isolated room, no school DHCP server at all.
    let _dhcp = (!authoritative).then(|| school_dhcp(&school, w));
    let macs: Vec<String> = (0..campaign)
        .map(|i| format!("52:54:00:18:01:{i:02x}"))
        .collect();
    let reports = w.join("reports");
    let mut serve = server.command(env!("CARGO_BIN_EXE_roomcast"));
    serve
        .args([
            "serve",
            "--interface",
            server.ifname(),
            "--subnet",
            "198.18.0.0/16",
            "--campaign",
            "e2e",
        ])
        .arg("--announce-ra")
        .args(
            authoritative
                .then_some(["--authoritative", "198.18.3.1-198.18.3.100"])
                .into_iter()
                .flatten(),
        )
        .arg("--boot-dir")
        .arg(&boot)
        .arg("--reports")
        .arg(&reports)
        .args(image.iter().flat_map(|i| {
            [
                "--store".into(),
                i.store.display().to_string(),
                "--image".into(),
                i.id.clone(),
            ]
        }))
        .stdout(std::fs::File::create(w.join("serve.out")).unwrap())
        .stderr(std::fs::File::create(w.join("serve.log")).unwrap());
    if multicast {
        // A TCG guest running a debug build receives far below line rate: at 40 Mbit/s its agent
        // writes some blocks, then starves (no STATUS: declared dead after 10 s) and catches up
        // over HTTP, which the report shows; at 10 Mbit/s it follows the whole stream, but takes
        // about 4 minutes on a loaded machine. Both paths end with the image, verified.
        serve
            .args(["--multicast", "--expect", &campaign.to_string()])
            .args(["--group", "239.255.77.9:9000", "--rate", "40M"])
            .args(["--dead-after", "10"]);
    }
    if serve_image == Serve::MaskedLarger {
        serve.arg("--cmdline").arg(format!(
            "{} {}=last",
            roomcast::serve::services::DEFAULT_CMDLINE,
            roomcast_proto::contract::cmdline::GROW
        ));
    }
    for m in &macs {
        serve.arg("--machine").arg(format!("{m}=PC-{}", &m[15..]));
    }
    let _serve = Guard(serve.spawn().expect("roomcast serve"));
    std::thread::sleep(Duration::from_millis(1500));

    let mut specs = Vec::new();
    let mut randoms = Vec::new();
    for (i, m) in macs.iter().enumerate() {
        let disk = w.join(format!("pc{i}.img"));
        if matches!(serve_image, Serve::Masked | Serve::MaskedLarger) {
            // A PC used for years: its free space holds old bytes, which must stay there.
            let mut size = image.as_ref().unwrap().disk_size() as usize;
            if serve_image == Serve::MaskedLarger {
                size += LARGER_BY as usize;
            }
            let bytes = crate::store::util::random(0x5EED + i as u64, size);
            std::fs::write(&disk, &bytes).unwrap();
            randoms.push(bytes);
        } else {
            let size = if image.is_some() {
                IMAGE_SIZE
            } else {
                64 << 20
            };
            std::fs::File::create(&disk).unwrap().set_len(size).unwrap();
        }
        specs.push(VmSpec {
            mac: m.clone(),
            disk,
            serial: w.join(format!("pc{i}.serial")),
            boot_order: "n",
            uefi,
        });
    }
    if stranger {
        let disk = w.join("stranger.img");
        let mut bytes = local_disk_boot_sector();
        bytes.resize(16 << 20, 0x5A);
        std::fs::write(&disk, bytes).unwrap();
        specs.push(VmSpec {
            mac: "52:54:00:18:02:99".into(),
            disk,
            serial: w.join("stranger.serial"),
            boot_order: "order=nc",
            uefi: false,
        });
    }
    let before: Vec<String> = specs.iter().map(|s| sha256(&s.disk)).collect();
    let start = Instant::now();
    let mut vms: Vec<Guard> = specs
        .iter()
        .zip(&taps)
        .map(|(s, t)| start_vm(t, s, w))
        .collect();

    let deadline = start + Duration::from_secs(300);
    let mut last_report = None;
    let mut stranger_booted = !stranger;
    let serial = |s: &VmSpec| std::fs::read_to_string(&s.serial).unwrap_or_default();
    loop {
        let done = macs
            .iter()
            .filter(|m| {
                reports
                    .join(format!("{}.json", m.replace(':', "-")))
                    .exists()
            })
            .count();
        if done == campaign && last_report.is_none() {
            last_report = Some(start.elapsed());
        }
        if stranger && !stranger_booted {
            stranger_booted = serial(specs.last().unwrap()).contains("LOCAL-DISK-BOOTED");
        }
        let exited = vms[..campaign]
            .iter_mut()
            .all(|v| v.0.try_wait().unwrap().is_some());
        if (last_report.is_some() && exited && stranger_booted) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let logs = || {
        let mut all = std::fs::read_to_string(w.join("serve.log")).unwrap_or_default();
        for s in &specs {
            all += &format!("\n--- {} ---\n{}", s.mac, serial(s));
        }
        all
    };
    let elapsed = last_report
        .unwrap_or_else(|| panic!("no report from every campaign PC in 300 s\n{}", logs()));
    for m in &macs {
        let text =
            std::fs::read_to_string(reports.join(format!("{}.json", m.replace(':', "-")))).unwrap();
        let report: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        if let Some(img) = &image {
            assert_eq!(report["result"], "ok", "{text}\n{}", logs());
            assert_eq!(report["image"], img.id.as_str(), "{text}");
            assert_eq!(report["disk"], "/dev/vda", "{text}");
            assert!(report["written_chunks"].as_u64().unwrap() > 0, "{text}");
            if multicast {
                // It took the session: asked for it with its boot token, was admitted with its
                // control token. How much came by the stream depends on how fast the emulated PC
                // is (under TCG, part of it; the rest by catch-up): printed, not asserted.
                assert_eq!(report["transport"], "multicast", "{text}\n{}", logs());
                let out = std::fs::read_to_string(w.join("serve.out")).unwrap();
                assert!(
                    out.contains(&format!("PC-{} ({m}) joined", &m[15..])),
                    "{out}"
                );
                // Issue 21: the PC's screen shows the stream's progress too (percent, rate).
                if report["multicast"]["multicast_chunks"]
                    .as_u64()
                    .unwrap_or(0)
                    > 0
                {
                    let spec = specs.iter().find(|s| s.mac == m.as_str()).unwrap();
                    let screen = serial(spec);
                    assert!(
                        screen.contains("roomcast: restoring") && screen.contains("%"),
                        "no progress line on the PC's screen:\n{screen}"
                    );
                }
                eprintln!(
                    "pxe multicast: {} chunks from the stream, {} bytes caught up over HTTP",
                    report["multicast"]["multicast_chunks"], report["catch_up_bytes"]
                );
            }
            continue;
        }
        assert_eq!(report["mac"], m.as_str(), "{text}");
        assert!(
            report["macs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == m.as_str()),
            "{text}"
        );
        let disks = report["disks"].as_array().unwrap();
        assert!(
            disks
                .iter()
                .any(|d| d["name"] == "vda" && d["bytes"] == 64 << 20),
            "{text}"
        );
        assert_eq!(report["vendor"], "QEMU", "{text}");
    }
    for (s, _) in specs.iter().zip(&before).take(campaign) {
        let done = if image.is_some() {
            "roomcast: image written"
        } else {
            "roomcast: report accepted"
        };
        assert!(serial(s).contains(done), "{}", logs());
        match (&image, serve_image) {
            (Some(img), Serve::Masked) => {
                let i = specs.iter().position(|x| x.mac == s.mac).unwrap();
                check_masked_disk(img, &randoms[i], &s.disk);
            }
            (Some(img), Serve::MaskedLarger) => {
                let text = std::fs::read_to_string(
                    reports.join(format!("{}.json", s.mac.replace(':', "-"))),
                )
                .unwrap();
                check_grown_disk(img, &s.disk, &text);
            }
            (Some(img), _) => assert_eq!(
                sha256(&s.disk),
                img.source_sha256,
                "the PC's disk equals the image\n{}",
                logs()
            ),
            (None, _) => {}
        }
    }
    if stranger {
        assert!(
            stranger_booted,
            "the PC outside the campaign did not boot its disk\n{}",
            logs()
        );
        drop(vms.pop());
        assert_eq!(
            sha256(&specs.last().unwrap().disk),
            before[campaign],
            "its disk is untouched"
        );
        let log = std::fs::read_to_string(w.join("serve.log")).unwrap();
        // Debug logs name it among the ignored requests; no reply and no agent script may.
        let answered = log.lines().any(|l| {
            l.contains("52:54:00:18:02:99")
                && (l.contains("proxyDHCP reply") || l.contains("boot script: agent"))
        });
        assert!(!answered, "roomcast answered the stranger:\n{log}");
    }
    if let Some(keep) = std::env::var_os("ROOMCAST_KEEP_LOGS") {
        std::fs::write(keep, logs()).unwrap();
    }
    eprintln!(
        "pxe_room: {campaign} campaign PC(s) (uefi: {uefi}): {:.1} s from VM start to the last report",
        elapsed.as_secs_f64()
    );
    elapsed.as_secs_f64()
}

#[test]
fn campaign_pc_pxe_boots_and_reports_stranger_boots_its_disk() {
    pxe_room(1, true, false, false, Serve::Nothing, false);
}

/// Issue 5's acceptance: the campaign PC PXE-boots, its agent restores a 32 MiB image onto the empty
/// virtio disk (sha256 equal to the source), reports and powers off; the stranger's disk is untouched.
#[test]
fn campaign_pc_pxe_boots_and_restores_the_image() {
    pxe_room(1, true, false, false, Serve::Plain, false);
}

/// The real UEFI path: OVMF's firmware PXE gets `snponly.efi` by TFTP (proxy OFFER, then port 4011
/// ACK), then iPXE gets its script over HTTP.
#[test]
fn uefi_pc_pxe_boots_through_tftp_and_reports() {
    pxe_room(1, false, true, false, Serve::Nothing, false);
}

/// An isolated room: roomcast's opt-in authoritative DHCP gives the addresses (to campaign MACs only)
/// and the boot file in one reply; the stranger still boots its own disk.
#[test]
fn authoritative_mode_boots_without_a_school_dhcp_server() {
    pxe_room(1, true, false, true, Serve::Nothing, false);
}

/// The 3-PC measurement of docs/PERFORMANCE.md (slow under TCG on a shared machine):
/// `cargo test --test main boot::pxe::three -- --ignored --nocapture`.
#[test]
#[ignore]
fn three_campaign_pcs() {
    pxe_room(3, false, false, false, Serve::Nothing, false);
}

/// Measurement: 3 campaign PCs restoring the 32 MiB image at once (docs/PERFORMANCE.md):
/// `cargo test --test main boot::pxe::three_campaign_pcs_restore -- --ignored --nocapture`.
#[test]
#[ignore]
fn three_campaign_pcs_restore_the_image() {
    pxe_room(3, false, false, false, Serve::Plain, false);
}

/// The PXE-booted agent takes the multicast stream `roomcast serve --multicast` offers (the same
/// path as `roomcast agent` by hand), verifies every chunk and writes the image.
#[test]
fn campaign_pc_pxe_boots_and_receives_the_image_by_multicast() {
    pxe_room(1, false, false, false, Serve::Plain, true);
}

/// Issue 14: a masked image of a dirty disk (GPT: ESP FAT32, NTFS, ext4) by multicast to a
/// PXE-booted PC whose disk holds random bytes: its used bytes end equal to the master's, its free
/// bytes are still its own, its file systems check clean.
#[test]
fn campaign_pc_pxe_boots_and_receives_a_masked_image_by_multicast() {
    pxe_room(1, false, false, false, Serve::Masked, true);
}

/// Issue 23: a PC whose disk is 32 MiB larger than the masked image, its profile asking to grow the
/// last partition (`roomcast.grow=last`): the agent restores, rewrites the GPT for the disk's
/// size and grows the ext4 with the boot environment's `resize2fs`; `sgdisk -v` and `e2fsck -fn`
/// are clean, the files are the master's, the report names the disk's size and what was adjusted.
#[test]
fn campaign_pc_with_a_larger_disk_gets_the_gpt_fitted_and_the_last_partition_grown() {
    pxe_room(1, false, false, false, Serve::MaskedLarger, false);
}

/// `roomcast bootenv build --out OUT` with the test kernel, trusting each key of `trusted`.
pub(crate) fn build_bootenv(out: &Path, trusted: &[&Path]) {
    let status = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["bootenv", "build", "--out"])
        .arg(out)
        .arg("--kernel-dir")
        .arg(kernel_dir())
        .args(trusted.iter().flat_map(|k| [Path::new("--trusted-key"), k]))
        .status()
        .unwrap();
    assert!(status.success(), "bootenv build");
}

/// A room for PXE tests: the lab's server namespace and switch, the school's DHCP server, and `taps`
/// for qemu PCs. The DHCP server is stopped before the lab is taken down.
pub(crate) struct PxeRoom {
    _dhcp: Guard,
    pub(crate) lab: Lab,
    pub(crate) taps: Vec<String>,
}

pub(crate) fn pxe_room_with_school_dhcp(taps: usize, w: &Path) -> PxeRoom {
    let mut lab = Lab::builder().pcs(0).build().expect("lab");
    let school = lab.add_node("school").expect("school node").clone();
    let taps = (0..taps).map(|_| lab.add_tap().expect("tap")).collect();
    PxeRoom {
        _dhcp: school_dhcp(&school, w),
        lab,
        taps,
    }
}
