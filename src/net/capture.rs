//! Capture over the network (step f): the agent on the master PC reads its disk and uploads it to the
//! deploy server, which checks every chunk before it enters the store and signs the manifest itself.
//!
//! Endpoints (all behind the live one-time token of the campaign's capture machine):
//! - `GET /capture/plan`: chunk size and zstd level, so the agent cuts the disk as the store does.
//! - `HEAD /capture/chunks/<sha256>`: 200 when the store already holds the chunk (a master restored
//!   from the base image at step b shares most of its chunks with it: they are not sent again), 404
//!   when it must be uploaded.
//! - `PUT /capture/chunks/<sha256>?index=I&len=L`: one zstd frame. The server decompresses it (never
//!   beyond `len` bytes), checks its sha256 against the name, and only then writes it into the store
//!   (synced temporary file, rename). A chunk that does not match is refused (422) with a message
//!   naming its index, offset and sha256; nothing of it is kept.
//! - `POST /capture/finish` (JSON [`CaptureFinish`]): the chunk list. The server checks that every
//!   named chunk is in the store, builds the manifest (offsets, lengths, compressed sizes and the
//!   partition-table copies come from the store, not from the agent), signs it with its own key and
//!   commits it. The answer is the image id; the server keeps it as the session's result, so what
//!   the campaign journals is what the server signed, whatever the agent reports afterwards.
//!
//! The agent never holds a signing key: trust in an image comes from the server having verified each
//! chunk it was given.

use roomcast_proto::contract::{CaptureChunk, CaptureFinish, CapturePlan};
use roomcast_proto::mac::Mac;
use roomcast_store::chunk::{ChunkError, ChunkHash, ChunkRef, ChunkSize, decode_verified};
use roomcast_store::keys::Signer;
use roomcast_store::manifest::{
    BACKUP_TABLE_LEN, CaptureMode, ChunkEntry, FORMAT, ImageId, ImageLabel, ImageLayout, Manifest,
    ManifestError, PRIMARY_TABLE_LEN, PartitionTable, sign,
};
use roomcast_store::{Store, StoreError, StoreLock};
use std::sync::{Arc, Mutex};

/// What a capture session accepts, and from whom.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// The only machine allowed to upload (the campaign's master).
    pub machine: Mac,
    /// Where the chunks and the manifest go.
    pub store: Store,
    /// The server's signing key (must be trusted by the store).
    pub signer: Arc<Signer>,
    /// Name, version, profile, who and when, for the manifest.
    pub label: ImageLabel,
    /// Chunk size the agent must cut the disk into.
    pub chunk_size: ChunkSize,
    /// zstd level the agent compresses with.
    pub level: i32,
    /// Ask the agent to take every byte of the disk (no file-system map, no mask).
    pub whole_disk: bool,
}

