//! NTFS: which clusters the volume uses (`$Bitmap`), whether it may be captured at all (dirty,
//! hibernated), which clusters Windows recreates at boot (`pagefile.sys`, `swapfile.sys`,
//! `hiberfil.sys`), and a small read-only file reader for the agent (issue 15).
//!
//! A native reader of just what this needs (docs/DECISIONS.md, D10): the boot sector, MFT records
//! with their fixups, attributes and attribute lists, data runs, and directory indexes
//! ([`volume`], [`dir`]). It never writes and never panics; what it does not understand makes the
//! partition taken whole ([`FsError::Unsupported`]), and a volume Windows left in an unsafe state is
//! refused ([`FsError::NotClean`]) with the fix.
//!
//! What [`probe`] puts in [`FsMap::used`]:
//! - every cluster `$Bitmap` marks in use, after checking that the clusters of the system files
//!   (`$MFT` and its bitmap, `$MFTMirr`, `$LogFile`, `$AttrDef`, the root index, `$Bitmap`, `$Boot`,
//!   `$UpCase`) are among them;
//! - the bytes past the last whole cluster, where the backup boot sector lies;
//! - less the clusters of `pagefile.sys`, `swapfile.sys` and `hiberfil.sys` in the root directory
//!   (listed in [`FsMap::discarded`]), except the clusters holding hiberfil.sys's first 4 KiB: its
//!   header is what Windows' boot manager and ntfs-3g read to decide whether the volume is
//!   hibernated, so the restored disk must carry the master's (not hibernated) header, never the
//!   stale one a PC's own hibernation left at the same place.

mod dir;
mod logfile;
mod volume;

use crate::{Extents, FsError, FsMap, Probe, ReadAt};
use dir::Upcase;
use volume::{
    AT_BITMAP, AT_DATA, AT_INDEX_ALLOCATION, AT_VOLUME_INFORMATION, BootKind, FILE_BITMAP,
    FILE_LOGFILE, FILE_ROOT, FILE_VOLUME, Record, Value, Volume, bad,
};

/// The files whose content Windows recreates at boot, so their clusters count as free.
pub const RECREATED_FILES: [&str; 3] = ["pagefile.sys", "swapfile.sys", "hiberfil.sys"];

/// `$VOLUME_INFORMATION` flags: chkdsk must run (set by Windows on errors, by `ntfsfix`).
const VOLUME_IS_DIRTY: u16 = 0x0001;
/// A chkdsk was interrupted.
const VOLUME_CHKDSK_UNDERWAY: u16 = 0x4000;

/// The part of hiberfil.sys ntfs-3g reads to tell a hibernated Windows (`NTFS_HIBERFILE_HEADER_SIZE`).
const HIBERFILE_HEADER: u64 = 4096;
/// Signatures of a hibernation image that is to be resumed (`hibr`, Windows 8+ `HIBR`) or is being
/// resumed (`wake`, `WAKE`). ntfs-3g 2022.10.3 refuses `hibr`/`HIBR`; a resume in progress is no
/// safer to capture.
const HIBERNATED: [&[u8; 4]; 4] = [b"hibr", b"HIBR", b"wake", b"WAKE"];

/// Bytes of `$Bitmap` read at a time.
const BITMAP_CHUNK: usize = 1 << 20;

const FIX_DIRTY: &str = "boot Windows and shut it down fully (shutdown /s /t 0), or run chkdsk /f";
const FIX_HIBERNATED: &str =
    "disable Fast Startup (powercfg /h off) and shut down, or shutdown /s /f /t 0";

/// `None` when `part` does not hold NTFS; else its map, or why it cannot be mapped.
pub fn probe(part: &dyn ReadAt) -> Probe {
    match volume::boot_sector(part) {
        Ok(BootKind::Other) => None,
        Ok(BootKind::BitLocker) => Some(Err(FsError::Unsupported(
            "BitLocker-encrypted volume: taken whole".into(),
        ))),
        Ok(BootKind::Ntfs(boot)) => Some(Volume::open(part, boot).and_then(|vol| map(&vol))),
        Err(e) => Some(Err(e)),
    }
}

