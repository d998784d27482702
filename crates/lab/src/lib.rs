//! A virtual classroom on one machine, for tests, benchmarks and `roomcast demo`.
//!
//! A [`Lab`] is a Linux bridge (the room's switch) with a server namespace and N PC namespaces on
//! it, each joined by a veth pair, all addressed in 198.18.0.0/16. Links can be rate-limited (`tbf`)
//! and a PC can lose packets (nftables). Nothing is connected to the machine's real interfaces: the
//! bridge has no address and no uplink, so nothing a test sends can leave the machine.
//!
//! Everything a lab creates carries its [`LabPrefix`] (`rc` + 4 random characters), so several labs
//! run at once, and its `Drop` removes all of it (processes in its namespaces included), also when
//! a test panics. A run killed before it could drop leaves a stale lab that
//! [`cleanup::remove_stale`] or `roomcast lab cleanup` removes.
//!
//! ```no_run
//! # fn main() -> Result<(), roomcast_lab::LabError> {
//! use roomcast_lab::{Lab, Tbf};
//! let lab = Lab::builder().pcs(3).rate(Tbf::mbit(200)).build()?;
//! let server = lab.server().addr().to_string();
//! let status = lab.pc(0)?.command("ping").args(["-c1", &server]).status();
//! # let _ = status;
//! # Ok(()) }
//! ```
//!
//! Needs root, `ip` and `tc` (iproute2), and `nft` (nftables) for loss.

pub mod addr;
pub mod bench;
pub mod cleanup;
mod cmd;
pub mod daemon;
pub mod dirty_disk;
mod error;
pub mod garage;
pub mod loss;
pub mod mcast_contender;
pub mod netns;
pub mod network;
pub mod room;
pub mod samba;
pub mod shaping;
pub mod sshd;

pub use addr::{LabGroup, LabIpv4};
pub use cleanup::LabPrefix;
pub use error::LabError;
pub use loss::LossCounters;
pub use network::Network;
pub use room::{RoomConfig, RoomPc, VirtualRoom};
pub use shaping::Tbf;

use std::io::Write;
use std::ops::RangeInclusive;
use std::process::Command;

/// What a lab is made of, gathered by [`LabBuilder`].
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Number of PC namespaces.
    pub pcs: usize,
    /// Rate limit put on both ends of every veth, or none (veth speed, several Gbit/s).
    pub rate: Option<Tbf>,
    /// The switch's multicast settings (snooping, querier, router port, fast-leave, the PCs'
    /// MTU). Default: snooping off, the bridge floods multicast to every port like a plain switch.
    pub network: Network,
    /// A chosen prefix, or a random free one.
    pub prefix: Option<LabPrefix>,
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            pcs: 1,
            rate: None,
            network: Network::Flood,
            prefix: None,
        }
    }
}

/// Builds a [`Lab`]: `Lab::builder().pcs(3).rate(Tbf::mbit(200)).build()`.
#[derive(Debug, Clone, Default)]
pub struct LabBuilder {
    config: LabConfig,
}

impl LabBuilder {
    /// Number of PCs (default 1).
    pub fn pcs(mut self, n: usize) -> Self {
        self.config.pcs = n;
        self
    }

    /// Rate-limits every link (both directions).
    pub fn rate(mut self, tbf: Tbf) -> Self {
        self.config.rate = Some(tbf);
        self
    }

    /// Turns IGMP snooping on (with the bridge as IGMPv2 querier) or off (default off).
    pub fn multicast_snooping(mut self, on: bool) -> Self {
        self.config.network = if on {
            Network::QuerierV2
        } else {
            Network::Flood
        };
        self
    }

    /// The switch as one of the network cases schools have ([`Network`]).
    pub fn network(mut self, network: Network) -> Self {
        self.config.network = network;
        self
    }

    /// Uses this prefix instead of a random one (it must not be in use).
    pub fn prefix(mut self, prefix: LabPrefix) -> Self {
        self.config.prefix = Some(prefix);
        self
    }

    /// Creates the bridge, the namespaces and the links. On any failure, whatever was already
    /// created is removed before the error is returned.
    pub fn build(self) -> Result<Lab, LabError> {
        Lab::create(self.config)
    }
}

/// One machine of the lab: a network namespace with one interface on the room's switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    role: String,
    netns: String,
    ifname: String,
    host_if: String,
    addr: LabIpv4,
}

