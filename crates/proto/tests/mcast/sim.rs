//! Deterministic in-memory simulation of one multicast session: one sender, N receivers, seeded
//! lossy links, a virtual clock that jumps to the next thing due. Same seed, same run, bit for bit.

use roomcast_proto::mcast::{
    BlockSet, ConnId, Down, MachineId, RateConfig, Receiver, ReceiverConfig, ReceiverEvent,
    ReceiverIdentity, ReceiverReport, Sender, SenderConfig, SenderEvent, SenderStats, SessionId,
    Timestamp, Token, Up,
};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::time::Duration;

/// SplitMix64: small, fast, good enough to draw losses, and independent of any crate's version.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// How a link loses packets.
#[derive(Clone, Copy, Debug)]
pub enum Loss {
    /// Each packet lost with probability `p`, independently.
    Independent(f64),
    /// Gilbert-Elliott: a good and a bad state, each with its own loss; per packet, move good->bad
    /// with `to_bad`, bad->good with `to_good`.
    Burst {
        to_bad: f64,
        to_good: f64,
        good: f64,
        bad: f64,
    },
}

impl Loss {
    /// Long-run loss fraction.
    pub fn mean(&self) -> f64 {
        match *self {
            Loss::Independent(p) => p,
            Loss::Burst {
                to_bad,
                to_good,
                good,
                bad,
            } => {
                let pb = to_bad / (to_bad + to_good);
                pb * bad + (1.0 - pb) * good
            }
        }
    }
}

/// One receiver's misfortune.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Processes nothing (drops packets, sends nothing) during `for_` from `at`.
    Stall { at: Duration, for_: Duration },
    /// Joins only at `at`.
    LateJoin { at: Duration },
    /// Loses all state at `at` except what it wrote; comes back `after` later.
    Crash { at: Duration, after: Duration },
    /// Goes silent at `at`, for good (power cut: no connection close either).
    Die { at: Duration },
    /// The stream never reaches it (a snooping switch never learnt its port), control works.
    NoGroup,
}

#[derive(Clone)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    pub receivers: usize,
    pub blocks: usize,
    /// Block (compressed chunk) lengths are drawn uniformly in this range.
    pub block_len: (u32, u32),
    pub loss: Loss,
    /// Probability a packet is delayed by up to `reorder_delay` more (so arrives out of order).
    pub reorder: f64,
    pub reorder_delay: Duration,
    pub duplicate: f64,
    /// Probability a delivered packet has one byte of its symbol flipped (past the UDP checksum).
    pub corrupt: f64,
    pub faults: Vec<(usize, Fault)>,
    /// Fraction of blocks every receiver already has (delta deploy); the same for all receivers.
    pub have_fraction: f64,
    pub rate_bps: u64,
    /// A switch port slower than the configured rate in front of every receiver (bits per second),
    /// with a 64 KiB buffer: what overflows is lost for all, as congestion would be.
    pub bottleneck_bps: Option<u64>,
    pub max_open_blocks: usize,
    pub time_limit: Duration,
}

impl Scenario {
    /// Chunk-sized blocks (200-800 kB compressed, as 1 MiB chunks of a real disk compress), for the
    /// figures; the default is smaller so that debug-build tests stay quick.
    pub fn realistic(name: &str, loss: Loss) -> Self {
        Scenario {
            blocks: 64,
            block_len: (200_000, 800_000),
            rate_bps: 5_000_000,
            ..Scenario::new(name, loss)
        }
    }

    /// About 48 s of stream at the default rate: long enough for a 10 s stall to matter.
    pub fn new(name: &str, loss: Loss) -> Self {
        Scenario {
            name: name.into(),
            seed: 7,
            receivers: 30,
            blocks: 48,
            block_len: (30_000, 130_000),
            loss,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(5),
            duplicate: 0.0,
            corrupt: 0.0,
            faults: Vec::new(),
            have_fraction: 0.0,
            rate_bps: 700_000,
            bottleneck_bps: None,
            max_open_blocks: 128,
            time_limit: Duration::from_secs(1200),
        }
    }
}

