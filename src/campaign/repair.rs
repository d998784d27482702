//! Re-imaging one PC by day (`roomcast repair <room file> <hostname>`): "when a PC is unstable, or
//! after a hardware repair that needs it, the image is re-applied to it" (issue 15, item 5).
//!
//! The same work as a campaign's g and h for one machine, through the same entry points: the
//! imaging worker's g ([`ImagingWorker`], a restore session whose allowlist is that PC alone, so
//! every other MAC of the room gets the local-disk boot script and no token), over unicast HTTP
//! (the agent's delta restore: it hashes its disk at the image's offsets and fetches and writes
//! only the chunks that differ), with the room's model check and the PC's facts recorded; then h
//! through the campaign's step runner ([`StepRunner`], the Linux join or whatever the profile's OS
//! does at h). The image is the room's current one: the one the inventory last recorded as
//! deployed on a PC of the room (or `--image`). The intervention is recorded in the inventory and
//! queued for GLPI under its own ticket, like a campaign's.

use super::driver::Worker;
use super::imaging::{AgentBoot, ImagingConfig, ImagingWorker};
use super::setup::{self, Setup, SetupError, SetupOptions};
use super::steps::StepRunner;
use crate::clock::Clock;
use crate::inventory::db::{DbError, InventoryDb};
use crate::inventory::{CampaignTicket, ImageDeployed, Intervention, MachineRecord, Outcome};
use crate::model::Date;
use crate::model::plan::MachinePlan;
use roomcast_proto::contract::{Report, RestoreFigures};
use roomcast_proto::mac::Mac;
use roomcast_proto::procedure::{Event, State, Step, Timestamp};
use std::path::PathBuf;

/// What a repair needs besides the YAML files.
#[derive(Debug, Clone)]
pub struct RepairOptions {
    /// The room file, its SSH and join settings (as `campaign start` takes them).
    pub setup: SetupOptions,
    /// The PC to re-image (its final hostname, case ignored).
    pub hostname: String,
    /// The image store.
    pub store: PathBuf,
    /// The deploy server's signing key (unused: a repair captures and signs nothing; the imaging
    /// configuration carries it for step f).
    pub signer_key: PathBuf,
    /// The image (id or unique prefix); `None`: the room's current image, from the inventory.
    pub image: Option<String>,
    /// The inventory database (the campaign journal's file).
    pub db: PathBuf,
    /// Reports and boot root of the session: `<work_dir>/reports/g/<mac>.json`.
    pub work_dir: PathBuf,
    /// Licences are checked as of this day (the room is loaded as `validate` does).
    pub today: Date,
}

/// Why a repair could not start; each names the room file or the machine.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The room file or its context is refused, or a secret is missing.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The hostname is not a machine of the room.
    #[error("{file}: room {room} has no machine `{hostname}` (its machines: {known})")]
    NotInRoom {
        /// The room file.
        file: String,
        /// The room.
        room: String,
        /// The name asked.
        hostname: String,
        /// The room's hostnames.
        known: String,
    },
    /// No image was ever recorded as deployed in the room, and none was given.
    #[error(
        "room {room}: the inventory ({db}) records no image deployed on its PCs; give one with --image"
    )]
    NoImage {
        /// The room.
        room: String,
        /// The database read.
        db: String,
    },
    /// The inventory cannot be read or written.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A value of the room file cannot be used (a MAC, the subnet).
    #[error("{0}")]
    Config(String),
}

