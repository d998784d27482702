//! The campaign journal: an append-only log of procedure events in SQLite. Resume = replay.
//!
//! Every event is written (and synced) before the orchestrator acts on its consequences, so after a
//! crash or a power cut, replaying the log through [`roomcast_proto::procedure::transition`] gives the exact
//! state the campaign was in, and [`roomcast_proto::procedure::pending_actions`] what was in flight.
//!
//! Tables are prefixed `campaign_` and migrated from their own list, tracked in
//! `campaign_migrations` (not `PRAGMA user_version`, which the inventory's migrations may own), so the
//! journal can live in the same database file as the inventory.

use roomcast_proto::procedure::{self, Action, Event, Plan, State, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};

/// The journal's own migrations, applied in order; index + 1 is the version recorded in
/// `campaign_migrations`. Never edit a shipped entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: campaigns, orchestrator runs, and the append-only event log.
    "CREATE TABLE campaign_campaigns (
        id          INTEGER PRIMARY KEY,
        room        TEXT NOT NULL,
        created_at  INTEGER NOT NULL
     );
     CREATE TABLE campaign_runs (
        campaign_id INTEGER NOT NULL REFERENCES campaign_campaigns(id),
        run         INTEGER NOT NULL,
        started_at  INTEGER NOT NULL,
        PRIMARY KEY (campaign_id, run)
     );
     CREATE TABLE campaign_events (
        campaign_id INTEGER NOT NULL REFERENCES campaign_campaigns(id),
        seq         INTEGER NOT NULL,
        run         INTEGER NOT NULL,
        at          INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        body        TEXT NOT NULL,
        PRIMARY KEY (campaign_id, seq)
     );
     CREATE TRIGGER campaign_events_no_update BEFORE UPDATE ON campaign_events
        BEGIN SELECT RAISE(ABORT, 'campaign_events is append-only'); END;
     CREATE TRIGGER campaign_events_no_delete BEFORE DELETE ON campaign_events
        BEGIN SELECT RAISE(ABORT, 'campaign_events is append-only'); END;",
    // 2: what a running session tells (issue 16), for the console; bounded, not a log (see
    // `campaign::live`): the newest progress of each PC, and the stream's last samples.
    "CREATE TABLE campaign_progress (
        campaign_id  INTEGER NOT NULL REFERENCES campaign_campaigns(id),
        machine      TEXT NOT NULL,
        step         TEXT NOT NULL,
        bytes_done   INTEGER NOT NULL,
        bytes_total  INTEGER NOT NULL,
        chunks_done  INTEGER NOT NULL,
        chunks_total INTEGER NOT NULL,
        rate         INTEGER NOT NULL,
        stamp_ms     INTEGER NOT NULL,
        PRIMARY KEY (campaign_id, machine)
     );
     CREATE TABLE campaign_stream (
        campaign_id  INTEGER NOT NULL REFERENCES campaign_campaigns(id),
        step         TEXT NOT NULL,
        stamp_ms     INTEGER NOT NULL,
        wire_bps     INTEGER NOT NULL,
        pacing_bps   INTEGER NOT NULL,
        loss_ppm     INTEGER,
        worst_ppm    INTEGER
     );
     CREATE INDEX campaign_stream_by_time ON campaign_stream (campaign_id, stamp_ms);",
];

/// Errors of the journal; each names the database file.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// SQLite failed.
    #[error("journal {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// A stored event could not be decoded (written by a newer roomcast, or damaged).
    #[error("journal {path}: campaign {campaign} event {seq}: {source}")]
    Decode {
        /// The database file.
        path: PathBuf,
        /// Campaign id.
        campaign: i64,
        /// Event sequence number.
        seq: i64,
        /// The cause.
        source: serde_json::Error,
    },
    /// No campaign with that id.
    #[error("journal {path}: no campaign {campaign}")]
    NoCampaign {
        /// The database file.
        path: PathBuf,
        /// Campaign id.
        campaign: i64,
    },
    /// The database was migrated by a newer roomcast.
    #[error("journal {path}: schema version {found} is newer than this roomcast ({known})")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Version found.
        found: i64,
        /// Latest version known here.
        known: i64,
    },
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Position in the campaign's log, from 1.
    pub seq: i64,
    /// Which orchestrator run recorded it (1 for the first, +1 per resume).
    pub run: i64,
    /// When.
    pub at: Timestamp,
    /// The event.
    pub event: Event,
}

/// The journal database.
pub struct Journal {
    conn: Connection,
    path: PathBuf,
}