impl Node {
    /// Its role: `srv`, `pc0`, `pc1`, ... or the label given to [`Lab::add_node`].
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The network namespace's name (`<prefix>-<role>`), for `ip netns exec`.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The interface inside the namespace (`vsrv`, `vc0`, `vx0`, ...): what to give `--interface`.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The veth end on the bridge, in the root namespace.
    pub fn host_if(&self) -> &str {
        &self.host_if
    }

    /// Its address (prefix length [`addr::PREFIX_LEN`]).
    pub fn addr(&self) -> LabIpv4 {
        self.addr
    }

    /// `ip netns exec <netns> <program>`: add arguments, then spawn, run or capture it. Everything
    /// it starts is killed when the lab drops.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, program]);
        c
    }

    /// Runs `f` on a thread inside this namespace; sockets it creates stay in the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
        netns::run_in(&self.netns, f)
    }

    /// Spawns a thread inside this namespace running `f`.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<Result<T, LabError>> {
        netns::spawn_in(&self.netns, f)
    }
}

/// A running virtual room. Dropping it removes everything it created.
#[derive(Debug)]
pub struct Lab {
    prefix: LabPrefix,
    bridge: String,
    rate: Option<Tbf>,
    server: Option<Node>,
    pcs: Vec<Node>,
    extras: Vec<Node>,
    taps: Vec<String>,
    network: Network,
    removed: bool,
}

impl Lab {
    /// Starts describing a lab.
    pub fn builder() -> LabBuilder {
        LabBuilder::default()
    }

