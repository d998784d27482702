//! The agent's multicast path: survey the disk (which chunks it already holds), join the session
//! with that HAVE, write each rebuilt block only after its sha256 matched the signed manifest, then
//! fetch whatever the stream did not deliver over unicast HTTP (catch-up), zero what must be zero,
//! and write the partition-table region last.
//!
//! Masked images (issue 14): a chunk whose manifest entry carries used ranges is compared after
//! zeroing the disk's free bytes ([`ChunkEntry::mask`]), only its used ranges are ever written or
//! zeroed, and a chunk with no used byte is neither compared nor written: whatever the PC's free
//! space holds stays there.

use super::http::{Client, HttpChunks};
use super::{AgentError, AgentOptions};
use roomcast_mcast::{BlockSink, McastAddr};
use roomcast_proto::contract::{BlockMap, McastFigures, SessionInfo};
use roomcast_proto::mac::Mac;
use roomcast_proto::mcast::{
    BlockSet, MachineId, Receiver, ReceiverConfig, ReceiverIdentity, Token,
};
use roomcast_store::chunk::{ChunkHash, is_zero};
use roomcast_store::disk::{Disk, DiskError};
use roomcast_store::manifest::{ChunkEntry, VerifiedManifest};
use roomcast_store::masked::read_entry;
use roomcast_store::restore::RestoreProgress;
use roomcast_store::restore::{ChunkSource, RestoreReport};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// No block written for this long: the agent leaves the stream and catches up over HTTP. Longer
/// than a deploy server waits for the room before streaming, so a PC that came early is not cut off.
pub const STALL: Duration = Duration::from_secs(90);

/// Writes verified blocks to the disk; partition-table chunks wait in memory for the end.
struct DiskSink<'a> {
    m: &'a VerifiedManifest,
    map: &'a BlockMap,
    disk: &'a Disk,
    ok: &'a [bool],
    done: Vec<bool>,
    /// Compressed bytes of blocks that (also) go to the partition-table region, by block.
    held: HashMap<u32, Vec<u8>>,
    written_chunks: u64,
    written_bytes: u64,
    refused: u64,
    /// Used bytes of each block's chunks (what a block brings to the disk), for progress.
    block_bytes: Vec<u64>,
    /// Progress in used bytes: blocks held at the survey, then each block written.
    progress: Progress<'a>,
}

/// The multicast path's progress, in the image's used bytes (held blocks count from the start),
/// for the PC's screen: the same [`RestoreProgress`] the HTTP path reports.
struct Progress<'a> {
    report: &'a (dyn Fn(&RestoreProgress) + Sync),
    blocks_done: u64,
    blocks_total: u64,
    bytes_done: u64,
    bytes_total: u64,
}

impl Progress<'_> {
    fn advance(&mut self, bytes: u64) {
        self.blocks_done += 1;
        self.bytes_done += bytes;
        (self.report)(&RestoreProgress {
            chunks_done: self.blocks_done,
            chunks_total: self.blocks_total,
            bytes_done: self.bytes_done,
            bytes_total: self.bytes_total,
        });
    }
}

impl BlockSink for DiskSink<'_> {
    fn verify_and_write(&mut self, index: u32, data: &[u8]) -> io::Result<bool> {
        let Some(block) = self.map.block(index) else {
            return Ok(false);
        };
        let bytes = match self.m.decode_chunk(block.chunks[0], data) {
            Ok(b) => b,
            Err(e) => {
                // Never written: the block is reported missing again and comes again.
                tracing::warn!(block = index, error = %e, "block refused");
                self.refused += 1;
                return Ok(false);
            }
        };
        for &c in &block.chunks {
            if self.ok[c] {
                continue;
            }
            if self.m.in_partition_region(c) {
                self.held.insert(index, data.to_vec());
                continue;
            }
            let n = write_used(self.disk, &self.m.chunks[c], &bytes).map_err(io::Error::other)?;
            self.written_chunks += 1;
            self.written_bytes += n;
        }
        if !self.done[index as usize] {
            self.done[index as usize] = true;
            let bytes = self.block_bytes[index as usize];
            self.progress.advance(bytes);
        }
        Ok(true)
    }
}

