//! roomcast's own multicast transport as a benchmark [`Contender`]: the tokio drivers of
//! [`roomcast_mcast`] run in the lab's namespaces (the deploy server on a thread in the server's
//! namespace, one agent per PC on a thread in that PC's namespace), on real sockets and shaped links.
//!
//! The image file is cut into fixed-size blocks that stand for compressed chunks (a random image
//! does not compress, so this is what the store would hold); each PC checks every rebuilt block's
//! sha256 before writing it at its offset, as the agent does. A PC whose output file already holds
//! some blocks (hashed at the block offsets first) only lacks the others: the delta case.

use super::bench::{BenchError, Contender, Delivery};
use super::{Lab, Node};
use roomcast_mcast::{BlockSink, BlockSource, McastAddr, run_receiver, run_sender_with_stats};
use roomcast_proto::mcast::{
    BlockSet, MachineId, RateConfig, Receiver, ReceiverConfig, ReceiverIdentity, Sender,
    SenderConfig, SenderStats, SessionId, Timestamp, Token,
};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::net::{SocketAddr, SocketAddrV4};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Image bytes per second a link of `link_bps` can carry at most with one symbol of
/// `symbol_size` per datagram: the **payload limit**. Every symbol costs the 36-byte roomcast data
/// header, 8 (UDP) + 20 (IPv4) + 14 (Ethernet) bytes on the shaped link.
pub fn payload_limit_bps(link_bps: u64, symbol_size: u16) -> f64 {
    let s = f64::from(symbol_size);
    let frame = s
        + roomcast_proto::mcast::wire::DATA_HEADER_LEN as f64
        + roomcast_proto::mcast::IP_UDP_OVERHEAD as f64
        + roomcast_proto::mcast::ETHERNET_HEADER as f64;
    link_bps as f64 * s / frame
}

/// roomcast's library drivers, in process.
#[derive(Debug)]
pub struct RoomcastLib {
    /// Bytes per block (a chunk).
    pub block_size: usize,
    /// Pacing rate, bits per second of IP packets; `None`: [`RateConfig::for_link`] of the lab's
    /// link rate.
    pub max_bps: Option<u64>,
    /// Token bucket depth in bytes; `None`: that of [`RateConfig::for_link`].
    pub burst_bytes: Option<u32>,
    /// Seal the stream with a session key, as `roomcast deploy` does (issue 20); `false` for the
    /// clear stream the benchmark compares it with.
    pub sealed: bool,
    /// What the sender counted in the last delivery.
    last: Mutex<Option<SenderStats>>,
    /// CPU time of the receivers' threads in the last delivery, summed.
    last_rx_cpu: Mutex<Option<std::time::Duration>>,
}

impl RoomcastLib {
    /// 1 MiB blocks (the store's chunk size), pacing for the lab's link rate.
    pub fn new() -> Self {
        Self {
            block_size: 1 << 20,
            max_bps: None,
            burst_bytes: None,
            sealed: true,
            last: Mutex::new(None),
            last_rx_cpu: Mutex::new(None),
        }
    }

    /// Same, with a token bucket `bytes` deep (`None`: the library's default).
    pub fn with_burst(mut self, bytes: Option<u32>) -> Self {
        self.burst_bytes = bytes;
        self
    }

    /// Same, pacing at `bps` (bits per second of IP packets; `None`: the lab's link rate).
    pub fn with_pace(mut self, bps: Option<u64>) -> Self {
        self.max_bps = bps;
        self
    }

    /// The sender's counters of the last delivery.
    pub fn last_stats(&self) -> Option<SenderStats> {
        self.last.lock().ok().and_then(|s| s.clone())
    }
}

impl Default for RoomcastLib {
    fn default() -> Self {
        Self::new()
    }
}

/// The image, cut into blocks, read from the file on demand.
struct FileBlocks {
    file: File,
    block_size: usize,
    lens: Vec<u32>,
}

impl BlockSource for FileBlocks {
    fn read_block(&mut self, index: u32) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; self.lens[index as usize] as usize];
        self.file
            .read_exact_at(&mut buf, index as u64 * self.block_size as u64)?;
        Ok(buf)
    }
}

/// A PC's output file: a block is written at its offset only if its sha256 matches.
struct FileDisk {
    file: File,
    block_size: usize,
    digests: Arc<Vec<[u8; 32]>>,
}

