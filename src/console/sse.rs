//! The live room: a server-sent-event stream per open room page. Every 200 ms it asks the journal
//! for its last sequence number (one indexed query); when it moved, it rebuilds the tiles and sends
//! each tile that changed as one `tile` message — at most one message per PC per second (a PC that
//! changes again sooner is sent on a later tick, with its newest state) — and a `summary` message
//! (outcome, PCs done, time left) at most once a second. A change in the journal so reaches the
//! page within about 1.2 s at worst, usually 0.2 s.

use super::pages;
use super::routes::App;
use crate::campaign::journal::Journal;
use axum::response::sse::Event;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often the journal is looked at.
pub const POLL: Duration = Duration::from_millis(200);
/// At most one message per PC (and one summary) per this.
pub const PER_PC: Duration = Duration::from_secs(1);

#[derive(Serialize, PartialEq, Clone)]
struct Summary {
    outcome: String,
    done: usize,
    total: usize,
    time_left: String,
    seq: i64,
}

struct Live {
    app: Arc<App>,
    id: i64,
    journal: Option<Journal>,
    seq: i64,
    sent: BTreeMap<String, (pages::Tile, Instant)>,
    /// Tiles whose newest state is not sent yet.
    dirty: BTreeMap<String, pages::Tile>,
    summary: Option<(Summary, Instant)>,
    pending_summary: Option<Summary>,
    out: VecDeque<Event>,
}

/// What one poll found.
struct Found {
    journal: Option<Journal>,
    seq: i64,
    tiles: Option<Vec<pages::Tile>>,
    summary: Option<Summary>,
}

fn poll(app: &App, id: i64, journal: Option<Journal>, seen: i64) -> Found {
    let db = &app.config.db;
    let journal = journal.or_else(|| Journal::open(db).ok());
    let seq = journal
        .as_ref()
        .and_then(|j| j.last_seq(id).ok())
        .unwrap_or(seen);
    if seq == seen {
        return Found {
            journal,
            seq,
            tiles: None,
            summary: None,
        };
    }
    match pages::room(db, app.config.store.as_deref(), id) {
        Ok(view) => Found {
            journal,
            seq,
            summary: Some(Summary {
                outcome: view.outcome,
                done: view.done,
                total: view.tiles.len(),
                time_left: view.time_left,
                seq: view.seq,
            }),
            tiles: Some(view.tiles),
        },
        Err(e) => {
            tracing::warn!(campaign = id, %e, "live room");
            Found {
                journal,
                seq: seen,
                tiles: None,
                summary: None,
            }
        }
    }
}

impl Live {
    fn flush(&mut self, now: Instant) {
        let ready: Vec<String> = self
            .dirty
            .keys()
            .filter(|k| {
                self.sent
                    .get(*k)
                    .is_none_or(|(_, at)| now.duration_since(*at) >= PER_PC)
            })
            .cloned()
            .collect();
        for name in ready {
            if let Some(tile) = self.dirty.remove(&name) {
                if let Ok(ev) = Event::default().event("tile").json_data(&tile) {
                    self.out.push_back(ev);
                }
                self.sent.insert(name, (tile, now));
            }
        }
        if let Some(s) = self.pending_summary.take() {
            let due = self
                .summary
                .as_ref()
                .is_none_or(|(_, at)| now.duration_since(*at) >= PER_PC);
            if due {
                if let Ok(ev) = Event::default().event("summary").json_data(&s) {
                    self.out.push_back(ev);
                }
                self.summary = Some((s, now));
            } else {
                self.pending_summary = Some(s);
            }
        }
    }
}

/// The event stream of campaign `id`, starting after journal sequence `since` (what the page
/// already shows).
pub fn stream(
    app: Arc<App>,
    id: i64,
    since: i64,
) -> impl futures_lite::Stream<Item = Result<Event, Infallible>> {
    let live = Live {
        app,
        id,
        journal: None,
        seq: since,
        sent: BTreeMap::new(),
        dirty: BTreeMap::new(),
        summary: None,
        pending_summary: None,
        out: VecDeque::new(),
    };
    futures_lite::stream::unfold(live, |mut live| async move {
        loop {
            if let Some(ev) = live.out.pop_front() {
                live.app.sse_messages.fetch_add(1, Ordering::Relaxed);
                return Some((Ok(ev), live));
            }
            tokio::time::sleep(POLL).await;
            let (app, id, journal, seq) =
                (live.app.clone(), live.id, live.journal.take(), live.seq);
            let found = tokio::task::spawn_blocking(move || poll(&app, id, journal, seq))
                .await
                .ok()?;
            live.journal = found.journal;
            live.seq = found.seq;
            if let Some(tiles) = found.tiles {
                for t in tiles {
                    let unchanged = live.sent.get(&t.name).is_some_and(|(s, _)| *s == t);
                    if unchanged {
                        live.dirty.remove(&t.name);
                    } else {
                        live.dirty.insert(t.name.clone(), t);
                    }
                }
            }
            if let Some(s) = found.summary
                && live.summary.as_ref().is_none_or(|(old, _)| *old != s)
            {
                live.pending_summary = Some(s);
            }
            live.flush(Instant::now());
        }
    })
}
