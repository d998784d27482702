//! Reading a chunk through its used ranges (issue 14): capture and restore read only the bytes a file
//! system uses and see every free byte as zero, so what a free byte holds never reaches a hash, the
//! store, the wire or a comparison.

use crate::disk::{Disk, DiskError};
use crate::manifest::ChunkEntry;

/// Free gaps shorter than this between two used ranges are read along with them (one read instead
/// of two; the gap is zeroed afterwards).
const READ_GAP: usize = 64 * 1024;

impl roomcast_layout::ReadAt for Disk {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        Disk::read_exact_at(self, buf, offset).map_err(std::io::Error::other)
    }
    fn size(&self) -> u64 {
        Disk::size(self)
    }
}

/// Fills `buf` (the chunk's length) with the chunk at `offset` as `used` sees it: used bytes as the
/// disk holds them, free bytes zero. `None`: every byte is used (a plain read).
pub fn read_used(
    disk: &Disk,
    used: Option<&[[u32; 2]]>,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), DiskError> {
    let Some(ranges) = used else {
        return disk.read_exact_at(buf, offset);
    };
    let mut i = 0;
    let mut zeroed_to = 0usize;
    while i < ranges.len() {
        let start = (ranges[i][0] as usize).min(buf.len());
        let mut end = (ranges[i][1] as usize).min(buf.len());
        let mut j = i + 1;
        while j < ranges.len() && (ranges[j][0] as usize) < end + READ_GAP {
            end = (ranges[j][1] as usize).min(buf.len());
            j += 1;
        }
        buf[zeroed_to..start].fill(0);
        disk.read_exact_at(&mut buf[start..end], offset + start as u64)?;
        // The small gaps read along: zero them again.
        for k in i + 1..j {
            let (gs, ge) = (ranges[k - 1][1] as usize, ranges[k][0] as usize);
            buf[gs.min(end)..ge.min(end)].fill(0);
        }
        zeroed_to = end;
        i = j;
    }
    buf[zeroed_to..].fill(0);
    Ok(())
}

/// Reads chunk `e` of a disk, masked with its used ranges (see [`read_used`]).
pub fn read_entry(disk: &Disk, e: &ChunkEntry, buf: &mut Vec<u8>) -> Result<(), DiskError> {
    buf.resize(e.len as usize, 0);
    read_used(disk, e.used.as_deref(), e.offset, buf)
}

/// sha256 (hex) of a disk as image `m` sees it: every chunk of the image read through its used
/// ranges, free bytes as zero, in disk order. A disk restored from `m` gives the digest of the image
/// itself whatever its free space holds (restore never writes free bytes): what tests and the demo
/// compare instead of the whole disk's sha256.
pub fn used_digest(disk: &Disk, m: &crate::manifest::Manifest) -> Result<String, DiskError> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut buf = Vec::new();
    for e in &m.chunks {
        read_entry(disk, e, &mut buf)?;
        h.update(&buf);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_used_bytes_and_zeroes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 + 1).collect();
        std::fs::write(&p, &data).unwrap();
        let disk = Disk::open_read(&p).unwrap();
        let ranges = [
            [10u32, 20],
            [30, 40],
            [100_000, 100_010],
            [200_000, 200_001],
        ];
        let mut buf = vec![7u8; 250_000];
        read_used(&disk, Some(&ranges), 1000, &mut buf).unwrap();
        for (i, &b) in buf.iter().enumerate() {
            let used = ranges
                .iter()
                .any(|&[s, e]| (s as usize..e as usize).contains(&i));
            let want = if used { data[1000 + i] } else { 0 };
            assert_eq!(b, want, "byte {i}");
        }
        let mut buf = vec![7u8; 100];
        read_used(&disk, Some(&[]), 0, &mut buf).unwrap();
        assert_eq!(buf, vec![0; 100]);
        read_used(&disk, None, 5, &mut buf).unwrap();
        assert_eq!(buf, data[5..105]);
    }
}
