//! Forwarding table: longest-prefix match for IPv4 and IPv6.
//!
//! IPv4 is DIR-24-8 (Gupta, Lin, McKeown 1998; DPDK's `rte_lpm`): a table of
//! 2^24 16-bit entries indexed by the top 24 bits, each either a next-hop id
//! or the index of a 256-entry second-level group for prefixes longer than
//! /24. A lookup is one load, or two. The default route is kept aside rather
//! than written into all 16M entries, so a table with a handful of routes
//! touches only the pages its prefixes cover.
//!
//! IPv6 is a multibit trie with strides 16, 8, 8, ... (like DPDK's
//! `rte_fib6` trie): a 65536-entry root and 256-entry children, leaf-pushed,
//! so a lookup walks at most 15 levels and typical /48../64 routes take 3-7.
//!
//! Tables are built aside from a route list (sorted by prefix length so a
//! longer prefix always overwrites the shorter ones it covers) and published
//! whole; the data plane swaps an `Arc` between batches. Lookups never
//! allocate and never panic.

use thiserror::Error;

/// Index into [`Fib::next_hops`].
pub type NextHopId = u16;

/// What a route does with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum RouteKind {
    /// Forward out of `port`.
    #[default]
    Forward,
    /// Deliver to the node's own stack (the node's addresses, broadcast,
    /// multicast, link-local): Linux's `local` table.
    Local,
    /// Never forwarded (loopback, 0/8, 240/4, ...): Linux's martians.
    Martian,
}

/// Where a route sends packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Egress port.
    pub port: u16,
    /// Gateway address, or `None` for a directly connected prefix (the
    /// packet's destination is the neighbour).
    pub via: Option<u128>,
    /// Forward, local delivery or martian.
    pub kind: RouteKind,
}

/// A route: prefix, length and next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub prefix: u128,
    pub len: u8,
    pub next_hop: NextHop,
}

/// Errors building a table.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FibError {
    #[error("prefix length {len} is longer than {max}")]
    BadLength { len: u8, max: u8 },
    #[error("route {index}: the same prefix appears twice")]
    Duplicate { index: usize },
    #[error("too many distinct next hops ({0}); at most 32767")]
    TooManyNextHops(usize),
    #[error("too many /25../32 groups ({0}); at most 32767")]
    TooManyGroups(usize),
}

const GROUP_FLAG: u16 = 0x8000;

/// IPv4 DIR-24-8 table.
#[derive(Clone)]
pub struct Lpm4 {
    tbl24: Vec<u16>,
    tbl8: Vec<u16>,
    default: u16,
}

impl std::fmt::Debug for Lpm4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lpm4")
            .field("groups", &(self.tbl8.len() / 256))
            .finish()
    }
}

impl Lpm4 {
    /// Builds from `(prefix, len, value)` with values in 1..=0x7fff
    /// (0 means "no route").
    fn build(routes: &mut [(u32, u8, u16)]) -> Result<Lpm4, FibError> {
        routes.sort_by_key(|r| r.1);
        let mut t = Lpm4 {
            tbl24: vec![0; 1 << 24],
            tbl8: Vec::new(),
            default: 0,
        };
        // 32 MiB looked up at random: huge pages (advice; see
        // `mem::advise_hugepages`), before the first write faults it in.
        let _ = crate::mem::advise_hugepages(&t.tbl24);
        for &(prefix, len, v) in routes.iter() {
            if len == 0 {
                t.default = v;
            } else if len <= 24 {
                let start = (prefix >> 8) as usize;
                let n = 1usize << (24 - len);
                for e in t.tbl24.iter_mut().skip(start).take(n) {
                    *e = v;
                }
            } else {
                let i = (prefix >> 8) as usize;
                let cur = t.tbl24.get(i).copied().unwrap_or(0);
                let group = if cur & GROUP_FLAG != 0 {
                    usize::from(cur & !GROUP_FLAG)
                } else {
                    let g = t.tbl8.len() / 256;
                    if g >= 0x7fff {
                        return Err(FibError::TooManyGroups(g + 1));
                    }
                    t.tbl8.extend(std::iter::repeat_n(cur, 256));
                    if let Some(e) = t.tbl24.get_mut(i) {
                        *e = GROUP_FLAG | g as u16;
                    }
                    g
                };
                let start = group * 256 + (prefix & 0xff) as usize;
                let n = 1usize << (32 - len);
                for e in t.tbl8.iter_mut().skip(start).take(n) {
                    *e = v;
                }
            }
        }
        Ok(t)
    }

