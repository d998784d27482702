//! The values the campaign state machine works on: the plan it was started with, its state, the events
//! fed into it and the actions it asks for. All are plain data (serde), so the journal can store events
//! and a report can be rendered from a state without the engine.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub use crate::time::Timestamp;

/// One step of the region's procedure (framework section 7.5.4), in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Step {
    /// a: collect installers and licences; may refuse the campaign before any PC is touched.
    Collect,
    /// b: restore the base image on the master PC.
    Master,
    /// c: install the profile's software on the master over SSH.
    Install,
    /// d: the profile's technical tests on the master.
    Tests,
    /// e: teachers' sign-off, a human gate.
    Signoff,
    /// f: generalise and capture the master's disk as an image.
    Capture,
    /// g: deploy the image (or only the software) on every PC of the room; per machine.
    Deploy,
    /// h: rename and join every PC to the AD domain; per machine.
    Join,
}

impl Step {
    /// Every step, in procedure order.
    pub const ALL: [Step; 8] = [
        Step::Collect,
        Step::Master,
        Step::Install,
        Step::Tests,
        Step::Signoff,
        Step::Capture,
        Step::Deploy,
        Step::Join,
    ];

    /// The framework's letter for this step (`a`..`h`), used in logs and reports.
    pub fn letter(self) -> char {
        match self {
            Step::Collect => 'a',
            Step::Master => 'b',
            Step::Install => 'c',
            Step::Tests => 'd',
            Step::Signoff => 'e',
            Step::Capture => 'f',
            Step::Deploy => 'g',
            Step::Join => 'h',
        }
    }

    /// The step of a letter `a`..`h`.
    pub fn from_letter(c: char) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.letter() == c)
    }

    /// Steps g and h run once per PC and keep a result per machine; the others run once for the room.
    pub fn is_per_machine(self) -> bool {
        matches!(self, Step::Deploy | Step::Join)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Step::Collect => "collect",
            Step::Master => "master",
            Step::Install => "install",
            Step::Tests => "tests",
            Step::Signoff => "signoff",
            Step::Capture => "capture",
            Step::Deploy => "deploy",
            Step::Join => "join",
        };
        write!(f, "{}:{}", self.letter(), name)
    }
}

/// How step g reaches the PCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeployMode {
    /// The full procedure: b–f build and capture a master image, g re-images every PC, h joins them.
    Image,
    /// `--software-only` (télé-déploiement): a then g pushes the installers to the running PCs over SSH,
    /// without re-imaging; b–f and h are skipped because the PCs keep their system and domain membership.
    SoftwareOnly,
}

/// What a campaign was started with. Taken from the validated room and profile by the caller; kept in
/// the `Started` event so a replay needs nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The room's id (for messages).
    pub room: String,
    /// Hostnames of every PC of the room, in room-file order.
    pub machines: Vec<String>,
    /// The master PC's hostname (steps b–f).
    pub master: String,
    /// Image or software-only deploy.
    pub mode: DeployMode,
    /// How many times a failed per-machine step is tried again before that PC is declared failed.
    pub retries: u32,
    /// Whether step e waits for a person; when false the profile explicitly waived it and it is recorded
    /// as skipped (never as passed).
    pub signoff_required: bool,
    /// Who may sign off step e (exact names from the profile).
    pub signoff_allowed: Vec<String>,
}

impl Plan {
    /// Whether `step` is part of this plan (software-only campaigns skip b–f and h; a waived sign-off
    /// skips e).
    pub fn includes(&self, step: Step) -> bool {
        match self.mode {
            DeployMode::SoftwareOnly => matches!(step, Step::Collect | Step::Deploy),
            DeployMode::Image => step != Step::Signoff || self.signoff_required,
        }
    }

    /// The first step of this plan after `step`, if any.
    pub fn next_after(&self, step: Step) -> Option<Step> {
        Step::ALL
            .iter()
            .copied()
            .filter(|s| *s > step)
            .find(|s| self.includes(*s))
    }
}

