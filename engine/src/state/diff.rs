//! The difference between two desired states, as a value: which ports
//! were added, removed or changed, and which parts of the data plane must
//! be rebuilt. A reload applies what it can of one and refuses what needs
//! a restart; a source that streams small updates (the kernel, Felix)
//! gets from it exactly what to rebuild.

use std::collections::HashMap;

use super::node::{NodeState, PortSpec};

/// What changed from one [`NodeState`] to another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateDiff {
    /// Ports (by name) only in the new state.
    pub ports_added: Vec<String>,
    /// Ports (by name) only in the old state.
    pub ports_removed: Vec<String>,
    /// Ports (by name) in both whose settings differ.
    pub ports_changed: Vec<String>,
    /// The ports' order differs (port numbers moved).
    pub ports_reordered: bool,
    pub workers: bool,
    pub routes: bool,
    pub neighbors: bool,
    pub services: bool,
    pub masquerade: bool,
    /// The ports' source filters (anti-spoofing).
    pub source_filters: bool,
    /// 1:1 NATs (floating IPs).
    pub floating: bool,
    /// The distinct masquerade addresses (the XDP program's slots) differ.
    pub masquerade_addresses: bool,
    pub conntrack_size: bool,
    /// Timeouts or the TCP pickup rule.
    pub conntrack_settings: bool,
    pub xdp: bool,
    pub policy: bool,
    /// The kernel mirror's settings.
    pub kernel: bool,
}

/// What a [`StateDiff`] asks to rebuild.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rebuild {
    /// FIB, neighbours and port table (routes, neighbours, ports' addresses).
    pub forwarding: bool,
    /// Services and masquerade.
    pub nat: bool,
    /// The compiled classifier.
    pub policy: bool,
    /// Conntrack timeouts and pickup rule.
    pub conntrack: bool,
    /// The XDP program's maps (addresses, node ports, failsafe, fail mode).
    pub xdp_maps: bool,
}

/// `s`'s ports by name.
fn by_name(s: &NodeState) -> HashMap<&str, &PortSpec> {
    s.ports.iter().map(|p| (p.name.as_str(), p)).collect()
}

impl StateDiff {
    /// The difference from `old` to `new`.
    pub fn between(old: &NodeState, new: &NodeState) -> StateDiff {
        // By name, so a node with a thousand pods' ports diffs in linear
        // time.
        let (old_by, new_by) = (by_name(old), by_name(new));
        let mut d = StateDiff::default();
        for p in &new.ports {
            match old_by.get(p.name.as_str()) {
                None => d.ports_added.push(p.name.clone()),
                Some(o) if *o != p => d.ports_changed.push(p.name.clone()),
                Some(_) => {}
            }
        }
        for p in &old.ports {
            if !new_by.contains_key(p.name.as_str()) {
                d.ports_removed.push(p.name.clone());
            }
        }
        let both = |n: &&str| old_by.contains_key(n) && new_by.contains_key(n);
        let kept_old = old.ports.iter().map(|p| p.name.as_str()).filter(both);
        let kept_new = new.ports.iter().map(|p| p.name.as_str()).filter(both);
        d.ports_reordered = !kept_old.eq(kept_new);
        d.workers = old.workers != new.workers;
        d.routes = old.routes != new.routes;
        d.neighbors = old.neighbors != new.neighbors;
        d.services = old.services != new.services;
        d.masquerade = old.masquerade != new.masquerade;
        d.source_filters = old.source_filters != new.source_filters;
        d.floating = old.floating != new.floating;
        d.masquerade_addresses = old.masquerade_slots() != new.masquerade_slots();
        d.conntrack_size = old.conntrack.max_entries != new.conntrack.max_entries;
        d.conntrack_settings = old.conntrack.timeouts != new.conntrack.timeouts
            || old.conntrack.tcp_loose != new.conntrack.tcp_loose;
        d.xdp = old.xdp != new.xdp;
        d.policy = old.policy != new.policy;
        d.kernel = old.kernel != new.kernel;
        d
    }

