//! Push, pull and list: the transfers between a local store and the region's bucket.
//!
//! Both directions move only what the other side lacks (the bucket is listed once on push; the local
//! store answers by `stat` on pull), with at most `jobs` chunks in flight, and write the manifest last,
//! so an interrupted transfer (killed, network gone) leaves complete objects or files and no visible
//! image: run again, it moves only what is still missing.

use super::{MAX_MANIFEST_BYTES, RegionError, Remote};
use roomcast_store::chunk::{self, ChunkRef};
use roomcast_store::keys::TrustedSigners;
use roomcast_store::manifest::{ImageId, Manifest, UnverifiedManifest};
use roomcast_store::{Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use tokio::task::JoinSet;

/// Where a push or pull is: chunks and compressed bytes moved of those to move.
#[derive(Debug, Clone, Copy, Default)]
pub struct TransferProgress {
    /// Chunks moved.
    pub chunks_done: u64,
    /// Chunks to move.
    pub chunks_total: u64,
    /// Compressed bytes moved.
    pub bytes_done: u64,
    /// Compressed bytes to move.
    pub bytes_total: u64,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// The image.
    pub id: ImageId,
    /// Distinct data chunks of the image.
    pub chunks: u64,
    /// Of those, already in the bucket.
    pub present: u64,
    /// Uploaded now.
    pub uploaded: u64,
    /// Compressed bytes uploaded (chunks).
    pub uploaded_bytes: u64,
    /// Requests made (listing pages, PUTs).
    pub requests: u64,
    /// Payload bytes sent, manifest included.
    pub bytes_out: u64,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The image.
    pub id: ImageId,
    /// Fingerprint of the (trusted) key that signed it.
    pub signer: String,
    /// Distinct data chunks of the image.
    pub chunks: u64,
    /// Of those, already in the local store.
    pub present: u64,
    /// Fetched now.
    pub fetched: u64,
    /// Compressed bytes fetched (chunks).
    pub fetched_bytes: u64,
    /// Bytes of the manifest object.
    pub manifest_bytes: u64,
    /// The image was already visible in the store before this pull.
    pub already_visible: bool,
    /// Requests made.
    pub requests: u64,
    /// Payload bytes received, manifest included.
    pub bytes_in: u64,
}

/// One image of the bucket, as `image list --from` shows it: its manifest, unverified (the caller
/// checks the signature against its own trusted signers), or why it could not be read.
#[derive(Debug)]
pub struct RemoteImage {
    /// The id from the object name.
    pub id: ImageId,
    /// The manifest, or what is wrong with the object.
    pub manifest: Result<UnverifiedManifest, RegionError>,
}

/// A distinct data chunk of a manifest: where it first appears, its length and its stored size.
#[derive(Debug, Clone)]
struct Wanted {
    chunk: ChunkRef,
    len: u64,
    compressed_len: u64,
}

fn distinct_chunks(m: &Manifest) -> Vec<Wanted> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, e) in m.chunks.iter().enumerate() {
        if let (Some(r), Some(clen)) = (e.chunk_ref(i as u64), e.compressed_len)
            && seen.insert(r.sha256)
        {
            out.push(Wanted {
                chunk: r,
                len: e.len as u64,
                compressed_len: clen as u64,
            });
        }
    }
    out
}

fn runtime() -> Result<tokio::runtime::Runtime, RegionError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RegionError::Task(format!("starting the runtime: {e}")))
}

/// Runs `work` for each item, at most `jobs` at once; stops starting new ones at the first error
/// and returns it once those in flight have ended. `done` sees each item's result (bytes moved).
/// Moves the `missing` chunks (`work` uploads or fetches one and returns its bytes), `jobs` at a
/// time, reporting progress over them: the one loop of push and pull. Returns the bytes moved.
async fn move_chunks<F>(
    missing: Vec<Wanted>,
    jobs: usize,
    progress: &(dyn Fn(&TransferProgress) + Sync),
    work: impl Fn(Wanted) -> F,
) -> Result<u64, RegionError>
where
    F: Future<Output = Result<u64, RegionError>> + Send + 'static,
{
    let mut p = TransferProgress {
        chunks_total: missing.len() as u64,
        bytes_total: missing.iter().map(|w| w.compressed_len).sum(),
        ..TransferProgress::default()
    };
    progress(&p);
    bounded(missing, jobs, work, |n| {
        p.chunks_done += 1;
        p.bytes_done += n;
        progress(&p);
    })
    .await?;
    Ok(p.bytes_done)
}

