//! Linux swap allocation map: only the header page is used (its content is recreated at each boot).
//!
//! The signature sits in the last 10 bytes of the first page; the page size is the creating
//! machine's (4 KiB on x86, up to 64 KiB elsewhere), so each is tried. A hibernation image in the
//! swap ("S1SUSPEND" and the other resume signatures) is refused: it is the state of a running
//! system, and restoring it without the rest of the disk as it was would corrupt it.

use crate::bytes::{le32, read_vec};
use crate::{Extents, FsError, FsMap, Probe, ReadAt};

const PAGE_SIZES: [u64; 4] = [4096, 8192, 16384, 65536];

/// Signatures of a hibernation image written over the swap signature (kernel swsusp, uswsusp,
/// TuxOnIce, and the LINHIB of some distributions).
const HIBERNATION: [&[u8]; 5] = [
    b"S1SUSPEND",
    b"S2SUSPEND",
    b"ULSUSPEND",
    b"LINHIB0001",
    b"\xed\xc3\x02\xe9\x98\x56\xe5\x0c",
];

/// `None` when `part` does not hold Linux swap; else its map, or why it cannot be mapped.
pub fn probe(part: &dyn ReadAt) -> Probe {
    for ps in PAGE_SIZES {
        let Ok(sig) = read_vec(part, ps - 10, 10) else {
            break;
        };
        if sig == b"SWAPSPACE2" {
            return Some(header(part, ps));
        }
        if sig == b"SWAP-SPACE" {
            return Some(Err(FsError::Unsupported(
                "swap: an old-style (version 0) swap area, not read".into(),
            )));
        }
        if HIBERNATION.iter().any(|h| sig.starts_with(h)) {
            return Some(Err(FsError::NotClean {
                reason:
                    "swap: it holds a hibernation image (the system was hibernated, not shut down)"
                        .into(),
                fix: "resume or discard the hibernation image: boot the master and shut it down \
                      (or run `mkswap` on this partition to discard it)"
                    .into(),
            }));
        }
    }
    None
}

fn header(part: &dyn ReadAt, ps: u64) -> Result<FsMap, FsError> {
    let h = read_vec(part, 1024, 12)?;
    let version = le32(&h, 0);
    if version != 1 {
        return Err(FsError::Unsupported(format!(
            "swap: header version {version} is not read (version 1 expected)"
        )));
    }
    let last_page = u64::from(le32(&h, 4));
    if (last_page + 1) * ps > part.size() {
        return Err(FsError::Unsupported(format!(
            "swap: the swap area ({} bytes) is larger than its partition ({} bytes): truncated?",
            (last_page + 1) * ps,
            part.size()
        )));
    }
    Ok(FsMap {
        fs: "swap".into(),
        used: Extents::from_range(0, ps),
        discarded: Vec::new(),
    })
}
