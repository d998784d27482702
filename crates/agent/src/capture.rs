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
//! `--whole-disk` (or the plan's `whole_disk`) takes every byte, as before. A partition holding
//! Windows must have been generalised by sysprep (`super::windows::check_generalised`, read from its
//! `State.ini`), in either mode: otherwise nothing is uploaded and the report names the fix.

use super::AgentError;
use super::http::Client;
use roomcast_proto::contract::{
    CaptureChunk, CaptureDone, CaptureFigures, CaptureFinish, CapturePlan, Report, Work, path,
};
use roomcast_store::capture::{CaptureError, read_source_layout};
use roomcast_store::chunk::{ChunkHash, Compressor, is_zero};
use roomcast_store::disk::Disk;
use roomcast_store::layout::Extents;
use roomcast_store::manifest::{CaptureMode, ImageLayout, chunk_mask};
use roomcast_store::masked::read_used;
use std::path::{Path, PathBuf};

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

/// The layout record of `disk` for a capture, as a local `roomcast image capture` writes it into
/// the manifest, and the disk's used bytes (`None`: whole disk). File systems: the table and each
/// file system's map (a file system that is not clean stops the capture here). Whole disk: the
/// partitions from the table alone, each taken whole (a table that cannot be read is no reason to
/// refuse a whole-disk capture).
pub fn read_disk_layout(
    disk: &Disk,
    path: &Path,
    whole_disk: bool,
) -> Result<(ImageLayout, Option<Extents>), AgentError> {
    let mode = if whole_disk {
        CaptureMode::WholeDisk
    } else {
        CaptureMode::FileSystems
    };
    read_source_layout(disk, mode).map_err(|e| match e {
        CaptureError::NotClean {
            number,
            fs,
            reason,
            fix,
            ..
        } => AgentError::NotClean {
            disk: path.to_path_buf(),
            reason: format!("partition {number} ({fs}): {reason}; fix: {fix}"),
        },
        CaptureError::Layout { reason, .. } => AgentError::Layout {
            disk: path.to_path_buf(),
            reason,
        },
        other => AgentError::Layout {
            disk: path.to_path_buf(),
            reason: other.to_string(),
        },
    })
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
    let (layout, used) = read_disk_layout(&disk, &opts.disk, whole_disk)?;
    // Step f of a Windows master: only a Windows sealed by sysprep may go to other PCs.
    super::windows::check_generalised(&disk, &opts.disk)?;
    for p in &layout.partitions {
        if let (Some(why), false) = (&p.whole, whole_disk) {
            tracing::info!(partition = p.number, fs = %p.fs, reason = %why, "taken whole");
        }
    }
    report.discarded_bytes = layout.discarded_bytes();
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
        let mask = used
            .as_ref()
            .and_then(|u| chunk_mask(u, offset, len as u32));
        if matches!(&mask, Some(r) if r.is_empty()) {
            report.unused_chunks += 1;
            chunks.push(CaptureChunk {
                sha256: None,
                used: mask,
            });
            continue;
        }
        report.used_bytes += mask.as_ref().map_or(len as u64, |r| {
            r.iter().map(|[s, e]| u64::from(e - s)).sum()
        });
        let data = &mut buf[..len];
        // Only the used bytes are read; the free ones are zero before hashing and compressing.
        read_used(&disk, mask.as_deref(), offset, data)?;
        if is_zero(data) {
            report.zero_chunks += 1;
            chunks.push(CaptureChunk {
                sha256: None,
                used: mask,
            });
            continue;
        }
        let hash = ChunkHash::of(data);
        chunks.push(CaptureChunk {
            sha256: Some(hash),
            used: mask,
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
        table: layout.table.clone(),
        partitions: layout.partitions.clone(),
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
