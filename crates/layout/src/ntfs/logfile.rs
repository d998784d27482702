//! Whether NTFS's journal (`$LogFile`) was closed cleanly, judged as ntfs-3g does before a
//! read-write mount (`ntfs_check_logfile` / `ntfs_is_logfile_clean` / `ntfs_volume_check_logfile`
//! in libntfs-3g): a volume whose journal still has transactions to replay has a `$Bitmap` that may
//! not say what Windows will find after the replay, so its map cannot be trusted.
//!
//! - An empty journal (its first pages all `0xFF`, as mkntfs and ntfs-3g leave it) is clean.
//! - Else the restart pages (`RSTR`, or `CHKD` after chkdsk) are looked for where ntfs-3g looks (byte
//!   0, then 512, 1024, 2048, … until a log record page or an empty page after a used one); of the
//!   first two that check out, the one with the higher current LSN is the journal's state.
//! - Unclean when its restart area has a client in use without `RESTART_VOLUME_IS_CLEAN`, or when the
//!   restart page is version 2.0 (Windows kept metadata cached for Fast Startup, or lost power).

use super::volume::{Value, Volume, apply_fixups, le16, le32, le64};
use crate::FsError;

const NO_CLIENT: u16 = 0xFFFF;
const MAX_LOG_FILE: u64 = 1 << 32;
const RESTART_VOLUME_IS_CLEAN: u16 = 0x0002;

/// What the journal says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Journal {
    /// Never used or reset: nothing to replay.
    Empty,
    /// Closed cleanly.
    Clean,
    /// Transactions may be waiting for replay; the reason, in plain words.
    Unclean(String),
    /// No restart page could be read although the journal is not empty.
    Unreadable(String),
}

/// A restart page's state: (current LSN, clean, why not).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Restart {
    pub lsn: u64,
    pub unclean: Option<String>,
}

/// Reads one restart page (after its fixups): `Err` when it does not check out.
pub(super) fn restart_page(page: &mut [u8]) -> Result<Restart, String> {
    let magic: [u8; 4] = page
        .get(0..4)
        .and_then(|m| m.try_into().ok())
        .ok_or("short restart page")?;
    apply_fixups(page, &magic)?;
    let minor = le16(page, 26).unwrap_or(0) as i16;
    let major = le16(page, 28).unwrap_or(0) as i16;
    let ra = usize::from(le16(page, 24).unwrap_or(0));
    if !ra.is_multiple_of(8) || ra < 30 || ra + 16 > page.len() {
        return Err(format!("restart area at byte {ra}"));
    }
    let lsn = le64(page, ra).unwrap_or(0);
    let in_use = le16(page, ra + 12).unwrap_or(0);
    let flags = le16(page, ra + 14).unwrap_or(0);
    let unclean = if major == 2 && minor == 0 {
        Some(
            "its journal ($LogFile) is at version 2.0: Windows kept its metadata cached for Fast \
             Startup, or the disk was cut off abruptly"
                .to_string(),
        )
    } else if in_use != NO_CLIENT && flags & RESTART_VOLUME_IS_CLEAN == 0 {
        Some(
            "its journal ($LogFile) was not closed cleanly: Windows crashed or lost power, and \
             transactions wait to be replayed"
                .to_string(),
        )
    } else {
        None
    };
    Ok(Restart { lsn, unclean })
}

