//! A fixed-size set of block indices (the HAVE bitmap of a receiver, the blocks it has written).

/// A set of block indices `0..len`, one bit each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSet {
    len: u32,
    bytes: Vec<u8>,
    count: u32,
}

impl BlockSet {
    /// An empty set over `len` blocks.
    pub fn new(len: u32) -> Self {
        BlockSet {
            len,
            bytes: vec![0; len.div_ceil(8) as usize],
            count: 0,
        }
    }

    /// The full set over `len` blocks.
    pub fn full(len: u32) -> Self {
        let mut s = BlockSet::new(len);
        for i in 0..len {
            s.insert(i);
        }
        s
    }

    /// Rebuilds a set from its wire form (bit `i` of byte `i / 8`, least significant bit first).
    /// Returns `None` if the byte count does not match `len` or a padding bit is set.
    pub fn from_bytes(len: u32, bytes: &[u8]) -> Option<Self> {
        if bytes.len() != len.div_ceil(8) as usize {
            return None;
        }
        if !len.is_multiple_of(8) {
            let last = *bytes.last()?;
            if last >> (len % 8) != 0 {
                return None;
            }
        }
        let count = bytes.iter().map(|b| b.count_ones()).sum();
        Some(BlockSet {
            len,
            bytes: bytes.to_vec(),
            count,
        })
    }

    /// The wire form, see [`BlockSet::from_bytes`].
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of blocks the set ranges over.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when the set ranges over no block at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of members.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// True when every block is a member.
    pub fn is_full(&self) -> bool {
        self.count == self.len
    }

    /// Membership; indices out of range are never members.
    pub fn contains(&self, i: u32) -> bool {
        i < self.len && self.bytes[(i / 8) as usize] & (1 << (i % 8)) != 0
    }

    /// Adds `i`; returns true if it was not a member. Out-of-range indices are ignored.
    pub fn insert(&mut self, i: u32) -> bool {
        if i >= self.len || self.contains(i) {
            return false;
        }
        self.bytes[(i / 8) as usize] |= 1 << (i % 8);
        self.count += 1;
        true
    }

    /// Removes `i`; returns true if it was a member.
    pub fn remove(&mut self, i: u32) -> bool {
        if !self.contains(i) {
            return false;
        }
        self.bytes[(i / 8) as usize] &= !(1 << (i % 8));
        self.count -= 1;
        true
    }

    /// Members in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.contains(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_padding_bits() {
        let mut s = BlockSet::new(11);
        s.insert(0);
        s.insert(10);
        assert!(!s.insert(10));
        assert!(!s.insert(11));
        assert_eq!(s.count(), 2);
        let back = BlockSet::from_bytes(11, s.as_bytes()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.iter().collect::<Vec<_>>(), vec![0, 10]);
        assert!(BlockSet::from_bytes(11, &[0, 0b1000]).is_none());
        assert!(BlockSet::from_bytes(11, &[0]).is_none());
        assert!(s.remove(0));
        assert!(!s.remove(0));
        assert_eq!(s.count(), 1);
    }
}
