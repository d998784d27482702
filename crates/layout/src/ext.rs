//! ext2/3/4 allocation map, read natively from the superblock, the group descriptors and the block
//! bitmaps.
//!
//! Used bytes: the boot block and primary superblock, every block its group's bitmap marks used, and
//! for a group whose bitmap was never initialised (`BLOCK_UNINIT`, with group-descriptor checksums)
//! the metadata it holds all the same: a superblock backup (sparse_super, sparse_super2), the group
//! descriptors (or meta_bg's descriptor block), the reserved GDT blocks, and any group's block bitmap,
//! inode bitmap and inode table placed in it (flex_bg puts them in other groups). Every group's
//! bitmaps and inode table are added whatever the bitmap says.
//!
//! Refused ([`FsError::NotClean`]): the journal needs recovery (`needs_recovery`, or a journal
//! superblock with transactions left), errors recorded, not cleanly unmounted, orphan inodes pending.
//! Taken whole ([`FsError::Unsupported`]): features this reader does not know (incompatible or
//! read-only-compatible ones that change what a bitmap means: bigalloc, snapshots, an external
//! journal), a superblock or descriptor that does not make sense, a file system larger than its
//! partition, a bitmap whose free count contradicts its group descriptor or the superblock, or a
//! journal block the bitmap says is free.

use crate::bytes::{be32, le16, le32, read_vec, set_runs};
use crate::{Extents, FsError, FsMap, Probe, ReadAt};

const MAGIC: u16 = 0xef53;

const COMPAT_HAS_JOURNAL: u32 = 0x4;
const COMPAT_SPARSE_SUPER2: u32 = 0x200;

const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_MMP: u32 = 0x100;
const INCOMPAT_FLEX_BG: u32 = 0x200;
const INCOMPAT_EA_INODE: u32 = 0x400;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
const INCOMPAT_LARGEDIR: u32 = 0x4000;
const INCOMPAT_INLINE_DATA: u32 = 0x8000;
const INCOMPAT_ENCRYPT: u32 = 0x10000;
const INCOMPAT_CASEFOLD: u32 = 0x20000;
/// Incompatible features whose meaning for the allocation map this reader knows.
const INCOMPAT_KNOWN: u32 = INCOMPAT_FILETYPE
    | INCOMPAT_RECOVER
    | INCOMPAT_META_BG
    | INCOMPAT_EXTENTS
    | INCOMPAT_64BIT
    | INCOMPAT_MMP
    | INCOMPAT_FLEX_BG
    | INCOMPAT_EA_INODE
    | INCOMPAT_CSUM_SEED
    | INCOMPAT_LARGEDIR
    | INCOMPAT_INLINE_DATA
    | INCOMPAT_ENCRYPT
    | INCOMPAT_CASEFOLD;

const RO_SPARSE_SUPER: u32 = 0x1;
const RO_LARGE_FILE: u32 = 0x2;
const RO_BTREE_DIR: u32 = 0x4;
const RO_HUGE_FILE: u32 = 0x8;
const RO_GDT_CSUM: u32 = 0x10;
const RO_DIR_NLINK: u32 = 0x20;
const RO_EXTRA_ISIZE: u32 = 0x40;
const RO_QUOTA: u32 = 0x100;
const RO_BIGALLOC: u32 = 0x200;
const RO_METADATA_CSUM: u32 = 0x400;
const RO_READONLY: u32 = 0x1000;
const RO_PROJECT: u32 = 0x2000;
const RO_VERITY: u32 = 0x8000;
const RO_ORPHAN_PRESENT: u32 = 0x10000;
/// Read-only-compatible features that leave the block bitmaps meaning "this block is used".
const RO_KNOWN: u32 = RO_SPARSE_SUPER
    | RO_LARGE_FILE
    | RO_BTREE_DIR
    | RO_HUGE_FILE
    | RO_GDT_CSUM
    | RO_DIR_NLINK
    | RO_EXTRA_ISIZE
    | RO_QUOTA
    | RO_METADATA_CSUM
    | RO_READONLY
    | RO_PROJECT
    | RO_VERITY
    | RO_ORPHAN_PRESENT;

const STATE_VALID: u16 = 0x1;
const STATE_ERROR: u16 = 0x2;

