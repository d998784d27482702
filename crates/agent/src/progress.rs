//! Tells the server how far the restore is while it runs (`POST /agent/progress`, contract
//! [`Progress`]), so that the technician's console shows bytes, rate and time left before the
//! report comes. The restore's own threads only note the newest figures (never a network call on
//! the data path: a slow server must not make the multicast receiver lose datagrams); one thread
//! posts them at most once per [`PERIOD`], and only when they moved. A post that fails is logged
//! once and the restore goes on: progress is a courtesy, the report is what counts.

use crate::http::Client;
use roomcast_proto::contract::{Progress, path};
use roomcast_store::restore::RestoreProgress;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// At most one post per this.
pub const PERIOD: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Shared {
    latest: Option<RestoreProgress>,
    stop: bool,
}

/// Runs `work` with a progress callback that also shows on `screen`, while a thread posts the
/// newest figures to the server of `client` at most once per [`PERIOD`].
pub fn telling<T>(
    client: &Client,
    screen: &(dyn Fn(&RestoreProgress) + Sync),
    work: impl FnOnce(&(dyn Fn(&RestoreProgress) + Sync)) -> T,
) -> T {
    let shared = Mutex::new(Shared::default());
    let wake = Condvar::new();
    let begun = Instant::now();
    let note = |p: &RestoreProgress| {
        screen(p);
        shared.lock().unwrap_or_else(|e| e.into_inner()).latest = Some(p.clone());
    };
    std::thread::scope(|s| {
        s.spawn(|| post_loop(client, &shared, &wake, begun));
        let out = work(&note);
        shared.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        wake.notify_all();
        out
    })
}

fn post_loop(client: &Client, shared: &Mutex<Shared>, wake: &Condvar, begun: Instant) {
    let url = client.url(path::PROGRESS);
    let mut sent: Option<(u64, u64)> = None;
    let mut failed = false;
    loop {
        let latest = {
            let guard = shared.lock().unwrap_or_else(|e| e.into_inner());
            let (guard, _) = wake
                .wait_timeout_while(guard, PERIOD, |s| !s.stop)
                .unwrap_or_else(|e| e.into_inner());
            if guard.stop {
                return;
            }
            guard.latest.clone()
        };
        let Some(p) = latest.filter(|p| sent != Some((p.bytes_done, p.chunks_done))) else {
            continue;
        };
        let body = Progress {
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            chunks_done: p.chunks_done,
            chunks_total: p.chunks_total,
            elapsed_ms: begun.elapsed().as_millis() as u64,
        };
        let json = serde_json::to_vec(&body).expect("progress serialises");
        match client.post(&url, &json) {
            Ok(()) => sent = Some((p.bytes_done, p.chunks_done)),
            Err(e) if !failed => {
                failed = true;
                tracing::info!(error = %e, "progress not delivered (the restore goes on)");
            }
            Err(_) => {}
        }
    }
}
