//! Host endpoint policy by port: what a source compiled for its host
//! endpoints ([`HostPolicy`]: Felix's untracked, pre-DNAT and forward
//! tiers, and `DefaultEndpointToHostAction`) bound to the ports whose
//! interfaces those endpoints govern ([`HostTables`]). The pipeline's host
//! stage (`pipeline::stages::host`) reads it; `sources::felix::policy`
//! documents the semantics and where each follows Felix.
//!
//! Binding follows Felix's `resolveHostEndpoints`
//! (`felix/dataplane/linux/endpoint_mgr.go`): every port that is not a
//! workload's interface gets at most one host endpoint, the first in id
//! order that names its interface or, having no name, expects one of the
//! port's addresses; a port none of those takes gets the first
//! all-interfaces (`*`) endpoint. Workload interfaces never get one.
//!
//! Cost: [`HostTables::ports`] is empty when no port has a role, so a
//! batch without host endpoints or workload ports pays one branch per
//! check; otherwise a port's role is one indexed load.

use std::sync::Arc;

use policy_compiler::{Classifier, Decision};

use crate::wire::{Cidr, Family};

/// What a decision of a host endpoint's untracked, pre-DNAT or forward
/// tiers does to the packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Effect {
    /// No verdict here: the packet goes on to the rest of the processing
    /// (no policy matched, a failsafe port, all tiers passed).
    #[default]
    Continue,
    /// Accepted: the host endpoint's later policy for this side is
    /// skipped (Felix's accept mark); untracked, also not tracked.
    Accept,
    /// Dropped.
    Deny,
}

/// One kind of a host endpoint's tiers, compiled: a classifier whose one
/// endpoint owns every address (the interface, not an address, selects
/// it), and what each of its decisions does.
#[derive(Clone, Debug)]
pub struct KindPolicy {
    pub classifier: Arc<Classifier>,
    /// The effect of each decision id; [`Effect::Continue`] past the end.
    pub effects: Arc<[Effect]>,
}

impl KindPolicy {
    /// What decision `d` does.
    #[inline]
    pub fn effect(&self, d: Decision) -> Effect {
        self.effects.get(d.0 as usize).copied().unwrap_or_default()
    }
}

/// How a host endpoint picks its interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// The interface of this name.
    Name(String),
    /// Every non-workload interface no other host endpoint takes (`*`).
    All,
    /// Interfaces holding one of these addresses (none: no interface).
    Addresses(Vec<(Family, u128)>),
}

/// A host endpoint: its id, binding, and its compiled kinds (`None` when
/// it has no tiers of that kind).
#[derive(Clone, Debug)]
pub struct HostEndpointPolicy {
    pub id: String,
    pub binding: Binding,
    /// Raw PREROUTING: packets arriving on its interfaces.
    pub untracked: Option<KindPolicy>,
    /// Mangle PREROUTING: new connections arriving on its interfaces,
    /// before DNAT.
    pub pre_dnat: Option<KindPolicy>,
    /// FORWARD: new connections forwarded in through (its ingress rules)
    /// or out through (its egress rules) its interfaces.
    pub forward: Option<KindPolicy>,
}

/// `DefaultEndpointToHostAction`: what happens to a workload's traffic to
/// its own host once the workload's egress policy allowed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ToHost {
    #[default]
    Drop,
    /// Back to the host's own INPUT rules (outside sluice): delivered.
    Return,
    Accept,
}

/// What a source compiled for host endpoints, bound to ports by
/// [`HostTables::bind`].
#[derive(Clone, Debug, Default)]
pub struct HostPolicy {
    /// In id order (the first match wins a port).
    pub endpoints: Vec<HostEndpointPolicy>,
    /// Interfaces that are workload endpoints': these names, and names
    /// with these prefixes (Felix's `InterfacePrefix`).
    pub workload_interfaces: Vec<String>,
    pub workload_prefixes: Vec<String>,
    /// `DefaultEndpointToHostAction` and the decision (in the main
    /// classifier's table) that names it; `None` where no source asked
    /// for it (the YAML path: a workload's traffic to the host is not
    /// judged).
    pub to_host: Option<(ToHost, Decision)>,
    /// Main classifier endpoints from this index on are host endpoints
    /// at their expected addresses (`u32::MAX`: none): a new connection
    /// routed to the host from a port that is not a workload's is judged
    /// by the ingress policy of the one owning its destination; `None`
    /// for sources that do not ask for it (the YAML path).
    pub input_from: Option<u32>,
}

/// No host endpoint (in [`PortRole::endpoint`]).
pub const NO_ENDPOINT: u16 = u16::MAX;

/// What a port is to host endpoint policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRole {
    /// Index in [`HostPolicy::endpoints`] of the host endpoint governing
    /// it, or [`NO_ENDPOINT`].
    pub endpoint: u16,
    /// A workload endpoint's interface.
    pub workload: bool,
}

impl PortRole {
    const NONE: PortRole = PortRole {
        endpoint: NO_ENDPOINT,
        workload: false,
    };

    /// Whether nothing about this port changes a verdict.
    #[inline]
    pub fn is_plain(&self) -> bool {
        self.endpoint == NO_ENDPOINT && !self.workload
    }
}

