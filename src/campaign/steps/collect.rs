//! Step a: bring every installer of the profile into the local installer store, check each against
//! the catalog, and check the profile's licences; any problem refuses the campaign before a PC is
//! touched, naming the file or licence.
//!
//! Fetch: from where the catalog says an installer lives (`file:///…`, `smb://server/share/…`
//! through the share's mount point, or `http(s)://…`). Nothing half-written: a download goes to
//! `<file>.part` and is renamed only once it matched the catalog; a mismatch deletes it and becomes a
//! [`Refusal`] naming the file. An installer already in the store with the right size and sha256 is
//! not fetched again (a resumed campaign costs nothing).
use super::RoomSpec;
use crate::campaign::run::Progress;
use roomcast_proto::procedure::licences::check_licences;
use roomcast_proto::procedure::{Event, Refusal, Step};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One installer to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    /// Catalog file name.
    pub file: String,
    /// Catalog `installer.source`.
    pub source: String,
    /// Where it is kept in the store.
    pub dest: PathBuf,
    /// Catalog size in bytes.
    pub size: u64,
    /// Catalog sha256.
    pub sha256: String,
}

/// Where a source lives once its scheme is understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A local file (`file:///…`, or `smb://…` under the shares' mount root).
    Local(PathBuf),
    /// An HTTP(S) URL.
    Http(String),
}

/// Resolves a catalog source. `smb://server/share/dir/file` is read from
/// `<shares>/server/share/dir/file`: roomcast never mounts a share itself (that needs the school's
/// credentials and the OS's CIFS client), the technician mounts it there.
pub fn origin(source: &str, shares: &Path) -> Result<Origin, String> {
    if let Some(path) = source.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!(
                "`{source}`: a file source needs an absolute path (file:///…)"
            ));
        }
        return Ok(Origin::Local(PathBuf::from(path)));
    }
    if let Some(rest) = source.strip_prefix("smb://") {
        if rest.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(format!("`{source}`: not a plain smb://server/share/path"));
        }
        return Ok(Origin::Local(shares.join(rest)));
    }
    if source.starts_with("http://") || source.starts_with("https://") {
        return Ok(Origin::Http(source.to_string()));
    }
    Err(format!(
        "`{source}`: unsupported source (file:///, smb:// or http(s)://)"
    ))
}

/// Fetches one installer into the store; returns the bytes transferred (0 when it was already
/// there). `Err` is the refusal step a reports.
pub fn fetch(f: &Fetch, shares: &Path, timeout: Duration) -> Result<u64, Refusal> {
    if f.dest.exists() && verify_installer(&f.dest, &f.file, f.size, &f.sha256).is_none() {
        return Ok(0);
    }
    let unavailable = |reason: String| Refusal::InstallerUnavailable {
        file: f.file.clone(),
        reason,
    };
    let origin = origin(&f.source, shares).map_err(unavailable)?;
    if let Some(dir) = f.dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
    }
    let part = f.dest.with_file_name(format!("{}.part", f.file));
    let copied = match &origin {
        Origin::Local(path) => copy_local(path, &part, f.size),
        Origin::Http(url) => download(url, &part, f.size, timeout),
    };
    let bytes = match copied {
        Ok(n) => n,
        Err(reason) => {
            let _ = std::fs::remove_file(&part);
            return Err(unavailable(reason));
        }
    };
    if let Some(refusal) = verify_installer(&part, &f.file, f.size, &f.sha256) {
        let _ = std::fs::remove_file(&part);
        return Err(refusal);
    }
    std::fs::rename(&part, &f.dest)
        .map_err(|e| unavailable(format!("{}: {e}", f.dest.display())))?;
    Ok(bytes)
}

/// Copies at most `size + 1` bytes: a source bigger than the catalog says is a mismatch, and
/// reading it whole would only fill the disk.
fn copy_local(from: &Path, to: &Path, size: u64) -> Result<u64, String> {
    let src = std::fs::File::open(from).map_err(|e| format!("{}: {e}", from.display()))?;
    write_limited(src, to, size).map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))
}

fn download(url: &str, to: &Path, size: u64, timeout: Duration) -> Result<u64, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(timeout))
        .timeout_recv_body(Some(timeout))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    let reader = response.body_mut().as_reader();
    write_limited(reader, to, size).map_err(|e| format!("{url}: {e}"))
}

fn write_limited(src: impl Read, to: &Path, size: u64) -> std::io::Result<u64> {
    let mut out = std::fs::File::create(to)?;
    let n = std::io::copy(&mut src.take(size + 1), &mut out)?;
    out.flush()?;
    out.sync_all()?;
    Ok(n)
}

