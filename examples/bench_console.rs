//! Benchmark of the web console during step g of a 30-PC room: server time per page request
//! (measured at the client over loopback, so an upper bound) with 10 room views open on the live
//! stream, and the server-sent events per second they receive.
//!
//! A journal is written as a campaign would (a–f succeeded, then one `MachineSucceeded` or
//! `MachineFailed` per PC, one every 250 ms, with retries); meanwhile every PC's progress reaches
//! the campaign's live tables once a second and the stream is sampled once a second, through the
//! same `campaign::live::LiveBook` an imaging session writes with (issue 16, D24), so every tile
//! changes every second. The console runs in this process on
//! 127.0.0.1 (plain HTTP, as behind a proxy, so the client measures the server and not TLS), ten
//! clients hold the room's event stream open, one client requests pages back to back.
//!
//! `cargo run --release --example bench_console [-- PCS]`

#[path = "../tests/console/form.rs"]
mod form;

use roomcast::campaign::journal::Journal;
use roomcast::console::{ConsoleConfig, auth};
use roomcast_proto::procedure::{DeployMode, Event, Plan, Step, Timestamp};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VIEWS: usize = 10;

fn main() {
    let pcs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("roomcast.db");
    let machines: Vec<String> = (1..=pcs).map(|i| format!("PC{i:02}")).collect();
    let plan = Plan {
        room: "B204".into(),
        machines: machines.clone(),
        master: "PC01".into(),
        mode: DeployMode::Image,
        retries: 1,
        signoff_required: false,
        signoff_allowed: vec![],
    };
    let mut journal = Journal::open(&db).unwrap();
    // The inventory shares the file, as in a real campaign (recorded at the first stop, at e),
    // and puts it in WAL mode: readers go on while the campaign writes.
    roomcast::inventory::db::InventoryDb::open(&db).unwrap();
    let t0 = 1_800_000_000;
    let (id, _) = journal.start(&plan, Timestamp(t0)).unwrap();
    let mut state = journal.state(id).unwrap();
    for step in [Step::Collect, Step::Master, Step::Install, Step::Tests] {
        state = journal
            .record_on(id, 1, state, &Event::StepSucceeded { step }, Timestamp(t0))
            .unwrap()
            .0;
    }
    state = journal
        .record_on(
            id,
            1,
            state,
            &Event::ImageCaptured {
                image: "ab".repeat(32),
            },
            Timestamp(t0 + 60),
        )
        .unwrap()
        .0;
    journal
        .record_on(
            id,
            1,
            state,
            &Event::StepSucceeded {
                step: Step::Capture,
            },
            Timestamp(t0 + 60),
        )
        .unwrap();

    // The console, in this process.
    let password = "bench";
    let config = ConsoleConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        db: db.clone(),
        store: None,
        tls: None,
        plain_http_behind_proxy: true,
        public_url: "https://console.example".into(),
        technicians: vec![roomcast::console::config::Technician {
            name: "bench".into(),
            password_hash: auth::hash_password(password).unwrap(),
        }],
        resume_args: None,
        link_days: 7,
        ldap: None,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(roomcast::console::serve(config, move |a| {
            let _ = tx.send(a);
        }))
        .unwrap();
    });
    let addr = rx.recv().unwrap();
    let base = format!("http://{addr}");
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    // Log in: the login form's double-submit token, then the session cookie.
    let (status, session) = form::log_in(&http, &base, "bench", password);
    assert_eq!(status, 303, "login");

    // Ten open room views on the live stream; each counts its messages and the shortest gap
    // between two messages about the same PC.
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Mutex::new(Vec::new()));
    // When each PC's events were journaled, and when each view received a tile about it.
    let written: Arc<Mutex<BTreeMap<String, Vec<Instant>>>> = Arc::default();
    let received: Arc<Mutex<Vec<(usize, String, Instant)>>> = Arc::default();
    let mut views = Vec::new();
    for view in 0..VIEWS {
        let (http, base, session, stop, counts, received) = (
            http.clone(),
            base.clone(),
            session.clone(),
            stop.clone(),
            counts.clone(),
            received.clone(),
        );
        views.push(std::thread::spawn(move || {
            let r = http
                .get(&format!("{base}/campaigns/{id}/live?since=0"))
                .header("cookie", &session)
                .config()
                .timeout_global(Some(Duration::from_secs(3600)))
                .build()
                .call()
                .unwrap();
            let mut lines = BufReader::new(r.into_body().into_reader()).lines();
            let (mut n, mut min_gap) = (0u64, Duration::MAX);
            let mut last: BTreeMap<String, Instant> = BTreeMap::new();
            let mut event = String::new();
            while let Some(Ok(line)) = lines.next() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_string();
                } else if let Some(d) = line.strip_prefix("data: ")
                    && event == "tile"
                {
                    n += 1;
                    let v: serde_json::Value = serde_json::from_str(d).unwrap();
                    let name = v["name"].as_str().unwrap().to_string();
                    let now = Instant::now();
                    received.lock().unwrap().push((view, name.clone(), now));
                    if let Some(prev) = last.insert(name, now) {
                        min_gap = min_gap.min(now - prev);
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            counts.lock().unwrap().push((n, min_gap));
        }));
    }
    std::thread::sleep(Duration::from_millis(500));

    // The campaign at g: one result every 250 ms; every fifth PC fails once, then succeeds.
    let writer = {
        let (db, machines, written) = (db.clone(), machines.clone(), written.clone());
        std::thread::spawn(move || {
            let mut journal = Journal::open(&db).unwrap();
            let mut state = journal.state(id).unwrap();
            let mut t = t0 + 120;
            let mut order: Vec<(String, bool)> = Vec::new();
            for (i, m) in machines.iter().enumerate() {
                if i % 5 == 4 {
                    order.push((m.clone(), false));
                }
                order.push((m.clone(), true));
            }
            for (m, ok) in order {
                std::thread::sleep(Duration::from_millis(250));
                t += 20;
                let event = if ok {
                    Event::MachineSucceeded {
                        step: Step::Deploy,
                        machine: m,
                    }
                } else {
                    Event::MachineFailed {
                        step: Step::Deploy,
                        machine: m,
                        reason: "agent ended without report".into(),
                    }
                };
                let name = match &event {
                    Event::MachineSucceeded { machine, .. }
                    | Event::MachineFailed { machine, .. } => machine.clone(),
                    _ => unreachable!(),
                };
                state = journal
                    .record_on(id, 1, state, &event, Timestamp(t))
                    .unwrap()
                    .0;
                written
                    .lock()
                    .unwrap()
                    .entry(name)
                    .or_default()
                    .push(Instant::now());
            }
        })
    };

    // What the imaging session writes while g runs: each PC's progress once a second (30 agents'
    // posts spread over the second), a stream sample once a second.
    let progress = {
        let (db, machines, stop) = (db.clone(), machines.clone(), stop.clone());
        std::thread::spawn(move || {
            let book = roomcast::campaign::live::LiveBook::new(&db, id);
            let total = 20u64 << 30;
            let mut tick = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1000 / machines.len().max(1) as u64));
                let m = &machines[(tick % machines.len() as u64) as usize];
                let second = tick / machines.len() as u64 + 1;
                book.progress(
                    m,
                    Step::Deploy,
                    roomcast_proto::contract::Progress {
                        bytes_done: (second * (100 << 20)).min(total),
                        bytes_total: total,
                        chunks_done: second * 100,
                        chunks_total: 20 << 10,
                        elapsed_ms: second * 1000,
                    },
                );
                if tick.is_multiple_of(machines.len() as u64) {
                    book.sample(
                        Step::Deploy,
                        &roomcast_mcast::StreamSample {
                            at_ms: second * 1000,
                            wire_bps: 900_000_000,
                            pacing_bps: 950_000_000,
                            loss: Some(0.001),
                            worst_loss: Some(0.01 * (second % 5) as f64),
                        },
                    );
                }
                tick += 1;
            }
        })
    };

    // Page requests back to back while g runs.
    let started = Instant::now();
    let paths = [
        format!("/campaigns/{id}"),
        "/campaigns".to_string(),
        format!("/campaigns/{id}/report"),
    ];
    let mut times: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut i = 0;
    while !writer.is_finished() {
        let path = &paths[i % paths.len()];
        i += 1;
        let t = Instant::now();
        let mut r = http
            .get(&format!("{base}{path}"))
            .header("cookie", &session)
            .call()
            .unwrap();
        let _ = r.body_mut().read_to_vec().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        times
            .entry(if i % paths.len() == 1 {
                "room"
            } else if i % paths.len() == 2 {
                "campaigns"
            } else {
                "report"
            })
            .or_default()
            .push(t.elapsed());
    }
    writer.join().unwrap();
    let elapsed = started.elapsed();
    // Let the last changes reach the views, then close them.
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    // A last change wakes each stream so it sees `stop`.
    Journal::open(&db)
        .unwrap()
        .record_on(
            id,
            1,
            journal.state(id).unwrap(),
            &Event::Aborted { by: "bench".into() },
            Timestamp(t0 + 9999),
        )
        .unwrap();
    for v in views {
        let _ = v.join();
    }
    progress.join().unwrap();
    println!(
        "console during g: {pcs} PCs, {VIEWS} open room views, {:.1} s of g",
        elapsed.as_secs_f64()
    );
    for (name, mut v) in times {
        v.sort();
        let pct = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
        println!(
            "  {name:<9} {:>5} requests  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
            v.len(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            v.last().unwrap().as_secs_f64() * 1e3
        );
    }
    // Lag of each journal event: until each view received its first message about that PC after it
    // (a later message carries the newest state, so it shows this event too).
    let written = written.lock().unwrap();
    let received = received.lock().unwrap();
    let mut lags: Vec<Duration> = Vec::new();
    let mut missed = 0;
    for (pc, events) in written.iter() {
        for w in events {
            for view in 0..VIEWS {
                match received
                    .iter()
                    .filter(|(v, p, at)| *v == view && p == pc && at >= w)
                    .map(|(_, _, at)| *at)
                    .min()
                {
                    Some(at) => lags.push(at - *w),
                    None => missed += 1,
                }
            }
        }
    }
    lags.sort();
    if !lags.is_empty() {
        println!(
            "  journal event -> tile message at each view: p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms \
             ({} event x view pairs, {missed} without a later message)",
            lags[lags.len() / 2].as_secs_f64() * 1e3,
            lags[(lags.len() * 99 / 100).min(lags.len() - 1)].as_secs_f64() * 1e3,
            lags.last().unwrap().as_secs_f64() * 1e3,
            lags.len()
        );
    }
    let counts = counts.lock().unwrap();
    let total: u64 = counts.iter().map(|(n, _)| n).sum();
    let min_gap = counts
        .iter()
        .map(|(_, g)| *g)
        .min()
        .unwrap_or(Duration::MAX);
    println!(
        "  SSE: {total} tile messages to {} views, {:.1} per view per second, {:.2} per PC per second; \
         shortest gap between two messages about one PC: {}",
        counts.len(),
        total as f64 / counts.len().max(1) as f64 / elapsed.as_secs_f64(),
        total as f64 / counts.len().max(1) as f64 / elapsed.as_secs_f64() / pcs as f64,
        if min_gap == Duration::MAX {
            "none (one message per PC)".to_string()
        } else {
            format!("{:.2} s", min_gap.as_secs_f64())
        }
    );
}
