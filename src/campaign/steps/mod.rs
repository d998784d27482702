//! The step runners, one module per step of the procedure that runs code of ours, and
//! [`StepRunner`]: the one [`Worker`] of a campaign, where each [`Step`] is mapped to its runner.
//!
//! | step | runner |
//! |------|--------|
//! | a collect | [`collect::run`]: fetch into the store, check sizes/sha256 and licences |
//! | b master  | the imaging worker ([`crate::campaign::imaging`]): restore the base image |
//! | c install | [`install::install_on`] the master |
//! | d tests   | [`checks::run`] on the master |
//! | e signoff | none: a person, recorded by [`crate::campaign::driver::signoff`] |
//! | f capture | the imaging worker: generalise, capture, sign |
//! | g deploy  | per PC: the imaging worker's session, or [`install::install_on`] with `--software-only` |
//! | h join    | per PC: [`join::run`] (Linux); Windows: the imaging worker (unattend.xml written by the agent at the end of g) |
//!
//! A runner returns `Ok`/`Err(reason)` (or, for a, the event itself); only [`StepRunner`] turns
//! results into the engine's events and reports them to the observer.

pub mod checks;
pub mod collect;
pub mod install;
pub mod join;

use super::driver::Worker;
use super::run::Progress;
use crate::remote::ssh::{SshClient, SshConfig};
use collect::Fetch;
use install::{Shell, Software};
use join::{Domain, Paths};
use roomcast_proto::procedure::licences::{CatalogLicence, Grant};
use roomcast_proto::procedure::{DeployMode, Event, Plan, State, Step};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// An installer as step a must find it in the store.
#[derive(Debug, Clone)]
pub struct Installer {
    /// Local path in the store.
    pub path: PathBuf,
    /// Catalog file name.
    pub file: String,
    /// Catalog size in bytes.
    pub size: u64,
    /// Catalog sha256.
    pub sha256: String,
}

/// Step h's settings for Linux PCs.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    /// Domain, OU and join account.
    pub domain: Domain,
    /// Files written on the PC.
    pub paths: Paths,
    /// The join template's source ([`join::LINUX_NET_ADS`]; Windows PCs:
    /// [`crate::campaign::unattend::WINDOWS_UNATTEND`]).
    pub template: String,
    /// Windows PCs: the profile's locale and time zone for their unattend.xml.
    pub windows: crate::campaign::unattend::WindowsSettings,
}

/// Everything the runners need, built from the validated room and profile ([`super::setup`]).
#[derive(Debug, Clone)]
pub struct RoomSpec {
    /// The campaign plan.
    pub plan: Plan,
    /// SSH address of every machine (hostname -> address).
    pub addresses: BTreeMap<String, String>,
    /// SSH port (22).
    pub port: u16,
    /// SSH settings.
    pub ssh: SshConfig,
    /// Installers to check at a.
    pub installers: Vec<Installer>,
    /// Software with its catalog licence kind (a).
    pub licensed: Vec<(String, CatalogLicence)>,
    /// The profile's licences (a).
    pub grants: Vec<Grant>,
    /// Today's date `YYYY-MM-DD` (licence expiry).
    pub today: String,
    /// Software to install (c, g software-only).
    pub software: Vec<Software>,
    /// Technical tests (d).
    pub checks: Vec<checks::Check>,
    /// Shell family of the PCs.
    pub shell: Shell,
    /// Remote staging directory for installers.
    pub staging_dir: String,
    /// Step h, when the profile joins a domain.
    pub join: Option<JoinSpec>,
    /// Where per-software logs go (`<logs>/<step>/<machine>/<software>.log`).
    pub logs: PathBuf,
}

/// An SSH session to `machine` of the room.
fn connect(spec: &RoomSpec, machine: &str) -> Result<SshClient, String> {
    let addr = spec
        .addresses
        .get(machine)
        .ok_or_else(|| format!("{machine}: no address in the room"))?;
    SshClient::connect(addr, spec.port, &spec.ssh).map_err(|e| format!("{machine}: {e}"))
}

fn no_observer(_: &Progress) {}

