//! Sender state machine: the deploy server's side of one multicast session.
//!
//! Scheduling, in order of priority at each packet:
//! 1. a block being sent keeps going until its symbols are out;
//! 2. quick repair: a block sent a moment ago (a "settle" delay, enough for fresh STATUS to come back)
//!    gets `max over receivers(deficit / (1 - loss)) + 1` new repair symbols, counting only receivers
//!    whose STATUS already accounts for everything sent of that block, and only small deficits;
//! 3. the sweep: a cursor walks the blocks in order; a block nobody lacks is skipped; a block never
//!    sent gets its source symbols plus the repair the median loss calls for; a block sent before
//!    gets the repair its receivers' fresh deficits call for.
//!
//! Large deficits (a stalled, late or restarted receiver lacking whole blocks) are served only by the
//! sweep, so the room's pass goes on at full speed and the laggard fills its gaps on the next pass.
//! A receiver silent for `dead_after` is declared dead and no longer waited for.

use super::bitmap::BlockSet;
use super::fec::{BlockEncoder, MAX_SOURCE_SYMBOLS, source_symbols};
use super::rate::{RateConfig, RateController};
use super::time::Timestamp;
use super::wire::{DataPacket, Down, MAX_SYMBOL_ID, MachineId, SessionId, Status, Token, Up};
use super::{DEFAULT_SYMBOL_SIZE, IP_UDP_OVERHEAD};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// The driver's handle for one control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// RaptorQ encoding of one block, to run off the sending loop (see [`Sender::poll_prepare`]).
#[must_use = "run it (on another thread) or drop it"]
pub struct Prepare(Arc<BlockEncoder>);

impl Prepare {
    /// Encodes now; the sender finds the result when it sends the block's first repair symbol
    /// (and waits for it if this is still running on another thread then).
    pub fn run(&self) {
        self.0.prepare();
    }

    /// Whether this block's encoding is done (tests).
    pub fn is_done(&self) -> bool {
        self.0.encoder_ready()
    }
}

/// Every sender number, with its unit.
#[derive(Debug, Clone, PartialEq)]
pub struct SenderConfig {
    /// Bytes per symbol (the UDP payload is this plus the 36-byte data header).
    pub symbol_size: u16,
    /// Pacing.
    pub rate: RateConfig,
    /// How often receivers send STATUS.
    pub status_interval: Duration,
    /// How long after a block's last symbol its repair is sized: long enough for every receiver's
    /// next STATUS to arrive, so one repair round serves all of them.
    pub settle: Duration,
    /// A receiver silent this long is declared dead.
    pub dead_after: Duration,
    /// Receivers to wait for before sending (welcomed and listening: their first STATUS came).
    pub expect: usize,
    /// Longest wait for `expect` receivers, from the sender's creation.
    pub start_wait: Duration,
    /// Deficits up to this fraction of a block are repaired at once; larger ones wait for the sweep.
    pub quick_repair_fraction: f64,
    /// Block payloads kept in memory for encoding.
    pub encoder_cache: usize,
    /// Blocks asked for ahead of the sweep cursor.
    pub readahead: u32,
    /// Disk size the image needs; a receiver with a smaller disk is refused.
    pub disk_size: u64,
    /// A receiver whose STATUS keeps coming but whose packet count has not grown for this long,
    /// while the stream went on and other receivers got it, is *unreached*: the group does not
    /// reach its port (IGMP snooping). It is let go (END, incomplete) to finish over HTTP and no
    /// longer counts for repair or pacing.
    pub unreached_after: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            symbol_size: DEFAULT_SYMBOL_SIZE,
            rate: RateConfig::default(),
            status_interval: Duration::from_millis(50),
            settle: Duration::from_millis(120),
            dead_after: Duration::from_secs(30),
            expect: 1,
            start_wait: Duration::from_secs(60),
            quick_repair_fraction: 0.5,
            encoder_cache: 64,
            readahead: 8,
            disk_size: 0,
            unreached_after: Duration::from_secs(5),
        }
    }
}

/// What the sender tells its caller.
#[derive(Debug, Clone, PartialEq)]
pub enum SenderEvent {
    /// Read block `index` (its compressed bytes) and pass it to [`Sender::supply_block`].
    NeedBlock(u32),
    /// A receiver was accepted.
    Joined(MachineId),
    /// A HELLO was refused.
    Rejected {
        /// Connection it came on.
        conn: ConnId,
        /// Why.
        reason: String,
    },
    /// A receiver wrote every block.
    Done(MachineId),
    /// A receiver gave up.
    Failed {
        /// Which.
        machine: MachineId,
        /// Its reason.
        reason: String,
    },
    /// A receiver was silent for `dead_after`.
    Dead(MachineId),
    /// A receiver talks but the stream does not reach it (see [`SenderConfig::unreached_after`]):
    /// it was told the session is over for it and finishes over unicast.
    Unreached(MachineId),
    /// Every receiver is done, failed or dead: the session is over.
    Finished(Vec<ReceiverReport>),
}