/// What a run produced.
pub struct Outcome {
    /// Virtual time each receiver wrote its last block (None: never).
    pub completed: Vec<Option<Duration>>,
    /// Whether each receiver's disk equals the image, block for block.
    pub identical: Vec<bool>,
    /// Receivers the sender reported dead.
    pub dead: Vec<usize>,
    /// Receivers the sender found the stream does not reach, with the virtual time it said so.
    pub unreached: Vec<(usize, Duration)>,
    pub reports: Vec<ReceiverReport>,
    pub stats: SenderStats,
    /// Source symbols of the blocks some receiver lacked at the start.
    pub needed_symbols: u64,
    /// Compressed bytes of those blocks.
    pub needed_bytes: u64,
    /// Time to put exactly those symbols on the wire at the configured rate.
    pub line_rate_time: Duration,
    pub finished_at: Option<Duration>,
    pub bad_blocks_caught: u64,
    pub max_open_blocks_seen: usize,
}

impl Outcome {
    /// Latest completion among the receivers not in `skip`.
    pub fn last_completion(&self, skip: &[usize]) -> Duration {
        self.completed
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .map(|(_, t)| t.expect("a healthy receiver did not complete"))
            .max()
            .unwrap_or_default()
    }
    pub fn symbol_ratio(&self) -> f64 {
        (self.stats.source_symbols + self.stats.repair_symbols) as f64 / self.needed_symbols as f64
    }
}

const SYMBOL: u16 = 1400;
const DATA_LATENCY: Duration = Duration::from_micros(300);
const CTL_LATENCY: Duration = Duration::from_millis(1);

enum Ev {
    Datagram {
        to: usize,
        bytes: Rc<Vec<u8>>,
    },
    Up {
        from: usize,
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Down {
        to: usize,
        conn: ConnId,
        bytes: Vec<u8>,
    },
}

struct Queued {
    at: Timestamp,
    n: u64,
    ev: Ev,
}
impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.n) == (o.at, o.n)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.n).cmp(&(self.at, self.n))
    }
}

#[derive(PartialEq)]
enum Life {
    NotYet,
    Running,
    Stalled,
    Down,
    Gone,
}

struct Pc {
    machine: MachineId,
    token: Token,
    rx: Option<Receiver>,
    conn: ConnId,
    life: Life,
    disk: Vec<Option<Vec<u8>>>,
    link: Rng,
    burst_bad: bool,
    completed: Option<Duration>,
}

