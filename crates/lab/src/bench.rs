//! Deliveries of one image from the lab's server to every PC, timed and verified: the common frame
//! of the multicast benchmark (`examples/bench_udpcast.rs`) and of the lab tests.
//!
//! Each way of delivering an image is a [`Contender`]; [`run_case`] times one contender in one lab
//! and checks every PC's copy bit for bit, so contenders are compared in the same run, on the same
//! image, over the same links. Debian's udpcast ([`Udpcast`]) is the reference.

use super::{Lab, LabError, LabGroup, Node};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The UDP ports every contender uses (from [`Delivery::portbase`]) and the lab's loss rules cover.
pub const PORTS: std::ops::RangeInclusive<u16> = 9000..=9099;

/// Why a delivery failed, naming the contender and the PC or step.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The lab itself failed.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// A file could not be written or read.
    #[error("{step}: {path}: {source}")]
    Io {
        /// What was being done.
        step: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A process of the contender failed or timed out.
    #[error("{contender} on {node}: {detail}")]
    Failed {
        /// The contender.
        contender: String,
        /// Which machine (`srv`, `pc3`).
        node: String,
        /// Exit status, timeout, and the end of its log.
        detail: String,
    },
    /// A PC's copy differs from the image.
    #[error("{contender}: {node}'s copy {path} differs from the image (sha256 {got}, want {want})")]
    Corrupt {
        /// The contender.
        contender: String,
        /// Which PC.
        node: String,
        /// Its copy.
        path: PathBuf,
        /// sha256 of the copy.
        got: String,
        /// sha256 of the image.
        want: String,
    },
}

/// Where a delivery happens: the lab, the image on the server, and one output path per PC.
#[derive(Debug)]
pub struct Delivery<'a> {
    /// The room.
    pub lab: &'a Lab,
    /// The image file, readable from the server's namespace (same filesystem).
    pub image: &'a Path,
    /// Where PC `i` must write its copy.
    pub outputs: &'a [PathBuf],
    /// Where processes may write logs.
    pub log_dir: &'a Path,
    /// The multicast groups the contender may use (data, rendez-vous); inside 239.255.0.0/16.
    pub groups: (LabGroup, LabGroup),
    /// First UDP port the contender may use (it may use up to 100 ports from there; the lab's loss
    /// rules cover this range).
    pub portbase: u16,
    /// Give up after this long.
    pub timeout: Duration,
}

/// A way of delivering an image to every PC of a lab. Implement it for roomcast's own sender to
/// measure it side by side with udpcast.
pub trait Contender {
    /// Short name for reports (`udpcast`, `roomcast`).
    fn name(&self) -> &str;

