//! Windows on the PC's disk (issue 15): the system NTFS partition found from the partition table
//! and the file systems, read natively (`roomcast_layout::ntfs`), and written only through ntfs-3g's
//! `ntfscp` (docs/DECISIONS.md, D17).
//!
//! - Step f ([`check_generalised`]): a master whose Windows was not generalised by sysprep is
//!   refused before anything is uploaded. The image state is `ImageState` in section `[State]` of
//!   `Windows\Setup\State\State.ini` (Microsoft, "Windows Setup States"); only
//!   [`GENERALISED`] may be deployed to other PCs.
//! - Step h ([`write_unattend`]): after the restore, before the PC restarts, the PC's own
//!   `unattend.xml` is copied to `Windows\Panther\unattend.xml` of the restored Windows, then read
//!   back natively and compared byte for byte. The file holds the PC's offline domain join blob: it
//!   is passed to `ntfscp` as a 0600 file in a private folder (never on a command line), removed
//!   afterwards, and only its sha256 is reported.

use super::AgentError;
use roomcast_proto::contract::UnattendWritten;
use roomcast_store::disk::Disk;
use roomcast_store::layout::{ReadAt, Slice, ntfs, table};
use roomcast_store::manifest::VerifiedManifest;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The image state of a Windows that `sysprep /generalize /oobe` sealed: the only one deployable
/// to other PCs.
pub const GENERALISED: &str = "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE";
/// Where Windows keeps its image state.
pub const STATE_INI: &str = "Windows\\Setup\\State\\State.ini";
/// Where Windows Setup looks for an answer file before any other place on the system drive.
pub const UNATTEND_PATH: &str = "Windows\\Panther\\unattend.xml";
/// The fix named when a master is refused.
pub const SYSPREP_FIX: &str = "sysprep /generalize /oobe /shutdown";
/// ntfs-3g's copy tool; the boot environment puts it in `/bin` (`roomcast bootenv build`).
pub const NTFSCP: &str = "ntfscp";
/// Largest State.ini / unattend.xml read.
const MAX_FILE: usize = 256 * 1024;

/// The `ImageState` value of a State.ini (UTF-16LE with a BOM, UTF-8 with or without a BOM, or
/// ANSI), `None` when the file has no such key in section `[State]`.
pub fn image_state(ini: &[u8]) -> Option<String> {
    let text = match ini {
        [0xff, 0xfe, rest @ ..] => {
            let units: Vec<u16> = rest
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        [0xef, 0xbb, 0xbf, rest @ ..] => String::from_utf8_lossy(rest).into_owned(),
        // ANSI: the values are ASCII; any other byte is kept as the Latin-1 character it is.
        other => match std::str::from_utf8(other) {
            Ok(s) => s.to_string(),
            Err(_) => other.iter().map(|&b| b as char).collect(),
        },
    };
    let mut in_state = false;
    for line in text.lines() {
        let line = line.trim().trim_start_matches('\u{feff}');
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_state = section.trim().eq_ignore_ascii_case("State");
        } else if in_state
            && let Some((key, value)) = line.split_once('=')
            && key.trim().eq_ignore_ascii_case("ImageState")
        {
            return Some(value.trim().trim_matches('"').to_string());
        }
    }
    None
}

/// The partitions `(number, start, len)` of `disk` that hold Windows (NTFS with
/// `Windows\System32`), among `candidates`.
fn holding_windows(disk: &dyn ReadAt, candidates: &[(u32, u64, u64)]) -> Vec<(u32, u64, u64)> {
    candidates
        .iter()
        .copied()
        .filter(|&(_, start, len)| ntfs::holds_windows(&Slice { disk, start, len }))
        .collect()
}

/// Every partition of the disk's own table.
fn table_partitions(disk: &dyn ReadAt) -> Result<Vec<(u32, u64, u64)>, String> {
    let t = table::read(disk).map_err(|e| format!("partition table: {e}"))?;
    Ok(t.partitions
        .iter()
        .map(|p| (p.number, p.start, p.len))
        .collect())
}

