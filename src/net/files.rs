//! The boot-files root shared by TFTP and HTTP: a request names a file *inside* the root, and no
//! spelling (`..`, an absolute path, a symlink pointing outside) ever reaches a file elsewhere.

use std::path::{Component, Path, PathBuf};

/// Why a requested path is not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `..`, a root or prefix component, or an empty name.
    #[error("{0:?}: not a plain path inside the boot root")]
    NotInside(String),
    /// The file does not exist (or is not a regular file).
    #[error("{0:?}: no such boot file")]
    NotFound(String),
    /// It resolves (through a symlink) to somewhere outside the root.
    #[error("{0:?}: resolves outside the boot root")]
    Escapes(String),
}

/// A directory of boot files (iPXE binaries, kernel, initramfs), served read-only.
#[derive(Debug, Clone)]
pub struct BootRoot {
    root: PathBuf,
}

impl BootRoot {
    /// Opens `dir`, resolving it once so later checks compare canonical paths.
    pub fn new(dir: &Path) -> std::io::Result<BootRoot> {
        let root = dir.canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::other(format!(
                "{}: not a directory",
                root.display()
            )));
        }
        Ok(BootRoot { root })
    }

    /// The canonical root.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The regular file `requested` names inside the root. A single leading `/` is tolerated
    /// (PXE ROMs send `/undionly.kpxe`), but nothing that climbs out.
    pub fn resolve(&self, requested: &str) -> Result<PathBuf, Refused> {
        let name = requested.to_string();
        let relative = requested.strip_prefix('/').unwrap_or(requested);
        let rel = Path::new(relative);
        if relative.is_empty()
            || relative.contains('\0')
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(Refused::NotInside(name));
        }
        let joined = self.root.join(rel);
        let real = joined
            .canonicalize()
            .map_err(|_| Refused::NotFound(name.clone()))?;
        if !real.starts_with(&self.root) {
            return Err(Refused::Escapes(name));
        }
        if !real.is_file() {
            return Err(Refused::NotFound(name));
        }
        Ok(real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_inside_the_root_resolve() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("undionly.kpxe"), "ipxe").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/vmlinuz"), "k").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link-out"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("dir-out")).unwrap();
        std::os::unix::fs::symlink("undionly.kpxe", dir.path().join("link-in")).unwrap();
        let root = BootRoot::new(dir.path()).unwrap();
        assert!(root.resolve("undionly.kpxe").is_ok());
        assert!(root.resolve("/undionly.kpxe").is_ok());
        assert!(root.resolve("sub/vmlinuz").is_ok());
        assert!(
            root.resolve("link-in").is_ok(),
            "a symlink staying inside is fine"
        );
        for bad in [
            "../../etc/passwd",
            "sub/../../etc/passwd",
            "//etc/passwd",
            "/etc/passwd/..",
            "",
            "sub/./vmlinuz/..",
        ] {
            assert!(
                matches!(
                    root.resolve(bad),
                    Err(Refused::NotInside(_)) | Err(Refused::NotFound(_))
                ),
                "{bad}"
            );
        }
        assert!(
            matches!(root.resolve("/etc/passwd"), Err(Refused::NotFound(_))),
            "absolute paths are inside the root"
        );
        assert!(matches!(root.resolve("link-out"), Err(Refused::Escapes(_))));
        assert!(matches!(
            root.resolve("dir-out/secret"),
            Err(Refused::Escapes(_))
        ));
        assert!(
            matches!(root.resolve("sub"), Err(Refused::NotFound(_))),
            "directories are not served"
        );
    }
}
