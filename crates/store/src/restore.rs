//! Restore: rebuild a disk from a verified manifest, writing only what differs (delta).
//!
//! For each chunk, in [`Manifest::write_order`](crate::manifest::Manifest::write_order): read the
//! target at the chunk's offset, masked with the chunk's used ranges (free bytes read as zero, see
//! [`crate::masked`]); if it already holds the right bytes (same sha256, or zeros for a zero chunk)
//! skip it; otherwise fetch the compressed chunk, decompress, check its sha256 against the signed
//! manifest, and only then write its used ranges (zero chunks: punch-hole / zero-out of the used
//! ranges). Free bytes are never written, and a chunk with no used byte is not even read: a disk
//! whose used bytes equal the image's gets nothing written, whatever its free space holds. Worker
//! threads do this for different chunks at once. The partition-table region goes last, after a sync
//! of everything else.
//!
//! A progress file in the store's `restores/` records how far the write order is done and synced; a
//! restore that crashed resumes from there (and the delta check makes even a lost progress file cheap).

use crate::chunk::{ChunkRef, decode_verified_into, is_zero};
use crate::disk::{Disk, DiskError};
use crate::manifest::{ImageId, VerifiedManifest};
use crate::{Store, StoreError, chunk::ChunkHash};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Where restore gets compressed chunks from (the store; the agent's unicast catch-up could be another).
pub trait ChunkSource: Sync {
    /// The compressed bytes of `chunk`, as stored.
    fn compressed(&self, chunk: &ChunkRef) -> Result<Vec<u8>, StoreError>;
    /// Where the chunk comes from, for error messages.
    fn location(&self, chunk: &ChunkRef) -> PathBuf;
}

impl ChunkSource for Store {
    fn compressed(&self, chunk: &ChunkRef) -> Result<Vec<u8>, StoreError> {
        let p = self.chunk_path(&chunk.sha256);
        std::fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::MissingChunk {
                    chunk: chunk.clone(),
                    path: p,
                }
            } else {
                crate::io_err(&p, format!("reading {chunk}"))(e)
            }
        })
    }
    fn location(&self, chunk: &ChunkRef) -> PathBuf {
        self.chunk_path(&chunk.sha256)
    }
}

