//! `roomcast campaign start` and `roomcast campaign resume`: options, the `--at`/`--until` clock
//! times, and progress (indicatif bars on a terminal, tracing logs otherwise, `--json` lines).

use super::exit;
use crate::campaign::driver::Stop;
use crate::campaign::imaging::{ImagingWorker, PxeBoot};
use crate::campaign::run::{self, Outcome, Progress, ResumeOptions, RunError, StartOptions};
use crate::campaign::setup::SetupOptions;
use crate::clock::{Clock, SystemClock};
use crate::model::Date;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use roomcast_proto::procedure::{Phase, Timestamp};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The imaging backend (steps b, f and image-mode g) on the room network: PXE, multicast, capture.
/// Without `--store` and `--signer-key`, those steps fail with a reason saying so.
#[derive(Debug, Args)]
pub struct ImagingArgs {
    /// The image store (base images; captured images go there).
    #[arg(long, requires = "signer_key")]
    pub store: Option<PathBuf>,
    /// The deploy server's signing key (captured images are signed with it).
    #[arg(long, requires = "store")]
    pub signer_key: Option<PathBuf>,
    /// Boot root served over TFTP/HTTP (iPXE, kernel, initramfs; see `roomcast bootenv`).
    #[arg(long)]
    pub boot_dir: Option<PathBuf>,
    /// Command run on the master after its generalise command to restart it into network boot.
    #[arg(long)]
    pub reboot: Option<String>,
}

/// How roomcast reaches the room's PCs (SSH), its secrets and the join: what `campaign start` and
/// `repair` share.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// SSH user on the PCs.
    #[arg(long, default_value = "root")]
    pub ssh_user: String,
    /// SSH private key (unencrypted OpenSSH).
    #[arg(
        long,
        env = "ROOMCAST_SSH_KEY",
        default_value = "/root/.ssh/id_ed25519"
    )]
    pub ssh_key: PathBuf,
    /// Pinned host keys (default: `known_hosts` next to the journal).
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// SSH port of the PCs.
    #[arg(long, default_value_t = 22)]
    pub port: u16,
    /// Seconds to connect to a PC.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
    /// Secrets file (`NAME=value` lines, mode 0600); `ROOMCAST_SECRET_<NAME>` variables come first.
    #[arg(long, env = "ROOMCAST_SECRETS")]
    pub secrets: Option<PathBuf>,
    /// Domain controller for the Linux joins (default: found through DNS).
    #[arg(long)]
    pub dc: Option<String>,
    /// smb.conf the Linux join writes on each PC (default /etc/samba/smb.conf).
    #[arg(long, requires = "join_state_dir")]
    pub join_smb_conf: Option<String>,
    /// Samba state directory on each PC (default /var/lib/samba).
    #[arg(long, requires = "join_smb_conf")]
    pub join_state_dir: Option<String>,
}

impl RemoteArgs {
    /// The setup options of `room` with these settings; files default next to the journal `db`.
    pub fn setup(self, room: PathBuf, db: &Path) -> SetupOptions {
        SetupOptions {
            room_file: room,
            installers: beside(db, "installers"),
            shares: PathBuf::from("/mnt/roomcast"),
            dir: PathBuf::new(),
            ssh_user: self.ssh_user,
            ssh_key: self.ssh_key,
            known_hosts: self
                .known_hosts
                .unwrap_or_else(|| beside(db, "known_hosts")),
            port: self.port,
            connect_timeout_secs: self.connect_timeout,
            software_only: false,
            retries: None,
            staging_dir: None,
            join_paths: self.join_smb_conf.zip(self.join_state_dir),
            domain_controller: self.dc,
            secrets: self.secrets,
        }
    }
}