/// The host policy bound to the ports (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct HostTables {
    pub policy: Arc<HostPolicy>,
    /// Each port's role, by port number; empty when no port has one.
    pub ports: Vec<PortRole>,
    /// Whether any bound endpoint has untracked, pre-DNAT or forward
    /// tiers, and whether workload-to-host traffic is judged: the stages
    /// skip what none needs, once per batch.
    pub untracked: bool,
    pub pre_dnat: bool,
    pub forward: bool,
    pub to_host: bool,
    pub input: bool,
}

impl HostTables {
    /// Binds `policy` to ports given as (interface name, the node's
    /// addresses on it), in port order.
    pub fn bind(policy: Arc<HostPolicy>, ports: &[(&str, &[Cidr])]) -> HostTables {
        let mut roles = Vec::with_capacity(ports.len());
        for (name, addrs) in ports {
            let workload = policy.workload_interfaces.iter().any(|w| w == name)
                || policy
                    .workload_prefixes
                    .iter()
                    .any(|p| !p.is_empty() && name.starts_with(p.as_str()));
            let endpoint = if workload {
                None
            } else {
                let eps = policy.endpoints.iter().enumerate();
                let specific = eps.clone().find(|(_, e)| match &e.binding {
                    Binding::Name(n) => n == name,
                    Binding::Addresses(want) => want
                        .iter()
                        .any(|&(f, a)| addrs.iter().any(|c| c.family == f && c.addr == a)),
                    Binding::All => false,
                });
                specific.or_else(|| eps.clone().find(|(_, e)| e.binding == Binding::All))
            };
            roles.push(PortRole {
                endpoint: endpoint.map_or(NO_ENDPOINT, |(i, _)| i as u16),
                workload,
            });
        }
        let bound = |f: fn(&HostEndpointPolicy) -> bool| {
            roles
                .iter()
                .any(|r| policy.endpoints.get(usize::from(r.endpoint)).is_some_and(f))
        };
        let untracked = bound(|e| e.untracked.is_some());
        let pre_dnat = bound(|e| e.pre_dnat.is_some());
        let forward = bound(|e| e.forward.is_some());
        let to_host = policy.to_host.is_some() && roles.iter().any(|r| r.workload);
        let input = policy.input_from.is_some_and(|i| i != u32::MAX);
        if roles.iter().all(PortRole::is_plain) {
            roles.clear();
        }
        HostTables {
            policy,
            ports: roles,
            untracked,
            pre_dnat,
            forward,
            to_host,
            input,
        }
    }

    /// Port `port`'s role.
    #[inline]
    pub fn role(&self, port: u16) -> PortRole {
        self.ports
            .get(usize::from(port))
            .copied()
            .unwrap_or(PortRole::NONE)
    }

    /// The host endpoint governing port `port`, if any.
    #[inline]
    pub fn endpoint(&self, port: u16) -> Option<&HostEndpointPolicy> {
        let r = self.ports.get(usize::from(port))?;
        self.policy.endpoints.get(usize::from(r.endpoint))
    }

    /// The ports host endpoint `i` governs.
    pub fn ports_of(&self, i: usize) -> Vec<u16> {
        (0..self.ports.len() as u16)
            .filter(|&p| usize::from(self.role(p).endpoint) == i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(id: &str, binding: Binding) -> HostEndpointPolicy {
        HostEndpointPolicy {
            id: id.into(),
            binding,
            untracked: None,
            pre_dnat: None,
            forward: None,
        }
    }

    fn v4(a: [u8; 4]) -> (Family, u128) {
        (Family::V4, u128::from(u32::from_be_bytes(a)))
    }

    #[test]
    fn ports_are_bound_as_felix_resolves_host_endpoints() {
        let addr = |a: [u8; 4]| Cidr {
            family: Family::V4,
            addr: v4(a).1,
            len: 24,
        };
        let policy = Arc::new(HostPolicy {
            endpoints: vec![
                ep("a-all", Binding::All),
                ep("b-by-ip", Binding::Addresses(vec![v4([192, 0, 2, 1])])),
                ep("c-eth1", Binding::Name("eth1".into())),
                ep("d-eth1", Binding::Name("eth1".into())),
                ep("e-nothing", Binding::Addresses(vec![])),
            ],
            workload_interfaces: vec!["pod-veth".into()],
            workload_prefixes: vec!["cali".into()],
            to_host: None,
            input_from: None,
        });
        let (a0, a1) = ([addr([192, 0, 2, 1])], [addr([198, 51, 100, 1])]);
        let ports: [(&str, &[Cidr]); 5] = [
            ("eth0", &a0),
            ("eth1", &a1),
            ("eth2", &[]),
            ("cali123", &[]),
            ("pod-veth", &a0),
        ];
        let t = HostTables::bind(policy, &ports);
        // By address, by name (the first id of two), `*` for the rest;
        // never a workload's interface.
        assert_eq!(t.role(0).endpoint, 1);
        assert_eq!(t.role(1).endpoint, 2);
        assert_eq!(t.role(2).endpoint, 0);
        for p in [3, 4] {
            assert_eq!(t.role(p).endpoint, NO_ENDPOINT);
            assert!(t.role(p).workload);
        }
        assert_eq!(t.ports_of(0), vec![2]);
        assert!(t.ports_of(3).is_empty() && t.ports_of(4).is_empty());
        assert!(!t.untracked && !t.pre_dnat && !t.forward && !t.to_host && !t.input);
        // No host endpoints and no workload ports: nothing to look up.
        let none = HostTables::bind(Arc::default(), &ports[..3]);
        assert!(none.ports.is_empty());
        assert!(none.role(1).is_plain());
    }
}
