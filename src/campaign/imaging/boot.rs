//! How a PC gets into the agent: the [`AgentBoot`] trait and the real Wake-on-LAN + PXE way
//! ([`PxeBoot`]). The kernel command line a boot script carries is the contract's
//! (`roomcast_proto::contract::cmdline`).

use crate::net::files::BootRoot;
use crate::net::proxydhcp::Subnet;
use crate::serve::services::{Pxe, RoomServices};
use roomcast_proto::contract::AgentMode;
use roomcast_proto::mac::Mac;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

/// A PC of the room, as the room file lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Hostname (the campaign's name for it).
    pub hostname: String,
    /// Its MAC: the key of the boot allowlist.
    pub mac: Mac,
}

/// The server side of one imaging session, as a boot implementation needs it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Base URL of the session's HTTP service (boot scripts, image, uploads, reports).
    pub base_url: String,
    /// The server's address on the room interface.
    pub server: Ipv4Addr,
    /// The room interface (the only one anything is bound to).
    pub interface: String,
    /// The room subnet.
    pub subnet: Subnet,
    /// What the agents do in this session.
    pub mode: AgentMode,
    /// The machines of the session (the allowlist): only they get the agent's boot script.
    pub machines: Vec<Machine>,
    /// The boot root (kernel, initramfs, iPXE binaries).
    pub boot_dir: PathBuf,
    /// The HTTP service's PXE gate (`net::pxe_gate`): whoever plays proxyDHCP records what it sees
    /// there, or no PC gets a boot token.
    pub pxe_gate: crate::net::pxe_gate::SharedGate,
    /// The session's HTTP service: TFTP hands its GRUB scripts to Secure Boot PCs
    /// (`net::tftp`, [`PxeBoot::secure_boot`]).
    pub boot_service: std::sync::Arc<crate::net::http::BootService>,
}

/// Why a PC could not be sent into the agent.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The boot services or the wake-up failed; names the machine or interface.
    #[error("{0}")]
    Failed(String),
}

/// A PC on its way into the agent.
pub trait Booting: Send {
    /// `Some(why)` once it is known that no report will come (the agent process ended, the PC
    /// booted its local disk); `None` while it may still report. Dropping it stops what it started.
    fn ended(&mut self) -> Option<String>;
}

/// Something a session keeps alive while it runs (boot services); dropping it stops them.
pub trait BootServices: Send + Sync {}
impl<T: Send + Sync> BootServices for T {}

/// Brings a machine of the room into the agent. The real one is [`PxeBoot`]; the lab one
/// (`crate::demo::lab_boot::LabBoot`) runs the real agent inside the PC's network namespace.
pub trait AgentBoot: Send + Sync {
    /// Starts what PCs need to reach `session`'s HTTP service (PXE: proxyDHCP and TFTP on the room
    /// interface). Called once per session, before any [`AgentBoot::boot`].
    fn open(&self, session: &SessionInfo) -> Result<Box<dyn BootServices>, BootError>;

    /// Sends `machine` into the agent for `session.mode`. Returns once the PC is on its way; the
    /// session then waits for its report.
    fn boot(&self, machine: &Machine, session: &SessionInfo)
    -> Result<Box<dyn Booting>, BootError>;

    /// Whether the agents this boot starts read the PC they run on and send its facts first
    /// (`roomcast-agent pc`): then a session refuses the image to a machine that sent none. The
    /// lab's agents run on disk files in namespaces and read no PC.
    fn reads_hardware(&self) -> bool {
        false
    }
}

/// The real way: proxyDHCP + TFTP on the room interface while the session runs, and Wake-on-LAN.
/// A PC whose firmware boots from the network first gets iPXE, then the session's boot script (with
/// its mode and one-time token) over HTTP; a PC that is already running (the master after its
/// generalise command) is rebooted by that command instead.
#[derive(Debug, Clone)]
pub struct PxeBoot {
    /// UEFI x64 boot file in the boot root (BIOS clients get `serve::services::BIOS_BOOT_FILE`).
    pub uefi_boot_file: String,
    /// Magic packets sent per machine.
    pub wake_packets: u32,
    /// Pause between two of them.
    pub wake_gap: Duration,
    /// Send "no router here" IPv6 router advertisements on the room interface while the session
    /// runs: saves iPXE a 13-16 s wait on networks without IPv6 routers (`serve --announce-ra`).
    pub announce_ra: bool,
    /// The room's PCs boot with Secure Boot on (room file `secure_boot`): UEFI PCs get Debian's
    /// signed shim, GRUB and kernel (`bootenv build --secure-boot`) instead of iPXE.
    pub secure_boot: bool,
}

impl Default for PxeBoot {
    fn default() -> Self {
        PxeBoot {
            uefi_boot_file: crate::serve::services::DEFAULT_UEFI_BOOT_FILE.into(),
            wake_packets: 3,
            wake_gap: Duration::from_millis(500),
            announce_ra: false,
            secure_boot: false,
        }
    }
}

/// A woken PC: nothing to watch but the report.
struct Woken;

impl Booting for Woken {
    fn ended(&mut self) -> Option<String> {
        None
    }
}

impl AgentBoot for PxeBoot {
    fn reads_hardware(&self) -> bool {
        true
    }

    fn open(&self, session: &SessionInfo) -> Result<Box<dyn BootServices>, BootError> {
        let failed = |what: String| BootError::Failed(format!("{}: {what}", session.interface));
        let root = BootRoot::new(&session.boot_dir)
            .map_err(|e| failed(format!("{}: {e}", session.boot_dir.display())))?;
        if self.secure_boot {
            crate::bootenv::secureboot::check_boot_root(&root).map_err(failed)?;
        }
        let mut pxe = Pxe::new(
            root,
            &session.base_url,
            session.machines.iter().map(|m| m.mac).collect(),
            session.pxe_gate.clone(),
        );
        pxe.uefi_boot_file = self.uefi_boot_file.clone();
        pxe.announce_ra = self.announce_ra;
        pxe.secure_boot = self.secure_boot;
        pxe.scripts = Some(session.boot_service.clone());
        let mut services = RoomServices::on(&session.interface, Some(session.subnet))
            .map_err(|e| failed(e.to_string()))?;
        services.pxe(pxe).map_err(|e| failed(e.to_string()))?;
        Ok(Box::new(services))
    }

    fn boot(
        &self,
        machine: &Machine,
        session: &SessionInfo,
    ) -> Result<Box<dyn Booting>, BootError> {
        let mut waker = crate::net::wol::Waker::open(&session.interface)
            .map_err(|e| BootError::Failed(format!("{}: Wake-on-LAN: {e}", machine.hostname)))?;
        for i in 0..self.wake_packets.max(1) {
            if i > 0 {
                std::thread::sleep(self.wake_gap);
            }
            waker.wake(machine.mac, None).map_err(|e| {
                BootError::Failed(format!("{}: Wake-on-LAN: {e}", machine.hostname))
            })?;
        }
        Ok(Box::new(Woken))
    }
}
