//! The manifest: what an image is (disk size, partition table, ordered chunk list, who captured what
//! when), its ed25519 signature and its id (the sha256 of the manifest bytes).
//!
//! On disk and on the wire a manifest travels as a *signed envelope*: three header lines and the exact
//! manifest bytes that were signed:
//!
//! ```text
//! roomcast-manifest 1
//! signer <64 hex: ed25519 public key>
//! signature <128 hex: ed25519 signature over "roomcast image manifest v1\n" + manifest bytes>
//! <blank line>
//! <manifest JSON bytes>
//! ```
//!
//! The bytes are never re-serialised before hashing or verifying, so the id and the signature cover
//! exactly what was written. [`UnverifiedManifest`] is what parsing gives; only
//! [`UnverifiedManifest::verify`] against the trusted signers yields a [`VerifiedManifest`], the type
//! restore and the agent take: an unsigned or forged manifest cannot reach a disk by construction.

use super::chunk::{ChunkHash, ChunkRef, ChunkSize};
use super::keys::{Signer, TrustedSigners, fingerprint};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

/// Version of the manifest format written in the `format` field and the envelope's first line.
pub const FORMAT: u32 = 1;
/// Prefix of the signed message: a signature over a manifest can never be replayed as another message.
const SIGNING_CONTEXT: &[u8] = b"roomcast image manifest v1\n";
const ENVELOPE_MAGIC: &str = "roomcast-manifest 1";

/// Bytes kept from the start of the disk as "the partition table": MBR + GPT header + 128 entries at
/// 512-byte sectors (LBA 0..=33).
pub const PRIMARY_TABLE_LEN: u64 = 34 * 512;
/// Bytes kept from the end of the disk: the backup GPT entries + header (last 33 sectors).
pub const BACKUP_TABLE_LEN: u64 = 33 * 512;
/// The region restore writes last, at each end of the disk: 1 MiB covers the GPT of 512- and 4096-byte
/// sector disks and the usual gap before the first partition (bootloader stages live there too).
pub const PARTITION_REGION: u64 = 1024 * 1024;

/// The sha256 of a manifest's bytes: the image id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId(pub ChunkHash);

impl ImageId {
    /// The id of these manifest bytes.
    pub fn of(manifest_bytes: &[u8]) -> Self {
        ImageId(ChunkHash::of(manifest_bytes))
    }
    /// 64 hex characters.
    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }
    /// First 12 hex characters, what `image list` shows.
    pub fn short(&self) -> String {
        self.0.short()
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageId({})", self.short())
    }
}

impl FromStr for ImageId {
    type Err = super::chunk::InvalidHash;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ImageId(s.parse()?))
    }
}

/// One chunk of the disk, in disk order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    /// Byte offset on the disk (always `index * chunk_size`).
    pub offset: u64,
    /// Length in bytes (`chunk_size`, except the last chunk of a disk whose size is not a multiple).
    pub len: u32,
    /// sha256 of the uncompressed bytes; absent for an all-zero chunk, which is not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<ChunkHash>,
    /// Size of the stored zstd frame (what the multicast sends); absent for a zero chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_len: Option<u32>,
    /// The bytes of this chunk a file system uses, as `[start, end)` offsets inside the chunk, sorted
    /// and disjoint. Absent: every byte is used (whole-disk images, images older than masks, bytes
    /// outside every partition). Empty: no byte is used: the chunk is neither stored, sent nor written.
    /// Otherwise the free bytes were zeroed before hashing and compressing (`sha256` and the stored
    /// frame cover the masked chunk), restore writes only these ranges, and a target chunk is compared
    /// after masking it the same way (see [`ChunkEntry::mask`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<Vec<[u32; 2]>>,
}

impl ChunkEntry {
    /// True for a chunk whose used bytes are all zeros, or that has no used byte (not stored; its
    /// used ranges are zeroed on the target).
    pub fn is_zero(&self) -> bool {
        self.sha256.is_none()
    }

    /// True when no byte of the chunk is used: nothing is stored, sent or written for it.
    pub fn is_unused(&self) -> bool {
        matches!(&self.used, Some(r) if r.is_empty())
    }

