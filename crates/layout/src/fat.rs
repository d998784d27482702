//! FAT12/16/32 allocation map, read from the boot sector's BPB and the FATs.
//!
//! Used bytes: everything before the data area whole (boot sector, the reserved sectors with FAT32's
//! FSInfo and backup boot sector, every FAT copy, the FAT12/16 root directory), and each cluster
//! whose FAT entry is not zero (files, directories, FAT32's root, bad clusters). The FAT copies are
//! all read and their used clusters joined (a cluster any copy uses is kept, so copies that differ
//! restore as they were); with FAT32 mirroring disabled only the active FAT counts.
//!
//! exFAT is not FAT: `None`. Refused ([`FsError::NotClean`]): the volume's dirty flag (Linux's, in
//! the boot sector; Windows', the clean-shutdown bit of FAT\[1\] for FAT16/32) or the hard-error bit.
//! Taken whole ([`FsError::Unsupported`]): a BPB that contradicts itself (FATs too small for the
//! clusters, a file system larger than its partition), FAT\[0\] that does not carry the media byte,
//! a chain pointing outside the volume.

use crate::bytes::{le16, le32, read_vec, set_runs, u8_at};
use crate::{Extents, FsError, FsMap, Probe, ReadAt};

/// `None` when `part` does not hold FAT12/16/32; else its map, or why it cannot be mapped.
pub fn probe(part: &dyn ReadAt) -> Probe {
    let bs = read_vec(part, 0, 512).ok()?;
    if &bs[3..11] == b"EXFAT   " {
        return None;
    }
    let bpb = Bpb::parse(&bs)?;
    Some(map(part, &bpb, &bs))
}

/// "fat12", "fat16" or "fat32" when `part` starts with a FAT boot sector.
pub fn name(part: &dyn ReadAt) -> Option<&'static str> {
    let bs = read_vec(part, 0, 512).ok()?;
    if &bs[3..11] == b"EXFAT   " {
        return None;
    }
    Bpb::parse(&bs).map(|b| b.name())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bits {
    B12,
    B16,
    B32,
}

#[derive(Debug)]
struct Bpb {
    bps: u64,
    spc: u64,
    reserved: u64,
    fats: u64,
    fat_sectors: u64,
    total: u64,
    first_data: u64,
    clusters: u64,
    bits: Bits,
    ext_flags: u16,
    root_cluster: u64,
    media: u8,
}

impl Bpb {
    /// The BPB when the sector looks like a FAT boot sector (`None` otherwise).
    fn parse(s: &[u8]) -> Option<Bpb> {
        let jump = s[0] == 0xe9 || (s[0] == 0xeb && s[2] == 0x90);
        let bps = u64::from(le16(s, 11));
        let spc = u64::from(s[13]);
        let reserved = u64::from(le16(s, 14));
        let fats = u64::from(s[16]);
        let root_entries = u64::from(le16(s, 17));
        let media = s[21];
        let fat16 = u64::from(le16(s, 22));
        let fat_sectors = if fat16 != 0 {
            fat16
        } else {
            u64::from(le32(s, 36))
        };
        let total = match le16(s, 19) {
            0 => u64::from(le32(s, 32)),
            n => u64::from(n),
        };
        let plausible = jump
            && matches!(bps, 512 | 1024 | 2048 | 4096)
            && spc.is_power_of_two()
            && spc <= 128
            && reserved >= 1
            && (1..=4).contains(&fats)
            && (media == 0xf0 || media >= 0xf8)
            && fat_sectors > 0
            && total > 0;
        if !plausible {
            return None;
        }
        let root_sectors = (root_entries * 32).div_ceil(bps);
        let first_data = reserved + fats * fat_sectors + root_sectors;
        let clusters = total.saturating_sub(first_data) / spc;
        let bits = if fat16 == 0 {
            Bits::B32
        } else if clusters <= 4084 {
            Bits::B12
        } else {
            Bits::B16
        };
        Some(Bpb {
            bps,
            spc,
            reserved,
            fats,
            fat_sectors,
            total,
            first_data,
            clusters,
            bits,
            ext_flags: if bits == Bits::B32 { le16(s, 40) } else { 0 },
            root_cluster: if bits == Bits::B32 {
                u64::from(le32(s, 44))
            } else {
                0
            },
            media,
        })
    }

    fn name(&self) -> &'static str {
        match self.bits {
            Bits::B12 => "fat12",
            Bits::B16 => "fat16",
            Bits::B32 => "fat32",
        }
    }
}

fn unsupported(why: String) -> FsError {
    FsError::Unsupported(why)
}

fn not_clean(reason: &str) -> FsError {
    FsError::NotClean {
        reason: reason.to_string(),
        fix:
            "run `fsck.vfat -a` on this partition (or `chkdsk /f` in Windows), or boot the master \
              and shut it down cleanly"
                .into(),
    }
}

/// Bytes of FAT read at once: a multiple of 3 (FAT12 entry pairs), 2 and 4.
const FAT_CHUNK: usize = 3 << 18;

