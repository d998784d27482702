//! Restoring onto a disk of another size than the master's (issue 23).
//!
//! [`plan`] decides, before anything is written, how the image fits the target: the same size needs
//! nothing; a larger disk gets its partition table rewritten for its size (GPT: backup header and
//! entries at the new end, protective MBR, last usable sector; MBR: nothing) and, when asked
//! ([`FitOptions::grow_last`]), its last partition and file system grown to the end (ext2/3/4 with
//! `resize2fs`, NTFS with `ntfsresize`); a smaller disk is accepted only when no used byte of the
//! image lies beyond what the target can hold, the last partition and its file system shrunk to
//! fit (ext2/3/4, NTFS), and is otherwise refused naming the bytes missing and the partition
//! holding the last used byte. The check is exact: a used byte beyond the end is allowed only when
//! the fit rewrites or drops it: the GPT backup (rewritten at the new end), the superblock backups,
//! group descriptors, bitmaps and inode tables of the ext block groups the shrink removes (see
//! [`roomcast_layout::ext::shrink_drops`]), the NTFS backup boot sector (see
//! [`roomcast_layout::ntfs::shrink`]: every used NTFS cluster must lie inside the shrunk volume,
//! so `ntfsresize` moves none that holds data), and zero bytes outside every partition.
//! `ntfsresize` refuses a device shorter than the volume: it runs on a view of the old size
//! whose missing tail reads as zeros ([`DmView`] on a block device, [`FileTail`] in a file).
//!
//! Restore writes only the bytes below the target's end (see [`crate::manifest::ChunkEntry::used_ranges_below`]);
//! [`apply`] then writes the table and resizes the file system.

use crate::chunk::decode_verified;
use crate::disk::{Disk, DiskError};
use crate::manifest::{Manifest, VerifiedManifest};
use crate::restore::ChunkSource;
use roomcast_layout::table::{self, HeadTail, Patch, TableKind};
use roomcast_layout::{Extents, ReadAt, Slice};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

const MIB: u64 = 1 << 20;

/// What the profile asks of a disk of another size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FitOptions {
    /// On a larger disk, grow the last partition and its file system to the disk's end (ext2/3/4,
    /// NTFS). Off: the extra space stays unallocated after the last partition.
    pub grow_last: bool,
}

/// How the last partition changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResize {
    /// Its number (1-based).
    pub number: u32,
    /// Its file system as the image records it (`ext4`, `ntfs`...).
    pub fs: String,
    /// First byte on the disk.
    pub start: u64,
    /// Length in the image.
    pub old_len: u64,
    /// Length on the target.
    pub new_len: u64,
}

/// How an image fits a target, decided before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fit {
    /// The image's disk size.
    pub image_size: u64,
    /// The target's size.
    pub target_size: u64,
    /// Table writes, after the image's bytes.
    pub patches: Vec<Patch>,
    /// The last partition grown or shrunk, if it is.
    pub resize: Option<PartitionResize>,
    /// What is adjusted, in words (for the report and the CLI), empty when nothing is.
    pub adjusted: Vec<String>,
}

impl Fit {
    /// Nothing to adjust: the target is the image's size.
    pub fn unchanged(size: u64) -> Self {
        Fit {
            image_size: size,
            target_size: size,
            patches: Vec::new(),
            resize: None,
            adjusted: Vec::new(),
        }
    }
}

