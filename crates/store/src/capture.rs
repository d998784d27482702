//! Capture: read a disk, cut it into chunks, store the new ones, sign the manifest.
//!
//! Pipeline, with bounded memory (a fixed pool of chunk buffers circulates; channels are bounded):
//!
//! ```text
//! reader thread --(chunk buffer)--> N workers: zero test, sha256, and for chunks the store lacks:
//!   zstd + write tmp/ file --(outcome)--> committer (calling thread): chunk list, progress callback
//!   --(new chunk file)--> syncer threads: fdatasync, rename into chunks/ab/
//! then: fsync of the touched chunks/ab/ folders, sign, write the manifest last.
//! ```
//!
//! Holes of a sparse image file (SEEK_DATA) become zero chunks without being read.
//!
//! File-system-aware (issue 14, the default, [`CaptureMode::FileSystems`]): the source's partition
//! table and each file system's allocation map are read first (`roomcast_layout::read_layout`); a file
//! system that is not clean stops the capture before anything is stored. Each chunk then carries its
//! used ranges ([`ChunkEntry::used`]): only those bytes are read, the free bytes are zero before the
//! chunk is hashed and compressed (deleted data never reaches the store), and a chunk with no used
//! byte is neither read nor stored. [`CaptureMode::WholeDisk`] (`--whole-disk`) takes every byte.
//!
//! Each worker owns a single-threaded zstd compressor: parallelism is across chunks, so both cores
//! compress and hash at once while the reader keeps the next buffers full.

use super::chunk::{ChunkHash, ChunkRef, ChunkSize, Compressor, is_zero};
use super::keys::{Signer, fingerprint};
use super::manifest::{
    BACKUP_TABLE_LEN, CaptureMode, ChunkEntry, FORMAT, ImageId, ImageLabel, ImageLayout, Manifest,
    PRIMARY_TABLE_LEN, PartitionRecord, PartitionTable, chunk_mask, sign, table_name,
};
use super::{Store, StoreError, io_err, sync_dir};
use crate::disk::{Disk, DiskError};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

/// A chunk's used ranges ([`ChunkEntry::used`]).
type Mask = Option<Vec<[u32; 2]>>;

/// Tunables of a capture.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Chunk size.
    pub chunk_size: ChunkSize,
    /// zstd level (1..=22).
    pub level: i32,
    /// Worker threads hashing and compressing; 0 = one per CPU.
    pub workers: usize,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            chunk_size: ChunkSize::default(),
            level: super::chunk::DEFAULT_LEVEL,
            workers: 0,
        }
    }
}

/// Progress of a running capture, reported after each chunk.
#[derive(Debug, Clone, Default)]
pub struct CaptureProgress {
    /// Bytes of the disk processed.
    pub bytes_done: u64,
    /// Disk size.
    pub bytes_total: u64,
    /// Chunks processed.
    pub chunks_done: u64,
    /// Chunks in the disk.
    pub chunks_total: u64,
}

/// What a finished capture did.
#[derive(Debug, Clone)]
pub struct CaptureReport {
    /// The new image.
    pub id: ImageId,
    /// Disk size in bytes.
    pub disk_size: u64,
    /// Chunks in the disk.
    pub chunks: u64,
    /// Of which all-zero (not stored).
    pub zero_chunks: u64,
    /// Of which were already in the store (not compressed nor written again).
    pub reused_chunks: u64,
    /// Of which were new and written.
    pub new_chunks: u64,
    /// Uncompressed bytes of non-zero chunks.
    pub data_bytes: u64,
    /// Compressed bytes of all non-zero chunks (what the image costs alone).
    pub compressed_bytes: u64,
    /// Compressed bytes newly written to the store.
    pub new_bytes: u64,
    /// Of the chunks, those with no used byte (neither read nor stored).
    pub unused_chunks: u64,
    /// Bytes captured: the used bytes of every chunk (the disk size for a whole-disk capture).
    pub used_bytes: u64,
    /// The mode, the partitions found, their file systems and used bytes, as the manifest records it.
    pub layout: ImageLayout,
}

