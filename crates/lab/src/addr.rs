//! The only addresses a lab may use, as types: a [`LabIpv4`] is inside 198.18.0.0/15 (RFC 2544,
//! reserved for benchmarking) and a [`LabGroup`] inside 239.255.0.0/16 (administratively scoped).
//! Holding one of these is the proof that the project's network-safety rule was checked.

use super::LabError;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// A unicast address inside 198.18.0.0/15.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabIpv4(Ipv4Addr);

impl LabIpv4 {
    /// Accepts `addr` only if it lies in 198.18.0.0/15.
    pub fn new(addr: Ipv4Addr) -> Result<Self, LabError> {
        let [a, b, _, _] = addr.octets();
        if a == 198 && (b == 18 || b == 19) {
            Ok(Self(addr))
        } else {
            Err(LabError::AddressOutsideLab { addr })
        }
    }

    /// The address itself.
    pub fn addr(self) -> Ipv4Addr {
        self.0
    }
}

impl FromStr for LabIpv4 {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, LabError> {
        let addr = s
            .parse::<Ipv4Addr>()
            .map_err(|_| LabError::AddressOutsideLab {
                addr: Ipv4Addr::UNSPECIFIED,
            })?;
        Self::new(addr)
    }
}

impl fmt::Display for LabIpv4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<LabIpv4> for Ipv4Addr {
    fn from(a: LabIpv4) -> Ipv4Addr {
        a.0
    }
}

/// A multicast group inside 239.255.0.0/16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabGroup(Ipv4Addr);

impl LabGroup {
    /// Accepts `addr` only if it lies in 239.255.0.0/16.
    pub fn new(addr: Ipv4Addr) -> Result<Self, LabError> {
        let [a, b, _, _] = addr.octets();
        if a == 239 && b == 255 {
            Ok(Self(addr))
        } else {
            Err(LabError::MulticastOutsideLab { addr })
        }
    }

    /// The group `239.255.c.d`: always valid, so no `Result`.
    pub fn from_low(c: u8, d: u8) -> Self {
        Self(Ipv4Addr::new(239, 255, c, d))
    }

    /// The group address itself.
    pub fn addr(self) -> Ipv4Addr {
        self.0
    }
}

impl fmt::Display for LabGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<LabGroup> for Ipv4Addr {
    fn from(a: LabGroup) -> Ipv4Addr {
        a.0
    }
}

/// Prefix length given to every lab address: one flat /16, as a classroom is one broadcast domain.
pub const PREFIX_LEN: u8 = 16;

/// The deploy server's address.
pub fn server_addr() -> LabIpv4 {
    LabIpv4(Ipv4Addr::new(198, 18, 0, 1))
}

/// The address of extra node `k` (a DHCP server, an AD DC, ...): 198.18.0.10 + k.
pub fn extra_addr(k: usize) -> Option<LabIpv4> {
    u8::try_from(10 + k)
        .ok()
        .map(|d| LabIpv4(Ipv4Addr::new(198, 18, 0, d)))
}

/// PCs per third octet, so that PC numbers read easily: pc0 = 198.18.1.1, pc249 = 198.18.1.250,
/// pc250 = 198.18.2.1.
const PCS_PER_OCTET: usize = 250;

/// Most PCs one lab holds (the address plan's limit, far above what one machine runs).
pub const MAX_PCS: usize = PCS_PER_OCTET * 200;

/// The address of PC `i` (0-based).
pub fn pc_addr(i: usize) -> Option<LabIpv4> {
    if i >= MAX_PCS {
        return None;
    }
    let c = u8::try_from(1 + i / PCS_PER_OCTET).ok()?;
    let d = u8::try_from(1 + i % PCS_PER_OCTET).ok()?;
    Some(LabIpv4(Ipv4Addr::new(198, 18, c, d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_benchmark_range_is_accepted() {
        assert!(LabIpv4::new(Ipv4Addr::new(198, 18, 0, 1)).is_ok());
        assert!(LabIpv4::new(Ipv4Addr::new(198, 19, 255, 254)).is_ok());
        for bad in [
            "198.17.255.255",
            "198.20.0.0",
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "8.8.8.8",
        ] {
            let addr: Ipv4Addr = bad.parse().unwrap();
            assert!(
                matches!(LabIpv4::new(addr), Err(LabError::AddressOutsideLab { .. })),
                "{bad} accepted"
            );
        }
        assert!("not an address".parse::<LabIpv4>().is_err());
    }

    #[test]
    fn only_admin_scoped_multicast_is_accepted() {
        assert!(LabGroup::new(Ipv4Addr::new(239, 255, 1, 1)).is_ok());
        for bad in [
            "239.254.1.1",
            "224.0.0.1",
            "232.1.2.3",
            "255.255.255.255",
            "198.18.0.1",
        ] {
            let addr: Ipv4Addr = bad.parse().unwrap();
            assert!(
                matches!(
                    LabGroup::new(addr),
                    Err(LabError::MulticastOutsideLab { .. })
                ),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn address_plan_stays_in_range_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        assert!(seen.insert(server_addr()));
        for k in 0..200 {
            assert!(seen.insert(extra_addr(k).unwrap()));
        }
        for i in [0, 1, 249, 250, 251, 1000, MAX_PCS - 1] {
            let a = pc_addr(i).unwrap();
            assert!(LabIpv4::new(a.addr()).is_ok());
            assert!(seen.insert(a), "pc{i} collides");
        }
        assert_eq!(pc_addr(0).unwrap().to_string(), "198.18.1.1");
        assert_eq!(pc_addr(250).unwrap().to_string(), "198.18.2.1");
        assert!(pc_addr(MAX_PCS).is_none());
        assert!(extra_addr(246).is_none());
    }
}
