//! Delivering the outbox to GLPI (`roomcast inventory sync`): each due record, in order, with
//! retries and exponential backoff, and exactly once.
//!
//! Exactly once = at-least-once delivery + idempotent effects:
//! - a record is marked sent only after GLPI confirmed it; until then it is retried;
//! - before sending, the record is durably flagged `tried`; a record found `tried` but not sent (the
//!   process died, or a timeout hid GLPI's answer) is checked against GLPI first: the followup whose
//!   text carries the record's marker, the computer already linked to the ticket;
//! - the campaign's ticket is looked up by its marker before being created, and its id is stored
//!   before any followup is sent to it;
//! - computer updates and native inventories are idempotent by nature (same fields, same asset).
//!
//! GLPI down or slow (timeout, refused connection, 5xx) ends the pass: the failed record gets a
//! backoff, the others stay due and are tried on the next `sync`.

use super::db::{DbError, InventoryDb, OutboxPayload, OutboxRecord, marker};
use super::glpi::{GlpiClient, GlpiConfig, GlpiError, InventoryEncoding, send_native_inventory};
use super::{CampaignTicket, Timestamp};

/// First retry delay, in seconds; it doubles at each failed attempt.
pub const BACKOFF_BASE_SECS: i64 = 60;
/// Longest retry delay, in seconds (one hour: a night has room for several tries).
pub const BACKOFF_MAX_SECS: i64 = 3600;

/// Delay before the next try after `attempts` failed attempts (1, 2, ...): 60 s, 120 s, 240 s, …,
/// at most one hour.
pub fn backoff_secs(attempts: u32) -> i64 {
    let exp = attempts.saturating_sub(1).min(20);
    (BACKOFF_BASE_SECS << exp).min(BACKOFF_MAX_SECS)
}

/// What one sync pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Records delivered in this pass.
    pub sent: usize,
    /// Records already present in GLPI (a previous pass sent them but could not mark them).
    pub found_already_sent: usize,
    /// Records that failed: (idempotency key, error).
    pub failed: Vec<(String, String)>,
    /// Due records not tried because the pass stopped (GLPI down, bad token).
    pub deferred: usize,
    /// Why the pass stopped early.
    pub stopped: Option<String>,
}

/// A sync error that is not GLPI's.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Another `sync` holds the lock: two passes at once could both send the same record.
    #[error(
        "another `roomcast inventory sync` is running (lock {path} held); try again when it ends"
    )]
    Busy {
        /// The lock file.
        path: std::path::PathBuf,
    },
    /// The lock file could not be opened.
    #[error("sync lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The lock file beside the database that keeps two sync passes from running at once.
pub fn lock_path(db: &InventoryDb) -> std::path::PathBuf {
    let mut p = db.path().as_os_str().to_owned();
    p.push(".sync-lock");
    p.into()
}

enum Failure {
    Glpi(GlpiError),
    Db(DbError),
}

impl From<GlpiError> for Failure {
    fn from(e: GlpiError) -> Self {
        Failure::Glpi(e)
    }
}

impl From<DbError> for Failure {
    fn from(e: DbError) -> Self {
        Failure::Db(e)
    }
}

/// Delivers every record due at `now`. GLPI failures are recorded per record and reported; only a
/// local database failure is an error.
pub fn sync(
    db: &InventoryDb,
    config: &GlpiConfig,
    encoding: InventoryEncoding,
    now: Timestamp,
) -> Result<SyncReport, SyncError> {
    let path = lock_path(db);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| SyncError::Lock {
            path: path.clone(),
            source,
        })?;
    // Held until `lock` is dropped at the end of the pass (or the process dies).
    match roomcast_store::lockfile::try_lock_exclusive(&lock) {
        Ok(true) => {}
        Ok(false) => return Err(SyncError::Busy { path }),
        Err(source) => return Err(SyncError::Lock { path, source }),
    }
    let due = db.outbox_due(now)?;
    let mut report = SyncReport::default();
    if due.is_empty() {
        return Ok(report);
    }
    let mut client = GlpiClient::new(config.clone());
    let mut session_used = false;
    for (i, rec) in due.iter().enumerate() {
        db.mark_attempt(rec.id)?;
        session_used |= !matches!(rec.payload, OutboxPayload::NativeInventory { .. });
        match deliver(db, &mut client, config, encoding, rec, now) {
            Ok(already) => {
                db.mark_sent(rec.id, now)?;
                report.sent += 1;
                report.found_already_sent += usize::from(already);
            }
            Err(Failure::Db(e)) => return Err(e.into()),
            Err(Failure::Glpi(e)) => {
                // A bad token is the configuration's fault, not the record's: once fixed, the
                // next sync must not wait for a backoff.
                let next = if e.is_fatal() {
                    now
                } else {
                    Timestamp(now.0 + backoff_secs(rec.attempts + 1))
                };
                let msg = e.to_string();
                tracing::warn!(record = %rec.idempotency_key, error = %msg, "GLPI delivery failed");
                db.mark_failed(rec.id, &msg, next)?;
                report
                    .failed
                    .push((rec.idempotency_key.clone(), msg.clone()));
                if e.is_transient() || e.is_fatal() {
                    report.deferred = due.len() - i - 1;
                    report.stopped = Some(msg);
                    break;
                }
            }
        }
    }
    if session_used && report.stopped.is_none() {
        // Closing is courtesy: the records are already marked; a failure here changes nothing.
        if let Err(e) = client.kill_session() {
            tracing::warn!(error = %e, "closing the GLPI session failed");
        }
    }
    Ok(report)
}