/// Final word on one receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverReport {
    /// The machine.
    pub machine: MachineId,
    /// Whether it wrote every block.
    pub complete: bool,
    /// Whether it was declared dead.
    pub dead: bool,
    /// Whether the stream never reached it (let go to finish over unicast).
    pub unreached: bool,
    /// Its FAIL reason, if any.
    pub failure: Option<String>,
    /// Blocks it had written, last we heard.
    pub written: u32,
}

/// Counters for reports and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Datagrams sent.
    pub packets: u64,
    /// Bytes on the wire, IP and UDP headers included.
    pub wire_bytes: u64,
    /// Source symbols sent.
    pub source_symbols: u64,
    /// Repair symbols sent.
    pub repair_symbols: u64,
    /// Repair symbols sent by quick repair.
    pub quick_repair_symbols: u64,
    /// Sweeps begun.
    pub sweeps: u32,
    /// Bytes of each symbol in use.
    pub symbol_size: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerState {
    Active,
    Done,
    Failed,
    Dead,
    Unreached,
}

struct Peer {
    conn: Option<ConnId>,
    state: PeerState,
    written: BlockSet,
    partial: HashMap<u32, u32>,
    highest_seq: u64,
    loss: Option<f64>,
    base: Option<(u64, u64)>,
    last_heard: Timestamp,
    failure: Option<String>,
    /// Its first STATUS came: it has joined the group, so what we send now reaches it.
    listening: bool,
    /// (highest seq, packets received) of its last STATUS.
    counters: (u64, u64),
    /// `counters` at the previous rate adaptation: the loss of exactly one interval, so that the
    /// effect of a rate change is judged on fresh numbers, not on a moving average.
    adapt_base: Option<(u64, u64)>,
    /// When its packet count last grew (or the stream started for it), and the sender's sequence
    /// number then: for telling a receiver the stream does not reach.
    progress: (Timestamp, u64),
}

impl Peer {
    fn lacks(&self, b: u32) -> bool {
        self.state == PeerState::Active && !self.written.contains(b)
    }
}

struct BlockState {
    len: u32,
    k: u32,
    next_repair: u32,
    last_seq: u64,
    /// When its last symbol left: a STATUS long enough after that (`STALE_GRACE_SETTLES` x
    /// `settle`) is news, even from a receiver that lost the tail of the round (and so never saw
    /// `last_seq`); without this, such a receiver's deficits would wait forever.
    last_sent_at: Timestamp,
    ever_sent: bool,
    lacking: u32,
}

struct Job {
    block: u32,
    next_source: u32,
    source_end: u32,
    repair_left: u32,
    quick: bool,
}

/// The deploy server's side of one multicast session.
pub struct Sender {
    cfg: SenderConfig,
    session: SessionId,
    roster: HashMap<MachineId, Token>,
    blocks: Vec<BlockState>,
    peers: BTreeMap<MachineId, Peer>,
    conns: HashMap<ConnId, MachineId>,
    rate: RateController,
    seq: u64,
    job: Option<Job>,
    cursor: u32,
    /// After a scan found nothing to send, the next scan waits until then (or for news that
    /// surely creates work: a HELLO, a reopened block, a death).
    idle_until: Option<Timestamp>,
    median: Option<f64>,
    /// Blocks whose RaptorQ encoding to hand out ([`Sender::poll_prepare`]).
    to_prepare: VecDeque<u32>,
    watch: BTreeMap<u32, Timestamp>,
    encoders: HashMap<u32, Arc<BlockEncoder>>,
    lru: VecDeque<u32>,
    requested: HashMap<u32, ()>,
    events: VecDeque<SenderEvent>,
    ctl: VecDeque<(ConnId, Down)>,
    created: Timestamp,
    started: bool,
    finished: bool,
    next_adapt: Timestamp,
    next_unreached_check: Timestamp,
    stats: SenderStats,
}

/// Why a sender could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SenderError {
    /// A block is empty or larger than RaptorQ can carry in one source block.
    #[error("block {index}: length {len} outside 1..={max} bytes")]
    BlockLength {
        /// Block index.
        index: u32,
        /// Its length.
        len: u32,
        /// Largest allowed.
        max: u64,
    },
    /// More blocks than the protocol numbers.
    #[error("{0} blocks: more than the protocol allows")]
    TooManyBlocks(usize),
    /// A supplied payload does not have the length announced at creation.
    #[error("block {index}: supplied {got} bytes, expected {expected}")]
    SuppliedLength {
        /// Block index.
        index: u32,
        /// Bytes supplied.
        got: usize,
        /// Bytes announced.
        expected: u32,
    },
    /// Symbol size zero.
    #[error("symbol size must be at least 1 byte")]
    SymbolSize,
}