/// Why a restore stopped. Nothing unverified was written; the progress file allows resuming.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The image does not fit the target (too small for its used bytes), or its table or file
    /// system could not be adjusted to the target's size ([`crate::fit`]).
    #[error("{0}")]
    Fit(#[from] crate::fit::FitError),
    /// Reading or writing the target.
    #[error("restore: {0}")]
    Disk(#[from] DiskError),
    /// Getting a chunk (missing, unreadable, or it failed verification).
    #[error("restore: {0}")]
    Store(#[from] StoreError),
}

/// Progress of a running restore, reported after each chunk.
#[derive(Debug, Clone, Default)]
pub struct RestoreProgress {
    /// Chunks handled.
    pub chunks_done: u64,
    /// Chunks in the image.
    pub chunks_total: u64,
    /// Disk bytes handled.
    pub bytes_done: u64,
    /// Image disk size.
    pub bytes_total: u64,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Chunks in the image.
    pub chunks: u64,
    /// Chunks skipped because a previous, interrupted run had finished them.
    pub resumed_chunks: u64,
    /// Chunks already right on the target.
    pub unchanged_chunks: u64,
    /// Data chunks written.
    pub written_chunks: u64,
    /// Bytes of data written.
    pub written_bytes: u64,
    /// Zero chunks zeroed (discard / punch-hole / zero-out).
    pub zeroed_chunks: u64,
    /// Bytes zeroed.
    pub zeroed_bytes: u64,
    /// Chunks with no used byte: neither read nor written (and chunks beyond a smaller target's end).
    pub unused_chunks: u64,
    /// The target's size in bytes.
    pub target_size: u64,
    /// What was adjusted for a target of another size than the image's ([`crate::fit::Fit::adjusted`]).
    pub adjusted: Vec<String>,
}

/// Tunables of a restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Worker threads; 0 = one per CPU.
    pub workers: usize,
    /// What to do on a disk of another size (grow the last partition).
    pub fit: crate::fit::FitOptions,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct ProgressFile {
    image: String,
    target: PathBuf,
    target_size: u64,
    /// Every chunk before this position of the write order is written and synced.
    done_below: usize,
}

/// Synced progress is recorded every this many chunks of the write order.
const SAVE_EVERY: usize = 256;

/// The progress file of a restore of any image onto `target`.
pub fn progress_path(store: &Store, target: &Path) -> PathBuf {
    let canon = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    let key = ChunkHash::of(canon.as_os_str().as_encoded_bytes());
    store
        .restores_dir()
        .join(format!("{}.progress", &key.to_hex()[..16]))
}

/// Restores `manifest` from `store` onto `target` (a block device, an image file, or a path where a new
/// image file is created).
pub fn restore(
    store: &Store,
    manifest: &VerifiedManifest,
    target: &Path,
    opts: &RestoreOptions,
    progress: &(dyn Fn(&RestoreProgress) + Sync),
) -> Result<RestoreReport, RestoreError> {
    let _lock = store.lock_shared()?;
    // Refuse early if a chunk is missing or has the wrong size: most store damage is caught before the
    // target is touched.
    for (i, c) in manifest.chunks.iter().enumerate() {
        if let Some(r) = c.chunk_ref(i as u64) {
            let p = store.chunk_path(&r.sha256);
            match std::fs::metadata(&p) {
                Ok(m) if Some(m.len()) == c.compressed_len.map(u64::from) => {}
                Ok(m) => {
                    return Err(StoreError::BadChunk {
                        path: p,
                        source: crate::chunk::ChunkError::Decompress {
                            chunk: r,
                            reason: format!(
                                "stored file is {} bytes, the manifest says {}",
                                m.len(),
                                c.compressed_len.unwrap_or(0)
                            ),
                        },
                    }
                    .into());
                }
                Err(_) => return Err(StoreError::MissingChunk { chunk: r, path: p }.into()),
            }
        }
    }
    let disk = Disk::open_write(target, manifest.disk_size)?;
    // Decided before any write: a target too small for the used bytes is refused untouched.
    let fit = crate::fit::plan_restore(manifest, store, target, disk.size(), &opts.fit)?;
    let pfile = progress_path(store, target);
    let canon = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    let mut state = ProgressFile {
        image: manifest.id().to_hex(),
        target: canon,
        target_size: disk.size(),
        done_below: 0,
    };
    if let Ok(bytes) = std::fs::read(&pfile)
        && let Ok(old) = serde_json::from_slice::<ProgressFile>(&bytes)
        && old.image == state.image
        && old.target == state.target
        && old.target_size == state.target_size
    {
        state.done_below = old.done_below;
    }
    let mut report = restore_with(
        store,
        manifest,
        &disk,
        opts,
        progress,
        |s| save_progress(store, &pfile, &state, s),
        state.done_below,
    )?;
    crate::fit::apply(&fit, disk)?;
    report.adjusted = fit.adjusted;
    let _ = std::fs::remove_file(&pfile);
    Ok(report)
}

fn save_progress(
    store: &Store,
    pfile: &Path,
    state: &ProgressFile,
    done_below: usize,
) -> Result<(), StoreError> {
    let p = ProgressFile {
        image: state.image.clone(),
        target: state.target.clone(),
        target_size: state.target_size,
        done_below,
    };
    let bytes = serde_json::to_vec(&p).expect("progress serialises");
    store.write_atomic(pfile, &bytes)
}

struct Shared {
    done: Vec<bool>,
    done_below: usize,
    saved_below: usize,
    report: RestoreReport,
    progress: RestoreProgress,
}

/// The restore loop over any [`ChunkSource`]: `save(done_below)` is called, after a sync of the target,
/// each time a further stretch of the write order is complete; `start` skips positions already done.
pub fn restore_with(
    source: &dyn ChunkSource,
    manifest: &VerifiedManifest,
    disk: &Disk,
    opts: &RestoreOptions,
    progress: &(dyn Fn(&RestoreProgress) + Sync),
    save: impl Fn(usize) -> Result<(), StoreError> + Sync,
    start: usize,
) -> Result<RestoreReport, RestoreError> {
    let order = manifest.write_order();
    let n = order.len();
    let tables_from = order
        .iter()
        .position(|&i| manifest.in_partition_region(i))
        .unwrap_or(n);
    let start = start.min(n);
    let shared = Mutex::new(Shared {
        done: vec![false; n],
        done_below: start,
        saved_below: start,
        report: RestoreReport {
            chunks: n as u64,
            resumed_chunks: start as u64,
            target_size: disk.size(),
            ..Default::default()
        },
        progress: RestoreProgress {
            chunks_done: start as u64,
            chunks_total: n as u64,
            bytes_done: order[..start]
                .iter()
                .map(|&i| manifest.chunks[i].len as u64)
                .sum(),
            bytes_total: manifest.disk_size,
        },
    });
    for d in &mut shared.lock().expect("restore state").done[..start] {
        *d = true;
    }
    let workers = if opts.workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.workers
    };
    // Phase 1: everything but the partition-table region, in parallel. Phase 2: the table region.
    for (from, to, w) in [(start, tables_from, workers), (tables_from, n, 1)] {
        let from = from.max(start);
        if from >= to {
            continue;
        }
        run_phase(
            source, manifest, disk, &order, from, to, w, &shared, progress, &save,
        )?;
        disk.sync()?;
        let s = shared.lock().expect("restore state");
        save(s.done_below)?;
    }
    Ok(shared.into_inner().expect("restore state").report)
}

#[allow(clippy::too_many_arguments)]
fn run_phase(
    source: &dyn ChunkSource,
    manifest: &VerifiedManifest,
    disk: &Disk,
    order: &[usize],
    from: usize,
    to: usize,
    workers: usize,
    shared: &Mutex<Shared>,
    progress: &(dyn Fn(&RestoreProgress) + Sync),
    save: &(impl Fn(usize) -> Result<(), StoreError> + Sync),
) -> Result<(), RestoreError> {
    let next = AtomicUsize::new(from);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<(usize, RestoreError)>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut target_buf = Vec::new();
                let mut chunk_buf = Vec::new();
                while !failed.load(Ordering::Relaxed) {
                    let pos = next.fetch_add(1, Ordering::Relaxed);
                    if pos >= to {
                        return;
                    }
                    let index = order[pos];
                    let r = one_chunk(
                        source,
                        manifest,
                        disk,
                        index,
                        &mut target_buf,
                        &mut chunk_buf,
                    );
                    let r = r.and_then(|action| {
                        mark_done(shared, disk, pos, index, manifest, action, progress, save)
                    });
                    if let Err(e) = r {
                        failed.store(true, Ordering::Relaxed);
                        let mut fe = first_error.lock().expect("error slot");
                        if fe.as_ref().is_none_or(|(p, _)| pos < *p) {
                            *fe = Some((pos, e));
                        }
                        return;
                    }
                }
            });
        }
    });
    match first_error.into_inner().expect("error slot") {
        Some((_, e)) => {
            // What is done stays done: record it so a rerun after the fix resumes here.
            let _ = disk.sync();
            let s = shared.lock().expect("restore state");
            let _ = save(s.done_below);
            Err(e)
        }
        None => Ok(()),
    }
}

