//! Catalog entries: `profiles/catalog/<id>.yaml`, one qualified software with its versions.
//!
//! The doc comments of these types are the reference of the YAML format (`docs/FORMATS.md`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// One software of the region's qualified catalog. File `profiles/catalog/<id>.yaml`; the file
/// stem must equal `id`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// Identifier, `[a-z0-9-]+`, unique in the catalog. Profiles reference it as `id@version`.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// Display name, e.g. `LibreOffice`.
    pub name: String,
    /// Publisher, e.g. `The Document Foundation`.
    pub publisher: String,
    /// Licence kind: `free`, `site`, `per-seat` or `authorisation` (written authorisation of the
    /// head of school). Any kind but `free` needs a matching licence in every profile using it.
    #[schemars(with = "LicenceKind")]
    pub licence: Spanned<LicenceKind>,
    /// Optional home page URL.
    #[serde(default)]
    pub homepage: Option<String>,
    /// The versions of this software, one or more (one per version and OS).
    #[schemars(with = "Vec<SoftwareVersion>")]
    pub versions: Spanned<Vec<SoftwareVersion>>,
}

/// A licence kind, in the catalog (what the software needs) and in profiles (what the school has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LicenceKind {
    /// Free software or freeware: no licence needed.
    Free,
    /// A site licence: covers every machine of the school.
    Site,
    /// Counted seats: `seats` must cover every machine of every room using the profile.
    PerSeat,
    /// Written authorisation of the head of school (`proof` names it).
    Authorisation,
}

impl LicenceKind {
    /// The spelling used in the YAML files.
    pub fn as_str(self) -> &'static str {
        match self {
            LicenceKind::Free => "free",
            LicenceKind::Site => "site",
            LicenceKind::PerSeat => "per-seat",
            LicenceKind::Authorisation => "authorisation",
        }
    }
}

/// An operating system a software version is qualified for, and that a profile installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum Os {
    /// Windows 11 (Education).
    #[serde(rename = "windows-11")]
    Windows11,
    /// Windows 10 (Education).
    #[serde(rename = "windows-10")]
    Windows10,
    /// Debian 12 "bookworm".
    #[serde(rename = "debian-12")]
    Debian12,
    /// Ubuntu 24.04 LTS.
    #[serde(rename = "ubuntu-24.04")]
    Ubuntu2404,
}

impl Os {
    /// The spelling used in the YAML files.
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Windows11 => "windows-11",
            Os::Windows10 => "windows-10",
            Os::Debian12 => "debian-12",
            Os::Ubuntu2404 => "ubuntu-24.04",
        }
    }
}

/// One version of a software, for one OS.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SoftwareVersion {
    /// Version string, e.g. `"24.8.4"` (quote it: `24.10` unquoted would be a number).
    #[schemars(with = "String")]
    pub version: Spanned<String>,
    /// The OS this version installs on.
    #[schemars(with = "Os")]
    pub os: Spanned<Os>,
    /// The installer file and where it is fetched from (step a).
    pub installer: Installer,
    /// Silent-install command, a minijinja template rendered with strict undefined. Variables:
    /// `installer.path`, `installer.file`, `software.id`, `software.version`, `machine.hostname`
    /// and `licence.key` (only defined when the profile has a licence with a key for it; it renders
    /// as the `secret:NAME` reference, resolved at run time, never logged).
    #[schemars(with = "String")]
    pub install: Spanned<String>,
    /// How to tell that the software is installed; exactly one of `file`, `registry`, `package`,
    /// `command`.
    #[schemars(with = "Detect")]
    pub detect: Spanned<Detect>,
    /// Whether the installer needs a reboot afterwards. Default `false`.
    #[serde(default)]
    pub reboot: bool,
    /// Who qualified this version, and the verdict.
    pub qualification: Qualification,
}

/// The installer of one software version.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Installer {
    /// File name in the installer store, e.g. `LibreOffice_24.8.4_Win_x86-64.msi`.
    #[schemars(with = "String")]
    pub file: Spanned<String>,
    /// Size in bytes.
    #[schemars(with = "u64")]
    pub size: Spanned<u64>,
    /// SHA-256 of the file, 64 lowercase hexadecimal digits.
    #[schemars(with = "String")]
    pub sha256: Spanned<String>,
    /// Where it is fetched from: `http://`, `https://`, `file:///` or `smb://server/share/...`.
    #[schemars(with = "String")]
    pub source: Spanned<String>,
}

/// A detection rule: exactly one of `file`, `registry`, `package`, `command`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Detect {
    /// A file that exists once installed.
    #[serde(default)]
    pub file: Option<String>,
    /// A Windows registry key that exists once installed (with optional `value` and `equals`).
    #[serde(default)]
    pub registry: Option<String>,
    /// With `registry`: the value name to read.
    #[serde(default)]
    pub value: Option<String>,
    /// With `registry` and `value`: the data the value must equal.
    #[serde(default)]
    pub equals: Option<String>,
    /// A dpkg/rpm package that is installed.
    #[serde(default)]
    pub package: Option<String>,
    /// A command that exits 0 when installed.
    #[serde(default)]
    pub command: Option<String>,
}

/// The qualification of a version by the SNE.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Qualification {
    /// `qualified`, `pending` or `rejected`. Profiles may only use `qualified` versions.
    #[schemars(with = "QualificationStatus")]
    pub status: Spanned<QualificationStatus>,
    /// Who qualified it, e.g. `"SNE - J. Martin"`.
    pub by: String,
    /// When, `YYYY-MM-DD`.
    #[schemars(with = "String")]
    pub date: Spanned<String>,
    /// Optional free text.
    #[serde(default)]
    pub note: Option<String>,
}

/// The verdict of a qualification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QualificationStatus {
    /// Tested and approved: profiles may use it.
    Qualified,
    /// Being tested: not yet usable.
    Pending,
    /// Tested and refused.
    Rejected,
}
