//! The imaging [`Worker`]: steps b (restore the base image on the master), f (generalise over SSH,
//! boot the master into the agent in capture mode, verify and store its upload, sign) and image-mode
//! g (one session for the whole batch of PCs, each PC's result on its own).
//!
//! How a PC reaches the agent is an [`AgentBoot`]: [`PxeBoot`] (Wake-on-LAN + proxyDHCP/TFTP/HTTP on
//! the room interface) on a real network, `demo::lab_boot::LabBoot` (the real agent started inside the PC's
//! network namespace) in the lab. Only machines of the campaign's room are ever served, and only on
//! the room interface; the served image is the one step f journaled (`State::image`).
//!
//! ```no_run
//! # use roomcast::campaign::imaging::*;
//! # fn f(config: ImagingConfig) {
//! let mut imaging = ImagingWorker::new(config, Box::new(PxeBoot::default()));
//! // steps::StepRunner::new(&spec, Some(&mut imaging)) then driver::drive(...)
//! # }
//! ```

pub mod boot;
pub mod session;

pub use boot::{AgentBoot, BootError, Booting, Machine, PxeBoot, SessionInfo};
use roomcast_proto::contract::{AgentMode, Clearance, HardwareFacts, PcExpected, Report, Verdict};
use roomcast_proto::mac::Mac;
use std::collections::BTreeMap;

use super::driver::Worker;
use crate::clock::{Clock, SystemClock};
use crate::net::capture::CaptureConfig;
use crate::net::http::ServedImage;
use crate::net::proxydhcp::Subnet;
use crate::remote::RemoteExec;
use crate::remote::ssh::{SshClient, SshConfig};
use crate::serve::DataPlane;
use roomcast_proto::procedure::{Event, State, Step};
use roomcast_store::Store;
use roomcast_store::chunk::{ChunkSize, DEFAULT_LEVEL};
use roomcast_store::keys::Signer;
use roomcast_store::manifest::{ImageId, ImageLabel};
use session::{Session, SessionSpec};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to reach the master over SSH for its generalise command (step f).
#[derive(Debug, Clone)]
pub struct MasterSsh {
    /// Address (or name) of the master.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// Key, user, pinned host keys, timeouts.
    pub ssh: SshConfig,
}

