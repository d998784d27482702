//! NTFS allocation map.
//!
//! STUB: to be written (issue #14, item 2). Today `probe` recognises nothing.

use crate::{Probe, ReadAt};

/// `None` when `part` does not hold NTFS; else its map, or why it cannot be mapped.
pub fn probe(part: &dyn ReadAt) -> Probe {
    let _ = part;
    None
}
