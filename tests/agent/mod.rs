//! The agent against the real boot HTTP router on 127.0.0.1, serving a real store: restore over HTTP,
//! the token rules of the image endpoints, and a tampered chunk refused.

mod network_capture;
mod other_size;

use crate::store::util::{Fixture, random};
use roomcast::net::files::BootRoot;
use roomcast::net::http::{BootConfig, BootService, ServedImage};
use roomcast_agent::{AgentError, AgentOptions};
use roomcast_proto::contract::{CONTRACT_HEADER, CONTRACT_VERSION, TOKEN_HEADER, Verdict};
use roomcast_proto::mac::Mac;
use roomcast_store::Store;
use roomcast_store::capture::{self, CaptureOptions};
use roomcast_store::chunk::ChunkSize;
use roomcast_store::keys;
use roomcast_store::manifest::{ImageId, ImageLabel};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CHUNK: u32 = 256 * 1024;
const DISK: u64 = 8 << 20;

fn mac(last: u8) -> Mac {
    Mac([0x52, 0x54, 0, 0x18, 0x07, last])
}

/// A store with a trusted key and one captured image: random and zero regions, text in between.
struct Image {
    dir: tempfile::TempDir,
    store: Store,
    id: ImageId,
    source: PathBuf,
    pub_file: PathBuf,
}

fn image() -> Image {
    let Fixture {
        dir,
        store,
        signer,
        pub_file,
        ..
    } = Fixture::new();
    let source = dir.path().join("source.img");
    let f = std::fs::File::create(&source).unwrap();
    f.set_len(DISK).unwrap();
    f.write_all_at(&random(7, 3 << 20), 0).unwrap();
    f.write_all_at(&b"roomcast ".repeat(100_000), 4 << 20)
        .unwrap();
    f.write_all_at(&random(9, 512 * 1024), DISK - 512 * 1024)
        .unwrap();
    let report = capture::capture(
        &store,
        &source,
        ImageLabel {
            name: "agent-test".into(),
            version: "1".into(),
            profile: None,
            captured_by: "test@host".into(),
            captured_at: "2026-11-28T12:00:00Z".into(),
        },
        &signer,
        &CaptureOptions {
            chunk_size: ChunkSize::new(CHUNK).unwrap(),
            level: 3,
            workers: 2,
        },
        &|_| {},
    )
    .unwrap();
    Image {
        id: report.id,
        dir,
        store,
        source,
        pub_file,
    }
}

/// The boot HTTP router on 127.0.0.1, stopped on drop.
struct Server {
    service: Arc<BootService>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(img: &Image) -> Server {
        let reports = img.dir.path().join("reports");
        std::fs::create_dir_all(&reports).unwrap();
        let config = BootConfig {
            campaign: "agent-test".into(),
            machines: [(mac(1), "S12-P01".to_string())].into(),
            base_url: "http://127.0.0.1".into(),
            kernel: "vmlinuz".into(),
            initrd: "initrd.gz".into(),
            cmdline: String::new(),
            reports_dir: reports,
            image: Some(ServedImage {
                store: img.store.clone(),
                id: img.id,
            }),
        };
        let service = BootService::new(config, BootRoot::new(img.dir.path()).unwrap()).unwrap();
        Server::serve(service)
    }

    /// Serves `service` on 127.0.0.1.
    fn serve(service: Arc<BootService>) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = roomcast::net::router(service.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                )
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
        });
        Server {
            service,
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A fresh token for `mac`, as its boot script hands it out once proxyDHCP saw it take its
    /// address (here the loopback address the agent's requests come from).
    fn token(&self, mac: Mac) -> String {
        use roomcast_proto::dhcp::{Sighted, Sighting};
        let here = std::net::Ipv4Addr::LOCALHOST;
        let gate = self.service.pxe_gate();
        let now = std::time::Instant::now();
        let mut g = gate.lock().unwrap();
        g.observe(
            Sighting {
                mac,
                kind: Sighted::Discover,
            },
            now,
        );
        g.observe(
            Sighting {
                mac,
                kind: Sighted::Address(here),
            },
            now,
        );
        drop(g);
        let script = self.service.boot_script(mac, here).unwrap();
        script
            .split("roomcast.token=")
            .nth(1)
            .expect("a campaign machine gets a token")
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn options(server: &Server, token: &str, disk: &Path, img: &Image) -> AgentOptions {
    AgentOptions {
        server: server.url(),
        token: token.into(),
        disk: disk.to_path_buf(),
        trusted: roomcast_agent::load_trusted(&img.pub_file).unwrap(),
        workers: 2,
        fit: Default::default(),
    }
}

/// Status of a GET with an optional token.
fn status(url: &str, token: Option<&str>) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req
            .header(TOKEN_HEADER, t)
            .header(CONTRACT_HEADER, CONTRACT_VERSION.to_string());
    }
    req.call().unwrap().status().as_u16()
}