/// What shrinking the NTFS of a partition to `new_len` bytes with `ntfsresize` (issue 23) keeps and
/// drops, as offsets from the partition's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shrink {
    /// End of the shrunk volume: `ntfsresize --size new_len` keeps `(new_len - sector) / cluster`
    /// whole clusters (the last sector holds the new backup boot sector). A used byte at or past
    /// it would have to be moved; below it, the tool moves nothing that holds data.
    pub keep_below: u64,
    /// Bytes of the old volume dropped by the shrink although marked used: the old backup boot
    /// sector and whatever lies past the last whole cluster (`ntfsresize` writes a new backup boot
    /// sector at the new partition's last sector; it never reads the old one).
    pub drops: Extents,
}

/// [`Shrink`] for the NTFS of `part` shrunk to `new_len` bytes; `Ok(None)` when `part` holds no
/// NTFS. Reads only the boot sector.
pub fn shrink(part: &dyn ReadAt, new_len: u64) -> Result<Option<Shrink>, FsError> {
    let boot = match volume::boot_sector(part)? {
        BootKind::Other => return Ok(None),
        BootKind::BitLocker => {
            return Err(FsError::Unsupported(
                "BitLocker-encrypted volume: cannot be shrunk".into(),
            ));
        }
        BootKind::Ntfs(b) => b,
    };
    let (ss, cs) = (boot.sector_size, boot.cluster_size);
    let old_end = boot.total_sectors * ss / cs * cs;
    // Too short for the system files (the MFT, its mirror): they are used, the caller's check of
    // the used bytes refuses it, naming the bytes missing.
    let keep_below = new_len.saturating_sub(ss) / cs * cs;
    let mut drops = Extents::new();
    drops.insert(old_end, part.size());
    Ok(Some(Shrink { keep_below, drops }))
}

fn map(vol: &Volume<'_>) -> Result<FsMap, FsError> {
    check_volume_flags(vol)?;
    let root = vol.record(FILE_ROOT)?;
    let up = Upcase::load(vol);
    let mut recreated = Vec::new();
    for name in RECREATED_FILES {
        let utf16: Vec<u16> = name.encode_utf16().collect();
        if let Some(n) = dir::lookup(vol, &root, &utf16, &up)? {
            recreated.push((name, vol.record(n)?));
        }
    }
    if let Some((_, rec)) = recreated.iter().find(|(n, _)| *n == "hiberfil.sys") {
        check_hiberfile(vol, rec)?;
    }
    check_journal(vol)?;

    let cs = vol.boot.cluster_size;
    let mut used = bitmap(vol)?;
    let system = system_clusters(vol)?;
    for r in system.ranges() {
        if !covers(&used, r.start, r.end) {
            return Err(FsError::Unsupported(format!(
                "NTFS: $Bitmap marks free some clusters of the system files (bytes {}..{}): the \
                 volume's structures contradict each other",
                r.start, r.end
            )));
        }
    }
    // The boot sector (also in $Boot, checked above) and whatever lies past the last whole
    // cluster: the backup boot sector, at the partition's last sector.
    used.insert(0, vol.boot.sector_size);
    used.insert(vol.clusters * cs, vol.part.size());

    let mut discarded = Vec::new();
    let mut free = Extents::new();
    for (name, rec) in &recreated {
        let Some(clusters) = recreated_clusters(vol, rec, name == &"hiberfil.sys")? else {
            continue;
        };
        for r in clusters.ranges() {
            if !covers(&used, r.start, r.end) {
                return Err(FsError::Unsupported(format!(
                    "NTFS: $Bitmap marks free some clusters of {name} (bytes {}..{}): the volume's \
                     structures contradict each other",
                    r.start, r.end
                )));
            }
            if !system.window(r.start, r.end).is_empty() || !free.window(r.start, r.end).is_empty()
            {
                return Err(FsError::Unsupported(format!(
                    "NTFS: {name} shares clusters with another file (bytes {}..{}): the volume's \
                     structures contradict each other",
                    r.start, r.end
                )));
            }
        }
        discarded.push((name.to_string(), clusters.bytes()));
        free.union_with(&clusters);
    }
    Ok(FsMap {
        fs: "ntfs".into(),
        used: subtract(&used, &free),
        discarded,
    })
}