fn map(part: &dyn ReadAt, b: &Bpb, boot: &[u8]) -> Result<FsMap, FsError> {
    let name = b.name();
    let fs_bytes = b.total * b.bps;
    if fs_bytes > part.size() {
        return Err(unsupported(format!(
            "the file system ({fs_bytes} bytes) is larger than its partition ({} bytes): truncated?",
            part.size()
        )));
    }
    if b.clusters == 0 {
        return Err(unsupported("no data area (BPB not believable)".to_string()));
    }
    let entry_bits: u64 = match b.bits {
        Bits::B12 => 12,
        Bits::B16 => 16,
        Bits::B32 => 32,
    };
    let fat_bytes = b.fat_sectors * b.bps;
    let max_cluster = b.clusters + 1;
    if fat_bytes * 8 / entry_bits < b.clusters + 2 {
        return Err(unsupported(format!(
            "a FAT of {fat_bytes} bytes cannot hold {} clusters (BPB contradicts itself)",
            b.clusters
        )));
    }
    // Linux's dirty flag in the boot sector (mounted, not unmounted since).
    let state = u8_at(boot, if b.bits == Bits::B32 { 65 } else { 37 });
    if state & 0x01 != 0 {
        return Err(not_clean(
            "the volume is marked dirty (it was not cleanly unmounted)",
        ));
    }
    let fat_list: Vec<u64> = if b.bits == Bits::B32 && b.ext_flags & 0x80 != 0 {
        let active = u64::from(b.ext_flags & 0x0f);
        if active >= b.fats {
            return Err(unsupported(format!(
                "the active FAT {active} does not exist ({} FATs)",
                b.fats
            )));
        }
        vec![active]
    } else {
        (0..b.fats).collect()
    };
    // One bit per cluster number, set when any FAT read marks it used.
    let mut bitmap = vec![0u8; ((max_cluster + 1) / 8 + 1) as usize];
    for (k, &fat) in fat_list.iter().enumerate() {
        let base = (b.reserved + fat * b.fat_sectors) * b.bps;
        let needed = ((max_cluster + 1) * entry_bits).div_ceil(8);
        let mut n = 0u64; // next cluster number to decode
        let mut at = 0u64;
        while at < needed {
            let len = (needed - at).min(FAT_CHUNK as u64) as usize;
            let buf = read_vec(part, base + at, len)?;
            let count = match b.bits {
                Bits::B12 => len as u64 * 2 / 3,
                Bits::B16 => len as u64 / 2,
                Bits::B32 => len as u64 / 4,
            };
            for i in 0..count {
                let v = match b.bits {
                    Bits::B12 => {
                        let off = (i * 3 / 2) as usize;
                        let w = u32::from(le16(&buf, off));
                        if i % 2 == 0 { w & 0xfff } else { w >> 4 }
                    }
                    Bits::B16 => u32::from(le16(&buf, (i * 2) as usize)),
                    Bits::B32 => le32(&buf, (i * 4) as usize) & 0x0fff_ffff,
                };
                let c = n + i;
                if c == 0 && k == 0 && v & 0xff != u32::from(b.media) {
                    return Err(unsupported(format!(
                        "FAT[0] (0x{v:x}) does not carry the media byte 0x{:02x}",
                        b.media
                    )));
                }
                if c == 1 && k == 0 {
                    let (clean, no_error) = match b.bits {
                        Bits::B12 => (1, 1),
                        Bits::B16 => (v & 0x8000, v & 0x4000),
                        Bits::B32 => (v & 0x0800_0000, v & 0x0400_0000),
                    };
                    if clean == 0 {
                        return Err(not_clean(
                            "the volume is marked dirty (Windows did not shut it down cleanly)",
                        ));
                    }
                    if no_error == 0 {
                        return Err(not_clean("the volume records a disk I/O error"));
                    }
                }
                if c < 2 || c > max_cluster || v == 0 {
                    continue;
                }
                let (bad, eoc_min) = match b.bits {
                    Bits::B12 => (0xff7, 0xff8),
                    Bits::B16 => (0xfff7, 0xfff8),
                    Bits::B32 => (0x0fff_fff7, 0x0fff_fff8),
                };
                if v != bad && v < eoc_min && (v < 2 || u64::from(v) > max_cluster) {
                    return Err(unsupported(format!(
                        "cluster {c}'s chain points to cluster {v}, outside the volume (2..={max_cluster})"
                    )));
                }
                bitmap[(c / 8) as usize] |= 1 << (c % 8);
            }
            n += count;
            at += len as u64;
        }
    }
    if b.bits == Bits::B32 {
        let r = b.root_cluster;
        if r < 2 || r > max_cluster || bitmap[(r / 8) as usize] >> (r % 8) & 1 == 0 {
            return Err(unsupported(format!(
                "the root directory's cluster {r} is not allocated in the FAT"
            )));
        }
    }
    let mut used = Extents::from_range(0, b.first_data * b.bps);
    let cluster_bytes = b.spc * b.bps;
    let data = b.first_data * b.bps;
    set_runs(&bitmap, max_cluster + 1, |s, e| {
        let s = s.max(2);
        if e > s {
            used.insert(
                data + (s - 2) * cluster_bytes,
                data + (e - 2) * cluster_bytes,
            );
        }
    });
    Ok(FsMap {
        fs: name.to_string(),
        used,
        discarded: Vec::new(),
    })
}
