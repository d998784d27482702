//! [`Deployment`]: a whole deploy on one interface — HTTP (manifest, chunks, reports, session info)
//! and the multicast session, started by [`RoomServices`] — with the per-machine HTTP tokens issued
//! here.

use super::services::RoomServices;
use super::{DataPlane, DeployError, DeployReport, Progress, SessionPlan};
use crate::net::http::{BootConfig, BootService, ServedImage};
use crate::net::proxydhcp::Subnet;
use roomcast_proto::mac::Mac;
use roomcast_store::Store;
use roomcast_store::manifest::ImageId;
use std::path::PathBuf;
use std::time::Duration;

/// What to deploy, where, to whom.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// The store holding the image.
    pub store: Store,
    /// The image.
    pub image: ImageId,
    /// The room interface: HTTP, the control channel and the stream use only its address.
    pub interface: String,
    /// When given, the interface must have an address in it (the room file's subnet).
    pub subnet: Option<Subnet>,
    /// The machines (MAC, hostname): each gets a token; no other machine is served.
    pub machines: Vec<(Mac, String)>,
    /// PCs to wait for before streaming.
    pub expect: usize,
    /// Group, ports, rate, timeouts.
    pub data: DataPlane,
    /// HTTP port on the interface's address (0: any free port).
    pub http_port: u16,
    /// Where agent reports are written, one `<mac>.json` each.
    pub reports_dir: PathBuf,
    /// After the stream, how long to wait for PCs catching up over HTTP.
    pub catch_up_wait: Duration,
}

/// A machine's HTTP token, to hand to its agent (`roomcast agent --token`). A credential: the
/// `Debug` output hides it.
#[derive(Clone)]
pub struct IssuedToken {
    /// The machine.
    pub mac: Mac,
    /// Its hostname.
    pub hostname: String,
    /// The token.
    pub token: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("mac", &self.mac)
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

/// A running deploy.
pub struct Deployment {
    base_url: String,
    tokens: Vec<IssuedToken>,
    session: tokio::task::JoinHandle<Result<DeployReport, DeployError>>,
    // Dropped last: stops HTTP and the session.
    services: RoomServices,
}

impl Deployment {
    /// Binds HTTP on the interface, issues one token per machine and starts the session next to
    /// it. Agents may connect as soon as this returns (`base_url`, `tokens`).
    pub fn start(
        opts: DeployOptions,
        progress: Box<dyn Fn(&Progress) + Send + Sync>,
    ) -> Result<Deployment, DeployError> {
        opts.data.check()?;
        if opts.machines.is_empty() {
            return Err(DeployError::Config("no machine to deploy to".into()));
        }
        let mut services = RoomServices::on(&opts.interface, opts.subnet)?;
        std::fs::create_dir_all(&opts.reports_dir).map_err(|source| DeployError::Io {
            step: format!("creating {}", opts.reports_dir.display()),
            source,
        })?;
        let (service, base_url) = services.http(opts.http_port, |base_url| {
            BootService::image_only(BootConfig {
                campaign: "deploy".into(),
                machines: opts.machines.iter().cloned().collect(),
                base_url: base_url.to_string(),
                kernel: String::new(),
                initrd: String::new(),
                cmdline: String::new(),
                reports_dir: opts.reports_dir.clone(),
                image: Some(ServedImage {
                    store: opts.store.clone(),
                    id: opts.image,
                }),
            })
        })?;
        let tokens: Vec<IssuedToken> = opts
            .machines
            .iter()
            .map(|(mac, hostname)| {
                let token = hex::encode(rand::random::<[u8; 16]>());
                service.issue_token(*mac, token.clone());
                IssuedToken {
                    mac: *mac,
                    hostname: hostname.clone(),
                    token,
                }
            })
            .collect();
        let plan = SessionPlan {
            store: opts.store,
            image: opts.image,
            interface: services.server(),
            machines: opts.machines.iter().map(|(m, _)| *m).collect(),
            expect: opts.expect,
            data: opts.data,
            catch_up_wait: opts.catch_up_wait,
        };
        let session = services.multicast(&service, plan, progress);
        Ok(Deployment {
            base_url,
            tokens,
            session,
            services,
        })
    }

    /// The URL agents are given (`roomcast agent --server`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The token of each machine.
    pub fn tokens(&self) -> &[IssuedToken] {
        &self.tokens
    }

    /// Waits for the end: the stream is over and every PC that joined reported (or the catch-up
    /// wait passed).
    pub fn wait(self) -> Result<DeployReport, DeployError> {
        let Deployment {
            session, services, ..
        } = self;
        services.block_on(session).unwrap_or_else(|_| {
            Err(DeployError::Config(
                "the deploy session panicked (see the log)".into(),
            ))
        })
    }
}
