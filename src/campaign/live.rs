//! What a running imaging session tells, kept where the web console (a separate process) reads it:
//! the newest progress of each PC (bytes, chunks, rate, from its agent's `POST /agent/progress`)
//! and the multicast stream's rate and loss, one sample a second. Two tables beside the journal's
//! log in the same SQLite file (journal migration 2), bounded: `campaign_progress` holds one row
//! per campaign and PC (upserted), `campaign_stream` at most [`MAX_SAMPLES`] rows per campaign (the
//! oldest dropped). Results stay in the journal; these are only how far things are.
//!
//! Writes are gathered in memory and flushed in one transaction at most once per [`FLUSH_EVERY`]
//! (so each PC's row is written at most once a second, whatever the room's size), by whichever
//! call comes after that second, and at the end of the session ([`LiveBook::flush`]).

use super::journal::{Journal, JournalError};
use roomcast_proto::contract::Progress;
use roomcast_proto::procedure::Step;
use rusqlite::{Connection, params};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// At most one write of the live tables per this.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Stream samples kept per campaign: an hour at one a second.
pub const MAX_SAMPLES: i64 = 3600;

/// The newest progress of one PC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcProgress {
    /// The step (`b`, `g`).
    pub step: String,
    /// What the agent said.
    pub progress: Progress,
    /// Bytes per second so far.
    pub rate: u64,
    /// When the server got it (Unix milliseconds).
    pub stamp_ms: i64,
}

/// One second of the stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When (Unix milliseconds).
    pub stamp_ms: i64,
    /// Bits per second on the wire.
    pub wire_bps: u64,
    /// Pacing rate allowed, bits per second.
    pub pacing_bps: u64,
    /// Median loss of the receivers, as a fraction.
    pub loss: Option<f64>,
    /// Highest loss of one receiver, as a fraction.
    pub worst_loss: Option<f64>,
}

#[derive(Default)]
struct Pending {
    pcs: BTreeMap<String, PcProgress>,
    samples: Vec<(String, Sample)>,
}

struct Inner {
    conn: Option<Connection>,
    pending: Pending,
    last_flush: Option<Instant>,
}

/// The live tables of one campaign, written by its imaging sessions.
pub struct LiveBook {
    db: PathBuf,
    campaign: i64,
    every: Duration,
    inner: Mutex<Inner>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn ppm(f: Option<f64>) -> Option<i64> {
    f.map(|l| (l.clamp(0.0, 1.0) * 1e6).round() as i64)
}

impl LiveBook {
    /// The live tables of campaign `campaign` in the journal database `db`.
    pub fn new(db: &Path, campaign: i64) -> LiveBook {
        LiveBook::every(db, campaign, FLUSH_EVERY)
    }

    /// The same, writing at most once per `every`.
    fn every(db: &Path, campaign: i64, every: Duration) -> LiveBook {
        LiveBook {
            db: db.to_path_buf(),
            campaign,
            every,
            inner: Mutex::new(Inner {
                conn: None,
                pending: Pending::default(),
                last_flush: None,
            }),
        }
    }

    /// Notes `machine`'s progress at `step` (written within a second).
    pub fn progress(&self, machine: &str, step: Step, p: Progress) {
        let row = PcProgress {
            step: step.letter().to_string(),
            progress: p,
            rate: p.rate(),
            stamp_ms: now_ms(),
        };
        self.with(|pending| {
            pending.pcs.insert(machine.to_string(), row);
        });
    }

    /// Notes one second of the stream at `step`.
    pub fn sample(&self, step: Step, s: &roomcast_mcast::StreamSample) {
        let sample = Sample {
            stamp_ms: now_ms(),
            wire_bps: s.wire_bps,
            pacing_bps: s.pacing_bps,
            loss: s.loss,
            worst_loss: s.worst_loss,
        };
        self.with(|pending| {
            // Bounded between flushes too: a flush failing for long keeps the newest only.
            if pending.samples.len() as i64 >= MAX_SAMPLES {
                pending.samples.remove(0);
            }
            pending.samples.push((step.letter().to_string(), sample));
        });
    }

    fn with(&self, add: impl FnOnce(&mut Pending)) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        add(&mut inner.pending);
        if inner.last_flush.is_none_or(|t| t.elapsed() >= self.every) {
            self.flush_locked(&mut inner);
        }
    }

    /// Writes what is pending now (the end of a session).
    pub fn flush(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.flush_locked(&mut inner);
    }

