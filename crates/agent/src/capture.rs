//! The agent's capture mode (step f, `roomcast agent --capture`): read the master's disk, cut it as
//! the store does (fixed chunks, sha256 names, zstd frames), upload the chunks the server lacks,
//! then ask the server to sign the image. The agent holds no signing key: the server checks every
//! frame against its name before keeping it, and the masks against the frames (the server's
//! `net::capture` in the roomcast crate).
//!
//! File-system aware (issue 14), as a local `roomcast image capture`: the agent reads the disk's
//! layout (`roomcast_layout::read_layout`: partition table, each file system's allocation map). A
//! file system that must not be captured as it is (dirty, hibernated, journal to replay) stops the
//! capture before anything is uploaded, and the failed report names the partition, the reason and
//! the fix. Otherwise each chunk's free bytes are zeroed before hashing and compressing, a chunk
//! with no used byte is neither read, uploaded nor stored, and the finish message carries each
//! chunk's used ranges and the partitions found, from which the server builds the manifest.
//! `--whole-disk` (or the plan's `whole_disk`) takes every byte, as before.

use super::AgentError;
use super::http::Client;
use roomcast_layout::{DiskLayout, Extents, LayoutError, ReadAt, TableKind};
use roomcast_proto::contract::{
    CaptureChunk, CaptureDone, CaptureFigures, CaptureFinish, CapturePartition, CapturePlan,
    Report, Work, path,
};
use roomcast_store::chunk::{ChunkHash, Compressor, is_zero};
use roomcast_store::disk::Disk;
use std::io;
use std::path::PathBuf;

/// Largest answer body read from the server (plans, refusals, the image id).
const MAX_ANSWER: u64 = 64 * 1024;

/// What `roomcast agent --capture` is told.
#[derive(Debug, Clone)]
pub struct CaptureAgentOptions {
    /// Base URL of the deploy server.
    pub server: String,
    /// This boot's one-time token.
    pub token: String,
    /// The disk to read.
    pub disk: PathBuf,
    /// Take every byte of the disk (`--whole-disk`), whatever the plan says.
    pub whole_disk: bool,
}

/// The outcome of a capture run: the report as sent, and the image id or the error.
#[derive(Debug)]
pub struct CaptureOutcome {
    /// The report as sent.
    pub report: Report,
    /// The image id (hex) or why the capture failed (which was reported).
    pub result: Result<String, AgentError>,
}

/// Captures the disk to the server and reports. An `Err` means even the report was not delivered.
pub fn run_capture(opts: &CaptureAgentOptions) -> Result<CaptureOutcome, AgentError> {
    let client = Client::new(&opts.server, &opts.token);
    let mut figures = CaptureFigures::default();
    let result = capture(&client, opts, &mut figures);
    let (error, image) = match &result {
        Ok(id) => (None, Some(id.clone())),
        Err(e) => (Some(e.to_string()), None),
    };
    let report = Report::new(error, image, opts.disk.clone(), Work::Capture(figures));
    let body = serde_json::to_vec(&report).expect("report serialises");
    client.post(&client.url(path::REPORT), &body)?;
    Ok(CaptureOutcome { report, result })
}

fn refused(url: &str, status: u16, body: &[u8]) -> AgentError {
    AgentError::Http {
        url: url.to_string(),
        reason: format!(
            "server answered {status}: {}",
            String::from_utf8_lossy(body).trim()
        ),
    }
}

/// The store's [`Disk`] as the layout readers see a disk.
pub struct DiskReader<'a>(pub &'a Disk);

impl ReadAt for DiskReader<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset).map_err(io::Error::other)
    }
    fn size(&self) -> u64 {
        self.0.size()
    }
}

/// The used ranges of the chunk `[offset, offset + len)` given the disk's used bytes: `None` when
/// every byte is used, empty when none is (the manifest's `ChunkEntry::used`).
pub fn chunk_mask(used: &Extents, offset: u64, len: u32) -> Option<Vec<[u32; 2]>> {
    let w = used.window(offset, offset + u64::from(len));
    if w.len() == 1 && w[0].start == 0 && w[0].end == u64::from(len) {
        return None;
    }
    Some(w.iter().map(|r| [r.start as u32, r.end as u32]).collect())
}

/// Zeroes the bytes of `buf` outside `mask` (no-op for `None`).
fn apply_mask(mask: &Option<Vec<[u32; 2]>>, buf: &mut [u8]) {
    let Some(ranges) = mask else { return };
    let mut at = 0usize;
    for &[s, e] in ranges {
        buf[at..s as usize].fill(0);
        at = e as usize;
    }
    buf[at..].fill(0);
}

/// The partitions as the contract carries them.
pub fn partitions(layout: &DiskLayout) -> Vec<CapturePartition> {
    layout
        .partitions
        .iter()
        .map(|p| {
            let (kind, name) = match &p.partition.kind {
                roomcast_layout::PartitionType::Gpt { type_guid, name } => {
                    (type_guid.clone(), name.clone())
                }
                roomcast_layout::PartitionType::Mbr { type_byte, .. } => {
                    (format!("0x{type_byte:02x}"), String::new())
                }
            };
            CapturePartition {
                number: p.partition.number,
                start: p.partition.start,
                len: p.partition.len,
                kind,
                name,
                fs: p.fs.clone(),
                used_bytes: p.used.bytes(),
                whole: p.whole.clone(),
                discarded: p.discarded.clone(),
            }
        })
        .collect()
}

/// "gpt", "mbr" or "none".
pub fn table_name(kind: TableKind) -> &'static str {
    match kind {
        TableKind::Gpt => "gpt",
        TableKind::Mbr => "mbr",
        TableKind::None => "none",
    }
}

