//! Wake-on-LAN, sans-IO: the magic packet, the raw Ethernet frame that carries it, and the stagger
//! schedule that wakes a room a few PCs at a time.
//!
//! The magic packet (AMD "Magic Packet Technology" white paper, 1995) is 6 bytes of 0xFF followed by
//! the target MAC 16 times, optionally followed by a 6-byte SecureOn password. NICs look for it
//! anywhere in a frame, so it is sent twice: as a UDP broadcast (port 9, "discard") and as a raw frame
//! of EtherType 0x0842 for NICs and switches that only pass the latter.
//!
//! Staggering: a room of 30 PCs switched on in the same second draws its inrush current at once;
//! the schedule sends to `per_second` PCs per second, and repeats each PC's packet every
//! `repeat_every` until that PC is seen (its first DHCP request or agent hello) or the deadline.

use crate::mac::Mac;
use std::collections::BTreeSet;
use std::time::Duration;

/// EtherType of a raw Wake-on-LAN frame.
pub const ETHERTYPE_WOL: u16 = 0x0842;
/// UDP port magic packets are broadcast to ("discard"; 7 "echo" is the other customary one).
pub const WOL_UDP_PORT: u16 = 9;

/// A SecureOn password: 6 bytes appended to the magic packet, checked by NICs that support it.
pub type SecureOn = [u8; 6];

/// The magic packet for `target`: 102 bytes, or 108 with a SecureOn password.
pub fn magic_packet(target: Mac, secure_on: Option<SecureOn>) -> Vec<u8> {
    let mut p = Vec::with_capacity(108);
    p.extend_from_slice(&[0xFF; 6]);
    for _ in 0..16 {
        p.extend_from_slice(&target.0);
    }
    if let Some(password) = secure_on {
        p.extend_from_slice(&password);
    }
    p
}

/// The raw Ethernet frame: broadcast destination, our MAC as source, EtherType 0x0842, the magic
/// packet. (The NIC pads it to the 60-byte minimum.)
pub fn ethernet_frame(source: Mac, target: Mac, secure_on: Option<SecureOn>) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 108);
    f.extend_from_slice(&[0xFF; 6]);
    f.extend_from_slice(&source.0);
    f.extend_from_slice(&ETHERTYPE_WOL.to_be_bytes());
    f.extend_from_slice(&magic_packet(target, secure_on));
    f
}

/// Which MAC, if any, a magic packet found in `payload` wakes (for tests and the lab's listeners).
pub fn find_target(payload: &[u8]) -> Option<Mac> {
    // Every run of six 0xFF is a candidate: a frame's broadcast destination is one too.
    (0..payload.len().saturating_sub(6 + 96 - 1)).find_map(|start| {
        if payload[start..start + 6] != [0xFF; 6] {
            return None;
        }
        let body = &payload[start + 6..start + 6 + 96];
        let mac = Mac::from_slice(&body[..6])?;
        body.chunks(6).all(|c| c == mac.0).then_some(mac)
    })
}

/// When to send to whom. Times are offsets from the start of the wake-up (no clock here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WakePlan {
    /// The machines, in the order they are woken (the room file's order).
    pub machines: Vec<Mac>,
    /// How many PCs get their first packet per second (at least 1).
    pub per_second: u32,
    /// A PC not seen yet gets its packet again after this long.
    pub repeat_every: Duration,
    /// No packet is sent at or after this offset; PCs not seen by then never woke.
    pub deadline: Duration,
}

impl WakePlan {
    /// Defaults a room can start from: 5 PCs per second, repeat every 30 s, give up after 5 min.
    pub fn new(machines: Vec<Mac>) -> Self {
        Self {
            machines,
            per_second: 5,
            repeat_every: Duration::from_secs(30),
            deadline: Duration::from_secs(300),
        }
    }

    fn first_send(&self, index: usize) -> Duration {
        let per_second = u64::from(self.per_second.max(1));
        Duration::from_nanos(index as u64 * 1_000_000_000 / per_second)
    }

