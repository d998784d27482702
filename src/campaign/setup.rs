//! From a room file to what a campaign runs on: the same loader and checks as `roomcast validate` and
//! `roomcast plan` (the room, its profile, the catalog entries it uses; `model::checked::load_room`),
//! then the [`RoomSpec`] the step runners need and the installers step a fetches.
//!
//! Secrets (`secret:NAME`: licence keys, the join account) are resolved here, once, so a missing one
//! stops the campaign in the evening rather than at step h in the night. Errors name the file, line and
//! field they come from.

use super::steps::collect::Fetch;
use super::steps::install::{Detect, Shell, Software};
use super::steps::join::{Domain, Paths};
use super::steps::{Installer, JoinSpec, RoomSpec};
use crate::model::catalog::{self, LicenceKind, Os};
use crate::model::check;
use crate::model::checked::{RoomRefused, load_room};
use crate::model::plan::{self, RoomPlan};
use crate::model::source::{Pos, Source};
use crate::model::{self, Date};
use crate::remote::ssh::SshConfig;
use crate::secrets::SecretStore;
use roomcast_proto::procedure::licences::{CatalogLicence, Grant};
use roomcast_proto::procedure::{DeployMode, Plan};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Retries of a failed per-machine step (g, h) when neither the command line nor the model says
/// otherwise: a PC that missed its wake-up or lost a join to a busy DC gets two more chances.
pub const DEFAULT_RETRIES: u32 = 2;

/// How a campaign reaches the room: everything that is not in the YAML files. Saved next to the
/// journal at `start` so `resume` rebuilds the same run; holds no secret (only where to find them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupOptions {
    /// The room file, `rooms/<UAI>/<room>.yaml`.
    pub room_file: PathBuf,
    /// The local installer store (step a fetches into it).
    pub installers: PathBuf,
    /// Mount root of `smb://server/share/…` sources: `<shares>/server/share/…`.
    pub shares: PathBuf,
    /// Per-software logs and the reports: `<dir>/logs/<step>/<machine>/<software>.log`.
    pub dir: PathBuf,
    /// SSH user on the PCs.
    pub ssh_user: String,
    /// SSH private key (unencrypted OpenSSH).
    pub ssh_key: PathBuf,
    /// roomcast's known-hosts file (host keys pinned at first contact).
    pub known_hosts: PathBuf,
    /// SSH port of the PCs.
    pub port: u16,
    /// Seconds to connect and authenticate.
    pub connect_timeout_secs: u64,
    /// Image or software-only campaign.
    pub software_only: bool,
    /// Retries of a failed per-machine step; `None`: [`DEFAULT_RETRIES`].
    pub retries: Option<u32>,
    /// Remote directory installers are uploaded to; `None`: the OS's default
    /// (`render::installer_dir`).
    pub staging_dir: Option<String>,
    /// Where the Linux join writes Samba's config and state on the PC; `None`: Samba's defaults.
    pub join_paths: Option<(String, String)>,
    /// A domain controller to join through; `None`: found through DNS.
    pub domain_controller: Option<String>,
    /// The secrets file (`KEY=VALUE`, mode 0600); the environment is looked at first.
    pub secrets: Option<PathBuf>,
}

/// What a campaign runs on.
#[derive(Debug, Clone)]
pub struct Setup {
    /// For the step runners (`steps::StepRunner`).
    pub spec: RoomSpec,
    /// Step a's downloads.
    pub fetches: Vec<Fetch>,
    /// The room's plan (machines with MAC, serial, GLPI id; domain; byte estimates).
    pub plan: RoomPlan,
    /// PC model (inventory).
    pub pc_model: String,
}