/// Everything the imaging worker needs; built by the orchestrator from the validated room and
/// profile. [`ImagingConfig::new`] fills the tunables with their defaults.
#[derive(Debug, Clone)]
pub struct ImagingConfig {
    /// Room id, shown on the PCs and in messages.
    pub room: String,
    /// Every machine of the room file (hostname + MAC): nothing outside this list is ever imaged.
    pub machines: Vec<Machine>,
    /// Hostname of the master (steps b and f).
    pub master: String,
    /// The room interface: the only one anything is served on.
    pub interface: String,
    /// The room subnet (the interface must have an address inside it).
    pub subnet: Subnet,
    /// HTTP port of the sessions (0: any free port; default 8080).
    pub http_port: u16,
    /// The image store.
    pub store: PathBuf,
    /// The server's signing key (step f signs with it; the store must trust it).
    pub signer_key: PathBuf,
    /// The profile's base image (id or unique prefix), restored at step b.
    pub base_image: String,
    /// The region's repository (`s3://bucket/prefix`) step b pulls the base image from when the
    /// store lacks it (endpoint and credentials from the environment / `ROOMCAST_SECRETS`).
    pub base_image_from: Option<String>,
    /// How step b reaches that repository (endpoint, S3 region, secrets file); by default from
    /// the environment ([`crate::region::Access::from_env`]).
    pub region_access: crate::region::Access,
    /// The profile file naming `base_image` and `base_image_from`, for step b's messages.
    pub profile_file: Option<String>,
    /// Name, version and profile written into the captured image's manifest.
    pub image_name: String,
    /// Image version.
    pub image_version: String,
    /// The profile the image is built from.
    pub profile: Option<String>,
    /// Who captures (for the manifest), e.g. `roomcast@deploy-server`.
    pub captured_by: String,
    /// SSH to the master for step f; without it, no generalise command can run.
    pub master_ssh: Option<MasterSsh>,
    /// The profile's generalise command (sysprep on Windows), run on the master over SSH at f.
    pub generalise: Option<String>,
    /// Run over SSH to restart the master into network boot (a dropped connection is expected):
    /// after the generalise command at f, and at b when the master answers SSH (a master still
    /// running last year's system ignores Wake-on-LAN). `None` when the generalise command shuts
    /// it down itself and the master is off at b.
    pub reboot: Option<String>,
    /// Chunk size of captured images.
    pub chunk_size: ChunkSize,
    /// zstd level of captured images.
    pub level: i32,
    /// Kernel command line for the agent (before the `roomcast.*` parameters).
    pub cmdline: String,
    /// Boot root (kernel, initramfs, iPXE); `None`: an empty folder under `work_dir` (lab).
    pub boot_dir: Option<PathBuf>,
    /// Reports of each session go to `<work_dir>/reports/<step>/`.
    pub work_dir: PathBuf,
    /// How long a PC may take to fetch its boot script after the session started.
    pub boot_timeout: Duration,
    /// How long a PC may take to report after the session started.
    pub agent_timeout: Duration,
    /// Restore sessions (b, g) stream the image over multicast with these settings (group,
    /// rate, how long to wait for every PC before streaming); `None`: unicast HTTP only.
    pub multicast: Option<DataPlane>,
    /// What the room file expects of each PC (the profile's model, the room file's exception,
    /// the serial): a PC whose facts do not match is refused the image (see
    /// [`roomcast_proto::contract::facts`]). Empty: no model check.
    pub expected: BTreeMap<Mac, PcExpected>,
    /// The inventory database the PCs' facts are recorded in (and their GLPI documents queued);
    /// `None`: not recorded.
    pub inventory: Option<PathBuf>,
    /// Linux masters: where their system is seen over SSH and whether the profile lets the image
    /// keep the machine identity; step f checks it after the generalise command. `None`: no check
    /// (Windows masters are checked by the agent: sysprep's image state).
    pub master_identity: Option<MasterIdentity>,
    /// Windows PCs: each PC's unattend.xml (offline domain join), written by its agent after the
    /// restore of g, before it restarts; step h checks it was. `None`: not a Windows room.
    pub windows_join: Option<WindowsJoin>,
}

/// Step f for a Linux master: no machine identity may be left in the image (an empty
/// `/etc/machine-id`, no `/etc/ssh/ssh_host_*`), unless the profile says why
/// (`keep_machine_identity`).
#[derive(Debug, Clone)]
pub struct MasterIdentity {
    /// The master's system root as its SSH session sees it (`/` on a real master).
    pub root: String,
    /// The profile's reason to keep the identity, if any.
    pub keep: Option<String>,
}

