//! The overnight run: `roomcast campaign start rooms/<UAI>/<room>.yaml` and `resume`, as a library
//! the CLI and `roomcast demo` call.
//!
//! ```no_run
//! # use roomcast::campaign::run::{self, StartOptions};
//! # fn f(opts: StartOptions) -> Result<(), run::RunError> {
//! let outcome = run::start(&opts, None, &|p| eprintln!("{p:?}"))?;
//! // outcome.stop == Stop::AwaitingSignoff { .. }: a person signs with `campaign signoff`, then
//! let outcome = run::resume(&run::ResumeOptions::latest(&opts.db), None, &|_| {})?;
//! # Ok(()) }
//! ```
//!
//! `start` builds the campaign from the validated model ([`super::setup`]), journals it, saves its
//! options next to the journal (`<db dir>/campaigns/<id>/options.json`, no secret in it), waits for
//! `--at`, then drives the procedure with the [`SshWorker`] (and the imaging worker, when given, for
//! b, f and image-mode g). It returns at step e (waiting for a sign-off), at the end, or at `--until`.
//! Each return writes the morning report (`report.md`, `report.html`) in the campaign's folder and,
//! once g/h results exist, records every PC in the local inventory and queues it for GLPI.

use super::driver::{Stop, Worker, drive_until, resume_until};
use super::fetch;
use super::journal::{Journal, JournalError};
use super::report::{self, Facts};
use super::setup::{self, Setup, SetupError, SetupOptions};
use super::ssh_worker::SshWorker;
use crate::clock::Clock;
use crate::inventory::db::{DbError, InventoryDb};
use crate::inventory::{self, CampaignTicket, ImageDeployed, Intervention, MachineRecord};
use crate::model::Date;
use roomcast_proto::procedure::{Action, Event, State, Status, Step, Timestamp};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `start` needs.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// The journal (normally the inventory's database file; both share it).
    pub db: PathBuf,
    /// The room and how to reach it.
    pub setup: SetupOptions,
    /// Do not start before this time.
    pub at: Option<Timestamp>,
    /// Start no new step or PC after this time.
    pub until: Option<Timestamp>,
    /// PCs worked on at once at g and h.
    pub parallel: usize,
    /// The date licences are checked against (`None`: today, UTC).
    pub today: Option<Date>,
}

/// What `resume` needs; the rest comes from the options saved at `start`.
#[derive(Debug, Clone)]
pub struct ResumeOptions {
    /// The journal.
    pub db: PathBuf,
    /// Which campaign (`None`: the latest of the journal).
    pub campaign: Option<i64>,
    /// Start no new step or PC after this time.
    pub until: Option<Timestamp>,
    /// PCs worked on at once at g and h.
    pub parallel: usize,
    /// The date licences are checked against (`None`: today, UTC).
    pub today: Option<Date>,
}

impl ResumeOptions {
    /// The latest campaign of `db`, 8 PCs at once, no deadline.
    pub fn latest(db: &Path) -> ResumeOptions {
        ResumeOptions {
            db: db.to_path_buf(),
            campaign: None,
            until: None,
            parallel: 8,
            today: None,
        }
    }
}

/// What a run ended with.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Campaign id in the journal.
    pub campaign: i64,
    /// Why the run returned.
    pub stop: Stop,
    /// The campaign's state.
    pub state: State,
    /// The Markdown report.
    pub report_md: PathBuf,
    /// The HTML report.
    pub report_html: PathBuf,
    /// Machines recorded in the inventory by this run.
    pub recorded: usize,
}

