//! The agent: what runs on a PC booted into the boot environment. It fetches the campaign's signed
//! manifest from the server, verifies it against the signer key baked into its initramfs (trust comes
//! from the boot environment, never from the wire), restores the image onto the local disk with the
//! store's delta restore (every chunk is checked against the signed manifest before it is written), and
//! reports the outcome with its one-time token. In capture mode ([`capture`], step f) it reads the
//! disk and uploads it to the server instead.
//!
//! When the server offers a multicast session (`GET /mcast/session`), the agent takes the stream
//! ([`mcast`]): it says what its disk already holds, writes each block only after its sha256
//! matched the signed manifest, and fetches over HTTP whatever the stream did not deliver. Without
//! a session it restores over unicast HTTP.

pub mod capture;
pub mod cli;
pub mod facts;
mod http;
pub mod hw;
pub mod mcast;
pub mod pc;
mod progress;
pub mod screen;
pub mod windows;

pub use http::HttpChunks;
pub use roomcast_proto::contract::Report;

use roomcast_proto::contract::{McastFigures, RestoreFigures, SessionInfo, Transport, Work, path};
use roomcast_store::disk::{Disk, DiskError};
use roomcast_store::fit::{self, FitOptions};
use roomcast_store::keys::{KeyError, TrustedSigners};
use roomcast_store::manifest::{ManifestError, UnverifiedManifest, VerifiedManifest};
use roomcast_store::restore::{
    RestoreError, RestoreOptions, RestoreProgress, RestoreReport, restore_with,
};
use std::path::{Path, PathBuf};

/// Default place of the trusted signer key inside the initramfs (`roomcast bootenv build --trusted-key`).
pub const TRUSTED_KEY: &str = "/etc/roomcast/trusted.pub";

/// Biggest manifest the agent accepts: a 2 TiB disk in 4 MiB chunks is ~100 MB of JSON at most.
const MAX_MANIFEST: u64 = 256 << 20;

