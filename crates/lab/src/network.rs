//! The room's switch as schools have it: IGMP snooping on or off, a querier (IGMPv2 or v3) or none,
//! a static multicast-router port, fast-leave, a smaller MTU on the PCs' side, and a PC whose
//! port never gets the group. One [`Network`] case per cell of the multicast network matrix
//! (`tests/mcast/network.rs`, `examples/bench_multicast.rs --network`).
//!
//! Everything is a setting of the lab's own bridge and veths (`ip link ... type bridge`,
//! `type bridge_slave`) or an nftables table inside one PC's namespace: nothing outside the lab.

use super::{LabError, Node, cmd};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// One network a room may sit on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// Snooping off: the bridge floods multicast to every port, like a plain switch.
    #[default]
    Flood,
    /// Snooping on, no querier: ports are learnt from the PCs' unsolicited joins only.
    SnoopingNoQuerier,
    /// Snooping on, the bridge is an IGMPv2 querier (the common school case).
    QuerierV2,
    /// Snooping on, the bridge is an IGMPv3 querier.
    QuerierV3,
    /// Snooping on, no querier, the server's port a static multicast-router port.
    RouterPort,
    /// Snooping on, IGMPv2 querier, fast-leave on every PC's port (a leave removes the port at
    /// once, no group-specific query first).
    FastLeave,
    /// Flooding, but the PCs' links (both ends of their veths) have an MTU of this many bytes
    /// while the server's has 1500: a datagram sized for 1500 never reaches them.
    PcMtu(u16),
    /// Snooping on with an IGMPv2 querier, and the last PC's port never gets the group (an
    /// nftables rule in its namespace drops everything sent to it, see [`block_group`]).
    UnreachedPc,
}

impl Network {
    /// Every case of the matrix, in order.
    pub const ALL: [Network; 8] = [
        Network::Flood,
        Network::SnoopingNoQuerier,
        Network::QuerierV2,
        Network::QuerierV3,
        Network::RouterPort,
        Network::FastLeave,
        Network::PcMtu(1400),
        Network::UnreachedPc,
    ];

    fn snooping(self) -> bool {
        !matches!(self, Network::Flood | Network::PcMtu(_))
    }

    fn querier(self) -> Option<u8> {
        match self {
            Network::QuerierV2 | Network::FastLeave | Network::UnreachedPc => Some(2),
            Network::QuerierV3 => Some(3),
            _ => None,
        }
    }

    /// Whether the last PC must be cut off the group ([`block_group`]) once the group is known.
    pub fn unreached_pc(self) -> bool {
        self == Network::UnreachedPc
    }

    /// The `ip link add ... type bridge` settings.
    pub(crate) fn bridge_args(self) -> Vec<String> {
        let mut a = vec![
            "mcast_snooping".to_owned(),
            u8::from(self.snooping()).to_string(),
        ];
        if self.snooping() {
            let q = self.querier();
            a.extend(["mcast_querier".into(), u8::from(q.is_some()).to_string()]);
            a.extend(["mcast_igmp_version".into(), q.unwrap_or(2).to_string()]);
        }
        a
    }

