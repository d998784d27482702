//! The agent's HTTP side (ureq, blocking): GETs with the token header and a size limit, the report
//! POST, and [`HttpChunks`], the restore's chunk source over `GET /chunks/<sha256>` (bodies sealed
//! with the session's key for a PC of a multicast session: refused, counted and fetched again when
//! they do not authenticate).

use super::AgentError;
use roomcast_mcast::seal::{self, SessionKey};
use roomcast_mcast::{SealedKind, StreamKey};
use roomcast_proto::contract::{CONTRACT_HEADER, CONTRACT_VERSION, TOKEN_HEADER};
use roomcast_store::StoreError;
use roomcast_store::chunk::ChunkRef;
use roomcast_store::manifest::VerifiedManifest;
use roomcast_store::restore::ChunkSource;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A server base URL and this boot's token.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
    // Same settings, but a 4xx/5xx is an answer to read: the server's refusal text names the chunk.
    answers: ureq::Agent,
}

impl std::fmt::Debug for Client {
    // The token is a credential: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

impl Client {
    /// A client of `base` (`http://host:port`) presenting `token`.
    pub fn new(base: &str, token: &str) -> Self {
        let config = || {
            ureq::Agent::config_builder()
                .timeout_connect(Some(Duration::from_secs(10)))
                .timeout_recv_body(Some(Duration::from_secs(120)))
        };
        Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            agent: config().build().into(),
            answers: config().http_status_as_error(false).build().into(),
        }
    }

    /// The full URL of `path` on the server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GETs `url`, refusing a body over `limit` bytes.
    pub fn get(&self, url: &str, limit: u64) -> Result<Vec<u8>, AgentError> {
        let http = |reason: String| AgentError::Http {
            url: url.to_string(),
            reason,
        };
        let mut resp = self
            .agent
            .get(url)
            .header(TOKEN_HEADER, &self.token)
            .header(CONTRACT_HEADER, CONTRACT_VERSION.to_string())
            .call()
            .map_err(|e| http(e.to_string()))?;
        resp.body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| http(e.to_string()))
    }

    /// One request whose status the caller interprets: `method` is `HEAD`, `PUT` or `POST` (with
    /// `body`); returns the status and at most `limit` bytes of the answer.
    pub fn exchange(
        &self,
        method: &str,
        url: &str,
        body: &[u8],
        limit: u64,
    ) -> Result<(u16, Vec<u8>), AgentError> {
        let http = |reason: String| AgentError::Http {
            url: url.to_string(),
            reason,
        };
        let resp = match method {
            "HEAD" => self
                .answers
                .head(url)
                .header(TOKEN_HEADER, &self.token)
                .header(CONTRACT_HEADER, CONTRACT_VERSION.to_string())
                .call(),
            "PUT" => self
                .answers
                .put(url)
                .header(TOKEN_HEADER, &self.token)
                .header(CONTRACT_HEADER, CONTRACT_VERSION.to_string())
                .header("content-type", "application/zstd")
                .send(body),
            _ => self
                .answers
                .post(url)
                .header(TOKEN_HEADER, &self.token)
                .header(CONTRACT_HEADER, CONTRACT_VERSION.to_string())
                .header("content-type", "application/json")
                .send(body),
        };
        let mut resp = resp.map_err(|e| http(e.to_string()))?;
        let status = resp.status().as_u16();
        if method == "HEAD" {
            return Ok((status, Vec::new()));
        }
        let text = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| http(e.to_string()))?;
        Ok((status, text))
    }

    /// GETs `url` like [`Client::get`], but a 404 is `None` (the thing is not offered).
    pub fn get_optional(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>, AgentError> {
        let http = |reason: String| AgentError::Http {
            url: url.to_string(),
            reason,
        };
        let mut resp = match self
            .agent
            .get(url)
            .header(TOKEN_HEADER, &self.token)
            .header(CONTRACT_HEADER, CONTRACT_VERSION.to_string())
            .call()
        {
            Ok(r) => r,
            Err(ureq::Error::StatusCode(404)) => return Ok(None),
            Err(e) => return Err(http(e.to_string())),
        };
        resp.body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map(Some)
            .map_err(|e| http(e.to_string()))
    }

    /// POSTs `body` (JSON) to `url`.
    pub fn post(&self, url: &str, body: &[u8]) -> Result<(), AgentError> {
        self.agent
            .post(url)
            .header(TOKEN_HEADER, &self.token)
            .header(CONTRACT_HEADER, CONTRACT_VERSION.to_string())
            .header("content-type", "application/json")
            .send(body)
            .map(|_| ())
            .map_err(|e| AgentError::Http {
                url: url.to_string(),
                reason: e.to_string(),
            })
    }
}

/// Chunks of one image fetched from the server, read up to the size the signed manifest gives;
/// sealed with the session's key when the PC is in a multicast session (its catch-up, D27).
pub struct HttpChunks {
    client: Client,
    compressed_len: Vec<Option<u32>>,
    key: Option<StreamKey>,
    rejected: AtomicU64,
}

/// Fetches of one chunk whose body does not authenticate before the chunk is given up.
const SEALED_TRIES: u32 = 3;

impl HttpChunks {
    /// The chunk source of `manifest` on the server of `client`; `key`: the multicast session's,
    /// which the server seals this machine's chunk bodies with.
    pub fn new(client: Client, manifest: &VerifiedManifest, key: Option<&SessionKey>) -> Self {
        HttpChunks {
            client,
            compressed_len: manifest.chunks.iter().map(|c| c.compressed_len).collect(),
            key: key.map(StreamKey::new),
            rejected: AtomicU64::new(0),
        }
    }

    /// Chunk bodies refused so far because they did not authenticate under the session key.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

impl ChunkSource for HttpChunks {
    fn compressed(&self, chunk: &ChunkRef) -> Result<Vec<u8>, StoreError> {
        let url = self
            .client
            .url(&roomcast_proto::contract::path::chunk(&chunk.sha256));
        let want = self
            .compressed_len
            .get(chunk.index as usize)
            .copied()
            .flatten()
            .unwrap_or(0);
        let refused = |reason: String| StoreError::Io {
            path: PathBuf::from(&url),
            op: format!("fetching {chunk}"),
            source: std::io::Error::other(reason),
        };
        // A server sending more than the signed size is refused before it can fill the memory.
        let limit = u64::from(want) + self.key.as_ref().map_or(0, |_| seal::OVERHEAD as u64);
        let mut tries = 0;
        let bytes = loop {
            let mut bytes = self
                .client
                .get(&url, limit)
                .map_err(|e| refused(e.to_string()))?;
            let Some(key) = &self.key else { break bytes };
            if key.open_vec(SealedKind::ChunkBody, &mut bytes) {
                break bytes;
            }
            // Tampered on the way (or not sealed): never written, fetched again.
            let n = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(%chunk, rejected = n, "a chunk body that does not authenticate under the session key refused");
            tries += 1;
            if tries == SEALED_TRIES {
                return Err(refused(format!(
                    "{SEALED_TRIES} bodies in a row do not authenticate under the session key"
                )));
            }
        };
        if bytes.len() != want as usize {
            return Err(refused(format!(
                "{} bytes received, the manifest says {want}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    fn location(&self, chunk: &ChunkRef) -> PathBuf {
        PathBuf::from(
            self.client
                .url(&roomcast_proto::contract::path::chunk(&chunk.sha256)),
        )
    }
}
