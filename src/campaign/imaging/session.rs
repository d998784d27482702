//! One imaging session on the deploy server: the boot HTTP service bound to the room interface's
//! address (boot scripts with the mode and one-time tokens, the image for restoring agents, the
//! upload endpoints for a capturing one, reports), the boot services of an [`AgentBoot`], the PCs
//! on their way, and the wait for each PC's report.

use super::boot::{AgentBoot, BootServices, Booting, Machine, SessionInfo};
use crate::campaign::live::LiveBook;
use crate::net::capture::CaptureConfig;
use crate::net::files::BootRoot;
use crate::net::http::{BootConfig, BootService, ServedImage};
use crate::net::proxydhcp::Subnet;
use crate::serve::services::RoomServices;
use crate::serve::{DataPlane, DeployReport, SessionPlan};
use roomcast_proto::contract::AgentMode;
use roomcast_proto::mac::Mac;
use roomcast_proto::procedure::Step;
use roomcast_store::manifest::ImageId;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where and how a session serves.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// Campaign name shown on the PCs.
    pub campaign: String,
    /// The room interface.
    pub interface: String,
    /// The room subnet (the interface must have an address inside it).
    pub subnet: Subnet,
    /// HTTP port (0: any free port).
    pub http_port: u16,
    /// Boot root (kernel, initramfs, iPXE).
    pub boot_dir: PathBuf,
    /// Where agent reports are written.
    pub reports_dir: PathBuf,
    /// Kernel command line before the `roomcast.*` parameters.
    pub cmdline: String,
    /// Agent mode.
    pub mode: AgentMode,
    /// Machines of the session (already checked to be in the room).
    pub machines: Vec<Machine>,
    /// For a restore session: stream the image to every machine at once over multicast (the
    /// agents fall back to unicast HTTP for what the stream did not deliver); `None`: unicast only.
    pub multicast: Option<DataPlane>,
    /// How long the multicast session waits, after the stream, for PCs catching up over HTTP.
    pub catch_up_wait: Duration,
    /// Where the PCs' progress and the stream's samples go, as this step's.
    pub live: Option<(Arc<LiveBook>, Step)>,
}

/// What a PC's session ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The report's JSON body, as the agent sent it.
    pub body: String,
}

/// A PC on its way into the agent, or why it could not be sent.
type BootOutcome = Result<Box<dyn Booting>, String>;

type McastTask = tokio::task::JoinHandle<Result<DeployReport, crate::serve::DeployError>>;

/// A running session; dropping it stops the agents it booted, its boot services and its HTTP server.
pub struct Session {
    service: Arc<BootService>,
    mcast: Mutex<Option<McastTask>>,
    image: Option<ImageId>,
    info: SessionInfo,
    started: Instant,
    booting: Mutex<BTreeMap<Mac, BootOutcome>>,
    // Order of drop: the PCs' agents first (in `drop`), then boot services, then HTTP.
    boot_services: Option<Box<dyn BootServices>>,
    services: RoomServices,
    live: Option<Arc<LiveBook>>,
}