    /// True when every byte of the chunk is used (no mask).
    pub fn is_fully_used(&self) -> bool {
        self.used.is_none()
    }

    /// The used ranges inside the chunk (`[0, len)` when the chunk has no mask).
    pub fn used_ranges(&self) -> Vec<std::ops::Range<usize>> {
        match &self.used {
            #[allow(clippy::single_range_in_vec_init)]
            None => vec![0..self.len as usize],
            Some(r) => r.iter().map(|&[s, e]| s as usize..e as usize).collect(),
        }
    }

    /// The used ranges inside the chunk that lie before byte `limit` of the disk (a target smaller
    /// than the image, issue 23): what restore writes there; empty when the chunk starts beyond.
    pub fn used_ranges_below(&self, limit: u64) -> Vec<std::ops::Range<usize>> {
        let cut = limit.saturating_sub(self.offset).min(u64::from(self.len)) as usize;
        self.used_ranges()
            .into_iter()
            .filter(|r| r.start < cut)
            .map(|r| r.start..r.end.min(cut))
            .collect()
    }

    /// True when the chunk ends beyond byte `limit` of the disk.
    pub fn crosses(&self, limit: u64) -> bool {
        self.offset + u64::from(self.len) > limit
    }

    /// Number of used bytes in the chunk.
    pub fn used_bytes(&self) -> u64 {
        self.used_ranges()
            .iter()
            .map(|r| (r.end - r.start) as u64)
            .sum()
    }

    /// Zeroes every free byte of `buf` (the chunk's bytes as read from a disk), so that its sha256
    /// can be compared with `sha256`: what a free byte holds never matters. No-op without a mask.
    pub fn mask(&self, buf: &mut [u8]) {
        let Some(ranges) = &self.used else { return };
        let mut at = 0usize;
        for &[s, e] in ranges {
            let (s, e) = ((s as usize).min(buf.len()), (e as usize).min(buf.len()));
            buf[at.min(s)..s].fill(0);
            at = at.max(e);
        }
        let end = buf.len();
        buf[at.min(end)..].fill(0);
    }
    /// The reference used in error messages, for a data chunk at `index`.
    pub fn chunk_ref(&self, index: u64) -> Option<ChunkRef> {
        self.sha256.map(|sha256| ChunkRef {
            index,
            offset: self.offset,
            sha256,
        })
    }
}

/// The partition table bytes, copied from both ends of the disk at capture (for `image show` and for
/// a technician's eyes; the same bytes are also inside the chunks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionTable {
    /// Hex of the first [`PRIMARY_TABLE_LEN`] bytes (or the whole disk if smaller).
    pub primary: String,
    /// Offset of the backup copy.
    pub backup_offset: u64,
    /// Hex of the last [`BACKUP_TABLE_LEN`] bytes.
    pub backup: String,
}

impl PartitionTable {
    /// Copies the table regions out of the first and last bytes of a disk of `disk_size`.
    pub fn from_regions(disk_size: u64, head: &[u8], tail: &[u8]) -> Self {
        PartitionTable {
            primary: hex::encode(head),
            backup_offset: disk_size - tail.len() as u64,
            backup: hex::encode(tail),
        }
    }

    /// What kind of table the primary bytes hold: "gpt", "mbr" or "none".
    pub fn kind(&self) -> &'static str {
        let bytes = hex::decode(&self.primary).unwrap_or_default();
        if bytes.len() >= 520 && &bytes[512..520] == b"EFI PART" {
            "gpt"
        } else if bytes.len() >= 512 && bytes[510] == 0x55 && bytes[511] == 0xAA {
            "mbr"
        } else {
            "none"
        }
    }
}

/// Who captured an image, when and from what: passed in by the caller (the library reads no clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLabel {
    /// Image name, e.g. "salle-b12".
    pub name: String,
    /// Image version, e.g. "2026.11".
    pub version: String,
    /// The profile it was built from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Who captured it (user@host).
    pub captured_by: String,
    /// When (RFC 3339, UTC).
    pub captured_at: String,
}

