//! Sets held apart from the compiled rules: a rule's [`SetCheck`](crate::ir::SetCheck) names a
//! set by index, and the classifier's set table holds each set's members
//! in a form looked up without allocation (sorted arrays, binary search).
//! A change of members builds the one set's table again and swaps it into
//! a copy of the classifier that shares every engine
//! ([`Classifier::with_set`](crate::Classifier::with_set)), so the engines
//! never depend on a set's members: the cut trees treat a rule with checks
//! as wide in the address it tests and check the set at the leaf.

use std::sync::Arc;

use super::types::{Addr, EKey};
use crate::ir::SetSide;
use crate::ranges::AddrSet;

/// One set's members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetMatch {
    /// Addresses (Felix `NET` / `IP` sets), per family.
    Addrs {
        /// IPv4 members.
        v4: AddrTable<u32>,
        /// IPv6 members.
        v6: AddrTable<u128>,
    },
    /// `(address, protocol, port)` members (Felix `IP_AND_PORT` sets,
    /// named ports and services), per family.
    IpPorts {
        /// IPv4 members.
        v4: HostTable<(u32, u8, u16)>,
        /// IPv6 members.
        v6: HostTable<(u128, u8, u16)>,
    },
}

/// The sets of a classifier, by [`SetCheck::set`].
pub type SetTable = Vec<Arc<SetMatch>>;

/// Ranges of at most this many addresses are held as single addresses in
/// the hash table (pods' addresses are single or a few consecutive ones);
/// wider ranges stay sorted ranges.
const HOST_RANGE_MAX: u128 = 16;

/// One family's addresses: single addresses in a hash table (one probe
/// whatever the set's size), wider ranges sorted and disjoint beside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrTable<T> {
    hosts: HostTable<T>,
    ranges: Vec<(T, T)>,
}

impl<T: HostKey + Into<u128> + TryFrom<u128>> AddrTable<T> {
    /// The table of disjoint sorted ranges `r`.
    fn of(r: impl IntoIterator<Item = (T, T)>) -> AddrTable<T> {
        let (mut hosts, mut ranges) = (Vec::new(), Vec::new());
        for (lo, hi) in r {
            let (l, h): (u128, u128) = (lo.into(), hi.into());
            if h - l < HOST_RANGE_MAX {
                hosts.extend((l..=h).filter_map(|a| T::try_from(a).ok()));
            } else {
                ranges.push((lo, hi));
            }
        }
        AddrTable {
            hosts: HostTable::of(hosts),
            ranges,
        }
    }

    #[inline]
    fn contains(&self, a: T) -> bool {
        self.hosts.contains(a) || (!self.ranges.is_empty() && in_ranges(&self.ranges, a))
    }

    fn memory(&self) -> usize {
        self.hosts.memory() + self.ranges.len() * 2 * std::mem::size_of::<T>()
    }

    fn len(&self) -> usize {
        self.hosts.len() + self.ranges.len()
    }
}

/// A key of a [`HostTable`].
pub trait HostKey: Copy + Ord {
    /// 64 well-mixed bits of the key (the table takes the high ones).
    fn hash(self) -> u64;
}

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

impl HostKey for u32 {
    #[inline(always)]
    fn hash(self) -> u64 {
        u64::from(self).wrapping_mul(MIX)
    }
}

impl HostKey for u128 {
    #[inline(always)]
    fn hash(self) -> u64 {
        ((self as u64) ^ ((self >> 64) as u64).wrapping_mul(MIX)).wrapping_mul(MIX)
    }
}

impl<A: HostKey> HostKey for (A, u8, u16) {
    #[inline(always)]
    fn hash(self) -> u64 {
        (self.0.hash() ^ (u64::from(self.1) << 16 | u64::from(self.2))).wrapping_mul(MIX)
    }
}

/// Exact keys in a static hash table without empty slots: the keys
/// sorted by bucket (then value), `starts[b]..starts[b + 1]` bucket `b`'s.
/// As many buckets as keys (rounded up to a power of two), so a lookup
/// reads one bucket bound pair and about one key. Built the same from the
/// same keys, so equal sets compare equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostTable<T> {
    starts: Vec<u32>,
    keys: Vec<T>,
    /// log2 of the bucket count.
    bits: u32,
}

