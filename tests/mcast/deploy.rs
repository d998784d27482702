//! The real binaries end to end in the network-namespace lab: `roomcast deploy` in the server's
//! namespace, `roomcast agent` in each PC's, 200 Mbit/s links. Every disk must end bit-identical
//! to the captured image (sha256 of the whole file), and the agents' reports and the deploy's
//! summary must say how it got there. Needs root (CI runs as root); the lab removes what it made.

use crate::store::util::{Fixture, random};
use roomcast_lab::{Lab, Network, Node, Tbf};
use roomcast_store::Store;
use roomcast_store::capture::{self, CaptureOptions};
use roomcast_store::chunk::ChunkSize;
use roomcast_store::keys::Signer;
use roomcast_store::manifest::{ImageId, ImageLabel};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_roomcast");
const CHUNK: u32 = 256 * 1024;
const DISK: u64 = 24 << 20;
const HTTP_PORT: u16 = 8080;

/// A store with a trusted key and images captured from source files.
pub(super) struct Images {
    dir: tempfile::TempDir,
    store: Store,
    pub_file: PathBuf,
    key_file: PathBuf,
}

impl Images {
    pub(super) fn new() -> Images {
        let f = Fixture::new();
        Images {
            dir: f.dir,
            store: f.store,
            pub_file: f.pub_file,
            key_file: f.key_file,
        }
    }

    /// Captures a disk of `DISK` bytes with `writes` (offset, bytes) on zeros; returns its id and
    /// the source file.
    fn capture(&self, version: &str, writes: &[(u64, Vec<u8>)]) -> (ImageId, PathBuf) {
        let source = self.dir.path().join(format!("source-{version}.img"));
        let f = File::create(&source).unwrap();
        f.set_len(DISK).unwrap();
        for (at, bytes) in writes {
            f.write_all_at(bytes, *at).unwrap();
        }
        drop(f);
        let report = capture::capture(
            &self.store,
            &source,
            ImageLabel {
                name: "mcast-deploy".into(),
                version: version.into(),
                profile: None,
                captured_by: "test@host".into(),
                captured_at: "2026-11-28T12:00:00Z".into(),
            },
            &Signer::load(&self.key_file).unwrap(),
            &CaptureOptions {
                chunk_size: ChunkSize::new(CHUNK).unwrap(),
                level: 3,
                workers: 2,
            },
            &|_| {},
        )
        .unwrap();
        (report.id, source)
    }

    /// The common image: 16 MiB of random data, a text stretch, zeros, and data in the last MiB
    /// (the partition-table region, written last).
    pub(super) fn v1(&self) -> (ImageId, PathBuf) {
        self.capture("1", &v1_writes())
    }
}

fn v1_writes() -> Vec<(u64, Vec<u8>)> {
    vec![
        (0, random(11, 16 << 20)),
        (17 << 20, b"roomcast ".repeat(200_000)),
        (DISK - (512 << 10), random(12, 512 << 10)),
    ]
}

pub(super) fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

pub(super) fn blank_disk(p: &Path) {
    File::create(p).unwrap().set_len(DISK).unwrap();
}

