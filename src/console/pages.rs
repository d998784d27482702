//! What each page shows, gathered from the journal, the saved plan, the agents' reports, the store
//! and the inventory into plain serialisable values the templates render (blocking code: the
//! routes run it off the async threads). No value here holds a secret: the saved plan and options
//! hold references only, and sign-off tokens exist only as hashes.

use crate::campaign::journal::{Journal, JournalError};
use crate::campaign::live::{LiveFacts, Sample};
use crate::campaign::report::{self, Facts, ImageFacts};
use crate::campaign::run::{self, SavedPlan};
use crate::inventory::db::{InventoryDb, MachineRow};
use roomcast_proto::procedure::{Event, Phase, State, Status, Step, Timestamp};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// A page's data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The journal failed (or no such campaign).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Anything else, in words.
    #[error("{0}")]
    Other(String),
}

/// One row of the campaigns page.
#[derive(Debug, Serialize)]
pub struct CampaignRow {
    /// Campaign id.
    pub id: i64,
    /// Room id.
    pub room: String,
    /// Step now (`g:deploy`), or empty when ended.
    pub step: String,
    /// Start (UTC).
    pub start: String,
    /// End (UTC), empty while running.
    pub end: String,
    /// Outcome in words.
    pub outcome: String,
    /// `running`, `finished`, `failed`...
    pub phase: &'static str,
    /// The night it is scheduled for (its run's `--at`, UTC) while that run is under way or waits
    /// for it (`campaign::run::interrupted`); empty otherwise.
    pub scheduled: String,
}

fn time(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_rfc3339().replace('T', " ").replace('Z', ""))
        .unwrap_or_default()
}

/// Every campaign of the journal, newest first.
pub fn campaigns(db: &Path) -> Result<Vec<CampaignRow>, PageError> {
    let journal = Journal::open(db)?;
    let mut out = Vec::new();
    for (id, room, _) in journal.campaigns()? {
        let state = journal.state(id)?;
        out.push(CampaignRow {
            id,
            room,
            step: match &state.phase {
                Phase::At(s) => s.to_string(),
                _ => String::new(),
            },
            start: time(state.started_at),
            end: time(state.ended_at),
            outcome: state.phase.to_string(),
            phase: state.phase.word(),
            scheduled: time(
                crate::campaign::run::interrupted::read(db, id)
                    .and_then(|m| m.at)
                    .map(Timestamp),
            ),
        });
    }
    Ok(out)
}

/// One PC's tile on the live room page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tile {
    /// Hostname.
    pub name: String,
    /// The step it is at (`g:deploy`, `h:join`), or empty before g.
    pub step: String,
    /// `waiting`, `running`, `ok`, `failed`, `skipped`.
    pub state: &'static str,
    /// Bytes written at g, in words (from its agent's report).
    pub bytes: String,
    /// Rate at g, in words.
    pub rate: String,
    /// What went wrong, in plain words, and what to do.
    pub error: String,
}

/// The live room page.
#[derive(Debug, Serialize)]
pub struct RoomView {
    /// Campaign id.
    pub id: i64,
    /// Room id.
    pub room: String,
    /// `School (UAI)`.
    pub school: String,
    /// Where it stands, in words.
    pub outcome: String,
    /// The journal's last sequence number (what the live stream starts from).
    pub seq: i64,
    /// One tile per PC.
    pub tiles: Vec<Tile>,
    /// Time left at g, in words (estimate from the PCs done so far), or empty.
    pub time_left: String,
    /// The room's write rate over time (an SVG drawing, built here from numbers only).
    pub chart: String,
    /// PCs done / all, at g.
    pub done: usize,
    /// Whether the campaign waits for the teachers (step e).
    pub awaiting_signoff: bool,
}

use crate::campaign::report::human_bytes;

fn status_word(s: &Status) -> &'static str {
    match s {
        Status::Pending => "waiting",
        Status::Running { .. } => "running",
        Status::Waiting { .. } => "waiting",
        Status::Succeeded { .. } => "ok",
        Status::Failed { .. } => "failed",
        Status::Skipped { .. } => "skipped",
    }
}

/// What the running sessions of campaign `id` told (each PC's progress, the stream's samples at g).
pub fn live(db: &Path, id: i64) -> Result<LiveFacts, PageError> {
    Ok(crate::campaign::live::read(
        &Journal::open(db)?,
        id,
        Step::Deploy,
    )?)
}

