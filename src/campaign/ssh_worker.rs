//! A [`Worker`] that does steps a, c, d, g `--software-only` and h (Linux) with the real runners over
//! SSH. Steps b, f and g with imaging are delegated to an imaging worker supplied by the caller (the
//! deploy path of the store/multicast/boot modules); without one they fail with a clear reason.

use super::checks::{Check, failure_summary, run_checks};
use super::collect::verify_installer;
use super::driver::Worker;
use super::install::{Outcome, Shell, Software, Target, install_all, write_logs};
use super::join::{Domain, Paths, join_linux};
use crate::remote::ssh::{SshClient, SshConfig};
use roomcast_proto::procedure::licences::{CatalogLicence, Grant, check_licences};
use roomcast_proto::procedure::{DeployMode, Event, Plan, State, Step};
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    /// The join template's source (normally [`super::join::LINUX_NET_ADS`]).
    pub template: String,
}

/// Everything the SSH worker needs, built by the orchestrator from the validated room and profile.
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
    pub checks: Vec<Check>,
    /// Shell family of the PCs.
    pub shell: Shell,
    /// Remote staging directory for installers.
    pub staging_dir: String,
    /// Step h, when the profile joins a domain.
    pub join: Option<JoinSpec>,
    /// Where per-software logs go (`<logs>/<step>/<machine>/<software>.log`).
    pub logs: PathBuf,
}

/// The worker.
pub struct SshWorker<'a> {
    spec: &'a RoomSpec,
    imaging: Option<&'a mut dyn Worker>,
}

impl<'a> SshWorker<'a> {
    /// A worker over `spec`; `imaging` does b, f and image-mode g.
    pub fn new(spec: &'a RoomSpec, imaging: Option<&'a mut dyn Worker>) -> SshWorker<'a> {
        SshWorker { spec, imaging }
    }

    fn connect(&self, machine: &str) -> Result<SshClient, String> {
        let addr = self
            .spec
            .addresses
            .get(machine)
            .ok_or_else(|| format!("{machine}: no address in the room"))?;
        SshClient::connect(addr, self.spec.port, &self.spec.ssh)
            .map_err(|e| format!("{machine}: {e}"))
    }

    /// Installs the profile's software on `machine`; `Err` names every failed software.
    fn install_on(&self, step: Step, machine: &str) -> Result<(), String> {
        let mut remote = self.connect(machine)?;
        let target = Target {
            hostname: machine.to_string(),
            shell: self.spec.shell,
            staging_dir: self.spec.staging_dir.clone(),
        };
        let reports = install_all(&mut remote, &target, &self.spec.software)
            .map_err(|e| format!("{machine}: {e}"))?;
        let dir = self.spec.logs.join(step.letter().to_string()).join(machine);
        write_logs(&dir, &reports).map_err(|e| format!("{}: {e}", dir.display()))?;
        let failed: Vec<String> = reports
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Failed(why) => Some(format!("{}@{}: {why}", r.id, r.version)),
                _ => None,
            })
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("{machine}: {}", failed.join("; ")))
        }
    }

    fn delegate_step(&mut self, step: Step, state: &State) -> Event {
        match self.imaging.as_deref_mut() {
            Some(w) => w.run_step(step, state),
            None => Event::StepFailed {
                step,
                reason: format!(
                    "step {step} needs the imaging backend, which this run was not given"
                ),
            },
        }
    }
}

impl Worker for SshWorker<'_> {
    fn run_step(&mut self, step: Step, state: &State) -> Event {
        let spec = self.spec;
        let result = match step {
            Step::Collect => {
                let mut refusals: Vec<_> = spec
                    .installers
                    .iter()
                    .filter_map(|i| verify_installer(&i.path, &i.file, i.size, &i.sha256))
                    .collect();
                refusals.extend(check_licences(
                    &spec.licensed,
                    &spec.grants,
                    spec.plan.machines.len() as u32,
                    &spec.today,
                ));
                if !refusals.is_empty() {
                    return Event::Refused(refusals);
                }
                Ok(())
            }
            Step::Master | Step::Capture => return self.delegate_step(step, state),
            Step::Install => self.install_on(step, &spec.plan.master),
            Step::Tests => match self.connect(&spec.plan.master) {
                Err(e) => Err(e),
                Ok(mut remote) => match run_checks(&mut remote, &spec.checks) {
                    Err(e) => Err(e.to_string()),
                    Ok(results) => failure_summary(&results).map_or(Ok(()), Err),
                },
            },
            Step::Signoff | Step::Deploy | Step::Join => {
                Err(format!("step {step} is not a room-level step"))
            }
        };
        match result {
            Ok(()) => Event::StepSucceeded { step },
            Err(reason) => Event::StepFailed { step, reason },
        }
    }

    fn begin_batch(&mut self, step: Step, machines: &[(String, u32)], state: &State) {
        if step == Step::Deploy
            && self.spec.plan.mode == DeployMode::Image
            && let Some(w) = self.imaging.as_deref_mut()
        {
            w.begin_batch(step, machines, state);
        }
    }

    fn end_batch(&mut self, step: Step) {
        if step == Step::Deploy
            && self.spec.plan.mode == DeployMode::Image
            && let Some(w) = self.imaging.as_deref_mut()
        {
            w.end_batch(step);
        }
    }

    fn run_on_machine(&self, step: Step, machine: &str, attempt: u32) -> Event {
        let result = match (step, self.spec.plan.mode) {
            (Step::Deploy, DeployMode::SoftwareOnly) => self.install_on(step, machine),
            (Step::Deploy, DeployMode::Image) => match self.imaging.as_deref() {
                Some(w) => return w.run_on_machine(step, machine, attempt),
                None => Err(format!(
                    "{machine}: image deploy needs the imaging backend, which this run was not given"
                )),
            },
            (Step::Join, _) => match &self.spec.join {
                None => Err("the profile has no domain to join".to_string()),
                Some(j) => self.connect(machine).and_then(|mut remote| {
                    join_linux(&mut remote, &j.template, &j.domain, &j.paths, machine)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }),
            },
            _ => Err(format!("step {step} does not run per machine")),
        };
        match result {
            Ok(()) => Event::MachineSucceeded {
                step,
                machine: machine.to_string(),
            },
            Err(reason) => Event::MachineFailed {
                step,
                machine: machine.to_string(),
                reason,
            },
        }
    }
}