/// Why an image does not fit a target; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// Used bytes of the image lie beyond what the target can hold.
    #[error(
        "{path}: {size} bytes, smaller than the image ({image} bytes) and {missing} bytes missing: the image's last used byte that cannot be moved is at byte {last_used} ({holder}); the target must hold at least {need} bytes: refusing to restore, nothing was written"
    )]
    TooSmall {
        /// Target.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The image's size.
        image: u64,
        /// The smallest size that would do.
        need: u64,
        /// `need - size`.
        missing: u64,
        /// Offset of the last used byte beyond the target's end, plus one.
        last_used: u64,
        /// "partition 3 (ext4)" or "outside every partition".
        holder: String,
    },
    /// The last partition would have to shrink and roomcast does not shrink its file system.
    #[error(
        "{path}: {size} bytes, smaller than the image ({image} bytes): partition {number} ({fs}) would have to shrink by {by} bytes and roomcast shrinks only ext2/3/4 and NTFS file systems: refusing to restore, nothing was written"
    )]
    CannotShrink {
        /// Target.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The image's size.
        image: u64,
        /// The partition.
        number: u32,
        /// Its file system.
        fs: String,
        /// Bytes it would lose.
        by: u64,
    },
    /// The image's partition table cannot be read or rewritten for this size.
    #[error("{path}: fitting the image's partition table to {size} bytes: {reason}")]
    Table {
        /// Target.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Why.
        reason: String,
    },
    /// Writing the table.
    #[error("{0}")]
    Disk(#[from] DiskError),
    /// A file-system tool failed (its output attached).
    #[error("{path}: {tool} on partition {number}: {reason}")]
    Tool {
        /// Target.
        path: PathBuf,
        /// The tool.
        tool: &'static str,
        /// The partition.
        number: u32,
        /// Exit status and output.
        reason: String,
    },
}

/// The image as a disk, read through its chunks (masked: free bytes read as zero) fetched from a
/// [`ChunkSource`], and its head and tail from the manifest's copy of the partition table (a
/// larger target needs no chunk at all).
pub struct ImageReader<'a> {
    m: &'a VerifiedManifest,
    source: &'a dyn ChunkSource,
    head: Vec<u8>,
    tail: Vec<u8>,
    cache: Mutex<HashMap<usize, std::sync::Arc<Vec<u8>>>>,
}

impl<'a> ImageReader<'a> {
    /// The image of `m`, its chunks from `source`.
    pub fn new(m: &'a VerifiedManifest, source: &'a dyn ChunkSource) -> Self {
        ImageReader {
            m,
            source,
            head: hex::decode(&m.partition_table.primary).unwrap_or_default(),
            tail: hex::decode(&m.partition_table.backup).unwrap_or_default(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn chunk(&self, i: usize) -> std::io::Result<std::sync::Arc<Vec<u8>>> {
        if let Some(c) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&i) {
            return Ok(c.clone());
        }
        let e = &self.m.chunks[i];
        let bytes = match e.chunk_ref(i as u64) {
            None => vec![0; e.len as usize],
            Some(r) => {
                let z = self.source.compressed(&r).map_err(std::io::Error::other)?;
                decode_verified(r, u64::from(e.len), &z).map_err(std::io::Error::other)?
            }
        };
        let c = std::sync::Arc::new(bytes);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(i, c.clone());
        Ok(c)
    }
}

impl ReadAt for ImageReader<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let ht = HeadTail {
            head: &self.head,
            tail: &self.tail,
            size: self.m.disk_size,
        };
        if ht.read_exact_at(buf, offset).is_ok() {
            return Ok(());
        }
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.m.disk_size)
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        let cs = u64::from(self.m.chunk_size);
        let mut at = offset;
        while at < end {
            let i = (at / cs) as usize;
            let c = self.chunk(i)?;
            let within = (at - i as u64 * cs) as usize;
            let n = ((end - at) as usize).min(c.len() - within);
            let b = (at - offset) as usize;
            buf[b..b + n].copy_from_slice(&c[within..within + n]);
            at += n as u64;
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.m.disk_size
    }
}

fn fs_of(m: &Manifest, number: u32) -> String {
    m.layout
        .as_ref()
        .and_then(|l| l.partitions.iter().find(|p| p.number == number))
        .map_or_else(|| "unknown".to_string(), |p| p.fs.clone())
}

fn is_ext(fs: &str) -> bool {
    matches!(fs, "ext2" | "ext3" | "ext4")
}