/// A PC's progress at g while it runs: `(bytes, rate)` in words.
fn progress_words(p: &crate::campaign::live::PcProgress) -> (String, String) {
    let g = &p.progress;
    (
        format!(
            "{} of {} ({}%)",
            human_bytes(g.bytes_done),
            human_bytes(g.bytes_total),
            g.bytes_done * 100 / g.bytes_total.max(1)
        ),
        format!("{}/s", human_bytes(p.rate)),
    )
}

/// The tiles of a campaign (also what the live stream sends): bytes and rate from each agent's
/// report once it came, from its progress at g while it runs.
pub fn tiles(state: &State, facts: &Facts, live: &LiveFacts) -> Vec<Tile> {
    let Some(plan) = &state.plan else {
        return Vec::new();
    };
    plan.machines
        .iter()
        .map(|m| {
            let h = state.machine_status(m, Step::Join);
            let g = state.machine_status(m, Step::Deploy);
            let (step, st) = if !matches!(h, Status::Pending) {
                (Step::Join, h)
            } else if !matches!(g, Status::Pending) || state.phase == Phase::At(Step::Deploy) {
                (Step::Deploy, g)
            } else {
                (Step::Deploy, Status::Pending)
            };
            let reached = !matches!(st, Status::Pending) || state.phase == Phase::At(step);
            let written = facts.written.get(m).copied();
            let secs = match facts.timings.machines.get(&(m.clone(), Step::Deploy)) {
                Some((s, Some(e))) => Some((e.0 - s.0).max(1) as u64),
                _ => None,
            };
            let error = match &st {
                Status::Failed { reason, .. } => {
                    format!("{reason}. To do: {}", report::what_to_do(step, reason))
                }
                _ => String::new(),
            };
            let running = step == Step::Deploy && matches!(st, Status::Running { .. });
            let (bytes, rate) = match (written, live.pcs.get(m)) {
                (None, Some(p)) if running && p.step == Step::Deploy.letter().to_string() => {
                    progress_words(p)
                }
                _ => report::written_words(written, secs),
            };
            Tile {
                name: m.clone(),
                step: if reached {
                    step.to_string()
                } else {
                    String::new()
                },
                state: status_word(&st),
                bytes,
                rate,
                error,
            }
        })
        .collect()
}

/// The state and report facts of a campaign, with the image's facts from the store when given.
pub fn facts(
    db: &Path,
    store: Option<&Path>,
    id: i64,
) -> Result<(State, Facts, Option<SavedPlan>), PageError> {
    let journal = Journal::open(db)?;
    let (state, mut facts) =
        run::reports(&journal, db, id, false).map_err(|e| PageError::Other(e.to_string()))?;
    if let (Some(store), Some(image)) = (store, &state.image) {
        facts.image_info = image_facts(store, image);
    }
    Ok((state, facts, run::saved_plan(db, id)))
}

fn image_facts(store: &Path, image: &str) -> Option<ImageFacts> {
    let store = roomcast_store::Store::open(store).ok()?;
    let id = store.resolve(image).ok()?;
    let m = store.open_unverified(&id).ok()?;
    let label = &m.manifest_unchecked().label;
    Some(ImageFacts {
        name: label.name.clone(),
        version: label.version.clone(),
        size: m.manifest_unchecked().disk_size,
        signer: m.signer_fingerprint(),
    })
}