/// What is left of the master's identity under `root` (read-only: `test` and a glob), as named
/// paths; empty when the master is clean.
pub fn identity_left(remote: &mut dyn RemoteExec, root: &str) -> Result<Vec<String>, String> {
    let root = root.trim_end_matches('/');
    let script = format!(
        "r={}; if [ -s \"$r/etc/machine-id\" ]; then echo /etc/machine-id; fi; \
         for k in \"$r\"/etc/ssh/ssh_host_*; do [ -e \"$k\" ] && echo \"/etc/ssh/${{k##*/}}\"; done; true",
        crate::remote::shell_quote(root)
    );
    let out = remote.run(&script).map_err(|e| e.to_string())?;
    if out.code != 0 {
        return Err(format!(
            "checking the machine identity exited with {}: {}",
            out.code,
            last_line(&out.stderr_text(), &out.stdout_text())
        ));
    }
    Ok(out
        .stdout_text()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Step f's refusal of a Linux master that keeps its identity, naming what is left and the fixes.
fn identity_refusal(master: &str, left: &[String]) -> String {
    let what: Vec<String> = left
        .iter()
        .map(|p| {
            if p == "/etc/machine-id" {
                "/etc/machine-id is not empty".to_string()
            } else {
                format!("{p} exists")
            }
        })
        .collect();
    format!(
        "{master}: the master still holds its machine identity ({}): every PC would share it; \
         empty /etc/machine-id and remove /etc/ssh/ssh_host_* in the profile's generalize \
         command (e.g. `truncate -s 0 /etc/machine-id && rm -f /etc/ssh/ssh_host_*`), or say why \
         the image keeps them in the profile's keep_machine_identity; nothing was captured",
        what.join(", ")
    )
}

/// How a Windows room's PCs are named and joined (step h, written by the agent at the end of g):
/// an offline domain join blob per PC, provisioned from the deploy server against the DC
/// (`campaign::unattend::offline_provision`), in an unattend.xml rendered from `template`.
#[derive(Debug, Clone)]
pub struct WindowsJoin {
    /// Samba's `net`, with any wrapper in front (normally `["net"]`).
    pub net: Vec<String>,
    /// A member smb.conf of the realm on the deploy server.
    pub smb_conf: PathBuf,
    /// Domain, OU and join account.
    pub domain: crate::campaign::steps::join::Domain,
    /// The unattend template (normally `campaign::unattend::WINDOWS_UNATTEND`).
    pub template: String,
    /// Locale and time zone from the profile.
    pub settings: crate::campaign::unattend::WindowsSettings,
}

impl ImagingConfig {
    /// A configuration with the default tunables: port 8080, 1 MiB chunks, zstd 3, 5 minutes to
    /// boot, 3 hours to report.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        room: &str,
        machines: Vec<Machine>,
        master: &str,
        interface: &str,
        subnet: Subnet,
        store: PathBuf,
        signer_key: PathBuf,
        base_image: &str,
        work_dir: PathBuf,
    ) -> ImagingConfig {
        ImagingConfig {
            room: room.to_string(),
            machines,
            master: master.to_string(),
            interface: interface.to_string(),
            subnet,
            http_port: crate::serve::services::DEFAULT_HTTP_PORT,
            store,
            signer_key,
            base_image: base_image.to_string(),
            base_image_from: None,
            region_access: crate::region::Access::from_env(),
            profile_file: None,
            image_name: room.to_string(),
            image_version: "1".into(),
            profile: None,
            captured_by: "roomcast".into(),
            master_ssh: None,
            generalise: None,
            reboot: None,
            master_identity: None,
            windows_join: None,
            chunk_size: ChunkSize::default(),
            level: DEFAULT_LEVEL,
            cmdline: crate::serve::services::DEFAULT_CMDLINE.into(),
            boot_dir: None,
            work_dir,
            boot_timeout: Duration::from_secs(300),
            agent_timeout: Duration::from_secs(3 * 3600),
            multicast: Some(DataPlane::default()),
            expected: BTreeMap::new(),
            inventory: None,
        }
    }
}

/// The batch of image-mode g in progress: its session and the image it serves.
struct Batch {
    session: Result<Session, String>,
    machines: Vec<String>,
    /// Windows rooms: each machine's unattend.xml sha256 as served, or why none could be made.
    unattend: BTreeMap<String, Result<String, String>>,
}

/// Does steps b, f and image-mode g (see the module doc).
pub struct ImagingWorker {
    config: ImagingConfig,
    boot: Box<dyn AgentBoot>,
    batch: Option<Batch>,
    clock: Arc<dyn Clock>,
    /// Where the sessions' live progress goes (set by the run: [`Worker::follow`]).
    live: Option<Arc<crate::campaign::live::LiveBook>>,
}

impl ImagingWorker {
    /// A worker over `config`, bringing PCs into the agent with `boot`; the system clock dates the
    /// images it captures.
    pub fn new(config: ImagingConfig, boot: Box<dyn AgentBoot>) -> ImagingWorker {
        ImagingWorker {
            config,
            boot,
            batch: None,
            clock: Arc::new(SystemClock),
            live: None,
        }
    }

    /// The same worker, dating captured images with `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> ImagingWorker {
        self.clock = clock;
        self
    }

    /// The room's machine called `hostname`, or why it may not be imaged.
    fn room_machine(&self, hostname: &str) -> Result<Machine, String> {
        self.config
            .machines
            .iter()
            .find(|m| m.hostname == hostname)
            .cloned()
            .ok_or_else(|| format!("{hostname} is not a machine of room {}", self.config.room))
    }

    fn spec(&self, step: Step, mode: AgentMode, machines: Vec<Machine>) -> SessionSpec {
        let c = &self.config;
        SessionSpec {
            campaign: c.room.clone(),
            interface: c.interface.clone(),
            subnet: c.subnet,
            http_port: c.http_port,
            boot_dir: c
                .boot_dir
                .clone()
                .unwrap_or_else(|| c.work_dir.join("boot")),
            reports_dir: c.work_dir.join("reports").join(step.letter().to_string()),
            cmdline: c.cmdline.clone(),
            multicast: match mode {
                AgentMode::Restore => c.multicast.clone(),
                AgentMode::Capture => None,
            },
            catch_up_wait: c.agent_timeout,
            live: self.live.clone().map(|book| (book, step)),
            mode,
            machines,
        }
    }

    fn store(&self) -> Result<Store, String> {
        Store::open(&self.config.store).map_err(|e| e.to_string())
    }

    /// A session serving `image` to `machines`.
    fn restore_session(
        &self,
        step: Step,
        machines: Vec<Machine>,
        image: &str,
    ) -> Result<(Session, ImageId), String> {
        let store = self.store()?;
        let id = store
            .resolve(image)
            .map_err(|e| format!("image {image}: {e}"))?;
        let served = ServedImage { store, id };
        let session = Session::start(
            self.spec(step, AgentMode::Restore, machines),
            Some(served),
            None,
            self.boot.as_ref(),
        )?;
        session.expect(self.config.expected.clone(), self.boot.reads_hardware());
        Ok((session, id))
    }

    /// The base image as the store knows it, as an id: the configured id (or prefix), or the
    /// profile's `name@version` found among the store's images signed by a key it trusts; else,
    /// when the profile names the region's repository, pulled from there (only what the store
    /// lacks, each chunk checked, refused unless signed by a key the store trusts).
    fn base_image_in_store(&self) -> Result<String, String> {
        let c = &self.config;
        let store = self.store()?;
        let within = |e: String| match &c.profile_file {
            Some(f) => format!("{f}: {e}"),
            None => e,
        };
        let local = crate::region::find_local(&store, &c.base_image)
            .map_err(|e| within(format!("base_image {}: {e}", c.base_image)))?;
        if let Some(id) = local {
            return Ok(id.to_hex());
        }
        let Some(from) = &c.base_image_from else {
            return Err(within(format!(
                "base_image {}: not in the store {}",
                c.base_image,
                store.root().display()
            )));
        };
        let id = crate::region::pull_base_image(&store, from, &c.base_image, &c.region_access)
            .map_err(|e| within(format!("base_image {} from {from}: {e}", c.base_image)))?;
        tracing::info!(image = %id, %from, "base image pulled from the region's repository");
        Ok(id.to_hex())
    }

    /// Step b: the base image onto the master, as a deploy to one machine.
    fn restore_master(&self) -> Result<(), String> {
        let master = self.room_machine(&self.config.master)?;
        let base = self.base_image_in_store()?;
        let (session, id) = self.restore_session(Step::Master, vec![master.clone()], &base)?;
        // The session is open before the reboot, so the master's network boot finds it.
        if let (Some(ssh), Some(reboot)) = (&self.config.master_ssh, &self.config.reboot) {
            match SshClient::connect(&ssh.address, ssh.port, &ssh.ssh) {
                Ok(mut remote) => {
                    // The connection dies with the reboot: an error here is the expected outcome.
                    let _ = remote.run(reboot);
                }
                Err(e) => tracing::info!(machine = %master.hostname, %e,
                    "master not reachable over SSH at b: relying on Wake-on-LAN"),
            }
        }
        session.boot_all(self.boot.as_ref());
        let report =
            session.wait_report(&master, self.config.boot_timeout, self.config.agent_timeout)?;
        judge_restore(&master.hostname, &report.body, &id)
    }

    /// Step f: generalise, capture through the agent, and the signed image's id.
    fn capture_master(&self) -> Result<ImageId, String> {
        let c = &self.config;
        let master = self.room_machine(&c.master)?;
        let check = c.master_identity.as_ref().filter(|i| i.keep.is_none());
        if let Some(keep) = c.master_identity.as_ref().and_then(|i| i.keep.as_ref()) {
            tracing::info!(machine = %master.hostname, reason = %keep,
                "step f: the profile keeps the master's machine identity");
        }
        if c.generalise.is_some() || check.is_some() {
            let ssh = c.master_ssh.as_ref().ok_or_else(|| {
                format!(
                    "{}: the profile has a generalise command or a Linux master to check, but the \
                     master has no SSH address",
                    master.hostname
                )
            })?;
            let mut remote = SshClient::connect(&ssh.address, ssh.port, &ssh.ssh)
                .map_err(|e| format!("{}: {e}", master.hostname))?;
            if let Some(command) = &c.generalise {
                let out = remote
                    .run(command)
                    .map_err(|e| format!("{}: generalise: {e}", master.hostname))?;
                if out.code != 0 {
                    return Err(format!(
                        "{}: generalise command exited with {}: {}",
                        master.hostname,
                        out.code,
                        last_line(&out.stderr_text(), &out.stdout_text())
                    ));
                }
            }
            if let Some(identity) = check {
                let left = identity_left(&mut remote, &identity.root)
                    .map_err(|e| format!("{}: {e}", master.hostname))?;
                if !left.is_empty() {
                    return Err(identity_refusal(&master.hostname, &left));
                }
            }
            if let Some(reboot) = &c.reboot {
                // The connection dies with the reboot: an error here is the expected outcome.
                let _ = remote.run(reboot);
            }
        }
        let store = self.store()?;
        let signer =
            Signer::load(&c.signer_key).map_err(|e| format!("{}: {e}", c.signer_key.display()))?;
        let capture = CaptureConfig {
            machine: master.mac,
            store,
            signer: Arc::new(signer),
            label: ImageLabel {
                name: c.image_name.clone(),
                version: c.image_version.clone(),
                profile: c.profile.clone(),
                captured_by: c.captured_by.clone(),
                captured_at: self.clock.now().to_rfc3339(),
            },
            chunk_size: c.chunk_size,
            level: c.level,
            whole_disk: false,
        };
        let session = Session::start(
            self.spec(Step::Capture, AgentMode::Capture, vec![master.clone()]),
            None,
            Some(capture),
            self.boot.as_ref(),
        )?;
        // The master is a PC of the room: its agent asks for clearance before reading its disk too.
        session.expect(self.config.expected.clone(), false);
        session.boot_all(self.boot.as_ref());
        let report = session.wait_report(&master, c.boot_timeout, c.agent_timeout)?;
        let said = Report::parse(&report.body);
        match (session.captured(), said) {
            (Some(id), Ok(r)) if r.is_ok() && r.image.as_deref() == Some(id.to_hex().as_str()) => {
                Ok(id)
            }
            (Some(id), _) => Err(format!(
                "{}: the server signed image {id} but the agent reported {}",
                master.hostname, report.body
            )),
            (None, Ok(Report { error: Some(e), .. })) => {
                Err(format!("{}: capture failed: {e}", master.hostname))
            }
            (None, Ok(_)) => Err(format!(
                "{}: capture failed: {}",
                master.hostname, report.body
            )),
            (None, Err(e)) => Err(format!("{}: capture failed: {e}", master.hostname)),
        }
    }
}

