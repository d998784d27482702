//! Receiver state machine: one PC of the room.
//!
//! It decodes blocks from whatever datagrams arrive (in any order, duplicated, from other sessions),
//! hands each rebuilt block upward and waits for the caller's verdict: [`Receiver::mark_written`] once
//! the sha256 matched the manifest and the block is on disk, [`Receiver::mark_bad`] otherwise (the
//! block is then wanted again). Only written blocks count as done, so a crash loses nothing that the
//! next HELLO does not report.

use super::bitmap::BlockSet;
use super::fec::{Added, BlockDecoder, MAX_SOURCE_SYMBOLS, source_symbols};
use super::time::Timestamp;
use super::wire::{DataPacket, Down, MachineId, SessionId, Status, Token, Up};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

/// Receiver limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// Blocks decoded at once; beyond it the block with the fewest symbols is dropped (and wanted
    /// again later). Bounds memory to about this many blocks.
    pub max_open_blocks: usize,
    /// Largest block accepted, in bytes (a compressed chunk of the image).
    pub max_block_len: u32,
    /// Once the stream has started, this long without a datagram of the session means the
    /// stream no longer reaches us (a snooping switch forgot our port): time to join the group
    /// again ([`Receiver::poll_rejoin`]), and again after as long if still nothing comes.
    pub rejoin_after: Duration,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            max_open_blocks: 128,
            max_block_len: 16 << 20,
            rejoin_after: Duration::from_secs(1),
        }
    }
}

/// Who the receiver is, as told in its HELLO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverIdentity {
    /// MAC address from the room file.
    pub machine: MachineId,
    /// Per-machine token given by the deploy server.
    pub token: Token,
    /// Disk size in bytes.
    pub disk_size: u64,
}

/// What the receiver tells its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverEvent {
    /// The sender accepted us.
    Joined {
        /// Session to listen to.
        session: SessionId,
    },
    /// The sender refused us.
    Rejected {
        /// Its reason.
        reason: String,
    },
    /// A block is rebuilt: verify it, write it, then call `mark_written` or `mark_bad`.
    BlockComplete {
        /// Block index.
        index: u32,
        /// The block bytes (a compressed chunk).
        data: Vec<u8>,
    },
    /// Every block is written.
    Complete,
    /// The sender ended the session.
    Ended {
        /// Whether the sender counted us as complete; if not, fetch the rest over unicast.
        complete: bool,
    },
}

/// Counters for reports and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Datagrams of our session accepted.
    pub datagrams: u64,
    /// Datagrams of another session.
    pub other_session: u64,
    /// Datagrams that did not parse or did not fit the session.
    pub malformed: u64,
    /// Symbols of blocks already rebuilt.
    pub useless: u64,
    /// Blocks dropped to stay within `max_open_blocks`.
    pub evictions: u64,
    /// Blocks started over after too many symbols without success.
    pub restarts: u64,
    /// Times the group was joined again because the stream stopped reaching us.
    pub rejoins: u64,
}

struct Joined {
    session: SessionId,
    symbol_size: u16,
    interval: Duration,
    next_status: Timestamp,
    /// START came at this time: the stream runs.
    streaming_since: Option<Timestamp>,
    /// Last datagram of the session, or last re-join: what silence is counted from.
    quiet_since: Option<Timestamp>,
}

/// One PC's side of the multicast session.
pub struct Receiver {
    cfg: ReceiverConfig,
    written: BlockSet,
    joined: Option<Joined>,
    open: HashMap<u32, BlockDecoder>,
    pending: BTreeSet<u32>,
    newly_written: Vec<u32>,
    reopened: Vec<u32>,
    highest_seq: u64,
    received: u64,
    ctl: VecDeque<Up>,
    events: VecDeque<ReceiverEvent>,
    done_sent: bool,
    stats: ReceiverStats,
    /// Blocks handed back by [`Receiver::recycle`], memory for the next ones.
    spare: Vec<Vec<u8>>,
}

/// Buffers [`Receiver::recycle`] keeps.
const SPARE_BUFFERS: usize = 4;

