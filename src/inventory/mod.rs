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
pub mod sync;

use serde::{Deserialize, Serialize};
use std::fmt;

/// A point in time (Unix seconds, UTC), the procedure's: passed in by callers (no clock reads here).
pub use roomcast_proto::time::Timestamp;

/// One step of the region's room procedure (framework 7.5.4, steps a–h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// a: collect installation media and licences.
    A,
    /// b: format the master workstation.
    B,
    /// c: install the required software.
    C,
    /// d: technical tests.
    D,
    /// e: application tests by the teachers (sign-off).
    E,
    /// f: capture the image.
    F,
    /// g: deploy the image on every PC of the room.
    G,
    /// h: join the PCs to the domain.
    H,
}

impl Step {
    /// Every step in procedure order.
    pub const ALL: [Step; 8] = [
        Step::A,
        Step::B,
        Step::C,
        Step::D,
        Step::E,
        Step::F,
        Step::G,
        Step::H,
    ];

    /// The step's letter, as stored in the database.
    pub fn letter(self) -> char {
        (b'a' + Step::ALL.iter().position(|s| *s == self).unwrap_or(0) as u8) as char
    }

    /// Parses a step letter (`a`..`h`).
    pub fn from_letter(c: char) -> Option<Step> {
        let i = (c as u32).checked_sub('a' as u32)? as usize;
        Step::ALL.get(i).copied()
    }

    /// French wording of the step, as written in GLPI followups (the technicians' language).
    pub fn label_fr(self) -> &'static str {
        match self {
            Step::A => "collecte des supports et licences",
            Step::B => "formatage du poste maître",
            Step::C => "installation des logiciels",
            Step::D => "tests techniques",
            Step::E => "tests applicatifs (enseignants)",
            Step::F => "capture de l'image",
            Step::G => "déploiement de l'image",
            Step::H => "renommage et intégration au domaine",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
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
    fn step_letters_round_trip() {
        for s in Step::ALL {
            assert_eq!(Step::from_letter(s.letter()), Some(s));
        }
        assert_eq!(Step::G.letter(), 'g');
        assert_eq!(Step::from_letter('i'), None);
    }
}
