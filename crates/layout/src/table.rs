//! Partition tables: GPT (primary header and entries, checked against the backup) and MBR (with
//! extended partitions).
//!
//! STUB: to be written (issue #14, item 1). Today `read` finds no table, so the whole disk is one
//! region taken whole.

use crate::{LayoutError, ReadAt};

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

impl PartitionType {
    /// `Some(reason)` when the type alone says the partition must be taken whole (BIOS boot
    /// partition, Microsoft Reserved, LVM, LUKS, BitLocker...): its bytes have no file system roomcast
    /// could map.
    pub fn taken_whole(&self) -> Option<String> {
        None
    }

    /// The type as people read it: "EFI System", "Microsoft basic data", "Linux filesystem", "0x83"...
    pub fn describe(&self) -> String {
        match self {
            PartitionType::Gpt { type_guid, .. } => type_guid.clone(),
            PartitionType::Mbr { type_byte, .. } => format!("0x{type_byte:02x}"),
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
}

/// Reads the table at the start (and for GPT, the end) of `disk`.
pub fn read(disk: &dyn ReadAt) -> Result<Table, LayoutError> {
    let _ = disk;
    Ok(Table {
        kind: TableKind::None,
        sector_size: 512,
        partitions: Vec::new(),
    })
}