/// A child process with its output in a log file; killed on drop.
pub(super) struct Proc {
    name: String,
    log: PathBuf,
    child: Child,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Proc {
            name: name.into(),
            log,
            child,
        }
    }

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(super) fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {timeout:?}; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits until the log contains `text` `times` times.
    fn wait_for(&mut self, text: &str, times: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.log().matches(text).count() < times {
            assert!(
                Instant::now() < deadline,
                "{}: no {times} x {text:?} after {timeout:?}; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// The agent's JSON report (the last line of its stdout).
    pub(super) fn report(&self) -> serde_json::Value {
        let log = self.log();
        let line = log
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("{}: no report; log:\n{log}", self.name));
        serde_json::from_str(line).unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One deploy: the lab, the server process, the tokens it issued.
pub(super) struct Deploy {
    pub(super) lab: Lab,
    pub(super) dir: tempfile::TempDir,
    pub(super) server: Proc,
    pub(super) tokens: Vec<String>,
}

impl Deploy {
    fn start(images: &Images, id: &ImageId, pcs: usize, loss: u8, extra: &[&str]) -> Deploy {
        Self::start_on(images, id, pcs, loss, Network::Flood, extra)
    }

    /// [`Deploy::start`] on a switch set up as `network`.
    pub(super) fn start_on(
        images: &Images,
        id: &ImageId,
        pcs: usize,
        loss: u8,
        network: Network,
        extra: &[&str],
    ) -> Deploy {
        let lab = Lab::builder()
            .pcs(pcs)
            .rate(Tbf::mbit(200))
            .network(network)
            .build()
            .unwrap();
        if loss > 0 {
            for pc in lab.pcs() {
                lab.set_loss(pc, loss, 9000..=9000).unwrap();
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let reports = dir.path().join("reports");
        let mut cmd = lab.server().command(BIN);
        cmd.arg("deploy")
            .args(["--store".as_ref(), images.store.root().as_os_str()])
            .args(["--image", &id.to_hex()])
            .args(["--interface", lab.server().ifname()])
            .args(["--expect", &pcs.to_string()])
            .args(["--reports".as_ref(), reports.as_os_str()])
            .args(["--group", "239.255.77.3:9000", "--catch-up-wait", "60"])
            .args(extra);
        if !extra.contains(&"--rate") {
            // Just under the 200 Mbit/s links.
            cmd.args(["--rate", "190M"]);
        }
        let mut server = Proc::spawn("deploy", cmd, dir.path());
        let tokens_file = reports.join("tokens");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !tokens_file.exists() {
            assert!(
                Instant::now() < deadline && server.running(),
                "no tokens file; log:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let tokens = std::fs::read_to_string(&tokens_file)
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
            .collect();
        Deploy {
            lab,
            dir,
            server,
            tokens,
        }
    }

    fn url(&self) -> String {
        format!("http://{}:{HTTP_PORT}", self.lab.server().addr().addr())
    }

    pub(super) fn disk(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("pc{i}.img"))
    }

    pub(super) fn agent(&self, images: &Images, i: usize, token: &str, name: &str) -> Proc {
        let pc: &Node = &self.lab.pcs()[i];
        let mut cmd = pc.command(BIN);
        cmd.arg("agent")
            .args(["--server", &self.url()])
            .args(["--token", token])
            .args(["--disk".as_ref(), self.disk(i).as_os_str()])
            .args(["--trusted-key".as_ref(), images.pub_file.as_os_str()])
            .args(["--workers", "2"]);
        Proc::spawn(name, cmd, self.dir.path())
    }

    /// Server bytes sent on its lab interface (the stream plus HTTP).
    fn server_tx_bytes(&self) -> u64 {
        let out = self
            .lab
            .server()
            .command("cat")
            .arg(format!(
                "/sys/class/net/{}/statistics/tx_bytes",
                self.lab.server().ifname()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

/// Every PC starts blank; all of them must end with the image, by multicast.
fn full_deploy(loss: u8) {
    let images = Images::new();
    let (id, source) = images.v1();
    let want = sha256_file(&source);
    let mut d = Deploy::start(&images, &id, 3, loss, &[]);
    let mut agents: Vec<Proc> = (0..3)
        .map(|i| {
            blank_disk(&d.disk(i));
            d.agent(&images, i, &d.tokens[i].clone(), &format!("agent{i}"))
        })
        .collect();
    for (i, a) in agents.iter_mut().enumerate() {
        assert!(
            a.wait(Duration::from_secs(120)).success(),
            "agent{i}:\n{}",
            a.log()
        );
        assert_eq!(sha256_file(&d.disk(i)), want, "pc{i}'s disk is the image");
        let r = a.report();
        assert_eq!(r["result"], "ok", "{r}");
        assert_eq!(r["transport"], "multicast", "{r}");
        assert_eq!(r["image"], id.to_hex());
        assert_eq!(r["multicast"]["complete"], true, "{r}");
        assert!(r["multicast"]["multicast_chunks"].as_u64().unwrap() > 0);
    }
    let status = d.server.wait(Duration::from_secs(60));
    let log = d.server.log();
    assert!(status.success(), "deploy failed:\n{log}");
    assert!(log.contains("3 of 3 machine(s) hold the image"), "{log}");
    assert_eq!(log.matches(" done ").count(), 3, "{log}");
    // The figures, for whoever reads the test log (not asserted: timing depends on the machine).
    for l in log.lines().filter(|l| l.starts_with("summary:")) {
        eprintln!("{loss} % loss: {l}");
    }
    // Reports are on the server's disk too, one per PC.
    let stored = std::fs::read_dir(d.dir.path().join("reports"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("json".as_ref()))
        .count();
    assert_eq!(stored, 3);
}

#[test]
fn deploy_three_pcs_by_multicast() {
    full_deploy(0);
}

#[test]
fn deploy_three_pcs_at_5_percent_loss() {
    full_deploy(5);
}

#[test]
fn delta_deploy_sends_only_what_changed() {
    let images = Images::new();
    let (_, v1_source) = images.v1();
    // v2: two MiB of the random region changed, everything else as v1.
    let mut w = v1_writes();
    w.push((4 << 20, random(97, 1 << 20)));
    w.push((9 << 20, random(95, 1 << 20)));
    let (v2, v2_source) = images.capture("2", &w);
    let m = images.store.open_verified(&v2).unwrap();
    let full: u64 = m
        .chunks
        .iter()
        .filter_map(|c| c.compressed_len)
        .map(u64::from)
        .sum();
    let changed = 2 * u64::from(1u32 << 20); // 8 chunks of 256 KiB, incompressible
    let mut d = Deploy::start(&images, &v2, 3, 0, &["--json"]);
    let before = d.server_tx_bytes();
    let mut agents: Vec<Proc> = (0..3)
        .map(|i| {
            std::fs::copy(&v1_source, d.disk(i)).unwrap();
            d.agent(&images, i, &d.tokens[i].clone(), &format!("agent{i}"))
        })
        .collect();
    for (i, a) in agents.iter_mut().enumerate() {
        assert!(a.wait(Duration::from_secs(120)).success(), "{}", a.log());
        assert_eq!(sha256_file(&d.disk(i)), sha256_file(&v2_source));
        let r = a.report();
        assert_eq!(r["transport"], "multicast");
        assert_eq!(r["written_chunks"], 8, "only the changed chunks: {r}");
    }
    assert!(
        d.server.wait(Duration::from_secs(60)).success(),
        "{}",
        d.server.log()
    );
    let sent = d.server_tx_bytes() - before;
    assert!(
        sent < full / 3,
        "delta: {sent} bytes sent, the full image is {full} compressed"
    );
    assert!(sent >= changed, "{sent} bytes cannot carry {changed}");
    // The server's own count agrees: the stream carried the changed blocks, little more.
    let log = d.server.log();
    let summary: serde_json::Value =
        serde_json::from_str(log.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    let wire = summary["wire_bytes"].as_u64().unwrap();
    assert!(
        wire >= changed && wire <= changed * 11 / 10 + 64 * 1024,
        "stream: {wire} bytes on the wire for {changed} changed: {summary}"
    );
    assert!(
        sent >= wire,
        "the interface counted {sent}, the stream {wire}"
    );
    eprintln!(
        "delta: stream {wire} bytes ({:.3} x the {changed} changed), interface {sent}, full image {full}",
        wire as f64 / changed as f64
    );
    assert_eq!(summary["succeeded"], 3);
    for m in summary["machines"].as_array().unwrap() {
        assert_eq!(m["outcome"], "done", "{m}");
        assert_eq!(m["bytes_written"], changed, "{m}");
    }
}

#[test]
fn a_pc_killed_mid_stream_restarts_and_finishes() {
    let images = Images::new();
    let (id, source) = images.v1();
    // Slow enough that the stream is still going when the agent is killed.
    let mut d = Deploy::start(&images, &id, 3, 0, &["--rate", "40M"]);
    let mut agents: Vec<Proc> = (0..3)
        .map(|i| {
            blank_disk(&d.disk(i));
            d.agent(&images, i, &d.tokens[i].clone(), &format!("agent{i}"))
        })
        .collect();
    d.server.wait_for("joined", 3, Duration::from_secs(30));
    // About 40 % of the first pass is out.
    d.server.wait_for("blocks read", 5, Duration::from_secs(30));
    agents[1].signal(libc::SIGKILL);
    agents[1].wait(Duration::from_secs(5));
    let mut again = d.agent(&images, 1, &d.tokens[1].clone(), "agent1-again");
    for (i, a) in agents.iter_mut().enumerate().filter(|(i, _)| *i != 1) {
        assert!(
            a.wait(Duration::from_secs(120)).success(),
            "agent{i}: {}",
            a.log()
        );
        assert_eq!(sha256_file(&d.disk(i)), sha256_file(&source));
    }
    assert!(
        again.wait(Duration::from_secs(120)).success(),
        "{}",
        again.log()
    );
    assert_eq!(sha256_file(&d.disk(1)), sha256_file(&source));
    let r = again.report();
    assert_eq!(r["result"], "ok");
    assert!(
        r["multicast"]["held_blocks"].as_u64().unwrap() > 0,
        "the restarted agent kept what it had written: {r}"
    );
    assert!(
        d.server.wait(Duration::from_secs(60)).success(),
        "{}",
        d.server.log()
    );
}

#[test]
fn a_stopped_pc_is_left_behind_and_catches_up_over_http() {
    let images = Images::new();
    let (id, source) = images.v1();
    let want = sha256_file(&source);
    let mut d = Deploy::start(&images, &id, 3, 0, &["--rate", "40M", "--dead-after", "3"]);
    let mut agents: Vec<Proc> = (0..3)
        .map(|i| {
            blank_disk(&d.disk(i));
            d.agent(&images, i, &d.tokens[i].clone(), &format!("agent{i}"))
        })
        .collect();
    d.server.wait_for("joined", 3, Duration::from_secs(30));
    d.server.wait_for("blocks read", 2, Duration::from_secs(30));
    agents[2].signal(libc::SIGSTOP);
    // The others finish while it is stopped: nobody waits for it.
    for (i, a) in agents.iter_mut().enumerate().take(2) {
        assert!(
            a.wait(Duration::from_secs(120)).success(),
            "agent{i}: {}",
            a.log()
        );
        assert_eq!(sha256_file(&d.disk(i)), want);
        assert_eq!(a.report()["multicast"]["complete"], true);
    }
    assert!(agents[2].running());
    d.server
        .wait_for("declared dead", 1, Duration::from_secs(30));
    d.server
        .wait_for("stream ended", 1, Duration::from_secs(30));
    agents[2].signal(libc::SIGCONT);
    assert!(
        agents[2].wait(Duration::from_secs(120)).success(),
        "{}",
        agents[2].log()
    );
    assert_eq!(sha256_file(&d.disk(2)), want, "caught up, bit for bit");
    let r = agents[2].report();
    assert_eq!(r["result"], "ok");
    assert_eq!(r["multicast"]["complete"], false, "{r}");
    assert!(r["catch_up_bytes"].as_u64().unwrap() > 0, "{r}");
    let status = d.server.wait(Duration::from_secs(60));
    let log = d.server.log();
    assert!(status.success(), "{log}");
    assert!(log.contains("caught-up"), "{log}");
    assert!(log.contains("3 of 3 machine(s) hold the image"), "{log}");
}

#[test]
fn an_agent_with_a_wrong_token_is_refused() {
    let images = Images::new();
    let (id, source) = images.v1();
    let mut d = Deploy::start(&images, &id, 1, 0, &[]);
    blank_disk(&d.disk(0));
    let mut bad = d.agent(&images, 0, &"0".repeat(32), "agent-bad-token");
    let status = bad.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "refused: {}", bad.log());
    assert!(bad.log().contains("403"), "{}", bad.log());
    assert!(
        std::fs::read(d.disk(0)).unwrap().iter().all(|&b| b == 0),
        "nothing written"
    );
    let mut good = d.agent(&images, 0, &d.tokens[0].clone(), "agent-good");
    assert!(
        good.wait(Duration::from_secs(60)).success(),
        "{}",
        good.log()
    );
    assert_eq!(sha256_file(&d.disk(0)), sha256_file(&source));
    assert!(
        d.server.wait(Duration::from_secs(60)).success(),
        "{}",
        d.server.log()
    );
}

/// Refused before anything is bound or sent: a group outside 239.255.0.0/16, an interface that
/// does not exist, an `--expect` beyond the machines given.
#[test]
fn deploy_refuses_a_bad_group_a_missing_interface_and_too_many_expected() {
    let images = Images::new();
    let (id, _) = images.v1();
    let run = |extra: &[&str]| {
        let o = Command::new(BIN)
            .arg("deploy")
            .args(["--store".as_ref(), images.store.root().as_os_str()])
            .args(["--image", &id.to_hex()[..12]])
            .args([
                "--reports".as_ref(),
                images.dir.path().join("r").as_os_str(),
            ])
            .args(extra)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[
        "--interface",
        "lo",
        "--expect",
        "1",
        "--group",
        "224.0.0.251",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("239.255.0.0/16"), "{err}");
    let (code, err) = run(&["--interface", "rcnosuch0", "--expect", "1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("rcnosuch0"), "{err}");
    let (code, err) = run(&[
        "--interface",
        "lo",
        "--expect",
        "2",
        "--machine",
        "52:54:00:18:09:01",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--expect 2"), "{err}");
    assert!(!images.dir.path().join("r").join("tokens").exists());
}