impl Worker for ImagingWorker {
    fn run_step(&mut self, step: Step, _state: &State) -> Event {
        let result = match step {
            Step::Master => self.restore_master(),
            Step::Capture => match self.capture_master() {
                Ok(id) => return Event::ImageCaptured { image: id.to_hex() },
                Err(e) => Err(e),
            },
            _ => Err(format!("step {step} is not an imaging step")),
        };
        Event::of_step(
            step,
            result.map_err(|reason| format!("step {step}: {reason}")),
        )
    }

    fn begin_batch(&mut self, step: Step, machines: &[(String, u32)], state: &State) {
        if step != Step::Deploy {
            return;
        }
        let names: Vec<String> = machines.iter().map(|(m, _)| m.clone()).collect();
        // Machines outside the room are left out of the session (and fail on their own below).
        let allowed: Vec<Machine> = names
            .iter()
            .filter_map(|n| self.room_machine(n).ok())
            .collect();
        let session = match &state.image {
            None => Err("no image was captured at step f of this campaign".to_string()),
            Some(image) => self
                .restore_session(Step::Deploy, allowed.clone(), image)
                .map(|(s, _)| s),
        };
        let mut unattend = BTreeMap::new();
        if let (Ok(s), Some(join)) = (&session, &self.config.windows_join) {
            for m in &allowed {
                let made = windows_unattend(join, &m.hostname).map(|xml| {
                    let sha = roomcast_proto::hash::ChunkHash::of(xml.expose().as_bytes());
                    s.set_unattend(m.mac, xml);
                    sha.to_hex()
                });
                if let Err(e) = &made {
                    tracing::warn!(machine = %m.hostname, %e, "no unattend.xml for this PC");
                }
                unattend.insert(m.hostname.clone(), made);
            }
        }
        if let Ok(s) = &session {
            s.boot_all(self.boot.as_ref());
        }
        self.batch = Some(Batch {
            session,
            machines: names,
            unattend,
        });
    }

