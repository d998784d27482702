//! What a disk holds: its partition table and, in each partition, which bytes its file system uses.
//!
//! A leaf crate (no roomcast crate below it, no I/O of its own beyond the [`ReadAt`] it is handed):
//! the store asks it which bytes of a master disk to capture ([`read_layout`]), the agent which bytes
//! of a PC's disk to compare and which NTFS partition holds Windows. Every reader returns `Result` on
//! any bytes and never panics; a structure it does not understand makes the partition *taken whole*
//! (with the reason), never silently truncated.
//!
//! | module | what it reads |
//! |---|---|
//! | [`extents`] | [`Extents`]: sorted, disjoint byte ranges (the currency of this crate) |
//! | [`table`] | GPT (primary, backup) and MBR (with extended partitions); the GPT writes for a disk of another size ([`table::gpt_resize_patches`], issue 23) |
//! | [`ext`] | ext2/3/4 block bitmaps (flex_bg, uninitialised groups, metadata, journal) |
//! | [`ntfs`] | NTFS `$Bitmap`, dirty and hibernated volumes, `pagefile.sys`/`hiberfil.sys`/`swapfile.sys` |
//! | [`fat`] | FAT12/16/32: reserved sectors, FATs, root directory, used clusters |
//! | [`swap`] | Linux swap: its header page only |

mod bytes;
pub mod ext;
pub mod extents;
pub mod fat;
pub mod ntfs;
pub mod swap;
pub mod table;

pub use extents::Extents;
pub use table::{Partition, PartitionType, Table, TableKind};

use std::io;

/// Random-access reads from a disk or a partition (a block device, an image file, bytes in a test).
pub trait ReadAt: Sync {
    /// Fills `buf` from `offset`; an offset past the end is an error (`UnexpectedEof`).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Size in bytes.
    fn size(&self) -> u64;
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
    fn size(&self) -> u64 {
        // A block device's metadata length is 0: seek to the end instead.
        use std::io::Seek;
        let mut f = self;
        f.seek(io::SeekFrom::End(0)).unwrap_or(0)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .filter(|&e| e <= self.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(&self[start..end]);
        Ok(())
    }
    fn size(&self) -> u64 {
        self.len() as u64
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
    fn size(&self) -> u64 {
        self.len() as u64
    }
}

/// A window `[start, start + len)` of a disk, read as a whole device: what a file-system reader gets.
pub struct Slice<'a> {
    /// The disk.
    pub disk: &'a dyn ReadAt,
    /// First byte of the window on the disk.
    pub start: u64,
    /// Length of the window.
    pub len: u64,
}

impl ReadAt for Slice<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let _ = end;
        self.disk.read_exact_at(buf, self.start + offset)
    }
    fn size(&self) -> u64 {
        self.len
    }
}

/// What a file-system reader found in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsMap {
    /// The file system's name as shown to people and in the manifest: "ext4", "ntfs", "fat32", "swap".
    pub fs: String,
    /// The bytes the file system uses, relative to the partition's start (metadata included).
    pub used: Extents,
    /// Bytes counted as free although a file holds them, because their content is recreated at boot
    /// (`pagefile.sys`, `hiberfil.sys`, `swapfile.sys`), with the file names: shown in the capture summary.
    pub discarded: Vec<(String, u64)>,
}

/// Why a reader could not give a map of a partition.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The file system is recognised but must not be captured as it is (dirty, hibernated, needs
    /// journal recovery, errors recorded): capture refuses, naming the reason and the fix.
    #[error("{reason}; fix: {fix}")]
    NotClean {
        /// What is wrong, in plain words ("NTFS volume is hibernated (Windows Fast Startup)").
        reason: String,
        /// What the technician does about it.
        fix: String,
    },
    /// The file system's own structures contradict each other or are beyond what this reader
    /// understands: the partition is taken whole, with this reason.
    #[error("{0}")]
    Unsupported(String),
    /// The disk could not be read.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
}

/// A file-system reader's answer for a partition: `None` when the bytes are not this file system.
pub type Probe = Option<Result<FsMap, FsError>>;

/// How one partition is captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLayout {
    /// The partition as the table describes it.
    pub partition: Partition,
    /// The file system found in it ("ext4", "ntfs", "fat32", "swap"), or "unknown".
    pub fs: String,
    /// Used bytes, absolute disk offsets: the file system's map, or the whole partition.
    pub used: Extents,
    /// Why the partition is taken whole (unknown type, BitLocker, LUKS, a structure not understood),
    /// `None` when its file system's map is used.
    pub whole: Option<String>,
    /// Bytes a file holds but that count as free (see [`FsMap::discarded`]).
    pub discarded: Vec<(String, u64)>,
}

/// A disk's layout: its table, each partition's map, and the bytes to take overall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLayout {
    /// Size of the disk in bytes.
    pub disk_size: u64,
    /// The partition table found.
    pub table: TableKind,
    /// Each partition, in table order.
    pub partitions: Vec<PartitionLayout>,
    /// Every byte to capture, absolute: bytes outside every partition (boot code, tables, gaps, a BIOS
    /// boot partition) whole, plus each partition's used bytes.
    pub used: Extents,
    /// What the table reader repaired or doubts ([`Table::notes`]: a damaged primary GPT read from
    /// its backup...), for the capture summary.
    pub notes: Vec<String>,
}

