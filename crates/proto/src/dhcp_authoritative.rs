//! Authoritative DHCP with leases, sans-IO — for ISOLATED networks only (a lab, a room cut off from
//! the school network), opt-in: on a school network the school's server hands out addresses and
//! roomcast must stay a proxy (`proto::dhcp`).
//!
//! Only MACs of the campaign get an address (RFC 2131 DISCOVER/OFFER/REQUEST/ACK/NAK, section 4.3);
//! PXE clients among them also get their boot file as in proxy mode, in the same reply. The agent's
//! own `udhcpc` (no PXE class) gets an address only. Time is an argument (seconds, any epoch).

use crate::dhcp::{self, Firmware, Ignored, Port, ProxyConfig, Reply, Stage, broadcast_or_relay};
use crate::mac::Mac;
use dhcproto::v4::{Decodable, DhcpOption, Message, MessageType, Opcode, OptionCode};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The addresses this server may hand out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// First address of the range.
    pub first: Ipv4Addr,
    /// Last address of the range (inclusive).
    pub last: Ipv4Addr,
    /// Subnet mask (option 1).
    pub mask: Ipv4Addr,
    /// Default gateway (option 3), if any.
    pub router: Option<Ipv4Addr>,
    /// Lease length in seconds (option 51).
    pub lease_secs: u32,
}

/// The lease table.
#[derive(Clone, Debug)]
pub struct Leases {
    pool: Pool,
    by_mac: BTreeMap<Mac, (Ipv4Addr, u64)>,
}

impl Leases {
    /// An empty table over `pool`.
    pub fn new(pool: Pool) -> Self {
        Leases {
            pool,
            by_mac: BTreeMap::new(),
        }
    }

    /// The address `mac` holds (even expired) or the first free one: a PC keeps its address
    /// across reboots as long as nobody else needed it.
    fn address_for(&self, mac: Mac, now: u64) -> Option<Ipv4Addr> {
        if let Some((ip, _)) = self.by_mac.get(&mac) {
            return Some(*ip);
        }
        let held = |ip: Ipv4Addr| self.by_mac.values().any(|(a, _)| *a == ip);
        let expired = |ip: Ipv4Addr| self.by_mac.values().any(|(a, exp)| *a == ip && *exp <= now);
        let range = u32::from(self.pool.first)..=u32::from(self.pool.last);
        range
            .clone()
            .map(Ipv4Addr::from)
            .find(|ip| !held(*ip))
            .or_else(|| range.map(Ipv4Addr::from).find(|ip| expired(*ip)))
    }

    fn bind(&mut self, mac: Mac, ip: Ipv4Addr, now: u64) {
        self.by_mac.retain(|m, (a, _)| *m == mac || *a != ip);
        self.by_mac
            .insert(mac, (ip, now + u64::from(self.pool.lease_secs)));
    }

    /// The current lease of `mac`: address and expiry.
    pub fn lease(&self, mac: Mac) -> Option<(Ipv4Addr, u64)> {
        self.by_mac.get(&mac).copied()
    }
}