/// Why step a refuses the campaign. Refusals happen before any PC is touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// Licences cover fewer seats than the room has PCs.
    LicenceShortfall {
        /// Catalog id of the software.
        software: String,
        /// Seats the licences cover.
        seats: u32,
        /// Seats the room needs (its number of PCs).
        needed: u32,
    },
    /// A non-free software has no licence nor written authorisation in the profile.
    NoLicence {
        /// Catalog id of the software.
        software: String,
    },
    /// An installer's sha256 (or size) differs from the catalog.
    InstallerMismatch {
        /// Installer file name from the catalog.
        file: String,
        /// What the catalog says.
        expected: String,
        /// What was fetched.
        actual: String,
    },
    /// An installer could not be fetched.
    InstallerUnavailable {
        /// Installer file name from the catalog.
        file: String,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::LicenceShortfall {
                software,
                seats,
                needed,
            } => write!(
                f,
                "licence shortfall for {software}: {seats} seat(s) covered, the room needs {needed}"
            ),
            Refusal::NoLicence { software } => {
                write!(f, "no licence or authorisation for {software}")
            }
            Refusal::InstallerMismatch {
                file,
                expected,
                actual,
            } => write!(
                f,
                "installer {file}: expected sha256 {expected}, got {actual}"
            ),
            Refusal::InstallerUnavailable { file, reason } => {
                write!(f, "installer {file} unavailable: {reason}")
            }
        }
    }
}

/// The teachers' verdict at step e.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The master is fit for the room: go on to capture.
    Ok,
    /// Something is missing or wrong: back to step c.
    Rejected,
}

/// A recorded sign-off (accepted ones only; a refused one leaves no trace in the state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signoff {
    /// Who signed, as allowed by the profile.
    pub by: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Free text.
    pub comment: Option<String>,
    /// When it was recorded.
    pub at: Timestamp,
}

/// Where a step (for the room) or a machine (for a per-machine step) stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Not started.
    Pending,
    /// Asked for and not answered yet; `attempt` counts from 1.
    Running {
        /// Which attempt is under way.
        attempt: u32,
        /// When it was asked for.
        since: Timestamp,
    },
    /// Waiting for a person (step e only).
    Waiting {
        /// Since when.
        since: Timestamp,
    },
    /// Done and good.
    Succeeded {
        /// When.
        at: Timestamp,
        /// How many attempts it took.
        attempts: u32,
    },
    /// Failed for good (retries exhausted).
    Failed {
        /// When.
        at: Timestamp,
        /// The last attempt's reason.
        reason: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// Not part of this plan, or not reached because an earlier step failed for this machine.
    Skipped {
        /// Why.
        reason: String,
    },
}

impl Status {
    /// Succeeded, failed or skipped: nothing more will happen here.
    pub fn is_settled(&self) -> bool {
        matches!(
            self,
            Status::Succeeded { .. } | Status::Failed { .. } | Status::Skipped { .. }
        )
    }
}

/// Where the campaign as a whole stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Created, `Started` not yet received.
    New,
    /// Working on this step.
    At(Step),
    /// Every step ran; some PCs may have failed (see the per-machine results).
    Finished,
    /// Step a refused the campaign; no PC was touched.
    Refused(Vec<Refusal>),
    /// A room-level step failed, or every PC failed a per-machine step.
    Failed {
        /// The step.
        step: Step,
        /// Why.
        reason: String,
    },
    /// Stopped by a person.
    Aborted {
        /// Who.
        by: String,
    },
}

impl Phase {
    /// No event will change the campaign any more (except nothing: terminal).
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Phase::New | Phase::At(_))
    }

    /// One word for the phase (JSON, logs): `new`, `running`, `finished`, `refused`, `failed`,
    /// `aborted`. [`Phase`]'s `Display` is the sentence for people.
    pub fn word(&self) -> &'static str {
        match self {
            Phase::New => "new",
            Phase::At(_) => "running",
            Phase::Finished => "finished",
            Phase::Refused(_) => "refused",
            Phase::Failed { .. } => "failed",
            Phase::Aborted { .. } => "aborted",
        }
    }
}

/// The phase as reports and the command line say it, e.g. `in progress, at e:signoff`,
/// `failed at c:install: PC01: …`.
impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::New => f.write_str("not started"),
            Phase::At(step) => write!(f, "in progress, at {step}"),
            Phase::Finished => f.write_str("finished"),
            Phase::Refused(r) => {
                f.write_str("refused at step a, no PC touched: ")?;
                for (i, refusal) in r.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{refusal}")?;
                }
                Ok(())
            }
            Phase::Failed { step, reason } => write!(f, "failed at {step}: {reason}"),
            Phase::Aborted { by } => write!(f, "aborted by {by}"),
        }
    }
}