/// Progress of a run, for bars, logs or `--json` (one object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    /// The campaign is journaled.
    Journaled {
        /// Campaign id.
        campaign: i64,
        /// Room id.
        room: String,
        /// Number of PCs.
        machines: usize,
    },
    /// Waiting for the `--at` time.
    Scheduled {
        /// Epoch seconds.
        at: i64,
    },
    /// A room-level step started.
    StepStarted {
        /// `a`..`f`.
        step: char,
    },
    /// An installer was fetched into the store (0 bytes: it was already there).
    Fetched {
        /// Catalog file name.
        file: String,
        /// Bytes transferred.
        bytes: u64,
    },
    /// A room-level step ended.
    StepEnded {
        /// `a`..`f`.
        step: char,
        /// `ok`, `failed` or `refused`.
        result: String,
        /// Why, when not ok (redacted by the runners).
        detail: Option<String>,
    },
    /// A per-machine step started on a PC.
    MachineStarted {
        /// `g` or `h`.
        step: char,
        /// Hostname.
        machine: String,
        /// From 1.
        attempt: u32,
    },
    /// A per-machine step ended on a PC.
    MachineEnded {
        /// `g` or `h`.
        step: char,
        /// Hostname.
        machine: String,
        /// `ok` or `failed`.
        result: String,
        /// Why, when failed.
        detail: Option<String>,
    },
    /// The run returned.
    Stopped {
        /// `awaiting_signoff`, `deadline`, or the campaign's end (`finished`, `failed`, ...).
        why: String,
        /// Who may sign, when awaiting a sign-off.
        allowed: Vec<String>,
    },
}

/// Why a run could not go on (the campaign's own failures are in [`Outcome::state`], not here).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The room, its profile or a secret could not be used.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The inventory failed.
    #[error(transparent)]
    Inventory(#[from] DbError),
    /// The engine refused to start the plan.
    #[error("campaign not started: {0}")]
    Rejected(String),
    /// The journal holds no such campaign, or it was not started by `roomcast campaign start`.
    #[error("{0}")]
    NoCampaign(String),
    /// The room already has a campaign that has not ended.
    #[error(
        "room {room} has campaign {campaign} still open: `roomcast campaign resume {campaign}` \
         or `roomcast campaign abort --id {campaign} --by NAME` first"
    )]
    Unfinished {
        /// The room.
        room: String,
        /// The open campaign.
        campaign: i64,
    },
    /// The room file changed since `start` in a way the journaled plan cannot follow.
    #[error("{file}: the room changed since the campaign started ({what}); start a new campaign")]
    PlanChanged {
        /// The room file.
        file: String,
        /// What differs.
        what: String,
    },
    /// A file next to the journal could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename: a reader never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The campaign's folder next to the journal: options, logs, reports.
pub fn campaign_dir(db: &Path, campaign: i64) -> PathBuf {
    setup::campaign_dir(db, campaign)
}

/// Starts a campaign for the room of `opts.setup.room_file`; see the module doc.
pub fn start(
    opts: &StartOptions,
    clock: &dyn Clock,
    imaging: Option<&mut dyn Worker>,
    observe: &(dyn Fn(&Progress) + Sync),
) -> Result<Outcome, RunError> {
    let today = opts.today.unwrap_or_else(|| clock.today());
    let mut built = setup::build(&opts.setup, today)?;
    let mut journal = Journal::open(&opts.db)?;
    // Two campaigns driving the same PCs would fight over them.
    if let Some(previous) = journal.latest_for_room(&built.spec.plan.room)?
        && !journal.state(previous)?.phase.is_terminal()
    {
        return Err(RunError::Unfinished {
            room: built.spec.plan.room.clone(),
            campaign: previous,
        });
    }
    let (id, actions) = journal.start(&built.spec.plan, clock.now())?;
    if let Some(Action::Rejected { reason }) = actions.first() {
        return Err(RunError::Rejected(reason.clone()));
    }
    let dir = campaign_dir(&opts.db, id);
    let mut saved = opts.setup.clone();
    saved.dir = dir.clone();
    built.spec.logs = dir.join("logs");
    let json = serde_json::to_vec_pretty(&saved).expect("options serialise");
    write_atomic(&dir.join("options.json"), &json)?;
    // The plan as started (no secret in it: references only), for the report's figures.
    let json = serde_json::to_vec_pretty(&built.plan).expect("plan serialises");
    write_atomic(&dir.join("plan.json"), &json)?;
    observe(&Progress::Journaled {
        campaign: id,
        room: built.spec.plan.room.clone(),
        machines: built.spec.plan.machines.len(),
    });
    if let Some(at) = opts.at {
        observe(&Progress::Scheduled { at: at.0 });
        clock.sleep_until(at);
    }
    let state = journal.state(id)?;
    let until = opts.until;
    let past = move || until.is_some_and(|u| clock.now() >= u);
    // A shorter borrow of the imaging worker, as long as the setup it works with.
    let imaging = imaging.map(|w| {
        let short: &mut dyn Worker = &mut *w;
        short
    });
    let mut worker = RunWorker::new(&built, &saved, imaging, observe);
    let (state, stop) = drive_until(
        &mut journal,
        id,
        1,
        state,
        actions,
        &mut worker,
        opts.parallel,
        &mut || clock.now(),
        &past,
    )?;
    finish(&journal, &opts.db, id, &built, state, stop, clock, observe)
}

