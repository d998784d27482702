//! The test side of `roomcast_lab::garage`: start a cluster or say why the test is skipped; run
//! roomcast in the school server's namespace with a key in its environment; look for secrets.

use roomcast_lab::garage::{self, Cluster, Key};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A started cluster (data in `dir`), or `None` after saying the test is skipped: only when Garage
/// is not installed (tests/tools.sh builds it; tests/run.sh, and so CI, always has it).
pub struct Started {
    pub cluster: Cluster,
    /// The nodes' data, removed after them (field order).
    pub _dir: tempfile::TempDir,
}

/// A started cluster, its lab also holding `room_pcs` PCs of the school's room (`Cluster::room_pc`),
/// or `None` after saying the test is skipped.
pub fn start_with_room(room_pcs: usize) -> Option<Started> {
    let Some(bin) = garage::garage_bin() else {
        eprintln!(
            "SKIPPED: no Garage at {} (tests/tools.sh builds it with `cargo install garage`; \
             ROOMCAST_GARAGE names another binary)",
            garage::GARAGE_BIN
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start_with_room(&bin, dir.path(), "1G", room_pcs).unwrap();
    Some(Started { cluster, _dir: dir })
}

/// A roomcast command run in the school server's namespace, the key in its environment (never on
/// its command line), talking to site 0.
pub fn roomcast(cluster: &Cluster, key: &Key, args: &[&str]) -> Command {
    let mut c = cluster.school().command(env!("CARGO_BIN_EXE_roomcast"));
    c.args(args)
        .env("AWS_ENDPOINT_URL", cluster.endpoint(0))
        .env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret)
        .env_remove("ROOMCAST_SECRETS");
    c
}

/// Runs `body` with a client of the bucket, inside the school server's namespace (to alter
/// objects as someone holding a write key could).
pub fn with_remote<T: Send>(
    cluster: &Cluster,
    key: &Key,
    url: &str,
    body: impl FnOnce(&roomcast::region::Remote) -> T + Send,
) -> T {
    let opts = roomcast::region::RemoteOptions {
        endpoint: cluster.endpoint(0),
        region: "garage".into(),
        credentials: roomcast::region::Credentials {
            key_id: roomcast::secrets::Secret::new(key.id.clone()),
            secret: roomcast::secrets::Secret::new(key.secret.clone()),
        },
        jobs: 4,
        max_rate: None,
    };
    let remote = roomcast::region::Remote::connect(url.parse().unwrap(), &opts).unwrap();
    cluster.school().run(move || body(&remote)).unwrap()
}

/// The first file of `paths` that contains `needle`.
pub fn any_file_contains(paths: &[PathBuf], needle: &str) -> Option<PathBuf> {
    paths
        .iter()
        .find(|p| std::fs::read(p).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle)))
        .cloned()
}

/// Every process whose command line holds `needle`.
pub fn processes_with_in_argv(needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p: &Path = &e.path();
        if let Ok(b) = std::fs::read(p.join("cmdline"))
            && String::from_utf8_lossy(&b).contains(needle)
        {
            hits.push(p.display().to_string());
        }
    }
    hits
}
