//! Packet and message codec. Every decoder takes arbitrary bytes and returns a `Result`; none panics,
//! none allocates more than the input could justify.
//!
//! Common header (16 bytes, big endian): magic `RCMC`, version, kind, two reserved zero bytes, the
//! 64-bit session id (zero in a HELLO, which comes before the receiver knows it).
//! A data packet adds 20 bytes (packet sequence number, block index, block length, encoding symbol id)
//! followed by exactly one symbol. Control messages travel over a reliable stream, framed by the driver.

use super::bitmap::BlockSet;
use std::fmt;
use thiserror::Error;

/// First bytes of every packet and message.
pub const MAGIC: [u8; 4] = *b"RCMC";
/// Protocol version; a peer speaking another version is refused, not guessed at.
pub const VERSION: u8 = 1;
/// Bytes of the common header.
pub const HEADER_LEN: usize = 16;
/// Bytes of a data packet before its symbol.
pub const DATA_HEADER_LEN: usize = HEADER_LEN + 20;
/// Largest block count a session may have (16 Mi blocks, 16 TiB of 1 MiB chunks).
pub const MAX_BLOCKS: u32 = 1 << 24;
/// Largest encoding symbol id: RaptorQ ids are 24-bit.
pub const MAX_SYMBOL_ID: u32 = (1 << 24) - 1;
/// Longest reason text in a FAIL or REJECT.
pub const MAX_REASON: usize = 1024;

const KIND_DATA: u8 = 1;
const KIND_HELLO: u8 = 2;
const KIND_STATUS: u8 = 3;
const KIND_DONE: u8 = 4;
const KIND_FAIL: u8 = 5;
const KIND_WELCOME: u8 = 6;
const KIND_REJECT: u8 = 7;
const KIND_END: u8 = 8;
const KIND_START: u8 = 9;

/// Why bytes were not a valid packet or message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the field needs.
    #[error("truncated {field}: need {need} more bytes, {have} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes that were left.
        have: usize,
    },
    /// Not one of ours.
    #[error("bad magic")]
    BadMagic,
    /// Another protocol version.
    #[error("unsupported protocol version {0} (this build speaks {VERSION})")]
    BadVersion(u8),
    /// A kind this decoder does not expect here.
    #[error("unexpected packet kind {0}")]
    UnexpectedKind(u8),
    /// A field out of its range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Bytes after the end of the message.
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// Random 64-bit identifier of one multicast session; packets of any other session are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub u64);

/// A machine of the room, by the MAC address the room file lists for it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MachineId(pub [u8; 6]);

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MachineId({self})")
    }
}

/// Per-machine secret a receiver presents in its HELLO. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub [u8; 32]);

impl Token {
    /// Comparison whose duration does not depend on where the tokens differ.
    pub fn matches(&self, other: &Token) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// One encoding symbol of one block, as carried by a multicast datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPacket<'a> {
    /// Session the packet belongs to.
    pub session: SessionId,
    /// Sender's packet counter: receivers estimate loss from gaps and tell the sender how far they got.
    pub seq: u64,
    /// Block index in the image (position in the manifest).
    pub block: u32,
    /// Length in bytes of the block (the compressed chunk), before padding to whole symbols.
    pub block_len: u32,
    /// RaptorQ encoding symbol id: `< K` source symbols, `>= K` repair symbols.
    pub symbol_id: u32,
    /// The symbol bytes (always the session's symbol size).
    pub symbol: &'a [u8],
}

impl DataPacket<'_> {
    /// Appends the wire form to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        header(out, KIND_DATA, self.session);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.block.to_be_bytes());
        out.extend_from_slice(&self.block_len.to_be_bytes());
        out.extend_from_slice(&self.symbol_id.to_be_bytes());
        out.extend_from_slice(self.symbol);
    }

    /// Parses a datagram. The symbol length is not checked here (only the session knows it).
    pub fn decode(bytes: &[u8]) -> Result<DataPacket<'_>, WireError> {
        let mut r = Reader::new(bytes);
        let (kind, session) = r.header()?;
        if kind != KIND_DATA {
            return Err(WireError::UnexpectedKind(kind));
        }
        let seq = r.u64("seq")?;
        let block = r.u32("block")?;
        if block >= MAX_BLOCKS {
            return Err(invalid("block", "beyond the largest block count"));
        }
        let block_len = r.u32("block length")?;
        if block_len == 0 {
            return Err(invalid("block length", "zero"));
        }
        let symbol_id = r.u32("symbol id")?;
        if symbol_id > MAX_SYMBOL_ID {
            return Err(invalid("symbol id", "wider than 24 bits"));
        }
        let symbol = r.rest();
        if symbol.is_empty() {
            return Err(invalid("symbol", "empty"));
        }
        Ok(DataPacket {
            session,
            seq,
            block,
            block_len,
            symbol_id,
            symbol,
        })
    }
}

