//! What steps a–h will do for one room, computed from the checked model alone (no network, no
//! image store): software and installers with their licences, every machine's final hostname,
//! the image, the domain, and byte estimates.

use serde::Serialize;

use super::catalog::{Detect, LicenceKind, Os};
use super::check::{self, Loaded, Region};
use super::room::Room;
use crate::model::render::{self, InstallVars, Renderer};

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The file is not a room that parsed.
    #[error("{0}: not a room file that parsed (run `roomcast validate` on it)")]
    NoSuchRoom(String),
    /// The room's profile is missing.
    #[error("{room}: profile `{profile}` not found")]
    NoProfile {
        /// The room file.
        room: String,
        /// The reference.
        profile: String,
    },
    /// A software or template the plan needs did not resolve.
    #[error("{0}")]
    Unresolved(String),
}

/// The plan of one room.
#[derive(Debug, Clone, Serialize)]
pub struct RoomPlan {
    /// The room file.
    pub file: String,
    /// School UAI.
    pub uai: String,
    /// School name.
    pub school: String,
    /// Room id.
    pub room: String,
    /// `name@version` of the profile.
    pub profile: String,
    /// OS of the profile.
    pub os: &'static str,
    /// `manufacturer model` of the PCs.
    pub pc_model: String,
    /// Step a and c: software to fetch and install, in profile order.
    pub software: Vec<SoftwarePlan>,
    /// Step b: the base image restored on the master.
    pub base_image: String,
    /// Step b: the region's repository the base image is pulled from when the store lacks it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_image_from: Option<String>,
    /// The profile file (as the findings name it), for messages about `base_image` and
    /// `base_image_from`.
    pub profile_file: String,
    /// Steps b–f: the master's hostname.
    pub master: String,
    /// Step d: technical tests (name, command).
    pub tests: Vec<(String, String)>,
    /// Step e: who may sign off, when required.
    pub signoff: Option<Vec<String>>,
    /// Step f: the generalise command, if any.
    pub generalize: Option<String>,
    /// Why the image may keep a Linux master's machine identity (profile
    /// `keep_machine_identity`); `None`: step f refuses a master that still holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_machine_identity: Option<String>,
    /// Steps b, f, g: the system-disk rule (the room's, else the profile's), as the agent gets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_disk: Option<roomcast_proto::contract::DiskRule>,
    /// Steps b, g: grow the last partition to the end of a larger disk (the profile's
    /// `grow_last_partition`), as the agent gets it (`roomcast.grow=last`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub grow_last_partition: bool,
    /// Steps b, f, g: the room's PCs boot with Secure Boot on (the room's `secure_boot`): PXE
    /// hands them Debian's signed chain instead of iPXE.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub secure_boot: bool,
    /// Step g: the machines deployed.
    pub machines: Vec<MachinePlan>,
    /// Step g: network facts.
    pub network: NetworkPlan,
    /// Step h: domain, OU and join account reference.
    pub domain: DomainPlan,
    /// Byte estimates.
    pub bytes: BytesPlan,
}

/// One software of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct SoftwarePlan {
    /// Catalog id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Installer file name.
    pub installer: String,
    /// Installer size in bytes.
    pub size: u64,
    /// Expected sha256.
    pub sha256: String,
    /// Where it is fetched from.
    pub source: String,
    /// The install command as it will run on the master (secrets stay `secret:NAME`).
    pub command: String,
    /// How installation is detected.
    pub detect: String,
    /// Whether a reboot follows.
    pub reboot: bool,
    /// The licence that covers it: `free`, or kind, seats, expiry and proof.
    pub licence: String,
}

/// One machine of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct MachinePlan {
    /// 1-based position in the room file.
    pub index: usize,
    /// Final hostname (given or rendered from the profile template).
    pub hostname: String,
    /// Whether the hostname came from the template.
    pub hostname_from_template: bool,
    /// SSH address from the room file; `None`: the hostname, through the resolver.
    pub address: Option<String>,
    /// MAC address as written.
    pub mac: String,
    /// Serial number.
    pub serial: String,
    /// GLPI id, when known.
    pub glpi_id: Option<u64>,
    /// What the PC must be, checked on its facts before it is imaged ([`super::room::Machine::expected`]).
    #[serde(skip)]
    pub expected: roomcast_proto::contract::PcExpected,
    /// Whether this is the master.
    pub master: bool,
}

