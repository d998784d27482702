//! A whole virtual classroom for the campaign: the [`Lab`] network plus the real services a
//! campaign talks to. The deploy server (`srv`) is where roomcast runs; a Samba AD DC (`dc`,
//! 198.18.0.10) takes the joins; every PC (`pc0`, `pc1`, ...) runs OpenSSH in its own UTS and mount
//! namespace and owns a sparse disk file. PC 0 is the master, as in a real room where the reference
//! PC is one of the room's machines: steps b–f work on it, g re-images every PC including it.
//!
//! Dropping a [`VirtualRoom`] stops every daemon, then removes the lab (namespaces, links, state
//! file); the files under its folder belong to the caller.

use super::samba::{DomainConfig, SambaDc};
use super::sshd::{Identity, SshKeys, Sshd};
use super::{Lab, LabError, Node, Tbf};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to build.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// Number of PCs (PC 0 is the master). Default 3.
    pub pcs: usize,
    /// Size of each PC's sparse disk file. Default 64 MiB.
    pub disk_bytes: u64,
    /// A domain controller to provision, or none.
    pub domain: Option<DomainConfig>,
    /// Rate limit of every link, or veth speed.
    pub rate: Option<Tbf>,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            pcs: 3,
            disk_bytes: 64 << 20,
            domain: None,
            rate: None,
        }
    }
}

/// One PC of the room.
#[derive(Debug)]
pub struct RoomPc {
    sshd: Sshd,
    node: Node,
    disk: PathBuf,
    dir: PathBuf,
}

impl RoomPc {
    /// Its namespace and address.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Its disk (a sparse file of [`RoomConfig::disk_bytes`]).
    pub fn disk(&self) -> &Path {
        &self.disk
    }

    /// Its private folder (sshd config and log, identity files, mount point).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its SSH server.
    pub fn sshd(&self) -> &Sshd {
        &self.sshd
    }

    /// The hostname the PC reports now (after a join: the room file's).
    pub fn hostname(&self) -> Result<String, LabError> {
        Ok(self
            .sshd
            .exec("reading the hostname", "hostname", &[])?
            .trim()
            .to_owned())
    }

    /// Mounts the disk's filesystem (loop device, auto-cleared) at [`DISK_MOUNT`] inside the PC's
    /// own mount namespace: what "booting the PC from its disk" means in the lab, so that installers
    /// run over SSH write onto the disk. Only commands on this PC see the mount, and it disappears
    /// with the PC.
    pub fn mount_disk(&self) -> Result<(), LabError> {
        let disk = self.disk.to_string_lossy();
        self.sshd.exec(
            "mounting its disk",
            "mount",
            &["-o", "loop", &disk, DISK_MOUNT],
        )?;
        Ok(())
    }

    /// Syncs and unmounts the disk ("shutting the PC down" before a capture or a re-image).
    pub fn unmount_disk(&self) -> Result<(), LabError> {
        self.sshd
            .exec("unmounting its disk", "umount", &[DISK_MOUNT])
            .map(drop)
    }

    /// Whether the disk is mounted in the PC's namespace now.
    pub fn disk_mounted(&self) -> Result<bool, LabError> {
        let out = self
            .sshd
            .exec("listing its mounts", "cat", &["/proc/self/mounts"])?;
        Ok(out.lines().any(|l| l.split(' ').nth(1) == Some(DISK_MOUNT)))
    }
}

/// Where a PC's disk is mounted in its own mount namespace ([`RoomPc::mount_disk`]): `/mnt`, which
/// exists (empty) on every Debian system; the host's `/mnt` is untouched.
pub const DISK_MOUNT: &str = "/mnt";

/// A running virtual classroom (see the module doc). Fields drop in order: daemons first, lab last.
#[derive(Debug)]
pub struct VirtualRoom {
    pcs: Vec<RoomPc>,
    dc: Option<SambaDc>,
    keys: SshKeys,
    dir: PathBuf,
    domain: Option<DomainConfig>,
    lab: Lab,
}

impl VirtualRoom {
    /// Builds the room in `dir` (keys, disks, daemon configs and logs go there). On any failure,
    /// whatever was started is stopped and removed before the error is returned.
    pub fn build(config: &RoomConfig, dir: &Path) -> Result<VirtualRoom, LabError> {
        let io = |what: String, source| LabError::Io { step: what, source };
        std::fs::create_dir_all(dir).map_err(|e| io(format!("creating {}", dir.display()), e))?;
        let mut builder = Lab::builder().pcs(config.pcs);
        if let Some(rate) = config.rate {
            builder = builder.rate(rate);
        }
        let mut lab = builder.build()?;
        let keys = SshKeys::generate(&dir.join("ssh"))?;
        // The DC first: the PCs' resolv.conf points at it.
        let dc = match &config.domain {
            None => None,
            Some(domain) => {
                let node = lab.add_node("dc")?.clone();
                Some(SambaDc::start(
                    &node,
                    domain,
                    &dir.join("dc"),
                    Duration::from_secs(120),
                )?)
            }
        };
        let mut pcs = Vec::with_capacity(config.pcs);
        for node in lab.pcs().to_vec() {
            let pc_dir = dir.join(node.role());
            std::fs::create_dir_all(&pc_dir)
                .map_err(|e| io(format!("creating {}", pc_dir.display()), e))?;
            let disk = pc_dir.join("disk.img");
            std::fs::File::create(&disk)
                .and_then(|f| f.set_len(config.disk_bytes))
                .map_err(|e| io(format!("creating the sparse disk {}", disk.display()), e))?;
            let identity = Identity {
                hostname: format!("unnamed-{}", node.role()),
                nameserver: dc.as_ref().map(SambaDc::addr),
                dir: pc_dir.join("host"),
            };
            let host_key = keys.host_key(node.role())?;
            let sshd = Sshd::start(&node, &keys, &host_key, Some(&identity), &pc_dir)?;
            pcs.push(RoomPc {
                sshd,
                node,
                disk,
                dir: pc_dir,
            });
        }
        Ok(VirtualRoom {
            pcs,
            dc,
            keys,
            dir: dir.to_path_buf(),
            domain: config.domain.clone(),
            lab,
        })
    }

    /// The network underneath (server node, bridge, prefix).
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The deploy server's namespace: where roomcast itself runs the campaign.
    pub fn server(&self) -> &Node {
        self.lab.server()
    }

    /// Every PC, in order.
    pub fn pcs(&self) -> &[RoomPc] {
        &self.pcs
    }

    /// The master PC (PC 0).
    pub fn master(&self) -> &RoomPc {
        &self.pcs[0]
    }

    /// The domain controller, if the room has one.
    pub fn dc(&self) -> Option<&SambaDc> {
        self.dc.as_ref()
    }

    /// The domain it was built with.
    pub fn domain(&self) -> Option<&DomainConfig> {
        self.domain.as_ref()
    }

    /// roomcast's SSH client key and known-hosts file.
    pub fn keys(&self) -> &SshKeys {
        &self.keys
    }

    /// The room's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops every daemon and removes the lab now, reporting what failed (`Drop` only logs).
    pub fn teardown(mut self) -> Result<(), LabError> {
        self.pcs.clear();
        self.dc = None;
        let VirtualRoom { lab, .. } = self;
        lab.teardown()
    }
}