    /// The send times of machine `index`: its stagger slot, then every `repeat_every`.
    fn sends(&self, index: usize) -> impl Iterator<Item = Duration> + '_ {
        let first = self.first_send(index);
        let step = self.repeat_every.max(Duration::from_millis(100));
        (0u32..)
            .map(move |k| first + step * k)
            .take_while(move |t| *t < self.deadline)
    }

    /// The packets due in the interval `(after, upto]` (the first call passes `after = None` to
    /// include offset 0), skipping machines already seen, in send-time order.
    pub fn due(
        &self,
        after: Option<Duration>,
        upto: Duration,
        seen: &BTreeSet<Mac>,
    ) -> Vec<(Duration, Mac)> {
        let mut out = Vec::new();
        for (i, mac) in self.machines.iter().enumerate() {
            if seen.contains(mac) {
                continue;
            }
            for t in self.sends(i) {
                if t > upto {
                    break;
                }
                if after.is_none_or(|a| t > a) {
                    out.push((t, *mac));
                }
            }
        }
        out.sort();
        out
    }

    /// The next send time strictly after `after` for a machine not yet seen, if any before the deadline.
    pub fn next_send(&self, after: Option<Duration>, seen: &BTreeSet<Mac>) -> Option<Duration> {
        self.machines
            .iter()
            .enumerate()
            .filter(|(_, m)| !seen.contains(m))
            .filter_map(|(i, _)| self.sends(i).find(|t| after.is_none_or(|a| *t > a)))
            .min()
    }

    /// The machines not seen: what to report once the deadline passed.
    pub fn never_woke(&self, seen: &BTreeSet<Mac>) -> Vec<Mac> {
        self.machines
            .iter()
            .filter(|m| !seen.contains(m))
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> Mac {
        Mac([0x6c, 0x4b, 0x90, 0x0c, 0xa8, last])
    }

    #[test]
    fn magic_packet_bytes() {
        let p = magic_packet(mac(1), None);
        assert_eq!(p.len(), 102);
        assert_eq!(&p[..6], &[0xFF; 6]);
        for i in 0..16 {
            assert_eq!(
                &p[6 + 6 * i..12 + 6 * i],
                &[0x6c, 0x4b, 0x90, 0x0c, 0xa8, 0x01]
            );
        }
        let s = magic_packet(mac(1), Some([1, 2, 3, 4, 5, 6]));
        assert_eq!(s.len(), 108);
        assert_eq!(&s[102..], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(find_target(&s), Some(mac(1)));
    }

    #[test]
    fn ethernet_frame_bytes() {
        let f = ethernet_frame(mac(0xfe), mac(2), None);
        assert_eq!(&f[..6], &[0xFF; 6], "broadcast destination");
        assert_eq!(&f[6..12], &mac(0xfe).0);
        assert_eq!(&f[12..14], &[0x08, 0x42]);
        assert_eq!(&f[14..], magic_packet(mac(2), None).as_slice());
        assert_eq!(find_target(&f), Some(mac(2)));
    }

    #[test]
    fn find_target_rejects_a_broken_repetition() {
        let mut p = magic_packet(mac(3), None);
        p[50] ^= 1;
        assert_eq!(find_target(&p), None);
        assert_eq!(find_target(&p[..90]), None);
    }

    #[test]
    fn stagger_sends_per_second_machines_each_second() {
        let plan = WakePlan {
            machines: (0..6).map(mac).collect(),
            per_second: 2,
            repeat_every: Duration::from_secs(10),
            deadline: Duration::from_secs(25),
        };
        let none = BTreeSet::new();
        let first: Vec<_> = plan.due(None, Duration::from_millis(2999), &none);
        let offsets: Vec<u64> = first.iter().map(|(t, _)| t.as_millis() as u64).collect();
        assert_eq!(offsets, [0, 500, 1000, 1500, 2000, 2500]);
        // Second wave keeps the stagger; a third at 20 s; none at or after the deadline.
        let later = plan.due(
            Some(Duration::from_millis(2999)),
            Duration::from_secs(60),
            &none,
        );
        assert_eq!(later.len(), 12);
        assert!(later.iter().all(|(t, _)| *t < plan.deadline));
        assert_eq!(later[0], (Duration::from_secs(10), mac(0)));
    }

    #[test]
    fn seen_machines_are_not_woken_again_and_the_rest_are_reported() {
        let plan = WakePlan::new(vec![mac(1), mac(2), mac(3)]);
        let seen: BTreeSet<Mac> = [mac(2)].into();
        let due = plan.due(Some(Duration::from_secs(1)), Duration::from_secs(31), &seen);
        assert_eq!(
            due.iter().map(|(_, m)| *m).collect::<Vec<_>>(),
            [mac(1), mac(3)]
        );
        assert_eq!(
            plan.next_send(Some(Duration::from_secs(30)), &seen),
            Some(Duration::from_millis(30400))
        );
        assert_eq!(plan.never_woke(&seen), [mac(1), mac(3)]);
        let all: BTreeSet<Mac> = plan.machines.iter().copied().collect();
        assert_eq!(plan.next_send(None, &all), None);
        assert!(plan.never_woke(&all).is_empty());
    }
}