/// Periodic progress report of a receiver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// Highest data packet sequence number received so far (0: none yet).
    pub highest_seq: u64,
    /// Data packets of this session received so far.
    pub received: u64,
    /// Blocks written (decoded and verified by the caller) so far.
    pub written: u32,
    /// Blocks written since the previous STATUS (the stream is reliable, so increments suffice).
    pub newly_written: Vec<u32>,
    /// Blocks that failed verification since the previous STATUS and are wanted again.
    pub reopened: Vec<u32>,
    /// Blocks being decoded: (block, symbols still missing). A lacking block not listed lacks all.
    pub partial: Vec<(u32, u32)>,
    /// Decoded blocks waiting for the caller's verdict (the receiver's buffer fill).
    pub pending: u32,
}

/// Messages from a receiver to the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Up {
    /// First message on a connection: who I am, my disk, what I already hold.
    Hello {
        /// The machine (MAC from the room file).
        machine: MachineId,
        /// Its per-machine token.
        token: Token,
        /// Size of its disk in bytes.
        disk_size: u64,
        /// Blocks already correct on its disk (hashed at the manifest's offsets).
        have: BlockSet,
        /// MTU of the interface it receives on (0: unknown). Optional on the wire: a HELLO
        /// without it decodes as 0.
        mtu: u16,
    },
    /// Progress.
    Status(Status),
    /// Every block is written.
    Done {
        /// Blocks written.
        written: u32,
    },
    /// The receiver gives up (disk error, ...).
    Fail {
        /// Human-readable reason.
        reason: String,
    },
}

/// Messages from the sender to a receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Down {
    /// The HELLO was accepted: here is the session to listen to.
    Welcome {
        /// Session id carried by every data packet.
        session: SessionId,
        /// Blocks in the image.
        block_count: u32,
        /// Bytes of every encoding symbol.
        symbol_size: u16,
        /// How often to send STATUS, in milliseconds.
        status_interval_ms: u32,
    },
    /// The HELLO was refused (unknown machine, bad token, disk too small...).
    Reject {
        /// Human-readable reason.
        reason: String,
    },
    /// The session is over: the sender stops sending.
    End {
        /// Whether the sender counted this receiver as complete.
        complete: bool,
    },
    /// The stream starts now (or runs already, for a receiver that joined late), with symbols of
    /// this size: it may be smaller than the WELCOME's when a receiver with a smaller MTU joined
    /// before the start. From here on, silence means the stream does not reach the receiver.
    Start {
        /// Bytes of every encoding symbol from now on.
        symbol_size: u16,
    },
}

impl Up {
    /// The wire form, for a reliable stream framed by the driver.
    pub fn encode(&self, session: SessionId) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Up::Hello {
                machine,
                token,
                disk_size,
                have,
                mtu,
            } => {
                header(&mut out, KIND_HELLO, SessionId(0));
                out.extend_from_slice(&machine.0);
                out.extend_from_slice(&token.0);
                out.extend_from_slice(&disk_size.to_be_bytes());
                out.extend_from_slice(&have.len().to_be_bytes());
                out.extend_from_slice(have.as_bytes());
                out.extend_from_slice(&mtu.to_be_bytes());
            }
            Up::Status(s) => {
                header(&mut out, KIND_STATUS, session);
                out.extend_from_slice(&s.highest_seq.to_be_bytes());
                out.extend_from_slice(&s.received.to_be_bytes());
                out.extend_from_slice(&s.written.to_be_bytes());
                out.extend_from_slice(&s.pending.to_be_bytes());
                list(&mut out, &s.newly_written);
                list(&mut out, &s.reopened);
                out.extend_from_slice(&(s.partial.len() as u32).to_be_bytes());
                for (b, d) in &s.partial {
                    out.extend_from_slice(&b.to_be_bytes());
                    out.extend_from_slice(&d.to_be_bytes());
                }
            }
            Up::Done { written } => {
                header(&mut out, KIND_DONE, session);
                out.extend_from_slice(&written.to_be_bytes());
            }
            Up::Fail { reason } => {
                header(&mut out, KIND_FAIL, session);
                text(&mut out, reason);
            }
        }
        out
    }

    /// Parses one message; returns it with the session id of its header.
    pub fn decode(bytes: &[u8]) -> Result<(SessionId, Up), WireError> {
        let mut r = Reader::new(bytes);
        let (kind, session) = r.header()?;
        let msg = match kind {
            KIND_HELLO => {
                let machine = MachineId(r.array("machine id")?);
                let token = Token(r.array("token")?);
                let disk_size = r.u64("disk size")?;
                let n = r.u32("block count")?;
                if n > MAX_BLOCKS {
                    return Err(invalid("block count", "too large"));
                }
                let bits = r.take("have bitmap", n.div_ceil(8) as usize)?;
                let have = BlockSet::from_bytes(n, bits)
                    .ok_or(invalid("have bitmap", "padding bits set"))?;
                // An agent of before the MTU field ends here.
                let mtu = if r.is_empty() { 0 } else { r.u16("mtu")? };
                Up::Hello {
                    machine,
                    token,
                    disk_size,
                    have,
                    mtu,
                }
            }
            KIND_STATUS => {
                let highest_seq = r.u64("highest seq")?;
                let received = r.u64("received")?;
                let written = r.u32("written")?;
                let pending = r.u32("pending")?;
                let newly_written = r.list("newly written")?;
                let reopened = r.list("reopened")?;
                let n = r.count("partial", 8)?;
                let mut partial = Vec::with_capacity(n);
                for _ in 0..n {
                    partial.push((r.u32("partial block")?, r.u32("partial deficit")?));
                }
                Up::Status(Status {
                    highest_seq,
                    received,
                    written,
                    newly_written,
                    reopened,
                    partial,
                    pending,
                })
            }
            KIND_DONE => Up::Done {
                written: r.u32("written")?,
            },
            KIND_FAIL => Up::Fail {
                reason: r.text("reason")?,
            },
            other => return Err(WireError::UnexpectedKind(other)),
        };
        r.finish()?;
        Ok((session, msg))
    }
}