/// Resumes a campaign after a sign-off, a `--until` stop or a crash; see the module doc.
pub fn resume(
    opts: &ResumeOptions,
    clock: &dyn Clock,
    imaging: Option<&mut dyn Worker>,
    observe: &(dyn Fn(&Progress) + Sync),
) -> Result<Outcome, RunError> {
    if !opts.db.exists() {
        return Err(RunError::NoCampaign(format!(
            "{}: no such journal",
            opts.db.display()
        )));
    }
    let mut journal = Journal::open(&opts.db)?;
    let id = match opts.campaign {
        Some(id) => id,
        None => journal.latest()?.ok_or_else(|| {
            RunError::NoCampaign(format!("{}: no campaign in the journal", opts.db.display()))
        })?,
    };
    let (saved, built) = rebuild(&opts.db, id, opts.today.unwrap_or_else(|| clock.today()))?;
    let current = journal.state(id)?;
    if let Some(plan) = &current.plan
        && *plan != built.spec.plan
    {
        return Err(RunError::PlanChanged {
            file: saved.room_file.display().to_string(),
            what: plan_difference(plan, &built.spec.plan),
        });
    }
    if current.phase.is_terminal() {
        let stop = Stop::Ended(current.phase.clone());
        return finish(
            &journal, &opts.db, id, &built, current, stop, clock, observe,
        );
    }
    let until = opts.until;
    let past = move || until.is_some_and(|u| clock.now() >= u);
    // A shorter borrow of the imaging worker, as long as the setup it works with.
    let imaging = imaging.map(|w| {
        let short: &mut dyn Worker = &mut *w;
        short
    });
    let mut worker = RunWorker::new(&built, &saved, imaging, observe);
    let (state, stop) = resume_until(
        &mut journal,
        id,
        &mut worker,
        opts.parallel,
        &mut || clock.now(),
        &past,
    )?;
    finish(&journal, &opts.db, id, &built, state, stop, clock, observe)
}

/// The configuration of the imaging backend (steps b, f and image-mode g) for a campaign's setup:
/// the room's machines (hostname + MAC, the boot allowlist), interface and subnet, the profile's
/// base image and generalise command, SSH to the master. `store`, `signer_key` and `work_dir` are
/// the deploy server's. The CLI and `roomcast demo` hand the result to
/// [`super::imaging::ImagingWorker::new`] with their way of booting PCs.
pub fn imaging_config(
    built: &Setup,
    store: &Path,
    signer_key: &Path,
    work_dir: &Path,
) -> Result<super::imaging::ImagingConfig, String> {
    let plan = &built.plan;
    let mut machines = Vec::new();
    for m in &plan.machines {
        let mac = m
            .mac
            .replace('-', ":")
            .parse()
            .map_err(|e| format!("{}: machine {} MAC {}: {e}", plan.file, m.hostname, m.mac))?;
        machines.push(super::imaging::Machine {
            hostname: m.hostname.clone(),
            mac,
        });
    }
    let subnet = plan
        .network
        .subnet
        .parse()
        .map_err(|e| format!("{}: network.subnet: {e}", plan.file))?;
    let mut config = super::imaging::ImagingConfig::new(
        &plan.room,
        machines,
        &plan.master,
        &plan.network.interface,
        subnet,
        store.to_path_buf(),
        signer_key.to_path_buf(),
        &plan.base_image,
        work_dir.to_path_buf(),
    );
    config.image_name = format!("{}-{}", plan.uai, plan.room);
    config.profile = Some(plan.profile.clone());
    config.generalise = plan.generalize.clone();
    config.master_ssh =
        built
            .spec
            .addresses
            .get(&plan.master)
            .map(|address| super::imaging::MasterSsh {
                address: address.clone(),
                port: built.spec.port,
                ssh: built.spec.ssh.clone(),
            });
    Ok(config)
}

