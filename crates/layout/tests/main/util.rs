//! Helpers for the layout tests: run the real tools, make image files, a seeded random source, and
//! the restore-like copy of used ranges onto random bytes.

use roomcast_layout::Extents;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// True when every tool is installed; else prints why the test is skipped.
pub fn have(tools: &[&str]) -> bool {
    for t in tools {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()))
            .unwrap_or(false)
            || Path::new("/usr/sbin").join(t).is_file()
            || Path::new("/sbin").join(t).is_file();
        if !found {
            eprintln!("SKIPPED: `{t}` is not installed (bash tests/setup.sh installs it)");
            return false;
        }
    }
    true
}

fn command(prog: &str) -> Command {
    let mut c = Command::new(prog);
    let path = std::env::var("PATH").unwrap_or_default();
    c.env("PATH", format!("{path}:/usr/sbin:/sbin"));
    // mtools: no complaint about the images' geometry.
    c.env("MTOOLS_SKIP_CHECK", "1");
    c
}

/// Runs `prog args`, panics with its output when it fails; returns stdout.
pub fn run(prog: &str, args: &[&str]) -> String {
    let out = command(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `prog args`: (exit code, stdout + stderr).
pub fn run_status(prog: &str, args: &[&str]) -> (i32, String) {
    let out = command(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// xorshift64*: reproducible bytes without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// A file of `size` random bytes (what a disk's never-zeroed free space looks like).
pub fn random_file(path: &Path, size: u64, seed: u64) {
    let f = File::create(path).unwrap();
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < size {
        let n = (size - at).min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all_at(&buf[..n], at).unwrap();
        at += n as u64;
    }
}

/// What a restore does: a target of the same size full of random bytes, onto which only `used` of
/// `src` is copied.
pub fn restore_used(src: &Path, used: &Extents, dst: &Path, seed: u64) {
    let size = std::fs::metadata(src).unwrap().len();
    random_file(dst, size, seed);
    let s = File::open(src).unwrap();
    let d = OpenOptions::new().write(true).open(dst).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for r in used.ranges() {
        assert!(
            r.end <= size,
            "used range {r:?} beyond the image ({size} bytes)"
        );
        let mut at = r.start;
        while at < r.end {
            let n = (r.end - at).min(buf.len() as u64) as usize;
            s.read_exact_at(&mut buf[..n], at).unwrap();
            d.write_all_at(&buf[..n], at).unwrap();
            at += n as u64;
        }
    }
}

/// Copies the file `part` into `disk` at byte `offset` (a file system built apart, put in place).
pub fn put_at(disk: &Path, part: &Path, offset: u64) {
    let data = std::fs::read(part).unwrap();
    let d = OpenOptions::new().write(true).open(disk).unwrap();
    d.write_all_at(&data, offset).unwrap();
}

/// Writes `bytes` at `offset` of `path`.
pub fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let d = OpenOptions::new().write(true).open(path).unwrap();
    d.write_all_at(bytes, offset).unwrap();
}

/// Reads `len` bytes at `offset` of `path`.
pub fn peek(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

/// Test files: (name, content), sizes from 0 to `max` bytes, written into `dir`.
pub fn make_files(
    dir: &Path,
    count: usize,
    max: u64,
    seed: u64,
) -> Vec<(String, PathBuf, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    std::fs::create_dir_all(dir).unwrap();
    (0..count)
        .map(|i| {
            let len = if i == 0 { 0 } else { rng.below(max) as usize };
            let data = rng.bytes(len);
            let name = format!("f{i:03}.bin");
            let path = dir.join(&name);
            std::fs::write(&path, &data).unwrap();
            (name, path, data)
        })
        .collect()
}