impl CaptureReport {
    /// Bytes not captured: free space, deleted files and discarded files (`pagefile.sys`...).
    pub fn saved_bytes(&self) -> u64 {
        self.disk_size - self.used_bytes
    }
}

/// Why a capture failed. The store is left consistent: no manifest, no partial chunk file.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Reading the source failed (it vanished, shrank or had an I/O error).
    #[error("capture failed reading chunk #{index} at offset {offset}: {source}")]
    Source {
        /// Chunk index.
        index: u64,
        /// Byte offset.
        offset: u64,
        /// The error, naming the device or file.
        source: DiskError,
    },
    /// The source could not be opened.
    #[error("capture source: {0}")]
    Open(DiskError),
    /// The source is a block device in use (mounted, or held by another program).
    #[error(
        "capture source {path}: in use (mounted or held by another program): {source}; unmount it, or capture from a boot where it is not in use; nothing was captured"
    )]
    InUse {
        /// The device.
        path: PathBuf,
        /// What `open(O_EXCL)` said.
        source: std::io::Error,
    },
    /// A file system of the source is not clean: nothing was captured.
    #[error(
        "capture source {path}: partition {number} ({fs}): {reason}; fix: {fix}; nothing was captured"
    )]
    NotClean {
        /// The source.
        path: PathBuf,
        /// Partition number (1-based, as Linux counts).
        number: u32,
        /// Its file system.
        fs: String,
        /// What is wrong.
        reason: String,
        /// What to do about it.
        fix: String,
    },
    /// The partition table contradicts itself or the disk.
    #[error(
        "capture source {path}: {reason}; nothing was captured (`--whole-disk` takes every byte without reading the table)"
    )]
    Layout {
        /// The source.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Writing a chunk into the store failed (e.g. the store's disk is full).
    #[error("capture failed storing {chunk}: {path}: {source}")]
    WriteChunk {
        /// The chunk.
        chunk: ChunkRef,
        /// The file being written.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The signing key is not one this store trusts: its images could never be restored.
    #[error(
        "signing key {fingerprint} is not trusted by the store: add its public key with `roomcast key trust --store {store} FILE.pub`"
    )]
    UntrustedKey {
        /// Key fingerprint.
        fingerprint: String,
        /// Store folder.
        store: PathBuf,
    },
    /// Any other store error.
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Job {
    index: u64,
    len: usize,
    buf: Vec<u8>,
    used: Mask,
}

enum Outcome {
    Zero,
    /// A chunk with no used byte: not read, not stored.
    Unused,
    Existing {
        hash: ChunkHash,
        clen: u32,
    },
    New {
        hash: ChunkHash,
        clen: u32,
        tmp: PathBuf,
    },
}

enum Msg {
    Done {
        index: u64,
        len: u64,
        outcome: Outcome,
        used: Mask,
    },
    Failed(CaptureError),
}

/// Captures `source` into `store` as a new image signed by `signer`, file-system-aware
/// ([`CaptureMode::FileSystems`]).
pub fn capture(
    store: &Store,
    source: &Path,
    label: ImageLabel,
    signer: &Signer,
    opts: &CaptureOptions,
    progress: &(dyn Fn(&CaptureProgress) + Sync),
) -> Result<CaptureReport, CaptureError> {
    capture_as(
        store,
        source,
        label,
        signer,
        opts,
        CaptureMode::FileSystems,
        progress,
    )
}

/// A block device opened with `O_EXCL` fails while mounted or held: the capture refuses such a
/// source (its file systems change under the read).
fn refuse_in_use(source: &Path) -> Result<(), CaptureError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    if !fs::metadata(source).is_ok_and(|m| m.file_type().is_block_device()) {
        return Ok(());
    }
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(source)
        .map(drop)
        .map_err(|e| CaptureError::InUse {
            path: source.to_path_buf(),
            source: e,
        })
}

