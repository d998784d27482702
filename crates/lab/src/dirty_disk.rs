//! A real-PC-like master disk in an image file, for the tests and the benchmark of file-system-aware
//! images (issue 14): GPT, an EFI System Partition (FAT32), an NTFS partition, an ext4 partition,
//! optionally a Linux swap and a partition of a type roomcast does not know; each file system written
//! with many files of random content, then most of them deleted. Nothing is trimmed or zeroed, so the
//! free space keeps the deleted files' bytes, as on a PC used for years.
//!
//! Every file system is made by its own tools in its own file (`mkfs.vfat` + `mcopy`/`mdel`,
//! `mkntfs` + an `ntfs-3g` FUSE mount, `mkfs.ext4` + `debugfs -w`), then copied into place; the table
//! is written by `sgdisk`. No loop device is used.
//!
//! The helpers read a disk back the same way, each partition through its own tools: [`tree`] lists
//! every directory and file with its sha256 (to compare a restored disk with its master), [`fsck`]
//! runs the file system's checker read-only, [`mark_ntfs_hibernated`], [`mark_ntfs_dirty`] and
//! [`mark_ext4_needs_recovery`] make a partition one that capture must refuse.
//!
//! ```no_run
//! # fn main() -> Result<(), roomcast_lab::LabError> {
//! use roomcast_lab::dirty_disk::{self, DirtySpec};
//! let disk = dirty_disk::build(std::path::Path::new("/tmp/master.img"), &DirtySpec::small())?;
//! for p in &disk.parts {
//!     let files = dirty_disk::tree(&disk.path, p)?;
//!     println!("partition {} ({:?}): {} entries", p.number, p.fs, files.len());
//! }
//! # Ok(()) }
//! ```
//!
//! Needs root (the FUSE mount), `sgdisk` (gdisk), `mkfs.vfat`/`fsck.vfat` (dosfstools), mtools,
//! ntfs-3g, e2fsprogs; `mkswap` for a swap partition.

use super::{LabError, cmd};
use rand::rngs::SmallRng;
use rand::{Rng, RngExt, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;

/// Names whose content an NTFS image does not keep (Windows recreates them at boot): [`tree`] records
/// their size only.
pub const NTFS_RECREATED: [&str; 3] = ["pagefile.sys", "hiberfil.sys", "swapfile.sys"];

/// A partition's file system (or its absence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// EFI System Partition, FAT32.
    Fat32,
    /// Windows' system partition.
    Ntfs,
    /// Linux.
    Ext4,
    /// Linux swap (its pages full of old random bytes, as a used swap is).
    Swap,
    /// Random bytes under a GPT type GUID roomcast does not know: must be taken whole.
    Unknown,
    /// Microsoft Reserved Partition (no file system, zeros), between the ESP and Windows' NTFS in
    /// a [`build_windows`] disk.
    Msr,
}

/// What to build. Sizes are bytes, rounded up to MiB; a size of 0 leaves the partition out.
#[derive(Debug, Clone)]
pub struct DirtySpec {
    /// EFI System Partition (FAT32: at least 36 MiB).
    pub esp: u64,
    /// NTFS partition.
    pub ntfs: u64,
    /// ext4 partition.
    pub ext4: u64,
    /// Linux swap partition.
    pub swap: u64,
    /// A partition of random bytes with an unknown type.
    pub unknown: u64,
    /// `pagefile.sys` at the NTFS root, random content (0: none). Its clusters count as free.
    pub pagefile: u64,
    /// Fraction of each file system's capacity written with files before the deletions.
    pub fill: f64,
    /// Fraction of the files then deleted.
    pub delete: f64,
    /// Largest file (sizes are drawn log-uniformly from 1 KiB to this).
    pub max_file: u64,
    /// Seed of every random choice and content: the same spec builds the same files.
    pub seed: u64,
}

impl DirtySpec {
    /// About 128 MiB: ESP 40 MiB, NTFS 40 MiB, ext4 40 MiB, swap 4 MiB; for tests.
    pub fn small() -> Self {
        DirtySpec {
            esp: 40 * MIB,
            ntfs: 40 * MIB,
            ext4: 40 * MIB,
            swap: 4 * MIB,
            unknown: 0,
            pagefile: 2 * MIB,
            fill: 0.85,
            delete: 0.8,
            max_file: 2 * MIB,
            seed: 14,
        }
    }

    /// A disk of about `total` bytes: ESP 1/8 (36 to 260 MiB), the rest 55 % NTFS, 45 % ext4, no
    /// swap; for the benchmark (`sized(2 << 30)`).
    pub fn sized(total: u64) -> Self {
        let esp = (total / 8).clamp(36 * MIB, 260 * MIB);
        let rest = total.saturating_sub(esp + 2 * MIB);
        let ntfs = rest / 100 * 55;
        DirtySpec {
            esp,
            ntfs,
            ext4: rest - ntfs,
            swap: 0,
            unknown: 0,
            pagefile: (total / 32).min(256 * MIB),
            fill: 0.85,
            delete: 0.8,
            max_file: 16 * MIB,
            seed: 14,
        }
    }
}