    /// Copies `d.image` to every `d.outputs[i]` on PC `i` and returns once every PC has it (or an
    /// error). The caller times this call and verifies the copies.
    fn deliver(&self, d: &Delivery<'_>) -> Result<(), BenchError>;

    /// Work done once per image before any timed delivery (capturing it into a store, say), in
    /// `work_dir`. Nothing by default.
    fn prepare(&self, _image: &Path, _work_dir: &Path) -> Result<(), BenchError> {
        Ok(())
    }

    /// CPU time (user + system) the PCs' side spent in the last delivery, summed over the PCs: the
    /// receiver threads of a contender that runs them in this process, the agent processes of one
    /// that runs the real binaries (`None`: not measured).
    fn receiver_cpu(&self) -> Option<Duration> {
        None
    }
}

/// CPU time (user + system) of the calling thread so far (`getrusage(RUSAGE_THREAD)`).
pub fn thread_cpu() -> Duration {
    // SAFETY: getrusage writes one rusage into the zeroed local it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Debian's udpcast (`udp-sender` / `udp-receiver`), what FOG and Clonezilla use.
#[derive(Debug, Clone, Default)]
pub struct Udpcast;

impl Contender for Udpcast {
    fn name(&self) -> &str {
        "udpcast"
    }

    fn deliver(&self, d: &Delivery<'_>) -> Result<(), BenchError> {
        let portbase = d.portbase.to_string();
        let (data, rdv) = (d.groups.0.to_string(), d.groups.1.to_string());
        let mut procs = Processes::new(self.name());
        for (pc, out) in d.lab.pcs().iter().zip(d.outputs) {
            let mut c = pc.command("udp-receiver");
            c.args([
                "--interface",
                pc.ifname(),
                "--nokbd",
                "--portbase",
                &portbase,
            ]);
            c.args(["--mcast-rdv-address", &rdv]);
            // Its output on stdout, into the PC's disk as it is: `--file` would truncate it.
            let disk = std::fs::OpenOptions::new()
                .write(true)
                .open(out)
                .map_err(|source| BenchError::Io {
                    step: "opening a PC's disk".into(),
                    path: out.clone(),
                    source,
                })?;
            procs.spawn_with_stdout(pc, c, d.log_dir, Some(disk))?;
        }
        let srv = d.lab.server();
        let n = d.lab.pcs().len().to_string();
        let mut c = srv.command("udp-sender");
        c.args([
            "--interface",
            srv.ifname(),
            "--nokbd",
            "--portbase",
            &portbase,
        ]);
        c.args(["--mcast-data-address", &data, "--mcast-rdv-address", &rdv]);
        // Without hello retransmission, a PC whose one rendezvous packet is lost waits forever
        // (seen here at 1 % loss); udpcast's own remedy is to repeat the hello.
        c.args(["--rexmit-hello-interval", "500"]);
        c.args(["--min-receivers", &n, "--file"]).arg(d.image);
        procs.spawn(srv, c, d.log_dir)?;
        procs.wait_all(d.timeout)
    }
}

/// Unicast imaging, what FOG's and most tools' non-multicast mode does: every PC pulls its own copy
/// over TCP from the server at the same time, so the server's link carries the image N times.
/// In-process (a thread in each namespace), no external program. nftables loss rules only cover UDP,
/// so this contender sees no loss.
#[derive(Debug, Clone, Default)]
pub struct UnicastTcp;

impl Contender for UnicastTcp {
    fn name(&self) -> &str {
        "unicast-tcp"
    }

    fn deliver(&self, d: &Delivery<'_>) -> Result<(), BenchError> {
        let srv = d.lab.server();
        let port = d.portbase;
        let bind = (srv.addr().addr(), port);
        let failed = |node: &str, detail: String| BenchError::Failed {
            contender: self.name().to_owned(),
            node: node.to_owned(),
            detail,
        };
        let listener = srv
            .run(|| std::net::TcpListener::bind(bind))?
            .map_err(|e| failed("srv", format!("bind {}:{port}: {e}", bind.0)))?;
        let n = d.lab.pcs().len();
        let image = d.image.to_owned();
        let server = std::thread::spawn(move || -> std::io::Result<()> {
            let mut senders = Vec::new();
            for _ in 0..n {
                let (mut conn, _) = listener.accept()?;
                let image = image.clone();
                senders.push(std::thread::spawn(move || -> std::io::Result<u64> {
                    std::io::copy(&mut File::open(image)?, &mut conn)
                }));
            }
            for s in senders {
                s.join()
                    .map_err(|_| std::io::Error::other("sender thread panicked"))??;
            }
            Ok(())
        });
        let receivers: Vec<_> = d
            .lab
            .pcs()
            .iter()
            .zip(d.outputs)
            .map(|(pc, out)| {
                let out = out.clone();
                let role = pc.role().to_owned();
                (
                    role,
                    pc.spawn(move || -> std::io::Result<u64> {
                        let mut conn = std::net::TcpStream::connect(bind)?;
                        let mut disk = std::fs::OpenOptions::new().write(true).open(out)?;
                        std::io::copy(&mut conn, &mut disk)
                    }),
                )
            })
            .collect();
        for (role, r) in receivers {
            match r.join() {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(e))) => return Err(failed(&role, e.to_string())),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(failed(&role, "receiver thread panicked".into())),
            }
        }
        match server.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(failed("srv", e.to_string())),
            Err(_) => Err(failed("srv", "server thread panicked".into())),
        }
    }
}

/// Child processes of one delivery; any still running when this drops are killed.
#[derive(Debug)]
pub struct Processes {
    contender: String,
    children: Vec<Spawned>,
}