/// The layout record and used bytes of `disk` for `mode`: the file systems' maps, or (whole disk)
/// the partitions from the table alone, each taken whole (`None`: every byte). The one place a
/// capture's layout is decided: a local capture and the agent's capture (step f) both call it, so
/// their manifests agree.
pub fn read_source_layout(
    disk: &Disk,
    mode: CaptureMode,
) -> Result<(ImageLayout, Option<roomcast_layout::Extents>), CaptureError> {
    let path = disk.path().to_path_buf();
    match mode {
        CaptureMode::FileSystems => match roomcast_layout::read_layout(disk) {
            Ok(l) => Ok((ImageLayout::from_disk_layout(mode, &l), Some(l.used))),
            Err(roomcast_layout::LayoutError::NotClean {
                number,
                fs,
                reason,
                fix,
            }) => Err(CaptureError::NotClean {
                path,
                number,
                fs,
                reason,
                fix,
            }),
            Err(roomcast_layout::LayoutError::Table(reason)) => Err(CaptureError::Layout {
                path,
                reason: format!("partition table: {reason}"),
            }),
            Err(roomcast_layout::LayoutError::Io(e)) => Err(CaptureError::Layout {
                path,
                reason: format!("reading the layout: {e}"),
            }),
        },
        CaptureMode::WholeDisk => {
            // The table is recorded for `image show`; a table that cannot be read is no reason to
            // refuse a whole-disk capture.
            let (table, partitions) = match roomcast_layout::table::read(disk) {
                Ok(t) => (
                    table_name(t.kind),
                    t.partitions
                        .iter()
                        .map(|p| PartitionRecord {
                            number: p.number,
                            start: p.start,
                            len: p.len,
                            kind: p.kind.describe(),
                            fs: "-".into(),
                            used_bytes: p.len,
                            whole: Some("--whole-disk".into()),
                            discarded: Vec::new(),
                        })
                        .collect(),
                ),
                Err(_) => ("none", Vec::new()),
            };
            Ok((
                ImageLayout {
                    mode,
                    table: table.into(),
                    partitions,
                    used_bytes: disk.size(),
                },
                None,
            ))
        }
    }
}

/// Captures `source` into `store` as a new image signed by `signer`, in `mode`.
pub fn capture_as(
    store: &Store,
    source: &Path,
    label: ImageLabel,
    signer: &Signer,
    opts: &CaptureOptions,
    mode: CaptureMode,
    progress: &(dyn Fn(&CaptureProgress) + Sync),
) -> Result<CaptureReport, CaptureError> {
    capture_inner(
        store,
        source,
        label,
        signer,
        opts,
        How::Read(mode),
        progress,
    )
}

/// Captures `source` taking only the bytes of `used` (absolute offsets; everything else is free),
/// recording `layout` in the manifest: for callers that read the layout themselves, and for tests
/// of arbitrary masks. `layout.mode` must be [`CaptureMode::FileSystems`].
#[allow(clippy::too_many_arguments)]
pub fn capture_with_layout(
    store: &Store,
    source: &Path,
    label: ImageLabel,
    signer: &Signer,
    opts: &CaptureOptions,
    layout: ImageLayout,
    used: roomcast_layout::Extents,
    progress: &(dyn Fn(&CaptureProgress) + Sync),
) -> Result<CaptureReport, CaptureError> {
    let how = How::Given(Box::new(layout), used);
    capture_inner(store, source, label, signer, opts, how, progress)
}

/// Where a capture's layout comes from.
enum How {
    /// Read from the source in this mode.
    Read(CaptureMode),
    /// Given by the caller.
    Given(Box<ImageLayout>, roomcast_layout::Extents),
}