/// One partition of a built disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskPart {
    /// Number in the GPT (1-based, as Linux counts).
    pub number: u32,
    /// What it holds.
    pub fs: FsKind,
    /// First byte on the disk.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// What was written in one file system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsStats {
    /// Files written.
    pub files_written: usize,
    /// Bytes of file content written.
    pub bytes_written: u64,
    /// Files left after the deletions.
    pub files_kept: usize,
    /// Bytes of file content left (pagefile.sys excluded).
    pub bytes_kept: u64,
}

/// A built disk.
#[derive(Debug, Clone)]
pub struct DirtyDisk {
    /// The image file.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its partitions, in table order.
    pub parts: Vec<DiskPart>,
    /// What was written in each file system, by partition number.
    pub stats: BTreeMap<u32, FsStats>,
}

impl DirtyDisk {
    /// The partition holding `fs` (the first one).
    pub fn part(&self, fs: FsKind) -> Option<&DiskPart> {
        self.parts.iter().find(|p| p.fs == fs)
    }
}

fn io_err(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let step = step.into();
    move |source| LabError::Io { step, source }
}

/// A work directory removed (with an unmount first, if one is left mounted) when dropped.
struct WorkDir {
    dir: PathBuf,
    mounted: Option<PathBuf>,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Some(m) = self.mounted.take() {
            let _ = Command::new("umount").arg(&m).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Builds the disk described by `spec` in the file `path` (replaced if it exists). The work files
/// (one per file system) live in `<path>.build/`, removed at the end, also on failure.
pub fn build(path: &Path, spec: &DirtySpec) -> Result<DirtyDisk, LabError> {
    let wanted = [
        (FsKind::Fat32, spec.esp),
        (FsKind::Ntfs, spec.ntfs),
        (FsKind::Ext4, spec.ext4),
        (FsKind::Swap, spec.swap),
        (FsKind::Unknown, spec.unknown),
    ];
    build_parts(path, spec, &wanted, None)
}

/// A Windows-shaped disk (issue 15), as Windows Setup lays one out on a UEFI PC: GPT, ESP (FAT32,
/// 40 MiB), MSR (16 MiB), Windows' NTFS (48 MiB) holding `Windows\System32`, `Windows\Panther`,
/// `Windows\Setup\State\State.ini` (UTF-16LE with a BOM, as Windows writes it) with
/// `ImageState=<image_state>`, `Program Files`, `ProgramData`, `Users\Default`, and some random
/// files (some deleted). `image_state` is e.g. `IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE` (a master
/// after `sysprep /generalize /oobe`) or `IMAGE_STATE_COMPLETE` (a PC in use).
pub fn build_windows(path: &Path, image_state: &str) -> Result<DirtyDisk, LabError> {
    let spec = DirtySpec {
        esp: 40 * MIB,
        ntfs: 48 * MIB,
        ext4: 0,
        swap: 0,
        unknown: 0,
        pagefile: 0,
        fill: 0.3,
        delete: 0.5,
        max_file: MIB,
        seed: 15,
    };
    let wanted = [
        (FsKind::Fat32, spec.esp),
        (FsKind::Msr, 16 * MIB),
        (FsKind::Ntfs, spec.ntfs),
    ];
    build_parts(path, &spec, &wanted, Some(image_state))
}

/// The Windows tree of [`build_windows`] under the mounted NTFS root `root`.
fn windows_tree(root: &Path, image_state: &str) -> std::io::Result<()> {
    for d in [
        "Windows/System32/config",
        "Windows/Panther",
        "Windows/Setup/State",
        "Program Files/Common Files",
        "ProgramData/Microsoft",
        "Users/Default",
    ] {
        fs::create_dir_all(root.join(d))?;
    }
    fs::write(
        root.join("Windows/System32/ntoskrnl.exe"),
        b"MZ not a kernel",
    )?;
    let ini = format!("[State]\r\nImageState={image_state}\r\n");
    let mut bytes = vec![0xff, 0xfe];
    for u in ini.encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    fs::write(root.join("Windows/Setup/State/State.ini"), bytes)
}

fn build_parts(
    path: &Path,
    spec: &DirtySpec,
    wanted: &[(FsKind, u64)],
    windows: Option<&str>,
) -> Result<DirtyDisk, LabError> {
    let round = |b: u64| b.div_ceil(MIB) * MIB;
    let mut work = WorkDir {
        dir: path.with_extension("build"),
        mounted: None,
    };
    let _ = fs::remove_dir_all(&work.dir);
    fs::create_dir_all(&work.dir).map_err(io_err(format!("creating {}", work.dir.display())))?;
    let mut rng = SmallRng::seed_from_u64(spec.seed);

    // Layout: 1 MiB for the protective MBR and the primary GPT, partitions aligned on 1 MiB, 1 MiB
    // at the end for the backup GPT.
    let mut parts = Vec::new();
    let mut at = MIB;
    for &(fs, size) in wanted {
        if size == 0 {
            continue;
        }
        let len = round(size);
        parts.push(DiskPart {
            number: parts.len() as u32 + 1,
            fs,
            start: at,
            len,
        });
        at += len;
    }
    let size = at + MIB;

    let mut stats = BTreeMap::new();
    let mut images = Vec::new();
    for p in &parts {
        let img = work.dir.join(format!("part{}.img", p.number));
        let step = format!("dirty disk {}: partition {}", path.display(), p.number);
        File::create(&img)
            .and_then(|f| f.set_len(p.len))
            .map_err(io_err(format!("{step}: creating {}", img.display())))?;
        let st = match p.fs {
            FsKind::Fat32 => build_fat(&step, &img, spec, &mut rng, &work.dir)?,
            FsKind::Ntfs => build_ntfs(&step, &img, p, spec, &mut rng, &mut work, windows)?,
            FsKind::Msr => FsStats::default(),
            FsKind::Ext4 => build_ext4(&step, &img, spec, &mut rng, &work.dir)?,
            FsKind::Swap => {
                fill_random(&img, p.len, &mut rng).map_err(io_err(format!("{step}: filling")))?;
                cmd::run(&step, "mkswap", &[&img.to_string_lossy()])?;
                FsStats::default()
            }
            FsKind::Unknown => {
                fill_random(&img, p.len, &mut rng).map_err(io_err(format!("{step}: filling")))?;
                FsStats::default()
            }
        };
        stats.insert(p.number, st);
        images.push(img);
    }

    // The disk: zeros, the table, then each file system copied into place.
    let _ = fs::remove_file(path);
    File::create(path)
        .and_then(|f| f.set_len(size))
        .map_err(io_err(format!("creating {}", path.display())))?;
    let mut args = vec!["-o".to_string()];
    for p in &parts {
        let (first, last) = (p.start / 512, (p.start + p.len) / 512 - 1);
        let (code, name) = match p.fs {
            FsKind::Fat32 => ("EF00".to_string(), "EFI system partition"),
            FsKind::Ntfs => ("0700".to_string(), "Basic data partition"),
            FsKind::Ext4 => ("8300".to_string(), "Linux"),
            FsKind::Swap => ("8200".to_string(), "swap"),
            FsKind::Msr => ("0C01".to_string(), "Microsoft reserved partition"),
            // A type GUID no table knows.
            FsKind::Unknown => (
                "5d2a6a8e-1c42-4e0b-9b1e-14d15c0ffee0".to_string(),
                "mystery",
            ),
        };
        args.push(format!("--new={}:{first}:{last}", p.number));
        args.push(format!("--typecode={}:{code}", p.number));
        args.push(format!("--change-name={}:{name}", p.number));
    }
    args.push(path.to_string_lossy().into_owned());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    cmd::run(
        &format!("dirty disk {}: writing the GPT", path.display()),
        "sgdisk",
        &argv,
    )?;
    for (p, img) in parts.iter().zip(&images) {
        copy_into(img, path, p.start).map_err(io_err(format!(
            "dirty disk {}: copying partition {} into place",
            path.display(),
            p.number
        )))?;
    }
    drop(work);
    Ok(DirtyDisk {
        path: path.to_path_buf(),
        size,
        parts,
        stats,
    })
}

/// Copies the file `src` into `dst` at byte `offset`.
fn copy_into(src: &Path, dst: &Path, offset: u64) -> std::io::Result<()> {
    let mut s = File::open(src)?;
    let d = OpenOptions::new().write(true).open(dst)?;
    let mut buf = vec![0u8; 4 * MIB as usize];
    let mut at = offset;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        // Keep the disk sparse where the file system never wrote.
        if buf[..n].iter().any(|&b| b != 0) {
            d.write_all_at(&buf[..n], at)?;
        }
        at += n as u64;
    }
    d.sync_all()
}

fn fill_random(path: &Path, len: u64, rng: &mut SmallRng) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    let mut buf = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Words the compressible files are made of (real files compress; random ones do not).
const WORDS: [&str; 24] = [
    "salle", "poste", "image", "disque", "réseau", "élève", "cours", "windows", "linux", "mise",
    "à", "jour", "le", "la", "les", "de", "du", "un", "une", "et", "pour", "dans", "avec", "sur",
];

/// `len` bytes of one file's content from `seed` (deterministic): the generator of the dirty
/// disks' files, also the region benchmark's master (examples/bench_region.rs).
pub fn file_content(seed: u64, len: usize) -> Vec<u8> {
    content(&mut SmallRng::seed_from_u64(seed), len)
}

/// A file's content: half the files random bytes, half text-like (compressible about 3:1).
fn content(rng: &mut SmallRng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    if rng.random_bool(0.5) {
        rng.fill_bytes(&mut v);
    } else {
        let mut at = 0;
        while at < len {
            let w = WORDS[rng.random_range(0..WORDS.len())].as_bytes();
            let n = w.len().min(len - at);
            v[at..at + n].copy_from_slice(&w[..n]);
            at += n;
            if at < len {
                v[at] = if rng.random_ratio(1, 12) { b'\n' } else { b' ' };
                at += 1;
            }
        }
    }
    v
}

/// A planned file: its path relative to the file system's root (`/`-separated) and its size.
struct Planned {
    dir: String,
    name: String,
    len: usize,
}

/// Files filling `capacity * fill` bytes, in directories `dNN/sN`, names needing long-name entries
/// on FAT (`report-0001.dat`).
fn plan(rng: &mut SmallRng, capacity: u64, spec: &DirtySpec) -> Vec<Planned> {
    let target = (capacity as f64 * spec.fill) as u64;
    let (lo, hi) = (1024f64.ln(), (spec.max_file.max(2048) as f64).ln());
    let mut files = Vec::new();
    let mut total = 0u64;
    while total < target {
        let len = (rng.random_range(lo..hi).exp() as u64)
            .min(target - total)
            .max(1);
        let i = files.len();
        files.push(Planned {
            dir: format!("d{:02}/s{}", i % 7, (i / 7) % 3),
            name: format!("report-{i:04}.dat"),
            len: len as usize,
        });
        total += len;
    }
    files
}

/// The indices of the files to delete: `delete` of them, drawn at random.
fn victims(rng: &mut SmallRng, n: usize, delete: f64) -> Vec<bool> {
    (0..n).map(|_| rng.random_bool(delete)).collect()
}

fn kept_stats(files: &[Planned], gone: &[bool]) -> FsStats {
    FsStats {
        files_written: files.len(),
        bytes_written: files.iter().map(|f| f.len as u64).sum(),
        files_kept: gone.iter().filter(|g| !**g).count(),
        bytes_kept: files
            .iter()
            .zip(gone)
            .filter(|(_, g)| !**g)
            .map(|(f, _)| f.len as u64)
            .sum(),
    }
}

/// Writes the planned files under `root` on the host (a staging tree, or a mounted file system).
fn write_tree(
    step: &str,
    root: &Path,
    files: &[Planned],
    rng: &mut SmallRng,
) -> Result<(), LabError> {
    for f in files {
        let dir = root.join(&f.dir);
        fs::create_dir_all(&dir).map_err(io_err(format!("{step}: mkdir {}", dir.display())))?;
        let p = dir.join(&f.name);
        fs::write(&p, content(rng, f.len))
            .map_err(io_err(format!("{step}: writing {}", p.display())))?;
    }
    Ok(())
}

fn build_fat(
    step: &str,
    img: &Path,
    spec: &DirtySpec,
    rng: &mut SmallRng,
    work: &Path,
) -> Result<FsStats, LabError> {
    let i = img.to_string_lossy().into_owned();
    cmd::run(step, "mkfs.vfat", &["-F", "32", "-n", "ESP", &i])?;
    // What mkfs leaves: the data area minus the FATs and reserved sectors (about 1 % here).
    let files = plan(
        rng,
        fs::metadata(img).map(|m| m.len()).unwrap_or(0) / 100 * 97,
        spec,
    );
    let stage = work.join("fat-stage");
    write_tree(step, &stage, &files, rng)?;
    let mut c = Command::new("mcopy");
    c.env("MTOOLS_SKIP_CHECK", "1").args(["-s", "-Q", "-i", &i]);
    for d in fs::read_dir(&stage).map_err(io_err(format!("{step}: listing the stage")))? {
        c.arg(d.map_err(io_err(step.to_string()))?.path());
    }
    c.arg("::/");
    cmd::run_command(&format!("{step}: mcopy"), &mut c)?;
    fs::remove_dir_all(&stage).map_err(io_err(format!("{step}: removing the stage")))?;
    let gone = victims(rng, files.len(), spec.delete);
    for batch in files
        .iter()
        .zip(&gone)
        .filter(|(_, g)| **g)
        .collect::<Vec<_>>()
        .chunks(200)
    {
        let mut c = Command::new("mdel");
        c.env("MTOOLS_SKIP_CHECK", "1").args(["-i", &i]);
        for (f, _) in batch {
            c.arg(format!("::/{}/{}", f.dir, f.name));
        }
        cmd::run_command(&format!("{step}: mdel"), &mut c)?;
    }
    Ok(kept_stats(&files, &gone))
}

fn build_ext4(
    step: &str,
    img: &Path,
    spec: &DirtySpec,
    rng: &mut SmallRng,
    work: &Path,
) -> Result<FsStats, LabError> {
    let i = img.to_string_lossy().into_owned();
    cmd::run(
        step,
        "mkfs.ext4",
        &[
            "-F",
            "-q",
            "-b",
            "4096",
            "-E",
            "nodiscard",
            "-L",
            "linux",
            &i,
        ],
    )?;
    // Inode tables, journal and reserved blocks take their share: aim at 88 % of the size.
    let files = plan(
        rng,
        fs::metadata(img).map(|m| m.len()).unwrap_or(0) / 100 * 88,
        spec,
    );
    let stage = work.join("ext4-stage");
    write_tree(step, &stage, &files, rng)?;
    let mut script = String::new();
    let mut made = std::collections::BTreeSet::new();
    for f in &files {
        let mut at = String::new();
        for part in f.dir.split('/') {
            at = if at.is_empty() {
                part.to_string()
            } else {
                format!("{at}/{part}")
            };
            if made.insert(at.clone()) {
                script.push_str(&format!("cd /\nmkdir {at}\n"));
            }
        }
        script.push_str(&format!(
            "cd /{}\nwrite {} {}\n",
            f.dir,
            stage.join(&f.dir).join(&f.name).display(),
            f.name
        ));
    }
    debugfs_script(step, &i, work, "write", &script)?;
    fs::remove_dir_all(&stage).map_err(io_err(format!("{step}: removing the stage")))?;
    let gone = victims(rng, files.len(), spec.delete);
    let mut script = String::new();
    for (f, _) in files.iter().zip(&gone).filter(|(_, g)| **g) {
        script.push_str(&format!("rm /{}/{}\n", f.dir, f.name));
    }
    debugfs_script(step, &i, work, "rm", &script)?;
    Ok(kept_stats(&files, &gone))
}

fn debugfs_script(
    step: &str,
    img: &str,
    work: &Path,
    what: &str,
    script: &str,
) -> Result<(), LabError> {
    let cmds = work.join(format!("debugfs-{what}.txt"));
    fs::write(&cmds, script).map_err(io_err(format!("{step}: writing {}", cmds.display())))?;
    let out = Command::new("debugfs")
        .args(["-w", "-f"])
        .arg(&cmds)
        .arg(img)
        .output()
        .map_err(io_err(format!("{step}: running debugfs")))?;
    // debugfs exits 0 even when a command fails: its complaints are on stderr.
    let err = String::from_utf8_lossy(&out.stderr);
    let bad: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .collect();
    if !out.status.success() || !bad.is_empty() {
        return Err(LabError::Command {
            step: format!("{step}: debugfs {what}"),
            command: format!("debugfs -w -f {} {img}", cmds.display()),
            status: out.status.to_string(),
            stderr: bad.iter().take(5).copied().collect::<Vec<_>>().join("; "),
        });
    }
    Ok(())
}

fn build_ntfs(
    step: &str,
    img: &Path,
    p: &DiskPart,
    spec: &DirtySpec,
    rng: &mut SmallRng,
    work: &mut WorkDir,
    windows: Option<&str>,
) -> Result<FsStats, LabError> {
    let i = img.to_string_lossy().into_owned();
    let start = (p.start / 512).to_string();
    cmd::run(
        step,
        "mkntfs",
        &[
            "-F", "-f", "-q", "-s", "512", "-p", &start, "-H", "255", "-S", "63", "-L", "Windows",
            &i,
        ],
    )?;
    let mnt = work.dir.join("ntfs-mnt");
    fs::create_dir_all(&mnt).map_err(io_err(format!("{step}: mkdir {}", mnt.display())))?;
    let m = mnt.to_string_lossy().into_owned();
    cmd::run(&format!("{step}: mounting"), "ntfs-3g", &[&i, &m])?;
    work.mounted = Some(mnt.clone());
    // The MFT and the log file take their share: aim at 85 % of what is left.
    let capacity = (p.len / 100 * 85).saturating_sub(spec.pagefile);
    let files = plan(rng, capacity, spec);
    write_tree(step, &mnt, &files, rng)?;
    if spec.pagefile > 0 {
        let mut f = File::create(mnt.join("pagefile.sys"))
            .map_err(io_err(format!("{step}: creating pagefile.sys")))?;
        let mut buf = vec![0u8; MIB as usize];
        let mut left = spec.pagefile;
        while left > 0 {
            let n = left.min(MIB) as usize;
            rng.fill_bytes(&mut buf[..n]);
            f.write_all(&buf[..n])
                .map_err(io_err(format!("{step}: writing pagefile.sys")))?;
            left -= n as u64;
        }
    }
    let gone = victims(rng, files.len(), spec.delete);
    for (f, _) in files.iter().zip(&gone).filter(|(_, g)| **g) {
        let path = mnt.join(&f.dir).join(&f.name);
        fs::remove_file(&path).map_err(io_err(format!("{step}: deleting {}", path.display())))?;
    }
    if let Some(state) = windows {
        windows_tree(&mnt, state).map_err(io_err(format!("{step}: the Windows tree")))?;
    }
    cmd::run(&format!("{step}: unmounting"), "umount", &[&m])?;
    work.mounted = None;
    Ok(kept_stats(&files, &gone))
}

/// One entry of a file system's tree: a directory, or a file and its content's sha256 (hex), or
/// for [`NTFS_RECREATED`] files only their size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir,
    /// A file: sha256 of its content.
    File(String),
    /// A file whose content is not kept by an image (pagefile.sys...): its size.
    Recreated(u64),
}