impl Journal {
    /// Opens (creating if needed) the journal in `path` and applies missing migrations.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let conn = Connection::open(path).map_err(|source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        Journal::init(conn, path.to_path_buf())
    }

    /// An in-memory journal (tests, dry runs).
    pub fn open_in_memory() -> Result<Journal, JournalError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| JournalError::Sqlite {
            path: path.clone(),
            source,
        })?;
        Journal::init(conn, path)
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Journal, JournalError> {
        // Readers (the web console, `campaign status`) and the running campaign share the file:
        // a write waits for a reader's moment instead of failing with SQLITE_BUSY.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|source| JournalError::Sqlite {
                path: path.clone(),
                source,
            })?;
        let mut journal = Journal { conn, path };
        journal.migrate()?;
        Ok(journal)
    }

    fn sql<T>(&self, r: rusqlite::Result<T>) -> Result<T, JournalError> {
        r.map_err(|source| JournalError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// The database connection, for the live tables beside the log ([`crate::campaign::live`]).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The latest schema version this roomcast knows.
    pub fn schema_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    fn migrate(&mut self) -> Result<(), JournalError> {
        // FULL sync: an event acknowledged to the orchestrator survives a power cut.
        let r = self.conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS campaign_migrations (
                version    INTEGER PRIMARY KEY,
                applied_at TEXT NOT NULL DEFAULT (datetime('now'))
             );",
        );
        self.sql(r)?;
        let r = self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM campaign_migrations",
            [],
            |row| row.get::<_, i64>(0),
        );
        let current = self.sql(r)?;
        if current > Journal::schema_version() {
            return Err(JournalError::TooNew {
                path: self.path.clone(),
                found: current,
                known: Journal::schema_version(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let version = i as i64 + 1;
            let path = self.path.clone();
            let err = |source| JournalError::Sqlite {
                path: path.clone(),
                source,
            };
            let tx = self.conn.transaction().map_err(err)?;
            tx.execute_batch(sql).map_err(err)?;
            tx.execute(
                "INSERT INTO campaign_migrations (version) VALUES (?1)",
                [version],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
        }
        Ok(())
    }

    /// Creates a campaign and records its `Started` event as run 1. Returns its id and the first
    /// actions (or a rejection if the plan is invalid; then nothing is stored).
    pub fn start(
        &mut self,
        plan: &Plan,
        now: Timestamp,
    ) -> Result<(i64, Vec<Action>), JournalError> {
        let event = Event::Started(plan.clone());
        let (_, actions) = procedure::transition(State::default(), &event, now);
        if matches!(actions.first(), Some(Action::Rejected { .. })) {
            return Ok((0, actions));
        }
        let path = self.path.clone();
        let err = |source| JournalError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO campaign_campaigns (room, created_at) VALUES (?1, ?2)",
            params![plan.room, now.0],
        )
        .map_err(err)?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO campaign_runs (campaign_id, run, started_at) VALUES (?1, 1, ?2)",
            params![id, now.0],
        )
        .map_err(err)?;
        insert_event(&tx, id, 1, 1, &event, now).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok((id, actions))
    }

    /// Opens a new orchestrator run on an existing campaign (after a stop or crash), records
    /// `Resumed`, and returns the run number with the state and the actions to redo.
    pub fn resume(
        &mut self,
        campaign: i64,
        now: Timestamp,
    ) -> Result<(i64, State, Vec<Action>), JournalError> {
        let state = self.state(campaign)?;
        let r = self.conn.query_row(
            "SELECT COALESCE(MAX(run), 0) + 1 FROM campaign_runs WHERE campaign_id = ?1",
            [campaign],
            |row| row.get::<_, i64>(0),
        );
        let run = self.sql(r)?;
        let r = self.conn.execute(
            "INSERT INTO campaign_runs (campaign_id, run, started_at) VALUES (?1, ?2, ?3)",
            params![campaign, run, now.0],
        );
        self.sql(r)?;
        let (state, actions) = self.record_on(campaign, run, state, &Event::Resumed, now)?;
        Ok((run, state, actions))
    }

    /// Appends `event` (made at `now` during `run`) to the campaign's log, then applies it to `state`.
    /// The write comes first: an action is never carried out for an event the journal might lose.
    pub fn record_on(
        &mut self,
        campaign: i64,
        run: i64,
        state: State,
        event: &Event,
        now: Timestamp,
    ) -> Result<(State, Vec<Action>), JournalError> {
        let r = self.conn.query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM campaign_events WHERE campaign_id = ?1",
            [campaign],
            |row| row.get::<_, i64>(0),
        );
        let seq = self.sql(r)?;
        let r = insert_event(&self.conn, campaign, seq, run, event, now);
        self.sql(r)?;
        Ok(procedure::transition(state, event, now))
    }

    /// The latest orchestrator run of a campaign (1 after `start`).
    pub fn current_run(&self, campaign: i64) -> Result<i64, JournalError> {
        let r = self.conn.query_row(
            "SELECT COALESCE(MAX(run), 0) FROM campaign_runs WHERE campaign_id = ?1",
            [campaign],
            |row| row.get::<_, i64>(0),
        );
        match self.sql(r)? {
            0 => Err(JournalError::NoCampaign {
                path: self.path.clone(),
                campaign,
            }),
            run => Ok(run),
        }
    }

    /// Every event of a campaign, in order.
    pub fn events(&self, campaign: i64) -> Result<Vec<Recorded>, JournalError> {
        let r = self.conn.query_row(
            "SELECT COUNT(*) FROM campaign_campaigns WHERE id = ?1",
            [campaign],
            |row| row.get::<_, i64>(0),
        );
        if self.sql(r)? == 0 {
            return Err(JournalError::NoCampaign {
                path: self.path.clone(),
                campaign,
            });
        }
        let mut stmt = self.sql(self.conn.prepare(
            "SELECT seq, run, at, body FROM campaign_events WHERE campaign_id = ?1 ORDER BY seq",
        ))?;
        let rows = stmt.query_map([campaign], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
            ))
        });
        let rows = self.sql(rows)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, run, at, body) = self.sql(row)?;
            let event = serde_json::from_str(&body).map_err(|source| JournalError::Decode {
                path: self.path.clone(),
                campaign,
                seq,
                source,
            })?;
            out.push(Recorded {
                seq,
                run,
                at: Timestamp(at),
                event,
            });
        }
        Ok(out)
    }

    /// The campaign's state, rebuilt by replaying its log.
    pub fn state(&self, campaign: i64) -> Result<State, JournalError> {
        let events = self.events(campaign)?;
        Ok(procedure::replay(events.iter().map(|r| (&r.event, r.at))))
    }

    /// The most recent campaign of any room, if any.
    pub fn latest(&self) -> Result<Option<i64>, JournalError> {
        let r = self
            .conn
            .query_row("SELECT MAX(id) FROM campaign_campaigns", [], |row| {
                row.get::<_, Option<i64>>(0)
            })
            .optional();
        Ok(self.sql(r)?.flatten())
    }

    /// Every campaign: id, room, creation time; newest first (the console's list).
    pub fn campaigns(&self) -> Result<Vec<(i64, String, Timestamp)>, JournalError> {
        let mut stmt = self.sql(
            self.conn
                .prepare("SELECT id, room, created_at FROM campaign_campaigns ORDER BY id DESC"),
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                Timestamp(r.get(2)?),
            ))
        });
        let rows = self.sql(rows)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.sql(row)?);
        }
        Ok(out)
    }

    /// The last sequence number of a campaign's log (0 when empty): what changed since a reader
    /// last looked, in one cheap query.
    pub fn last_seq(&self, campaign: i64) -> Result<i64, JournalError> {
        let r = self.conn.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM campaign_events WHERE campaign_id = ?1",
            [campaign],
            |row| row.get::<_, i64>(0),
        );
        self.sql(r)
    }

    /// The most recent campaign of a room, if any.
    pub fn latest_for_room(&self, room: &str) -> Result<Option<i64>, JournalError> {
        let r = self
            .conn
            .query_row(
                "SELECT MAX(id) FROM campaign_campaigns WHERE room = ?1",
                [room],
                |row| row.get::<_, Option<i64>>(0),
            )
            .optional();
        Ok(self.sql(r)?.flatten())
    }
}