impl Receiver {
    /// A receiver for an image of `have.len()` blocks, of which `have` are already correct on disk.
    /// Its HELLO is the first thing [`Receiver::poll_control`] returns.
    pub fn new(cfg: ReceiverConfig, identity: ReceiverIdentity, have: BlockSet) -> Self {
        let mut ctl = VecDeque::new();
        ctl.push_back(Up::Hello {
            machine: identity.machine,
            token: identity.token,
            disk_size: identity.disk_size,
            have: have.clone(),
            mtu: 0,
        });
        Receiver {
            cfg,
            written: have,
            joined: None,
            open: HashMap::new(),
            pending: BTreeSet::new(),
            newly_written: Vec::new(),
            reopened: Vec::new(),
            highest_seq: 0,
            received: 0,
            ctl,
            events: VecDeque::new(),
            done_sent: false,
            stats: ReceiverStats::default(),
            spare: Vec::new(),
        }
    }

    /// Hands back the bytes of a [`ReceiverEvent::BlockComplete`] once the caller is done with
    /// them, as memory for a later block (optional: without it every block allocates).
    pub fn recycle(&mut self, block: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(block);
        }
    }

    /// Tells the sender, in the HELLO, the MTU of the interface we receive on, so that it sizes
    /// its datagrams for us. Call before the first [`Receiver::poll_control`].
    pub fn set_path_mtu(&mut self, mtu: u16) {
        if let Some(Up::Hello { mtu: m, .. }) = self.ctl.front_mut() {
            *m = mtu;
        }
    }

    /// Whether the stream reached us without ever having to join the group again: what the
    /// agent reports as "received the stream from the start".
    pub fn received_from_start(&self) -> bool {
        self.stats.rejoins == 0
    }

    /// True when the group must be joined again now (leave, then join: a fresh membership report
    /// that no other PC's report can suppress): the stream runs, we lack blocks, and nothing of
    /// it came for `rejoin_after`. Counted in [`ReceiverStats::rejoins`]; the silence counts
    /// again from now.
    pub fn poll_rejoin(&mut self, now: Timestamp) -> bool {
        let after = self.cfg.rejoin_after;
        let complete = self.written.is_full();
        let Some(j) = self.joined.as_mut() else {
            return false;
        };
        let Some(quiet) = j.quiet_since.or(j.streaming_since) else {
            return false;
        };
        if complete || now.saturating_since(quiet) < after {
            return false;
        }
        j.quiet_since = Some(now);
        self.stats.rejoins += 1;
        true
    }

    /// Blocks written so far.
    pub fn written(&self) -> &BlockSet {
        &self.written
    }

    /// True once every block is written.
    pub fn is_complete(&self) -> bool {
        self.written.is_full()
    }

    /// Counters.
    pub fn stats(&self) -> &ReceiverStats {
        &self.stats
    }

    /// Blocks currently being decoded (memory in use, in blocks).
    pub fn open_blocks(&self) -> usize {
        self.open.len()
    }

    /// Session we listen to, once welcomed.
    pub fn session(&self) -> Option<SessionId> {
        self.joined.as_ref().map(|j| j.session)
    }

    /// A message from the sender.
    pub fn handle_control(&mut self, msg: Down, now: Timestamp) {
        match msg {
            Down::Welcome {
                session,
                block_count,
                symbol_size,
                status_interval_ms,
            } => {
                if block_count != self.written.len() {
                    self.ctl.push_back(Up::Fail {
                        reason: format!(
                            "the sender streams {block_count} blocks, our manifest has {}",
                            self.written.len()
                        ),
                    });
                    return;
                }
                let interval = Duration::from_millis(u64::from(status_interval_ms));
                self.joined = Some(Joined {
                    session,
                    symbol_size,
                    interval,
                    next_status: now,
                    streaming_since: None,
                    quiet_since: None,
                });
                self.events.push_back(ReceiverEvent::Joined { session });
                self.check_complete();
            }
            Down::Start { symbol_size } => {
                let Some(j) = self.joined.as_mut() else {
                    return;
                };
                if j.symbol_size != symbol_size {
                    // Nothing was sent with the old size; decoders of it would be wrong.
                    j.symbol_size = symbol_size;
                    self.open.clear();
                }
                if j.streaming_since.is_none() {
                    j.streaming_since = Some(now);
                }
            }
            Down::Reject { reason } => self.events.push_back(ReceiverEvent::Rejected { reason }),
            Down::End { complete } => {
                self.joined = None;
                self.events.push_back(ReceiverEvent::Ended { complete });
            }
        }
    }

    /// Any bytes from the multicast socket. Other sessions and garbage are counted and ignored.
    pub fn handle_datagram(&mut self, bytes: &[u8], now: Timestamp) {
        let Some(j) = self.joined.as_mut() else {
            return;
        };
        let p = match DataPacket::decode(bytes) {
            Ok(p) => p,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        if p.session != j.session {
            self.stats.other_session += 1;
            return;
        }
        // The stream reaches us (even a symbol of the wrong size says so).
        j.quiet_since = Some(now);
        let symbol_size = j.symbol_size;
        if p.symbol.len() != usize::from(symbol_size)
            || p.block >= self.written.len()
            || p.block_len > self.cfg.max_block_len
            || source_symbols(p.block_len, symbol_size) > MAX_SOURCE_SYMBOLS
        {
            self.stats.malformed += 1;
            return;
        }
        self.stats.datagrams += 1;
        self.received += 1;
        self.highest_seq = self.highest_seq.max(p.seq);
        if self.written.contains(p.block) || self.pending.contains(&p.block) {
            self.stats.useless += 1;
            return;
        }
        if !self.open.contains_key(&p.block) {
            if self.open.len() >= self.cfg.max_open_blocks.max(1) {
                self.evict();
            }
            let buffer = self.spare.pop().unwrap_or_default();
            self.open.insert(
                p.block,
                BlockDecoder::reusing(p.block_len, symbol_size, buffer),
            );
        }
        let Some(dec) = self.open.get_mut(&p.block) else {
            return;
        };
        if dec.len() != p.block_len {
            // Same session, same block, another length: forged or corrupt; keep what we have.
            self.stats.malformed += 1;
            return;
        }
        match dec.add(p.symbol_id, p.symbol) {
            Added::Pending => {}
            Added::Complete(data) => {
                self.open.remove(&p.block);
                self.pending.insert(p.block);
                self.events.push_back(ReceiverEvent::BlockComplete {
                    index: p.block,
                    data,
                });
            }
            Added::GiveUp => {
                self.open.remove(&p.block);
                self.stats.restarts += 1;
            }
        }
    }

    fn evict(&mut self) {
        let victim = self
            .open
            .iter()
            .min_by_key(|(b, d)| (d.received(), std::cmp::Reverse(**b)))
            .map(|(b, _)| *b);
        if let Some(b) = victim {
            self.open.remove(&b);
            self.stats.evictions += 1;
        }
    }

    /// The caller verified block `index` against the manifest and wrote it.
    pub fn mark_written(&mut self, index: u32) {
        if self.pending.remove(&index) && self.written.insert(index) {
            self.newly_written.push(index);
            self.check_complete();
        }
    }

    /// Block `index` failed verification (or its write failed): it is wanted again. Also accepted
    /// for a block already written, if a later check found it wrong.
    pub fn mark_bad(&mut self, index: u32) {
        let was_pending = self.pending.remove(&index);
        let was_written = self.written.remove(index);
        if was_pending || was_written {
            self.newly_written.retain(|&b| b != index);
            self.reopened.push(index);
            self.done_sent = false;
        }
    }

    fn check_complete(&mut self) {
        if self.written.is_full() && !self.done_sent && self.joined.is_some() {
            self.done_sent = true;
            let status = self.status();
            self.ctl.push_back(Up::Status(status));
            self.ctl.push_back(Up::Done {
                written: self.written.count(),
            });
            self.events.push_back(ReceiverEvent::Complete);
        }
    }

    fn status(&mut self) -> Status {
        let mut partial: Vec<(u32, u32)> = self
            .open
            .iter()
            .map(|(b, d)| (*b, d.deficit()))
            .chain(self.pending.iter().map(|b| (*b, 0)))
            .collect();
        partial.sort_unstable();
        Status {
            highest_seq: self.highest_seq,
            received: self.received,
            written: self.written.count(),
            newly_written: std::mem::take(&mut self.newly_written),
            reopened: std::mem::take(&mut self.reopened),
            partial,
            pending: self.pending.len() as u32,
        }
    }

    /// Next message for the sender: the HELLO, then a STATUS every status interval, DONE at the end.
    pub fn poll_control(&mut self, now: Timestamp) -> Option<Up> {
        if let Some(m) = self.ctl.pop_front() {
            return Some(m);
        }
        let j = self.joined.as_mut()?;
        if now < j.next_status {
            return None;
        }
        j.next_status = now + j.interval;
        Some(Up::Status(self.status()))
    }

    /// When [`Receiver::poll_control`] will have something to say.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let j = self.joined.as_ref()?;
        let rejoin = j
            .quiet_since
            .or(j.streaming_since)
            .filter(|_| !self.written.is_full())
            .map(|q| q + self.cfg.rejoin_after);
        Some(rejoin.map_or(j.next_status, |r| r.min(j.next_status)))
    }

    /// Next event for the caller.
    pub fn poll_event(&mut self) -> Option<ReceiverEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcast::wire::{DataPacket, Token};

    fn joined(blocks: u32) -> Receiver {
        let mut rx = Receiver::new(
            ReceiverConfig::default(),
            ReceiverIdentity {
                machine: MachineId([2, 0, 0, 0, 0, 1]),
                token: Token([1; 32]),
                disk_size: 1 << 30,
            },
            BlockSet::new(blocks),
        );
        rx.set_path_mtu(1400);
        assert!(matches!(
            rx.poll_control(Timestamp::ZERO),
            Some(Up::Hello { mtu: 1400, .. })
        ));
        rx.handle_control(
            Down::Welcome {
                session: SessionId(9),
                block_count: blocks,
                symbol_size: 1400,
                status_interval_ms: 50,
            },
            Timestamp::ZERO,
        );
        rx
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    #[test]
    fn silence_after_the_start_asks_for_a_rejoin_once_a_second() {
        let mut rx = joined(2);
        // Before START, silence is the sender waiting for the room: no re-join.
        assert!(!rx.poll_rejoin(at(5000)));
        rx.handle_control(Down::Start { symbol_size: 1000 }, at(5000));
        assert!(!rx.poll_rejoin(at(5900)));
        assert!(rx.poll_rejoin(at(6000)));
        assert!(!rx.poll_rejoin(at(6500)));
        // A datagram of the session (symbols now of the START's size) resets the silence.
        let symbol = vec![0u8; 1000];
        let mut d = Vec::new();
        DataPacket {
            session: SessionId(9),
            seq: 1,
            block: 0,
            block_len: 5000,
            symbol_id: 0,
            symbol: &symbol,
        }
        .encode_into(&mut d);
        rx.handle_datagram(&d, at(6800));
        assert_eq!(rx.stats().datagrams, 1, "the START's symbol size is taken");
        assert!(!rx.poll_rejoin(at(7700)));
        assert!(rx.poll_rejoin(at(7800)));
        assert_eq!(rx.stats().rejoins, 2);
        assert!(!rx.received_from_start());
        // Its next wake-up is no later than the next re-join.
        assert!(rx.poll_timeout().is_some_and(|t| t <= at(8800)));
    }

    #[test]
    fn a_receiver_reached_from_the_start_says_so() {
        let mut rx = joined(1);
        rx.handle_control(Down::Start { symbol_size: 1400 }, at(0));
        assert!(!rx.poll_rejoin(at(900)));
        assert!(rx.received_from_start());
    }
}