/// Step a's HTTP(S) timeouts: to connect, and to receive the body of one installer.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs step a: fetches (when `fetches` is given, from under `shares`), then checks every installer
/// of `spec` and the licences. `Refused` names every problem at once.
pub fn run(
    spec: &RoomSpec,
    fetches: Option<(&[Fetch], &Path)>,
    observe: &(dyn Fn(&Progress) + Sync),
) -> Event {
    if let Some((fetches, shares)) = fetches {
        let mut refusals = Vec::new();
        for f in fetches {
            match fetch(f, shares, FETCH_TIMEOUT) {
                Ok(bytes) => observe(&Progress::Fetched {
                    file: f.file.clone(),
                    bytes,
                }),
                Err(r) => refusals.push(r),
            }
        }
        if !refusals.is_empty() {
            return Event::Refused(refusals);
        }
    }
    let mut refusals: Vec<_> = spec
        .installers
        .iter()
        .filter_map(|i| verify_installer(&i.path, &i.file, i.size, &i.sha256))
        .collect();
    refusals.extend(check_licences(
        &spec.licensed,
        &spec.grants,
        spec.plan.machines.len() as u32,
        &spec.today,
    ));
    if refusals.is_empty() {
        Event::StepSucceeded {
            step: Step::Collect,
        }
    } else {
        Event::Refused(refusals)
    }
}

/// Checks the installer at `path` against the catalog's `file`, `size` and `sha256` (lowercase hex).
pub fn verify_installer(path: &Path, file: &str, size: u64, sha256: &str) -> Option<Refusal> {
    let unavailable = |reason: String| {
        Some(Refusal::InstallerUnavailable {
            file: file.to_string(),
            reason,
        })
    };
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return unavailable(format!("{}: {e}", path.display())),
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) => return unavailable(format!("{}: {e}", path.display())),
        }
    }
    let actual = hex::encode(hasher.finalize());
    if total != size {
        return Some(Refusal::InstallerMismatch {
            file: file.to_string(),
            expected: format!("{size} bytes, sha256 {sha256}"),
            actual: format!("{total} bytes, sha256 {actual}"),
        });
    }
    if actual != sha256 {
        return Some(Refusal::InstallerMismatch {
            file: file.to_string(),
            expected: sha256.to_string(),
            actual,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn fetch_of(dir: &Path, source: String, bytes: &[u8]) -> Fetch {
        Fetch {
            file: "setup.sh".into(),
            source,
            dest: dir.join("store/setup.sh"),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        }
    }

    #[test]
    fn sources_resolve_by_scheme_and_smb_goes_under_the_mount_root() {
        let shares = Path::new("/mnt/shares");
        assert_eq!(
            origin("smb://nas/installers/a.msi", shares),
            Ok(Origin::Local("/mnt/shares/nas/installers/a.msi".into()))
        );
        assert_eq!(
            origin("file:///srv/a.msi", shares),
            Ok(Origin::Local("/srv/a.msi".into()))
        );
        assert!(origin("smb://nas/../etc/passwd", shares).is_err());
        assert!(origin("ftp://x/a", shares).is_err());
        assert!(matches!(origin("https://x/a", shares), Ok(Origin::Http(_))));
    }

    #[test]
    fn a_local_installer_is_copied_once_and_a_bad_one_is_refused_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.sh");
        std::fs::write(&src, b"echo hi\n").unwrap();
        let f = fetch_of(
            dir.path(),
            format!("file://{}", src.display()),
            b"echo hi\n",
        );
        let shares = dir.path();
        assert_eq!(fetch(&f, shares, Duration::from_secs(1)), Ok(8));
        assert_eq!(
            fetch(&f, shares, Duration::from_secs(1)),
            Ok(0),
            "already there"
        );
        std::fs::remove_file(&f.dest).unwrap();
        std::fs::write(&src, b"echo HI\n").unwrap();
        match fetch(&f, shares, Duration::from_secs(1)) {
            Err(Refusal::InstallerMismatch { file, .. }) => assert_eq!(file, "setup.sh"),
            other => panic!("{other:?}"),
        }
        assert!(!f.dest.exists());
        assert!(!dir.path().join("store/setup.sh.part").exists());
    }

    #[test]
    fn size_and_hash_must_match_and_the_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("setup.msi");
        std::fs::write(&p, b"abc").unwrap();
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(verify_installer(&p, "setup.msi", 3, good), None);
        let bad = verify_installer(&p, "setup.msi", 3, &"0".repeat(64)).unwrap();
        assert!(
            bad.to_string()
                .starts_with("installer setup.msi: expected sha256 0000"),
            "{bad}"
        );
        assert!(matches!(
            verify_installer(&p, "setup.msi", 4, good),
            Some(Refusal::InstallerMismatch { .. })
        ));
        assert!(matches!(
            verify_installer(&dir.path().join("nope"), "nope.msi", 1, good),
            Some(Refusal::InstallerUnavailable { .. })
        ));
    }
}
