//! RaptorQ over one block: the block (a compressed chunk) is one RaptorQ source block of `K` symbols;
//! any `K` (rarely `K + 1` or `K + 2`) distinct encoding symbols rebuild it.

use super::bitmap::BlockSet;
use raptorq::{
    EncodingPacket, ObjectTransmissionInformation, PayloadId, SourceBlockDecoder,
    SourceBlockEncoder,
};
use std::collections::HashSet;
use std::sync::OnceLock;

/// Most source symbols RaptorQ allows in one source block (RFC 6330, K'max).
pub(crate) const MAX_SOURCE_SYMBOLS: u32 = 56403;

/// Symbols beyond `K` a decoder keeps trying with before it starts over: RaptorQ fails with `K + 2`
/// symbols about once in a million, so reaching this means corrupt input rather than bad luck.
const MAX_EXTRA_SYMBOLS: u32 = 24;

/// Source symbols of a block of `len` bytes.
pub(crate) fn source_symbols(len: u32, symbol_size: u16) -> u32 {
    len.div_ceil(u32::from(symbol_size))
}

fn config(k: u32, symbol_size: u16) -> ObjectTransmissionInformation {
    ObjectTransmissionInformation::new(u64::from(k) * u64::from(symbol_size), symbol_size, 1, 1, 1)
}

/// Produces the source and repair symbols of one block.
pub(crate) struct BlockEncoder {
    k: u32,
    symbol_size: u16,
    padded: Vec<u8>,
    /// Built at the first repair symbol: source symbols are the block itself, and computing
    /// RaptorQ's intermediate symbols costs milliseconds per block that a loss-free room never
    /// needs (inline in the sending loop, they starved the link).
    encoder: OnceLock<SourceBlockEncoder>,
}

impl BlockEncoder {
    /// `data` must be non-empty and at most `MAX_SOURCE_SYMBOLS` symbols long (the sender checks).
    pub(crate) fn new(data: &[u8], symbol_size: u16) -> Self {
        let k = source_symbols(data.len() as u32, symbol_size);
        let mut padded = data.to_vec();
        padded.resize(k as usize * usize::from(symbol_size), 0);
        BlockEncoder {
            k,
            symbol_size,
            padded,
            encoder: OnceLock::new(),
        }
    }

    /// Writes encoding symbol `id` into `out` (source symbols are the block itself, zero-padded).
    pub(crate) fn symbol(&self, id: u32, out: &mut Vec<u8>) {
        let size = usize::from(self.symbol_size);
        if id < self.k {
            let at = id as usize * size;
            out.extend_from_slice(&self.padded[at..at + size]);
        } else {
            let p = self.prepare().repair_packets(id - self.k, 1);
            out.extend_from_slice(p[0].data());
        }
    }

    /// Builds the RaptorQ encoder now (the intermediate symbols every repair symbol derives
    /// from), so that the first repair symbol finds it ready; does nothing if it is built.
    pub(crate) fn prepare(&self) -> &SourceBlockEncoder {
        self.encoder.get_or_init(|| {
            SourceBlockEncoder::new(0, &config(self.k, self.symbol_size), &self.padded)
        })
    }

    /// Whether the RaptorQ encoder has been built (only repair symbols need it).
    pub(crate) fn encoder_ready(&self) -> bool {
        self.encoder.get().is_some()
    }
}

fn packet(id: u32, symbol: &[u8]) -> EncodingPacket {
    EncodingPacket::new(PayloadId::new(0, id), symbol.to_vec())
}

/// Collects symbols of one block until it can be rebuilt.
pub(crate) struct BlockDecoder {
    len: u32,
    k: u32,
    symbol_size: u16,
    /// Source symbols held, one bit each (a hash set per symbol cost more than the copy).
    source_seen: BlockSet,
    /// Repair symbols held (few: about the loss).
    repair_seen: HashSet<u32>,
    /// Source symbols land here in place: a block whose source symbols all arrive (a loss-free
    /// room, nearly every block) is this buffer, with no RaptorQ work and no copy per symbol.
    source: Vec<u8>,
    /// Built at the first repair symbol and fed the source symbols held so far; RaptorQ's answer
    /// does not depend on the order symbols come in, so deferring it changes nothing decided.
    decoder: Option<SourceBlockDecoder>,
}

/// What one more symbol did.
pub(crate) enum Added {
    /// Nothing new (duplicate) or not enough yet.
    Pending,
    /// The block, exactly `len` bytes.
    Complete(Vec<u8>),
    /// Too many symbols without success: the caller should start this block over.
    GiveUp,
}

impl BlockDecoder {
    /// `len` must be in `1..=MAX_SOURCE_SYMBOLS * symbol_size` (the receiver checks).
    #[cfg(test)]
    pub(crate) fn new(len: u32, symbol_size: u16) -> Self {
        Self::reusing(len, symbol_size, Vec::new())
    }