const BG_BLOCK_UNINIT: u16 = 0x2;

const EXTENTS_FL: u32 = 0x80000;
const JOURNAL_MAGIC: u32 = 0xc03b_3998;

/// `None` when `part` does not hold ext2/3/4; else its map, or why it cannot be mapped.
pub fn probe(part: &dyn ReadAt) -> Probe {
    let sb = read_vec(part, 1024, 1024).ok()?;
    if le16(&sb, 56) != MAGIC {
        return None;
    }
    Some(map(part, &sb))
}

/// "ext2", "ext3" or "ext4" when `part` holds an ext file system (blkid's rule: ext4 when a feature
/// ext3 lacks is on, ext3 when it has a journal).
pub fn name(part: &dyn ReadAt) -> Option<&'static str> {
    let sb = read_vec(part, 1024, 1024).ok()?;
    if le16(&sb, 56) != MAGIC {
        return None;
    }
    if le32(&sb, 76) == 0 {
        return Some(fs_name(0, 0, 0));
    }
    Some(fs_name(le32(&sb, 92), le32(&sb, 96), le32(&sb, 100)))
}

fn fs_name(compat: u32, incompat: u32, ro_compat: u32) -> &'static str {
    if incompat & !(INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG) != 0
        || ro_compat & !(RO_SPARSE_SUPER | RO_LARGE_FILE | RO_BTREE_DIR) != 0
    {
        "ext4"
    } else if compat & COMPAT_HAS_JOURNAL != 0 {
        "ext3"
    } else {
        "ext2"
    }
}

fn unsupported(why: impl Into<String>) -> FsError {
    FsError::Unsupported(why.into())
}

fn not_clean(reason: &str, fsck: &str) -> FsError {
    FsError::NotClean {
        reason: reason.to_string(),
        fix: format!(
            "run `{fsck}` on this partition from a rescue system, or boot the master and shut it down cleanly"
        ),
    }
}

/// The superblock's fields this reader uses, validated.
struct Fs {
    bs: u64,
    blocks: u64,
    first_data_block: u64,
    bpg: u64,
    ipg: u64,
    inode_size: u64,
    groups: u64,
    desc_size: u64,
    descs_per_block: u64,
    desc_blocks: u64,
    reserved_gdt: u64,
    compat: u32,
    incompat: u32,
    ro_compat: u32,
    first_meta_bg: u64,
    backup_bgs: [u64; 2],
}

struct Desc {
    block_bitmap: u64,
    inode_bitmap: u64,
    inode_table: u64,
    free: u64,
    free_inodes: u64,
    flags: u16,
}

impl Fs {
    fn has(&self, incompat: u32) -> bool {
        self.incompat & incompat != 0
    }

    fn group_first(&self, g: u64) -> u64 {
        self.first_data_block + g * self.bpg
    }

    /// Blocks in group `g` (the last one may be short).
    fn group_len(&self, g: u64) -> u64 {
        (self.blocks - self.group_first(g)).min(self.bpg)
    }

    fn has_super(&self, g: u64) -> bool {
        if g == 0 {
            return true;
        }
        if self.compat & COMPAT_SPARSE_SUPER2 != 0 {
            return self.backup_bgs.contains(&g);
        }
        if self.ro_compat & RO_SPARSE_SUPER == 0 || g == 1 {
            return true;
        }
        [3u64, 5, 7].iter().any(|&base| {
            let mut p = base;
            while p < g {
                p *= base;
            }
            p == g
        })
    }

    /// Where descriptor block `i` of the primary copy is (e2fsprogs' ext2fs_descriptor_block_loc2).
    fn desc_block(&self, i: u64) -> u64 {
        if !self.has(INCOMPAT_META_BG) || i < self.first_meta_bg {
            return self.first_data_block + 1 + i;
        }
        let g = self.descs_per_block * i;
        self.group_first(g) + u64::from(self.has_super(g))
    }