    fn follow(&mut self, db: &std::path::Path, campaign: i64) {
        self.live = Some(Arc::new(crate::campaign::live::LiveBook::new(db, campaign)));
    }

    fn end_batch(&mut self, _step: Step) {
        if let Some(Batch {
            session: Ok(session),
            ..
        }) = self.batch.take()
        {
            log_multicast(&session);
        }
    }

    fn run_on_machine(&self, step: Step, machine: &str, _attempt: u32) -> Event {
        let result = match step {
            Step::Deploy => self.deploy_result(machine),
            Step::Join if self.config.windows_join.is_some() => self.unattend_result(machine),
            _ => Err(format!("step {step} is not an imaging step")),
        };
        Event::of_machine(
            step,
            machine,
            result.map_err(|reason| format!("step {step}: {reason}")),
        )
    }
}

impl ImagingWorker {
    fn deploy_result(&self, machine: &str) -> Result<(), String> {
        let m = self.room_machine(machine)?;
        let batch = self
            .batch
            .as_ref()
            .filter(|b| b.machines.iter().any(|n| n == machine))
            .ok_or_else(|| format!("{machine}: no deploy session was started for it"))?;
        let session = batch
            .session
            .as_ref()
            .map_err(|e| format!("{machine}: {e}"))?;
        let report = session.wait_report(&m, self.config.boot_timeout, self.config.agent_timeout);
        let facts = session.facts_of(m.mac);
        if let Some((f, c)) = &facts {
            self.record_facts(&m, f, c);
        }
        if let Some((
            _,
            Clearance {
                refused: Some(why), ..
            },
        )) = facts
        {
            return Err(format!("{machine}: {why}; nothing was written to it"));
        }
        let report = report?;
        let expected = session_image(session)?;
        judge_restore(machine, &report.body, &expected)?;
        let Some(made) = batch.unattend.get(machine) else {
            return Ok(());
        };
        let served = made.as_ref().map_err(|e| format!("{machine}: {e}"))?;
        let written = Report::parse(&report.body)
            .ok()
            .and_then(|r| r.unattend)
            .ok_or_else(|| {
                format!("{machine}: the agent restored the image but wrote no unattend.xml")
            })?;
        if &written.sha256 != served {
            return Err(format!(
                "{machine}: the unattend.xml read back from partition {} is not the one served",
                written.partition
            ));
        }
        // Step h's record: the file written and checked on this PC's disk (no content).
        let record = self.unattend_record(machine);
        let line = format!(
            "partition {} {} {} bytes sha256 {}\n",
            written.partition, written.path, written.bytes, written.sha256
        );
        std::fs::create_dir_all(record.parent().unwrap_or(&self.config.work_dir))
            .and_then(|_| std::fs::write(&record, line))
            .map_err(|e| format!("{machine}: {}: {e}", record.display()))
    }