/// The live room page's data.
pub fn room(db: &Path, store: Option<&Path>, id: i64) -> Result<RoomView, PageError> {
    let (state, facts, plan) = facts(db, store, id)?;
    let seq = Journal::open(db)?.last_seq(id)?;
    let live = live(db, id)?;
    let tiles = tiles(&state, &facts, &live);
    let done = tiles
        .iter()
        .filter(|t| matches!(t.state, "ok" | "failed") || t.step == Step::Join.to_string())
        .count();
    // Time left at g: the mean time of the PCs done so far, times the PCs left, no parallelism
    // assumed beyond what was seen (an estimate, said as one).
    let ends: Vec<(Timestamp, Timestamp)> = facts
        .timings
        .machines
        .iter()
        .filter(|((_, s), _)| *s == Step::Deploy)
        .filter_map(|(_, (s, e))| e.map(|e| (*s, e)))
        .collect();
    let from_progress = time_left(&state, &live);
    let time_left = if let Some(t) = from_progress {
        t
    } else if state.phase == Phase::At(Step::Deploy) && !ends.is_empty() {
        let first = ends.iter().map(|(s, _)| s.0).min().unwrap_or(0);
        let last = ends.iter().map(|(_, e)| e.0).max().unwrap_or(0);
        let per_pc = (last - first).max(1) as f64 / ends.len() as f64;
        let left = tiles.len().saturating_sub(done) as f64 * per_pc;
        format!("about {} min (estimate)", (left / 60.0).ceil() as i64)
    } else {
        String::new()
    };
    Ok(RoomView {
        id,
        room: state
            .plan
            .as_ref()
            .map(|p| p.room.clone())
            .unwrap_or_default(),
        school: plan
            .as_ref()
            .filter(|p| !p.school.is_empty())
            .map(|p| format!("{} ({})", p.school, p.uai))
            .unwrap_or_default(),
        outcome: state.phase.to_string(),
        seq,
        chart: chart(&facts, &live),
        done,
        tiles,
        time_left,
        awaiting_signoff: state.phase == Phase::At(Step::Signoff),
    })
}

/// Time left at g from the PCs' own progress: the slowest running PC's bytes left over its rate so
/// far (the PCs of one stream finish together; each one's rate is what it really got). `None`
/// outside g or before any running PC said how far it is.
fn time_left(state: &State, live: &LiveFacts) -> Option<String> {
    if state.phase != Phase::At(Step::Deploy) {
        return None;
    }
    let g = Step::Deploy.letter().to_string();
    let secs = live
        .pcs
        .iter()
        .filter(|(m, p)| {
            p.step == g
                && matches!(
                    state.machine_status(m, Step::Deploy),
                    Status::Running { .. }
                )
        })
        .filter(|(_, p)| p.rate > 0)
        .map(|(_, p)| (p.progress.bytes_total - p.progress.bytes_done).div_ceil(p.rate))
        .max()?;
    Some(if secs < 120 {
        format!("about {secs} s (from the PCs' progress)")
    } else {
        format!("about {} min (from the PCs' progress)", secs.div_ceil(60))
    })
}

/// The room's chart: the multicast stream's rate and loss over time when the sender sampled them
/// (g by multicast), else the bytes the PCs reported written. Numbers only go in.
pub fn chart(facts: &Facts, live: &LiveFacts) -> String {
    if live.samples.is_empty() {
        return written_chart(facts);
    }
    stream_chart(&live.samples)
}

/// An SVG of the stream over time: the rate on the wire (blue, left scale) and the worst
/// receiver's loss (red, dashed, its own scale, percent), one point per sample (at most
/// [`crate::campaign::live::MAX_SAMPLES`]).
fn stream_chart(samples: &[Sample]) -> String {
    let (w, h) = (600.0, 120.0);
    let first = samples.first().map_or(0, |s| s.stamp_ms);
    let last = samples.last().map_or(0, |s| s.stamp_ms).max(first + 1);
    let x = |t: i64| (t - first) as f64 / (last - first) as f64 * (w - 10.0) + 5.0;
    let max_rate = samples.iter().map(|s| s.wire_bps).max().unwrap_or(0).max(1) as f64;
    // The worst PC's loss: a room's median hides the one PC on a bad cable.
    let loss = |s: &Sample| s.worst_loss.or(s.loss).unwrap_or(0.0) * 100.0;
    let median = |s: &Sample| s.loss.unwrap_or(0.0) * 100.0;
    let max_loss = samples.iter().map(loss).fold(1.0, f64::max);
    let y = |v: f64, max: f64| h - 5.0 - v / max * (h - 25.0);
    let line = |f: &dyn Fn(&Sample) -> f64, max: f64| {
        let mut pts: Vec<String> = samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.stamp_ms), y(f(s), max)))
            .collect();
        if pts.len() == 1 {
            pts.push(format!("{:.1},{:.1}", w - 5.0, y(f(&samples[0]), max)));
        }
        pts.join(" ")
    };
    let now = samples.last().expect("samples");
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 {w} {h}\" \
         width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"stream rate and loss over time\">\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#f6f6f6\" stroke=\"#999\"/>\
         <polyline class=\"rate\" fill=\"none\" stroke=\"#1565c0\" stroke-width=\"2\" points=\"{}\"/>\
         <polyline class=\"loss\" fill=\"none\" stroke=\"#c62828\" stroke-width=\"1.5\" \
         stroke-dasharray=\"4 2\" points=\"{}\"/>\
         <text x=\"8\" y=\"14\" font-size=\"11\" fill=\"#1565c0\">stream {} now, peak {} over {} s</text>\
         <text x=\"{:.0}\" y=\"14\" font-size=\"11\" fill=\"#c62828\" text-anchor=\"end\">loss {:.1}% now \
         (worst PC; median {:.1}%), scale {:.1}%</text></svg>",
        line(&|s| s.wire_bps as f64, max_rate),
        line(&loss, max_loss),
        bits(now.wire_bps),
        bits(max_rate as u64),
        (last - first + 999) / 1000,
        w - 8.0,
        loss(now),
        median(now),
        max_loss,
    )
}

