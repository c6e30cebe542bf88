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
    /// Addresses (Felix `NET` / `IP` sets): disjoint sorted ranges per
    /// family.
    Addrs {
        /// IPv4 ranges.
        v4: Vec<(u32, u32)>,
        /// IPv6 ranges.
        v6: Vec<(u128, u128)>,
    },
    /// `(address, protocol, port)` members (Felix `IP_AND_PORT` sets,
    /// named ports and services), sorted, per family.
    IpPorts {
        /// IPv4 members.
        v4: Vec<(u32, u8, u16)>,
        /// IPv6 members.
        v6: Vec<(u128, u8, u16)>,
    },
}

/// The sets of a classifier, by [`SetCheck::set`].
pub type SetTable = Vec<Arc<SetMatch>>;

impl SetMatch {
    /// The set of `a`'s addresses.
    pub fn addrs(a: &AddrSet) -> SetMatch {
        SetMatch::Addrs {
            v4: a
                .v4
                .ranges()
                .iter()
                .map(|&(x, y)| (x as u32, y as u32))
                .collect(),
            v6: a.v6.ranges().to_vec(),
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
        v4.sort_unstable();
        v4.dedup();
        v6.sort_unstable();
        v6.dedup();
        SetMatch::IpPorts { v4, v6 }
    }

    /// The empty set of addresses (a set index no rule should reach).
    pub fn none() -> SetMatch {
        SetMatch::Addrs {
            v4: Vec::new(),
            v6: Vec::new(),
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
            SetMatch::Addrs { v4, v6: r6 } => {
                if v6 {
                    in_ranges(r6, addr.to_u128())
                } else {
                    in_ranges(v4, addr.to_u128() as u32)
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
                    m6.binary_search(&(addr.to_u128(), proto, port)).is_ok()
                } else {
                    v4.binary_search(&(addr.to_u128() as u32, proto, port))
                        .is_ok()
                }
            }
        }
    }

    /// Bytes of the table.
    pub fn memory(&self) -> usize {
        match self {
            SetMatch::Addrs { v4, v6 } => v4.len() * 8 + v6.len() * 32,
            SetMatch::IpPorts { v4, v6 } => v4.len() * 8 + v6.len() * 24,
        }
    }

    /// Members (ranges or triples).
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
}