/// The setup of a journaled campaign, rebuilt from the options saved at its start (for a caller that
/// must build its imaging worker before [`resume`]).
pub fn saved_setup(db: &Path, id: i64, today: Date) -> Result<Setup, RunError> {
    rebuild(db, id, today).map(|(_, built)| built)
}

/// The setup `start` will use, built the same way (for a caller that must build its imaging worker
/// before [`start`]).
pub fn setup_for(opts: &StartOptions, clock: &dyn Clock) -> Result<Setup, RunError> {
    Ok(setup::build(
        &opts.setup,
        opts.today.unwrap_or_else(|| clock.today()),
    )?)
}

/// The saved options of campaign `id` and the setup rebuilt from them.
fn rebuild(db: &Path, id: i64, today: Date) -> Result<(SetupOptions, Setup), RunError> {
    let file = campaign_dir(db, id).join("options.json");
    let bytes = std::fs::read(&file).map_err(|e| {
        RunError::NoCampaign(format!(
            "campaign {id}: {}: {e} (was it started with `roomcast campaign start`?)",
            file.display()
        ))
    })?;
    let saved: SetupOptions = serde_json::from_slice(&bytes).map_err(|e| RunError::Io {
        path: file.clone(),
        source: std::io::Error::other(e),
    })?;
    let mut built = setup::build(&saved, today)?;
    built.spec.logs = saved.dir.join("logs");
    Ok((saved, built))
}

fn plan_difference(
    old: &roomcast_proto::procedure::Plan,
    new: &roomcast_proto::procedure::Plan,
) -> String {
    if old.machines != new.machines {
        format!("machines were {:?}, now {:?}", old.machines, new.machines)
    } else if old.master != new.master {
        format!("master was {}, now {}", old.master, new.master)
    } else {
        "profile settings (mode, retries or sign-off list) differ".into()
    }
}

