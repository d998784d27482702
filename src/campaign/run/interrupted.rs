//! Night runs that survive a reboot of the server. While a run of a campaign is under way (or
//! waiting for its `--at` time), `<db dir>/campaigns/<id>/run.json` says so, with its `--at`,
//! `--until` and parallelism; the run removes it when it returns, whatever it returns. A file still
//! there when the server starts again belongs to a run the reboot (or a crash) cut short:
//! `roomcast campaign resume --interrupted` (the `roomcast-resume.service` unit) resumes those
//! campaigns, waiting for `--at` when it is still ahead; the journal records `Resumed`.

use super::RunError;
use super::options::campaign_dir;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The marker's file name in the campaign's folder.
pub const MARKER: &str = "run.json";

/// What a run under way leaves in its campaign's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMarker {
    /// `--at`, epoch seconds: not before then.
    pub at: Option<i64>,
    /// `--until`, epoch seconds: no new step or PC after then.
    pub until: Option<i64>,
    /// PCs worked on at once at g and h.
    pub parallel: usize,
}

fn path(db: &Path, id: i64) -> PathBuf {
    campaign_dir(db, id).join(MARKER)
}

/// Writes the marker of campaign `id` (its folder exists: `start` saved its options there).
pub fn mark(db: &Path, id: i64, marker: &RunMarker) -> Result<(), RunError> {
    let file = path(db, id);
    let bytes = serde_json::to_vec(marker).expect("plain data serialises");
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(&file, bytes).map_err(|source| RunError::Io { path: file, source })
}

/// The marker of campaign `id`, if a run of it was under way.
pub fn read(db: &Path, id: i64) -> Option<RunMarker> {
    serde_json::from_slice(&std::fs::read(path(db, id)).ok()?).ok()
}

/// Removes the marker: the run returned.
pub fn clear(db: &Path, id: i64) {
    let _ = std::fs::remove_file(path(db, id));
}

/// The campaigns of the journal `db` whose run was cut short, oldest first, with their markers.
pub fn list(db: &Path) -> Vec<(i64, RunMarker)> {
    let dir = db.parent().unwrap_or(Path::new(".")).join("campaigns");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<(i64, RunMarker)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter_map(|id| Some((id, read(db, id)?)))
        .collect();
    found.sort_by_key(|(id, _)| *id);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_listed_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("roomcast.db");
        assert!(list(&db).is_empty());
        let m = RunMarker {
            at: Some(1_800_000_000),
            until: None,
            parallel: 4,
        };
        mark(&db, 7, &m).unwrap();
        mark(&db, 3, &RunMarker { at: None, ..m }).unwrap();
        let ids: Vec<i64> = list(&db).iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [3, 7]);
        assert_eq!(read(&db, 7), Some(m));
        clear(&db, 7);
        assert_eq!(list(&db).len(), 1);
    }
}
