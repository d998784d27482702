//! Partition tables: GPT (protective MBR, primary header and entries checked with their CRC32s and
//! cross-checked with the backup at the disk's end) and MBR (four primaries, extended partitions and
//! their chain of logical ones).
//!
//! Read from the disk's bytes alone, with 512- or 4096-byte logical sectors for GPT (found by where
//! the header is) and 512-byte sectors for MBR. A table that contradicts itself or the disk (a
//! partition beyond the end, two that overlap, a loop in the extended chain) is a
//! [`LayoutError::Table`] naming the partition; a damaged GPT header with a good copy is read from
//! the copy and the fact is recorded in [`Table::notes`].
//!
//! The extended partition of an MBR disk is not listed: its boot records and gaps lie outside every
//! listed partition, so [`crate::read_layout`] takes them whole, like the MBR and the GPT structures.
//!
//! For a disk of another size than the master's (issue #23), [`gpt_resize_patches`] gives the bytes
//! to write so that a GPT fits the new size, and [`last_partition_end`] where the last partition
//! ends.

use crate::bytes::{le16, le32, le64, read_vec, u8_at};
use crate::{LayoutError, ReadAt};
use std::collections::HashSet;

/// Which table a disk carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// GUID Partition Table (protective MBR + primary + backup).
    Gpt,
    /// DOS/MBR table, possibly with an extended partition.
    Mbr,
    /// No table: the whole disk is one region.
    None,
}

/// A partition's type as its table records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionType {
    /// GPT type GUID (canonical lower-case text form) and the partition's name.
    Gpt {
        /// e.g. "c12a7328-f81f-11d2-ba4b-00a0c93ec93b" (EFI System Partition).
        type_guid: String,
        /// The partition name (UTF-16 in the table).
        name: String,
    },
    /// MBR type byte (0x07 NTFS/exFAT, 0x0c FAT32 LBA, 0x83 Linux, 0x82 swap, ...).
    Mbr {
        /// The type byte.
        type_byte: u8,
        /// True for a logical partition inside an extended one.
        logical: bool,
    },
}

