//! The proxyDHCP driver: two UDP sockets (67 and 4011) bound to the room's interface only
//! (SO_BINDTODEVICE), feeding `proto::dhcp::handle` and sending what it decides.
//!
//! Safety: it refuses to start unless the named interface exists and has an address inside the room's
//! subnet, and that address is the one the replies name as server; so a typo in a room file cannot
//! make roomcast answer PXE requests on the school's main network.

use crate::net::pxe_gate::SharedGate;
use roomcast_proto::dhcp::{self, Destination, Port, ProxyConfig};
use roomcast_proto::dhcp_authoritative::{self, Leases};
use roomcast_proto::mac::Mac;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::str::FromStr;
use tokio::net::UdpSocket;

/// An IPv4 subnet such as the room file's `network.subnet` (`198.18.12.0/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0 to 32.
    pub prefix: u8,
}

impl Subnet {
    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Subnet, String> {
        let bad = || format!("{s:?}: not a subnet like 198.18.12.0/24");
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        Ok(Subnet { addr, prefix })
    }
}

/// Why the proxyDHCP service does not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProxyDhcpError {
    /// The room's interface is not there.
    #[error("proxyDHCP: interface {0:?} does not exist here")]
    NoInterface(String),
    /// The interface has no address in the room's subnet: refusing to serve a network that may
    /// not be the room's.
    #[error(
        "proxyDHCP: interface {interface:?} has no address in the room subnet {subnet}/{prefix}"
    )]
    NotInSubnet {
        /// The interface.
        interface: String,
        /// The room subnet.
        subnet: Ipv4Addr,
        /// Its prefix length.
        prefix: u8,
    },
    /// The configured server address is not the interface's address in the subnet.
    #[error("proxyDHCP: server address {configured} is not {interface:?}'s address {actual}")]
    WrongServer {
        /// The interface.
        interface: String,
        /// What the config says.
        configured: Ipv4Addr,
        /// What the interface has.
        actual: Ipv4Addr,
    },
    /// A socket call failed.
    #[error("proxyDHCP on {interface}: {step}: {source}")]
    Io {
        /// The interface.
        interface: String,
        /// What was being done.
        step: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The interface's IPv4 address inside `subnet`, or why there is none.
pub fn room_address(interface: &str, subnet: Subnet) -> Result<Ipv4Addr, ProxyDhcpError> {
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == interface)
        .ok_or_else(|| ProxyDhcpError::NoInterface(interface.to_string()))?;
    iface
        .ips
        .iter()
        .filter_map(|n| match n.ip() {
            std::net::IpAddr::V4(v4) => Some(v4),
            _ => None,
        })
        .find(|ip| subnet.contains(*ip))
        .ok_or(ProxyDhcpError::NotInSubnet {
            interface: interface.to_string(),
            subnet: subnet.addr,
            prefix: subnet.prefix,
        })
}

fn bound_socket(interface: &str, port: u16) -> Result<UdpSocket, ProxyDhcpError> {
    let io = |step| {
        let interface = interface.to_string();
        move |source| ProxyDhcpError::Io {
            interface,
            step,
            source,
        }
    };
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(io("socket"))?;
    s.set_reuse_address(true).map_err(io("SO_REUSEADDR"))?;
    s.set_broadcast(true).map_err(io("SO_BROADCAST"))?;
    s.bind_device(Some(interface.as_bytes()))
        .map_err(io("SO_BINDTODEVICE"))?;
    // 0.0.0.0: broadcasts to 255.255.255.255 only reach a socket bound to the wildcard address;
    // SO_BINDTODEVICE keeps it to the room interface.
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())
        .map_err(io("bind"))?;
    s.set_nonblocking(true).map_err(io("O_NONBLOCK"))?;
    UdpSocket::from_std(s.into()).map_err(io("tokio socket"))
}

/// A started proxyDHCP service (sockets bound, checks passed).
pub struct ProxyDhcp {
    interface: String,
    config: ProxyConfig,
    dhcp: UdpSocket,
    pxe: UdpSocket,
    seen: Option<tokio::sync::mpsc::UnboundedSender<Mac>>,
    gate: Option<SharedGate>,
    leases: Option<Leases>,
}

