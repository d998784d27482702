//! The NTFS reader against volumes made and filled by the real tools (mkntfs, ntfs-3g, ntfsfix),
//! checked with the real tools (ntfscluster, ntfsfix --no-action, ntfscat, ntfsls).
//!
//! Needs ntfs-3g's programs and a working /dev/fuse (tests/setup.sh installs them; tests run as
//! root). Images are 16-48 MiB files in a temporary folder; FUSE mounts are undone on drop.

use roomcast_layout::ntfs;
use roomcast_layout::{FsError, FsMap};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIB: u64 = 1 << 20;

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} could not start: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An empty NTFS image of `mib` MiB with 512-byte sectors and `cluster`-byte clusters, made by
/// mkntfs.
fn mkntfs(dir: &Path, name: &str, mib: u64, cluster: u32) -> PathBuf {
    mkntfs_sectors(dir, name, mib, 512, cluster)
}

fn mkntfs_sectors(dir: &Path, name: &str, mib: u64, sector: u32, cluster: u32) -> PathBuf {
    let img = dir.join(name);
    File::create(&img).unwrap().set_len(mib * MIB).unwrap();
    let (sector, cluster) = (sector.to_string(), cluster.to_string());
    run(
        "mkntfs",
        &["-F", "-Q", "-q", "-s", &sector, "-c", &cluster, s(&img)],
    );
    img
}

/// An ntfs-3g FUSE mount of an image, unmounted on drop.
struct Mount {
    img: PathBuf,
    dir: PathBuf,
}

impl Mount {
    fn new(img: &Path) -> Mount {
        let dir = img.with_extension("mnt");
        fs::create_dir_all(&dir).unwrap();
        run("ntfs-3g", &[s(img), s(&dir)]);
        Mount {
            img: img.to_path_buf(),
            dir,
        }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
    fn write(&self, rel: &str, bytes: &[u8]) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let mut f = File::create(&p).unwrap();
        f.write_all(bytes).unwrap();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        // umount returns when the kernel lets go; ntfs-3g writes its last metadata back and exits
        // after that: wait until no process runs on this image any more.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while serving(&self.img) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// True while a process (ntfs-3g) has `img` on its command line.
fn serving(img: &Path) -> bool {
    let needle = img.as_os_str().as_encoded_bytes();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == needle))
        })
}

/// Deterministic pseudo-random bytes (xorshift): unique content to find on the disk.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn probe(img: &Path) -> Option<Result<FsMap, FsError>> {
    ntfs::probe(&File::open(img).unwrap())
}

fn map(img: &Path) -> FsMap {
    match probe(img) {
        Some(Ok(m)) => m,
        Some(Err(e)) => panic!("{}: {e}", img.display()),
        None => panic!("{}: not recognised as NTFS", img.display()),
    }
}

/// A field of `ntfscluster --info`.
fn ntfscluster_field(info: &str, field: &str) -> u64 {
    info.lines()
        .find(|l| l.trim_start().starts_with(field))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field:?} in ntfscluster's output:\n{info}"))
}

/// The bytes ntfs-3g's ntfscluster counts in use (clusters of the volume not free), plus the
/// bytes past the volume's last whole cluster (the backup boot sector), which a file system map
/// must also keep.
fn bytes_in_use_per_ntfscluster(img: &Path) -> u64 {
    let (clusters_in_use, tail) = ntfscluster_in_use(img);
    clusters_in_use + tail
}

/// (bytes of the clusters in use, bytes past the last whole cluster), per `ntfscluster --info`.
fn ntfscluster_in_use(img: &Path) -> (u64, u64) {
    let out = run("ntfscluster", &["--info", "--force", s(img)]);
    let info = String::from_utf8_lossy(&out.stdout);
    let volume = ntfscluster_field(&info, "bytes per volume");
    let free = ntfscluster_field(&info, "bytes of free space");
    (volume - free, fs::metadata(img).unwrap().len() - volume)
}

