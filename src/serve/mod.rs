//! The deploy server: wires the services of one campaign's deploy — the HTTP service (signed
//! manifest, chunks for unicast catch-up, agent reports, the session-info endpoint) and one multicast
//! session fed from the image store — and turns what happened into one result per machine.
//!
//! Two ways in:
//! - [`Deployment`] (blocking): everything on one interface, tokens issued here, for
//!   `roomcast deploy` and for a campaign deploying to PCs it starts itself (steps b and g).
//! - [`run_session`] (async): only the multicast session, attached to a [`BootService`] someone
//!   else runs (`roomcast serve --multicast`, where PXE boot scripts hand out the tokens).
//!
//! Safety: everything is bound to the address of the named interface; the control channel accepts
//! only machines of the roster, each with its own token, which the agent gets from
//! `GET /mcast/session` after presenting its HTTP token; the group must be in 239.255.0.0/16
//! (TTL 1). The server never vouches for bytes: agents verify every chunk against the signed
//! manifest before writing it. See `docs/MULTICAST.md`.

mod deploy;
pub mod services;
mod session;

pub use deploy::{DeployOptions, Deployment, IssuedToken};
pub use session::{SessionPlan, run_session};

use crate::net::http::BootService;
use roomcast_proto::mac::Mac;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// The data plane of one session: where and how fast the stream goes.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPlane {
    /// Multicast group and UDP port of the stream; the group must be in 239.255.0.0/16.
    pub group: SocketAddrV4,
    /// TCP port of the control channel on the interface's address (0: any free port).
    pub control_port: u16,
    /// Highest pacing rate, bits per second on the wire (IP and UDP headers counted).
    pub rate_bps: u64,
    /// Lowest rate the loss adaptation may fall to.
    pub min_rate_bps: u64,
    /// A PC silent this long is declared dead and no longer waited for (it may still catch up
    /// over HTTP).
    pub dead_after: Duration,
    /// Longest wait for `expect` PCs before the stream starts with those present.
    pub start_wait: Duration,
}

impl Default for DataPlane {
    fn default() -> Self {
        DataPlane {
            group: SocketAddrV4::new(Ipv4Addr::new(239, 255, 0, 1), 9000),
            control_port: 9500,
            rate_bps: 950_000_000,
            min_rate_bps: 10_000_000,
            dead_after: Duration::from_secs(30),
            start_wait: Duration::from_secs(60),
        }
    }
}

impl DataPlane {
    /// Refuses a group outside 239.255.0.0/16 (IPv4 local scope: never routed off the site) and
    /// rates that cannot work.
    pub fn check(&self) -> Result<(), DeployError> {
        let o = self.group.ip().octets();
        if o[0] != 239 || o[1] != 255 {
            return Err(DeployError::Config(format!(
                "multicast group {}: must be in 239.255.0.0/16",
                self.group.ip()
            )));
        }
        if self.group.port() == 0 {
            return Err(DeployError::Config("multicast port 0".into()));
        }
        if self.rate_bps < 1_000_000 || self.min_rate_bps > self.rate_bps {
            return Err(DeployError::Config(format!(
                "rate {} bit/s (minimum {} bit/s): want at least 1 Mbit/s, minimum below maximum",
                self.rate_bps, self.min_rate_bps
            )));
        }
        Ok(())
    }
}

/// What became of one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Got every block by multicast and reported success.
    Done,
    /// Left the stream incomplete (stalled, restarted late, declared dead) and finished over
    /// unicast HTTP; reported success.
    CaughtUp,
    /// Joined the stream but neither finished nor reported in time.
    LeftBehind,
    /// Declared dead by the session and never reported.
    Dead,
    /// The agent reported a failure.
    Failed(String),
    /// Never joined and never reported.
    Absent,
}

impl Outcome {
    /// The machine holds the image (verified chunk by chunk by its agent).
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Done | Outcome::CaughtUp)
    }

    /// One word for summaries.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::CaughtUp => "caught-up",
            Outcome::LeftBehind => "left-behind",
            Outcome::Dead => "dead",
            Outcome::Failed(_) => "failed",
            Outcome::Absent => "absent",
        }
    }
}

/// Result of one machine.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineResult {
    /// The machine.
    pub mac: Mac,
    /// Its outcome.
    pub outcome: Outcome,
    /// It joined the multicast session.
    pub joined: bool,
    /// The session counted it complete (every block written).
    pub multicast_complete: bool,
    /// The stream never reached it (it talked, but received nothing while the others did): let
    /// go to finish over HTTP. See [`unreached_note`].
    pub unreached: bool,
    /// Its agent said the stream reached it without having to join the group again (`None`: no
    /// report, or no multicast figures in it).
    pub from_start: Option<bool>,
    /// Blocks it had written, last the session heard.
    pub blocks_written: u32,
    /// Disk bytes its agent wrote (from its report).
    pub bytes_written: u64,
    /// Compressed bytes its agent fetched over unicast HTTP (from its report).
    pub catch_up_bytes: u64,
    /// Its report, if it reported (an unreadable one is a failure saying so).
    pub report: Option<roomcast_proto::contract::Report>,
}

