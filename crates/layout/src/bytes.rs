//! Little-endian field reads that never panic: a field beyond the buffer reads as 0 (the callers
//! validate the structure before trusting any value), and one helper to read a range of a disk.

use crate::ReadAt;
use std::io;

pub(crate) fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    match b.get(off..off.saturating_add(2)) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off.saturating_add(4)) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

pub(crate) fn le64(b: &[u8], off: usize) -> u64 {
    u64::from(le32(b, off)) | (u64::from(le32(b, off.saturating_add(4))) << 32)
}

pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off.saturating_add(4)) {
        Some(s) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

/// `len` bytes from `offset` (an error when they are not all on the device).
pub(crate) fn read_vec(dev: &dyn ReadAt, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let end = offset
        .checked_add(len as u64)
        .ok_or(io::ErrorKind::UnexpectedEof)?;
    if end > dev.size() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "bytes {offset}..{end} are beyond the end ({} bytes)",
                dev.size()
            ),
        ));
    }
    let mut buf = vec![0u8; len];
    dev.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Calls `f(first, end)` for each run of set bits among the first `nbits`; returns how many are set.
pub(crate) fn set_runs(bits: &[u8], nbits: u64, mut f: impl FnMut(u64, u64)) -> u64 {
    let mut count = 0;
    let mut run: Option<u64> = None;
    let mut i = 0u64;
    while i < nbits {
        let byte = bits[(i / 8) as usize];
        if i.is_multiple_of(8) && i + 8 <= nbits && (byte == 0 || byte == 0xff) {
            match (byte, run) {
                (0, Some(s)) => {
                    f(s, i);
                    run = None;
                }
                (0xff, None) => run = Some(i),
                _ => {}
            }
            if byte == 0xff {
                count += 8;
            }
            i += 8;
            continue;
        }
        let set = byte >> (i % 8) & 1 == 1;
        match (set, run) {
            (true, None) => run = Some(i),
            (false, Some(s)) => {
                f(s, i);
                run = None;
            }
            _ => {}
        }
        count += u64::from(set);
        i += 1;
    }
    if let Some(s) = run {
        f(s, nbits);
    }
    count
}
