//! One image as one self-contained file, for archiving a master outside the store
//! (`roomcast image export ID > file`, `roomcast image import file`).
//!
//! Format (docs/IMAGE-STORE.md): the 8 bytes `RCARCH01`; the signed manifest envelope exactly as the
//! store keeps it, as a u32 little-endian length then its bytes; then each distinct data chunk of
//! the manifest once, in disk order: its sha256 (32 bytes), the stored zstd frame's length (u32
//! little-endian) and the frame. Nothing else: the signature in the envelope covers the manifest,
//! and the manifest names every chunk's sha256, so the archive needs no signature of its own.
//!
//! [`import`] reads the file twice: a first pass checks everything (the envelope's signature against
//! the store's trusted signers, every chunk decompressed and hashed against the manifest, nothing
//! missing, nothing extra, bounded lengths) and writes nothing; only then does the second pass add
//! the chunks and, last, the manifest. A tampered or truncated archive leaves the store untouched.

use crate::chunk::{self, ChunkError};
use crate::manifest::{ImageId, ManifestError, UnverifiedManifest};
use crate::{Store, StoreError};
use roomcast_proto::hash::ChunkHash;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// First bytes of an archive.
pub const MAGIC: &[u8; 8] = b"RCARCH01";
/// Largest envelope accepted (a 2 TiB disk in 1 MiB chunks makes a manifest of about 300 MiB of
/// JSON at worst; masters are far smaller).
const MAX_ENVELOPE: u32 = 512 << 20;