/// Well-known GPT type GUIDs: (GUID, name, `Some(why)` when the type alone makes it taken whole).
const GPT_TYPES: &[(&str, &str, Option<&str>)] = &[
    ("c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "EFI System", None),
    (
        "21686148-6449-6e6f-744e-656564454649",
        "BIOS boot",
        Some("BIOS boot partition (a boot loader's core image, no file system)"),
    ),
    (
        "e3c9e316-0b5c-4db8-817d-f92df00215ae",
        "Microsoft reserved",
        Some("Microsoft Reserved partition (MSR, no file system)"),
    ),
    (
        "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7",
        "Microsoft basic data",
        None,
    ),
    (
        "de94bba4-06d1-4d40-a16a-bfd50179d6ac",
        "Windows recovery environment",
        None,
    ),
    (
        "5808c8aa-7e8f-42e0-85d2-e1e90434cfb3",
        "Microsoft LDM metadata",
        Some("Windows dynamic disk (LDM) metadata, not read"),
    ),
    (
        "af9b60a0-1431-4f62-bc68-3311714a69ad",
        "Microsoft LDM data",
        Some("Windows dynamic disk (LDM) data, not read"),
    ),
    (
        "e75caf8f-f680-4cee-afa3-b001e56efc2d",
        "Microsoft Storage Spaces",
        Some("Windows Storage Spaces member, not read"),
    ),
    (
        "0fc63daf-8483-4772-8e79-3d69d8477de4",
        "Linux filesystem",
        None,
    ),
    ("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f", "Linux swap", None),
    (
        "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
        "Linux root (x86-64)",
        None,
    ),
    (
        "44479540-f297-41b2-9af7-d131d5f0458a",
        "Linux root (x86)",
        None,
    ),
    ("933ac7e1-2eb4-4f13-b844-0e14e2aef915", "Linux home", None),
    (
        "3b8f8425-20e0-4f3b-907f-1a25a76f98e8",
        "Linux server data (/srv)",
        None,
    ),
    (
        "bc13c2ff-59e6-4262-a352-b275fd6f7172",
        "Linux extended boot",
        None,
    ),
    (
        "e6d6d379-f507-44c2-a23c-238f2a3df928",
        "Linux LVM",
        Some("LVM physical volume (its logical volumes are not read)"),
    ),
    (
        "a19d880f-05fc-4d3b-a006-743f0f84911e",
        "Linux RAID",
        Some("Linux software RAID member (md), not read"),
    ),
    (
        "ca7d7ccb-63ed-4c53-861c-1742536059cc",
        "Linux LUKS",
        Some("LUKS-encrypted partition (its content cannot be read)"),
    ),
    (
        "7ffec5c9-2d00-49b7-8941-3ea10a5586b7",
        "Linux dm-crypt",
        Some("dm-crypt encrypted partition (its content cannot be read)"),
    ),
    (
        "8da63339-0007-60c0-c436-083ac8230908",
        "Linux reserved",
        None,
    ),
    (
        "024dee41-33e7-11d3-9d69-0008c781f39f",
        "MBR partition scheme",
        None,
    ),
    ("48465300-0000-11aa-aa11-00306543ecac", "Apple HFS+", None),
    ("7c3457ef-0000-11aa-aa11-00306543ecac", "Apple APFS", None),
];

/// Well-known MBR type bytes: (byte, name, `Some(why)` when the type alone makes it taken whole).
const MBR_TYPES: &[(u8, &str, Option<&str>)] = &[
    (0x01, "FAT12", None),
    (0x04, "FAT16 (<32 MiB)", None),
    (0x05, "Extended", None),
    (0x06, "FAT16", None),
    (0x07, "HPFS/NTFS/exFAT", None),
    (0x0b, "W95 FAT32", None),
    (0x0c, "W95 FAT32 (LBA)", None),
    (0x0e, "W95 FAT16 (LBA)", None),
    (0x0f, "W95 Extended (LBA)", None),
    (0x11, "Hidden FAT12", None),
    (0x12, "Compaq diagnostics", None),
    (0x14, "Hidden FAT16 (<32 MiB)", None),
    (0x16, "Hidden FAT16", None),
    (0x17, "Hidden HPFS/NTFS", None),
    (0x1b, "Hidden W95 FAT32", None),
    (0x1c, "Hidden W95 FAT32 (LBA)", None),
    (0x1e, "Hidden W95 FAT16 (LBA)", None),
    (0x27, "Windows recovery environment", None),
    (
        0x42,
        "Windows dynamic disk (LDM)",
        Some("Windows dynamic disk (LDM), not read"),
    ),
    (0x82, "Linux swap", None),
    (0x83, "Linux", None),
    (0x85, "Linux extended", None),
    (
        0x8e,
        "Linux LVM",
        Some("LVM physical volume (its logical volumes are not read)"),
    ),
    (0xa5, "FreeBSD", None),
    (0xa6, "OpenBSD", None),
    (0xa8, "Darwin UFS", None),
    (0xaf, "HFS / HFS+", None),
    (
        0xda,
        "Non-FS data",
        Some("partition marked as holding no file system (type 0xda)"),
    ),
    (
        0xe8,
        "LUKS",
        Some("LUKS-encrypted partition (its content cannot be read)"),
    ),
    (0xee, "GPT protective", Some("GPT protective partition")),
    (0xef, "EFI System", None),
    (
        0xfd,
        "Linux RAID autodetect",
        Some("Linux software RAID member (md), not read"),
    ),
];

impl PartitionType {
    /// `Some(reason)` when the type alone says the partition must be taken whole: BIOS boot
    /// partition, Microsoft Reserved, Windows dynamic disks (LDM) and Storage Spaces, LVM, Linux
    /// RAID, LUKS and dm-crypt (GPT GUIDs; MBR 0x42, 0x8e, 0xda, 0xe8, 0xfd). Every other type,
    /// known or not, returns `None` and its content is probed: a file system found there is mapped,
    /// nothing found makes it taken whole by [`crate::probe_fs`]. BitLocker has no type of its own
    /// (Microsoft basic data, MBR 0x07): `None` here, the NTFS reader recognises its "-FVE-FS-"
    /// signature.
    pub fn taken_whole(&self) -> Option<String> {
        match self {
            PartitionType::Gpt { type_guid, .. } => GPT_TYPES
                .iter()
                .find(|(g, _, _)| *g == type_guid)
                .and_then(|(_, _, why)| why.map(str::to_string)),
            PartitionType::Mbr { type_byte, .. } => MBR_TYPES
                .iter()
                .find(|(b, _, _)| b == type_byte)
                .and_then(|(_, _, why)| why.map(str::to_string)),
        }
    }

    /// The type as people read it: "EFI System", "Microsoft basic data", "Linux filesystem", "Linux
    /// (0x83)"...; an unknown GUID as itself, an unknown byte as "0x..".
    pub fn describe(&self) -> String {
        match self {
            PartitionType::Gpt { type_guid, .. } => GPT_TYPES
                .iter()
                .find(|(g, _, _)| *g == type_guid)
                .map_or_else(|| type_guid.clone(), |(_, name, _)| name.to_string()),
            PartitionType::Mbr { type_byte, .. } => MBR_TYPES
                .iter()
                .find(|(b, _, _)| b == type_byte)
                .map_or_else(
                    || format!("0x{type_byte:02x}"),
                    |(_, name, _)| format!("{name} (0x{type_byte:02x})"),
                ),
        }
    }
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Number as Linux counts it (1-based; MBR logical partitions from 5).
    pub number: u32,
    /// First byte on the disk.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Type as recorded in the table.
    pub kind: PartitionType,
}

/// A disk's partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Which table.
    pub kind: TableKind,
    /// Logical sector size the table was read with (512 or 4096).
    pub sector_size: u32,
    /// Partitions in table order (empty entries left out).
    pub partitions: Vec<Partition>,
    /// What was repaired or doubtful while reading (a damaged primary GPT read from its backup, a
    /// backup that differs from the primary or is not at the disk's end), for the capture summary.
    pub notes: Vec<String>,
}

