//! The lab's way into the agent, for tests and `roomcast demo`: what firmware, iPXE and the boot
//! environment's init do on a real PC, played inside the PC's network namespace. It fetches the
//! PC's boot script from the session over HTTP (so the one-time token is issued exactly as for a
//! real PC, and a machine outside the session gets the local-disk script), reads the kernel command
//! line, and starts the real `roomcast agent` (restore or `--capture`) on the PC's disk file.

use crate::campaign::imaging::boot::{
    AgentBoot, BootError, BootServices, Booting, Machine, SessionInfo,
};
use roomcast_proto::contract::{AgentCmdline, AgentMode};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One PC of the virtual room.
#[derive(Debug, Clone)]
struct LabPc {
    netns: String,
    disk: PathBuf,
}

/// Boots lab PCs into the real agent binary.
#[derive(Debug, Clone)]
pub struct LabBoot {
    binary: PathBuf,
    trusted_key: PathBuf,
    logs: PathBuf,
    pcs: BTreeMap<String, LabPc>,
    powered_off: BTreeSet<String>,
}

impl LabBoot {
    /// `binary`: the `roomcast` executable the agents run; `trusted_key`: the signer key a real
    /// boot environment bakes in; `logs`: where each agent's output goes
    /// (`<logs>/<hostname>-<mode>.log`).
    pub fn new(binary: &Path, trusted_key: &Path, logs: &Path) -> LabBoot {
        LabBoot {
            binary: binary.to_path_buf(),
            trusted_key: trusted_key.to_path_buf(),
            logs: logs.to_path_buf(),
            pcs: BTreeMap::new(),
            powered_off: BTreeSet::new(),
        }
    }

    /// Declares PC `hostname`: its network namespace and its disk file.
    pub fn pc(mut self, hostname: &str, netns: &str, disk: &Path) -> LabBoot {
        self.pcs.insert(
            hostname.to_string(),
            LabPc {
                netns: netns.to_string(),
                disk: disk.to_path_buf(),
            },
        );
        self
    }

    /// Makes `hostname` a PC that never powers on: waking it does nothing, like a dead PC or one
    /// unplugged from the mains.
    pub fn powered_off(mut self, hostname: &str) -> LabBoot {
        self.powered_off.insert(hostname.to_string());
        self
    }
}

/// No boot services in the lab: the agent is started directly, the boot script fetched over HTTP.
struct NoServices;

/// A PC that stays dark.
struct Dark;

impl Booting for Dark {
    fn ended(&mut self) -> Option<String> {
        None
    }
}

/// A PC that booted its local disk (its boot script said so): no agent, no report.
struct LocalDisk;

impl Booting for LocalDisk {
    fn ended(&mut self) -> Option<String> {
        Some("the boot script booted the local disk (machine not in this session)".into())
    }
}

/// The agent process running in the PC's namespace; killed when dropped.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Booting for Agent {
    fn ended(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let last = log.lines().last().unwrap_or("").to_string();
                Some(format!(
                    "the agent exited ({status}); last line of {}: {last}",
                    self.log.display()
                ))
            }
            Ok(None) => None,
            Err(e) => Some(format!("the agent cannot be watched: {e}")),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AgentBoot for LabBoot {
    fn open(&self, _session: &SessionInfo) -> Result<Box<dyn BootServices>, BootError> {
        Ok(Box::new(NoServices))
    }

    fn boot(
        &self,
        machine: &Machine,
        session: &SessionInfo,
    ) -> Result<Box<dyn Booting>, BootError> {
        let host = &machine.hostname;
        if self.powered_off.contains(host) {
            return Ok(Box::new(Dark));
        }
        let pc = self.pcs.get(host).ok_or_else(|| {
            BootError::Failed(format!(
                "{host}: not a PC of this lab (no namespace, no disk)"
            ))
        })?;
        let url = format!(
            "{}/boot/{}.ipxe",
            session.base_url,
            machine.mac.hyphenated()
        );
        // The lab's PCs have no firmware and no proxyDHCP runs: this plays both, telling the
        // session's PXE gate the address the PC's DHCP exchange would have shown (the source
        // address its requests to the server leave from), then asks for the script from it.
        let server = std::net::SocketAddrV4::new(session.server, 67);
        let gate = session.pxe_gate.clone();
        let mac = machine.mac;
        let fetched = roomcast_lab::netns::run_in(&pc.netns, || -> std::io::Result<String> {
            let probe = std::net::UdpSocket::bind("0.0.0.0:0")?;
            probe.connect(server)?;
            if let std::net::SocketAddr::V4(own) = probe.local_addr()? {
                use roomcast_proto::dhcp::{Sighted, Sighting};
                let mut g = gate.lock().unwrap_or_else(|p| p.into_inner());
                let now = std::time::Instant::now();
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
                        kind: Sighted::Address(*own.ip()),
                    },
                    now,
                );
            }
            ureq::get(&url)
                .call()
                .and_then(|mut r| r.body_mut().read_to_string())
                .map_err(std::io::Error::other)
        })
        .map_err(|e| BootError::Failed(format!("{host}: {e}")))?;
        let script = fetched.map_err(|e| BootError::Failed(format!("{host}: GET {url}: {e}")))?;
        let Some(cmdline) = AgentCmdline::parse_script(&script) else {
            return Ok(Box::new(LocalDisk));
        };
        std::fs::create_dir_all(&self.logs)
            .map_err(|e| BootError::Failed(format!("{}: {e}", self.logs.display())))?;
        let log = self.logs.join(format!("{host}-{}.log", cmdline.mode));
        let out = std::fs::File::create(&log)
            .map_err(|e| BootError::Failed(format!("{}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| BootError::Failed(format!("{}: {e}", log.display())))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &pc.netns])
            .arg(&self.binary)
            .arg("agent")
            .arg("--server")
            .arg(&cmdline.server)
            .arg("--disk")
            .arg(&pc.disk)
            .arg("--trusted-key")
            .arg(&self.trusted_key)
            .arg("--workers")
            .arg("2")
            // The token is a credential: environment, not the process list.
            .env("ROOMCAST_TOKEN", &cmdline.token)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if cmdline.mode == AgentMode::Capture {
            cmd.arg("--capture");
        }
        let child = cmd
            .spawn()
            .map_err(|e| BootError::Failed(format!("{host}: starting the agent: {e}")))?;
        tracing::info!(machine = %host, netns = %pc.netns, mode = %cmdline.mode, "lab PC booted into the agent");
        Ok(Box::new(Agent { child, log }))
    }
}