/// Writes the used ranges of `bytes` (the chunk `e`, verified) at the chunk's offset, never a free
/// byte nor a byte beyond the disk's end (a disk smaller than the image, checked by
/// `fit::plan_restore`); returns the bytes written.
pub fn write_used(disk: &Disk, e: &ChunkEntry, bytes: &[u8]) -> Result<u64, DiskError> {
    let mut n = 0;
    for r in e.used_ranges_below(disk.size()) {
        disk.write_all_at(&bytes[r.clone()], e.offset + r.start as u64)?;
        n += (r.end - r.start) as u64;
    }
    Ok(n)
}

/// Zeroes the used ranges of the zero chunk `e`, never a free byte nor a byte beyond the disk's
/// end; returns the bytes zeroed.
pub fn zero_used(disk: &Disk, e: &ChunkEntry) -> Result<u64, DiskError> {
    let mut n = 0;
    for r in e.used_ranges_below(disk.size()) {
        let len = (r.end - r.start) as u64;
        disk.zero_range(e.offset + r.start as u64, len)?;
        n += len;
    }
    Ok(n)
}

/// Whether `buf`, the disk's bytes at chunk `e` with its free bytes zeroed, holds `e` (right
/// sha256, or zeros for a zero chunk).
pub fn holds(e: &ChunkEntry, buf: &[u8]) -> bool {
    match e.sha256 {
        None => is_zero(buf),
        Some(h) => !is_zero(buf) && ChunkHash::of(buf) == h,
    }
}

/// Which chunks of `m` the disk already holds: right sha256 or zeros for a zero chunk, compared
/// after masking with the chunk's used ranges; a chunk with no used byte is always held. On a disk
/// smaller than the image, a chunk beyond its end counts as held (nothing of it is written) and one
/// across its end as not held (its part below the end is written).
pub fn survey(m: &VerifiedManifest, disk: &Disk, workers: usize) -> Result<Vec<bool>, AgentError> {
    let n = m.chunks.len();
    let ok: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
    let next = AtomicUsize::new(0);
    let error: Mutex<Option<AgentError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let e = &m.chunks[i];
                    if e.is_unused() || e.offset >= disk.size() {
                        ok[i].store(true, Ordering::Relaxed);
                        continue;
                    }
                    if e.crosses(disk.size()) {
                        continue;
                    }
                    // Only the used bytes are read, the free ones are zero (store's `masked`).
                    if let Err(err) = read_entry(disk, e, &mut buf) {
                        *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(err.into());
                        next.store(n, Ordering::Relaxed);
                        return;
                    }
                    ok[i].store(holds(e, &buf), Ordering::Relaxed);
                }
            });
        }
    });
    if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(ok.into_iter().map(AtomicBool::into_inner).collect())
}

/// The address of the interface that reaches `server`: where the agent joins the group.
fn local_addr_towards(server: SocketAddr) -> io::Result<Ipv4Addr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
    s.connect(server)?;
    match s.local_addr()?.ip() {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err(io::Error::other("no IPv4 route to the deploy server")),
    }
}

fn session_identity(info: &SessionInfo, disk: &Disk) -> Result<ReceiverIdentity, AgentError> {
    let bad = |reason: String| AgentError::Multicast(format!("session info: {reason}"));
    let mac: Mac = info
        .machine
        .parse()
        .map_err(|_| bad(format!("machine {:?} is not a MAC", info.machine)))?;
    let mut token = [0u8; 32];
    hex::decode_to_slice(&info.token, &mut token)
        .map_err(|_| bad("the token is not 64 hex digits".into()))?;
    Ok(ReceiverIdentity {
        machine: MachineId(mac.0),
        token: Token(token),
        disk_size: disk.size(),
    })
}

/// The session's stream key from the session info (never echoed: an error says only its shape).
pub(crate) fn session_key(hex_key: &str) -> Result<roomcast_mcast::SessionKey, AgentError> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut key).map_err(|_| {
        AgentError::Multicast("session info: the stream key is not 64 hex digits".into())
    })?;
    Ok(roomcast_mcast::SessionKey(key))
}