/// Network facts of step g.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkPlan {
    /// Interface served.
    pub interface: String,
    /// Subnet.
    pub subnet: String,
    /// Multicast group.
    pub multicast_group: String,
    /// Link speed, Mbit/s.
    pub link_speed_mbps: u32,
}

/// Domain facts of step h.
#[derive(Debug, Clone, Serialize)]
pub struct DomainPlan {
    /// AD domain.
    pub name: String,
    /// OU DN.
    pub ou: String,
    /// The join account reference (`secret:NAME`).
    pub join_account: String,
}

/// Byte estimates.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BytesPlan {
    /// Sum of installer sizes: fetched at step a, uploaded to the master at step c.
    pub installers: u64,
    /// Seconds to upload the installers to the master at link speed (lower bound).
    pub installer_upload_seconds: f64,
    /// Size of the captured image, when known. The plan does not consult the image store, so
    /// it is unknown until the image exists.
    pub image: Option<u64>,
}

fn describe_detect(d: &Detect) -> String {
    if let Some(f) = &d.file {
        format!("file exists: {f}")
    } else if let Some(r) = &d.registry {
        match (&d.value, &d.equals) {
            (Some(v), Some(e)) => format!("registry {r} value {v} = {e}"),
            (Some(v), None) => format!("registry {r} value {v} exists"),
            _ => format!("registry key exists: {r}"),
        }
    } else if let Some(p) = &d.package {
        format!("package installed: {p}")
    } else if let Some(c) = &d.command {
        format!("command exits 0: {c}")
    } else {
        "none".into()
    }
}

/// The files a room's plan depends on: the room, its profile, the catalog entries it uses.
pub fn relevant_files(region: &Region, room: &Loaded<Room>) -> Vec<String> {
    let mut out = vec![room.src.path.clone()];
    if let Some(p) = region.profiles.get(&room.doc.profile.value) {
        out.push(p.src.path.clone());
        for s in &p.doc.software {
            if let Some((id, _)) = check::fields::reference(&s.value)
                && let Some(e) = region.catalog.get(id)
            {
                out.push(e.src.path.clone());
            }
        }
    }
    out
}

/// Finds a parsed room by its file path.
pub fn find_room<'a>(region: &'a Region, path: &str) -> Option<&'a Loaded<Room>> {
    region.rooms.iter().find(|r| r.src.path == path)
}