/// Answers one request on port 67 as the authoritative server. Port 4011 requests are answered as
/// in proxy mode.
pub fn handle(
    config: &ProxyConfig,
    leases: &mut Leases,
    port: Port,
    packet: &[u8],
    now: u64,
) -> Result<Reply, Ignored> {
    if port == Port::Pxe {
        return dhcp::handle(config, port, packet);
    }
    let clean = dhcp::sanitize(packet)?;
    let request = Message::from_bytes(&clean).map_err(|e| Ignored::Malformed(e.to_string()))?;
    if request.opcode() != Opcode::BootRequest || request.hlen() != 6 {
        return Err(Ignored::NotRequest);
    }
    let mac = Mac::from_slice(request.chaddr()).ok_or(Ignored::NotRequest)?;
    if !config.allowlist.contains(&mac) {
        return Err(Ignored::NotInCampaign(mac));
    }
    let opts = request.opts();
    let class = match opts.get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(c)) => c.clone(),
        _ => Vec::new(),
    };
    let pxe = class.starts_with(dhcp::PXE_CLASS);
    let stage = if pxe {
        let firmware = dhcp::firmware(&request, &class)
            .map_err(|arch| Ignored::UnsupportedArchitecture { mac, arch })?;
        Some(if dhcp::is_ipxe(&request) {
            Stage::Ipxe(firmware)
        } else {
            Stage::Firmware(firmware)
        })
    } else {
        None
    };
    let (kind, ip) = match opts.msg_type() {
        Some(MessageType::Discover) => {
            let ip = leases
                .address_for(mac, now)
                .ok_or_else(|| Ignored::MessageType {
                    mac,
                    kind: "DISCOVER, pool exhausted".into(),
                })?;
            (MessageType::Offer, ip)
        }
        Some(MessageType::Request) => {
            if let Some(DhcpOption::ServerIdentifier(s)) = opts.get(OptionCode::ServerIdentifier)
                && *s != config.server
            {
                return Err(Ignored::OtherServer { mac, server: *s });
            }
            let wanted = match opts.get(OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(ip)) => *ip,
                _ => request.ciaddr(),
            };
            match leases.address_for(mac, now) {
                Some(ip) if ip == wanted => {
                    leases.bind(mac, ip, now);
                    (MessageType::Ack, ip)
                }
                _ => (MessageType::Nak, Ipv4Addr::UNSPECIFIED),
            }
        }
        other => {
            return Err(Ignored::MessageType {
                mac,
                kind: format!("{other:?}"),
            });
        }
    };
    let mut message = match stage {
        Some(stage) => dhcp::build_reply(config, &request, mac, stage, kind),
        None => {
            let mut m = Message::new_with_id(
                request.xid(),
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                config.server,
                request.giaddr(),
                &request.chaddr()[..6],
            );
            m.set_opcode(Opcode::BootReply).set_flags(request.flags());
            m.opts_mut().insert(DhcpOption::MessageType(kind));
            m.opts_mut()
                .insert(DhcpOption::ServerIdentifier(config.server));
            m
        }
    };
    message.set_yiaddr(ip);
    if kind != MessageType::Nak {
        let o = message.opts_mut();
        o.insert(DhcpOption::SubnetMask(leases.pool.mask));
        o.insert(DhcpOption::AddressLeaseTime(leases.pool.lease_secs));
        if let Some(r) = leases.pool.router {
            o.insert(DhcpOption::Router(vec![r]));
        }
    }
    let stage = stage.unwrap_or(Stage::Firmware(Firmware::Bios));
    Ok(Reply {
        mac,
        stage,
        message,
        destination: broadcast_or_relay(&request),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::Encodable;

    const UEFI_DISCOVER: &[u8] = include_bytes!("../tests/fixtures/dhcp/uefi-01-discover-67.bin");
    const UEFI_REQUEST: &[u8] = include_bytes!("../tests/fixtures/dhcp/uefi-02-request-67.bin");
    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    fn config() -> ProxyConfig {
        ProxyConfig {
            server: SERVER,
            bios_boot_file: "undionly.kpxe".into(),
            uefi_boot_file: "snponly.efi".into(),
            secure_boot_file: None,
            http_base: "http://198.18.0.1:8080".into(),
            allowlist: [
                "52:54:00:18:00:07".parse().unwrap(),
                "52:54:00:18:00:08".parse().unwrap(),
            ]
            .into(),
        }
    }

    fn leases(n: u8) -> Leases {
        Leases::new(Pool {
            first: Ipv4Addr::new(198, 18, 3, 1),
            last: Ipv4Addr::new(198, 18, 3, n),
            mask: Ipv4Addr::new(255, 255, 0, 0),
            router: None,
            lease_secs: 600,
        })
    }

    /// The captured REQUEST, addressed to us and asking for `ip`.
    fn request_for(ip: Ipv4Addr, mac_last: u8) -> Vec<u8> {
        let mut m = dhcp::decode(UEFI_REQUEST).unwrap();
        m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
        let mut ch = m.chaddr().to_vec();
        ch[5] = mac_last;
        m.set_chaddr(&ch);
        m.to_vec().unwrap()
    }

    #[test]
    fn discover_request_ack_with_boot_file_and_a_stable_address() {
        let c = config();
        let mut l = leases(10);
        let offer = handle(&c, &mut l, Port::Dhcp, UEFI_DISCOVER, 1000).unwrap();
        assert_eq!(offer.message.opts().msg_type(), Some(MessageType::Offer));
        let ip = offer.message.yiaddr();
        assert_eq!(ip, Ipv4Addr::new(198, 18, 3, 1));
        assert_eq!(offer.boot_file().as_deref(), Some("snponly.efi"));
        assert_eq!(l.lease(offer.mac), None, "an offer binds nothing");
        let ack = handle(&c, &mut l, Port::Dhcp, &request_for(ip, 7), 1001).unwrap();
        assert_eq!(ack.message.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(ack.message.yiaddr(), ip);
        assert_eq!(l.lease(ack.mac), Some((ip, 1601)));
        // Another campaign PC gets another address; asking for the first PC's one is refused.
        let nak = handle(&c, &mut l, Port::Dhcp, &request_for(ip, 8), 1002).unwrap();
        assert_eq!(nak.message.opts().msg_type(), Some(MessageType::Nak));
        let ack2 = handle(
            &c,
            &mut l,
            Port::Dhcp,
            &request_for(Ipv4Addr::new(198, 18, 3, 2), 8),
            1003,
        )
        .unwrap();
        assert_eq!(ack2.message.opts().msg_type(), Some(MessageType::Ack));
    }

    #[test]
    fn exhausted_pool_reuses_only_expired_leases() {
        let c = config();
        let mut l = leases(1);
        let ip = Ipv4Addr::new(198, 18, 3, 1);
        handle(&c, &mut l, Port::Dhcp, &request_for(ip, 7), 0).unwrap();
        let got = handle(&c, &mut l, Port::Dhcp, &request_for(ip, 8), 10);
        assert_eq!(
            got.unwrap().message.opts().msg_type(),
            Some(MessageType::Nak)
        );
        let later = handle(&c, &mut l, Port::Dhcp, &request_for(ip, 8), 700).unwrap();
        assert_eq!(
            later.message.opts().msg_type(),
            Some(MessageType::Ack),
            "the lease of :07 expired at 600"
        );
    }

    #[test]
    fn strangers_get_nothing_even_here() {
        let mut c = config();
        c.allowlist.clear();
        let got = handle(&c, &mut leases(10), Port::Dhcp, UEFI_DISCOVER, 0);
        assert!(matches!(got, Err(Ignored::NotInCampaign(_))));
    }
}