/// Writes the reports (and prints nothing): Markdown and HTML, for the campaign's current state.
/// `roomcast campaign report` uses it too.
pub fn reports(
    journal: &Journal,
    db: &Path,
    id: i64,
    stopped_at_until: bool,
) -> Result<(State, Facts), RunError> {
    let events = journal.events(id)?;
    let state = journal.state(id)?;
    let mut facts = Facts {
        timings: report::timings(events.iter().map(|r| (&r.event, r.at))),
        stopped_at_until,
        ..Facts::default()
    };
    // The byte figures come from the plan saved at start; without it the report has none.
    let plan = std::fs::read(campaign_dir(db, id).join("plan.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    if let Some(bytes) = plan.as_ref().map(|p| &p["bytes"]) {
        facts.installer_bytes = bytes["installers"].as_u64();
        facts.image_bytes = bytes["image"].as_u64();
    }
    Ok((state, facts))
}

// Restructured in the next step (a `Run` context).
#[allow(clippy::too_many_arguments)]
fn finish(
    journal: &Journal,
    db: &Path,
    id: i64,
    built: &Setup,
    state: State,
    stop: Stop,
    clock: &dyn Clock,
    observe: &(dyn Fn(&Progress) + Sync),
) -> Result<Outcome, RunError> {
    let recorded = record_inventory(db, id, built, &state, journal, clock.now())?;
    let (state, facts) = reports(journal, db, id, stop == Stop::Deadline)?;
    let dir = campaign_dir(db, id);
    let report_md = dir.join("report.md");
    let report_html = dir.join("report.html");
    write_atomic(&report_md, report::markdown_with(&state, &facts).as_bytes())?;
    write_atomic(&report_html, report::html(&state, &facts).as_bytes())?;
    let (why, allowed) = match &stop {
        Stop::AwaitingSignoff { allowed } => ("awaiting_signoff".to_string(), allowed.clone()),
        Stop::Deadline => ("deadline".to_string(), vec![]),
        Stop::Ended(phase) => (phase.word().to_string(), vec![]),
    };
    observe(&Progress::Stopped { why, allowed });
    Ok(Outcome {
        campaign: id,
        stop,
        state,
        report_md,
        report_html,
        recorded,
    })
}

/// Records every PC with a settled g or h result in the inventory (same database file as the
/// journal) and queues its GLPI followups. Recording twice changes nothing (the inventory keys
/// interventions by campaign, step, machine and start time).
fn record_inventory(
    db: &Path,
    id: i64,
    built: &Setup,
    state: &State,
    journal: &Journal,
    now: Timestamp,
) -> Result<usize, RunError> {
    let settled = |m: &str| {
        [Step::Deploy, Step::Join]
            .iter()
            .any(|s| state.machine_status(m, *s).is_settled())
    };
    if !built.plan.machines.iter().any(|m| settled(&m.hostname)) {
        return Ok(0);
    }
    let events = journal.events(id)?;
    let timings = report::timings(events.iter().map(|r| (&r.event, r.at)));
    let mut inv = InventoryDb::open(db)?;
    let at = now;
    let started = state.started_at.map_or(0, |t| t.0);
    let campaign = format!(
        "{}-{}-{}",
        built.plan.uai,
        built.plan.room,
        Date::from_days_since_epoch(started.div_euclid(86_400))
    ) + &format!("-{id}");
    let ticket = CampaignTicket {
        campaign: campaign.clone(),
        title: format!(
            "Mise à niveau salle {} ({})",
            built.plan.room, built.plan.school
        ),
        content: format!(
            "Campagne roomcast {id} : profil {}, {} poste(s), domaine {} (OU {}).",
            built.plan.profile,
            built.plan.machines.len(),
            built.plan.domain.name,
            built.plan.domain.ou
        ),
    };
    let mut recorded = 0;
    for m in &built.plan.machines {
        if !settled(&m.hostname) {
            continue;
        }
        let mac = m.mac.replace('-', ":").to_ascii_lowercase();
        inv.upsert_machine(
            &MachineRecord {
                school_uai: built.plan.uai.clone(),
                room: built.plan.room.clone(),
                hostname: m.hostname.clone(),
                mac: mac.clone(),
                serial: m.serial.clone(),
                model: built.pc_model.clone(),
                glpi_id: m.glpi_id,
            },
            at,
        )?;
        for step in [Step::Deploy, Step::Join] {
            let status = state.machine_status(&m.hostname, step);
            let (result, detail) = match &status {
                Status::Succeeded { .. } => (
                    inventory::Outcome::Ok,
                    match step {
                        Step::Deploy => match built.spec.plan.mode {
                            roomcast_proto::procedure::DeployMode::Image => {
                                format!("image of profile {}", built.plan.profile)
                            }
                            roomcast_proto::procedure::DeployMode::SoftwareOnly => {
                                format!("software of profile {}", built.plan.profile)
                            }
                        },
                        _ => format!(
                            "{} joined {} in {}",
                            m.hostname, built.plan.domain.name, built.plan.domain.ou
                        ),
                    },
                ),
                Status::Failed { reason, .. } => (inventory::Outcome::Failed, reason.clone()),
                Status::Skipped { reason } => (inventory::Outcome::Skipped, reason.clone()),
                _ => continue,
            };
            let (s, e) = timings
                .machines
                .get(&(m.hostname.clone(), step))
                .copied()
                .unwrap_or((Timestamp(started), None));
            inv.record_intervention(
                &Intervention {
                    campaign: campaign.clone(),
                    step,
                    machine: mac.clone(),
                    result,
                    started_at: inventory::Timestamp(s.0),
                    ended_at: inventory::Timestamp(e.unwrap_or(s).0),
                    detail,
                },
                &ticket,
                at,
            )?;
        }
        // The image this campaign captured (step f), on every PC it reached at g.
        if let (roomcast_proto::procedure::DeployMode::Image, Some(image)) =
            (built.spec.plan.mode, &state.image)
        {
            let status = state.machine_status(&m.hostname, Step::Deploy);
            let result = match status {
                Status::Succeeded { .. } => Some(inventory::Outcome::Ok),
                Status::Failed { .. } => Some(inventory::Outcome::Failed),
                _ => None,
            };
            if let Some(result) = result {
                let end = timings
                    .machines
                    .get(&(m.hostname.clone(), Step::Deploy))
                    .and_then(|(_, e)| *e)
                    .unwrap_or(Timestamp(started));
                inv.record_image_deployed(
                    &ImageDeployed {
                        campaign: campaign.clone(),
                        machine: mac.clone(),
                        image_id: image.clone(),
                        image_version: format!("{}-{}@{}", built.plan.uai, built.plan.room, id),
                        at: inventory::Timestamp(end.0),
                        result,
                    },
                    at,
                )?;
            }
        }
        recorded += 1;
    }
    Ok(recorded)
}

/// The worker of a run: step a fetches the installers first, every start and result is reported to
/// the observer, and the rest is the [`SshWorker`]'s.
struct RunWorker<'a> {
    ssh: SshWorker<'a>,
    built: &'a Setup,
    shares: PathBuf,
    observe: &'a (dyn Fn(&Progress) + Sync),
}

