//! The boot HTTP service (axum): iPXE boot scripts per MAC, the agent's kernel and initramfs, and
//! the agent's reports, for one campaign.
//!
//! `GET /boot/<mac>.ipxe`: a machine of the running campaign gets a script that boots the agent with
//! a one-time token on the kernel command line when [`crate::net::pxe_gate`] admits the request
//! (proxyDHCP saw the machine PXE-boot within minutes, taking the address the request comes from;
//! one token per boot); any other request gets a script that boots its local disk (`sanboot
//! --no-describe --drive 0x80`, or `exit` back to the firmware on UEFI), the refusal logged with MAC
//! and address.
//! `GET /files/<name>`: a file of the boot root. `POST /agent/report` with header
//! `X-Roomcast-Token`: the agent's report; the token is spent, a replay is refused (403).
//!
//! Image, for the agent's unicast restore (only when the campaign serves one): `GET /image/manifest`
//! (the signed envelope, as stored) and `GET /chunks/<sha256>` (the stored zstd frame of a chunk of
//! that image). Both want the `X-Roomcast-Token` header with a token that is live: issued to a
//! machine of the campaign by its boot script and not yet spent by its report (401 without, 403
//! otherwise). Reading does not spend the token, so the agent can fetch many chunks and then report.
//! A chunk path must be 64 lowercase hex digits and name a chunk of the campaign's image (404 for
//! any other chunk of the store): a token opens one image, not the store. To a machine of the
//! offered multicast session a chunk body is sealed with the session's key
//! ([`contract::SEALED_CONTENT_TYPE`], `roomcast_mcast::seal`, D27): its catch-up crosses the LAN
//! no clearer than its stream.
//!
//! The PC's facts (`POST /agent/facts`, live token): the agent's [`HardwareFacts`], sent before
//! anything is written, judged against what the room file expects of that machine
//! ([`BootService::expect`], [`PcExpected::judge`]) and answered with a [`Clearance`]; kept for the
//! inventory and written to `<reports_dir>/<mac>.facts.json`. A machine refused there (another PC
//! model than the room's) is refused the manifest, the chunks and the session too (403 naming why),
//! and so is a machine that sent no facts when the session requires them.
//! `GET /agent/unattend` with a live token: that machine's unattend.xml (a Windows PC at a deploy:
//! its name and offline domain join blob, step h), 404 for any other.
//! `POST /agent/progress` with a live token (not spent): how far that machine's restore is
//! ([`contract::Progress`], at most a second apart), handed to the [`ProgressSink`] the session
//! set (the campaign keeps the newest per PC for the console); 204, or 400 on figures no restore
//! can have.
//!
//! Multicast (only while a deploy session is offered, see [`crate::serve`]): `GET /mcast/session`
//! with a live token answers the [`SessionInfo`] of that machine: where the control channel listens,
//! the group, and the machine's own control-channel token. 404 when no session is offered: the agent
//! then restores over unicast.

use crate::net::capture::{CaptureConfig, CaptureSink};
use crate::net::files::BootRoot;
use crate::net::pxe_gate::{Admission, PxeGate, SharedGate};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use roomcast_proto::contract::{
    self, CONTRACT_HEADER, Clearance, HardwareFacts, PcExpected, Progress, SessionInfo,
    TOKEN_HEADER,
};
use roomcast_proto::mac::Mac;
use roomcast_store::Store;
use roomcast_store::chunk::ChunkHash;
use roomcast_store::manifest::ImageId;
use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const CAMPAIGN_TEMPLATE: &str = include_str!("../../templates/boot/campaign.ipxe.j2");
const LOCAL_TEMPLATE: &str = include_str!("../../templates/boot/local.ipxe.j2");
const CAMPAIGN_GRUB_TEMPLATE: &str = include_str!("../../templates/boot/campaign.grub.j2");
const LOCAL_GRUB_TEMPLATE: &str = include_str!("../../templates/boot/local.grub.j2");

/// The boot loader asking for a machine's boot script: the script is written in its language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    /// iPXE (`GET /boot/<mac>.ipxe` over HTTP).
    Ipxe,
    /// Debian's signed GRUB of the Secure Boot chain (`boot/<mac>.grub` over TFTP, `net::tftp`:
    /// that GRUB has no HTTP).
    Grub,
}

impl Loader {
    fn templates(self) -> (&'static str, &'static str) {
        match self {
            Loader::Ipxe => ("campaign.ipxe", "local.ipxe"),
            Loader::Grub => ("campaign.grub", "local.grub"),
        }
    }
}

/// What the boot service serves for one campaign.
#[derive(Debug, Clone)]
pub struct BootConfig {
    /// Campaign name, shown on the PC's screen.
    pub campaign: String,
    /// Machines of the campaign: MAC -> hostname (the allowlist).
    pub machines: BTreeMap<Mac, String>,
    /// Base URL the PCs reach this service at, e.g. `http://198.18.0.1:8080`.
    pub base_url: String,
    /// Kernel file name inside the boot root.
    pub kernel: String,
    /// Initramfs file name inside the boot root.
    pub initrd: String,
    /// Extra kernel command line (console, quiet...).
    pub cmdline: String,
    /// Where agent reports are written, one `<mac>.json` each.
    pub reports_dir: PathBuf,
    /// The image the agents restore, if the campaign deploys one.
    pub image: Option<ServedImage>,
}

