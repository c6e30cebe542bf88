//! The kernel's state as sluice mirrors it: links, addresses, main-table
//! routes and neighbours, as plain values keyed the way the kernel keys
//! them, updated one netlink message ([`Event`]) at a time. Applying an
//! event is idempotent and only the last event for a key counts, so
//! replaying notifications that a dump already reflects ends in the same
//! view.

use std::collections::BTreeMap;

use crate::wire::{Cidr, Family, Mac};

/// A network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    /// Administratively up and its carrier on (`IFF_UP` and
    /// `IFF_LOWER_UP`).
    pub up: bool,
}

/// A route of the main table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Host bits clear.
    pub prefix: Cidr,
    pub kind: RouteType,
    /// Output interface (0: none, e.g. a blackhole route).
    pub oif: u32,
    /// Gateway (same family).
    pub via: Option<u128>,
    /// The route's metric (`RTA_PRIORITY`); the lowest wins.
    pub metric: u32,
}

/// The kinds of route the mirror tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteType {
    /// Forward (through a gateway or directly connected).
    Unicast,
    /// `blackhole`, `unreachable`, `prohibit`, `throw`, multicast, NAT,
    /// nexthop objects: not mirrored (counted).
    Other,
}

/// The key a route is replaced or deleted by: prefix, metric, TOS and,
/// for IPv6 (which keeps one route per device where IPv4 keeps one per
/// prefix), the output interface (0 for IPv4).
pub type RouteKey = (Family, u128, u8, u32, u8, u32);

/// A neighbour entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbor {
    pub ifindex: u32,
    pub family: Family,
    pub ip: u128,
    /// The link-layer address, when the entry has one.
    pub mac: Option<Mac>,
    /// Reachable, stale, delay, probe, permanent or noarp: the kernel
    /// would send to `mac` (incomplete and failed entries are not).
    pub usable: bool,
}

/// One change of kernel state (a netlink message, parsed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Link(u32, Option<Link>),
    /// `(ifindex, address)` added (true) or removed.
    Address(u32, Cidr, bool),
    Route(RouteKey, Option<Route>),
    Neighbor((u32, Family, u128), Option<Neighbor>),
}

/// The mirrored kernel state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelView {
    pub links: BTreeMap<u32, Link>,
    /// Global-scope addresses by interface.
    pub addresses: BTreeMap<u32, Vec<Cidr>>,
    pub routes: BTreeMap<RouteKey, Route>,
    pub neighbors: BTreeMap<(u32, Family, u128), Neighbor>,
}

impl KernelView {
    /// Applies one change.
    pub fn apply(&mut self, e: Event) {
        match e {
            Event::Link(i, Some(l)) => {
                self.links.insert(i, l);
            }
            Event::Link(i, None) => {
                // A deleted link takes its addresses, routes and
                // neighbours with it (the kernel sends no message for
                // each).
                self.links.remove(&i);
                self.addresses.remove(&i);
                self.routes.retain(|_, r| r.oif != i);
                self.neighbors.retain(|k, _| k.0 != i);
            }
            Event::Address(i, a, true) => {
                let v = self.addresses.entry(i).or_default();
                if !v.contains(&a) {
                    v.push(a);
                }
            }
            Event::Address(i, a, false) => {
                if let Some(v) = self.addresses.get_mut(&i) {
                    v.retain(|x| *x != a);
                    if v.is_empty() {
                        self.addresses.remove(&i);
                    }
                }
            }
            Event::Route(k, Some(r)) => {
                self.routes.insert(k, r);
            }
            Event::Route(k, None) => {
                self.routes.remove(&k);
            }
            Event::Neighbor(k, Some(n)) => {
                self.neighbors.insert(k, n);
            }
            Event::Neighbor(k, None) => {
                self.neighbors.remove(&k);
            }
        }
    }

    /// The index of the interface named `name`.
    pub fn ifindex(&self, name: &str) -> Option<u32> {
        self.links
            .iter()
            .find(|(_, l)| l.name == name)
            .map(|(i, _)| *i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(p: &str, oif: u32) -> (RouteKey, Route) {
        let prefix = Cidr::parse(p).unwrap();
        (
            (prefix.family, prefix.addr, prefix.len, 0, 0, 0),
            Route {
                prefix,
                kind: RouteType::Unicast,
                oif,
                via: None,
                metric: 0,
            },
        )
    }

    #[test]
    fn replayed_events_end_in_the_same_view() {
        let link = |n: &str| {
            Some(Link {
                name: n.into(),
                up: true,
            })
        };
        let (k1, r1) = route("10.1.0.0/16", 2);
        let (k2, r2) = route("10.2.0.0/16", 3);
        let a = Cidr::parse("10.1.0.1/16").unwrap();
        let events = vec![
            Event::Link(2, link("p0")),
            Event::Link(3, link("p1")),
            Event::Address(2, a, true),
            Event::Route(k1, Some(r1)),
            Event::Route(k2, Some(r2)),
            Event::Route(k2, None),
        ];
        let mut v = KernelView::default();
        for e in &events {
            v.apply(e.clone());
        }
        let once = v.clone();
        // A dump that already reflects them, then the same notifications.
        for e in &events {
            v.apply(e.clone());
        }
        assert_eq!(v, once);
        assert_eq!(v.routes.len(), 1);
        assert_eq!(v.ifindex("p1"), Some(3));
        assert_eq!(v.addresses[&2], vec![a]);
        // A deleted link takes its addresses and routes.
        v.apply(Event::Link(2, None));
        assert!(v.routes.is_empty() && v.addresses.is_empty());
        assert_eq!(v.ifindex("p0"), None);
    }
}
