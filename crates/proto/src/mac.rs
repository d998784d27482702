//! Ethernet hardware addresses: the key by which a room file, DHCP, Wake-on-LAN and the boot scripts
//! all name a PC.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

/// A string that is not six hex octets separated by `:` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address (want six hex octets like 6c:4b:90:0c:a8:01): {0:?}")]
pub struct BadMac(pub String);

impl Mac {
    /// The six octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// `6c-4b-90-0c-a8-01`: the form used in URLs and file names, where `:` is awkward.
    pub fn hyphenated(&self) -> String {
        self.to_string().replace(':', "-")
    }

    /// The first six bytes of a DHCP `chaddr`, when the hardware address is Ethernet-sized.
    pub fn from_slice(bytes: &[u8]) -> Option<Mac> {
        let octets: [u8; 6] = bytes.get(..6)?.try_into().ok()?;
        Some(Mac(octets))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl FromStr for Mac {
    type Err = BadMac;

    /// Accepts `:` or `-` separators, either case (room files and iPXE's `${mac:hexhyp}` both occur).
    fn from_str(s: &str) -> Result<Mac, BadMac> {
        let bad = || BadMac(s.to_string());
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut octets = [0u8; 6];
        for (o, p) in octets.iter_mut().zip(&parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(Mac(octets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_separators_and_prints_lowercase_colons() {
        let a: Mac = "6C:4b:90:0c:a8:01".parse().unwrap();
        let b: Mac = "6c-4b-90-0c-a8-01".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "6c:4b:90:0c:a8:01");
        assert_eq!(a.hyphenated(), "6c-4b-90-0c-a8-01");
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "6c:4b:90:0c:a8",
            "6c:4b:90:0c:a8:01:02",
            "6c:4b:90:0c:a8:zz",
            "6c:4b:90:0c:a8:1",
        ] {
            assert!(s.parse::<Mac>().is_err(), "{s}");
        }
    }
}