/// Refuses a volume whose `$Volume` says chkdsk must run.
fn check_volume_flags(vol: &Volume<'_>) -> Result<(), FsError> {
    let rec = vol.record(FILE_VOLUME)?;
    let flags = match vol.attribute(&rec, AT_VOLUME_INFORMATION, &[])? {
        Some(Value::Resident(v)) if v.len() >= 12 => u16::from_le_bytes([v[10], v[11]]),
        _ => return Err(bad("$Volume has no resident $VOLUME_INFORMATION")),
    };
    if flags & (VOLUME_IS_DIRTY | VOLUME_CHKDSK_UNDERWAY) != 0 {
        return Err(FsError::NotClean {
            reason: format!(
                "NTFS volume is marked dirty ($Volume flags 0x{flags:04x}): Windows did not shut \
                 it down cleanly or scheduled a disk check"
            ),
            fix: FIX_DIRTY.into(),
        });
    }
    Ok(())
}

/// Refuses a volume whose journal waits to be replayed (see [`logfile`]).
fn check_journal(vol: &Volume<'_>) -> Result<(), FsError> {
    let rec = vol.record(FILE_LOGFILE)?;
    let v = vol
        .attribute(&rec, AT_DATA, &[])?
        .ok_or_else(|| bad("$LogFile has no $DATA"))?;
    match logfile::journal(vol, &v)? {
        logfile::Journal::Empty | logfile::Journal::Clean => Ok(()),
        logfile::Journal::Unclean(why) => Err(FsError::NotClean {
            reason: format!("NTFS volume was not shut down cleanly: {why}"),
            fix: FIX_DIRTY.into(),
        }),
        logfile::Journal::Unreadable(why) => Err(FsError::Unsupported(format!(
            "NTFS: the journal ($LogFile) cannot be judged ({why})"
        ))),
    }
}

/// Refuses a volume whose hiberfil.sys holds a hibernation image (hibernation or Fast Startup),
/// as ntfs-3g does (`ntfs_volume_check_hiberfile`): a hiberfil.sys shorter than its 4 KiB header,
/// or one whose header starts with a hibernation signature.
fn check_hiberfile(vol: &Volume<'_>, rec: &Record) -> Result<(), FsError> {
    let hibernated = |why: String| FsError::NotClean {
        reason: format!("NTFS volume is hibernated (Windows Fast Startup or hibernation): {why}"),
        fix: FIX_HIBERNATED.into(),
    };
    let Some(v) = vol.attribute(rec, AT_DATA, &[])? else {
        return Err(hibernated("hiberfil.sys has no data".into()));
    };
    if let Value::NonResident(s) = &v
        && s.transformed
    {
        return Err(hibernated(
            "hiberfil.sys is compressed or encrypted, so its header cannot be read".into(),
        ));
    }
    if v.len() < HIBERFILE_HEADER {
        return Err(hibernated(format!(
            "hiberfil.sys is {} bytes, shorter than its {HIBERFILE_HEADER}-byte header",
            v.len()
        )));
    }
    let mut sig = [0u8; 4];
    vol.read_value(&v, 0, &mut sig)?;
    if HIBERNATED.contains(&&sig) {
        return Err(hibernated(format!(
            "hiberfil.sys starts with \"{}\"",
            String::from_utf8_lossy(&sig)
        )));
    }
    Ok(())
}

