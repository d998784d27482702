//! Chunks: fixed-size, disk-aligned pieces of an image, named by the sha256 of their uncompressed bytes
//! and stored as one plain zstd frame each (so `zstd -d` can read a chunk file, and the multicast sender
//! can put the file bytes on the wire as they are).

use std::fmt;
use std::str::FromStr;

/// Smallest chunk size accepted (64 KiB): below it the manifest and per-chunk overhead dominate.
pub const MIN_CHUNK_SIZE: u32 = 64 * 1024;
/// Largest chunk size accepted (16 MiB): above it delta re-imaging loses its point and memory grows.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Default chunk size (1 MiB), the size the design's delta figures were measured with.
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;
/// Default zstd level: level 3 compresses a disk about as well as 6 at a third of the CPU.
pub const DEFAULT_LEVEL: i32 = 3;

/// A chunk size in bytes: a power of two between [`MIN_CHUNK_SIZE`] and [`MAX_CHUNK_SIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkSize(u32);

impl ChunkSize {
    /// Checks that `bytes` is a power of two in the accepted range.
    pub fn new(bytes: u32) -> Result<Self, InvalidChunkSize> {
        if bytes.is_power_of_two() && (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&bytes) {
            Ok(ChunkSize(bytes))
        } else {
            Err(InvalidChunkSize(bytes as u64))
        }
    }

    /// The size in bytes.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The number of chunks a disk of `disk_size` bytes is cut into (the last one may be short).
    pub fn count(self, disk_size: u64) -> u64 {
        disk_size.div_ceil(self.0 as u64)
    }
}

impl Default for ChunkSize {
    fn default() -> Self {
        ChunkSize(DEFAULT_CHUNK_SIZE)
    }
}

/// A chunk size that is not a power of two between 64 KiB and 16 MiB.
#[derive(Debug, thiserror::Error)]
#[error("chunk size {0} is not a power of two between 64 KiB (65536) and 16 MiB (16777216)")]
pub struct InvalidChunkSize(pub u64);

/// Parses sizes such as `1M`, `1MiB`, `256K`, `65536`.
impl FromStr for ChunkSize {
    type Err = InvalidChunkSize;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
        let mult: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1024,
            "m" | "mb" | "mib" => 1024 * 1024,
            _ => return Err(InvalidChunkSize(0)),
        };
        let n: u64 = digits.parse().map_err(|_| InvalidChunkSize(0))?;
        let bytes = n.checked_mul(mult).ok_or(InvalidChunkSize(u64::MAX))?;
        u32::try_from(bytes)
            .map_err(|_| InvalidChunkSize(bytes))
            .and_then(ChunkSize::new)
    }
}

pub use roomcast_proto::hash::{ChunkHash, InvalidHash};

/// True when every byte is zero; such chunks are not stored, the manifest marks them.
pub fn is_zero(data: &[u8]) -> bool {
    // Word-wise compare: this runs over every byte of the disk, holes included.
    let (head, words, tail) = unsafe { data.align_to::<u128>() };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// Which chunk of which image a [`ChunkError`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    /// Position in the manifest's chunk list.
    pub index: u64,
    /// Byte offset on the disk.
    pub offset: u64,
    /// The sha256 the signed manifest expects.
    pub sha256: ChunkHash,
}

impl fmt::Display for ChunkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chunk #{} at offset {} (sha256 {})",
            self.index, self.offset, self.sha256
        )
    }
}

/// A chunk whose bytes do not match the signed manifest; nothing of it may reach a disk.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The compressed bytes are not a valid zstd frame (truncated or corrupted file or packet).
    #[error("{chunk}: does not decompress: {reason}")]
    Decompress {
        /// The chunk.
        chunk: ChunkRef,
        /// What zstd said.
        reason: String,
    },
    /// The bytes decompress to a different length than the manifest says.
    #[error("{chunk}: decompresses to {got} bytes, the manifest says {expected}")]
    Length {
        /// The chunk.
        chunk: ChunkRef,
        /// Length from the manifest.
        expected: u64,
        /// Length after decompression.
        got: u64,
    },
    /// The bytes decompress but hash to something else (bit flip, wrong file).
    #[error("{chunk}: content hashes to {got}")]
    Hash {
        /// The chunk.
        chunk: ChunkRef,
        /// sha256 of what was decompressed.
        got: ChunkHash,
    },
}