/// The bytes partclone.ntfs (what FOG and Clonezilla capture with) copies: its used blocks, as it
/// reports them when it captures.
fn bytes_in_use_per_partclone(img: &Path) -> u64 {
    let out_img = img.with_extension("partclone");
    let out = run("partclone.ntfs", &["-c", "-s", s(img), "-O", s(&out_img)]);
    let _ = fs::remove_file(&out_img);
    let text = String::from_utf8_lossy(&out.stderr).replace('\r', "\n");
    let number_before = |line: &str, unit: &str| -> Option<u64> {
        line.split(unit)
            .next()?
            .split_whitespace()
            .last()?
            .parse()
            .ok()
    };
    let blocks = text
        .lines()
        .find(|l| l.contains("Space in use:"))
        .and_then(|l| number_before(l, "Blocks"))
        .unwrap_or_else(|| panic!("no used blocks in partclone's output:\n{text}"));
    let block = text
        .lines()
        .find(|l| l.contains("Block size:"))
        .and_then(|l| number_before(l, "Byte"))
        .unwrap_or_else(|| panic!("no block size in partclone's output:\n{text}"));
    blocks * block
}

/// A copy of `img` made the way a restore writes it: a file of random bytes of the same size, onto
/// which only the `used` ranges are copied.
fn restore_used(img: &Path, m: &FsMap, name: &str) -> PathBuf {
    let size = fs::metadata(img).unwrap().len();
    let out = img.with_file_name(name);
    fs::write(&out, noise(0xDEAD, size as usize)).unwrap();
    let src = File::open(img).unwrap();
    let dst = fs::OpenOptions::new().write(true).open(&out).unwrap();
    for r in m.used.ranges() {
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        src.read_exact_at(&mut buf, r.start).unwrap();
        dst.write_all_at(&buf, r.start).unwrap();
    }
    dst.sync_all().unwrap();
    out
}

/// `ntfsfix --no-action` finds nothing to fix.
fn assert_ntfsfix_clean(img: &Path) {
    let out = Command::new("ntfsfix")
        .args(["--no-action", s(img)])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "ntfsfix --no-action {}:\n{text}",
        img.display()
    );
    assert!(
        text.contains("was processed successfully") && !text.contains("FAILED"),
        "ntfsfix --no-action {}:\n{text}",
        img.display()
    );
}

fn ntfscat(img: &Path, path: &str) -> Vec<u8> {
    run("ntfscat", &["--force", s(img), path]).stdout
}

fn ntfsls_tree(img: &Path) -> String {
    String::from_utf8(run("ntfsls", &["--force", "-R", "-a", s(img)]).stdout).unwrap()
}

/// Where `needle` (unique random content) lies in the image.
fn find(hay: &[u8], needle: &[u8]) -> Option<u64> {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p as u64)
}

fn in_used(m: &FsMap, start: u64, len: u64) -> bool {
    !m.used.window(start, start + len).is_empty()
}

/// Files written, then most of them deleted, in one volume: the map keeps exactly the clusters
/// ntfs-3g counts in use and partclone.ntfs copies (plus the backup boot sector), and a restore of only those onto random bytes gives back a volume
/// ntfsfix finds clean with every remaining file, name and folder intact.
fn written_then_deleted(sector: u32, cluster: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let img = mkntfs_sectors(tmp.path(), "dirty.img", 48, sector, cluster);
    let mut kept: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    {
        let m = Mount::new(&img);
        for i in 0..60u64 {
            // Small files stay resident in their MFT record; the others take clusters.
            let len = match i % 4 {
                0 => 300 + i as usize,
                1 => 5_000 + 997 * i as usize,
                2 => 150_000 + 1_013 * i as usize,
                _ => 700_000 + 4_099 * i as usize,
            };
            let rel = format!("dir{}/sub{}/file-{i}.bin", i % 3, i % 5);
            m.write(&rel, &noise(i + 1, len));
        }
    }
    {
        let m = Mount::new(&img);
        for i in 0..60u64 {
            let rel = format!("dir{}/sub{}/file-{i}.bin", i % 3, i % 5);
            if i % 5 == 0 {
                kept.insert(
                    rel,
                    fs::read(m.path(&format!("dir{}/sub{}/file-{i}.bin", i % 3, i % 5))).unwrap(),
                );
            } else {
                fs::remove_file(m.path(&rel)).unwrap();
            }
        }
        // A file written after the deletions, into freed clusters.
        m.write("late/after-delete.bin", &noise(99, 1_500_000));
        kept.insert("late/after-delete.bin".into(), noise(99, 1_500_000));
    }

    let fsmap = map(&img);
    assert_eq!(fsmap.fs, "ntfs");
    assert!(fsmap.discarded.is_empty());
    assert_eq!(
        fsmap.used.bytes(),
        bytes_in_use_per_ntfscluster(&img),
        "used bytes vs ntfscluster (cluster {cluster})"
    );
    let size = fs::metadata(&img).unwrap().len();
    assert!(fsmap.used.end() <= size);
    // partclone copies the same clusters; roomcast also keeps the backup boot sector past the
    // last whole cluster (partclone leaves it to its restore to rewrite).
    let (_, tail) = ntfscluster_in_use(&img);
    assert_eq!(
        fsmap.used.bytes() - tail,
        bytes_in_use_per_partclone(&img),
        "used bytes vs partclone.ntfs (cluster {cluster})"
    );
    // Deleted files' clusters are not kept: well under the written 60 files' ~25 MB.
    assert!(fsmap.used.bytes() < 12 * MIB, "{}", fsmap.used.bytes());

    let restored = restore_used(&img, &fsmap, "restored.img");
    assert_ntfsfix_clean(&restored);
    assert_eq!(ntfsls_tree(&img), ntfsls_tree(&restored));
    for (rel, bytes) in &kept {
        let back = ntfscat(&restored, &format!("/{rel}"));
        assert_eq!(sha(&back), sha(bytes), "{rel} after restore");
    }
}

