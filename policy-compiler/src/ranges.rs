//! Sets of integers as sorted, disjoint, non-adjacent inclusive ranges; the
//! value sets of every match field in the IR (addresses, protocol, ports,
//! endpoint classes).

use std::net::IpAddr;

use crate::model::Cidr;

/// A set of `u128` values as sorted, disjoint, non-adjacent inclusive
/// ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RangeSet {
    r: Vec<(u128, u128)>,
}

impl RangeSet {
    /// The empty set.
    pub fn empty() -> RangeSet {
        RangeSet { r: Vec::new() }
    }

    /// `[0, max]`.
    pub fn full(max: u128) -> RangeSet {
        RangeSet { r: vec![(0, max)] }
    }

    /// One range.
    pub fn range(lo: u128, hi: u128) -> RangeSet {
        if lo > hi {
            return RangeSet::empty();
        }
        RangeSet { r: vec![(lo, hi)] }
    }

    /// One value.
    pub fn single(v: u128) -> RangeSet {
        RangeSet { r: vec![(v, v)] }
    }

    /// Normalise any list of ranges (sorted, merged).
    pub fn from_ranges(mut v: Vec<(u128, u128)>) -> RangeSet {
        v.retain(|(a, b)| a <= b);
        v.sort_unstable();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            if let Some(last) = out.last_mut() {
                if a <= last.1.saturating_add(1) {
                    if b > last.1 {
                        last.1 = b;
                    }
                    continue;
                }
            }
            out.push((a, b));
        }
        RangeSet { r: out }
    }

    /// The ranges.
    pub fn ranges(&self) -> &[(u128, u128)] {
        &self.r
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.r.is_empty()
    }

    /// True when `[0, max]`.
    pub fn is_full(&self, max: u128) -> bool {
        self.r.len() == 1 && self.r[0] == (0, max)
    }

    /// Membership.
    pub fn contains(&self, v: u128) -> bool {
        let i = self.r.partition_point(|&(_, hi)| hi < v);
        i < self.r.len() && self.r[i].0 <= v
    }

    /// True when every value of `[lo, hi]` is in the set.
    pub fn covers(&self, lo: u128, hi: u128) -> bool {
        let i = self.r.partition_point(|&(_, h)| h < lo);
        i < self.r.len() && self.r[i].0 <= lo && self.r[i].1 >= hi
    }

    /// True when some value of `[lo, hi]` is in the set.
    pub fn intersects(&self, lo: u128, hi: u128) -> bool {
        let i = self.r.partition_point(|&(_, h)| h < lo);
        i < self.r.len() && self.r[i].0 <= hi
    }

    /// Cut `[lo, lo + 2^w)` into `2^b` equal children: call `each(c0, c1)`
    /// for the maximal runs of consecutive children the set meets, in
    /// order. A dense set (an IP set of 100k addresses) costs one binary
    /// search per run, not a step per range: ranges that end inside a
    /// child already counted are skipped over.
    pub fn child_runs(&self, lo: u128, w: u8, b: u8, mut each: impl FnMut(usize, usize)) {
        let r = &self.r;
        let hi = if w >= 128 {
            u128::MAX
        } else {
            lo + ((1u128 << w) - 1)
        };
        let cw = w - b;
        let last = (1usize << b) - 1;
        let mut i = r.partition_point(|&(_, h)| h < lo);
        let mut run: Option<(usize, usize)> = None;
        while i < r.len() && r[i].0 <= hi {
            let c0 = ((r[i].0.max(lo) - lo) >> cw) as usize;
            let c1 = ((r[i].1.min(hi) - lo) >> cw) as usize;
            run = match run {
                Some((s, e)) if c0 <= e + 1 => Some((s, e.max(c1))),
                Some((s, e)) => {
                    each(s, e);
                    Some((c0, c1))
                }
                None => Some((c0, c1)),
            };
            if c1 >= last {
                break;
            }
            // The next child starts here; ranges ending before it add
            // nothing.
            let next = lo + (((c1 + 1) as u128) << cw);
            i += 1;
            if i < r.len() && r[i].1 < next {
                i += r[i..].partition_point(|&(_, h)| h < next);
            }
        }
        if let Some((s, e)) = run {
            each(s, e);
        }
    }

    /// The smallest and largest values of the set inside `[lo, hi]`.
    pub fn bounds_within(&self, lo: u128, hi: u128) -> Option<(u128, u128)> {
        let i = self.r.partition_point(|&(_, h)| h < lo);
        if i >= self.r.len() || self.r[i].0 > hi {
            return None;
        }
        let j = self.r.partition_point(|&(a, _)| a <= hi) - 1;
        Some((self.r[i].0.max(lo), self.r[j].1.min(hi)))
    }

    /// Union.
    pub fn union(&self, o: &RangeSet) -> RangeSet {
        let mut v = self.r.clone();
        v.extend_from_slice(&o.r);
        RangeSet::from_ranges(v)
    }

    /// Intersection.
    pub fn intersect(&self, o: &RangeSet) -> RangeSet {
        // One range holding all of the other set (a full field, a CIDR
        // around a selector's addresses): the other set, copied, without a
        // merge step per range.
        for (a, b) in [(self, o), (o, self)] {
            if let ([(lo, hi)], [(first, _), .., (_, last)] | [(first, last)]) =
                (&a.r[..], &b.r[..])
            {
                if lo <= first && last <= hi {
                    return b.clone();
                }
            }
        }
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.r.len() && j < o.r.len() {
            let (a0, a1) = self.r[i];
            let (b0, b1) = o.r[j];
            let lo = a0.max(b0);
            let hi = a1.min(b1);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a1 < b1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        RangeSet { r: out }
    }

    /// Complement within `[0, max]`.
    pub fn complement(&self, max: u128) -> RangeSet {
        let mut out = Vec::new();
        let mut next: Option<u128> = Some(0);
        for &(a, b) in &self.r {
            if let Some(n) = next {
                if a > n {
                    out.push((n, a - 1));
                }
            }
            next = if b >= max { None } else { Some(b + 1) };
        }
        if let Some(n) = next {
            if n <= max {
                out.push((n, max));
            }
        }
        RangeSet { r: out }
    }

    /// Set difference.
    pub fn minus(&self, o: &RangeSet, max: u128) -> RangeSet {
        self.intersect(&o.complement(max))
    }
}

