//! Thin drivers around [`roomcast_proto::mcast`]: a UDP multicast socket for data (TTL 1, sent
//! out of one chosen interface, no loopback) and one TCP connection per receiver for control,
//! framed as a 4-byte big-endian length followed by the message. The sender runs on tokio (it
//! serves many control connections) and is built only with the `sender` feature, so the PC's
//! agent, which only receives, has no tokio in its tree; the receiver runs on one plain thread
//! (see [`receive`]).
//!
//! All decisions live in the state machines; these loops only move bytes and read the clock.

use roomcast_proto::mcast::{SenderError, SenderEvent, SenderStats, Timestamp, WireError};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

mod receive;
pub mod seal;
pub use receive::{Membership, run_receiver, run_receiver_reporting};
pub use seal::{Kind as SealedKind, SessionKey, StreamKey};
#[cfg(feature = "sender")]
mod send;
#[cfg(feature = "sender")]
pub use send::{run_sender, run_sender_with_stats};

/// Largest control frame: a HELLO of 16 Mi blocks carries a 2 MiB bitmap.
const MAX_FRAME: usize = 4 << 20;

/// What went wrong in a driver, with the step it happened in.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A socket operation failed.
    #[error("{step}: {source}")]
    Io {
        /// What the driver was doing.
        step: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The peer sent a frame that is not a valid message.
    #[error("control message from {peer}: {source}")]
    Wire {
        /// The peer's address.
        peer: SocketAddr,
        /// What was wrong.
        #[source]
        source: WireError,
    },
    /// The block source gave a block of the wrong length.
    #[error(transparent)]
    Sender(#[from] SenderError),
    /// No block was written for this long: the PC leaves the stream.
    #[error("no block written for {:.1} s", .0.as_secs_f64())]
    Stalled(std::time::Duration),
    /// The server closed the control connection before the session ended.
    #[error("the deploy server closed the control connection")]
    ServerGone,
}

fn io_err(step: &'static str) -> impl FnOnce(io::Error) -> NetError {
    move |source| NetError::Io { step, source }
}

/// Where the sender reads blocks (compressed chunks) from.
pub trait BlockSource {
    /// The compressed bytes of block `index`.
    fn read_block(&mut self, index: u32) -> io::Result<Vec<u8>>;

    /// Every event of the session but `NeedBlock` (joins, completions, deaths, the end), with the
    /// sender's counters at that moment: the deploy server's progress and final figures.
    fn event(&mut self, _event: &SenderEvent, _stats: &SenderStats) {}

    /// The stream's rate and loss, once a second while the session runs (for a chart).
    fn sample(&mut self, _sample: &StreamSample) {}
}

/// One second of the stream, as the sender saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamSample {
    /// Milliseconds since the session began.
    pub at_ms: u64,
    /// Bits per second put on the wire over the last interval (IP and UDP headers counted).
    pub wire_bps: u64,
    /// The pacing rate the loss adaptation allows now, bits per second.
    pub pacing_bps: u64,
    /// Median loss of the receivers, as a fraction (`None`: none reported yet).
    pub loss: Option<f64>,
    /// Highest loss of one active receiver, as a fraction.
    pub worst_loss: Option<f64>,
}

/// Where the receiver puts rebuilt blocks.
pub trait BlockSink {
    /// Verifies block `index` against the signed manifest and, only if it matches, writes it.
    /// Returns whether it was written; `false` makes the block come again.
    fn verify_and_write(&mut self, index: u32, data: &[u8]) -> io::Result<bool>;
}

/// Multicast endpoint of a session.
#[derive(Debug, Clone, Copy)]
pub struct McastAddr {
    /// Address of the local interface to send from / receive on (IP_MULTICAST_IF, group join).
    pub interface: Ipv4Addr,
    /// Group and port, in 239.255.0.0/16.
    pub group: SocketAddrV4,
    /// The session's stream key: every datagram sealed by the sender and opened by the receivers
    /// ([`seal`]); `None` only for a benchmark's clear stream.
    pub key: Option<SessionKey>,
}

/// Environment variable that sends and takes the stream in clear, in a build with the
/// `bench-clear-stream` feature only (docs/DECISIONS.md D29): how `bench_multicast` measures what
/// sealing costs the real deploy server and agent. Any other build ignores it.
pub const BENCH_CLEAR_STREAM: &str = "ROOMCAST_BENCH_CLEAR_STREAM";

/// The key that seals or opens the stream of `addr`: its session key, unless this is a benchmark
/// build told to stream in clear ([`BENCH_CLEAR_STREAM`]), which it says once per session.
fn stream_key(addr: &McastAddr) -> Option<StreamKey> {
    if clear_asked(std::env::var_os(BENCH_CLEAR_STREAM).as_deref()) {
        tracing::warn!(
            "stream in clear: {BENCH_CLEAR_STREAM} is set in a bench-clear-stream build (a benchmark, never a room)"
        );
        return None;
    }
    addr.key.as_ref().map(StreamKey::new)
}

/// Whether [`BENCH_CLEAR_STREAM`]'s value, if set, makes this build stream in clear.
fn clear_asked(var: Option<&std::ffi::OsStr>) -> bool {
    cfg!(feature = "bench-clear-stream") && var.is_some()
}

/// MTU of the local interface that holds `addr` (`SIOCGIFMTU`, in the caller's network
/// namespace), or `None` if no interface has it.
pub fn interface_mtu(addr: Ipv4Addr) -> Option<u32> {
    let name = interface_name(addr)?;
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return None;
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: a plain datagram socket, closed below; the ioctl reads the NUL-terminated name and
    // writes the MTU into the zeroed ifreq it is given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFMTU, &mut req);
        libc::close(fd);
        if rc != 0 {
            return None;
        }
        u32::try_from(req.ifr_ifru.ifru_mtu).ok()
    }
}

/// Name of the interface holding IPv4 address `addr` (`getifaddrs`).
pub fn interface_name(addr: Ipv4Addr) -> Option<String> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, walked read-only below and freed once.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut found = None;
        let mut cur = list;
        while !cur.is_null() {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null() && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                if Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)) == addr {
                    found = Some(
                        std::ffi::CStr::from_ptr(ifa.ifa_name)
                            .to_string_lossy()
                            .into_owned(),
                    );
                    break;
                }
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(list);
        found
    }
}

fn now(start: Instant) -> Timestamp {
    Timestamp::from_micros(start.elapsed().as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every build but a benchmark's seals its stream, whatever the environment says.
    #[test]
    #[cfg(not(feature = "bench-clear-stream"))]
    fn only_a_bench_build_streams_in_clear() {
        assert!(!clear_asked(Some(std::ffi::OsStr::new("1"))));
        assert!(!clear_asked(None));
        let addr = McastAddr {
            interface: Ipv4Addr::LOCALHOST,
            group: SocketAddrV4::new(Ipv4Addr::new(239, 255, 0, 1), 9000),
            key: Some(SessionKey([3; 32])),
        };
        assert!(stream_key(&addr).is_some());
    }

    #[test]
    #[cfg(feature = "bench-clear-stream")]
    fn a_bench_build_streams_in_clear_only_when_asked() {
        assert!(clear_asked(Some(std::ffi::OsStr::new("1"))));
        assert!(!clear_asked(None));
    }
}