#[test]
fn used_bytes_match_ntfscluster_and_restore_4k_clusters() {
    written_then_deleted(512, 4096);
}

#[test]
fn used_bytes_match_ntfscluster_and_restore_1k_clusters() {
    written_then_deleted(512, 1024);
}

/// 4Kn disks: 4096-byte sectors, and then 4096-byte MFT records.
#[test]
fn used_bytes_match_ntfscluster_and_restore_4k_sectors_8k_clusters() {
    written_then_deleted(4096, 8192);
}

/// A volume inside a disk, read through a `Slice` as `read_layout` hands it over: the same map,
/// relative to the partition's start.
#[test]
fn a_volume_read_through_a_slice_of_a_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let img = mkntfs(tmp.path(), "part.img", 16, 4096);
    {
        let m = Mount::new(&img);
        m.write("pagefile.sys", &noise(3, 300_000));
        m.write("Windows/System32/x", b"x");
    }
    let volume = fs::read(&img).unwrap();
    let mut disk = vec![0xA5u8; MIB as usize];
    disk.extend_from_slice(&volume);
    disk.extend(std::iter::repeat_n(0x5Au8, 3 * 512));
    let slice = roomcast_layout::Slice {
        disk: &disk,
        start: MIB,
        len: volume.len() as u64,
    };
    let direct = map(&img);
    match ntfs::probe(&slice) {
        Some(Ok(m)) => assert_eq!(m, direct),
        other => panic!("through a slice: {other:?}"),
    }
    assert!(ntfs::holds_windows(&slice));
    assert_eq!(
        ntfs::read_file(&slice, "windows/system32/X", 10).unwrap(),
        Some(b"x".to_vec())
    );
}

