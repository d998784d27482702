//! The morning report of a run: Markdown and HTML next to the journal, from the replayed state,
//! the journal's times and the byte figures of the plan saved at `start`.

use super::RunError;
use super::options::{SavedPlan, campaign_dir, saved_plan, write_atomic};
use crate::campaign::journal::Journal;
use crate::campaign::report::{self, Facts};
use roomcast_proto::contract::{Report, Work};
use roomcast_proto::mac::Mac;
use roomcast_proto::procedure::State;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The campaign's current state and the facts of its reports (prints and writes nothing).
/// `roomcast campaign report` uses it too.
pub fn reports(
    journal: &Journal,
    db: &Path,
    id: i64,
    stopped_at_until: bool,
) -> Result<(State, Facts), RunError> {
    let events = journal.events(id)?;
    let state = journal.state(id)?;
    let mut facts = Facts {
        timings: report::timings(events.iter().map(|r| (&r.event, r.at))),
        stopped_at_until,
        ..Facts::default()
    };
    if let Some(plan) = saved_plan(db, id) {
        facts.installer_bytes = Some(plan.bytes.installers);
        facts.image_bytes = plan.bytes.image;
        if !plan.school.is_empty() {
            facts.school = Some(format!("{} ({})", plan.school, plan.uai));
        }
        facts.written = written_at_g(db, &plan);
    }
    Ok((state, facts))
}

/// Where the imaging backend of a campaign run from the CLI keeps its work (sessions' agent
/// reports under `reports/<step>/<mac>.json`): `imaging/` next to the database.
pub fn imaging_dir(db: &Path) -> PathBuf {
    db.parent().unwrap_or(Path::new(".")).join("imaging")
}

/// The agent reports of step g, by machine name (a PC without a readable report is left out).
pub fn agent_reports_at_g(db: &Path, plan: &SavedPlan) -> BTreeMap<String, Report> {
    let dir = imaging_dir(db).join("reports").join("g");
    let mut out = BTreeMap::new();
    for m in &plan.machines {
        let Ok(mac) = m.mac.parse::<Mac>() else {
            continue;
        };
        let file = dir.join(format!("{}.json", mac.hyphenated()));
        // Bounded: an agent report is a few KiB; a larger file is not one.
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.len() > 1 << 20 {
            continue;
        }
        if let Some(r) = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Report>(&b).ok())
        {
            out.insert(m.hostname.clone(), r);
        }
    }
    out
}

/// Bytes each PC's agent reported writing at g (written + zeroed), by machine name.
fn written_at_g(db: &Path, plan: &SavedPlan) -> BTreeMap<String, u64> {
    agent_reports_at_g(db, plan)
        .into_iter()
        .filter_map(|(name, r)| match r.work {
            Work::Restore(f) => Some((name, f.written_bytes + f.zeroed_bytes)),
            Work::Capture(_) => None,
        })
        .collect()
}

/// Writes `report.md` and `report.html` in the campaign's folder; returns their paths.
pub(super) fn write(
    db: &Path,
    id: i64,
    state: &State,
    facts: &Facts,
) -> Result<(PathBuf, PathBuf), RunError> {
    let dir = campaign_dir(db, id);
    let md = dir.join("report.md");
    let html = dir.join("report.html");
    write_atomic(&md, report::markdown_with(state, facts).as_bytes())?;
    write_atomic(&html, report::html(state, facts).as_bytes())?;
    Ok((md, html))
}