/// Step f: refuses a disk holding a Windows that sysprep did not generalise (nothing is uploaded
/// then). A disk without Windows passes.
pub fn check_generalised(disk: &Disk, path: &Path) -> Result<(), AgentError> {
    let refuse = |reason: String| AgentError::NotGeneralised {
        disk: path.to_path_buf(),
        reason,
    };
    let Ok(parts) = table_partitions(disk) else {
        // No table to read: no Windows partition to check (the capture says what it can read).
        return Ok(());
    };
    for (number, start, len) in holding_windows(disk, &parts) {
        let part = Slice { disk, start, len };
        let state = match ntfs::read_file(&part, STATE_INI, MAX_FILE) {
            Ok(Some(ini)) => image_state(&ini),
            Ok(None) => {
                return Err(refuse(format!(
                    "partition {number} (Windows): no {STATE_INI}, so nothing says sysprep \
                     generalised it; run {SYSPREP_FIX} on the master"
                )));
            }
            Err(e) => {
                return Err(refuse(format!(
                    "partition {number} (Windows): {STATE_INI} cannot be read ({e}); run \
                     {SYSPREP_FIX} on the master"
                )));
            }
        };
        match state.as_deref() {
            Some(GENERALISED) => {}
            Some(other) => {
                return Err(refuse(format!(
                    "partition {number} (Windows): image state {other}, not {GENERALISED}: this \
                     Windows was not generalised; run {SYSPREP_FIX} on the master"
                )));
            }
            None => {
                return Err(refuse(format!(
                    "partition {number} (Windows): {STATE_INI} has no ImageState in [State]; run \
                     {SYSPREP_FIX} on the master"
                )));
            }
        }
    }
    Ok(())
}

