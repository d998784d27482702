//! The image as multicast blocks: one block per distinct data chunk of the signed manifest, in
//! the order of first appearance. Zero chunks are not blocks (the agent zeroes them itself), and a
//! chunk that occurs at several offsets travels once. The deploy server and the agent both derive
//! the same map from the same signed manifest (`Manifest::block_map` in the store), so a block
//! index means the same bytes at both ends.

use crate::hash::ChunkHash;
use std::collections::HashMap;

/// One block: a distinct data chunk and every place it goes on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// sha256 of the uncompressed chunk.
    pub sha256: ChunkHash,
    /// Size of the stored zstd frame: the block's length on the wire.
    pub compressed_len: u32,
    /// Manifest indices of the chunks with these bytes, ascending.
    pub chunks: Vec<usize>,
}

/// Blocks of one image, and the block of each data chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMap {
    blocks: Vec<Block>,
    of_chunk: Vec<Option<u32>>,
}

impl BlockMap {
    /// The blocks of an image whose chunks, in manifest order, are `chunks`: `Some((sha256,
    /// compressed length))` for a data chunk, `None` for an all-zero one. A manifest is validated
    /// before it is trusted, so every data chunk has a compressed length; a 0 is refused by the
    /// sender.
    pub fn from_chunks(chunks: impl IntoIterator<Item = Option<(ChunkHash, u32)>>) -> BlockMap {
        let mut blocks: Vec<Block> = Vec::new();
        let mut by_hash: HashMap<ChunkHash, u32> = HashMap::new();
        let mut of_chunk = Vec::new();
        for (i, c) in chunks.into_iter().enumerate() {
            let Some((h, compressed_len)) = c else {
                of_chunk.push(None);
                continue;
            };
            let b = *by_hash.entry(h).or_insert_with(|| {
                blocks.push(Block {
                    sha256: h,
                    compressed_len,
                    chunks: Vec::new(),
                });
                (blocks.len() - 1) as u32
            });
            blocks[b as usize].chunks.push(i);
            of_chunk.push(Some(b));
        }
        BlockMap { blocks, of_chunk }
    }

    /// The blocks, by index.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// True when the image holds only zeros.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Block `index`.
    pub fn block(&self, index: u32) -> Option<&Block> {
        self.blocks.get(index as usize)
    }

    /// The block carrying chunk `chunk` (`None` for a zero chunk).
    pub fn block_of(&self, chunk: usize) -> Option<u32> {
        self.of_chunk.get(chunk).copied().flatten()
    }

    /// Compressed lengths in block order: what [`crate::mcast::Sender::new`] takes.
    pub fn lengths(&self) -> Vec<u32> {
        self.blocks.iter().map(|b| b.compressed_len).collect()
    }

    /// Bytes on the wire for the blocks of `wanted` (compressed, before FEC and headers).
    pub fn compressed_bytes(&self, wanted: impl Iterator<Item = u32>) -> u64 {
        wanted
            .filter_map(|b| self.block(b))
            .map(|b| u64::from(b.compressed_len))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_block_per_distinct_data_chunk_in_first_seen_order() {
        let chunk = |b: Option<u8>| b.map(|b| (ChunkHash([b; 32]), 100 + u32::from(b)));
        let map = BlockMap::from_chunks([7, 0, 3, 7, 0].map(|b| chunk((b != 0).then_some(b))));
        assert_eq!(map.len(), 2);
        assert_eq!(map.blocks()[0].chunks, vec![0, 3]);
        assert_eq!(map.blocks()[1].chunks, vec![2]);
        assert_eq!(map.lengths(), vec![107, 103]);
        assert_eq!(
            (0..5).map(|c| map.block_of(c)).collect::<Vec<_>>(),
            vec![Some(0), None, Some(1), Some(0), None]
        );
        assert_eq!(map.compressed_bytes([0, 1].into_iter()), 210);
    }
}