/// Computes the plan of the room in `path`. Run it on a region without errors in the
/// [`relevant_files`]; otherwise it stops at the first thing that does not resolve.
pub fn plan(region: &Region, path: &str) -> Result<RoomPlan, PlanError> {
    let room = find_room(region, path).ok_or_else(|| PlanError::NoSuchRoom(path.into()))?;
    let doc = &room.doc;
    let loaded = region
        .profiles
        .get(&doc.profile.value)
        .ok_or_else(|| PlanError::NoProfile {
            room: path.into(),
            profile: doc.profile.value.clone(),
        })?;
    let profile = &loaded.doc;
    let renderer = Renderer::new();
    let os: Os = profile.os.value;
    let mut machines = Vec::new();
    let finals = check::final_hostnames(&renderer, doc, profile);
    for ((i, m), hostname) in doc.machines.value.iter().enumerate().zip(finals) {
        let hostname = hostname
            .map_err(|e| PlanError::Unresolved(format!("hostname of machine {}: {}", i + 1, e)))?;
        machines.push(MachinePlan {
            index: i + 1,
            hostname,
            hostname_from_template: m.hostname.is_none(),
            address: m.address.as_ref().map(|a| a.value.clone()),
            mac: m.mac.value.clone(),
            serial: m.serial.value.clone(),
            glpi_id: m.glpi_id,
            expected: m.expected(&profile.pc_model),
            master: false,
        });
    }
    // Without `master:`, the first machine of the file is the master.
    let master_idx = match &doc.master {
        Some(ms) => machines
            .iter()
            .position(|m| m.hostname.eq_ignore_ascii_case(&ms.value))
            .ok_or_else(|| {
                PlanError::Unresolved(format!("master `{}` not in the room", ms.value))
            })?,
        None => 0,
    };
    if let Some(m) = machines.get_mut(master_idx) {
        m.master = true;
    }
    let master = machines
        .get(master_idx)
        .map(|m| m.hostname.clone())
        .unwrap_or_default();
    let mut software = Vec::new();
    for s in &profile.software {
        let (id, version) = check::fields::reference(&s.value)
            .ok_or_else(|| PlanError::Unresolved(format!("software `{}`", s.value)))?;
        let entry = &region
            .catalog
            .get(id)
            .ok_or_else(|| PlanError::Unresolved(format!("software `{id}` not in the catalog")))?
            .doc;
        let v = check::find_version(entry, version, os).ok_or_else(|| {
            PlanError::Unresolved(format!(
                "`{id}@{version}` not in the catalog for {}",
                os.as_str()
            ))
        })?;
        let licence = profile.licences.iter().find(|l| l.software.value == id);
        let command = renderer
            .render(
                &v.install.value,
                render::install_context(&InstallVars {
                    os,
                    file: &v.installer.file.value,
                    id,
                    version,
                    licence_key: licence
                        .and_then(|l| l.key.as_ref())
                        .map(|k| k.value.as_str()),
                    hostname: &master,
                }),
            )
            .map_err(|e| PlanError::Unresolved(format!("install command of `{id}`: {e}")))?;
        let licence = match (entry.licence.value, licence) {
            (LicenceKind::Free, _) => "free".to_string(),
            (_, None) => "MISSING".to_string(),
            (_, Some(l)) => {
                let mut s = l.kind.value.as_str().to_string();
                if let Some(n) = &l.seats {
                    s.push_str(&format!(", {} seats", n.value));
                }
                if let Some(e) = &l.expires {
                    s.push_str(&format!(", expires {}", e.value));
                }
                s.push_str(&format!(", proof: {}", l.proof));
                s
            }
        };
        software.push(SoftwarePlan {
            id: id.into(),
            name: entry.name.clone(),
            version: version.into(),
            installer: v.installer.file.value.clone(),
            size: v.installer.size.value,
            sha256: v.installer.sha256.value.clone(),
            source: v.installer.source.value.clone(),
            command,
            detect: describe_detect(&v.detect.value),
            reboot: v.reboot,
            licence,
        });
    }
    let installers: u64 = software.iter().map(|s| s.size).sum();
    let speed = f64::from(doc.network.link_speed_mbps.value.max(1)) * 1e6 / 8.0;
    Ok(RoomPlan {
        file: path.into(),
        uai: doc.school.uai.value.clone(),
        school: doc.school.name.clone(),
        room: doc.room.value.clone(),
        profile: doc.profile.value.clone(),
        os: os.as_str(),
        pc_model: format!(
            "{} {}",
            profile.pc_model.manufacturer, profile.pc_model.model.value
        ),
        software,
        base_image: profile.base_image.value.clone(),
        base_image_from: profile.base_image_from.as_ref().map(|f| f.value.clone()),
        profile_file: loaded.src.path.clone(),
        master,
        tests: profile
            .tests
            .iter()
            .map(|t| (t.name.clone(), t.command.clone()))
            .collect(),
        signoff: profile
            .signoff
            .required
            .then(|| profile.signoff.allowed.clone()),
        generalize: profile.generalize.clone(),
        keep_machine_identity: profile.keep_machine_identity.clone(),
        system_disk: doc
            .system_disk
            .as_ref()
            .or(profile.system_disk.as_ref())
            .map(|d| d.rule()),
        grow_last_partition: profile.grow_last_partition,
        secure_boot: doc.secure_boot,
        machines,
        network: NetworkPlan {
            interface: doc.network.interface.clone(),
            subnet: doc.network.subnet.value.clone(),
            multicast_group: doc.network.multicast_group.value.clone(),
            link_speed_mbps: doc.network.link_speed_mbps.value,
        },
        domain: DomainPlan {
            name: profile.domain.name.value.clone(),
            ou: profile.domain.ou.value.clone(),
            join_account: profile.domain.join_account.value.clone(),
        },
        bytes: BytesPlan {
            installers,
            installer_upload_seconds: (installers as f64 / speed * 10.0).round() / 10.0,
            image: None,
        },
    })
}
