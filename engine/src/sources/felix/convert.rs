//! What a Felix model changes in the node's desired state today, and what
//! it cannot yet: [`to_state`] takes the running state (the config's, with
//! the kernel's merged in) and adds what needs no new engine feature.
//!
//! - **Routes** (`RouteUpdate`) whose next hop sits on a port: a remote
//!   workload or host route via `dst_node_ip` out of the port whose
//!   subnet holds that address; a local workload route directly out of
//!   the port that is the endpoint's interface, with the endpoint's MAC as
//!   neighbour. A route with a prefix the running state already has is
//!   left to it (the static and kernel routes win, as in the kernel
//!   merge). Routes that need a tunnel are reported.
//! - **NAT outgoing** (`IPAMPoolUpdate` with `masquerade`): traffic from
//!   the pool leaving through a port whose node address is outside every
//!   pool is masqueraded to that address — only where that is exactly
//!   Felix's rule: sluice's masquerade has no destination exclusion, so a
//!   port that also carries routes to the pools is reported instead; and
//!   the address must already be one the engine masquerades to (the
//!   masquerade addresses are fixed at start).
//! - Everything else the model holds and the engine does not do yet
//!   (policy from the stream, endpoint attachment, host endpoints,
//!   encapsulation, WireGuard, services without backends) is listed in
//!   the [`Report`], never dropped silently.

use std::collections::BTreeSet;

use super::model::FelixModel;
use super::proto::RouteType;
use crate::state::{NeighborSpec, NodeState, RouteSpec};
use crate::tables::nat::Masquerade;
use crate::wire::{self, Cidr, Family};

/// What [`to_state`] applied and what it could not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub routes: usize,
    pub neighbors: usize,
    pub masquerade: usize,
    /// Routes whose prefix the running state already routes.
    pub routes_overridden: usize,
    /// `(feature, what)`: one line per kind of thing not applied, with
    /// counts and examples. The feature names are stable (for logging
    /// each once); the text is for people.
    pub unsupported: Vec<(&'static str, String)>,
}

impl Report {
    fn add(&mut self, feature: &'static str, what: String) {
        self.unsupported.push((feature, what));
    }
}

/// The port whose addresses' subnet holds `ip`, with that address.
fn port_for(s: &NodeState, f: Family, ip: u128) -> Option<u16> {
    s.ports
        .iter()
        .position(|p| p.addresses.iter().any(|a| a.len > 0 && a.contains(f, ip)))
        .and_then(|i| u16::try_from(i).ok())
}

fn parse_ip(s: &str) -> Option<(Family, u128)> {
    s.parse::<std::net::IpAddr>().ok().map(wire::from_ip)
}

/// Up to three examples, for messages.
fn some(v: &[String]) -> String {
    let mut s = v.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > 3 {
        s += ", ...";
    }
    s
}