/// What one deploy did.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployReport {
    /// Image id (hex).
    pub image: String,
    /// One result per machine of the roster, in roster order.
    pub machines: Vec<MachineResult>,
    /// Blocks of the image (distinct data chunks).
    pub blocks: u32,
    /// Compressed bytes of all blocks.
    pub image_bytes: u64,
    /// Bytes the stream put on the wire (IP and UDP headers included).
    pub wire_bytes: u64,
    /// Datagrams sent.
    pub packets: u64,
    /// Repair symbols among them.
    pub repair_symbols: u64,
    /// Bytes of each symbol: the datagrams were this plus 64 (data header, UDP, IPv4), sized for
    /// the smallest MTU among the server's interface and the PCs that joined before the start.
    pub symbol_size: u16,
    /// From the first join to the end of the stream.
    pub stream_time: Duration,
    /// From the start to the last report (or the end of the catch-up wait).
    pub total_time: Duration,
}

impl DeployReport {
    /// Machines that hold the image.
    pub fn succeeded(&self) -> usize {
        self.machines
            .iter()
            .filter(|m| m.outcome.is_success())
            .count()
    }
}

/// Something worth telling the technician while a deploy runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// The session is offered; agents may come.
    Offered {
        /// Control channel address.
        control: SocketAddrV4,
        /// Group.
        group: SocketAddrV4,
        /// Blocks of the image.
        blocks: u32,
        /// Compressed bytes of the image.
        bytes: u64,
    },
    /// A PC joined the stream (with what it already holds).
    Joined(Mac),
    /// A PC's HELLO was refused.
    Rejected(String),
    /// The first pass read this many blocks of the image (every tenth of it).
    Streaming {
        /// Blocks read for the stream so far.
        blocks: u32,
        /// Of.
        of: u32,
    },
    /// A PC wrote every block.
    Done(Mac),
    /// A PC was declared dead.
    Dead(Mac),
    /// A PC talks to the server but receives nothing from the group: it was let go to finish
    /// over HTTP ([`unreached_note`]).
    Unreached(Mac),
    /// A PC's agent gave up the stream.
    Failed(Mac, String),
    /// The stream ended; agents not complete catch up over HTTP.
    StreamEnded {
        /// Bytes on the wire.
        wire_bytes: u64,
    },
    /// A PC's agent reported.
    Reported(Mac, bool),
    /// One second of the stream: its rate and the receivers' loss (for the console's chart; not
    /// printed).
    Sample(roomcast_mcast::StreamSample),
}

/// What the deploy says about a PC the stream does not reach, `who` being its name.
pub fn unreached_note(who: &str) -> String {
    format!(
        "{who} receives nothing from the multicast group: IGMP snooping? see docs/MULTICAST.md \
         (it finishes over HTTP)"
    )
}

/// Why a deploy could not run (machines that fail are results, not errors).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A setting is wrong.
    #[error("{0}")]
    Config(String),
    /// The interface is missing or has no usable address.
    #[error("interface {interface}: {reason}")]
    Interface {
        /// Interface name.
        interface: String,
        /// What is wrong.
        reason: String,
    },
    /// The image cannot be opened or does not verify.
    #[error("image: {0}")]
    Store(#[from] roomcast_store::StoreError),
    /// The HTTP service cannot start.
    #[error("HTTP service: {0}")]
    Service(#[from] crate::net::http::ServiceError),
    /// A socket could not be opened.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The multicast session stopped.
    #[error("multicast session: {0}")]
    Session(#[from] roomcast_mcast::NetError),
}

/// The IPv4 address of `interface` (inside `subnet` when given): the only address the deploy
/// server binds to.
pub fn interface_addr(
    interface: &str,
    subnet: Option<crate::net::proxydhcp::Subnet>,
) -> Result<Ipv4Addr, DeployError> {
    let err = |reason: String| DeployError::Interface {
        interface: interface.to_string(),
        reason,
    };
    if let Some(s) = subnet {
        return crate::net::proxydhcp::room_address(interface, s).map_err(|e| err(e.to_string()));
    }
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == interface)
        .ok_or_else(|| err("no such interface".into()))?;
    iface
        .ips
        .iter()
        .find_map(|n| match n.ip() {
            std::net::IpAddr::V4(v4) => Some(v4),
            _ => None,
        })
        .ok_or_else(|| err("no IPv4 address".into()))
}

/// The reports received since `from` (an index into the service's report list), last per machine.
fn reports_since(
    service: &BootService,
    from: usize,
) -> std::collections::BTreeMap<Mac, roomcast_proto::contract::Report> {
    use roomcast_proto::contract::Report;
    service
        .reports()
        .into_iter()
        .skip(from)
        .map(|r| {
            let report = Report::parse(&r.body).unwrap_or_else(Report::failure);
            (r.mac, report)
        })
        .collect()
}