impl Sender {
    /// A session sending blocks of the given lengths (compressed chunk sizes, in manifest order) to
    /// the machines of `roster`, each with its token.
    pub fn new(
        cfg: SenderConfig,
        session: SessionId,
        block_lens: &[u32],
        roster: impl IntoIterator<Item = (MachineId, Token)>,
        now: Timestamp,
    ) -> Result<Self, SenderError> {
        if cfg.symbol_size == 0 {
            return Err(SenderError::SymbolSize);
        }
        if block_lens.len() > super::wire::MAX_BLOCKS as usize {
            return Err(SenderError::TooManyBlocks(block_lens.len()));
        }
        let max = u64::from(MAX_SOURCE_SYMBOLS) * u64::from(cfg.symbol_size);
        let mut blocks = Vec::with_capacity(block_lens.len());
        for (i, &len) in block_lens.iter().enumerate() {
            if len == 0 || u64::from(len) > max {
                return Err(SenderError::BlockLength {
                    index: i as u32,
                    len,
                    max,
                });
            }
            blocks.push(BlockState {
                len,
                k: source_symbols(len, cfg.symbol_size),
                next_repair: 0,
                last_seq: 0,
                last_sent_at: now,
                ever_sent: false,
                lacking: 0,
            });
        }
        let cfg_symbol = cfg.symbol_size;
        Ok(Sender {
            rate: RateController::new(cfg.rate.clone(), now),
            next_adapt: now + cfg.rate.adapt_interval,
            next_unreached_check: now,
            cfg,
            session,
            roster: roster.into_iter().collect(),
            blocks,
            peers: BTreeMap::new(),
            conns: HashMap::new(),
            seq: 0,
            job: None,
            cursor: 0,
            idle_until: None,
            median: None,
            to_prepare: VecDeque::new(),
            watch: BTreeMap::new(),
            encoders: HashMap::new(),
            lru: VecDeque::new(),
            requested: HashMap::new(),
            events: VecDeque::new(),
            ctl: VecDeque::new(),
            created: now,
            started: false,
            finished: false,
            stats: SenderStats {
                symbol_size: cfg_symbol,
                ..SenderStats::default()
            },
        })
    }

    /// Counters.
    pub fn stats(&self) -> &SenderStats {
        &self.stats
    }

    /// Current pacing rate, bits per second on the wire.
    pub fn rate_bps(&self) -> u64 {
        self.rate.rate_bps()
    }

    /// The receivers' loss as they last reported it (each smoothed over its reports), as
    /// fractions: the median the repair and the pacing follow, and the highest of one active
    /// receiver. `None` before any receiver reported a figure.
    pub fn loss(&self) -> Option<(f64, f64)> {
        let highest = self
            .peers
            .values()
            .filter(|p| p.state == PeerState::Active)
            .filter_map(|p| p.loss)
            .fold(None, |m: Option<f64>, l| Some(m.map_or(l, |m| m.max(l))));
        Some((self.median.or(highest)?, highest.or(self.median)?))
    }

    /// True once the session is over.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Payload of block `index`, asked for by [`SenderEvent::NeedBlock`].
    pub fn supply_block(&mut self, index: u32, data: &[u8]) -> Result<(), SenderError> {
        let Some(b) = self.blocks.get(index as usize) else {
            return Ok(());
        };
        if data.len() != b.len as usize {
            return Err(SenderError::SuppliedLength {
                index,
                got: data.len(),
                expected: b.len,
            });
        }
        self.requested.remove(&index);
        if !self.encoders.contains_key(&index) {
            while self.encoders.len() >= self.cfg.encoder_cache.max(2) {
                let Some(old) = self.lru.pop_front() else {
                    break;
                };
                if self.job.as_ref().is_some_and(|j| j.block == old) {
                    self.lru.push_back(old);
                    continue;
                }
                self.encoders.remove(&old);
            }
            self.encoders.insert(
                index,
                Arc::new(BlockEncoder::new(data, self.cfg.symbol_size)),
            );
            self.lru.push_back(index);
            if self.lossy() {
                self.to_prepare.push_back(index);
            }
        }
        Ok(())
    }

    /// RaptorQ encoding the sender will soon need, to run away from the sending loop: milliseconds
    /// of CPU per block that, run in place at a block's first repair symbol, emptied the socket's
    /// backlog and idled the link. Handed out for every block supplied while the receivers report
    /// loss (its first pass carries repair; the sender asks `readahead` blocks ahead, so there is
    /// time), and for the blocks already held when loss is first reported. Dropping one is
    /// harmless: the first repair symbol then encodes in place.
    pub fn poll_prepare(&mut self) -> Option<Prepare> {
        while let Some(b) = self.to_prepare.pop_front() {
            if let Some(e) = self.encoders.get(&b)
                && !e.encoder_ready()
            {
                return Some(Prepare(e.clone()));
            }
        }
        None
    }