/// Decides how `m` fits a target of `target_size` bytes (at `path`, for messages), reading the
/// image through `image`. Nothing is written; an `Err` means the target must not be touched.
pub fn plan(
    m: &Manifest,
    image: &dyn ReadAt,
    path: &Path,
    target_size: u64,
    opts: &FitOptions,
) -> Result<Fit, FitError> {
    let image_size = m.disk_size;
    if target_size == image_size {
        return Ok(Fit::unchanged(image_size));
    }
    let table_err = |reason: String| FitError::Table {
        path: path.to_path_buf(),
        size: target_size,
        reason,
    };
    let t = table::read(image).map_err(|e| table_err(e.to_string()))?;
    let mut fit = Fit {
        image_size,
        target_size,
        patches: Vec::new(),
        resize: None,
        adjusted: Vec::new(),
    };
    let usable = table::usable_end(image, target_size).map_err(|e| table_err(e.to_string()))?;
    let last = table::last_partition(&t).cloned();
    if target_size < image_size {
        let mut drops = Extents::new();
        // The image's GPT backup (header and entries) is rewritten at the new end.
        if t.kind == TableKind::Gpt {
            let old_usable =
                table::usable_end(image, image_size).map_err(|e| table_err(e.to_string()))?;
            drops.insert(old_usable, image_size);
        }
        let mut limit = usable;
        let mut shrink = None;
        if let Some(p) = last.as_ref().filter(|p| p.start + p.len > usable) {
            let fs = fs_of(m, p.number);
            let new_end = (usable / MIB * MIB)
                .max(p.start + MIB.min(p.len))
                .min(usable);
            let new_len = new_end - p.start;
            let part = Slice {
                disk: image,
                start: p.start,
                len: p.len,
            };
            let cannot = |e: String| {
                table_err(format!(
                    "partition {} ({fs}) cannot shrink to {new_len} bytes: {e}",
                    p.number
                ))
            };
            limit = new_end;
            // The smallest usable end that would hold the partition's last used byte.
            let mut fs_tail = 0;
            if is_ext(&fs) {
                match roomcast_layout::ext::shrink_drops(&part, new_len) {
                    Ok(Some(d)) => drops.union_with(&d.shifted(p.start)),
                    Ok(None) => {}
                    Err(e) => return Err(cannot(e.to_string())),
                }
            } else if fs == "ntfs" {
                match roomcast_layout::ntfs::shrink(&part, new_len) {
                    Ok(Some(s)) => {
                        drops.union_with(&s.drops.shifted(p.start));
                        limit = p.start + s.keep_below;
                        fs_tail = new_len - s.keep_below;
                    }
                    Ok(None) => return Err(cannot("no NTFS boot sector".into())),
                    Err(e) => return Err(cannot(e.to_string())),
                }
                if let Err(why) = ntfs_view_possible(path) {
                    return Err(cannot(why));
                }
            }
            shrink = Some((p.clone(), fs, new_len, fs_tail));
        }
        let fs_tail = shrink.as_ref().map(|s| s.3);
        let min_end = |last_used: u64| match fs_tail {
            // The shrunk partition ends on a MiB boundary, its file system `tail` bytes short
            // of it at most (NTFS: the last cluster, holding the backup boot sector).
            Some(tail) => (last_used + tail).div_ceil(MIB) * MIB,
            None => last_used,
        };
        check_used(
            m,
            image,
            &t,
            (limit, &min_end),
            &drops,
            path,
            target_size,
            usable,
        )?;
        if let Some((p, fs, new_len, _)) = shrink {
            if !is_ext(&fs) && fs != "ntfs" {
                return Err(FitError::CannotShrink {
                    path: path.to_path_buf(),
                    size: target_size,
                    image: image_size,
                    number: p.number,
                    fs,
                    by: p.len - new_len,
                });
            }
            fit.adjusted.push(format!(
                "partition {} ({fs}) and its file system shrunk from {} to {new_len} bytes",
                p.number, p.len
            ));
            fit.resize = Some(PartitionResize {
                number: p.number,
                fs,
                start: p.start,
                old_len: p.len,
                new_len,
            });
        }
    } else if let Some(p) = last.as_ref().filter(|_| opts.grow_last) {
        let fs = fs_of(m, p.number);
        let new_end = usable / MIB * MIB;
        if new_end > p.start + p.len {
            if is_ext(&fs) || fs == "ntfs" {
                fit.adjusted.push(format!(
                    "partition {} ({fs}) and its file system grown from {} to {} bytes",
                    p.number,
                    p.len,
                    new_end - p.start
                ));
                fit.resize = Some(PartitionResize {
                    number: p.number,
                    fs,
                    start: p.start,
                    old_len: p.len,
                    new_len: new_end - p.start,
                });
            } else {
                fit.adjusted.push(format!(
                    "partition {} not grown: roomcast grows ext2/3/4 and NTFS, not {fs}",
                    p.number
                ));
            }
        }
    }
    let last_end = fit.resize.as_ref().map(|r| r.start + r.new_len);
    fit.patches =
        table::fit_patches(image, target_size, last_end).map_err(|e| table_err(e.to_string()))?;
    if t.kind == TableKind::Gpt {
        fit.adjusted.insert(
            0,
            format!(
                "GPT rewritten for {target_size} bytes (the image's disk: {image_size}): backup header and entries at the disk's end, protective MBR, last usable sector"
            ),
        );
    }
    if let Some(p) = last.filter(|_| target_size > image_size && fit.resize.is_none()) {
        fit.adjusted.push(format!(
            "{} bytes after the last partition left unallocated",
            usable.saturating_sub(p.start + p.len)
        ));
    }
    Ok(fit)
}