    /// The superblock backup and descriptor blocks group `g` holds, as (first block, count)
    /// (e2fsprogs' ext2fs_super_and_bgd_loc2).
    fn base_meta(&self, g: u64) -> Vec<(u64, u64)> {
        let start = self.group_first(g);
        let has_super = self.has_super(g);
        let mut out = Vec::new();
        if has_super {
            out.push((start, 1));
        }
        let meta_bg = self.has(INCOMPAT_META_BG);
        if !meta_bg || g / self.descs_per_block < self.first_meta_bg {
            if has_super {
                let old = if meta_bg {
                    self.first_meta_bg
                } else {
                    self.desc_blocks + self.reserved_gdt
                };
                out.push((start + 1, old));
            }
        } else {
            let r = g % self.descs_per_block;
            if r == 0 || r == 1 || r == self.descs_per_block - 1 {
                out.push((start + u64::from(has_super), 1));
            }
        }
        out
    }

    fn inode_table_blocks(&self) -> u64 {
        (self.ipg * self.inode_size).div_ceil(self.bs)
    }
}

fn parse(part: &dyn ReadAt, sb: &[u8]) -> Result<(Fs, &'static str), FsError> {
    let log = le32(sb, 24);
    if log > 6 {
        return Err(unsupported(format!(
            "ext superblock: block size 2^{} is not valid (damaged superblock)",
            10 + u64::from(log)
        )));
    }
    let bs = 1024u64 << log;
    let rev = le32(sb, 76);
    let (compat, incompat, ro_compat) = if rev == 0 {
        (0, 0, 0)
    } else {
        (le32(sb, 92), le32(sb, 96), le32(sb, 100))
    };
    let name = fs_name(compat, incompat, ro_compat);
    let fsck = "e2fsck -f";
    // Cleanliness first: it is what the technician can act on.
    if incompat & INCOMPAT_RECOVER != 0 {
        return Err(not_clean(
            "the journal needs recovery (the file system was not unmounted cleanly)",
            fsck,
        ));
    }
    let state = le16(sb, 58);
    if state & STATE_ERROR != 0 {
        return Err(not_clean("errors are recorded in the file system", fsck));
    }
    if state & STATE_VALID == 0 {
        return Err(not_clean("the file system was not cleanly unmounted", fsck));
    }
    if le32(sb, 232) != 0 || ro_compat & RO_ORPHAN_PRESENT != 0 {
        return Err(not_clean(
            "orphan inodes are pending (files deleted while open when the system stopped)",
            fsck,
        ));
    }
    if incompat & INCOMPAT_JOURNAL_DEV != 0 {
        return Err(unsupported(
            "an external journal device, not a file system".to_string(),
        ));
    }
    let unknown = incompat & !INCOMPAT_KNOWN;
    if unknown != 0 {
        return Err(unsupported(format!(
            "incompatible features this reader does not know (0x{unknown:x})"
        )));
    }
    if ro_compat & RO_BIGALLOC != 0 {
        return Err(unsupported(
            "bigalloc (cluster bitmaps) is not read".to_string(),
        ));
    }
    let unknown = ro_compat & !RO_KNOWN;
    if unknown != 0 {
        return Err(unsupported(format!(
            "read-only features this reader does not know (0x{unknown:x})"
        )));
    }
    let bad = |what: String| {
        Err(unsupported(format!(
            "superblock: {what} (damaged superblock?)"
        )))
    };
    let mut blocks = u64::from(le32(sb, 4));
    if incompat & INCOMPAT_64BIT != 0 {
        blocks |= u64::from(le32(sb, 336)) << 32;
    }
    let first_data_block = u64::from(le32(sb, 20));
    if first_data_block != u64::from(bs == 1024) {
        return bad(format!(
            "first data block {first_data_block} with {bs}-byte blocks"
        ));
    }
    let bpg = u64::from(le32(sb, 32));
    if bpg == 0 || bpg > 8 * bs || u64::from(le32(sb, 36)) != bpg {
        return bad(format!("{bpg} blocks per group with {bs}-byte blocks"));
    }
    let ipg = u64::from(le32(sb, 40));
    let inode_size = if rev == 0 {
        128
    } else {
        u64::from(le16(sb, 88))
    };
    if ipg == 0
        || ipg > 8 * bs
        || inode_size < 128
        || !inode_size.is_power_of_two()
        || inode_size > bs
    {
        return bad(format!("{ipg} inodes per group of {inode_size} bytes"));
    }
    if blocks <= first_data_block {
        return bad(format!("{blocks} blocks"));
    }
    let fs_bytes = blocks.saturating_mul(bs);
    if fs_bytes > part.size() {
        return Err(unsupported(format!(
            "the file system ({fs_bytes} bytes) is larger than its partition ({} bytes): truncated?",
            part.size()
        )));
    }
    let groups = (blocks - first_data_block).div_ceil(bpg);
    let desc_size = if incompat & INCOMPAT_64BIT != 0 {
        u64::from(le16(sb, 254))
    } else {
        32
    };
    if desc_size < 32 || desc_size > bs || !desc_size.is_power_of_two() {
        return bad(format!("group descriptor size {desc_size}"));
    }
    let descs_per_block = bs / desc_size;
    let fs = Fs {
        bs,
        blocks,
        first_data_block,
        bpg,
        ipg,
        inode_size,
        groups,
        desc_size,
        descs_per_block,
        desc_blocks: groups.div_ceil(descs_per_block),
        reserved_gdt: u64::from(le16(sb, 206)),
        compat,
        incompat,
        ro_compat,
        first_meta_bg: u64::from(le32(sb, 260)),
        backup_bgs: [u64::from(le32(sb, 588)), u64::from(le32(sb, 592))],
    };
    if fs.reserved_gdt > bs / 4 {
        return bad(format!("{} reserved GDT blocks", fs.reserved_gdt));
    }
    Ok((fs, name))
}