/// The image of a campaign, served to its agents.
#[derive(Debug, Clone)]
pub struct ServedImage {
    /// The store holding it.
    pub store: Store,
    /// Its id.
    pub id: ImageId,
}

/// The served image, opened once: its envelope and the chunks it names.
struct OpenImage {
    store: Store,
    envelope: Vec<u8>,
    chunks: HashSet<ChunkHash>,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefused {
    /// Never issued, or replaced by a newer boot of the same machine.
    #[error("unknown token")]
    Unknown,
    /// Already used once.
    #[error("token of {0} already used")]
    Used(Mac),
}

/// One-time tokens: one live token per machine, issued when its boot script is served.
#[derive(Debug, Default)]
pub struct TokenBook {
    live: BTreeMap<String, Mac>,
    used: BTreeMap<String, Mac>,
}

impl TokenBook {
    /// Records `token` for `mac`, revoking the machine's previous unused token.
    pub fn issue(&mut self, mac: Mac, token: String) {
        self.live.retain(|_, m| *m != mac);
        self.live.insert(token, mac);
    }

    /// Spends `token`: the machine it was issued to, once.
    pub fn redeem(&mut self, token: &str) -> Result<Mac, TokenRefused> {
        if let Some(mac) = self.live.remove(token) {
            self.used.insert(token.to_string(), mac);
            return Ok(mac);
        }
        match self.used.get(token) {
            Some(mac) => Err(TokenRefused::Used(*mac)),
            None => Err(TokenRefused::Unknown),
        }
    }

    /// Whether `mac` was ever given a token (its boot script was served: it reached the agent's boot).
    pub fn issued_to(&self, mac: Mac) -> bool {
        self.live
            .values()
            .chain(self.used.values())
            .any(|m| *m == mac)
    }

    /// The machine a live (issued, not yet spent) token belongs to, without spending it.
    pub fn check(&self, token: &str) -> Result<Mac, TokenRefused> {
        if let Some(mac) = self.live.get(token) {
            return Ok(*mac);
        }
        match self.used.get(token) {
            Some(mac) => Err(TokenRefused::Used(*mac)),
            None => Err(TokenRefused::Unknown),
        }
    }
}

/// An accepted agent report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentReport {
    /// The machine (from its token, not from what it claims).
    pub mac: Mac,
    /// The body as sent (JSON).
    pub body: String,
}

/// A multicast session offered to the campaign's agents (set by [`crate::serve`]).
#[derive(Debug, Clone)]
pub struct SessionOffer {
    /// Where the deploy server's control channel listens (the room interface's address).
    pub control: SocketAddrV4,
    /// Multicast group and port of the data stream.
    pub group: SocketAddrV4,
    /// Control-channel token of each machine of the session (handed only to that machine).
    pub tokens: BTreeMap<Mac, [u8; 32]>,
    /// The session's stream key (handed only with a live token).
    pub key: roomcast_mcast::SessionKey,
    /// The session is over: late agents restore over unicast.
    pub ended: bool,
}

/// The homogeneity check of a session: what the room file expects of each machine, and the facts
/// each one sent with the answer it got.
#[derive(Debug, Default)]
struct Homogeneity {
    expected: BTreeMap<Mac, PcExpected>,
    require: bool,
    facts: BTreeMap<Mac, (HardwareFacts, Clearance)>,
}

/// Where the agents' progress goes (the campaign's live table): called off the async runtime, with
/// the machine from its token.
pub type ProgressSink = Arc<dyn Fn(Mac, Progress) + Send + Sync>;

/// Shared state of the service.
pub struct BootService {
    config: BootConfig,
    root: Option<BootRoot>,
    tokens: Mutex<TokenBook>,
    gate: SharedGate,
    reports: Mutex<Vec<AgentReport>>,
    env: minijinja::Environment<'static>,
    image: Option<OpenImage>,
    capture: Option<CaptureSink>,
    session: Mutex<Option<SessionOffer>>,
    homogeneity: Mutex<Homogeneity>,
    /// Each Windows PC's unattend.xml (it holds the PC's offline domain join blob: a secret, never
    /// logged), handed only to that machine's live token.
    unattend: Mutex<BTreeMap<Mac, crate::secrets::Secret>>,
    /// Chunk bodies sealed so far: the counter in their nonces. It only goes up for the life of
    /// the service, so no nonce repeats under a session's key (D27).
    sealed_bodies: AtomicU64,
    progress: Mutex<Option<ProgressSink>>,
}

