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
    /// The region's image repository that publishes the base image, `s3://bucket/prefix`: step b
    /// pulls the image from there when the local store lacks it (only the chunks it lacks, each
    /// checked; refused unless signed by a key the store trusts). Endpoint and credentials come from
    /// the server's environment or secrets file (docs/REGION.md).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub base_image_from: Option<Spanned<String>>,
    /// Optional command that generalises the master before capture (step f), e.g. sysprep.
    #[serde(default)]
    pub generalize: Option<String>,
    /// Linux masters: why the image may keep the master's machine identity (a non-empty
    /// `/etc/machine-id`, SSH host keys `/etc/ssh/ssh_host_*`). Absent: step f refuses a master
    /// that still holds them, naming what is left. Windows masters are checked by the agent
    /// (sysprep's image state) whatever this says.
    #[serde(default)]
    pub keep_machine_identity: Option<String>,
    /// Windows PCs: language and locale written into each PC's unattend.xml (UI language, system,
    /// user and input locale), e.g. `fr-FR`. Default `fr-FR`.
    #[serde(default)]
    pub locale: Option<String>,
    /// Windows PCs: time zone written into each PC's unattend.xml, a Windows time zone name, e.g.
    /// `Romance Standard Time` (Paris, the default).
    #[serde(default)]
    pub time_zone: Option<String>,
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
    /// Which disk of each PC is the system disk, the one roomcast restores or captures (a room
    /// may say otherwise). Absent: the PC's one disk that is neither removable nor on USB; a PC
    /// with two internal disks then refuses, naming them, and writes nothing.
    #[serde(default)]
    pub system_disk: Option<SystemDisk>,
    /// On a PC whose disk is larger than the image (a replacement disk after a repair), grow the
    /// last partition and its file system (ext2/3/4 or NTFS) to the disk's end. Default `false`:
    /// the partition table is rewritten for the disk's size and the extra space stays unallocated
    /// after the last partition (Windows leaves it so; Disk Management can extend the volume).
    #[serde(default)]
    pub grow_last_partition: bool,
}

/// The system-disk rule: every field given must hold, exactly one disk of the PC must match, or
/// the PC refuses and reports the disks it saw. A rule without `bus: usb` (or `mmc`) never matches
/// a USB stick, a card reader or removable media.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemDisk {
    /// How the disk is attached: `sata` (AHCI, also IDE mode), `nvme`, `virtio`, `usb`, `mmc`
    /// (card reader) or `scsi` (SAS, RAID).
    #[serde(default)]
    pub bus: Option<DiskBus>,
    /// Pattern of the model string the disk reports (`*` any text, `?` one character, case
    /// ignored), e.g. `Samsung SSD 9*`.
    #[serde(default)]
    pub model: Option<String>,
    /// Smallest size, in GB (10^9 bytes, as disks are sold).
    #[serde(default)]
    pub size_min_gb: Option<u64>,
    /// Largest size, in GB.
    #[serde(default)]
    pub size_max_gb: Option<u64>,
    /// Pattern of the disk's serial number (one PC's disk: rarely useful in a profile).
    #[serde(default)]
    pub serial: Option<String>,
}

/// How a disk is attached (see [`SystemDisk::bus`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskBus {
    /// SATA through AHCI (or IDE mode).
    Sata,
    /// NVMe.
    Nvme,
    /// virtio (virtual machines).
    Virtio,
    /// USB mass storage.
    Usb,
    /// SD/MMC card reader.
    Mmc,
    /// SAS or RAID controller.
    Scsi,
}

impl SystemDisk {
    /// The contract's rule, as the agent applies it (`roomcast.sysdisk=` on the command line).
    pub fn rule(&self) -> roomcast_proto::contract::DiskRule {
        use roomcast_proto::contract::Bus;
        roomcast_proto::contract::DiskRule {
            bus: self.bus.map(|b| match b {
                DiskBus::Sata => Bus::Sata,
                DiskBus::Nvme => Bus::Nvme,
                DiskBus::Virtio => Bus::Virtio,
                DiskBus::Usb => Bus::Usb,
                DiskBus::Mmc => Bus::Mmc,
                DiskBus::Scsi => Bus::Scsi,
            }),
            model: self.model.clone(),
            size_min: self.size_min_gb.map(|g| g.saturating_mul(1_000_000_000)),
            size_max: self.size_max_gb.map(|g| g.saturating_mul(1_000_000_000)),
            serial: self.serial.clone(),
        }
    }
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

#[cfg(test)]
mod system_disk_tests {
    use super::*;
    use roomcast_proto::contract::{Bus, DiskRule};

    #[test]
    fn the_yaml_rule_becomes_the_agents_rule() {
        let d: SystemDisk = serde_saphyr::from_str(
            "bus: nvme\nmodel: \"Samsung SSD 9*\"\nsize_min_gb: 200\nsize_max_gb: 1000\n",
        )
        .unwrap();
        let r = d.rule();
        assert_eq!(
            r,
            DiskRule {
                bus: Some(Bus::Nvme),
                model: Some("Samsung SSD 9*".into()),
                size_min: Some(200_000_000_000),
                size_max: Some(1_000_000_000_000),
                serial: None,
            }
        );
        assert_eq!(DiskRule::parse(&r.to_word()), Ok(r));
        assert!(serde_saphyr::from_str::<SystemDisk>("bus: floppy\n").is_err());
        assert!(serde_saphyr::from_str::<SystemDisk>("size: 3\n").is_err());
    }
}

#[cfg(test)]
mod grow_tests {
    use super::Profile;

    /// `grow_last_partition` (issue 23) is off unless the profile says `true`; anything but a
    /// bool is refused.
    #[test]
    fn grow_last_partition_is_an_opt_in_bool() {
        let good = include_str!("../../tests/fixtures/good/profiles/sti2d-cao.yaml");
        assert!(!good.contains("grow_last_partition"));
        let p: Profile = serde_saphyr::from_str(good).unwrap();
        assert!(!p.grow_last_partition);
        let p: Profile =
            serde_saphyr::from_str(&format!("{good}\ngrow_last_partition: true\n")).unwrap();
        assert!(p.grow_last_partition);
        assert!(
            serde_saphyr::from_str::<Profile>(&format!("{good}\ngrow_last_partition: please\n"))
                .is_err()
        );
    }
}