impl BlockSink for FileDisk {
    fn verify_and_write(&mut self, index: u32, data: &[u8]) -> io::Result<bool> {
        let want = self.digests.get(index as usize);
        if want != Some(&<[u8; 32]>::from(Sha256::digest(data))) {
            return Ok(false);
        }
        self.file
            .write_all_at(data, index as u64 * self.block_size as u64)?;
        Ok(true)
    }
}

/// Block lengths and sha256 of the file at `path`, cut every `block_size` bytes.
pub fn block_digests(path: &Path, block_size: usize) -> io::Result<(Vec<u32>, Vec<[u8; 32]>)> {
    let mut f = File::open(path)?;
    let mut lens = Vec::new();
    let mut digests = Vec::new();
    let mut buf = vec![0; block_size];
    loop {
        let n = read_full(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        lens.push(n as u32);
        digests.push(Sha256::digest(&buf[..n]).into());
        if n < block_size {
            break;
        }
    }
    Ok((lens, digests))
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The blocks of `digests` that the file at `path` already holds (missing file: none).
pub fn have_from_disk(
    path: &Path,
    block_size: usize,
    lens: &[u32],
    digests: &[[u8; 32]],
) -> io::Result<BlockSet> {
    let mut have = BlockSet::new(digests.len() as u32);
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(have),
        Err(e) => return Err(e),
    };
    let size = f.metadata()?.len();
    let mut buf = vec![0; block_size];
    for (i, (len, want)) in lens.iter().zip(digests).enumerate() {
        let at = i as u64 * block_size as u64;
        let len = *len as usize;
        if at + len as u64 > size {
            break;
        }
        f.read_exact_at(&mut buf[..len], at)?;
        if <[u8; 32]>::from(Sha256::digest(&buf[..len])) == *want {
            have.insert(i as u32);
        }
    }
    Ok(have)
}

fn machine(i: usize) -> (MachineId, Token) {
    let b = (i as u16).to_be_bytes();
    let mut token = [0x5a; 32];
    token[..2].copy_from_slice(&b);
    (MachineId([2, 0x52, 0x43, 0, b[0], b[1]]), Token(token))
}

fn failed(node: &Node, detail: String) -> BenchError {
    BenchError::Failed {
        contender: "roomcast-lib".into(),
        node: node.role().to_owned(),
        detail,
    }
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

impl Contender for RoomcastLib {
    fn name(&self) -> &str {
        if self.sealed {
            "roomcast-lib"
        } else {
            "roomcast-lib-clear"
        }
    }

    fn receiver_cpu(&self) -> Option<std::time::Duration> {
        *self.last_rx_cpu.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deliver(&self, d: &Delivery<'_>) -> Result<(), BenchError> {
        let lab: &Lab = d.lab;
        let srv = lab.server();
        let (lens, digests) =
            block_digests(d.image, self.block_size).map_err(|source| BenchError::Io {
                step: "cutting the image into blocks".into(),
                path: d.image.to_owned(),
                source,
            })?;
        let digests = Arc::new(digests);
        let group = SocketAddrV4::new(d.groups.0.addr(), d.portbase);
        let control = SocketAddr::V4(SocketAddrV4::new(srv.addr().addr(), d.portbase + 50));
        let listener = srv
            .run(move || std::net::TcpListener::bind(control))?
            .map_err(|e| failed(srv, format!("bind {control}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| failed(srv, e.to_string()))?;
        let mut rate = lab
            .rate()
            .map_or_else(RateConfig::default, |t| RateConfig::for_link(t.rate_bit));
        if let Some(bps) = self.max_bps {
            rate.max_bps = bps;
            rate.min_bps = bps / 10;
        }
        if let Some(b) = self.burst_bytes {
            rate.burst_bytes = b;
        }
        let n = lab.pcs().len();
        let cfg = SenderConfig {
            rate,
            expect: n,
            ..SenderConfig::default()
        };
        let roster: Vec<_> = (0..n).map(machine).collect();
        let image = File::open(d.image).map_err(|source| BenchError::Io {
            step: "opening the image".into(),
            path: d.image.to_owned(),
            source,
        })?;
        let mut source = FileBlocks {
            file: image,
            block_size: self.block_size,
            lens: lens.clone(),
        };
        let srv_addr = srv.addr().addr();
        let key = self
            .sealed
            .then(|| roomcast_mcast::SessionKey(rand::random()));
        let timeout = d.timeout;
        let lens2 = lens.clone();
        let server = srv.spawn(move || -> Result<_, String> {
            let rt = runtime().map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let sender = Sender::new(
                    cfg,
                    SessionId(rand::random()),
                    &lens2,
                    roster,
                    Timestamp::ZERO,
                )
                .map_err(|e| e.to_string())?;
                let listener =
                    tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                let addr = McastAddr {
                    interface: srv_addr,
                    group,
                    key,
                };
                tokio::time::timeout(
                    timeout,
                    run_sender_with_stats(sender, listener, addr, &mut source),
                )
                .await
                .map_err(|_| format!("no end after {timeout:?}"))?
                .map_err(|e| e.to_string())
            })
        });
        let mut pcs = Vec::new();
        for (i, (pc, out)) in lab.pcs().iter().zip(d.outputs).enumerate() {
            let have = have_from_disk(out, self.block_size, &lens, &digests).map_err(|source| {
                BenchError::Io {
                    step: "hashing what the PC already holds".into(),
                    path: out.clone(),
                    source,
                }
            })?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(out)
                .map_err(|source| BenchError::Io {
                    step: "opening the PC's output".into(),
                    path: out.clone(),
                    source,
                })?;
            let size: u64 = lens.iter().map(|&l| u64::from(l)).sum();
            file.set_len(size).map_err(|source| BenchError::Io {
                step: "sizing the PC's output".into(),
                path: out.clone(),
                source,
            })?;
            let mut disk = FileDisk {
                file,
                block_size: self.block_size,
                digests: digests.clone(),
            };
            let (machine, token) = machine(i);
            let interface = pc.addr().addr();
            pcs.push((
                pc,
                pc.spawn(move || -> Result<(bool, std::time::Duration), String> {
                    let rx = Receiver::new(
                        ReceiverConfig::default(),
                        ReceiverIdentity {
                            machine,
                            token,
                            disk_size: u64::MAX,
                        },
                        have,
                    );
                    let addr = McastAddr {
                        interface,
                        group,
                        key,
                    };
                    // Stalled for the whole budget: the same verdict as a timeout.
                    let r = run_receiver(rx, control, addr, &mut disk, timeout)
                        .map_err(|e| format!("{e} (budget {timeout:?})"));
                    r.map(|done| (done, super::bench::thread_cpu()))
                }),
            ));
        }
        let mut first_error = None;
        let mut rx_cpu = std::time::Duration::ZERO;
        for (pc, h) in pcs {
            let r = match h.join() {
                Ok(Ok(Ok((true, cpu)))) => {
                    rx_cpu += cpu;
                    Ok(())
                }
                Ok(Ok(Ok((false, _)))) => {
                    Err(failed(pc, "the session ended without every block".into()))
                }
                Ok(Ok(Err(e))) => Err(failed(pc, e)),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(failed(pc, "agent thread panicked".into())),
            };
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        *self.last_rx_cpu.lock().unwrap_or_else(|p| p.into_inner()) = Some(rx_cpu);
        let r = match server.join() {
            Ok(Ok(Ok((reports, stats)))) => {
                if let Ok(mut s) = self.last.lock() {
                    *s = Some(stats);
                }
                if reports.iter().all(|r| r.complete) {
                    Ok(())
                } else {
                    Err(failed(srv, format!("incomplete PCs: {reports:?}")))
                }
            }
            Ok(Ok(Err(e))) => Err(failed(srv, e)),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(failed(srv, "server thread panicked".into())),
        };
        match first_error {
            Some(e) => Err(e),
            None => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_limit_counts_every_header() {
        // 1400 of every 1478 bytes on a 200 Mbit/s link are image bytes.
        let l = payload_limit_bps(200_000_000, 1400);
        assert!((l - 200e6 * 1400.0 / 1478.0).abs() < 1.0, "{l}");
    }

    #[test]
    fn have_from_disk_finds_the_blocks_already_there() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("image");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&image, &data).unwrap();
        let (lens, digests) = block_digests(&image, 4096).unwrap();
        assert_eq!(lens, vec![4096, 4096, 1808]);
        let mut old = data.clone();
        old[5000] ^= 1; // block 1 differs
        let disk = dir.path().join("disk");
        std::fs::write(&disk, &old).unwrap();
        let have = have_from_disk(&disk, 4096, &lens, &digests).unwrap();
        assert_eq!(have.iter().collect::<Vec<_>>(), vec![0, 2]);
        let none = have_from_disk(&dir.path().join("absent"), 4096, &lens, &digests).unwrap();
        assert_eq!(none.count(), 0);
    }
}

/// Samples a link's byte counter while a delivery runs, to tell its steady rate from its start and
/// its tail. Reads the root-namespace end of a PC's veth (`/sys/class/net/<host_if>/statistics/
/// tx_bytes`: the Ethernet frames the switch delivered to that PC), so it measures any contender the
/// same way.
#[derive(Debug)]
pub struct LinkMeter {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(f64, u64)>>>,
}

impl LinkMeter {
    /// Starts sampling `host_if`'s transmitted bytes every `every`.
    pub fn start(host_if: &str, every: std::time::Duration) -> Self {
        let path = format!("/sys/class/net/{host_if}/statistics/tx_bytes");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            let mut samples = Vec::new();
            loop {
                if let Some(v) = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                {
                    samples.push((t0.elapsed().as_secs_f64(), v));
                }
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    return samples;
                }
                std::thread::sleep(every);
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and returns the samples: (seconds since start, counter).
    pub fn finish(mut self) -> Vec<(f64, u64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for LinkMeter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What a [`LinkMeter`] saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkUse {
    /// Bytes on the link during the whole delivery.
    pub bytes: u64,
    /// Bits per second between 10 % and 90 % of those bytes: the steady state, without the
    /// session's start and its tail.
    pub steady_bps: f64,
}

/// Total bytes and steady rate of a series of (seconds, counter) samples; `None` with too few.
pub fn link_use(samples: &[(f64, u64)]) -> Option<LinkUse> {
    let (&(_, first), &(_, last)) = (samples.first()?, samples.last()?);
    let bytes = last.checked_sub(first)?;
    if bytes == 0 {
        return None;
    }
    // First sample at or past a fraction of the bytes.
    let at = |f: f64| {
        let mark = first + (bytes as f64 * f) as u64;
        samples.iter().find(|(_, v)| *v >= mark).copied()
    };
    let (t10, v10) = at(0.1)?;
    let (t90, v90) = at(0.9)?;
    if t90 <= t10 {
        return None;
    }
    Some(LinkUse {
        bytes,
        steady_bps: (v90 - v10) as f64 * 8.0 / (t90 - t10),
    })
}

#[cfg(test)]
mod meter_tests {
    use super::*;

    #[test]
    fn steady_rate_leaves_out_start_and_tail() {
        // 1 s of nothing (session start), 10 s at 1000 bytes/s, 2 s of tail at 100 bytes/s.
        let mut s = Vec::new();
        let mut v = 5_000u64;
        for i in 0..=130 {
            let t = f64::from(i) / 10.0;
            s.push((t, v));
            v += if t < 1.0 {
                0
            } else if t < 11.0 {
                100
            } else {
                10
            };
        }
        let u = link_use(&s).unwrap();
        assert_eq!(u.bytes, 10_000 + 200);
        assert!((u.steady_bps - 8000.0).abs() < 100.0, "{u:?}");
        assert_eq!(link_use(&s[..1]), None);
    }
}

/// roomcast end to end with its real binaries: the image is captured into a store first (not
/// timed), then `roomcast deploy` runs in the server's namespace and `roomcast agent` in each PC's,
/// onto a blank disk file of the image's size. The agent surveys its disk, takes the stream,
/// verifies every chunk against the signed manifest and writes it.
#[derive(Debug)]
pub struct RoomcastCli {
    bin: std::path::PathBuf,
    /// `--rate` given to deploy, bits per second; `None`: [`RateConfig::for_link`] of the lab.
    pub rate_bps: Option<u64>,
    /// The stream in clear (`roomcast-clear`): the binary must be built with the
    /// `bench-clear-stream` feature, and a delivery whose deploy did not say so fails.
    pub clear: bool,
    prepared: Mutex<Option<Prepared>>,
    /// Each PC's time to done in the last delivery (from the deploy's start), by role.
    last_times: Mutex<Vec<(String, std::time::Duration)>>,
    /// The agents' CPU time in the last delivery, summed.
    last_agents_cpu: Mutex<Option<std::time::Duration>>,
}

#[derive(Debug)]
struct Prepared {
    image: std::path::PathBuf,
    store: std::path::PathBuf,
    pub_file: std::path::PathBuf,
    id: String,
    /// Compressed bytes of all chunks (what the stream must carry at least).
    compressed: u64,
}

impl RoomcastCli {
    /// The contender running the `roomcast` binary at `bin`.
    pub fn new(bin: std::path::PathBuf) -> Self {
        Self {
            bin,
            rate_bps: None,
            clear: false,
            prepared: Mutex::new(None),
            last_times: Mutex::new(Vec::new()),
            last_agents_cpu: Mutex::new(None),
        }
    }

    /// Each PC's time from the deploy's start to its agent's exit in the last delivery, by role
    /// (`pc0`, ...): the room's time without one PC, for instance.
    pub fn last_pc_times(&self) -> Vec<(String, std::time::Duration)> {
        self.last_times
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Captures `image` into a new store under `dir` (1 MiB chunks, zstd 3) and returns the store,
    /// the trusted public key, the image id and the compressed size.
    fn capture(image: &Path, dir: &Path) -> Result<Prepared, String> {
        use roomcast_store::Store;
        use roomcast_store::capture::{self, CaptureOptions};
        use roomcast_store::chunk::ChunkSize;
        use roomcast_store::keys::{self, Signer};
        use roomcast_store::manifest::ImageLabel;
        let root = dir.join(format!("roomcast-store-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&root)
            .map_err(|e| format!("store folder {}: {e}", root.display()))?;
        let (key_file, pub_file, _) =
            keys::generate_files(&root.join("keys")).map_err(|e| e.to_string())?;
        let store = Store::open_or_create(&root.join("store")).map_err(|e| e.to_string())?;
        store.trust(&pub_file).map_err(|e| e.to_string())?;
        let report = capture::capture(
            &store,
            image,
            ImageLabel {
                name: "bench".into(),
                version: "1".into(),
                profile: None,
                captured_by: "bench@lab".into(),
                captured_at: "2026-11-28T00:00:00Z".into(),
            },
            &Signer::load(&key_file).map_err(|e| e.to_string())?,
            &CaptureOptions {
                chunk_size: ChunkSize::new(1 << 20).map_err(|e| e.to_string())?,
                level: 3,
                workers: 2,
            },
            &|_| {},
        )
        .map_err(|e| format!("capturing {}: {e}", image.display()))?;
        let compressed = report.compressed_bytes;
        Ok(Prepared {
            image: image.to_owned(),
            store: root.join("store"),
            pub_file,
            id: report.id.to_hex(),
            compressed,
        })
    }

    /// Compressed size of the image prepared last, bytes.
    pub fn compressed_bytes(&self) -> Option<u64> {
        self.prepared
            .lock()
            .ok()
            .and_then(|p| p.as_ref().map(|p| p.compressed))
    }
}

impl Contender for RoomcastCli {
    fn name(&self) -> &str {
        if self.clear {
            "roomcast-clear"
        } else {
            "roomcast"
        }
    }

    fn receiver_cpu(&self) -> Option<std::time::Duration> {
        *self
            .last_agents_cpu
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn prepare(&self, image: &Path, work_dir: &Path) -> Result<(), BenchError> {
        let mut p = self.prepared.lock().map_err(|_| BenchError::Failed {
            contender: "roomcast".into(),
            node: "bench".into(),
            detail: "poisoned".into(),
        })?;
        if p.as_ref().is_some_and(|p| p.image == image) {
            return Ok(());
        }
        *p = Some(
            Self::capture(image, work_dir).map_err(|detail| BenchError::Failed {
                contender: "roomcast".into(),
                node: "bench".into(),
                detail,
            })?,
        );
        Ok(())
    }

    fn deliver(&self, d: &Delivery<'_>) -> Result<(), BenchError> {
        let (store, pub_file, id) = {
            let p = self.prepared.lock().ok();
            let p = p
                .as_ref()
                .and_then(|p| p.as_ref())
                .ok_or_else(|| BenchError::Failed {
                    contender: self.name().into(),
                    node: "bench".into(),
                    detail: "deliver before prepare".into(),
                })?;
            (p.store.clone(), p.pub_file.clone(), p.id.clone())
        };
        let size = std::fs::metadata(d.image)
            .map_err(|source| BenchError::Io {
                step: "reading the image size".into(),
                path: d.image.to_owned(),
                source,
            })?
            .len();
        // Each PC's disk: keep what is there (the delta case), else a blank disk of the image's size.
        for out in d.outputs {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(out)
                .and_then(|f| {
                    if f.metadata()?.len() < size {
                        f.set_len(size)?;
                    }
                    Ok(f)
                });
            f.map_err(|source| BenchError::Io {
                step: "making the PC's disk".into(),
                path: out.clone(),
                source,
            })?;
        }
        let reports = d
            .log_dir
            .join(format!("deploy-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&reports).map_err(|source| BenchError::Io {
            step: "reports folder".into(),
            path: reports.clone(),
            source,
        })?;
        let srv = d.lab.server();
        let rate = self
            .rate_bps
            .or_else(|| {
                d.lab
                    .rate()
                    .map(|t| RateConfig::for_link(t.rate_bit).max_bps)
            })
            .unwrap_or(RateConfig::default().max_bps);
        let http_port = d.portbase + 51;
        let started = std::time::Instant::now();
        let mut procs = super::bench::Processes::new(self.name());
        let mut c = srv.command(&self.bin.to_string_lossy());
        c.arg("deploy")
            .arg("--store")
            .arg(&store)
            .args(["--image", &id, "--interface", srv.ifname()])
            .args(["--expect", &d.lab.pcs().len().to_string()])
            .arg("--reports")
            .arg(&reports)
            .args(["--group", &format!("{}:{}", d.groups.0, d.portbase)])
            .args(["--control-port", &(d.portbase + 50).to_string()])
            .args(["--http-port", &http_port.to_string()])
            .args(["--rate", &rate.to_string(), "--catch-up-wait", "30"]);
        if self.clear {
            c.env(roomcast_mcast::BENCH_CLEAR_STREAM, "1");
        }
        procs.spawn(srv, c, d.log_dir)?;
        let tokens_file = reports.join("tokens");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let tokens: Vec<String> = loop {
            if let Ok(text) = std::fs::read_to_string(&tokens_file) {
                let t: Vec<String> = text
                    .lines()
                    .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
                    .collect();
                if t.len() >= d.lab.pcs().len() {
                    break t;
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(BenchError::Failed {
                    contender: "roomcast".into(),
                    node: "srv".into(),
                    detail: format!("no tokens in {} after 30 s", tokens_file.display()),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let url = format!("http://{}:{http_port}", srv.addr().addr());
        for ((pc, out), token) in d.lab.pcs().iter().zip(d.outputs).zip(&tokens) {
            let mut c = pc.command(&self.bin.to_string_lossy());
            c.args(["agent", "--server", &url, "--token", token])
                .arg("--disk")
                .arg(out)
                .arg("--trusted-key")
                .arg(&pub_file)
                .args(["--workers", "2"]);
            if self.clear {
                c.env(roomcast_mcast::BENCH_CLEAR_STREAM, "1");
            }
            procs.spawn(pc, c, d.log_dir)?;
        }
        procs.wait_all(d.timeout)?;
        let said_clear = procs
            .log_path("srv")
            .and_then(|log| std::fs::read_to_string(log).ok())
            .is_some_and(|text| text.contains("stream in clear"));
        if said_clear != self.clear {
            return Err(BenchError::Failed {
                contender: self.name().into(),
                node: "srv".into(),
                detail: if self.clear {
                    format!(
                        "the deploy sealed its stream: build {} with --features bench-clear-stream",
                        self.bin.display()
                    )
                } else {
                    "the deploy streamed in clear".into()
                },
            });
        }
        *self
            .last_agents_cpu
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = procs
            .cpu_times()
            .into_iter()
            .filter(|(role, _)| role != "srv")
            .map(|(_, cpu)| cpu)
            .sum();
        if let Ok(mut t) = self.last_times.lock() {
            *t = procs
                .exit_times()
                .into_iter()
                .filter(|(role, _)| role != "srv")
                .filter_map(|(role, at)| at.map(|at| (role, at - started)))
                .collect();
        }
        Ok(())
    }
}
