//! The one way a command gets a room it may act on: [`load_room`] reads the room file with its
//! repository context (the catalog, its profile, the other rooms of its school), validates it as
//! `roomcast validate` does, and refuses — naming each finding's file:line:column — when the room
//! file, its profile or a catalog entry it uses has an error. `plan`, `campaign start|resume`,
//! `serve --room` and `deploy --room` all go through it, so none accepts what another refuses.

use super::check::Loaded;
use super::plan::{self, PlanError, RoomPlan};
use super::{Date, Finding, Room, Severity, Validation};
use std::path::Path;

/// A room that passed every check of the files it depends on (warnings may remain).
#[derive(Debug)]
pub struct CheckedRoom {
    /// The whole validation (region and findings, warnings included).
    pub validation: Validation,
    /// The room file's path as the findings name it.
    pub path: String,
}

/// Why a room file is refused.
#[derive(Debug, thiserror::Error)]
pub enum RoomRefused {
    /// A file could not be read.
    #[error(transparent)]
    Load(#[from] super::load::LoadError),
    /// The path names no YAML file.
    #[error("{0}: no YAML file")]
    NoYaml(String),
    /// The file is not a room that can be planned (it does not parse as a room, or lies outside
    /// `rooms/`); `findings` are those of the file itself.
    #[error("{}{path}: not a room that can be planned", lines(.findings))]
    NotARoom {
        /// The file.
        path: String,
        /// Its findings.
        findings: Vec<Finding>,
    },
    /// Errors in the room file, its profile or the catalog entries it uses.
    #[error("{} error(s) in the files this room depends on:\n{}", .findings.len(), lines(.findings).trim_end())]
    Invalid {
        /// The room file.
        path: String,
        /// The errors, in the validator's order.
        findings: Vec<Finding>,
    },
}

impl RoomRefused {
    /// The findings behind the refusal (none for a file that could not be read).
    pub fn findings(&self) -> &[Finding] {
        match self {
            RoomRefused::NotARoom { findings, .. } | RoomRefused::Invalid { findings, .. } => {
                findings
            }
            RoomRefused::Load(_) | RoomRefused::NoYaml(_) => &[],
        }
    }
}

fn lines(findings: &[Finding]) -> String {
    findings.iter().map(|f| format!("{f}\n")).collect()
}

/// Loads the room file at `path` with its repository context and checks it (licences as of
/// `today`). Refused on any error in the room file, its profile or the catalog entries it uses.
pub fn load_room(path: &Path, today: Date) -> Result<CheckedRoom, RoomRefused> {
    let mut files = super::load::load(std::slice::from_ref(&path.to_path_buf()))?;
    let room_path = files
        .iter()
        .find(|f| f.target)
        .map(|f| f.path.clone())
        .ok_or_else(|| RoomRefused::NoYaml(path.display().to_string()))?;
    // Every file of the context is checked, so that its findings are reported too.
    for f in &mut files {
        f.target = true;
    }
    let v = super::validate(files, today);
    let Some(room) = plan::find_room(&v.region, &room_path) else {
        let findings = v
            .findings
            .iter()
            .filter(|f| f.file == room_path)
            .cloned()
            .collect();
        return Err(RoomRefused::NotARoom {
            path: room_path,
            findings,
        });
    };
    let relevant = plan::relevant_files(&v.region, room);
    let blocking: Vec<Finding> = v
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error && relevant.contains(&f.file))
        .cloned()
        .collect();
    if !blocking.is_empty() {
        return Err(RoomRefused::Invalid {
            path: room_path,
            findings: blocking,
        });
    }
    Ok(CheckedRoom {
        validation: v,
        path: room_path,
    })
}

impl CheckedRoom {
    /// The room.
    pub fn room(&self) -> &Loaded<Room> {
        plan::find_room(&self.validation.region, &self.path).expect("checked to be there")
    }

    /// What steps a–h will do for it.
    pub fn plan(&self) -> Result<RoomPlan, PlanError> {
        plan::plan(&self.validation.region, &self.path)
    }
}
