//! `roomcast image ...`: capture, list, show, verify, diff, rm, gc, restore; push, pull and
//! `list --from` a region's repository (`image_region`).

use super::exit::{self, CliError};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use roomcast_store::capture::{self, CaptureOptions, CaptureProgress};
use roomcast_store::chunk::{ChunkSize, DEFAULT_LEVEL};
use roomcast_store::keys::Signer;
use roomcast_store::manifest::{CaptureMode, ImageId, ImageLabel, ImageLayout, Manifest};
use roomcast_store::restore::{self, RestoreOptions, RestoreProgress};
use roomcast_store::{DEFAULT_STORE, STORE_ENV, Store, StoreError, diff, verify};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Disk images: capture a disk into the store, inspect, verify, restore.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// Store folder.
    #[arg(long, env = STORE_ENV, default_value = DEFAULT_STORE, global = true)]
    store: PathBuf,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Read a disk (block device or image file) into the store as a new signed image.
    Capture {
        /// Block device or disk image file to read.
        #[arg(long)]
        from: PathBuf,
        /// Image name.
        #[arg(long)]
        name: String,
        /// Image version.
        #[arg(long)]
        version: String,
        /// Profile the master was built from.
        #[arg(long)]
        profile: Option<String>,
        /// Chunk size: a power of two from 64K to 16M.
        #[arg(long, default_value = "1M")]
        chunk_size: ChunkSize,
        /// zstd level (1..=19).
        #[arg(long, default_value_t = DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
        level: i32,
        /// Signing key (PKCS#8 PEM, from `roomcast key generate`).
        #[arg(long, env = "ROOMCAST_KEY", default_value = "/etc/roomcast/signer.key")]
        key: PathBuf,
        /// Take every byte of the disk, free space included, without reading the file systems
        /// (the image says so). By default only the bytes the file systems use are taken.
        #[arg(long)]
        whole_disk: bool,
    },
    /// List the images of the store, or with --from those a region's repository publishes.
    List {
        /// A region's repository, `s3://bucket/prefix`, instead of the local store.
        #[arg(long)]
        from: Option<String>,
        #[command(flatten)]
        remote: super::image_region::RemoteArgs,
    },
    /// Upload an image to a region's repository (S3, e.g. Garage): the chunks it lacks, then the
    /// manifest. Resumes after an interruption.
    Push {
        /// Image id or prefix.
        id: String,
        /// The repository, `s3://bucket/prefix`.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        remote: super::image_region::RemoteArgs,
    },
    /// Fetch an image from a region's repository: the manifest (refused unless signed by a key this
    /// store trusts), then the chunks the store lacks, each checked before it is stored. Resumes.
    Pull {
        /// Image id or prefix.
        id: String,
        /// The repository, `s3://bucket/prefix`.
        #[arg(long)]
        from: String,
        #[command(flatten)]
        remote: super::image_region::RemoteArgs,
    },
    /// Show one image: label, sizes, signer, partition table.
    Show {
        /// Image id or unique prefix.
        id: String,
    },
    /// Check signatures and re-hash every chunk; names each bad chunk.
    Verify {
        /// Image id or prefix; all images when absent.
        id: Option<String>,
    },
    /// What images A and B share, and what a delta deploy of B onto a disk holding A sends.
    Diff {
        /// Image on the disk now.
        a: String,
        /// Image to deploy.
        b: String,
    },
    /// Remove an image (its chunks go at the next gc).
    Rm {
        /// Image id or prefix.
        id: String,
    },
    /// Delete chunks no image uses and leftovers of interrupted captures.
    Gc,
    /// Keep the N most recent images of each profile, and every image a room uses; remove the
    /// others, then gc.
    Prune(super::image_prune::PruneArgs),
    /// Write one image (verified first) as one self-contained signed archive on stdout:
    /// `roomcast image export ID > master.rcarch`.
    Export {
        /// Image id or prefix.
        id: String,
    },
    /// Add the image of an archive (`image export`) to the store: its signature and every chunk
    /// are checked before anything is written.
    Import {
        /// The archive file.
        file: PathBuf,
    },
    /// Write an image onto a disk, skipping chunks already right (resumes after a crash).
    Restore {
        /// Image id or prefix.
        id: String,
        /// Block device or image file (created if absent).
        #[arg(long)]
        to: PathBuf,
        /// On a disk larger than the image, grow the last partition and its file system (ext2/3/4,
        /// NTFS) to the disk's end. Without it the extra space stays unallocated after the last
        /// partition (the partition table is rewritten for the disk's size either way).
        #[arg(long)]
        grow_last: bool,
    },
}

/// Runs an `image` subcommand.
pub fn run(args: ImageArgs) -> Result<u8, CliError> {
    dispatch(&args.store, args.command).map_err(|e| {
        let words = format!("error: {e}");
        match error_code(&e) {
            exit::FAILURE => CliError::Failure(words),
            _ => CliError::UsageOrIo(words),
        }
    })
}

