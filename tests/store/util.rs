//! Helpers: a store with a trusted key, sparse test disks, loop devices and tmpfs mounts that clean up.

use roomcast_store::Store;
use roomcast_store::capture::{self, CaptureOptions, CaptureReport};
use roomcast_store::chunk::ChunkSize;
use roomcast_store::keys::{self, Signer};
use roomcast_store::manifest::{ImageId, ImageLabel};
use roomcast_store::restore::{self, RestoreOptions, RestoreReport};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A store in a temp folder whose signer key is trusted.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub signer: Signer,
    pub key_file: PathBuf,
    pub pub_file: PathBuf,
}

pub fn label(name: &str) -> ImageLabel {
    ImageLabel {
        name: name.into(),
        version: "1".into(),
        profile: Some("test".into()),
        captured_by: "test@host".into(),
        captured_at: "2026-11-28T12:00:00Z".into(),
    }
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::at(dir, None)
    }

    /// A fixture whose store lives at `store_dir` (e.g. a small tmpfs).
    pub fn at(dir: tempfile::TempDir, store_dir: Option<&Path>) -> Self {
        let (key_file, pub_file, _) = keys::generate_files(&dir.path().join("keys")).unwrap();
        let root = store_dir.map_or_else(|| dir.path().join("store"), Path::to_path_buf);
        let store = Store::open_or_create(&root).unwrap();
        store.trust(&pub_file).unwrap();
        let signer = Signer::load(&key_file).unwrap();
        Fixture {
            dir,
            store,
            signer,
            key_file,
            pub_file,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn capture_with(
        &self,
        source: &Path,
        chunk: u32,
    ) -> Result<CaptureReport, capture::CaptureError> {
        let opts = CaptureOptions {
            chunk_size: ChunkSize::new(chunk).unwrap(),
            level: 3,
            workers: 2,
        };
        capture::capture(
            &self.store,
            source,
            label(&source.display().to_string()),
            &self.signer,
            &opts,
            &|_| {},
        )
    }

    pub fn capture(&self, source: &Path) -> CaptureReport {
        self.capture_with(source, 64 * 1024).unwrap()
    }

    pub fn restore(
        &self,
        id: &ImageId,
        target: &Path,
    ) -> Result<RestoreReport, restore::RestoreError> {
        let m = self.store.open_verified(id)?;
        restore::restore(&self.store, &m, target, &RestoreOptions::default(), &|_| {})
    }
}

/// Incompressible deterministic bytes (xorshift from `seed | 1`).
pub fn random(seed: u64, len: usize) -> Vec<u8> {
    pattern(seed, len, false)
}

/// Deterministic pseudo-random bytes (xorshift), compressible when `compressible` is set.
pub fn pattern(seed: u64, len: usize, compressible: bool) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if compressible {
                b"roomcast disk "[(i + (x as usize % 3)) % 14]
            } else {
                x as u8
            }
        })
        .collect()
}

/// Writes a sparse disk image of `size` bytes with data at the given (offset, len, seed) extents.
pub fn sparse_disk(path: &Path, size: u64, extents: &[(u64, usize, u64)]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    for &(off, len, seed) in extents {
        let len = len.min((size - off.min(size)) as usize);
        f.write_all_at(&pattern(seed, len, seed % 2 == 0), off)
            .unwrap();
    }
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A loop device over a file, detached on drop.
pub struct LoopDev {
    pub dev: PathBuf,
}

impl LoopDev {
    pub fn attach(file: &Path) -> Self {
        let dev = run(Command::new("losetup").args(["--find", "--show"]).arg(file));
        LoopDev {
            dev: PathBuf::from(dev.trim()),
        }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// A small tmpfs mounted on a folder, unmounted on drop (to fill a store's disk).
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "roomcast-test",
            ])
            .arg(dir));
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Every chunk file in the store decompresses to bytes hashing to its name.
pub fn assert_chunk_files_intact(store: &Store) {
    let chunks = store.root().join("chunks");
    for sub in std::fs::read_dir(&chunks).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            let bytes = std::fs::read(&p).unwrap();
            let data =
                zstd::decode_all(&bytes[..]).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(
                roomcast_store::chunk::ChunkHash::of(&data).to_hex(),
                name,
                "{}",
                p.display()
            );
        }
    }
}

/// A block device mounted on a folder, unmounted on drop.
pub struct Mounted {
    pub dir: PathBuf,
}

impl Mounted {
    pub fn mount(dev: &Path, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("mount").arg(dev).arg(dir));
        Mounted {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}
