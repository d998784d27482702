//! Rooms: `rooms/<school UAI>/<room>.yaml`, the machines of one classroom.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// One classroom. File `rooms/<school UAI>/<room>.yaml`: the folder must equal `school.uai`,
/// the file stem must equal `room`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Room {
    /// The school the room belongs to.
    pub school: School,
    /// Room id, e.g. `B204`.
    #[schemars(with = "String")]
    pub room: Spanned<String>,
    /// Optional free text.
    #[serde(default)]
    pub description: Option<String>,
    /// VLAN of the room; only `PEDA` (the teaching network) is managed by the region.
    #[schemars(with = "String")]
    pub vlan: Spanned<String>,
    /// Where roomcast serves the room.
    pub network: Network,
    /// The profile, `name@version`.
    #[schemars(with = "String")]
    pub profile: Spanned<String>,
    /// Optional hostname of the master machine (steps b–f); must be one of `machines`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub master: Option<Spanned<String>>,
    /// The machines of the room.
    #[schemars(with = "Vec<Machine>")]
    pub machines: Spanned<Vec<Machine>>,
    /// The system-disk rule of this room's PCs, replacing the profile's `system_disk` (same
    /// fields), e.g. a room whose PCs got a second disk.
    #[serde(default)]
    pub system_disk: Option<super::profile::SystemDisk>,
    /// The room's PCs boot with Secure Boot on (UEFI): PXE hands them Debian's signed chain (shim,
    /// GRUB, the signed kernel; `roomcast bootenv build --secure-boot`) instead of iPXE, which is
    /// not signed. Default `false`.
    #[serde(default)]
    pub secure_boot: bool,
}

/// A school.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct School {
    /// UAI code: 7 digits and a letter, e.g. `"0330021U"` (quote it).
    #[schemars(with = "String")]
    pub uai: Spanned<String>,
    /// Name, e.g. `Lycée Gustave Eiffel`.
    pub name: String,
    /// Optional city.
    #[serde(default)]
    pub city: Option<String>,
}

/// The room's network, as roomcast serves it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The only interface roomcast serves PXE/DHCP on, e.g. `enp3s0`.
    pub interface: String,
    /// The room subnet in CIDR notation, e.g. `198.18.4.0/24`.
    #[schemars(with = "String")]
    pub subnet: Spanned<String>,
    /// Multicast group of the deploy stream; must be in `239.0.0.0/8` (administratively scoped).
    #[schemars(with = "String")]
    pub multicast_group: Spanned<String>,
    /// Link speed of the PCs in Mbit/s, e.g. `1000`.
    #[schemars(with = "u32")]
    pub link_speed_mbps: Spanned<u32>,
}

/// One PC of the room.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// Optional hostname; without it, the profile's `domain.hostname` template names the
    /// machine. The final name must follow NetBIOS rules: at most 15 characters of
    /// `[A-Za-z0-9-]`, not all digits, no leading `-`. Unique in the school.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub hostname: Option<Spanned<String>>,
    /// Optional IPv4 address the running PC answers SSH on (steps c, d, g `--software-only`, h),
    /// inside `network.subnet`, e.g. a DHCP reservation of the school. Without it, roomcast
    /// connects to the final hostname through the resolver (the school's DNS).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub address: Option<Spanned<String>>,
    /// MAC address `xx:xx:xx:xx:xx:xx` (`-` separators accepted). Unique in the school.
    #[schemars(with = "String")]
    pub mac: Spanned<String>,
    /// Serial number. Unique in the school.
    #[schemars(with = "String")]
    pub serial: Spanned<String>,
    /// PC model, as the firmware reports it (DMI product name); must equal the profile's
    /// `pc_model.model`, unless `model_exception` is given. The agent checks it on the PC before
    /// anything is written: a PC of another model is refused the image ("wrong model").
    #[schemars(with = "String")]
    pub model: Spanned<String>,
    /// Optional: why this PC may have another model than the profile's (a replacement PC, a
    /// spare). With it, `model` may differ from the profile's, and a PC reporting either model is
    /// imaged. A room stays homogeneous by default: each exception is written down with its
    /// reason.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub model_exception: Option<Spanned<String>>,
    /// Optional GLPI computer id.
    #[serde(default)]
    pub glpi_id: Option<u64>,
}

impl Machine {
    /// What this PC must be, checked on its own facts before it is imaged: the profile's model
    /// (`pc_model`), or this machine's `model` when the room file lists a `model_exception` for
    /// it; a serial other than this one is a warning.
    pub fn expected(
        &self,
        pc_model: &super::profile::PcModel,
    ) -> roomcast_proto::contract::PcExpected {
        roomcast_proto::contract::PcExpected {
            profile_model: pc_model.model.value.clone(),
            exception_model: self
                .model_exception
                .as_ref()
                .map(|_| self.model.value.clone()),
            serial: self.serial.value.clone(),
        }
    }
}