    /// Whether the ports changed at all (added, removed, changed, moved).
    pub fn ports(&self) -> bool {
        !self.ports_added.is_empty()
            || !self.ports_removed.is_empty()
            || !self.ports_changed.is_empty()
            || self.ports_reordered
    }

    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        *self == StateDiff::default()
    }

    /// What must be rebuilt to apply this difference. The policy input
    /// names files whose contents may have changed even when the names did
    /// not, so a caller reloading from files rebuilds the policy anyway.
    pub fn rebuild(&self) -> Rebuild {
        Rebuild {
            forwarding: self.ports() || self.routes || self.neighbors || self.source_filters,
            nat: self.services || self.masquerade || self.floating || self.ports(),
            policy: self.policy,
            conntrack: self.conntrack_settings,
            xdp_maps: self.ports() || self.services || self.masquerade || self.xdp,
        }
    }

    /// The parts of the difference a running engine cannot apply without a
    /// restart today: they shape threads, the XDP program's settings or the
    /// connection table's size. (Ports are added, removed and rebound
    /// while running.)
    pub fn restart_only(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.workers {
            out.push("workers");
        }
        if self.xdp {
            out.push("xdp");
        }
        if self.conntrack_size {
            out.push("conntrack.max_entries");
        }
        if self.masquerade_addresses {
            out.push("masquerade addresses");
        }
        if self.kernel {
            out.push("kernel");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::node::{QueueSel, RouteSpec, XskMode};
    use crate::wire::Cidr;

    fn port(name: &str, addr: &str) -> PortSpec {
        PortSpec {
            name: name.into(),
            interface: Some(format!("if-{name}")),
            queues: QueueSel::All,
            mode: XskMode::Auto,
            mac: None,
            addresses: vec![Cidr::parse(addr).unwrap()],
            zone: 0,
        }
    }

    fn state(ports: &[(&str, &str)]) -> NodeState {
        let mut s = NodeState::empty("t");
        s.ports = ports.iter().map(|(n, a)| port(n, a)).collect();
        s
    }

    #[test]
    fn same_state_no_difference() {
        let a = state(&[("up", "192.0.2.1/24"), ("pods", "10.1.0.1/16")]);
        let d = StateDiff::between(&a, &a.clone());
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.rebuild(), Rebuild::default());
        assert!(d.restart_only().is_empty());
    }

    #[test]
    fn ports_added_removed_changed() {
        let a = state(&[("up", "192.0.2.1/24"), ("pods", "10.1.0.1/16")]);
        let b = state(&[("up", "192.0.2.2/24"), ("pod7", "10.7.0.1/16")]);
        let d = StateDiff::between(&a, &b);
        assert_eq!(d.ports_added, vec!["pod7".to_string()]);
        assert_eq!(d.ports_removed, vec!["pods".to_string()]);
        assert_eq!(d.ports_changed, vec!["up".to_string()]);
        assert!(!d.ports_reordered);
        let r = d.rebuild();
        assert!(r.forwarding && r.xdp_maps && !r.policy);
        assert!(d.restart_only().is_empty());
        // The same ports in another order move port numbers.
        let c = state(&[("pods", "10.1.0.1/16"), ("up", "192.0.2.1/24")]);
        let d = StateDiff::between(&a, &c);
        assert!(d.ports_reordered && d.ports_added.is_empty() && d.ports_changed.is_empty());
    }

    #[test]
    fn routes_and_timeouts_rebuild_only_what_they_touch() {
        let a = state(&[("up", "192.0.2.1/24")]);
        let mut b = a.clone();
        b.routes.push(RouteSpec {
            prefix: Cidr::parse("10.9.0.0/16").unwrap(),
            port: 0,
            via: None,
        });
        let d = StateDiff::between(&a, &b);
        assert!(d.routes && !d.ports());
        assert_eq!(
            d.rebuild(),
            Rebuild {
                forwarding: true,
                ..Rebuild::default()
            }
        );
        assert!(d.restart_only().is_empty());
        let mut c = a.clone();
        c.conntrack.timeouts.udp += 1;
        let d = StateDiff::between(&a, &c);
        assert!(d.conntrack_settings && !d.conntrack_size);
        assert!(d.rebuild().conntrack && !d.rebuild().forwarding);
        c.conntrack.max_entries *= 2;
        assert_eq!(
            StateDiff::between(&a, &c).restart_only(),
            vec!["conntrack.max_entries"]
        );
    }
}