/// The clusters `$Bitmap` marks in use, as byte ranges.
fn bitmap(vol: &Volume<'_>) -> Result<Extents, FsError> {
    let rec = vol.record(FILE_BITMAP)?;
    let v = vol
        .attribute(&rec, AT_DATA, &[])?
        .ok_or_else(|| bad("$Bitmap has no $DATA"))?;
    let clusters = vol.clusters;
    let need = clusters.div_ceil(8);
    if v.len() < need {
        return Err(FsError::Unsupported(format!(
            "NTFS: $Bitmap is {} bytes, too short for the volume's {clusters} clusters ({need} bytes)",
            v.len()
        )));
    }
    let cs = vol.boot.cluster_size;
    let mut used = Extents::new();
    let mut run: Option<u64> = None;
    let mut buf = vec![0u8; BITMAP_CHUNK];
    let mut at = 0u64;
    while at < need {
        let n = (need - at).min(BITMAP_CHUNK as u64) as usize;
        vol.read_value(&v, at, &mut buf[..n])?;
        for (i, &byte) in buf[..n].iter().enumerate() {
            let first = (at + i as u64) * 8;
            match (byte, run) {
                (0xFF, Some(_)) | (0x00, None) => continue,
                _ => {}
            }
            for bit in 0..8u64 {
                let c = first + bit;
                if c >= clusters {
                    break;
                }
                match (byte & (1 << bit) != 0, run) {
                    (true, None) => run = Some(c),
                    (false, Some(s)) => {
                        used.insert(s * cs, c * cs);
                        run = None;
                    }
                    _ => {}
                }
            }
        }
        at += n as u64;
    }
    if let Some(s) = run {
        used.insert(s * cs, clusters * cs);
    }
    Ok(used)
}

/// The clusters of the system files, whose being marked free in `$Bitmap` would mean the bitmap
/// cannot be trusted.
fn system_clusters(vol: &Volume<'_>) -> Result<Extents, FsError> {
    let i30: Vec<u16> = "$I30".encode_utf16().collect();
    let checks: [(u64, u32, &[u16], &str); 9] = [
        (0, AT_DATA, &[], "$MFT"),
        (0, AT_BITMAP, &[], "$MFT's bitmap"),
        (1, AT_DATA, &[], "$MFTMirr"),
        (2, AT_DATA, &[], "$LogFile"),
        (4, AT_DATA, &[], "$AttrDef"),
        (5, AT_INDEX_ALLOCATION, &i30, "the root directory"),
        (6, AT_DATA, &[], "$Bitmap"),
        (7, AT_DATA, &[], "$Boot"),
        (10, AT_DATA, &[], "$UpCase"),
    ];
    let mut out = Extents::new();
    let mut required = 0;
    for (n, ty, name, what) in checks {
        let rec = vol.record(n)?;
        if !rec.in_use() {
            return Err(bad(format!("{what} (MFT record {n}) is not in use")));
        }
        if let Some(Value::NonResident(s)) = vol.attribute(&rec, ty, name)? {
            out.union_with(&real_clusters(vol, &s.runs, u64::MAX));
            required += u32::from(matches!(n, 0 | 1 | 6 | 7));
        }
    }
    if required < 4 {
        return Err(bad("$MFT, $MFTMirr, $Bitmap or $Boot has no cluster"));
    }
    // The boot sector names where the MFT and its mirror start; their records must agree.
    let cs = vol.boot.cluster_size;
    for (n, lcn, what) in [
        (0, vol.boot.mft_lcn, "$MFT"),
        (1, vol.boot.mftmirr_lcn, "$MFTMirr"),
    ] {
        let first = match vol.attribute(&vol.record(n)?, AT_DATA, &[])? {
            Some(Value::NonResident(s)) => s.runs.first().and_then(|r| r.lcn),
            _ => None,
        };
        if first != Some(lcn) {
            return Err(FsError::Unsupported(format!(
                "NTFS: the boot sector puts {what} at byte {}, its MFT record elsewhere",
                lcn * cs
            )));
        }
    }
    Ok(out)
}