impl Session {
    /// Binds the HTTP service on the room interface's address and opens the boot services.
    pub fn start(
        spec: SessionSpec,
        image: Option<ServedImage>,
        capture: Option<CaptureConfig>,
        boot: &dyn AgentBoot,
    ) -> Result<Session, String> {
        let mut services =
            RoomServices::on(&spec.interface, Some(spec.subnet)).map_err(|e| e.to_string())?;
        let server = services.server();
        std::fs::create_dir_all(&spec.reports_dir)
            .map_err(|e| format!("{}: {e}", spec.reports_dir.display()))?;
        std::fs::create_dir_all(&spec.boot_dir)
            .map_err(|e| format!("{}: {e}", spec.boot_dir.display()))?;
        let root = BootRoot::new(&spec.boot_dir)
            .map_err(|e| format!("{}: {e}", spec.boot_dir.display()))?;
        let served = image.as_ref().map(|i| i.id);
        let served_store = image.as_ref().map(|i| i.store.clone());
        let (service, base_url) = services
            .http(spec.http_port, |base_url| {
                let config = BootConfig {
                    campaign: spec.campaign.clone(),
                    machines: spec
                        .machines
                        .iter()
                        .map(|m| (m.mac, m.hostname.clone()))
                        .collect(),
                    base_url: base_url.to_string(),
                    kernel: crate::bootenv::KERNEL.into(),
                    initrd: crate::bootenv::INITRD.into(),
                    cmdline: format!("{} {}", spec.cmdline, spec.mode.cmdline_flag())
                        .trim()
                        .to_string(),
                    reports_dir: spec.reports_dir.clone(),
                    image,
                };
                BootService::with_capture(config, root, capture)
            })
            .map_err(|e| e.to_string())?;
        let info = SessionInfo {
            base_url,
            server,
            interface: spec.interface.clone(),
            subnet: spec.subnet,
            mode: spec.mode,
            machines: spec.machines.clone(),
            boot_dir: spec.boot_dir.clone(),
            pxe_gate: service.pxe_gate(),
            boot_service: service.clone(),
        };
        if let Some((book, step)) = &spec.live {
            let names: BTreeMap<Mac, String> = spec
                .machines
                .iter()
                .map(|m| (m.mac, m.hostname.clone()))
                .collect();
            let (book, step) = (book.clone(), *step);
            service.set_progress_sink(Arc::new(move |mac, p| {
                if let Some(name) = names.get(&mac) {
                    book.progress(name, step, p);
                }
            }));
        }
        let boot_services = boot.open(&info).map_err(|e| e.to_string())?;
        let mcast = match (&spec.multicast, &served_store) {
            (Some(data), Some(store)) if !spec.machines.is_empty() => {
                let plan = SessionPlan {
                    store: store.clone(),
                    image: served.expect("a restore session serves an image"),
                    interface: server,
                    machines: spec.machines.iter().map(|m| m.mac).collect(),
                    expect: spec.machines.len(),
                    data: data.clone(),
                    catch_up_wait: spec.catch_up_wait,
                };
                Some(offer_multicast(
                    &services,
                    &service,
                    plan,
                    spec.machines[0].mac,
                    spec.live.clone(),
                ))
            }
            _ => None,
        };
        tracing::info!(url = %info.base_url, mode = %spec.mode, machines = spec.machines.len(), "imaging session open");
        Ok(Session {
            service,
            mcast: Mutex::new(mcast),
            image: served,
            info,
            started: Instant::now(),
            booting: Mutex::new(BTreeMap::new()),
            boot_services: Some(boot_services),
            services,
            live: spec.live.map(|(book, _)| book),
        })
    }

    /// What boot implementations see of this session.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// Sends every machine of the session into the agent (a failure is kept for that machine).
    pub fn boot_all(&self, boot: &dyn AgentBoot) {
        for m in &self.info.machines {
            let handle = boot.boot(m, &self.info).map_err(|e| e.to_string());
            if let Err(e) = &handle {
                tracing::warn!(machine = %m.hostname, %e, "boot failed");
            }
            self.booting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(m.mac, handle);
        }
    }

    /// Waits up to `wait` for the multicast session's own account (who joined, who completed,
    /// bytes on the wire). `None` without a multicast session or when it is still running.
    pub fn multicast_report(&self, wait: Duration) -> Option<Result<DeployReport, String>> {
        let task = self
            .mcast
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        let joined = self
            .services
            .handle()
            .block_on(async { tokio::time::timeout(wait, task).await });
        match joined {
            Ok(Ok(r)) => Some(r.map_err(|e| e.to_string())),
            Ok(Err(e)) => Some(Err(e.to_string())),
            Err(_) => None,
        }
    }

    /// What the room file expects of each machine (see [`BootService::expect`]); set before
    /// [`Session::boot_all`].
    pub fn expect(
        &self,
        expected: BTreeMap<Mac, roomcast_proto::contract::PcExpected>,
        require: bool,
    ) {
        self.service.expect(expected, require);
    }