/// `base` with what `m` adds (see the module docs).
pub fn to_state(m: &FelixModel, base: &NodeState) -> (NodeState, Report) {
    let mut s = base.clone();
    let mut rep = Report::default();
    let taken: BTreeSet<(Family, u128, u8)> = base
        .routes
        .iter()
        .map(|r| (r.prefix.family, r.prefix.network(), r.prefix.len))
        .collect();
    let (mut tunnel, mut no_port, mut local_unattached, mut bad) = (vec![], vec![], vec![], vec![]);
    for r in m.routes.values() {
        let Ok(prefix) = Cidr::parse(&r.dst) else {
            bad.push(r.dst.clone());
            continue;
        };
        let has = |t: RouteType| r.types & t as i32 != 0;
        let tt = r.tunnel_type.clone().unwrap_or_default();
        if tt.ipip
            || tt.vxlan
            || tt.wireguard
            || has(RouteType::RemoteTunnel)
            || has(RouteType::LocalTunnel)
        {
            tunnel.push(r.dst.clone());
            continue;
        }
        let key = (prefix.family, prefix.network(), prefix.len);
        let push = |s: &mut NodeState, rep: &mut Report, spec: RouteSpec| {
            if taken.contains(&key) {
                rep.routes_overridden += 1;
            } else {
                s.routes.push(spec);
                rep.routes += 1;
            }
        };
        if has(RouteType::LocalWorkload) || r.local_workload {
            // The endpoint holding this prefix, if its interface is a port.
            let ep = m.workload_endpoints.values().find(|e| {
                e.ipv4_nets.iter().chain(&e.ipv6_nets).any(|n| {
                    Cidr::parse(n)
                        .is_ok_and(|c| c.family == prefix.family && c.network() == prefix.network())
                })
            });
            let port = ep.and_then(|e| {
                base.ports
                    .iter()
                    .position(|p| p.interface.as_deref() == Some(e.name.as_str()))
            });
            match (ep, port.and_then(|p| u16::try_from(p).ok())) {
                (Some(e), Some(port)) => {
                    push(
                        &mut s,
                        &mut rep,
                        RouteSpec {
                            prefix,
                            port,
                            via: None,
                        },
                    );
                    let host = if prefix.family == Family::V4 { 32 } else { 128 };
                    if let (true, Some(mac)) = (prefix.len == host, wire::parse_mac(&e.mac)) {
                        s.neighbors.push(NeighborSpec {
                            family: prefix.family,
                            ip: prefix.network(),
                            mac,
                            port,
                        });
                        rep.neighbors += 1;
                    }
                }
                _ => local_unattached.push(r.dst.clone()),
            }
        } else if has(RouteType::RemoteWorkload) || has(RouteType::RemoteHost) {
            let Some((f, hop)) = parse_ip(&r.dst_node_ip).filter(|(f, _)| *f == prefix.family)
            else {
                no_port.push(format!("{} (no usable dst_node_ip)", r.dst));
                continue;
            };
            let Some(port) = port_for(base, f, hop) else {
                no_port.push(format!("{} via {}", r.dst, r.dst_node_ip));
                continue;
            };
            // A host route to the next hop itself is directly connected.
            let direct =
                prefix.network() == hop && prefix.len == if f == Family::V4 { 32 } else { 128 };
            push(
                &mut s,
                &mut rep,
                RouteSpec {
                    prefix,
                    port,
                    via: (!direct).then_some(hop),
                },
            );
        }
        // CIDR_INFO (no bits) and LOCAL_HOST routes carry nothing to
        // forward: the node's own addresses are the ports'.
    }
    if !tunnel.is_empty() {
        rep.add(
            "encapsulated routes",
            format!(
                "{} route(s) need IPIP, VXLAN or WireGuard, which sluice does not do ({})",
                tunnel.len(),
                some(&tunnel)
            ),
        );
    }
    if !no_port.is_empty() {
        rep.add(
            "routes off the ports",
            format!(
                "{} route(s) whose next hop is on no port ({})",
                no_port.len(),
                some(&no_port)
            ),
        );
    }
    if !local_unattached.is_empty() {
        rep.add("local workload routes", format!("{} route(s) to workloads whose interface is not a port (endpoints are not attached yet: {})", local_unattached.len(), some(&local_unattached)));
    }
    if !bad.is_empty() {
        rep.add(
            "malformed routes",
            format!(
                "{} route(s) with a destination that is not a CIDR ({})",
                bad.len(),
                some(&bad)
            ),
        );
    }
    masquerade(m, base, &mut s, &mut rep);
    let e = &m.encapsulation;
    for (on, what) in [
        (e.ipip_enabled, "IPIP"),
        (e.vxlan_enabled, "VXLAN (IPv4)"),
        (e.vxlan_enabled_v6, "VXLAN (IPv6)"),
    ] {
        if on {
            rep.add(
                "encapsulation",
                format!("{what} is enabled; sluice does not encapsulate"),
            );
        }
    }
    let encap_pools: Vec<String> = m
        .pools
        .iter()
        .filter(|(_, p)| {
            let on = |mode: &str| !mode.is_empty() && !mode.eq_ignore_ascii_case("never");
            on(&p.ipip_mode) || on(&p.vxlan_mode)
        })
        .map(|(id, p)| format!("{id} ({})", p.cidr))
        .collect();
    if !encap_pools.is_empty() {
        rep.add(
            "encapsulated pools",
            format!(
                "{} pool(s) with IPIP or VXLAN mode ({})",
                encap_pools.len(),
                some(&encap_pools)
            ),
        );
    }
    if !m.wireguard.is_empty() || !m.wireguard_v6.is_empty() {
        rep.add(
            "wireguard",
            format!(
                "{} WireGuard peer(s); sluice does not encrypt",
                m.wireguard.len() + m.wireguard_v6.len()
            ),
        );
    }
    if !m.vteps.is_empty() {
        rep.add(
            "vxlan tunnel endpoints",
            format!("{} VXLAN tunnel endpoint(s) ignored", m.vteps.len()),
        );
    }
    if !m.workload_endpoints.is_empty() {
        rep.add(
            "workload endpoints",
            format!(
                "{} workload endpoint(s) not attached yet (their policy is enforced by address)",
                m.workload_endpoints.len()
            ),
        );
    }
    if !m.services.is_empty() {
        rep.add("services", format!("{} service(s) from Felix ignored (no backends in the stream; services come from the config)", m.services.len()));
    }
    if !m.settings.invalid.is_empty() {
        rep.add(
            "settings",
            format!(
                "Felix's default used for: {}",
                m.settings.invalid.join("; ")
            ),
        );
    }
    (s, rep)
}

