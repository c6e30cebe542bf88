//! The one builder: a [`NodeState`] in, everything the workers use out —
//! the pipeline's [`Tables`] (FIB with the node's local routes, neighbours,
//! NAT, timeouts, the compiled policy), the XDP program's map contents and
//! the connection table's size. Nothing else below the CLI turns desired
//! state into tables, so every source (the YAML file, the kernel, Felix)
//! gets the same data plane for the same state.

use std::sync::Arc;

use thiserror::Error;

use super::node::{NodeState, PolicyInput, Unresolved};
use crate::io::bpf::XdpContents;
use crate::tables::fib::FibError;
use crate::tables::host::HostTables;
use crate::tables::{
    build_fib, nat, neighbor_host_routes, Neighbor, Neighbors, NextHop, PortInfo, Route, RouteKind,
    Tables,
};
use crate::wire::{Cidr, Family, Mac};

/// Why a desired state could not be built.
#[derive(Debug, Error)]
pub enum BuildError {
    #[error("{origin}: routes: {source}")]
    Fib { origin: String, source: FibError },
    #[error("{origin}: ports[{index}].mac: required for replay (run reads it from the interface)")]
    MissingMac { origin: String, index: usize },
    #[error("{origin}: policy: {msg}")]
    Policy { origin: String, msg: String },
}

/// Loads and compiles the policy (allow-all without any input; a policy
/// a source compiled is taken as it is).
pub fn load_policy(
    origin: &str,
    input: &PolicyInput,
) -> Result<Arc<policy_compiler::Classifier>, BuildError> {
    let paths = match input {
        PolicyInput::AllowAll => return Ok(Arc::new(policy_compiler::Classifier::allow_all())),
        PolicyInput::Paths(p) if p.is_empty() => {
            return Ok(Arc::new(policy_compiler::Classifier::allow_all()))
        }
        PolicyInput::Paths(p) => p,
        PolicyInput::Compiled(c) => return Ok(c.classifier.clone()),
    };
    let err = |msg: String| BuildError::Policy {
        origin: origin.to_string(),
        msg,
    };
    let (set, _warnings) = policy_compiler::load(paths).map_err(|e| err(e.to_string()))?;
    policy_compiler::compile(&set)
        .map(Arc::new)
        .map_err(|e| err(e.to_string()))
}

/// Builds the pipeline's tables for `s`; `macs` gives each port's MAC
/// (from the state in replay, from the interface when live).
pub fn tables(s: &NodeState, macs: &[Mac]) -> Result<Tables, BuildError> {
    let policy = load_policy(&s.origin, &s.policy)?;
    tables_with_policy(s, macs, policy)
}

/// [`tables`] with the policy already compiled.
pub fn tables_with_policy(
    s: &NodeState,
    macs: &[Mac],
    policy: Arc<policy_compiler::Classifier>,
) -> Result<Tables, BuildError> {
    let ports = s
        .ports
        .iter()
        .zip(macs)
        .map(|(p, m)| PortInfo {
            name: p.name.clone(),
            mac: *m,
            addresses: p.addresses.clone(),
        })
        .collect();
    let mut local = Vec::new();
    for p in &s.ports {
        for a in &p.addresses {
            local.push((a.family, a.addr, a.bits()));
            if let Some(b) = a.broadcast_v4() {
                local.push((Family::V4, u128::from(b), 32));
            }
        }
    }
    let user: Vec<(Family, Route)> = s
        .routes
        .iter()
        .map(|r| {
            let route = Route {
                prefix: r.prefix.network(),
                len: r.prefix.len,
                next_hop: NextHop {
                    port: r.port,
                    via: r.via,
                    kind: RouteKind::Forward,
                },
            };
            (r.prefix.family, route)
        })
        .collect();
    let neighbors: Vec<Neighbor> = s
        .neighbors
        .iter()
        .map(|n| Neighbor {
            family: n.family,
            ip: n.ip,
            mac: n.mac,
            port: n.port,
        })
        .collect();
    let hosts = neighbor_host_routes(&user, &neighbors);
    let fib =
        build_fib(user.into_iter().chain(hosts), &local).map_err(|source| BuildError::Fib {
            origin: s.origin.clone(),
            source,
        })?;
    let neigh = Neighbors::build(&neighbors);
    let mut t = Tables::assemble(ports, fib, neigh);
    t.zones = s.ports.iter().map(|p| p.zone).collect();
    t.nat = nat::Nat::build(&s.services, &s.masquerade);
    t.nat
        .set_floating(s.floating.iter().map(|f| (f.family, f.ext, f.int)));
    t.timeouts = s.conntrack.timeouts;
    t.tcp_loose = s.conntrack.tcp_loose;
    t.unresolved_to_kernel = s.kernel.unresolved == Unresolved::Kernel;
    t.policy = policy;
    let host = match &s.policy {
        PolicyInput::Compiled(c) => c.host.clone(),
        _ => Arc::default(),
    };
    let bind: Vec<(&str, &[Cidr])> = s
        .ports
        .iter()
        .map(|p| (p.interface.as_deref().unwrap_or(&p.name), &p.addresses[..]))
        .collect();
    t.host = HostTables::bind(host, &bind);
    if !s.source_filters.is_empty() {
        t.source_filters = vec![None; s.ports.len()];
        for f in &s.source_filters {
            if let Some(slot) = t.source_filters.get_mut(usize::from(f.port)) {
                *slot = Some(crate::tables::SourceFilter::new(&f.allowed));
            }
        }
    }
    Ok(t)
}

/// The MACs of a state whose every port carries one (replay).
pub fn port_macs(s: &NodeState) -> Result<Vec<Mac>, BuildError> {
    s.ports
        .iter()
        .enumerate()
        .map(|(index, p)| {
            p.mac.ok_or_else(|| BuildError::MissingMac {
                origin: s.origin.clone(),
                index,
            })
        })
        .collect()
}

/// Builds tables for replay, where every port must carry its MAC.
pub fn replay_tables(s: &NodeState) -> Result<Tables, BuildError> {
    tables(s, &port_macs(s)?)
}

/// What the XDP program's maps hold for `s`.
pub fn xdp_contents(s: &NodeState) -> XdpContents {
    XdpContents {
        origin: s.origin.clone(),
        addresses: s
            .ports
            .iter()
            .flat_map(|p| p.addresses.iter().copied())
            .collect(),
        masquerade_slots: s.masquerade_slots(),
        nodeports: s
            .services
            .iter()
            .filter_map(|v| v.node_port.map(|p| (v.proto, p)))
            .collect(),
        failsafe: s.xdp.failsafe.clone(),
        fail_mode: s.xdp.fail_mode,
    }
}

/// The connection table's capacity for `s`.
pub fn conntrack_capacity(s: &NodeState) -> usize {
    s.conntrack.max_entries
}
