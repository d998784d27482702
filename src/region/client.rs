//! The S3 side: repository URLs, credentials, and a client that counts its requests and bytes and
//! may be held to a byte rate.

use super::{
    ENDPOINT_ENV, KEY_ID_ENV, KEY_ID_SECRET, RegionError, SECRET_KEY_ENV, SECRET_KEY_SECRET,
};
use crate::secrets::{Secret, SecretStore};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use roomcast_store::chunk::ChunkHash;
use roomcast_store::manifest::ImageId;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `s3://bucket/prefix`: where a region's repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl std::str::FromStr for RemoteUrl {
    type Err = RegionError;
    fn from_str(url: &str) -> Result<Self, RegionError> {
        let bad = |reason: &str| RegionError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("not an s3://bucket/prefix URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(bad(
                "bucket name: 3 to 63 characters among a-z, 0-9, '-' and '.'",
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|c| c == "." || c == ".." || (c.is_empty() && !prefix.is_empty()))
        {
            return Err(bad("prefix: no empty, '.' or '..' component"));
        }
        Ok(RemoteUrl {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl std::fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

impl RemoteUrl {
    fn key(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    /// Key of chunk `hash`: `PREFIX/chunks/ab/abcdef….zst` (the local store's layout).
    pub fn chunk_key(&self, hash: &ChunkHash) -> String {
        let h = hash.to_hex();
        self.key(&format!("chunks/{}/{h}.zst", &h[..2]))
    }

    /// Key of image `id`'s manifest: `PREFIX/images/<id>.manifest`.
    pub fn manifest_key(&self, id: &ImageId) -> String {
        self.key(&format!("images/{}.manifest", id.to_hex()))
    }

    /// Prefix under which the chunks live.
    pub fn chunks_prefix(&self) -> String {
        self.key("chunks")
    }

    /// Prefix under which the manifests live.
    pub fn images_prefix(&self) -> String {
        self.key("images")
    }

    /// `s3://bucket/key`, how errors name an object.
    pub fn object(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// An access key. Its secret half prints as `***`.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Access key id (not secret on its own, but not printed either).
    pub key_id: Secret,
    /// Secret key.
    pub secret: Secret,
}

impl Credentials {
    /// From `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` when both are set, else from the secrets
    /// `S3_ACCESS_KEY_ID` and `S3_SECRET_ACCESS_KEY` (`ROOMCAST_SECRET_<NAME>` or the secrets file).
    pub fn resolve(secrets: &SecretStore) -> Result<Credentials, RegionError> {
        Self::resolve_with(secrets, |v| std::env::var(v).ok())
    }

    /// [`Credentials::resolve`] with the environment as a lookup function.
    pub fn resolve_with(
        secrets: &SecretStore,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, RegionError> {
        if let (Some(id), Some(secret)) = (env(KEY_ID_ENV), env(SECRET_KEY_ENV)) {
            return Ok(Credentials {
                key_id: Secret::new(id),
                secret: Secret::new(secret),
            });
        }
        let get = |r: &str| {
            secrets.resolve_with(r, &env).map_err(|e| {
                RegionError::Config(format!(
                    "S3 credentials: set {KEY_ID_ENV} and {SECRET_KEY_ENV}, or: {e}"
                ))
            })
        };
        Ok(Credentials {
            key_id: get(KEY_ID_SECRET)?,
            secret: get(SECRET_KEY_SECRET)?,
        })
    }
}

/// How a command without S3 flags (step b's pull of a profile's base image) reaches the region's
/// repository: endpoint, S3 region and the secrets file the access key may come from.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// `http(s)://host:port` of an S3 endpoint.
    pub endpoint: Option<String>,
    /// S3 region name; `garage` when `None`.
    pub s3_region: Option<String>,
    /// Secrets file holding `S3_ACCESS_KEY_ID` and `S3_SECRET_ACCESS_KEY`.
    pub secrets: Option<std::path::PathBuf>,
}

impl Access {
    /// From the environment: `AWS_ENDPOINT_URL`, `AWS_REGION`, `ROOMCAST_SECRETS`.
    pub fn from_env() -> Access {
        Access {
            endpoint: std::env::var(ENDPOINT_ENV).ok(),
            s3_region: std::env::var(super::REGION_ENV).ok(),
            secrets: std::env::var_os("ROOMCAST_SECRETS").map(std::path::PathBuf::from),
        }
    }
}

/// Chunk bytes the default parallelism keeps in flight: 8 chunks of the default 1 MiB.
pub const AUTO_JOBS_BYTES: u64 = 8 << 20;

/// The default parallelism for `chunk_size`-byte chunks: as many as fit in [`AUTO_JOBS_BYTES`],
/// 8 to 64. One request per chunk is latency-bound: with 256 KiB chunks, 8 in flight made a pull
/// 1.26x `rclone copy`'s time, 32 made it 0.58x (docs/PERFORMANCE.md).
pub fn auto_jobs(chunk_size: u32) -> usize {
    (AUTO_JOBS_BYTES / u64::from(chunk_size.max(1))).clamp(8, 64) as usize
}

/// How to reach the object store.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// `http(s)://host:port` of an S3 endpoint (any Garage node's S3 API, or a balancer in front).
    pub endpoint: String,
    /// S3 region name (Garage: `s3_region` of its configuration, `garage` by default).
    pub region: String,
    /// The access key.
    pub credentials: Credentials,
    /// Requests in flight at once (and so chunks held in memory at once); 0: [`auto_jobs`] of the
    /// image's chunk size.
    pub jobs: usize,
    /// Bytes per second the transfers may use (a school's link is shared); `None`: no limit.
    pub max_rate: Option<u64>,
}

/// Requests and payload bytes of one command, counted at the client.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Requests sent (GET, PUT, LIST pages).
    pub requests: AtomicU64,
    /// Payload bytes received (object bodies; listings not counted).
    pub bytes_in: AtomicU64,
    /// Payload bytes sent (object bodies).
    pub bytes_out: AtomicU64,
}

impl Traffic {
    /// (requests, bytes in, bytes out) so far.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }
}

/// A connected repository.
#[derive(Debug, Clone)]
pub struct Remote {
    /// Where it is.
    pub url: RemoteUrl,
    s3: Arc<AmazonS3>,
    /// What this client sent and received.
    pub traffic: Arc<Traffic>,
    jobs: usize,
    rate: Option<Arc<RateLimit>>,
}

impl Remote {
    /// A client for `url` (no request is made yet). Path-style requests, as Garage serves them;
    /// plain `http://` endpoints are allowed (a site-local Garage), bounded timeouts and retries.
    pub fn connect(url: RemoteUrl, opts: &RemoteOptions) -> Result<Remote, RegionError> {
        // reqwest is built without its own TLS provider: ring, already used by ureq, is it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if !(opts.endpoint.starts_with("http://") || opts.endpoint.starts_with("https://")) {
            return Err(RegionError::Config(format!(
                "S3 endpoint {:?}: give http(s)://host:port (--endpoint or {ENDPOINT_ENV})",
                opts.endpoint
            )));
        }
        let client = ClientOptions::new()
            .with_allow_http(true)
            .with_connect_timeout(Duration::from_secs(10))
            .with_timeout(Duration::from_secs(120));
        let retry = RetryConfig {
            max_retries: 5,
            retry_timeout: Duration::from_secs(120),
            ..RetryConfig::default()
        };
        let s3 = AmazonS3Builder::new()
            .with_endpoint(&opts.endpoint)
            .with_region(&opts.region)
            .with_bucket_name(&url.bucket)
            .with_access_key_id(opts.credentials.key_id.expose())
            .with_secret_access_key(opts.credentials.secret.expose())
            .with_virtual_hosted_style_request(false)
            .with_client_options(client)
            .with_retry(retry)
            .build()
            // The builder's errors name options, never their values.
            .map_err(|e| RegionError::Config(format!("S3 client for {url}: {e}")))?;
        Ok(Remote {
            url,
            s3: Arc::new(s3),
            traffic: Arc::new(Traffic::default()),
            jobs: opts.jobs,
            rate: opts.max_rate.map(|r| Arc::new(RateLimit::new(r))),
        })
    }

    /// Requests in flight at once for an image of `chunk_size`-byte chunks: as configured, or
    /// [`auto_jobs`] when 0.
    pub fn jobs(&self, chunk_size: u32) -> usize {
        if self.jobs == 0 {
            auto_jobs(chunk_size)
        } else {
            self.jobs
        }
    }

    fn err(&self, key: &str, op: &'static str) -> impl FnOnce(object_store::Error) -> RegionError {
        let object = self.url.object(key);
        move |source| RegionError::S3 { object, op, source }
    }

    /// Every object under `prefix/` with its size.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, RegionError> {
        use futures_lite::StreamExt as _;
        let p = ObjectPath::from(prefix);
        let mut stream = self.s3.list(Some(&p));
        let mut out = Vec::new();
        // One request per page of 1000 keys.
        self.traffic.requests.fetch_add(1, Ordering::Relaxed);
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(self.err(prefix, "listing"))?;
            out.push((meta.location.to_string(), meta.size));
            if out.len() % 1000 == 0 {
                self.traffic.requests.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(out)
    }

    /// The bytes of object `key`, refused unread when its size fails `accept` (which returns the
    /// expected size, worded, on refusal); `Ok(None)` when there is no such object.
    pub async fn get(
        &self,
        key: &str,
        accept: impl FnOnce(u64) -> Result<(), String>,
    ) -> Result<Option<Vec<u8>>, RegionError> {
        self.traffic.requests.fetch_add(1, Ordering::Relaxed);
        let r = match self.s3.get(&ObjectPath::from(key)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err(key, "reading")(e)),
        };
        let size = r.meta.size;
        if let Err(expected) = accept(size) {
            return Err(RegionError::Size {
                object: self.url.object(key),
                size,
                expected,
            });
        }
        if let Some(rate) = &self.rate {
            rate.wait(size).await;
        }
        let body = r.bytes().await.map_err(self.err(key, "reading"))?;
        self.traffic
            .bytes_in
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok(Some(Vec::from(body)))
    }

    /// Writes object `key` (one request: chunks and manifests are single PUTs).
    pub async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), RegionError> {
        let n = body.len() as u64;
        if let Some(rate) = &self.rate {
            rate.wait(n).await;
        }
        self.traffic.requests.fetch_add(1, Ordering::Relaxed);
        self.s3
            .put(&ObjectPath::from(key), PutPayload::from(body))
            .await
            .map_err(self.err(key, "writing"))?;
        self.traffic.bytes_out.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}

/// A byte-rate limit shared by every request of a command: each transfer reserves its bytes on one
/// timeline and waits for its slot.
#[derive(Debug)]
struct RateLimit {
    bytes_per_sec: u64,
    next: std::sync::Mutex<Instant>,
}

impl RateLimit {
    fn new(bytes_per_sec: u64) -> RateLimit {
        RateLimit {
            bytes_per_sec: bytes_per_sec.max(1),
            next: std::sync::Mutex::new(Instant::now()),
        }
    }

    async fn wait(&self, bytes: u64) {
        let start = {
            let mut next = self.next.lock().expect("rate lock");
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parallelism_keeps_8_mib_of_chunks_in_flight_within_8_to_64() {
        assert_eq!(auto_jobs(1 << 20), 8);
        assert_eq!(auto_jobs(256 << 10), 32);
        assert_eq!(auto_jobs(64 << 10), 64);
        assert_eq!(auto_jobs(16 << 20), 8);
    }

    #[test]
    fn urls_parse_into_bucket_and_prefix() {
        let u: RemoteUrl = "s3://region-images/sti2d/".parse().unwrap();
        assert_eq!(u.bucket, "region-images");
        assert_eq!(u.prefix, "sti2d");
        assert_eq!(u.to_string(), "s3://region-images/sti2d");
        let h = ChunkHash::of(b"x");
        assert_eq!(
            u.chunk_key(&h),
            format!("sti2d/chunks/{}/{}.zst", &h.to_hex()[..2], h.to_hex())
        );
        let bare: RemoteUrl = "s3://images".parse().unwrap();
        assert_eq!(bare.prefix, "");
        assert!(bare.manifest_key(&ImageId(h)).starts_with("images/"));
        for bad in [
            "http://x/y",
            "s3://A_B/x",
            "s3://ab",
            "s3://abc/x/../y",
            "s3://abc/x//y",
        ] {
            assert!(bad.parse::<RemoteUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_come_from_the_environment_or_secrets_and_never_print() {
        let env = |v: &str| match v {
            "AWS_ACCESS_KEY_ID" => Some("GKabc".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("s3cr3t-value".to_string()),
            _ => None,
        };
        let c = Credentials::resolve_with(&SecretStore::default(), env).unwrap();
        assert_eq!(c.secret.expose(), "s3cr3t-value");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let env2 = |v: &str| match v {
            "ROOMCAST_SECRET_S3_ACCESS_KEY_ID" => Some("GKdef".to_string()),
            "ROOMCAST_SECRET_S3_SECRET_ACCESS_KEY" => Some("other-secret".to_string()),
            _ => None,
        };
        let c = Credentials::resolve_with(&SecretStore::default(), env2).unwrap();
        assert_eq!(c.key_id.expose(), "GKdef");
        let e = Credentials::resolve_with(&SecretStore::default(), |_| None).unwrap_err();
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
    }
}