/// Sends one record. `Ok(true)` when GLPI already had it.
fn deliver(
    db: &InventoryDb,
    client: &mut GlpiClient,
    config: &GlpiConfig,
    encoding: InventoryEncoding,
    rec: &OutboxRecord,
    now: Timestamp,
) -> Result<bool, Failure> {
    match &rec.payload {
        OutboxPayload::ComputerUpdate {
            deployed,
            serial,
            hostname,
        } => {
            let id = client.find_computer_by_serial(serial, hostname)?;
            db.set_glpi_id(&deployed.machine, id)?;
            let comment = client.computer_comment(id)?;
            let block = format!(
                "Image : {} (sha256 {})\nDéployée le {} UTC, campagne {}, résultat {}",
                deployed.image_version,
                deployed.image_id,
                deployed.at.to_glpi(),
                deployed.campaign,
                deployed.result
            );
            let new = replace_block(&comment, &block);
            if new == comment {
                return Ok(true);
            }
            client.update_computer(id, serde_json::json!({ "comment": new }))?;
            Ok(false)
        }
        OutboxPayload::TicketLink {
            ticket,
            serial,
            hostname,
        } => {
            let ticket_id = ensure_ticket(db, client, ticket, now)?;
            let computer = client.find_computer_by_serial(serial, hostname)?;
            if rec.tried && client.ticket_computers(ticket_id)?.contains(&computer) {
                return Ok(true);
            }
            client.link_computer(ticket_id, computer)?;
            Ok(false)
        }
        OutboxPayload::Followup { ticket, content } => {
            let ticket_id = ensure_ticket(db, client, ticket, now)?;
            let m = marker(&rec.idempotency_key);
            if rec.tried
                && client
                    .ticket_followups(ticket_id)?
                    .iter()
                    .any(|c| c.contains(&m))
            {
                return Ok(true);
            }
            client.add_followup(ticket_id, content)?;
            Ok(false)
        }
        OutboxPayload::NativeInventory { agent_id, document } => {
            send_native_inventory(&config.url, config.timeout, agent_id, document, encoding)?;
            Ok(false)
        }
    }
}

/// The campaign's ticket id: known locally, else found in GLPI by its marker, else created. The id
/// is stored before it is used, so a crash never leads to a second ticket.
fn ensure_ticket(
    db: &InventoryDb,
    client: &mut GlpiClient,
    ticket: &CampaignTicket,
    now: Timestamp,
) -> Result<u64, Failure> {
    if let Some(id) = db.ticket_id(&ticket.campaign)? {
        return Ok(id);
    }
    let m = ticket_marker(&ticket.campaign);
    let id = match client.find_ticket_by_marker(&m)? {
        Some(id) => id,
        None => client.create_ticket(&ticket.title, &format!("{}\n\n{m}", ticket.content))?,
    };
    db.set_ticket_id(&ticket.campaign, id, now)?;
    Ok(id)
}

/// The marker in a campaign ticket's description.
pub fn ticket_marker(campaign: &str) -> String {
    marker(&format!("ticket:{campaign}"))
}

const BLOCK_START: &str = "[roomcast]";
const BLOCK_END: &str = "[/roomcast]";

/// Replaces (or appends) roomcast's block in a computer's comment, keeping what people wrote.
pub fn replace_block(comment: &str, block: &str) -> String {
    let new_block = format!("{BLOCK_START}\n{block}\n{BLOCK_END}");
    if let (Some(s), Some(e)) = (comment.find(BLOCK_START), comment.find(BLOCK_END))
        && s < e
    {
        return format!(
            "{}{}{}",
            &comment[..s],
            new_block,
            &comment[e + BLOCK_END.len()..]
        );
    }
    if comment.trim().is_empty() {
        new_block
    } else {
        format!("{}\n\n{new_block}", comment.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(
            (1..=8).map(backoff_secs).collect::<Vec<_>>(),
            [60, 120, 240, 480, 960, 1920, 3600, 3600]
        );
        assert_eq!(backoff_secs(u32::MAX), 3600);
    }

    #[test]
    fn comment_block_is_replaced_keeping_human_text() {
        let first = replace_block("Écran changé en 2024", "Image : v1");
        assert_eq!(
            first,
            "Écran changé en 2024\n\n[roomcast]\nImage : v1\n[/roomcast]"
        );
        let second = replace_block(&first, "Image : v2");
        assert_eq!(
            second,
            "Écran changé en 2024\n\n[roomcast]\nImage : v2\n[/roomcast]"
        );
        assert_eq!(replace_block("", "x"), "[roomcast]\nx\n[/roomcast]");
    }
}