/// A refused signature or bad chunk is a finding (1); anything else stopped the command (2).
fn error_code(e: &ImageError) -> u8 {
    let store_finding = |s: &StoreError| {
        matches!(
            s,
            StoreError::Manifest { .. }
                | StoreError::IdMismatch { .. }
                | StoreError::BadChunk { .. }
                | StoreError::MissingChunk { .. }
        )
    };
    match e {
        ImageError::Store(s) => {
            if store_finding(s) {
                exit::FAILURE
            } else {
                exit::USAGE_OR_IO
            }
        }
        ImageError::Restore(restore::RestoreError::Store(s)) if store_finding(s) => exit::FAILURE,
        // A refused archive (signature, chunk, format) is a finding.
        ImageError::Archive(
            roomcast_store::archive::ArchiveError::Manifest { .. }
            | roomcast_store::archive::ArchiveError::Chunk { .. }
            | roomcast_store::archive::ArchiveError::Format { .. },
        ) => exit::FAILURE,
        ImageError::Region(crate::region::RegionError::Store(s)) if store_finding(s) => {
            exit::FAILURE
        }
        ImageError::Region(r) if r.is_finding() => exit::FAILURE,
        _ => exit::USAGE_OR_IO,
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ImageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Capture(#[from] capture::CaptureError),
    #[error(transparent)]
    Restore(#[from] restore::RestoreError),
    #[error(transparent)]
    Archive(#[from] roomcast_store::archive::ArchiveError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Region(#[from] crate::region::RegionError),
}

fn dispatch(store_dir: &Path, cmd: ImageCommand) -> Result<u8, ImageError> {
    match cmd {
        ImageCommand::Capture {
            from,
            name,
            version,
            profile,
            chunk_size,
            level,
            key,
            whole_disk,
        } => {
            let signer = Signer::load(&key).map_err(StoreError::from)?;
            let store = Store::open_or_create(store_dir)?;
            let label = ImageLabel {
                name,
                version,
                profile,
                captured_by: who(),
                captured_at: crate::clock::Clock::now(&crate::clock::SystemClock).to_rfc3339(),
            };
            let opts = CaptureOptions {
                chunk_size,
                level,
                workers: 0,
            };
            let mode = if whole_disk {
                CaptureMode::WholeDisk
            } else {
                CaptureMode::FileSystems
            };
            let bar = bar("capture");
            let r = capture::capture_as(
                &store,
                &from,
                label,
                &signer,
                &opts,
                mode,
                &|p: &CaptureProgress| {
                    if let Some(b) = &bar {
                        b.set_length(p.bytes_total);
                        b.set_position(p.bytes_done);
                    }
                },
            );
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            let r = r?;
            println!("image {}", r.id);
            println!(
                "disk {} in {} chunks: {} unused, {} zero, {} already stored, {} new",
                bytes(r.disk_size),
                r.chunks,
                r.unused_chunks,
                r.zero_chunks,
                r.reused_chunks,
                r.new_chunks
            );
            print_layout(&r.layout, r.disk_size);
            let discarded = r.layout.discarded_bytes();
            println!(
                "captured {} of {}; saved {} (free space {}, discarded files {})",
                bytes(r.used_bytes),
                bytes(r.disk_size),
                bytes(r.saved_bytes()),
                bytes(r.saved_bytes().saturating_sub(discarded)),
                bytes(discarded)
            );
            println!(
                "data {} compressed to {} ({:.2}x){}; {} newly written",
                bytes(r.data_bytes),
                bytes(r.compressed_bytes),
                ratio(r.data_bytes, r.compressed_bytes),
                if r.layout.mode == CaptureMode::FileSystems {
                    ", free bytes of the stored chunks zeroed"
                } else {
                    ""
                },
                bytes(r.new_bytes)
            );
            Ok(exit::OK)
        }
        ImageCommand::Prune(p) => {
            let store = Store::open(store_dir)?;
            super::image_prune::run(&store, p).map_err(ImageError::Usage)
        }
        ImageCommand::Export { id } => {
            if std::io::stdout().is_terminal() {
                return Err(ImageError::Usage(
                    "image export writes the archive on stdout: redirect it to a file \
                     (`roomcast image export ID > master.rcarch`)"
                        .into(),
                ));
            }
            let store = Store::open(store_dir)?;
            let id = store.resolve(&id)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let e = roomcast_store::archive::export(&store, &id, &mut out)?;
            eprintln!(
                "image {id}: {} chunks, {} written",
                e.chunks,
                bytes(e.bytes)
            );
            Ok(exit::OK)
        }
        ImageCommand::Import { file } => {
            let store = Store::open_or_create(store_dir)?;
            let id = roomcast_store::archive::import(&store, &file)?;
            println!("image {id} imported (signature and every chunk checked)");
            Ok(exit::OK)
        }
        ImageCommand::List {
            from: Some(url),
            remote,
        } => super::image_region::list(store_dir, &url, &remote),
        ImageCommand::List { from: None, .. } => {
            let store = Store::open(store_dir)?;
            let trusted = store.trusted()?;
            println!("{}", list_header());
            for id in store.image_ids()? {
                match store.open_unverified(&id) {
                    Ok(u) => println!("{}", list_row(u, &trusted)),
                    Err(e) => println!("{:<12}  unreadable: {e}", id.short()),
                }
            }
            Ok(exit::OK)
        }
        ImageCommand::Push { id, to, remote } => {
            super::image_region::push(store_dir, &id, &to, &remote)
        }
        ImageCommand::Pull { id, from, remote } => {
            super::image_region::pull(store_dir, &id, &from, &remote)
        }
        ImageCommand::Show { id } => {
            let store = Store::open(store_dir)?;
            let id = store.resolve(&id)?;
            let u = store.open_unverified(&id)?;
            let m = u.manifest_unchecked().clone();
            let sig = match u.verify(&store.trusted()?) {
                Ok(v) => format!("ok, signer {}", v.signer_fingerprint()),
                Err(e) => format!("REFUSED: {e}"),
            };
            let unused = m.unused_chunks();
            let zero = m.chunks.iter().filter(|c| c.is_zero()).count() - unused;
            println!("id           {id}");
            println!("name         {}", m.label.name);
            println!("version      {}", m.label.version);
            println!("profile      {}", m.label.profile.as_deref().unwrap_or("-"));
            println!("captured by  {}", m.label.captured_by);
            println!("captured at  {}", m.label.captured_at);
            println!("signature    {sig}");
            println!(
                "disk size    {} ({} bytes)",
                bytes(m.disk_size),
                m.disk_size
            );
            println!(
                "chunks       {} of {} ({} zero, {} with no used byte), zstd level {}",
                m.chunks.len(),
                bytes(m.chunk_size as u64),
                zero,
                unused,
                m.zstd_level
            );
            println!(
                "data         {} stored as {}",
                bytes(m.data_bytes()),
                bytes(m.stored_bytes())
            );
            println!("partitions   {}", m.partition_table.kind());
            show_layout(&m);
            Ok(exit::OK)
        }
        ImageCommand::Verify { id } => {
            let store = Store::open(store_dir)?;
            let ids = match id {
                Some(p) => vec![store.resolve(&p)?],
                None => Vec::new(),
            };
            let bar = bar("verify");
            let report = verify::verify(&store, &ids, &|d, t| {
                if let Some(b) = &bar {
                    b.set_length(t);
                    b.set_position(d);
                }
            })?;
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            for (id, r) in &report.images {
                match r {
                    Ok(fp) => println!("image {}: signature ok (signer {fp})", id.short()),
                    Err(e) => println!("image {}: REFUSED: {e}", id.short()),
                }
            }
            for b in &report.bad {
                println!(
                    "BAD {} (image {}, used {} times): {}: {}",
                    b.chunk,
                    b.image.short(),
                    b.uses,
                    b.path.display(),
                    b.problem
                );
            }
            println!(
                "{} chunks checked, {} bad",
                report.chunks_checked,
                report.bad.len()
            );
            Ok(if report.ok() { exit::OK } else { exit::FAILURE })
        }
        ImageCommand::Diff { a, b } => {
            let store = Store::open(store_dir)?;
            let (ia, ib) = (store.resolve(&a)?, store.resolve(&b)?);
            let ma = store.open_unverified(&ia)?.manifest_unchecked().clone();
            let mb = store.open_unverified(&ib)?.manifest_unchecked().clone();
            let d = diff::diff(&ma, &mb);
            println!(
                "shared chunks   {} of {} distinct chunks of {} are in {}",
                d.shared_chunks,
                d.b_distinct_chunks,
                ib.short(),
                ia.short()
            );
            println!(
                "changed chunks  {} ({}) differ at their offset (used bytes compared; that much written)",
                d.changed_chunks,
                bytes(d.changed_bytes)
            );
            println!(
                "delta deploy    sends {} in {} chunks (full deploy: {}, {:.1}%)",
                bytes(d.sent_bytes),
                d.sent_chunks,
                bytes(d.full_bytes),
                100.0 * d.sent_bytes as f64 / d.full_bytes.max(1) as f64
            );
            Ok(exit::OK)
        }
        ImageCommand::Rm { id } => {
            let store = Store::open(store_dir)?;
            let id = store.resolve(&id)?;
            store.remove_image(&id)?;
            println!("removed image {id}; run `roomcast image gc` to free its chunks");
            Ok(exit::OK)
        }
        ImageCommand::Gc => {
            let store = Store::open(store_dir)?;
            let r = store.gc()?;
            println!(
                "removed {} unused chunks and {} leftover files, freed {}; {} chunks in use",
                r.chunks_removed,
                r.tmp_removed,
                bytes(r.bytes_freed),
                r.chunks_kept
            );
            Ok(exit::OK)
        }
        ImageCommand::Restore { id, to, grow_last } => {
            let store = Store::open(store_dir)?;
            let id: ImageId = store.resolve(&id)?;
            let manifest = store.open_verified(&id)?;
            if let Some(prev) = restore::interrupted_restore(&store, &to)
                && prev == id
            {
                eprintln!("resuming an interrupted restore of {}", id.short());
            }
            let bar = bar("restore");
            let r = restore::restore(
                &store,
                &manifest,
                &to,
                &RestoreOptions {
                    fit: roomcast_store::fit::FitOptions { grow_last },
                    ..RestoreOptions::default()
                },
                &|p: &RestoreProgress| {
                    if let Some(b) = &bar {
                        b.set_length(p.bytes_total);
                        b.set_position(p.bytes_done);
                    }
                },
            );
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            let r = r?;
            println!("restored image {} onto {}", id, to.display());
            println!(
                "{} chunks: {} already right, {} written ({}), {} zeroed ({}), {} with no used byte, {} done before a resume",
                r.chunks,
                r.unchanged_chunks,
                r.written_chunks,
                bytes(r.written_bytes),
                r.zeroed_chunks,
                bytes(r.zeroed_bytes),
                r.unused_chunks,
                r.resumed_chunks
            );
            for a in &r.adjusted {
                println!("adjusted for a disk of {}: {a}", bytes(r.target_size));
            }
            Ok(exit::OK)
        }
    }
}

/// Header of `image list`'s table.
pub(super) fn list_header() -> String {
    format!(
        "{:<12}  {:<20} {:<12} {:<21} {:>10} {:>10}  signature",
        "id", "name", "version", "captured at", "disk", "stored"
    )
}

/// One row of `image list`: the image and whether `trusted` accepts its signature.
pub(super) fn list_row(
    u: roomcast_store::manifest::UnverifiedManifest,
    trusted: &roomcast_store::keys::TrustedSigners,
) -> String {
    let id = u.id();
    let m = u.manifest_unchecked().clone();
    let sig = match u.verify(trusted) {
        Ok(v) => format!("ok ({})", v.signer_fingerprint()),
        Err(e) => format!("REFUSED: {e}"),
    };
    format!(
        "{:<12}  {:<20} {:<12} {:<21} {:>10} {:>10}  {sig}",
        id.short(),
        m.label.name,
        m.label.version,
        m.label.captured_at,
        bytes(m.disk_size),
        bytes(m.stored_bytes())
    )
}

/// One line per partition: number, file system, size, used bytes, and why it was taken whole.
fn print_layout(l: &ImageLayout, disk_size: u64) {
    println!("mode {}, partition table {}", l.mode.as_str(), l.table);
    for p in &l.partitions {
        let mut line = format!(
            "  partition {:<2} {:<7} {:>10}  used {:>10}",
            p.number,
            p.fs,
            bytes(p.len),
            bytes(p.used_bytes)
        );
        if let Some(why) = &p.whole {
            line.push_str(&format!("  taken whole: {why}"));
        }
        for d in &p.discarded {
            line.push_str(&format!("  discarded {} ({})", d.name, bytes(d.bytes)));
        }
        println!("{line}");
    }
    let inside: u64 = l.partitions.iter().map(|p| p.len).sum();
    if l.mode == CaptureMode::FileSystems {
        println!(
            "  outside partitions {} (taken whole)",
            bytes(disk_size.saturating_sub(inside))
        );
    }
}

/// `image show`'s capture section: mode, used bytes per partition, chunks with no used byte.
fn show_layout(m: &Manifest) {
    match &m.layout {
        None => {
            println!("capture      whole disk (an image from before file-system-aware capture)")
        }
        Some(l) => {
            println!(
                "capture      {}, used {} of {}, {} chunks with no used byte",
                l.mode.as_str(),
                bytes(m.used_bytes()),
                bytes(m.disk_size),
                m.unused_chunks()
            );
            print_layout(l, m.disk_size);
        }
    }
}

/// A byte progress bar on a terminal; nothing when stderr is a file or pipe.
pub(super) fn bar(what: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    b.set_prefix(what.to_string());
    Some(b)
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b.max(1) as f64
}

/// Human size, binary units.
pub use crate::campaign::report::human_bytes as bytes;

/// user@host of whoever runs the capture (the sudo caller rather than root when there is one).
fn who() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "root".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_humans_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }
}