#[test]
fn pagefile_swapfile_and_hiberfil_count_as_free() {
    let tmp = tempfile::tempdir().unwrap();
    let img = mkntfs(tmp.path(), "win.img", 32, 4096);
    let page = noise(1, 4 * MIB as usize);
    let swap = noise(2, MIB as usize);
    // A hiberfil.sys of a Windows that shut down fully: its header is not "hibr"/"HIBR".
    let mut hiber = noise(3, 3 * MIB as usize);
    hiber[..4096].fill(0);
    let other = noise(4, 600_000);
    {
        let m = Mount::new(&img);
        m.write("pagefile.sys", &page);
        m.write("swapfile.sys", &swap);
        m.write("hiberfil.sys", &hiber);
        m.write("Users/data.bin", &other);
        // Only the root directory's files are Windows' own.
        m.write("Users/pagefile.sys", &other[..200_000]);
    }
    let fsmap = map(&img);
    let mut discarded = fsmap.discarded.clone();
    discarded.sort();
    assert_eq!(
        discarded,
        vec![
            ("hiberfil.sys".to_string(), 3 * MIB - 4096),
            ("pagefile.sys".to_string(), 4 * MIB),
            ("swapfile.sys".to_string(), MIB),
        ]
    );
    // Where each cluster of each file lies, found by its (unique) content.
    let disk = fs::read(&img).unwrap();
    let clusters: std::collections::HashMap<&[u8], u64> = disk
        .chunks(4096)
        .enumerate()
        .map(|(i, c)| (c, i as u64 * 4096))
        .collect();
    let locate = |content: &[u8]| -> Vec<u64> {
        content
            .chunks(4096)
            .filter(|c| c.len() == 4096)
            .map(|c| *clusters.get(c).expect("file content on the disk"))
            .collect()
    };
    for (name, content) in [("pagefile.sys", &page), ("swapfile.sys", &swap)] {
        for at in locate(content) {
            assert!(!in_used(&fsmap, at, 4096), "{name} at {at} is in used");
        }
    }
    let hiber_at = locate(&hiber[4096..]);
    for at in hiber_at {
        assert!(
            !in_used(&fsmap, at, 4096),
            "hiberfil.sys at {at} is in used"
        );
    }
    for at in locate(&other) {
        assert!(
            in_used(&fsmap, at, 4096),
            "Users/data.bin at {at} is not in used"
        );
    }
    for at in locate(&other[..200_000]) {
        assert!(in_used(&fsmap, at, 4096));
    }
    // Used = what ntfs-3g counts in use, less the discarded bytes.
    let saved: u64 = fsmap.discarded.iter().map(|(_, b)| b).sum();
    assert_eq!(
        fsmap.used.bytes() + saved,
        bytes_in_use_per_ntfscluster(&img)
    );

    // Restored onto random bytes: clean, the files are still there (their records kept), the
    // other files intact, and hiberfil.sys's header is the master's, not what the disk held.
    let restored = restore_used(&img, &fsmap, "restored.img");
    assert_ntfsfix_clean(&restored);
    let listing =
        String::from_utf8(run("ntfsls", &["--force", "-a", s(&restored)]).stdout).unwrap();
    for name in ["pagefile.sys", "swapfile.sys", "hiberfil.sys"] {
        assert!(
            listing.lines().any(|l| l == name),
            "{name} not listed:\n{listing}"
        );
    }
    assert_eq!(sha(&ntfscat(&restored, "/Users/data.bin")), sha(&other));
    let header = ntfscat(&restored, "/hiberfil.sys");
    assert_eq!(header.len(), hiber.len());
    assert!(
        header[..4096] == hiber[..4096],
        "hiberfil.sys's header was not restored"
    );
    assert_ne!(
        sha(&header),
        sha(&hiber),
        "the discarded clusters were not restored"
    );
}