struct Sim {
    sc: Scenario,
    now: Timestamp,
    n: u64,
    queue: BinaryHeap<Queued>,
    image: Vec<Vec<u8>>,
    digests: Vec<[u8; 32]>,
    sender: Sender,
    pcs: Vec<Pc>,
    next_conn: u64,
    dead: Vec<usize>,
    unreached: Vec<(usize, Duration)>,
    reports: Vec<ReceiverReport>,
    finished_at: Option<Duration>,
    bad_caught: u64,
    max_open: usize,
    timers: Vec<(Timestamp, usize, Action)>,
    /// Bytes queued at the bottleneck, and when that was computed.
    queued: (f64, Timestamp),
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Action {
    Join,
    StallBegin,
    StallEnd,
    Crash,
    Restart,
    Die,
}

fn image(sc: &Scenario) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(sc.seed ^ 0x1111);
    (0..sc.blocks)
        .map(|_| {
            let (lo, hi) = sc.block_len;
            let len = lo + rng.below(u64::from(hi - lo + 1)) as u32;
            let mut v = Vec::with_capacity(len as usize + 8);
            while v.len() < len as usize {
                v.extend_from_slice(&rng.next_u64().to_le_bytes());
            }
            v.truncate(len as usize);
            v
        })
        .collect()
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn machine(i: usize) -> MachineId {
    MachineId([0x02, 0x52, 0x43, 0, (i >> 8) as u8, i as u8])
}

/// Runs a scenario to the end of the session (or the time limit).
pub fn run(sc: &Scenario) -> Outcome {
    let image = image(sc);
    let digests: Vec<[u8; 32]> = image.iter().map(|b| digest(b)).collect();
    let n = image.len() as u32;
    let mut have_rng = Rng::new(sc.seed ^ 0x2222);
    let have: Vec<bool> = (0..n).map(|_| have_rng.chance(sc.have_fraction)).collect();
    let lens: Vec<u32> = image.iter().map(|b| b.len() as u32).collect();
    let late: Vec<usize> = sc
        .faults
        .iter()
        .filter(|(_, f)| matches!(f, Fault::LateJoin { .. }))
        .map(|(i, _)| *i)
        .collect();
    let pcs: Vec<Pc> = (0..sc.receivers)
        .map(|i| Pc {
            machine: machine(i),
            token: Token([i as u8 ^ 0x5a; 32]),
            rx: None,
            conn: ConnId(0),
            life: Life::NotYet,
            disk: (0..n as usize)
                .map(|b| have[b].then(|| image[b].clone()))
                .collect(),
            link: Rng::new(sc.seed.wrapping_mul(1000).wrapping_add(i as u64 + 1)),
            burst_bad: false,
            completed: None,
        })
        .collect();
    let cfg = SenderConfig {
        symbol_size: SYMBOL,
        rate: RateConfig {
            max_bps: sc.rate_bps,
            min_bps: sc.rate_bps / 10,
            burst_bytes: 16 * 1024,
            ..RateConfig::default()
        },
        expect: sc.receivers - late.len(),
        disk_size: 1 << 30,
        ..SenderConfig::default()
    };
    let roster: Vec<(MachineId, Token)> =
        pcs.iter().map(|p| (p.machine, p.token.clone())).collect();
    let sender = Sender::new(
        cfg,
        SessionId(0x5eed_0000 ^ sc.seed),
        &lens,
        roster,
        Timestamp::ZERO,
    )
    .expect("valid blocks");
    let mut timers = Vec::new();
    for i in 0..sc.receivers {
        if !late.contains(&i) {
            timers.push((Timestamp::ZERO, i, Action::Join));
        }
    }
    let ts = |d: Duration| Timestamp::ZERO + d;
    for &(i, f) in &sc.faults {
        match f {
            Fault::Stall { at, for_ } => {
                timers.push((ts(at), i, Action::StallBegin));
                timers.push((ts(at + for_), i, Action::StallEnd));
            }
            Fault::LateJoin { at } => timers.push((ts(at), i, Action::Join)),
            Fault::Crash { at, after } => {
                timers.push((ts(at), i, Action::Crash));
                timers.push((ts(at + after), i, Action::Restart));
            }
            Fault::Die { at } => timers.push((ts(at), i, Action::Die)),
            Fault::NoGroup => {}
        }
    }
    // Ordered latest first so that `pop` yields the earliest.
    timers.sort_by_key(|t| std::cmp::Reverse((t.0, t.1)));
    let mut sim = Sim {
        sc: sc.clone(),
        now: Timestamp::ZERO,
        n: 0,
        queue: BinaryHeap::new(),
        image,
        digests,
        sender,
        pcs,
        next_conn: 1,
        dead: Vec::new(),
        unreached: Vec::new(),
        reports: Vec::new(),
        finished_at: None,
        bad_caught: 0,
        max_open: 0,
        timers,
        queued: (0.0, Timestamp::ZERO),
    };
    sim.run();
    let needed: Vec<usize> = (0..n as usize).filter(|&b| !have[b]).collect();
    let needed_symbols: u64 = needed
        .iter()
        .map(|&b| u64::from((sim.image[b].len() as u32).div_ceil(u32::from(SYMBOL))))
        .sum();
    let wire_per_packet = 36 + u64::from(SYMBOL) + 28;
    Outcome {
        completed: sim.pcs.iter().map(|p| p.completed).collect(),
        identical: sim
            .pcs
            .iter()
            .map(|p| {
                p.disk
                    .iter()
                    .zip(&sim.image)
                    .all(|(d, i)| d.as_deref() == Some(&i[..]))
            })
            .collect(),
        dead: sim.dead.clone(),
        unreached: sim.unreached.clone(),
        reports: sim.reports.clone(),
        stats: sim.sender.stats().clone(),
        needed_symbols,
        needed_bytes: needed.iter().map(|&b| sim.image[b].len() as u64).sum(),
        line_rate_time: Duration::from_secs_f64(
            (needed_symbols * wire_per_packet * 8) as f64 / sc.rate_bps as f64,
        ),
        finished_at: sim.finished_at,
        bad_blocks_caught: sim.bad_caught,
        max_open_blocks_seen: sim.max_open,
    }
}

impl Sim {
    fn push(&mut self, at: Timestamp, ev: Ev) {
        self.n += 1;
        self.queue.push(Queued { at, n: self.n, ev });
    }

    fn elapsed(&self) -> Duration {
        self.now.saturating_since(Timestamp::ZERO)
    }