    /// Looks up `addr`; 0 when nothing matches.
    #[inline]
    pub fn lookup(&self, addr: u32) -> u16 {
        let e = self.tbl24.get((addr >> 8) as usize).copied().unwrap_or(0);
        let v = if e & GROUP_FLAG != 0 {
            let i = usize::from(e & !GROUP_FLAG) * 256 + (addr & 0xff) as usize;
            self.tbl8.get(i).copied().unwrap_or(0)
        } else {
            e
        };
        if v == 0 {
            self.default
        } else {
            v
        }
    }

    /// Bytes held.
    pub fn memory(&self) -> usize {
        (self.tbl24.len() + self.tbl8.len()) * 2
    }
}

const CHILD_FLAG: u32 = 0x8000_0000;

/// Exact-match table for /128 routes (open addressing, 0 = empty), so a
/// host route (a node address, a neighbour) does not deepen the trie path
/// of every address around it to 15 levels.
#[derive(Clone, Debug, Default)]
struct Hosts {
    keys: Vec<u128>,
    vals: Vec<u16>,
    mask: usize,
}

impl Hosts {
    fn build(entries: &[(u128, u16)]) -> Hosts {
        if entries.is_empty() {
            return Hosts::default();
        }
        let cap = (entries.len() * 2).next_power_of_two().max(8);
        let mut h = Hosts {
            keys: vec![0; cap],
            vals: vec![0; cap],
            mask: cap - 1,
        };
        for &(k, v) in entries {
            let mut i = Hosts::slot(k) & h.mask;
            while h.vals.get(i).copied().unwrap_or(0) != 0 && h.keys.get(i) != Some(&k) {
                i = (i + 1) & h.mask;
            }
            if let (Some(key), Some(val)) = (h.keys.get_mut(i), h.vals.get_mut(i)) {
                *key = k;
                *val = v;
            }
        }
        h
    }

    #[inline]
    fn slot(k: u128) -> usize {
        let x = (k as u64) ^ ((k >> 64) as u64).rotate_left(31);
        (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize
    }

    #[inline]
    fn get(&self, k: u128) -> u16 {
        if self.vals.is_empty() {
            return 0;
        }
        let mut i = Hosts::slot(k) & self.mask;
        loop {
            match self.vals.get(i) {
                Some(0) | None => return 0,
                Some(&v) if self.keys.get(i) == Some(&k) => return v,
                _ => i = (i + 1) & self.mask,
            }
        }
    }
}

/// IPv6 multibit trie (strides 16, then 8), with /128 routes aside.
#[derive(Clone, Debug)]
pub struct Lpm6 {
    root: Vec<u32>,
    nodes: Vec<u32>,
    default: u32,
    hosts: Hosts,
}

impl Lpm6 {
    fn build(routes: &mut [(u128, u8, u16)]) -> Lpm6 {
        routes.sort_by_key(|r| r.1);
        let hosts: Vec<(u128, u16)> = routes
            .iter()
            .filter(|r| r.1 == 128)
            .map(|r| (r.0, r.2))
            .collect();
        let mut t = Lpm6 {
            root: vec![0; 1 << 16],
            nodes: Vec::new(),
            default: 0,
            hosts: Hosts::build(&hosts),
        };
        for &(prefix, len, v) in routes.iter().filter(|r| r.1 < 128) {
            let v = u32::from(v);
            if len == 0 {
                t.default = v;
                continue;
            }
            // Level 0: bits 0..16 in the root.
            if len <= 16 {
                let start = (prefix >> 112) as usize;
                let n = 1usize << (16 - len);
                for e in t.root.iter_mut().skip(start).take(n) {
                    *e = v;
                }
                continue;
            }
            let idx = (prefix >> 112) as usize;
            let mut node = t.child_of_root(idx);
            let mut depth = 16u32; // bits consumed so far
            loop {
                let byte = ((prefix >> (120 - depth)) & 0xff) as usize;
                if u32::from(len) <= depth + 8 {
                    let n = 1usize << (depth + 8 - u32::from(len));
                    let start = node * 256 + byte;
                    for e in t.nodes.iter_mut().skip(start).take(n) {
                        *e = v;
                    }
                    break;
                }
                node = t.child_of_node(node * 256 + byte);
                depth += 8;
            }
        }
        // Walks land on random nodes, up to 15 a lookup: huge pages (advice,
        // as for the IPv4 table), so a big table's walks do not also miss
        // the TLB at every level.
        let _ = crate::mem::advise_hugepages(&t.nodes);
        t
    }