/// An image: what restore needs to rebuild the disk byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version, [`FORMAT`].
    pub format: u32,
    /// Name, version, profile, who and when.
    #[serde(flatten)]
    pub label: ImageLabel,
    /// Size of the captured disk in bytes; a target must be at least this big.
    pub disk_size: u64,
    /// Chunk size in bytes.
    pub chunk_size: u32,
    /// zstd level the chunks were compressed with (informative).
    pub zstd_level: i32,
    /// Partition table bytes from both ends of the disk.
    pub partition_table: PartitionTable,
    /// Every chunk of the disk, in order, zero chunks included.
    pub chunks: Vec<ChunkEntry>,
    /// How the disk was captured: the mode, the partition table and each partition's file system
    /// and used bytes. Absent in images captured before file-system-aware capture (read as a
    /// whole-disk capture with no partition recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<ImageLayout>,
}

/// How an image was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureMode {
    /// Only the bytes the file systems use (plus everything outside the partitions); the chunks
    /// carry their used ranges.
    FileSystems,
    /// Every byte of the disk (`--whole-disk`): no chunk carries a mask.
    WholeDisk,
}

impl CaptureMode {
    /// The mode as the manifest and `image show` spell it.
    pub fn as_str(&self) -> &'static str {
        match self {
            CaptureMode::FileSystems => "file-systems",
            CaptureMode::WholeDisk => "whole-disk",
        }
    }
}

pub use roomcast_proto::contract::{DiscardedFile, PartitionRecord};

/// The manifest's record of how the disk was captured (see [`Manifest::layout`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLayout {
    /// File systems or whole disk.
    pub mode: CaptureMode,
    /// The partition table found: `gpt`, `mbr` or `none`.
    pub table: String,
    /// Each partition, in table order.
    pub partitions: Vec<PartitionRecord>,
    /// Bytes captured in all: every partition's used bytes plus the bytes outside the partitions.
    pub used_bytes: u64,
}

impl ImageLayout {
    /// The record of a layout read by `roomcast_layout::read_layout`.
    pub fn from_disk_layout(mode: CaptureMode, l: &roomcast_layout::DiskLayout) -> Self {
        ImageLayout {
            mode,
            table: table_name(l.table).into(),
            partitions: l
                .partitions
                .iter()
                .map(|p| PartitionRecord {
                    number: p.partition.number,
                    start: p.partition.start,
                    len: p.partition.len,
                    kind: p.partition.kind.describe(),
                    fs: p.fs.clone(),
                    used_bytes: p.used.bytes(),
                    whole: p.whole.clone(),
                    discarded: p
                        .discarded
                        .iter()
                        .map(|(name, bytes)| DiscardedFile {
                            name: name.clone(),
                            bytes: *bytes,
                        })
                        .collect(),
                })
                .collect(),
            used_bytes: l.used.bytes(),
        }
    }

    /// Bytes of all discarded files (see [`DiscardedFile`]).
    pub fn discarded_bytes(&self) -> u64 {
        self.partitions
            .iter()
            .flat_map(|p| &p.discarded)
            .map(|d| d.bytes)
            .sum()
    }
}

/// `gpt`, `mbr` or `none`.
pub fn table_name(t: roomcast_layout::TableKind) -> &'static str {
    match t {
        roomcast_layout::TableKind::Gpt => "gpt",
        roomcast_layout::TableKind::Mbr => "mbr",
        roomcast_layout::TableKind::None => "none",
    }
}

/// The used ranges of the chunk `[offset, offset + len)` given the disk's used bytes: `None` when
/// every byte is used (the chunk carries no mask), `Some(vec![])` when none is, otherwise the ranges
/// relative to the chunk's start (what [`ChunkEntry::used`] holds).
pub fn chunk_mask(used: &roomcast_layout::Extents, offset: u64, len: u32) -> Option<Vec<[u32; 2]>> {
    let w = used.window(offset, offset + len as u64);
    if w.len() == 1 && w[0].start == 0 && w[0].end == len as u64 {
        return None;
    }
    Some(w.iter().map(|r| [r.start as u32, r.end as u32]).collect())
}

