//! A source's desired state combined with the mirrored kernel state.
//!
//! What the kernel adds, for each kind mirrored (`KernelSpec`):
//! - **routes**: the main table's unicast routes out of a port's
//!   interface, the lowest metric per prefix, unless a static route has
//!   the same prefix (static wins). Routes out of interfaces sluice does
//!   not hold, routes of other kinds (blackhole, unreachable, nexthop
//!   objects) and routes through a link that is down are left out and
//!   counted ([`MergeReport`]); a packet they would have carried meets
//!   the next less specific route, or `no_route`.
//! - **neighbors**: usable ARP / ND entries (reachable, stale, delay,
//!   probe, permanent, noarp) on a port's interface, unless a static
//!   entry names the same address on the same port (static wins).
//! - **addresses**: a port's global-scope addresses are its static ones
//!   and the kernel's.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::view::{KernelView, RouteType};
use crate::state::{NeighborSpec, NodeState, RouteSpec};
use crate::wire::Family;

/// What the merge took from the kernel and what it left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeReport {
    pub routes: usize,
    pub neighbors: usize,
    pub addresses: usize,
    /// Routes out of interfaces that are not ports.
    pub routes_elsewhere: usize,
    /// Routes of kinds sluice does not mirror.
    pub routes_unsupported: usize,
    /// Routes through a port whose link is down.
    pub routes_link_down: usize,
    /// Routes whose prefix a static route already has.
    pub routes_overridden: usize,
    /// Neighbour entries that are incomplete or failed.
    pub neighbors_unusable: usize,
}

/// `base` with what `view` adds (see the module docs).
pub fn merge(base: &NodeState, view: &KernelView) -> (NodeState, MergeReport) {
    let spec = base.kernel;
    let mut s = base.clone();
    let mut rep = MergeReport::default();
    // Interface index -> port number.
    let port_of: HashMap<u32, u16> = base
        .ports
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let ifi = view.ifindex(p.interface.as_deref()?)?;
            Some((ifi, u16::try_from(i).ok()?))
        })
        .collect();
    if spec.addresses {
        for port in &mut s.ports {
            let Some(ifi) = port.interface.as_deref().and_then(|n| view.ifindex(n)) else {
                continue;
            };
            for a in view.addresses.get(&ifi).into_iter().flatten() {
                if !port.addresses.contains(a) {
                    port.addresses.push(*a);
                    rep.addresses += 1;
                }
            }
        }
    }
    if spec.routes {
        let fixed: HashSet<(Family, u128, u8)> = base
            .routes
            .iter()
            .map(|r| (r.prefix.family, r.prefix.network(), r.prefix.len))
            .collect();
        // Lowest metric per prefix.
        let mut best: BTreeMap<(Family, u128, u8), (u32, RouteSpec)> = BTreeMap::new();
        for r in view.routes.values() {
            // Link-local prefixes are the kernel's (the XDP program
            // passes link-local traffic to it).
            let link_local = r.prefix.family == Family::V6 && r.prefix.addr >> 118 == 0xfe80 >> 6;
            if r.kind != RouteType::Unicast || link_local {
                rep.routes_unsupported += 1;
                continue;
            }
            let Some(&port) = port_of.get(&r.oif) else {
                rep.routes_elsewhere += 1;
                continue;
            };
            if !view.links.get(&r.oif).is_some_and(|l| l.up) {
                rep.routes_link_down += 1;
                continue;
            }
            let key = (r.prefix.family, r.prefix.network(), r.prefix.len);
            if fixed.contains(&key) {
                rep.routes_overridden += 1;
                continue;
            }
            let spec = RouteSpec {
                prefix: r.prefix,
                port,
                via: r.via,
            };
            match best.get(&key) {
                Some((m, _)) if *m <= r.metric => {}
                _ => {
                    best.insert(key, (r.metric, spec));
                }
            }
        }
        rep.routes = best.len();
        s.routes.extend(best.into_values().map(|(_, r)| r));
    }
    if spec.neighbors {
        let fixed: HashSet<(Family, u128, u16)> = base
            .neighbors
            .iter()
            .map(|n| (n.family, n.ip, n.port))
            .collect();
        for n in view.neighbors.values() {
            let Some(&port) = port_of.get(&n.ifindex) else {
                continue;
            };
            let (true, Some(mac)) = (n.usable, n.mac) else {
                rep.neighbors_unusable += 1;
                continue;
            };
            if fixed.contains(&(n.family, n.ip, port)) {
                continue;
            }
            s.neighbors.push(NeighborSpec {
                family: n.family,
                ip: n.ip,
                mac,
                port,
            });
            rep.neighbors += 1;
        }
    }
    (s, rep)
}