/// Arguments of `roomcast campaign start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The room file, e.g. rooms/0330107X/B204.yaml.
    pub room: PathBuf,
    /// Start at this local time (HH:MM, the next occurrence), e.g. 22:00.
    #[arg(long, value_parser = parse_hhmm)]
    pub at: Option<(u32, u32)>,
    /// Start no new step or PC after this local time (HH:MM, next occurrence after the start).
    #[arg(long, value_parser = parse_hhmm)]
    pub until: Option<(u32, u32)>,
    /// One JSON object per line on stdout (for tools), instead of bars or logs.
    #[arg(long)]
    pub json: bool,
    /// Push the software to the running PCs (a then g), without re-imaging.
    #[arg(long)]
    pub software_only: bool,
    /// Local installer store (default: `installers/` next to the journal).
    #[arg(long)]
    pub installers: Option<PathBuf>,
    /// Where `smb://server/share/...` sources are mounted: `<DIR>/server/share/...`.
    #[arg(long, default_value = "/mnt/roomcast")]
    pub shares: PathBuf,
    /// SSH to the PCs, secrets, the join.
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Retries of a failed per-machine step (g, h) before that PC is declared failed.
    #[arg(long)]
    pub retries: Option<u32>,
    /// PCs worked on at once at g and h.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// Remote directory installers are uploaded to (default: the OS's).
    #[arg(long)]
    pub staging_dir: Option<String>,
    /// The date licences are checked against, YYYY-MM-DD (default: today, UTC).
    #[arg(long, value_parser = super::validate::parse_date)]
    pub today: Option<Date>,
    /// Days the per-PC logs of finished campaigns are kept (the journal and reports stay).
    #[arg(long, default_value_t = crate::campaign::run::retention::DEFAULT_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub log_retention_days: u32,
    /// Imaging backend.
    #[command(flatten)]
    pub imaging: ImagingArgs,
}

/// Arguments of `roomcast campaign resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Campaign id (default: the latest of the journal).
    pub id: Option<i64>,
    /// Every campaign whose run a reboot or crash cut short (at boot: `roomcast-resume.service`),
    /// one after another, each with the `--at`/`--until`/`--parallel` it was started with.
    #[arg(long, conflicts_with_all = ["id", "until"])]
    pub interrupted: bool,
    /// Start no new step or PC after this local time (HH:MM, next occurrence).
    #[arg(long, value_parser = parse_hhmm)]
    pub until: Option<(u32, u32)>,
    /// One JSON object per line on stdout.
    #[arg(long)]
    pub json: bool,
    /// PCs worked on at once at g and h.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// The date licences are checked against, YYYY-MM-DD (default: today, UTC).
    #[arg(long, value_parser = super::validate::parse_date)]
    pub today: Option<Date>,
    /// Imaging backend (give the same as at `start`).
    #[command(flatten)]
    pub imaging: ImagingArgs,
}