const MBR_SIG_OFF: usize = 510;
const GPT_SIG: &[u8; 8] = b"EFI PART";
/// The largest GPT entry array read (sgdisk's default is 16 KiB; 128 entries of 128 bytes).
const MAX_GPT_ENTRY_BYTES: u64 = 4 << 20;
/// More logical partitions than this in one extended partition is taken as a loop.
const MAX_LOGICAL: u32 = 256;

/// Reads the table at the start (and for GPT, the end) of `disk`.
///
/// No table is [`TableKind::None`]: a disk whose first sector has no 0x55aa signature, a file
/// system's boot sector (FAT, NTFS, exFAT on the bare disk), an MBR with no partition or with
/// boot flags other than 0x00/0x80 (not an MBR).
pub fn read(disk: &dyn ReadAt) -> Result<Table, LayoutError> {
    let none = Table {
        kind: TableKind::None,
        sector_size: 512,
        partitions: Vec::new(),
        notes: Vec::new(),
    };
    let size = disk.size();
    if size < 512 {
        return Ok(none);
    }
    let mbr = read_vec(disk, 0, 512)?;
    let entries = mbr_entries(&mbr);
    let has_sig = mbr[MBR_SIG_OFF] == 0x55 && mbr[MBR_SIG_OFF + 1] == 0xaa;
    let protective = has_sig && entries.iter().any(|e| e.type_byte == 0xee);
    if protective {
        return read_gpt(disk);
    }
    if !has_sig || looks_like_boot_sector(&mbr) {
        return Ok(none);
    }
    if entries.iter().any(|e| e.boot != 0 && e.boot != 0x80) {
        return Ok(none);
    }
    if entries.iter().all(|e| e.is_empty()) {
        return Ok(none);
    }
    read_mbr(disk, &entries)
}

/// A file system's first sector on a bare disk (it carries 0x55aa too): NTFS, exFAT, or a FAT BPB.
fn looks_like_boot_sector(s: &[u8]) -> bool {
    let oem = &s[3..11];
    if oem == b"NTFS    " || oem == b"EXFAT   " {
        return true;
    }
    let jump = s[0] == 0xe9 || (s[0] == 0xeb && s[2] == 0x90);
    let bps = le16(s, 11);
    let spc = s[13];
    let reserved = le16(s, 14);
    let fats = s[16];
    let media = s[21];
    jump && matches!(bps, 512 | 1024 | 2048 | 4096)
        && spc.is_power_of_two()
        && reserved > 0
        && (1..=4).contains(&fats)
        && (media == 0xf0 || media >= 0xf8)
}

#[derive(Debug, Clone, Copy)]
struct MbrEntry {
    boot: u8,
    type_byte: u8,
    start: u32,
    sectors: u32,
}

impl MbrEntry {
    fn is_empty(&self) -> bool {
        self.type_byte == 0 || self.sectors == 0
    }
    fn is_extended(&self) -> bool {
        matches!(self.type_byte, 0x05 | 0x0f | 0x85)
    }
}

fn mbr_entries(sector: &[u8]) -> [MbrEntry; 4] {
    std::array::from_fn(|i| {
        let o = 446 + 16 * i;
        MbrEntry {
            boot: u8_at(sector, o),
            type_byte: u8_at(sector, o + 4),
            start: le32(sector, o + 8),
            sectors: le32(sector, o + 12),
        }
    })
}