/// One process of a delivery and what became of it.
#[derive(Debug)]
struct Spawned {
    /// Role of the node it runs on.
    role: String,
    log: PathBuf,
    child: Child,
    /// When it was seen to have exited successfully.
    exited: Option<Instant>,
    /// Its CPU time (user + system) once reaped, from `wait4(2)`: `Some` means reaped.
    cpu: Option<Duration>,
}

/// Reaps `child` if it has exited, with its CPU time (user + system) from `wait4(2)`: what
/// `Child::try_wait` does, plus the resource usage it does not return.
fn try_wait_with_cpu(child: &Child) -> std::io::Result<Option<(ExitStatus, Duration)>> {
    use std::os::unix::process::ExitStatusExt;
    let pid = libc::pid_t::try_from(child.id()).map_err(std::io::Error::other)?;
    let mut status: libc::c_int = 0;
    // SAFETY: wait4 writes one int and one rusage into the live locals it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
    match rc {
        0 => Ok(None),
        r if r == pid => {
            let tv = |t: libc::timeval| {
                Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
            };
            Ok(Some((
                ExitStatus::from_raw(status),
                tv(usage.ru_utime) + tv(usage.ru_stime),
            )))
        }
        _ => Err(std::io::Error::last_os_error()),
    }
}

impl Processes {
    /// No process yet.
    pub fn new(contender: &str) -> Self {
        Self {
            contender: contender.to_owned(),
            children: Vec::new(),
        }
    }

    /// Spawns `cmd` (built with [`Node::command`]) with stdout and stderr to `<log_dir>/<role>.log`.
    pub fn spawn(&mut self, node: &Node, cmd: Command, log_dir: &Path) -> Result<(), BenchError> {
        self.spawn_with_stdout(node, cmd, log_dir, None)
    }

    /// [`Processes::spawn`], with stdout to `stdout` if given (stderr still to the log).
    pub fn spawn_with_stdout(
        &mut self,
        node: &Node,
        mut cmd: Command,
        log_dir: &Path,
        stdout: Option<File>,
    ) -> Result<(), BenchError> {
        let log = log_dir.join(format!("{}-{}.log", self.contender, node.role()));
        let io_err = |source| BenchError::Io {
            step: format!("{}: starting a process on {}", self.contender, node.role()),
            path: log.clone(),
            source,
        };
        let err = File::create(&log).map_err(io_err)?;
        let out = match stdout {
            Some(f) => f,
            None => err.try_clone().map_err(io_err)?,
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io_err)?;
        self.children.push(Spawned {
            role: node.role().to_owned(),
            log,
            child,
            exited: None,
            cpu: None,
        });
        Ok(())
    }

