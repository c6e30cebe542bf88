//! The reference evaluator: policy.md read literally, one packet at a time,
//! over the loaded model. No IR, no ranges, no caching; slow on purpose.
//! It is the oracle of the differential tests: every engine must give the
//! same `policy eval` object for every packet.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{json, Value};

use crate::classifier::L4;
use crate::model::*;
use crate::selector::{EvalMode, Labels, Selector};

/// A packet for the reference evaluator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Source.
    pub src: IpAddr,
    /// Destination.
    pub dst: IpAddr,
    /// Protocol.
    pub proto: u8,
    /// Ports, ICMP type/code, or neither.
    pub l4: L4,
}

struct Obj<'a> {
    namespace: Option<&'a str>,
    labels: Labels,
    nets: &'a [Cidr],
    wep: Option<&'a WorkloadEndpoint>,
}

/// The reference evaluator for one policy set.
pub struct Reference<'a> {
    set: &'a PolicySet,
    objs: Vec<Obj<'a>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum D {
    Egress,
    Ingress,
}

enum Outcome {
    Allow(Value),
    Deny(Value),
}

impl<'a> Reference<'a> {
    /// Prepare (effective labels of every object).
    pub fn new(set: &'a PolicySet) -> Reference<'a> {
        let mut objs = Vec::new();
        for l in &set.objects {
            match &l.object {
                Object::WorkloadEndpoint(w) => {
                    let mut labels = w.labels.clone();
                    for pn in w.spec.profiles.iter().flatten() {
                        if let Some(p) = profile(set, pn) {
                            for (k, v) in p.spec.labels_to_apply.iter().flatten() {
                                if !labels.contains_key(k) {
                                    labels.insert(k.clone(), v.clone());
                                }
                            }
                        }
                    }
                    let ns = w.name.namespace.as_deref().unwrap_or("default");
                    labels.insert("projectcalico.org/namespace".into(), ns.into());
                    objs.push(Obj {
                        namespace: Some(ns),
                        labels,
                        nets: w.spec.ip_networks.as_deref().unwrap_or(&[]),
                        wep: Some(w),
                    });
                }
                Object::NetworkSet(s) => {
                    let ns = s.name.namespace.as_deref().unwrap_or("default");
                    let mut labels = s.labels.clone();
                    if let Some(p) = profile(set, &format!("kns.{ns}")) {
                        for (k, v) in p.spec.labels_to_apply.iter().flatten() {
                            if !labels.contains_key(k) {
                                labels.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    labels.insert("projectcalico.org/namespace".into(), ns.into());
                    objs.push(Obj {
                        namespace: Some(ns),
                        labels,
                        nets: &s.nets,
                        wep: None,
                    });
                }
                Object::GlobalNetworkSet(s) => objs.push(Obj {
                    namespace: None,
                    labels: s.labels.clone(),
                    nets: &s.nets,
                    wep: None,
                }),
                _ => {}
            }
        }
        Reference { set, objs }
    }

    fn ns_labels(&self, ns: &str) -> Labels {
        let mut l = Labels::new();
        for o in &self.set.objects {
            if let Object::Namespace(n) = &o.object {
                if n.name == ns {
                    l = n.labels.clone();
                }
            }
        }
        l.insert("projectcalico.org/name".into(), ns.into());
        l.insert("kubernetes.io/metadata.name".into(), ns.into());
        l
    }

    /// The endpoint owning `a` (longest prefix), as an index into `objs`.
    fn owner(&self, a: &IpAddr) -> Option<usize> {
        let mut best: Option<(u8, usize)> = None;
        for (i, o) in self.objs.iter().enumerate() {
            if o.wep.is_none() {
                continue;
            }
            for c in o.nets {
                if c.contains(a) && best.is_none_or(|(l, _)| c.len > l) {
                    best = Some((c.len, i));
                }
            }
        }
        best.map(|(_, i)| i)
    }

    /// The `policy eval` object for a packet.
    pub fn eval(&self, p: &Packet) -> Value {
        let e = self.direction(p, D::Egress);
        let i = self.direction(p, D::Ingress);
        let allow = e.0 && i.0;
        json!({
            "verdict": verdict(allow),
            "egress": e.1,
            "ingress": i.1,
        })
    }

    fn direction(&self, p: &Packet, d: D) -> (bool, Value) {
        let addr = if d == D::Egress { p.src } else { p.dst };
        let Some(ei) = self.owner(&addr) else {
            return (
                true,
                json!({"verdict": "allow", "endpoint": null, "decided_by": null}),
            );
        };
        let (allow, by) = match self.evaluate(ei, p, d) {
            Outcome::Allow(v) => (true, v),
            Outcome::Deny(v) => (false, v),
        };
        let w = self.objs[ei].wep.map(|w| w.name.to_string());
        (
            allow,
            json!({"verdict": verdict(allow), "endpoint": w, "decided_by": by}),
        )
    }

    fn evaluate(&self, ei: usize, p: &Packet, d: D) -> Outcome {
        let e = &self.objs[ei];
        let ns = e.namespace.unwrap_or("default");
        // Tiers in order.
        let mut tiers: Vec<Tier> = self
            .set
            .objects
            .iter()
            .filter_map(|l| match &l.object {
                Object::Tier(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        if !tiers.iter().any(|t| t.name == "default") {
            tiers.push(Tier {
                name: "default".into(),
                order: Some(1_000_000.0),
                default_action: TierAction::Deny,
            });
        }
        tiers.sort_by(|a, b| match (a.order, b.order) {
            (Some(x), Some(y)) => x.total_cmp(&y).then(a.name.cmp(&b.name)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.name.cmp(&b.name),
        });
        for t in &tiers {
            // Policies of this tier that apply, in order.
            let mut pols: Vec<(bool, f64, String, &Object)> = Vec::new();
            for l in &self.set.objects {
                // Equal orders sort on `name/namespace/kind`.
                let (tier, order, key) = match &l.object {
                    Object::GlobalNetworkPolicy(cp) => (
                        cp.spec.tier.clone().unwrap_or_else(|| "default".into()),
                        cp.spec.order,
                        format!("{}//GlobalNetworkPolicy", cp.name.name),
                    ),
                    Object::NetworkPolicy(cp) => (
                        cp.spec.tier.clone().unwrap_or_else(|| "default".into()),
                        cp.spec.order,
                        format!(
                            "{}/{}/NetworkPolicy",
                            cp.name.name,
                            cp.name.namespace.as_deref().unwrap_or("default")
                        ),
                    ),
                    Object::K8sNetworkPolicy(kp) => (
                        "default".to_string(),
                        Some(1000.0),
                        format!(
                            "{}/{}/KubernetesNetworkPolicy",
                            kp.name.name,
                            kp.name.namespace.as_deref().unwrap_or("default")
                        ),
                    ),
                    _ => continue,
                };
                if tier != t.name || !self.applies(&l.object, e, ns, d) {
                    continue;
                }
                pols.push((order.is_none(), order.unwrap_or(0.0), key, &l.object));
            }
            if pols.is_empty() {
                continue;
            }
            pols.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
            let mut passed = false;
            'policies: for (_, _, _, obj) in &pols {
                match obj {
                    Object::GlobalNetworkPolicy(cp) | Object::NetworkPolicy(cp) => {
                        let key = cp.key();
                        let rules = if d == D::Egress {
                            &cp.spec.egress
                        } else {
                            &cp.spec.ingress
                        };
                        for (i, r) in rules.iter().flatten().enumerate() {
                            if !self.rule_matches(r, p, cp.name.namespace.as_deref()) {
                                continue;
                            }
                            let by = json!({"tier": t.name, "policy": key, "rule": i});
                            match r.action {
                                Action::Allow => return Outcome::Allow(by),
                                Action::Deny => return Outcome::Deny(by),
                                Action::Pass => {
                                    passed = true;
                                    break 'policies;
                                }
                                Action::Log => {}
                            }
                        }
                    }
                    Object::K8sNetworkPolicy(kp) => {
                        let key = kp.key();
                        let pns = kp.name.namespace.as_deref().unwrap_or("default");
                        let n = if d == D::Egress {
                            kp.spec.egress.as_ref().map_or(0, Vec::len)
                        } else {
                            kp.spec.ingress.as_ref().map_or(0, Vec::len)
                        };
                        for i in 0..n {
                            let m = match (d, &kp.spec.ingress, &kp.spec.egress) {
                                (D::Ingress, Some(v), _) => self.k8s_ingress(&v[i], pns, p),
                                (D::Egress, _, Some(v)) => self.k8s_egress(&v[i], pns, p),
                                _ => false,
                            };
                            if m {
                                return Outcome::Allow(
                                    json!({"tier": t.name, "policy": key, "rule": i}),
                                );
                            }
                        }
                    }
                    _ => {}
                }
            }
            if !passed && t.default_action == TierAction::Deny {
                return Outcome::Deny(json!({"tier": t.name, "end_of_tier": true}));
            }
        }
        // Profiles.
        if let Some(w) = e.wep {
            'profiles: for pn in w.spec.profiles.iter().flatten() {
                let Some(prof) = profile(self.set, pn) else {
                    // No Profile document: Calico's default-drop profile.
                    return Outcome::Deny(json!({"profile": pn, "rule": 0}));
                };
                let rules = if d == D::Egress {
                    &prof.spec.egress
                } else {
                    &prof.spec.ingress
                };
                for (i, r) in rules.iter().flatten().enumerate() {
                    if !self.rule_matches(r, p, None) {
                        continue;
                    }
                    let by = json!({"profile": prof.name, "rule": i});
                    match r.action {
                        Action::Allow => return Outcome::Allow(by),
                        Action::Deny => return Outcome::Deny(by),
                        Action::Pass => continue 'profiles,
                        Action::Log => {}
                    }
                }
            }
        }
        Outcome::Deny(json!({"no_match": true}))
    }

    fn applies(&self, o: &Object, e: &Obj<'_>, ns: &str, d: D) -> bool {
        match o {
            Object::GlobalNetworkPolicy(cp) | Object::NetworkPolicy(cp) => {
                let has_i = cp.spec.ingress.is_some();
                let has_e = cp.spec.egress.is_some();
                let types: Vec<PolicyType> = match &cp.spec.types {
                    Some(t) => t.clone(),
                    None if has_e && !has_i => vec![PolicyType::Egress],
                    None if has_e && has_i => vec![PolicyType::Ingress, PolicyType::Egress],
                    None => vec![PolicyType::Ingress],
                };
                let want = if d == D::Egress {
                    PolicyType::Egress
                } else {
                    PolicyType::Ingress
                };
                if !types.contains(&want) {
                    return false;
                }
                let sel_ok = cp
                    .spec
                    .selector
                    .as_ref()
                    .is_none_or(|s| s.matches(&e.labels));
                match &cp.name.namespace {
                    Some(pns) => pns == ns && sel_ok,
                    None => {
                        sel_ok
                            && cp
                                .spec
                                .namespace_selector
                                .as_ref()
                                .is_none_or(|s| s.matches(&self.ns_labels(ns)))
                    }
                }
            }
            Object::K8sNetworkPolicy(kp) => {
                let types: Vec<PolicyType> = match &kp.spec.policy_types {
                    Some(t) => t.clone(),
                    None if kp.spec.egress.is_some() => {
                        vec![PolicyType::Ingress, PolicyType::Egress]
                    }
                    None => vec![PolicyType::Ingress],
                };
                let want = if d == D::Egress {
                    PolicyType::Egress
                } else {
                    PolicyType::Ingress
                };
                types.contains(&want)
                    && kp.name.namespace.as_deref() == Some(ns)
                    && kp.pod_selector.matches(&e.labels)
            }
            _ => false,
        }
    }

    fn in_scope(&self, o: &Obj<'_>, scope: &Scope<'_>) -> bool {
        match scope {
            Scope::None => true,
            Scope::Ns(ns) => o.namespace == Some(*ns),
            Scope::Sel(s) => match o.namespace {
                Some(ns) => s.eval(&self.ns_labels(ns), EvalMode::NAMESPACED),
                None => s.eval(&Labels::new(), EvalMode::GLOBAL_SET),
            },
        }
    }

    fn rule_matches(&self, r: &Rule, p: &Packet, ns: Option<&str>) -> bool {
        // The rule's families (each a constraint): ipVersion, ICMP /
        // ICMPv6 by name, that of its CIDRs.
        let cidr_family = [&r.source, &r.destination]
            .into_iter()
            .flatten()
            .flat_map(|e| e.nets.iter().chain(e.not_nets.iter()).flatten())
            .map(|c| if c.is_v4() { 4 } else { 6 })
            .next();
        let by_name = r.protocol.and_then(|x| match (x.by_name, x.number.0) {
            (true, 1) => Some(4),
            (true, 58) => Some(6),
            _ => None,
        });
        for v in [r.ip_version, by_name, cidr_family].into_iter().flatten() {
            if family_of(&p.src) != v {
                return false;
            }
        }
        if r.protocol.is_some_and(|x| x.number.0 != p.proto) {
            return false;
        }
        if r.not_protocol.is_some_and(|x| x.number.0 == p.proto) {
            return false;
        }
        let icmp_match = |m: &IcmpMatch| match p.l4 {
            L4::Icmp { ty, code } => ty == m.ty && m.code.is_none_or(|c| c == code),
            _ => false,
        };
        if r.icmp.as_ref().is_some_and(|m| !icmp_match(m)) {
            return false;
        }
        if r.not_icmp.as_ref().is_some_and(icmp_match) {
            return false;
        }
        let (sp, dp) = match p.l4 {
            L4::Ports { sport, dport } => (Some(sport), Some(dport)),
            _ => (None, None),
        };
        if let Some(e) = &r.source {
            if !self.entity_matches(e, &p.src, sp, p.proto, ns) {
                return false;
            }
        }
        if let Some(e) = &r.destination {
            if !self.entity_matches(e, &p.dst, dp, p.proto, ns) {
                return false;
            }
        }
        true
    }

    fn entity_matches(
        &self,
        e: &EntityRule,
        addr: &IpAddr,
        port: Option<u16>,
        proto: u8,
        ns: Option<&str>,
    ) -> bool {
        if let Some(n) = &e.nets {
            if !n.iter().any(|c| c.contains(addr)) {
                return false;
            }
        }
        if let Some(n) = &e.not_nets {
            if n.iter().any(|c| c.contains(addr)) {
                return false;
            }
        }
        let scope = match (&e.namespace_selector, ns) {
            (Some(s), _) => Scope::Sel(s),
            (None, Some(ns)) => Scope::Ns(ns),
            (None, None) => Scope::None,
        };
        let scoped = !matches!(scope, Scope::None) && e.has_selector_fields();
        let positive = scoped || e.selector.is_some();
        // The positive selector: in scope, `selector`, not `notSelector`,
        // each owner tested on its own.
        let sel_ok = |o: &Obj<'_>| {
            e.selector.as_ref().is_none_or(|s| s.matches(&o.labels))
                && !(positive
                    && e.not_selector
                        .as_ref()
                        .is_some_and(|s| s.matches(&o.labels)))
        };
        if positive {
            if !self.objs.iter().any(|o| {
                o.nets.iter().any(|c| c.contains(addr))
                    && (!scoped || self.in_scope(o, &scope))
                    && sel_ok(o)
            }) {
                return false;
            }
        } else if let Some(ns_) = &e.not_selector {
            if self
                .objs
                .iter()
                .any(|o| o.nets.iter().any(|c| c.contains(addr)) && ns_.matches(&o.labels))
            {
                return false;
            }
        }
        // Endpoints admitted for named ports.
        let admitted =
            |o: &Obj<'_>| o.wep.is_some() && (!scoped || self.in_scope(o, &scope)) && sel_ok(o);
        let port_in = |specs: &[PortSpec], pn: u16| {
            specs.iter().any(|s| match s {
                PortSpec::Range(a, b) => *a <= pn && pn <= *b,
                PortSpec::Named(name) => self.objs.iter().any(|o| {
                    admitted(o)
                        && o.nets.iter().any(|c| c.contains(addr))
                        && declares(o, name, proto, pn)
                }),
            })
        };
        if let Some(ps) = &e.ports {
            match port {
                Some(pn) if port_in(ps, pn) => {}
                _ => return false,
            }
        }
        if let Some(ps) = &e.not_ports {
            match port {
                Some(pn) if !port_in(ps, pn) => {}
                _ => return false,
            }
        }
        true
    }

    /// Endpoints a Kubernetes peer selects, or `None` for an ipBlock peer
    /// (which selects by address only).
    fn k8s_peer_matches(&self, peer: &K8sPeer, pns: &str, addr: &IpAddr) -> bool {
        if let Some(b) = &peer.ip_block {
            return b.cidr.contains(addr) && !b.except.iter().flatten().any(|c| c.contains(addr));
        }
        self.objs
            .iter()
            .any(|o| o.nets.iter().any(|c| c.contains(addr)) && self.k8s_selects(peer, pns, o))
    }

    fn k8s_selects(&self, peer: &K8sPeer, pns: &str, o: &Obj<'_>) -> bool {
        if o.wep.is_none() {
            return false;
        }
        if peer.ip_block.is_some() {
            return true;
        }
        let ons = o.namespace.unwrap_or("default");
        let ns_ok = match &peer.namespace_selector {
            Some(ls) => to_sel(ls).matches(&self.ns_labels(ons)),
            None => ons == pns,
        };
        let pod_ok = peer
            .pod_selector
            .as_ref()
            .is_none_or(|ls| to_sel(ls).matches(&o.labels));
        ns_ok && pod_ok
    }

    fn k8s_port_matches(
        &self,
        e: &K8sPort,
        p: &Packet,
        admitted: &dyn Fn(&Obj<'_>) -> bool,
    ) -> bool {
        let proto = e.protocol.unwrap_or(Protocol::TCP).0;
        if p.proto != proto {
            return false;
        }
        let dport = match p.l4 {
            L4::Ports { dport, .. } => Some(dport),
            _ => None,
        };
        match &e.port {
            None => true,
            Some(PortSpec::Range(lo, _)) => {
                let hi = e.end_port.unwrap_or(*lo);
                dport.is_some_and(|d| *lo <= d && d <= hi)
            }
            Some(PortSpec::Named(n)) => dport.is_some_and(|d| {
                self.objs.iter().any(|o| {
                    admitted(o)
                        && o.nets.iter().any(|c| c.contains(&p.dst))
                        && declares(o, n, proto, d)
                })
            }),
        }
    }

    fn k8s_ingress(&self, r: &K8sIngressRule, pns: &str, p: &Packet) -> bool {
        let peers_ok = match &r.from {
            None => true,
            Some(peers) => peers
                .iter()
                .any(|peer| self.k8s_peer_matches(peer, pns, &p.src)),
        };
        let any = |o: &Obj<'_>| o.wep.is_some();
        let ports_ok = match &r.ports {
            None => true,
            Some(ports) => ports.iter().any(|e| self.k8s_port_matches(e, p, &any)),
        };
        peers_ok && ports_ok
    }

    fn k8s_egress(&self, r: &K8sEgressRule, pns: &str, p: &Packet) -> bool {
        let any_peer = K8sPeer {
            ip_block: Some(IpBlock {
                cidr: Cidr::new(p.dst, 0),
                except: None,
            }),
            ..Default::default()
        };
        let peers: Vec<&K8sPeer> = match &r.to {
            None => vec![&any_peer],
            Some(v) => v.iter().collect(),
        };
        peers.iter().any(|peer| {
            if !self.k8s_peer_matches(peer, pns, &p.dst) {
                return false;
            }
            match &r.ports {
                None => true,
                Some(ports) => {
                    let adm = |o: &Obj<'_>| self.k8s_selects(peer, pns, o);
                    ports.iter().any(|e| self.k8s_port_matches(e, p, &adm))
                }
            }
        })
    }
}

enum Scope<'s> {
    None,
    Ns(&'s str),
    Sel(&'s Selector),
}

fn declares(o: &Obj<'_>, name: &str, proto: u8, port: u16) -> bool {
    o.wep.is_some_and(|w| {
        w.spec
            .ports
            .iter()
            .flatten()
            .any(|p| p.name == name && p.protocol.0 == proto && p.port == port)
    })
}

fn to_sel(ls: &LabelSelector) -> Selector {
    ls.to_selector()
        .unwrap_or(Selector::Not(Box::new(Selector::All)))
}

fn profile<'s>(set: &'s PolicySet, name: &str) -> Option<&'s Profile> {
    set.objects.iter().find_map(|l| match &l.object {
        Object::Profile(p) if p.name == name => Some(p),
        _ => None,
    })
}

fn verdict(allow: bool) -> &'static str {
    if allow {
        "allow"
    } else {
        "deny"
    }
}

/// Convenience: every (tier, policy key, direction) the set defines, for
/// tests that want to enumerate identities.
pub fn policy_keys(set: &PolicySet) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for l in &set.objects {
        match &l.object {
            Object::GlobalNetworkPolicy(p) | Object::NetworkPolicy(p) => {
                m.insert(p.key(), p.tier().to_string());
            }
            Object::K8sNetworkPolicy(p) => {
                m.insert(p.key(), "default".to_string());
            }
            _ => {}
        }
    }
    m
}