    fn create(config: LabConfig) -> Result<Lab, LabError> {
        if config.pcs > addr::MAX_PCS {
            return Err(LabError::Invalid {
                prefix: config.prefix.map_or("-".into(), |p| p.to_string()),
                reason: format!("{} PCs asked, at most {}", config.pcs, addr::MAX_PCS),
            });
        }
        // The state file comes first: from here on, a crash leaves a lab recognisable as stale.
        // Creating it exclusively also settles a race between two labs drawing the same prefix.
        let prefix = loop {
            let prefix = match &config.prefix {
                Some(p) => p.clone(),
                None => LabPrefix::random()?,
            };
            let in_use = || LabError::Invalid {
                prefix: prefix.to_string(),
                reason: "a lab with this prefix already exists (`roomcast lab cleanup`?)".into(),
            };
            if cleanup::list()?.iter().any(|l| l.prefix == prefix) {
                return Err(in_use());
            }
            let state = cleanup::state_file(&prefix);
            let created = std::fs::create_dir_all(cleanup::STATE_DIR).and_then(|()| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&state)?
                    .write_all(std::process::id().to_string().as_bytes())
            });
            match created {
                Ok(()) => break prefix,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if config.prefix.is_some() {
                        return Err(in_use());
                    }
                }
                Err(source) => {
                    return Err(LabError::Io {
                        step: format!("lab {prefix}: writing {}", state.display()),
                        source,
                    });
                }
            }
        };
        // From here on, an early return drops `lab`, which removes what exists so far.
        let mut lab = Lab {
            bridge: format!("{prefix}br"),
            prefix,
            rate: config.rate,
            server: None,
            pcs: Vec::new(),
            extras: Vec::new(),
            taps: Vec::new(),
            network: Network::Flood,
            removed: false,
        };
        lab.create_bridge(config.network)?;
        let server = lab.create_node("srv", "vsrv", "s".into(), addr::server_addr())?;
        lab.server = Some(server);
        for i in 0..config.pcs {
            let a = addr::pc_addr(i).expect("checked against MAX_PCS");
            let pc = lab.create_node(&format!("pc{i}"), &format!("vc{i}"), format!("p{i}"), a)?;
            lab.pcs.push(pc);
        }
        config
            .network
            .apply_ports(lab.prefix.as_str(), lab.server(), &lab.pcs)?;
        lab.network = config.network;
        tracing::info!(prefix = %lab.prefix, pcs = config.pcs, "lab up");
        Ok(lab)
    }

    fn step(&self, what: &str) -> String {
        format!("lab {}: {what}", self.prefix)
    }

    fn ip(&self, what: &str, args: &[&str]) -> Result<(), LabError> {
        cmd::run(&self.step(what), "ip", args).map(drop)
    }

    fn create_bridge(&self, network: Network) -> Result<(), LabError> {
        let br = &self.bridge;
        // Without a querier, memberships learnt from unsolicited joins expire after ~4 min.
        let settings = network.bridge_args();
        let mut args = vec!["link", "add", "name", br, "type", "bridge"];
        args.extend(settings.iter().map(String::as_str));
        self.ip("creating the bridge", &args)?;
        // No IPv6 address on the switch: the host itself never takes part in the room.
        self.ip(
            "keeping the bridge address-free",
            &["link", "set", "dev", br, "addrgenmode", "none"],
        )?;
        self.ip("bringing the bridge up", &["link", "set", "dev", br, "up"])
    }

    fn create_node(
        &self,
        role: &str,
        ifname: &str,
        host_suffix: String,
        addr: LabIpv4,
    ) -> Result<Node, LabError> {
        let node = Node {
            role: role.to_owned(),
            netns: format!("{}-{role}", self.prefix),
            ifname: ifname.to_owned(),
            host_if: format!("{}{host_suffix}", self.prefix),
            addr,
        };
        let (ns, inside, host) = (&node.netns, &node.ifname, &node.host_if);
        let cidr = format!("{addr}/{}", addr::PREFIX_LEN);
        self.ip(&format!("creating namespace {ns}"), &["netns", "add", ns])?;
        self.ip(
            &format!("creating the veth pair of {role}"),
            &[
                "link", "add", "name", host, "type", "veth", "peer", "name", inside, "netns", ns,
            ],
        )?;
        self.ip(
            &format!("keeping {host} address-free"),
            &["link", "set", "dev", host, "addrgenmode", "none"],
        )?;
        self.ip(
            &format!("plugging {role} into the switch"),
            &["link", "set", "dev", host, "master", &self.bridge, "up"],
        )?;
        let in_ns: [(&str, Vec<&str>); 5] = [
            ("bringing lo up", vec!["link", "set", "dev", "lo", "up"]),
            // `brd +`: without it the broadcast address is 0.0.0.0 and broadcast discovery is lost.
            (
                "adding the address",
                vec!["addr", "add", &cidr, "brd", "+", "dev", inside],
            ),
            (
                "bringing the interface up",
                vec!["link", "set", "dev", inside, "up"],
            ),
            // Sends to 255.255.255.255 and to multicast groups fail with "network unreachable"
            // without these two routes.
            (
                "adding the default route",
                vec!["route", "add", "default", "dev", inside],
            ),
            (
                "adding the multicast route",
                vec!["route", "add", "224.0.0.0/4", "dev", inside],
            ),
        ];
        for (what, args) in in_ns {
            let mut full = vec!["-n", ns.as_str()];
            full.extend(args);
            self.ip(&format!("{role}: {what}"), &full)?;
        }
        if let Some(tbf) = &self.rate {
            self.shape(&node, Some(tbf))?;
        }
        Ok(node)
    }

    fn shape(&self, node: &Node, tbf: Option<&Tbf>) -> Result<(), LabError> {
        let p = self.prefix.as_str();
        match tbf {
            Some(t) => {
                shaping::apply(p, None, &node.host_if, t)?;
                shaping::apply(p, Some(&node.netns), &node.ifname, t)
            }
            None => {
                shaping::clear(p, None, &node.host_if)?;
                shaping::clear(p, Some(&node.netns), &node.ifname)
            }
        }
    }

    /// This lab's prefix (every name it created starts with it).
    pub fn prefix(&self) -> &LabPrefix {
        &self.prefix
    }

    /// The bridge, i.e. the room's switch (root namespace).
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The rate every link was built with.
    pub fn rate(&self) -> Option<Tbf> {
        self.rate
    }

    /// The network case the switch was built as.
    pub fn network(&self) -> Network {
        self.network
    }

    /// Cuts `node` off multicast group `group` ([`network::block_group`]).
    pub fn block_group(&self, node: &Node, group: std::net::Ipv4Addr) -> Result<(), LabError> {
        network::block_group(self.prefix.as_str(), node, group)
    }

    /// The deploy server.
    pub fn server(&self) -> &Node {
        self.server.as_ref().expect("a built lab has a server")
    }

    /// All PCs, in order (`pc0` = 198.18.1.1, ...).
    pub fn pcs(&self) -> &[Node] {
        &self.pcs
    }

    /// PC `i`.
    pub fn pc(&self, i: usize) -> Result<&Node, LabError> {
        self.pcs.get(i).ok_or_else(|| LabError::Invalid {
            prefix: self.prefix.to_string(),
            reason: format!("no pc{i}: the lab has {} PCs", self.pcs.len()),
        })
    }

    /// Nodes added with [`Lab::add_node`].
    pub fn extras(&self) -> &[Node] {
        &self.extras
    }

    /// Adds another machine on the switch (a DHCP server, an AD DC, an SSH master, ...) with
    /// address 198.18.0.10 + its rank. `label`: 1 to 8 lowercase letters or digits, not `srv` nor
    /// `pc<N>`.
    pub fn add_node(&mut self, label: &str) -> Result<&Node, LabError> {
        let clash = label == "srv"
            || (label.starts_with("pc") && label[2..].bytes().all(|b| b.is_ascii_digit()))
            || self.extras.iter().any(|n| n.role == label);
        let shape_ok = !label.is_empty()
            && label.len() <= 8
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if clash || !shape_ok {
            return Err(LabError::Invalid {
                prefix: self.prefix.to_string(),
                reason: format!("{label:?} is not a free node label (1-8 of [a-z0-9])"),
            });
        }
        let k = self.extras.len();
        let a = addr::extra_addr(k).ok_or_else(|| LabError::Invalid {
            prefix: self.prefix.to_string(),
            reason: "no address left for another extra node".into(),
        })?;
        let node = self.create_node(label, &format!("vx{k}"), format!("x{k}"), a)?;
        self.extras.push(node);
        Ok(self.extras.last().expect("just pushed"))
    }

    /// Creates a tap device on the switch (root namespace) for a virtual machine's NIC
    /// (`-netdev tap,ifname=<name>,script=no,downscript=no`) and returns its name. The lab's rate,
    /// if any, limits what the switch sends to the VM.
    pub fn add_tap(&mut self) -> Result<String, LabError> {
        let tap = format!("{}t{}", self.prefix, self.taps.len());
        self.ip(
            &format!("creating tap {tap}"),
            &["tuntap", "add", "dev", &tap, "mode", "tap"],
        )?;
        self.taps.push(tap.clone());
        self.ip(
            &format!("keeping {tap} address-free"),
            &["link", "set", "dev", &tap, "addrgenmode", "none"],
        )?;
        self.ip(
            &format!("plugging {tap} into the switch"),
            &["link", "set", "dev", &tap, "master", &self.bridge, "up"],
        )?;
        if let Some(t) = &self.rate {
            shaping::apply(self.prefix.as_str(), None, &tap, t)?;
        }
        Ok(tap)
    }

    /// Changes the rate of one node's link (both ends); `None` removes the limit. A slow PC in an
    /// otherwise fast room is built this way.
    pub fn set_rate(&self, node: &Node, tbf: Option<Tbf>) -> Result<(), LabError> {
        self.shape(node, tbf.as_ref())
    }

    /// `tc qdisc show` of both ends of a node's link: (host end, namespace end).
    pub fn qdiscs(&self, node: &Node) -> Result<(String, String), LabError> {
        let p = self.prefix.as_str();
        Ok((
            shaping::show(p, None, &node.host_if)?,
            shaping::show(p, Some(&node.netns), &node.ifname)?,
        ))
    }

    /// Makes `node` drop `percent` % of the UDP packets it receives on `ports`, independently at
    /// random (replaces an earlier rule of this node).
    pub fn set_loss(
        &self,
        node: &Node,
        percent: u8,
        ports: RangeInclusive<u16>,
    ) -> Result<(), LabError> {
        if percent > 100 || ports.is_empty() {
            return Err(LabError::Invalid {
                prefix: self.prefix.to_string(),
                reason: format!("loss {percent} % on ports {ports:?} is not a loss rule"),
            });
        }
        loss::install(self.prefix.as_str(), &node.netns, percent, &ports)
    }

    /// Removes `node`'s loss rule.
    pub fn clear_loss(&self, node: &Node) -> Result<(), LabError> {
        loss::remove(self.prefix.as_str(), &node.netns)
    }

    /// Packets seen and dropped by `node`'s loss rule.
    pub fn loss_counters(&self, node: &Node) -> Result<LossCounters, LabError> {
        loss::counters(self.prefix.as_str(), &node.netns)
    }

    /// Removes everything now and reports what failed (`Drop` does the same but can only log).
    pub fn teardown(mut self) -> Result<(), LabError> {
        self.removed = true;
        cleanup::remove(&self.prefix)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        self.removed = true;
        if let Err(e) = cleanup::remove(&self.prefix) {
            // Drop cannot fail: say it loudly, `roomcast lab cleanup` finishes the job.
            tracing::error!(prefix = %self.prefix, error = %e, "lab cleanup failed");
            eprintln!(
                "roomcast lab {}: cleanup failed: {e} (run `roomcast lab cleanup --prefix {}`)",
                self.prefix, self.prefix
            );
        }
    }
}