fn read_descs(part: &dyn ReadAt, fs: &Fs) -> Result<Vec<Desc>, FsError> {
    let mut out = Vec::with_capacity(fs.groups as usize);
    let wide = fs.has(INCOMPAT_64BIT) && fs.desc_size >= 64;
    for i in 0..fs.desc_blocks {
        let at = fs.desc_block(i);
        if at >= fs.blocks {
            return Err(unsupported(format!(
                "group descriptor block {i} (block {at}) is beyond the file system"
            )));
        }
        let block = read_vec(part, at * fs.bs, fs.bs as usize)?;
        for d in block.chunks_exact(fs.desc_size as usize) {
            if out.len() as u64 == fs.groups {
                break;
            }
            let hi = |off: usize| {
                if wide {
                    u64::from(le32(d, off)) << 32
                } else {
                    0
                }
            };
            out.push(Desc {
                block_bitmap: u64::from(le32(d, 0)) | hi(32),
                inode_bitmap: u64::from(le32(d, 4)) | hi(36),
                inode_table: u64::from(le32(d, 8)) | hi(40),
                free: u64::from(le16(d, 12))
                    | if wide {
                        u64::from(le16(d, 44)) << 16
                    } else {
                        0
                    },
                free_inodes: u64::from(le16(d, 14))
                    | if wide {
                        u64::from(le16(d, 46)) << 16
                    } else {
                        0
                    },
                flags: le16(d, 18),
            });
        }
    }
    Ok(out)
}

/// What shrinking the ext file system of `part` to `new_len` bytes (resize2fs, issue 23) drops
/// beyond `new_len`: the metadata of every block group that starts at or after the new end (its
/// superblock backup, descriptor copies, reserved GDT blocks, and its own bitmaps and inode table
/// when they lie beyond the end), as byte ranges relative to the partition's start. Any other used
/// byte beyond the end is data the shrink would lose. A group to drop that still has an inode in
/// use is an error (resize2fs would move it, reading its inode table beyond the disk's end).
/// `Ok(None)`: `part` holds no ext file system.
pub fn shrink_drops(part: &dyn ReadAt, new_len: u64) -> Result<Option<Extents>, FsError> {
    let Ok(sb) = read_vec(part, 1024, 1024) else {
        return Ok(None);
    };
    if le16(&sb, 56) != MAGIC {
        return Ok(None);
    }
    let (fs, _) = parse(part, &sb)?;
    let descs = read_descs(part, &fs)?;
    let bs = fs.bs;
    let itb = fs.inode_table_blocks();
    let mut drops = Extents::new();
    for (g, d) in descs.iter().enumerate() {
        let g = g as u64;
        if fs.group_first(g) * bs < new_len {
            continue;
        }
        if d.free_inodes < fs.ipg {
            return Err(unsupported(format!(
                "group {g} (from byte {}) holds {} inodes in use: shrinking would have to move them",
                fs.group_first(g) * bs,
                fs.ipg - d.free_inodes
            )));
        }
        for (at, n) in fs.base_meta(g).into_iter().chain([
            (d.block_bitmap, 1),
            (d.inode_bitmap, 1),
            (d.inode_table, itb),
        ]) {
            let (s, e) = ((at * bs).max(new_len), (at + n).min(fs.blocks) * bs);
            if s < e {
                drops.insert(s, e);
            }
        }
    }
    Ok(Some(drops))
}