    fn new_node(&mut self, fill: u32) -> usize {
        let n = self.nodes.len() / 256;
        self.nodes.extend(std::iter::repeat_n(fill, 256));
        n
    }

    fn child_of_root(&mut self, idx: usize) -> usize {
        let cur = self.root.get(idx).copied().unwrap_or(0);
        if cur & CHILD_FLAG != 0 {
            return (cur & !CHILD_FLAG) as usize;
        }
        let n = self.new_node(cur);
        if let Some(e) = self.root.get_mut(idx) {
            *e = CHILD_FLAG | n as u32;
        }
        n
    }

    fn child_of_node(&mut self, slot: usize) -> usize {
        let cur = self.nodes.get(slot).copied().unwrap_or(0);
        if cur & CHILD_FLAG != 0 {
            return (cur & !CHILD_FLAG) as usize;
        }
        let n = self.new_node(cur);
        if let Some(e) = self.nodes.get_mut(slot) {
            *e = CHILD_FLAG | n as u32;
        }
        n
    }

    /// Looks up `addr`; 0 when nothing matches.
    #[inline]
    pub fn lookup(&self, addr: u128) -> u16 {
        let h = self.hosts.get(addr);
        if h != 0 {
            return h;
        }
        let mut e = self.first(addr);
        let mut depth = 16u32;
        while e & CHILD_FLAG != 0 && depth < 128 {
            e = self.step(e, addr, depth);
            depth += 8;
        }
        self.value(e)
    }

    /// The root entry of `addr` (its first 16 bits).
    #[inline(always)]
    fn first(&self, addr: u128) -> u32 {
        self.root.get((addr >> 112) as usize).copied().unwrap_or(0)
    }

    /// The entry of `addr` one level below child entry `e`, `depth` bits
    /// of the address consumed.
    #[inline(always)]
    fn step(&self, e: u32, addr: u128, depth: u32) -> u32 {
        let byte = ((addr >> (120 - depth)) & 0xff) as usize;
        self.nodes
            .get((e & !CHILD_FLAG) as usize * 256 + byte)
            .copied()
            .unwrap_or(0)
    }

    /// [`Lpm6::lookup`] for each of `addrs` into `out` (as many as the
    /// shorter holds), walking the trie a level at a time over a group of
    /// addresses: each level's loads for the whole group are issued before
    /// any is needed, so a group waits for a level's cache misses together
    /// rather than one after the other (a trie path is up to 15 dependent
    /// loads; DPDK's trie bulk lookup overlaps only the first).
    pub fn lookup_bulk(&self, addrs: &[u128], out: &mut [u16]) {
        const GROUP: usize = 16;
        for (a, o) in addrs.chunks(GROUP).zip(out.chunks_mut(GROUP)) {
            let mut e = [0u32; GROUP];
            for (e, &x) in e.iter_mut().zip(a) {
                *e = self.first(x);
            }
            let mut depth = 16u32;
            let mut deeper = e.iter().any(|&e| e & CHILD_FLAG != 0);
            while deeper && depth < 128 {
                deeper = false;
                for (e, &x) in e.iter_mut().zip(a) {
                    if *e & CHILD_FLAG != 0 {
                        *e = self.step(*e, x, depth);
                        deeper |= *e & CHILD_FLAG != 0;
                    }
                }
                depth += 8;
            }
            for ((o, &e), &x) in o.iter_mut().zip(&e).zip(a) {
                *o = self.settle(x, e);
            }
        }
    }