#[cfg(test)]
mod tests {
    use super::super::view::{Event, Link, Neighbor, Route};
    use super::*;
    use crate::state::{KernelSpec, PortSpec, QueueSel, Unresolved, XskMode};
    use crate::wire::Cidr;

    fn base() -> NodeState {
        let mut s = NodeState::empty("t");
        for (name, ifn) in [("a", "p0"), ("b", "p1")] {
            s.ports.push(PortSpec {
                name: name.into(),
                interface: Some(ifn.into()),
                queues: QueueSel::All,
                mode: XskMode::Auto,
                mac: None,
                addresses: vec![],
                zone: 0,
            });
        }
        s.kernel = KernelSpec {
            routes: true,
            neighbors: true,
            addresses: true,
            unresolved: Unresolved::Kernel,
        };
        s
    }

    fn route(v: &mut KernelView, p: &str, oif: u32, via: Option<u128>, metric: u32) {
        let prefix = Cidr::parse(p).unwrap();
        v.apply(Event::Route(
            (prefix.family, prefix.addr, prefix.len, metric, 0, 0),
            Some(Route {
                prefix,
                kind: RouteType::Unicast,
                oif,
                via,
                metric,
            }),
        ));
    }

    fn view() -> KernelView {
        let mut v = KernelView::default();
        for (i, n, up) in [(2, "p0", true), (3, "p1", true), (4, "eth0", true)] {
            v.apply(Event::Link(i, Some(Link { name: n.into(), up })));
        }
        v.apply(Event::Address(2, Cidr::parse("10.1.0.1/24").unwrap(), true));
        route(&mut v, "10.1.0.0/24", 2, None, 0);
        route(&mut v, "10.9.0.0/16", 3, Some(0x0a02_0002), 100);
        route(&mut v, "10.9.0.0/16", 2, Some(0x0a01_0002), 50);
        route(&mut v, "0.0.0.0/0", 4, Some(0xc000_0201), 0);
        for (ip, usable) in [(0x0a01_0002u128, true), (0x0a01_0003, false)] {
            v.apply(Event::Neighbor(
                (2, Family::V4, ip),
                Some(Neighbor {
                    ifindex: 2,
                    family: Family::V4,
                    ip,
                    mac: Some([2, 0, 0, 0, 0, ip as u8]),
                    usable,
                }),
            ));
        }
        v
    }

    #[test]
    fn kernel_state_joins_the_static_state() {
        let (s, rep) = merge(&base(), &view());
        assert_eq!(
            s.ports[0].addresses,
            vec![Cidr::parse("10.1.0.1/24").unwrap()]
        );
        // The lower metric wins; the default route out of eth0 is not
        // sluice's to forward.
        let routes: Vec<_> = s
            .routes
            .iter()
            .map(|r| (r.prefix.len, r.port, r.via))
            .collect();
        assert_eq!(routes, vec![(24, 0, None), (16, 0, Some(0x0a01_0002))]);
        assert_eq!(rep.routes_elsewhere, 1);
        assert_eq!(s.neighbors.len(), 1);
        assert_eq!(rep.neighbors_unusable, 1);
    }

    #[test]
    fn static_sections_win_and_kinds_switch_off() {
        let mut b = base();
        b.routes.push(RouteSpec {
            prefix: Cidr::parse("10.9.0.0/16").unwrap(),
            port: 1,
            via: None,
        });
        let (s, rep) = merge(&b, &view());
        assert_eq!(rep.routes_overridden, 2);
        assert_eq!(s.routes.iter().filter(|r| r.prefix.len == 16).count(), 1);
        assert_eq!(s.routes[0].port, 1);
        // A link that goes down takes its routes out: the other way to
        // 10.9/16 (a higher metric) takes over.
        let mut v = view();
        v.apply(Event::Link(
            2,
            Some(Link {
                name: "p0".into(),
                up: false,
            }),
        ));
        let (s, rep) = merge(&base(), &v);
        let routes: Vec<_> = s.routes.iter().map(|r| (r.prefix.len, r.port)).collect();
        assert_eq!((routes, rep.routes_link_down), (vec![(16, 1)], 2));
        // Nothing mirrored: the base state as it was.
        let mut off = base();
        off.kernel = KernelSpec {
            routes: false,
            neighbors: false,
            addresses: false,
            unresolved: Unresolved::Drop,
        };
        assert_eq!(merge(&off, &view()).0, off);
    }
}