    fn run(&mut self) {
        let limit = Timestamp::ZERO + self.sc.time_limit;
        loop {
            self.fire_timers();
            self.pump();
            if self.sender.is_finished() && self.queue.is_empty() {
                return;
            }
            let mut next = self.queue.peek().map(|q| q.at);
            let mut at = |t: Option<Timestamp>| {
                if let Some(t) = t {
                    next = Some(next.map_or(t, |n: Timestamp| n.min(t)));
                }
            };
            at(self.sender.poll_timeout());
            at(self.timers.last().map(|t| t.0));
            for p in &self.pcs {
                if p.life == Life::Running {
                    at(p.rx.as_ref().and_then(|r| r.poll_timeout()));
                }
            }
            let Some(next) = next else {
                return;
            };
            self.now = next.max(self.now);
            if self.now > limit {
                return;
            }
            while self.queue.peek().is_some_and(|q| q.at <= self.now) {
                let q = self.queue.pop().expect("peeked");
                self.deliver(q.ev);
            }
        }
    }

    fn fire_timers(&mut self) {
        while self.timers.last().is_some_and(|t| t.0 <= self.now) {
            let (_, i, action) = self.timers.pop().expect("checked");
            match action {
                Action::Join | Action::Restart => self.start_pc(i),
                Action::StallBegin => self.pcs[i].life = Life::Stalled,
                Action::StallEnd => self.pcs[i].life = Life::Running,
                Action::Crash => {
                    let p = &mut self.pcs[i];
                    p.rx = None;
                    p.life = Life::Down;
                    let conn = p.conn;
                    self.sender.handle_disconnect(conn, self.now);
                }
                Action::Die => {
                    let p = &mut self.pcs[i];
                    p.rx = None;
                    p.life = Life::Gone;
                }
            }
        }
    }

    fn start_pc(&mut self, i: usize) {
        let n = self.image.len() as u32;
        let p = &mut self.pcs[i];
        // The agent hashes its own disk first: only what verifies counts as HAVE.
        let mut have = BlockSet::new(n);
        for (b, d) in p.disk.iter().enumerate() {
            if d.as_deref().is_some_and(|d| digest(d) == self.digests[b]) {
                have.insert(b as u32);
            }
        }
        p.rx = Some(Receiver::new(
            ReceiverConfig {
                max_open_blocks: self.sc.max_open_blocks,
                ..ReceiverConfig::default()
            },
            ReceiverIdentity {
                machine: p.machine,
                token: p.token.clone(),
                disk_size: 1 << 30,
            },
            have,
        ));
        p.conn = ConnId(self.next_conn);
        self.next_conn += 1;
        p.life = Life::Running;
    }

    fn deliver(&mut self, ev: Ev) {
        match ev {
            Ev::Datagram { to, bytes } => {
                let p = &mut self.pcs[to];
                if p.life == Life::Running
                    && let Some(rx) = p.rx.as_mut()
                {
                    if p.link.chance(self.sc.corrupt) {
                        let mut b = bytes.to_vec();
                        let at = 36 + p.link.below(u64::from(SYMBOL)) as usize;
                        b[at] ^= 0x40;
                        rx.handle_datagram(&b, self.now);
                    } else {
                        rx.handle_datagram(&bytes, self.now);
                    }
                    self.max_open = self.max_open.max(rx.open_blocks());
                }
            }
            Ev::Up { from, conn, bytes } => {
                if self.pcs[from].conn != conn {
                    return;
                }
                let (_, msg) = Up::decode(&bytes).expect("the receiver encodes valid messages");
                self.sender.handle_control(conn, msg, self.now);
            }
            Ev::Down { to, conn, bytes } => {
                let p = &mut self.pcs[to];
                if p.conn != conn || p.life != Life::Running {
                    return;
                }
                let msg = Down::decode(&bytes).expect("the sender encodes valid messages");
                if let Some(rx) = p.rx.as_mut() {
                    rx.handle_control(msg, self.now);
                }
            }
        }
    }

    fn multicast(&mut self, pkt: Vec<u8>) {
        if let Some(cap) = self.sc.bottleneck_bps {
            let (q, at) = self.queued;
            let drained = self.now.saturating_since(at).as_secs_f64() * cap as f64 / 8.0;
            let q = (q - drained).max(0.0);
            let len = (pkt.len() + 28) as f64;
            if q + len > 65536.0 {
                self.queued = (q, self.now);
                return;
            }
            self.queued = (q + len, self.now);
        }
        let pkt = Rc::new(pkt);
        for i in 0..self.pcs.len() {
            let sc = &self.sc;
            let p = &mut self.pcs[i];
            let lost = match sc.loss {
                Loss::Independent(q) => p.link.chance(q),
                Loss::Burst {
                    to_bad,
                    to_good,
                    good,
                    bad,
                } => {
                    let flip = if p.burst_bad { to_good } else { to_bad };
                    if p.link.chance(flip) {
                        p.burst_bad = !p.burst_bad;
                    }
                    p.link.chance(if p.burst_bad { bad } else { good })
                }
            };
            let no_group = sc
                .faults
                .iter()
                .any(|(f, k)| *f == i && matches!(k, Fault::NoGroup));
            if lost || no_group {
                continue;
            }
            let mut delay = DATA_LATENCY;
            if p.link.chance(sc.reorder) {
                delay += Duration::from_micros(p.link.below(sc.reorder_delay.as_micros() as u64));
            }
            let dup = p.link.chance(sc.duplicate);
            let dup_delay = DATA_LATENCY
                + Duration::from_micros(p.link.below(sc.reorder_delay.as_micros() as u64 + 1));
            let at = self.now + delay;
            self.push(
                at,
                Ev::Datagram {
                    to: i,
                    bytes: pkt.clone(),
                },
            );
            if dup {
                let at = self.now + dup_delay;
                self.push(
                    at,
                    Ev::Datagram {
                        to: i,
                        bytes: pkt.clone(),
                    },
                );
            }
        }
    }