/// A manifest that cannot be read or is inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The envelope's header lines are missing or malformed.
    #[error("not a roomcast signed manifest: {0}")]
    Envelope(String),
    /// The manifest JSON does not parse.
    #[error("manifest JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The manifest parses but contradicts itself.
    #[error("manifest field {field}: {reason}")]
    Invalid {
        /// The offending field (with chunk index where relevant).
        field: String,
        /// Why.
        reason: String,
    },
    /// The signature does not verify against the signer's key: the manifest or signature was altered.
    #[error(
        "manifest {id}: bad signature from signer {signer}: the manifest was altered or not signed by this key"
    )]
    BadSignature {
        /// Image id of the bytes that were checked.
        id: ImageId,
        /// Fingerprint of the claimed signer.
        signer: String,
    },
    /// Signed by a key that is not in the trusted signers.
    #[error("manifest {id}: signer {signer} is not a trusted signer")]
    UnknownSigner {
        /// Image id.
        id: ImageId,
        /// Fingerprint of the signer.
        signer: String,
    },
}

impl Manifest {
    /// The image as multicast blocks (the contract's `BlockMap`): the deploy server and the agent
    /// both derive it from the same signed manifest.
    pub fn block_map(&self) -> roomcast_proto::contract::BlockMap {
        roomcast_proto::contract::BlockMap::from_chunks(
            self.chunks
                .iter()
                .map(|c| c.sha256.map(|h| (h, c.compressed_len.unwrap_or(0)))),
        )
    }

    /// Chunk size, checked.
    pub fn chunk_size(&self) -> ChunkSize {
        ChunkSize::new(self.chunk_size).expect("validated at parse time")
    }