    fn flush_locked(&self, inner: &mut Inner) {
        inner.last_flush = Some(Instant::now());
        if inner.pending.pcs.is_empty() && inner.pending.samples.is_empty() {
            return;
        }
        if inner.conn.is_none() {
            // Opening the journal applies its migrations: the tables exist.
            match Journal::open(&self.db) {
                Ok(_) => match Connection::open(&self.db) {
                    Ok(c) => {
                        let _ = c.busy_timeout(Duration::from_secs(5));
                        inner.conn = Some(c);
                    }
                    Err(e) => tracing::warn!(db = %self.db.display(), %e, "live progress not kept"),
                },
                Err(e) => tracing::warn!(%e, "live progress not kept"),
            }
        }
        let Some(conn) = inner.conn.as_mut() else {
            return;
        };
        let pending = std::mem::take(&mut inner.pending);
        if let Err(e) = write(conn, self.campaign, &pending) {
            tracing::warn!(db = %self.db.display(), %e, "live progress not written");
        }
    }
}

impl std::fmt::Debug for LiveBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveBook")
            .field("db", &self.db)
            .field("campaign", &self.campaign)
            .finish()
    }
}

impl Drop for LiveBook {
    fn drop(&mut self) {
        self.flush();
    }
}

fn write(conn: &mut Connection, campaign: i64, pending: &Pending) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for (machine, r) in &pending.pcs {
        let p = &r.progress;
        tx.execute(
            "INSERT INTO campaign_progress (campaign_id, machine, step, bytes_done, bytes_total,
                 chunks_done, chunks_total, rate, stamp_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (campaign_id, machine) DO UPDATE SET step = ?3, bytes_done = ?4,
                 bytes_total = ?5, chunks_done = ?6, chunks_total = ?7, rate = ?8, stamp_ms = ?9",
            params![
                campaign,
                machine,
                r.step,
                p.bytes_done as i64,
                p.bytes_total as i64,
                p.chunks_done as i64,
                p.chunks_total as i64,
                r.rate as i64,
                r.stamp_ms
            ],
        )?;
    }
    for (step, s) in &pending.samples {
        tx.execute(
            "INSERT INTO campaign_stream (campaign_id, step, stamp_ms, wire_bps, pacing_bps,
                 loss_ppm, worst_ppm) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                campaign,
                step,
                s.stamp_ms,
                s.wire_bps as i64,
                s.pacing_bps as i64,
                ppm(s.loss),
                ppm(s.worst_loss)
            ],
        )?;
    }
    if !pending.samples.is_empty() {
        tx.execute(
            "DELETE FROM campaign_stream WHERE campaign_id = ?1 AND rowid NOT IN
                 (SELECT rowid FROM campaign_stream WHERE campaign_id = ?1
                  ORDER BY stamp_ms DESC, rowid DESC LIMIT ?2)",
            params![campaign, MAX_SAMPLES],
        )?;
    }
    tx.commit()
}

fn sql<T>(journal: &Journal, r: rusqlite::Result<T>) -> Result<T, JournalError> {
    r.map_err(|source| JournalError::Sqlite {
        path: journal.path().to_path_buf(),
        source,
    })
}

/// What the live tables hold for campaign `id`.
#[derive(Debug, Clone, Default)]
pub struct LiveFacts {
    /// The newest progress of each PC, by hostname.
    pub pcs: BTreeMap<String, PcProgress>,
    /// The stream's samples at `step`, oldest first.
    pub samples: Vec<Sample>,
}

/// Reads campaign `id`'s live tables; `samples_of`: the step whose stream samples are wanted.
pub fn read(journal: &Journal, id: i64, samples_of: Step) -> Result<LiveFacts, JournalError> {
    let conn = journal.conn();
    let mut facts = LiveFacts::default();
    let mut q = sql(
        journal,
        conn.prepare_cached(
            "SELECT machine, step, bytes_done, bytes_total, chunks_done, chunks_total, rate,
                 stamp_ms FROM campaign_progress WHERE campaign_id = ?1",
        ),
    )?;
    let rows = sql(
        journal,
        q.query_map([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                PcProgress {
                    step: r.get(1)?,
                    progress: Progress {
                        bytes_done: r.get::<_, i64>(2)? as u64,
                        bytes_total: r.get::<_, i64>(3)? as u64,
                        chunks_done: r.get::<_, i64>(4)? as u64,
                        chunks_total: r.get::<_, i64>(5)? as u64,
                        elapsed_ms: 0,
                    },
                    rate: r.get::<_, i64>(6)? as u64,
                    stamp_ms: r.get(7)?,
                },
            ))
        }),
    )?;
    for row in rows {
        let (m, p) = sql(journal, row)?;
        facts.pcs.insert(m, p);
    }
    let mut q = sql(
        journal,
        conn.prepare_cached(
            "SELECT stamp_ms, wire_bps, pacing_bps, loss_ppm, worst_ppm FROM campaign_stream
             WHERE campaign_id = ?1 AND step = ?2 ORDER BY stamp_ms, rowid",
        ),
    )?;
    let rows = sql(
        journal,
        q.query_map(params![id, samples_of.letter().to_string()], |r| {
            Ok(Sample {
                stamp_ms: r.get(0)?,
                wire_bps: r.get::<_, i64>(1)? as u64,
                pacing_bps: r.get::<_, i64>(2)? as u64,
                loss: r.get::<_, Option<i64>>(3)?.map(|p| p as f64 / 1e6),
                worst_loss: r.get::<_, Option<i64>>(4)?.map(|p| p as f64 / 1e6),
            })
        }),
    )?;
    for row in rows {
        facts.samples.push(sql(journal, row)?);
    }
    Ok(facts)
}

