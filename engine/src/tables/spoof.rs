//! Source-address filters of ports (anti-spoofing): a port with a filter
//! only accepts IP frames whose source address is in one of its prefixes.
//! Felix drops what a workload sends from an address that is not the
//! endpoint's own (or in its `allow_spoofed_source_prefixes`); sluice
//! gives each workload port such a filter. Ports without one accept any
//! source.

use crate::wire::{Cidr, Family};

/// The prefixes one port accepts sources from, as (network, mask) pairs
/// per family. Few per port (a pod's addresses), so a scan is the fastest
/// lookup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceFilter {
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

fn mask(family: Family, len: u8) -> u128 {
    match family {
        Family::V4 if len == 0 => 0,
        Family::V4 => u128::from(u32::MAX << (32 - u32::from(len.min(32)))),
        Family::V6 if len == 0 => 0,
        Family::V6 => u128::MAX << (128 - u32::from(len.min(128))),
    }
}

impl SourceFilter {
    /// A filter accepting sources in `allowed`.
    pub fn new(allowed: &[Cidr]) -> SourceFilter {
        let mut f = SourceFilter::default();
        for c in allowed {
            let m = mask(c.family, c.len);
            let e = (c.addr & m, m);
            match c.family {
                Family::V4 => f.v4.push(e),
                Family::V6 => f.v6.push(e),
            }
        }
        f
    }

    /// Whether a frame from `src` may enter. IPv6 link-local and
    /// unspecified sources always may: neighbour discovery and duplicate
    /// address detection use them, they are never forwarded (link-local
    /// destinations go to the kernel), and Felix's reverse-path check
    /// accepts them on the link too.
    #[inline]
    pub fn allows(&self, family: Family, src: u128) -> bool {
        let list = match family {
            Family::V4 => &self.v4,
            Family::V6 => {
                if src == 0 || src >> 118 == 0xfe80 >> 6 {
                    return true;
                }
                &self.v6
            }
        };
        list.iter().any(|&(net, m)| src & m == net)
    }
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> (Family, u128) {
        crate::wire::from_ip(s.parse().unwrap())
    }

    #[test]
    fn only_the_prefixes_given_and_v6_link_local() {
        let f = SourceFilter::new(&[
            Cidr::parse("10.65.0.5/32").unwrap(),
            Cidr::parse("192.168.7.0/24").unwrap(),
            Cidr::parse("fd00:65::5/128").unwrap(),
        ]);
        for (a, ok) in [
            ("10.65.0.5", true),
            ("10.65.0.6", false),
            ("192.168.7.200", true),
            ("192.168.8.1", false),
            ("0.0.0.0", false),
            ("fd00:65::5", true),
            ("fd00:65::6", false),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", false),
            ("::", true),
        ] {
            let (fam, v) = ip(a);
            assert_eq!(f.allows(fam, v), ok, "{a}");
        }
        // No prefix of a family: none of that family (but link-local).
        let f = SourceFilter::new(&[Cidr::parse("10.65.0.5/32").unwrap()]);
        let (fam, v) = ip("fd00::1");
        assert!(!f.allows(fam, v));
        // A /0 accepts everything of its family.
        let f = SourceFilter::new(&[Cidr::parse("0.0.0.0/0").unwrap()]);
        let (fam, v) = ip("203.0.113.9");
        assert!(f.allows(fam, v));
    }
}