#[test]
fn agent_restores_the_served_image_and_reports() {
    let img = image();
    let server = Server::start(&img);
    let token = server.token(mac(1));
    // A disk with stale bytes where the image has zeros and data: both must be rewritten.
    let disk = img.dir.path().join("pc-disk.img");
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len(DISK).unwrap();
    f.write_all_at(&random(3, 1 << 20), 5 << 20).unwrap();
    f.write_all_at(&random(7, 1 << 20), 0).unwrap(); // already right: skipped
    drop(f);

    let out = roomcast_agent::run(&options(&server, &token, &disk, &img)).unwrap();
    out.result.as_ref().unwrap();
    assert_eq!(
        std::fs::read(&disk).unwrap(),
        std::fs::read(&img.source).unwrap(),
        "the PC's disk equals the captured image"
    );
    assert_eq!(out.report.result, Verdict::Ok);
    assert_eq!(out.report.image.as_deref(), Some(img.id.to_hex().as_str()));
    let r = out.report.restore().expect("a restore report");
    assert_eq!(r.chunks, DISK / u64::from(CHUNK));
    // 32 chunks: 12 random, 4 zero, 4 text, 10 zero, 2 random.
    assert_eq!(
        r.unchanged_chunks,
        4 + 10,
        "1 MiB already right + zeros untouched: {r:?}"
    );
    assert_eq!(r.written_chunks, 8 + 4 + 2, "{r:?}");
    assert_eq!(r.zeroed_chunks, 4, "the stale MiB in a zero region");

    let reports = server.service.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].mac, mac(1));
    let body: serde_json::Value = serde_json::from_str(&reports[0].body).unwrap();
    assert_eq!(body["result"], "ok");
    assert_eq!(body["image"], img.id.to_hex());
    assert_eq!(body["written_chunks"], r.written_chunks);

    // The token was spent by the report: the image is closed to it now.
    let manifest = format!("{}/image/manifest", server.url());
    assert_eq!(status(&manifest, Some(&token)), 403);
    assert_eq!(status(&manifest, None), 401);
    assert_eq!(status(&manifest, Some("0123456789abcdef")), 403);
}

