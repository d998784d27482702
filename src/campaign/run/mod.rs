//! The overnight run: `roomcast campaign start rooms/<UAI>/<room>.yaml` and `resume`, as a library
//! the CLI and `roomcast demo` call.
//!
//! ```no_run
//! # use roomcast::campaign::run::{self, StartOptions};
//! # use roomcast::clock::SystemClock;
//! # fn f(opts: StartOptions) -> Result<(), run::RunError> {
//! let outcome = run::start(&opts, &SystemClock, None, &|p| eprintln!("{p:?}"))?;
//! // outcome.stop == Stop::AwaitingSignoff { .. }: a person signs with `campaign signoff`, then
//! let outcome = run::resume(&run::ResumeOptions::latest(&opts.db), &SystemClock, None, &|_| {})?;
//! # Ok(()) }
//! ```
//!
//! `start` builds the campaign from the validated model ([`super::setup`]), journals it, saves its
//! options and plan next to the journal (`options`: `<db dir>/campaigns/<id>/options.json`, no
//! secret in it), waits for `--at` on the [`Clock`], then drives the procedure with the one
//! [`StepRunner`] (which hands b, f and image-mode g to the imaging worker, when given). It returns
//! at step e (waiting for a sign-off), at the end, or at `--until`. Each return writes the morning
//! report ([`reports`]: `report.md`, `report.html`) in the campaign's folder and, once g/h results
//! exist, records every PC in the local inventory ([`crate::inventory::record`]), which queues it
//! for GLPI. Only the clock given says what time it is.

pub mod interrupted;
mod options;
mod reports;
pub mod retention;

pub use options::{
    ResumeOptions, SavedMachine, SavedPlan, SavedSoftware, StartOptions, campaign_dir,
    save_deadline, saved_deadline, saved_plan,
};
pub use reports::{agent_reports_at_g, imaging_dir, reports};

use super::driver::{Stop, Worker, drive_until, resume_until};
use super::journal::{Journal, JournalError};
use super::report;
use super::setup::{self, Setup, SetupError, SetupOptions};
use super::steps::StepRunner;
use crate::clock::Clock;
use crate::inventory::db::{DbError, InventoryDb};
use crate::inventory::record::{self, CampaignRun};
use crate::model::Date;
use roomcast_proto::procedure::{Action, State, Timestamp};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    // The plan as started (no secret in it: references only), for the report's figures.
    options::save(&dir, &saved, &built.plan)?;
    options::save_deadline(&opts.db, id, opts.until)?;
    observe(&Progress::Journaled {
        campaign: id,
        room: built.spec.plan.room.clone(),
        machines: built.spec.plan.machines.len(),
    });
    // From here on a reboot of the server does not lose the run (`interrupted`).
    interrupted::mark(
        &opts.db,
        id,
        &interrupted::RunMarker {
            at: opts.at.map(|t| t.0),
            until: opts.until.map(|t| t.0),
            parallel: opts.parallel,
        },
    )?;
    if let Some(at) = opts.at {
        observe(&Progress::Scheduled { at: at.0 });
        clock.sleep_until(at);
    }
    let begin = Begin::Start(Box::new(journal.state(id)?), actions);
    let run = Run::new(&opts.db, id, &built, &saved, clock, observe);
    let result = run.drive(&mut journal, begin, opts.until, opts.parallel, imaging);
    interrupted::clear(&opts.db, id);
    result
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
    options::save_deadline(&opts.db, id, opts.until)?;
    let run = Run::new(&opts.db, id, &built, &saved, clock, observe);
    if current.phase.is_terminal() {
        interrupted::clear(&opts.db, id);
        let stop = Stop::Ended(current.phase.clone());
        return run.finish(&journal, current, stop);
    }
    // A run cut short while it waited for its `--at` time waits for it again.
    let at = interrupted::read(&opts.db, id)
        .and_then(|m| m.at)
        .filter(|at| *at > clock.now().0);
    interrupted::mark(
        &opts.db,
        id,
        &interrupted::RunMarker {
            at,
            until: opts.until.map(|t| t.0),
            parallel: opts.parallel,
        },
    )?;
    if let Some(at) = at {
        observe(&Progress::Scheduled { at });
        clock.sleep_until(Timestamp(at));
    }
    let result = run.drive(
        &mut journal,
        Begin::Resume,
        opts.until,
        opts.parallel,
        imaging,
    );
    interrupted::clear(&opts.db, id);
    result
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
    let mut expected = std::collections::BTreeMap::new();
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
        expected.insert(mac, m.expected.clone());
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
    config.expected = expected;
    config.image_name = format!("{}-{}", plan.uai, plan.room);
    config.profile = Some(plan.profile.clone());
    config.generalise = plan.generalize.clone();
    config.base_image_from = plan.base_image_from.clone();
    config.profile_file = Some(plan.profile_file.clone());
    if built.spec.shell == super::steps::install::Shell::Posix {
        config.master_identity = Some(super::imaging::MasterIdentity {
            root: "/".into(),
            keep: plan.keep_machine_identity.clone(),
        });
    }
    if built.spec.shell == super::steps::install::Shell::Windows
        && let Some(j) = &built.spec.join
    {
        // The deploy server provisions each PC's offline join blob with its own Samba `net`
        // and member smb.conf (`join_paths`, else Samba's default).
        config.windows_join = Some(super::imaging::WindowsJoin {
            net: vec!["net".to_string()],
            smb_conf: PathBuf::from(&j.paths.smb_conf),
            domain: j.domain.clone(),
            template: j.template.clone(),
            settings: j.windows.clone(),
        });
    }
    config.cmdline = agent_cmdline(
        &config.cmdline,
        plan.system_disk.as_ref(),
        plan.grow_last_partition,
    );
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