    /// The answer for `addr` whose walk ended at entry `e`: its /128 route
    /// if it has one, else [`Lpm6::value`].
    #[inline]
    fn settle(&self, addr: u128, e: u32) -> u16 {
        match self.hosts.get(addr) {
            0 => self.value(e),
            h => h,
        }
    }

    /// The route a walk that ended at entry `e` found, else the default.
    #[inline]
    fn value(&self, e: u32) -> u16 {
        match e {
            e if e & CHILD_FLAG != 0 || e as u16 == 0 => self.default as u16,
            e => e as u16,
        }
    }

    /// Bytes held.
    pub fn memory(&self) -> usize {
        (self.root.len() + self.nodes.len()) * 4 + self.hosts.keys.len() * 18
    }
}

/// The forwarding table for both families.
#[derive(Clone, Debug)]
pub struct Fib {
    v4: Lpm4,
    v6: Lpm6,
    next_hops: Vec<NextHop>,
    /// Family of each next hop (IPv6?), parallel to `next_hops`.
    next_hop_v6: Vec<bool>,
    routes: usize,
}

impl Fib {
    /// Builds a table from IPv4 and IPv6 route lists (prefixes are masked to
    /// their length).
    pub fn build(v4: &[Route], v6: &[Route]) -> Result<Fib, FibError> {
        let mut next_hops: Vec<NextHop> = Vec::new();
        let mut next_hop_v6: Vec<bool> = Vec::new();
        let mut nh_index = std::collections::HashMap::new();
        let mut intern = |v6: bool, nh: NextHop| -> Result<u16, FibError> {
            if let Some(&i) = nh_index.get(&(v6, nh.port, nh.via, nh.kind)) {
                return Ok(i);
            }
            if next_hops.len() >= 0x7fff {
                return Err(FibError::TooManyNextHops(next_hops.len() + 1));
            }
            next_hops.push(nh);
            next_hop_v6.push(v6);
            let i = next_hops.len() as u16; // 1-based
            nh_index.insert((v6, nh.port, nh.via, nh.kind), i);
            Ok(i)
        };
        let mut seen = std::collections::HashSet::new();
        let mut r4 = Vec::with_capacity(v4.len());
        for (index, r) in v4.iter().enumerate() {
            if r.len > 32 {
                return Err(FibError::BadLength {
                    len: r.len,
                    max: 32,
                });
            }
            let p = mask4(r.prefix as u32, r.len);
            if !seen.insert((4u8, u128::from(p), r.len)) {
                return Err(FibError::Duplicate { index });
            }
            r4.push((p, r.len, intern(false, r.next_hop)?));
        }
        let mut r6 = Vec::with_capacity(v6.len());
        for (index, r) in v6.iter().enumerate() {
            if r.len > 128 {
                return Err(FibError::BadLength {
                    len: r.len,
                    max: 128,
                });
            }
            let p = mask6(r.prefix, r.len);
            if !seen.insert((6u8, p, r.len)) {
                return Err(FibError::Duplicate {
                    index: v4.len() + index,
                });
            }
            r6.push((p, r.len, intern(true, r.next_hop)?));
        }
        Ok(Fib {
            v4: Lpm4::build(&mut r4)?,
            v6: Lpm6::build(&mut r6),
            next_hops,
            next_hop_v6,
            routes: v4.len() + v6.len(),
        })
    }

    /// An empty table: every lookup misses.
    pub fn empty() -> Fib {
        Fib {
            v4: Lpm4 {
                tbl24: Vec::new(),
                tbl8: Vec::new(),
                default: 0,
            },
            v6: Lpm6 {
                root: Vec::new(),
                nodes: Vec::new(),
                default: 0,
                hosts: Hosts::default(),
            },
            next_hops: Vec::new(),
            next_hop_v6: Vec::new(),
            routes: 0,
        }
    }

