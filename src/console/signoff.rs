//! Teachers' sign-off links (step e): one random one-time token per teacher on the profile's
//! sign-off list, stored only as its sha256, expiring at the campaign's deadline or after
//! `link_days`. Redeeming a link records the sign-off through [`driver::signoff`] — the very
//! function behind `roomcast campaign signoff` — under the teacher's name the link was issued to
//! (never a name from the form). A reused, expired, unknown (forged) link, a teacher no longer on
//! the list or a campaign no longer at e is refused and nothing is recorded.
//!
//! The links live in `console_signoff_links`, next to the journal in the same database; the
//! console's journal page lists them (teacher, issued, expires, used; never the token).

use crate::campaign::driver;
use crate::campaign::journal::{Journal, JournalError};
use roomcast_proto::procedure::{Action, Phase, State, Step, Timestamp, Verdict};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::path::Path;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS console_signoff_links (
    token_hash  TEXT PRIMARY KEY,
    campaign_id INTEGER NOT NULL,
    teacher     TEXT NOT NULL,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
)";

/// A comment longer than this is cut (bounded input).
pub const MAX_COMMENT: usize = 2000;

/// Why a link was refused (said to the teacher in these words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefused {
    /// No such link: mistyped, forged, or replaced by newer links.
    #[error("this link is not valid (mistyped, or replaced by a newer one)")]
    Unknown,
    /// Already used.
    #[error("this link was already used")]
    Used,
    /// Past its expiry.
    #[error("this link has expired")]
    Expired,
    /// The campaign does not wait for a sign-off any more.
    #[error("this campaign is not waiting for a sign-off")]
    NotAwaiting,
    /// The teacher is not (or no longer) on the profile's sign-off list.
    #[error("{0} is not on this room's sign-off list")]
    NotListed(String),
    /// Storage failed.
    #[error("{0}")]
    Storage(String),
}

impl From<rusqlite::Error> for LinkRefused {
    fn from(e: rusqlite::Error) -> Self {
        LinkRefused::Storage(e.to_string())
    }
}

impl From<JournalError> for LinkRefused {
    fn from(e: JournalError) -> Self {
        LinkRefused::Storage(e.to_string())
    }
}

/// A link as stored (no token).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Link {
    /// Campaign id.
    pub campaign: i64,
    /// The teacher it was issued to.
    pub teacher: String,
    /// When issued.
    pub issued_at: i64,
    /// When it stops working.
    pub expires_at: i64,
    /// When it was used, if it was.
    pub used_at: Option<i64>,
}

/// A freshly issued link: the only moment its token exists outside the teacher's hands.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The teacher.
    pub teacher: String,
    /// The one-time token (64 hex digits).
    pub token: String,
    /// When it stops working.
    pub expires_at: Timestamp,
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn open(db: &Path) -> Result<Connection, LinkRefused> {
    let conn = Connection::open(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

fn waiting_list(state: &State) -> Option<Vec<String>> {
    match state.phase {
        Phase::At(Step::Signoff) => state.plan.as_ref().map(|p| p.signoff_allowed.clone()),
        _ => None,
    }
}

/// Issues one link per teacher on the sign-off list of campaign `id`, which must be at step e;
/// links issued before for it and not used stop working. Each expires at `deadline` or after
/// `days`, whichever comes first.
pub fn issue(
    db: &Path,
    id: i64,
    now: Timestamp,
    deadline: Option<Timestamp>,
    days: u32,
) -> Result<Vec<Issued>, LinkRefused> {
    let journal = Journal::open(db)?;
    let state = journal.state(id)?;
    let list = waiting_list(&state).ok_or(LinkRefused::NotAwaiting)?;
    let mut expires = Timestamp(now.0 + i64::from(days) * 86_400);
    if let Some(d) = deadline.filter(|d| d.0 > now.0 && d.0 < expires.0) {
        expires = d;
    }
    let mut conn = open(db)?;
    let tx = conn.transaction()?;
    tx.execute(
        "DELETE FROM console_signoff_links WHERE campaign_id = ?1 AND used_at IS NULL",
        [id],
    )?;
    let mut out = Vec::new();
    for teacher in list {
        let token = super::auth::random_token();
        tx.execute(
            "INSERT INTO console_signoff_links (token_hash, campaign_id, teacher, issued_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![digest(&token), id, teacher, now.0, expires.0],
        )?;
        out.push(Issued {
            teacher,
            token,
            expires_at: expires,
        });
    }
    tx.commit()?;
    Ok(out)
}

/// The link a token opens, if it may still be used, with the campaign's state.
pub fn lookup(db: &Path, token: &str, now: Timestamp) -> Result<(Link, State), LinkRefused> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LinkRefused::Unknown);
    }
    let conn = open(db)?;
    let link = conn
        .query_row(
            "SELECT campaign_id, teacher, issued_at, expires_at, used_at
             FROM console_signoff_links WHERE token_hash = ?1",
            [digest(token)],
            |r| {
                Ok(Link {
                    campaign: r.get(0)?,
                    teacher: r.get(1)?,
                    issued_at: r.get(2)?,
                    expires_at: r.get(3)?,
                    used_at: r.get(4)?,
                })
            },
        )
        .optional()?
        .ok_or(LinkRefused::Unknown)?;
    if link.used_at.is_some() {
        return Err(LinkRefused::Used);
    }
    if now.0 >= link.expires_at {
        return Err(LinkRefused::Expired);
    }
    let state = Journal::open(db)?.state(link.campaign)?;
    let list = waiting_list(&state).ok_or(LinkRefused::NotAwaiting)?;
    if !list.contains(&link.teacher) {
        return Err(LinkRefused::NotListed(link.teacher));
    }
    Ok((link, state))
}

