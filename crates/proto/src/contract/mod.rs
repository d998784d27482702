//! The agent↔server contract: everything a PC's agent and the server must agree on, in one place.
//!
//! Both sides serialise and parse these types; neither reads a field by name from untyped JSON.
//!
//! | what | where |
//! |---|---|
//! | contract version, the headers every agent request carries | [`CONTRACT_VERSION`], [`CONTRACT_HEADER`], [`TOKEN_HEADER`], [`check_version`] |
//! | the HTTP paths | [`path`] |
//! | the kernel command line a boot script gives the agent | [`cmdline`] |
//! | the system-disk rule, the disks a PC has, the choice | [`disk`] |
//! | the PC's hardware facts, sent first, and the server's go/no-go | [`facts`] ([`HardwareFacts`], [`PcExpected`], [`Clearance`]) |
//! | a multicast session offered to one machine | [`SessionInfo`] |
//! | the image as multicast blocks | [`BlockMap`] |
//! | a network capture (step f) | [`CapturePlan`], [`CaptureFinish`] ([`CaptureChunk`], [`PartitionRecord`], [`DiscardedFile`]), [`CaptureDone`] |
//! | what the agent reports at the end | [`Report`] (with [`UnattendWritten`] for a Windows PC) |
//! | how far a restore is, while it runs (at most once a second) | [`Progress`] |
//!
//! An agent speaking another contract version is refused by the server with a message naming
//! both versions (a boot environment built by another roomcast: rebuild it).

mod blocks;
pub mod cmdline;
pub mod disk;
pub mod facts;
mod progress;
mod report;

pub use blocks::{Block, BlockMap};
pub use cmdline::{AgentCmdline, AgentMode};
pub use disk::{Bus, DiskChoiceError, DiskRule, DiskSeen};
pub use facts::{Clearance, HardwareFacts, PcExpected};
pub use progress::Progress;
pub use report::{
    CaptureFigures, McastFigures, Report, RestoreFigures, Transport, UnattendWritten, Verdict, Work,
};

use crate::hash::ChunkHash;
use serde::{Deserialize, Serialize};
use std::net::SocketAddrV4;

/// Version of this contract. Raise it whenever a type of this module changes in a way an agent
/// of the previous version would misread. 2: masked images (issue 14): the capture plan may ask
/// for a file-system-aware capture, the finish carries masks and partitions. 3: the PXE-booted
/// agent sends its [`HardwareFacts`] first and images only on a go ([`Clearance`]); the multicast
/// stream is sealed (issue 20): [`SessionInfo::key`], `McastFigures::rejected_datagrams`. 4: the
/// chunk bodies served to a machine of a multicast session are sealed with the session's key too
/// (`GET /chunks/<sha256>`, issue 20, D27), `McastFigures::rejected_bodies`; and the agent tells
/// how far its restore is while it runs ([`Progress`], [`path::PROGRESS`], issue 16).
pub const CONTRACT_VERSION: u32 = 4;

/// Header carrying the agent's contract version on every request.
pub const CONTRACT_HEADER: &str = "x-roomcast-contract";

/// Header carrying the agent's one-time token.
pub const TOKEN_HEADER: &str = "x-roomcast-token";

/// Content type of a chunk body sealed with the session's key (`roomcast_mcast::seal`, kind
/// chunk body): `counter (8) | ciphertext | tag (16)`.
pub const SEALED_CONTENT_TYPE: &str = "application/x-roomcast-sealed";

/// The HTTP paths of the boot service, as both sides name them.
pub mod path {
    /// `GET /boot/<mac>.ipxe`: the boot script of one machine (iPXE asks it).
    pub const BOOT_PREFIX: &str = "/boot/";
    /// `GET /files/<name>`: kernel, initramfs, iPXE binaries.
    pub const FILES_PREFIX: &str = "/files/";
    /// `POST`: the PC's [`super::HardwareFacts`], before anything is written; answered by a
    /// [`super::Clearance`].
    pub const FACTS: &str = "/agent/facts";
    /// `POST`: the agent's [`super::Report`].
    pub const REPORT: &str = "/agent/report";
    /// `POST`: how far the agent's restore is ([`super::Progress`]), at most once a second while
    /// it runs; behind the live token, which it does not spend.
    pub const PROGRESS: &str = "/agent/progress";
    /// `GET`: the signed manifest envelope of the served image.
    pub const MANIFEST: &str = "/image/manifest";
    /// `GET /chunks/<sha256>`: one compressed chunk of the served image; to a machine of the
    /// offered multicast session, sealed with the session's key ([`super::SEALED_CONTENT_TYPE`]).
    pub const CHUNKS_PREFIX: &str = "/chunks/";
    /// `GET`: the [`super::SessionInfo`] of this machine (404: no session, restore over HTTP).
    pub const SESSION: &str = "/mcast/session";
    /// `GET`: this machine's `unattend.xml` (a Windows PC at a deploy: name, offline domain join
    /// blob, locale, time zone), behind its live token; 404: none, the PC is not joined this way.
    pub const UNATTEND: &str = "/agent/unattend";
    /// `GET`: the [`super::CapturePlan`].
    pub const CAPTURE_PLAN: &str = "/capture/plan";
    /// `HEAD|PUT /capture/chunks/<sha256>`: one compressed chunk of the disk being captured.
    pub const CAPTURE_CHUNKS_PREFIX: &str = "/capture/chunks/";
    /// `POST`: the [`super::CaptureFinish`], answered by a [`super::CaptureDone`].
    pub const CAPTURE_FINISH: &str = "/capture/finish";

    /// `/chunks/<sha256>` of `hash`.
    pub fn chunk(hash: &crate::hash::ChunkHash) -> String {
        format!("{CHUNKS_PREFIX}{}", hash.to_hex())
    }