    fn pump(&mut self) {
        loop {
            let mut progress = false;
            while let Some(prepare) = self.sender.poll_prepare() {
                // The driver runs it on another thread; the symbols are the same.
                prepare.run();
            }
            while let Some(ev) = self.sender.poll_event() {
                progress = true;
                match ev {
                    SenderEvent::NeedBlock(b) => {
                        let data = self.image[b as usize].clone();
                        self.sender.supply_block(b, &data).expect("right length");
                    }
                    SenderEvent::Dead(m) => {
                        let i = self.pcs.iter().position(|p| p.machine == m).expect("known");
                        self.dead.push(i);
                    }
                    SenderEvent::Unreached(m) => {
                        let i = self.pcs.iter().position(|p| p.machine == m).expect("known");
                        let at = self.elapsed();
                        self.unreached.push((i, at));
                    }
                    SenderEvent::Finished(r) => {
                        self.reports = r;
                        self.finished_at = Some(self.elapsed());
                    }
                    SenderEvent::Rejected { reason, .. } => panic!("rejected: {reason}"),
                    SenderEvent::Joined(_) | SenderEvent::Done(_) | SenderEvent::Failed { .. } => {}
                }
            }
            while let Some((conn, msg)) = self.sender.poll_control() {
                progress = true;
                if let Some(to) = self.pcs.iter().position(|p| p.conn == conn) {
                    let at = self.now + CTL_LATENCY;
                    self.push(
                        at,
                        Ev::Down {
                            to,
                            conn,
                            bytes: msg.encode(),
                        },
                    );
                }
            }
            while let Some(pkt) = self.sender.poll_transmit(self.now) {
                progress = true;
                self.multicast(pkt);
            }
            for i in 0..self.pcs.len() {
                if self.pcs[i].life != Life::Running {
                    continue;
                }
                progress |= self.pump_pc(i);
            }
            if !progress {
                return;
            }
        }
    }

    fn pump_pc(&mut self, i: usize) -> bool {
        let mut progress = false;
        let now = self.now;
        let at = now + CTL_LATENCY;
        let mut out = Vec::new();
        let p = &mut self.pcs[i];
        let Some(rx) = p.rx.as_mut() else {
            return false;
        };
        // Membership is not modelled: a re-join changes nothing here.
        let _ = rx.poll_rejoin(now);
        while let Some(msg) = rx.poll_control(now) {
            let session = rx.session().unwrap_or(SessionId(0));
            out.push(msg.encode(session));
        }
        while let Some(ev) = rx.poll_event() {
            progress = true;
            match ev {
                ReceiverEvent::BlockComplete { index, data } => {
                    // The agent's rule: verify against the manifest, then write; never the reverse.
                    if digest(&data) == self.digests[index as usize] {
                        p.disk[index as usize] = Some(data);
                        rx.mark_written(index);
                    } else {
                        self.bad_caught += 1;
                        rx.mark_bad(index);
                    }
                }
                ReceiverEvent::Complete => {
                    p.completed
                        .get_or_insert(now.saturating_since(Timestamp::ZERO));
                }
                ReceiverEvent::Rejected { reason } => panic!("receiver {i} rejected: {reason}"),
                ReceiverEvent::Joined { .. } | ReceiverEvent::Ended { .. } => {}
            }
        }
        let conn = p.conn;
        for bytes in out {
            progress = true;
            self.push(
                at,
                Ev::Up {
                    from: i,
                    conn,
                    bytes,
                },
            );
        }
        progress
    }
}