fn capture_inner(
    store: &Store,
    source: &Path,
    label: ImageLabel,
    signer: &Signer,
    opts: &CaptureOptions,
    how: How,
    progress: &(dyn Fn(&CaptureProgress) + Sync),
) -> Result<CaptureReport, CaptureError> {
    if !store.trusted()?.contains(&signer.verifying_key()) {
        return Err(CaptureError::UntrustedKey {
            fingerprint: fingerprint(&signer.verifying_key()),
            store: store.root().to_path_buf(),
        });
    }
    let _lock = store.lock_shared()?;
    refuse_in_use(source)?;
    let disk = Disk::open_read(source).map_err(CaptureError::Open)?;
    let disk_size = disk.size();
    let (layout, used) = match how {
        How::Read(mode) => read_source_layout(&disk, mode)?,
        How::Given(layout, used) => (*layout, Some(used)),
    };
    let cs = opts.chunk_size;
    let count = cs.count(disk_size);

    let head_len = PRIMARY_TABLE_LEN.min(disk_size);
    let tail_len = BACKUP_TABLE_LEN.min(disk_size);
    let mut head = vec![0u8; head_len as usize];
    let mut tail = vec![0u8; tail_len as usize];
    let src_err = |index, offset| {
        move |source| CaptureError::Source {
            index,
            offset,
            source,
        }
    };
    disk.read_exact_at(&mut head, 0).map_err(src_err(0, 0))?;
    disk.read_exact_at(&mut tail, disk_size - tail_len)
        .map_err(src_err(count.saturating_sub(1), disk_size - tail_len))?;

    let workers = if opts.workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.workers
    };
    let tag = format!("capture-{}-{}", std::process::id(), rand::random::<u32>());
    let result = run_pipeline(
        store,
        &disk,
        used.as_ref(),
        cs,
        count,
        workers,
        opts.level,
        &tag,
        progress,
    );
    let entries = match result {
        Ok(e) => e,
        Err(e) => {
            remove_tmp_files(store, &tag);
            return Err(e);
        }
    };

    let mut report = CaptureReport {
        id: ImageId(ChunkHash([0; 32])),
        disk_size,
        chunks: count,
        zero_chunks: 0,
        reused_chunks: 0,
        new_chunks: 0,
        data_bytes: 0,
        compressed_bytes: 0,
        new_bytes: 0,
        unused_chunks: 0,
        used_bytes: 0,
        layout: layout.clone(),
    };
    let mut chunks = Vec::with_capacity(count as usize);
    for (i, (outcome_new, entry)) in entries.into_iter().enumerate() {
        let entry = entry.unwrap_or_else(|| panic!("chunk {i} has no outcome"));
        report.used_bytes += entry.used_bytes();
        match (entry.compressed_len, outcome_new) {
            (None, _) if entry.is_unused() => report.unused_chunks += 1,
            (None, _) => report.zero_chunks += 1,
            (Some(c), true) => {
                report.new_chunks += 1;
                report.new_bytes += c as u64;
            }
            (Some(_), false) => report.reused_chunks += 1,
        }
        if let Some(c) = entry.compressed_len {
            report.data_bytes += entry.len as u64;
            report.compressed_bytes += c as u64;
        }
        chunks.push(entry);
    }
    let manifest = Manifest {
        format: FORMAT,
        label,
        disk_size,
        chunk_size: cs.get(),
        zstd_level: opts.level,
        partition_table: PartitionTable::from_regions(disk_size, &head, &tail),
        chunks,
        layout: Some(layout),
    };
    manifest.validate().map_err(|source| StoreError::Manifest {
        path: disk.path().to_path_buf(),
        source,
    })?;
    let (id, envelope) = sign(&manifest, signer);
    store.commit_manifest(&id, &envelope)?;
    report.id = id;
    Ok(report)
}

