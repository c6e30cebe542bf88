//! A validated config as the node's desired state.

use super::schema::{Config, Dur};
use crate::state::{
    ConntrackSpec, KernelSpec, NeighborSpec, NodeState, PolicyInput, PortSpec, RouteSpec,
    ServiceSpec, Unresolved, WorkerSpec, XdpSpec,
};
use crate::tables::conntrack;
use crate::tables::nat::Masquerade;
use crate::wire;

impl Config {
    /// The desired state this (validated) config describes.
    pub fn state(&self) -> NodeState {
        let port = |name: &str| self.port_index(name).unwrap_or(0);
        let ns = |d: &Dur| u64::try_from(d.0.as_nanos()).unwrap_or(u64::MAX);
        let t = &self.conntrack.timeouts;
        NodeState {
            origin: self.source.clone(),
            ports: self
                .ports
                .iter()
                .map(|p| PortSpec {
                    name: p.name.clone(),
                    interface: p.interface.clone(),
                    queues: p.queues.clone(),
                    mode: p.mode,
                    mac: p.mac.map(|m| m.0),
                    addresses: p.addresses.clone(),
                    zone: p.zone,
                })
                .collect(),
            workers: WorkerSpec {
                cores: self.workers.cores.clone(),
                batch: self.workers.batch,
                busy_poll: self.workers.busy_poll,
                nice: self
                    .workers
                    .nice
                    .unwrap_or_else(|| WorkerSpec::default_nice(self.workers.busy_poll)),
            },
            routes: self
                .routes
                .iter()
                .map(|r| RouteSpec {
                    prefix: r.prefix,
                    port: port(&r.port),
                    via: r.via.map(|v| wire::from_ip(v).1),
                })
                .collect(),
            neighbors: self
                .neighbors
                .iter()
                .map(|n| {
                    let (family, ip) = wire::from_ip(n.ip);
                    NeighborSpec {
                        family,
                        ip,
                        mac: n.mac.0,
                        port: port(&n.port),
                    }
                })
                .collect(),
            services: self
                .services
                .iter()
                .map(|s| {
                    let (family, vip) = wire::from_ip(s.vip);
                    ServiceSpec {
                        name: s.name.clone(),
                        family,
                        vip,
                        port: s.port,
                        proto: s.protocol.number(),
                        backends: s.backends.iter().map(|b| b.0).collect(),
                        affinity: s.affinity,
                        node_port: s.node_port,
                    }
                })
                .collect(),
            masquerade: (0..self.masquerade.len())
                .filter_map(|i| {
                    let m = &self.masquerade[i];
                    let (family, addr) = self.masquerade_address(i)?;
                    Some(Masquerade {
                        from: m.from,
                        port: port(&m.port),
                        family,
                        addr,
                        ports: m.ports.map(|r| (r.0, r.1)),
                    })
                })
                .collect(),
            source_filters: Vec::new(),
            floating: Vec::new(),
            conntrack: ConntrackSpec {
                max_entries: self.conntrack.max_entries,
                timeouts: conntrack::Timeouts {
                    tcp_syn: ns(&t.tcp_syn),
                    tcp_established: ns(&t.tcp_established),
                    tcp_closing: ns(&t.tcp_closing),
                    udp: ns(&t.udp),
                    icmp: ns(&t.icmp),
                },
                tcp_loose: self.conntrack.tcp_loose,
            },
            xdp: XdpSpec {
                fail_mode: self.xdp.fail_mode,
                failsafe: self
                    .xdp
                    .failsafe
                    .iter()
                    .map(|f| (f.protocol.number(), f.port))
                    .collect(),
                attach: self.xdp.attach,
            },
            policy: PolicyInput::Paths(self.policy_paths()),
            kernel: KernelSpec {
                routes: self.kernel.routes,
                neighbors: self.kernel.neighbors,
                addresses: self.kernel.addresses,
                unresolved: self.kernel.unresolved.unwrap_or(if self.kernel.neighbors {
                    Unresolved::Kernel
                } else {
                    Unresolved::Drop
                }),
            },
        }
    }
}