/// Why an upload or the finish was refused; each names the chunk or field.
#[derive(Debug, thiserror::Error)]
pub enum CaptureRefused {
    /// The uploaded bytes are not the chunk they claim to be.
    #[error("upload refused: {0}")]
    Chunk(#[from] ChunkError),
    /// A chunk length outside 1..=chunk size.
    #[error("upload refused: chunk #{index}: length {len} is not within 1..={max}")]
    Length {
        /// Chunk index.
        index: u64,
        /// Length claimed.
        len: u64,
        /// The session's chunk size.
        max: u32,
    },
    /// The finish names a chunk the store does not hold.
    #[error("capture refused: {chunk} was never uploaded")]
    Missing {
        /// The chunk.
        chunk: ChunkRef,
    },
    /// The chunk list does not fit the disk size or the plan.
    #[error("capture refused: {0}")]
    Layout(String),
    /// This session already produced an image.
    #[error("capture refused: this session already captured image {0}")]
    AlreadyDone(ImageId),
    /// The built manifest is inconsistent (a bug, not the agent's fault).
    #[error("capture refused: manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// The store failed (disk full...).
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl CaptureRefused {
    /// Whether the server, not the agent, is at fault (HTTP 500 rather than 422).
    pub fn is_server_side(&self) -> bool {
        matches!(self, CaptureRefused::Store(_) | CaptureRefused::Manifest(_))
    }
}

/// The server side of one capture: checks uploads, then builds and signs the manifest.
#[derive(Debug)]
pub struct CaptureSink {
    config: CaptureConfig,
    result: Mutex<Option<(Mac, ImageId)>>,
    // Held for the whole session: a gc must not delete chunks uploaded before the manifest names them.
    _lock: StoreLock,
}

impl CaptureSink {
    /// Opens a session on `config.store`; refuses a signing key the store does not trust (its
    /// images could never be deployed).
    pub fn new(config: CaptureConfig) -> Result<CaptureSink, StoreError> {
        let key = config.signer.verifying_key();
        if !config.store.trusted()?.contains(&key) {
            return Err(StoreError::Io {
                path: config.store.trusted_dir(),
                op: format!(
                    "capture: the signing key {} is not trusted by this store",
                    roomcast_store::keys::fingerprint(&key)
                ),
                source: std::io::Error::other("untrusted signing key"),
            });
        }
        let lock = config.store.lock_shared()?;
        Ok(CaptureSink {
            config,
            result: Mutex::new(None),
            _lock: lock,
        })
    }

    /// The machine allowed to upload.
    pub fn machine(&self) -> Mac {
        self.config.machine
    }

    /// The plan handed to the agent.
    pub fn plan(&self) -> CapturePlan {
        CapturePlan {
            chunk_size: self.config.chunk_size.get(),
            level: self.config.level,
            whole_disk: self.config.whole_disk,
        }
    }

    /// Whether the store already holds `hash`.
    pub fn has(&self, hash: &ChunkHash) -> bool {
        self.config.store.chunk_len(hash).is_some()
    }

    /// The largest frame accepted for one chunk: zstd's bound for an incompressible chunk.
    pub fn max_upload(&self) -> usize {
        zstd::zstd_safe::compress_bound(self.config.chunk_size.get() as usize)
    }

    /// Checks one uploaded frame against its name and stores it. Returns whether it was new.
    pub fn accept_chunk(
        &self,
        index: u64,
        len: u64,
        hash: ChunkHash,
        frame: &[u8],
    ) -> Result<bool, CaptureRefused> {
        let cs = self.config.chunk_size.get();
        if len == 0 || len > u64::from(cs) {
            return Err(CaptureRefused::Length {
                index,
                len,
                max: cs,
            });
        }
        let chunk = ChunkRef {
            index,
            offset: index.saturating_mul(u64::from(cs)),
            sha256: hash,
        };
        decode_verified(chunk, len, frame)?;
        Ok(self.config.store.insert_chunk(&hash, frame)?)
    }

    /// Builds, signs and commits the manifest of the uploaded disk; the session's result.
    pub fn finish(&self, f: &CaptureFinish) -> Result<ImageId, CaptureRefused> {
        let mut result = self.result.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, id)) = *result {
            return Err(CaptureRefused::AlreadyDone(id));
        }
        let cs = self.config.chunk_size;
        if f.chunk_size != cs.get() {
            return Err(CaptureRefused::Layout(format!(
                "chunk_size {} differs from the plan's {}",
                f.chunk_size,
                cs.get()
            )));
        }
        if f.disk_size == 0 {
            return Err(CaptureRefused::Layout("disk_size is 0".into()));
        }
        let count = cs.count(f.disk_size);
        if f.chunks.len() as u64 != count {
            return Err(CaptureRefused::Layout(format!(
                "{} chunks listed, a disk of {} bytes in chunks of {} has {count}",
                f.chunks.len(),
                f.disk_size,
                cs.get()
            )));
        }
        if self.config.whole_disk && !f.whole_disk {
            return Err(CaptureRefused::Layout(
                "the plan asked for the whole disk, the agent sent a file-system-aware capture"
                    .into(),
            ));
        }
        let store = &self.config.store;
        let mut entries = Vec::with_capacity(f.chunks.len());
        for (i, c) in f.chunks.iter().enumerate() {
            let offset = i as u64 * u64::from(cs.get());
            let len = (f.disk_size - offset).min(u64::from(cs.get())) as u32;
            check_mask(i, len, c, f.whole_disk)?;
            let compressed_len = match &c.sha256 {
                None => None,
                Some(h) => match store.chunk_len(h) {
                    Some(n) => Some(n as u32),
                    None => {
                        return Err(CaptureRefused::Missing {
                            chunk: ChunkRef {
                                index: i as u64,
                                offset,
                                sha256: *h,
                            },
                        });
                    }
                },
            };
            entries.push(ChunkEntry {
                offset,
                len,
                sha256: c.sha256,
                compressed_len,
                used: c.used.clone(),
            });
        }
        let layout = image_layout(f, &entries)?;
        check_free_bytes_are_zero(store, &entries)?;
        let head_len = PRIMARY_TABLE_LEN.min(f.disk_size);
        let tail_len = BACKUP_TABLE_LEN.min(f.disk_size);
        let head = read_range(store, &entries, 0, head_len)?;
        let tail = read_range(store, &entries, f.disk_size - tail_len, tail_len)?;
        let manifest = Manifest {
            format: FORMAT,
            label: self.config.label.clone(),
            disk_size: f.disk_size,
            chunk_size: cs.get(),
            zstd_level: self.config.level,
            partition_table: PartitionTable::from_regions(f.disk_size, &head, &tail),
            chunks: entries,
            layout: Some(layout),
        };
        manifest.validate()?;
        let (id, envelope) = sign(&manifest, &self.config.signer);
        store.commit_manifest(&id, &envelope)?;
        *result = Some((self.config.machine, id));
        Ok(id)
    }