fn read_mbr(disk: &dyn ReadAt, entries: &[MbrEntry; 4]) -> Result<Table, LayoutError> {
    const SS: u64 = 512;
    let disk_sectors = disk.size() / SS;
    let mut parts = Vec::new();
    let mut extended: Option<(u64, u64)> = None;
    for (i, e) in entries.iter().enumerate() {
        if e.is_empty() {
            continue;
        }
        let number = i as u32 + 1;
        let (start, sectors) = (u64::from(e.start), u64::from(e.sectors));
        if start == 0 {
            return Err(LayoutError::Table(format!(
                "MBR: partition {number} starts at sector 0, over the MBR itself"
            )));
        }
        if e.is_extended() {
            if extended.is_some() {
                return Err(LayoutError::Table(format!(
                    "MBR: partition {number} is a second extended partition (only one is allowed)"
                )));
            }
            if start + sectors > disk_sectors {
                return Err(LayoutError::Table(format!(
                    "MBR: extended partition {number} (sectors {start}..{}) is beyond the disk's end ({disk_sectors} sectors)",
                    start + sectors
                )));
            }
            extended = Some((start, sectors));
            continue;
        }
        parts.push(Partition {
            number,
            start: start * SS,
            len: sectors * SS,
            kind: PartitionType::Mbr {
                type_byte: e.type_byte,
                logical: false,
            },
        });
    }
    if let Some((ext_start, ext_len)) = extended {
        let ext_end = ext_start + ext_len;
        let mut ebr = ext_start;
        let mut seen = HashSet::new();
        let mut number = 5u32;
        loop {
            if !seen.insert(ebr) {
                return Err(LayoutError::Table(format!(
                    "MBR: the chain of logical partitions loops (the boot record at sector {ebr} comes twice)"
                )));
            }
            if seen.len() as u32 > MAX_LOGICAL {
                return Err(LayoutError::Table(format!(
                    "MBR: more than {MAX_LOGICAL} logical partitions: the extended partition's chain is not believable"
                )));
            }
            if ebr < ext_start || ebr >= ext_end {
                return Err(LayoutError::Table(format!(
                    "MBR: a logical partition's boot record (sector {ebr}) lies outside the extended partition (sectors {ext_start}..{ext_end})"
                )));
            }
            let sector = read_vec(disk, ebr * SS, 512)?;
            if sector[MBR_SIG_OFF] != 0x55 || sector[MBR_SIG_OFF + 1] != 0xaa {
                // An extended partition with no logical partition yet has an empty first record.
                if ebr == ext_start && sector.iter().all(|&b| b == 0) {
                    break;
                }
                return Err(LayoutError::Table(format!(
                    "MBR: the boot record of logical partition {number} (sector {ebr}) has no 0x55aa signature"
                )));
            }
            let [data, next, ..] = mbr_entries(&sector);
            if !data.is_empty() {
                let start = ebr + u64::from(data.start);
                let end = start + u64::from(data.sectors);
                if data.start == 0 || end > ext_end {
                    return Err(LayoutError::Table(format!(
                        "MBR: logical partition {number} (sectors {start}..{end}) is not inside its extended partition (sectors {ext_start}..{ext_end})"
                    )));
                }
                parts.push(Partition {
                    number,
                    start: start * SS,
                    len: u64::from(data.sectors) * SS,
                    kind: PartitionType::Mbr {
                        type_byte: data.type_byte,
                        logical: true,
                    },
                });
                number += 1;
            }
            if next.is_empty() || !next.is_extended() {
                break;
            }
            ebr = ext_start + u64::from(next.start);
        }
    }
    check_partitions(&parts, disk.size())?;
    Ok(Table {
        kind: TableKind::Mbr,
        sector_size: SS as u32,
        partitions: parts,
        notes: Vec::new(),
    })
}

/// No partition beyond the disk's end, none overlapping another.
fn check_partitions(parts: &[Partition], disk_size: u64) -> Result<(), LayoutError> {
    for p in parts {
        let end = p.start.saturating_add(p.len);
        if end > disk_size {
            return Err(LayoutError::Table(format!(
                "partition {} (bytes {}..{end}) is beyond the disk's end ({disk_size} bytes)",
                p.number, p.start
            )));
        }
    }
    let mut sorted: Vec<&Partition> = parts.iter().collect();
    sorted.sort_by_key(|p| p.start);
    for w in sorted.windows(2) {
        if w[1].start < w[0].start + w[0].len {
            return Err(LayoutError::Table(format!(
                "partitions {} (bytes {}..{}) and {} (bytes {}..{}) overlap",
                w[0].number,
                w[0].start,
                w[0].start + w[0].len,
                w[1].number,
                w[1].start,
                w[1].start + w[1].len
            )));
        }
    }
    Ok(())
}

/// A GPT header's fields (UEFI spec, 5.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
struct GptHeader {
    my_lba: u64,
    alternate_lba: u64,
    first_usable: u64,
    last_usable: u64,
    disk_guid: [u8; 16],
    entries_lba: u64,
    num_entries: u32,
    entry_size: u32,
    entries_crc: u32,
    /// The entry array, its CRC checked.
    entries: Vec<u8>,
}

impl GptHeader {
    fn entry_sectors(&self, ss: u64) -> u64 {
        (u64::from(self.num_entries) * u64::from(self.entry_size)).div_ceil(ss)
    }
}

