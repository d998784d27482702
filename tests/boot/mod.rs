//! The boot chain with real namespaces, real sockets and real PXE firmware (qemu). Root only; every
//! test builds its own `roomcast_lab::Lab`, which removes everything on drop.

mod hardware;
pub(crate) mod pxe;
mod secureboot;
mod services;
mod wol;

use std::path::Path;

/// Reads a pcap file written by tcpdump and returns the frames (Ethernet link type).
pub fn pcap_frames(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let len = u32::from_le_bytes(data[off + 8..off + 12].try_into().unwrap()) as usize;
        let end = (off + 16 + len).min(data.len());
        frames.push(data[off + 16..end].to_vec());
        off += 16 + len;
    }
    frames
}