/// The byte ranges of the real (not sparse) clusters of `runs`, from byte `skip` of the value on.
fn real_clusters(vol: &Volume<'_>, runs: &[volume::Run], skip_clusters: u64) -> Extents {
    let cs = vol.boot.cluster_size;
    let mut e = Extents::new();
    for r in runs {
        let Some(lcn) = r.lcn else { continue };
        // Clusters before `skip_clusters` (a VCN) are kept out.
        let skip = if skip_clusters == u64::MAX {
            0
        } else {
            skip_clusters.saturating_sub(r.vcn).min(r.len)
        };
        e.insert((lcn + skip) * cs, (lcn + r.len) * cs);
    }
    e
}

/// The clusters of a recreated file that count as free, or `None` to keep them all as used (a
/// file roomcast does not fully understand: linked from elsewhere, resident, compressed,
/// encrypted).
fn recreated_clusters(
    vol: &Volume<'_>,
    rec: &Record,
    keep_header: bool,
) -> Result<Option<Extents>, FsError> {
    if !rec.in_use() || rec.is_directory() {
        return Ok(None);
    }
    // Another hard link would make the content more than Windows' page or hibernation file.
    let names = dir::names(vol, rec)?;
    let links = volume::le16(&rec.buf, 0x12).unwrap_or(0);
    if names.is_empty() || links > 2 || names.iter().any(|(p, _)| *p != FILE_ROOT) {
        return Ok(None);
    }
    let Some(Value::NonResident(s)) = vol.attribute(rec, AT_DATA, &[])? else {
        return Ok(None);
    };
    if s.transformed {
        return Ok(None);
    }
    let cs = vol.boot.cluster_size;
    let skip = if keep_header {
        HIBERFILE_HEADER.div_ceil(cs)
    } else {
        0
    };
    Ok(Some(real_clusters(vol, &s.runs, skip)))
}

/// True when `[start, end)` is wholly in `e`.
fn covers(e: &Extents, start: u64, end: u64) -> bool {
    start >= end || e.window(start, end).first() == Some(&(0..end - start))
}

/// `a` without the bytes of `b`.
fn subtract(a: &Extents, b: &Extents) -> Extents {
    let mut out = Extents::new();
    for r in a.ranges() {
        let mut at = r.start;
        for hole in b.window(r.start, r.end) {
            out.insert(at, r.start + hole.start);
            at = r.start + hole.end;
        }
        out.insert(at, r.end);
    }
    out
}

/// Splits a Windows path (`\` or `/`) into its names.
fn components(path: &str) -> Vec<Vec<u16>> {
    path.split(['\\', '/'])
        .filter(|c| !c.is_empty() && *c != ".")
        .map(|c| c.encode_utf16().collect())
        .collect()
}

/// Most path components followed (a Windows path is at most 32,767 characters).
const MAX_DEPTH: usize = 256;

/// Opens the volume in `part` for reading files (whatever its dirty or hibernated state).
fn open_for_files(part: &dyn ReadAt) -> Result<Volume<'_>, FsError> {
    match volume::boot_sector(part)? {
        BootKind::Ntfs(boot) => Volume::open(part, boot),
        BootKind::BitLocker => Err(FsError::Unsupported(
            "BitLocker-encrypted volume: its files cannot be read".into(),
        )),
        BootKind::Other => Err(FsError::Unsupported("not an NTFS file system".into())),
    }
}

/// Follows `path` from the root: the MFT record it names, `None` if a component is missing.
fn walk(vol: &Volume<'_>, path: &str, up: &Upcase) -> Result<Option<Record>, FsError> {
    let parts = components(path);
    if parts.len() > MAX_DEPTH {
        return Err(FsError::Unsupported(format!(
            "path of {} components (at most {MAX_DEPTH})",
            parts.len()
        )));
    }
    let mut rec = vol.record(FILE_ROOT)?;
    for name in parts {
        match dir::lookup(vol, &rec, &name, up)? {
            Some(n) => rec = vol.record(n)?,
            None => return Ok(None),
        }
    }
    Ok(Some(rec))
}