fn crc32(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

/// Reads and checks the GPT header at `lba` and its entry array.
fn read_gpt_header(disk: &dyn ReadAt, ss: u64, lba: u64) -> Result<GptHeader, String> {
    let disk_sectors = disk.size() / ss;
    if lba >= disk_sectors {
        return Err(format!("sector {lba} is beyond the disk's end"));
    }
    let s = read_vec(disk, lba * ss, ss as usize).map_err(|e| e.to_string())?;
    if &s[..8] != GPT_SIG {
        return Err(format!("no \"EFI PART\" signature at sector {lba}"));
    }
    let header_size = le32(&s, 12) as usize;
    if !(92..=s.len()).contains(&header_size) {
        return Err(format!(
            "header size {header_size} is not between 92 and {ss}"
        ));
    }
    let mut h = s[..header_size].to_vec();
    h[16..20].fill(0);
    let (stored, computed) = (le32(&s, 16), crc32(&h));
    if stored != computed {
        return Err(format!(
            "header CRC32 mismatch (stored {stored:08x}, computed {computed:08x})"
        ));
    }
    let hdr = GptHeader {
        my_lba: le64(&s, 24),
        alternate_lba: le64(&s, 32),
        first_usable: le64(&s, 40),
        last_usable: le64(&s, 48),
        disk_guid: s[56..72].try_into().unwrap_or([0; 16]),
        entries_lba: le64(&s, 72),
        num_entries: le32(&s, 80),
        entry_size: le32(&s, 84),
        entries_crc: le32(&s, 88),
        entries: Vec::new(),
    };
    if hdr.my_lba != lba {
        return Err(format!(
            "header at sector {lba} says it is at sector {}",
            hdr.my_lba
        ));
    }
    if hdr.entry_size < 128 || !hdr.entry_size.is_multiple_of(8) {
        return Err(format!(
            "partition entry size {} is not valid",
            hdr.entry_size
        ));
    }
    let bytes = u64::from(hdr.num_entries) * u64::from(hdr.entry_size);
    if bytes > MAX_GPT_ENTRY_BYTES {
        return Err(format!(
            "{} partition entries of {} bytes: more than {MAX_GPT_ENTRY_BYTES} bytes",
            hdr.num_entries, hdr.entry_size
        ));
    }
    if hdr.first_usable > hdr.last_usable.saturating_add(1) {
        return Err(format!(
            "first usable sector {} is after the last usable sector {}",
            hdr.first_usable, hdr.last_usable
        ));
    }
    if hdr.last_usable >= disk_sectors {
        return Err(format!(
            "last usable sector {} is beyond the disk's end ({disk_sectors} sectors of {ss} bytes): \
             was the image written onto a smaller disk?",
            hdr.last_usable
        ));
    }
    let entries_end = hdr.entries_lba.saturating_add(hdr.entry_sectors(ss));
    let inside = if lba == 1 {
        hdr.entries_lba >= 2 && entries_end <= hdr.first_usable
    } else {
        hdr.entries_lba > hdr.last_usable && entries_end <= lba
    };
    if !inside {
        return Err(format!(
            "partition entries (sectors {}..{entries_end}) overlap the usable sectors or the header",
            hdr.entries_lba
        ));
    }
    let entries =
        read_vec(disk, hdr.entries_lba * ss, bytes as usize).map_err(|e| e.to_string())?;
    let computed = crc32(&entries);
    if computed != hdr.entries_crc {
        return Err(format!(
            "partition entries CRC32 mismatch (stored {:08x}, computed {computed:08x})",
            hdr.entries_crc
        ));
    }
    Ok(GptHeader { entries, ..hdr })
}

/// The logical sector size a GPT was written with: where its header (or its backup) is.
fn gpt_sector_size(disk: &dyn ReadAt) -> Option<u64> {
    let size = disk.size();
    let sig_at = |off: u64| {
        read_vec(disk, off, 8)
            .map(|b| b == GPT_SIG)
            .unwrap_or(false)
    };
    [512u64, 4096]
        .into_iter()
        .find(|&ss| size >= 2 * ss && sig_at(ss))
        .or_else(|| {
            [512u64, 4096]
                .into_iter()
                .find(|&ss| size >= 2 * ss && sig_at((size / ss - 1) * ss))
        })
}

fn read_gpt(disk: &dyn ReadAt) -> Result<Table, LayoutError> {
    let Some(ss) = gpt_sector_size(disk) else {
        return Err(LayoutError::Table(
            "GPT: the protective MBR (type 0xee) is there but no GPT header was found, neither at \
             sector 1 nor at the disk's end (512- or 4096-byte sectors)"
                .into(),
        ));
    };
    let last = disk.size() / ss - 1;
    let primary = read_gpt_header(disk, ss, 1);
    let mut notes = Vec::new();
    let backup_at = match &primary {
        Ok(p) if p.alternate_lba != last && p.alternate_lba < last => {
            notes.push(format!(
                "GPT: the backup header is at sector {} but the disk ends at sector {last} (the disk \
                 is larger than the table: `sgdisk -e` moves the backup to the end)",
                p.alternate_lba
            ));
            p.alternate_lba
        }
        _ => last,
    };
    let backup = read_gpt_header(disk, ss, backup_at);
    let header = match (primary, backup) {
        (Ok(p), Ok(b)) => {
            let differs = [
                (p.disk_guid != b.disk_guid, "disk GUID"),
                (p.entries_crc != b.entries_crc, "partition entries"),
                (p.num_entries != b.num_entries, "number of entries"),
                (p.first_usable != b.first_usable, "first usable sector"),
                (p.last_usable != b.last_usable, "last usable sector"),
                (b.alternate_lba != 1, "backup's pointer to the primary"),
            ];
            let what: Vec<&str> = differs.iter().filter(|d| d.0).map(|d| d.1).collect();
            if !what.is_empty() {
                notes.push(format!(
                    "GPT: the backup at sector {backup_at} differs from the primary ({}): the primary \
                     is used; writing the table again (gdisk: w) rebuilds the backup",
                    what.join(", ")
                ));
            }
            p
        }
        (Ok(p), Err(why)) => {
            notes.push(format!(
                "GPT: the backup header at sector {backup_at} is damaged or missing ({why}): the \
                 primary is used; writing the table again (gdisk: w) rebuilds the backup"
            ));
            p
        }
        (Err(why), Ok(b)) => {
            notes.push(format!(
                "GPT: the primary header is damaged ({why}): the table was read from the backup at \
                 sector {backup_at}; repair the primary with gdisk's recovery menu (r, b, c, w)"
            ));
            b
        }
        (Err(p), Err(b)) => {
            return Err(LayoutError::Table(format!(
                "GPT: neither header is valid: the primary (sector 1): {p}; the backup (sector {backup_at}): {b}"
            )));
        }
    };
    let mut parts = Vec::new();
    let es = header.entry_size as usize;
    for i in 0..header.num_entries as usize {
        let e = &header.entries[i * es..(i + 1) * es];
        if e[..16].iter().all(|&b| b == 0) {
            continue;
        }
        let number = i as u32 + 1;
        let (first, last_lba) = (le64(e, 32), le64(e, 40));
        if first > last_lba {
            return Err(LayoutError::Table(format!(
                "GPT: partition {number} starts at sector {first}, after its end {last_lba}"
            )));
        }
        if first < header.first_usable || last_lba > header.last_usable {
            return Err(LayoutError::Table(format!(
                "GPT: partition {number} (sectors {first}..={last_lba}) lies outside the usable \
                 sectors {}..={}{}",
                header.first_usable,
                header.last_usable,
                if last_lba > last {
                    " and beyond the disk's end"
                } else {
                    ""
                }
            )));
        }
        let name: String = char::decode_utf16(
            e[56..128]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&c| c != 0),
        )
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
        parts.push(Partition {
            number,
            start: first * ss,
            len: (last_lba - first + 1) * ss,
            kind: PartitionType::Gpt {
                type_guid: guid_text(&e[..16]),
                name,
            },
        });
    }
    check_partitions(&parts, disk.size())?;
    Ok(Table {
        kind: TableKind::Gpt,
        sector_size: ss as u32,
        partitions: parts,
        notes,
    })
}