/// Redeems a link: spends it, then records the sign-off under its teacher's name with
/// [`driver::signoff`]. Returns the link and the engine's answer (the campaign's next actions).
pub fn redeem(
    db: &Path,
    token: &str,
    verdict: Verdict,
    comment: Option<String>,
    now: Timestamp,
) -> Result<(Link, State, Vec<Action>), LinkRefused> {
    let (link, _) = lookup(db, token, now)?;
    let conn = open(db)?;
    // Spend it first, atomically: of two concurrent submissions only one gets here.
    let spent = conn.execute(
        "UPDATE console_signoff_links SET used_at = ?1
         WHERE token_hash = ?2 AND used_at IS NULL AND expires_at > ?1",
        params![now.0, digest(token)],
    )?;
    if spent != 1 {
        return Err(LinkRefused::Used);
    }
    let comment = comment
        .map(|c| c.trim().chars().take(MAX_COMMENT).collect::<String>())
        .filter(|c| !c.is_empty());
    let mut journal = Journal::open(db)?;
    let (state, actions) = driver::signoff(
        &mut journal,
        link.campaign,
        &link.teacher,
        verdict,
        comment,
        now,
    )?;
    tracing::info!(campaign = link.campaign, teacher = ?link.teacher, ?verdict, "sign-off recorded from a link");
    Ok((link, state, actions))
}

/// Every link of a campaign (for the journal page; no token).
pub fn links(db: &Path, id: i64) -> Result<Vec<Link>, LinkRefused> {
    let conn = open(db)?;
    let mut stmt = conn.prepare(
        "SELECT campaign_id, teacher, issued_at, expires_at, used_at
         FROM console_signoff_links WHERE campaign_id = ?1 ORDER BY issued_at, teacher",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok(Link {
            campaign: r.get(0)?,
            teacher: r.get(1)?,
            issued_at: r.get(2)?,
            expires_at: r.get(3)?,
            used_at: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A QR code of `text` for a terminal (two rows of modules per line of text).
pub fn qr_text(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        Err(e) => format!("(no QR code: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_proto::procedure::{DeployMode, Event, Plan};

    fn at_e(db: &Path) -> i64 {
        let mut j = Journal::open(db).unwrap();
        let plan = Plan {
            room: "B204".into(),
            machines: vec!["PC01".into()],
            master: "PC01".into(),
            mode: DeployMode::Image,
            retries: 0,
            signoff_required: true,
            signoff_allowed: vec!["Mme Curie".into(), "M. Pasteur".into()],
        };
        let (id, _) = j.start(&plan, Timestamp(100)).unwrap();
        let mut state = j.state(id).unwrap();
        for step in [Step::Collect, Step::Master, Step::Install, Step::Tests] {
            state = j
                .record_on(id, 1, state, &Event::StepSucceeded { step }, Timestamp(200))
                .unwrap()
                .0;
        }
        assert_eq!(state.phase, Phase::At(Step::Signoff));
        id
    }

    #[test]
    fn a_link_signs_once_under_its_teacher_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.db");
        let id = at_e(&db);
        let links = issue(&db, id, Timestamp(1000), Some(Timestamp(5000)), 7).unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!(
            links[0].expires_at,
            Timestamp(5000),
            "the deadline comes first"
        );
        let curie = &links[0].token;
        // Forged: one character changed.
        let mut forged = curie.clone().into_bytes();
        forged[10] = if forged[10] == b'a' { b'b' } else { b'a' };
        let forged = String::from_utf8(forged).unwrap();
        let at = Timestamp(2000);
        assert_eq!(
            redeem(&db, &forged, Verdict::Ok, None, at).unwrap_err(),
            LinkRefused::Unknown
        );
        assert_eq!(
            redeem(&db, curie, Verdict::Ok, None, Timestamp(5000)).unwrap_err(),
            LinkRefused::Expired
        );
        let events_before = Journal::open(&db).unwrap().events(id).unwrap().len();
        let (link, state, _) = redeem(&db, curie, Verdict::Ok, Some("ok <b>".into()), at).unwrap();
        assert_eq!(link.teacher, "Mme Curie");
        assert_eq!(state.phase, Phase::At(Step::Capture));
        assert_eq!(state.signoffs[0].by, "Mme Curie");
        let events = Journal::open(&db).unwrap().events(id).unwrap().len();
        assert_eq!(events, events_before + 1);
        assert_eq!(
            redeem(&db, curie, Verdict::Ok, None, at).unwrap_err(),
            LinkRefused::Used
        );
        // The other teacher's link: the campaign is past e now.
        assert_eq!(
            redeem(&db, &links[1].token, Verdict::Ok, None, at).unwrap_err(),
            LinkRefused::NotAwaiting
        );
        assert_eq!(
            Journal::open(&db).unwrap().events(id).unwrap().len(),
            events
        );
        assert!(qr_text("https://c.example/signoff/x").lines().count() > 10);
    }
}