fn map(part: &dyn ReadAt, sb: &[u8]) -> Result<FsMap, FsError> {
    let (fs, name) = parse(part, sb)?;
    let descs = read_descs(part, &fs)?;
    let csum = fs.ro_compat & (RO_GDT_CSUM | RO_METADATA_CSUM) != 0;
    let bs = fs.bs;
    let itb = fs.inode_table_blocks();

    // Every group's own metadata, wherever flex_bg put it; checked to lie inside the file system.
    let mut meta = Extents::new();
    for (g, d) in descs.iter().enumerate() {
        for (what, at, n) in [
            ("block bitmap", d.block_bitmap, 1),
            ("inode bitmap", d.inode_bitmap, 1),
            ("inode table", d.inode_table, itb),
        ] {
            if at < fs.first_data_block || at.saturating_add(n) > fs.blocks {
                return Err(unsupported(format!(
                    "group {g}'s {what} (block {at}) is outside the file system"
                )));
            }
            meta.insert(at * bs, (at + n) * bs);
        }
    }
    for g in 0..fs.groups {
        for (at, n) in fs.base_meta(g) {
            let end = (at + n).min(fs.blocks);
            meta.insert(at * bs, end * bs);
        }
    }

    let mut used = Extents::from_range(0, 2048);
    used.union_with(&meta);
    let mut total_free = 0u64;
    for (g, d) in descs.iter().enumerate() {
        let g = g as u64;
        let first = fs.group_first(g);
        let len = fs.group_len(g);
        let free = if csum && d.flags & BG_BLOCK_UNINIT != 0 {
            // Never initialised: only the metadata computed above is used in it.
            len - meta.clipped(first * bs, (first + len) * bs).bytes() / bs
        } else {
            let bitmap = read_vec(part, d.block_bitmap * bs, bs as usize)?;
            let set = set_runs(&bitmap, len, |s, e| {
                used.insert((first + s) * bs, (first + e) * bs)
            });
            len - set
        };
        if free != d.free {
            return Err(unsupported(format!(
                "group {g}'s block bitmap has {free} free blocks but its descriptor says {}: \
                 the file system contradicts itself (`e2fsck -f` repairs it)",
                d.free
            )));
        }
        total_free += free;
    }
    let mut sb_free = u64::from(le32(sb, 12));
    if fs.has(INCOMPAT_64BIT) {
        sb_free |= u64::from(le32(sb, 344)) << 32;
    }
    if sb_free != total_free {
        return Err(unsupported(format!(
            "the block bitmaps have {total_free} free blocks but the superblock says {sb_free}: \
             the file system contradicts itself (`e2fsck -f` repairs it)"
        )));
    }
    check_journal(part, &fs, &descs, sb, &used)?;
    Ok(FsMap {
        fs: name.to_string(),
        used,
        discarded: Vec::new(),
    })
}

/// The journal's blocks are all marked used, and it holds no transaction to replay.
fn check_journal(
    part: &dyn ReadAt,
    fs: &Fs,
    descs: &[Desc],
    sb: &[u8],
    used: &Extents,
) -> Result<(), FsError> {
    let inum = u64::from(le32(sb, 224));
    if fs.compat & COMPAT_HAS_JOURNAL == 0 || inum == 0 {
        return Ok(());
    }
    let extents = inode_extents(part, fs, descs, inum)
        .map_err(|why| unsupported(format!("the journal (inode {inum}) cannot be read: {why}")))?;
    for &(start, n) in &extents {
        if start.saturating_add(n) > fs.blocks || !used.contains(start * fs.bs, (start + n) * fs.bs)
        {
            return Err(unsupported(format!(
                "the journal's blocks {start}..{} are not all marked used in the block bitmap",
                start.saturating_add(n)
            )));
        }
    }
    let Some(&(first, _)) = extents.first() else {
        return Err(unsupported(format!(
            "the journal (inode {inum}) has no block"
        )));
    };
    let jsb = read_vec(part, first * fs.bs, 1024)?;
    if be32(&jsb, 0) == JOURNAL_MAGIC && be32(&jsb, 28) != 0 {
        return Err(not_clean(
            "the journal holds transactions to replay (the file system was not unmounted cleanly)",
            "e2fsck -f",
        ));
    }
    Ok(())
}

