//! The embedded database: one SQLite file (default [`DEFAULT_DB_PATH`]) holding the machines, the
//! interventions, and the outbox of records waiting to be delivered to GLPI. The campaign journal
//! will live in the same file: add its tables as a new entry at the end of [`MIGRATIONS`].
//!
//! Every write that belongs together (an intervention and the GLPI records it causes) happens in one
//! transaction: a crash leaves either all of it or none of it.

use super::{CampaignTicket, ImageDeployed, Intervention, MachineRecord, Outcome, Step, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the database lives unless `--db` / `ROOMCAST_DB` says otherwise.
pub const DEFAULT_DB_PATH: &str = "/var/lib/roomcast/roomcast.db";

/// One schema migration: applied once, in order, tracked by SQLite's `user_version`.
#[derive(Debug)]
pub struct Migration {
    /// The `user_version` after this migration.
    pub version: u32,
    /// What it adds, for error messages.
    pub name: &'static str,
    /// The SQL, run in one transaction with the `user_version` update.
    pub sql: &'static str,
}

/// Every migration, oldest first. Append only: never edit one that has shipped.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "inventory: machines, interventions, GLPI outbox",
        sql: r#"
CREATE TABLE machines (
    mac                  TEXT PRIMARY KEY,
    school_uai           TEXT NOT NULL,
    room                 TEXT NOT NULL,
    hostname             TEXT NOT NULL,
    serial               TEXT NOT NULL,
    model                TEXT NOT NULL,
    glpi_id              INTEGER,
    last_image_id        TEXT,
    last_image_version   TEXT,
    last_intervention_at INTEGER,
    last_result          TEXT,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX machines_by_room ON machines (room, hostname);

CREATE TABLE interventions (
    id         INTEGER PRIMARY KEY,
    campaign   TEXT NOT NULL,
    step       TEXT NOT NULL CHECK (step IN ('a','b','c','d','e','f','g','h')),
    machine    TEXT NOT NULL,
    result     TEXT NOT NULL CHECK (result IN ('ok','failed','skipped')),
    started_at INTEGER NOT NULL,
    ended_at   INTEGER NOT NULL,
    detail     TEXT NOT NULL,
    UNIQUE (campaign, step, machine, started_at)
);
CREATE INDEX interventions_by_machine ON interventions (machine, started_at);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    tried           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    sent_at         INTEGER,
    remote_id       INTEGER
);
CREATE INDEX outbox_due ON outbox (sent_at, next_attempt_at);

CREATE TABLE glpi_tickets (
    campaign   TEXT PRIMARY KEY,
    ticket_id  INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
"#,
    },
    Migration {
        version: 2,
        name: "inventory: each PC's own facts as its agent read them (issue 15)",
        sql: r#"
CREATE TABLE machine_facts (
    mac      TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    facts    TEXT NOT NULL,
    warnings TEXT NOT NULL,
    refused  TEXT,
    read_at  INTEGER NOT NULL
);
"#,
    },
];

/// What a PC's agent read of it, as the inventory keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineFacts {
    /// The GLPI agent id its document is sent under (not stored in the row).
    pub agent_id: String,
    /// Its MAC, lowercase.
    pub mac: String,
    /// Its hostname in the room file.
    pub hostname: String,
    /// The facts, JSON (`roomcast_proto::contract::HardwareFacts`).
    pub facts: String,
    /// What did not match the room file without stopping the imaging (a serial that differs).
    pub warnings: Vec<String>,
    /// Why it was refused the image, if it was (another PC model than the room's).
    pub refused: Option<String>,
    /// When the facts came.
    pub read_at: Timestamp,
}

/// A database error, naming the file and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error("database {path}: {what}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The operation.
        what: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The directory for the database could not be created.
    #[error("database {path}: cannot create its directory: {source}")]
    Dir {
        /// The database file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was written by a newer roomcast.
    #[error(
        "database {path}: schema version {found} is newer than this roomcast knows ({known}); upgrade roomcast"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: u32,
        /// The latest migration this build has.
        known: u32,
    },
    /// A stored value does not parse (hand-edited or corrupted database).
    #[error("database {path}: table {table}, row {row}: {problem}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The table.
        table: &'static str,
        /// The row key.
        row: String,
        /// What is wrong.
        problem: String,
    },
}

