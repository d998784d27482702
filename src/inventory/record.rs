//! What a campaign leaves in the inventory: every PC with a settled g or h result becomes a machine
//! row, one intervention per settled step (queued for GLPI under the campaign's ticket) and, after
//! an image deploy, the image it got. The campaign calls [`record_campaign`] at the end of each run;
//! recording twice changes nothing (interventions are keyed by campaign, step, machine and start).

use super::db::{DbError, InventoryDb};
use super::{CampaignTicket, ImageDeployed, Intervention, MachineRecord, Outcome};
use crate::model::Date;
use crate::model::plan::RoomPlan;
use roomcast_proto::procedure::{DeployMode, State, Status, Step, Timestamp};
use std::collections::BTreeMap;

/// A journaled campaign as the inventory sees it.
pub struct CampaignRun<'a> {
    /// Campaign id in the journal.
    pub id: i64,
    /// The room's plan (school, machines with MAC, serial and GLPI id, domain).
    pub plan: &'a RoomPlan,
    /// Image or software-only.
    pub mode: DeployMode,
    /// The PCs' hardware model.
    pub pc_model: &'a str,
    /// The campaign's replayed state.
    pub state: &'a State,
    /// Per machine and step (g, h): when it started and, once settled, ended (the journal's times).
    pub timings: &'a BTreeMap<(String, Step), (Timestamp, Option<Timestamp>)>,
}

/// The inventory's name of a campaign: `<UAI>-<room>-<start date>-<id>`.
pub fn campaign_name(run: &CampaignRun) -> String {
    let started = run.state.started_at.unwrap_or(Timestamp(0));
    format!(
        "{}-{}-{}-{}",
        run.plan.uai,
        run.plan.room,
        Date::of(started),
        run.id
    )
}

fn settled(state: &State, machine: &str) -> bool {
    [Step::Deploy, Step::Join]
        .iter()
        .any(|s| state.machine_status(machine, *s).is_settled())
}

/// Records every PC of `run` with a settled g or h result in `inv` at time `now`, and queues its
/// GLPI followups. Returns how many PCs were recorded.
pub fn record_campaign(
    inv: &mut InventoryDb,
    run: &CampaignRun,
    now: Timestamp,
) -> Result<usize, DbError> {
    let (plan, state) = (run.plan, run.state);
    let started = state.started_at.unwrap_or(Timestamp(0));
    let campaign = campaign_name(run);
    let ticket = CampaignTicket {
        campaign: campaign.clone(),
        title: format!("Mise à niveau salle {} ({})", plan.room, plan.school),
        content: format!(
            "Campagne roomcast {} : profil {}, {} poste(s), domaine {} (OU {}).",
            run.id,
            plan.profile,
            plan.machines.len(),
            plan.domain.name,
            plan.domain.ou
        ),
    };
    let mut recorded = 0;
    for m in &plan.machines {
        if !settled(state, &m.hostname) {
            continue;
        }
        let mac = m.mac.replace('-', ":").to_ascii_lowercase();
        inv.upsert_machine(
            &MachineRecord {
                school_uai: plan.uai.clone(),
                room: plan.room.clone(),
                hostname: m.hostname.clone(),
                mac: mac.clone(),
                serial: m.serial.clone(),
                model: run.pc_model.to_string(),
                glpi_id: m.glpi_id,
            },
            now,
        )?;
        for step in [Step::Deploy, Step::Join] {
            let (result, detail) = match state.machine_status(&m.hostname, step) {
                Status::Succeeded { .. } => (
                    Outcome::Ok,
                    match (step, run.mode) {
                        (Step::Deploy, DeployMode::Image) => {
                            format!("image of profile {}", plan.profile)
                        }
                        (Step::Deploy, DeployMode::SoftwareOnly) => {
                            format!("software of profile {}", plan.profile)
                        }
                        _ => format!(
                            "{} joined {} in {}",
                            m.hostname, plan.domain.name, plan.domain.ou
                        ),
                    },
                ),
                Status::Failed { reason, .. } => (Outcome::Failed, reason),
                Status::Skipped { reason } => (Outcome::Skipped, reason),
                _ => continue,
            };
            let (s, e) = run
                .timings
                .get(&(m.hostname.clone(), step))
                .copied()
                .unwrap_or((started, None));
            inv.record_intervention(
                &Intervention {
                    campaign: campaign.clone(),
                    step,
                    machine: mac.clone(),
                    result,
                    started_at: s,
                    ended_at: e.unwrap_or(s),
                    detail,
                },
                &ticket,
                now,
            )?;
        }
        // The image this campaign captured (step f), on every PC it reached at g.
        if let (DeployMode::Image, Some(image)) = (run.mode, &state.image) {
            let result = match state.machine_status(&m.hostname, Step::Deploy) {
                Status::Succeeded { .. } => Some(Outcome::Ok),
                Status::Failed { .. } => Some(Outcome::Failed),
                _ => None,
            };
            if let Some(result) = result {
                let end = run
                    .timings
                    .get(&(m.hostname.clone(), Step::Deploy))
                    .and_then(|(_, e)| *e)
                    .unwrap_or(started);
                inv.record_image_deployed(
                    &ImageDeployed {
                        campaign: campaign.clone(),
                        machine: mac.clone(),
                        image_id: image.clone(),
                        image_version: format!("{}-{}@{}", plan.uai, plan.room, run.id),
                        at: end,
                        result,
                    },
                    now,
                )?;
            }
        }
        recorded += 1;
    }
    Ok(recorded)
}

/// Whether `run` has anything to record (a PC with a settled g or h result).
pub fn has_results(run: &CampaignRun) -> bool {
    run.plan
        .machines
        .iter()
        .any(|m| settled(run.state, &m.hostname))
}

/// Records what a PC's agent read of it (issue 15): the facts with the server's warnings and
/// refusal in the local inventory, and the GLPI native inventory document built from them queued
/// for GLPI (under the room file's hostname; agent id: the SMBIOS UUID, else the MAC).
pub fn record_pc_facts(
    inv: &mut InventoryDb,
    hostname: &str,
    mac: &str,
    facts: &roomcast_proto::contract::HardwareFacts,
    clearance: &roomcast_proto::contract::Clearance,
    now: Timestamp,
) -> Result<(), DbError> {
    let named = roomcast_proto::contract::HardwareFacts {
        hostname: hostname.to_string(),
        ..facts.clone()
    };
    let document = super::native::document(&named, &[], now);
    let mac = mac.to_ascii_lowercase();
    let agent_id = if facts.uuid.is_empty() {
        mac.clone()
    } else {
        facts.uuid.clone()
    };
    inv.record_machine_facts(
        &super::db::MachineFacts {
            agent_id,
            mac,
            hostname: hostname.to_string(),
            facts: serde_json::to_string(facts).expect("facts serialise"),
            warnings: clearance.warnings.clone(),
            refused: clearance.refused.clone(),
            read_at: now,
        },
        &document,
        now,
    )
}
