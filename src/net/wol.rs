//! Sends Wake-on-LAN magic packets on one named interface: a UDP broadcast (bound to the interface
//! with SO_BINDTODEVICE, so it never leaves by another one) and a raw EtherType 0x0842 frame.

use pnet_datalink::{Channel, DataLinkSender};
use roomcast_proto::mac::Mac;
use roomcast_proto::wol::{self, SecureOn, WakePlan};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// A failure to open or use the room interface for Wake-on-LAN.
#[derive(Debug, thiserror::Error)]
pub enum WakeError {
    /// No interface by that name (in this network namespace).
    #[error("wake: no interface {0:?}")]
    NoInterface(String),
    /// The interface has no MAC address to send raw frames from.
    #[error("wake: interface {0:?} has no MAC address")]
    NoMac(String),
    /// A socket call failed.
    #[error("wake on {interface}: {step}: {source}")]
    Io {
        /// The interface.
        interface: String,
        /// What was being done.
        step: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// An open sender of magic packets on one interface.
pub struct Waker {
    interface: String,
    source: Mac,
    udp: Socket,
    raw: Box<dyn DataLinkSender>,
}

impl Waker {
    /// Opens the UDP socket and the raw channel on `interface`. Needs CAP_NET_RAW.
    pub fn open(interface: &str) -> Result<Waker, WakeError> {
        let io = |step| {
            let interface = interface.to_string();
            move |source| WakeError::Io {
                interface,
                step,
                source,
            }
        };
        let iface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == interface)
            .ok_or_else(|| WakeError::NoInterface(interface.to_string()))?;
        let source = iface
            .mac
            .map(|m| Mac(m.octets()))
            .ok_or_else(|| WakeError::NoMac(interface.to_string()))?;
        let raw =
            match pnet_datalink::channel(&iface, Default::default()).map_err(io("raw channel"))? {
                Channel::Ethernet(tx, _rx) => tx,
                _ => {
                    return Err(WakeError::Io {
                        interface: interface.to_string(),
                        step: "raw channel",
                        source: std::io::Error::other("not an Ethernet channel"),
                    });
                }
            };
        let udp = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(io("udp socket"))?;
        udp.set_broadcast(true).map_err(io("SO_BROADCAST"))?;
        udp.bind_device(Some(interface.as_bytes()))
            .map_err(io("SO_BINDTODEVICE"))?;
        Ok(Waker {
            interface: interface.to_string(),
            source,
            udp,
            raw,
        })
    }

    /// Sends one magic packet for `target` both ways.
    pub fn wake(&mut self, target: Mac, secure_on: Option<SecureOn>) -> Result<(), WakeError> {
        let packet = wol::magic_packet(target, secure_on);
        let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, wol::WOL_UDP_PORT);
        self.udp
            .send_to(&packet, &to.into())
            .map_err(|source| WakeError::Io {
                interface: self.interface.clone(),
                step: "UDP broadcast",
                source,
            })?;
        let frame = wol::ethernet_frame(self.source, target, secure_on);
        match self.raw.send_to(&frame, None) {
            Some(Ok(())) => Ok(()),
            Some(Err(source)) => Err(WakeError::Io {
                interface: self.interface.clone(),
                step: "raw frame",
                source,
            }),
            None => Err(WakeError::Io {
                interface: self.interface.clone(),
                step: "raw frame",
                source: std::io::Error::other("no buffer"),
            }),
        }
    }

    /// Follows `plan` until every machine is seen (`seen` is polled between sends) or the deadline
    /// passes; returns the machines that never woke. Blocking: run it on its own thread.
    pub fn run(
        &mut self,
        plan: &WakePlan,
        secure_on: Option<SecureOn>,
        mut seen: impl FnMut() -> BTreeSet<Mac>,
    ) -> Result<Vec<Mac>, WakeError> {
        let start = Instant::now();
        let mut done: Option<Duration> = None;
        loop {
            let now = start.elapsed();
            let current = seen();
            for (_, mac) in plan.due(done, now, &current) {
                tracing::debug!(%mac, interface = %self.interface, "wake-on-lan");
                self.wake(mac, secure_on)?;
            }
            done = Some(now);
            // Every send planned before the deadline happens, late if the machine is slow.
            match plan.next_send(done, &current) {
                Some(next) => std::thread::sleep(
                    next.saturating_sub(start.elapsed())
                        .min(Duration::from_millis(500)),
                ),
                None => break,
            }
        }
        Ok(plan.never_woke(&seen()))
    }
}