    fn lossy(&self) -> bool {
        self.median.is_some_and(|loss| loss > 0.0)
    }

    /// A message from the receiver on connection `conn`.
    pub fn handle_control(&mut self, conn: ConnId, msg: Up, now: Timestamp) {
        match msg {
            Up::Hello {
                machine,
                token,
                disk_size,
                have,
                mtu,
            } => self.hello(conn, machine, &token, disk_size, have, mtu, now),
            other => {
                let Some(&machine) = self.conns.get(&conn) else {
                    return;
                };
                let Some(peer) = self.peers.get_mut(&machine) else {
                    return;
                };
                if peer.state == PeerState::Dead {
                    return;
                }
                peer.last_heard = now;
                match other {
                    Up::Status(s) => self.status(machine, s, now),
                    Up::Done { .. } => {
                        if peer.state == PeerState::Active && peer.written.is_full() {
                            peer.state = PeerState::Done;
                            self.events.push_back(SenderEvent::Done(machine));
                        }
                    }
                    Up::Fail { reason } => {
                        if peer.state == PeerState::Active {
                            self.leave(machine);
                        }
                        if let Some(p) = self.peers.get_mut(&machine) {
                            p.state = PeerState::Failed;
                            p.failure = Some(reason.clone());
                        }
                        self.events
                            .push_back(SenderEvent::Failed { machine, reason });
                    }
                    Up::Hello { .. } => {}
                }
            }
        }
        self.check_finished();
    }

    /// The control connection `conn` closed. The receiver is not dead yet: a restarted agent
    /// reconnects with a new HELLO; silence beyond `dead_after` makes it dead.
    pub fn handle_disconnect(&mut self, conn: ConnId, _now: Timestamp) {
        if let Some(machine) = self.conns.remove(&conn)
            && let Some(p) = self.peers.get_mut(&machine)
            && p.conn == Some(conn)
        {
            p.conn = None;
        }
    }

    fn reject(&mut self, conn: ConnId, reason: String) {
        self.ctl.push_back((
            conn,
            Down::Reject {
                reason: reason.clone(),
            },
        ));
        self.events
            .push_back(SenderEvent::Rejected { conn, reason });
    }

    #[allow(clippy::too_many_arguments)]
    fn hello(
        &mut self,
        conn: ConnId,
        machine: MachineId,
        token: &Token,
        disk_size: u64,
        have: BlockSet,
        mtu: u16,
        now: Timestamp,
    ) {
        let known = self.roster.get(&machine).is_some_and(|t| t.matches(token));
        if !known {
            return self.reject(conn, format!("machine {machine}: unknown or bad token"));
        }
        if disk_size < self.cfg.disk_size {
            return self.reject(
                conn,
                format!(
                    "machine {machine}: disk of {disk_size} bytes, the image needs {}",
                    self.cfg.disk_size
                ),
            );
        }
        if have.len() as usize != self.blocks.len() {
            return self.reject(
                conn,
                format!(
                    "machine {machine}: HAVE covers {} blocks, the image has {}",
                    have.len(),
                    self.blocks.len()
                ),
            );
        }
        if self.finished {
            return self.reject(conn, "the session is over".into());
        }
        if let Some(fits) = symbol_for_mtu(mtu)
            && fits < self.cfg.symbol_size
        {
            if self.started {
                // Every datagram of the running stream would be dropped or fragmented on its way.
                return self.reject(
                    conn,
                    format!(
                        "machine {machine}: its MTU of {mtu} bytes is below the stream's datagrams \
                         ({} bytes); it restores over unicast",
                        usize::from(self.cfg.symbol_size)
                            + DATA_LEN_FIXED
                            + super::SEAL_OVERHEAD
                            + IP_UDP_OVERHEAD
                    ),
                );
            }
            self.set_symbol_size(fits);
        }
        // A restarted agent: forget the old incarnation, take the new one's word for its disk.
        if self
            .peers
            .get(&machine)
            .is_some_and(|p| p.state == PeerState::Active)
        {
            self.leave(machine);
        }
        if let Some(old) = self.peers.get(&machine).and_then(|p| p.conn) {
            self.conns.remove(&old);
        }
        for b in 0..self.blocks.len() as u32 {
            if !have.contains(b) {
                self.blocks[b as usize].lacking += 1;
            }
        }
        self.peers.insert(
            machine,
            Peer {
                conn: Some(conn),
                state: PeerState::Active,
                written: have,
                partial: HashMap::new(),
                highest_seq: 0,
                loss: None,
                base: None,
                last_heard: now,
                failure: None,
                listening: false,
                counters: (0, 0),
                adapt_base: None,
                progress: (now, self.seq),
            },
        );
        self.conns.insert(conn, machine);
        self.idle_until = None;
        self.ctl.push_back((
            conn,
            Down::Welcome {
                session: self.session,
                block_count: self.blocks.len() as u32,
                symbol_size: self.cfg.symbol_size,
                status_interval_ms: self.cfg.status_interval.as_millis().clamp(1, 60_000) as u32,
            },
        ));
        if self.started {
            self.ctl.push_back((
                conn,
                Down::Start {
                    symbol_size: self.cfg.symbol_size,
                },
            ));
        }
        self.events.push_back(SenderEvent::Joined(machine));
    }