    /// Port settings once the nodes exist: the server's router port, the PCs' fast-leave and MTU.
    pub(crate) fn apply_ports(
        self,
        prefix: &str,
        server: &Node,
        pcs: &[Node],
    ) -> Result<(), LabError> {
        let ip =
            |what: String, args: &[&str]| cmd::run(&format!("lab {prefix}: {what}"), "ip", args);
        match self {
            Network::RouterPort => {
                ip(
                    "making the server's port a multicast router port".into(),
                    &[
                        "link",
                        "set",
                        "dev",
                        server.host_if(),
                        "type",
                        "bridge_slave",
                        "mcast_router",
                        "2",
                    ],
                )?;
            }
            Network::FastLeave => {
                for pc in pcs {
                    ip(
                        format!("fast-leave on {}'s port", pc.role()),
                        &[
                            "link",
                            "set",
                            "dev",
                            pc.host_if(),
                            "type",
                            "bridge_slave",
                            "fastleave",
                            "on",
                        ],
                    )?;
                }
            }
            Network::PcMtu(mtu) => {
                let mtu = mtu.to_string();
                for pc in pcs {
                    ip(
                        format!("MTU {mtu} on {}'s port", pc.role()),
                        &["link", "set", "dev", pc.host_if(), "mtu", &mtu],
                    )?;
                    ip(
                        format!("MTU {mtu} on {}'s interface", pc.role()),
                        &[
                            "-n",
                            pc.netns(),
                            "link",
                            "set",
                            "dev",
                            pc.ifname(),
                            "mtu",
                            &mtu,
                        ],
                    )?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Network::Flood => f.write_str("snooping-off"),
            Network::SnoopingNoQuerier => f.write_str("snooping-no-querier"),
            Network::QuerierV2 => f.write_str("igmpv2-querier"),
            Network::QuerierV3 => f.write_str("igmpv3-querier"),
            Network::RouterPort => f.write_str("router-port"),
            Network::FastLeave => f.write_str("fast-leave"),
            Network::PcMtu(m) => write!(f, "mtu-{m}"),
            Network::UnreachedPc => f.write_str("unreached-pc"),
        }
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(m) = s.strip_prefix("mtu-") {
            return match m.parse::<u16>() {
                Ok(m) if (576..=9000).contains(&m) => Ok(Network::PcMtu(m)),
                _ => Err(format!(
                    "{s}: the MTU must be a number of bytes in 576..=9000"
                )),
            };
        }
        Network::ALL
            .into_iter()
            .find(|n| n.to_string() == s)
            .ok_or_else(|| {
                let names: Vec<String> = Network::ALL.iter().map(|n| n.to_string()).collect();
                format!("unknown network case {s:?}: one of {}", names.join(", "))
            })
    }
}

/// The nftables table that cuts a PC off a group, inside its namespace.
pub const NO_GROUP_TABLE: &str = "roomcast_lab_nogroup";

/// Drops, at the very start of `pc`'s receive path, every packet sent to `group`: its port never
/// gets the stream, as when a snooping switch never learnt it. Its control connection and HTTP are
/// untouched. Removed with the namespace.
pub fn block_group(prefix: &str, pc: &Node, group: Ipv4Addr) -> Result<(), LabError> {
    let script = format!(
        "table ip {NO_GROUP_TABLE} {{\n\
         \tcounter cut {{}}\n\
         \tchain pre {{\n\
         \t\ttype filter hook prerouting priority -300; policy accept;\n\
         \t\tip daddr {group} counter name \"cut\" drop\n\
         \t}}\n\
         }}\n"
    );
    super::loss::nft_script(
        &format!("lab {prefix}: cutting {} off group {group}", pc.role()),
        pc.netns(),
        &script,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_ones_are_refused() {
        for n in Network::ALL {
            assert_eq!(n.to_string().parse::<Network>(), Ok(n));
        }
        assert_eq!("mtu-1280".parse::<Network>(), Ok(Network::PcMtu(1280)));
        assert!("mtu-100".parse::<Network>().unwrap_err().contains("576"));
        assert!(
            "vlan"
                .parse::<Network>()
                .unwrap_err()
                .contains("igmpv2-querier")
        );
    }

    #[test]
    fn bridge_settings_follow_the_case() {
        let v2 = Network::QuerierV2.bridge_args().join(" ");
        assert_eq!(v2, "mcast_snooping 1 mcast_querier 1 mcast_igmp_version 2");
        let v3 = Network::QuerierV3.bridge_args().join(" ");
        assert!(v3.ends_with("mcast_igmp_version 3"), "{v3}");
        assert_eq!(Network::Flood.bridge_args().join(" "), "mcast_snooping 0");
        assert!(
            Network::RouterPort
                .bridge_args()
                .join(" ")
                .contains("mcast_querier 0")
        );
    }
}
