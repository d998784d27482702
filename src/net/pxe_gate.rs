//! Who gets a boot token (issue 20): the one rule binding the agent's token to the PXE exchange
//! proxyDHCP saw. Pure: sightings and requests come in with the time as an argument; the HTTP
//! service (`net::http`) and proxyDHCP (`net::proxydhcp`) share one [`SharedGate`].
//!
//! The rule: a boot script with a token goes only to a machine of the campaign that proxyDHCP saw
//! ask within [`SEEN_FOR`], only to the address that machine was seen taking, and once per boot:
//! asking again from that address gets the same token, from any other address nothing. A new boot
//! is a PXE DISCOVER seen after the token was issued; from then on the machine gets a new token
//! through the same path (the previous one is revoked by the token book when the new one is issued).
//!
//! What it stops: a host that only knows a listed MAC (every host on the LAN sees MACs) and asks
//! for its script. What it does not stop: a host that forges the PC's DHCP packets on the LAN
//! before the PC asks; then the PC itself is refused and the refusal is logged with both
//! addresses (docs/BOOT.md, "Who gets a token").

use roomcast_proto::dhcp::{Sighted, Sighting};
use roomcast_proto::mac::Mac;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long after proxyDHCP last saw a machine ask its boot script may be fetched with a token.
/// Firmware PXE, TFTP of iPXE and iPXE's own DHCP take well under a minute, even under TCG.
pub const SEEN_FOR: Duration = Duration::from_secs(300);

/// At most this many machines are remembered (a campaign is a room; sightings are only kept for
/// the campaign's allowlist, so this bounds memory against a confused allowlist, not the LAN).
const MAX_MACHINES: usize = 4096;

/// The gate shared by proxyDHCP (sightings) and the HTTP service (admissions).
pub type SharedGate = Arc<Mutex<PxeGate>>;

/// One machine's current boot as proxyDHCP saw it.
#[derive(Debug, Clone)]
struct Boot {
    /// When it was last seen asking.
    at: Instant,
    /// The address it was last seen taking in this boot.
    addr: Option<Ipv4Addr>,
    /// The token issued in this boot, and the address it went to.
    issued: Option<(String, Ipv4Addr)>,
}

/// The sightings and the rule.
#[derive(Debug, Default)]
pub struct PxeGate {
    boots: BTreeMap<Mac, Boot>,
}

/// A boot script with a token may be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// First request of this boot: this token was just made (the caller records it in the book).
    New(String),
    /// The same boot asking again from the same address: the token it already has.
    Again(String),
}

/// Why a request for a machine's boot script gets no token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// proxyDHCP never saw this machine ask.
    #[error("proxyDHCP never saw this machine PXE-boot")]
    NotSeen,
    /// Seen, but too long ago.
    #[error("proxyDHCP last saw this machine {0:?} ago, more than the {SEEN_FOR:?} allowed")]
    Stale(Duration),
    /// Seen starting a boot, but not yet taking an address.
    #[error("proxyDHCP has not seen which address this machine takes")]
    NoAddress,
    /// The machine was seen taking another address.
    #[error("the machine was seen taking {seen}, not this address")]
    OtherAddress {
        /// The address proxyDHCP saw.
        seen: Ipv4Addr,
    },
    /// This boot's token already went to another address.
    #[error("this boot's token already went to {to}")]
    AlreadyIssued {
        /// Where it went.
        to: Ipv4Addr,
    },
}

impl PxeGate {
    /// A gate in an `Arc<Mutex<_>>`, for the services to share.
    pub fn shared() -> SharedGate {
        Arc::default()
    }

    /// Records what proxyDHCP saw (it only reports PXE clients of the campaign's allowlist).
    pub fn observe(&mut self, seen: Sighting, now: Instant) {
        if !self.boots.contains_key(&seen.mac) && self.boots.len() >= MAX_MACHINES {
            // Forget the oldest sighting: memory stays bounded whatever the allowlist.
            if let Some(oldest) = self.boots.iter().min_by_key(|(_, b)| b.at).map(|(m, _)| *m) {
                self.boots.remove(&oldest);
            }
        }
        let boot = self.boots.entry(seen.mac).or_insert(Boot {
            at: now,
            addr: None,
            issued: None,
        });
        match seen.kind {
            Sighted::Discover if boot.issued.is_some() => {
                // A new boot: the next script carries a new token.
                *boot = Boot {
                    at: now,
                    addr: None,
                    issued: None,
                };
            }
            Sighted::Discover => boot.at = now,
            Sighted::Address(addr) => {
                boot.at = now;
                boot.addr = Some(addr);
            }
        }
    }