impl std::fmt::Debug for BootService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootService")
            .field("campaign", &self.config.campaign)
            .field("base_url", &self.config.base_url)
            .finish_non_exhaustive()
    }
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A boot template does not compile.
    #[error("boot templates: {0}")]
    Template(#[from] minijinja::Error),
    /// The campaign's image cannot be opened or does not verify against the store's signers.
    #[error("campaign image: {0}")]
    Image(#[from] roomcast_store::StoreError),
    /// The capture session cannot be opened (store missing, signing key not trusted).
    #[error("capture session: {0}")]
    Capture(roomcast_store::StoreError),
}

impl BootService {
    /// Prepares the service; `root` holds the kernel, initramfs and iPXE binaries.
    /// The campaign's image is verified here, once: a server never hands out an image its own store
    /// does not trust.
    pub fn new(config: BootConfig, root: BootRoot) -> Result<Arc<BootService>, ServiceError> {
        Self::build(config, Some(root), None)
    }

    /// Like [`BootService::new`], and also accepts the upload of the master's disk (step f) when
    /// `capture` is given: see [`crate::net::capture`].
    pub fn with_capture(
        config: BootConfig,
        root: BootRoot,
        capture: Option<CaptureConfig>,
    ) -> Result<Arc<BootService>, ServiceError> {
        Self::build(config, Some(root), capture)
    }

    /// The service without boot files (`roomcast deploy` by hand): image, reports and multicast
    /// session only; `/files/` answers 404.
    pub fn image_only(config: BootConfig) -> Result<Arc<BootService>, ServiceError> {
        Self::build(config, None, None)
    }

    fn build(
        config: BootConfig,
        root: Option<BootRoot>,
        capture: Option<CaptureConfig>,
    ) -> Result<Arc<BootService>, ServiceError> {
        let capture = match capture {
            None => None,
            Some(c) => Some(CaptureSink::new(c).map_err(ServiceError::Capture)?),
        };
        let image = match &config.image {
            None => None,
            Some(img) => {
                let m = img.store.open_verified(&img.id)?;
                let chunks = m.chunks.iter().filter_map(|c| c.sha256).collect();
                Some(OpenImage {
                    store: img.store.clone(),
                    envelope: m.envelope(),
                    chunks,
                })
            }
        };
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template("campaign.ipxe", CAMPAIGN_TEMPLATE)?;
        env.add_template("local.ipxe", LOCAL_TEMPLATE)?;
        env.add_template("campaign.grub", CAMPAIGN_GRUB_TEMPLATE)?;
        env.add_template("local.grub", LOCAL_GRUB_TEMPLATE)?;
        Ok(Arc::new(BootService {
            config,
            root,
            tokens: Mutex::default(),
            gate: PxeGate::shared(),
            reports: Mutex::default(),
            env,
            image,
            capture,
            session: Mutex::default(),
            homogeneity: Mutex::default(),
            unattend: Mutex::default(),
            sealed_bodies: AtomicU64::new(0),
            progress: Mutex::default(),
        }))
    }

    /// Whether `mac` was handed the agent's boot script (with a token) in this session.
    pub fn booted(&self, mac: Mac) -> bool {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .issued_to(mac)
    }

    /// The latest report of `mac`, if it sent one.
    pub fn report_of(&self, mac: Mac) -> Option<AgentReport> {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .find(|r| r.mac == mac)
            .cloned()
    }

    /// The image the capture session signed, once its agent finished uploading.
    pub fn captured(&self) -> Option<ImageId> {
        self.capture.as_ref().and_then(CaptureSink::captured)
    }

    /// The capture session, if this service accepts one.
    pub(crate) fn capture_sink(&self) -> Option<&CaptureSink> {
        self.capture.as_ref()
    }

    /// The gate proxyDHCP feeds with what it sees (`net::proxydhcp::ProxyDhcp::witness`): this
    /// service hands a token only to what it admits.
    pub fn pxe_gate(&self) -> SharedGate {
        self.gate.clone()
    }

    /// The boot script for `mac` asked for from `from`: the agent's, with this boot's token, when
    /// `mac` is in the campaign and the PXE gate admits the request; the local-disk script
    /// otherwise (every refusal logged with MAC and address).
    pub fn boot_script(&self, mac: Mac, from: Ipv4Addr) -> Result<String, minijinja::Error> {
        self.boot_script_for(Loader::Ipxe, mac, from)
    }

    /// [`BootService::boot_script`] in `loader`'s language: the same gate, the same token book.
    pub fn boot_script_for(
        &self,
        loader: Loader,
        mac: Mac,
        from: Ipv4Addr,
    ) -> Result<String, minijinja::Error> {
        let (campaign_template, local_template) = loader.templates();
        let local = || {
            self.env
                .get_template(local_template)?
                .render(minijinja::context! { mac => mac.to_string() })
        };
        let Some(hostname) = self.config.machines.get(&mac) else {
            tracing::info!(?loader, %mac, %from, "boot script: not in the campaign, local disk");
            return local();
        };
        let admitted = self.gate.lock().unwrap_or_else(|p| p.into_inner()).admit(
            mac,
            from,
            std::time::Instant::now(),
            || hex::encode(rand::random::<[u8; 16]>()),
        );
        let token = match admitted {
            Ok(Admission::New(token)) => {
                self.tokens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .issue(mac, token.clone());
                tracing::info!(?loader, %mac, %hostname, %from, "boot script: agent, new token");
                token
            }
            Ok(Admission::Again(token)) => {
                tracing::info!(?loader, %mac, %hostname, %from, "boot script: agent, same token again");
                token
            }
            Err(why) => {
                tracing::warn!(?loader, %mac, %hostname, %from, %why, "boot script: token refused, local disk");
                return local();
            }
        };
        let c = &self.config;
        self.env
            .get_template(campaign_template)?
            .render(minijinja::context! {
                mac => mac.to_string(), hostname, campaign => &c.campaign, base => &c.base_url,
                kernel => &c.kernel, initrd => &c.initrd, cmdline => &c.cmdline,
                agent => contract::AgentCmdline::words(&c.base_url, &token, &mac.to_string()),
            })
    }

    /// Issues `token` to `mac` without a boot script (a deploy started by hand hands tokens to the
    /// technician); like a boot, it revokes the machine's previous unused token.
    pub fn issue_token(&self, mac: Mac, token: String) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .issue(mac, token);
    }

    /// What the room file expects of each machine (its model check); with `require`, a machine of
    /// `expected` that sent no facts is refused the image (the PXE-booted agent always sends them;
    /// an agent started by hand in the lab reads no PC and sends none).
    pub fn expect(&self, expected: BTreeMap<Mac, PcExpected>, require: bool) {
        let mut h = self.homogeneity.lock().unwrap_or_else(|p| p.into_inner());
        h.expected = expected;
        h.require = require;
    }

    /// Judges the facts `mac` sent, keeps them with the answer, writes both to
    /// `<reports_dir>/<mac>.facts.json`. A machine without expectation is cleared.
    pub fn clear(&self, mac: Mac, facts: HardwareFacts) -> Clearance {
        let mut h = self.homogeneity.lock().unwrap_or_else(|p| p.into_inner());
        let clearance = h
            .expected
            .get(&mac)
            .map(|e| e.judge(&facts))
            .unwrap_or_default();
        match &clearance.refused {
            Some(why) => tracing::warn!(%mac, %why, "PC refused"),
            None => tracing::info!(%mac, model = %facts.model, "PC cleared"),
        }
        for w in &clearance.warnings {
            tracing::warn!(%mac, warning = %w, "PC facts");
        }
        let file = self
            .config
            .reports_dir
            .join(format!("{}.facts.json", mac.hyphenated()));
        let body = serde_json::json!({"facts": &facts, "clearance": &clearance});
        if let Err(e) = std::fs::write(&file, body.to_string()) {
            tracing::error!(%mac, file = %file.display(), %e, "cannot store facts");
        }
        h.facts.insert(mac, (facts, clearance.clone()));
        clearance
    }

    /// The facts `mac` sent in this session and the answer it got.
    pub fn facts_of(&self, mac: Mac) -> Option<(HardwareFacts, Clearance)> {
        self.homogeneity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .facts
            .get(&mac)
            .cloned()
    }

    /// Whether `mac` may be given the image: not refused on its facts, and not missing facts
    /// the session requires.
    fn cleared(&self, mac: Mac) -> Result<(), String> {
        let h = self.homogeneity.lock().unwrap_or_else(|p| p.into_inner());
        match h.facts.get(&mac) {
            Some((
                _,
                Clearance {
                    refused: Some(why), ..
                },
            )) => Err(format!("{mac} refused: {why}\n")),
            Some(_) => Ok(()),
            None if h.require && h.expected.contains_key(&mac) => Err(format!(
                "{mac}: send the PC's facts first ({})\n",
                contract::path::FACTS
            )),
            None => Ok(()),
        }
    }

    /// Offers (or, with `None`, withdraws) a multicast session to the agents.
    pub fn set_session(&self, offer: Option<SessionOffer>) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = offer;
    }

    /// Hands every agent's progress to `sink` from now on.
    pub fn set_progress_sink(&self, sink: ProgressSink) {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = Some(sink);
    }

    /// Serves `xml` as `mac`'s unattend.xml (`GET /agent/unattend`, step h of a Windows PC).
    pub fn set_unattend(&self, mac: Mac, xml: crate::secrets::Secret) {
        self.unattend
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(mac, xml);
    }

    /// Marks the offered session as over: agents asking from now on restore over unicast.
    pub fn end_session(&self) {
        if let Some(o) = self
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            o.ended = true;
        }
    }

    /// The session as `mac` sees it, if one is offered and `mac` is in it.
    pub fn session_for(&self, mac: Mac) -> Option<SessionInfo> {
        let guard = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let o = guard.as_ref()?;
        let token = o.tokens.get(&mac)?;
        Some(SessionInfo {
            control: o.control,
            group: o.group,
            machine: mac.to_string(),
            token: hex::encode(token),
            key: hex::encode(o.key.0),
            ended: o.ended,
        })
    }

    /// The key `mac`'s chunk bodies are sealed with: the offered session's, if `mac` is in it
    /// (ended or not: whoever got the session info holds the key).
    fn body_key(&self, mac: Mac) -> Option<roomcast_mcast::SessionKey> {
        let guard = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let o = guard.as_ref()?;
        o.tokens.contains_key(&mac).then_some(o.key)
    }

    /// `body` sealed with `key` as the next chunk body (`roomcast_mcast::seal`).
    fn seal_body(&self, key: &roomcast_mcast::SessionKey, body: &[u8]) -> Vec<u8> {
        let counter = self.sealed_bodies.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        roomcast_mcast::StreamKey::new(key).seal(
            roomcast_mcast::SealedKind::ChunkBody,
            counter,
            body,
            &mut out,
        );
        out
    }

    /// Accepts a report if its token is live; writes it to `<reports_dir>/<mac>.json`.
    pub fn report(&self, token: &str, body: String) -> Result<Mac, TokenRefused> {
        let mac = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .redeem(token)?;
        let file = self
            .config
            .reports_dir
            .join(format!("{}.json", mac.hyphenated()));
        let tmp = file.with_extension("json.tmp");
        if let Err(e) = std::fs::write(&tmp, &body).and_then(|()| std::fs::rename(&tmp, &file)) {
            tracing::error!(%mac, file = %file.display(), %e, "cannot store report");
        }
        tracing::info!(%mac, bytes = body.len(), "agent report");
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(AgentReport { mac, body });
        Ok(mac)
    }

    /// The machine whose live token this is, for the read-only image endpoints.
    pub fn check_token(&self, token: &str) -> Result<Mac, TokenRefused> {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(token)
    }

    /// Reports received so far.
    pub fn reports(&self) -> Vec<AgentReport> {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The routes of the boot service itself (the capture routes are `net::upload`'s; the whole router
/// is [`crate::net::router`]).
pub(crate) fn routes() -> Router<Arc<BootService>> {
    Router::new()
        .route("/boot/{script}", get(boot_script))
        .route("/files/{name}", get(file))
        .route(contract::path::REPORT, post(report))
        .route(contract::path::FACTS, post(facts))
        .route(contract::path::MANIFEST, get(manifest))
        .route("/chunks/{sha256}", get(chunk))
        .route(contract::path::SESSION, get(session))
        .route(contract::path::UNATTEND, get(unattend))
        .route(contract::path::PROGRESS, post(progress))
}

/// The live token of an agent's request that speaks this server's contract version, or the status
/// and text refusing it (401 no token, 403 a token that is not live, 409 another contract version).
pub(crate) fn live_token(
    s: &BootService,
    headers: &HeaderMap,
    what: &str,
) -> Result<Mac, (StatusCode, String)> {
    let Some(token) = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err((StatusCode::UNAUTHORIZED, "missing token\n".into()));
    };
    let mac = s.check_token(token).map_err(|e| {
        tracing::warn!(%e, what, "image request refused");
        (StatusCode::FORBIDDEN, format!("{e}\n"))
    })?;
    contract_of(headers).map_err(|e| {
        tracing::warn!(%mac, %e, what, "agent of another contract version refused");
        (StatusCode::CONFLICT, format!("{e}\n"))
    })?;
    Ok(mac)
}

/// The image endpoints' check that `mac` was cleared on its facts (403 naming why not).
fn gate(s: &BootService, mac: Mac) -> Result<Mac, (StatusCode, String)> {
    s.cleared(mac).map(|()| mac).map_err(|why| {
        tracing::warn!(%mac, why = why.trim(), "image refused");
        (StatusCode::FORBIDDEN, why)
    })
}

/// Biggest facts document accepted (a PC with many disks and cards is a few KiB).
const MAX_FACTS: usize = 256 * 1024;

async fn facts(State(s): State<Arc<BootService>>, headers: HeaderMap, body: Bytes) -> Response {
    let mac = match live_token(&s, &headers, "facts") {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    if body.len() > MAX_FACTS {
        return (StatusCode::PAYLOAD_TOO_LARGE, "facts too large\n").into_response();
    }
    match serde_json::from_slice::<HardwareFacts>(&body) {
        Ok(f) => axum::Json(s.clear(mac, f)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("unreadable facts: {e}\n")).into_response(),
    }
}

/// The contract version check of an agent's request.
fn contract_of(headers: &HeaderMap) -> Result<(), contract::VersionMismatch> {
    contract::check_version(headers.get(CONTRACT_HEADER).and_then(|v| v.to_str().ok()))
}

async fn manifest(State(s): State<Arc<BootService>>, headers: HeaderMap) -> Response {
    let mac = match live_token(&s, &headers, "manifest").and_then(|m| gate(&s, m)) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let Some(img) = &s.image else {
        return (StatusCode::NOT_FOUND, "this campaign serves no image\n").into_response();
    };
    tracing::info!(%mac, "manifest");
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        img.envelope.clone(),
    )
        .into_response()
}

async fn session(State(s): State<Arc<BootService>>, headers: HeaderMap) -> Response {
    let mac = match live_token(&s, &headers, "multicast session").and_then(|m| gate(&s, m)) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    match s.session_for(mac) {
        Some(info) => axum::Json(info).into_response(),
        None => (StatusCode::NOT_FOUND, "no multicast session offered\n").into_response(),
    }
}

async fn progress(State(s): State<Arc<BootService>>, headers: HeaderMap, body: Bytes) -> Response {
    let mac = match live_token(&s, &headers, "progress") {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    if body.len() > Progress::MAX_BODY {
        return (StatusCode::PAYLOAD_TOO_LARGE, "progress too large\n").into_response();
    }
    let p = match serde_json::from_slice::<Progress>(&body)
        .map_err(|e| format!("unreadable progress: {e}"))
        .and_then(|p| p.check().map(|()| p))
    {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(%mac, %why, "progress refused");
            return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
        }
    };
    let sink = s.progress.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(sink) = sink {
        // The sink writes SQLite: off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || sink(mac, p)).await;
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn unattend(State(s): State<Arc<BootService>>, headers: HeaderMap) -> Response {
    let mac = match live_token(&s, &headers, "unattend") {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let xml = s
        .unattend
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&mac)
        .map(|x| x.expose().as_bytes().to_vec());
    match xml {
        Some(xml) => {
            tracing::info!(%mac, bytes = xml.len(), "unattend.xml served");
            ([(header::CONTENT_TYPE, "application/xml")], xml).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no unattend.xml for this machine\n").into_response(),
    }
}

async fn chunk(
    State(s): State<Arc<BootService>>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let mac = match live_token(&s, &headers, "chunk").and_then(|m| gate(&s, m)) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let Some(img) = &s.image else {
        return (StatusCode::NOT_FOUND, "this campaign serves no image\n").into_response();
    };
    let valid = name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let Some(hash) = valid.then(|| name.parse::<ChunkHash>().ok()).flatten() else {
        return (StatusCode::NOT_FOUND, "want /chunks/<64 lowercase hex>\n").into_response();
    };
    if !img.chunks.contains(&hash) {
        return (
            StatusCode::NOT_FOUND,
            format!("{name}: not a chunk of the campaign's image\n"),
        )
            .into_response();
    }
    match tokio::fs::read(img.store.chunk_path(&hash)).await {
        Ok(bytes) => match s.body_key(mac) {
            Some(key) => (
                [(header::CONTENT_TYPE, contract::SEALED_CONTENT_TYPE)],
                s.seal_body(&key, &bytes),
            )
                .into_response(),
            None => ([(header::CONTENT_TYPE, "application/zstd")], bytes).into_response(),
        },
        Err(e) => {
            tracing::error!(chunk = %name, %e, "chunk unreadable");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{name}: {e}\n")).into_response()
        }
    }
}

async fn boot_script(
    State(s): State<Arc<BootService>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(script): UrlPath<String>,
) -> Response {
    let Some(mac) = script
        .strip_suffix(".ipxe")
        .and_then(|m| m.parse::<Mac>().ok())
    else {
        return (StatusCode::NOT_FOUND, "want /boot/<mac>.ipxe\n").into_response();
    };
    let from = match peer.ip() {
        std::net::IpAddr::V4(a) => a,
        std::net::IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    match s.boot_script(mac, from) {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain")], text).into_response(),
        Err(e) => {
            tracing::error!(%mac, %e, "boot script template");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error\n").into_response()
        }
    }
}

async fn file(State(s): State<Arc<BootService>>, UrlPath(name): UrlPath<String>) -> Response {
    let Some(root) = &s.root else {
        return (StatusCode::NOT_FOUND, "this server serves no boot files\n").into_response();
    };
    let path = match root.resolve(&name) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(%e, "http file refused");
            return (StatusCode::NOT_FOUND, format!("{e}\n")).into_response();
        }
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, format!("{name}: {e}\n")).into_response(),
    }
}

async fn report(State(s): State<Arc<BootService>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(token) = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) else {
        return (StatusCode::UNAUTHORIZED, "missing token\n").into_response();
    };
    // An agent of another contract version: its report cannot be read, so what is recorded for the
    // machine is a failure naming both versions (the deploy and the morning report show it).
    let version = contract_of(&headers);
    let body = match &version {
        Ok(()) => String::from_utf8_lossy(&body).into_owned(),
        Err(e) => serde_json::to_string(&contract::Report::failure(e.to_string()))
            .expect("report serialises"),
    };
    match (s.report(token, body), version) {
        (Ok(mac), Ok(())) => (StatusCode::OK, format!("ok {mac}\n")).into_response(),
        (Ok(mac), Err(e)) => {
            tracing::warn!(%mac, %e, "report of an agent of another contract version");
            (StatusCode::CONFLICT, format!("{e}\n")).into_response()
        }
        (Err(e), _) => {
            tracing::warn!(%e, "report refused");
            (StatusCode::FORBIDDEN, format!("{e}\n")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> Mac {
        Mac([0x52, 0x54, 0, 0x18, 0x03, last])
    }

    #[test]
    fn a_token_works_once_and_a_new_boot_revokes_the_old_one() {
        let mut book = TokenBook::default();
        book.issue(mac(1), "a".into());
        book.issue(mac(2), "b".into());
        assert_eq!(book.redeem("a"), Ok(mac(1)));
        assert_eq!(book.redeem("a"), Err(TokenRefused::Used(mac(1))));
        book.issue(mac(2), "c".into());
        assert_eq!(
            book.redeem("b"),
            Err(TokenRefused::Unknown),
            "revoked by the newer boot"
        );
        assert_eq!(book.redeem("c"), Ok(mac(2)));
        assert_eq!(book.redeem("zzz"), Err(TokenRefused::Unknown));
    }

    /// The boot service of a campaign of one PC (`mac(1)`, S12-P01) serving `dir`.
    fn one_pc_boot_service(campaign: &str, dir: &std::path::Path) -> Arc<BootService> {
        let config = BootConfig {
            campaign: campaign.into(),
            machines: [(mac(1), "S12-P01".to_string())].into(),
            base_url: "http://198.18.0.1:8080".into(),
            kernel: "vmlinuz".into(),
            initrd: "initrd.gz".into(),
            cmdline: "console=ttyS0".into(),
            reports_dir: dir.to_path_buf(),
            image: None,
        };
        BootService::new(config, BootRoot::new(dir).unwrap()).unwrap()
    }

    #[test]
    fn scripts_follow_the_allowlist() {
        let dir = tempfile::tempdir().unwrap();
        let service = one_pc_boot_service("S12-2026", dir.path());
        let pc: Ipv4Addr = "198.18.3.1".parse().unwrap();
        let unseen = service.boot_script(mac(1), pc).unwrap();
        assert!(
            !unseen.contains("roomcast.token="),
            "not seen PXE-booting: no token"
        );
        let seen = |kind| roomcast_proto::dhcp::Sighting { mac: mac(1), kind };
        let gate = service.pxe_gate();
        let now = std::time::Instant::now();
        gate.lock()
            .unwrap()
            .observe(seen(roomcast_proto::dhcp::Sighted::Address(pc)), now);
        let elsewhere = service
            .boot_script(mac(1), "198.18.3.9".parse().unwrap())
            .unwrap();
        assert!(!elsewhere.contains("roomcast.token="), "another address");
        let agent = service.boot_script(mac(1), pc).unwrap();
        assert_eq!(
            service.boot_script(mac(1), pc).unwrap(),
            agent,
            "asking again: the same script and token"
        );
        assert!(agent.starts_with("#!ipxe\n"));
        assert!(agent.contains("kernel http://198.18.0.1:8080/files/vmlinuz initrd=initrd.gz console=ttyS0 roomcast.server=http://198.18.0.1:8080 roomcast.token="));
        assert!(agent.contains("initrd http://198.18.0.1:8080/files/initrd.gz\nboot"));
        let token = agent
            .split("roomcast.token=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(token.len(), 32);
        assert_eq!(service.report(&token, "{}".into()), Ok(mac(1)));
        assert!(dir.path().join("52-54-00-18-03-01.json").exists());
        assert_eq!(
            service.report(&token, "{}".into()),
            Err(TokenRefused::Used(mac(1)))
        );
        let local = service.boot_script(mac(9), pc).unwrap();
        assert!(local.contains("sanboot --no-describe --drive 0x80 || exit"));
        assert!(!local.contains("kernel"));
    }

    #[test]
    fn grub_scripts_go_through_the_same_gate_and_token_book() {
        let dir = tempfile::tempdir().unwrap();
        let service = one_pc_boot_service("S12 l'atelier", dir.path());
        let pc: Ipv4Addr = "198.18.3.1".parse().unwrap();
        let grub = |m, from| service.boot_script_for(Loader::Grub, m, from).unwrap();
        let unseen = grub(mac(1), pc);
        assert!(!unseen.contains("roomcast.token=") && unseen.trim_end().ends_with("\nexit"));
        service.pxe_gate().lock().unwrap().observe(
            roomcast_proto::dhcp::Sighting {
                mac: mac(1),
                kind: roomcast_proto::dhcp::Sighted::Address(pc),
            },
            std::time::Instant::now(),
        );
        assert!(!grub(mac(1), "198.18.3.9".parse().unwrap()).contains("roomcast.token="));
        let agent = grub(mac(1), pc);
        assert!(
            agent.contains("linux ($root)/vmlinuz console=ttyS0 roomcast.server=http://198.18.0.1:8080 roomcast.token="),
            "{agent}"
        );
        assert!(agent.contains("initrd ($root)/initrd.gz\nboot"), "{agent}");
        // A quote in the campaign's name must not break GRUB's single-quoted echo.
        assert!(agent.contains("joins campaign S12 latelier'"), "{agent}");
        // iPXE asking from the same address in the same boot gets the same token.
        let token = |s: &str| s.split("roomcast.token=").nth(1).unwrap()[..32].to_string();
        assert_eq!(
            token(&service.boot_script(mac(1), pc).unwrap()),
            token(&agent)
        );
        assert!(grub(mac(9), pc).trim_end().ends_with("\nexit"));
    }

    #[test]
    fn a_session_is_told_only_to_its_machines_with_their_own_token() {
        let dir = tempfile::tempdir().unwrap();
        let config = BootConfig {
            campaign: "S12-2026".into(),
            machines: [
                (mac(1), "S12-P01".to_string()),
                (mac(2), "S12-P02".to_string()),
            ]
            .into(),
            base_url: "http://198.18.0.1:8080".into(),
            kernel: String::new(),
            initrd: String::new(),
            cmdline: String::new(),
            reports_dir: dir.path().to_path_buf(),
            image: None,
        };
        let service = BootService::image_only(config).unwrap();
        assert_eq!(service.session_for(mac(1)), None, "nothing offered yet");
        let control = "198.18.0.1:9500".parse().unwrap();
        let group = "239.255.12.1:9000".parse().unwrap();
        service.set_session(Some(SessionOffer {
            control,
            group,
            tokens: [(mac(1), [7u8; 32]), (mac(2), [9u8; 32])].into(),
            key: roomcast_mcast::SessionKey([5u8; 32]),
            ended: false,
        }));
        let one = service.session_for(mac(1)).unwrap();
        assert_eq!(one.machine, "52:54:00:18:03:01");
        assert_eq!(one.token, "07".repeat(32));
        assert_eq!(one.key, "05".repeat(32));
        assert_eq!((one.control, one.group, one.ended), (control, group, false));
        assert_eq!(service.session_for(mac(2)).unwrap().token, "09".repeat(32));
        assert_eq!(service.session_for(mac(3)), None, "not in the session");
        // Chunk bodies: sealed for the session's machines, each under a new counter.
        let key = service.body_key(mac(1)).expect("in the session");
        assert_eq!(service.body_key(mac(3)), None, "not in the session: clear");
        let (a, b) = (
            service.seal_body(&key, b"zstd"),
            service.seal_body(&key, b"zstd"),
        );
        assert_ne!(a[..8], b[..8], "a new counter for each body");
        let open = roomcast_mcast::StreamKey::new(&key);
        for mut body in [a, b] {
            assert!(open.open_vec(roomcast_mcast::SealedKind::ChunkBody, &mut body));
            assert_eq!(body, b"zstd");
        }
        service.end_session();
        assert!(service.session_for(mac(1)).unwrap().ended);
        assert!(
            service.body_key(mac(1)).is_some(),
            "an ended session still seals"
        );
        // Tokens issued by hand work like boot-script tokens.
        service.issue_token(mac(2), "t2".into());
        assert_eq!(service.check_token("t2"), Ok(mac(2)));
    }

    #[test]
    fn a_pc_of_another_model_is_refused_the_image_and_one_without_facts_too() {
        let dir = tempfile::tempdir().unwrap();
        let config = BootConfig {
            campaign: "S12-2026".into(),
            machines: [(mac(1), "P01".to_string()), (mac(2), "P02".to_string())].into(),
            base_url: "http://198.18.0.1:8080".into(),
            kernel: String::new(),
            initrd: String::new(),
            cmdline: String::new(),
            reports_dir: dir.path().to_path_buf(),
            image: None,
        };
        let service = BootService::image_only(config).unwrap();
        let expect = |serial: &str| PcExpected {
            profile_model: "OptiPlex 7090".into(),
            exception_model: None,
            serial: serial.into(),
        };
        assert_eq!(service.cleared(mac(2)), Ok(()), "nothing expected yet");
        service.expect(
            [(mac(1), expect("S1")), (mac(2), expect("S2"))].into(),
            true,
        );
        let facts = |model: &str| HardwareFacts {
            model: model.into(),
            serial: "S1".into(),
            ..HardwareFacts::default()
        };
        let c = service.clear(mac(1), facts("ThinkCentre M70q"));
        assert_eq!(
            c.refused.as_deref(),
            Some("wrong model: found `ThinkCentre M70q`, the room's profile wants `OptiPlex 7090`")
        );
        let why = service.cleared(mac(1)).unwrap_err();
        assert!(why.contains("refused: wrong model"), "{why}");
        let why = service.cleared(mac(2)).unwrap_err();
        assert!(why.contains("send the PC's facts first"), "{why}");
        let c = service.clear(mac(2), facts("optiplex 7090"));
        assert!(c.is_go());
        assert_eq!(c.warnings.len(), 1, "serial S1 is not P02's S2");
        assert_eq!(service.cleared(mac(2)), Ok(()));
        assert_eq!(service.facts_of(mac(2)).unwrap().1, c);
        let kept =
            std::fs::read_to_string(dir.path().join("52-54-00-18-03-01.facts.json")).unwrap();
        assert!(
            kept.contains("ThinkCentre M70q") && kept.contains("wrong model"),
            "{kept}"
        );
    }
}
