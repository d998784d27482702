//! Step a's installer check: a fetched installer must have the catalog's size and sha256; a mismatch
//! names the file and becomes a [`Refusal`] before any PC is touched.

use roomcast_proto::procedure::Refusal;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

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
