//! `roomcast demo`: the main job on built-in defaults. It builds a virtual room on this machine
//! (network namespaces: a deploy server, a Samba AD DC, N PCs running OpenSSH, each with a sparse
//! disk file; see [`roomcast_lab::room`]), writes a small region (two local installers, their catalog
//! entries, a Debian 12 profile, a room file; see [`region`]) and a base image into a workspace, and
//! runs a whole real campaign on it with [`crate::campaign::run`]: a → b → c → d → e → f → g → h.
//!
//! Step e is the one difference from a real night: the demo signs it off itself, as the person the
//! profile allows, with a comment saying so, and tells its caller ([`Note::SignedOff`]) so the
//! command line can print it visibly. A real campaign waits at e for `roomcast campaign signoff`.
//!
//! Everything the room creates is removed when [`run`] returns (also on error); the workspace
//! (journal, reports, logs, store, the PCs' disks, the DC's database) is kept for inspection.

pub mod lab_boot;
pub mod region;

use crate::campaign::driver::{self, Stop, Worker};
use crate::campaign::imaging::ImagingWorker;
use crate::campaign::journal::Journal;
use crate::campaign::run::{self, Outcome, Progress, ResumeOptions, StartOptions};
use crate::campaign::setup::SetupOptions;
use crate::clock::{Clock, SystemClock};
use lab_boot::LabBoot;
use roomcast_lab::samba::DomainConfig;
use roomcast_lab::{LabPrefix, RoomConfig, RoomPc, VirtualRoom};
use roomcast_proto::procedure::{Event, Phase, State, Step, Verdict};
use roomcast_store::Store;
use roomcast_store::capture::{CaptureOptions, capture};
use roomcast_store::keys::{self, Signer};
use roomcast_store::manifest::ImageLabel;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Number of PCs (the first is the master). Default 3.
    pub pcs: usize,
    /// Disk size of every PC, MiB. Default 64.
    pub disk_mib: u64,
    /// The workspace (created; must be empty or absent).
    pub workspace: PathBuf,
    /// The `roomcast` executable the PCs' agents run (normally this one).
    pub binary: PathBuf,
    /// Instead of signing e itself, wait up to this long for a person's sign-off to appear in
    /// the journal (the web console's teacher link, or `roomcast campaign signoff`), then go on
    /// as `resume` does.
    pub wait_signoff: Option<Duration>,
    /// Rate limit of every link of the virtual room, Mbit/s (`None`: veth speed); the multicast
    /// stream is paced at it. With [`DemoOptions::payload_mib`], a g one can watch.
    pub link_mbit: Option<u64>,
    /// MiB of random bytes (incompressible) added to the base image as `/opt/payload.bin`.
    pub payload_mib: u64,
    /// The last PC drops this percentage of the multicast stream's datagrams (nftables in its
    /// namespace): the stream's loss shows, the sender repairs it.
    pub loss_pct: u8,
}

/// What the demo tells its caller while it runs (only `cli/` prints).
#[derive(Debug, Clone)]
pub enum Note {
    /// A stage of the set-up began.
    Stage(String),
    /// The virtual room is up (its prefix: every namespace and link is named after it).
    RoomUp {
        /// Lab prefix.
        prefix: LabPrefix,
        /// `role address` of every machine.
        machines: Vec<String>,
    },
    /// Campaign progress.
    Campaign(Progress),
    /// The demo waits for a person's sign-off of step e (`--wait-signoff`).
    WaitingForSignoff {
        /// Campaign id.
        campaign: i64,
        /// Who may sign.
        allowed: Vec<String>,
    },
    /// Step e was signed off by the demo itself.
    SignedOff {
        /// The name it signed as.
        by: String,
    },
}

/// One PC after the campaign.
#[derive(Debug, Clone)]
pub struct PcResult {
    /// The hostname the room file gives it.
    pub hostname: String,
    /// The hostname the PC reports after the campaign.
    pub reported_hostname: String,
    /// Its disk file.
    pub disk: PathBuf,
    /// sha256 of the disk's used bytes as the deployed image sees them (free bytes as zero:
    /// `roomcast_store::masked::used_digest`); equal on every PC that holds the image, whatever its
    /// free space holds.
    pub disk_sha256: String,
}