/// An agent of another contract version (a boot environment built by another roomcast) is
/// refused on every request with a message naming both versions, and its report is recorded as a
/// failure saying so: the deploy and the morning report name the PC and the reason.
#[test]
fn an_agent_of_another_contract_version_is_refused_naming_both() {
    let img = image();
    let server = Server::start(&img);
    let token = server.token(mac(1));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let other = (CONTRACT_VERSION + 1).to_string();
    for version in [Some(other.as_str()), None] {
        let mut req = agent
            .get(&format!("{}/image/manifest", server.url()))
            .header(TOKEN_HEADER, &token);
        if let Some(v) = version {
            req = req.header(CONTRACT_HEADER, v);
        }
        let mut resp = req.call().unwrap();
        let text = resp.body_mut().read_to_string().unwrap();
        assert_eq!(resp.status().as_u16(), 409, "{text}");
        let ours = format!("contract {CONTRACT_VERSION}");
        assert!(text.contains(&ours), "{text}");
        if version.is_some() {
            assert!(text.contains(&format!("contract {other}")), "{text}");
        }
    }
    let mut resp = agent
        .post(&format!("{}/agent/report", server.url()))
        .header(TOKEN_HEADER, &token)
        .header(CONTRACT_HEADER, &other)
        .send(r#"{"result":"ok","from":"an agent of the future"}"#)
        .unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    let text = resp.body_mut().read_to_string().unwrap();
    assert!(text.contains(&format!("contract {other}")), "{text}");
    let reports = server.service.reports();
    assert_eq!(reports.len(), 1);
    let r = roomcast_proto::contract::Report::parse(&reports[0].body).unwrap();
    assert_eq!(r.result, Verdict::Failed);
    let why = r.error.unwrap();
    assert!(
        why.contains(&format!("contract {other}"))
            && why.contains(&format!("contract {CONTRACT_VERSION}")),
        "{why}"
    );
}

#[test]
fn chunk_paths_are_checked_and_a_token_opens_only_its_image() {
    let img = image();
    let server = Server::start(&img);
    let token = server.token(mac(1));
    let m = img.store.open_verified(&img.id).unwrap();
    let hex = m.chunks.iter().find_map(|c| c.sha256).unwrap().to_hex();
    let chunk = |name: &str| status(&format!("{}/chunks/{name}", server.url()), Some(&token));
    assert_eq!(chunk(&hex), 200);
    assert_eq!(chunk(&hex.to_uppercase()), 404, "64 lowercase hex only");
    assert_eq!(chunk(&hex[..63]), 404);
    assert_eq!(chunk("..%2F..%2Fkeys%2Fsigner.key"), 404);
    assert_eq!(chunk(&"0".repeat(64)), 404, "not a chunk of the image");
    assert_eq!(status(&format!("{}/chunks/{hex}", server.url()), None), 401);
    // A machine outside the campaign gets no token at all.
    assert!(
        !server
            .service
            .boot_script(mac(9), std::net::Ipv4Addr::LOCALHOST)
            .unwrap()
            .contains("token")
    );
}

#[test]
fn a_tampered_chunk_on_the_server_is_refused_and_not_written() {
    let img = image();
    let m = img.store.open_verified(&img.id).unwrap();
    // The 3rd random chunk: flip one byte of its stored frame, same length.
    let (index, entry) = m
        .chunks
        .iter()
        .enumerate()
        .filter(|(_, c)| c.sha256.is_some())
        .nth(2)
        .unwrap();
    let hash = entry.sha256.unwrap();
    let file = img.store.chunk_path(&hash);
    let mut frame = std::fs::read(&file).unwrap();
    let mid = frame.len() / 2;
    frame[mid] ^= 0x40;
    std::fs::write(&file, &frame).unwrap();

    let server = Server::start(&img);
    let token = server.token(mac(1));
    let disk = img.dir.path().join("pc-disk.img");
    std::fs::File::create(&disk).unwrap().set_len(DISK).unwrap();
    let out = roomcast_agent::run(&options(&server, &token, &disk, &img)).unwrap();
    let err = out.result.unwrap_err();
    assert!(matches!(err, AgentError::Restore(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&hash.to_hex()), "names the chunk: {msg}");
    assert!(msg.contains(&format!("chunk #{index}")), "{msg}");
    let on_disk = std::fs::read(&disk).unwrap();
    let at = entry.offset as usize;
    assert!(
        on_disk[at..at + entry.len as usize].iter().all(|&b| b == 0),
        "nothing of the tampered chunk reached the disk"
    );
    assert_eq!(out.report.result, Verdict::Failed);
    let body: serde_json::Value = serde_json::from_str(&server.service.reports()[0].body).unwrap();
    assert_eq!(body["result"], "failed");
    assert!(body["error"].as_str().unwrap().contains(&hash.to_hex()));
}

#[test]
fn a_missing_disk_is_reported_not_created() {
    let img = image();
    let server = Server::start(&img);
    let token = server.token(mac(1));
    let disk = img.dir.path().join("no-such-disk");
    let out = roomcast_agent::run(&options(&server, &token, &disk, &img)).unwrap();
    assert!(
        matches!(out.result, Err(AgentError::NoDisk(_))),
        "{:?}",
        out.result
    );
    assert!(!disk.exists());
    assert_eq!(out.report.result, Verdict::Failed);
    assert!(
        out.report
            .error
            .as_deref()
            .unwrap()
            .contains("no such disk")
    );
}

#[test]
fn a_manifest_signed_by_another_key_is_refused_before_the_disk_is_touched() {
    let img = image();
    let server = Server::start(&img);
    let token = server.token(mac(1));
    let (_, other_pub, _) = keys::generate_files(&img.dir.path().join("other")).unwrap();
    let disk = img.dir.path().join("pc-disk.img");
    let before = random(5, DISK as usize);
    std::fs::write(&disk, &before).unwrap();
    let mut opts = options(&server, &token, &disk, &img);
    opts.trusted = roomcast_agent::load_trusted(&other_pub).unwrap();
    let out = roomcast_agent::run(&opts).unwrap();
    let err = out.result.unwrap_err();
    assert!(matches!(err, AgentError::Manifest { .. }), "{err}");
    assert!(
        std::fs::read(&disk).unwrap() == before,
        "the disk is untouched by an untrusted image"
    );
    assert_eq!(out.report.result, Verdict::Failed);
    assert_eq!(out.report.image, None);
}

fn serve_with_room(room: &Path) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .arg("serve")
        .arg("--room")
        .arg(room)
        .arg("--boot-dir")
        .arg(dir.path())
        .arg("--reports")
        .arg(dir.path().join("reports"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `serve --room` takes the interface from the validated room file (here it stops there: the room's
/// `enp3s0` does not exist on the test machine, so nothing is bound), and refuses a room with errors.
#[test]
fn serve_takes_the_room_file_and_refuses_one_with_errors() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, err) = serve_with_room(&repo.join("rooms/0640058L/S12.yaml"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("interface \"enp3s0\""), "{err}");

    let copy = tempfile::tempdir().unwrap();
    for d in ["profiles", "rooms/0640058L"] {
        std::fs::create_dir_all(copy.path().join(d)).unwrap();
    }
    for e in std::fs::read_dir(repo.join("profiles")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), copy.path().join("profiles").join(e.file_name())).unwrap();
        }
    }
    let text = std::fs::read_to_string(repo.join("rooms/0640058L/S12.yaml")).unwrap();
    let bad = copy.path().join("rooms/0640058L/S12.yaml");
    std::fs::write(&bad, text.replace("198.18.12.0/24", "198.18.12.0/99")).unwrap();
    let (code, err) = serve_with_room(&bad);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not serving it"), "{err}");
    assert!(
        err.contains("S12.yaml:11:11"),
        "names file, line, column: {err}"
    );
    assert!(
        !err.contains("enp3s0"),
        "refused before any interface is looked at: {err}"
    );
}

/// The server verifies the campaign's image against its own store's signers before serving it.
#[test]
fn the_server_refuses_to_serve_an_image_its_store_does_not_trust() {
    let img = image();
    for e in std::fs::read_dir(img.store.trusted_dir()).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let config = BootConfig {
        campaign: "agent-test".into(),
        machines: [(mac(1), "S12-P01".to_string())].into(),
        base_url: "http://127.0.0.1".into(),
        kernel: "vmlinuz".into(),
        initrd: "initrd.gz".into(),
        cmdline: String::new(),
        reports_dir: img.dir.path().to_path_buf(),
        image: Some(ServedImage {
            store: img.store.clone(),
            id: img.id,
        }),
    };
    let err =
        BootService::new(config, BootRoot::new(img.dir.path()).unwrap()).expect_err("refused");
    assert!(err.to_string().contains("campaign image"), "{err}");
    assert!(
        err.to_string().contains(&img.id.to_hex()),
        "names the manifest: {err}"
    );
}

/// `POST /agent/progress` (issue 16): only a live token's machine, only believable figures, the
/// machine from the token and never from the body; the token is not spent.
#[test]
fn progress_reaches_the_sink_from_a_live_token_only_and_spends_nothing() {
    let img = image();
    let server = Server::start(&img);
    let got: Arc<std::sync::Mutex<Vec<(Mac, roomcast_proto::contract::Progress)>>> = Arc::default();
    let sink = got.clone();
    server
        .service
        .set_progress_sink(Arc::new(move |m, p| sink.lock().unwrap().push((m, p))));
    let token = server.token(mac(1));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}/agent/progress", server.url());
    let post = |token: Option<&str>, body: &str| -> u16 {
        let mut req = agent
            .post(&url)
            .header(CONTRACT_HEADER, CONTRACT_VERSION.to_string());
        if let Some(t) = token {
            req = req.header(TOKEN_HEADER, t);
        }
        req.send(body).unwrap().status().as_u16()
    };
    let good = r#"{"bytes_done":10,"bytes_total":100,"chunks_done":1,"chunks_total":10,"elapsed_ms":1000}"#;
    assert_eq!(post(None, good), 401, "no token");
    assert_eq!(post(Some("not-a-token"), good), 403, "not a live token");
    let beyond =
        r#"{"bytes_done":101,"bytes_total":100,"chunks_done":1,"chunks_total":10,"elapsed_ms":1}"#;
    assert_eq!(post(Some(&token), beyond), 400, "done beyond the total");
    assert_eq!(post(Some(&token), "not json"), 400);
    assert_eq!(post(Some(&token), &" ".repeat(4096)), 413, "too large");
    assert!(
        got.lock().unwrap().is_empty(),
        "nothing refused reached the sink"
    );
    assert_eq!(post(Some(&token), good), 204);
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, mac(1));
    assert_eq!((got[0].1.bytes_done, got[0].1.rate()), (10, 10));
    // The token still opens the image: progress does not spend it.
    assert_eq!(
        status(&format!("{}/image/manifest", server.url()), Some(&token)),
        200
    );
}