/// An archive that cannot be imported (or an image that cannot be exported).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading the archive or the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the archive file.
    #[error("{path}: {source}")]
    Io {
        /// The archive.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not an archive, cut short, or a length out of bounds.
    #[error("{path}: {what}")]
    Format {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The manifest's signature does not verify against the store's trusted signers.
    #[error("{path}: refused: {source}")]
    Manifest {
        /// The archive.
        path: PathBuf,
        /// Why.
        source: ManifestError,
    },
    /// A chunk's bytes do not match the signed manifest.
    #[error("{path}: refused: {source}")]
    Chunk {
        /// The archive.
        path: PathBuf,
        /// Which chunk and how.
        source: ChunkError,
    },
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// Distinct chunks written.
    pub chunks: usize,
    /// Bytes written in all.
    pub bytes: u64,
}

/// The distinct data chunks of a manifest, in disk order, with their index and length.
fn distinct_chunks(m: &crate::manifest::Manifest) -> Vec<(ChunkHash, usize, u32)> {
    let mut seen = BTreeSet::new();
    m.chunks
        .iter()
        .enumerate()
        .filter_map(|(i, e)| Some((e.sha256?, i, e.len)))
        .filter(|(h, _, _)| seen.insert(*h))
        .collect()
}

/// Writes image `id` (verified against the store's trusted signers first) as one archive.
pub fn export(store: &Store, id: &ImageId, out: &mut dyn Write) -> Result<Exported, ArchiveError> {
    let _lock = store.lock_shared()?;
    let verified = store.open_verified(id)?;
    let path = store.manifest_path(id);
    let envelope = std::fs::read(&path).map_err(|source| ArchiveError::Io {
        path: path.clone(),
        source,
    })?;
    let w = |r: std::io::Result<()>| {
        r.map_err(|source| ArchiveError::Io {
            path: PathBuf::from("<output>"),
            source,
        })
    };
    let len = u32::try_from(envelope.len()).map_err(|_| ArchiveError::Format {
        path: path.clone(),
        what: "manifest too large".into(),
    })?;
    w(out.write_all(MAGIC))?;
    w(out.write_all(&len.to_le_bytes()))?;
    w(out.write_all(&envelope))?;
    let mut bytes = (MAGIC.len() + 4 + envelope.len()) as u64;
    let chunks = distinct_chunks(&verified);
    for (hash, _, _) in &chunks {
        let z = store.read_chunk_compressed(hash)?;
        w(out.write_all(&hash.0))?;
        w(out.write_all(&(z.len() as u32).to_le_bytes()))?;
        w(out.write_all(&z))?;
        bytes += 36 + z.len() as u64;
    }
    w(out.flush())?;
    Ok(Exported {
        chunks: chunks.len(),
        bytes,
    })
}

/// Reads the archive at `path`, checks all of it, then adds its image to the store. Returns the
/// image id (the same as in the store it was exported from).
pub fn import(store: &Store, path: &Path) -> Result<ImageId, ArchiveError> {
    let _lock = store.lock_shared()?;
    let trusted = store.trusted()?;
    // Pass 1: check everything, write nothing.
    let (id, envelope) = pass(store, path, &trusted, false)?;
    // Pass 2: the chunks, then the manifest that makes the image visible.
    pass(store, path, &trusted, true)?;
    store.commit_manifest(&id, &envelope)?;
    Ok(id)
}

fn pass(
    store: &Store,
    path: &Path,
    trusted: &crate::keys::TrustedSigners,
    write: bool,
) -> Result<(ImageId, Vec<u8>), ArchiveError> {
    let format = |what: &str| ArchiveError::Format {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut read = |buf: &mut [u8], what: &str| -> Result<bool, ArchiveError> {
        let mut got = 0;
        while got < buf.len() {
            match r.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(format(&format!("cut short in {what}"))),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ArchiveError::Io {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        }
        Ok(true)
    };
    let mut magic = [0u8; 8];
    if !read(&mut magic, "the header")? || &magic != MAGIC {
        return Err(format("not a roomcast image archive (no RCARCH01 header)"));
    }
    let mut len = [0u8; 4];
    if !read(&mut len, "the manifest length")? {
        return Err(format("cut short before the manifest"));
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_ENVELOPE {
        return Err(format(&format!("manifest length {len} out of bounds")));
    }
    let mut envelope = vec![0u8; len as usize];
    if !read(&mut envelope, "the manifest")? {
        return Err(format("cut short before the manifest"));
    }
    let manifest_err = |source| ArchiveError::Manifest {
        path: path.to_path_buf(),
        source,
    };
    let verified = UnverifiedManifest::from_envelope(&envelope)
        .map_err(manifest_err)?
        .verify(trusted)
        .map_err(manifest_err)?;
    let id = verified.id();
    let mut wanted: BTreeMap<ChunkHash, (usize, u32)> = distinct_chunks(&verified)
        .into_iter()
        .map(|(h, i, l)| (h, (i, l)))
        .collect();
    // A zstd frame is never much larger than its chunk; anything beyond is not ours.
    let max_frame = verified.chunk_size().get() as usize + (1 << 20);
    let mut buf = Vec::new();
    loop {
        let mut hash = [0u8; 32];
        if !read(&mut hash, "a chunk's hash")? {
            break;
        }
        let hash = ChunkHash(hash);
        let Some((index, chunk_len)) = wanted.remove(&hash) else {
            return Err(format(&format!(
                "chunk {hash} is not in the signed manifest, or comes twice"
            )));
        };
        let mut flen = [0u8; 4];
        if !read(&mut flen, "a chunk's length")? {
            return Err(format("cut short in a chunk's length"));
        }
        let flen = u32::from_le_bytes(flen) as usize;
        if flen > max_frame {
            return Err(format(&format!(
                "chunk {hash}: length {flen} out of bounds"
            )));
        }
        let mut z = vec![0u8; flen];
        if !read(&mut z, "a chunk")? {
            return Err(format("cut short in a chunk"));
        }
        let r = verified.chunks[index]
            .chunk_ref(index as u64)
            .expect("a data chunk");
        chunk::decode_verified_into(r, chunk_len as u64, &z, &mut buf).map_err(|source| {
            ArchiveError::Chunk {
                path: path.to_path_buf(),
                source,
            }
        })?;
        if write {
            store.insert_chunk(&hash, &z)?;
        }
    }
    if let Some((hash, _)) = wanted.first_key_value() {
        return Err(format(&format!(
            "{} chunk(s) of the manifest missing, the first {hash}",
            wanted.len()
        )));
    }
    Ok((id, envelope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{CaptureOptions, capture};
    use crate::keys::Signer;
    use crate::manifest::ImageLabel;

    #[test]
    fn roundtrip_keeps_the_id_and_tampering_is_refused_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let (key, public, _) = crate::keys::generate_files(&dir.path().join("keys")).unwrap();
        let signer = Signer::load(&key).unwrap();
        let src = Store::open_or_create(&dir.path().join("src")).unwrap();
        src.trust(&public).unwrap();
        let disk = dir.path().join("disk.img");
        let mut bytes = vec![0u8; 3 << 20];
        for (i, b) in bytes.iter_mut().enumerate().take(2 << 20) {
            *b = (i * 7 % 251) as u8;
        }
        std::fs::write(&disk, &bytes).unwrap();
        let label = ImageLabel {
            name: "archived".into(),
            version: "1".into(),
            profile: None,
            captured_by: "test".into(),
            captured_at: "2026-12-07T00:00:00Z".into(),
        };
        let id = capture(
            &src,
            &disk,
            label,
            &signer,
            &CaptureOptions::default(),
            &|_| {},
        )
        .unwrap()
        .id;
        let mut out = Vec::new();
        let figures = export(&src, &id, &mut out).unwrap();
        assert_eq!(figures.bytes, out.len() as u64);
        let archive = dir.path().join("image.rcarch");
        std::fs::write(&archive, &out).unwrap();

        let dst = Store::open_or_create(&dir.path().join("dst")).unwrap();
        let chunk_files = |s: &Store| walk(&s.root().join("chunks"));
        fn walk(d: &Path) -> usize {
            std::fs::read_dir(d)
                .map(|es| {
                    es.flatten()
                        .map(|e| {
                            if e.path().is_dir() {
                                walk(&e.path())
                            } else {
                                1
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        // Untrusted signer: refused, nothing written.
        let err = import(&dst, &archive).unwrap_err().to_string();
        assert!(err.contains("refused"), "{err}");
        assert!(dst.image_ids().unwrap().is_empty());
        dst.trust(&public).unwrap();

        // One flipped byte in the last chunk's frame: refused, and no chunk entered the store.
        let mut bad = out.clone();
        let at = bad.len() - 10;
        bad[at] ^= 0x40;
        let tampered = dir.path().join("tampered.rcarch");
        std::fs::write(&tampered, &bad).unwrap();
        let err = import(&dst, &tampered).unwrap_err().to_string();
        assert!(err.contains("refused"), "{err}");
        assert!(dst.image_ids().unwrap().is_empty());
        assert_eq!(chunk_files(&dst), 0);
        // Cut short: refused too.
        std::fs::write(&tampered, &out[..out.len() - 1]).unwrap();
        let err = import(&dst, &tampered).unwrap_err().to_string();
        assert!(err.contains("cut short"), "{err}");
        assert_eq!(chunk_files(&dst), 0);

        assert_eq!(import(&dst, &archive).unwrap(), id);
        assert_eq!(dst.image_ids().unwrap(), vec![id]);
        dst.open_verified(&id).unwrap();
        assert_eq!(chunk_files(&dst), figures.chunks);
    }
}