    /// Smaller symbols, before anything was sent: every block's symbol count follows. A size at
    /// which some block would need more source symbols than RaptorQ allows is not taken.
    fn set_symbol_size(&mut self, size: u16) {
        let max = u64::from(MAX_SOURCE_SYMBOLS) * u64::from(size);
        if self.blocks.iter().any(|b| u64::from(b.len) > max) {
            return;
        }
        self.cfg.symbol_size = size;
        self.stats.symbol_size = size;
        for b in &mut self.blocks {
            b.k = source_symbols(b.len, size);
        }
        self.encoders.clear();
        self.lru.clear();
        self.requested.clear();
        self.to_prepare.clear();
    }

    /// The symbol size in use (it shrinks before the start for a receiver with a small MTU).
    pub fn symbol_size(&self) -> u16 {
        self.cfg.symbol_size
    }

    /// An active receiver stops counting for the blocks it lacks.
    fn leave(&mut self, machine: MachineId) {
        let Some(p) = self.peers.get(&machine) else {
            return;
        };
        for b in 0..self.blocks.len() as u32 {
            if p.lacks(b) {
                self.blocks[b as usize].lacking -= 1;
            }
        }
    }

    fn status(&mut self, machine: MachineId, s: Status, now: Timestamp) {
        let quick_fraction = self.cfg.quick_repair_fraction;
        let settle_late = now + self.cfg.status_interval;
        let seq_now = self.seq;
        // A block still being sent has deficits that its next symbols fill: not news.
        let in_progress = self.job.as_ref().map(|j| j.block);
        let Some(p) = self.peers.get_mut(&machine) else {
            return;
        };
        if p.state != PeerState::Active {
            return;
        }
        p.listening = true;
        for b in s.newly_written {
            if (b as usize) < self.blocks.len() && p.written.insert(b) {
                self.blocks[b as usize].lacking -= 1;
            }
        }
        for b in s.reopened {
            if (b as usize) < self.blocks.len() && p.written.remove(b) {
                self.blocks[b as usize].lacking += 1;
                self.idle_until = None;
            }
        }
        p.partial = s
            .partial
            .into_iter()
            .filter(|(b, _)| (*b as usize) < self.blocks.len())
            .collect();
        // Loss over the packets the sender numbered since the last sample.
        match p.base {
            Some((seq0, recv0)) if s.highest_seq >= seq0 + 32 => {
                let expected = (s.highest_seq - seq0) as f64;
                let got = s.received.saturating_sub(recv0) as f64;
                let sample = (1.0 - got / expected).clamp(0.0, 1.0);
                p.loss = Some(p.loss.map_or(sample, |l| 0.75 * l + 0.25 * sample));
                p.base = Some((s.highest_seq, s.received));
            }
            Some(_) => {}
            None if s.highest_seq > 0 => p.base = Some((s.highest_seq, s.received)),
            None => {}
        }
        p.highest_seq = p.highest_seq.max(s.highest_seq);
        if s.received > p.counters.1 {
            p.progress = (now, seq_now);
        }
        p.counters = (s.highest_seq, s.received);
        // A fresh small deficit reported after the block's settle time still gets quick repair.
        for (&b, &d) in &p.partial {
            let blk = &self.blocks[b as usize];
            if d > 0
                && Some(b) != in_progress
                && p.highest_seq >= blk.last_seq
                && f64::from(d) <= quick_fraction * f64::from(blk.k)
                && !p.written.contains(b)
            {
                self.watch.entry(b).or_insert(settle_late);
            }
        }
        // The first loss figures count at once, not at the next adaptation (up to
        // `adapt_interval` later): the blocks sent meanwhile would all go without first-pass
        // repair and need quick repair together.
        if self.median.is_none() {
            self.update_median();
        }
    }

    fn update_median(&mut self) {
        let was_lossy = self.lossy();
        self.median = self.compute_median_loss();
        if !was_lossy && self.lossy() {
            // Blocks read before anyone reported loss (the encoder cache, oldest first): their
            // repair is near.
            self.to_prepare.extend(self.lru.iter().copied());
        }
    }