async fn bounded<T, F>(
    items: Vec<T>,
    jobs: usize,
    work: impl Fn(T) -> F,
    mut done: impl FnMut(u64),
) -> Result<(), RegionError>
where
    F: Future<Output = Result<u64, RegionError>> + Send + 'static,
{
    let mut set = JoinSet::new();
    let mut items = items.into_iter();
    let mut first_err = None;
    loop {
        while first_err.is_none() && set.len() < jobs {
            match items.next() {
                Some(item) => {
                    set.spawn(work(item));
                }
                None => break,
            }
        }
        match set.join_next().await {
            None => break,
            Some(Ok(Ok(n))) => done(n),
            Some(Ok(Err(e))) => {
                first_err.get_or_insert(e);
            }
            Some(Err(e)) => {
                first_err.get_or_insert(RegionError::Task(e.to_string()));
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// The image of the bucket whose id is `id` or starts with it. A full id costs no request.
pub async fn resolve(remote: &Remote, id: &str) -> Result<ImageId, RegionError> {
    if let Ok(full) = id.parse::<ImageId>() {
        return Ok(full);
    }
    let p = id.to_ascii_lowercase();
    let hits: Vec<ImageId> = remote_ids(remote)
        .await?
        .into_iter()
        .filter(|i| i.to_hex().starts_with(&p))
        .collect();
    match hits.len() {
        0 => Err(RegionError::UnknownImage {
            repo: remote.url.to_string(),
            id: id.to_string(),
        }),
        1 => Ok(hits[0]),
        count => Err(RegionError::AmbiguousImage {
            repo: remote.url.to_string(),
            id: id.to_string(),
            count,
        }),
    }
}

async fn remote_ids(remote: &Remote) -> Result<Vec<ImageId>, RegionError> {
    let mut ids: Vec<ImageId> = remote
        .list(&remote.url.images_prefix())
        .await?
        .into_iter()
        .filter_map(|(key, _)| {
            key.rsplit('/')
                .next()?
                .strip_suffix(".manifest")?
                .parse()
                .ok()
        })
        .collect();
    ids.sort();
    Ok(ids)
}

/// Reads, parses and checks the manifest object of `id` (size bound, id = sha256 of its bytes); the
/// signature is the caller's to check. Returns the envelope bytes too.
async fn fetch_manifest(
    remote: &Remote,
    id: &ImageId,
) -> Result<(UnverifiedManifest, Vec<u8>), RegionError> {
    let key = remote.url.manifest_key(id);
    let object = remote.url.object(&key);
    let envelope = remote
        .get(&key, |n| {
            if n <= MAX_MANIFEST_BYTES {
                Ok(())
            } else {
                Err(format!("at most {MAX_MANIFEST_BYTES} for a manifest"))
            }
        })
        .await?
        .ok_or_else(|| RegionError::UnknownImage {
            repo: remote.url.to_string(),
            id: id.to_hex(),
        })?;
    let u =
        UnverifiedManifest::from_envelope(&envelope).map_err(|source| RegionError::Manifest {
            object: object.clone(),
            source,
        })?;
    if u.id() != *id {
        return Err(RegionError::IdMismatch {
            object,
            actual: u.id(),
        });
    }
    Ok((u, envelope))
}

/// Every image the bucket publishes, sorted by id.
pub fn list(remote: &Remote) -> Result<Vec<RemoteImage>, RegionError> {
    runtime()?.block_on(async {
        let mut out = Vec::new();
        for id in remote_ids(remote).await? {
            let manifest = fetch_manifest(remote, &id).await.map(|(u, _)| u);
            out.push(RemoteImage { id, manifest });
        }
        Ok(out)
    })
}

/// Uploads image `id` (or unique prefix) of `store` to the bucket: the chunks the bucket lacks (or
/// holds with another size), each checked against the signed manifest first, then the manifest.
pub fn push(
    store: &Store,
    remote: &Remote,
    id: &str,
    progress: &(dyn Fn(&TransferProgress) + Sync),
) -> Result<PushReport, RegionError> {
    let id = store.resolve(id)?;
    // Only an image this store trusts leaves it.
    let m = store.open_verified(&id)?;
    let _lock = store.lock_shared()?;
    runtime()?.block_on(async {
        let present: HashMap<String, u64> = remote
            .list(&remote.url.chunks_prefix())
            .await?
            .into_iter()
            .collect();
        let wanted = distinct_chunks(&m);
        let chunks = wanted.len() as u64;
        let missing: Vec<Wanted> = wanted
            .into_iter()
            .filter(|w| {
                present.get(&remote.url.chunk_key(&w.chunk.sha256)) != Some(&w.compressed_len)
            })
            .collect();
        let uploaded = missing.len() as u64;
        let moved = move_chunks(missing, remote.jobs(m.chunk_size), progress, |w| {
            upload_chunk(remote.clone(), store.clone(), w)
        })
        .await?;
        // Last: the image exists in the bucket only once every chunk it names is there.
        remote
            .put(&remote.url.manifest_key(&id), m.envelope())
            .await?;
        let (requests, _, bytes_out) = remote.traffic.snapshot();
        Ok(PushReport {
            id,
            chunks,
            present: chunks - uploaded,
            uploaded,
            uploaded_bytes: moved,
            requests,
            bytes_out,
        })
    })
}

async fn upload_chunk(remote: Remote, store: Store, w: Wanted) -> Result<u64, RegionError> {
    let hash = w.chunk.sha256;
    let body = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, RegionError> {
        let z = store.read_chunk_compressed(&w.chunk.sha256)?;
        // A damaged local chunk must not become the region's copy.
        chunk::decode_verified(w.chunk.clone(), w.len, &z).map_err(|source| {
            roomcast_store::StoreError::BadChunk {
                path: store.chunk_path(&w.chunk.sha256),
                source,
            }
        })?;
        Ok(z)
    })
    .await
    .map_err(|e| RegionError::Task(e.to_string()))??;
    let n = body.len() as u64;
    remote.put(&remote.url.chunk_key(&hash), body).await?;
    Ok(n)
}

/// Fetches image `id` (or unique prefix) from the bucket into `store`: the manifest first, refused
/// unless signed by a key the store trusts; then the chunks the store lacks, each decompressed and
/// checked against the manifest before it enters the store; the manifest is committed last.
pub fn pull(
    store: &Store,
    remote: &Remote,
    id: &str,
    progress: &(dyn Fn(&TransferProgress) + Sync),
) -> Result<PullReport, RegionError> {
    let trusted = store.trusted()?;
    runtime()?.block_on(async {
        let id = resolve(remote, id).await?;
        let (u, envelope) = fetch_manifest(remote, &id).await?;
        let object = remote.url.object(&remote.url.manifest_key(&id));
        let m = u
            .verify(&trusted)
            .map_err(|source| RegionError::Manifest { object, source })?;
        let _lock = store.lock_shared()?;
        let already_visible = store.manifest_path(&id).exists();
        let wanted = distinct_chunks(&m);
        let chunks = wanted.len() as u64;
        let missing: Vec<Wanted> = wanted
            .into_iter()
            .filter(|w| store.chunk_len(&w.chunk.sha256) != Some(w.compressed_len))
            .collect();
        let fetched = missing.len() as u64;
        let moved = move_chunks(missing, remote.jobs(m.chunk_size), progress, |w| {
            fetch_chunk(remote.clone(), store.clone(), w)
        })
        .await?;
        if !already_visible {
            store.commit_manifest(&id, &envelope)?;
        }
        let (requests, bytes_in, _) = remote.traffic.snapshot();
        Ok(PullReport {
            id,
            signer: m.signer_fingerprint(),
            chunks,
            present: chunks - fetched,
            fetched,
            fetched_bytes: moved,
            manifest_bytes: envelope.len() as u64,
            already_visible,
            requests,
            bytes_in,
        })
    })
}

async fn fetch_chunk(remote: Remote, store: Store, w: Wanted) -> Result<u64, RegionError> {
    let key = remote.url.chunk_key(&w.chunk.sha256);
    let object = remote.url.object(&key);
    let expected = w.compressed_len;
    let chunk = w.chunk.clone();
    let body = remote
        .get(&key, |n| {
            if n == expected {
                Ok(())
            } else {
                Err(format!("{expected}, the compressed_len of {chunk}"))
            }
        })
        .await?
        .ok_or_else(|| RegionError::MissingChunk {
            object: object.clone(),
            chunk: w.chunk.clone(),
        })?;
    tokio::task::spawn_blocking(move || -> Result<u64, RegionError> {
        // The one gate: nothing enters the store unless it is exactly what the signed manifest names.
        chunk::decode_verified(w.chunk.clone(), w.len, &body)
            .map_err(|source| RegionError::BadChunk { object, source })?;
        store.insert_chunk(&w.chunk.sha256, &body)?;
        Ok(expected)
    })
    .await
    .map_err(|e| RegionError::Task(e.to_string()))?
}

/// The image of `store` that `image` names, when the store has it: `name@version` (the profile's
/// spelling: the one image with that label signed by a key the store trusts), else an id or
/// unique id prefix. `None` when the store has no such image.
pub fn find_local(store: &Store, image: &str) -> Result<Option<ImageId>, StoreError> {
    let Some((name, version)) = image.rsplit_once('@') else {
        return match store.resolve(image) {
            Ok(id) => Ok(Some(id)),
            Err(StoreError::UnknownImage(_)) => Ok(None),
            Err(e) => Err(e),
        };
    };
    let mut hits = Vec::new();
    for id in store.image_ids()? {
        // An image the store cannot verify (foreign signer, damaged) is not the base image.
        if let Ok(m) = store.open_verified(&id)
            && m.label.name == name
            && m.label.version == version
        {
            hits.push(id);
        }
    }
    match hits.len() {
        0 => Ok(None),
        1 => Ok(Some(hits[0])),
        n => Err(StoreError::AmbiguousImage(image.to_string(), n)),
    }
}

/// The image of the bucket that `image` names: `name@version` (the profile's spelling: the one
/// image with that label signed by a key of `trusted`), else an id or unique id prefix. When
/// images carry that label but none is signed by a trusted key, the refusal names the signer.
pub fn find_published(
    remote: &Remote,
    image: &str,
    trusted: &TrustedSigners,
) -> Result<ImageId, RegionError> {
    let Some((name, version)) = image.rsplit_once('@') else {
        return runtime()?.block_on(resolve(remote, image));
    };
    let mut refused = None;
    let hits: Vec<ImageId> = list(remote)?
        .into_iter()
        .filter_map(|img| {
            let u = img.manifest.ok()?;
            let label = &u.manifest_unchecked().label;
            if label.name != name || label.version != version {
                return None;
            }
            match u.verify(trusted) {
                Ok(_) => Some(img.id),
                Err(source) => {
                    refused.get_or_insert(RegionError::Manifest {
                        object: remote.url.object(&remote.url.manifest_key(&img.id)),
                        source,
                    });
                    None
                }
            }
        })
        .collect();
    match hits.len() {
        0 => Err(refused.unwrap_or_else(|| RegionError::UnknownImage {
            repo: remote.url.to_string(),
            id: format!("{image} signed by a trusted key"),
        })),
        1 => Ok(hits[0]),
        count => Err(RegionError::AmbiguousImage {
            repo: remote.url.to_string(),
            id: image.to_string(),
            count,
        }),
    }
}

/// Step b's pull: the base image `image` (`name@version` or id) from the repository `from` into
/// `store`, the client configured by `access` (endpoint, S3 region; the credentials of
/// [`super::Credentials::resolve`] with `access.secrets` as the secrets file).
pub fn pull_base_image(
    store: &Store,
    from: &str,
    image: &str,
    access: &super::Access,
) -> Result<ImageId, RegionError> {
    let url: super::RemoteUrl = from.parse()?;
    let endpoint = access.endpoint.clone().ok_or_else(|| {
        RegionError::Config(format!(
            "no S3 endpoint for the region's repository: set {}",
            super::ENDPOINT_ENV
        ))
    })?;
    let opts = super::RemoteOptions {
        endpoint,
        region: access.s3_region.clone().unwrap_or_else(|| "garage".into()),
        credentials: super::Credentials::resolve(&crate::secrets::SecretStore::new(
            access.secrets.clone(),
        ))?,
        jobs: 0,
        max_rate: None,
    };
    let remote = Remote::connect(url, &opts)?;
    let id = find_published(&remote, image, &store.trusted()?)?;
    Ok(pull(store, &remote, &id.to_hex(), &|_| {})?.id)
}