fn remove_tmp_files(store: &Store, tag: &str) {
    if let Ok(rd) = fs::read_dir(store.tmp_dir()) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(tag) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

type Entries = Vec<(bool, Option<ChunkEntry>)>;

#[allow(clippy::too_many_arguments)]
fn run_pipeline(
    store: &Store,
    disk: &Disk,
    used: Option<&roomcast_layout::Extents>,
    cs: ChunkSize,
    count: u64,
    workers: usize,
    level: i32,
    tag: &str,
    progress: &(dyn Fn(&CaptureProgress) + Sync),
) -> Result<Entries, CaptureError> {
    let stop = AtomicBool::new(false);
    let chunk = cs.get() as usize;
    let disk_size = disk.size();
    let state = SyncState::default();
    let entries = std::thread::scope(|s| {
        // Buffer pool: the only chunk-sized allocations of the capture.
        let pool_size = 2 * workers + 2;
        let (free_tx, free_rx) = sync_channel::<Vec<u8>>(pool_size);
        for _ in 0..pool_size {
            free_tx.send(vec![0u8; chunk]).expect("pool has room");
        }
        let (job_tx, job_rx) = sync_channel::<Job>(pool_size);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (msg_tx, msg_rx) = sync_channel::<Msg>(pool_size);
        let (sync_tx, sync_rx) = sync_channel::<Pending>(1024);
        let sync_rx = Arc::new(Mutex::new(sync_rx));
        let state_ref = &state;

        let reader_msg = msg_tx.clone();
        let stop_ref = &stop;
        s.spawn(move || {
            read_chunks(
                disk, used, chunk, count, free_rx, job_tx, reader_msg, stop_ref,
            )
        });
        for _ in 0..workers {
            let job_rx = Arc::clone(&job_rx);
            let msg_tx = msg_tx.clone();
            let free_tx = free_tx.clone();
            s.spawn(move || work(store, level, tag, &job_rx, &msg_tx, &free_tx, cs));
        }
        let syncers: Vec<_> = (0..SYNCERS)
            .map(|_| {
                let rx = Arc::clone(&sync_rx);
                s.spawn(move || syncer(store, &rx, state_ref, stop_ref))
            })
            .collect();
        drop(msg_tx);
        drop(free_tx);
        let r = commit_chunks(
            msg_rx,
            sync_tx,
            count,
            disk_size,
            chunk as u64,
            &stop,
            progress,
        );
        if r.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        // sync_tx was moved into commit_chunks and is gone: the syncers finish the queue and stop.
        for h in syncers {
            h.join().expect("syncer thread");
        }
        r
    });
    if let Some(e) = state.error.into_inner().expect("error slot") {
        return Err(e);
    }
    let entries = entries?;
    // The renames themselves must survive a power cut before the manifest may name the chunks; the
    // folders are synced in parallel so their journal commits can coalesce.
    let dirs: Vec<PathBuf> = state.dirs.into_inner().expect("dirs").into_iter().collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let first_err: Mutex<Option<StoreError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..SYNCERS {
            s.spawn(|| {
                while let Some(d) = dirs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(e) = sync_dir(d) {
                        first_err.lock().expect("error slot").get_or_insert(e);
                    }
                }
            });
        }
    });
    if let Some(e) = first_err.into_inner().expect("error slot") {
        return Err(e.into());
    }
    Ok(entries)
}