/// Recreated files so fragmented that their runs spill into extension records through an
/// `$ATTRIBUTE_LIST` (ntfs-3g even moves their `$FILE_NAME` there): still found, discarded, checked.
#[test]
fn fragmented_recreated_files_with_attribute_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let img = mkntfs(tmp.path(), "frag.img", 24, 4096);
    // Not hibernated: the header starts with zeros (and is otherwise unique, to be found).
    let mut hiber = noise(11, 1_200_000);
    hiber[..4].fill(0);
    let page = noise(12, 1_100_000);
    {
        let m = Mount::new(&img);
        // Leave ~6 MiB free, fill it with one-cluster files, free every other one: only holes.
        let free = {
            let out = run("df", &["-B1", "--output=avail", s(&m.dir)]).stdout;
            let text = String::from_utf8(out).unwrap();
            text.lines().nth(1).unwrap().trim().parse::<u64>().unwrap()
        };
        m.write("filler", &vec![0u8; (free - 6 * MIB) as usize]);
        fs::create_dir(m.path("holes")).unwrap();
        let mut n = 0;
        while fs::write(m.path(&format!("holes/{n}")), noise(1000 + n, 4096)).is_ok() {
            n += 1;
        }
        for i in (0..n).step_by(2) {
            fs::remove_file(m.path(&format!("holes/{i}"))).unwrap();
        }
        m.write("hiberfil.sys", &hiber);
        m.write("pagefile.sys", &page);
    }
    for name in ["/hiberfil.sys", "/pagefile.sys"] {
        let info = run("ntfsinfo", &["-f", "-v", "-F", name, s(&img)]).stdout;
        assert!(
            String::from_utf8_lossy(&info).contains("$ATTRIBUTE_LIST"),
            "{name} is not fragmented enough for an attribute list"
        );
    }
    let fsmap = map(&img);
    let mut discarded = fsmap.discarded.clone();
    discarded.sort();
    assert_eq!(
        discarded,
        vec![
            (
                "hiberfil.sys".to_string(),
                1_200_000u64.div_ceil(4096) * 4096 - 4096
            ),
            (
                "pagefile.sys".to_string(),
                1_100_000u64.div_ceil(4096) * 4096
            ),
        ]
    );
    let saved: u64 = fsmap.discarded.iter().map(|(_, b)| b).sum();
    assert_eq!(
        fsmap.used.bytes() + saved,
        bytes_in_use_per_ntfscluster(&img)
    );
    let disk = fs::read(&img).unwrap();
    let clusters: std::collections::HashMap<&[u8], u64> = disk
        .chunks(4096)
        .enumerate()
        .map(|(i, c)| (c, i as u64 * 4096))
        .collect();
    for (content, from) in [(&page, 0), (&hiber, 4096)] {
        for c in content[from..].chunks(4096).filter(|c| c.len() == 4096) {
            let at = clusters[c];
            assert!(
                !in_used(&fsmap, at, 4096),
                "a discarded cluster at {at} is in used"
            );
        }
    }
    // Read through the attribute list.
    let f = File::open(&img).unwrap();
    let back = ntfs::read_file(&f, "PAGEFILE.SYS", 2 << 20)
        .unwrap()
        .unwrap();
    assert_eq!(sha(&back), sha(&page));
    // And its header still decides: hibernated.
    let at = clusters[&hiber[..4096]];
    assert!(in_used(&fsmap, at, 4096), "hiberfil.sys's header is kept");
    patch(&img, at, b"HIBR");
    assert_not_clean(&img, "hibernated", "powercfg /h off");
}

/// Writes `sig` over the first bytes of hiberfil.sys, found on the disk by its content.
fn patch(img: &Path, at: u64, sig: &[u8]) {
    let f = fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(sig, at).unwrap();
}

fn assert_not_clean(img: &Path, reason: &str, fix: &str) {
    match probe(img) {
        Some(Err(FsError::NotClean { reason: r, fix: f })) => {
            assert!(r.contains(reason), "reason {r:?} lacks {reason:?}");
            assert!(f.contains(fix), "fix {f:?} lacks {fix:?}");
        }
        other => panic!("{}: expected NotClean, got {other:?}", img.display()),
    }
}

#[test]
fn hibernated_volume_is_refused_like_ntfs_3g_does() {
    let tmp = tempfile::tempdir().unwrap();
    let img = mkntfs(tmp.path(), "hib.img", 16, 4096);
    let mut hiber = noise(7, 2 * MIB as usize);
    hiber[..4].copy_from_slice(b"none");
    {
        let m = Mount::new(&img);
        m.write("hiberfil.sys", &hiber);
    }
    assert!(probe(&img).unwrap().is_ok());
    let at = find(&fs::read(&img).unwrap(), &hiber[..4096]).unwrap();
    for sig in [b"HIBR", b"hibr", b"wake", b"WAKE"] {
        patch(&img, at, sig);
        assert_not_clean(&img, "hibernated", "powercfg /h off");
        let text = probe(&img).unwrap().unwrap_err().to_string();
        assert!(text.contains(std::str::from_utf8(sig).unwrap()), "{text}");
    }
    // ntfs-3g itself refuses to mount it read-write (and falls back to read-only).
    patch(&img, at, b"HIBR");
    let dir = tmp.path().join("m");
    fs::create_dir(&dir).unwrap();
    let out = Command::new("ntfs-3g")
        .args([s(&img), s(&dir)])
        .output()
        .unwrap();
    if out.status.success() {
        let _ = Command::new("umount").arg(&dir).status();
    }
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("Windows is hibernated, refused to mount"),
        "{said}"
    );
    // A zeroed header (Windows shut down fully) is fine.
    patch(&img, at, &[0; 4]);
    assert!(probe(&img).unwrap().is_ok());
}