/// The agent's kernel command line: `base`, then the room's (else the profile's) system-disk rule
/// as `roomcast.sysdisk=` when there is one, and `roomcast.grow=last` when the profile asks to grow
/// the last partition on a larger disk (issue 23).
fn agent_cmdline(
    base: &str,
    rule: Option<&roomcast_proto::contract::DiskRule>,
    grow_last: bool,
) -> String {
    use roomcast_proto::contract::cmdline::{GROW, SYSDISK};
    let mut c = match rule {
        Some(r) => format!("{base} {SYSDISK}={}", r.to_word()),
        None => base.to_string(),
    };
    if grow_last {
        c = format!("{c} {GROW}=last");
    }
    c
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
    let saved = options::load(db, id)?;
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

/// How a run takes the campaign up: from the actions of its start, or by replaying the journal
/// (a new run in it, then what was in flight is redone).
enum Begin {
    Start(Box<State>, Vec<Action>),
    Resume,
}

/// One run of a journaled campaign: drive it with the one [`StepRunner`] until it stops, then
/// record, report and tell the observer why it stopped (every return of `start` and `resume`).
struct Run<'a> {
    db: &'a Path,
    id: i64,
    built: &'a Setup,
    saved: &'a SetupOptions,
    clock: &'a dyn Clock,
    observe: &'a (dyn Fn(&Progress) + Sync),
}

impl<'a> Run<'a> {
    fn new(
        db: &'a Path,
        id: i64,
        built: &'a Setup,
        saved: &'a SetupOptions,
        clock: &'a dyn Clock,
        observe: &'a (dyn Fn(&Progress) + Sync),
    ) -> Run<'a> {
        Run {
            db,
            id,
            built,
            saved,
            clock,
            observe,
        }
    }

    fn drive(
        &self,
        journal: &mut Journal,
        begin: Begin,
        until: Option<Timestamp>,
        parallel: usize,
        imaging: Option<&mut dyn Worker>,
    ) -> Result<Outcome, RunError> {
        let clock = self.clock;
        let past = move || until.is_some_and(|u| clock.now() >= u);
        let mut now = || clock.now();
        // A shorter borrow of the imaging worker, as long as the setup it works with.
        let imaging = imaging.map(|w| {
            w.follow(self.db, self.id);
            let short: &mut dyn Worker = &mut *w;
            short
        });
        let mut worker = StepRunner::new(&self.built.spec, imaging)
            .fetching(&self.built.fetches, &self.saved.shares)
            .observed(self.observe);
        let (state, stop) = match begin {
            Begin::Start(state, actions) => drive_until(
                journal,
                self.id,
                1,
                *state,
                actions,
                &mut worker,
                parallel,
                &mut now,
                &past,
            )?,
            Begin::Resume => {
                resume_until(journal, self.id, &mut worker, parallel, &mut now, &past)?
            }
        };
        self.finish(journal, state, stop)
    }

    fn finish(&self, journal: &Journal, state: State, stop: Stop) -> Result<Outcome, RunError> {
        let recorded = self.record(journal, &state)?;
        let (state, facts) = reports(journal, self.db, self.id, stop == Stop::Deadline)?;
        let (report_md, report_html) = reports::write(self.db, self.id, &state, &facts)?;
        let (why, allowed) = match &stop {
            Stop::AwaitingSignoff { allowed } => ("awaiting_signoff".to_string(), allowed.clone()),
            Stop::Deadline => ("deadline".to_string(), vec![]),
            Stop::Ended(phase) => (phase.word().to_string(), vec![]),
        };
        (self.observe)(&Progress::Stopped { why, allowed });
        Ok(Outcome {
            campaign: self.id,
            stop,
            state,
            report_md,
            report_html,
            recorded,
        })
    }

    /// Records every PC with a settled g or h result in the inventory (same database file as the
    /// journal); see [`crate::inventory::record`].
    fn record(&self, journal: &Journal, state: &State) -> Result<usize, RunError> {
        let events = journal.events(self.id)?;
        let timings = report::timings(events.iter().map(|r| (&r.event, r.at)));
        let run = CampaignRun {
            id: self.id,
            plan: &self.built.plan,
            mode: self.built.spec.plan.mode,
            pc_model: &self.built.pc_model,
            state,
            timings: &timings.machines,
        };
        if !record::has_results(&run) {
            return Ok(0);
        }
        let mut inv = InventoryDb::open(self.db)?;
        Ok(record::record_campaign(&mut inv, &run, self.clock.now())?)
    }
}

#[cfg(test)]
mod cmdline_tests {
    use roomcast_proto::contract::{Bus, DiskRule, cmdline};

    #[test]
    fn the_system_disk_rule_reaches_the_agents_command_line() {
        let rule = DiskRule {
            bus: Some(Bus::Nvme),
            model: Some("Samsung SSD*".into()),
            ..DiskRule::default()
        };
        let c = super::agent_cmdline("console=tty0 quiet", Some(&rule), false);
        assert_eq!(
            c,
            "console=tty0 quiet roomcast.sysdisk=bus:nvme,model:Samsung%20SSD*"
        );
        let word = cmdline::value(&c, cmdline::SYSDISK).unwrap();
        assert_eq!(DiskRule::parse(word), Ok(rule));
        assert_eq!(super::agent_cmdline("quiet", None, false), "quiet");
        // The profile's grow_last_partition (issue 23).
        let c = super::agent_cmdline("quiet", None, true);
        assert_eq!(c, "quiet roomcast.grow=last");
        assert_eq!(cmdline::value(&c, cmdline::GROW), Some("last"));
    }
}