/// Restores `m` onto `disk` through the multicast session `info`, then catches up over HTTP.
pub fn restore(
    client: &Client,
    source: &HttpChunks,
    m: &VerifiedManifest,
    info: &SessionInfo,
    disk: &Disk,
    opts: &AgentOptions,
    progress: &(dyn Fn(&RestoreProgress) + Sync),
) -> Result<(RestoreReport, McastFigures), AgentError> {
    let workers = if opts.workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.workers
    };
    let map = m.block_map();
    let ok = survey(m, disk, workers)?;
    let mut have = BlockSet::new(map.len() as u32);
    for (b, block) in map.blocks().iter().enumerate() {
        if block.chunks.iter().all(|&c| ok[c]) {
            have.insert(b as u32);
        }
    }
    let block_bytes: Vec<u64> = map
        .blocks()
        .iter()
        .map(|b| b.chunks.iter().map(|&c| m.chunks[c].used_bytes()).sum())
        .collect();
    let held_bytes: u64 = (0..map.len())
        .filter(|&b| have.contains(b as u32))
        .map(|b| block_bytes[b])
        .sum();
    let mut figures = McastFigures {
        held_blocks: have.count(),
        blocks: map.len() as u32,
        ..McastFigures::default()
    };
    tracing::info!(
        held = figures.held_blocks,
        blocks = figures.blocks,
        "disk surveyed, joining the multicast session"
    );
    let identity = session_identity(info, disk)?;
    let control = SocketAddr::V4(info.control);
    let interface = local_addr_towards(control)
        .map_err(|e| AgentError::Multicast(format!("route to {control}: {e}")))?;
    let max_block = map.lengths().into_iter().max().unwrap_or(1).max(1);
    let receiver = Receiver::new(
        ReceiverConfig {
            max_block_len: max_block,
            ..ReceiverConfig::default()
        },
        identity,
        have,
    );
    let progress = Progress {
        report: progress,
        blocks_done: u64::from(figures.held_blocks),
        blocks_total: map.len() as u64,
        bytes_done: held_bytes,
        bytes_total: block_bytes.iter().sum(),
    };
    let mut sink = DiskSink {
        block_bytes,
        progress,
        m,
        map: &map,
        disk,
        ok: &ok,
        done: vec![false; map.len()],
        held: HashMap::new(),
        written_chunks: 0,
        written_bytes: 0,
        refused: 0,
    };
    let key = session_key(&info.key)?;
    let addr = McastAddr {
        interface,
        group: info.group,
        key: Some(key),
    };
    let mut membership = roomcast_mcast::Membership::default();
    let outcome = roomcast_mcast::run_receiver_reporting(
        receiver,
        control,
        addr,
        &mut sink,
        STALL,
        &mut membership,
    )
    .map_err(|e| e.to_string());
    figures.from_start = Some(membership.from_start);
    figures.rejoins = membership.rejoins;
    figures.rejected_datagrams = membership.rejected;
    if matches!(outcome, Ok(false)) {
        wait_for_stream_end(client);
    }
    match outcome {
        Ok(true) => figures.complete = true,
        Ok(false) => figures.left_behind = Some("the session ended before every block".into()),
        Err(e) => figures.left_behind = Some(e),
    }
    if let Some(why) = &figures.left_behind {
        tracing::warn!(reason = %why, "left the multicast stream; catching up over HTTP");
    }
    figures.multicast_chunks = sink.written_chunks;
    figures.refused_blocks = sink.refused;
    let mut report = RestoreReport {
        chunks: m.chunks.len() as u64,
        unchanged_chunks: (0..ok.len())
            .filter(|&c| ok[c] && !m.chunks[c].is_unused())
            .count() as u64,
        written_chunks: sink.written_chunks,
        written_bytes: sink.written_bytes,
        ..RestoreReport::default()
    };
    let DiskSink {
        done,
        held,
        progress,
        block_bytes,
        ..
    } = sink;
    let behind = Behind {
        done: &done,
        held: &held,
        block_bytes: &block_bytes,
        progress: Mutex::new(progress),
        counted: Mutex::new(done.clone()),
    };
    catch_up(
        source,
        m,
        &map,
        disk,
        &ok,
        &behind,
        workers,
        &mut report,
        &mut figures,
    )?;
    Ok((report, figures))
}