/// Largest IPv4 address as a `u128`.
pub const V4_MAX: u128 = u32::MAX as u128;
/// Largest IPv6 address.
pub const V6_MAX: u128 = u128::MAX;

/// A set of addresses of both families.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrSet {
    /// IPv4 part (values ≤ `V4_MAX`).
    pub v4: RangeSet,
    /// IPv6 part.
    pub v6: RangeSet,
}

impl AddrSet {
    /// Every address.
    pub fn full() -> AddrSet {
        AddrSet {
            v4: RangeSet::full(V4_MAX),
            v6: RangeSet::full(V6_MAX),
        }
    }

    /// No address.
    pub fn empty() -> AddrSet {
        AddrSet::default()
    }

    /// The union of prefixes.
    pub fn from_cidrs<'a>(cidrs: impl IntoIterator<Item = &'a Cidr>) -> AddrSet {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for c in cidrs {
            let (lo, hi) = cidr_range(c);
            if c.is_v4() {
                v4.push((lo, hi));
            } else {
                v6.push((lo, hi));
            }
        }
        AddrSet {
            v4: RangeSet::from_ranges(v4),
            v6: RangeSet::from_ranges(v6),
        }
    }

    /// Only one family (4 or 6) kept.
    pub fn only_family(&self, fam: u8) -> AddrSet {
        if fam == 4 {
            AddrSet {
                v4: self.v4.clone(),
                v6: RangeSet::empty(),
            }
        } else {
            AddrSet {
                v4: RangeSet::empty(),
                v6: self.v6.clone(),
            }
        }
    }

    /// Union.
    pub fn union(&self, o: &AddrSet) -> AddrSet {
        AddrSet {
            v4: self.v4.union(&o.v4),
            v6: self.v6.union(&o.v6),
        }
    }

    /// Intersection.
    pub fn intersect(&self, o: &AddrSet) -> AddrSet {
        AddrSet {
            v4: self.v4.intersect(&o.v4),
            v6: self.v6.intersect(&o.v6),
        }
    }

    /// Complement.
    pub fn complement(&self) -> AddrSet {
        AddrSet {
            v4: self.v4.complement(V4_MAX),
            v6: self.v6.complement(V6_MAX),
        }
    }

    /// Membership.
    pub fn contains(&self, a: &IpAddr) -> bool {
        match a {
            IpAddr::V4(x) => self.v4.contains(u32::from(*x) as u128),
            IpAddr::V6(x) => self.v6.contains(u128::from(*x)),
        }
    }

    /// True when no address of either family.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// The inclusive value range of a prefix.