impl ProxyDhcp {
    /// Checks the interface against the room subnet and binds ports 67 and 4011 on it.
    pub fn bind(
        interface: &str,
        subnet: Subnet,
        config: ProxyConfig,
    ) -> Result<ProxyDhcp, ProxyDhcpError> {
        let actual = room_address(interface, subnet)?;
        if actual != config.server {
            return Err(ProxyDhcpError::WrongServer {
                interface: interface.to_string(),
                configured: config.server,
                actual,
            });
        }
        Ok(ProxyDhcp {
            interface: interface.to_string(),
            dhcp: bound_socket(interface, dhcp::DHCP_SERVER_PORT)?,
            pxe: bound_socket(interface, dhcp::PXE_PORT)?,
            config,
            seen: None,
            gate: None,
            leases: None,
        })
    }

    /// Every campaign MAC that sends a PXE request is also sent here (Wake-on-LAN stops on it).
    pub fn notify_seen(mut self, tx: tokio::sync::mpsc::UnboundedSender<Mac>) -> Self {
        self.seen = Some(tx);
        self
    }

    /// Every PXE exchange of a campaign MAC heard on either port (answered or not: the REQUEST to
    /// the school's DHCP server names the address the PC takes) is recorded in `gate`, which
    /// decides who gets a boot token (`net::pxe_gate`).
    pub fn witness(mut self, gate: SharedGate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Switches to authoritative mode (addresses from `leases` to campaign MACs). ISOLATED networks
    /// only: next to the school's DHCP server two servers would hand out addresses.
    pub fn authoritative(mut self, leases: Leases) -> Self {
        self.leases = Some(leases);
        self
    }

    /// Answers requests until an I/O error.
    pub async fn run(mut self) -> Result<(), ProxyDhcpError> {
        let mut a = [0u8; 1500];
        let mut b = [0u8; 1500];
        loop {
            let (port, len, from) = tokio::select! {
                r = self.dhcp.recv_from(&mut a) => (Port::Dhcp, r, &a),
                r = self.pxe.recv_from(&mut b) => (Port::Pxe, r, &b),
            };
            let (len, from_addr) = len.map_err(|source| self.io("receive", source))?;
            if let Some(gate) = &self.gate {
                let source = match from_addr.ip() {
                    std::net::IpAddr::V4(a) => a,
                    std::net::IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
                };
                if let Some(seen) = dhcp::sighting(&self.config, &from[..len], source) {
                    tracing::debug!(mac = %seen.mac, kind = ?seen.kind, ?port, "proxyDHCP saw");
                    gate.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .observe(seen, std::time::Instant::now());
                }
            }
            let decision = match &mut self.leases {
                Some(leases) => {
                    let now = crate::clock::Clock::now(&crate::clock::SystemClock).0 as u64;
                    dhcp_authoritative::handle(&self.config, leases, port, &from[..len], now)
                }
                None => dhcp::handle(&self.config, port, &from[..len]),
            };
            match decision {
                Ok(reply) => {
                    if let Some(tx) = &self.seen {
                        let _ = tx.send(reply.mac);
                    }
                    let to: SocketAddr = match reply.destination {
                        Destination::Broadcast => {
                            SocketAddrV4::new(Ipv4Addr::BROADCAST, dhcp::DHCP_CLIENT_PORT).into()
                        }
                        Destination::Sender => from_addr,
                        Destination::Relay(giaddr) => {
                            SocketAddrV4::new(giaddr, dhcp::DHCP_SERVER_PORT).into()
                        }
                    };
                    let socket = if port == Port::Pxe {
                        &self.pxe
                    } else {
                        &self.dhcp
                    };
                    tracing::info!(mac = %reply.mac, ?port, stage = ?reply.stage, file = ?reply.boot_file(), %to, "proxyDHCP reply");
                    if let Err(e) = socket.send_to(&reply.to_bytes(), to).await {
                        tracing::warn!(mac = %reply.mac, %to, %e, "proxyDHCP send failed");
                    }
                }
                Err(why) => tracing::debug!(%from_addr, ?port, %why, "proxyDHCP ignored"),
            }
        }
    }

    fn io(&self, step: &'static str, source: std::io::Error) -> ProxyDhcpError {
        ProxyDhcpError::Io {
            interface: self.interface.clone(),
            step,
            source,
        }
    }
}
