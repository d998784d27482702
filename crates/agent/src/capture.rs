//! The agent's capture mode (step f, `roomcast agent --capture`): read the master's disk, cut it as
//! the store does (fixed chunks, zero chunks not sent, sha256 names, zstd frames), upload the chunks
//! the server lacks, then ask the server to sign the image. The agent holds no signing key: the
//! server checks every frame against its name before keeping it (the server's `net::capture` in the roomcast crate).

use super::AgentError;
use super::http::Client;
use roomcast_proto::contract::{
    CaptureDone, CaptureFigures, CaptureFinish, CapturePlan, Report, Work, path,
};
use roomcast_store::chunk::{ChunkHash, Compressor, is_zero};
use roomcast_store::disk::Disk;
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
