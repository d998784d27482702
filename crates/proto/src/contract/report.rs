//! What the agent sends to `POST /agent/report` at the end of its work, success or failure.
//!
//! The JSON is flat: `result`, `error`, `image`, `disk`, `mode` and the figures of that mode side by
//! side, so a technician reads it as the agent prints it on the PC's screen.

use super::CONTRACT_VERSION;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The agent's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The work is done.
    Ok,
    /// It failed; [`Report::error`] says why.
    Failed,
}

/// How the image reached the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A multicast session was offered and taken (with HTTP catch-up for what the stream missed).
    Multicast,
    /// Every chunk over HTTP.
    #[default]
    Unicast,
}

/// One agent's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The contract version the agent speaks ([`CONTRACT_VERSION`]).
    pub contract: u32,
    /// `ok` or `failed`.
    pub result: Verdict,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Image id (hex): the manifest that verified (restore) or the image the server signed (capture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The disk written or read.
    pub disk: PathBuf,
    /// Every disk the PC has (the PXE-booted agent lists them; a test or a technician's run
    /// by hand leaves it empty). Named in a failed report so the technician sees why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<super::DiskSeen>,
    /// The network card the agent used, `eth0 (52:54:00:12:34:56, e1000e, 8086:10d3)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic: Option<String>,
    /// Whether Wake-on-LAN (magic packet) was left armed on that card, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_on_lan: Option<String>,
    /// Step h for a Windows PC (issue 15): the `unattend.xml` the agent wrote into the restored
    /// Windows and read back, after the restore and before the PC restarts. Never its content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unattend: Option<UnattendWritten>,
    /// What was done, with its figures.
    #[serde(flatten)]
    pub work: Work,
}

/// The agent's work and its figures (`mode` in the JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Work {
    /// The served image was written onto the disk.
    Restore(RestoreFigures),
    /// The disk was uploaded as a new image.
    Capture(CaptureFigures),
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreFigures {
    /// Chunks in the image.
    pub chunks: u64,
    /// Data chunks fetched and written.
    pub written_chunks: u64,
    /// Chunks already right on the disk (skipped): their used bytes were equal.
    pub unchanged_chunks: u64,
    /// Chunks of the image with no used byte: never compared, sent nor written.
    #[serde(default)]
    pub unused_chunks: u64,
    /// Bytes the image's file systems use (plus the bytes outside every partition): the most a
    /// restore writes. The disk size for a whole-disk image.
    #[serde(default)]
    pub used_bytes: u64,
    /// Zero chunks zeroed.
    pub zeroed_chunks: u64,
    /// Bytes written from fetched chunks (used ranges only: a free byte is never written).
    pub written_bytes: u64,
    /// Bytes zeroed (used ranges of zero chunks only).
    pub zeroed_bytes: u64,
    /// `multicast` when a session was offered and taken, `unicast` otherwise.
    pub transport: Transport,
    /// Compressed bytes fetched over unicast HTTP after leaving the stream (0 on the unicast path).
    pub catch_up_bytes: u64,
    /// What the multicast path did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multicast: Option<McastFigures>,
    /// The PC's disk size in bytes (0 from an agent that does not say).
    #[serde(default)]
    pub disk_size: u64,
    /// What was adjusted because the PC's disk is not the image's size (the GPT rewritten for the
    /// disk's size, the last partition grown or shrunk), in words; empty when nothing was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adjusted: Vec<String>,
}

/// What the multicast path did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct McastFigures {
    /// Blocks (distinct data chunks) the disk already held at the start.
    pub held_blocks: u32,
    /// Blocks of the image.
    pub blocks: u32,
    /// Chunks written from the stream.
    pub multicast_chunks: u64,
    /// Blocks that arrived but failed the sha256 check (never written; they came again).
    pub refused_blocks: u64,
    /// Whether the stream delivered everything.
    pub complete: bool,
    /// Why the stream was left before the end, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_behind: Option<String>,
    /// Chunks fetched over unicast HTTP afterwards.
    pub catch_up_chunks: u64,
    /// Compressed bytes fetched over unicast HTTP afterwards.
    pub catch_up_bytes: u64,
    /// Whether the stream reached the PC without it having to join the group again (a snooping
    /// switch that forgot or never learnt its port); `None` from an agent that does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_start: Option<bool>,
    /// Times the PC joined the group again because the stream stopped reaching it.
    #[serde(default)]
    pub rejoins: u64,
    /// Datagrams dropped because they did not authenticate under the session key (tampered,
    /// forged, of another session).
    #[serde(default)]
    pub rejected_datagrams: u64,
    /// Chunk bodies of the HTTP catch-up refused because they did not authenticate under the
    /// session key (tampered on the way); never written, fetched again.
    #[serde(default)]
    pub rejected_bodies: u64,
}