    /// `/capture/chunks/<sha256>` of `hash`.
    pub fn capture_chunk(hash: &crate::hash::ChunkHash) -> String {
        format!("{CAPTURE_CHUNKS_PREFIX}{}", hash.to_hex())
    }
}

/// An agent of another contract version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionMismatch {
    /// The request carried no version: an agent older than the versioned contract.
    #[error(
        "the agent speaks no versioned contract (an agent older than contract 1), this server \
         speaks contract {CONTRACT_VERSION}: rebuild the boot environment with this roomcast \
         (roomcast bootenv build)"
    )]
    Missing,
    /// The version is not ours.
    #[error(
        "the agent speaks roomcast contract {0}, this server speaks contract {CONTRACT_VERSION}: \
         rebuild the boot environment with this roomcast (roomcast bootenv build)"
    )]
    Other(String),
}

/// Checks the value of an agent's [`CONTRACT_HEADER`] (`None`: absent).
pub fn check_version(header: Option<&str>) -> Result<(), VersionMismatch> {
    match header.map(str::trim) {
        None => Err(VersionMismatch::Missing),
        Some(v) if v.parse::<u32>() == Ok(CONTRACT_VERSION) => Ok(()),
        Some(v) => Err(VersionMismatch::Other(v.chars().take(16).collect())),
    }
}

/// What `GET /mcast/session` answers one agent (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The control channel, `IP:port`.
    pub control: SocketAddrV4,
    /// The multicast group, `IP:port`.
    pub group: SocketAddrV4,
    /// The machine this token belongs to, `aa:bb:cc:dd:ee:ff` (the agent's identity in its HELLO).
    pub machine: String,
    /// Its control-channel token, hex (64 digits).
    pub token: String,
    /// The session's key, hex (64 digits): every datagram of the stream, and every chunk body
    /// `GET /chunks/<sha256>` answers this machine while the session is offered, is sealed with it
    /// (AES-256-GCM, `roomcast_mcast::seal`). Handed only with a live token; never logged.
    pub key: String,
    /// True once the session is over: restore over unicast instead.
    pub ended: bool,
}

/// `GET /capture/plan`: how to cut and compress the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturePlan {
    /// Chunk size in bytes.
    pub chunk_size: u32,
    /// zstd level.
    pub level: i32,
    /// Take every byte of the disk, as before file-system maps (`--whole-disk`): no partition is
    /// read, no chunk is masked. Otherwise the agent reads the disk's layout and sends only the
    /// bytes its file systems use.
    #[serde(default)]
    pub whole_disk: bool,
}

/// One chunk of the disk as the agent read it, in a [`CaptureFinish`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureChunk {
    /// sha256 of the (masked) chunk; `None` when its used bytes are all zero or it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<ChunkHash>,
    /// The used ranges `[start, end)` inside the chunk, sorted and disjoint; `None`: every byte is
    /// used; empty: no byte is (the chunk is neither uploaded nor stored). The free bytes were zeroed
    /// before hashing and compressing. The manifest's `ChunkEntry::used`, as the agent computed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<Vec<[u32; 2]>>,
}

/// One partition of a captured disk, as found at capture: what the agent reports in a
/// [`CaptureFinish`] and what the image's manifest records (`roomcast_store::manifest` re-exports
/// it: one type for the wire and the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// Number as Linux counts it (1-based; MBR logical partitions from 5).
    pub number: u32,
    /// First byte on the disk.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Its type as the table records it (a GPT type GUID or an MBR type byte, as
    /// `roomcast_layout::PartitionType::describe` says: `0x83`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The file system found ("ext4", "ntfs", "fat32", "swap"), "unknown", or "-" in a whole-disk
    /// capture.
    pub fs: String,
    /// Bytes of the partition that are captured: the file system's used bytes, or `len` when taken
    /// whole.
    pub used_bytes: u64,
    /// Why the partition is taken whole (every byte captured), if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole: Option<String>,
    /// Files whose bytes count as free.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discarded: Vec<DiscardedFile>,
}

/// A file whose bytes count as free although it holds them (`pagefile.sys`...): its content is
/// recreated at boot, so it is neither stored nor written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscardedFile {
    /// The file's name, as the file system records it.
    pub name: String,
    /// Bytes it holds that count as free.
    pub bytes: u64,
}

/// `POST /capture/finish`: the disk as the agent read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureFinish {
    /// Disk size in bytes.
    pub disk_size: u64,
    /// Chunk size the agent used (must be the plan's).
    pub chunk_size: u32,
    /// True when the disk was taken whole (no chunk carries a mask, no file system was read).
    pub whole_disk: bool,
    /// The partition table's kind: "gpt", "mbr" or "none".
    pub table: String,
    /// Every partition found, in table order (in a whole-disk capture: from the table alone, each
    /// taken whole).
    pub partitions: Vec<PartitionRecord>,
    /// Every chunk in disk order.
    pub chunks: Vec<CaptureChunk>,
}

/// `POST /capture/finish` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureDone {
    /// The signed image's id, hex.
    pub image: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_version_is_refused_naming_both() {
        assert_eq!(check_version(Some(&CONTRACT_VERSION.to_string())), Ok(()));
        let e = check_version(Some("7")).unwrap_err().to_string();
        assert!(
            e.contains("contract 7") && e.contains(&format!("contract {CONTRACT_VERSION}")),
            "{e}"
        );
        let e = check_version(None).unwrap_err().to_string();
        assert!(e.contains(&format!("contract {CONTRACT_VERSION}")), "{e}");
        // A hostile header is cut, never echoed whole.
        let long = "9".repeat(1000);
        assert!(check_version(Some(&long)).unwrap_err().to_string().len() < 300);
    }
}