/// A repair ready to run: the room's setup, the machine, the image, and the imaging
/// configuration (its tunables may be changed before [`Repair::run`]).
pub struct Repair {
    built: Setup,
    machine: MachinePlan,
    mac: Mac,
    image: String,
    db: PathBuf,
    /// The imaging worker's configuration: the room's, narrowed to this PC, unicast.
    pub config: ImagingConfig,
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairOutcome {
    /// The PC.
    pub hostname: String,
    /// Its MAC.
    pub mac: Mac,
    /// The image re-applied (id as given or recorded).
    pub image: String,
    /// g: `Ok`, or why it failed (never booted, refused for its model, restore failed...).
    pub deploy: Result<(), String>,
    /// The agent's restore figures (chunks written, unchanged...), when it reported them.
    pub figures: Option<RestoreFigures>,
    /// h, when g succeeded.
    pub join: Option<Result<(), String>>,
    /// The name the intervention is recorded under (its GLPI ticket's).
    pub intervention: String,
}

impl RepairOutcome {
    /// True when g and h both succeeded.
    pub fn is_ok(&self) -> bool {
        self.deploy.is_ok() && matches!(self.join, Some(Ok(())))
    }
}

/// What a repair tells its caller while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairProgress {
    /// The session serves the PC and it is being woken (Wake-on-LAN): if it does not start, the
    /// technician PXE-boots it by hand.
    Waking {
        /// The PC.
        hostname: String,
        /// Its MAC.
        mac: Mac,
        /// The image served.
        image: String,
    },
    /// g ended.
    Deployed(Result<(), String>),
    /// h started.
    Joining,
}

