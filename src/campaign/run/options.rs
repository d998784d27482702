//! What a run is told (`StartOptions`, `ResumeOptions`) and what `start` saves next to the journal
//! so `resume` and the reports find it again: `<db dir>/campaigns/<id>/options.json` (the
//! [`SetupOptions`], no secret in it) and `plan.json` (the room's plan as started: references only).

use super::RunError;
use crate::campaign::setup::{self, SetupOptions};
use crate::model::Date;
use crate::model::plan::{BytesPlan, RoomPlan};
use roomcast_proto::procedure::Timestamp;
use serde::Deserialize;
use std::path::{Path, PathBuf};

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
    /// The date licences are checked against (`None`: the clock's today, UTC).
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
    /// The date licences are checked against (`None`: the clock's today, UTC).
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

/// The campaign's folder next to the journal: options, logs, reports.
pub fn campaign_dir(db: &Path, campaign: i64) -> PathBuf {
    setup::campaign_dir(db, campaign)
}

pub(super) fn io(path: &Path) -> impl Fn(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename: a reader never sees half a file.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Saves the options (with `dir` set to the campaign's folder) and the plan as started.
pub(super) fn save(dir: &Path, options: &SetupOptions, plan: &RoomPlan) -> Result<(), RunError> {
    let json = serde_json::to_vec_pretty(options).expect("options serialise");
    write_atomic(&dir.join("options.json"), &json)?;
    let json = serde_json::to_vec_pretty(plan).expect("plan serialises");
    write_atomic(&dir.join("plan.json"), &json)
}

/// The options campaign `id` was started with.
pub(super) fn load(db: &Path, id: i64) -> Result<SetupOptions, RunError> {
    let file = campaign_dir(db, id).join("options.json");
    let bytes = std::fs::read(&file).map_err(|e| {
        RunError::NoCampaign(format!(
            "campaign {id}: {}: {e} (was it started with `roomcast campaign start`?)",
            file.display()
        ))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| RunError::Io {
        path: file.clone(),
        source: std::io::Error::other(e),
    })
}

/// The part of the saved `plan.json` the reports and the console read (fields added later are
/// optional: a plan saved by an older roomcast still reads).
#[derive(Debug, Deserialize)]
pub struct SavedPlan {
    /// Byte estimates of the room's plan.
    pub bytes: BytesPlan,
    /// School name.
    #[serde(default)]
    pub school: String,
    /// School UAI.
    #[serde(default)]
    pub uai: String,
    /// `name@version` of the profile.
    #[serde(default)]
    pub profile: String,
    /// Software installed at c, in profile order.
    #[serde(default)]
    pub software: Vec<SavedSoftware>,
    /// Technical tests of d: (name, command).
    #[serde(default)]
    pub tests: Vec<(String, String)>,
    /// The room's machines.
    #[serde(default)]
    pub machines: Vec<SavedMachine>,
}

/// One software of a saved plan.
#[derive(Debug, Clone, Deserialize)]
pub struct SavedSoftware {
    /// Display name.
    pub name: String,
    /// Version.
    pub version: String,
}

/// One machine of a saved plan.
#[derive(Debug, Clone, Deserialize)]
pub struct SavedMachine {
    /// Hostname.
    pub hostname: String,
    /// MAC address as written in the room file.
    pub mac: String,
}

/// Notes the deadline (`--until`) of the campaign's current run, or that it has none, in
/// `deadline.json` (teachers' sign-off links expire with it).
pub fn save_deadline(db: &Path, id: i64, until: Option<Timestamp>) -> Result<(), RunError> {
    let json = serde_json::json!({ "until": until.map(|t| t.0) }).to_string();
    write_atomic(&campaign_dir(db, id).join("deadline.json"), json.as_bytes())
}

/// The deadline of the campaign's current run, if it has one.
pub fn saved_deadline(db: &Path, id: i64) -> Option<Timestamp> {
    let bytes = std::fs::read(campaign_dir(db, id).join("deadline.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["until"].as_i64().map(Timestamp)
}

/// The plan saved at the start of campaign `id`; `None` when absent or unreadable (the report then
/// has no byte figures).
pub fn saved_plan(db: &Path, id: i64) -> Option<SavedPlan> {
    let bytes = std::fs::read(campaign_dir(db, id).join("plan.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}
