//! Longest-prefix match of an address to the endpoint that owns it.
//!
//! The prefixes are flattened into disjoint intervals, each with its owner
//! (the longest prefix covering it). Lookup is a binary search over the
//! interval starts, narrowed first by a 65,536-entry table on the top 16
//! bits when there are more than a few intervals, so a lookup costs one
//! table load and a search over the few intervals of its bucket.

use super::types::Addr;

/// No owner.
pub const NONE: u32 = u32::MAX;

/// An LPM table.
#[derive(Clone, Debug, Default)]
pub struct Lpm<A> {
    starts: Vec<A>,
    owner: Vec<u32>,
    /// For each top-16-bit bucket, the index of the interval holding the
    /// bucket's first address (plus one final entry). Empty when small.
    index: Vec<u32>,
}

impl<A: Addr> Lpm<A> {
    /// Build from `(lo, hi, len, owner)` prefixes (nested or disjoint, as
    /// prefixes are; an equal prefix listed twice: the later one wins).
    pub fn build(prefixes: &[(u128, u128, u8, u32)]) -> Lpm<A> {
        let mut p: Vec<(u128, u128, u8, u32)> = prefixes.to_vec();
        // Outer (shorter) prefixes first at the same start.
        p.sort_by_key(|&(lo, _, len, _)| (lo, len));
        let mut bounds: Vec<u128> = Vec::with_capacity(p.len() * 2 + 1);
        bounds.push(0);
        for &(lo, hi, _, _) in &p {
            bounds.push(lo);
            let max = if A::BITS == 128 {
                u128::MAX
            } else {
                (1u128 << A::BITS) - 1
            };
            if hi < max {
                bounds.push(hi + 1);
            }
        }
        bounds.sort_unstable();
        bounds.dedup();
        let mut starts: Vec<A> = Vec::new();
        let mut owner: Vec<u32> = Vec::new();
        let mut stack: Vec<(u128, u32)> = Vec::new(); // (hi, owner)
        let mut next = 0;
        for &x in &bounds {
            while stack.last().is_some_and(|&(hi, _)| hi < x) {
                stack.pop();
            }
            while next < p.len() && p[next].0 == x {
                let (_, hi, _, o) = p[next];
                stack.push((hi, o));
                next += 1;
            }
            let o = stack.last().map_or(NONE, |&(_, o)| o);
            if owner.last() != Some(&o) {
                starts.push(A::from_u128(x));
                owner.push(o);
            }
        }
        let mut l = Lpm {
            starts,
            owner,
            index: Vec::new(),
        };
        if l.starts.len() > 64 {
            let shift = A::BITS - 16;
            let mut idx = Vec::with_capacity(65537);
            let mut k = 0usize;
            for b in 0..65536u128 {
                let first = b << shift;
                while k + 1 < l.starts.len() && l.starts[k + 1].to_u128() <= first {
                    k += 1;
                }
                idx.push(k as u32);
            }
            idx.push((l.starts.len() - 1) as u32);
            l.index = idx;
        }
        l
    }

    /// The owner of every address (or `NONE`) when there is only one.
    #[inline]
    pub fn single_owner(&self) -> Option<u32> {
        match self.owner[..] {
            [] => Some(NONE),
            [o] => Some(o),
            _ => None,
        }
    }

    /// The owner of `a`, or `NONE`.
    #[inline]
    pub fn lookup(&self, a: A) -> u32 {
        match self.owner[..] {
            [] => return NONE,
            // One interval (it starts at 0): every address has one owner.
            [o] => return o,
            _ => {}
        }
        let (lo, hi) = if self.index.is_empty() {
            (0, self.starts.len() - 1)
        } else {
            let b = a.shr_u32((A::BITS - 16) as u8) as usize;
            (self.index[b] as usize, self.index[b + 1] as usize)
        };
        let s = &self.starts[lo..=hi];
        let i = s.partition_point(|&x| x <= a);
        // starts[0] == 0, so i >= 1.
        self.owner[lo + i.saturating_sub(1)]
    }

    /// Bytes used.
    pub fn memory(&self) -> usize {
        self.starts.len() * std::mem::size_of::<A>() + self.owner.len() * 4 + self.index.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested() {
        let p = vec![
            (0x0a00_0000, 0x0aff_ffff, 8, 1),
            (0x0a01_0000, 0x0a01_ffff, 16, 2),
            (0x0a01_0203, 0x0a01_0203, 32, 3),
            (0x0b00_0000, 0x0b00_00ff, 24, 4),
        ];
        let l: Lpm<u32> = Lpm::build(&p);
        assert_eq!(l.lookup(0x0900_0000), NONE);
        assert_eq!(l.lookup(0x0a00_0000), 1);
        assert_eq!(l.lookup(0x0a01_0000), 2);
        assert_eq!(l.lookup(0x0a01_0203), 3);
        assert_eq!(l.lookup(0x0a01_0204), 2);
        assert_eq!(l.lookup(0x0a02_0000), 1);
        assert_eq!(l.lookup(0x0b00_0001), 4);
        assert_eq!(l.lookup(0x0b00_0100), NONE);
        assert_eq!(l.lookup(u32::MAX), NONE);
        let all: Lpm<u32> = Lpm::build(&[(0, u32::MAX as u128, 0, 7)]);
        assert_eq!(all.lookup(0), 7);
        assert_eq!(all.lookup(u32::MAX), 7);
        let all6: Lpm<u128> = Lpm::build(&[(0, u128::MAX, 0, 7), (5, 5, 128, 8)]);
        assert_eq!(all6.lookup(u128::MAX), 7);
        assert_eq!(all6.lookup(5), 8);
    }

    #[test]
    fn big_uses_index() {
        let p: Vec<_> = (0..1000u128)
            .map(|i| (i << 20, (i << 20) + 255, 24, i as u32))
            .collect();
        let l: Lpm<u32> = Lpm::build(&p);
        for i in 0..1000u32 {
            assert_eq!(l.lookup(i << 20), i);
            assert_eq!(l.lookup((i << 20) + 255), i);
            assert_eq!(l.lookup((i << 20) + 256), NONE);
        }
    }
}