/// A GUID's canonical text (the first three fields are stored little-endian).
fn guid_text(b: &[u8]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        le32(b, 0),
        le16(b, 4),
        le16(b, 6),
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

/// A disk known by its first and last bytes only (an image's head and tail, as a manifest keeps
/// them): reads inside either succeed, others fail with `UnexpectedEof`.
pub struct HeadTail<'a> {
    /// The disk's first bytes.
    pub head: &'a [u8],
    /// The disk's last bytes (they end at `size`).
    pub tail: &'a [u8],
    /// The disk's size in bytes.
    pub size: u64,
}

impl ReadAt for HeadTail<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        if end <= self.head.len() as u64 {
            buf.copy_from_slice(&self.head[offset as usize..end as usize]);
            return Ok(());
        }
        let tail_start = self.size.saturating_sub(self.tail.len() as u64);
        if offset >= tail_start && end <= self.size {
            let at = (offset - tail_start) as usize;
            buf.copy_from_slice(&self.tail[at..at + buf.len()]);
            return Ok(());
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("bytes {offset}..{end} are neither in the disk's head nor in its tail"),
        ))
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// Bytes to write at an offset of a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    /// Where, in bytes from the disk's start.
    pub offset: u64,
    /// What.
    pub bytes: Vec<u8>,
}

/// Where the last partition ends (bytes from the disk's start; 0 with no partition): what a target
/// disk must hold at least. For GPT a [`HeadTail`] of the image is enough; MBR logical partitions
/// need the extended partition's boot records.
pub fn last_partition_end(disk: &dyn ReadAt) -> Result<u64, LayoutError> {
    Ok(read(disk)?
        .partitions
        .iter()
        .map(|p| p.start + p.len)
        .max()
        .unwrap_or(0))
}