/// Refuses when a used byte at or beyond `limit` is neither dropped (`drops`) nor a zero byte
/// outside every partition; the refusal's "at least" size is `min_end` of the last used byte (the
/// smallest end of the table's usable space that holds it) plus the table's own end.
#[allow(clippy::too_many_arguments)]
fn check_used(
    m: &Manifest,
    image: &dyn ReadAt,
    t: &table::Table,
    (limit, min_end): (u64, &dyn Fn(u64) -> u64),
    drops: &Extents,
    path: &Path,
    target_size: u64,
    usable: u64,
) -> Result<(), FitError> {
    let keep = drops.complement(m.disk_size);
    let mut last: Option<u64> = None;
    for e in m.chunks.iter().rev() {
        let end = e.offset + u64::from(e.len);
        if end <= limit {
            break;
        }
        if e.is_zero() {
            continue;
        }
        for r in e.used_ranges().iter().rev() {
            let (s, t_end) = (
                (e.offset + r.start as u64).max(limit),
                e.offset + r.end as u64,
            );
            if s >= t_end {
                continue;
            }
            for w in keep.window(s, t_end).iter().rev() {
                let (ws, we) = (s + w.start, s + w.end);
                let inside = t
                    .partitions
                    .iter()
                    .any(|p| ws < p.start + p.len && we > p.start);
                let found = if inside {
                    Some(we)
                } else {
                    // Outside every partition: only a non-zero byte counts.
                    let mut buf = vec![0u8; (we - ws) as usize];
                    match image.read_exact_at(&mut buf, ws) {
                        Ok(()) => buf.iter().rposition(|&b| b != 0).map(|i| ws + i as u64 + 1),
                        // Unreadable: counted as used.
                        Err(_) => Some(we),
                    }
                };
                if let Some(f) = found {
                    last = Some(last.map_or(f, |l: u64| l.max(f)));
                    break;
                }
            }
            if last.is_some() {
                break;
            }
        }
        if last.is_some() {
            break;
        }
    }
    let Some(last_used) = last else {
        return Ok(());
    };
    let holder = t
        .partitions
        .iter()
        .find(|p| last_used > p.start && last_used <= p.start + p.len)
        .map_or_else(
            || "outside every partition".to_string(),
            |p| format!("partition {} ({})", p.number, fs_of(m, p.number)),
        );
    // The table's own end (GPT backup) comes after the last used byte.
    let overhead = target_size - usable;
    let ss = u64::from(t.sector_size);
    let need = min_end(last_used).div_ceil(ss) * ss + overhead;
    Err(FitError::TooSmall {
        path: path.to_path_buf(),
        size: target_size,
        image: m.disk_size,
        need,
        missing: need.saturating_sub(target_size),
        last_used,
        holder,
    })
}