/// Copies partition `p` of `disk` into its own file `out` (for tools that take no offset).
pub fn extract(disk: &Path, p: &DiskPart, out: &Path) -> Result<(), LabError> {
    let step = format!("{}: extracting partition {}", disk.display(), p.number);
    let run = || -> std::io::Result<()> {
        let mut s = File::open(disk)?;
        s.seek(SeekFrom::Start(p.start))?;
        let mut d = File::create(out)?;
        std::io::copy(&mut s.take(p.len), &mut d)?;
        d.sync_all()
    };
    run().map_err(io_err(step))
}

/// Every directory and file of partition `p` of `disk`, by path (`/`-separated, from the root,
/// names as the file system gives them), read with the file system's own tools. A swap or unknown
/// partition has an empty tree.
pub fn tree(disk: &Path, p: &DiskPart) -> Result<BTreeMap<String, Entry>, LabError> {
    let step = format!("{}: listing partition {}", disk.display(), p.number);
    let tmp = std::env::temp_dir().join(format!(
        "roomcast-tree-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut work = WorkDir {
        dir: tmp.clone(),
        mounted: None,
    };
    fs::create_dir_all(&tmp).map_err(io_err(format!("{step}: mkdir {}", tmp.display())))?;
    let out = tmp.join("root");
    let d = disk.to_string_lossy().into_owned();
    let root: PathBuf = match p.fs {
        FsKind::Swap | FsKind::Unknown | FsKind::Msr => return Ok(BTreeMap::new()),
        FsKind::Fat32 => {
            fs::create_dir_all(&out).map_err(io_err(format!("{step}: mkdir")))?;
            let mut c = Command::new("mcopy");
            c.env("MTOOLS_SKIP_CHECK", "1")
                .args(["-s", "-n", "-m", "-i"])
                .arg(format!("{d}@@{}", p.start))
                .arg("::/")
                .arg(&out);
            cmd::run_command(&format!("{step}: mcopy"), &mut c)?;
            // mcopy -s ::/ DIR copies the root's content into DIR/ itself.
            out.clone()
        }
        FsKind::Ext4 => {
            fs::create_dir_all(&out).map_err(io_err(format!("{step}: mkdir")))?;
            let dev = format!("{d}?offset={}", p.start);
            cmd::run(
                &format!("{step}: debugfs rdump"),
                "debugfs",
                &["-R", &format!("rdump / {}", out.display()), &dev],
            )?;
            out.clone()
        }
        FsKind::Ntfs => {
            let img = tmp.join("ntfs.img");
            extract(disk, p, &img)?;
            let mnt = tmp.join("mnt");
            fs::create_dir_all(&mnt).map_err(io_err(format!("{step}: mkdir")))?;
            cmd::run(
                &format!("{step}: mounting read-only"),
                "ntfs-3g",
                &["-o", "ro", &img.to_string_lossy(), &mnt.to_string_lossy()],
            )?;
            work.mounted = Some(mnt.clone());
            mnt
        }
    };
    let mut entries = BTreeMap::new();
    walk(&root, &root, p.fs, &mut entries).map_err(io_err(format!("{step}: walking")))?;
    drop(work);
    Ok(entries)
}

fn walk(
    root: &Path,
    dir: &Path,
    fs: FsKind,
    out: &mut BTreeMap<String, Entry>,
) -> std::io::Result<()> {
    let mut list: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    list.sort_by_key(|e| e.file_name());
    for e in list {
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .map_err(std::io::Error::other)?
            .to_string_lossy()
            .into_owned();
        let ty = e.file_type()?;
        if ty.is_dir() {
            out.insert(rel, Entry::Dir);
            walk(root, &path, fs, out)?;
        } else if fs == FsKind::Ntfs && NTFS_RECREATED.contains(&rel.as_str()) {
            out.insert(rel, Entry::Recreated(e.metadata()?.len()));
        } else {
            let mut h = Sha256::new();
            let mut f = File::open(&path)?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            out.insert(rel, Entry::File(hex::encode(h.finalize())));
        }
    }
    Ok(())
}

/// Runs the file system's checker on partition `p`, read-only (`fsck.vfat -n`, `ntfsfix
/// --no-action`, `e2fsck -fn`); an error carries the checker's output. Swap and unknown: Ok.
pub fn fsck(disk: &Path, p: &DiskPart) -> Result<(), LabError> {
    let step = format!(
        "{}: checking partition {} ({:?})",
        disk.display(),
        p.number,
        p.fs
    );
    let d = disk.to_string_lossy().into_owned();
    match p.fs {
        FsKind::Swap | FsKind::Unknown | FsKind::Msr => Ok(()),
        FsKind::Ext4 => cmd::run(
            &step,
            "e2fsck",
            &["-fn", &format!("{d}?offset={}", p.start)],
        )
        .map(drop),
        FsKind::Fat32 | FsKind::Ntfs => {
            let tmp = std::env::temp_dir().join(format!(
                "roomcast-fsck-{}-{:016x}.img",
                std::process::id(),
                rand::random::<u64>()
            ));
            extract(disk, p, &tmp)?;
            let t = tmp.to_string_lossy().into_owned();
            let r = if p.fs == FsKind::Fat32 {
                cmd::run(&step, "fsck.vfat", &["-n", &t]).map(drop)
            } else {
                cmd::run(&step, "ntfsfix", &["--no-action", &t]).map(drop)
            };
            let _ = fs::remove_file(&tmp);
            r
        }
    }
}

/// Makes the NTFS partition `p` look hibernated (Windows Fast Startup): a `hiberfil.sys` at its root
/// whose first bytes are `HIBR`, as Windows leaves it.
pub fn mark_ntfs_hibernated(disk: &Path, p: &DiskPart) -> Result<(), LabError> {
    with_ntfs_mounted(disk, p, "hibernating", |mnt| {
        let mut data = vec![0u8; MIB as usize];
        data[..4].copy_from_slice(b"HIBR");
        rand::rng().fill_bytes(&mut data[4096..]);
        fs::write(mnt.join("hiberfil.sys"), data)
    })
}

/// Sets the "dirty" flag of the NTFS partition `p` (`VOLUME_IS_DIRTY` in `$Volume`'s
/// `$VOLUME_INFORMATION`, what Windows leaves after a crash and `chkdsk` clears).
pub fn mark_ntfs_dirty(disk: &Path, p: &DiskPart) -> Result<(), LabError> {
    let step = format!("{}: marking partition {} dirty", disk.display(), p.number);
    let bad = |what: &str| LabError::Parse {
        step: step.clone(),
        command: "reading $Volume".into(),
        output: what.to_string(),
    };
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(io_err(step.clone()))?;
    let mut boot = [0u8; 512];
    f.read_exact_at(&mut boot, p.start)
        .map_err(io_err(step.clone()))?;
    if &boot[3..11] != b"NTFS    " {
        return Err(bad("no NTFS boot sector"));
    }
    let bps = u64::from(u16::from_le_bytes([boot[11], boot[12]]));
    let spc = u64::from(boot[13]);
    let cluster = bps * spc;
    let mft_lcn = u64::from_le_bytes(boot[48..56].try_into().expect("8 bytes"));
    let rec = boot[64] as i8;
    let rec_size = if rec < 0 {
        1u64 << (-rec)
    } else {
        rec as u64 * cluster
    };
    // $Volume is MFT record 3; the MFT's first records are contiguous from its start.
    let at = p.start + mft_lcn * cluster + 3 * rec_size;
    let mut r = vec![0u8; rec_size as usize];
    f.read_exact_at(&mut r, at).map_err(io_err(step.clone()))?;
    if &r[..4] != b"FILE" {
        return Err(bad("MFT record 3 is not a FILE record"));
    }
    let mut off = usize::from(u16::from_le_bytes([r[20], r[21]]));
    while off + 24 <= r.len() {
        let ty = u32::from_le_bytes(r[off..off + 4].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(r[off + 4..off + 8].try_into().expect("4 bytes")) as usize;
        if ty == 0xffff_ffff || len == 0 {
            break;
        }
        if ty == 0x70 && r[off + 8] == 0 {
            let value = off + usize::from(u16::from_le_bytes([r[off + 20], r[off + 21]]));
            // Flags at +10 of VOLUME_INFORMATION; far from a sector's last two bytes (fix-ups).
            let flags = value + 10;
            if flags + 2 > r.len() || (flags % 512) >= 510 {
                return Err(bad("$VOLUME_INFORMATION flags out of place"));
            }
            r[flags] |= 0x01;
            f.write_all_at(&r[flags..flags + 1], at + flags as u64)
                .map_err(io_err(step.clone()))?;
            return f.sync_all().map_err(io_err(step));
        }
        off += len;
    }
    Err(bad("no $VOLUME_INFORMATION in $Volume"))
}

/// Makes the ext4 partition `p` one that needs journal recovery (the `needs_recovery` feature, as a
/// crash while mounted leaves it).
pub fn mark_ext4_needs_recovery(disk: &Path, p: &DiskPart) -> Result<(), LabError> {
    let dev = format!("{}?offset={}", disk.display(), p.start);
    cmd::run(
        &format!("{}: partition {} needs recovery", disk.display(), p.number),
        "debugfs",
        &["-w", "-R", "feature needs_recovery", &dev],
    )
    .map(drop)
}

/// Runs `f` with the NTFS partition `p` mounted read-write (extracted, mounted with ntfs-3g, copied
/// back).
fn with_ntfs_mounted(
    disk: &Path,
    p: &DiskPart,
    what: &str,
    f: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), LabError> {
    let step = format!("{}: {what} partition {}", disk.display(), p.number);
    let tmp = std::env::temp_dir().join(format!(
        "roomcast-ntfs-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut work = WorkDir {
        dir: tmp.clone(),
        mounted: None,
    };
    let mnt = tmp.join("mnt");
    fs::create_dir_all(&mnt).map_err(io_err(format!("{step}: mkdir")))?;
    let img = tmp.join("ntfs.img");
    extract(disk, p, &img)?;
    let (i, m) = (
        img.to_string_lossy().into_owned(),
        mnt.to_string_lossy().into_owned(),
    );
    cmd::run(&format!("{step}: mounting"), "ntfs-3g", &[&i, &m])?;
    work.mounted = Some(mnt.clone());
    f(&mnt).map_err(io_err(step.clone()))?;
    cmd::run(&format!("{step}: unmounting"), "umount", &[&m])?;
    work.mounted = None;
    copy_back(&img, disk, p.start).map_err(io_err(format!("{step}: copying back")))
}

/// Moves every used cluster of the NTFS partition `p` into its first `keep` bytes, as Windows'
/// defragmenter or a "shrink volume" leaves one (ntfs-3g spreads files over the whole volume): the
/// real `ntfsresize` shrinks the volume to `keep` bytes (relocating), then grows it back to the
/// partition, and `ntfsfix -d` clears the check it scheduled. For a disk that fits a smaller one
/// (issue 23).
pub fn compact_ntfs(disk: &Path, p: &DiskPart, keep: u64) -> Result<(), LabError> {
    let step = format!("{}: compacting partition {}", disk.display(), p.number);
    let tmp = std::env::temp_dir().join(format!(
        "roomcast-ntfs-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let _work = WorkDir {
        dir: tmp.clone(),
        mounted: None,
    };
    fs::create_dir_all(&tmp).map_err(io_err(format!("{step}: mkdir")))?;
    let img = tmp.join("ntfs.img");
    extract(disk, p, &img)?;
    let i = img.to_string_lossy().into_owned();
    let keep = keep.to_string();
    for args in [
        &["--force", "--no-progress-bar", "--size", &keep, &i][..],
        &["--force", "--force", "--no-progress-bar", &i][..],
    ] {
        cmd::run(&format!("{step}: ntfsresize"), "ntfsresize", args)?;
    }
    cmd::run(&format!("{step}: ntfsfix -d"), "ntfsfix", &["-d", &i])?;
    copy_back(&img, disk, p.start).map_err(io_err(format!("{step}: copying back")))
}

/// Copies `src` into `dst` at `offset`, every byte (zeros included).
fn copy_back(src: &Path, dst: &Path, offset: u64) -> std::io::Result<()> {
    let mut s = File::open(src)?;
    let mut d = OpenOptions::new().write(true).open(dst)?;
    d.seek(SeekFrom::Start(offset))?;
    std::io::copy(&mut s, &mut d)?;
    d.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_fill_the_target_and_names_need_long_entries() {
        let mut rng = SmallRng::seed_from_u64(1);
        let spec = DirtySpec::small();
        let files = plan(&mut rng, 10 * MIB, &spec);
        let total: u64 = files.iter().map(|f| f.len as u64).sum();
        assert_eq!(total, (10 * MIB) as f64 as u64 * 85 / 100);
        assert!(files.iter().all(|f| f.name.len() > 12));
        let gone = victims(&mut rng, 1000, 0.8);
        let n = gone.iter().filter(|g| **g).count();
        assert!((700..900).contains(&n), "{n} of 1000 deleted");
    }

    /// Builds the small disk for real and reads it back: every file system checks clean, each tree
    /// holds the kept files (and their directories), the deleted files' bytes are still on the disk.
    #[test]
    fn a_small_dirty_disk_is_clean_and_holds_the_kept_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.img");
        let disk = build(&path, &DirtySpec::small()).unwrap();
        assert_eq!(disk.parts.len(), 4);
        assert_eq!(fs::metadata(&path).unwrap().len(), disk.size);
        for p in &disk.parts {
            fsck(&disk.path, p).unwrap();
            let t = tree(&disk.path, p).unwrap();
            let files = t.values().filter(|e| matches!(e, Entry::File(_))).count();
            match p.fs {
                FsKind::Fat32 | FsKind::Ext4 => {
                    let st = &disk.stats[&p.number];
                    assert!(
                        st.files_kept > 3 && st.files_kept < st.files_written / 2,
                        "{st:?}"
                    );
                    assert_eq!(files, st.files_kept, "partition {}: {t:?}", p.number);
                    assert!(t.contains_key("d00/s0"), "{t:?}");
                }
                FsKind::Ntfs => {
                    let st = &disk.stats[&p.number];
                    assert_eq!(files, st.files_kept, "partition {}: {t:?}", p.number);
                    assert_eq!(t.get("pagefile.sys"), Some(&Entry::Recreated(2 * MIB)));
                }
                _ => assert!(t.is_empty()),
            }
        }
        // Deleted content is still there: far more non-zero MiB than kept bytes.
        let data = fs::read(&path).unwrap();
        let nonzero = data
            .chunks(4096)
            .filter(|c| c.iter().any(|&b| b != 0))
            .count() as u64
            * 4096;
        let kept: u64 = disk.stats.values().map(|s| s.bytes_kept).sum();
        assert!(nonzero > 2 * kept, "non-zero {nonzero}, kept {kept}");
    }
}
