//! The region's image repository: a bucket of an S3 object store (Garage, run by the region across
//! its sites) holding the same two kinds of things as a local store, under a prefix:
//!
//! ```text
//! s3://BUCKET/PREFIX/chunks/ab/abcdef….zst       one zstd frame per chunk, named by its sha256
//! s3://BUCKET/PREFIX/images/<image id>.manifest  signed manifest envelopes, written last
//! ```
//!
//! [`push`] uploads what the bucket lacks, then the manifest; [`pull`] fetches what the local store
//! lacks, checks each chunk against the signed manifest before it enters the store, and makes the image
//! visible last; [`list`] reads what the region publishes. Trust stays the local store's: a manifest
//! is accepted only when signed by a key in the store's `trusted-signers/` (the region's key, which a
//! school trusts with `roomcast key trust`).
//!
//! The S3 code lives here, in the tool, not in the store crate: it brings tokio, an HTTP client and
//! TLS, which the store crate (also built into the PC agent) must not carry. It uses only the store's
//! public gates: `decode_verified`, `insert_chunk`, `commit_manifest`.
//!
//! Invariants: nothing here prints (the CLI does) nor logs a credential; a chunk enters the local
//! store only after its bytes decompressed to the length and sha256 of a manifest that verified; a
//! manifest enters the bucket only after every chunk it names is there, and the local store only
//! after every chunk it names is in the store; memory is bounded by `jobs` chunks in flight.

mod client;
mod transfer;

pub use client::{
    AUTO_JOBS_BYTES, Access, Credentials, Remote, RemoteOptions, RemoteUrl, Traffic, auto_jobs,
};
pub use transfer::{
    PullReport, PushReport, RemoteImage, TransferProgress, find_local, find_published, list, pull,
    pull_base_image, push, resolve,
};

use roomcast_store::StoreError;
use roomcast_store::chunk::ChunkError;
use roomcast_store::manifest::{ImageId, ManifestError};

/// Environment variable naming the S3 endpoint (`--endpoint`).
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL";
/// Environment variable naming the S3 region (`--s3-region`); Garage's default is `garage`.
pub const REGION_ENV: &str = "AWS_REGION";
/// Environment variables of the access key, read when set (never printed).
pub const KEY_ID_ENV: &str = "AWS_ACCESS_KEY_ID";
/// Environment variable of the secret key.
pub const SECRET_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";
/// Secret references used when the environment has no key: `ROOMCAST_SECRET_S3_ACCESS_KEY_ID` or
/// `S3_ACCESS_KEY_ID=` in the secrets file.
pub const KEY_ID_SECRET: &str = "secret:S3_ACCESS_KEY_ID";
/// Secret reference of the secret key.
pub const SECRET_KEY_SECRET: &str = "secret:S3_SECRET_ACCESS_KEY";

/// Largest manifest read from a bucket (a 2 TB disk in 1 MiB chunks is about 300 MB of JSON).
pub const MAX_MANIFEST_BYTES: u64 = 512 << 20;

/// Errors of the region repository; each names the object, image or chunk concerned. None holds
/// a credential.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    /// A repository URL that is not `s3://bucket[/prefix]`.
    #[error("{url}: {reason}")]
    Url {
        /// What was given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Missing or unusable configuration (endpoint, credentials).
    #[error("{0}")]
    Config(String),
    /// A request to the object store failed (after its retries).
    #[error("{object}: {op}: {source}")]
    S3 {
        /// `s3://bucket/key` of the object or prefix.
        object: String,
        /// What was being done.
        op: &'static str,
        /// The client's error.
        source: object_store::Error,
    },
    /// The bucket has no such image.
    #[error("{repo}: no image {id}")]
    UnknownImage {
        /// The repository URL.
        repo: String,
        /// The id or prefix asked for.
        id: String,
    },
    /// A prefix that matches several images of the bucket.
    #[error("{repo}: image id prefix {id} matches {count} images; give more characters")]
    AmbiguousImage {
        /// The repository URL.
        repo: String,
        /// The prefix.
        id: String,
        /// How many match.
        count: usize,
    },
    /// A manifest object that does not parse, is not signed by a trusted key, or whose signature
    /// does not verify: refused, nothing of the image is fetched.
    #[error("{object}: refused: {source}")]
    Manifest {
        /// The manifest object.
        object: String,
        /// Why.
        source: ManifestError,
    },
    /// A manifest object whose bytes do not hash to the id in its name.
    #[error("{object}: refused: manifest bytes hash to {actual}, not the id in the object name")]
    IdMismatch {
        /// The manifest object.
        object: String,
        /// sha256 of the bytes found.
        actual: ImageId,
    },
    /// An object bigger than it may be (a manifest over [`MAX_MANIFEST_BYTES`], a chunk whose size
    /// is not the manifest's `compressed_len`): refused without reading it.
    #[error("{object}: refused: {size} bytes, expected {expected}")]
    Size {
        /// The object.
        object: String,
        /// Its size in the bucket.
        size: u64,
        /// What the manifest says (or the limit).
        expected: String,
    },
    /// A chunk object whose bytes do not match the signed manifest: refused, not stored.
    #[error("{object}: refused: {source}")]
    BadChunk {
        /// The chunk object.
        object: String,
        /// What is wrong.
        source: ChunkError,
    },
    /// A chunk the manifest names is not in the bucket (an incomplete or damaged repository).
    #[error("{object}: missing from the repository ({chunk})")]
    MissingChunk {
        /// The chunk object.
        object: String,
        /// The chunk.
        chunk: roomcast_store::chunk::ChunkRef,
    },
    /// The local store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A worker task died.
    #[error("transfer task: {0}")]
    Task(String),
}

impl RegionError {
    /// A refusal of what the bucket holds (bad signature, altered chunk or manifest): a finding,
    /// exit 1; everything else stopped the command (exit 2).
    pub fn is_finding(&self) -> bool {
        matches!(
            self,
            RegionError::Manifest { .. }
                | RegionError::IdMismatch { .. }
                | RegionError::Size { .. }
                | RegionError::BadChunk { .. }
                | RegionError::MissingChunk { .. }
        )
    }
}