#[test]
fn dirty_volume_is_refused_until_cleared() {
    let tmp = tempfile::tempdir().unwrap();
    let img = mkntfs(tmp.path(), "dirty.img", 16, 4096);
    // ntfsfix marks the volume dirty so that Windows runs chkdsk at its next boot.
    run("ntfsfix", &[s(&img)]);
    let info = Command::new("ntfsinfo")
        .args(["-m", "-f", s(&img)])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("Volume Flags: 0x0001 DIRTY"));
    assert_not_clean(&img, "dirty", "chkdsk /f");
    run("ntfsfix", &["--clear-dirty", s(&img)]);
    let info = Command::new("ntfsinfo")
        .args(["-m", "-f", s(&img)])
        .output()
        .unwrap();
    // ntfsfix --clear-dirty clears the flag it would otherwise set.
    if String::from_utf8_lossy(&info.stdout).contains("DIRTY") {
        panic!("ntfsfix --clear-dirty left the volume dirty");
    }
    assert!(probe(&img).unwrap().is_ok());
}

/// A 4 KiB `$LogFile` restart page (update sequence array applied) whose restart area says which
/// log client is in use and whether the volume was closed cleanly: the fields ntfs-3g's
/// `ntfs_is_logfile_clean` reads, not a whole journal Windows would replay.
fn restart_page(major: u16, minor: u16, client_in_use: u16, flags: u16) -> Vec<u8> {
    let mut p = vec![0u8; 4096];
    let put = |p: &mut Vec<u8>, at: usize, v: &[u8]| p[at..at + v.len()].copy_from_slice(v);
    put(&mut p, 0, b"RSTR");
    put(&mut p, 4, &0x1Eu16.to_le_bytes()); // update sequence array offset
    put(&mut p, 6, &9u16.to_le_bytes()); // 1 + 4096 / 512 entries
    put(&mut p, 16, &4096u32.to_le_bytes()); // system page size
    put(&mut p, 20, &4096u32.to_le_bytes()); // log page size
    put(&mut p, 24, &0x30u16.to_le_bytes()); // restart area offset
    put(&mut p, 26, &minor.to_le_bytes());
    put(&mut p, 28, &major.to_le_bytes());
    put(&mut p, 0x30, &0x1000u64.to_le_bytes()); // current LSN
    put(&mut p, 0x38, &1u16.to_le_bytes()); // log clients
    put(&mut p, 0x3A, &0xFFFFu16.to_le_bytes()); // client free list
    put(&mut p, 0x3C, &client_in_use.to_le_bytes());
    put(&mut p, 0x3E, &flags.to_le_bytes());
    put(&mut p, 0x1E, &3u16.to_le_bytes()); // update sequence number
    for i in 1..9 {
        let end = i * 512;
        let saved = [p[end - 2], p[end - 1]];
        put(&mut p, 0x1E + 2 * i, &saved);
        put(&mut p, end - 2, &3u16.to_le_bytes());
    }
    p
}

#[test]
fn unclean_journal_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let img = mkntfs(tmp.path(), "log.img", 16, 4096);
    // mkntfs leaves the journal empty (all 0xFF): clean.
    assert!(probe(&img).unwrap().is_ok());
    // Where $LogFile lies, as ntfsinfo lists its runs.
    let info =
        String::from_utf8(run("ntfsinfo", &["-f", "-v", "-i", "2", s(&img)]).stdout).unwrap();
    let lcn = info
        .lines()
        .skip_while(|l| !l.contains("Runlist:"))
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("no $LogFile run in ntfsinfo's output:\n{info}"));
    let at = lcn * 4096;
    let log = ntfscat(&img, "$LogFile");
    assert!(!log.is_empty() && log.iter().all(|&b| b == 0xFF));

    // A journal with a client in use and no "clean" flag: Windows crashed or lost power.
    patch(&img, at, &restart_page(1, 1, 0, 0));
    assert_not_clean(&img, "not shut down cleanly", "chkdsk /f");
    // (ntfs-3g is no referee here: Debian's mounts with its `recover` default, which resets
    // such a journal, throwing its transactions away, and mounts read-write.)

    // Version 2.0: metadata kept in Windows' cache (Fast Startup).
    patch(&img, at, &restart_page(2, 0, 0xFFFF, 0));
    assert_not_clean(&img, "version 2.0", "chkdsk /f");
    // Closed cleanly.
    patch(&img, at, &restart_page(1, 1, 0, 0x0002));
    assert!(probe(&img).unwrap().is_ok());
    patch(&img, at, &restart_page(1, 1, 0xFFFF, 0));
    assert!(probe(&img).unwrap().is_ok());
}