impl Down {
    /// The wire form, for a reliable stream framed by the driver.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Down::Welcome {
                session,
                block_count,
                symbol_size,
                status_interval_ms,
            } => {
                header(&mut out, KIND_WELCOME, *session);
                out.extend_from_slice(&block_count.to_be_bytes());
                out.extend_from_slice(&symbol_size.to_be_bytes());
                out.extend_from_slice(&status_interval_ms.to_be_bytes());
            }
            Down::Reject { reason } => {
                header(&mut out, KIND_REJECT, SessionId(0));
                text(&mut out, reason);
            }
            Down::End { complete } => {
                header(&mut out, KIND_END, SessionId(0));
                out.push(u8::from(*complete));
            }
            Down::Start { symbol_size } => {
                header(&mut out, KIND_START, SessionId(0));
                out.extend_from_slice(&symbol_size.to_be_bytes());
            }
        }
        out
    }

    /// Parses one message.
    pub fn decode(bytes: &[u8]) -> Result<Down, WireError> {
        let mut r = Reader::new(bytes);
        let (kind, session) = r.header()?;
        let msg = match kind {
            KIND_WELCOME => {
                let block_count = r.u32("block count")?;
                if block_count > MAX_BLOCKS {
                    return Err(invalid("block count", "too large"));
                }
                let symbol_size = r.u16("symbol size")?;
                if symbol_size == 0 {
                    return Err(invalid("symbol size", "zero"));
                }
                let status_interval_ms = r.u32("status interval")?;
                if status_interval_ms == 0 {
                    return Err(invalid("status interval", "zero"));
                }
                Down::Welcome {
                    session,
                    block_count,
                    symbol_size,
                    status_interval_ms,
                }
            }
            KIND_REJECT => Down::Reject {
                reason: r.text("reason")?,
            },
            KIND_END => Down::End {
                complete: match r.u8("complete")? {
                    0 => false,
                    1 => true,
                    _ => return Err(invalid("complete", "not a boolean")),
                },
            },
            KIND_START => {
                let symbol_size = r.u16("symbol size")?;
                if symbol_size == 0 {
                    return Err(invalid("symbol size", "zero"));
                }
                Down::Start { symbol_size }
            }
            other => return Err(WireError::UnexpectedKind(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

fn invalid(field: &'static str, reason: &'static str) -> WireError {
    WireError::Invalid { field, reason }
}

fn header(out: &mut Vec<u8>, kind: u8, session: SessionId) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&session.0.to_be_bytes());
}

fn list(out: &mut Vec<u8>, items: &[u32]) {
    out.extend_from_slice(&(items.len() as u32).to_be_bytes());
    for i in items {
        out.extend_from_slice(&i.to_be_bytes());
    }
}

fn text(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(MAX_REASON);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Truncated {
                field,
                need: n,
                have: self.bytes.len(),
            });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(field, N)?);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A count of items of `item_len` bytes each, checked against the bytes left before anything
    /// is allocated for them.
    fn count(&mut self, field: &'static str, item_len: usize) -> Result<usize, WireError> {
        let n = self.u32(field)? as usize;
        if n > MAX_BLOCKS as usize {
            return Err(invalid(field, "too many items"));
        }
        let need = n * item_len;
        if need > self.bytes.len() {
            return Err(WireError::Truncated {
                field,
                need,
                have: self.bytes.len(),
            });
        }
        Ok(n)
    }

    fn list(&mut self, field: &'static str) -> Result<Vec<u32>, WireError> {
        let n = self.count(field, 4)?;
        (0..n).map(|_| self.u32(field)).collect()
    }

    fn text(&mut self, field: &'static str) -> Result<String, WireError> {
        let n = self.u16(field)? as usize;
        if n > MAX_REASON {
            return Err(invalid(field, "too long"));
        }
        let b = self.take(field, n)?;
        String::from_utf8(b.to_vec()).map_err(|_| invalid(field, "not UTF-8"))
    }

    fn header(&mut self) -> Result<(u8, SessionId), WireError> {
        if self.take("magic", 4)? != MAGIC {
            return Err(WireError::BadMagic);
        }
        let version = self.u8("version")?;
        if version != VERSION {
            return Err(WireError::BadVersion(version));
        }
        let kind = self.u8("kind")?;
        if self.u16("reserved")? != 0 {
            return Err(invalid("reserved", "not zero"));
        }
        Ok((kind, SessionId(self.u64("session")?)))
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    fn finish(&self) -> Result<(), WireError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.bytes.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_packet_round_trips_and_fits_the_mtu() {
        let symbol = vec![7u8; 1400];
        let p = DataPacket {
            session: SessionId(0xdead_beef),
            seq: 42,
            block: 3,
            block_len: 5000,
            symbol_id: 9,
            symbol: &symbol,
        };
        let mut out = Vec::new();
        p.encode_into(&mut out);
        assert!(out.len() + super::super::IP_UDP_OVERHEAD <= 1500);
        assert_eq!(DataPacket::decode(&out).unwrap(), p);
        out[4] = 2;
        assert_eq!(DataPacket::decode(&out), Err(WireError::BadVersion(2)));
    }

    #[test]
    fn control_messages_round_trip() {
        let mut have = BlockSet::new(20);
        have.insert(4);
        let ups = [
            Up::Hello {
                machine: MachineId([2, 0, 0, 0, 0, 1]),
                token: Token([9; 32]),
                disk_size: 1 << 40,
                have,
                mtu: 1400,
            },
            Up::Status(Status {
                highest_seq: 77,
                received: 70,
                written: 3,
                newly_written: vec![1, 2],
                reopened: vec![5],
                partial: vec![(6, 12)],
                pending: 1,
            }),
            Up::Done { written: 20 },
            Up::Fail {
                reason: "disk é".into(),
            },
        ];
        for u in ups {
            let bytes = u.encode(SessionId(5));
            let (_, back) = Up::decode(&bytes).unwrap();
            assert_eq!(back, u);
            assert!(Up::decode(&bytes[..bytes.len() - 1]).is_err());
        }
        let downs = [
            Down::Welcome {
                session: SessionId(1),
                block_count: 9,
                symbol_size: 1400,
                status_interval_ms: 50,
            },
            Down::Reject {
                reason: "bad token".into(),
            },
            Down::End { complete: true },
            Down::Start { symbol_size: 1336 },
        ];
        for d in downs {
            assert_eq!(Down::decode(&d.encode()).unwrap(), d);
        }
    }

    #[test]
    fn a_hello_without_its_mtu_still_decodes() {
        let hello = Up::Hello {
            machine: MachineId([2, 0, 0, 0, 0, 1]),
            token: Token([9; 32]),
            disk_size: 1 << 30,
            have: BlockSet::new(9),
            mtu: 1400,
        };
        let bytes = hello.encode(SessionId(0));
        let (_, old) = Up::decode(&bytes[..bytes.len() - 2]).unwrap();
        assert!(matches!(old, Up::Hello { mtu: 0, .. }), "{old:?}");
        assert!(matches!(
            Down::decode(&Down::Start { symbol_size: 0 }.encode()),
            Err(WireError::Invalid { .. })
        ));
    }

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        let mut bytes = Up::Status(Status::default()).encode(SessionId(1));
        let at = HEADER_LEN + 24;
        bytes[at..at + 4].copy_from_slice(&0x00ff_ffffu32.to_be_bytes());
        assert!(matches!(
            Up::decode(&bytes),
            Err(WireError::Truncated { .. })
        ));
    }

    #[test]
    fn token_comparison() {
        assert!(Token([1; 32]).matches(&Token([1; 32])));
        assert!(!Token([1; 32]).matches(&Token([2; 32])));
        assert_eq!(format!("{:?}", Token([1; 32])), "Token(<redacted>)");
    }
}