    /// The PC's facts into the inventory (and its GLPI document into the queue); a failure to
    /// record is logged, it does not fail the PC.
    fn record_facts(&self, m: &Machine, facts: &HardwareFacts, clearance: &Clearance) {
        let Some(db) = &self.config.inventory else {
            return;
        };
        let now = self.clock.now();
        let done = crate::inventory::db::InventoryDb::open(db).and_then(|mut inv| {
            crate::inventory::record::record_pc_facts(
                &mut inv,
                &m.hostname,
                &m.mac.to_string(),
                facts,
                clearance,
                now,
            )
        });
        if let Err(e) = done {
            tracing::warn!(machine = %m.hostname, %e, "the PC's facts were not recorded");
        }
    }
    /// Where g records a Windows PC's unattend.xml as written and read back.
    fn unattend_record(&self, machine: &str) -> PathBuf {
        self.config
            .work_dir
            .join("unattend")
            .join(format!("{machine}.written"))
    }

    /// Step h of a Windows PC: its agent wrote and read back its unattend.xml at the end of g,
    /// before the PC restarted; g recorded it.
    fn unattend_result(&self, machine: &str) -> Result<(), String> {
        let record = self.unattend_record(machine);
        match std::fs::read_to_string(&record) {
            Ok(line) => {
                tracing::info!(%machine, written = %line.trim(), "step h: unattend.xml in place");
                Ok(())
            }
            Err(e) => Err(format!(
                "{machine}: no record of its unattend.xml written at step g ({}: {e})",
                record.display()
            )),
        }
    }
}

