//! What a Felix model changes in the node's desired state today, and what
//! it cannot yet: [`to_state`] takes the running state (the config's, with
//! the kernel's merged in) and adds what needs no new engine feature.
//!
//! - **Workload endpoints** whose interface is a port (the port the
//!   runtime attaches for the endpoint, named [`port_name`], or a port of
//!   the config on that interface): each of the endpoint's `ipv4_nets` /
//!   `ipv6_nets` routed directly out of it, the endpoint's MAC as the
//!   neighbour of each host address, and a source filter on the port
//!   (anti-spoofing: the endpoint's nets and its
//!   `allow_spoofed_source_prefixes`). Felix's own data plane routes local
//!   workloads from the endpoints the same way. 1:1 NATs (`ipv4_nat`,
//!   `ipv6_nat`, floating IPs) become [`FloatingIp`]s as Felix's
//!   `cali-fip-dnat` chain has them: a new connection to the external
//!   address goes to the internal one, an external address claimed twice
//!   going to the alphabetically first internal one. (Felix's
//!   `cali-fip-snat` hairpin, a workload reaching itself through its own
//!   floating IP, is not done.) Endpoints not attached (their
//!   interface absent, or attaching failed) add nothing; the runtime
//!   reports their status.
//! - **Routes** (`RouteUpdate`) whose next hop sits on a port: a remote
//!   workload or host route via `dst_node_ip` out of the port whose
//!   subnet holds that address. A local workload route is the endpoint's
//!   (above); one no attached endpoint covers is reported. A route with a
//!   prefix the running state already has is left to it (the static and
//!   kernel routes win, as in the kernel merge). Routes that need a
//!   tunnel are reported.
//! - **NAT outgoing** (`IPAMPoolUpdate` with `masquerade`): traffic from
//!   the pool leaving through a port whose node address is outside every
//!   pool is masqueraded to that address — only where that is exactly
//!   Felix's rule: sluice's masquerade has no destination exclusion, so a
//!   port that also carries routes to the pools is reported instead; and
//!   the address must already be one the engine masquerades to (the
//!   masquerade addresses are fixed at start).
//! - Everything else the model holds and the engine does not do yet
//!   (encapsulation, WireGuard, 1:1 NAT, services without backends) is
//!   listed in
//!   the [`Report`], never dropped silently.

use std::collections::{BTreeSet, HashMap};

use super::model::FelixModel;
use super::proto::{RouteType, WorkloadEndpoint, WorkloadEndpointId};
use crate::state::{FloatingIp, NeighborSpec, NodeState, RouteSpec, SourceFilterSpec};
use crate::tables::nat::Masquerade;
use crate::wire::{self, Cidr, Family};

/// What [`to_state`] applied and what it could not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Workload endpoints whose interface is a port (routed, filtered).
    pub endpoints: usize,
    pub routes: usize,
    pub neighbors: usize,
    pub masquerade: usize,
    /// Routes whose prefix the running state already routes.
    pub routes_overridden: usize,
    /// 1:1 NATs (floating IPs) applied.
    pub floating: usize,
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

/// The name of the port sluice attaches for workload endpoint `id`:
/// `orchestrator/workload/endpoint` (the endpoint, not its interface,
/// names it, so an update that moves the endpoint to another interface
/// rebinds the same port, keeping its number).
pub fn port_name(id: &WorkloadEndpointId) -> String {
    format!(
        "{}/{}/{}",
        id.orchestrator_id, id.workload_id, id.endpoint_id
    )
}

/// The ports of `s` by name and by interface.
struct PortIndex<'a> {
    by_name: HashMap<&'a str, u16>,
    by_interface: HashMap<&'a str, u16>,
}