    /// Median over active receivers of the loss since the previous call (receivers that saw too
    /// few packets in the interval to say are left out).
    fn interval_median_loss(&mut self) -> Option<f64> {
        let mut l = Vec::new();
        for p in self.peers.values_mut() {
            if p.state != PeerState::Active || p.counters.0 == 0 {
                continue;
            }
            match p.adapt_base {
                Some((seq0, recv0)) if p.counters.0 >= seq0 + 16 => {
                    let expected = (p.counters.0 - seq0) as f64;
                    let got = p.counters.1.saturating_sub(recv0) as f64;
                    l.push((1.0 - got / expected).clamp(0.0, 1.0));
                    p.adapt_base = Some(p.counters);
                }
                Some(_) => {}
                None => p.adapt_base = Some(p.counters),
            }
        }
        median_of_reached(l)
    }

    fn compute_median_loss(&self) -> Option<f64> {
        let l: Vec<f64> = self
            .peers
            .values()
            .filter(|p| p.state == PeerState::Active)
            .filter_map(|p| p.loss)
            .collect();
        median_of_reached(l)
    }

    /// Symbols that receiver `p` still needs of block `b`, inflated by its loss so that one round
    /// is likely to be enough; `None` if its last STATUS may not account for symbols already sent
    /// of `b` (it saw neither the block's last sequence number nor the grace pass since it left).
    fn need(&self, p: &Peer, b: u32) -> Option<u32> {
        let blk = &self.blocks[b as usize];
        // The grace is several settle times: a receiver still working through its socket buffer
        // has not lost the tail yet, and repairing it now would be wasted.
        let grace = self.cfg.settle * STALE_GRACE_SETTLES;
        let stale = p.highest_seq < blk.last_seq && p.last_heard < blk.last_sent_at + grace;
        if !p.lacks(b) || stale {
            return None;
        }
        let d = p.partial.get(&b).copied().unwrap_or(blk.k);
        if d == 0 {
            return None;
        }
        let loss = p.loss.unwrap_or(0.0).min(0.5);
        Some((f64::from(d) / (1.0 - loss)).ceil() as u32)
    }

    fn quick_need(&self, b: u32) -> u32 {
        let blk = &self.blocks[b as usize];
        let limit = self.cfg.quick_repair_fraction * f64::from(blk.k);
        self.peers
            .values()
            .filter(|p| p.partial.get(&b).is_some_and(|&d| f64::from(d) <= limit))
            .filter_map(|p| self.need(p, b))
            .max()
            .map_or(0, |n| n + 1)
    }

    fn sweep_need(&self, b: u32) -> (u32, u32) {
        let blk = &self.blocks[b as usize];
        if blk.lacking == 0 {
            return (0, 0);
        }
        if !blk.ever_sent {
            let loss = self.median.unwrap_or(0.0).min(0.5);
            let extra = (f64::from(blk.k) * loss / (1.0 - loss)).ceil() as u32;
            return (blk.k, extra);
        }
        let n = self
            .peers
            .values()
            .filter_map(|p| self.need(p, b))
            .max()
            .map_or(0, |n| n + 1);
        (0, n)
    }

    fn all_expected_here(&self, now: Timestamp) -> bool {
        self.peers.values().filter(|p| p.listening).count() >= self.cfg.expect
            || now.saturating_since(self.created) >= self.cfg.start_wait
    }