    /// Checks the invariants restore relies on: chunks cover the disk exactly, in order, aligned.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |field: &str, reason: String| ManifestError::Invalid {
            field: field.to_string(),
            reason,
        };
        if self.format != FORMAT {
            return Err(invalid(
                "format",
                format!("{} (this roomcast reads {FORMAT})", self.format),
            ));
        }
        let cs =
            ChunkSize::new(self.chunk_size).map_err(|e| invalid("chunk_size", e.to_string()))?;
        let count = cs.count(self.disk_size);
        if self.chunks.len() as u64 != count {
            return Err(invalid(
                "chunks",
                format!(
                    "{} entries, a disk of {} bytes in chunks of {} has {count}",
                    self.chunks.len(),
                    self.disk_size,
                    self.chunk_size
                ),
            ));
        }
        for (i, c) in self.chunks.iter().enumerate() {
            let offset = i as u64 * self.chunk_size as u64;
            let len = (self.disk_size - offset).min(self.chunk_size as u64);
            if c.offset != offset || c.len as u64 != len {
                return Err(invalid(
                    &format!("chunks[{i}]"),
                    format!(
                        "offset {} len {}, expected offset {offset} len {len}",
                        c.offset, c.len
                    ),
                ));
            }
            if let Some(ranges) = &c.used {
                let mut at = 0u32;
                for &[s, e] in ranges {
                    if s < at || e <= s || e > c.len {
                        return Err(invalid(
                            &format!("chunks[{i}].used"),
                            format!(
                                "range [{s}, {e}) is empty, out of order or beyond the chunk's {} bytes",
                                c.len
                            ),
                        ));
                    }
                    at = e;
                }
                if ranges.is_empty() && c.sha256.is_some() {
                    return Err(invalid(
                        &format!("chunks[{i}]"),
                        "a chunk with no used byte has no sha256".into(),
                    ));
                }
            }
            if c.sha256.is_some() != c.compressed_len.is_some() {
                return Err(invalid(
                    &format!("chunks[{i}]"),
                    "sha256 and compressed_len must be both present or both absent".into(),
                ));
            }
        }
        if let Some(l) = &self.layout {
            for (k, p) in l.partitions.iter().enumerate() {
                if p.start
                    .checked_add(p.len)
                    .is_none_or(|e| e > self.disk_size)
                    || p.used_bytes > p.len
                {
                    return Err(invalid(
                        &format!("layout.partitions[{k}]"),
                        format!(
                            "partition {}: start {} len {} used {} does not fit a disk of {} bytes",
                            p.number, p.start, p.len, p.used_bytes, self.disk_size
                        ),
                    ));
                }
            }
            if l.mode == CaptureMode::WholeDisk && self.chunks.iter().any(|c| c.used.is_some()) {
                return Err(invalid(
                    "layout.mode",
                    "a whole-disk image has chunks with used ranges".into(),
                ));
            }
        }
        Ok(())
    }

    /// How the disk was captured ([`CaptureMode::WholeDisk`] for images without a layout).
    pub fn mode(&self) -> CaptureMode {
        self.layout
            .as_ref()
            .map_or(CaptureMode::WholeDisk, |l| l.mode)
    }

    /// Bytes a restore writes on a blank disk: every chunk's used bytes (zero chunks included: their
    /// used bytes are zeroed), chunks with no used byte excluded.
    pub fn used_bytes(&self) -> u64 {
        self.chunks.iter().map(ChunkEntry::used_bytes).sum()
    }

    /// Chunks with no used byte (neither stored, sent nor written).
    pub fn unused_chunks(&self) -> usize {
        self.chunks.iter().filter(|c| c.is_unused()).count()
    }

    /// Parses and validates manifest JSON bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes)?;
        m.validate()?;
        Ok(m)
    }

    /// The bytes that get signed and hashed.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }

    /// True when chunk `index` touches the first or last [`PARTITION_REGION`] bytes: restore and the
    /// agent write those chunks after every other, so a disk only carries the new partition table once
    /// all the data it points to is in place.
    pub fn in_partition_region(&self, index: usize) -> bool {
        let c = &self.chunks[index];
        let end = c.offset + c.len as u64;
        c.offset < PARTITION_REGION || end > self.disk_size.saturating_sub(PARTITION_REGION)
    }

    /// Chunk indices in write order: everything else first, the partition-table region last.
    pub fn write_order(&self) -> Vec<usize> {
        let (tables, rest): (Vec<usize>, Vec<usize>) =
            (0..self.chunks.len()).partition(|&i| self.in_partition_region(i));
        rest.into_iter().chain(tables).collect()
    }

    /// Sum of the lengths of chunks that are stored (not zero).
    pub fn data_bytes(&self) -> u64 {
        self.chunks
            .iter()
            .filter(|c| !c.is_zero())
            .map(|c| c.len as u64)
            .sum()
    }

    /// Sum of compressed lengths, counting each distinct chunk once (what the store holds for it).
    pub fn stored_bytes(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        self.chunks
            .iter()
            .filter_map(|c| Some((c.sha256?, c.compressed_len?)))
            .filter(|(h, _)| seen.insert(*h))
            .map(|(_, l)| l as u64)
            .sum()
    }
}

/// A parsed envelope whose signature has not been checked yet.
#[derive(Debug, Clone)]
pub struct UnverifiedManifest {
    manifest: Manifest,
    bytes: Vec<u8>,
    signer: VerifyingKey,
    signature: Signature,
    id: ImageId,
}