#[allow(clippy::too_many_arguments)]
fn read_chunks(
    disk: &Disk,
    used: Option<&roomcast_layout::Extents>,
    chunk: usize,
    count: u64,
    free_rx: Receiver<Vec<u8>>,
    job_tx: SyncSender<Job>,
    msg_tx: SyncSender<Msg>,
    stop: &AtomicBool,
) {
    let size = disk.size();
    // Start of the next data after a hole in a sparse image file: chunks wholly before it are holes,
    // zeros that need neither reading nor scanning.
    let mut data_from = 0u64;
    for index in 0..count {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let offset = index * chunk as u64;
        let len = (size - offset).min(chunk as u64) as usize;
        let mask = used.and_then(|u| chunk_mask(u, offset, len as u32));
        if mask.as_ref().is_some_and(|m| m.is_empty()) {
            let unused = Msg::Done {
                index,
                len: len as u64,
                outcome: Outcome::Unused,
                used: mask,
            };
            if msg_tx.send(unused).is_err() {
                return;
            }
            continue;
        }
        if offset >= data_from {
            data_from = disk.next_data(offset).unwrap_or(u64::MAX);
        }
        if data_from >= offset + len as u64 {
            if let Err(source) = disk.check_still_covers(offset, offset + len as u64) {
                let _ = msg_tx.send(Msg::Failed(CaptureError::Source {
                    index,
                    offset,
                    source,
                }));
                return;
            }
            let hole = Msg::Done {
                index,
                len: len as u64,
                outcome: Outcome::Zero,
                used: mask,
            };
            if msg_tx.send(hole).is_err() {
                return;
            }
            continue;
        }
        let Ok(mut buf) = free_rx.recv() else { return };
        // Free bytes are zero from here on: they are never hashed, compressed nor stored.
        if let Err(source) =
            crate::masked::read_used(disk, mask.as_deref(), offset, &mut buf[..len])
        {
            let _ = msg_tx.send(Msg::Failed(CaptureError::Source {
                index,
                offset,
                source,
            }));
            return;
        }
        let job = Job {
            index,
            len,
            buf,
            used: mask,
        };
        if job_tx.send(job).is_err() {
            return;
        }
    }
}

