//! How long a campaign's logs are kept. The journal (SQLite rows: small, and the history GLPI and
//! the reports are built from) and each campaign's reports and options are kept; the per-machine
//! logs of `<db dir>/campaigns/<id>/logs/` (the bulk: every command's output on every PC) are
//! removed once untouched for `days` (`log_retention_days` in /etc/roomcast/roomcast.toml, default
//! [`DEFAULT_DAYS`]). `roomcast campaign start` applies it.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// 400 days: a school year and its summer, so that next year's run of a room can still be set
/// beside this year's logs (rooms are rebuilt about once a year).
pub const DEFAULT_DAYS: u32 = 400;

/// Removes the `logs/` folders of the campaigns of journal `db` last written more than `days` before
/// `now`; returns how many. A folder that cannot be read or removed is left (and counted out).
pub fn prune_logs(db: &Path, days: u32, now: SystemTime) -> usize {
    let dir = db.parent().unwrap_or(Path::new(".")).join("campaigns");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let limit = Duration::from_secs(u64::from(days) * 86_400);
    let mut removed = 0;
    for e in entries.flatten() {
        let logs = e.path().join("logs");
        let old = std::fs::metadata(&logs)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > limit);
        // A run under way (its marker present) keeps its logs whatever their age.
        let running = e.path().join(super::interrupted::MARKER).exists();
        if old && !running && std::fs::remove_dir_all(&logs).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_logs_older_than_the_period_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("roomcast.db");
        for id in ["1", "2"] {
            let logs = dir.path().join("campaigns").join(id).join("logs");
            std::fs::create_dir_all(&logs).unwrap();
            std::fs::write(logs.join("PC01.log"), "x").unwrap();
            std::fs::write(logs.parent().unwrap().join("report.md"), "r").unwrap();
        }
        let now = SystemTime::now();
        // Ten days on, with a 30-day period: nothing goes.
        assert_eq!(
            prune_logs(&db, 30, now + Duration::from_secs(10 * 86_400)),
            0
        );
        // 31 days on: both logs folders go, the reports stay.
        assert_eq!(
            prune_logs(&db, 30, now + Duration::from_secs(31 * 86_400)),
            2
        );
        for id in ["1", "2"] {
            let c = dir.path().join("campaigns").join(id);
            assert!(!c.join("logs").exists());
            assert!(c.join("report.md").exists());
        }
    }
}