/// The writes that make the GPT of `disk` (an image, or its [`HeadTail`]) fit a disk of `new_size`
/// bytes once the image is written onto it (issue 23): see [`fit_patches`] with no partition
/// moved nor resized. Not for MBR disks (they need nothing): an error.
pub fn gpt_resize_patches(disk: &dyn ReadAt, new_size: u64) -> Result<Vec<Patch>, LayoutError> {
    let table = read(disk)?;
    if table.kind != TableKind::Gpt {
        return Err(LayoutError::Table(
            "not a GPT disk: an MBR needs no change for another disk size".into(),
        ));
    }
    gpt_fit(disk, &table, new_size, None)
}

/// The byte where the last partition may end at most on a disk of `new_size` bytes carrying the
/// table of `disk`: GPT, the end of the new last usable sector (the backup entries and header take
/// the sectors after); MBR, 33 sectors before the disk's end (room for a GPT backup should the
/// disk ever be converted: what `sgdisk -v` checks on an MBR disk); no table, `new_size`.
pub fn usable_end(disk: &dyn ReadAt, new_size: u64) -> Result<u64, LayoutError> {
    let table = read(disk)?;
    Ok(match table.kind {
        TableKind::Gpt => {
            let ss = u64::from(table.sector_size);
            let hdr = match read_gpt_header(disk, ss, 1) {
                Ok(h) => h,
                Err(_) => {
                    read_gpt_header(disk, ss, disk.size() / ss - 1).map_err(LayoutError::Table)?
                }
            };
            let new_last = (new_size / ss).saturating_sub(1);
            new_last.saturating_sub(hdr.entry_sectors(ss)) * ss
        }
        TableKind::Mbr => (new_size / 512).saturating_sub(33) * 512,
        TableKind::None => new_size,
    })
}

/// The writes that make the table of `disk` (an image, or its [`HeadTail`] for GPT) fit a disk of
/// `new_size` bytes once the image is written onto it (issue 23), and with `last_end` the partition
/// that ends last ends at that byte instead (grown or shrunk; a multiple of the sector size, at most
/// [`usable_end`]).
///
/// GPT: the backup entries and header at the new end, the primary header's alternate LBA and last
/// usable LBA, both CRCs recomputed (entries CRC too when an entry changes), the protective MBR's
/// size; on a larger disk the old backup header (now in the middle) is zeroed. A damaged primary is
/// rebuilt from the backup (header and entries). MBR: nothing without `last_end`; with it, the
/// sector count of the last partition (a primary one: a logical partition is refused) and its CHS
/// end set to "beyond CHS". A partition (other than the one resized) ending beyond the new usable
/// end is a [`LayoutError::Table`] naming it and the bytes missing.
///
/// Apply the patches in order, after the image's bytes.
pub fn fit_patches(
    disk: &dyn ReadAt,
    new_size: u64,
    last_end: Option<u64>,
) -> Result<Vec<Patch>, LayoutError> {
    let table = read(disk)?;
    match table.kind {
        TableKind::Gpt => gpt_fit(disk, &table, new_size, last_end),
        TableKind::Mbr => match last_end {
            None => Ok(Vec::new()),
            Some(end) => mbr_fit(disk, &table, new_size, end),
        },
        TableKind::None => match last_end {
            None => Ok(Vec::new()),
            Some(_) => Err(LayoutError::Table(
                "no partition table: there is no partition to resize".into(),
            )),
        },
    }
}

/// The partition that ends last (the one [`fit_patches`] resizes).
pub fn last_partition(table: &Table) -> Option<&Partition> {
    table.partitions.iter().max_by_key(|p| p.start + p.len)
}

fn mbr_fit(
    disk: &dyn ReadAt,
    table: &Table,
    new_size: u64,
    end: u64,
) -> Result<Vec<Patch>, LayoutError> {
    let Some(last) = last_partition(table) else {
        return Err(LayoutError::Table("MBR: no partition to resize".into()));
    };
    if matches!(last.kind, PartitionType::Mbr { logical: true, .. }) {
        return Err(LayoutError::Table(format!(
            "MBR: partition {} is a logical partition: resizing it (and its extended partition) is not supported",
            last.number
        )));
    }
    if !end.is_multiple_of(512) || end <= last.start || end > new_size / 512 * 512 {
        // (usable_end keeps 33 sectors free; a caller may ask for up to the last sector.)
        return Err(LayoutError::Table(format!(
            "MBR: partition {} cannot end at byte {end} on a disk of {new_size} bytes",
            last.number
        )));
    }
    let sectors = u32::try_from((end - last.start) / 512).map_err(|_| {
        LayoutError::Table(format!(
            "MBR: partition {} would hold more than 2^32 sectors (an MBR cannot describe it)",
            last.number
        ))
    })?;
    let mbr = read_vec(disk, 0, 512)?;
    let o = 446 + 16 * (last.number as usize - 1);
    let mut entry = mbr[o..o + 16].to_vec();
    // CHS of the end: "beyond CHS" (the LBA fields are what every OS reads).
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    Ok(vec![Patch {
        offset: o as u64,
        bytes: entry,
    }])
}