    /// IPv4 lookup: the next hop, if any route matches.
    #[inline]
    pub fn lookup_v4(&self, addr: u32) -> Option<&NextHop> {
        let v = self.v4.lookup(addr);
        self.next_hops.get(usize::from(v).wrapping_sub(1))
    }

    /// IPv6 lookup.
    #[inline]
    pub fn lookup_v6(&self, addr: u128) -> Option<&NextHop> {
        let v = self.v6.lookup(addr);
        self.next_hops.get(usize::from(v).wrapping_sub(1))
    }

    /// Starts loading the first-level entry of `addr` (see
    /// [`crate::mem::prefetch`]).
    #[inline]
    pub fn prefetch_v4(&self, addr: u32) {
        if let Some(e) = self.v4.tbl24.get((addr >> 8) as usize) {
            crate::mem::prefetch(e);
        }
    }

    /// The next-hop id (1-based, 0 = no route) of `addr` of `family`.
    #[inline(always)]
    pub fn lookup_id(&self, family: crate::wire::Family, addr: u128) -> u16 {
        match family {
            crate::wire::Family::V4 => self.lookup_v4_id(addr as u32),
            crate::wire::Family::V6 => self.lookup_v6_id(addr),
        }
    }

    /// Raw IPv4 lookup: 1-based next-hop id, 0 = no route.
    #[inline]
    pub fn lookup_v4_id(&self, addr: u32) -> u16 {
        self.v4.lookup(addr)
    }

    /// Raw IPv6 lookup: 1-based next-hop id, 0 = no route.
    #[inline]
    pub fn lookup_v6_id(&self, addr: u128) -> u16 {
        self.v6.lookup(addr)
    }

    /// [`Fib::lookup_v6_id`] for each of `addrs` into `out` (as many as the
    /// shorter holds), the group's trie levels loaded together (see
    /// [`Lpm6::lookup_bulk`]).
    pub fn lookup_v6_bulk(&self, addrs: &[u128], out: &mut [u16]) {
        self.v6.lookup_bulk(addrs, out)
    }

    /// The next hop with 1-based id `id`.
    #[inline]
    pub fn next_hop(&self, id: u16) -> Option<&NextHop> {
        self.next_hops.get(usize::from(id).wrapping_sub(1))
    }

    /// Whether next hop `id` (1-based) belongs to the IPv6 table.
    pub fn next_hop_is_v6(&self, id: u16) -> bool {
        self.next_hop_v6
            .get(usize::from(id).wrapping_sub(1))
            .copied()
            .unwrap_or(false)
    }

    /// The next hops, indexed by `id - 1`.
    pub fn next_hops(&self) -> &[NextHop] {
        &self.next_hops
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes
    }

    /// No routes.
    pub fn is_empty(&self) -> bool {
        self.routes == 0
    }

    /// Bytes held by the lookup structures.
    pub fn memory(&self) -> usize {
        self.v4.memory() + self.v6.memory()
    }
}

pub use crate::wire::addr::{mask4, mask6};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nh(port: u16) -> NextHop {
        NextHop {
            port,
            via: None,
            kind: RouteKind::Forward,
        }
    }

    /// The plain reference: scan every route, keep the longest match.
    fn reference(routes: &[Route], addr: u128, bits: u32) -> Option<NextHop> {
        routes
            .iter()
            .filter(|r| r.len == 0 || (addr ^ r.prefix) >> (bits - u32::from(r.len)) == 0)
            .max_by_key(|r| r.len)
            .map(|r| r.next_hop)
    }