    /// [`BlockDecoder::new`], with `buffer` (a block handed out before) as the block's memory:
    /// no allocation and no zeroing of a mebibyte per block. Its old bytes are never handed out:
    /// the block is either all received source symbols, each written over its slot, or
    /// RaptorQ's output.
    pub(crate) fn reusing(len: u32, symbol_size: u16, mut buffer: Vec<u8>) -> Self {
        let k = source_symbols(len, symbol_size);
        buffer.resize(k as usize * usize::from(symbol_size), 0);
        BlockDecoder {
            len,
            k,
            symbol_size,
            source_seen: BlockSet::new(k),
            repair_seen: HashSet::new(),
            source: buffer,
            decoder: None,
        }
    }

    /// Block length this decoder was opened with.
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Distinct symbols still needed (at least 1 while the block is not rebuilt).
    pub(crate) fn deficit(&self) -> u32 {
        self.k.saturating_sub(self.received()).max(1)
    }

    /// Distinct symbols received.
    pub(crate) fn received(&self) -> u32 {
        self.source_seen.count() + self.repair_seen.len() as u32
    }

    /// Records symbol `id`; false if it was already there.
    fn mark_seen(&mut self, id: u32) -> bool {
        if id < self.k {
            self.source_seen.insert(id)
        } else {
            self.repair_seen.insert(id)
        }
    }

    /// Adds symbol `id`; `symbol` must be exactly one symbol long (the receiver checks).
    pub(crate) fn add(&mut self, id: u32, symbol: &[u8]) -> Added {
        if self.source.is_empty() || !self.mark_seen(id) {
            // Empty: already handed out complete (the receiver drops a decoder then).
            return Added::Pending;
        }
        let size = usize::from(self.symbol_size);
        let decoded = if id < self.k {
            let at = id as usize * size;
            self.source[at..at + size].copy_from_slice(symbol);
            match &mut self.decoder {
                None if self.source_seen.is_full() => Some(std::mem::take(&mut self.source)),
                None => None,
                Some(d) => d.decode(std::iter::once(packet(id, symbol))),
            }
        } else {
            let d = self.decoder.get_or_insert_with(|| {
                let mut d = SourceBlockDecoder::new(
                    0,
                    &config(self.k, self.symbol_size),
                    u64::from(self.k) * u64::from(self.symbol_size),
                );
                let held: Vec<EncodingPacket> = self
                    .source_seen
                    .iter()
                    .map(|s| {
                        let at = s as usize * size;
                        packet(s, &self.source[at..at + size])
                    })
                    .collect();
                // Fewer than K symbols so far (this repair one is not in yet): no decode happens.
                let _ = d.decode(held);
                d
            });
            d.decode(std::iter::once(packet(id, symbol)))
        };
        match decoded {
            Some(mut data) => {
                data.truncate(self.len as usize);
                Added::Complete(data)
            }
            None if self.received() >= self.k + MAX_EXTRA_SYMBOLS => Added::GiveUp,
            None => Added::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilds_from_any_k_symbols() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let enc = BlockEncoder::new(&data, 1000);
        assert_eq!(enc.k, 10);
        let mut s = Vec::new();
        enc.symbol(4, &mut s);
        assert!(
            !enc.encoder_ready(),
            "source symbols need no RaptorQ encoding"
        );
        let mut dec = BlockDecoder::new(data.len() as u32, 1000);
        // Drop the first three source symbols, use repair symbols instead.
        let mut out = None;
        for id in (3..10).chain(10..16) {
            let mut s = Vec::new();
            enc.symbol(id, &mut s);
            if let Added::Complete(d) = dec.add(id, &s) {
                out = Some(d);
                break;
            }
        }
        assert_eq!(out.as_deref(), Some(&data[..]));
    }

    #[test]
    fn a_reused_buffer_never_leaks_its_old_bytes() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let enc = BlockEncoder::new(&data, 1000);
        let symbol = |id| {
            let mut s = Vec::new();
            enc.symbol(id, &mut s);
            s
        };
        // Longer and shorter stale buffers, every source symbol received, in any order.
        for stale in [vec![0xff; 30_000], vec![0xee; 4_321]] {
            let mut dec = BlockDecoder::reusing(data.len() as u32, 1000, stale);
            let mut out = None;
            for id in (0..10).rev() {
                if let Added::Complete(d) = dec.add(id, &symbol(id)) {
                    out = Some(d);
                }
            }
            assert_eq!(out.as_deref(), Some(&data[..]));
        }
        // Source symbols lost: RaptorQ's answer, not the stale slots.
        let mut dec = BlockDecoder::reusing(data.len() as u32, 1000, vec![0xff; 10_000]);
        let mut out = None;
        for id in (2..10).chain(10..14) {
            if let Added::Complete(d) = dec.add(id, &symbol(id)) {
                out = Some(d);
                break;
            }
        }
        assert_eq!(out.as_deref(), Some(&data[..]));
    }

    #[test]
    fn short_block_is_padded_and_truncated() {
        let data = b"tiny".to_vec();
        let enc = BlockEncoder::new(&data, 1400);
        let mut dec = BlockDecoder::new(4, 1400);
        let mut s = Vec::new();
        enc.symbol(1, &mut s);
        assert!(matches!(dec.add(1, &s), Added::Complete(ref d) if d == &data));
    }
}
