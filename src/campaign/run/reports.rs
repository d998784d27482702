//! The morning report of a run: Markdown and HTML next to the journal, from the replayed state,
//! the journal's times and the byte figures of the plan saved at `start`.

use super::RunError;
use super::options::{campaign_dir, saved_plan, write_atomic};
use crate::campaign::journal::Journal;
use crate::campaign::report::{self, Facts};
use roomcast_proto::procedure::State;
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
    }
    Ok((state, facts))
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