impl UnverifiedManifest {
    /// Parses a signed envelope (see the module doc). Checks structure, not trust.
    pub fn from_envelope(envelope: &[u8]) -> Result<Self, ManifestError> {
        let env = |m: &str| ManifestError::Envelope(m.to_string());
        let mut rest = envelope;
        let mut line = || -> Result<&str, ManifestError> {
            let nl = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(|| env("header line without newline"))?;
            let l = std::str::from_utf8(&rest[..nl]).map_err(|_| env("header is not UTF-8"))?;
            rest = &rest[nl + 1..];
            Ok(l)
        };
        if line()? != ENVELOPE_MAGIC {
            return Err(env("first line is not \"roomcast-manifest 1\""));
        }
        let signer_hex = line()?
            .strip_prefix("signer ")
            .ok_or_else(|| env("second line is not \"signer <hex>\""))?
            .to_string();
        let sig_hex = line()?
            .strip_prefix("signature ")
            .ok_or_else(|| env("third line is not \"signature <hex>\""))?
            .to_string();
        if !line()?.is_empty() {
            return Err(env("no blank line after the header"));
        }
        let mut key = [0u8; 32];
        hex::decode_to_slice(&signer_hex, &mut key).map_err(|_| env("signer is not 64 hex"))?;
        let signer =
            VerifyingKey::from_bytes(&key).map_err(|_| env("signer is not an ed25519 key"))?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&sig_hex, &mut sig).map_err(|_| env("signature is not 128 hex"))?;
        let bytes = rest.to_vec();
        let manifest = Manifest::parse(&bytes)?;
        Ok(UnverifiedManifest {
            id: ImageId::of(&bytes),
            manifest,
            bytes,
            signer,
            signature: Signature::from_bytes(&sig),
        })
    }

    /// The image id (sha256 of the manifest bytes).
    pub fn id(&self) -> ImageId {
        self.id
    }

    /// Fingerprint of the key that claims to have signed it.
    pub fn signer_fingerprint(&self) -> String {
        fingerprint(&self.signer)
    }

    /// The manifest, for display only: nothing may be written to a disk from an unverified manifest.
    pub fn manifest_unchecked(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks the signer is trusted and the signature covers these exact bytes.
    pub fn verify(self, trusted: &TrustedSigners) -> Result<VerifiedManifest, ManifestError> {
        let signer = fingerprint(&self.signer);
        if !trusted.contains(&self.signer) {
            return Err(ManifestError::UnknownSigner {
                id: self.id,
                signer,
            });
        }
        let msg = [SIGNING_CONTEXT, &self.bytes].concat();
        self.signer
            .verify_strict(&msg, &self.signature)
            .map_err(|_| ManifestError::BadSignature {
                id: self.id,
                signer,
            })?;
        Ok(VerifiedManifest(self))
    }
}

/// A manifest whose signature verified against a trusted signer. Derefs to [`Manifest`].
#[derive(Debug, Clone)]
pub struct VerifiedManifest(UnverifiedManifest);

impl VerifiedManifest {
    /// The image id.
    pub fn id(&self) -> ImageId {
        self.0.id
    }
    /// Fingerprint of the (trusted) signer.
    pub fn signer_fingerprint(&self) -> String {
        self.0.signer_fingerprint()
    }
    /// Decompresses the compressed bytes of chunk `index` (as stored, or as received over multicast)
    /// and checks them against this signed manifest: the bytes returned may go to the disk at
    /// `self.chunks[index].offset`. Zero chunks have no bytes to check: use [`ChunkEntry::is_zero`].
    pub fn decode_chunk(
        &self,
        index: usize,
        compressed: &[u8],
    ) -> Result<Vec<u8>, super::chunk::ChunkError> {
        let e = &self.chunks[index];
        let r = e
            .chunk_ref(index as u64)
            .expect("decode_chunk is for data chunks, not zero chunks");
        super::chunk::decode_verified(r, e.len as u64, compressed)
    }

    /// The signed envelope bytes, to store or send as they are.
    pub fn envelope(&self) -> Vec<u8> {
        envelope_bytes(&self.0.signer, &self.0.signature, &self.0.bytes)
    }
}

impl Deref for VerifiedManifest {
    type Target = Manifest;
    fn deref(&self) -> &Manifest {
        &self.0.manifest
    }
}

fn envelope_bytes(signer: &VerifyingKey, sig: &Signature, bytes: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{ENVELOPE_MAGIC}\nsigner {}\nsignature {}\n\n",
        hex::encode(signer.as_bytes()),
        hex::encode(sig.to_bytes())
    )
    .into_bytes();
    out.extend_from_slice(bytes);
    out
}