/// The one partition of the restored disk holding Windows: the image's NTFS partitions (its
/// manifest's layout record) or, for an image without one, the disk's table; then the one with
/// `Windows\System32`.
fn system_partition(disk: &Disk, m: &VerifiedManifest) -> Result<(u32, u64, u64), String> {
    let candidates = match &m.layout {
        Some(l) => l
            .partitions
            .iter()
            .filter(|p| p.fs == "ntfs")
            .map(|p| (p.number, p.start, p.len))
            .collect(),
        None => table_partitions(disk)?,
    };
    match holding_windows(disk, &candidates).as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "no partition of the image holds Windows (NTFS with Windows\\System32; looked at {})",
            if candidates.is_empty() {
                "none: the image has no NTFS partition".to_string()
            } else {
                candidates
                    .iter()
                    .map(|c| c.0.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )),
        many => Err(format!(
            "partitions {} all hold Windows: roomcast cannot tell which one boots",
            many.iter()
                .map(|c| c.0.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A private folder (0700) holding the file handed to `ntfscp`, removed with its content on drop.
struct Private(PathBuf);

impl Drop for Private {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Step h for a Windows PC: writes `xml` to [`UNATTEND_PATH`] of the restored disk's Windows
/// partition through `ntfscp` on a loop device over that partition, then reads it back natively and
/// compares. Errors never carry the file's content.
pub fn write_unattend(
    disk_path: &Path,
    m: &VerifiedManifest,
    xml: &[u8],
) -> Result<UnattendWritten, AgentError> {
    let fail = |reason: String| AgentError::Unattend {
        disk: disk_path.to_path_buf(),
        reason,
    };
    let disk = Disk::open_read(disk_path).map_err(|e| fail(e.to_string()))?;
    let (number, start, len) = system_partition(&disk, m).map_err(fail)?;
    let dir = std::env::temp_dir().join(format!("roomcast-unattend-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    }
    let private = Private(dir);
    let file = private.0.join("unattend.xml");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(|e| fail(format!("{}: {e}", file.display())))?;
        f.write_all(xml)
            .map_err(|e| fail(format!("{}: {e}", file.display())))?;
    }
    let lo = loopdev::LoopDevice::attach(disk_path, start, len)
        .map_err(|e| fail(format!("partition {number}: loop device: {e}")))?;
    let dest = UNATTEND_PATH.replace('\\', "/");
    let out = Command::new(NTFSCP)
        .arg(lo.path())
        .arg(&file)
        .arg(&dest)
        .output()
        .map_err(|e| fail(format!("cannot run {NTFSCP}: {e}")))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(fail(format!(
            "partition {number}: {NTFSCP} {} … {dest} failed ({}): {}",
            lo.path().display(),
            out.status,
            said.trim()
        )));
    }
    lo.sync()
        .map_err(|e| fail(format!("partition {number}: {e}")))?;
    drop(lo);
    drop(private);
    // Read back natively, through the disk itself (not the loop device).
    let disk = Disk::open_read(disk_path).map_err(|e| fail(e.to_string()))?;
    let part = Slice {
        disk: &disk,
        start,
        len,
    };
    let back = ntfs::read_file(&part, UNATTEND_PATH, MAX_FILE)
        .map_err(|e| {
            fail(format!(
                "partition {number}: reading {UNATTEND_PATH} back: {e}"
            ))
        })?
        .ok_or_else(|| {
            fail(format!(
                "partition {number}: {UNATTEND_PATH} is not there after {NTFSCP}"
            ))
        })?;
    if back != xml {
        return Err(fail(format!(
            "partition {number}: {UNATTEND_PATH} read back differs from what was written \
             ({} bytes read, {} written)",
            back.len(),
            xml.len()
        )));
    }
    Ok(UnattendWritten {
        partition: number,
        path: UNATTEND_PATH.to_string(),
        bytes: back.len() as u64,
        sha256: roomcast_proto::hash::ChunkHash::of(&back).to_hex(),
    })
}

/// A loop device over a window of a disk (`LOOP_CONFIGURE`, autoclear): how `ntfscp`, which
/// wants a device holding only the file system, reaches a partition of a disk image or of a disk
/// whose kernel partition list may predate the restored table.
mod loopdev {
    use std::fs::{File, OpenOptions};
    use std::os::fd::AsRawFd;
    use std::path::{Path, PathBuf};

    const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
    const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
    const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
    const LO_FLAGS_AUTOCLEAR: u32 = 4;

    #[repr(C)]
    struct LoopInfo64 {
        lo_device: u64,
        lo_inode: u64,
        lo_rdevice: u64,
        lo_offset: u64,
        lo_sizelimit: u64,
        lo_number: u32,
        lo_encrypt_type: u32,
        lo_encrypt_key_size: u32,
        lo_flags: u32,
        lo_file_name: [u8; 64],
        lo_crypt_name: [u8; 64],
        lo_encrypt_key: [u8; 32],
        lo_init: [u64; 2],
    }

    #[repr(C)]
    struct LoopConfig {
        fd: u32,
        block_size: u32,
        info: LoopInfo64,
        reserved: [u64; 8],
    }

    /// An attached loop device; detached when dropped.
    pub struct LoopDevice {
        dev: File,
        path: PathBuf,
        _backing: File,
    }

    impl LoopDevice {
        /// Attaches `[start, start + len)` of `backing` to a free loop device.
        pub fn attach(backing: &Path, start: u64, len: u64) -> std::io::Result<LoopDevice> {
            let file = OpenOptions::new().read(true).write(true).open(backing)?;
            let control = OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/loop-control")?;
            let mut last = std::io::Error::other("no free loop device");
            // Another process may take the free device between the two calls: try again.
            for _ in 0..16 {
                // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
                let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
                if n < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let path = PathBuf::from(format!("/dev/loop{n}"));
                let dev = match OpenOptions::new().read(true).write(true).open(&path) {
                    Ok(d) => d,
                    Err(e) => {
                        last = e;
                        continue;
                    }
                };
                let config = LoopConfig {
                    fd: file.as_raw_fd() as u32,
                    block_size: 0,
                    info: LoopInfo64 {
                        lo_device: 0,
                        lo_inode: 0,
                        lo_rdevice: 0,
                        lo_offset: start,
                        lo_sizelimit: len,
                        lo_number: 0,
                        lo_encrypt_type: 0,
                        lo_encrypt_key_size: 0,
                        lo_flags: LO_FLAGS_AUTOCLEAR,
                        lo_file_name: [0; 64],
                        lo_crypt_name: [0; 64],
                        lo_encrypt_key: [0; 32],
                        lo_init: [0; 2],
                    },
                    reserved: [0; 8],
                };
                // SAFETY: `config` is a valid `struct loop_config` living across the call.
                let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &config) };
                if r == 0 {
                    return Ok(LoopDevice {
                        dev,
                        path,
                        _backing: file,
                    });
                }
                last = std::io::Error::last_os_error();
                if last.raw_os_error() != Some(libc::EBUSY) {
                    return Err(last);
                }
            }
            Err(last)
        }

        /// `/dev/loopN`.
        pub fn path(&self) -> &Path {
            &self.path
        }

        /// Flushes what was written through the device to the disk.
        pub fn sync(&self) -> std::io::Result<()> {
            self.dev.sync_all()
        }
    }

    impl Drop for LoopDevice {
        fn drop(&mut self) {
            // SAFETY: LOOP_CLR_FD takes no argument; with autoclear it detaches on the last close.
            unsafe {
                libc::ioctl(self.dev.as_raw_fd(), LOOP_CLR_FD, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        let mut v = vec![0xff, 0xfe];
        for u in s.encode_utf16() {
            v.extend_from_slice(&u.to_le_bytes());
        }
        v
    }

    #[test]
    fn image_state_is_read_in_every_encoding_windows_writes() {
        let ini = "[State]\r\nImageState=IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE\r\n";
        assert_eq!(image_state(&utf16(ini)).as_deref(), Some(GENERALISED));
        assert_eq!(image_state(ini.as_bytes()).as_deref(), Some(GENERALISED));
        let bom = [&[0xef, 0xbb, 0xbf][..], ini.as_bytes()].concat();
        assert_eq!(image_state(&bom).as_deref(), Some(GENERALISED));
        let used = "[Other]\nImageState=X\n[state]\n imagestate = IMAGE_STATE_COMPLETE \n";
        assert_eq!(
            image_state(&utf16(used)).as_deref(),
            Some("IMAGE_STATE_COMPLETE")
        );
        assert_eq!(image_state(b"[Other]\nImageState=X\n"), None);
        assert_eq!(image_state(b"\xff\xfe\x00"), None);
        assert_eq!(image_state(&[0xe9, b'[']), None);
    }
}