/// A number that moves whenever campaign `id`'s live tables do (the console's cheap check).
pub fn stamp(journal: &Journal, id: i64) -> Result<i64, JournalError> {
    let r = journal.conn().query_row(
        "SELECT COALESCE((SELECT MAX(stamp_ms) FROM campaign_progress WHERE campaign_id = ?1), 0)
              + COALESCE((SELECT MAX(stamp_ms) FROM campaign_stream WHERE campaign_id = ?1), 0)",
        [id],
        |r| r.get::<_, i64>(0),
    );
    sql(journal, r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_proto::procedure::{DeployMode, Plan, Timestamp};

    fn campaign(db: &Path) -> i64 {
        let mut j = Journal::open(db).unwrap();
        let plan = Plan {
            room: "S12".into(),
            machines: vec!["PC01".into(), "PC02".into()],
            master: "PC01".into(),
            mode: DeployMode::Image,
            retries: 1,
            signoff_required: false,
            signoff_allowed: vec![],
        };
        j.start(&plan, Timestamp(0)).unwrap().0
    }

    fn count(db: &Path, table: &str) -> i64 {
        Connection::open(db)
            .unwrap()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn one_row_per_pc_and_a_capped_stream() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("roomcast.db");
        let id = campaign(&db);
        let book = LiveBook::new(&db, id);
        for i in 0..50u64 {
            for pc in ["PC01", "PC02"] {
                book.progress(
                    pc,
                    Step::Deploy,
                    Progress {
                        bytes_done: i,
                        bytes_total: 100,
                        chunks_done: i,
                        chunks_total: 100,
                        elapsed_ms: 1000,
                    },
                );
            }
            book.flush();
        }
        assert_eq!(count(&db, "campaign_progress"), 2, "one row per PC");
        let j = Journal::open(&db).unwrap();
        let facts = read(&j, id, Step::Deploy).unwrap();
        assert_eq!(facts.pcs["PC02"].progress.bytes_done, 49, "the newest");
        assert_eq!(facts.pcs["PC02"].rate, 49);
        assert_eq!(facts.pcs["PC02"].step, "g");

        let s = |loss| roomcast_mcast::StreamSample {
            at_ms: 0,
            wire_bps: 8_000_000,
            pacing_bps: 9_000_000,
            loss,
            worst_loss: loss,
        };
        let before = stamp(&j, id).unwrap();
        for i in 0..(MAX_SAMPLES + 25) {
            book.sample(Step::Deploy, &s(Some(i as f64 / 1e5)));
            if i % 1000 == 0 {
                book.flush();
            }
        }
        book.flush();
        assert_eq!(count(&db, "campaign_stream"), MAX_SAMPLES, "capped");
        let facts = read(&j, id, Step::Deploy).unwrap();
        assert_eq!(facts.samples.len() as i64, MAX_SAMPLES);
        let last = facts.samples.last().unwrap();
        assert!((last.loss.unwrap() - (MAX_SAMPLES + 24) as f64 / 1e5).abs() < 1e-6);
        assert!(stamp(&j, id).unwrap() > before, "the stamp moved");
        assert!(read(&j, id, Step::Master).unwrap().samples.is_empty());
    }

    #[test]
    fn writes_wait_for_their_period_and_the_end_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("roomcast.db");
        let id = campaign(&db);
        // A period no test run reaches: the second note is certainly within it.
        let book = LiveBook::every(&db, id, Duration::from_secs(24 * 3600));
        let p = |b| Progress {
            bytes_done: b,
            bytes_total: 10,
            ..Progress::default()
        };
        book.progress("PC01", Step::Deploy, p(1));
        // Within the period: kept in memory, not yet written.
        book.progress("PC01", Step::Deploy, p(2));
        let j = Journal::open(&db).unwrap();
        assert_eq!(
            read(&j, id, Step::Deploy).unwrap().pcs["PC01"]
                .progress
                .bytes_done,
            1
        );
        drop(book);
        assert_eq!(
            read(&j, id, Step::Deploy).unwrap().pcs["PC01"]
                .progress
                .bytes_done,
            2,
            "flushed at the end"
        );
    }
}