#[test]
fn bitlocker_is_taken_whole_and_other_bytes_are_not_ntfs() {
    let tmp = tempfile::tempdir().unwrap();
    let img = mkntfs(tmp.path(), "bl.img", 16, 4096);
    patch(&img, 3, b"-FVE-FS-");
    match probe(&img) {
        Some(Err(FsError::Unsupported(why))) => assert!(why.contains("BitLocker"), "{why}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert!(!ntfs::holds_windows(&File::open(&img).unwrap()));
    let zeros = vec![0u8; 1 << 16];
    assert!(ntfs::probe(&zeros).is_none());
}

#[test]
fn bitmap_freeing_a_system_file_is_taken_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let img = mkntfs(tmp.path(), "bm.img", 16, 4096);
    assert!(probe(&img).unwrap().is_ok());
    // $Bitmap as ntfs-3g reads it, found on the disk; then the MFT's first cluster marked free.
    let bitmap = run("ntfscat", &["--force", "-i", "6", s(&img)]).stdout;
    let disk = fs::read(&img).unwrap();
    let at = find(&disk, &bitmap).expect("$Bitmap on the disk");
    let info = String::from_utf8(run("ntfsinfo", &["-m", "-f", s(&img)]).stdout).unwrap();
    let mft_lcn: u64 = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("LCN of Data Attribute for FILE_MFT:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("ntfsinfo names the MFT's cluster");
    let byte = disk[(at + mft_lcn / 8) as usize] & !(1 << (mft_lcn % 8));
    patch(&img, at + mft_lcn / 8, &[byte]);
    match probe(&img) {
        Some(Err(FsError::Unsupported(why))) => assert!(why.contains("contradict"), "{why}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn read_file_finds_state_ini_case_insensitively() {
    let tmp = tempfile::tempdir().unwrap();
    let img = mkntfs(tmp.path(), "w.img", 24, 4096);
    let ini = b"[State]\r\nImageState=IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE\r\n".to_vec();
    let big = noise(5, 300_000);
    {
        let m = Mount::new(&img);
        fs::create_dir_all(m.path("Windows/System32")).unwrap();
        m.write("Windows/Setup/State/State.ini", &ini);
        m.write("Windows/Setup/big.bin", &big);
        // Enough names that Windows' index spills into index blocks.
        for i in 0..150 {
            m.write(&format!("Windows/entry-with-a-long-name-{i:03}.txt"), b"x");
        }
        m.write("Windows/zz-last.txt", b"last");
    }
    let f = File::open(&img).unwrap();
    for path in [
        "Windows\\Setup\\State\\State.ini",
        "windows\\SETUP\\state\\state.INI",
        "/Windows/Setup/State/State.ini",
        "WINDOWS/setup//State/./State.ini",
    ] {
        assert_eq!(
            ntfs::read_file(&f, path, 64 << 10).unwrap(),
            Some(ini.clone()),
            "{path}"
        );
    }
    assert_eq!(
        ntfs::read_file(&f, "Windows\\ZZ-LAST.TXT", 100).unwrap(),
        Some(b"last".to_vec())
    );
    assert_eq!(
        ntfs::read_file(&f, "Windows/Setup/big.bin", 1 << 20)
            .unwrap()
            .map(|b| sha(&b)),
        Some(sha(&big))
    );
    assert!(ntfs::read_file(&f, "Windows/Setup/big.bin", 1000).is_err());
    assert_eq!(
        ntfs::read_file(&f, "Windows\\Setup\\State\\Missing.ini", 100).unwrap(),
        None
    );
    assert_eq!(
        ntfs::read_file(&f, "Windows\\Nope\\State.ini", 100).unwrap(),
        None
    );
    assert_eq!(ntfs::read_file(&f, "Windows\\Setup", 100).unwrap(), None);
    assert!(ntfs::holds_windows(&f));

    let plain = mkntfs(tmp.path(), "plain.img", 16, 4096);
    assert!(!ntfs::holds_windows(&File::open(&plain).unwrap()));
    assert!(ntfs::read_file(&vec![0u8; 4096], "Windows/x", 10).is_err());
}

mod props {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    /// A small real volume with a few files, made once.
    fn sample() -> &'static Vec<u8> {
        static IMG: OnceLock<Vec<u8>> = OnceLock::new();
        IMG.get_or_init(|| {
            let tmp = tempfile::tempdir().unwrap();
            let img = mkntfs(tmp.path(), "p.img", 8, 4096);
            {
                let m = Mount::new(&img);
                m.write("Windows/System32/a.txt", b"a");
                m.write("Windows/Setup/State/State.ini", b"[State]");
                m.write("pagefile.sys", &noise(1, 200_000));
                m.write("hiberfil.sys", &noise(2, 20_000));
            }
            fs::read(&img).unwrap()
        })
    }

    // `Vec<u8>` is the `ReadAt` (a slice is unsized, so it cannot be a `&dyn ReadAt`).
    #[allow(clippy::ptr_arg)]
    fn exercise(bytes: &Vec<u8>) {
        let _ = ntfs::probe(bytes);
        let _ = ntfs::read_file(bytes, "Windows\\Setup\\State\\State.ini", 1 << 16);
        let _ = ntfs::holds_windows(bytes);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..8192)) {
            exercise(&bytes);
            if bytes.len() >= 512 {
                bytes[3..11].copy_from_slice(b"NTFS    ");
                exercise(&bytes);
            }
        }

        #[test]
        fn damaged_real_volumes_never_panic(
            cut in 0usize..(8 << 20),
            boot_flips in proptest::collection::vec((0usize..512, any::<u8>()), 0..4),
            mft_flips in proptest::collection::vec((0usize..(64 << 10), any::<u8>()), 0..48),
            other_flips in proptest::collection::vec((0usize..(8 << 20), any::<u8>()), 0..16),
        ) {
            let mut img = sample().clone();
            // The MFT's first 64 KiB: the system files, the root directory and the files written.
            let cluster = u64::from(u16::from_le_bytes([img[11], img[12]])) * u64::from(img[13]);
            let mft = u64::from_le_bytes(img[0x30..0x38].try_into().unwrap()) * cluster;
            let flips = boot_flips
                .into_iter()
                .chain(mft_flips.into_iter().map(|(at, v)| (mft as usize + at, v)))
                .chain(other_flips);
            for (at, v) in flips {
                if let Some(b) = img.get_mut(at) {
                    *b ^= v | 1;
                }
            }
            exercise(&img);
            img.truncate(cut);
            exercise(&img);
        }
    }

    #[test]
    fn the_sample_reads() {
        let img = sample();
        assert!(ntfs::probe(img).unwrap().is_ok());
        assert!(ntfs::holds_windows(img));
    }
}

/// `ntfs::shrink` (issue 23): what `ntfsresize --size` keeps is `(new - sector) / cluster` whole
/// clusters; the old backup boot sector (past the last whole cluster) is dropped; a file system
/// that is not NTFS gives `None`.
#[test]
fn shrink_keeps_whole_clusters_and_drops_the_old_backup_boot_sector() {
    let dir = tempfile::tempdir().unwrap();
    let img = mkntfs(dir.path(), "s.img", 16, 4096);
    let f = File::open(&img).unwrap();
    let s = ntfs::shrink(&f, 12 << 20).unwrap().unwrap();
    assert_eq!(s.keep_below, (12 << 20) - 4096);
    let drops = s.drops.ranges();
    assert_eq!(drops.len(), 1, "{drops:?}");
    assert_eq!(drops[0].end, 16 << 20);
    // mkntfs leaves the last sector for the backup boot sector: the volume's last whole cluster
    // ends one cluster before the partition's end.
    assert_eq!(drops[0].start, (16 << 20) - 4096);
    let zeros = dir.path().join("z.img");
    File::create(&zeros).unwrap().set_len(1 << 20).unwrap();
    assert_eq!(
        ntfs::shrink(&File::open(&zeros).unwrap(), 1 << 19).unwrap(),
        None
    );
}
