//! Looking a name up in an NTFS directory (its `$I30` index), case-insensitively as Windows does,
//! with the volume's own `$UpCase` table.
//!
//! Rather than descending the B+ tree (which would trust its ordering), every entry of the index
//! root and of every index block the index's `$BITMAP` marks in use is compared; a match is then
//! checked against the MFT record it names (in use, same sequence number, and a `$FILE_NAME` with
//! that name in that directory), so a stale entry never resolves to a reused record. Bounded by
//! [`MAX_INDEX`] bytes of index blocks per directory.

use super::volume::{
    AT_BITMAP, AT_FILE_NAME, AT_INDEX_ALLOCATION, AT_INDEX_ROOT, FILE_UPCASE, Record, Value,
    Volume, apply_fixups, bad, le16, le32, le64,
};
use crate::FsError;

/// Index blocks read per directory at most (a directory of ~100,000 entries).
const MAX_INDEX: u64 = 64 << 20;
/// `$UpCase` is 64 Ki UTF-16 code units.
const UPCASE_BYTES: u64 = 128 << 10;

const I30: [u16; 4] = [b'$' as u16, b'I' as u16, b'3' as u16, b'0' as u16];
const INDEX_ENTRY_NODE: u16 = 0x01;
const INDEX_ENTRY_END: u16 = 0x02;
const LARGE_INDEX: u8 = 0x01;

/// The volume's upper-case table (or, if it cannot be read, Unicode's simple upper-casing).
pub(super) struct Upcase(Vec<u16>);

impl Upcase {
    pub fn load(vol: &Volume<'_>) -> Self {
        let table = (|| -> Result<Vec<u16>, FsError> {
            let rec = vol.record(FILE_UPCASE)?;
            let v = vol
                .attribute(&rec, super::volume::AT_DATA, &[])?
                .ok_or_else(|| bad("$UpCase has no data"))?;
            let bytes = vol.read_all(&v, UPCASE_BYTES, "$UpCase")?;
            Ok(bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect())
        })();
        Upcase(table.unwrap_or_default())
    }

    fn up(&self, c: u16) -> u16 {
        if let Some(&u) = self.0.get(usize::from(c)) {
            return u;
        }
        match char::from_u32(u32::from(c)) {
            Some(ch) => {
                let mut up = ch.to_uppercase();
                match (up.next(), up.next()) {
                    (Some(u), None) if (u as u32) < 0x1_0000 => u as u16,
                    _ => c,
                }
            }
            None => c,
        }
    }

    pub fn eq(&self, a: &[u16], b: &[u16]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(&x, &y)| x == y || self.up(x) == self.up(y))
    }
}

/// A `$FILE_NAME` value: parent directory and name.
pub(super) fn file_name(v: &[u8]) -> Option<(u64, Vec<u16>)> {
    let parent = le64(v, 0)? & 0x0000_FFFF_FFFF_FFFF;
    let len = usize::from(*v.get(0x40)?);
    let name = v
        .get(0x42..0x42 + 2 * len)?
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Some((parent, name))
}

/// The file references of the entries in one index node whose name matches.
fn scan_entries(node: &[u8], name: &[u16], up: &Upcase, out: &mut Vec<u64>) -> Result<(), FsError> {
    let mut at = 0usize;
    loop {
        let len = usize::from(le16(node, at + 8).ok_or_else(|| bad("index entry beyond node"))?);
        let key_len = usize::from(le16(node, at + 10).unwrap_or(0));
        let flags = le16(node, at + 12).unwrap_or(0);
        if len < 16 || !len.is_multiple_of(8) || at + len > node.len() {
            return Err(bad(format!("index entry of {len} bytes")));
        }
        if flags & INDEX_ENTRY_END != 0 {
            return Ok(());
        }
        let key_end = 16 + key_len + if flags & INDEX_ENTRY_NODE != 0 { 8 } else { 0 };
        if key_end > len {
            return Err(bad("index entry key beyond its entry"));
        }
        if let Some((_, n)) = file_name(&node[at + 16..at + 16 + key_len])
            && up.eq(&n, name)
        {
            out.push(le64(node, at).unwrap_or(0));
        }
        at += len;
    }
}