impl<T: HostKey> HostTable<T> {
    fn of(mut keys: Vec<T>) -> HostTable<T> {
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return HostTable {
                starts: Vec::new(),
                keys,
                bits: 0,
            };
        }
        let bits = keys.len().next_power_of_two().trailing_zeros();
        let bucket = |k: T| Self::bucket_of(k, bits);
        keys.sort_by_key(|&k| (bucket(k), k));
        let mut starts = vec![0u32; (1usize << bits) + 1];
        for &k in &keys {
            starts[bucket(k) + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        HostTable { starts, keys, bits }
    }

    #[inline(always)]
    fn bucket_of(k: T, bits: u32) -> usize {
        // The high `bits` bits of the hash (`bits` is at most 32, so the
        // shift stays below 64).
        (k.hash() >> 32 >> (32 - bits)) as usize
    }

    /// Whether `k` is a key.
    #[inline]
    pub fn contains(&self, k: T) -> bool {
        if self.keys.is_empty() {
            return false;
        }
        let b = Self::bucket_of(k, self.bits);
        let (Some(&s), Some(&e)) = (self.starts.get(b), self.starts.get(b + 1)) else {
            return false;
        };
        self.keys
            .get(s as usize..e as usize)
            .is_some_and(|ks| ks.contains(&k))
    }

    fn memory(&self) -> usize {
        self.starts.len() * 4 + self.keys.len() * std::mem::size_of::<T>()
    }

    fn len(&self) -> usize {
        self.keys.len()
    }
}

impl SetMatch {
    /// The set of `a`'s addresses.
    pub fn addrs(a: &AddrSet) -> SetMatch {
        SetMatch::Addrs {
            v4: AddrTable::of(a.v4.ranges().iter().map(|&(x, y)| (x as u32, y as u32))),
            v6: AddrTable::of(a.v6.ranges().iter().copied()),
        }
    }

    /// The set of `(address, protocol, port)` members, any order, either
    /// family (an IPv4 address as its `u32` value with `v6` false).
    pub fn ip_ports(members: impl IntoIterator<Item = (bool, u128, u8, u16)>) -> SetMatch {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (is_v6, a, proto, port) in members {
            if is_v6 {
                v6.push((a, proto, port));
            } else {
                v4.push((a as u32, proto, port));
            }
        }
        SetMatch::IpPorts {
            v4: HostTable::of(v4),
            v6: HostTable::of(v6),
        }
    }

    /// The empty set of addresses (a set index no rule should reach).
    pub fn none() -> SetMatch {
        SetMatch::Addrs {
            v4: AddrTable::of([]),
            v6: AddrTable::of([]),
        }
    }

    /// Whether the key's side is in the set.
    #[inline]
    pub(crate) fn contains<A: Addr>(&self, k: &EKey<A>, side: SetSide) -> bool {
        let (addr, port) = match side {
            SetSide::Src => (k.f[1], k.f[4]),
            SetSide::Dst => (k.f[2], k.f[5]),
        };
        let v6 = A::BITS == 128;
        match self {
            SetMatch::Addrs { v4, v6: t6 } => {
                if v6 {
                    t6.contains(addr.to_u128())
                } else {
                    v4.contains(addr.to_u128() as u32)
                }
            }
            SetMatch::IpPorts { v4, v6: m6 } => {
                // Port fields above 65535 are ICMP or no ports: no member.
                let (Ok(proto), Ok(port)) = (
                    u8::try_from(k.f[3].to_u128()),
                    u16::try_from(port.to_u128()),
                ) else {
                    return false;
                };
                if v6 {
                    m6.contains((addr.to_u128(), proto, port))
                } else {
                    v4.contains((addr.to_u128() as u32, proto, port))
                }
            }
        }
    }

    /// Bytes of the table.
    pub fn memory(&self) -> usize {
        match self {
            SetMatch::Addrs { v4, v6 } => v4.memory() + v6.memory(),
            SetMatch::IpPorts { v4, v6 } => v4.memory() + v6.memory(),
        }
    }

    /// Entries (single addresses, ranges or triples).
    pub fn len(&self) -> usize {
        match self {
            SetMatch::Addrs { v4, v6 } => v4.len() + v6.len(),
            SetMatch::IpPorts { v4, v6 } => v4.len() + v6.len(),
        }
    }