fn insert_event(
    conn: &Connection,
    campaign: i64,
    seq: i64,
    run: i64,
    event: &Event,
    now: Timestamp,
) -> rusqlite::Result<usize> {
    let body = serde_json::to_string(event).expect("events always serialise");
    conn.execute(
        "INSERT INTO campaign_events (campaign_id, seq, run, at, kind, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![campaign, seq, run, now.0, kind(event), body],
    )
}

/// A short name of the event kind, a column for humans querying the database.
fn kind(event: &Event) -> &'static str {
    match event {
        Event::Started(_) => "started",
        Event::Resumed => "resumed",
        Event::StepSucceeded { .. } => "step-succeeded",
        Event::StepFailed { .. } => "step-failed",
        Event::ImageCaptured { .. } => "image-captured",
        Event::Refused(_) => "refused",
        Event::Signoff { .. } => "signoff",
        Event::MachineSucceeded { .. } => "machine-succeeded",
        Event::MachineFailed { .. } => "machine-failed",
        Event::Aborted { .. } => "aborted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_proto::procedure::{DeployMode, Phase, Status, Step, Verdict};

    fn plan() -> Plan {
        Plan {
            room: "B204".into(),
            machines: vec!["PC01".into(), "PC02".into()],
            master: "PC01".into(),
            mode: DeployMode::Image,
            retries: 1,
            signoff_required: true,
            signoff_allowed: vec!["M. Dupont".into()],
        }
    }

    #[test]
    fn a_crash_and_resume_rebuild_the_state_and_show_both_runs() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("roomcast.db");
        let (id, state_after_g) = {
            let mut j = Journal::open(&db).unwrap();
            let (id, _) = j.start(&plan(), Timestamp(100)).unwrap();
            let mut state = j.state(id).unwrap();
            for (i, e) in [
                Event::StepSucceeded {
                    step: Step::Collect,
                },
                Event::StepSucceeded { step: Step::Master },
                Event::StepSucceeded {
                    step: Step::Install,
                },
                Event::StepSucceeded { step: Step::Tests },
                Event::Signoff {
                    by: "M. Dupont".into(),
                    verdict: Verdict::Ok,
                    comment: Some("ok pour nous".into()),
                },
                Event::StepSucceeded {
                    step: Step::Capture,
                },
                Event::MachineSucceeded {
                    step: Step::Deploy,
                    machine: "PC01".into(),
                },
            ]
            .iter()
            .enumerate()
            {
                state = j
                    .record_on(id, 1, state, e, Timestamp(101 + i as i64))
                    .unwrap()
                    .0;
            }
            (id, state)
            // dropped without any goodbye: like a kill -9 after the last commit
        };
        let mut j = Journal::open(&db).unwrap();
        assert_eq!(j.state(id).unwrap(), state_after_g);
        let (run, state, actions) = j.resume(id, Timestamp(500)).unwrap();
        assert_eq!(run, 2);
        assert_eq!(state.phase, Phase::At(Step::Deploy));
        assert!(matches!(
            state.machine_status("PC01", Step::Deploy),
            Status::Succeeded { .. }
        ));
        assert_eq!(
            actions,
            vec![Action::RunOnMachine {
                step: Step::Deploy,
                machine: "PC02".into(),
                attempt: 1
            }]
        );
        let events = j.events(id).unwrap();
        assert_eq!(events.len(), 9);
        assert_eq!(events.first().unwrap().run, 1);
        assert_eq!(events.last().unwrap().run, 2);
        assert_eq!(events.last().unwrap().event, Event::Resumed);
        assert_eq!(j.latest_for_room("B204").unwrap(), Some(id));
    }

    #[test]
    fn events_cannot_be_changed_or_deleted() {
        let mut j = Journal::open_in_memory().unwrap();
        let (id, _) = j.start(&plan(), Timestamp(1)).unwrap();
        let upd = j.conn.execute(
            "UPDATE campaign_events SET body = '{}' WHERE campaign_id = ?1",
            [id],
        );
        assert!(upd.unwrap_err().to_string().contains("append-only"));
        let del = j.conn.execute("DELETE FROM campaign_events", []);
        assert!(del.unwrap_err().to_string().contains("append-only"));
    }

    #[test]
    fn migrations_are_idempotent_and_share_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("shared.db");
        {
            // Someone else's tables and user_version in the same file are left alone.
            let c = Connection::open(&db).unwrap();
            c.execute_batch(
                "CREATE TABLE inventory_machines (id INTEGER); PRAGMA user_version = 7;",
            )
            .unwrap();
        }
        Journal::open(&db).unwrap();
        let j = Journal::open(&db).unwrap();
        let versions: i64 = j
            .conn
            .query_row("SELECT COUNT(*) FROM campaign_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(versions, Journal::schema_version());
        let uv: i64 = j
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(uv, 7);
    }

    #[test]
    fn an_invalid_plan_stores_nothing_and_unknown_campaigns_are_named() {
        let mut j = Journal::open_in_memory().unwrap();
        let mut p = plan();
        p.master = "PC77".into();
        let (id, actions) = j.start(&p, Timestamp(1)).unwrap();
        assert_eq!(id, 0);
        assert!(matches!(&actions[..], [Action::Rejected { .. }]));
        let err = j.events(42).unwrap_err().to_string();
        assert!(err.contains("no campaign 42"), "{err}");
    }
}
