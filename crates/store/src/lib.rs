//! Content-addressed image store: disks cut into fixed-size chunks named by their sha256, stored
//! zstd-compressed once however many images use them, described by signed manifests; and the disks
//! themselves ([`disk`], a leaf: block devices and image files) with the verified delta
//! [`restore`] that writes an image onto one.
//!
//! Layout of a store directory (see `docs/IMAGE-STORE.md`):
//!
//! ```text
//! store.lock                 flock: shared by capture/restore/verify/rm, exclusive by gc
//! chunks/ab/abcdef….zst      one zstd frame per chunk, named by the sha256 of the uncompressed bytes
//! images/<image id>.manifest signed manifest envelopes; the file name is the sha256 of the manifest
//! trusted-signers/*.pub      public keys whose signatures this store accepts
//! tmp/                       files being written (renamed into place when complete; gc empties it)
//! restores/                  progress files of restores, so a crashed restore resumes
//! ```
//!
//! Invariants: a file under `chunks/` always holds the complete, synced frame of the chunk it is named
//! after (written to `tmp/`, synced, renamed); an image is visible only once its manifest is renamed
//! into `images/`, which happens after every chunk it names is in place and synced; gc runs only under
//! the exclusive lock, so never while a capture (which holds the shared lock) may still need a chunk.

pub mod archive;
pub mod capture;
pub mod chunk;
pub mod diff;
pub mod disk;
pub mod fit;
pub mod keys;
pub mod lockfile;
pub mod manifest;
pub mod masked;
pub mod restore;
pub mod verify;

/// The layout crate (partition tables, allocation maps) the store captures through.
pub use roomcast_layout as layout;

use chunk::{ChunkError, ChunkHash};
use keys::{KeyError, TrustedSigners};
use manifest::{ImageId, ManifestError, UnverifiedManifest, VerifiedManifest};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Environment variable naming the default store directory.
pub const STORE_ENV: &str = "ROOMCAST_STORE";
/// Store directory when neither `--store` nor [`STORE_ENV`] is given.
pub const DEFAULT_STORE: &str = "/var/lib/roomcast/store";

/// Errors of store operations; each names the file, image or chunk concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory is not a store.
    #[error("{0}: not a roomcast store (no chunks/ folder); `roomcast image capture` creates one")]
    NoStore(PathBuf),
    /// An I/O error on a file of the store.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: String,
        /// The error.
        source: std::io::Error,
    },
    /// Another process holds the lock in a conflicting mode.
    #[error("{0}: store busy: a capture, restore or verify is running (gc needs the store alone)")]
    Busy(PathBuf),
    /// A manifest file that does not parse or verify.
    #[error("{path}: {source}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        source: ManifestError,
    },
    /// A manifest file whose name is not the sha256 of its manifest bytes.
    #[error(
        "{path}: manifest bytes hash to {actual}, not the id in the file name: the file was altered"
    )]
    IdMismatch {
        /// The manifest file.
        path: PathBuf,
        /// sha256 of the bytes found.
        actual: ImageId,
    },
    /// No image matches an id or prefix.
    #[error("no image {0} in the store")]
    UnknownImage(String),
    /// A prefix that matches several images.
    #[error("image id prefix {0} matches {1} images; give more characters")]
    AmbiguousImage(String, usize),
    /// A chunk the manifest needs is not in the store.
    #[error("{chunk}: missing from the store ({path})", chunk = .chunk)]
    MissingChunk {
        /// The chunk.
        chunk: chunk::ChunkRef,
        /// Where it should be.
        path: PathBuf,
    },
    /// A stored chunk whose bytes do not match the manifest.
    #[error("{path}: {source}")]
    BadChunk {
        /// The chunk file.
        path: PathBuf,
        /// What is wrong.
        source: ChunkError,
    },
    /// A key file problem.
    #[error(transparent)]
    Key(#[from] KeyError),
}