/// The entries area of an index node whose header starts at `hdr`.
fn node_entries(buf: &[u8], hdr: usize) -> Result<&[u8], FsError> {
    let first = le32(buf, hdr).unwrap_or(0) as usize;
    let used = le32(buf, hdr + 4).unwrap_or(0) as usize;
    buf.get(hdr + first..hdr + used)
        .filter(|_| first >= 16 && first <= used)
        .ok_or_else(|| bad("index node header does not fit"))
}

/// Looks `name` up in directory `dir`: the MFT record number of the file, checked.
pub(super) fn lookup(
    vol: &Volume<'_>,
    dir: &Record,
    name: &[u16],
    up: &Upcase,
) -> Result<Option<u64>, FsError> {
    if !dir.in_use() || !dir.is_directory() {
        return Ok(None);
    }
    let root = match vol.attribute(dir, AT_INDEX_ROOT, &I30)? {
        Some(Value::Resident(v)) => v,
        _ => {
            return Err(bad(format!(
                "directory {} has no resident $I30 root",
                dir.number
            )));
        }
    };
    let mut refs = Vec::new();
    scan_entries(node_entries(&root, 16)?, name, up, &mut refs)?;
    let large = root.get(16 + 12).is_some_and(|f| f & LARGE_INDEX != 0);
    if large && let Some(alloc) = vol.attribute(dir, AT_INDEX_ALLOCATION, &I30)? {
        let block = u64::from(le32(&root, 8).unwrap_or(0));
        if !(512..=65536).contains(&block) || !block.is_power_of_two() {
            return Err(bad(format!(
                "directory {}: {block}-byte index blocks",
                dir.number
            )));
        }
        if alloc.len() > MAX_INDEX {
            return Err(bad(format!(
                "directory {}: index of {} bytes (at most {MAX_INDEX} read)",
                dir.number,
                alloc.len()
            )));
        }
        let bitmap = match vol.attribute(dir, AT_BITMAP, &I30)? {
            Some(b) => vol.read_all(&b, MAX_INDEX / 512 / 8 + 8, "an index bitmap")?,
            None => {
                return Err(bad(format!(
                    "directory {}: index without bitmap",
                    dir.number
                )));
            }
        };
        let mut buf = vec![0u8; block as usize];
        for i in 0..alloc.len() / block {
            let in_use = bitmap
                .get((i / 8) as usize)
                .is_some_and(|b| b & (1 << (i % 8)) != 0);
            if !in_use {
                continue;
            }
            vol.read_value(&alloc, i * block, &mut buf)?;
            apply_fixups(&mut buf, b"INDX")
                .map_err(|e| bad(format!("directory {} index block {i}: {e}", dir.number)))?;
            scan_entries(node_entries(&buf, 0x18)?, name, up, &mut refs)?;
        }
    }
    for r in refs {
        let n = r & 0x0000_FFFF_FFFF_FFFF;
        let seq = (r >> 48) as u16;
        let Ok(rec) = vol.record(n) else { continue };
        if !rec.in_use() || rec.base() != 0 || (seq != 0 && rec.sequence() != seq) {
            continue;
        }
        if names(vol, &rec)?
            .iter()
            .any(|(p, nm)| *p == dir.number && up.eq(nm, name))
        {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// The `$FILE_NAME`s of a file (parent directory, name), wherever its attribute list puts them.
pub(super) fn names(vol: &Volume<'_>, rec: &Record) -> Result<Vec<(u64, Vec<u16>)>, FsError> {
    Ok(vol
        .resident_values(rec, AT_FILE_NAME)?
        .iter()
        .filter_map(|v| file_name(v))
        .collect())
}