/// `HH:MM` (24 h).
pub fn parse_hhmm(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}` is not a time like 22:00");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok((h, m))
}

/// The first time strictly after `after` (epoch seconds) whose local wall clock reads `hh:mm`.
pub fn next_local(hh: u32, mm: u32, after: i64) -> i64 {
    // SAFETY: localtime_r and mktime only read and fill the `tm` we own.
    unsafe {
        let t: libc::time_t = after as libc::time_t;
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm.tm_hour = hh as i32;
        tm.tm_min = mm as i32;
        tm.tm_sec = 0;
        tm.tm_isdst = -1;
        let mut at = libc::mktime(&mut tm) as i64;
        if at <= after {
            tm.tm_mday += 1;
            tm.tm_hour = hh as i32;
            tm.tm_min = mm as i32;
            tm.tm_isdst = -1;
            at = libc::mktime(&mut tm) as i64;
        }
        at
    }
}

pub(crate) fn beside(db: &Path, name: &str) -> PathBuf {
    db.parent().unwrap_or(Path::new(".")).join(name)
}

/// Runs `roomcast campaign start`.
pub fn start(db: &Path, a: StartArgs) -> u8 {
    let clock = SystemClock;
    let pruned = run::retention::prune_logs(db, a.log_retention_days, std::time::SystemTime::now());
    if pruned > 0 {
        eprintln!(
            "removed the logs of {pruned} campaign(s) older than {} days",
            a.log_retention_days
        );
    }
    let now = clock.now().0;
    let at = a.at.map(|(h, m)| Timestamp(next_local(h, m, now)));
    let until = a
        .until
        .map(|(h, m)| Timestamp(next_local(h, m, at.map_or(now, |t| t.0))));
    let opts = StartOptions {
        db: db.to_path_buf(),
        setup: SetupOptions {
            installers: a.installers.unwrap_or_else(|| beside(db, "installers")),
            shares: a.shares,
            software_only: a.software_only,
            retries: a.retries,
            staging_dir: a.staging_dir,
            ..a.remote.setup(a.room, db)
        },
        at,
        until,
        parallel: a.parallel.max(1),
        today: a.today,
    };
    let imaging = match &a.imaging.store {
        None => None,
        Some(_) => match run::setup_for(&opts, &clock) {
            Ok(built) => Some(imaging_worker(&a.imaging, &built, db)),
            Err(e) => return conclude(Err(e), a.json),
        },
    };
    drive(imaging, a.json, |imaging, show| {
        run::start(&opts, &clock, imaging, show)
    })
}

/// Runs `roomcast campaign resume --interrupted`: the worst exit code of the campaigns resumed.
fn resume_interrupted(db: &Path, a: ResumeArgs) -> u8 {
    let found = run::interrupted::list(db);
    if found.is_empty() {
        eprintln!(
            "no campaign of {} was cut short: nothing to resume",
            db.display()
        );
        return exit::OK;
    }
    let mut worst = exit::OK;
    for (id, marker) in found {
        eprintln!("campaign {id}: its run was cut short (server restart or crash); resuming it");
        let one = ResumeArgs {
            id: Some(id),
            interrupted: false,
            until: None,
            json: a.json,
            parallel: marker.parallel,
            today: a.today,
            imaging: ImagingArgs {
                store: a.imaging.store.clone(),
                signer_key: a.imaging.signer_key.clone(),
                boot_dir: a.imaging.boot_dir.clone(),
                reboot: a.imaging.reboot.clone(),
            },
        };
        let until = marker.until.map(Timestamp);
        worst = worst.max(resume_with(db, one, until));
    }
    worst
}

/// Runs `roomcast campaign resume`.
pub fn resume(db: &Path, a: ResumeArgs) -> u8 {
    if a.interrupted {
        return resume_interrupted(db, a);
    }
    let clock = SystemClock;
    let until = a
        .until
        .map(|(h, m)| Timestamp(next_local(h, m, clock.now().0)));
    resume_with(db, a, until)
}

fn resume_with(db: &Path, a: ResumeArgs, until: Option<Timestamp>) -> u8 {
    let clock = SystemClock;
    let opts = ResumeOptions {
        db: db.to_path_buf(),
        campaign: a.id,
        until,
        parallel: a.parallel.max(1),
        today: a.today,
    };
    let imaging = match &a.imaging.store {
        None => None,
        Some(_) => {
            let id = match opts.campaign {
                Some(id) => Ok(id),
                None => crate::campaign::journal::Journal::open(db)
                    .and_then(|j| j.latest())
                    .map_err(|e| e.to_string())
                    .and_then(|id| id.ok_or_else(|| "no campaign in the journal".to_string())),
            };
            match id.and_then(|id| {
                run::saved_setup(db, id, opts.today.unwrap_or_else(|| clock.today()))
                    .map_err(|e| e.to_string())
            }) {
                Ok(built) => Some(imaging_worker(&a.imaging, &built, db)),
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::USAGE_OR_IO;
                }
            }
        }
    };
    drive(imaging, a.json, |imaging, show| {
        run::resume(&opts, &clock, imaging, show)
    })
}

/// The imaging worker of a real room: PXE boot on the room interface.
fn imaging_worker(
    a: &ImagingArgs,
    built: &crate::campaign::setup::Setup,
    db: &Path,
) -> Result<ImagingWorker, String> {
    let (Some(store), Some(key)) = (&a.store, &a.signer_key) else {
        return Err("--store and --signer-key go together".into());
    };
    let mut config = run::imaging_config(built, store, key, &run::imaging_dir(db))?;
    config.boot_dir = a.boot_dir.clone();
    config.reboot = a.reboot.clone();
    config.inventory = Some(db.to_path_buf());
    let boot = PxeBoot {
        secure_boot: built.plan.secure_boot,
        ..PxeBoot::default()
    };
    Ok(ImagingWorker::new(config, Box::new(boot)))
}

/// Runs a campaign (`go`: start or resume) with its imaging worker, if the command set one up (a
/// worker that could not be set up ends the command), and the terminal display; then concludes.
fn drive(
    imaging: Option<Result<ImagingWorker, String>>,
    json: bool,
    go: impl FnOnce(
        Option<&mut dyn crate::campaign::driver::Worker>,
        &(dyn Fn(&Progress) + Sync),
    ) -> Result<Outcome, RunError>,
) -> u8 {
    let mut imaging = match imaging {
        Some(Ok(w)) => Some(w),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return exit::USAGE_OR_IO;
        }
        None => None,
    };
    let display = Display::new(json);
    let result = go(
        imaging
            .as_mut()
            .map(|w| w as &mut dyn crate::campaign::driver::Worker),
        &|p| display.show(p),
    );
    display.done();
    conclude(result, json)
}

fn conclude(result: Result<Outcome, RunError>, json: bool) -> u8 {
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            if json {
                let line = serde_json::json!({"event": "error", "message": e.to_string()});
                println!("{line}");
            }
            eprintln!("error: {e}");
            return match e {
                RunError::Setup(crate::campaign::setup::SetupError::Room(
                    crate::model::checked::RoomRefused::Load(_),
                )) => exit::USAGE_OR_IO,
                RunError::Setup(crate::campaign::setup::SetupError::Room(_))
                | RunError::Setup(crate::campaign::setup::SetupError::Field { .. })
                | RunError::Rejected(_)
                | RunError::PlanChanged { .. }
                | RunError::Unfinished { .. } => exit::FAILURE,
                _ => exit::USAGE_OR_IO,
            };
        }
    };
    let id = outcome.campaign;
    let code = match &outcome.stop {
        Stop::AwaitingSignoff { allowed } => {
            eprintln!(
                "campaign {id}: waiting for the teachers' sign-off (step e) by one of: {}.\n\
                 Record it with `roomcast campaign signoff --id {id} --by NAME --verdict ok|rejected`, \
                 then run `roomcast campaign resume {id}`; or give each teacher a link of the web \
                 console: `roomcast console links --config FILE --id {id}` (docs/CONSOLE.md).",
                allowed.join(", ")
            );
            exit::OK
        }
        Stop::Deadline => {
            eprintln!(
                "campaign {id}: stopped at the --until time; what was not done is marked so in the \
                 report. `roomcast campaign resume {id}` goes on."
            );
            exit::OK
        }
        Stop::Ended(Phase::Finished) => {
            let failed: Vec<&String> = outcome
                .state
                .machines
                .iter()
                .filter(|(_, steps)| {
                    steps
                        .values()
                        .any(|s| matches!(s, roomcast_proto::procedure::Status::Failed { .. }))
                })
                .map(|(m, _)| m)
                .collect();
            if failed.is_empty() {
                eprintln!("campaign {id}: finished");
                exit::OK
            } else {
                eprintln!(
                    "campaign {id}: finished; {} PC(s) failed: {}",
                    failed.len(),
                    failed
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                exit::FAILURE
            }
        }
        Stop::Ended(phase) => {
            let why = phase.to_string();
            eprintln!("campaign {id}: {why}");
            if why.contains("imaging backend") {
                eprintln!(
                    "hint: steps b, f and image deploys need `--store DIR --signer-key FILE` \
                     (or `--software-only` to push software to running PCs)"
                );
            }
            exit::FAILURE
        }
    };
    eprintln!(
        "report: {} ({})",
        outcome.report_md.display(),
        outcome.report_html.display()
    );
    code
}

/// How progress is shown: JSON lines, bars on a terminal, or tracing logs.
enum Display {
    Json,
    Bars {
        multi: MultiProgress,
        steps: ProgressBar,
        machines: Mutex<BTreeMap<char, ProgressBar>>,
        total: Mutex<usize>,
    },
    Logs,
}

impl Display {
    fn new(json: bool) -> Display {
        if json {
            return Display::Json;
        }
        if std::io::stderr().is_terminal() {
            let multi = MultiProgress::new();
            let steps = multi.add(ProgressBar::new(8));
            steps.set_style(
                ProgressStyle::with_template("steps    [{bar:30}] {pos}/{len} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            return Display::Bars {
                multi,
                steps,
                machines: Mutex::new(BTreeMap::new()),
                total: Mutex::new(0),
            };
        }
        super::room::init_tracing();
        Display::Logs
    }

    fn show(&self, p: &Progress) {
        match self {
            Display::Json => {
                if let Ok(line) = serde_json::to_string(p) {
                    println!("{line}");
                }
            }
            Display::Logs => log(p),
            Display::Bars {
                multi,
                steps,
                machines,
                total,
            } => match p {
                Progress::Journaled {
                    campaign,
                    room,
                    machines: n,
                } => {
                    *total.lock().expect("not poisoned") = *n;
                    steps.set_message(format!("campaign {campaign}, room {room}, {n} PC(s)"));
                }
                Progress::StepStarted { step } => steps.set_message(format!("{step} running")),
                Progress::StepEnded { step, result, .. } => {
                    steps.inc(1);
                    steps.set_message(format!("{step} {result}"));
                }
                Progress::MachineStarted { step, .. } => {
                    let mut bars = machines.lock().expect("not poisoned");
                    bars.entry(*step).or_insert_with(|| {
                        let n = *total.lock().expect("not poisoned") as u64;
                        let b = multi.add(ProgressBar::new(n));
                        b.set_style(
                            ProgressStyle::with_template(
                                "{prefix} PCs [{bar:30}] {pos}/{len} {msg}",
                            )
                            .expect("valid template")
                            .progress_chars("=> "),
                        );
                        b.set_prefix(step.to_string());
                        steps.inc(1);
                        b
                    });
                }
                Progress::MachineEnded {
                    step,
                    machine,
                    result,
                    ..
                } => {
                    if let Some(b) = machines.lock().expect("not poisoned").get(step) {
                        if result == "ok" {
                            b.inc(1);
                        }
                        b.set_message(format!("{machine} {result}"));
                    }
                }
                other => {
                    let _ = multi.println(format!("{other:?}"));
                }
            },
        }
    }

    fn done(&self) {
        if let Display::Bars {
            steps, machines, ..
        } = self
        {
            steps.finish();
            for b in machines.lock().expect("not poisoned").values() {
                b.finish();
            }
        }
    }
}

fn log(p: &Progress) {
    match p {
        Progress::StepEnded {
            step,
            result,
            detail,
        } if result != "ok" => {
            tracing::warn!(step = %step, result = %result, detail = detail.as_deref().unwrap_or(""), "step ended");
        }
        Progress::MachineEnded {
            step,
            machine,
            result,
            detail,
        } if result != "ok" => {
            tracing::warn!(step = %step, machine = %machine, detail = detail.as_deref().unwrap_or(""), "machine failed");
        }
        other => {
            tracing::info!(progress = %serde_json::to_string(other).unwrap_or_default(), "campaign")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_times_parse_and_fall_on_the_next_matching_local_minute() {
        assert_eq!(parse_hhmm("22:00"), Ok((22, 0)));
        assert_eq!(parse_hhmm("6:30"), Ok((6, 30)));
        assert!(parse_hhmm("24:00").is_err());
        assert!(parse_hhmm("22h").is_err());
        let after = 1_795_874_709; // 2026-11-28 14:05:09 UTC
        for (h, m) in [(22, 0), (6, 30), (14, 5)] {
            let at = next_local(h, m, after);
            assert!(at > after && at - after <= 25 * 3600, "{h}:{m} -> {at}");
            // SAFETY: localtime_r fills the tm we own.
            let tm = unsafe {
                let mut tm: libc::tm = std::mem::zeroed();
                let t = at as libc::time_t;
                libc::localtime_r(&t, &mut tm);
                tm
            };
            assert_eq!((tm.tm_hour as u32, tm.tm_min as u32, tm.tm_sec), (h, m, 0));
        }
    }
}