    /// Whether `mac`'s boot script asked for from `from` at `now` may carry a token; `fresh` makes
    /// one when this boot has none yet.
    pub fn admit(
        &mut self,
        mac: Mac,
        from: Ipv4Addr,
        now: Instant,
        fresh: impl FnOnce() -> String,
    ) -> Result<Admission, Refusal> {
        let boot = self.boots.get_mut(&mac).ok_or(Refusal::NotSeen)?;
        let age = now.saturating_duration_since(boot.at);
        if age > SEEN_FOR {
            return Err(Refusal::Stale(age));
        }
        if let Some((token, to)) = &boot.issued {
            return if *to == from {
                Ok(Admission::Again(token.clone()))
            } else {
                Err(Refusal::AlreadyIssued { to: *to })
            };
        }
        match boot.addr {
            None => Err(Refusal::NoAddress),
            Some(seen) if seen != from => Err(Refusal::OtherAddress { seen }),
            Some(_) => {
                let token = fresh();
                boot.issued = Some((token.clone(), from));
                Ok(Admission::New(token))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> Mac {
        Mac([0x52, 0x54, 0, 0x18, 0x03, last])
    }
    const PC: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 1);
    const OTHER: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 99);

    fn seen(m: Mac, kind: Sighted) -> Sighting {
        Sighting { mac: m, kind }
    }

    fn tokens() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("t{n}")
        }
    }

    #[test]
    fn a_machine_never_seen_asking_gets_nothing() {
        let mut gate = PxeGate::default();
        let now = Instant::now();
        assert_eq!(
            gate.admit(mac(1), PC, now, || unreachable!()),
            Err(Refusal::NotSeen)
        );
    }

    #[test]
    fn only_the_address_seen_taken_gets_the_token_and_only_once_per_boot() {
        let mut gate = PxeGate::default();
        let t0 = Instant::now();
        let mut make = tokens();
        gate.observe(seen(mac(1), Sighted::Discover), t0);
        assert_eq!(
            gate.admit(mac(1), PC, t0, &mut make),
            Err(Refusal::NoAddress)
        );
        gate.observe(seen(mac(1), Sighted::Address(PC)), t0);
        assert_eq!(
            gate.admit(mac(1), OTHER, t0, &mut make),
            Err(Refusal::OtherAddress { seen: PC })
        );
        assert_eq!(
            gate.admit(mac(1), PC, t0, &mut make),
            Ok(Admission::New("t1".into()))
        );
        assert_eq!(
            gate.admit(mac(1), PC, t0, &mut make),
            Ok(Admission::Again("t1".into())),
            "asking again: the same token"
        );
        // A forged REQUEST claiming another address after the token went out changes nothing.
        gate.observe(seen(mac(1), Sighted::Address(OTHER)), t0);
        assert_eq!(
            gate.admit(mac(1), OTHER, t0, &mut make),
            Err(Refusal::AlreadyIssued { to: PC })
        );
        assert_eq!(
            gate.admit(mac(2), PC, t0, &mut make),
            Err(Refusal::NotSeen),
            "another machine's sighting opens nothing for it"
        );
    }

    #[test]
    fn a_reboot_gets_a_new_token_through_the_same_path() {
        let mut gate = PxeGate::default();
        let t0 = Instant::now();
        let mut make = tokens();
        gate.observe(seen(mac(1), Sighted::Discover), t0);
        gate.observe(seen(mac(1), Sighted::Address(PC)), t0);
        assert_eq!(
            gate.admit(mac(1), PC, t0, &mut make),
            Ok(Admission::New("t1".into()))
        );
        let t1 = t0 + Duration::from_secs(60);
        gate.observe(seen(mac(1), Sighted::Discover), t1);
        assert_eq!(
            gate.admit(mac(1), PC, t1, &mut make),
            Err(Refusal::NoAddress),
            "a new boot must take its address again"
        );
        gate.observe(seen(mac(1), Sighted::Address(PC)), t1);
        assert_eq!(
            gate.admit(mac(1), PC, t1, &mut make),
            Ok(Admission::New("t2".into()))
        );
    }

    #[test]
    fn a_sighting_older_than_the_window_opens_nothing() {
        let mut gate = PxeGate::default();
        let t0 = Instant::now();
        gate.observe(seen(mac(1), Sighted::Address(PC)), t0);
        let late = t0 + SEEN_FOR + Duration::from_secs(1);
        assert_eq!(
            gate.admit(mac(1), PC, late, || unreachable!()),
            Err(Refusal::Stale(SEEN_FOR + Duration::from_secs(1)))
        );
        gate.observe(seen(mac(1), Sighted::Address(PC)), late);
        assert!(gate.admit(mac(1), PC, late, || "t".into()).is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let mut gate = PxeGate::default();
        let t0 = Instant::now();
        for i in 0..(MAX_MACHINES as u32 + 10) {
            let b = i.to_be_bytes();
            let m = Mac([2, 0, b[0], b[1], b[2], b[3]]);
            gate.observe(
                seen(m, Sighted::Discover),
                t0 + Duration::from_millis(i.into()),
            );
        }
        assert_eq!(gate.boots.len(), MAX_MACHINES);
    }
}
