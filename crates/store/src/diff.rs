//! `image diff A B`: what two images share, and what a delta deploy of B onto a disk holding A costs.

use super::manifest::Manifest;
use std::collections::HashSet;

/// Comparison of image B against image A.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffReport {
    /// Distinct non-zero chunks of B.
    pub b_distinct_chunks: u64,
    /// Of which A also has (anywhere): the store shares them.
    pub shared_chunks: u64,
    /// Chunks of B whose content differs from A's at the same offset (what a delta deploy rewrites,
    /// zero chunks included), compared masked: only the bytes B uses count.
    pub changed_chunks: u64,
    /// Bytes a delta deploy writes for those changed chunks (their used bytes).
    pub changed_bytes: u64,
    /// Of the changed chunks, the data ones (sent over the network; zero chunks are only marked).
    pub sent_chunks: u64,
    /// Compressed bytes a delta deploy of B onto a disk holding A sends.
    pub sent_bytes: u64,
    /// Compressed bytes a full deploy of B sends, for comparison.
    pub full_bytes: u64,
}

/// Compares B to A. Chunks are matched by offset and length, so images with different chunk sizes
/// share only the chunks whose ranges coincide.
///
/// Masked images (issue 14): a chunk of B with no used byte is never written, so never changed. Any
/// other chunk is unchanged when A's chunk at the same place has the same used ranges and the same
/// sha256 (both hashes then cover the same bytes, free ones zeroed); with different ranges the
/// bytes B uses may differ on a disk holding A, so the chunk counts as changed.
pub fn diff(a: &Manifest, b: &Manifest) -> DiffReport {
    let a_hashes: HashSet<_> = a.chunks.iter().filter_map(|c| c.sha256).collect();
    let b_hashes: HashSet<_> = b.chunks.iter().filter_map(|c| c.sha256).collect();
    let mut r = DiffReport {
        b_distinct_chunks: b_hashes.len() as u64,
        shared_chunks: b_hashes.intersection(&a_hashes).count() as u64,
        ..Default::default()
    };
    let same_grid = a.chunk_size == b.chunk_size;
    for (i, c) in b.chunks.iter().enumerate() {
        r.full_bytes += c.compressed_len.unwrap_or(0) as u64;
        let before = if same_grid {
            a.chunks.get(i).filter(|x| x.len == c.len)
        } else {
            None
        };
        let unchanged =
            c.is_unused() || before.is_some_and(|x| x.sha256 == c.sha256 && x.used == c.used);
        if !unchanged {
            r.changed_chunks += 1;
            r.changed_bytes += c.used_bytes();
            if let Some(z) = c.compressed_len {
                r.sent_chunks += 1;
                r.sent_bytes += z as u64;
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkHash;
    use crate::manifest::{ChunkEntry, ImageLabel, PartitionTable};

    /// (hash byte, used ranges) of each chunk.
    type Chunks = Vec<(Option<u8>, Option<Vec<[u32; 2]>>)>;

    fn image(chunks: Chunks) -> Manifest {
        let cs = 65536u32;
        let disk_size = chunks.len() as u64 * cs as u64;
        Manifest {
            format: crate::manifest::FORMAT,
            label: ImageLabel {
                name: "d".into(),
                version: "1".into(),
                profile: None,
                captured_by: "t@h".into(),
                captured_at: "2026-12-07T00:00:00Z".into(),
            },
            disk_size,
            chunk_size: cs,
            zstd_level: 3,
            partition_table: PartitionTable::from_regions(disk_size, &[0; 4], &[0; 4]),
            chunks: chunks
                .into_iter()
                .enumerate()
                .map(|(i, (h, used))| ChunkEntry {
                    offset: i as u64 * cs as u64,
                    len: cs,
                    sha256: h.map(|b| ChunkHash([b; 32])),
                    compressed_len: h.map(|_| 100),
                    used,
                })
                .collect(),
            layout: None,
        }
    }

    #[test]
    fn masked_chunks_compare_by_ranges_and_hash_and_unused_ones_never_change() {
        let r = |s, e| Some(vec![[s, e]]);
        let a = image(vec![
            (Some(1), r(0, 4096)),
            (Some(2), r(0, 4096)),
            (Some(3), None),
            (Some(4), r(0, 100)),
        ]);
        let b = image(vec![
            // Same ranges, same hash: unchanged.
            (Some(1), r(0, 4096)),
            // Same hash, other ranges: the bytes B uses may be free on A's disk.
            (Some(2), r(0, 8192)),
            // No used byte: never written.
            (None, Some(vec![])),
            // Used bytes all zero: zeroed, nothing sent.
            (None, r(0, 100)),
        ]);
        let d = diff(&a, &b);
        assert_eq!(d.changed_chunks, 2, "{d:?}");
        assert_eq!(d.changed_bytes, 8192 + 100);
        assert_eq!((d.sent_chunks, d.sent_bytes), (1, 100));
        assert_eq!(d.full_bytes, 200);
    }
}
