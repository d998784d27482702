//! A real Garage cluster (the region's S3 object store, docs/REGION.md) in a lab: three nodes, one
//! per site (the lab's PC namespaces `pc0`..`pc2`, 198.18.1.x), replication factor 3, its layout,
//! bucket and keys made with Garage's own CLI. The lab's server namespace (198.18.0.1) plays the
//! school server. Dropping the cluster kills the nodes, then the lab removes the namespaces.
//! Used by `tests/region` and `examples/bench_region.rs`.

use crate::daemon::Daemon;
use crate::{Lab, LabError, Node};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// Where `tests/tools.sh` installs Garage (`cargo install garage`, cached outside the repository);
/// `ROOMCAST_GARAGE` names another binary.
pub const GARAGE_BIN: &str = "/var/cache/roomcast-test/garage/bin/garage";

/// The garage binary, if it is installed.
pub fn garage_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("ROOMCAST_GARAGE")
        .map_or_else(|| PathBuf::from(GARAGE_BIN), PathBuf::from);
    bin.is_file().then_some(bin)
}

/// An S3 access key made by `garage key create`. `Debug` hides the secret.
#[derive(Clone)]
pub struct Key {
    /// Access key id (`GK…`).
    pub id: String,
    /// Secret key.
    pub secret: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({}, ***)", self.id)
    }
}

/// S3 API port of every node.
pub const S3_PORT: u16 = 3900;
const RPC_PORT: u16 = 3901;

/// A running three-node cluster.
pub struct Cluster {
    // Field order: the nodes die before the lab's namespaces go.
    nodes: Vec<Option<Daemon>>,
    lab: Lab,
    dir: PathBuf,
    bin: PathBuf,
    configs: Vec<PathBuf>,
}

fn failed(step: &str, why: String) -> LabError {
    LabError::Io {
        step: format!("garage: {step}: {why}"),
        source: std::io::Error::other("garage"),
    }
}

impl Cluster {
    /// Three nodes up in a new lab, data under `dir`, connected, the layout applied (one zone
    /// per site, replication factor 3, `capacity` each, e.g. `10G`).
    pub fn start(bin: &Path, dir: &Path, capacity: &str) -> Result<Cluster, LabError> {
        Self::start_with_room(bin, dir, capacity, 0)
    }