/// NAT outgoing for the pools that ask for it (see the module docs).
fn masquerade(m: &FelixModel, base: &NodeState, s: &mut NodeState, rep: &mut Report) {
    let pools: Vec<Cidr> = m
        .pools
        .values()
        .filter_map(|p| Cidr::parse(&p.cidr).ok())
        .collect();
    let in_pools = |f: Family, a: u128| pools.iter().any(|p| p.family == f && p.contains(f, a));
    let slots = base.masquerade_slots();
    for (id, pool) in m.pools.iter().filter(|(_, p)| p.masquerade) {
        let Ok(from) = Cidr::parse(&pool.cidr) else {
            rep.add(
                "nat outgoing",
                format!("pool {id}: {:?} is not a CIDR", pool.cidr),
            );
            continue;
        };
        let mut done = false;
        let mut why = Vec::new();
        for (i, p) in s.ports.clone().iter().enumerate() {
            let Ok(port) = u16::try_from(i) else { continue };
            let Some(a) = p
                .addresses
                .iter()
                .find(|a| a.family == from.family && !in_pools(a.family, a.addr))
            else {
                continue;
            };
            let to_pools = s.routes.iter().any(|r| {
                r.port == port
                    && pools.iter().any(|pl| {
                        pl.family == r.prefix.family
                            && (pl.contains(r.prefix.family, r.prefix.addr)
                                || r.prefix.contains(pl.family, pl.addr))
                    })
            });
            if to_pools {
                why.push(format!(
                    "port {} also carries routes to the pools (no destination exclusion yet)",
                    p.name
                ));
                continue;
            }
            if !slots.contains(&(a.family, a.addr)) {
                why.push(format!("port {}: {} is not a masquerade address the engine started with (they need a restart)", p.name, wire::to_ip(a.family, a.addr)));
                continue;
            }
            if s.masquerade
                .iter()
                .any(|x| x.from == from && x.port == port)
            {
                done = true;
                continue;
            }
            s.masquerade.push(Masquerade {
                from,
                port,
                family: a.family,
                addr: a.addr,
                ports: None,
            });
            rep.masquerade += 1;
            done = true;
        }
        if !done {
            if why.is_empty() {
                why.push("no port has a node address outside the pools".into());
            }
            rep.add(
                "nat outgoing",
                format!(
                    "pool {id} ({}): not masqueraded: {}",
                    pool.cidr,
                    why.join("; ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::super::proto;
    use super::*;
    use crate::state::{PortSpec, QueueSel, XskMode};

    fn base() -> NodeState {
        let mut s = NodeState::empty("t");
        for (name, ifn, addr) in [
            ("up", "eth0", "192.0.2.1/24"),
            ("pod", "cali1", "10.65.0.1/32"),
        ] {
            s.ports.push(PortSpec {
                name: name.into(),
                interface: Some(ifn.into()),
                queues: QueueSel::All,
                mode: XskMode::Auto,
                mac: None,
                addresses: vec![Cidr::parse(addr).unwrap()],
                zone: 0,
            });
        }
        s
    }

    fn route(dst: &str, types: i32, node_ip: &str) -> proto::RouteUpdate {
        proto::RouteUpdate {
            types,
            dst: dst.into(),
            dst_node_ip: node_ip.into(),
            ..Default::default()
        }
    }

    #[test]
    fn routes_whose_next_hop_is_a_port() {
        let mut m = FelixModel::default();
        let rw = RouteType::RemoteWorkload as i32;
        for r in [
            route("10.65.1.0/26", rw, "192.0.2.7"),
            route("192.0.2.7/32", RouteType::RemoteHost as i32, "192.0.2.7"),
            route("10.65.2.0/26", rw, "198.51.100.9"),
            route("10.65.0.5/32", RouteType::LocalWorkload as i32, ""),
            route("10.65.0.6/32", RouteType::LocalWorkload as i32, ""),
            route("10.65.0.0/16", 0, ""),
            proto::RouteUpdate {
                tunnel_type: Some(proto::TunnelType {
                    vxlan: true,
                    ..Default::default()
                }),
                ..route("10.65.3.0/26", rw, "192.0.2.8")
            },
        ] {
            m.routes.insert(r.dst.clone(), r);
        }
        let id = |w: &str| proto::WorkloadEndpointId {
            orchestrator_id: "k8s".into(),
            workload_id: w.into(),
            endpoint_id: "eth0".into(),
        };
        m.workload_endpoints.insert(
            id("a"),
            Arc::new(proto::WorkloadEndpoint {
                name: "cali1".into(),
                mac: "02:00:00:00:00:05".into(),
                ipv4_nets: vec!["10.65.0.5/32".into()],
                ..Default::default()
            }),
        );
        m.workload_endpoints.insert(
            id("b"),
            Arc::new(proto::WorkloadEndpoint {
                name: "cali2".into(),
                ipv4_nets: vec!["10.65.0.6/32".into()],
                ..Default::default()
            }),
        );
        let (s, rep) = to_state(&m, &base());
        let got: Vec<_> = s
            .routes
            .iter()
            .map(|r| {
                (
                    r.prefix.to_string(),
                    r.port,
                    r.via.map(|v| wire::to_ip(Family::V4, v).to_string()),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("10.65.0.5/32".to_string(), 1, None),
                ("10.65.1.0/26".to_string(), 0, Some("192.0.2.7".to_string())),
                ("192.0.2.7/32".to_string(), 0, None),
            ]
        );
        assert_eq!(s.neighbors.len(), 1);
        assert_eq!(s.neighbors[0].mac, [2, 0, 0, 0, 0, 5]);
        let features: Vec<_> = rep.unsupported.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            features,
            vec![
                "encapsulated routes",
                "routes off the ports",
                "local workload routes",
                "workload endpoints"
            ]
        );
        assert!(
            rep.unsupported[1].1.contains("198.51.100.9"),
            "{:?}",
            rep.unsupported
        );
        // A prefix the running state has is left to it.
        let mut b = base();
        b.routes.push(RouteSpec {
            prefix: Cidr::parse("10.65.1.0/26").unwrap(),
            port: 1,
            via: None,
        });
        let (s, rep) = to_state(&m, &b);
        assert_eq!(rep.routes_overridden, 1);
        assert_eq!(s.routes.iter().filter(|r| r.prefix.len == 26).count(), 1);
    }

    #[test]
    fn nat_outgoing_only_where_it_means_what_felix_means() {
        let mut m = FelixModel::default();
        m.pools.insert(
            "p".into(),
            proto::IpamPool {
                cidr: "10.65.0.0/16".into(),
                masquerade: true,
                ..Default::default()
            },
        );
        // The uplink address is not one the engine masquerades to.
        let (s, rep) = to_state(&m, &base());
        assert!(s.masquerade.is_empty());
        assert!(
            rep.unsupported[0].1.contains("need a restart"),
            "{:?}",
            rep.unsupported
        );
        // It is: the pool is masqueraded out of the uplink only.
        let mut b = base();
        b.masquerade.push(Masquerade {
            from: Cidr::parse("172.16.0.0/12").unwrap(),
            port: 0,
            family: Family::V4,
            addr: 0xc000_0201,
            ports: None,
        });
        let (s, rep) = to_state(&m, &b);
        assert_eq!((rep.masquerade, s.masquerade.len()), (1, 2));
        assert_eq!(
            (s.masquerade[1].from.to_string(), s.masquerade[1].port),
            ("10.65.0.0/16".to_string(), 0)
        );
        assert!(rep.unsupported.is_empty(), "{:?}", rep.unsupported);
        // Routes to another node's block out of the uplink: masquerading
        // there would rewrite pod-to-pod traffic, so it is reported.
        m.routes.insert(
            "10.65.1.0/26".into(),
            route(
                "10.65.1.0/26",
                RouteType::RemoteWorkload as i32,
                "192.0.2.7",
            ),
        );
        let (s, rep) = to_state(&m, &b);
        assert_eq!(s.masquerade.len(), 1);
        assert!(
            rep.unsupported[0].1.contains("destination exclusion"),
            "{:?}",
            rep.unsupported
        );
    }
}