/// What a capture did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureFigures {
    /// The disk's size.
    pub disk_size: u64,
    /// Chunks of the disk.
    pub chunks: u64,
    /// Chunks whose used bytes are all zero (not sent).
    pub zero_chunks: u64,
    /// True when the disk was taken whole (`--whole-disk`): no file system was read.
    #[serde(default)]
    pub whole_disk: bool,
    /// Bytes captured: what the file systems use plus the bytes outside every partition (the disk
    /// size for a whole-disk capture).
    #[serde(default)]
    pub used_bytes: u64,
    /// Chunks with no used byte (neither read for hashing, sent nor stored).
    #[serde(default)]
    pub unused_chunks: u64,
    /// Bytes of `pagefile.sys`, `hiberfil.sys` and `swapfile.sys` counted as free.
    #[serde(default)]
    pub discarded_bytes: u64,
    /// Chunks the server already had (not sent).
    pub reused_chunks: u64,
    /// Chunks uploaded.
    pub uploaded_chunks: u64,
    /// Compressed bytes uploaded.
    pub uploaded_bytes: u64,
}

/// Where the agent wrote a PC's `unattend.xml` ([`super::path::UNATTEND`]) and what it read back:
/// the server compares `sha256` with the file it served (the file holds the PC's offline domain
/// join blob, a secret: only its digest travels back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnattendWritten {
    /// Number of the NTFS partition holding Windows (as Linux counts it).
    pub partition: u32,
    /// Path inside it, `Windows\Panther\unattend.xml`.
    pub path: String,
    /// Bytes read back.
    pub bytes: u64,
    /// sha256 (hex) of the bytes read back, equal to the bytes served.
    pub sha256: String,
}

impl Report {
    /// A report of this contract version: `Ok` with no error, or `Failed` with `error`.
    pub fn new(error: Option<String>, image: Option<String>, disk: PathBuf, work: Work) -> Report {
        Report {
            contract: CONTRACT_VERSION,
            result: if error.is_some() {
                Verdict::Failed
            } else {
                Verdict::Ok
            },
            error,
            image,
            disk,
            disks: Vec::new(),
            nic: None,
            wake_on_lan: None,
            unattend: None,
            work,
        }
    }

    /// A failed restore report carrying only why: what the server records for an agent whose
    /// report it cannot read (unreadable body, another contract version).
    pub fn failure(error: String) -> Report {
        Report::new(
            Some(error),
            None,
            PathBuf::new(),
            Work::Restore(RestoreFigures::default()),
        )
    }

    /// Parses a report body; the error says what is wrong in plain words (for the PC's result).
    pub fn parse(body: &str) -> Result<Report, String> {
        serde_json::from_str(body).map_err(|e| format!("unreadable agent report ({e})"))
    }

    /// True when the agent says its work is done.
    pub fn is_ok(&self) -> bool {
        self.result == Verdict::Ok
    }

    /// The restore figures, when this reports a restore.
    pub fn restore(&self) -> Option<&RestoreFigures> {
        match &self.work {
            Work::Restore(r) => Some(r),
            Work::Capture(_) => None,
        }
    }

    /// The capture figures, when this reports a capture.
    pub fn capture(&self) -> Option<&CaptureFigures> {
        match &self.work {
            Work::Capture(c) => Some(c),
            Work::Restore(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_flat_json_that_both_sides_read_back() {
        let r = Report::new(
            None,
            Some("ab".repeat(32)),
            "/dev/sda".into(),
            Work::Restore(RestoreFigures {
                chunks: 4,
                written_chunks: 3,
                transport: Transport::Multicast,
                multicast: Some(McastFigures {
                    complete: true,
                    ..McastFigures::default()
                }),
                ..RestoreFigures::default()
            }),
        );
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["result"], "ok");
        assert_eq!(v["mode"], "restore");
        assert_eq!(v["transport"], "multicast");
        assert_eq!(v["written_chunks"], 3);
        assert_eq!(v["multicast"]["complete"], true);
        assert_eq!(v["contract"], CONTRACT_VERSION);
        assert_eq!(Report::parse(&v.to_string()).unwrap(), r);

        let c = Report::new(
            Some("disk vanished".into()),
            None,
            "/dev/sda".into(),
            Work::Capture(CaptureFigures::default()),
        );
        let v: serde_json::Value = serde_json::to_value(&c).unwrap();
        assert_eq!(
            (v["result"].as_str(), v["mode"].as_str()),
            (Some("failed"), Some("capture"))
        );
        assert_eq!(Report::parse(&v.to_string()).unwrap(), c);
        assert!(Report::parse("{\"result\":\"maybe\"}").is_err());
    }
}