/// Why a campaign cannot be set up; each names the file (and line and field) at fault.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The room file cannot be read, is not a room, or has errors in the files it depends on
    /// (one `file:line:col` line per finding).
    #[error(transparent)]
    Room(#[from] RoomRefused),
    /// The plan could not be made.
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    /// A value of the model cannot be used as it is.
    #[error("{file}:{line}: {field}: {message}")]
    Field {
        /// File.
        file: String,
        /// Line (0: the whole file).
        line: u64,
        /// Field path, e.g. `domain.join_account`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn field_error<T>(src: &Source, at: &Spanned<T>, field: &str, message: String) -> SetupError {
    SetupError::Field {
        file: src.path.clone(),
        line: Pos::of(at).line,
        field: field.to_string(),
        message,
    }
}

/// Loads and checks the room file with its context as `roomcast plan` does (licences as of `today`),
/// then builds the campaign's spec. Warnings do not stop it; errors do.
pub fn build(opts: &SetupOptions, today: Date) -> Result<Setup, SetupError> {
    let checked = load_room(&opts.room_file, today)?;
    let (v, room_path, room) = (&checked.validation, &checked.path, checked.room());
    let room_plan = checked.plan()?;
    let profile = v
        .region
        .profiles
        .get(&room.doc.profile.value)
        .ok_or_else(|| plan::PlanError::NoProfile {
            room: room_path.clone(),
            profile: room.doc.profile.value.clone(),
        })?;
    let secrets = SecretStore::new(opts.secrets.clone());
    let os = profile.doc.os.value;
    let shell = match os {
        Os::Windows11 | Os::Windows10 => Shell::Windows,
        Os::Debian12 | Os::Ubuntu2404 => Shell::Posix,
    };

    let mut installers = Vec::new();
    let mut fetches = Vec::new();
    let mut licensed = Vec::new();
    let mut software = Vec::new();
    for s in &profile.doc.software {
        let (id, version) = check::fields::reference(&s.value)
            .ok_or_else(|| plan::PlanError::Unresolved(format!("software `{}`", s.value)))?;
        let entry = v.region.catalog.get(id).ok_or_else(|| {
            plan::PlanError::Unresolved(format!("software `{id}` not in the catalog"))
        })?;
        let ver = check::find_version(&entry.doc, version, os).ok_or_else(|| {
            plan::PlanError::Unresolved(format!("`{id}@{version}` for {}", os.as_str()))
        })?;
        let inst = &ver.installer;
        // Kept under its sha256: two versions with the same file name never overwrite each other.
        let dest = opts
            .installers
            .join(&inst.sha256.value)
            .join(&inst.file.value);
        fetches.push(Fetch {
            file: inst.file.value.clone(),
            source: inst.source.value.clone(),
            dest: dest.clone(),
            size: inst.size.value,
            sha256: inst.sha256.value.clone(),
        });
        installers.push(Installer {
            path: dest.clone(),
            file: inst.file.value.clone(),
            size: inst.size.value,
            sha256: inst.sha256.value.clone(),
        });
        licensed.push((id.to_string(), catalog_licence(entry.doc.licence.value)));
        let licence_key =
            match profile
                .doc
                .licences
                .iter()
                .find(|l| l.software.value == id)
                .and_then(|l| l.key.as_ref())
            {
                None => None,
                Some(key) => Some(secrets.resolve_named(&key.value).map_err(|e| {
                    field_error(&profile.src, key, "licences[].key", e.to_string())
                })?),
            };
        software.push(Software {
            id: id.to_string(),
            version: version.to_string(),
            installer: dest,
            installer_file: inst.file.value.clone(),
            install: ver.install.value.clone(),
            detect: detect(&entry.src, &ver.detect)?,
            licence_key,
        });
    }
    let grants = profile
        .doc
        .licences
        .iter()
        .map(|l| Grant {
            software: l.software.value.clone(),
            kind: catalog_licence(l.kind.value),
            seats: l.seats.as_ref().map(|s| s.value),
            expires: l.expires.as_ref().map(|e| e.value.clone()),
        })
        .collect();
    let checks = profile
        .doc
        .tests
        .iter()
        .map(|t| super::steps::checks::Check {
            name: t.name.clone(),
            command: t.command.clone(),
            expect_exit: t.expect_exit.max(0) as u32,
            expect_output: t.expect_output.clone(),
        })
        .collect();

    let mode = if opts.software_only {
        DeployMode::SoftwareOnly
    } else {
        DeployMode::Image
    };
    // Windows PCs join through their unattend.xml, written by their agent at the end of g.
    let join = if mode == DeployMode::Image {
        let mut j = join_spec(opts, &profile.src, &profile.doc.domain, &secrets)?;
        if shell == Shell::Windows {
            j.template = super::unattend::WINDOWS_UNATTEND.to_string();
            let d = super::unattend::WindowsSettings::default();
            j.windows = super::unattend::WindowsSettings {
                locale: profile.doc.locale.clone().unwrap_or(d.locale),
                time_zone: profile.doc.time_zone.clone().unwrap_or(d.time_zone),
            };
        }
        Some(j)
    } else {
        None
    };
    let addresses = room_plan
        .machines
        .iter()
        .map(|m| {
            (
                m.hostname.clone(),
                m.address.clone().unwrap_or_else(|| m.hostname.clone()),
            )
        })
        .collect();
    let signoff = &profile.doc.signoff;
    let mut ssh = SshConfig::new(&opts.ssh_user, &opts.ssh_key, &opts.known_hosts);
    ssh.connect_timeout = Duration::from_secs(opts.connect_timeout_secs.max(1));
    let spec = RoomSpec {
        plan: Plan {
            room: room_plan.room.clone(),
            machines: room_plan
                .machines
                .iter()
                .map(|m| m.hostname.clone())
                .collect(),
            master: room_plan.master.clone(),
            mode,
            retries: opts.retries.unwrap_or(DEFAULT_RETRIES),
            signoff_required: signoff.required,
            signoff_allowed: signoff.allowed.clone(),
        },
        addresses,
        port: opts.port,
        ssh,
        installers,
        licensed,
        grants,
        today: today.to_string(),
        software,
        checks,
        shell,
        staging_dir: opts
            .staging_dir
            .clone()
            .unwrap_or_else(|| crate::model::render::installer_dir(os).to_string()),
        join,
        logs: opts.dir.join("logs"),
    };
    Ok(Setup {
        spec,
        fetches,
        pc_model: profile.doc.pc_model.model.value.clone(),
        plan: room_plan,
    })
}

fn catalog_licence(kind: LicenceKind) -> CatalogLicence {
    match kind {
        LicenceKind::Free => CatalogLicence::Free,
        LicenceKind::Site => CatalogLicence::Site,
        LicenceKind::PerSeat => CatalogLicence::PerSeat,
        LicenceKind::Authorisation => CatalogLicence::Authorisation,
    }
}

fn detect(src: &Source, d: &Spanned<catalog::Detect>) -> Result<Detect, SetupError> {
    let r = &d.value;
    if let Some(f) = &r.file {
        Ok(Detect::File(f.clone()))
    } else if let Some(key) = &r.registry {
        Ok(Detect::Registry {
            key: key.clone(),
            value: r.value.clone(),
            equals: r.equals.clone(),
        })
    } else if let Some(p) = &r.package {
        Ok(Detect::Package(p.clone()))
    } else if let Some(c) = &r.command {
        Ok(Detect::Command(c.clone()))
    } else {
        Err(field_error(
            src,
            d,
            "versions[].detect",
            "no detection rule (file, registry, package or command)".into(),
        ))
    }
}

/// Step h's settings. The join account's secret holds `user%password` (Samba's `-U` spelling), so one
/// reference names both and neither appears in the profile.
fn join_spec(
    opts: &SetupOptions,
    src: &Source,
    domain: &model::profile::Domain,
    secrets: &SecretStore,
) -> Result<JoinSpec, SetupError> {
    let account = secrets
        .resolve_named(&domain.join_account.value)
        .map_err(|e| {
            field_error(
                src,
                &domain.join_account,
                "domain.join_account",
                e.to_string(),
            )
        })?;
    let Some((user, password)) = account.expose().split_once('%') else {
        return Err(field_error(
            src,
            &domain.join_account,
            "domain.join_account",
            format!(
                "{}: the secret must be `user%password` (Samba's spelling)",
                domain.join_account.value
            ),
        ));
    };
    let name = &domain.name.value;
    let workgroup: String = name
        .split('.')
        .next()
        .unwrap_or(name)
        .to_ascii_uppercase()
        .chars()
        .take(15)
        .collect();
    let paths = match &opts.join_paths {
        Some((smb_conf, state_dir)) => Paths {
            smb_conf: smb_conf.clone(),
            state_dir: state_dir.clone(),
        },
        None => Paths::default(),
    };
    Ok(JoinSpec {
        domain: Domain {
            realm: name.to_ascii_uppercase(),
            workgroup,
            ou: domain.ou.value.clone(),
            server: opts.domain_controller.clone(),
            user: user.to_string(),
            password: crate::secrets::NamedSecret::new(account.name(), password),
        },
        paths,
        template: super::steps::join::LINUX_NET_ADS.to_string(),
        windows: super::unattend::WindowsSettings::default(),
    })
}

/// The default places next to the journal `db`: installers, logs and reports of campaign `id`.
pub fn campaign_dir(db: &Path, id: i64) -> PathBuf {
    db.parent()
        .unwrap_or(Path::new("."))
        .join("campaigns")
        .join(id.to_string())
}