pub(crate) fn io_err(
    path: &Path,
    op: impl Into<String>,
) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    let op = op.into();
    move |source| StoreError::Io { path, op, source }
}

/// An open store directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A held store lock (released on drop).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

const SUBDIRS: [&str; 5] = ["chunks", "images", "trusted-signers", "tmp", "restores"];

impl Store {
    /// Opens an existing store.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        if !root.join("chunks").is_dir() {
            return Err(StoreError::NoStore(root.to_path_buf()));
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// Opens a store, creating its folders if needed.
    pub fn open_or_create(root: &Path) -> Result<Self, StoreError> {
        for d in SUBDIRS {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p, "creating folder"))?;
        }
        Self::open(root)
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where trusted public keys live.
    pub fn trusted_dir(&self) -> PathBuf {
        self.root.join("trusted-signers")
    }

    /// Folder for files being written; same filesystem as the rest, so rename is atomic.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Folder of restore progress files.
    pub fn restores_dir(&self) -> PathBuf {
        self.root.join("restores")
    }

    /// The file of chunk `hash`: `chunks/ab/abcdef….zst`.
    pub fn chunk_path(&self, hash: &ChunkHash) -> PathBuf {
        let h = hash.to_hex();
        self.root
            .join("chunks")
            .join(&h[..2])
            .join(format!("{h}.zst"))
    }

    /// The manifest file of image `id`.
    pub fn manifest_path(&self, id: &ImageId) -> PathBuf {
        self.root
            .join("images")
            .join(format!("{}.manifest", id.to_hex()))
    }

    fn lock_file(&self) -> Result<File, StoreError> {
        let p = self.root.join("store.lock");
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&p)
            .map_err(io_err(&p, "opening lock"))
    }

    /// Shared lock: held by anything that reads or adds chunks (capture, restore, verify, rm).
    /// Waits while a gc runs.
    pub fn lock_shared(&self) -> Result<StoreLock, StoreError> {
        let f = self.lock_file()?;
        f.lock_shared()
            .map_err(io_err(&self.root.join("store.lock"), "locking"))?;
        Ok(StoreLock { _file: f })
    }

    /// Exclusive lock for gc; fails with [`StoreError::Busy`] if anyone still holds the store after
    /// the short wait of [`crate::lockfile::try_lock_exclusive`].
    pub fn try_lock_exclusive(&self) -> Result<StoreLock, StoreError> {
        let f = self.lock_file()?;
        match crate::lockfile::try_lock_exclusive(&f) {
            Ok(true) => Ok(StoreLock { _file: f }),
            Ok(false) => Err(StoreError::Busy(self.root.clone())),
            Err(e) => Err(io_err(&self.root.join("store.lock"), "locking")(e)),
        }
    }

    /// The trusted signers of this store.
    pub fn trusted(&self) -> Result<TrustedSigners, StoreError> {
        Ok(TrustedSigners::load_dir(&self.trusted_dir())?)
    }

    /// Adds a public key file to the trusted signers (as `<fingerprint>.pub`).
    pub fn trust(&self, pub_file: &Path) -> Result<String, StoreError> {
        let key = keys::load_public(pub_file)?;
        let fp = keys::fingerprint(&key);
        let dest = self.trusted_dir().join(format!("{fp}.pub"));
        let pem = fs::read(pub_file).map_err(io_err(pub_file, "reading"))?;
        self.write_atomic(&dest, &pem)?;
        Ok(fp)
    }

    /// Size of the stored frame of `hash`, or `None` if the store lacks it.
    pub fn chunk_len(&self, hash: &ChunkHash) -> Option<u64> {
        fs::metadata(self.chunk_path(hash)).ok().map(|m| m.len())
    }

    /// The compressed bytes of a chunk, as stored (what the multicast sends as one block).
    pub fn read_chunk_compressed(&self, hash: &ChunkHash) -> Result<Vec<u8>, StoreError> {
        let p = self.chunk_path(hash);
        fs::read(&p).map_err(io_err(&p, format!("reading chunk {hash}")))
    }

    /// Reads chunk `index` of `manifest`, decompresses it and checks its sha256: the bytes returned
    /// are exactly what the signed manifest says goes at that offset.
    pub fn read_chunk_verified(
        &self,
        manifest: &VerifiedManifest,
        index: usize,
    ) -> Result<Vec<u8>, StoreError> {
        let e = &manifest.chunks[index];
        let r = e
            .chunk_ref(index as u64)
            .expect("read_chunk_verified is for data chunks");
        let p = self.chunk_path(&r.sha256);
        let z = match fs::read(&p) {
            Ok(z) => z,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::MissingChunk { chunk: r, path: p });
            }
            Err(e) => return Err(io_err(&p, format!("reading {r}"))(e)),
        };
        chunk::decode_verified(r, e.len as u64, &z)
            .map_err(|source| StoreError::BadChunk { path: p, source })
    }

    /// Adds the zstd frame of chunk `hash` that the caller has already verified (decompressed and
    /// hashed): synced temporary file, rename into `chunks/ab/`, folder sync. A chunk the store holds
    /// already is left as it is. Returns whether the file was new.
    pub fn insert_chunk(&self, hash: &ChunkHash, compressed: &[u8]) -> Result<bool, StoreError> {
        let dest = self.chunk_path(hash);
        if dest.exists() {
            return Ok(false);
        }
        let dir = dest.parent().expect("chunks/ab");
        fs::create_dir_all(dir).map_err(io_err(dir, "creating chunk folder"))?;
        // Unique per writer: two uploads of the same chunk at once must not share a temporary file.
        let tmp = self.tmp_dir().join(format!(
            "upload-{}-{}-{}.tmp",
            hash.to_hex(),
            std::process::id(),
            rand::random::<u64>()
        ));
        let written = File::create(&tmp)
            .and_then(|mut f| f.write_all(compressed).and_then(|()| f.sync_data()))
            .map_err(io_err(&tmp, format!("writing chunk {hash}")));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&dest, "renaming chunk into place")(e));
        }
        sync_dir(dir)?;
        Ok(true)
    }

    /// Writes `bytes` to `dest` via a synced temporary file and a rename, then syncs the folder.
    pub fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = self.tmp_dir().join(format!(
            "{}.{}.tmp",
            dest.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let mut f = File::create(&tmp).map_err(io_err(&tmp, "creating"))?;
        f.write_all(bytes).map_err(io_err(&tmp, "writing"))?;
        f.sync_all().map_err(io_err(&tmp, "syncing"))?;
        drop(f);
        fs::rename(&tmp, dest).map_err(io_err(dest, "renaming into place"))?;
        sync_dir(dest.parent().expect("store files live in a folder"))
    }

    /// Ids of all images (manifest file names), sorted.
    pub fn image_ids(&self) -> Result<Vec<ImageId>, StoreError> {
        let dir = self.root.join("images");
        let mut ids = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(&dir, "listing"))? {
            let name = e.map_err(io_err(&dir, "listing"))?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_suffix(".manifest")
                .and_then(|h| h.parse::<ImageId>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Finds the image whose id starts with `prefix` (hex).
    pub fn resolve(&self, prefix: &str) -> Result<ImageId, StoreError> {
        let p = prefix.to_ascii_lowercase();
        let hits: Vec<ImageId> = self
            .image_ids()?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&p))
            .collect();
        match hits.len() {
            0 => Err(StoreError::UnknownImage(prefix.to_string())),
            1 => Ok(hits[0]),
            n => Err(StoreError::AmbiguousImage(prefix.to_string(), n)),
        }
    }

    /// Reads and parses a manifest without checking trust, and checks its bytes match its file name.
    pub fn open_unverified(&self, id: &ImageId) -> Result<UnverifiedManifest, StoreError> {
        let path = self.manifest_path(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::UnknownImage(id.to_hex()));
            }
            Err(e) => return Err(io_err(&path, "reading manifest")(e)),
        };
        let m =
            UnverifiedManifest::from_envelope(&bytes).map_err(|source| StoreError::Manifest {
                path: path.clone(),
                source,
            })?;
        if m.id() != *id {
            return Err(StoreError::IdMismatch {
                path,
                actual: m.id(),
            });
        }
        Ok(m)
    }

    /// Reads a manifest and verifies its signature against this store's trusted signers.
    pub fn open_verified(&self, id: &ImageId) -> Result<VerifiedManifest, StoreError> {
        let trusted = self.trusted()?;
        let path = self.manifest_path(id);
        self.open_unverified(id)?
            .verify(&trusted)
            .map_err(|source| StoreError::Manifest { path, source })
    }

    /// Makes an image visible: writes its signed envelope as `images/<id>.manifest` (the last write
    /// of a capture).
    pub fn commit_manifest(&self, id: &ImageId, envelope: &[u8]) -> Result<(), StoreError> {
        self.write_atomic(&self.manifest_path(id), envelope)
    }

    /// Removes an image's manifest; its chunks stay until `gc`.
    pub fn remove_image(&self, id: &ImageId) -> Result<(), StoreError> {
        let _lock = self.lock_shared()?;
        let p = self.manifest_path(id);
        fs::remove_file(&p).map_err(io_err(&p, "removing manifest"))?;
        sync_dir(p.parent().expect("in images/"))
    }

    /// Deletes chunks no manifest names, and leftovers of crashed writers in `tmp/`. Runs only when no
    /// capture, restore or verify holds the store; refuses to delete anything if a manifest is unreadable
    /// (its chunks could be the ones that look unused).
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let _lock = self.try_lock_exclusive()?;
        let mut live = HashSet::new();
        for id in self.image_ids()? {
            let m = self.open_unverified(&id)?;
            live.extend(
                m.manifest_unchecked()
                    .chunks
                    .iter()
                    .filter_map(|c| c.sha256),
            );
        }
        let mut report = GcReport::default();
        let chunks = self.root.join("chunks");
        for sub in fs::read_dir(&chunks).map_err(io_err(&chunks, "listing"))? {
            let sub = sub.map_err(io_err(&chunks, "listing"))?.path();
            if !sub.is_dir() {
                continue;
            }
            for f in fs::read_dir(&sub).map_err(io_err(&sub, "listing"))? {
                let f = f.map_err(io_err(&sub, "listing"))?.path();
                let name = f.file_name().unwrap_or_default().to_string_lossy();
                let keep = name
                    .strip_suffix(".zst")
                    .and_then(|h| h.parse::<ChunkHash>().ok())
                    .is_some_and(|h| live.contains(&h));
                if !keep {
                    let len = fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
                    fs::remove_file(&f).map_err(io_err(&f, "removing unused chunk"))?;
                    report.chunks_removed += 1;
                    report.bytes_freed += len;
                }
            }
        }
        let tmp = self.tmp_dir();
        for f in fs::read_dir(&tmp).map_err(io_err(&tmp, "listing"))? {
            let f = f.map_err(io_err(&tmp, "listing"))?.path();
            let len = fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&f).map_err(io_err(&f, "removing leftover"))?;
            report.tmp_removed += 1;
            report.bytes_freed += len;
        }
        report.chunks_kept = live.len() as u64;
        Ok(report)
    }
}

/// What `gc` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Chunk files deleted (named by no manifest).
    pub chunks_removed: u64,
    /// Leftover temporary files deleted.
    pub tmp_removed: u64,
    /// Bytes given back.
    pub bytes_freed: u64,
    /// Distinct chunks still referenced.
    pub chunks_kept: u64,
}

/// fsync of a folder, so the renames into it survive a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "syncing folder"))
}