    /// True without members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[inline]
fn in_ranges<T: Ord + Copy>(r: &[(T, T)], v: T) -> bool {
    let i = r.partition_point(|&(_, hi)| hi < v);
    r.get(i).is_some_and(|&(lo, _)| lo <= v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cidr;

    #[test]
    fn addresses_and_ip_ports() {
        let c: Vec<Cidr> = ["10.0.0.0/24", "10.0.2.1/32", "fd00::/64"]
            .iter()
            .map(|s| Cidr::parse(s).unwrap())
            .collect();
        let s = SetMatch::addrs(&AddrSet::from_cidrs(&c));
        let k4 = |src: u32| EKey::<u32>::new(0, src, 0, 6, 1, 2);
        assert!(s.contains(&k4(0x0a00_00ff), SetSide::Src));
        assert!(!s.contains(&k4(0x0a00_0100), SetSide::Src));
        assert!(s.contains(&k4(0x0a00_0201), SetSide::Src));
        assert!(!s.contains(&k4(0x0a00_0201), SetSide::Dst));
        let k6 = EKey::<u128>::new(0, 0xfd00 << 112 | 5, 0, 6, 1, 2);
        assert!(s.contains(&k6, SetSide::Src));
        let p = SetMatch::ip_ports([(false, 0x0a00_0001, 6, 80), (true, 7, 17, 53)]);
        let k = |dst: u32, proto: u32, dport: u32| EKey::<u32>::new(0, 0, dst, proto, 9, dport);
        assert!(p.contains(&k(0x0a00_0001, 6, 80), SetSide::Dst));
        assert!(!p.contains(&k(0x0a00_0001, 17, 80), SetSide::Dst));
        assert!(!p.contains(&k(0x0a00_0001, 6, 81), SetSide::Dst));
        // ICMP's port fields are above 65535: never a member.
        assert!(!p.contains(&k(0x0a00_0001, 6, 0x10000 + 80), SetSide::Dst));
        let k6 = EKey::<u128>::new(0, 0, 7, 17, 9, 53);
        assert!(p.contains(&k6, SetSide::Dst));
    }

    #[test]
    fn hosts_short_and_wide_ranges_agree_with_the_ranges() {
        // Single addresses, short runs (hashed) and wide ranges (sorted),
        // IPv4 and IPv6, against a linear check of the ranges.
        let mut c: Vec<Cidr> = Vec::new();
        for i in 0..300u32 {
            let a = 0x0a00_0000 + i * 7;
            c.push(Cidr::parse(&format!("{}/32", std::net::Ipv4Addr::from(a))).unwrap());
        }
        for s in [
            "10.1.0.0/29",
            "10.1.0.8/30",
            "10.2.0.0/28",
            "10.3.0.0/27",
            "fd00::1/128",
            "fd00::10/124",
            "fd01::/64",
        ] {
            c.push(Cidr::parse(s).unwrap());
        }
        let a = AddrSet::from_cidrs(&c);
        let s = SetMatch::addrs(&a);
        let r4: Vec<(u32, u32)> =
            a.v4.ranges()
                .iter()
                .map(|&(x, y)| (x as u32, y as u32))
                .collect();
        for v in (0x09ff_fff0u32..0x0a00_0a00).chain(0x0a00_fff0..0x0a04_0010) {
            let want = r4.iter().any(|&(lo, hi)| lo <= v && v <= hi);
            assert_eq!(
                s.contains(&EKey::<u32>::new(0, v, 0, 6, 1, 2), SetSide::Src),
                want,
                "{v:#x}"
            );
        }
        let r6 = a.v6.ranges();
        for base in [0xfd00u128 << 112, 0xfd01u128 << 112, 0xfd02u128 << 112] {
            for v in base.saturating_sub(4)..base + 40 {
                let want = r6.iter().any(|&(lo, hi)| lo <= v && v <= hi);
                assert_eq!(
                    s.contains(&EKey::<u128>::new(0, 0, v, 6, 1, 2), SetSide::Dst),
                    want
                );
            }
        }
        // Equal members build equal tables, and the count of entries
        // counts each hashed address and each wide range once.
        assert_eq!(s, SetMatch::addrs(&AddrSet::from_cidrs(&c)));
        assert!(!s.is_empty());
        assert!(!SetMatch::none().contains(&EKey::<u32>::new(0, 0, 0, 6, 1, 2), SetSide::Src));
        let p = SetMatch::ip_ports(
            (0..1000u32).map(|i| (false, u128::from(i * 5), 6, 80 + (i % 3) as u16)),
        );
        for i in 0..5000u32 {
            let want = i % 5 == 0 && (i / 5) % 3 == 0;
            let k = EKey::<u32>::new(0, 0, i, 6, 9, 80);
            assert_eq!(p.contains(&k, SetSide::Dst), want, "{i}");
        }
    }
}