/// What a finished demo leaves.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    /// The workspace.
    pub workspace: PathBuf,
    /// The journal (SQLite).
    pub journal: PathBuf,
    /// The campaign's last run.
    pub campaign: Outcome,
    /// The base image's id (step b).
    pub base_image: String,
    /// Every PC.
    pub pcs: Vec<PcResult>,
    /// Computer accounts found in the profile's OU on the DC (full DNs).
    pub in_ou: Vec<String>,
    /// The DC's directory database, for `samba-tool ... -H`.
    pub sam_ldb: PathBuf,
    /// Wall time of the whole demo.
    pub elapsed: Duration,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Not root: namespaces, mounts and loop devices need it.
    #[error("roomcast demo needs root (network namespaces, loop mounts); run it with sudo")]
    NotRoot,
    /// Programs the virtual room needs are missing.
    #[error(
        "missing programs: {}. On Debian 12, from the source tree: `sudo bash tests/setup.sh` \
         (installs them without letting the packaged daemons start on the real interface), or \
         install the packages {} with the daemons' start disabled",
        .programs.join(", "),
        PACKAGES.join(" ")
    )]
    Missing {
        /// The programs not found.
        programs: Vec<String>,
    },
    /// The workspace is not empty.
    #[error("{0}: the workspace must be empty or absent")]
    Workspace(PathBuf),
    /// Building or using the virtual room failed.
    #[error(transparent)]
    Lab(#[from] roomcast_lab::LabError),
    /// A file could not be written or read.
    #[error("{what}: {path}: {source}")]
    Io {
        /// What the demo was doing.
        what: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The base image could not be made.
    #[error("base image: {0}")]
    Image(String),
    /// The imaging backend could not be configured from the room.
    #[error("imaging backend: {0}")]
    Imaging(String),
    /// The campaign could not run.
    #[error(transparent)]
    Run(#[from] run::RunError),
    /// The journal failed while signing off.
    #[error(transparent)]
    Journal(#[from] crate::campaign::journal::JournalError),
    /// The campaign stopped somewhere other than expected.
    #[error("the campaign stopped unexpectedly: {0}")]
    Stopped(String),
}

/// Debian packages the demo's programs come from (what the missing-programs error suggests).
pub const PACKAGES: [&str; 13] = [
    "iproute2",
    "util-linux",
    "mount",
    "e2fsprogs",
    "openssh-server",
    "openssh-client",
    "samba",
    "samba-ad-provision",
    "samba-dsdb-modules",
    "samba-vfs-modules",
    "winbind",
    "krb5-user",
    "ldb-tools",
];

/// Programs the demo runs, each with the package that ships it.
const PROGRAMS: [(&str, &str); 11] = [
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
    ("mount", "mount"),
    ("mkfs.ext4", "e2fsprogs"),
    ("/usr/sbin/sshd", "openssh-server"),
    ("ssh-keygen", "openssh-client"),
    ("samba-tool", "samba"),
    ("net", "samba-common-bin"),
    ("ldbsearch", "ldb-tools"),
];

fn found(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).exists();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join(program).is_file())
}

/// Checks root and the programs the virtual room needs, naming what is missing.
pub fn check_prerequisites() -> Result<(), DemoError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(DemoError::NotRoot);
    }
    let missing: Vec<String> = PROGRAMS
        .iter()
        .filter(|(p, _)| !found(p))
        .map(|(p, pkg)| format!("{p} ({pkg})"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(DemoError::Missing { programs: missing })
    }
}

fn io(what: &str, path: &Path) -> impl Fn(std::io::Error) -> DemoError {
    let (what, path) = (what.to_string(), path.to_path_buf());
    move |source| DemoError::Io {
        what: what.clone(),
        path: path.clone(),
        source,
    }
}

/// The demo domain's Administrator password: random per run, kept in the workspace's 0600 secrets
/// file only (the campaign reads it as `secret:AD_JOIN_DEMO`).
fn admin_password() -> String {
    let bytes: [u8; 9] = rand::random();
    format!("Rc-{}-9a!", hex::encode(bytes))
}

fn write_secret(path: &Path, line: &str) -> Result<(), DemoError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("writing the secrets file", path))?;
    f.write_all(line.as_bytes())
        .map_err(io("writing the secrets file", path))
}