impl ChunkError {
    /// The chunk this error is about.
    pub fn chunk(&self) -> &ChunkRef {
        match self {
            ChunkError::Decompress { chunk, .. }
            | ChunkError::Length { chunk, .. }
            | ChunkError::Hash { chunk, .. } => chunk,
        }
    }
}

/// Decompresses a stored chunk and checks its length and sha256 against the manifest entry.
/// This is the one gate between a chunk's bytes and a disk.
pub fn decode_verified(
    chunk: ChunkRef,
    len: u64,
    compressed: &[u8],
) -> Result<Vec<u8>, ChunkError> {
    let mut out = Vec::with_capacity(len as usize);
    decode_verified_into(chunk, len, compressed, &mut out)?;
    Ok(out)
}

/// Like [`decode_verified`], into a reused buffer (cleared first).
pub fn decode_verified_into(
    chunk: ChunkRef,
    len: u64,
    compressed: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), ChunkError> {
    out.clear();
    // One byte more than expected, so a frame that decompresses too long is caught, not cut.
    let cap = len as usize + 1;
    let mut decoder = zstd::bulk::Decompressor::new().map_err(|e| ChunkError::Decompress {
        chunk: chunk.clone(),
        reason: e.to_string(),
    })?;
    decoder
        .decompress_to_buffer(compressed, {
            out.reserve(cap);
            out
        })
        .map_err(|e| ChunkError::Decompress {
            chunk: chunk.clone(),
            reason: e.to_string(),
        })?;
    if out.len() as u64 != len {
        return Err(ChunkError::Length {
            chunk,
            expected: len,
            got: out.len() as u64,
        });
    }
    let got = ChunkHash::of(out);
    if got != chunk.sha256 {
        return Err(ChunkError::Hash { chunk, got });
    }
    Ok(())
}

/// A zstd compressor kept per worker thread (single-threaded zstd: the pipeline parallelises by chunk).
pub struct Compressor {
    inner: zstd::bulk::Compressor<'static>,
}

impl Compressor {
    /// A compressor at `level` (1..=22).
    pub fn new(level: i32) -> std::io::Result<Self> {
        Ok(Compressor {
            inner: zstd::bulk::Compressor::new(level)?,
        })
    }

    /// Compresses one chunk into one zstd frame.
    pub fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(data.len()));
        self.inner.compress_to_buffer(data, out)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_parses_units_and_rejects_odd_sizes() {
        assert_eq!("1M".parse::<ChunkSize>().unwrap().get(), 1 << 20);
        assert_eq!("64KiB".parse::<ChunkSize>().unwrap().get(), 65536);
        assert_eq!("16777216".parse::<ChunkSize>().unwrap().get(), 16 << 20);
        assert!("32K".parse::<ChunkSize>().is_err());
        assert!("32M".parse::<ChunkSize>().is_err());
        assert!("100000".parse::<ChunkSize>().is_err());
        assert_eq!(ChunkSize::default().count(3 * (1 << 20) + 1), 4);
    }

    #[test]
    fn zero_detection_sees_a_single_set_byte_anywhere() {
        let mut v = vec![0u8; 4099];
        assert!(is_zero(&v[1..]));
        for i in [0, 1, 17, 2048, 4098] {
            v[i] = 1;
            assert!(!is_zero(&v), "byte {i}");
            v[i] = 0;
        }
    }

    #[test]
    fn decode_rejects_flipped_and_truncated_frames() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let chunk = ChunkRef {
            index: 3,
            offset: 3 << 20,
            sha256: ChunkHash::of(&data),
        };
        let mut c = Compressor::new(3).unwrap();
        let mut z = Vec::new();
        c.compress(&data, &mut z).unwrap();
        assert_eq!(
            decode_verified(chunk.clone(), data.len() as u64, &z).unwrap(),
            data
        );
        let err = decode_verified(chunk.clone(), data.len() as u64, &z[..z.len() / 2]).unwrap_err();
        assert!(
            err.to_string().contains("chunk #3 at offset 3145728"),
            "{err}"
        );
        let err = decode_verified(chunk.clone(), data.len() as u64 - 1, &z).unwrap_err();
        assert!(matches!(
            err,
            ChunkError::Length { .. } | ChunkError::Decompress { .. }
        ));
        let other = ChunkRef {
            sha256: ChunkHash([7; 32]),
            ..chunk
        };
        assert!(matches!(
            decode_verified(other, data.len() as u64, &z),
            Err(ChunkError::Hash { .. })
        ));
    }
}