/// Why a disk cannot be captured file-system-aware.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A partition's file system must not be captured as it is.
    #[error("partition {number} ({fs}): {reason}; fix: {fix}")]
    NotClean {
        /// Partition number as the table counts (1-based).
        number: u32,
        /// File system name.
        fs: String,
        /// What is wrong.
        reason: String,
        /// What to do.
        fix: String,
    },
    /// The partition table contradicts itself or the disk (partition beyond the end, overlaps).
    #[error("partition table: {0}")]
    Table(String),
    /// The disk could not be read.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
}

/// Reads the partition table and each partition's file system. A disk with no partition table is
/// one "partition" probed as a file system (a bare file system on a disk) or else taken whole: it
/// is listed as partition 1 covering the whole disk, of MBR type 0x00.
pub fn read_layout(disk: &dyn ReadAt) -> Result<DiskLayout, LayoutError> {
    let disk_size = disk.size();
    let mut table = table::read(disk)?;
    if table.kind == TableKind::None && disk_size > 0 {
        table.partitions = vec![Partition {
            number: 1,
            start: 0,
            len: disk_size,
            kind: PartitionType::Mbr {
                type_byte: 0,
                logical: false,
            },
        }];
    }
    let mut partitions = Vec::new();
    let mut used = Extents::new();
    // Everything outside the partitions is taken whole.
    let mut inside = Extents::new();
    for p in &table.partitions {
        inside.insert(p.start, p.start + p.len);
    }
    used.union_with(&inside.complement(disk_size));
    for p in &table.partitions {
        let slice = Slice {
            disk,
            start: p.start,
            len: p.len,
        };
        let (fs, map) = probe_fs(&slice, &p.kind);
        let layout = match map {
            Ok(m) => PartitionLayout {
                partition: p.clone(),
                fs,
                used: m.used.shifted(p.start).clipped(p.start, p.start + p.len),
                whole: None,
                discarded: m.discarded,
            },
            Err(FsError::NotClean { reason, fix }) => {
                return Err(LayoutError::NotClean {
                    number: p.number,
                    fs,
                    reason,
                    fix,
                });
            }
            Err(FsError::Io(e)) => return Err(LayoutError::Io(e)),
            Err(FsError::Unsupported(reason)) => PartitionLayout {
                partition: p.clone(),
                fs,
                used: Extents::from_range(p.start, p.start + p.len),
                whole: Some(reason),
                discarded: Vec::new(),
            },
        };
        used.union_with(&layout.used);
        partitions.push(layout);
    }
    Ok(DiskLayout {
        disk_size,
        table: table.kind,
        partitions,
        used,
        notes: table.notes,
    })
}

/// A file-system reader: see [`Probe`].
pub type Reader = fn(&dyn ReadAt) -> Probe;

/// Tries each reader in turn on one partition: the file system's name and its map, or why it is
/// taken whole.
pub fn probe_fs(part: &dyn ReadAt, kind: &PartitionType) -> (String, Result<FsMap, FsError>) {
    if let Some(reason) = kind.taken_whole() {
        return ("unknown".into(), Err(FsError::Unsupported(reason)));
    }
    let probes: [(&str, Reader); 4] = [
        ("ext", ext::probe),
        ("ntfs", ntfs::probe),
        ("fat", fat::probe),
        ("swap", swap::probe),
    ];
    for (name, probe) in probes {
        match probe(part) {
            None => continue,
            Some(Ok(map)) => return (map.fs.clone(), Ok(map)),
            Some(Err(e)) => {
                let detected = match name {
                    "ext" => ext::name(part),
                    "fat" => fat::name(part),
                    _ => None,
                };
                return (detected.unwrap_or(name).to_string(), Err(e));
            }
        }
    }
    if let Some((fs, why)) = identify(part) {
        return (fs.into(), Err(FsError::Unsupported(why.into())));
    }
    (
        "unknown".into(),
        Err(FsError::Unsupported(
            "no file system roomcast reads (ext2/3/4, NTFS, FAT, swap) was found".into(),
        )),
    )
}

/// File systems and containers recognised by their signature but not read: a name and the reason the
/// partition is taken whole.
fn identify(part: &dyn ReadAt) -> Option<(&'static str, &'static str)> {
    let at = |off: u64, sig: &[u8]| {
        let mut buf = vec![0u8; sig.len()];
        part.read_exact_at(&mut buf, off).is_ok() && buf == sig
    };
    const KNOWN: [(u64, &[u8], &str, &str); 8] = [
        (
            3,
            b"EXFAT   ",
            "exfat",
            "exFAT is not read (its allocation bitmap is not mapped)",
        ),
        (
            3,
            b"-FVE-FS-",
            "bitlocker",
            "BitLocker-encrypted volume: its content cannot be read",
        ),
        (
            0,
            b"LUKS\xba\xbe",
            "luks",
            "LUKS-encrypted volume: its content cannot be read",
        ),
        (
            536,
            b"LVM2 001",
            "lvm2",
            "LVM physical volume: its logical volumes are not read",
        ),
        (0, b"XFSB", "xfs", "XFS is not read"),
        (0x10040, b"_BHRfS_M", "btrfs", "Btrfs is not read"),
        (
            4096,
            b"\xfc\x4e\x2b\xa9",
            "linux_raid_member",
            "Linux software RAID member (md), not read",
        ),
        (
            3,
            b"NTFS    ",
            "ntfs",
            "NTFS was not mapped by the NTFS reader",
        ),
    ];
    KNOWN
        .iter()
        .find(|(off, sig, _, _)| at(*off, sig))
        .map(|&(_, _, fs, why)| (fs, why))
}