    fn pick_job(&mut self, now: Timestamp) -> Option<Job> {
        // Quick repair first: small fresh deficits of blocks sent a moment ago.
        let due: Vec<u32> = self
            .watch
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(b, _)| *b)
            .collect();
        for b in due {
            self.watch.remove(&b);
            let n = self.quick_need(b);
            if n > 0 {
                return Some(Job {
                    block: b,
                    next_source: 0,
                    source_end: 0,
                    repair_left: n,
                    quick: true,
                });
            }
        }
        if self.idle_until.is_some_and(|t| now < t) || self.blocks.is_empty() {
            return None;
        }
        let n = self.blocks.len() as u32;
        for _ in 0..n {
            let b = self.cursor;
            self.cursor += 1;
            if self.cursor == n {
                self.cursor = 0;
            }
            if b == 0 {
                self.stats.sweeps += 1;
            }
            let (source, repair) = self.sweep_need(b);
            if source + repair > 0 {
                self.readahead(b);
                return Some(Job {
                    block: b,
                    next_source: 0,
                    source_end: source,
                    repair_left: repair,
                    quick: false,
                });
            }
        }
        // Nothing anybody can use right now: wait for news (a STATUS) before scanning again.
        self.idle_until = Some(now + self.cfg.status_interval);
        None
    }

    fn readahead(&mut self, from: u32) {
        let n = self.blocks.len() as u32;
        let mut b = from;
        for _ in 0..=self.cfg.readahead.min(n) {
            if self.blocks[b as usize].lacking > 0 {
                self.request(b);
            }
            b = (b + 1) % n;
        }
    }

    fn request(&mut self, b: u32) {
        if !self.encoders.contains_key(&b) && !self.requested.contains_key(&b) {
            self.requested.insert(b, ());
            self.events.push_back(SenderEvent::NeedBlock(b));
        }
    }

    /// The next datagram to multicast, if pacing allows one now and some receiver can use it.
    /// Call again until `None`, then wait for [`Sender::poll_timeout`] or new input.
    pub fn poll_transmit(&mut self, now: Timestamp) -> Option<Vec<u8>> {
        self.handle_timeout(now);
        if self.finished || !self.started {
            return None;
        }
        let wire = DATA_LEN_FIXED + usize::from(self.cfg.symbol_size) + IP_UDP_OVERHEAD;
        if self.job.is_none() {
            self.job = self.pick_job(now);
        }
        let block = self.job.as_ref()?.block;
        if !self.encoders.contains_key(&block) {
            self.request(block);
            return None;
        }
        if !self.rate.try_consume(wire, now) {
            return None;
        }
        let job = self.job.as_mut()?;
        let blk = &mut self.blocks[block as usize];
        let id = if job.next_source < job.source_end {
            job.next_source += 1;
            self.stats.source_symbols += 1;
            job.next_source - 1
        } else {
            job.repair_left -= 1;
            let id = blk.k + blk.next_repair;
            blk.next_repair += 1;
            self.stats.repair_symbols += 1;
            if job.quick {
                self.stats.quick_repair_symbols += 1;
            }
            if id > MAX_SYMBOL_ID {
                // 16 million symbols of one block: something is badly wrong; stop feeding it.
                self.job = None;
                return None;
            }
            id
        };
        self.seq += 1;
        blk.last_seq = self.seq;
        blk.last_sent_at = now;
        blk.ever_sent = true;
        let mut out = Vec::with_capacity(wire - IP_UDP_OVERHEAD);
        let mut symbol = Vec::with_capacity(usize::from(self.cfg.symbol_size));
        if let Some(enc) = self.encoders.get(&block) {
            enc.symbol(id, &mut symbol);
        }
        DataPacket {
            session: self.session,
            seq: self.seq,
            block,
            block_len: blk.len,
            symbol_id: id,
            symbol: &symbol,
        }
        .encode_into(&mut out);
        if job.next_source >= job.source_end && job.repair_left == 0 {
            self.job = None;
            self.watch.insert(block, now + self.cfg.settle);
        }
        self.stats.packets += 1;
        self.stats.wire_bytes += (out.len() + IP_UDP_OVERHEAD) as u64;
        Some(out)
    }

    /// Runs what is due at `now`: start, loss adaptation, dead receivers.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if !self.started && self.all_expected_here(now) && !self.peers.is_empty() {
            self.started = true;
            let seq = self.seq;
            for p in self.peers.values_mut() {
                p.progress = (now, seq);
                if let Some(c) = p.conn
                    && p.state == PeerState::Active
                {
                    self.ctl.push_back((
                        c,
                        Down::Start {
                            symbol_size: self.cfg.symbol_size,
                        },
                    ));
                }
            }
        }
        if self.started && now >= self.next_unreached_check {
            // Every datagram comes through here: look at most four times a second.
            self.next_unreached_check = now + UNREACHED_CHECK;
            self.find_unreached(now);
        }
        if now >= self.next_adapt {
            self.next_adapt = now + self.cfg.rate.adapt_interval;
            self.update_median();
            if let Some(l) = self.interval_median_loss() {
                self.rate.observe_loss(l);
            }
        }
        let dead: Vec<MachineId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.state == PeerState::Active
                    && now.saturating_since(p.last_heard) >= self.cfg.dead_after
            })
            .map(|(m, _)| *m)
            .collect();
        for m in dead {
            self.leave(m);
            if let Some(p) = self.peers.get_mut(&m) {
                p.state = PeerState::Dead;
                if let Some(c) = p.conn.take() {
                    self.conns.remove(&c);
                }
            }
            self.idle_until = None;
            self.events.push_back(SenderEvent::Dead(m));
        }
        self.check_finished();
    }

    /// Receivers that keep talking (a STATUS within the last second) but got no datagram for
    /// `unreached_after` while the stream sent at least [`UNREACHED_PACKETS`] and another
    /// receiver got some since: the group does not reach them. They are let go at once (END,
    /// incomplete) to finish over unicast, and stop counting for repair and pacing.
    fn find_unreached(&mut self, now: Timestamp) {
        let after = self.cfg.unreached_after;
        let fresh = self.cfg.status_interval.max(Duration::from_millis(100)) * 20;
        let unreached: Vec<MachineId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.state == PeerState::Active
                    && p.listening
                    && now.saturating_since(p.last_heard) < fresh
                    && now.saturating_since(p.progress.0) >= after
                    && self.seq >= p.progress.1 + UNREACHED_PACKETS
            })
            .filter(|(m, p)| {
                self.peers
                    .iter()
                    .any(|(o, q)| o != *m && q.counters.1 > 0 && q.progress.0 > p.progress.0)
            })
            .map(|(m, _)| *m)
            .collect();
        for m in unreached {
            self.leave(m);
            if let Some(p) = self.peers.get_mut(&m) {
                p.state = PeerState::Unreached;
                if let Some(c) = p.conn {
                    self.ctl.push_back((c, Down::End { complete: false }));
                }
            }
            self.idle_until = None;
            self.events.push_back(SenderEvent::Unreached(m));
        }
    }

    fn check_finished(&mut self) {
        if self.finished || self.peers.is_empty() || !self.started {
            return;
        }
        if self.peers.values().any(|p| p.state == PeerState::Active) {
            return;
        }
        self.finished = true;
        let mut reports = Vec::new();
        for (m, p) in &self.peers {
            if let Some(c) = p.conn {
                self.ctl.push_back((
                    c,
                    Down::End {
                        complete: p.state == PeerState::Done,
                    },
                ));
            }
            reports.push(ReceiverReport {
                machine: *m,
                complete: p.state == PeerState::Done,
                dead: p.state == PeerState::Dead,
                unreached: p.state == PeerState::Unreached,
                failure: p.failure.clone(),
                written: p.written.count(),
            });
        }
        self.events.push_back(SenderEvent::Finished(reports));
    }

    /// When to call [`Sender::poll_transmit`] / [`Sender::handle_timeout`] next, absent new input.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.finished {
            return None;
        }
        let mut t: Option<Timestamp> = None;
        let mut at = |x: Timestamp| t = Some(t.map_or(x, |t| t.min(x)));
        if !self.started && !self.peers.is_empty() {
            at(self.created + self.cfg.start_wait);
        }
        at(self.next_adapt);
        for p in self.peers.values() {
            if p.state == PeerState::Active {
                at(p.last_heard + self.cfg.dead_after);
            }
        }
        if self.started {
            let wire = DATA_LEN_FIXED + usize::from(self.cfg.symbol_size) + IP_UDP_OVERHEAD;
            match &self.job {
                // Waiting for tokens; a job waiting for its block is woken by `supply_block`.
                Some(j) if self.encoders.contains_key(&j.block) => at(self.rate.ready_at(wire)),
                Some(_) => {}
                None => {
                    if let Some(w) = self.watch.values().min() {
                        at(*w);
                    }
                    match self.idle_until {
                        Some(t) => at(t),
                        None => at(self.rate.ready_at(wire)),
                    }
                }
            }
        }
        t
    }

    /// Next control message to send, with its connection.
    pub fn poll_control(&mut self) -> Option<(ConnId, Down)> {
        self.ctl.pop_front()
    }

    /// Next event for the caller.
    pub fn poll_event(&mut self) -> Option<SenderEvent> {
        self.events.pop_front()
    }
}