/// Let go before the end (the server found the stream does not reach this PC): the catch-up
/// waits until the session is over, so that it does not take the server's link from the PCs the
/// stream does reach. Any answer but "still streaming" ends the wait.
fn wait_for_stream_end(client: &Client) {
    let mut told = false;
    while let Ok(Some(info)) = super::session(client) {
        if info.ended {
            return;
        }
        if !told {
            tracing::info!("let go by the server: catching up over HTTP once the stream ends");
            told = true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What the stream left for the catch-up: the blocks it wrote, the blocks held back for the
/// partition-table region, and the progress, which goes on counting (a PC left behind still shows
/// its bytes growing on the console while it catches up).
struct Behind<'a, 'p> {
    done: &'a [bool],
    held: &'a HashMap<u32, Vec<u8>>,
    block_bytes: &'a [u64],
    progress: Mutex<Progress<'p>>,
    /// Blocks already counted in the progress (the stream's, then each caught-up block once).
    counted: Mutex<Vec<bool>>,
}

impl Behind<'_, '_> {
    /// The block `b` is on the disk: counted in the progress the first time.
    fn block_written(&self, b: u32) {
        let first = {
            let mut counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
            !std::mem::replace(&mut counted[b as usize], true)
        };
        if first {
            self.progress
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .advance(self.block_bytes[b as usize]);
        }
    }
}

/// Everything the stream did not put on the disk: data chunks over HTTP, zero chunks zeroed, then
/// (after a sync) the partition-table region, from the blocks held back or over HTTP.
#[allow(clippy::too_many_arguments)]
fn catch_up(
    source: &HttpChunks,
    m: &VerifiedManifest,
    map: &BlockMap,
    disk: &Disk,
    ok: &[bool],
    behind: &Behind,
    workers: usize,
    report: &mut RestoreReport,
    figures: &mut McastFigures,
) -> Result<(), AgentError> {
    let (done, held) = (behind.done, behind.held);
    let needs = |c: usize| {
        !ok[c]
            && match map.block_of(c) {
                None => true,
                Some(b) => !done[b as usize] || m.in_partition_region(c),
            }
    };
    let (tables, rest): (Vec<usize>, Vec<usize>) = (0..m.chunks.len())
        .filter(|&c| needs(c))
        .partition(|&c| m.in_partition_region(c));
    let totals = Mutex::new((report.clone(), figures.clone()));
    let one = |c: usize| -> Result<(), AgentError> {
        let e = &m.chunks[c];
        let Some(r) = e.chunk_ref(c as u64) else {
            let n = zero_used(disk, e)?;
            let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
            t.0.zeroed_chunks += 1;
            t.0.zeroed_bytes += n;
            return Ok(());
        };
        let block = map.block_of(c).expect("a data chunk has a block");
        let (z, fetched) = match held.get(&block) {
            Some(z) => (z.clone(), false),
            None => (
                source
                    .compressed(&r)
                    .map_err(|e| AgentError::Multicast(e.to_string()))?,
                true,
            ),
        };
        let bytes = m.decode_chunk(c, &z).map_err(|e| {
            AgentError::Multicast(format!("{}: {e}", source.location(&r).display()))
        })?;
        let n = write_used(disk, e, &bytes)?;
        behind.block_written(block);
        let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
        t.0.written_chunks += 1;
        t.0.written_bytes += n;
        if fetched {
            t.1.catch_up_chunks += 1;
            t.1.catch_up_bytes += z.len() as u64;
        } else {
            t.1.multicast_chunks += 1;
        }
        Ok(())
    };
    parallel(&rest, workers, &one)?;
    disk.sync()?;
    for &c in &tables {
        one(c)?;
    }
    disk.sync()?;
    let (r, f) = totals.into_inner().unwrap_or_else(|p| p.into_inner());
    *report = r;
    *figures = f;
    figures.rejected_bodies = source.rejected();
    Ok(())
}

/// Runs `f` on every item on `workers` threads; the first error stops the others.
fn parallel(
    items: &[usize],
    workers: usize,
    f: &(dyn Fn(usize) -> Result<(), AgentError> + Sync),
) -> Result<(), AgentError> {
    let next = AtomicUsize::new(0);
    let error: Mutex<Option<AgentError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&c) = items.get(i) else {
                        return;
                    };
                    if let Err(e) = f(c) {
                        error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        next.store(items.len(), Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
    });
    match error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_store::keys::{Signer, TrustedSigners, generate_files};
    use roomcast_store::manifest::{
        ImageLabel, Manifest, PartitionTable, UnverifiedManifest, sign,
    };

    const CS: u32 = 64 * 1024;

    fn noise(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| {
                (i as u32)
                    .wrapping_mul(2_654_435_761)
                    .rotate_left(u32::from(seed)) as u8
                    | 1
            })
            .collect()
    }

    /// Four chunks: used whole, used in two ranges, not used at all, used but zero.
    fn image(dir: &std::path::Path, master: &[u8]) -> VerifiedManifest {
        let masks: [Option<Vec<[u32; 2]>>; 4] = [
            None,
            Some(vec![[0, 4096], [40_000, 50_000]]),
            Some(vec![]),
            Some(vec![[100, 9000]]),
        ];
        let chunks = masks
            .into_iter()
            .enumerate()
            .map(|(i, used)| {
                let offset = i as u64 * u64::from(CS);
                let mut e = ChunkEntry {
                    offset,
                    len: CS,
                    sha256: None,
                    compressed_len: None,
                    used,
                };
                let mut buf = master[offset as usize..offset as usize + CS as usize].to_vec();
                e.mask(&mut buf);
                if !e.is_unused() && !is_zero(&buf) {
                    e.sha256 = Some(ChunkHash::of(&buf));
                    e.compressed_len = Some(1);
                }
                e
            })
            .collect();
        let m = Manifest {
            format: roomcast_store::manifest::FORMAT,
            label: ImageLabel {
                name: "t".into(),
                version: "1".into(),
                profile: None,
                captured_by: "t".into(),
                captured_at: "2026-11-28T12:00:00Z".into(),
            },
            disk_size: 4 * u64::from(CS),
            chunk_size: CS,
            zstd_level: 3,
            partition_table: PartitionTable::from_regions(4 * u64::from(CS), &[], &[]),
            chunks,
            layout: None,
        };
        let (key, public, _) = generate_files(&dir.join("keys")).unwrap();
        let (_, envelope) = sign(&m, &Signer::load(&key).unwrap());
        let trusted =
            TrustedSigners::from_keys(vec![roomcast_store::keys::load_public(&public).unwrap()]);
        UnverifiedManifest::from_envelope(&envelope)
            .unwrap()
            .verify(&trusted)
            .unwrap()
    }

    #[test]
    fn survey_compares_used_bytes_and_writes_touch_no_free_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut master = noise(3, 4 * CS as usize);
        let zero_chunk = 3 * CS as usize;
        master[zero_chunk + 100..zero_chunk + 9000].fill(0);
        let m = image(dir.path(), &master);
        assert!(m.chunks[3].is_zero() && !m.chunks[3].is_unused());

        // A PC holding the used bytes, with its own free bytes: every chunk held.
        let mut pc = noise(7, master.len());
        for e in &m.chunks {
            for r in e.used_ranges() {
                let (s, t) = (e.offset as usize + r.start, e.offset as usize + r.end);
                pc[s..t].copy_from_slice(&master[s..t]);
            }
        }
        let path = dir.path().join("pc.img");
        std::fs::write(&path, &pc).unwrap();
        let disk = Disk::open_write(&path, 0).unwrap();
        assert_eq!(survey(&m, &disk, 2).unwrap(), vec![true; 4]);
        // One used byte wrong in chunk 1, one in the zero chunk: those two only are wanted.
        disk.write_all_at(&[0], u64::from(CS) + 40_001).unwrap();
        disk.write_all_at(&[9], 3 * u64::from(CS) + 8999).unwrap();
        assert_eq!(
            survey(&m, &disk, 2).unwrap(),
            vec![true, false, true, false]
        );

        // Writing and zeroing touch the used ranges only.
        let before = std::fs::read(&path).unwrap();
        let c1 = &m.chunks[1];
        let masked: Vec<u8> = {
            let mut b = master[CS as usize..2 * CS as usize].to_vec();
            c1.mask(&mut b);
            b
        };
        assert_eq!(write_used(&disk, c1, &masked).unwrap(), 4096 + 10_000);
        assert_eq!(zero_used(&disk, &m.chunks[3]).unwrap(), 8900);
        let after = std::fs::read(&path).unwrap();
        for (i, e) in m.chunks.iter().enumerate() {
            let mut at = 0;
            let end = e.len as usize..e.len as usize;
            for r in e.used_ranges().iter().chain(std::iter::once(&end)) {
                let (fa, fb) = (e.offset as usize + at, e.offset as usize + r.start);
                assert_eq!(
                    after[fa..fb],
                    before[fa..fb],
                    "chunk {i}: free bytes written"
                );
                at = r.end;
            }
        }
        assert_eq!(survey(&m, &disk, 1).unwrap(), vec![true; 4]);
    }
}