    /// Waits until every process exited successfully; the first failure or the timeout kills the
    /// rest and is returned with the end of the failed process's log.
    pub fn wait_all(&mut self, timeout: Duration) -> Result<(), BenchError> {
        let deadline = Instant::now() + timeout;
        let mut running: Vec<usize> = (0..self.children.len()).collect();
        while !running.is_empty() {
            let mut still = Vec::new();
            for i in running {
                let spawned = &mut self.children[i];
                let waited = try_wait_with_cpu(&spawned.child);
                if let Ok(Some((_, cpu))) = &waited {
                    spawned.cpu = Some(*cpu);
                }
                match waited.map(|w| w.map(|(status, _)| status)) {
                    Ok(Some(status)) if status.success() => {
                        spawned.exited = Some(Instant::now());
                    }
                    Ok(Some(status)) => {
                        return Err(self.failure(i, &format!("exited with {status}")));
                    }
                    Ok(None) => still.push(i),
                    Err(e) => {
                        let detail =
                            format!("cannot wait for it ({e}); log {}", spawned.log.display());
                        let role = spawned.role.clone();
                        return Err(BenchError::Failed {
                            contender: self.contender.clone(),
                            node: role,
                            detail,
                        });
                    }
                }
            }
            running = still;
            if !running.is_empty() && Instant::now() > deadline {
                // Every stuck process's log: which side waits for which is the diagnosis.
                let logs: Vec<String> = running[1..]
                    .iter()
                    .map(|&i| format!("{}: {}", self.children[i].role, self.log_tail(i)))
                    .collect();
                let what = format!(
                    "still running after {timeout:?}; also still running: [{}]",
                    logs.join("; ")
                );
                return Err(self.failure(running[0], &what));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// When each process was seen to have exited successfully (by [`Processes::wait_all`], within
    /// its 20 ms polling), with its node's role, in spawn order.
    pub fn exit_times(&self) -> Vec<(String, Option<Instant>)> {
        self.children
            .iter()
            .map(|c| (c.role.clone(), c.exited))
            .collect()
    }

    /// CPU time (user + system) of each process that exited, with its node's role, in spawn order.
    pub fn cpu_times(&self) -> Vec<(String, Option<Duration>)> {
        self.children
            .iter()
            .map(|c| (c.role.clone(), c.cpu))
            .collect()
    }

    /// The log of the first process started on the node with role `role`.
    pub fn log_path(&self, role: &str) -> Option<&Path> {
        self.children
            .iter()
            .find(|c| c.role == role)
            .map(|c| c.log.as_path())
    }

    fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.children[i].log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    fn failure(&self, i: usize, what: &str) -> BenchError {
        let Spawned { role, log, .. } = &self.children[i];
        BenchError::Failed {
            contender: self.contender.clone(),
            node: role.clone(),
            detail: format!("{what}; log {}: {}", log.display(), self.log_tail(i)),
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        // A reaped child's pid may already belong to another process: only the others are killed.
        for c in &mut self.children {
            if c.cpu.is_none() && matches!(try_wait_with_cpu(&c.child), Ok(None)) {
                let _ = c.child.kill();
                let _ = c.child.wait();
            }
        }
    }
}

/// Writes `bytes` of random data to `path` (incompressible and without repeated chunks, like the
/// worst case of a disk image). Read from the kernel's generator: fast even in a debug build.
pub fn random_image(path: &Path, bytes: u64) -> Result<(), BenchError> {
    let io_err = |source| BenchError::Io {
        step: "writing the random image".into(),
        path: path.to_owned(),
        source,
    };
    let mut f = File::create(path).map_err(io_err)?;
    let urandom = File::open("/dev/urandom").map_err(io_err)?;
    let copied = std::io::copy(&mut urandom.take(bytes), &mut f).map_err(io_err)?;
    if copied != bytes {
        return Err(io_err(std::io::Error::other(format!(
            "only {copied} of {bytes} random bytes written"
        ))));
    }
    f.sync_all().map_err(io_err)
}

/// Writes `bytes` to `path` that compress like installed software: this machine's files under
/// `/usr` (programs, libraries, documentation, some of it already compressed), read whole in
/// name order, with one MiB of random data in every three (what a disk's media, archives and
/// installers add). No chunk repeats unless `/usr` holds the same file twice. The ratio it
/// compresses to is what the benchmark prints, not a claim about any PC.
pub fn system_files_image(path: &Path, bytes: u64) -> Result<(), BenchError> {
    const MIB: u64 = 1 << 20;
    let io_err = |source| BenchError::Io {
        step: "writing the image of system files".into(),
        path: path.to_owned(),
        source,
    };
    let mut out = std::io::BufWriter::new(File::create(path).map_err(io_err)?);
    let mut urandom = File::open("/dev/urandom").map_err(io_err)?;
    let mut files = Vec::new();
    let mut dirs = vec![PathBuf::from("/usr")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<(PathBuf, std::fs::FileType)> = entries
            .flatten()
            .filter_map(|e| Some((e.path(), e.file_type().ok()?)))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        files.extend(
            names
                .iter()
                .filter(|(_, t)| t.is_file())
                .map(|(p, _)| p.clone()),
        );
        // Popped last in, so pushed in reverse: the walk goes in name order.
        dirs.extend(
            names
                .into_iter()
                .rev()
                .filter(|(_, t)| t.is_dir())
                .map(|(p, _)| p),
        );
        if files.len() > 200_000 {
            break;
        }
    }
    let mut written = 0u64;
    let mut files = files.into_iter();
    let mut current: Option<File> = None;
    let mut buf = vec![0u8; MIB as usize];
    while written < bytes {
        let want = (bytes - written).min(MIB) as usize;
        let block = &mut buf[..want];
        if (written / MIB) % 3 == 2 {
            urandom.read_exact(block).map_err(io_err)?;
        } else {
            let mut filled = 0;
            while filled < want {
                let f = match current.as_mut() {
                    Some(f) => f,
                    None => {
                        let Some(next) = files.next() else {
                            return Err(io_err(std::io::Error::other(
                                "/usr holds fewer bytes than the image asks for",
                            )));
                        };
                        current = File::open(next).ok();
                        continue;
                    }
                };
                match f.read(&mut block[filled..]) {
                    Ok(0) | Err(_) => current = None,
                    Ok(n) => filled += n,
                }
            }
        }
        out.write_all(block).map_err(io_err)?;
        written += want as u64;
    }
    out.into_inner()
        .map_err(|e| io_err(e.into_error()))?
        .sync_all()
        .map_err(io_err)
}

/// sha256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String, BenchError> {
    let io_err = |source| BenchError::Io {
        step: "hashing".into(),
        path: path.to_owned(),
        source,
    };
    let mut f = File::open(path).map_err(io_err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The cases a benchmark measures, shared by the benchmark examples' command lines.
#[derive(Debug, Clone, clap::Args)]
#[command(about = None, long_about = None)]
pub struct CaseArgs {
    /// Room sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,3,10")]
    pub pcs: Vec<usize>,
    /// Loss per PC in percent, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1,5")]
    pub loss: Vec<u8>,
    /// Image size in MiB (random, incompressible).
    #[arg(long, default_value_t = 256)]
    pub mib: u64,
    /// Link rate of every veth, both ends, in Mbit/s.
    #[arg(long, default_value_t = 200)]
    pub mbit: u64,
}

/// One timed, verified delivery.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The contender's name.
    pub contender: String,
    /// Number of PCs.
    pub pcs: usize,
    /// Loss each PC had on the contender's ports, in percent.
    pub loss_percent: u8,
    /// Image size.
    pub bytes: u64,
    /// From the first process started to the last PC done.
    pub elapsed: Duration,
    /// Time the image takes at the lab's link rate, if it has one.
    pub line_rate: Option<Duration>,
    /// Share of the whole machine's CPU time that was busy during the delivery (0..1, NaN when
    /// `/proc/stat` is unreadable): close to 1 means the case measured the machine, not the
    /// contender.
    pub cpu_busy: f64,
    /// CPU time (user + system) of the processes the contender started and waited for during the
    /// delivery (sender and receivers; `None` for a contender that runs in this process).
    pub process_cpu: Option<Duration>,
}

impl CaseResult {
    /// Image bytes delivered per second of end-to-end time, in Mbit/s.
    pub fn throughput_mbit(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64() / 1e6
    }

    /// End-to-end time over line-rate time (1.0 = as fast as the wire).
    pub fn ratio_to_line_rate(&self) -> Option<f64> {
        self.line_rate
            .map(|l| self.elapsed.as_secs_f64() / l.as_secs_f64())
    }
}

/// Makes `path` a PC's disk of at least `bytes`, every page written (zeros after what it holds),
/// before the clock starts: a PC's disk exists before it is imaged. Without this, every page a
/// contender writes into the sparse file in `/dev/shm` is memory allocated and, on this VM,
/// first touched by the host during the copy: 3.0-4.9 s of the 2 cores in one N = 10 run, the
/// most variable cost of the whole run (`copy_folio_from_iter_atomic`, docs/PERFORMANCE.md).
/// Contenders must write into it without truncating it.
pub fn make_disk(path: &Path, bytes: u64) -> Result<(), BenchError> {
    let io_err = |source| BenchError::Io {
        step: "making a PC's disk".into(),
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err)?;
    let mut at = f.metadata().map_err(io_err)?.len();
    f.seek(SeekFrom::Start(at)).map_err(io_err)?;
    let zeros = vec![0u8; 1 << 20];
    while at < bytes {
        let n = (bytes - at).min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n]).map_err(io_err)?;
        at += n as u64;
    }
    Ok(())
}

/// Delivers `image` (whose sha256 is `image_sha256`) with `contender` to every PC of `lab`, into
/// `work_dir`, times it, checks every copy, and removes the copies.
pub fn run_case(
    contender: &dyn Contender,
    lab: &Lab,
    image: &Path,
    image_sha256: &str,
    work_dir: &Path,
    loss_percent: u8,
) -> Result<CaseResult, BenchError> {
    run_case_within(
        contender,
        lab,
        image,
        image_sha256,
        work_dir,
        loss_percent,
        None,
    )
}

/// [`run_case`], giving up after `timeout` (default: the image's time at 20 Mbit/s plus a minute).
pub fn run_case_within(
    contender: &dyn Contender,
    lab: &Lab,
    image: &Path,
    image_sha256: &str,
    work_dir: &Path,
    loss_percent: u8,
    timeout: Option<Duration>,
) -> Result<CaseResult, BenchError> {
    let bytes = std::fs::metadata(image)
        .map_err(|source| BenchError::Io {
            step: "reading the image size".into(),
            path: image.to_owned(),
            source,
        })?
        .len();
    let outputs: Vec<PathBuf> = lab
        .pcs()
        .iter()
        .map(|pc| work_dir.join(format!("{}-{}.out", contender.name(), pc.role())))
        .collect();
    let d = Delivery {
        lab,
        image,
        outputs: &outputs,
        log_dir: work_dir,
        groups: (LabGroup::from_low(42, 1), LabGroup::from_low(42, 2)),
        portbase: *PORTS.start(),
        // The time at 20 Mbit/s plus a minute: only a hang reaches it.
        timeout: timeout.unwrap_or(Duration::from_secs(60 + bytes * 8 / 20_000_000)),
    };
    contender.prepare(image, work_dir)?;
    for out in &outputs {
        make_disk(out, bytes)?;
    }
    let cpu_before = cpu_ticks();
    let children_before = children_cpu();
    let start = Instant::now();
    contender.deliver(&d)?;
    let elapsed = start.elapsed();
    let cpu_busy = busy_share(cpu_before, cpu_ticks());
    let process_cpu = children_cpu()
        .checked_sub(children_before)
        .filter(|d| !d.is_zero());
    for (pc, out) in lab.pcs().iter().zip(&outputs) {
        let got = sha256_file(out)?;
        if got != image_sha256 {
            return Err(BenchError::Corrupt {
                contender: contender.name().to_owned(),
                node: pc.role().to_owned(),
                path: out.clone(),
                got,
                want: image_sha256.to_owned(),
            });
        }
        let _ = std::fs::remove_file(out);
    }
    Ok(CaseResult {
        contender: contender.name().to_owned(),
        pcs: lab.pcs().len(),
        loss_percent,
        bytes,
        elapsed,
        line_rate: lab
            .rate()
            .map(|t| Duration::from_secs_f64(t.line_rate_secs(bytes))),
        cpu_busy,
        process_cpu,
    })
}

/// User + system time of every child process waited for so far (`RUSAGE_CHILDREN`).
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let t = |v: libc::timeval| Duration::new(v.tv_sec as u64, v.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

/// The machine's aggregate CPU counters (the `cpu` line of `/proc/stat`): (busy, total) ticks.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut words = line.split_whitespace();
    if words.next()? != "cpu" {
        return None;
    }
    let fields: Vec<u64> = words
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = fields.iter().sum();
    // idle + iowait: the ticks nobody could use.
    let idle = fields.get(3)? + fields.get(4)?;
    Some((total - idle, total))
}

fn busy_share(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> f64 {
    match (before, after) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (b1 - b0) as f64 / (t1 - t0) as f64,
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod cpu_tests {
    use super::*;

    #[test]
    fn busy_share_counts_everything_but_idle_and_iowait() {
        let before = parse_cpu_line("cpu  100 0 100 700 100 0 0 0 0 0").unwrap();
        let after = parse_cpu_line("cpu  250 0 150 900 100 0 0 0 0 0").unwrap();
        // 200 busy ticks of 400.
        assert_eq!(before, (200, 1000));
        assert!((busy_share(Some(before), Some(after)) - 0.5).abs() < 1e-9);
        assert!(busy_share(None, Some(after)).is_nan());
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4 5 6 7 8"), None);
    }
}
