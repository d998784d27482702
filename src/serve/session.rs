//! One multicast session attached to a [`BootService`]: offer it, stream the image from the store,
//! withdraw it, wait for the agents' reports, and make one result per machine.

use super::{
    DataPlane, DeployError, DeployReport, MachineResult, Outcome, Progress, reports_since,
};
use crate::net::http::{BootService, SessionOffer};
use roomcast_mcast::{BlockSource, McastAddr, SessionKey, run_sender};
use roomcast_proto::contract::BlockMap;
use roomcast_proto::mac::Mac;
use roomcast_proto::mcast::{
    DEFAULT_SYMBOL_SIZE, MachineId, RateConfig, ReceiverReport, Sender, SenderConfig, SenderEvent,
    SenderStats, SessionId, Timestamp, Token, symbol_for_mtu,
};
use roomcast_store::Store;
use roomcast_store::manifest::ImageId;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything one session needs besides the HTTP service.
#[derive(Debug, Clone)]
pub struct SessionPlan {
    /// The store holding the image.
    pub store: Store,
    /// The image to stream.
    pub image: ImageId,
    /// Address of the room interface: the control channel binds here, the stream leaves here.
    pub interface: Ipv4Addr,
    /// The roster: only these machines may join (each gets its own control-channel token).
    pub machines: Vec<Mac>,
    /// PCs to wait for before streaming (at most `data.start_wait`).
    pub expect: usize,
    /// Group, ports, rate, timeouts.
    pub data: DataPlane,
    /// After the stream, how long to wait for the reports of PCs catching up over HTTP.
    pub catch_up_wait: Duration,
}

/// What the session's events told us.
#[derive(Default)]
struct Seen {
    joined: BTreeSet<Mac>,
    first_join: Option<Instant>,
    stats: SenderStats,
}

/// The stream's block source: compressed chunks from the store, plus the progress of the session.
struct StoreBlocks<'a> {
    store: Store,
    map: &'a BlockMap,
    seen: Arc<Mutex<Seen>>,
    progress: &'a (dyn Fn(&Progress) + Sync),
    read: BTreeSet<u32>,
    next_tick: usize,
}

impl BlockSource for StoreBlocks<'_> {
    fn read_block(&mut self, index: u32) -> io::Result<Vec<u8>> {
        let block = self
            .map
            .block(index)
            .ok_or_else(|| io::Error::other(format!("block {index} is not in the image")))?;
        let data = self
            .store
            .read_chunk_compressed(&block.sha256)
            .map_err(|e| io::Error::other(e.to_string()))?;
        if self.read.insert(index) && self.read.len() >= self.next_tick {
            let of = self.map.len();
            self.next_tick = self.read.len() + of.div_ceil(10);
            (self.progress)(&Progress::Streaming {
                blocks: self.read.len() as u32,
                of: of as u32,
            });
        }
        Ok(data)
    }

    fn event(&mut self, event: &SenderEvent, stats: &SenderStats) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.stats = stats.clone();
        let p = match event {
            SenderEvent::Joined(m) => {
                seen.joined.insert(Mac(m.0));
                seen.first_join.get_or_insert_with(Instant::now);
                Progress::Joined(Mac(m.0))
            }
            SenderEvent::Rejected { reason, .. } => Progress::Rejected(reason.clone()),
            SenderEvent::Done(m) => Progress::Done(Mac(m.0)),
            SenderEvent::Dead(m) => Progress::Dead(Mac(m.0)),
            SenderEvent::Unreached(m) => Progress::Unreached(Mac(m.0)),
            SenderEvent::Failed { machine, reason } => {
                Progress::Failed(Mac(machine.0), reason.clone())
            }
            SenderEvent::NeedBlock(_) | SenderEvent::Finished(_) => return,
        };
        drop(seen);
        (self.progress)(&p);
    }

    fn sample(&mut self, sample: &roomcast_mcast::StreamSample) {
        (self.progress)(&Progress::Sample(*sample));
    }
}

