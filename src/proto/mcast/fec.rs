//! RaptorQ over one block: the block (a compressed chunk) is one RaptorQ source block of `K` symbols;
//! any `K` (rarely `K + 1` or `K + 2`) distinct encoding symbols rebuild it.

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
            let encoder = self.encoder.get_or_init(|| {
                SourceBlockEncoder::new(0, &config(self.k, self.symbol_size), &self.padded)
            });
            let p = encoder.repair_packets(id - self.k, 1);
            out.extend_from_slice(p[0].data());
        }
    }

    /// Whether the RaptorQ encoder has been built (only repair symbols need it).
    #[cfg(test)]
    pub(crate) fn encoder_built(&self) -> bool {
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
    seen: HashSet<u32>,
    /// Source symbols land here in place: a block whose source symbols all arrive (a loss-free
    /// room, nearly every block) is this buffer, with no RaptorQ work and no copy per symbol.
    source: Vec<u8>,
    sources: u32,
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
    pub(crate) fn new(len: u32, symbol_size: u16) -> Self {
        let k = source_symbols(len, symbol_size);
        BlockDecoder {
            len,
            k,
            symbol_size,
            seen: HashSet::new(),
            source: vec![0; k as usize * usize::from(symbol_size)],
            sources: 0,
            decoder: None,
        }
    }

    /// Block length this decoder was opened with.
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Distinct symbols still needed (at least 1 while the block is not rebuilt).
    pub(crate) fn deficit(&self) -> u32 {
        self.k.saturating_sub(self.seen.len() as u32).max(1)
    }

    /// Distinct symbols received.
    pub(crate) fn received(&self) -> u32 {
        self.seen.len() as u32
    }

    /// Adds symbol `id`; `symbol` must be exactly one symbol long (the receiver checks).
    pub(crate) fn add(&mut self, id: u32, symbol: &[u8]) -> Added {
        if self.source.is_empty() || !self.seen.insert(id) {
            // Empty: already handed out complete (the receiver drops a decoder then).
            return Added::Pending;
        }
        let size = usize::from(self.symbol_size);
        let decoded = if id < self.k {
            let at = id as usize * size;
            self.source[at..at + size].copy_from_slice(symbol);
            self.sources += 1;
            match &mut self.decoder {
                None if self.sources == self.k => Some(std::mem::take(&mut self.source)),
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
                    .seen
                    .iter()
                    .filter(|&&s| s < self.k)
                    .map(|&s| {
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
            None if self.seen.len() as u32 >= self.k + MAX_EXTRA_SYMBOLS => Added::GiveUp,
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
            !enc.encoder_built(),
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
    fn short_block_is_padded_and_truncated() {
        let data = b"tiny".to_vec();
        let enc = BlockEncoder::new(&data, 1400);
        let mut dec = BlockDecoder::new(4, 1400);
        let mut s = Vec::new();
        enc.symbol(1, &mut s);
        assert!(matches!(dec.add(1, &s), Added::Complete(ref d) if d == &data));
    }
}