/// Provisions `hostname`'s computer account and renders its unattend.xml (a secret: the blob).
fn windows_unattend(join: &WindowsJoin, hostname: &str) -> Result<crate::secrets::Secret, String> {
    let blob = crate::campaign::unattend::offline_provision(
        &join.net,
        &join.domain,
        &join.smb_conf,
        hostname,
    )
    .map_err(|e| e.to_string())?;
    crate::campaign::unattend::render_unattend(&join.template, hostname, &blob, &join.settings)
        .map(crate::secrets::Secret::new)
        .map_err(|e| e.to_string())
}

/// The image a restore session serves (from the boot script's point of view: its manifest).
fn session_image(session: &Session) -> Result<ImageId, String> {
    session
        .served_image()
        .ok_or_else(|| "the session serves no image".to_string())
}

/// The multicast session's account, in the log (the per-PC results are already journaled).
fn log_multicast(session: &Session) {
    match session.multicast_report(Duration::from_secs(5)) {
        Some(Ok(r)) => tracing::info!(
            image = %r.image,
            succeeded = r.succeeded(),
            machines = r.machines.len(),
            wire_bytes = r.wire_bytes,
            image_bytes = r.image_bytes,
            stream_ms = r.stream_time.as_millis() as u64,
            "multicast session done"
        ),
        Some(Err(e)) => tracing::warn!(%e, "multicast session failed; agents used unicast HTTP"),
        None => {}
    }
}