/// Builds the base image (an ext4 filesystem made with `mkfs.ext4 -d`, the size of a PC's disk),
/// captures it into the store signed by the demo's key, and returns its id.
fn base_image(
    ws: &Path,
    store: &Store,
    signer: &Signer,
    bytes: u64,
    payload_mib: u64,
) -> Result<String, DemoError> {
    let tree = ws.join("base/tree");
    region::base_tree(&tree).map_err(io("writing the base image's files", &tree))?;
    if payload_mib > 0 {
        let payload = tree.join("opt/payload.bin");
        let mut data = vec![0u8; (payload_mib << 20) as usize];
        rand::fill(&mut data[..]);
        std::fs::write(&payload, data).map_err(io("writing the payload", &payload))?;
    }
    let file = ws.join("base/demo-base.img");
    std::fs::File::create(&file)
        .and_then(|f| f.set_len(bytes))
        .map_err(io("creating the base image", &file))?;
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "demo-base", "-d"])
        .arg(&tree)
        .arg(&file)
        .output()
        .map_err(io("running mkfs.ext4", &file))?;
    if !out.status.success() {
        return Err(DemoError::Image(format!(
            "mkfs.ext4 {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let label = ImageLabel {
        name: "demo-base".into(),
        version: "1".into(),
        profile: None,
        captured_by: "roomcast demo".into(),
        captured_at: "2026-01-01T00:00:00Z".into(),
    };
    let report = capture(
        store,
        &file,
        label,
        signer,
        &CaptureOptions::default(),
        &|_| {},
    )
    .map_err(|e| DemoError::Image(e.to_string()))?;
    Ok(report.id.to_hex())
}

/// The campaign settings of a virtual room's run (the demo's, and the tests that drive the same
/// room): workspace folders, the room's SSH keys, its DC, and the master's disk as staging area.
pub fn setup_options(
    ws: &Path,
    room_file: &Path,
    keys: &roomcast_lab::sshd::SshKeys,
    dc: roomcast_lab::LabIpv4,
    secrets: PathBuf,
) -> SetupOptions {
    SetupOptions {
        room_file: room_file.to_path_buf(),
        installers: ws.join("installers"),
        shares: ws.join("shares"),
        dir: PathBuf::new(),
        ssh_user: "root".into(),
        ssh_key: keys.client().to_path_buf(),
        known_hosts: keys.known_hosts().to_path_buf(),
        port: 22,
        connect_timeout_secs: 10,
        software_only: false,
        retries: Some(1),
        // On the master's disk, not on the host: the installers travel with the image.
        staging_dir: Some("/mnt/var/cache/roomcast".into()),
        join_paths: None,
        domain_controller: Some(dc.to_string()),
        secrets: Some(secrets),
    }
}

/// The imaging worker with the lab's twist: after step b the master "boots from its disk" (the
/// disk is mounted at `/mnt` in its namespace, where the installers of step c write); the profile's
/// generalise command and the reboot of step f (`umount /mnt`) run over SSH as on a real master.
struct DemoImaging<'a> {
    inner: ImagingWorker,
    master: &'a RoomPc,
}

impl Worker for DemoImaging<'_> {
    fn run_step(&mut self, step: Step, state: &State) -> Event {
        if step == Step::Master {
            // A restore never writes under a mounted filesystem.
            if self.master.disk_mounted().unwrap_or(false)
                && let Err(e) = self.master.unmount_disk()
            {
                return Event::StepFailed {
                    step,
                    reason: e.to_string(),
                };
            }
        }
        let event = self.inner.run_step(step, state);
        let result = match (step, &event) {
            (Step::Master, Event::StepSucceeded { .. }) => self.master.mount_disk(),
            (Step::Capture, _) if self.master.disk_mounted().unwrap_or(false) => {
                self.master.unmount_disk()
            }
            _ => Ok(()),
        };
        match result {
            Ok(()) => event,
            Err(e) => Event::StepFailed {
                step,
                reason: format!("{}: {e}", region::hostname(0)),
            },
        }
    }

    fn run_on_machine(&self, step: Step, machine: &str, attempt: u32) -> Event {
        self.inner.run_on_machine(step, machine, attempt)
    }

    fn begin_batch(&mut self, step: Step, machines: &[(String, u32)], state: &State) {
        self.inner.begin_batch(step, machines, state);
    }

    fn end_batch(&mut self, step: Step) {
        self.inner.end_batch(step);
    }

    fn follow(&mut self, db: &Path, campaign: i64) {
        self.inner.follow(db, campaign);
    }
}

