//! An IPv6 Router Advertisement that says "no router here" (RFC 4861 section 4.2, router lifetime
//! 0, no prefix), sent on the room interface.
//!
//! Why: iPXE waits 13-16 s in "Configuring" for a router advertisement before it gives up on IPv6;
//! hearing one with no prefix ends that wait at once. Opt-in (`roomcast serve --announce-ra`): a
//! school network with its own IPv6 routers does not need it.

use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::Duration;

/// ICMPv6 type of a Router Advertisement.
const ROUTER_ADVERTISEMENT: u8 = 134;

/// The 16-byte advertisement: no hop limit advice, no flags, lifetime 0 (not a default router), no
/// options. The kernel fills in the ICMPv6 checksum.
pub fn no_router_advertisement() -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = ROUTER_ADVERTISEMENT;
    p
}

/// Sends the advertisement to all nodes (ff02::1) on `interface` every `every`, until the task is
/// dropped. Needs CAP_NET_RAW.
pub async fn announce(interface: String, every: Duration) -> std::io::Result<()> {
    let index = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == interface)
        .map(|i| i.index)
        .ok_or_else(|| std::io::Error::other(format!("no interface {interface:?}")))?;
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    s.bind_device(Some(interface.as_bytes()))?;
    // RFC 4861 section 6.1.2: hosts drop an RA whose hop limit is not 255.
    s.set_multicast_hops_v6(255)?;
    s.set_multicast_if_v6(index)?;
    let to = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, index);
    let packet = no_router_advertisement();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(e) = s.send_to(&packet, &to.into()) {
            tracing::debug!(%interface, %e, "router advertisement not sent");
        }
    }
}