pub fn cidr_range(c: &Cidr) -> (u128, u128) {
    match c.addr {
        IpAddr::V4(a) => {
            let lo = u32::from(a) as u128;
            let size = 1u128 << (32 - c.len as u32);
            (lo, lo + size - 1)
        }
        IpAddr::V6(a) => {
            let lo = u128::from(a);
            let host = if c.len == 0 {
                u128::MAX
            } else {
                (1u128 << (128 - c.len as u32)).wrapping_sub(1)
            };
            (lo, lo | host)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algebra() {
        let a = RangeSet::from_ranges(vec![(5, 10), (1, 2), (3, 4), (20, 30)]);
        assert_eq!(a.ranges(), &[(1, 10), (20, 30)]);
        let c = a.complement(40);
        assert_eq!(c.ranges(), &[(0, 0), (11, 19), (31, 40)]);
        assert_eq!(c.complement(40), a);
        let b = RangeSet::range(8, 25);
        assert_eq!(a.intersect(&b).ranges(), &[(8, 10), (20, 25)]);
        assert_eq!(a.union(&b).ranges(), &[(1, 30)]);
        assert!(a.contains(1) && a.contains(25) && !a.contains(15) && !a.contains(0));
        assert!(a.covers(2, 9) && !a.covers(9, 21));
        assert!(a.intersects(9, 21) && !a.intersects(11, 19));
        assert_eq!(
            RangeSet::full(u128::MAX).complement(u128::MAX),
            RangeSet::empty()
        );
        assert_eq!(
            RangeSet::empty().complement(u128::MAX),
            RangeSet::full(u128::MAX)
        );
    }

    fn set_of(v: Vec<(u16, u16)>) -> RangeSet {
        RangeSet::from_ranges(
            v.into_iter()
                .map(|(a, b)| (a.min(b) as u128 % 4096, a.max(b) as u128 % 4096))
                .filter(|(a, b)| a <= b)
                .collect(),
        )
    }

    proptest::proptest! {
        /// `child_runs` against asking each child in turn.
        #[test]
        fn child_runs_agree(v in proptest::collection::vec((0u16..4096, 0u16..4096), 0..40),
                            w in 1u8..12, b in 1u8..8, at in 0u128..4) {
            let s = set_of(v);
            let b = b.min(w);
            let lo = at << w;
            let cw = w - b;
            let want: Vec<usize> = (0..1usize << b)
                .filter(|&c| {
                    let c0 = lo + ((c as u128) << cw);
                    s.intersects(c0, c0 + (1u128 << cw) - 1)
                })
                .collect();
            let mut runs = Vec::new();
            s.child_runs(lo, w, b, |c0, c1| runs.push((c0, c1)));
            let got: Vec<usize> = runs.iter().flat_map(|&(a, z)| a..=z).collect();
            proptest::prop_assert_eq!(got, want);
            // Maximal: consecutive runs are neither adjacent nor overlapping.
            proptest::prop_assert!(runs.windows(2).all(|p| p[0].1 + 1 < p[1].0));
        }

        /// `intersect` (with its one-range shortcut) against membership.
        #[test]
        fn intersect_agrees(a in proptest::collection::vec((0u16..4096, 0u16..4096), 0..6),
                            b in proptest::collection::vec((0u16..4096, 0u16..4096), 0..6)) {
            let (a, b) = (set_of(a), set_of(b));
            let i = a.intersect(&b);
            for x in (0..4096u128).step_by(7) {
                proptest::prop_assert_eq!(i.contains(x), a.contains(x) && b.contains(x));
            }
            proptest::prop_assert_eq!(&i, &RangeSet::from_ranges(i.ranges().to_vec()));
        }
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert_eq!(cidr_range(&c), (0x0a00_0000, 0x0aff_ffff));
        let c = Cidr::parse("::/0").unwrap();
        assert_eq!(cidr_range(&c), (0, u128::MAX));
        let c = Cidr::parse("0.0.0.0/0").unwrap();
        assert_eq!(cidr_range(&c), (0, V4_MAX));
    }
}