impl<'a> RunWorker<'a> {
    fn new(
        built: &'a Setup,
        saved: &SetupOptions,
        imaging: Option<&'a mut dyn Worker>,
        observe: &'a (dyn Fn(&Progress) + Sync),
    ) -> RunWorker<'a> {
        RunWorker {
            ssh: SshWorker::new(&built.spec, imaging),
            built,
            shares: saved.shares.clone(),
            observe,
        }
    }

    fn collect(&mut self, state: &State) -> Event {
        let mut refusals = Vec::new();
        for f in &self.built.fetches {
            match fetch::fetch(f, &self.shares, Duration::from_secs(60)) {
                Ok(bytes) => (self.observe)(&Progress::Fetched {
                    file: f.file.clone(),
                    bytes,
                }),
                Err(r) => refusals.push(r),
            }
        }
        if !refusals.is_empty() {
            return Event::Refused(refusals);
        }
        self.ssh.run_step(Step::Collect, state)
    }
}

impl Worker for RunWorker<'_> {
    fn run_step(&mut self, step: Step, state: &State) -> Event {
        (self.observe)(&Progress::StepStarted {
            step: step.letter(),
        });
        let event = match step {
            Step::Collect => self.collect(state),
            _ => self.ssh.run_step(step, state),
        };
        let (result, detail) = match &event {
            Event::StepSucceeded { .. } | Event::ImageCaptured { .. } => ("ok", None),
            Event::StepFailed { reason, .. } => ("failed", Some(reason.clone())),
            Event::Refused(r) => (
                "refused",
                Some(
                    r.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            ),
            _ => ("?", None),
        };
        (self.observe)(&Progress::StepEnded {
            step: step.letter(),
            result: result.into(),
            detail,
        });
        event
    }

    // The imaging worker serves a whole batch of PCs with one session: it must hear of the batch.
    fn begin_batch(&mut self, step: Step, machines: &[(String, u32)], state: &State) {
        self.ssh.begin_batch(step, machines, state);
    }

    fn end_batch(&mut self, step: Step) {
        self.ssh.end_batch(step);
    }

    fn run_on_machine(&self, step: Step, machine: &str, attempt: u32) -> Event {
        (self.observe)(&Progress::MachineStarted {
            step: step.letter(),
            machine: machine.to_string(),
            attempt,
        });
        let event = if step == Step::Join
            && self.built.spec.join.is_none()
            && self.built.spec.shell == super::install::Shell::Windows
        {
            // Windows PCs are named and joined by the unattend.xml the image deploy writes (offline
            // join blob, `campaign::unattend`); this run has no such deploy wired in yet.
            Event::MachineFailed {
                step,
                machine: machine.to_string(),
                reason: format!(
                    "{machine}: Windows PCs join through the unattend.xml written at image deploy \
                     (campaign::unattend), which this run does not provide"
                ),
            }
        } else {
            self.ssh.run_on_machine(step, machine, attempt)
        };
        let (result, detail) = match &event {
            Event::MachineFailed { reason, .. } => ("failed", Some(reason.clone())),
            _ => ("ok", None),
        };
        (self.observe)(&Progress::MachineEnded {
            step: step.letter(),
            machine: machine.to_string(),
            result: result.into(),
            detail,
        });
        event
    }
}