/// [`plan`] for a verified image whose chunks come from `source`.
pub fn plan_restore(
    m: &VerifiedManifest,
    source: &dyn ChunkSource,
    path: &Path,
    target_size: u64,
    opts: &FitOptions,
) -> Result<Fit, FitError> {
    if target_size == m.disk_size {
        return Ok(Fit::unchanged(target_size));
    }
    let image = ImageReader::new(m, source);
    plan(m, &image, path, target_size, opts)
}

/// After the image's bytes are written and synced: writes the table for the target's size, then
/// grows or shrinks the last file system (`resize2fs`, `ntfsresize`).
///
/// Takes the disk: it is closed before the tools run (they open the partition exclusively, which
/// Linux refuses while the whole disk is held with `O_EXCL`).
pub fn apply(fit: &Fit, disk: Disk) -> Result<(), FitError> {
    // An NTFS shrunk in an image file: done first, on the file lengthened back to the partition's
    // old end (`FileTail`), before the table's backup is written at the file's end.
    let ntfs_shrink = fit
        .resize
        .as_ref()
        .filter(|r| r.fs == "ntfs" && r.new_len < r.old_len);
    if let Some(r) = ntfs_shrink.filter(|_| !disk.is_block_device()) {
        let path = disk.path().to_path_buf();
        let tool_err = |tool: &'static str, reason: String| FitError::Tool {
            path: path.clone(),
            tool,
            number: r.number,
            reason,
        };
        let tail = FileTail::lengthen(&path, r.start + r.new_len, r.start + r.old_len)
            .map_err(|e| tool_err("lengthening the file", e.to_string()))?;
        let part = PartitionDevice::loop_over(&disk, r.start, r.old_len)
            .map_err(|e| tool_err("losetup", e))?;
        ntfsresize(&part.path, r.new_len).map_err(|e| tool_err("ntfsresize", e))?;
        drop(part);
        tail.restore()
            .map_err(|e| tool_err("restoring the file's length", e.to_string()))?;
    }
    for p in &fit.patches {
        disk.write_all_at(&p.bytes, p.offset)?;
    }
    disk.sync()?;
    let Some(r) = fit
        .resize
        .as_ref()
        .filter(|_| ntfs_shrink.is_none() || disk.is_block_device())
    else {
        return Ok(());
    };
    let path = disk.path().to_path_buf();
    drop(disk);
    let disk = Disk::open_read(&path)?;
    let tool_err = |tool: &'static str, reason: String| FitError::Tool {
        path: path.clone(),
        tool,
        number: r.number,
        reason,
    };
    // A device of the partition's new size (never the file itself: resize2fs truncates a regular
    // file to the size it gives the file system). A block device without its partition node
    // (BLKRRPART refused): e2fsprogs open it at the partition's offset (a device cannot be
    // truncated); NTFS then needs a loop device.
    let node = disk
        .is_block_device()
        .then(|| partition_node(&disk, r.start, r.new_len, r.number))
        .flatten();
    let part = match node {
        Some(path) => PartitionDevice {
            path,
            detach: false,
        },
        None if disk.is_block_device() && is_ext(&r.fs) => PartitionDevice {
            path: PathBuf::from(format!("{}?offset={}", disk.path().display(), r.start)),
            detach: false,
        },
        None => PartitionDevice::loop_over(&disk, r.start, r.new_len)
            .map_err(|e| tool_err("losetup", e))?,
    };
    if is_ext(&r.fs) {
        run(Command::new("resize2fs")
            .arg("-f")
            .arg(&part.path)
            .arg(format!("{}s", r.new_len / 512)))
        .map_err(|e| tool_err("resize2fs", e))?;
    } else if r.fs == "ntfs" && r.new_len < r.old_len {
        // ntfsresize refuses a device shorter than the volume: it gets one of the old size
        // whose missing tail reads as zeros.
        let view =
            DmView::create(&part.path, r.new_len, r.old_len).map_err(|e| tool_err("dmsetup", e))?;
        ntfsresize(&view.path, r.new_len).map_err(|e| tool_err("ntfsresize", e))?;
        view.remove().map_err(|e| tool_err("dmsetup", e))?;
    } else if r.fs == "ntfs" {
        ntfsresize(&part.path, r.new_len).map_err(|e| tool_err("ntfsresize", e))?;
    }
    drop(part);
    Ok(())
}