    /// The facts `mac` sent in this session, with the server's answer.
    pub fn facts_of(
        &self,
        mac: Mac,
    ) -> Option<(
        roomcast_proto::contract::HardwareFacts,
        roomcast_proto::contract::Clearance,
    )> {
        self.service.facts_of(mac)
    }

    /// Serves `xml` as the unattend.xml of the machine with `mac` (a Windows PC's step h).
    pub fn set_unattend(&self, mac: roomcast_proto::mac::Mac, xml: crate::secrets::Secret) {
        self.service.set_unattend(mac, xml);
    }

    /// The image a restore session serves.
    pub fn served_image(&self) -> Option<ImageId> {
        self.image
    }

    /// The image a capture session signed.
    pub fn captured(&self) -> Option<ImageId> {
        self.service.captured()
    }

    /// Waits for `machine`'s report. `Err` says why none will come, naming the machine:
    /// it never fetched its boot script within `boot_timeout`, its agent stopped without
    /// reporting, or no report came within `agent_timeout`.
    pub fn wait_report(
        &self,
        machine: &Machine,
        boot_timeout: Duration,
        agent_timeout: Duration,
    ) -> Result<Report, String> {
        let host = &machine.hostname;
        let mut ended_at: Option<(Instant, String)> = None;
        loop {
            if let Some(r) = self.service.report_of(machine.mac) {
                return Ok(Report { body: r.body });
            }
            let elapsed = self.started.elapsed();
            if ended_at.is_none() {
                let mut booting = self.booting.lock().unwrap_or_else(|p| p.into_inner());
                match booting.get_mut(&machine.mac) {
                    None => return Err(format!("{host}: was never sent into the agent")),
                    Some(Err(e)) => return Err(format!("{host}: could not be booted: {e}")),
                    Some(Ok(b)) => {
                        if let Some(why) = b.ended() {
                            ended_at = Some((Instant::now(), why));
                        }
                    }
                }
            }
            // A report posted just before the agent exited may still be in flight: short grace.
            if let Some((at, why)) = &ended_at
                && at.elapsed() > Duration::from_secs(2)
            {
                return Err(format!("{host}: no report from the agent: {why}"));
            }
            if !self.service.booted(machine.mac) && elapsed > boot_timeout {
                return Err(format!(
                    "{host} ({}): never booted into the agent within {} s (powered off, no \
                     Wake-on-LAN, or not booting from the network?)",
                    machine.mac,
                    boot_timeout.as_secs()
                ));
            }
            if elapsed > agent_timeout {
                return Err(format!(
                    "{host}: booted but sent no report within {} s",
                    agent_timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.booting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        if let Some(task) = self.mcast.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        self.boot_services = None;
        // The last progress noted within the final second.
        if let Some(book) = &self.live {
            book.flush();
        }
    }
}

/// Starts the multicast session on the session's runtime and waits (a few seconds at most) until
/// it is offered, so that agents booted next take the stream rather than unicast. A session that
/// cannot start leaves the agents on unicast HTTP, which still verifies every chunk.
fn offer_multicast(
    services: &RoomServices,
    service: &Arc<BootService>,
    plan: SessionPlan,
    probe: Mac,
    live: Option<(Arc<LiveBook>, Step)>,
) -> McastTask {
    let progress = move |p: &crate::serve::Progress| match (p, &live) {
        (crate::serve::Progress::Sample(s), Some((book, step))) => book.sample(*step, s),
        (crate::serve::Progress::Sample(_), None) => {}
        _ => tracing::info!(?p, "multicast"),
    };
    let task = services.multicast(service, plan, Box::new(progress));
    let until = Instant::now() + Duration::from_secs(10);
    while service.session_for(probe).is_none() && !task.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    if task.is_finished() {
        tracing::warn!(
            "multicast session ended before it was offered: agents restore over unicast"
        );
    }
    task
}