impl<'a> PortIndex<'a> {
    fn of(s: &'a NodeState) -> PortIndex<'a> {
        let mut ix = PortIndex {
            by_name: HashMap::new(),
            by_interface: HashMap::new(),
        };
        for (i, p) in s.ports.iter().enumerate() {
            let Ok(n) = u16::try_from(i) else { break };
            if !p.name.is_empty() {
                ix.by_name.insert(p.name.as_str(), n);
            }
            if let Some(ifn) = p.interface.as_deref() {
                ix.by_interface.entry(ifn).or_insert(n);
            }
        }
        ix
    }

    /// The port of endpoint `id`: the one attached for it, else one of the
    /// config on its interface.
    fn endpoint(&self, id: &WorkloadEndpointId, e: &WorkloadEndpoint) -> Option<u16> {
        self.by_name
            .get(port_name(id).as_str())
            .or_else(|| self.by_interface.get(e.name.as_str()))
            .copied()
    }
}

/// The port of endpoint `id` in `s`, if it is attached (see [`port_name`];
/// a port of the config on the endpoint's interface counts).
pub fn endpoint_port(s: &NodeState, id: &WorkloadEndpointId, e: &WorkloadEndpoint) -> Option<u16> {
    PortIndex::of(s).endpoint(id, e)
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
    let ep_routes = endpoints(m, base, &taken, &mut s, &mut rep);
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
            // Routed with its endpoint, if that is attached.
            if !ep_routes.contains(&key) {
                local_unattached.push(r.dst.clone());
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
        rep.add(
            "local workload routes",
            format!(
                "{} route(s) to local workloads no attached endpoint holds ({})",
                local_unattached.len(),
                some(&local_unattached)
            ),
        );
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

/// The attached workload endpoints' routes, neighbours and source
/// filters (see the module docs); the prefixes routed.
fn endpoints(
    m: &FelixModel,
    base: &NodeState,
    taken: &BTreeSet<(Family, u128, u8)>,
    s: &mut NodeState,
    rep: &mut Report,
) -> BTreeSet<(Family, u128, u8)> {
    let ix = PortIndex::of(base);
    let mut routed = BTreeSet::new();
    let (mut bad, mut nat, mut bad_nat) = (Vec::new(), Vec::new(), Vec::new());
    for (id, e) in &m.workload_endpoints {
        let Some(port) = ix.endpoint(id, e) else {
            continue;
        };
        rep.endpoints += 1;
        let mac = wire::parse_mac(&e.mac);
        let mut allowed = Vec::new();
        for n in e.ipv4_nets.iter().chain(&e.ipv6_nets) {
            let Ok(c) = Cidr::parse(n) else {
                bad.push(format!("{}: {n:?}", port_name(id)));
                continue;
            };
            let prefix = Cidr {
                addr: c.network(),
                ..c
            };
            allowed.push(prefix);
            let key = (prefix.family, prefix.network(), prefix.len);
            let first = routed.insert(key);
            if first && taken.contains(&key) {
                rep.routes_overridden += 1;
            } else if first {
                s.routes.push(RouteSpec {
                    prefix,
                    port,
                    via: None,
                });
                rep.routes += 1;
            }
            let host = if prefix.family == Family::V4 { 32 } else { 128 };
            if let (true, Some(mac)) = (prefix.len == host, mac) {
                s.neighbors.push(NeighborSpec {
                    family: prefix.family,
                    ip: prefix.network(),
                    mac,
                    port,
                });
                rep.neighbors += 1;
            }
        }
        for n in &e.allow_spoofed_source_prefixes {
            match Cidr::parse(n) {
                Ok(c) => allowed.push(c),
                Err(_) => bad.push(format!(
                    "{}: allow_spoofed_source_prefixes {n:?}",
                    port_name(id)
                )),
            }
        }
        s.source_filters.push(SourceFilterSpec { port, allowed });
        for x in e.ipv4_nat.iter().chain(&e.ipv6_nat) {
            match (parse_ip(&x.ext_ip), parse_ip(&x.int_ip)) {
                (Some((f, ext)), Some((g, int))) if f == g => {
                    nat.push((
                        x.ext_ip.clone(),
                        x.int_ip.clone(),
                        FloatingIp {
                            family: f,
                            ext,
                            int,
                        },
                    ));
                }
                _ => bad_nat.push(format!(
                    "{}: {:?} -> {:?}",
                    port_name(id),
                    x.ext_ip,
                    x.int_ip
                )),
            }
        }
    }
    if !bad.is_empty() {
        rep.add(
            "malformed endpoint addresses",
            format!(
                "{} endpoint address(es) that are not CIDRs, ignored (the source filter does not allow them): {}",
                bad.len(),
                some(&bad)
            ),
        );
    }
    if !bad_nat.is_empty() {
        rep.add(
            "malformed 1:1 nat",
            format!(
                "{} 1:1 NAT(s) whose addresses are not IPs of one family, ignored: {}",
                bad_nat.len(),
                some(&bad_nat)
            ),
        );
    }
    // Felix's order: by external address, then the alphabetically first
    // internal one wins (the tables keep the first of each).
    nat.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    nat.dedup_by(|a, b| a.0 == b.0);
    rep.floating = nat.len();
    s.floating.extend(nat.into_iter().map(|(_, _, f)| f));
    routed
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
        // The attached endpoint's port filters sources; b is not attached.
        assert_eq!(rep.endpoints, 1);
        assert_eq!(s.source_filters.len(), 1);
        assert_eq!(s.source_filters[0].port, 1);
        assert_eq!(
            s.source_filters[0].allowed,
            vec![Cidr::parse("10.65.0.5/32").unwrap()]
        );
        let features: Vec<_> = rep.unsupported.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            features,
            vec![
                "encapsulated routes",
                "routes off the ports",
                "local workload routes",
            ]
        );
        assert!(
            rep.unsupported[2].1.contains("10.65.0.6/32"),
            "{:?}",
            rep.unsupported
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
    fn endpoints_attached_by_port_name_route_filter_and_nat() {
        let mut m = FelixModel::default();
        let id = proto::WorkloadEndpointId {
            orchestrator_id: "k8s".into(),
            workload_id: "ns/pod-1".into(),
            endpoint_id: "eth0".into(),
        };
        m.workload_endpoints.insert(
            id.clone(),
            Arc::new(proto::WorkloadEndpoint {
                name: "cali77".into(),
                mac: "02:00:00:00:00:77".into(),
                ipv4_nets: vec!["10.65.0.77/32".into(), "10.66.0.0/28".into()],
                ipv6_nets: vec!["fd00::77/128".into(), "nonsense".into()],
                allow_spoofed_source_prefixes: vec!["172.16.0.0/12".into()],
                ipv4_nat: vec![
                    proto::NatInfo {
                        ext_ip: "203.0.113.77".into(),
                        int_ip: "10.65.0.78".into(),
                    },
                    proto::NatInfo {
                        ext_ip: "203.0.113.77".into(),
                        int_ip: "10.65.0.77".into(),
                    },
                    proto::NatInfo {
                        ext_ip: "203.0.113.9".into(),
                        int_ip: "fd00::77".into(),
                    },
                ],
                ..Default::default()
            }),
        );
        // The interface is not a port: nothing is added.
        let (s, rep) = to_state(&m, &base());
        assert_eq!((rep.endpoints, s.source_filters.len()), (0, 0));
        assert_eq!(s.routes.len(), base().routes.len());
        // Attached as its own port (named after the endpoint).
        let mut b = base();
        b.ports.push(PortSpec {
            name: port_name(&id),
            interface: Some("cali77".into()),
            queues: QueueSel::All,
            mode: XskMode::Auto,
            mac: None,
            addresses: vec![],
            zone: 0,
        });
        assert_eq!(port_name(&id), "k8s/ns/pod-1/eth0");
        let (s, rep) = to_state(&m, &b);
        assert_eq!(rep.endpoints, 1);
        let routes: Vec<_> = s
            .routes
            .iter()
            .map(|r| (r.prefix.to_string(), r.port, r.via))
            .collect();
        assert_eq!(
            routes,
            vec![
                ("10.65.0.77/32".to_string(), 2, None),
                ("10.66.0.0/28".to_string(), 2, None),
                ("fd00::77/128".to_string(), 2, None),
            ]
        );
        // Neighbours for the host addresses only.
        assert_eq!(s.neighbors.len(), 2);
        assert!(s
            .neighbors
            .iter()
            .all(|n| n.port == 2 && n.mac == [2, 0, 0, 0, 0, 0x77]));
        let f = &s.source_filters[0];
        assert_eq!(f.port, 2);
        let allowed: Vec<_> = f.allowed.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            allowed,
            vec![
                "10.65.0.77/32",
                "10.66.0.0/28",
                "fd00::77/128",
                "172.16.0.0/12"
            ]
        );
        let features: Vec<_> = rep.unsupported.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            features,
            vec!["malformed endpoint addresses", "malformed 1:1 nat"]
        );
        assert!(
            rep.unsupported[1]
                .1
                .contains("\"203.0.113.9\" -> \"fd00::77\""),
            "{:?}",
            rep.unsupported
        );
        // One external address claimed twice: the alphabetically first
        // internal one, as Felix's cali-fip-dnat has it.
        assert_eq!(rep.floating, 1);
        assert_eq!(
            s.floating,
            vec![crate::state::FloatingIp {
                family: Family::V4,
                ext: 0xcb00_714d,
                int: 0x0a41_004d,
            }]
        );
        // A LocalWorkload route for its address is the endpoint's: not
        // reported, not doubled.
        m.routes.insert(
            "10.65.0.77/32".into(),
            route("10.65.0.77/32", RouteType::LocalWorkload as i32, ""),
        );
        let (s2, rep2) = to_state(&m, &b);
        assert_eq!(s2.routes.len(), s.routes.len());
        assert_eq!(rep2.unsupported.len(), 2, "{:?}", rep2.unsupported);
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