/// Bits per second in words.
fn bits(bps: u64) -> String {
    if bps >= 1_000_000 {
        format!("{:.1} Mbit/s", bps as f64 / 1e6)
    } else {
        format!("{:.0} kbit/s", bps as f64 / 1e3)
    }
}

/// An SVG of the room's write rate over time: bytes the PCs reported written at g, spread evenly
/// over each PC's g, summed in at most 60 time buckets. Numbers only go in (no text from outside).
fn written_chart(facts: &Facts) -> String {
    let spans: Vec<(i64, i64, u64)> = facts
        .timings
        .machines
        .iter()
        .filter(|((_, step), _)| *step == Step::Deploy)
        .filter_map(|((m, _), (s, e))| Some((s.0, (*e)?.0, *facts.written.get(m)?)))
        // A PC whose disk already held the image wrote nothing: no rate to draw.
        .filter(|(_, _, bytes)| *bytes > 0)
        .collect();
    let (w, h) = (600.0, 120.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 {w} {h}\" \
         width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"write rate over time\">\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#f6f6f6\" stroke=\"#999\"/>"
    );
    let first = spans.iter().map(|s| s.0).min();
    let last = spans.iter().map(|s| s.1).max();
    let (Some(first), Some(last)) = (first, last) else {
        svg.push_str(
            "<text x=\"8\" y=\"64\" font-size=\"12\">no PC has reported bytes written at g yet</text></svg>",
        );
        return svg;
    };
    let bucket = ((last - first + 1) / 60).max(1);
    let n = ((last - first) / bucket + 1) as usize;
    let mut rate = vec![0.0f64; n];
    for (s, e, bytes) in spans {
        let secs = (e - s + 1) as f64;
        for t in s..=e {
            rate[((t - first) / bucket) as usize] += bytes as f64 / secs / bucket as f64;
        }
    }
    let max = rate.iter().cloned().fold(1.0, f64::max);
    let x = |i: usize| i as f64 / n.max(2).saturating_sub(1) as f64 * (w - 10.0) + 5.0;
    let y = |v: f64| h - 5.0 - v / max * (h - 25.0);
    let mut points: Vec<String> = rate
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
        .collect();
    if n == 1 {
        points.push(format!("{:.1},{:.1}", w - 5.0, y(rate[0])));
    }
    svg.push_str(&format!(
        "<polyline fill=\"none\" stroke=\"#1565c0\" stroke-width=\"2\" points=\"{}\"/>\
         <text x=\"8\" y=\"14\" font-size=\"11\">peak {}/s over {} s</text></svg>",
        points.join(" "),
        human_bytes(max as u64),
        last - first + 1
    ));
    svg
}

/// One line of the journal page.
#[derive(Debug, Serialize)]
pub struct JournalLine {
    /// Sequence number.
    pub seq: i64,
    /// Orchestrator run.
    pub run: i64,
    /// When (UTC).
    pub at: String,
    /// What, in words.
    pub what: String,
}