/// Reads the file at `path` (`\` or `/` separated, from the volume's root, matched
/// case-insensitively with the volume's `$UpCase` as Windows does) from the NTFS volume in `part`,
/// read-only. `Ok(None)` when there is no such file (or the path names a directory); an error when
/// `part` is not NTFS, the file is larger than `max_len` bytes (never a truncated read), or its
/// data is compressed or encrypted.
///
/// Used by the agent (issue 15) to read `Windows\Setup\State\State.ini` of a master before capture.
pub fn read_file(
    part: &dyn ReadAt,
    path: &str,
    max_len: usize,
) -> Result<Option<Vec<u8>>, FsError> {
    let vol = open_for_files(part)?;
    let up = Upcase::load(&vol);
    let Some(rec) = walk(&vol, path, &up)? else {
        return Ok(None);
    };
    if rec.is_directory() {
        return Ok(None);
    }
    let Some(v) = vol.attribute(&rec, AT_DATA, &[])? else {
        return Ok(Some(Vec::new()));
    };
    if let Value::NonResident(s) = &v
        && s.transformed
    {
        return Err(FsError::Unsupported(format!(
            "{path} is compressed or encrypted: roomcast does not read such files"
        )));
    }
    if v.len() > max_len as u64 {
        return Err(FsError::Unsupported(format!(
            "{path} is {} bytes, more than the {max_len} bytes asked for",
            v.len()
        )));
    }
    vol.read_all(&v, max_len as u64, path).map(Some)
}

/// True when `part` holds an NTFS volume with a `Windows\System32` directory: the partition a
/// Windows PC boots (how the agent finds where to write unattend.xml and read State.ini). False on
/// any error.
pub fn holds_windows(part: &dyn ReadAt) -> bool {
    let Ok(vol) = open_for_files(part) else {
        return false;
    };
    let up = Upcase::load(&vol);
    matches!(walk(&vol, "Windows\\System32", &up), Ok(Some(rec)) if rec.is_directory())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_and_covers() {
        let mut a = Extents::new();
        a.insert(0, 100);
        a.insert(200, 300);
        let mut b = Extents::new();
        b.insert(50, 60);
        b.insert(90, 210);
        assert_eq!(subtract(&a, &b).ranges(), &[0..50, 60..90, 210..300]);
        assert!(covers(&a, 10, 100));
        assert!(!covers(&a, 10, 101));
        assert!(!covers(&a, 150, 160));
    }

    #[test]
    fn runs_decode_with_negative_offsets_and_sparse() {
        // 0x21: 1 length byte, 2 offset bytes: 16 clusters at 0x1000; 0x01: 4 sparse clusters;
        // 0x11: 8 clusters at 0x1000 - 0x10.
        let bytes = [0x21, 0x10, 0x00, 0x10, 0x01, 0x04, 0x11, 0x08, 0xF0, 0x00];
        let mut runs = Vec::new();
        let next = volume::decode_runs(&bytes, 0, &mut runs).unwrap();
        assert_eq!(next, 28);
        assert_eq!(runs[0].lcn, Some(0x1000));
        assert_eq!(runs[1].lcn, None);
        assert_eq!(runs[2].lcn, Some(0x1000 - 0x10));
        assert!(volume::decode_runs(&[0x09, 1], 0, &mut Vec::new()).is_err());
        assert!(volume::decode_runs(&[0x11, 0x01], 0, &mut Vec::new()).is_err());
        // An offset before the volume's start.
        assert!(volume::decode_runs(&[0x11, 0x01, 0xFF, 0], 0, &mut Vec::new()).is_err());
    }
}
