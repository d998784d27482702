//! The agent's capture mode (step f, `roomcast agent --capture`): read the master's disk, cut it as
//! the store does (fixed chunks, zero chunks not sent, sha256 names, zstd frames), upload the chunks
//! the server lacks, then ask the server to sign the image. The agent holds no signing key: the
//! server checks every frame against its name before keeping it (see [`crate::net::capture`]).

use super::AgentError;
use super::http::Client;
use crate::disk::Disk;
use crate::net::capture::{CaptureDone, CaptureFinish, CapturePlan};
use crate::store::chunk::{ChunkHash, Compressor, is_zero};
use serde::Serialize;
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
}

/// What the capturing agent reports to `/agent/report` (JSON).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CaptureReport {
    /// Always `"capture"`.
    pub mode: String,
    /// `"ok"` or `"failed"`.
    pub result: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The image id the server signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The disk read.
    pub disk: PathBuf,
    /// Its size.
    pub disk_size: u64,
    /// Chunks of the disk.
    pub chunks: u64,
    /// All-zero chunks (not sent).
    pub zero_chunks: u64,
    /// Chunks the server already had (not sent).
    pub reused_chunks: u64,
    /// Chunks uploaded.
    pub uploaded_chunks: u64,
    /// Compressed bytes uploaded.
    pub uploaded_bytes: u64,
}

/// The outcome of a capture run: the report as sent, and the image id or the error.
#[derive(Debug)]
pub struct CaptureOutcome {
    /// The report as sent.
    pub report: CaptureReport,
    /// The image id (hex) or why the capture failed (which was reported).
    pub result: Result<String, AgentError>,
}

/// Captures the disk to the server and reports. An `Err` means even the report was not delivered.
pub fn run_capture(opts: &CaptureAgentOptions) -> Result<CaptureOutcome, AgentError> {
    let client = Client::new(&opts.server, &opts.token);
    let mut report = CaptureReport {
        mode: "capture".into(),
        disk: opts.disk.clone(),
        ..Default::default()
    };
    let result = capture(&client, opts, &mut report);
    match &result {
        Ok(id) => {
            report.result = "ok".into();
            report.image = Some(id.clone());
        }
        Err(e) => {
            report.result = "failed".into();
            report.error = Some(e.to_string());
        }
    }
    let body = serde_json::to_vec(&report).expect("report serialises");
    client.post(&client.url("/agent/report"), &body)?;
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

fn capture(
    client: &Client,
    opts: &CaptureAgentOptions,
    report: &mut CaptureReport,
) -> Result<String, AgentError> {
    let url = client.url("/capture/plan");
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
    let mut chunks: Vec<Option<ChunkHash>> = Vec::with_capacity(count as usize);
    for index in 0..count {
        let offset = index * cs;
        let len = (size - offset).min(cs) as usize;
        let data = &mut buf[..len];
        disk.read_exact_at(data, offset)?;
        if is_zero(data) {
            report.zero_chunks += 1;
            chunks.push(None);
            continue;
        }
        let hash = ChunkHash::of(data);
        chunks.push(Some(hash));
        let url = client.url(&format!("/capture/chunks/{}", hash.to_hex()));
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
        chunks,
    };
    let url = client.url("/capture/finish");
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
