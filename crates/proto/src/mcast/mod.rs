//! Multicast transport of blocks (compressed chunks) from one sender to the PCs of a room.
//!
//! Data goes over UDP multicast as RaptorQ encoding symbols; control goes over one reliable stream per
//! receiver (TCP in the driver). Both ends are sans-IO state machines in the style of `quinn-proto`:
//!
//! - [`Sender`]: [`Sender::handle_control`] takes a receiver's message, [`Sender::poll_transmit`]
//!   returns the next datagram once pacing allows it, [`Sender::poll_timeout`] says when to call
//!   again, [`Sender::poll_event`] reports joins, completions, deaths and the block payloads it needs.
//! - [`Receiver`]: [`Receiver::handle_datagram`] takes any bytes from the multicast socket,
//!   [`Receiver::poll_event`] hands each decoded block upward, [`Receiver::mark_written`] /
//!   [`Receiver::mark_bad`] carry the caller's sha256 verdict back, [`Receiver::poll_control`] yields
//!   the messages for the sender.
//!
//! The transport never checks block contents: the caller verifies each block against the signed
//! manifest before writing it, and a block marked bad is simply requested again.
//! See `docs/MULTICAST.md` for the packet format, the repair strategy and the pacing.

mod bitmap;
mod fec;
mod rate;
mod receiver;
mod sender;
mod time;
pub mod wire;

pub use bitmap::BlockSet;
pub use rate::{ETHERNET_HEADER, RateConfig, RateController};
pub use receiver::{Receiver, ReceiverConfig, ReceiverEvent, ReceiverIdentity, ReceiverStats};
pub use sender::{
    ConnId, Prepare, ReceiverReport, Sender, SenderConfig, SenderError, SenderEvent, SenderStats,
    UNREACHED_LOSS, symbol_for_mtu,
};
pub use time::Timestamp;
pub use wire::{DataPacket, Down, MachineId, SessionId, Token, Up, WireError};

/// Bytes of one encoding symbol by default: a data packet (header + symbol) plus IPv4 and UDP headers
/// fits an Ethernet MTU of 1500.
pub const DEFAULT_SYMBOL_SIZE: u16 = 1400;

/// IPv4 + UDP header bytes that every datagram costs on the wire; pacing and statistics count them.
pub const IP_UDP_OVERHEAD: usize = 28;

/// Bytes the drivers add to each datagram when they seal it (`roomcast_mcast::seal`: an 8-byte
/// counter and a 16-byte AES-GCM tag). The state machines never see a sealed byte; symbol sizing
/// ([`symbol_for_mtu`]) and pacing ([`RateConfig::for_link`]) leave room for it.
pub const SEAL_OVERHEAD: usize = 24;