fn sha256_file(path: &Path) -> Result<String, DemoError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io("hashing a disk", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io("hashing a disk", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Runs the demo; see the module doc. `note` hears of every stage and campaign event.
pub fn run(opts: &DemoOptions, note: &(dyn Fn(&Note) + Sync)) -> Result<DemoOutcome, DemoError> {
    let started = Instant::now();
    check_prerequisites()?;
    let ws = &opts.workspace;
    if std::fs::read_dir(ws).is_ok_and(|mut d| d.next().is_some()) {
        return Err(DemoError::Workspace(ws.clone()));
    }
    std::fs::create_dir_all(ws).map_err(io("creating the workspace", ws))?;
    let password = admin_password();
    let disk_bytes = opts.disk_mib.max(8) << 20;

    note(&Note::Stage(format!(
        "building the virtual room: deploy server, Samba AD DC ({}), {} PCs with OpenSSH",
        region::REALM,
        opts.pcs
    )));
    let room = VirtualRoom::build(
        &RoomConfig {
            pcs: opts.pcs.max(1),
            disk_bytes,
            domain: Some(DomainConfig {
                realm: region::REALM.into(),
                workgroup: region::WORKGROUP.into(),
                admin_password: password.clone(),
                dc_hostname: "dc1".into(),
                ous: vec![region::OU.into()],
            }),
            rate: opts.link_mbit.map(roomcast_lab::Tbf::mbit),
        },
        &ws.join("room"),
    )?;
    let dc = room.dc().expect("built with a domain");

    let mut machines = vec![format!(
        "srv {} ({})",
        room.server().addr(),
        room.server().ifname()
    )];
    machines.push(format!("dc  {} ({})", dc.addr(), region::REALM));
    for (i, pc) in room.pcs().iter().enumerate() {
        machines.push(format!(
            "{} {} -> {}{}",
            pc.node().role(),
            pc.node().addr(),
            region::hostname(i),
            if i == 0 { " (master)" } else { "" }
        ));
    }
    note(&Note::RoomUp {
        prefix: room.lab().prefix().clone(),
        machines,
    });

    note(&Note::Stage(
        "writing the region (catalog, profile, room file) and the base image".into(),
    ));
    let addresses: Vec<String> = room
        .pcs()
        .iter()
        .map(|pc| pc.node().addr().to_string())
        .collect();
    let reg = region::write(ws, &addresses, room.server().ifname())
        .map_err(io("writing the region", ws))?;
    let secrets = ws.join("secrets");
    write_secret(
        &secrets,
        &format!("{}=Administrator%{password}\n", region::JOIN_SECRET),
    )?;
    let store_dir = ws.join("store");
    let store = Store::open_or_create(&store_dir).map_err(|e| DemoError::Image(e.to_string()))?;
    let (key, public, _) =
        keys::generate_files(&ws.join("keys")).map_err(|e| DemoError::Image(e.to_string()))?;
    store
        .trust(&public)
        .map_err(|e| DemoError::Image(e.to_string()))?;
    let signer = Signer::load(&key).map_err(|e| DemoError::Image(e.to_string()))?;
    let base = base_image(ws, &store, &signer, disk_bytes, opts.payload_mib)?;

    let db = ws.join("roomcast.db");
    let keys = room.keys();
    let setup = setup_options(ws, &reg.room_file, keys, dc.addr(), secrets);
    let start = StartOptions {
        db: db.clone(),
        setup,
        at: None,
        until: None,
        parallel: 8,
        today: None,
    };

    // The imaging backend is configured from the same setup the campaign will use (machines and
    // MACs from the room file, generalise command and master's SSH from the profile); only the way
    // PCs boot (`LabBoot`: the real agent in the PC's namespace) is the lab's.
    let clock = SystemClock;
    let built = run::setup_for(&start, &clock)?;
    let mut config = run::imaging_config(&built, &store_dir, &key, &ws.join("imaging"))
        .map_err(DemoError::Imaging)?;
    // The profile names the base image `demo-base@1`; the store knows it by id.
    config.base_image = base.clone();
    config.reboot = Some("sync && umount /mnt".into());
    // The virtual master's system is its disk, mounted at /mnt in its namespace: step f checks
    // the machine identity there.
    if let Some(identity) = &mut config.master_identity {
        identity.root = "/mnt".into();
    }
    config.captured_by = "roomcast demo".into();
    config.boot_timeout = Duration::from_secs(60);
    config.agent_timeout = Duration::from_secs(600);
    if let (Some(mbit), Some(data)) = (opts.link_mbit, config.multicast.as_mut()) {
        // Paced at the links' rate, as a technician sets a room's (the loss adaptation still
        // slows it on loss).
        data.rate_bps = mbit * 1_000_000;
        data.min_rate_bps = data.min_rate_bps.min(data.rate_bps);
    }
    if opts.loss_pct > 0
        && let (Some(pc), Some(data)) = (room.pcs().last(), config.multicast.as_ref())
    {
        let port = data.group.port();
        room.lab().set_loss(pc.node(), opts.loss_pct, port..=port)?;
    }
    let mut boot = LabBoot::new(&opts.binary, &public, &ws.join("agents"));
    for (i, pc) in room.pcs().iter().enumerate() {
        boot = boot.pc(&region::hostname(i), pc.node().netns(), pc.disk());
    }
    let mut imaging = DemoImaging {
        inner: ImagingWorker::new(config, Box::new(boot)),
        master: room.master(),
    };

    note(&Note::Stage(format!(
        "running the campaign for room {} (journal {})",
        region::ROOM,
        db.display()
    )));
    let observe = |p: &Progress| note(&Note::Campaign(p.clone()));
    let outcome = room.server().run(|| -> Result<Outcome, DemoError> {
        let first = run::start(&start, &clock, Some(&mut imaging), &observe)?;
        let allowed = match &first.stop {
            Stop::AwaitingSignoff { allowed } => allowed.clone(),
            Stop::Ended(_) => return Ok(first),
            other => return Err(DemoError::Stopped(format!("{other:?}"))),
        };
        if let Some(limit) = opts.wait_signoff {
            note(&Note::WaitingForSignoff {
                campaign: first.campaign,
                allowed,
            });
            let until = std::time::Instant::now() + limit;
            loop {
                let state = Journal::open(&db)?.state(first.campaign)?;
                if state.phase != Phase::At(Step::Signoff) {
                    break;
                }
                if std::time::Instant::now() > until {
                    return Err(DemoError::Stopped(format!(
                        "no sign-off within {} s",
                        limit.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let resume = ResumeOptions {
                db: db.clone(),
                campaign: Some(first.campaign),
                until: None,
                parallel: 8,
                today: None,
            };
            return Ok(run::resume(&resume, &clock, Some(&mut imaging), &observe)?);
        }
        let by = allowed
            .first()
            .cloned()
            .unwrap_or_else(|| region::SIGNER.to_string());
        let mut journal = Journal::open(&db)?;
        driver::signoff(
            &mut journal,
            first.campaign,
            &by,
            Verdict::Ok,
            Some(
                "DEMO: signed off automatically by `roomcast demo`; a real campaign waits \
                     for a teacher's sign-off"
                    .into(),
            ),
            clock.now(),
        )?;
        drop(journal);
        note(&Note::SignedOff { by });
        let resume = ResumeOptions {
            db: db.clone(),
            campaign: Some(first.campaign),
            until: None,
            parallel: 8,
            today: None,
        };
        Ok(run::resume(&resume, &clock, Some(&mut imaging), &observe)?)
    })??;

    note(&Note::Stage("checking the PCs and the directory".into()));
    let deployed = outcome.state.image.clone();
    let manifest = match &deployed {
        Some(image) => Some(
            store
                .resolve(image)
                .and_then(|id| store.open_verified(&id))
                .map_err(|e| DemoError::Image(e.to_string()))?,
        ),
        None => None,
    };
    let mut pcs = Vec::new();
    for (i, pc) in room.pcs().iter().enumerate() {
        let disk_sha256 = match &manifest {
            Some(m) => roomcast_store::disk::Disk::open_read(pc.disk())
                .and_then(|d| roomcast_store::masked::used_digest(&d, m))
                .map_err(|e| DemoError::Image(format!("{}: {e}", pc.disk().display())))?,
            None => sha256_file(pc.disk())?,
        };
        pcs.push(PcResult {
            hostname: region::hostname(i),
            reported_hostname: pc.hostname()?,
            disk: pc.disk().to_path_buf(),
            disk_sha256,
        });
    }
    let in_ou: Vec<String> = dc
        .computers()?
        .into_iter()
        .filter(|dn| dn.ends_with(&format!(",{}", region::OU)))
        .collect();
    let sam_ldb = dc.sam_ldb();
    drop(imaging);
    room.teardown()?;
    if !matches!(outcome.stop, Stop::Ended(Phase::Finished)) {
        return Err(DemoError::Stopped(format!(
            "{:?}; see {}",
            outcome.stop,
            outcome.report_md.display()
        )));
    }
    Ok(DemoOutcome {
        workspace: ws.clone(),
        journal: db,
        campaign: outcome,
        base_image: base,
        pcs,
        in_ou,
        sam_ldb,
        elapsed: started.elapsed(),
    })
}