/// Runs one multicast session for the agents of `service` (which must serve the same image, so
/// that agents left behind catch up over its `/chunks/`), then waits up to `catch_up_wait` for the
/// reports of every PC that joined. Machines that fail are in the report, not errors.
pub async fn run_session(
    service: Arc<BootService>,
    plan: SessionPlan,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<DeployReport, DeployError> {
    plan.data.check()?;
    let started = Instant::now();
    // gc must not remove a chunk under the stream.
    let _lock = plan.store.lock_shared()?;
    let manifest = plan.store.open_verified(&plan.image)?;
    let map = manifest.block_map();
    if map.is_empty() {
        return Err(DeployError::Config(format!(
            "image {}: only zeros, nothing to stream (agents restore it over unicast)",
            plan.image.short()
        )));
    }
    let bind = SocketAddrV4::new(plan.interface, plan.data.control_port);
    let control = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|source| DeployError::Io {
            step: format!("control channel on {bind}"),
            source,
        })?;
    let control_addr = match control.local_addr() {
        Ok(SocketAddr::V4(a)) => a,
        _ => bind,
    };
    // Datagrams that fit the interface's MTU (a VLAN tag eaten, a tunnel); the PCs' own MTUs,
    // told in their HELLO, may shrink them further before the start.
    let mtu = roomcast_mcast::interface_mtu(plan.interface);
    let symbol_size = mtu
        .and_then(|m| symbol_for_mtu(m.min(u32::from(u16::MAX)) as u16))
        .map_or(DEFAULT_SYMBOL_SIZE, |s| s.min(DEFAULT_SYMBOL_SIZE));
    let tokens: BTreeMap<Mac, [u8; 32]> = plan
        .machines
        .iter()
        .map(|m| (*m, rand::random::<[u8; 32]>()))
        .collect();
    let cfg = SenderConfig {
        rate: RateConfig {
            max_bps: plan.data.rate_bps,
            min_bps: plan.data.min_rate_bps,
            burst_bytes: RateConfig::burst_for(plan.data.rate_bps),
            ..RateConfig::default()
        },
        dead_after: plan.data.dead_after,
        start_wait: plan.data.start_wait,
        expect: plan.expect.max(1),
        disk_size: manifest.disk_size,
        symbol_size,
        ..SenderConfig::default()
    };
    let key = SessionKey(rand::random::<[u8; 32]>());
    let roster = tokens.iter().map(|(m, t)| (MachineId(m.0), Token(*t)));
    let sender = Sender::new(
        cfg,
        SessionId(rand::random::<u64>()),
        &map.lengths(),
        roster,
        Timestamp::ZERO,
    )
    .map_err(|e| DeployError::Config(format!("image {}: {e}", plan.image.short())))?;
    let baseline = service.reports().len();
    service.set_session(Some(SessionOffer {
        control: control_addr,
        group: plan.data.group,
        tokens,
        key,
        ended: false,
    }));
    progress(&Progress::Offered {
        control: control_addr,
        group: plan.data.group,
        blocks: map.len() as u32,
        bytes: map.compressed_bytes(0..map.len() as u32),
    });
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut source = StoreBlocks {
        store: plan.store.clone(),
        map: &map,
        seen: seen.clone(),
        progress,
        read: BTreeSet::new(),
        next_tick: 1,
    };
    let addr = McastAddr {
        interface: plan.interface,
        group: plan.data.group,
        key: Some(key),
    };
    // Nobody came at all: the sender would wait forever for a first HELLO.
    let nobody = async {
        let give_up = plan.data.start_wait + Duration::from_secs(5);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let none = seen.lock().is_ok_and(|s| s.joined.is_empty());
            if none && started.elapsed() >= give_up {
                return;
            }
        }
    };
    let outcome = tokio::select! {
        r = run_sender(sender, control, addr, &mut source) => Some(r),
        () = nobody => None,
    };
    service.end_session();
    let stream_end = Instant::now();
    let receivers: Vec<ReceiverReport> = match outcome {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            service.set_session(None);
            return Err(e.into());
        }
        None => Vec::new(),
    };
    let (joined, first_join, stats) = {
        let s = seen.lock().unwrap_or_else(|p| p.into_inner());
        (s.joined.clone(), s.first_join, s.stats.clone())
    };
    progress(&Progress::StreamEnded {
        wire_bytes: stats.wire_bytes,
    });

    // Agents left behind are fetching the rest over HTTP; the complete ones are reporting.
    let deadline = Instant::now() + plan.catch_up_wait;
    let mut told = BTreeSet::new();
    let reports = loop {
        let reports = reports_since(&service, baseline);
        for (mac, v) in &reports {
            if told.insert(*mac) {
                progress(&Progress::Reported(*mac, v.is_ok()));
            }
        }
        if joined.iter().all(|m| reports.contains_key(m)) || Instant::now() >= deadline {
            break reports;
        }
        // The last report ends the deploy: look often (a lookup is a lock and a short list).
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let machines = plan
        .machines
        .iter()
        .map(|mac| {
            let rr = receivers.iter().find(|r| r.machine == MachineId(mac.0));
            let report = reports.get(mac).cloned();
            let figures = report.as_ref().and_then(|r| r.restore());
            // The stream's end and a PC's last DONE cross on the wire: a PC that holds every block
            // may leave before the sender recorded it. Its own report (a verified account of what
            // it holds: every block checked against the signed manifest) then says so.
            let complete = rr.is_some_and(|r| r.complete)
                || figures
                    .and_then(|f| f.multicast.as_ref())
                    .is_some_and(|m| m.complete && m.catch_up_chunks == 0);
            let unreached = rr.is_some_and(|r| r.unreached);
            let dead = rr.is_some_and(|r| r.dead);
            let outcome = match &report {
                Some(r) if r.is_ok() => {
                    if complete {
                        Outcome::Done
                    } else {
                        Outcome::CaughtUp
                    }
                }
                Some(r) => Outcome::Failed(
                    r.error
                        .clone()
                        .unwrap_or_else(|| "the agent reported a failure".into()),
                ),
                None if dead => Outcome::Dead,
                None if joined.contains(mac) => Outcome::LeftBehind,
                None => Outcome::Absent,
            };
            MachineResult {
                mac: *mac,
                outcome,
                joined: joined.contains(mac),
                multicast_complete: complete,
                unreached,
                from_start: figures
                    .and_then(|f| f.multicast.as_ref())
                    .and_then(|m| m.from_start),
                blocks_written: rr.map_or(0, |r| r.written),
                bytes_written: figures.map_or(0, |f| f.written_bytes),
                catch_up_bytes: figures.map_or(0, |f| f.catch_up_bytes),
                report,
            }
        })
        .collect();
    Ok(DeployReport {
        image: plan.image.to_hex(),
        machines,
        blocks: map.len() as u32,
        image_bytes: map.compressed_bytes(0..map.len() as u32),
        wire_bytes: stats.wire_bytes,
        packets: stats.packets,
        repair_symbols: stats.repair_symbols,
        symbol_size: stats.symbol_size,
        stream_time: first_join.map_or(Duration::ZERO, |t| stream_end.saturating_duration_since(t)),
        total_time: started.elapsed(),
    })
}
