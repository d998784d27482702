//! The inventory: what roomcast knows about every machine it touched, kept in the embedded SQLite
//! database ([`db`]), and mirrored to GLPI ([`glpi`] REST adapter, [`native`] inventory documents)
//! through an outbox that [`sync`] delivers when GLPI answers.
//!
//! The campaign never talks to GLPI: it records into the database ([`db::InventoryDb`]), which is
//! local and cannot be slow or down. GLPI being down only delays `roomcast inventory sync`.
//!
//! The types here are plain input records; nothing in this module reads the clock: every time is a
//! [`Timestamp`] passed in by the caller.

pub mod db;
pub mod glpi;
pub mod native;
pub mod record;
pub mod sync;

use serde::{Deserialize, Serialize};
use std::fmt;

/// A point in time (Unix seconds, UTC), the procedure's: passed in by callers (no clock reads here).
pub use roomcast_proto::time::Timestamp;

/// The procedure's step (a–h); the inventory stores and exports it as its letter.
pub use roomcast_proto::procedure::Step;

/// French wording of a step, as written in GLPI followups (the technicians' language).
pub fn step_label_fr(step: Step) -> &'static str {
    match step {
        Step::Collect => "collecte des supports et licences",
        Step::Master => "formatage du poste maître",
        Step::Install => "installation des logiciels",
        Step::Tests => "tests techniques",
        Step::Signoff => "tests applicatifs (enseignants)",
        Step::Capture => "capture de l'image",
        Step::Deploy => "déploiement de l'image",
        Step::Join => "renommage et intégration au domaine",
    }
}

/// The inventory's serialized form of a [`Step`]: its letter (`"g"`), as the database column and
/// the JSON export have always had it.
mod step_letter {
    use super::Step;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(step: &Step, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_char(step.letter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Step, D::Error> {
        let text = String::deserialize(d)?;
        let mut chars = text.chars();
        match (chars.next().and_then(Step::from_letter), chars.next()) {
            (Some(step), None) => Ok(step),
            _ => Err(D::Error::custom(format!("step {text:?}: expected a..h"))),
        }
    }
}

/// How a step ended on one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The step succeeded.
    Ok,
    /// The step failed on this machine.
    Failed,
    /// The step did not apply to this machine (e.g. already done).
    Skipped,
}

impl Outcome {
    /// The word stored in the database and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }

    /// Parses the stored word.
    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "ok" => Some(Outcome::Ok),
            "failed" => Some(Outcome::Failed),
            "skipped" => Some(Outcome::Skipped),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A machine as the inventory knows it. The MAC address is the key: it is what the room file, the
/// allowlist and PXE all identify a PC by. Holds no personal data (no user, no owner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRecord {
    /// The school's UAI (official establishment code, e.g. `0350001A`).
    pub school_uai: String,
    /// The room, e.g. `B204`.
    pub room: String,
    /// The hostname the room file gives the PC.
    pub hostname: String,
    /// MAC address, lowercase `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Hardware serial number (BIOS/SMBIOS), the key GLPI matches computers by.
    pub serial: String,
    /// Hardware model, e.g. `OptiPlex 7090`.
    pub model: String,
    /// The GLPI Computer id, once known.
    pub glpi_id: Option<u64>,
}

/// One step's outcome on one machine during one campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intervention {
    /// Campaign id, unique per campaign (e.g. `0350001A-B204-2026-11-28`).
    pub campaign: String,
    /// The procedure step.
    #[serde(with = "step_letter")]
    pub step: Step,
    /// MAC address of the machine (see [`MachineRecord::mac`]).
    pub machine: String,
    /// How it ended.
    pub result: Outcome,
    /// When the step started on this machine.
    pub started_at: Timestamp,
    /// When it ended.
    pub ended_at: Timestamp,
    /// A short technical detail (error message, image version); no personal data.
    pub detail: String,
}

/// An image put on a machine by a campaign (what GLPI's Computer record is updated with).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDeployed {
    /// Campaign id.
    pub campaign: String,
    /// MAC address of the machine.
    pub machine: String,
    /// The image id (sha256 of the signed manifest).
    pub image_id: String,
    /// The image's human version, e.g. `college-2026.11`.
    pub image_version: String,
    /// When the deploy finished.
    pub at: Timestamp,
    /// How it ended.
    pub result: Outcome,
}

/// The GLPI ticket that gathers a campaign's followups: one per campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignTicket {
    /// Campaign id.
    pub campaign: String,
    /// Ticket title, e.g. `Mise à niveau salle B204`.
    pub title: String,
    /// Ticket description (what the campaign does); no personal data.
    pub content: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interventions_keep_the_step_letter_in_json() {
        let iv = Intervention {
            campaign: "c".into(),
            step: Step::Deploy,
            machine: "aa:bb:cc:dd:ee:ff".into(),
            result: Outcome::Ok,
            started_at: Timestamp(1),
            ended_at: Timestamp(2),
            detail: String::new(),
        };
        let json = serde_json::to_string(&iv).unwrap();
        assert!(json.contains(r#""step":"g""#), "{json}");
        assert_eq!(serde_json::from_str::<Intervention>(&json).unwrap(), iv);
    }
}