const DATA_LEN_FIXED: usize = super::wire::DATA_HEADER_LEN;

/// How often [`Sender::handle_timeout`] looks for unreached receivers.
const UNREACHED_CHECK: Duration = Duration::from_millis(250);

/// Datagrams the stream must have sent since a receiver's last progress before it can be called
/// unreached (a stream that idles proves nothing).
const UNREACHED_PACKETS: u64 = 64;

/// Loss at or above which a receiver is left out of the median that paces the room: it gets
/// (almost) nothing, which no rate fixes (IGMP snooping, a dead port). If every receiver is
/// there, they all count: that is congestion.
pub const UNREACHED_LOSS: f64 = 0.95;

/// The median of the losses, leaving out receivers at [`UNREACHED_LOSS`] or above unless all are.
fn median_of_reached(mut l: Vec<f64>) -> Option<f64> {
    if l.iter().any(|&x| x < UNREACHED_LOSS) {
        l.retain(|&x| x < UNREACHED_LOSS);
    }
    if l.is_empty() {
        return None;
    }
    l.sort_by(f64::total_cmp);
    Some(l[l.len() / 2])
}

/// The largest symbol whose datagram (data header, the drivers' seal, UDP, IPv4) fits `mtu`;
/// `None` for an unknown (0) or implausible MTU (below IPv4's 576).
pub fn symbol_for_mtu(mtu: u16) -> Option<u16> {
    if mtu < 576 {
        return None;
    }
    Some(mtu - (DATA_LEN_FIXED + super::SEAL_OVERHEAD + IP_UDP_OVERHEAD) as u16)
}

/// A receiver that never saw a block's last sequence number is taken at its word about that block
/// once this many `settle` delays passed since the block's last symbol left.
const STALE_GRACE_SETTLES: u32 = 4;
