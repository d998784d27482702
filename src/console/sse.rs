//! The live room: a server-sent-event stream per open room page. Every 200 ms it asks the journal
//! for its last sequence number and the live tables for their newest stamp (indexed queries: the
//! PCs' progress and the stream's samples at g, [`crate::campaign::live`], written at most once a
//! second); when either moved, it rebuilds the tiles and sends each tile that changed as one `tile`
//! message, and a `summary` message (outcome, PCs done, time left). Progress alone (bytes, rate,
//! time left) is sent at most once per PC, and one summary, per second (a PC that moves again
//! sooner is sent on a later tick, with its newest figures); a change the journal records (a PC's
//! step, state or error; the outcome, the PCs done) goes on the next tick whatever the last
//! message was, and restarts that second. A change in the journal so reaches the page within one
//! poll, 0.2 s plus the page's work, while a PC still gets at most one progress message a second.
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
/// At most one progress message per PC (and one summary) per this.
pub const PER_PC: Duration = Duration::from_secs(1);

/// Whether `new` differs from the tile last sent in what the journal records (step, state,
/// error), not only in its progress figures: such a change is not held back.
fn journal_change(sent: &pages::Tile, new: &pages::Tile) -> bool {
    (&sent.step, sent.state, &sent.error) != (&new.step, new.state, &new.error)
}

#[derive(Serialize, PartialEq, Clone)]
struct Summary {
    outcome: String,
    done: usize,
    total: usize,
    time_left: String,
    seq: i64,
    /// The live tables' stamp (the chart is fetched again when it moves).
    stamp: i64,
}

struct Live {
    app: Arc<App>,
    id: i64,
    journal: Option<Journal>,
    seq: i64,
    stamp: i64,
    pace: Pace,
}

/// What was sent to one page and what waits: the pacing of its messages.
#[derive(Default)]
struct Pace {
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
    stamp: i64,
    tiles: Option<Vec<pages::Tile>>,
    summary: Option<Summary>,
}

fn poll(app: &App, id: i64, journal: Option<Journal>, seen: (i64, i64)) -> Found {
    let db = &app.config.db;
    let journal = journal.or_else(|| Journal::open(db).ok());
    let seq = journal
        .as_ref()
        .and_then(|j| j.last_seq(id).ok())
        .unwrap_or(seen.0);
    let stamp = journal
        .as_ref()
        .and_then(|j| crate::campaign::live::stamp(j, id).ok())
        .unwrap_or(seen.1);
    if (seq, stamp) == seen {
        return Found {
            journal,
            seq,
            stamp,
            tiles: None,
            summary: None,
        };
    }
    match pages::room(db, app.config.store.as_deref(), id) {
        Ok(view) => Found {
            journal,
            seq,
            stamp,
            summary: Some(Summary {
                outcome: view.outcome,
                done: view.done,
                total: view.tiles.len(),
                time_left: view.time_left,
                seq: view.seq,
                stamp,
            }),
            tiles: Some(view.tiles),
        },
        Err(e) => {
            tracing::warn!(campaign = id, %e, "live room");
            Found {
                journal,
                seq: seen.0,
                stamp: seen.1,
                tiles: None,
                summary: None,
            }
        }
    }
}

impl Pace {
    fn flush(&mut self, now: Instant) {
        let ready: Vec<String> = self
            .dirty
            .iter()
            .filter(|(k, tile)| {
                self.sent.get(*k).is_none_or(|(last, at)| {
                    journal_change(last, tile) || now.duration_since(*at) >= PER_PC
                })
            })
            .map(|(k, _)| k)
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
            // Outcome and PCs done come from the journal: not held back either.
            let due = self.summary.as_ref().is_none_or(|(last, at)| {
                (&last.outcome, last.done) != (&s.outcome, s.done)
                    || now.duration_since(*at) >= PER_PC
            });
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
        stamp: 0,
        pace: Pace::default(),
    };
    futures_lite::stream::unfold(live, |mut live| async move {
        loop {
            if let Some(ev) = live.pace.out.pop_front() {
                live.app.sse_messages.fetch_add(1, Ordering::Relaxed);
                return Some((Ok(ev), live));
            }
            tokio::time::sleep(POLL).await;
            let (app, id, journal, seen) = (
                live.app.clone(),
                live.id,
                live.journal.take(),
                (live.seq, live.stamp),
            );
            let found = tokio::task::spawn_blocking(move || poll(&app, id, journal, seen))
                .await
                .ok()?;
            live.journal = found.journal;
            live.seq = found.seq;
            live.stamp = found.stamp;
            if let Some(tiles) = found.tiles {
                for t in tiles {
                    let unchanged = live.pace.sent.get(&t.name).is_some_and(|(s, _)| *s == t);
                    if unchanged {
                        live.pace.dirty.remove(&t.name);
                    } else {
                        live.pace.dirty.insert(t.name.clone(), t);
                    }
                }
            }
            if let Some(s) = found.summary
                && live.pace.summary.as_ref().is_none_or(|(old, _)| *old != s)
            {
                live.pace.pending_summary = Some(s);
            }
            live.pace.flush(Instant::now());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(state: &'static str, bytes: &str) -> pages::Tile {
        pages::Tile {
            name: "B204-P01".into(),
            step: "g:deploy".into(),
            state,
            bytes: bytes.into(),
            rate: String::new(),
            error: String::new(),
        }
    }

    #[test]
    fn a_journal_change_is_not_held_back_and_progress_waits_its_second() {
        let (running, done) = (tile("running", "1 MiB"), tile("ok", "2 MiB"));
        assert!(journal_change(&running, &done));
        assert!(!journal_change(&running, &tile("running", "2 MiB")));
        let mut pace = Pace::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        pace.dirty.insert(running.name.clone(), running.clone());
        pace.flush(at(0));
        assert_eq!(pace.out.len(), 1, "the first state goes at once");
        // Progress 200 ms later waits for its second...
        pace.dirty
            .insert(running.name.clone(), tile("running", "1.5 MiB"));
        pace.flush(at(200));
        assert_eq!(pace.out.len(), 1, "progress is held back");
        // ...but the PC's result, 400 ms later, is not held back (it replaces the pending figures).
        pace.dirty.insert(done.name.clone(), done.clone());
        pace.flush(at(400));
        assert_eq!(
            pace.out.len(),
            2,
            "the journal's change goes on the next tick"
        );
        assert!(pace.dirty.is_empty());
        // And the next progress-only change waits a second from that message.
        pace.dirty.insert(done.name.clone(), tile("ok", "2.5 MiB"));
        pace.flush(at(1300));
        assert_eq!(pace.out.len(), 2);
        pace.flush(at(1400));
        assert_eq!(pace.out.len(), 3);
    }
}