/// `ntfsresize` of ntfs-3g: the NTFS on `dev` resized to `new_len` bytes. A size in plain bytes,
/// a multiple of the sector, also makes it write the backup boot sector at `new_len - sector`
/// (the partition's new last sector). It marks the volume for a check at Windows' next boot and
/// empties its journal.
fn ntfsresize(dev: &Path, new_len: u64) -> Result<(), String> {
    run(Command::new("ntfsresize")
        .args(["--force", "--no-progress-bar", "--size"])
        .arg(new_len.to_string())
        .arg(dev))
}

/// Whether an NTFS can be shrunk on the target at `path`: an image file always can ([`FileTail`]);
/// a block device needs the kernel's device-mapper ([`DmView`]).
fn ntfs_view_possible(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let block = std::fs::metadata(path)
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false);
    if !block || dm_available() {
        return Ok(());
    }
    Err(
        "shrinking NTFS on a block device needs the kernel's device-mapper (modules dm-mod and \
         dm-zero, and dmsetup), which this system lacks"
            .into(),
    )
}

/// The kernel's device-mapper is there (`/proc/misc` lists it once dm-mod is loaded).
fn dm_available() -> bool {
    std::fs::read_to_string("/proc/misc").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().nth(1) == Some("device-mapper"))
    })
}

/// A device-mapper device of `old_len` bytes over a partition shrunk to `new_len`: its first
/// `new_len` bytes are the partition (`linear`), the rest a `zero` target (reads zeros, writes
/// discarded). `ntfsresize` sees its volume whole there and shrinks it, writing only inside the
/// real partition (the bytes past `new_len` hold no used cluster: [`plan`] checked it). Named
/// uniquely per run and removed on every path.
struct DmView {
    name: String,
    path: PathBuf,
    removed: bool,
}