enum Action {
    Unused,
    Unchanged,
    Written(u64),
    Zeroed(u64),
}

fn one_chunk(
    source: &dyn ChunkSource,
    manifest: &VerifiedManifest,
    disk: &Disk,
    index: usize,
    target_buf: &mut Vec<u8>,
    chunk_buf: &mut Vec<u8>,
) -> Result<Action, RestoreError> {
    let e = &manifest.chunks[index];
    let limit = disk.size();
    if e.is_unused() || e.offset >= limit {
        return Ok(Action::Unused);
    }
    let len = e.len as usize;
    if e.crosses(limit) {
        // A target smaller than the image (checked by `fit::plan`): only the bytes below its end.
        let ranges = e.used_ranges_below(limit);
        let n: u64 = ranges.iter().map(|r| (r.end - r.start) as u64).sum();
        let Some(r) = e.chunk_ref(index as u64) else {
            for u in ranges {
                disk.zero_range(e.offset + u.start as u64, (u.end - u.start) as u64)?;
            }
            return Ok(Action::Zeroed(n));
        };
        let z = source.compressed(&r)?;
        decode_verified_into(r.clone(), len as u64, &z, chunk_buf).map_err(|source_err| {
            StoreError::BadChunk {
                path: source.location(&r),
                source: source_err,
            }
        })?;
        for u in ranges {
            disk.write_all_at(&chunk_buf[u.clone()], e.offset + u.start as u64)?;
        }
        return Ok(Action::Written(n));
    }
    // Free bytes read as zeros: the comparison sees only what the image defines.
    crate::masked::read_entry(disk, e, target_buf)?;
    let Some(r) = e.chunk_ref(index as u64) else {
        if is_zero(target_buf) {
            return Ok(Action::Unchanged);
        }
        for u in e.used_ranges() {
            disk.zero_range(e.offset + u.start as u64, (u.end - u.start) as u64)?;
        }
        return Ok(Action::Zeroed(e.used_bytes()));
    };
    if !is_zero(target_buf) && ChunkHash::of(target_buf) == r.sha256 {
        return Ok(Action::Unchanged);
    }
    let z = source.compressed(&r)?;
    decode_verified_into(r.clone(), len as u64, &z, chunk_buf).map_err(|source_err| {
        StoreError::BadChunk {
            path: source.location(&r),
            source: source_err,
        }
    })?;
    // Only the used ranges: the target's free bytes are never written.
    for u in e.used_ranges() {
        disk.write_all_at(&chunk_buf[u.clone()], e.offset + u.start as u64)?;
    }
    Ok(Action::Written(e.used_bytes()))
}