/// Why the agent stopped; each names the URL, the chunk or the disk concerned.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// An HTTP exchange with the server failed.
    #[error("{url}: {reason}")]
    Http {
        /// The URL requested.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The trusted key cannot be read.
    #[error("trusted key: {0}")]
    Key(#[from] KeyError),
    /// The manifest does not parse or is not signed by the trusted key.
    #[error("manifest from {url}: {source}")]
    Manifest {
        /// Where it came from.
        url: String,
        /// What is wrong.
        source: ManifestError,
    },
    /// The target disk does not exist (the agent never creates one: a typo must not fill the RAM).
    #[error("{0}: no such disk")]
    NoDisk(PathBuf),
    /// The target disk cannot be opened.
    #[error("{0}")]
    Disk(#[from] DiskError),
    /// The restore stopped (a chunk refused, a write failed).
    #[error("{0}")]
    Restore(#[from] RestoreError),
    /// The multicast path could not start or its catch-up failed.
    #[error("multicast: {0}")]
    Multicast(String),
    /// Capture: a file system must not be captured as it is (dirty, hibernated, journal to
    /// replay); nothing was uploaded.
    #[error("{}: {reason}; nothing was uploaded", disk.display())]
    NotClean {
        /// The disk read.
        disk: PathBuf,
        /// Partition, file system, reason and fix (`LayoutError::NotClean`).
        reason: String,
    },
    /// Capture (step f): the master's Windows was not generalised by sysprep; nothing was
    /// uploaded.
    #[error("{}: {reason}; nothing was uploaded", disk.display())]
    NotGeneralised {
        /// The disk read.
        disk: PathBuf,
        /// Partition, image state found, and the fix.
        reason: String,
    },
    /// Step h for a Windows PC: its unattend.xml could not be written into the restored Windows
    /// or did not read back the same (never its content).
    #[error("{}: unattend.xml: {reason}", disk.display())]
    Unattend {
        /// The disk written.
        disk: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Capture: the disk's partition table could not be read (or the disk itself).
    #[error("{}: {reason}; nothing was uploaded (--whole-disk takes every byte without reading it)", disk.display())]
    Layout {
        /// The disk read.
        disk: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The restore report: the store's figures, how the image came, and what the stream did.
fn restore_report(
    disk: &Path,
    manifest: Option<&VerifiedManifest>,
    outcome: &Result<RestoreReport, AgentError>,
    multicast: Option<McastFigures>,
) -> Report {
    let image = manifest.map(|m| m.id().to_hex());
    let (used_bytes, unused_chunks) = manifest.map_or((0, 0), |m| {
        (
            m.chunks.iter().map(|c| c.used_bytes()).sum(),
            m.chunks.iter().filter(|c| c.is_unused()).count() as u64,
        )
    });
    let (r, error) = match outcome {
        Ok(r) => (r.clone(), None),
        Err(e) => (RestoreReport::default(), Some(e.to_string())),
    };
    let figures = RestoreFigures {
        chunks: r.chunks,
        written_chunks: r.written_chunks,
        unchanged_chunks: r.unchanged_chunks,
        unused_chunks,
        used_bytes,
        zeroed_chunks: r.zeroed_chunks,
        written_bytes: r.written_bytes,
        zeroed_bytes: r.zeroed_bytes,
        transport: if multicast.is_some() {
            Transport::Multicast
        } else {
            Transport::Unicast
        },
        catch_up_bytes: multicast.as_ref().map_or(0, |m| m.catch_up_bytes),
        multicast,
        disk_size: r.target_size,
        adjusted: r.adjusted,
    };
    Report::new(error, image, disk.to_path_buf(), Work::Restore(figures))
}

/// What the agent is told to do (from the kernel command line or flags).
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Base URL of `roomcast serve`, e.g. `http://198.18.0.1:8080`.
    pub server: String,
    /// The one-time token of this boot.
    pub token: String,
    /// The disk to restore onto.
    pub disk: PathBuf,
    /// The signers the manifest must be signed by.
    pub trusted: TrustedSigners,
    /// Restore worker threads (0 = one per CPU).
    pub workers: usize,
    /// What to do on a disk of another size than the image's (`roomcast.grow=last`).
    pub fit: FitOptions,
}

/// The outcome of a run: what was reported, and the restore error if it failed.
#[derive(Debug)]
pub struct Outcome {
    /// The report as sent.
    pub report: Report,
    /// `Err` when the restore failed (the failure was still reported).
    pub result: Result<RestoreReport, AgentError>,
}

/// Fetches and verifies the campaign's manifest.
pub fn fetch_manifest(
    client: &http::Client,
    trusted: &TrustedSigners,
) -> Result<VerifiedManifest, AgentError> {
    let url = client.url(path::MANIFEST);
    let envelope = client.get(&url, MAX_MANIFEST)?;
    UnverifiedManifest::from_envelope(&envelope)
        .and_then(|m| m.verify(trusted))
        .map_err(|source| AgentError::Manifest { url, source })
}

/// Restores the campaign's image onto the disk and reports. An `Err` means even the report could not
/// be delivered; a failed restore that was reported is in [`Outcome::result`].
pub fn run(opts: &AgentOptions) -> Result<Outcome, AgentError> {
    run_with(opts, &Hooks::default())
}

/// What the PXE-booted agent ([`pc`]) adds to a run: progress on the PC's screen, and the PC's
/// facts (disks, card, Wake-on-LAN) in the report.
#[derive(Default)]
pub struct Hooks<'a> {
    /// Called once the manifest verified, with the image's label and id.
    pub image: Option<&'a dyn Fn(&VerifiedManifest)>,
    /// Restore progress (unicast path).
    pub progress: Option<&'a (dyn Fn(&RestoreProgress) + Sync)>,
    /// Adds to the report before it is sent.
    pub annotate: Option<&'a dyn Fn(&mut Report)>,
}

/// [`run`] with [`Hooks`].
pub fn run_with(opts: &AgentOptions, hooks: &Hooks) -> Result<Outcome, AgentError> {
    let client = http::Client::new(&opts.server, &opts.token);
    let mut manifest = None;
    let mut multicast = None;
    let mut disk_size = 0;
    let mut unattend = None;
    let result = fetch_manifest(&client, &opts.trusted).and_then(|m| {
        let m = manifest.insert(m);
        if let Some(f) = hooks.image {
            f(m);
        }
        let disk = open_disk(m, opts)?;
        disk_size = disk.size();
        // Asked first: a machine of the session gets its chunk bodies sealed with its key.
        let info = session(&client)?;
        let key = info
            .as_ref()
            .map(|i| mcast::session_key(&i.key))
            .transpose()?;
        let source = HttpChunks::new(client.clone(), m, key.as_ref());
        // Decided before anything is written: a disk too small for the used bytes is refused
        // untouched, on both paths alike.
        let fit = fit::plan_restore(m, &source, &opts.disk, disk.size(), &opts.fit)
            .map_err(RestoreError::from)?;
        let screen = hooks.progress.unwrap_or(&|_| {});
        // While it runs, the server is told how far it is (at most once a second).
        let mut r = progress::telling(&client, screen, |progress| match info {
            Some(info) if !info.ended => {
                let mut figures = None;
                let r = mcast::restore(&client, &source, m, &info, &disk, opts, progress).map(
                    |(r, f)| {
                        figures = Some(f);
                        r
                    },
                );
                // A failure after joining is still a multicast attempt: say so in the report.
                multicast = Some(figures.unwrap_or_default());
                r
            }
            _ => restore(&source, m, &disk, opts, progress),
        })?;
        r.target_size = disk.size();
        // A Windows PC's step h: its unattend.xml, after the restore and before the PC restarts;
        // before the table is fitted and the last file system grown, while the image's layout
        // still describes the disk.
        if let Some(xml) = client.get_optional(&client.url(path::UNATTEND), 256 * 1024)? {
            unattend = Some(windows::write_unattend(&opts.disk, m, &xml)?);
        }
        fit::apply(&fit, disk).map_err(RestoreError::from)?;
        r.adjusted = fit.adjusted;
        Ok(r)
    });
    let mut report = restore_report(&opts.disk, manifest.as_ref(), &result, multicast);
    if let Work::Restore(f) = &mut report.work {
        // Also on a failure (a disk too small): the report names the PC's disk size.
        f.disk_size = disk_size;
    }
    report.unattend = unattend;
    if let Some(f) = hooks.annotate {
        f(&mut report);
    }
    let body = serde_json::to_vec(&report).expect("report serialises");
    client.post(&client.url(path::REPORT), &body)?;
    Ok(Outcome { report, result })
}

/// The multicast session the server offers this machine, if any (404: none, restore over unicast).
pub fn session(client: &http::Client) -> Result<Option<SessionInfo>, AgentError> {
    let url = client.url(path::SESSION);
    let Some(body) = client.get_optional(&url, 64 * 1024)? else {
        return Ok(None);
    };
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| AgentError::Http {
            url,
            reason: format!("session info: {e}"),
        })
}

/// The target disk, opened for writing, refused when missing (its size is checked by
/// [`fit::plan_restore`]).
fn open_disk(m: &VerifiedManifest, opts: &AgentOptions) -> Result<Disk, AgentError> {
    if !opts.disk.exists() {
        return Err(AgentError::NoDisk(opts.disk.clone()));
    }
    Ok(Disk::open_write(&opts.disk, m.disk_size)?)
}

fn restore(
    source: &HttpChunks,
    m: &VerifiedManifest,
    disk: &Disk,
    opts: &AgentOptions,
    progress: &(dyn Fn(&RestoreProgress) + Sync),
) -> Result<RestoreReport, AgentError> {
    let ropts = RestoreOptions {
        workers: opts.workers,
        fit: opts.fit,
    };
    // No progress file: the PC has no store; a rerun is cheap anyway thanks to the delta check.
    Ok(restore_with(
        source,
        m,
        disk,
        &ropts,
        progress,
        |_| Ok(()),
        0,
    )?)
}

/// Reads the trusted signer key file (`roomcast key generate`'s `.pub`).
pub fn load_trusted(path: &Path) -> Result<TrustedSigners, AgentError> {
    Ok(TrustedSigners::from_keys(
        roomcast_store::keys::load_public_all(path)?,
    ))
}