impl DmView {
    fn create(part: &Path, new_len: u64, old_len: u64) -> Result<Self, String> {
        use std::io::Write;
        static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "roomcast-fit-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (new_s, old_s) = (new_len / 512, old_len / 512);
        let table = format!(
            "0 {new_s} linear {} 0\n{new_s} {} zero\n",
            part.display(),
            old_s - new_s
        );
        let mut child = Command::new("dmsetup")
            .args(["create", &name])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run dmsetup: {e}"))?;
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(table.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("dmsetup: {e}"))?;
        // From here on the device may exist: removed on drop.
        let mut view = DmView {
            name,
            path: PathBuf::new(),
            removed: false,
        };
        if !out.status.success() {
            return Err(format!(
                "dmsetup create {}: {}: {}",
                view.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        view.path = view.node()?;
        Ok(view)
    }

    /// `/dev/mapper/<name>` (udev or libdevmapper make it), else `/dev/dm-<minor>` (devtmpfs);
    /// waits up to 5 s.
    fn node(&self) -> Result<PathBuf, String> {
        let mapper = PathBuf::from(format!("/dev/mapper/{}", self.name));
        for _ in 0..50 {
            if mapper.exists() {
                return Ok(mapper);
            }
            if let Ok(dirs) = std::fs::read_dir("/sys/block") {
                for d in dirs.flatten() {
                    let name =
                        std::fs::read_to_string(d.path().join("dm/name")).unwrap_or_default();
                    let dev = Path::new("/dev").join(d.file_name());
                    if name.trim() == self.name && dev.exists() {
                        return Ok(dev);
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(format!(
            "dmsetup create {}: no device node appeared",
            self.name
        ))
    }

    fn remove(mut self) -> Result<(), String> {
        self.removed = true;
        run(Command::new("dmsetup").args(["remove", "--retry", &self.name]))
    }
}

impl Drop for DmView {
    fn drop(&mut self) {
        if !self.removed {
            let _ = run(Command::new("dmsetup").args(["remove", "--retry", &self.name]));
        }
    }
}

/// An image file lengthened back to a partition's old end for the NTFS shrink, the regular
/// file's counterpart of [`DmView`] (a host without device-mapper can still restore into a file):
/// the bytes from the partition's new end to the file's end are zeroed and the file extended
/// with zeros (sparse) to the old end, so a loop device of the old size reads the partition then
/// zeros. [`FileTail::restore`] (or drop) cuts the file back to its length: whatever the tool
/// left past the new end is gone, and the table's backup is written there after.
struct FileTail {
    file: std::fs::File,
    len: u64,
    restored: bool,
}

impl FileTail {
    fn lengthen(path: &Path, new_end: u64, old_end: u64) -> std::io::Result<Self> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        let len = file.metadata()?.len();
        let zeros = vec![0u8; MIB as usize];
        let mut at = new_end.min(len);
        while at < len {
            let n = (len - at).min(MIB) as usize;
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        let tail = FileTail {
            file,
            len,
            restored: false,
        };
        tail.file.set_len(old_end.max(len))?;
        Ok(tail)
    }

    fn restore(mut self) -> std::io::Result<()> {
        self.restored = true;
        self.file.set_len(self.len)?;
        self.file.sync_all()
    }
}

impl Drop for FileTail {
    fn drop(&mut self) {
        if !self.restored {
            let _ = self.file.set_len(self.len);
        }
    }
}

/// Runs a tool, its stdout and stderr in the error.
fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// A device for one partition of a disk: the kernel's partition node of a block device once it
/// re-read the table, or a loop device (detached on drop).
struct PartitionDevice {
    path: PathBuf,
    detach: bool,
}

impl PartitionDevice {
    /// A loop device over `len` bytes of the disk from `start` (util-linux `losetup`).
    fn loop_over(disk: &Disk, start: u64, len: u64) -> Result<Self, String> {
        let out = Command::new("losetup")
            .args(["--find", "--show", "--offset"])
            .arg(start.to_string())
            .arg("--sizelimit")
            .arg(len.to_string())
            .arg(disk.path())
            .output()
            .map_err(|e| format!("cannot run losetup: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "losetup: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(PartitionDevice {
            path: PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
            detach: true,
        })
    }
}

impl Drop for PartitionDevice {
    fn drop(&mut self) {
        if self.detach {
            let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
        }
    }
}

/// The kernel's node for partition `number` of a block device, after asking it to re-read the
/// table (BLKRRPART), checked against where the partition is (`/sys/class/block/<node>/start` and
/// `size`); waits up to 5 s for the node to appear.
fn partition_node(disk: &Disk, start: u64, len: u64, number: u32) -> Option<PathBuf> {
    disk.reread_partitions().ok()?;
    let name = std::fs::canonicalize(disk.path())
        .ok()?
        .file_name()?
        .to_string_lossy()
        .into_owned();
    let sep = if name.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    let node = format!("{name}{sep}{number}");
    let read = |f: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/class/block/{node}/{f}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    for _ in 0..50 {
        if read("start") == Some(start / 512)
            && read("size") == Some(len / 512)
            && Path::new(&format!("/dev/{node}")).exists()
        {
            return Some(PathBuf::from(format!("/dev/{node}")));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The image file's view for ntfsresize: zeros from the partition's new end, lengthened to the
    /// old end; cut back to its length by `restore` and, on an error path, by drop.
    #[test]
    fn file_tail_zeroes_lengthens_and_always_cuts_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        std::fs::write(&path, vec![0xaa; 10 * MIB as usize]).unwrap();
        let tail = FileTail::lengthen(&path, 6 * MIB, 16 * MIB).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, 16 * MIB);
        assert!(bytes[..6 * MIB as usize].iter().all(|&b| b == 0xaa));
        assert!(bytes[6 * MIB as usize..].iter().all(|&b| b == 0));
        tail.restore().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 10 * MIB);

        let tail = FileTail::lengthen(&path, 8 * MIB, 12 * MIB).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 12 * MIB);
        drop(tail);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 10 * MIB);
    }

    /// The device-mapper check reads the kernel's list of misc devices.
    #[test]
    fn an_image_file_needs_no_device_mapper() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        std::fs::write(&path, b"x").unwrap();
        assert!(ntfs_view_possible(&path).is_ok());
    }
}