    #[test]
    fn basics_v4() {
        let routes = [
            Route {
                prefix: 0,
                len: 0,
                next_hop: nh(9),
            },
            Route {
                prefix: 0x0a01_0000,
                len: 16,
                next_hop: nh(1),
            },
            Route {
                prefix: 0x0a01_0280,
                len: 25,
                next_hop: nh(2),
            },
            Route {
                prefix: 0x0a01_0281,
                len: 32,
                next_hop: nh(3),
            },
        ];
        let fib = Fib::build(&routes, &[]).unwrap();
        assert_eq!(fib.lookup_v4(0x0a01_0001).unwrap().port, 1);
        assert_eq!(fib.lookup_v4(0x0a01_0280).unwrap().port, 2);
        assert_eq!(fib.lookup_v4(0x0a01_0281).unwrap().port, 3);
        assert_eq!(fib.lookup_v4(0x0a01_027f).unwrap().port, 1);
        assert_eq!(fib.lookup_v4(0x0b00_0000).unwrap().port, 9);
        let no_default = Fib::build(&routes[1..], &[]).unwrap();
        assert!(no_default.lookup_v4(0x0b00_0000).is_none());
    }

    #[test]
    fn duplicate_is_an_error() {
        let r = Route {
            prefix: 0x0a00_0000,
            len: 8,
            next_hop: nh(1),
        };
        assert_eq!(
            Fib::build(&[r, r], &[]).unwrap_err(),
            FibError::Duplicate { index: 1 }
        );
    }

    fn arb_routes(bits: u32, n: usize) -> impl Strategy<Value = Vec<Route>> {
        // Prefixes clustered in a few top-level blocks so they overlap.
        proptest::collection::vec((0u8..4, any::<u128>(), 0..=bits as u8, 0u16..6), 1..n).prop_map(
            move |v| {
                let mut seen = std::collections::HashSet::new();
                v.into_iter()
                    .filter_map(|(blk, a, len, port)| {
                        let a = if bits == 32 {
                            let a = (a as u32 & 0x00ff_ffff) | (u32::from(blk) << 24);
                            u128::from(mask4(a, len))
                        } else {
                            mask6((a >> 8) | (u128::from(blk) << 120), len)
                        };
                        seen.insert((a, len)).then_some(Route {
                            prefix: a,
                            len,
                            next_hop: nh(port),
                        })
                    })
                    .collect()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn v4_matches_reference(routes in arb_routes(32, 60),
                                probes in proptest::collection::vec((0u8..5, any::<u32>()), 200)) {
            let fib = Fib::build(&routes, &[]).unwrap();
            for (blk, a) in probes {
                let a = (a & 0x00ff_ffff) | (u32::from(blk) << 24);
                let want = reference(&routes, u128::from(a), 32);
                prop_assert_eq!(fib.lookup_v4(a).copied(), want, "addr {:08x}", a);
            }
            // Every prefix's own first and last address.
            for r in &routes {
                let lo = r.prefix as u32;
                let hi = lo | (u32::MAX.checked_shr(u32::from(r.len)).unwrap_or(0));
                for a in [lo, hi] {
                    prop_assert_eq!(fib.lookup_v4(a).copied(), reference(&routes, u128::from(a), 32));
                }
            }
        }

        #[test]
        fn v6_matches_reference(routes in arb_routes(128, 60),
                                probes in proptest::collection::vec((0u8..5, any::<u128>()), 200)) {
            let fib = Fib::build(&[], &routes).unwrap();
            for &(blk, a) in &probes {
                let a = (a >> 8) | (u128::from(blk) << 120);
                prop_assert_eq!(fib.lookup_v6(a).copied(), reference(&routes, a, 128));
            }
            let mut addrs = Vec::new();
            for r in &routes {
                let lo = r.prefix;
                let hi = lo | u128::MAX.checked_shr(u32::from(r.len)).unwrap_or(0);
                for a in [lo, hi] {
                    prop_assert_eq!(fib.lookup_v6(a).copied(), reference(&routes, a, 128));
                    addrs.push(a);
                }
            }
            // The bulk lookup answers as the lone one, whatever the grouping.
            addrs.extend(probes.iter().map(|&(blk, a)| (a >> 8) | (u128::from(blk) << 120)));
            let mut out = vec![u16::MAX; addrs.len()];
            fib.lookup_v6_bulk(&addrs, &mut out);
            for (&a, &id) in addrs.iter().zip(&out) {
                prop_assert_eq!(id, fib.lookup_v6_id(a), "addr {:032x}", a);
            }
        }
    }
}