    /// The image this session captured, once finished.
    pub fn captured(&self) -> Option<ImageId> {
        self.result
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|(_, id)| id)
    }
}

/// Checks one chunk's used ranges as the agent sent them: sorted, disjoint, non-empty, inside the
/// chunk; none for a whole-disk capture; a chunk with no used byte names no sha256.
fn check_mask(
    index: usize,
    len: u32,
    c: &CaptureChunk,
    whole_disk: bool,
) -> Result<(), CaptureRefused> {
    let bad =
        |reason: String| CaptureRefused::Layout(format!("chunk #{index}: used ranges {reason}"));
    let Some(ranges) = &c.used else {
        return Ok(());
    };
    if whole_disk {
        return Err(bad("in a whole-disk capture".into()));
    }
    if ranges.is_empty() && c.sha256.is_some() {
        return Err(bad("are empty but the chunk names a sha256".into()));
    }
    let mut at = 0u32;
    for (k, &[s, e]) in ranges.iter().enumerate() {
        if e <= s || e > len || (k > 0 && s <= at) {
            return Err(bad(format!(
                "[{s}, {e}) is empty, out of order, touching the previous one or beyond the chunk's {len} bytes"
            )));
        }
        at = e;
    }
    Ok(())
}

/// The manifest's layout record from what the agent sent, checked: a known table kind; partitions
/// inside the disk, not overlapping; in a whole-disk capture each taken whole; otherwise each
/// partition's used bytes are exactly what the chunks' masks keep inside it (so `image show`'s
/// figures are the masks', whatever the agent claims). The total is the masks' (the disk size for
/// a whole-disk capture), as a local capture records it.
fn image_layout(f: &CaptureFinish, entries: &[ChunkEntry]) -> Result<ImageLayout, CaptureRefused> {
    let bad = |reason: String| CaptureRefused::Layout(format!("partitions: {reason}"));
    if !matches!(f.table.as_str(), "gpt" | "mbr" | "none") {
        return Err(bad(format!("table {:?} is not gpt, mbr or none", f.table)));
    }
    let mut spans: Vec<(u64, u64, u32)> = Vec::new();
    let mut records = Vec::with_capacity(f.partitions.len());
    for p in &f.partitions {
        let end = p.start.checked_add(p.len).filter(|&e| e <= f.disk_size);
        let Some(end) = end else {
            return Err(bad(format!(
                "partition {} ends beyond the disk's {} bytes",
                p.number, f.disk_size
            )));
        };
        let counted = if f.whole_disk {
            p.len
        } else {
            used_inside(entries, u64::from(f.chunk_size), p.start, end)
        };
        if p.used_bytes != counted {
            return Err(bad(format!(
                "partition {} says {} bytes used, its chunks' used ranges hold {counted}",
                p.number, p.used_bytes
            )));
        }
        spans.push((p.start, end, p.number));
        records.push(p.clone());
    }
    spans.sort();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(bad(format!("partitions {} and {} overlap", w[0].2, w[1].2)));
        }
    }
    Ok(ImageLayout {
        mode: if f.whole_disk {
            CaptureMode::WholeDisk
        } else {
            CaptureMode::FileSystems
        },
        table: f.table.clone(),
        partitions: records,
        used_bytes: if f.whole_disk {
            f.disk_size
        } else {
            entries.iter().map(ChunkEntry::used_bytes).sum()
        },
    })
}