/// A machine with what the inventory last recorded about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRow {
    /// The machine's identity.
    #[serde(flatten)]
    pub machine: MachineRecord,
    /// Image id last deployed on it.
    pub last_image_id: Option<String>,
    /// Image version last deployed on it.
    pub last_image_version: Option<String>,
    /// When the last intervention ended.
    pub last_intervention_at: Option<Timestamp>,
    /// Result of the last intervention.
    pub last_result: Option<Outcome>,
}

/// What an outbox record asks GLPI to do. Stored as JSON in `outbox.payload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutboxPayload {
    /// Update the GLPI Computer found by exact serial with the deployed image and date.
    ComputerUpdate {
        /// The deploy that happened.
        deployed: ImageDeployed,
        /// The machine's serial (GLPI's key).
        serial: String,
        /// The machine's hostname, for messages.
        hostname: String,
    },
    /// Link the machine (GLPI Computer found by exact serial) to the campaign's ticket.
    TicketLink {
        /// The campaign's ticket (created on first need).
        ticket: CampaignTicket,
        /// The machine's serial.
        serial: String,
        /// The machine's hostname, for messages.
        hostname: String,
    },
    /// Add a followup with one step's outcome to the campaign's ticket.
    Followup {
        /// The campaign's ticket (created on first need).
        ticket: CampaignTicket,
        /// The followup text, ending with the record's idempotency marker.
        content: String,
    },
    /// POST a native inventory document to `/front/inventory.php`.
    NativeInventory {
        /// The `GLPI-Agent-ID` header value.
        agent_id: String,
        /// The document (valid against GLPI's inventory schema).
        document: serde_json::Value,
    },
}

impl OutboxPayload {
    /// The kind column value.
    pub fn kind(&self) -> &'static str {
        match self {
            OutboxPayload::ComputerUpdate { .. } => "computer_update",
            OutboxPayload::TicketLink { .. } => "ticket_link",
            OutboxPayload::Followup { .. } => "followup",
            OutboxPayload::NativeInventory { .. } => "native_inventory",
        }
    }
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// Row id (delivery order).
    pub id: i64,
    /// Unique key: enqueuing the same key twice keeps one record, so nothing is sent twice.
    pub idempotency_key: String,
    /// What to send.
    pub payload: OutboxPayload,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// Failed delivery attempts so far.
    pub attempts: u32,
    /// Not tried again before this time.
    pub next_attempt_at: Timestamp,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// An attempt started before, so GLPI may already hold the result (a crash or timeout after
    /// sending): delivery checks for it before creating anything.
    pub tried: bool,
    /// When GLPI confirmed it (None: pending).
    pub sent_at: Option<Timestamp>,
}

/// Counts of outbox records by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    /// Delivered.
    pub sent: u64,
    /// Waiting, never failed.
    pub pending: u64,
    /// Waiting, failed at least once.
    pub retrying: u64,
}

/// The marker written into GLPI text (ticket description, followup) so a re-send after a crash finds
/// what was already created instead of creating it again.
pub fn marker(key: &str) -> String {
    format!("[roomcast:{key}]")
}

/// The embedded database.
#[derive(Debug)]
pub struct InventoryDb {
    conn: Connection,
    path: PathBuf,
}