/// The whole campaign state. Rebuilt exactly by replaying the journal's events through
/// [`crate::procedure::transition`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The plan, once started.
    pub plan: Option<Plan>,
    /// Where the campaign stands.
    pub phase: Phase,
    /// Room-level status of each step (for g and h: a summary, the detail is in `machines`).
    pub steps: BTreeMap<Step, Status>,
    /// Per-machine status of steps g and h: hostname -> step -> status.
    pub machines: BTreeMap<String, BTreeMap<Step, Status>>,
    /// Accepted sign-offs, oldest first (a rejected verdict stays here as history).
    pub signoffs: Vec<Signoff>,
    /// How many times step c was entered (1 + number of rejected sign-offs).
    pub install_rounds: u32,
    /// When the campaign started.
    pub started_at: Option<Timestamp>,
    /// When it reached a terminal phase.
    pub ended_at: Option<Timestamp>,
    /// The image step f captured (hex image id): what image-mode g deploys, and nothing else.
    #[serde(default)]
    pub image: Option<String>,
}

impl Default for State {
    fn default() -> Self {
        State {
            plan: None,
            phase: Phase::New,
            steps: BTreeMap::new(),
            machines: BTreeMap::new(),
            signoffs: Vec::new(),
            install_rounds: 0,
            started_at: None,
            ended_at: None,
            image: None,
        }
    }
}

impl State {
    /// Status of a per-machine step on one machine (`Pending` when unknown).
    pub fn machine_status(&self, machine: &str, step: Step) -> Status {
        self.machines
            .get(machine)
            .and_then(|m| m.get(&step))
            .cloned()
            .unwrap_or(Status::Pending)
    }

    /// Room-level status of a step (`Pending` when unknown).
    pub fn step_status(&self, step: Step) -> Status {
        self.steps.get(&step).cloned().unwrap_or(Status::Pending)
    }
}

/// Something that happened, fed into the engine. The journal stores each with its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The technician started the campaign.
    Started(Plan),
    /// The orchestrator restarted after a stop or a crash: re-ask for whatever was in flight.
    Resumed,
    /// A room-level step (a, b, c, d, f) succeeded.
    StepSucceeded {
        /// Which.
        step: Step,
    },
    /// A room-level step failed: the campaign stops there.
    StepFailed {
        /// Which.
        step: Step,
        /// Why (names the machine/file/software).
        reason: String,
    },
    /// Step f succeeded and produced this image (hex image id): journaled so that g deploys exactly
    /// the image this campaign captured, also after a resume.
    ImageCaptured {
        /// The signed image's id (sha256 of its manifest), hex.
        image: String,
    },
    /// Step a found reasons to refuse the campaign.
    Refused(Vec<Refusal>),
    /// Someone recorded a sign-off at step e.
    Signoff {
        /// Who.
        by: String,
        /// Verdict.
        verdict: Verdict,
        /// Free text.
        comment: Option<String>,
    },
    /// A per-machine step succeeded on one PC.
    MachineSucceeded {
        /// g or h.
        step: Step,
        /// Hostname.
        machine: String,
    },
    /// A per-machine step failed on one PC (this attempt).
    MachineFailed {
        /// g or h.
        step: Step,
        /// Hostname.
        machine: String,
        /// Why.
        reason: String,
    },
    /// A person stopped the campaign.
    Aborted {
        /// Who.
        by: String,
    },
}

impl Event {
    /// The result of a room-level step: `StepSucceeded`, or `StepFailed` with the reason.
    pub fn of_step(step: Step, result: Result<(), String>) -> Event {
        match result {
            Ok(()) => Event::StepSucceeded { step },
            Err(reason) => Event::StepFailed { step, reason },
        }
    }

    /// The result of a per-machine step on `machine`: `MachineSucceeded`, or `MachineFailed` with
    /// the reason.
    pub fn of_machine(step: Step, machine: &str, result: Result<(), String>) -> Event {
        let machine = machine.to_string();
        match result {
            Ok(()) => Event::MachineSucceeded { step, machine },
            Err(reason) => Event::MachineFailed {
                step,
                machine,
                reason,
            },
        }
    }
}

/// What the engine asks the orchestrator to do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Run a room-level step (a, b, c, d, f), then feed back `StepSucceeded` / `StepFailed` (or
    /// `Refused` for a).
    RunStep {
        /// Which.
        step: Step,
    },
    /// Run a per-machine step on one PC, then feed back `MachineSucceeded` / `MachineFailed`.
    RunOnMachine {
        /// g or h.
        step: Step,
        /// Hostname.
        machine: String,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// Wait for a person's sign-off (step e); tell the technician who may give it.
    AwaitSignoff {
        /// Names the profile allows.
        allowed: Vec<String>,
    },
    /// The campaign reached a terminal phase: record it (inventory, report).
    Finish,
    /// The event did not apply and changed nothing; the orchestrator shows the reason (e.g. a sign-off
    /// by someone the profile does not allow).
    Rejected {
        /// Why, in words for the technician.
        reason: String,
    },
}
