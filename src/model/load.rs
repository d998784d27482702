//! The only part of `model/` that touches the file system: find the YAML files under the paths
//! given, read each one with a size cap, and classify it (catalog entry, profile or room) from
//! where it sits in the tree. Everything after this works on bytes and strings.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::source::MAX_FILE_BYTES;

/// What a YAML file describes, decided by its place in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    /// `profiles/catalog/<id>.yaml`
    Catalog,
    /// `profiles/<name>.yaml`
    Profile,
    /// `rooms/<UAI>/<room>.yaml`
    Room,
    /// Anywhere else: no kind of file belongs there (`RC050`).
    Unknown,
}

/// A file as read from disk, not parsed yet.
#[derive(Debug, Clone)]
pub struct RawFile {
    /// The path as reported in findings.
    pub path: String,
    /// What it describes.
    pub kind: FileKind,
    /// At most `MAX_FILE_BYTES + 1` bytes of it.
    pub bytes: Vec<u8>,
    /// Its size on disk.
    pub size: u64,
    /// Whether the user named it (or a folder holding it); other files are context (the catalog
    /// and profiles a room needs, the other rooms of its school) and are checked but not reported.
    pub target: bool,
}

/// A file or folder that could not be read: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct LoadError {
    /// The path that failed.
    pub path: String,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

fn io_err(path: &Path, source: std::io::Error) -> LoadError {
    LoadError {
        path: path.display().to_string(),
        source,
    }
}

/// The repository root of a path: the folder holding the `profiles/` or `rooms/` it is under.
pub fn repo_root(path: &Path) -> Option<PathBuf> {
    let comps: Vec<Component> = path.components().collect();
    let i = comps
        .iter()
        .rposition(|c| matches!(c.as_os_str().to_str(), Some("profiles" | "rooms")))?;
    Some(comps[..i].iter().collect())
}

/// Classifies a file by the folder it sits in under its repository root: exactly
/// `profiles/catalog/<id>.yaml`, `profiles/<name>.yaml` or `rooms/<UAI>/<room>.yaml`;
/// anything else (a room straight under `rooms/`, a sub-folder, a file outside `profiles/` and
/// `rooms/`) is [`FileKind::Unknown`].
pub fn classify(path: &Path) -> FileKind {
    let names: Vec<&str> = path
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .collect();
    let top = names
        .iter()
        .rposition(|n| matches!(*n, "profiles" | "rooms"));
    let below = top.map(|i| names.len() - i - 1);
    match (top.map(|i| names[i]), below) {
        (Some("rooms"), Some(2)) => FileKind::Room,
        (Some("profiles"), Some(1)) => FileKind::Profile,
        (Some("profiles"), Some(2)) if top.and_then(|i| names.get(i + 1)) == Some(&"catalog") => {
            FileKind::Catalog
        }
        _ => FileKind::Unknown,
    }
}

fn is_yaml(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// Every YAML file under `path` (itself when it is a file), sorted; symlinked folders and hidden
/// entries are skipped.
pub fn walk(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let meta = fs::metadata(path).map_err(|e| io_err(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let p = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let ft = entry.file_type().map_err(|e| io_err(&p, e))?;
            if ft.is_dir() {
                stack.push(p);
            } else if is_yaml(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads one file, at most `MAX_FILE_BYTES + 1` bytes of it (the parse refuses bigger ones).
pub fn read(path: &Path, target: bool) -> Result<RawFile, LoadError> {
    let file = fs::File::open(path).map_err(|e| io_err(path, e))?;
    let size = file.metadata().map_err(|e| io_err(path, e))?.len();
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(path, e))?;
    Ok(RawFile {
        path: path.display().to_string(),
        kind: classify(path),
        size: size.max(bytes.len() as u64),
        bytes,
        target,
    })
}

/// Reads the files to check: every YAML file under `targets`, plus, as context, the whole
/// repository each target belongs to (its `profiles/` and `rooms/`), so that a single room
/// is checked against the catalog, its profile and the other rooms of its school.
pub fn load(targets: &[PathBuf]) -> Result<Vec<RawFile>, LoadError> {
    let mut wanted = std::collections::BTreeSet::new();
    let mut roots = std::collections::BTreeSet::new();
    for t in targets {
        for f in walk(t)? {
            wanted.insert(fs::canonicalize(&f).map_err(|e| io_err(&f, e))?);
        }
        if let Some(root) = repo_root(t) {
            roots.insert(root);
        }
    }
    let mut files = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut add = |p: PathBuf| -> Result<(), LoadError> {
        let canon = fs::canonicalize(&p).map_err(|e| io_err(&p, e))?;
        if seen.insert(canon.clone()) {
            files.push(read(&p, wanted.contains(&canon))?);
        }
        Ok(())
    };
    for root in &roots {
        for sub in ["profiles", "rooms"] {
            let dir = root.join(sub);
            if dir.is_dir() {
                for f in walk(&dir)? {
                    add(f)?;
                }
            }
        }
    }
    for t in targets {
        for f in walk(t)? {
            add(f)?;
        }
    }
    Ok(files)
}