fn gpt_fit(
    disk: &dyn ReadAt,
    table: &Table,
    new_size: u64,
    last_end: Option<u64>,
) -> Result<Vec<Patch>, LayoutError> {
    let ss = u64::from(table.sector_size);
    let old_last = disk.size() / ss - 1;
    let primary = read_gpt_header(disk, ss, 1);
    let (mut hdr, raw, rebuild_primary) = match primary {
        Ok(h) => (h, read_vec(disk, ss, ss as usize)?, false),
        Err(_) => {
            // read() succeeded with a damaged primary, so the backup at the end is good.
            let h = read_gpt_header(disk, ss, old_last).map_err(LayoutError::Table)?;
            (h, read_vec(disk, old_last * ss, ss as usize)?, true)
        }
    };
    let new_sectors = new_size / ss;
    let entry_sectors = hdr.entry_sectors(ss);
    let new_last = new_sectors.saturating_sub(1);
    let backup_entries = new_last.saturating_sub(entry_sectors);
    let last_usable = backup_entries.saturating_sub(1);
    let primary_entries = if rebuild_primary { 2 } else { hdr.entries_lba };
    if new_sectors < 3 + 2 * entry_sectors || hdr.first_usable > last_usable {
        return Err(LayoutError::Table(format!(
            "GPT: a disk of {new_size} bytes cannot hold the partition table"
        )));
    }
    let resized = match (last_end, last_partition(table)) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(LayoutError::Table("GPT: no partition to resize".into()));
        }
        (Some(end), Some(p)) => {
            if !end.is_multiple_of(ss) || end <= p.start || end > (last_usable + 1) * ss {
                return Err(LayoutError::Table(format!(
                    "GPT: partition {} cannot end at byte {end}: the new disk's usable bytes end at {}",
                    p.number,
                    (last_usable + 1) * ss
                )));
            }
            let es = hdr.entry_size as usize;
            let at = (p.number as usize - 1) * es + 40;
            hdr.entries[at..at + 8].copy_from_slice(&(end / ss - 1).to_le_bytes());
            Some((p.number, end))
        }
    };
    for p in &table.partitions {
        let end = match resized {
            Some((n, e)) if n == p.number => e,
            _ => p.start + p.len,
        };
        if end > (last_usable + 1) * ss {
            return Err(LayoutError::Table(format!(
                "GPT: partition {} ends at byte {end}, beyond the new disk's last usable byte {}: \
                 {} bytes missing",
                p.number,
                (last_usable + 1) * ss,
                end - (last_usable + 1) * ss
            )));
        }
    }
    let entries_crc = crc32(&hdr.entries);
    let header_size = le32(&raw, 12) as usize;
    let header = |my: u64, alt: u64, entries: u64| {
        let mut h = raw[..header_size].to_vec();
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[72..80].copy_from_slice(&entries.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        h[16..20].fill(0);
        let crc = crc32(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let mut patches = Vec::new();
    // The protective MBR's 0xee entry covers LBA 1 to the end (or 0xffffffff sectors).
    let mbr = read_vec(disk, 0, 512)?;
    let old_cover = old_last.min(0xffff_ffff);
    for i in 0..4 {
        let o = 446 + 16 * i;
        if mbr[o + 4] == 0xee && u64::from(le32(&mbr, o + 8)) == 1 {
            let covered = u64::from(le32(&mbr, o + 12));
            if covered == old_cover || covered == 0xffff_ffff {
                let size = new_last.min(0xffff_ffff) as u32;
                patches.push(Patch {
                    offset: (o + 12) as u64,
                    bytes: size.to_le_bytes().to_vec(),
                });
            }
        }
    }
    if rebuild_primary || resized.is_some() {
        patches.push(Patch {
            offset: primary_entries * ss,
            bytes: hdr.entries.clone(),
        });
    }
    patches.push(Patch {
        offset: ss,
        bytes: header(1, new_last, primary_entries),
    });
    // Growing: the old backup header, now after the last partition in the middle of the disk.
    if old_last < new_last {
        patches.push(Patch {
            offset: old_last * ss,
            bytes: vec![0; ss as usize],
        });
    }
    patches.push(Patch {
        offset: backup_entries * ss,
        bytes: hdr.entries.clone(),
    });
    patches.push(Patch {
        offset: new_last * ss,
        bytes: header(new_last, 1, backup_entries),
    });
    Ok(patches)
}