impl InventoryDb {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<InventoryDb, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DbError::Dir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| DbError::Sqlite {
            path: path.to_path_buf(),
            what: "open".into(),
            source,
        })?;
        let mut db = InventoryDb {
            conn,
            path: path.to_path_buf(),
        };
        db.configure()?;
        db.migrate()?;
        Ok(db)
    }

    /// The file this database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The SQLite connection, for the modules whose tables live in the same file (the campaign
    /// journal). Their schema goes into [`MIGRATIONS`], never created on the side.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The schema version (`user_version`).
    pub fn schema_version(&self) -> Result<u32, DbError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.err("read user_version"))
    }

    fn err(&self, what: &str) -> impl Fn(rusqlite::Error) -> DbError + use<> {
        let path = self.path.clone();
        let what = what.to_string();
        move |source| DbError::Sqlite {
            path: path.clone(),
            what: what.clone(),
            source,
        }
    }

    fn configure(&self) -> Result<(), DbError> {
        // WAL: the deploy server writes while `inventory show` or `sync` read; busy_timeout: two
        // roomcast processes (campaign and sync) wait for each other rather than fail.
        self.conn
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            )
            .map_err(self.err("configure"))?;
        self.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(self.err("configure busy timeout"))
    }

    fn migrate(&mut self) -> Result<(), DbError> {
        let current = self.schema_version()?;
        let known = MIGRATIONS.last().map_or(0, |m| m.version);
        if current > known {
            return Err(DbError::TooNew {
                path: self.path.clone(),
                found: current,
                known,
            });
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            let what = format!("migration {} ({})", m.version, m.name);
            let err = self.err(&what);
            let tx = self.conn.transaction().map_err(&err)?;
            tx.execute_batch(m.sql).map_err(&err)?;
            tx.pragma_update(None, "user_version", m.version)
                .map_err(&err)?;
            tx.commit().map_err(&err)?;
        }
        Ok(())
    }

    /// Adds or updates a machine (keyed by MAC). Keeps its last-intervention fields; keeps a known
    /// GLPI id when the new record has none.
    pub fn upsert_machine(&self, m: &MachineRecord, now: Timestamp) -> Result<(), DbError> {
        self.conn
            .execute(
                "INSERT INTO machines (mac, school_uai, room, hostname, serial, model, glpi_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (mac) DO UPDATE SET
                   school_uai = excluded.school_uai, room = excluded.room,
                   hostname = excluded.hostname, serial = excluded.serial, model = excluded.model,
                   glpi_id = COALESCE(excluded.glpi_id, machines.glpi_id),
                   updated_at = excluded.updated_at",
                params![
                    m.mac.to_ascii_lowercase(),
                    m.school_uai,
                    m.room,
                    m.hostname,
                    m.serial,
                    m.model,
                    m.glpi_id.map(|v| v as i64),
                    now.0
                ],
            )
            .map_err(self.err(&format!("upsert machine {}", m.mac)))?;
        Ok(())
    }

    /// Remembers the GLPI Computer id found for a machine.
    pub fn set_glpi_id(&self, mac: &str, glpi_id: u64) -> Result<(), DbError> {
        self.conn
            .execute(
                "UPDATE machines SET glpi_id = ?2 WHERE mac = ?1",
                params![mac.to_ascii_lowercase(), glpi_id as i64],
            )
            .map_err(self.err(&format!("set glpi id of {mac}")))?;
        Ok(())
    }

    /// One machine by MAC.
    pub fn machine(&self, mac: &str) -> Result<Option<MachineRow>, DbError> {
        let mut rows = self.query_machines("WHERE mac = ?1", &[&mac.to_ascii_lowercase()])?;
        Ok(rows.pop())
    }

    /// Machines, all or those of one room, ordered by room and hostname.
    pub fn machines(&self, room: Option<&str>) -> Result<Vec<MachineRow>, DbError> {
        match room {
            Some(r) => self.query_machines("WHERE room = ?1", &[&r]),
            None => self.query_machines("", &[]),
        }
    }

    fn query_machines(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<MachineRow>, DbError> {
        let err = self.err("read machines");
        let sql = format!(
            "SELECT mac, school_uai, room, hostname, serial, model, glpi_id, last_image_id,
                    last_image_version, last_intervention_at, last_result
             FROM machines {filter} ORDER BY room, hostname, mac"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(&err)?;
        let rows = stmt
            .query_map(args, |r| {
                Ok((
                    MachineRecord {
                        mac: r.get(0)?,
                        school_uai: r.get(1)?,
                        room: r.get(2)?,
                        hostname: r.get(3)?,
                        serial: r.get(4)?,
                        model: r.get(5)?,
                        glpi_id: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
                    },
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, Option<i64>>(9)?,
                    r.get::<_, Option<String>>(10)?,
                ))
            })
            .map_err(&err)?;
        let mut out = Vec::new();
        for row in rows {
            let (machine, last_image_id, last_image_version, at, result) = row.map_err(&err)?;
            let last_result = match result {
                None => None,
                Some(s) => Some(Outcome::parse(&s).ok_or_else(|| DbError::Corrupt {
                    path: self.path.clone(),
                    table: "machines",
                    row: machine.mac.clone(),
                    problem: format!("last_result {s:?} is not ok/failed/skipped"),
                })?),
            };
            out.push(MachineRow {
                machine,
                last_image_id,
                last_image_version,
                last_intervention_at: at.map(Timestamp),
                last_result,
            });
        }
        Ok(out)
    }

    /// Interventions, all or those on machines of one room, in time order.
    pub fn interventions(&self, room: Option<&str>) -> Result<Vec<Intervention>, DbError> {
        let err = self.err("read interventions");
        let sql =
            "SELECT i.campaign, i.step, i.machine, i.result, i.started_at, i.ended_at, i.detail
                   FROM interventions i LEFT JOIN machines m ON m.mac = i.machine
                   WHERE ?1 IS NULL OR m.room = ?1
                   ORDER BY i.started_at, i.id";
        let mut stmt = self.conn.prepare(sql).map_err(&err)?;
        let rows = stmt
            .query_map(params![room], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })
            .map_err(&err)?;
        let mut out = Vec::new();
        for row in rows {
            let (campaign, step, machine, result, started, ended, detail) = row.map_err(&err)?;
            let corrupt = |problem: String| DbError::Corrupt {
                path: self.path.clone(),
                table: "interventions",
                row: format!("{campaign}/{step}/{machine}"),
                problem,
            };
            let step_v = step
                .chars()
                .next()
                .and_then(Step::from_letter)
                .ok_or_else(|| corrupt(format!("step {step:?}")))?;
            let result_v =
                Outcome::parse(&result).ok_or_else(|| corrupt(format!("result {result:?}")))?;
            out.push(Intervention {
                campaign,
                step: step_v,
                machine,
                result: result_v,
                started_at: Timestamp(started),
                ended_at: Timestamp(ended),
                detail,
            });
        }
        Ok(out)
    }

    /// Records one step's outcome on one machine, and queues for GLPI (same transaction): the link
    /// of the machine to the campaign's ticket (once per machine and campaign) and a followup with
    /// the outcome. Recording the same intervention twice (a resumed campaign) changes nothing.
    pub fn record_intervention(
        &mut self,
        iv: &Intervention,
        ticket: &CampaignTicket,
        now: Timestamp,
    ) -> Result<(), DbError> {
        let mac = iv.machine.to_ascii_lowercase();
        let known = self.machine(&mac)?;
        let err = self.err(&format!(
            "record step {} on {} (campaign {})",
            iv.step, mac, iv.campaign
        ));
        let tx = self.conn.transaction().map_err(&err)?;
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO interventions
                   (campaign, step, machine, result, started_at, ended_at, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    iv.campaign,
                    iv.step.letter().to_string(),
                    mac,
                    iv.result.as_str(),
                    iv.started_at.0,
                    iv.ended_at.0,
                    iv.detail
                ],
            )
            .map_err(&err)?;
        if inserted == 1 {
            tx.execute(
                "UPDATE machines SET last_intervention_at = ?2, last_result = ?3, updated_at = ?4
                 WHERE mac = ?1 AND (last_intervention_at IS NULL OR last_intervention_at <= ?2)",
                params![mac, iv.ended_at.0, iv.result.as_str(), now.0],
            )
            .map_err(&err)?;
        }
        let host = known
            .as_ref()
            .map_or(mac.clone(), |m| m.machine.hostname.clone());
        if let Some(m) = known.as_ref().filter(|m| !m.machine.serial.is_empty()) {
            enqueue_tx(
                &tx,
                &format!("link:{}:{}", iv.campaign, mac),
                &OutboxPayload::TicketLink {
                    ticket: ticket.clone(),
                    serial: m.machine.serial.clone(),
                    hostname: host.clone(),
                },
                now,
            )
            .map_err(&err)?;
        }
        let key = format!(
            "followup:{}:{}:{}:{}",
            iv.campaign,
            iv.step.letter(),
            mac,
            iv.started_at.0
        );
        let content = format!(
            "Étape {} ({}) sur {} ({}) : {}. Début {}, fin {} (UTC). {}\n{}",
            iv.step.letter(),
            super::step_label_fr(iv.step),
            host,
            mac,
            match iv.result {
                Outcome::Ok => "réussie",
                Outcome::Failed => "ÉCHEC",
                Outcome::Skipped => "sans objet",
            },
            iv.started_at.to_glpi(),
            iv.ended_at.to_glpi(),
            iv.detail,
            marker(&key)
        );
        enqueue_tx(
            &tx,
            &key,
            &OutboxPayload::Followup {
                ticket: ticket.clone(),
                content,
            },
            now,
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    }

    /// Records an image deployed on a machine and queues the GLPI Computer update. The machine must
    /// be known ([`InventoryDb::upsert_machine`]) since GLPI finds it by its serial.
    pub fn record_image_deployed(
        &mut self,
        d: &ImageDeployed,
        now: Timestamp,
    ) -> Result<(), DbError> {
        let mac = d.machine.to_ascii_lowercase();
        let m = self.machine(&mac)?.ok_or_else(|| DbError::Corrupt {
            path: self.path.clone(),
            table: "machines",
            row: mac.clone(),
            problem: format!(
                "image {} deployed by campaign {} on a machine the inventory does not know; record the machine first",
                d.image_version, d.campaign
            ),
        })?;
        let err = self.err(&format!("record image {} on {}", d.image_version, mac));
        let tx = self.conn.transaction().map_err(&err)?;
        if d.result == Outcome::Ok {
            tx.execute(
                "UPDATE machines SET last_image_id = ?2, last_image_version = ?3, updated_at = ?4
                 WHERE mac = ?1",
                params![mac, d.image_id, d.image_version, now.0],
            )
            .map_err(&err)?;
        }
        tx.execute(
            "UPDATE machines SET last_intervention_at = ?2, last_result = ?3
             WHERE mac = ?1 AND (last_intervention_at IS NULL OR last_intervention_at <= ?2)",
            params![mac, d.at.0, d.result.as_str()],
        )
        .map_err(&err)?;
        if d.result == Outcome::Ok {
            enqueue_tx(
                &tx,
                &format!("computer:{}:{}:{}", d.campaign, mac, d.image_id),
                &OutboxPayload::ComputerUpdate {
                    deployed: ImageDeployed {
                        machine: mac.clone(),
                        ..d.clone()
                    },
                    serial: m.machine.serial.clone(),
                    hostname: m.machine.hostname.clone(),
                },
                now,
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// Records what a PC's agent read of it (its facts, JSON) with the warnings and refusal the
    /// server answered, replacing the previous read of that MAC, and queues the native inventory
    /// `document` built from them for GLPI, in one transaction.
    pub fn record_machine_facts(
        &mut self,
        f: &MachineFacts,
        document: &serde_json::Value,
        now: Timestamp,
    ) -> Result<(), DbError> {
        let mac = f.mac.to_ascii_lowercase();
        let err = self.err(&format!("record the facts of {mac}"));
        let warnings = serde_json::to_string(&f.warnings).expect("strings serialise");
        let tx = self.conn.transaction().map_err(&err)?;
        tx.execute(
            "INSERT INTO machine_facts (mac, hostname, facts, warnings, refused, read_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (mac) DO UPDATE SET hostname = ?2, facts = ?3, warnings = ?4,
                 refused = ?5, read_at = ?6",
            params![mac, f.hostname, f.facts, warnings, f.refused, f.read_at.0],
        )
        .map_err(&err)?;
        let deviceid = document
            .get("deviceid")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        enqueue_tx(
            &tx,
            &format!("inventory:{}:{deviceid}", f.agent_id),
            &OutboxPayload::NativeInventory {
                agent_id: f.agent_id.clone(),
                document: document.clone(),
            },
            now,
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    }

    /// The facts last recorded for `mac`.
    pub fn machine_facts(&self, mac: &str) -> Result<Option<MachineFacts>, DbError> {
        let mac = mac.to_ascii_lowercase();
        let row = self
            .conn
            .query_row(
                "SELECT hostname, facts, warnings, refused, read_at FROM machine_facts
                 WHERE mac = ?1",
                params![mac],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(self.err(&format!("read the facts of {mac}")))?;
        let Some((hostname, facts, warnings, refused, at)) = row else {
            return Ok(None);
        };
        let warnings = serde_json::from_str(&warnings).map_err(|e| DbError::Corrupt {
            path: self.path.clone(),
            table: "machine_facts",
            row: mac.clone(),
            problem: format!("warnings: {e}"),
        })?;
        Ok(Some(MachineFacts {
            agent_id: String::new(),
            mac,
            hostname,
            facts,
            warnings,
            refused,
            read_at: Timestamp(at),
        }))
    }

    /// Queues a native inventory document. The key is the document's `deviceid` (unique per
    /// agent run), so queuing the same run twice sends it once.
    pub fn enqueue_native_inventory(
        &self,
        agent_id: &str,
        document: &serde_json::Value,
        now: Timestamp,
    ) -> Result<(), DbError> {
        let deviceid = document
            .get("deviceid")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let key = format!("inventory:{agent_id}:{deviceid}");
        enqueue_tx(
            &self.conn,
            &key,
            &OutboxPayload::NativeInventory {
                agent_id: agent_id.to_string(),
                document: document.clone(),
            },
            now,
        )
        .map_err(self.err(&format!("queue inventory of agent {agent_id}")))
    }

    /// Records not yet delivered whose retry time has come, in delivery (id) order.
    pub fn outbox_due(&self, now: Timestamp) -> Result<Vec<OutboxRecord>, DbError> {
        self.query_outbox("WHERE sent_at IS NULL AND next_attempt_at <= ?1", now.0)
    }

    /// Every outbox record, in id order.
    pub fn outbox_all(&self) -> Result<Vec<OutboxRecord>, DbError> {
        self.query_outbox("WHERE ?1 IS NOT NULL", 0)
    }

    fn query_outbox(&self, filter: &str, arg: i64) -> Result<Vec<OutboxRecord>, DbError> {
        let err = self.err("read outbox");
        let sql = format!(
            "SELECT id, idempotency_key, payload, created_at, attempts, next_attempt_at,
                    last_error, sent_at, tried FROM outbox {filter} ORDER BY id"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(&err)?;
        let rows = stmt
            .query_map(params![arg], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                    r.get::<_, bool>(8)?,
                ))
            })
            .map_err(&err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, key, payload, created, attempts, next, last_error, sent, tried) =
                row.map_err(&err)?;
            let payload = serde_json::from_str(&payload).map_err(|e| DbError::Corrupt {
                path: self.path.clone(),
                table: "outbox",
                row: key.clone(),
                problem: format!("payload: {e}"),
            })?;
            out.push(OutboxRecord {
                id,
                idempotency_key: key,
                payload,
                created_at: Timestamp(created),
                attempts: attempts as u32,
                next_attempt_at: Timestamp(next),
                last_error,
                tried,
                sent_at: sent.map(Timestamp),
            });
        }
        Ok(out)
    }

    /// Notes, durably and before sending, that an attempt at delivering a record starts: if the
    /// process dies before [`InventoryDb::mark_sent`], the next attempt knows to look in GLPI first.
    pub fn mark_attempt(&self, id: i64) -> Result<(), DbError> {
        self.conn
            .execute("UPDATE outbox SET tried = 1 WHERE id = ?1", params![id])
            .map_err(self.err(&format!("mark outbox record {id} tried")))?;
        Ok(())
    }

    /// Marks a record delivered. Called only after GLPI confirmed it.
    pub fn mark_sent(&self, id: i64, now: Timestamp) -> Result<(), DbError> {
        self.conn
            .execute(
                "UPDATE outbox SET sent_at = ?2, last_error = NULL WHERE id = ?1",
                params![id, now.0],
            )
            .map_err(self.err(&format!("mark outbox record {id} sent")))?;
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub fn mark_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: Timestamp,
    ) -> Result<(), DbError> {
        self.conn
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3
                 WHERE id = ?1",
                params![id, error, next_attempt_at.0],
            )
            .map_err(self.err(&format!("mark outbox record {id} failed")))?;
        Ok(())
    }

    /// Counts outbox records by state.
    pub fn outbox_stats(&self) -> Result<OutboxStats, DbError> {
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(sent_at IS NOT NULL), 0),
                        COALESCE(SUM(sent_at IS NULL AND attempts = 0), 0),
                        COALESCE(SUM(sent_at IS NULL AND attempts > 0), 0) FROM outbox",
                [],
                |r| {
                    Ok(OutboxStats {
                        sent: r.get::<_, i64>(0)? as u64,
                        pending: r.get::<_, i64>(1)? as u64,
                        retrying: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .map_err(self.err("count outbox"))
    }

    /// The GLPI ticket id already created for a campaign.
    pub fn ticket_id(&self, campaign: &str) -> Result<Option<u64>, DbError> {
        self.conn
            .query_row(
                "SELECT ticket_id FROM glpi_tickets WHERE campaign = ?1",
                params![campaign],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|v| v.map(|v| v as u64))
            .map_err(self.err(&format!("read ticket of campaign {campaign}")))
    }

    /// Stores the GLPI ticket id of a campaign, right after it is created or found, before any
    /// followup is sent to it.
    pub fn set_ticket_id(
        &self,
        campaign: &str,
        ticket_id: u64,
        now: Timestamp,
    ) -> Result<(), DbError> {
        self.conn
            .execute(
                "INSERT INTO glpi_tickets (campaign, ticket_id, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (campaign) DO UPDATE SET ticket_id = excluded.ticket_id",
                params![campaign, ticket_id as i64, now.0],
            )
            .map_err(self.err(&format!("store ticket of campaign {campaign}")))?;
        Ok(())
    }

    /// Forgets delivery of every record (as if the process died between sending and marking):
    /// for crash-recovery tests and for an operator who restored an old GLPI backup.
    pub fn reset_delivery(&self) -> Result<usize, DbError> {
        self.conn
            .execute(
                "UPDATE outbox SET sent_at = NULL, next_attempt_at = 0, attempts = 0",
                [],
            )
            .map_err(self.err("reset outbox delivery"))
    }
}

/// Inserts a record unless its key is already queued (sent or not).
fn enqueue_tx(
    conn: &Connection,
    key: &str,
    payload: &OutboxPayload,
    now: Timestamp,
) -> Result<(), rusqlite::Error> {
    let json = serde_json::to_string(payload)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.execute(
        "INSERT OR IGNORE INTO outbox (idempotency_key, kind, payload, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?4)",
        params![key, payload.kind(), json, now.0],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn machine(n: u32) -> MachineRecord {
        MachineRecord {
            school_uai: "0350001A".into(),
            room: "B204".into(),
            hostname: format!("B204-PC{n:02}"),
            mac: format!("AA:BB:CC:00:00:{n:02X}"),
            serial: format!("SN{n:04}"),
            model: "OptiPlex 7090".into(),
            glpi_id: None,
        }
    }

    fn ticket() -> CampaignTicket {
        CampaignTicket {
            campaign: "c1".into(),
            title: "Mise à niveau salle B204".into(),
            content: "x".into(),
        }
    }

    fn iv(n: u32, step: Step, at: i64) -> Intervention {
        Intervention {
            campaign: "c1".into(),
            step,
            machine: format!("aa:bb:cc:00:00:{n:02x}"),
            result: Outcome::Ok,
            started_at: Timestamp(at),
            ended_at: Timestamp(at + 60),
            detail: "image college-2026.11".into(),
        }
    }

    #[test]
    fn migrations_set_user_version_and_reopen_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/roomcast.db");
        let db = InventoryDb::open(&path).unwrap();
        assert_eq!(
            db.schema_version().unwrap(),
            MIGRATIONS.last().unwrap().version
        );
        db.upsert_machine(&machine(1), Timestamp(10)).unwrap();
        drop(db);
        let db = InventoryDb::open(&path).unwrap();
        assert_eq!(db.machines(None).unwrap().len(), 1);
    }

    #[test]
    fn newer_schema_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        drop(InventoryDb::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let e = InventoryDb::open(&path).unwrap_err();
        assert!(matches!(e, DbError::TooNew { found: 99, .. }));
        assert!(e.to_string().contains("r.db"), "{e}");
    }

    #[test]
    fn intervention_queues_link_and_followup_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = InventoryDb::open(&dir.path().join("r.db")).unwrap();
        db.upsert_machine(&machine(1), Timestamp(0)).unwrap();
        db.record_intervention(&iv(1, Step::Deploy, 100), &ticket(), Timestamp(200))
            .unwrap();
        // A resumed campaign records the same step again: nothing new is queued.
        db.record_intervention(&iv(1, Step::Deploy, 100), &ticket(), Timestamp(300))
            .unwrap();
        db.record_intervention(&iv(1, Step::Join, 400), &ticket(), Timestamp(500))
            .unwrap();
        let out = db.outbox_all().unwrap();
        let kinds: Vec<_> = out.iter().map(|r| r.payload.kind()).collect();
        assert_eq!(kinds, ["ticket_link", "followup", "followup"]);
        assert_eq!(db.interventions(Some("B204")).unwrap().len(), 2);
        assert_eq!(db.interventions(Some("A001")).unwrap().len(), 0);
        let m = db.machine("AA:BB:CC:00:00:01").unwrap().unwrap();
        assert_eq!(m.last_intervention_at, Some(Timestamp(460)));
        assert_eq!(m.last_result, Some(Outcome::Ok));
        let OutboxPayload::Followup { content, .. } = &out[1].payload else {
            panic!("{out:?}")
        };
        assert!(content.contains("B204-PC01"), "{content}");
        assert!(content.contains("[roomcast:followup:c1:g:aa:bb:cc:00:00:01:100]"));
    }

    #[test]
    fn due_records_follow_backoff_and_sent_records_leave_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = InventoryDb::open(&dir.path().join("r.db")).unwrap();
        db.upsert_machine(&machine(2), Timestamp(0)).unwrap();
        db.record_image_deployed(
            &ImageDeployed {
                campaign: "c1".into(),
                machine: "aa:bb:cc:00:00:02".into(),
                image_id: "abc".into(),
                image_version: "v1".into(),
                at: Timestamp(50),
                result: Outcome::Ok,
            },
            Timestamp(60),
        )
        .unwrap();
        let due = db.outbox_due(Timestamp(60)).unwrap();
        assert_eq!(due.len(), 1);
        db.mark_failed(due[0].id, "timeout", Timestamp(120))
            .unwrap();
        assert!(db.outbox_due(Timestamp(119)).unwrap().is_empty());
        assert_eq!(db.outbox_due(Timestamp(120)).unwrap()[0].attempts, 1);
        assert_eq!(db.outbox_stats().unwrap().retrying, 1);
        db.mark_sent(due[0].id, Timestamp(130)).unwrap();
        assert!(db.outbox_due(Timestamp(10_000)).unwrap().is_empty());
        assert_eq!(
            db.outbox_stats().unwrap(),
            OutboxStats {
                sent: 1,
                pending: 0,
                retrying: 0
            }
        );
        let m = db.machine("aa:bb:cc:00:00:02").unwrap().unwrap();
        assert_eq!(m.last_image_version.as_deref(), Some("v1"));
    }

    #[test]
    fn image_on_unknown_machine_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = InventoryDb::open(&dir.path().join("r.db")).unwrap();
        let e = db
            .record_image_deployed(
                &ImageDeployed {
                    campaign: "c1".into(),
                    machine: "aa:bb:cc:00:00:09".into(),
                    image_id: "abc".into(),
                    image_version: "v1".into(),
                    at: Timestamp(50),
                    result: Outcome::Ok,
                },
                Timestamp(60),
            )
            .unwrap_err();
        assert!(e.to_string().contains("aa:bb:cc:00:00:09"), "{e}");
        assert!(db.outbox_all().unwrap().is_empty());
    }
}