/// The [`Worker`] of a campaign: runs each step with its runner (the table of the module doc),
/// hands b, f and image-mode g to the imaging worker it was given, and reports every start and
/// result to its observer.
pub struct StepRunner<'a> {
    spec: &'a RoomSpec,
    fetches: Option<(&'a [Fetch], &'a Path)>,
    imaging: Option<&'a mut dyn Worker>,
    observe: &'a (dyn Fn(&Progress) + Sync),
}

impl<'a> StepRunner<'a> {
    /// Runners over `spec`; `imaging` does b, f and image-mode g (without it they fail, saying so).
    /// Step a only checks the store until [`StepRunner::fetching`] says what to fetch.
    pub fn new(spec: &'a RoomSpec, imaging: Option<&'a mut dyn Worker>) -> StepRunner<'a> {
        StepRunner {
            spec,
            fetches: None,
            imaging,
            observe: &no_observer,
        }
    }

    /// Step a first fetches `fetches` into the store (`smb://` sources under `shares`).
    pub fn fetching(mut self, fetches: &'a [Fetch], shares: &'a Path) -> StepRunner<'a> {
        self.fetches = Some((fetches, shares));
        self
    }

    /// Every step's start and end, and every fetch, go to `observe`.
    pub fn observed(mut self, observe: &'a (dyn Fn(&Progress) + Sync)) -> StepRunner<'a> {
        self.observe = observe;
        self
    }

    fn image_mode(&self) -> bool {
        self.spec.plan.mode == DeployMode::Image
    }

    /// Room-level steps to their runners (and the imaging worker, used mutably: b and f are one
    /// session each).
    fn room_step(&mut self, step: Step, state: &State) -> Event {
        let spec = self.spec;
        let result = match step {
            Step::Collect => return collect::run(spec, self.fetches, self.observe),
            Step::Master | Step::Capture => match self.imaging.as_deref_mut() {
                Some(w) => return w.run_step(step, state),
                None => Err(format!(
                    "step {step} needs the imaging backend, which this run was not given"
                )),
            },
            Step::Install => install::install_on(spec, step, &spec.plan.master),
            Step::Tests => checks::run(spec),
            Step::Signoff | Step::Deploy | Step::Join => {
                Err(format!("step {step} is not a room-level step"))
            }
        };
        Event::of_step(step, result)
    }

    /// Per-machine steps (g, h) to their runners; several PCs at once, on shared references.
    fn machine_step(&self, step: Step, machine: &str, attempt: u32) -> Event {
        let result = match step {
            Step::Deploy if self.image_mode() => match self.imaging.as_deref() {
                Some(w) => return w.run_on_machine(step, machine, attempt),
                None => Err(format!(
                    "{machine}: image deploy needs the imaging backend, which this run was not given"
                )),
            },
            Step::Deploy => install::install_on(self.spec, step, machine),
            // Windows PCs: the agent wrote their unattend.xml at the end of g; the imaging
            // worker checks its record.
            Step::Join if self.spec.shell == Shell::Windows && self.image_mode() => {
                match self.imaging.as_deref() {
                    Some(w) => return w.run_on_machine(step, machine, attempt),
                    None => join::run(self.spec, machine),
                }
            }
            Step::Join => join::run(self.spec, machine),
            _ => Err(format!("step {step} does not run per machine")),
        };
        Event::of_machine(step, machine, result)
    }
}

impl Worker for StepRunner<'_> {
    fn run_step(&mut self, step: Step, state: &State) -> Event {
        (self.observe)(&Progress::StepStarted {
            step: step.letter(),
        });
        let event = self.room_step(step, state);
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
        if step == Step::Deploy
            && self.image_mode()
            && let Some(w) = self.imaging.as_deref_mut()
        {
            w.begin_batch(step, machines, state);
        }
    }

    fn end_batch(&mut self, step: Step) {
        if step == Step::Deploy
            && self.image_mode()
            && let Some(w) = self.imaging.as_deref_mut()
        {
            w.end_batch(step);
        }
    }

    fn run_on_machine(&self, step: Step, machine: &str, attempt: u32) -> Event {
        (self.observe)(&Progress::MachineStarted {
            step: step.letter(),
            machine: machine.to_string(),
            attempt,
        });
        let event = self.machine_step(step, machine, attempt);
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