/// A journal event in words.
pub fn describe(event: &Event) -> String {
    match event {
        Event::Started(p) => format!(
            "campaign started for room {} ({} PCs, master {})",
            p.room,
            p.machines.len(),
            p.master
        ),
        Event::Resumed => "resumed".into(),
        Event::StepSucceeded { step } => format!("{step}: ok"),
        Event::StepFailed { step, reason } => format!("{step}: failed: {reason}"),
        Event::ImageCaptured { image } => format!("f: image captured {image}"),
        Event::Refused(r) => format!(
            "refused: {}",
            r.iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Event::Signoff {
            by,
            verdict,
            comment,
        } => format!(
            "e: signed off by {by}: {verdict:?}{}",
            comment
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        ),
        Event::MachineSucceeded { step, machine } => format!("{step} on {machine}: ok"),
        Event::MachineFailed {
            step,
            machine,
            reason,
        } => format!("{step} on {machine}: failed: {reason}"),
        Event::Aborted { by } => format!("aborted by {by}"),
    }
}

/// The journal of a campaign, in order.
pub fn journal(db: &Path, id: i64) -> Result<Vec<JournalLine>, PageError> {
    Ok(Journal::open(db)?
        .events(id)?
        .iter()
        .map(|r| JournalLine {
            seq: r.seq,
            run: r.run,
            at: time(Some(r.at)),
            what: describe(&r.event),
        })
        .collect())
}

/// One image of the images page.
#[derive(Debug, Serialize)]
pub struct ImageRow {
    /// Image id (hex).
    pub id: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Disk size in words.
    pub size: String,
    /// Signer's fingerprint.
    pub signer: String,
    /// `signature verified`, or why not.
    pub verify: String,
    /// Profile it was built from.
    pub profile: String,
    /// Rooms (campaigns) that captured or deployed it.
    pub rooms: Vec<String>,
}

/// The store's images, with who signed each, whether its signature verifies against the trusted
/// signers, and the rooms and profile using it.
pub fn images(db: &Path, store: &Path) -> Result<Vec<ImageRow>, PageError> {
    let s = roomcast_store::Store::open(store).map_err(|e| PageError::Other(e.to_string()))?;
    let journal = Journal::open(db)?;
    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, room, _) in journal.campaigns()? {
        if let Some(image) = journal.state(id)?.image {
            let rooms = used.entry(image).or_default();
            if !rooms.contains(&room) {
                rooms.push(room);
            }
        }
    }
    let mut out = Vec::new();
    for id in s.image_ids().map_err(|e| PageError::Other(e.to_string()))? {
        let hex = id.to_string();
        match s.open_unverified(&id) {
            Ok(m) => {
                let label = &m.manifest_unchecked().label;
                out.push(ImageRow {
                    name: label.name.clone(),
                    version: label.version.clone(),
                    size: human_bytes(m.manifest_unchecked().disk_size),
                    signer: m.signer_fingerprint(),
                    verify: match s.open_verified(&id) {
                        Ok(_) => "signature verified".into(),
                        Err(e) => format!("NOT verified: {e}"),
                    },
                    profile: label.profile.clone().unwrap_or_default(),
                    rooms: used.get(&hex).cloned().unwrap_or_default(),
                    id: hex,
                });
            }
            Err(e) => out.push(ImageRow {
                id: hex,
                name: String::new(),
                version: String::new(),
                size: String::new(),
                signer: String::new(),
                verify: format!("unreadable: {e}"),
                profile: String::new(),
                rooms: Vec::new(),
            }),
        }
    }
    Ok(out)
}

/// One row of the GLPI queue.
#[derive(Debug, Serialize)]
pub struct QueueRow {
    /// What it asks GLPI.
    pub kind: &'static str,
    /// Failed attempts.
    pub attempts: u32,
    /// Last error.
    pub error: String,
    /// Sent (UTC) or empty.
    pub sent: String,
}

/// One machine of the inventory page.
#[derive(Debug, Serialize)]
pub struct MachineLine {
    /// Hostname.
    pub hostname: String,
    /// School UAI.
    pub school: String,
    /// Room.
    pub room: String,
    /// MAC address.
    pub mac: String,
    /// Serial number.
    pub serial: String,
    /// Last image deployed: version (and the id's start).
    pub image: String,
    /// When the last intervention ended (UTC).
    pub when: String,
    /// Its result.
    pub result: String,
}