/// Loads the room (as `campaign start` does), finds the machine and the image.
pub fn prepare(opts: &RepairOptions) -> Result<Repair, RepairError> {
    let built = setup::build(&opts.setup, opts.today)?;
    let plan = &built.plan;
    let machine = plan
        .machines
        .iter()
        .find(|m| m.hostname.eq_ignore_ascii_case(&opts.hostname))
        .cloned()
        .ok_or_else(|| RepairError::NotInRoom {
            file: plan.file.clone(),
            room: plan.room.clone(),
            hostname: opts.hostname.clone(),
            known: plan
                .machines
                .iter()
                .map(|m| m.hostname.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let image = match &opts.image {
        Some(i) => i.clone(),
        None => {
            current_image(&opts.db, &plan.uai, &plan.room)?.ok_or_else(|| RepairError::NoImage {
                room: plan.room.clone(),
                db: opts.db.display().to_string(),
            })?
        }
    };
    // The full id, for the inventory (a prefix was given, or the store lost the image).
    let image = roomcast_store::Store::open(&opts.store)
        .and_then(|s| s.resolve(&image))
        .map_err(|e| RepairError::Config(format!("image {image}: {e}")))?
        .to_hex();
    let mut config =
        super::run::imaging_config(&built, &opts.store, &opts.signer_key, &opts.work_dir)
            .map_err(RepairError::Config)?;
    let mac = config
        .machines
        .iter()
        .find(|m| m.hostname == machine.hostname)
        .map(|m| m.mac)
        .ok_or_else(|| RepairError::Config(format!("{}: no MAC", machine.hostname)))?;
    // Boot services for this PC only: every other MAC of the room boots its local disk.
    config.machines.retain(|m| m.mac == mac);
    config.expected.retain(|m, _| *m == mac);
    // One PC by day: unicast HTTP, the agent's delta restore.
    config.multicast = None;
    config.inventory = Some(opts.db.clone());
    Ok(Repair {
        built,
        machine,
        mac,
        image,
        db: opts.db.clone(),
        config,
    })
}

/// The image last recorded as deployed on a PC of the room (the most recent intervention).
fn current_image(db: &std::path::Path, uai: &str, room: &str) -> Result<Option<String>, DbError> {
    let inv = InventoryDb::open(db)?;
    Ok(inv
        .machines(Some(room))?
        .into_iter()
        .filter(|r| r.machine.school_uai == uai)
        .filter_map(|r| Some((r.last_intervention_at?, r.last_image_id?)))
        .max_by_key(|(at, _)| *at)
        .map(|(_, id)| id))
}

impl Repair {
    /// The room's PCs boot with Secure Boot on (room file `secure_boot`).
    pub fn secure_boot(&self) -> bool {
        self.built.plan.secure_boot
    }

    /// The PC's MAC.
    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// The image it will get.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// Wakes the PC through `boot` and re-applies the image (g), joins it (h), records the
    /// intervention.
    pub fn run(
        self,
        boot: Box<dyn AgentBoot>,
        clock: &dyn Clock,
        observe: &dyn Fn(&RepairProgress),
    ) -> Result<RepairOutcome, RepairError> {
        let Repair {
            built,
            machine,
            mac,
            image,
            db,
            config,
        } = self;
        let host = machine.hostname.clone();
        let reports = config.work_dir.join("reports").join("g");
        let started = clock.now();
        let mut imaging = ImagingWorker::new(config, boot);
        let mut runner = StepRunner::new(&built.spec, Some(&mut imaging));
        let state = State {
            image: Some(image.clone()),
            ..State::default()
        };
        observe(&RepairProgress::Waking {
            hostname: host.clone(),
            mac,
            image: image.clone(),
        });
        runner.begin_batch(Step::Deploy, &[(host.clone(), 1)], &state);
        let deploy = outcome(runner.run_on_machine(Step::Deploy, &host, 1));
        runner.end_batch(Step::Deploy);
        let deployed_at = clock.now();
        observe(&RepairProgress::Deployed(deploy.clone()));
        let figures = std::fs::read_to_string(reports.join(format!("{}.json", mac.hyphenated())))
            .ok()
            .and_then(|b| Report::parse(&b).ok())
            .and_then(|r| r.restore().cloned());
        let join = deploy.is_ok().then(|| {
            observe(&RepairProgress::Joining);
            outcome(runner.run_on_machine(Step::Join, &host, 1))
        });
        let ended = clock.now();
        let out = RepairOutcome {
            hostname: host,
            mac,
            image,
            deploy,
            figures,
            join,
            intervention: format!(
                "repair-{}-{}-{}-{}",
                built.plan.uai, built.plan.room, machine.hostname, started.0
            ),
        };
        record(&db, &built, &machine, &out, [started, deployed_at, ended])?;
        Ok(out)
    }
}

fn outcome(e: Event) -> Result<(), String> {
    match e {
        Event::MachineFailed { reason, .. } => Err(reason),
        _ => Ok(()),
    }
}

/// The intervention into the inventory: the machine, g and h with their results (queued for
/// GLPI under the repair's own ticket), and the image on a success.
fn record(
    db: &std::path::Path,
    built: &Setup,
    m: &MachinePlan,
    out: &RepairOutcome,
    [started, deployed, ended]: [Timestamp; 3],
) -> Result<(), DbError> {
    let plan = &built.plan;
    let mut inv = InventoryDb::open(db)?;
    let mac = out.mac.to_string();
    inv.upsert_machine(
        &MachineRecord {
            school_uai: plan.uai.clone(),
            room: plan.room.clone(),
            hostname: m.hostname.clone(),
            mac: mac.clone(),
            serial: m.serial.clone(),
            model: built.pc_model.clone(),
            glpi_id: m.glpi_id,
        },
        ended,
    )?;
    let written = out
        .figures
        .as_ref()
        .map(|f| {
            format!(
                "{} chunk(s) rewritten, {} unchanged",
                f.written_chunks, f.unchanged_chunks
            )
        })
        .unwrap_or_default();
    let ticket = CampaignTicket {
        campaign: out.intervention.clone(),
        title: format!("Réimage du poste {} (salle {})", m.hostname, plan.room),
        content: format!(
            "roomcast repair : image {} réappliquée sur {} ({}, profil {}). {written}",
            out.image, m.hostname, plan.school, plan.profile
        ),
    };
    let mut steps = vec![(
        Step::Deploy,
        &out.deploy,
        started,
        deployed,
        format!("repair: image {} re-applied; {written}", out.image),
    )];
    if let Some(j) = &out.join {
        steps.push((
            Step::Join,
            j,
            deployed,
            ended,
            format!(
                "{} joined {} in {}",
                m.hostname, plan.domain.name, plan.domain.ou
            ),
        ));
    }
    for (step, result, s, e, ok_detail) in steps {
        let (result, detail) = match result {
            Ok(()) => (Outcome::Ok, ok_detail),
            Err(why) => (Outcome::Failed, why.clone()),
        };
        inv.record_intervention(
            &Intervention {
                campaign: out.intervention.clone(),
                step,
                machine: mac.clone(),
                result,
                started_at: s,
                ended_at: e,
                detail,
            },
            &ticket,
            ended,
        )?;
    }
    inv.record_image_deployed(
        &ImageDeployed {
            campaign: out.intervention.clone(),
            machine: mac,
            image_id: out.image.clone(),
            image_version: format!("{}-{}@repair", plan.uai, plan.room),
            at: deployed,
            result: if out.deploy.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
        },
        ended,
    )
}
