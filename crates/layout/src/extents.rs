//! [`Extents`]: a set of byte ranges kept sorted, disjoint and coalesced.

use std::ops::Range;

/// Sorted, disjoint, non-adjacent half-open byte ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extents(Vec<Range<u64>>);

impl Extents {
    /// The empty set.
    pub fn new() -> Self {
        Extents(Vec::new())
    }

    /// One range (empty if `end <= start`).
    pub fn from_range(start: u64, end: u64) -> Self {
        let mut e = Extents::new();
        e.insert(start, end);
        e
    }

    /// The ranges, sorted and disjoint.
    pub fn ranges(&self) -> &[Range<u64>] {
        &self.0
    }

    /// True when no byte is in the set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of bytes in the set.
    pub fn bytes(&self) -> u64 {
        self.0.iter().map(|r| r.end - r.start).sum()
    }

    /// Adds `[start, end)`. Appending in increasing order (what bitmap readers do) is O(1).
    pub fn insert(&mut self, start: u64, end: u64) {
        if end <= start {
            return;
        }
        if let Some(last) = self.0.last_mut() {
            if start >= last.start {
                if start <= last.end {
                    last.end = last.end.max(end);
                    return;
                }
                self.0.push(start..end);
                return;
            }
        } else {
            self.0.push(start..end);
            return;
        }
        // Out of order: merge in place.
        let i = self.0.partition_point(|r| r.end < start);
        let mut j = i;
        let (mut s, mut e) = (start, end);
        while j < self.0.len() && self.0[j].start <= e {
            s = s.min(self.0[j].start);
            e = e.max(self.0[j].end);
            j += 1;
        }
        self.0.splice(i..j, std::iter::once(s..e));
    }

    /// Adds every range of `other`.
    pub fn union_with(&mut self, other: &Extents) {
        if self.0.is_empty() {
            self.0 = other.0.clone();
            return;
        }
        let mut all: Vec<Range<u64>> = self.0.drain(..).chain(other.0.iter().cloned()).collect();
        all.sort_by_key(|r| r.start);
        for r in all {
            self.insert(r.start, r.end);
        }
    }

    /// The bytes of `[0, size)` not in the set.
    pub fn complement(&self, size: u64) -> Extents {
        let mut out = Extents::new();
        let mut at = 0;
        for r in &self.0 {
            if r.start >= size {
                break;
            }
            out.insert(at, r.start);
            at = at.max(r.end);
        }
        out.insert(at, size);
        out
    }

    /// Every range moved by `by` bytes (a partition-relative map made absolute).
    pub fn shifted(&self, by: u64) -> Extents {
        Extents(
            self.0
                .iter()
                .map(|r| r.start.saturating_add(by)..r.end.saturating_add(by))
                .collect(),
        )
    }

    /// The part of the set inside `[start, end)`.
    pub fn clipped(&self, start: u64, end: u64) -> Extents {
        let mut out = Extents::new();
        for r in &self.0 {
            out.insert(r.start.max(start), r.end.min(end));
        }
        out
    }

    /// The part of the set inside `[start, end)`, relative to `start` (a chunk's used ranges).
    pub fn window(&self, start: u64, end: u64) -> Vec<Range<u64>> {
        let i = self.0.partition_point(|r| r.end <= start);
        self.0[i..]
            .iter()
            .take_while(|r| r.start < end)
            .map(|r| r.start.max(start) - start..r.end.min(end) - start)
            .collect()
    }

    /// True when every byte of `[start, end)` is in the set (an empty range always is).
    pub fn contains(&self, start: u64, end: u64) -> bool {
        if end <= start {
            return true;
        }
        let i = self.0.partition_point(|r| r.end <= start);
        self.0
            .get(i)
            .is_some_and(|r| r.start <= start && end <= r.end)
    }

    /// Last used byte + 1, or 0.
    pub fn end(&self) -> u64 {
        self.0.last().map_or(0, |r| r.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_coalesce_in_any_order() {
        let mut e = Extents::new();
        e.insert(10, 20);
        e.insert(30, 40);
        e.insert(0, 5);
        e.insert(18, 31);
        assert_eq!(e.ranges(), &[0..5, 10..40]);
        assert_eq!(e.bytes(), 35);
        assert_eq!(e.complement(50).ranges(), &[5..10, 40..50]);
        assert_eq!(e.window(8, 12), vec![2..4]);
        assert_eq!(e.window(0, 100), vec![0..5, 10..40]);
        assert_eq!(e.clipped(3, 12).ranges(), &[3..5, 10..12]);
        assert!(e.contains(10, 40) && e.contains(0, 1) && e.contains(7, 7));
        assert!(!e.contains(4, 6) && !e.contains(39, 41) && !e.contains(40, 41));
    }
}
