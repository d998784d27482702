//! Profiles: `profiles/<name>.yaml`, what a room of one PC model gets (OS, base image, software,
//! licences, domain, tests, sign-off).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::catalog::{LicenceKind, Os};

/// A room profile. File `profiles/<name>.yaml`; the file stem must equal `name`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Name, `[a-z0-9-]+`. Rooms reference the profile as `name@version`.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Version, a positive integer; bump it when the content changes.
    #[schemars(with = "u32")]
    pub version: Spanned<u32>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// The one PC model of the rooms using this profile (rooms are homogeneous).
    pub pc_model: PcModel,
    /// The OS, same spelling as the catalog (`windows-11`, `windows-10`, `debian-12`,
    /// `ubuntu-24.04`). Every software version must be qualified for it.
    #[schemars(with = "Os")]
    pub os: Spanned<Os>,
    /// Base image restored on the master at step b, `name@version` in the image store.
    #[schemars(with = "String")]
    pub base_image: Spanned<String>,
    /// Optional command that generalises the master before capture (step f), e.g. sysprep.
    #[serde(default)]
    pub generalize: Option<String>,
    /// Software to install at step c, each `id@version` of the catalog, qualified for `os`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub software: Vec<Spanned<String>>,
    /// Licences, one for each non-free software of the list.
    #[serde(default)]
    pub licences: Vec<Licence>,
    /// Active Directory domain the machines join at step h.
    pub domain: Domain,
    /// Technical tests run on the master at step d.
    #[serde(default)]
    pub tests: Vec<TechnicalTest>,
    /// The teachers' sign-off at step e.
    pub signoff: Signoff,
}

/// Manufacturer and model, as the firmware reports them (DMI).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PcModel {
    /// e.g. `Dell Inc.`
    pub manufacturer: String,
    /// e.g. `OptiPlex 7010`; every machine of a room must have this `model`.
    #[schemars(with = "String")]
    pub model: Spanned<String>,
}

/// A licence the school holds for one software of the profile.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Licence {
    /// The catalog id of the software it covers.
    #[schemars(with = "String")]
    pub software: Spanned<String>,
    /// `site`, `per-seat` or `authorisation`; must match the catalog's licence kind.
    #[schemars(with = "LicenceKind")]
    pub kind: Spanned<LicenceKind>,
    /// Number of seats; required for `per-seat`, must cover every machine of every room
    /// using this profile.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub seats: Option<Spanned<u32>>,
    /// Optional licence key, as a `secret:NAME` reference (`NAME` = `[A-Z][A-Z0-9_]*`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub key: Option<Spanned<String>>,
    /// Optional expiry date `YYYY-MM-DD`; the licence is expired when this date is before
    /// `--today`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub expires: Option<Spanned<String>>,
    /// Order number or authorisation reference.
    pub proof: String,
}

/// The AD domain the machines join, and how they are named.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// AD DNS domain, e.g. `lycee-eiffel.ac-bordeaux.fr`.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Organisational unit of the computer accounts, a DN whose `DC=` parts spell `name`.
    #[schemars(with = "String")]
    pub ou: Spanned<String>,
    /// Account allowed to join machines, a `secret:NAME` reference.
    #[schemars(with = "String")]
    pub join_account: Spanned<String>,
    /// Hostname template (minijinja, strict undefined) for machines without a `hostname` in
    /// the room file. Variables: `school.uai`, `room.id`, `machine.index` (1-based),
    /// `machine.serial`, `machine.mac`.
    #[schemars(with = "String")]
    pub hostname: Spanned<String>,
}

/// A technical test run on the master over SSH (step d).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TechnicalTest {
    /// What is tested, for the report.
    pub name: String,
    /// The command to run.
    pub command: String,
    /// Expected exit code. Default 0.
    #[serde(default)]
    pub expect_exit: i32,
    /// Optional substring expected in the output.
    #[serde(default)]
    pub expect_output: Option<String>,
}

/// The teachers' sign-off gate (step e).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signoff {
    /// Whether the campaign waits for a sign-off before capture.
    pub required: bool,
    /// Who may sign; must not be empty when `required`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub allowed: Vec<String>,
}