/// The physical blocks of inode `inum` as (first block, count), the extent-tree or indirect blocks
/// included; the data extents come first in file order for extent-mapped inodes.
fn inode_extents(
    part: &dyn ReadAt,
    fs: &Fs,
    descs: &[Desc],
    inum: u64,
) -> Result<Vec<(u64, u64)>, String> {
    let g = (inum - 1) / fs.ipg;
    let idx = (inum - 1) % fs.ipg;
    let Some(d) = descs.get(g as usize) else {
        return Err(format!("inode {inum} is beyond the inode count"));
    };
    let table = d.inode_table;
    let inode =
        read_vec(part, table * fs.bs + idx * fs.inode_size, 128).map_err(|e| e.to_string())?;
    let flags = le32(&inode, 32);
    let iblock = &inode[40..100];
    let mut out = Vec::new();
    let mut budget = fs.blocks.min(1 << 24);
    if flags & EXTENTS_FL != 0 {
        extent_node(part, fs, iblock, 0, &mut out, &mut budget)?;
    } else {
        for (i, slot) in iblock.chunks_exact(4).enumerate() {
            let b = u64::from(le32(slot, 0));
            if b == 0 {
                continue;
            }
            let depth = i.saturating_sub(11) as u32; // 0 direct, 1..3 indirect
            indirect(part, fs, b, depth, &mut out, &mut budget)?;
        }
    }
    Ok(out)
}

fn take(budget: &mut u64) -> Result<(), String> {
    *budget = budget.checked_sub(1).ok_or("too many blocks or extents")?;
    Ok(())
}

fn extent_node(
    part: &dyn ReadAt,
    fs: &Fs,
    node: &[u8],
    level: u32,
    out: &mut Vec<(u64, u64)>,
    budget: &mut u64,
) -> Result<(), String> {
    if le16(node, 0) != 0xf30a {
        return Err("bad extent header".into());
    }
    let entries = le16(node, 2) as usize;
    let depth = le16(node, 6);
    if level > 5 || depth > 5 || 12 + entries * 12 > node.len() {
        return Err("extent tree is not believable".into());
    }
    for e in node[12..12 + entries * 12].chunks_exact(12) {
        take(budget)?;
        if depth == 0 {
            let mut len = u64::from(le16(e, 4));
            if len > 32768 {
                len -= 32768; // an uninitialised extent: allocated all the same
            }
            let start = u64::from(le32(e, 8)) | (u64::from(le16(e, 6)) << 32);
            out.push((start, len));
        } else {
            let child = u64::from(le32(e, 4)) | (u64::from(le16(e, 8)) << 32);
            if child >= fs.blocks {
                return Err(format!(
                    "extent tree block {child} is beyond the file system"
                ));
            }
            let block = read_vec(part, child * fs.bs, fs.bs as usize).map_err(|e| e.to_string())?;
            extent_node(part, fs, &block, level + 1, out, budget)?;
            out.push((child, 1));
        }
    }
    Ok(())
}

fn indirect(
    part: &dyn ReadAt,
    fs: &Fs,
    block: u64,
    depth: u32,
    out: &mut Vec<(u64, u64)>,
    budget: &mut u64,
) -> Result<(), String> {
    take(budget)?;
    if block >= fs.blocks {
        return Err(format!("block {block} is beyond the file system"));
    }
    match out.last_mut() {
        Some((s, n)) if *s + *n == block => *n += 1,
        _ => out.push((block, 1)),
    }
    if depth == 0 {
        return Ok(());
    }
    let data = read_vec(part, block * fs.bs, fs.bs as usize).map_err(|e| e.to_string())?;
    for slot in data.chunks_exact(4) {
        let b = u64::from(le32(slot, 0));
        if b != 0 {
            indirect(part, fs, b, depth - 1, out, budget)?;
        }
    }
    Ok(())
}