/// Judges the `$LogFile` whose `$DATA` is `v`.
pub(super) fn journal(vol: &Volume<'_>, v: &Value) -> Result<Journal, FsError> {
    // ntfs-3g looks no further than 4 GiB (`MaxLogFileSize`).
    let size = v.len().min(MAX_LOG_FILE);
    let mut head = [0u8; 512];
    let mut empty = true;
    let mut found: Vec<Restart> = Vec::new();
    let mut last_err = String::new();
    let mut pos = 0u64;
    while pos + 512 <= size && found.len() < 2 {
        vol.read_value(v, pos, &mut head)?;
        let magic = &head[0..4];
        if magic != [0xFF; 4] {
            empty = false;
        } else if !empty {
            break;
        }
        if magic == b"RCRD" {
            break;
        }
        if magic == b"RSTR" || magic == b"CHKD" {
            let sps = u64::from(le32(&head, 16).unwrap_or(0));
            if (512..=65536).contains(&sps) && sps.is_power_of_two() && pos + sps <= size {
                let mut page = vec![0u8; sps as usize];
                vol.read_value(v, pos, &mut page)?;
                match restart_page(&mut page) {
                    Ok(r) => found.push(r),
                    Err(e) => last_err = e,
                }
            } else {
                last_err = format!("restart page of {sps} bytes");
            }
        }
        pos = if pos == 0 { 512 } else { pos * 2 };
        // (`pos` stays below 2^33: `size` is at most 4 GiB.)
    }
    if empty {
        return Ok(Journal::Empty);
    }
    let Some(latest) = found.into_iter().max_by_key(|r| r.lsn) else {
        return Ok(Journal::Unreadable(if last_err.is_empty() {
            "no restart page".into()
        } else {
            last_err
        }));
    };
    Ok(match latest.unclean {
        Some(why) => Journal::Unclean(why),
        None => Journal::Clean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4 KiB restart page with its update sequence array applied as a disk holds it.
    pub(crate) fn page(major: u16, minor: u16, in_use: u16, flags: u16, lsn: u64) -> Vec<u8> {
        let mut p = vec![0u8; 4096];
        p[0..4].copy_from_slice(b"RSTR");
        p[4..6].copy_from_slice(&0x1Eu16.to_le_bytes());
        p[6..8].copy_from_slice(&9u16.to_le_bytes());
        p[16..20].copy_from_slice(&4096u32.to_le_bytes());
        p[20..24].copy_from_slice(&4096u32.to_le_bytes());
        p[24..26].copy_from_slice(&0x30u16.to_le_bytes());
        p[26..28].copy_from_slice(&minor.to_le_bytes());
        p[28..30].copy_from_slice(&major.to_le_bytes());
        p[0x30..0x38].copy_from_slice(&lsn.to_le_bytes());
        p[0x38..0x3A].copy_from_slice(&1u16.to_le_bytes());
        p[0x3A..0x3C].copy_from_slice(&NO_CLIENT.to_le_bytes());
        p[0x3C..0x3E].copy_from_slice(&in_use.to_le_bytes());
        p[0x3E..0x40].copy_from_slice(&flags.to_le_bytes());
        // Update sequence number 7; each block's last two bytes saved into the array.
        p[0x1E..0x20].copy_from_slice(&7u16.to_le_bytes());
        for i in 1..9 {
            let end = i * 512;
            let saved = [p[end - 2], p[end - 1]];
            p[0x1E + 2 * i..0x1E + 2 * i + 2].copy_from_slice(&saved);
            p[end - 2..end].copy_from_slice(&7u16.to_le_bytes());
        }
        p
    }

    #[test]
    fn restart_states() {
        assert_eq!(
            restart_page(&mut page(1, 1, NO_CLIENT, 0, 5))
                .unwrap()
                .unclean,
            None
        );
        assert_eq!(
            restart_page(&mut page(1, 1, 0, RESTART_VOLUME_IS_CLEAN, 5))
                .unwrap()
                .unclean,
            None
        );
        assert!(
            restart_page(&mut page(1, 1, 0, 0, 5))
                .unwrap()
                .unclean
                .is_some()
        );
        assert!(
            restart_page(&mut page(2, 0, NO_CLIENT, 0, 5))
                .unwrap()
                .unclean
                .is_some()
        );
        let mut torn = page(1, 1, NO_CLIENT, 0, 5);
        torn[1023] ^= 1;
        assert!(restart_page(&mut torn).is_err());
    }
}