impl From<MachineRow> for MachineLine {
    fn from(m: MachineRow) -> Self {
        MachineLine {
            hostname: m.machine.hostname,
            school: m.machine.school_uai,
            room: m.machine.room,
            mac: m.machine.mac,
            serial: m.machine.serial,
            image: match (m.last_image_version, m.last_image_id) {
                (Some(v), Some(id)) => format!("{v} ({})", &id[..12.min(id.len())]),
                (Some(v), None) => v,
                (None, Some(id)) => id[..12.min(id.len())].to_string(),
                (None, None) => String::new(),
            },
            when: time(m.last_intervention_at),
            result: m
                .last_result
                .map(|r| format!("{r:?}").to_lowercase())
                .unwrap_or_default(),
        }
    }
}

/// The inventory page.
#[derive(Debug, Serialize)]
pub struct InventoryView {
    /// Machines (of a room when one is asked).
    pub machines: Vec<MachineLine>,
    /// Pending and retrying deliveries to GLPI, newest first (at most 200).
    pub queue: Vec<QueueRow>,
    /// Delivered, pending, retrying.
    pub stats: (u64, u64, u64),
}

/// Machines, their last image and intervention, and the GLPI queue.
pub fn inventory(db: &Path, room: Option<&str>) -> Result<InventoryView, PageError> {
    let other = |e: crate::inventory::db::DbError| PageError::Other(e.to_string());
    let inv = InventoryDb::open(db).map_err(other)?;
    let machines = inv
        .machines(room)
        .map_err(other)?
        .into_iter()
        .map(MachineLine::from)
        .collect();
    let stats = inv.outbox_stats().map_err(other)?;
    let queue = inv
        .outbox_all()
        .map_err(other)?
        .into_iter()
        .filter(|r| r.sent_at.is_none())
        .rev()
        .take(200)
        .map(|r| QueueRow {
            kind: r.payload.kind(),
            attempts: r.attempts,
            error: r.last_error.unwrap_or_default(),
            sent: time(r.sent_at),
        })
        .collect();
    Ok(InventoryView {
        machines,
        queue,
        stats: (stats.sent, stats.pending, stats.retrying),
    })
}

/// What the teacher's sign-off page shows.
#[derive(Debug, Serialize)]
pub struct SignoffView {
    /// The teacher the link is for.
    pub teacher: String,
    /// Room.
    pub room: String,
    /// School.
    pub school: String,
    /// Profile.
    pub profile: String,
    /// Software on the master: name and version.
    pub software: Vec<(String, String)>,
    /// Technical tests of d and their result.
    pub tests: Vec<String>,
    /// Step d's result in words.
    pub tests_result: String,
}