fn capture(
    client: &Client,
    opts: &CaptureAgentOptions,
    report: &mut CaptureFigures,
) -> Result<String, AgentError> {
    let url = client.url(path::CAPTURE_PLAN);
    let plan: CapturePlan =
        serde_json::from_slice(&client.get(&url, MAX_ANSWER)?).map_err(|e| AgentError::Http {
            url: url.clone(),
            reason: format!("plan: {e}"),
        })?;
    if !opts.disk.exists() {
        return Err(AgentError::NoDisk(opts.disk.clone()));
    }
    let disk = Disk::open_read(&opts.disk)?;
    let size = disk.size();
    let whole_disk = opts.whole_disk || plan.whole_disk;
    report.whole_disk = whole_disk;
    // Read before anything is uploaded: a file system that must not be captured stops it here.
    let layout = if whole_disk {
        None
    } else {
        Some(
            roomcast_layout::read_layout(&DiskReader(&disk)).map_err(|e| match e {
                LayoutError::NotClean { .. } => AgentError::NotClean {
                    disk: opts.disk.clone(),
                    reason: e.to_string(),
                },
                other => AgentError::Layout {
                    disk: opts.disk.clone(),
                    reason: other.to_string(),
                },
            })?,
        )
    };
    if let Some(l) = &layout {
        for p in &l.partitions {
            if let Some(why) = &p.whole {
                tracing::info!(partition = p.partition.number, reason = %why, "taken whole");
            }
        }
        report.discarded_bytes = l
            .partitions
            .iter()
            .flat_map(|p| p.discarded.iter().map(|(_, n)| n))
            .sum();
    }
    let cs = u64::from(plan.chunk_size);
    let count = size.div_ceil(cs);
    report.disk_size = size;
    report.chunks = count;
    let mut compressor = Compressor::new(plan.level).map_err(|e| AgentError::Http {
        url: url.clone(),
        reason: format!("zstd level {}: {e}", plan.level),
    })?;
    let mut buf = vec![0u8; plan.chunk_size as usize];
    let mut frame = Vec::new();
    let mut chunks: Vec<CaptureChunk> = Vec::with_capacity(count as usize);
    for index in 0..count {
        let offset = index * cs;
        let len = (size - offset).min(cs) as usize;
        let used = layout
            .as_ref()
            .and_then(|l| chunk_mask(&l.used, offset, len as u32));
        if matches!(&used, Some(r) if r.is_empty()) {
            report.unused_chunks += 1;
            chunks.push(CaptureChunk { sha256: None, used });
            continue;
        }
        report.used_bytes += used.as_ref().map_or(len as u64, |r| {
            r.iter().map(|[s, e]| u64::from(e - s)).sum()
        });
        let data = &mut buf[..len];
        disk.read_exact_at(data, offset)?;
        apply_mask(&used, data);
        if is_zero(data) {
            report.zero_chunks += 1;
            chunks.push(CaptureChunk { sha256: None, used });
            continue;
        }
        let hash = ChunkHash::of(data);
        chunks.push(CaptureChunk {
            sha256: Some(hash),
            used,
        });
        let url = client.url(&path::capture_chunk(&hash));
        if client.exchange("HEAD", &url, &[], 0)?.0 == 200 {
            report.reused_chunks += 1;
            continue;
        }
        compressor
            .compress(data, &mut frame)
            .map_err(|e| AgentError::Http {
                url: url.clone(),
                reason: format!("compressing chunk #{index}: {e}"),
            })?;
        let put = format!("{url}?index={index}&len={len}");
        let (status, body) = client.exchange("PUT", &put, &frame, MAX_ANSWER)?;
        if !(200..300).contains(&status) {
            return Err(refused(&url, status, &body));
        }
        report.uploaded_chunks += 1;
        report.uploaded_bytes += frame.len() as u64;
    }
    let finish = CaptureFinish {
        disk_size: size,
        chunk_size: plan.chunk_size,
        whole_disk,
        table: layout
            .as_ref()
            .map_or(String::new(), |l| table_name(l.table).to_string()),
        partitions: layout.as_ref().map_or_else(Vec::new, partitions),
        chunks,
    };
    let url = client.url(path::CAPTURE_FINISH);
    let body = serde_json::to_vec(&finish).expect("finish serialises");
    let (status, answer) = client.exchange("POST", &url, &body, MAX_ANSWER)?;
    if status != 200 {
        return Err(refused(&url, status, &answer));
    }
    let done: CaptureDone = serde_json::from_slice(&answer).map_err(|e| AgentError::Http {
        url,
        reason: format!("finish answer: {e}"),
    })?;
    Ok(done.image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_mask_is_none_when_whole_empty_when_free_and_relative_otherwise() {
        let mut used = Extents::new();
        used.insert(0, 1500);
        used.insert(3000, 3100);
        used.insert(4096, 8192);
        assert_eq!(chunk_mask(&used, 0, 1024), None);
        assert_eq!(
            chunk_mask(&used, 1024, 2048),
            Some(vec![[0, 476], [1976, 2048]])
        );
        assert_eq!(chunk_mask(&used, 8192, 1024), Some(vec![]));
        assert_eq!(chunk_mask(&used, 4096, 4096), None);
        let mut buf = vec![7u8; 2048];
        apply_mask(&chunk_mask(&used, 1024, 2048), &mut buf);
        assert!(buf[..476].iter().all(|&b| b == 7));
        assert!(buf[476..1976].iter().all(|&b| b == 0));
        assert!(buf[1976..].iter().all(|&b| b == 7));
    }
}
