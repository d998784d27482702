//! `roomcast image push | pull | list --from`: a region's image repository on S3 (Garage). The
//! transfers are [`crate::region`]'s; this prints them. Credentials come from the environment or
//! the secrets file and are never printed nor taken on the command line.

use super::exit;
use super::image::{ImageError, bar, bytes, list_header, list_row};
use crate::region::{self, Credentials, Remote, RemoteOptions, RemoteUrl, TransferProgress};
use crate::secrets::SecretStore;
use clap::Args;
use roomcast_store::Store;
use std::path::{Path, PathBuf};

/// How to reach a region's repository. The access key is read from `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY`, else from the secrets `S3_ACCESS_KEY_ID` and `S3_SECRET_ACCESS_KEY`
/// (`ROOMCAST_SECRET_<NAME>` or the secrets file): never from an argument.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// S3 endpoint, `http(s)://host:port` (a Garage node's S3 API, or a balancer in front).
    #[arg(long, env = region::ENDPOINT_ENV)]
    endpoint: Option<String>,
    /// S3 region name (Garage's `s3_region`).
    #[arg(long, env = region::REGION_ENV, default_value = "garage")]
    s3_region: String,
    /// Secrets file (`NAME=value` lines, mode 0600) holding S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY.
    #[arg(long, env = "ROOMCAST_SECRETS")]
    secrets: Option<PathBuf>,
    /// Chunks in flight at once (memory: that many chunks); by default as many as fit in 8 MiB,
    /// 8 to 64 (8 for the default 1 MiB chunks).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: Option<u16>,
    /// Bandwidth the transfer may use, bits per second (`100M`, `2G`); none by default.
    #[arg(long)]
    max_rate: Option<String>,
    /// Print the outcome as one JSON object (for scripts and the benchmark).
    #[arg(long)]
    json: bool,
}

impl RemoteArgs {
    fn connect(&self, url: &str) -> Result<Remote, ImageError> {
        let url: RemoteUrl = url.parse()?;
        let endpoint = self.endpoint.clone().ok_or_else(|| {
            region::RegionError::Config(format!(
                "no S3 endpoint: give --endpoint http(s)://host:port or set {}",
                region::ENDPOINT_ENV
            ))
        })?;
        let max_rate = match &self.max_rate {
            None => None,
            Some(r) => Some(
                super::room::parse_rate(r).ok_or_else(|| {
                    region::RegionError::Config(format!(
                        "--max-rate {r:?}: give bits per second, e.g. 100M or 2G"
                    ))
                })? / 8,
            ),
        };
        let opts = RemoteOptions {
            endpoint,
            region: self.s3_region.clone(),
            credentials: Credentials::resolve(&SecretStore::new(self.secrets.clone()))?,
            jobs: self.jobs.map_or(0, usize::from),
            max_rate,
        };
        Ok(Remote::connect(url, &opts)?)
    }
}

fn progress_bar(
    what: &str,
) -> (
    Option<indicatif::ProgressBar>,
    impl Fn(&TransferProgress) + Sync,
) {
    let b = bar(what);
    let b2 = b.clone();
    (b, move |p: &TransferProgress| {
        if let Some(b) = &b2 {
            b.set_length(p.bytes_total);
            b.set_position(p.bytes_done);
        }
    })
}

/// `image push ID --to s3://…`.
pub(super) fn push(store_dir: &Path, id: &str, to: &str, a: &RemoteArgs) -> Result<u8, ImageError> {
    let remote = a.connect(to)?;
    let store = Store::open(store_dir)?;
    let (b, show) = progress_bar("push");
    let r = region::push(&store, &remote, id, &show);
    if let Some(b) = b {
        b.finish_and_clear();
    }
    let r = r?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "image": r.id.to_hex(), "to": remote.url.to_string(), "chunks": r.chunks,
                "present": r.present, "uploaded": r.uploaded, "uploaded_bytes": r.uploaded_bytes,
                "requests": r.requests, "bytes_out": r.bytes_out,
            })
        );
    } else {
        println!("pushed image {} to {}", r.id, remote.url);
        println!(
            "{} chunks: {} already in the bucket, {} uploaded ({}); manifest written last",
            r.chunks,
            r.present,
            r.uploaded,
            bytes(r.uploaded_bytes)
        );
        println!("{} requests, {} sent", r.requests, bytes(r.bytes_out));
    }
    Ok(exit::OK)
}

/// `image pull ID --from s3://…`.
pub(super) fn pull(
    store_dir: &Path,
    id: &str,
    from: &str,
    a: &RemoteArgs,
) -> Result<u8, ImageError> {
    let remote = a.connect(from)?;
    let store = Store::open_or_create(store_dir)?;
    let (b, show) = progress_bar("pull");
    let r = region::pull(&store, &remote, id, &show);
    if let Some(b) = b {
        b.finish_and_clear();
    }
    let r = r?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "image": r.id.to_hex(), "from": remote.url.to_string(), "signer": r.signer,
                "chunks": r.chunks, "present": r.present, "fetched": r.fetched,
                "fetched_bytes": r.fetched_bytes, "manifest_bytes": r.manifest_bytes,
                "already_visible": r.already_visible, "requests": r.requests, "bytes_in": r.bytes_in,
            })
        );
    } else {
        println!(
            "pulled image {} from {} (signer {})",
            r.id, remote.url, r.signer
        );
        println!(
            "{} chunks: {} already in the store, {} fetched ({}), each checked before it was stored",
            r.chunks,
            r.present,
            r.fetched,
            bytes(r.fetched_bytes)
        );
        println!(
            "{} requests, {} received (manifest {})",
            r.requests,
            bytes(r.bytes_in),
            bytes(r.manifest_bytes)
        );
    }
    Ok(exit::OK)
}

/// `image list --from s3://…`: what the region publishes, each signature checked against this
/// store's trusted signers.
pub(super) fn list(store_dir: &Path, from: &str, a: &RemoteArgs) -> Result<u8, ImageError> {
    let remote = a.connect(from)?;
    let trusted = match Store::open(store_dir) {
        Ok(s) => s.trusted()?,
        Err(_) => Default::default(),
    };
    let images = region::list(&remote)?;
    println!("{}", list_header());
    for img in images {
        match img.manifest {
            Ok(u) => println!("{}", list_row(u, &trusted)),
            Err(e) => println!("{:<12}  unreadable: {e}", img.id.short()),
        }
    }
    Ok(exit::OK)
}