/// The sign-off page's data for a campaign at e.
pub fn signoff_view(db: &Path, id: i64, teacher: &str, state: &State) -> SignoffView {
    let plan = run::saved_plan(db, id);
    let d = state.step_status(Step::Tests);
    SignoffView {
        teacher: teacher.to_string(),
        room: state
            .plan
            .as_ref()
            .map(|p| p.room.clone())
            .unwrap_or_default(),
        school: plan.as_ref().map(|p| p.school.clone()).unwrap_or_default(),
        profile: plan.as_ref().map(|p| p.profile.clone()).unwrap_or_default(),
        software: plan
            .as_ref()
            .map(|p| {
                p.software
                    .iter()
                    .map(|s| (s.name.clone(), s.version.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        tests: plan
            .as_ref()
            .map(|p| p.tests.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default(),
        tests_result: match d {
            Status::Succeeded { .. } => "every technical test passed".into(),
            Status::Failed { reason, .. } => format!("failed: {reason}"),
            other => status_word(&other).into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_campaign_waiting_for_its_night_shows_when() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("journal.db");
        let plan = roomcast_proto::procedure::Plan {
            room: "B204".into(),
            machines: vec!["PC01".into()],
            master: "PC01".into(),
            mode: roomcast_proto::procedure::DeployMode::SoftwareOnly,
            retries: 0,
            signoff_required: false,
            signoff_allowed: vec![],
        };
        let (id, _) = Journal::open(&db)
            .unwrap()
            .start(&plan, Timestamp(1_796_680_800))
            .unwrap();
        assert_eq!(
            campaigns(&db).unwrap()[0].scheduled,
            "",
            "no run marker: nothing scheduled"
        );
        crate::campaign::run::interrupted::mark(
            &db,
            id,
            &crate::campaign::run::interrupted::RunMarker {
                at: Some(1_796_767_200),
                until: None,
                parallel: 4,
            },
        )
        .unwrap();
        let row = &campaigns(&db).unwrap()[0];
        assert_eq!(row.scheduled, time(Some(Timestamp(1_796_767_200))));
        assert!(
            row.scheduled.starts_with("2026-12-08 22:00"),
            "{}",
            row.scheduled
        );
    }
    use roomcast_proto::procedure::{DeployMode, Plan, replay};

    #[test]
    fn tiles_say_what_went_wrong_and_the_chart_draws_the_reported_bytes() {
        let plan = Plan {
            room: "B204".into(),
            machines: vec!["PC01".into(), "PC02".into(), "PC03".into()],
            master: "PC01".into(),
            mode: DeployMode::SoftwareOnly,
            retries: 0,
            signoff_required: false,
            signoff_allowed: vec![],
        };
        let events = [
            Event::Started(plan),
            Event::StepSucceeded {
                step: Step::Collect,
            },
            Event::MachineSucceeded {
                step: Step::Deploy,
                machine: "PC01".into(),
            },
            Event::MachineFailed {
                step: Step::Deploy,
                machine: "PC02".into(),
                reason: "PC02 never booted".into(),
            },
        ];
        let times = [0, 10, 70, 130].map(Timestamp);
        let state = replay(events.iter().zip(times));
        let empty = Facts::default();
        let none = LiveFacts::default();
        assert!(chart(&empty, &none).contains("no PC has reported bytes written at g yet"));
        let facts = Facts {
            timings: report::timings(events.iter().zip(times)),
            written: [("PC01".to_string(), 60 << 20)].into(),
            ..Facts::default()
        };
        let t = tiles(&state, &facts, &none);
        assert_eq!(t.len(), 3);
        assert_eq!((t[0].state, t[0].bytes.as_str()), ("ok", "60.0 MiB"));
        assert_eq!(t[0].rate, "1.0 MiB/s");
        let nothing = Facts {
            written: [("PC01".to_string(), 0)].into(),
            timings: facts.timings.clone(),
            ..Facts::default()
        };
        let t0 = &tiles(&state, &nothing, &none)[0];
        assert_eq!(
            (t0.bytes.as_str(), t0.rate.as_str()),
            ("nothing to write: the disk held the image", "")
        );
        assert!(
            chart(&nothing, &none).contains("no PC has reported bytes written at g yet"),
            "a PC that wrote nothing draws no rate"
        );
        assert_eq!(t[1].state, "failed");
        assert!(
            t[1].error
                .starts_with("PC02 never booted. To do: check that the PC is powered")
        );
        assert_eq!(t[2].state, "running");
        let svg = chart(&facts, &none);
        assert!(
            svg.contains("<polyline") && svg.contains("over 61 s"),
            "{svg}"
        );

        // While g runs: PC03's progress on its tile, time left from it, the stream's chart.
        let mut live = LiveFacts::default();
        live.pcs.insert(
            "PC03".into(),
            crate::campaign::live::PcProgress {
                step: "g".into(),
                progress: roomcast_proto::contract::Progress {
                    bytes_done: 30 << 20,
                    bytes_total: 90 << 20,
                    chunks_done: 30,
                    chunks_total: 90,
                    elapsed_ms: 0,
                },
                rate: 2 << 20,
                stamp_ms: 1,
            },
        );
        let t = tiles(&state, &facts, &live);
        assert_eq!(t[2].bytes, "30.0 MiB of 90.0 MiB (33%)");
        assert_eq!(t[2].rate, "2.0 MiB/s");
        assert_eq!(t[0].bytes, "60.0 MiB", "a reported PC keeps its report");
        assert_eq!(
            time_left(&state, &live).as_deref(),
            Some("about 30 s (from the PCs' progress)")
        );
        live.samples = (0..5)
            .map(|i| Sample {
                stamp_ms: i * 1000,
                wire_bps: 80_000_000,
                pacing_bps: 90_000_000,
                loss: Some(0.01 * i as f64),
                worst_loss: Some(0.02 * i as f64),
            })
            .collect();
        let svg = chart(&facts, &live);
        assert!(
            svg.contains("class=\"rate\"") && svg.contains("class=\"loss\""),
            "{svg}"
        );
        assert!(
            svg.contains("loss 8.0% now (worst PC; median 4.0%)"),
            "{svg}"
        );
        assert!(svg.contains("stream 80.0 Mbit/s now"), "{svg}");
    }
}