/// Used bytes of the chunks `entries` inside `[start, end)` of the disk.
fn used_inside(entries: &[ChunkEntry], cs: u64, start: u64, end: u64) -> u64 {
    let from = (start / cs) as usize;
    let to = (end.div_ceil(cs) as usize).min(entries.len());
    entries[from.min(to)..to]
        .iter()
        .flat_map(|e| {
            e.used_ranges()
                .into_iter()
                .map(move |r| (e.offset + r.start as u64, e.offset + r.end as u64))
        })
        .map(|(a, b)| b.min(end).saturating_sub(a.max(start)))
        .sum()
}

/// A masked data chunk's sha256 must cover the chunk with its free bytes zeroed: each distinct
/// (chunk, mask) pair is decoded from the store (already checked against its name at upload) and
/// its free bytes must all be zero, so no deleted data enters an image under a mask that hides it.
/// Runs on every core.
fn check_free_bytes_are_zero(store: &Store, entries: &[ChunkEntry]) -> Result<(), CaptureRefused> {
    let mut seen = std::collections::HashSet::new();
    let todo: Vec<usize> = (0..entries.len())
        .filter(|&i| {
            let e = &entries[i];
            e.sha256.is_some() && e.used.is_some() && seen.insert((e.sha256, e.used.clone()))
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let first: Mutex<Option<(usize, CaptureRefused)>> = Mutex::new(None);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers.min(todo.len()).max(1) {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&i) = todo.get(k) else { return };
                    if let Err(e) = free_bytes_are_zero(store, i, &entries[i]) {
                        let mut f = first.lock().unwrap_or_else(|p| p.into_inner());
                        if f.as_ref().is_none_or(|(j, _)| i < *j) {
                            *f = Some((i, e));
                        }
                        next.store(todo.len(), std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
    });
    match first.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

fn free_bytes_are_zero(store: &Store, i: usize, e: &ChunkEntry) -> Result<(), CaptureRefused> {
    let r = e.chunk_ref(i as u64).expect("a data chunk");
    let p = store.chunk_path(&r.sha256);
    let z = std::fs::read(&p).map_err(|source| StoreError::Io {
        path: p.clone(),
        op: format!("reading {r}"),
        source,
    })?;
    let data = decode_verified(r.clone(), u64::from(e.len), &z)
        .map_err(|source| StoreError::BadChunk { path: p, source })?;
    let mut at = 0usize;
    let used = e.used_ranges();
    let free = used
        .iter()
        .map(|u| {
            let f = at..u.start;
            at = u.end;
            f
        })
        .collect::<Vec<_>>()
        .into_iter()
        .chain(std::iter::once(at..data.len()));
    for f in free {
        if let Some(k) = data[f.clone()].iter().position(|&b| b != 0) {
            return Err(CaptureRefused::Layout(format!(
                "{r}: byte {} is outside the chunk's used ranges but not zero: a masked chunk's \
                 sha256 must cover the chunk with its free bytes zeroed",
                f.start + k
            )));
        }
    }
    Ok(())
}

/// Bytes `offset..offset+len` of the disk described by `entries`, from the store's verified chunks.
fn read_range(
    store: &Store,
    entries: &[ChunkEntry],
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, CaptureRefused> {
    let mut out = Vec::with_capacity(len as usize);
    let end = offset + len;
    for (i, e) in entries.iter().enumerate() {
        let (start, stop) = (e.offset, e.offset + u64::from(e.len));
        if stop <= offset || start >= end {
            continue;
        }
        let from = offset.max(start) - start;
        let to = end.min(stop) - start;
        match e.chunk_ref(i as u64) {
            None => out.extend(std::iter::repeat_n(0u8, (to - from) as usize)),
            Some(r) => {
                let p = store.chunk_path(&r.sha256);
                let z = std::fs::read(&p).map_err(|source| StoreError::Io {
                    path: p.clone(),
                    op: format!("reading {r}"),
                    source,
                })?;
                let data = decode_verified(r, u64::from(e.len), &z)
                    .map_err(|source| StoreError::BadChunk { path: p, source })?;
                out.extend_from_slice(&data[from as usize..to as usize]);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_proto::contract::PartitionRecord;
    use roomcast_store::chunk::Compressor;
    use roomcast_store::keys;

    const CS: u32 = 64 * 1024;

    fn sink(dir: &std::path::Path) -> CaptureSink {
        sink_with(dir, false)
    }

    fn sink_with(dir: &std::path::Path, whole_disk: bool) -> CaptureSink {
        let (key, public, _) = keys::generate_files(&dir.join("keys")).unwrap();
        let store = Store::open_or_create(&dir.join("store")).unwrap();
        store.trust(&public).unwrap();
        CaptureSink::new(CaptureConfig {
            machine: Mac([2, 0, 0, 0, 0, 1]),
            store,
            signer: Arc::new(Signer::load(&key).unwrap()),
            label: ImageLabel {
                name: "b204".into(),
                version: "1".into(),
                profile: Some("lycee".into()),
                captured_by: "roomcast@srv".into(),
                captured_at: "2026-11-28T17:00:00Z".into(),
            },
            chunk_size: ChunkSize::new(CS).unwrap(),
            level: 3,
            whole_disk,
        })
        .unwrap()
    }

    fn chunks(list: &[Option<ChunkHash>]) -> Vec<CaptureChunk> {
        list.iter()
            .map(|h| CaptureChunk {
                sha256: *h,
                used: None,
            })
            .collect()
    }

    fn frame(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Compressor::new(3)
            .unwrap()
            .compress(data, &mut out)
            .unwrap();
        out
    }

    #[test]
    fn a_frame_that_does_not_match_its_name_is_refused_and_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let s = sink(dir.path());
        let good = vec![7u8; CS as usize];
        let hash = ChunkHash::of(&good);
        let mut bad = good.clone();
        bad[100] ^= 1;
        let err = s
            .accept_chunk(3, u64::from(CS), hash, &frame(&bad))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("chunk #3 at offset 196608") && text.contains(&hash.to_hex()),
            "{text}"
        );
        assert!(!s.has(&hash));
        let err = s
            .accept_chunk(3, u64::from(CS), hash, b"not zstd")
            .unwrap_err();
        assert!(matches!(
            err,
            CaptureRefused::Chunk(ChunkError::Decompress { .. })
        ));
        let err = s
            .accept_chunk(3, u64::from(CS) + 1, hash, &frame(&good))
            .unwrap_err();
        assert!(matches!(err, CaptureRefused::Length { .. }), "{err}");
        assert!(
            s.accept_chunk(3, u64::from(CS), hash, &frame(&good))
                .unwrap()
        );
        assert!(
            !s.accept_chunk(9, u64::from(CS), hash, &frame(&good))
                .unwrap()
        );
        assert!(s.has(&hash));
    }

    #[test]
    fn finish_builds_a_signed_manifest_from_the_store_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = sink(dir.path());
        // 2.5 chunks: data, zeros, a short data chunk at the end.
        let disk_size = u64::from(CS) * 2 + 1000;
        let a = vec![1u8; CS as usize];
        let c = vec![3u8; 1000];
        let (ha, hc) = (ChunkHash::of(&a), ChunkHash::of(&c));
        let missing = CaptureFinish {
            disk_size,
            chunk_size: CS,
            whole_disk: true,
            table: "none".into(),
            partitions: vec![],
            chunks: chunks(&[Some(ha), None, Some(hc)]),
        };
        s.accept_chunk(0, u64::from(CS), ha, &frame(&a)).unwrap();
        let err = s.finish(&missing).unwrap_err().to_string();
        assert!(
            err.contains("chunk #2") && err.contains("never uploaded"),
            "{err}"
        );
        s.accept_chunk(2, 1000, hc, &frame(&c)).unwrap();
        let short = CaptureFinish {
            chunks: chunks(&[Some(ha), None]),
            ..missing.clone()
        };
        assert!(matches!(
            s.finish(&short).unwrap_err(),
            CaptureRefused::Layout(_)
        ));
        let id = s.finish(&missing).unwrap();
        assert_eq!(s.captured(), Some(id));
        let m = s.config.store.open_verified(&id).unwrap();
        assert_eq!(m.disk_size, disk_size);
        assert_eq!(m.chunks[2].len, 1000);
        assert!(m.chunks[1].is_zero());
        assert_eq!(m.label.profile.as_deref(), Some("lycee"));
        // The partition-table copies come from the stored bytes.
        let head = hex::decode(&m.partition_table.primary).unwrap();
        assert_eq!(head, vec![1u8; PRIMARY_TABLE_LEN as usize]);
        let tail = hex::decode(&m.partition_table.backup).unwrap();
        assert_eq!(&tail[tail.len() - 1000..], &c[..]);
        assert!(tail[..tail.len() - 1000].iter().all(|b| *b == 0));
        assert!(matches!(
            s.finish(&missing).unwrap_err(),
            CaptureRefused::AlreadyDone(_)
        ));
    }

    #[test]
    fn masks_travel_into_the_manifest_and_are_checked_against_the_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let s = sink(dir.path());
        let disk_size = u64::from(CS) * 3;
        // Chunk 0 used whole, chunk 1 used in [0, 1000) and [5000, 6000) (zeros elsewhere), chunk 2
        // not at all.
        let a = vec![1u8; CS as usize];
        let mut b = vec![0u8; CS as usize];
        b[..1000].fill(2);
        b[5000..6000].fill(3);
        let (ha, hb) = (ChunkHash::of(&a), ChunkHash::of(&b));
        s.accept_chunk(0, u64::from(CS), ha, &frame(&a)).unwrap();
        s.accept_chunk(1, u64::from(CS), hb, &frame(&b)).unwrap();
        let good = CaptureFinish {
            disk_size,
            chunk_size: CS,
            whole_disk: false,
            table: "gpt".into(),
            partitions: vec![PartitionRecord {
                number: 1,
                start: u64::from(CS),
                len: u64::from(CS) * 2,
                kind: "0fc63daf-8483-4772-8e79-3d69d8477de4".into(),
                fs: "ext4".into(),
                used_bytes: 2000,
                whole: None,
                discarded: vec![],
            }],
            chunks: vec![
                CaptureChunk {
                    sha256: Some(ha),
                    used: None,
                },
                CaptureChunk {
                    sha256: Some(hb),
                    used: Some(vec![[0, 1000], [5000, 6000]]),
                },
                CaptureChunk {
                    sha256: None,
                    used: Some(vec![]),
                },
            ],
        };
        let with = |f: &dyn Fn(&mut CaptureFinish)| {
            let mut x = good.clone();
            f(&mut x);
            s.finish(&x).unwrap_err().to_string()
        };
        // A mask that hides non-zero bytes: the sha256 does not cover the masked chunk.
        let e = with(&|x| {
            x.chunks[1].used = Some(vec![[0, 1000], [5000, 5500]]);
            x.partitions[0].used_bytes = 1500;
        });
        assert!(e.contains("chunk #1") && e.contains("byte 5500"), "{e}");
        let e = with(&|x| x.chunks[1].used = Some(vec![[5000, 6000], [0, 1000]]));
        assert!(e.contains("chunk #1: used ranges [0, 1000)"), "{e}");
        let e = with(&|x| x.chunks[1].used = Some(vec![[0, 1000], [5000, CS + 1]]));
        assert!(e.contains("beyond the chunk"), "{e}");
        let e = with(&|x| x.chunks[2].sha256 = Some(ha));
        assert!(e.contains("chunk #2: used ranges are empty"), "{e}");
        let e = with(&|x| x.whole_disk = true);
        assert!(e.contains("whole-disk"), "{e}");
        let e = with(&|x| x.partitions[0].len = disk_size);
        assert!(e.contains("partition 1 ends beyond"), "{e}");
        let e = with(&|x| x.partitions[0].used_bytes = 1000);
        assert!(
            e.contains("partition 1 says 1000 bytes used") && e.contains("hold 2000"),
            "{e}"
        );
        let e = with(&|x| x.table = "apm".into());
        assert!(e.contains("\"apm\""), "{e}");
        let id = s.finish(&good).unwrap();
        let m = s.config.store.open_verified(&id).unwrap();
        assert_eq!(m.chunks[0].used, None);
        assert_eq!(m.chunks[1].used, Some(vec![[0, 1000], [5000, 6000]]));
        assert!(m.chunks[2].is_unused() && m.chunks[2].is_zero());
        let l = m.layout.as_ref().unwrap();
        assert_eq!(l.mode, CaptureMode::FileSystems);
        assert_eq!(l.used_bytes, u64::from(CS) + 2000);
        assert_eq!(l.partitions[0].fs, "ext4");
        assert_eq!(l.partitions[0].used_bytes, 2000);
    }

    #[test]
    fn a_plan_for_the_whole_disk_wants_a_whole_disk_finish() {
        let dir = tempfile::tempdir().unwrap();
        let s = sink_with(dir.path(), true);
        assert!(s.plan().whole_disk);
        let a = vec![1u8; CS as usize];
        let ha = ChunkHash::of(&a);
        s.accept_chunk(0, u64::from(CS), ha, &frame(&a)).unwrap();
        let mut f = CaptureFinish {
            disk_size: u64::from(CS),
            chunk_size: CS,
            whole_disk: false,
            table: "none".into(),
            partitions: vec![],
            chunks: chunks(&[Some(ha)]),
        };
        let e = s.finish(&f).unwrap_err().to_string();
        assert!(e.contains("the plan asked for the whole disk"), "{e}");
        f.whole_disk = true;
        let id = s.finish(&f).unwrap();
        let m = s.config.store.open_verified(&id).unwrap();
        assert_eq!(m.mode(), CaptureMode::WholeDisk);
        assert_eq!(m.layout.as_ref().unwrap().used_bytes, u64::from(CS));
    }
}
