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

    /// The ranges that intersect `[lo, hi]`, clipped to it.
    pub fn clip(&self, lo: u128, hi: u128) -> impl Iterator<Item = (u128, u128)> + '_ {
        let i = self.r.partition_point(|&(_, h)| h < lo);
        self.r[i..]
            .iter()
            .take_while(move |&&(a, _)| a <= hi)
            .map(move |&(a, b)| (a.max(lo), b.min(hi)))
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
        let clipped: Vec<_> = a.clip(5, 22).collect();
        assert_eq!(clipped, vec![(5, 10), (20, 22)]);
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
