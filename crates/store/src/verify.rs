//! `image verify`: checks manifests (id, signature) and re-hashes every chunk they name, reporting each
//! bad chunk by index, offset, sha256 and file.

use super::chunk::{ChunkHash, ChunkRef, decode_verified_into};
use super::manifest::ImageId;
use super::{Store, StoreError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One chunk that is missing or whose bytes do not match the manifests naming it.
#[derive(Debug, Clone)]
pub struct BadChunk {
    /// An image that uses it.
    pub image: ImageId,
    /// Its first use in that image.
    pub chunk: ChunkRef,
    /// How many (image, offset) places use it.
    pub uses: usize,
    /// The chunk file.
    pub path: PathBuf,
    /// What is wrong (missing, truncated, does not decompress, wrong hash...).
    pub problem: String,
}

/// Result of a verification.
#[derive(Debug)]
pub struct VerifyReport {
    /// Each image checked, with the signer fingerprint or why its manifest is refused.
    pub images: Vec<(ImageId, Result<String, StoreError>)>,
    /// Distinct chunks re-hashed.
    pub chunks_checked: u64,
    /// Bad chunks, in order of first use.
    pub bad: Vec<BadChunk>,
}

impl VerifyReport {
    /// True when every manifest verified and every chunk is intact.
    pub fn ok(&self) -> bool {
        self.bad.is_empty() && self.images.iter().all(|(_, r)| r.is_ok())
    }
}

struct Task {
    image: ImageId,
    chunk: ChunkRef,
    len: u64,
    clen: u64,
    uses: usize,
}

/// Verifies the given images (all of them when `ids` is empty). `progress(done, total)` is called
/// after each distinct chunk.
pub fn verify(
    store: &Store,
    ids: &[ImageId],
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<VerifyReport, StoreError> {
    let _lock = store.lock_shared()?;
    let ids = if ids.is_empty() {
        store.image_ids()?
    } else {
        ids.to_vec()
    };
    let mut images = Vec::new();
    let mut tasks: Vec<Task> = Vec::new();
    let mut seen: HashMap<ChunkHash, usize> = HashMap::new();
    for id in ids {
        // Chunks of a manifest that fails its signature are still checked: the report says both.
        let m = match store.open_unverified(&id) {
            Ok(m) => m,
            Err(e) => {
                images.push((id, Err(e)));
                continue;
            }
        };
        let manifest = m.manifest_unchecked().clone();
        let verdict = store.open_verified(&id).map(|v| v.signer_fingerprint());
        images.push((id, verdict));
        for (i, c) in manifest.chunks.iter().enumerate() {
            let Some(r) = c.chunk_ref(i as u64) else {
                continue;
            };
            match seen.get(&r.sha256) {
                Some(&t) => tasks[t].uses += 1,
                None => {
                    seen.insert(r.sha256, tasks.len());
                    tasks.push(Task {
                        image: id,
                        chunk: r,
                        len: c.len as u64,
                        clen: c.compressed_len.unwrap_or(0) as u64,
                        uses: 1,
                    });
                }
            }
        }
    }
    let total = tasks.len() as u64;
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let bad = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(t) = tasks.get(i) else { return };
                    if let Some(problem) = check(store, t, &mut buf) {
                        bad.lock().expect("bad list").push((
                            i,
                            BadChunk {
                                image: t.image,
                                chunk: t.chunk.clone(),
                                uses: t.uses,
                                path: store.chunk_path(&t.chunk.sha256),
                                problem,
                            },
                        ));
                    }
                    let d = done.fetch_add(1, Ordering::Relaxed) as u64 + 1;
                    progress(d, total);
                }
            });
        }
    });
    let mut bad = bad.into_inner().expect("bad list");
    bad.sort_by_key(|(i, _)| *i);
    Ok(VerifyReport {
        images,
        chunks_checked: total,
        bad: bad.into_iter().map(|(_, b)| b).collect(),
    })
}

fn check(store: &Store, t: &Task, buf: &mut Vec<u8>) -> Option<String> {
    let path = store.chunk_path(&t.chunk.sha256);
    let z = match std::fs::read(&path) {
        Ok(z) => z,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some("missing".into()),
        Err(e) => return Some(format!("unreadable: {e}")),
    };
    if z.len() as u64 != t.clen {
        return Some(format!(
            "file is {} bytes, the manifest says {} (truncated or replaced)",
            z.len(),
            t.clen
        ));
    }
    decode_verified_into(t.chunk.clone(), t.len, &z, buf)
        .err()
        .map(|e| e.to_string())
}