#[allow(clippy::too_many_arguments)]
fn mark_done(
    shared: &Mutex<Shared>,
    disk: &Disk,
    pos: usize,
    index: usize,
    manifest: &VerifiedManifest,
    action: Action,
    progress: &(dyn Fn(&RestoreProgress) + Sync),
    save: &(impl Fn(usize) -> Result<(), StoreError> + Sync),
) -> Result<(), RestoreError> {
    let mut s = shared.lock().expect("restore state");
    s.done[pos] = true;
    match action {
        Action::Unused => s.report.unused_chunks += 1,
        Action::Unchanged => s.report.unchanged_chunks += 1,
        Action::Written(b) => {
            s.report.written_chunks += 1;
            s.report.written_bytes += b;
        }
        Action::Zeroed(b) => {
            s.report.zeroed_chunks += 1;
            s.report.zeroed_bytes += b;
        }
    }
    while s.done_below < s.done.len() && s.done[s.done_below] {
        s.done_below += 1;
    }
    s.progress.chunks_done += 1;
    s.progress.bytes_done += manifest.chunks[index].len as u64;
    progress(&s.progress);
    if s.done_below >= s.saved_below + SAVE_EVERY {
        disk.sync()?;
        save(s.done_below)?;
        s.saved_below = s.done_below;
    }
    Ok(())
}

/// The id recorded in a leftover progress file for `target`, if a restore onto it was interrupted.
pub fn interrupted_restore(store: &Store, target: &Path) -> Option<ImageId> {
    let bytes = std::fs::read(progress_path(store, target)).ok()?;
    let p: ProgressFile = serde_json::from_slice(&bytes).ok()?;
    p.image.parse().ok()
}