    /// [`Cluster::start`] in a lab that also holds `room_pcs` PCs of the school's room
    /// ([`Cluster::room_pc`]), on the same bridge as the server: a campaign's step b pulls from
    /// the region, then restores a PC.
    pub fn start_with_room(
        bin: &Path,
        dir: &Path,
        capacity: &str,
        room_pcs: usize,
    ) -> Result<Cluster, LabError> {
        let lab = Lab::builder().pcs(3 + room_pcs).build()?;
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        let rpc_secret = hex::encode(secret);
        let mut configs = Vec::new();
        let mut nodes = Vec::new();
        let io = |step: &str| {
            let step = step.to_string();
            move |source| LabError::Io { step, source }
        };
        for (i, pc) in lab.pcs().iter().take(3).enumerate() {
            let d = dir.join(format!("site{i}"));
            std::fs::create_dir_all(&d).map_err(io("garage: site folder"))?;
            let addr = pc.addr().addr();
            let cfg = d.join("garage.toml");
            std::fs::write(
                &cfg,
                format!(
                    "metadata_dir = \"{d}/meta\"\n\
                     data_dir = \"{d}/data\"\n\
                     db_engine = \"lmdb\"\n\
                     replication_factor = 3\n\
                     rpc_bind_addr = \"{addr}:{RPC_PORT}\"\n\
                     rpc_public_addr = \"{addr}:{RPC_PORT}\"\n\
                     rpc_secret = \"{rpc_secret}\"\n\
                     [s3_api]\n\
                     s3_region = \"garage\"\n\
                     api_bind_addr = \"{addr}:{S3_PORT}\"\n\
                     root_domain = \".s3.garage\"\n",
                    d = d.display()
                ),
            )
            .map_err(io("garage: config"))?;
            let mut cmd = pc.command(&bin.to_string_lossy());
            cmd.arg("-c").arg(&cfg).arg("server");
            let mut daemon =
                Daemon::spawn(&format!("garage on site{i}"), cmd, &d.join("garage.log"))?;
            let probe = || {
                pc.command(&bin.to_string_lossy())
                    .arg("-c")
                    .arg(&cfg)
                    .args(["node", "id", "-q"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            daemon.wait_ready(Duration::from_secs(60), probe)?;
            configs.push(cfg);
            nodes.push(Some(daemon));
        }
        let c = Cluster {
            nodes,
            lab,
            dir: dir.to_path_buf(),
            bin: bin.to_path_buf(),
            configs,
        };
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(c.garage(i, &["node", "id", "-q"])?.trim().to_string());
        }
        for id in &ids[1..] {
            c.garage(0, &["node", "connect", id])?;
        }
        for (i, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap_or(id);
            c.garage(
                0,
                &[
                    "layout",
                    "assign",
                    "-z",
                    &format!("site{i}"),
                    "-c",
                    capacity,
                    short,
                ],
            )?;
        }
        c.garage(0, &["layout", "apply", "--version", "1"])?;
        // Every node must see the layout before buckets are made.
        for i in 0..3 {
            let mut tries = 0;
            while !c
                .garage(i, &["layout", "show"])?
                .contains("Current cluster layout version: 1")
            {
                tries += 1;
                if tries > 150 {
                    return Err(failed(
                        "layout",
                        format!("site{i} never saw layout version 1"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(c)
    }

    /// `garage -c <site i config> ARGS` run in site i's namespace: its stdout, or an error with its
    /// output.
    pub fn garage(&self, i: usize, args: &[&str]) -> Result<String, LabError> {
        let out: Output = self
            .site(i)
            .command(&self.bin.to_string_lossy())
            .arg("-c")
            .arg(&self.configs[i])
            .args(args)
            .output()
            .map_err(|source| LabError::Io {
                step: format!("garage {args:?}"),
                source,
            })?;
        if !out.status.success() {
            return Err(failed(
                &format!("{args:?} on site{i}"),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The lab the cluster runs in.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// Site `i`'s namespace.
    pub fn site(&self, i: usize) -> &Node {
        &self.lab.pcs()[i]
    }

    /// PC `i` of the school's room ([`Cluster::start_with_room`]).
    pub fn room_pc(&self, i: usize) -> &Node {
        &self.lab.pcs()[3 + i]
    }

    /// The school server's namespace (where clients run).
    pub fn school(&self) -> &Node {
        self.lab.server()
    }

    /// S3 endpoint of site `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://{}:{S3_PORT}", self.site(i).addr().addr())
    }

    /// Creates `bucket` if needed and a key `key_name` allowed to read it (and write it when
    /// `write`).
    pub fn bucket_with_key(
        &self,
        bucket: &str,
        key_name: &str,
        write: bool,
    ) -> Result<Key, LabError> {
        if !self.garage(0, &["bucket", "list"])?.contains(bucket) {
            self.garage(0, &["bucket", "create", bucket])?;
        }
        let out = self.garage(0, &["key", "create", key_name])?;
        let field = |label: &str| {
            out.lines()
                .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
                .ok_or_else(|| failed("key create", format!("no {label} in its output")))
        };
        let key = Key {
            id: field("Key ID:")?,
            secret: field("Secret key:")?,
        };
        let mut args = vec!["bucket", "allow", "--read"];
        if write {
            args.push("--write");
        }
        args.extend([bucket, "--key", key_name]);
        self.garage(0, &args)?;
        Ok(key)
    }

    /// Kills site `i`'s node (SIGKILL), as a site going dark.
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut d) = self.nodes[i].take() {
            d.stop();
        }
    }

    /// The nodes' log files.
    pub fn logs(&self) -> Vec<PathBuf> {
        (0..3)
            .map(|i| self.dir.join(format!("site{i}/garage.log")))
            .collect()
    }
}