fn work(
    store: &Store,
    level: i32,
    tag: &str,
    jobs: &Mutex<Receiver<Job>>,
    msg_tx: &SyncSender<Msg>,
    free_tx: &SyncSender<Vec<u8>>,
    cs: ChunkSize,
) {
    let mut compressor = match Compressor::new(level) {
        Ok(c) => c,
        Err(e) => {
            let _ = msg_tx.send(Msg::Failed(CaptureError::Store(StoreError::Io {
                path: store.root().to_path_buf(),
                op: format!("creating zstd compressor at level {level}"),
                source: e,
            })));
            return;
        }
    };
    let mut out = Vec::new();
    loop {
        let job = {
            let rx = jobs.lock().expect("job queue lock");
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        let data = &job.buf[..job.len];
        let offset = job.index * cs.get() as u64;
        let outcome = if is_zero(data) {
            Ok(Outcome::Zero)
        } else {
            let hash = ChunkHash::of(data);
            match store.chunk_len(&hash) {
                Some(clen) => Ok(Outcome::Existing {
                    hash,
                    clen: clen as u32,
                }),
                None => {
                    let chunk = ChunkRef {
                        index: job.index,
                        offset,
                        sha256: hash,
                    };
                    let tmp = store.tmp_dir().join(format!("{tag}-{}.tmp", job.index));
                    compressor
                        .compress(data, &mut out)
                        .and_then(|()| {
                            let mut f = fs::File::create(&tmp)?;
                            f.write_all(&out)
                        })
                        .map(|()| Outcome::New {
                            hash,
                            clen: out.len() as u32,
                            tmp: tmp.clone(),
                        })
                        .map_err(|source| CaptureError::WriteChunk {
                            chunk,
                            path: tmp,
                            source,
                        })
                }
            }
        };
        let len = job.len as u64;
        let _ = free_tx.send(job.buf);
        let msg = match outcome {
            Ok(outcome) => Msg::Done {
                index: job.index,
                len,
                outcome,
                used: job.used,
            },
            Err(e) => Msg::Failed(e),
        };
        if msg_tx.send(msg).is_err() {
            return;
        }
    }
}

/// Chunk files are synced and renamed into `chunks/` by a few syncer threads, so the waits on the
/// store's disk overlap the hashing and compressing: a file is only ever visible under its final name
/// once its bytes are on stable storage (fdatasync of that file alone, not of the whole filesystem).
const SYNCERS: usize = 4;

struct Pending {
    hash: ChunkHash,
    tmp: PathBuf,
}

/// What the syncers share: touched `chunks/ab/` folders and the first error.
#[derive(Default)]
struct SyncState {
    dirs: Mutex<HashSet<PathBuf>>,
    error: Mutex<Option<CaptureError>>,
}

fn sync_and_rename(store: &Store, p: &Pending, state: &SyncState) -> Result<(), StoreError> {
    fs::File::open(&p.tmp)
        .and_then(|f| f.sync_data())
        .map_err(io_err(&p.tmp, format!("syncing chunk {}", p.hash)))?;
    let dest = store.chunk_path(&p.hash);
    let dir = dest.parent().expect("chunks/ab").to_path_buf();
    if !state.dirs.lock().expect("dirs").contains(&dir) {
        fs::create_dir_all(&dir).map_err(io_err(&dir, "creating chunk folder"))?;
        state.dirs.lock().expect("dirs").insert(dir);
    }
    fs::rename(&p.tmp, &dest).map_err(io_err(&dest, "renaming chunk into place"))
}

fn syncer(store: &Store, rx: &Mutex<Receiver<Pending>>, state: &SyncState, stop: &AtomicBool) {
    loop {
        let p = match rx.lock().expect("sync queue").recv() {
            Ok(p) => p,
            Err(_) => return,
        };
        if stop.load(Ordering::Relaxed) {
            continue; // drain: the capture failed, its tmp files are removed afterwards
        }
        if let Err(e) = sync_and_rename(store, &p, state) {
            stop.store(true, Ordering::Relaxed);
            state
                .error
                .lock()
                .expect("error slot")
                .get_or_insert(e.into());
        }
    }
}

fn commit_chunks(
    msg_rx: Receiver<Msg>,
    sync_tx: SyncSender<Pending>,
    count: u64,
    disk_size: u64,
    chunk: u64,
    stop: &AtomicBool,
    progress: &(dyn Fn(&CaptureProgress) + Sync),
) -> Result<Entries, CaptureError> {
    let mut entries: Entries = vec![(false, None); count as usize];
    let mut written: HashMap<ChunkHash, u32> = HashMap::new();
    let mut p = CaptureProgress {
        bytes_total: disk_size,
        chunks_total: count,
        ..Default::default()
    };
    while p.chunks_done < count {
        if stop.load(Ordering::Relaxed) {
            // A syncer failed; run_pipeline reports its error.
            return Err(CaptureError::Store(StoreError::Io {
                path: PathBuf::new(),
                op: "syncing chunks".into(),
                source: std::io::Error::other("stopped"),
            }));
        }
        let Ok(msg) = msg_rx.recv() else {
            return Err(CaptureError::Store(StoreError::Io {
                path: PathBuf::new(),
                op: "capture pipeline".into(),
                source: std::io::Error::other("a capture worker stopped unexpectedly"),
            }));
        };
        let (index, len, outcome, used) = match msg {
            Msg::Done {
                index,
                len,
                outcome,
                used,
            } => (index, len, outcome, used),
            Msg::Failed(e) => return Err(e),
        };
        let offset = index * chunk;
        let entry = |sha256: Option<ChunkHash>, clen: Option<u32>| ChunkEntry {
            offset,
            len: len as u32,
            sha256,
            compressed_len: clen,
            used: used.clone(),
        };
        entries[index as usize] = match outcome {
            Outcome::Zero | Outcome::Unused => (false, Some(entry(None, None))),
            Outcome::Existing { hash, clen } => (false, Some(entry(Some(hash), Some(clen)))),
            Outcome::New { hash, clen, tmp } => {
                if let Some(&c) = written.get(&hash) {
                    // Two identical chunks compressed at once: keep the first.
                    let _ = fs::remove_file(&tmp);
                    (false, Some(entry(Some(hash), Some(c))))
                } else {
                    written.insert(hash, clen);
                    if sync_tx.send(Pending { hash, tmp }).is_err() {
                        return Err(CaptureError::Store(StoreError::Io {
                            path: PathBuf::new(),
                            op: "syncing chunks".into(),
                            source: std::io::Error::other("syncers stopped"),
                        }));
                    }
                    (true, Some(entry(Some(hash), Some(clen))))
                }
            }
        };
        p.chunks_done += 1;
        p.bytes_done += len;
        progress(&p);
    }
    Ok(entries)
}