/// Signs a manifest: returns its id and the envelope bytes to write.
pub fn sign(manifest: &Manifest, signer: &Signer) -> (ImageId, Vec<u8>) {
    let bytes = manifest.to_bytes();
    let msg = [SIGNING_CONTEXT, &bytes].concat();
    let sig = signer.sign(&msg);
    (
        ImageId::of(&bytes),
        envelope_bytes(&signer.verifying_key(), &sig, &bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let cs = 65536u32;
        let disk_size = 3 * cs as u64 + 100;
        Manifest {
            format: FORMAT,
            label: ImageLabel {
                name: "b12".into(),
                version: "1".into(),
                profile: None,
                captured_by: "t@h".into(),
                captured_at: "2026-11-28T10:00:00Z".into(),
            },
            disk_size,
            chunk_size: cs,
            zstd_level: 3,
            partition_table: PartitionTable::from_regions(disk_size, &[0; 4], &[0; 4]),
            chunks: (0..4)
                .map(|i| ChunkEntry {
                    offset: i * cs as u64,
                    len: if i == 3 { 100 } else { cs },
                    sha256: (i % 2 == 0).then_some(ChunkHash([i as u8; 32])),
                    compressed_len: (i % 2 == 0).then_some(10),
                    used: None,
                })
                .collect(),
            layout: None,
        }
    }

    #[test]
    fn signed_envelope_round_trips_and_rejects_tampering_and_strangers() {
        let signer = Signer::generate();
        let trusted = TrustedSigners::from_keys(vec![signer.verifying_key()]);
        let (id, env) = sign(&sample(), &signer);
        let v = UnverifiedManifest::from_envelope(&env)
            .unwrap()
            .verify(&trusted)
            .unwrap();
        assert_eq!(v.id(), id);
        assert_eq!(*v, sample());
        assert_eq!(v.envelope(), env);

        // Same structure, one name byte changed: still parses, signature fails.
        let s = String::from_utf8(env.clone())
            .unwrap()
            .replace("b12", "b13");
        let err = UnverifiedManifest::from_envelope(s.as_bytes())
            .unwrap()
            .verify(&trusted)
            .unwrap_err();
        assert!(matches!(err, ManifestError::BadSignature { .. }), "{err}");

        let stranger = TrustedSigners::from_keys(vec![Signer::generate().verifying_key()]);
        let err = UnverifiedManifest::from_envelope(&env)
            .unwrap()
            .verify(&stranger)
            .unwrap_err();
        assert!(matches!(err, ManifestError::UnknownSigner { .. }), "{err}");
    }

    #[test]
    fn validation_names_the_bad_chunk() {
        let mut m = sample();
        m.chunks[2].offset += 1;
        let err = m.validate().unwrap_err().to_string();
        assert!(err.contains("chunks[2]"), "{err}");
        let mut m = sample();
        m.chunks.pop();
        assert!(m.validate().is_err());
    }

    #[test]
    fn a_mask_zeroes_free_bytes_only_and_bad_ranges_are_named() {
        let mut e = ChunkEntry {
            offset: 0,
            len: 8,
            sha256: None,
            compressed_len: None,
            used: Some(vec![[1, 3], [5, 6]]),
        };
        let mut buf = [9u8; 8];
        e.mask(&mut buf);
        assert_eq!(buf, [0, 9, 9, 0, 0, 9, 0, 0]);
        assert_eq!(e.used_bytes(), 3);
        assert!(!e.is_unused());
        e.used = Some(vec![]);
        let mut buf = [9u8; 8];
        e.mask(&mut buf);
        assert_eq!(buf, [0; 8]);
        assert!(e.is_unused());
        e.used = None;
        let mut buf = [9u8; 8];
        e.mask(&mut buf);
        assert_eq!(buf, [9; 8]);

        let mut m = sample();
        m.chunks[1].used = Some(vec![[4, 2]]);
        let err = m.validate().unwrap_err().to_string();
        assert!(err.contains("chunks[1].used"), "{err}");
    }

    #[test]
    fn partition_region_chunks_come_last() {
        let mut m = sample();
        m.disk_size = 64 << 20;
        m.chunk_size = 1 << 20;
        m.chunks = (0..64)
            .map(|i| ChunkEntry {
                offset: i << 20,
                len: 1 << 20,
                sha256: None,
                compressed_len: None,
                used: None,
            })
            .collect();
        let order = m.write_order();
        assert_eq!(order.len(), 64);
        assert_eq!(&order[62..], &[0, 63]);
        assert_eq!(order[0], 1);
    }
}