/// A restore report is a success only if the agent says ok for the image the session served.
pub fn judge_restore(machine: &str, body: &str, expected: &ImageId) -> Result<(), String> {
    let report = Report::parse(body).map_err(|e| format!("{machine}: {e}: {body}"))?;
    match (report.result, report.image) {
        (Verdict::Ok, Some(image)) if image == expected.to_hex() => Ok(()),
        (Verdict::Ok, Some(image)) => Err(format!(
            "{machine}: the agent restored image {image}, not {expected}"
        )),
        (Verdict::Ok, None) => Err(format!("{machine}: the agent named no image: {body}")),
        (Verdict::Failed, _) => Err(format!(
            "{machine}: the agent failed: {}",
            report.error.unwrap_or_else(|| "no reason given".into())
        )),
    }
}

fn last_line(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    text.lines().last().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_proto::contract::Work;
    use roomcast_store::chunk::ChunkHash;

    #[test]
    fn a_restore_counts_only_when_the_agent_wrote_the_served_image() {
        let id = ImageId(ChunkHash([0xab; 32]));
        let other = ImageId(ChunkHash([0xcd; 32]));
        let report = |error: Option<&str>, image: Option<String>| {
            let work = Work::Restore(Default::default());
            let r = Report::new(error.map(Into::into), image, "/dev/sda".into(), work);
            serde_json::to_string(&r).unwrap()
        };
        let ok = report(None, Some(id.to_hex()));
        assert_eq!(judge_restore("PC01", &ok, &id), Ok(()));
        let err = judge_restore("PC01", &ok, &other).unwrap_err();
        assert!(
            err.starts_with("PC01: the agent restored image abab"),
            "{err}"
        );
        let failed = report(
            Some("chunk #3 at offset 3145728 (sha256 ab…): content hashes to cd…"),
            None,
        );
        let err = judge_restore("PC02", &failed, &id).unwrap_err();
        assert!(err.contains("PC02: the agent failed: chunk #3"), "{err}");
        assert!(judge_restore("PC03", "garbage", &id).is_err());
    }

    fn worker() -> ImagingWorker {
        let config = ImagingConfig::new(
            "B204",
            vec![Machine {
                hostname: "B204-P01".into(),
                mac: roomcast_proto::mac::Mac([2, 0, 0, 0, 0, 1]),
            }],
            "B204-P01",
            "lo",
            "198.18.0.0/16".parse().unwrap(),
            PathBuf::from("/nonexistent/store"),
            PathBuf::from("/nonexistent/key"),
            "abc",
            PathBuf::from("/nonexistent/work"),
        );
        ImagingWorker::new(config, Box::new(NeverBoots))
    }

    /// A boot that never brings a PC: these tests fail before any PC would boot.
    struct NeverBoots;

    impl AgentBoot for NeverBoots {
        fn open(&self, _: &SessionInfo) -> Result<Box<dyn super::boot::BootServices>, BootError> {
            Err(BootError::Failed("no boot in this test".into()))
        }

        fn boot(&self, m: &Machine, _: &SessionInfo) -> Result<Box<dyn Booting>, BootError> {
            Err(BootError::Failed(format!(
                "{}: no boot in this test",
                m.hostname
            )))
        }
    }

    #[test]
    fn g_without_a_captured_image_or_outside_the_room_fails_each_pc_by_name() {
        let mut w = worker();
        let batch = [("B204-P01".to_string(), 1), ("B999-X".to_string(), 1)];
        w.begin_batch(Step::Deploy, &batch, &State::default());
        let reason = |e: Event| match e {
            Event::MachineFailed { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        let r = reason(w.run_on_machine(Step::Deploy, "B204-P01", 1));
        assert_eq!(
            r,
            "step g:deploy: B204-P01: no image was captured at step f of this campaign"
        );
        let r = reason(w.run_on_machine(Step::Deploy, "B999-X", 1));
        assert_eq!(r, "step g:deploy: B999-X is not a machine of room B204");
        w.end_batch(Step::Deploy);
        let r = reason(w.run_on_machine(Step::Deploy, "B204-P01", 2));
        assert!(r.contains("no deploy session was started"), "{r}");
        match w.run_step(Step::Master, &State::default()) {
            Event::StepFailed { step, reason } => {
                assert_eq!(step, Step::Master);
                assert!(
                    reason.starts_with("step b:master: /nonexistent/store"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
