//! Calico rules into terms (policy.md section 3, *Rule fields* and
//! *Selector scope*): one rule becomes a disjunction of terms, with its
//! selectors resolved to addresses and its named ports to numbers.

use std::collections::BTreeMap;

use super::resolve::{Resolver, ScopeKey};
use super::types::{
    and_terms, with_addr, with_port, Side, Term, ICMP_BASE, L4_MAX, PORT_MAX, PROTO_MAX,
};
use crate::model::{EntityRule, PortSpec, Rule};
use crate::ranges::{AddrSet, RangeSet};

/// The terms of Calico rule `r` of a policy in namespace `ns` (`None`: a
/// GlobalNetworkPolicy or a profile).
pub(super) fn rule_terms(res: &mut Resolver<'_>, r: &Rule, ns: Option<&str>) -> Vec<Term> {
    let mut base = Term::full();
    for v in rule_families(r) {
        base.src = base.src.only_family(v);
        base.dst = base.dst.only_family(v);
    }
    if let Some(p) = r.protocol {
        base.proto = RangeSet::single(p.number.0 as u128);
    }
    if let Some(p) = r.not_protocol {
        base.proto = base
            .proto
            .minus(&RangeSet::single(p.number.0 as u128), PROTO_MAX);
    }
    if let Some(ic) = r.icmp {
        base.sport = base
            .sport
            .intersect(&RangeSet::single(ICMP_BASE + ic.ty as u128));
        base.dport = base.dport.intersect(&match ic.code {
            Some(c) => RangeSet::single(ICMP_BASE + c as u128),
            None => RangeSet::range(ICMP_BASE, ICMP_BASE + 255),
        });
    }
    let mut terms = if base.is_empty() { vec![] } else { vec![base] };
    if let Some(ic) = r.not_icmp {
        let t = RangeSet::single(ICMP_BASE + ic.ty as u128);
        let mut alts = vec![with_port(Side::Src, t.complement(L4_MAX))];
        if let Some(c) = ic.code {
            let mut x = with_port(Side::Src, t);
            x.dport = RangeSet::single(ICMP_BASE + c as u128).complement(L4_MAX);
            alts.push(x);
        }
        terms = and_terms(terms, &alts);
    }
    if let Some(e) = &r.source {
        let t = entity_terms(res, e, ns, Side::Src);
        terms = and_terms(terms, &t);
    }
    if let Some(e) = &r.destination {
        let t = entity_terms(res, e, ns, Side::Dst);
        terms = and_terms(terms, &t);
    }
    terms
}

/// The address families a rule is limited to, each a constraint: its
/// `ipVersion`, the version `protocol: ICMP` / `ICMPv6` (by name) gives
/// it, the family of its CIDRs (the loader has checked the CIDRs agree
/// with each other and with `ipVersion`). Calico renders such a rule for
/// that family alone, so a `notNets` of one family never matches a packet
/// of the other; two that disagree (ICMPv6 with IPv4 CIDRs) match nothing.
pub(super) fn rule_families(r: &Rule) -> impl Iterator<Item = u8> + '_ {
    let cidrs = [&r.source, &r.destination]
        .into_iter()
        .flatten()
        .flat_map(|e| e.nets.iter().chain(e.not_nets.iter()).flatten())
        .map(|c| if c.is_v4() { 4 } else { 6 })
        .next();
    r.ip_version
        .into_iter()
        .chain(r.protocol.and_then(|p| p.ip_version()))
        .chain(cidrs)
}

/// A `ports` / `notPorts` list: its numbers and ranges, and its names.
fn port_ranges(specs: &[PortSpec]) -> (RangeSet, Vec<&str>) {
    let mut r = Vec::new();
    let mut names = Vec::new();
    for s in specs {
        match s {
            PortSpec::Range(a, b) => r.push((*a as u128, *b as u128)),
            PortSpec::Named(n) => names.push(n.as_str()),
        }
    }
    (RangeSet::from_ranges(r), names)
}

/// Terms of one side (`source` or `destination`) of a Calico rule.
fn entity_terms(res: &mut Resolver<'_>, e: &EntityRule, ns: Option<&str>, side: Side) -> Vec<Term> {
    let mut addr = AddrSet::full();
    if let Some(n) = &e.nets {
        addr = addr.intersect(&AddrSet::from_cidrs(n));
    }
    if let Some(n) = &e.not_nets {
        addr = addr.intersect(&AddrSet::from_cidrs(n).complement());
    }
    let scope = match (&e.namespace_selector, ns) {
        (Some(s), _) => ScopeKey::NsSel(s.clone()),
        (None, Some(ns)) => ScopeKey::Ns(ns.to_string()),
        (None, None) => ScopeKey::None,
    };
    // The positive selector (scope, `selector` and `notSelector` folded
    // into one, as Calico rewrites them), tested per owning object; a side
    // without one excludes every address an object `notSelector` matches
    // owns.
    let scoped = scope != ScopeKey::None && e.has_selector_fields();
    let positive = scoped || e.selector.is_some();
    let admitted_scope = if scoped { scope } else { ScopeKey::None };
    let folded_not = if positive {
        e.not_selector.as_ref()
    } else {
        None
    };
    if positive {
        let sel = res.select(admitted_scope.clone(), e.selector.as_ref(), folded_not);
        addr = addr.intersect(&sel.0);
    } else if let Some(ns_) = &e.not_selector {
        addr = addr.intersect(&res.not_select(ns_));
    }
    let mut terms = vec![with_addr(side, addr)];
    let needs_named = e
        .ports
        .iter()
        .chain(e.not_ports.iter())
        .flatten()
        .any(|p| matches!(p, PortSpec::Named(_)));
    let admitted = if needs_named {
        res.select(admitted_scope, e.selector.as_ref(), folded_not)
            .1
            .clone()
    } else {
        Vec::new()
    };
    if let Some(ports) = &e.ports {
        let (nums, names) = port_ranges(ports);
        let mut alts = Vec::new();
        if !nums.is_empty() {
            alts.push(with_port(side, nums));
        }
        for n in names {
            for ((proto, num), a) in res.named(&admitted, n) {
                let mut t = with_addr(side, a);
                t.proto = RangeSet::single(proto as u128);
                match side {
                    Side::Src => t.sport = RangeSet::single(num as u128),
                    Side::Dst => t.dport = RangeSet::single(num as u128),
                }
                alts.push(t);
            }
        }
        terms = and_terms(terms, &alts);
    }
    if let Some(ports) = &e.not_ports {
        let (nums, names) = port_ranges(ports);
        // port ∈ [0, 65535] \ nums, and not any named (proto, port, addr).
        let mut by_port: BTreeMap<u16, BTreeMap<u8, AddrSet>> = BTreeMap::new();
        for n in names {
            for ((proto, num), a) in res.named(&admitted, n) {
                let e = by_port.entry(num).or_default().entry(proto).or_default();
                *e = e.union(&a);
            }
        }
        let allowed = RangeSet::full(PORT_MAX).minus(&nums, L4_MAX);
        let named_ports =
            RangeSet::from_ranges(by_port.keys().map(|&p| (p as u128, p as u128)).collect());
        let mut alts = vec![with_port(side, allowed.minus(&named_ports, L4_MAX))];
        for (port, protos) in by_port {
            if !allowed.contains(port as u128) {
                continue;
            }
            let pset = RangeSet::single(port as u128);
            let listed =
                RangeSet::from_ranges(protos.keys().map(|&p| (p as u128, p as u128)).collect());
            let mut t = with_port(side, pset.clone());
            t.proto = listed.complement(PROTO_MAX);
            alts.push(t);
            for (proto, a) in protos {
                let mut t = with_addr(side, a.complement());
                t.proto = RangeSet::single(proto as u128);
                match side {
                    Side::Src => t.sport = pset.clone(),
                    Side::Dst => t.dport = pset.clone(),
                }
                alts.push(t);
            }
        }
        alts.retain(|t| !t.is_empty());
        terms = and_terms(terms, &alts);
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::resolve::with_resolver_of;
    use crate::model::Object;

    const ENDPOINTS: &str = r#"
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web, namespace: prod, labels: {app: web}}
spec:
  ipNetworks: [10.0.0.1/32, "fd00::1/128"]
  ports: [{name: http, port: 8080, protocol: TCP}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: db, namespace: prod, labels: {app: db}}
spec:
  ipNetworks: [10.0.0.2/32]
  ports: [{name: http, port: 9090, protocol: TCP}]
---
"#;

    /// The terms of each ingress rule of the one GlobalNetworkPolicy whose
    /// spec is `spec`.
    fn terms(spec: &str) -> Vec<Vec<Term>> {
        let yaml = format!(
            "{ENDPOINTS}apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec:\n{spec}"
        );
        let (set, _) = crate::loader::load_str("t.yaml", &yaml).unwrap();
        let Some(Object::GlobalNetworkPolicy(p)) = set.objects.last().map(|l| &l.object) else {
            panic!("no policy");
        };
        with_resolver_of(&set, |res| {
            p.spec
                .ingress
                .iter()
                .flatten()
                .map(|r| rule_terms(res, r, None))
                .collect()
        })
    }

    /// Whether any of `terms` matches a packet from 10.9.9.9 to `dst`.
    fn hits(terms: &[Term], dst: &str, proto: u8, sport: u128, dport: u128) -> bool {
        let src = "10.9.9.9".parse().unwrap();
        let dst = dst.parse().unwrap();
        terms.iter().any(|t| {
            t.src.contains(&src)
                && t.dst.contains(&dst)
                && t.proto.contains(u128::from(proto))
                && t.sport.contains(sport)
                && t.dport.contains(dport)
        })
    }

    #[test]
    fn nets_and_not_nets() {
        let t = terms(
            "  ingress:\n  - action: Allow\n    destination: {nets: [10.0.0.0/8], notNets: [10.0.1.0/24]}\n",
        );
        assert_eq!(t[0].len(), 1);
        assert!(hits(&t[0], "10.0.0.1", 6, 1, 2));
        assert!(!hits(&t[0], "10.0.1.1", 6, 1, 2));
        assert!(
            t[0][0].dst.v6.is_empty(),
            "a rule with CIDRs is of their family"
        );
    }

    #[test]
    fn named_ports_of_the_selected_endpoints() {
        let t = terms(
            "  ingress:\n  - action: Allow\n    protocol: TCP\n    destination: {selector: app == 'web', ports: [80, http]}\n",
        );
        assert!(hits(&t[0], "10.0.0.1", 6, 1, 80));
        assert!(hits(&t[0], "10.0.0.1", 6, 1, 8080));
        assert!(!hits(&t[0], "10.0.0.2", 6, 1, 9090), "db is not selected");
        assert!(!hits(&t[0], "10.0.0.1", 17, 1, 8080));
    }

    #[test]
    fn not_ports_exclude_a_named_port_where_it_is_declared() {
        let t = terms(
            "  ingress:\n  - action: Allow\n    protocol: TCP\n    destination: {notPorts: [http, 22]}\n",
        );
        assert!(!hits(&t[0], "10.0.0.1", 6, 1, 8080));
        assert!(hits(&t[0], "10.0.0.2", 6, 1, 8080));
        assert!(!hits(&t[0], "10.0.0.2", 6, 1, 9090));
        assert!(!hits(&t[0], "10.0.0.7", 6, 1, 22));
        assert!(hits(&t[0], "10.0.0.7", 6, 1, 23));
    }

    #[test]
    fn icmp_and_not_icmp() {
        let icmp = |ty: u128, code: u128| (ICMP_BASE + ty, ICMP_BASE + code);
        let t = terms(
            "  ingress:\n  - action: Allow\n    protocol: ICMP\n    notICMP: {type: 8, code: 0}\n  - action: Allow\n    protocol: ICMP\n    icmp: {type: 3}\n",
        );
        let (s, d) = icmp(8, 0);
        assert!(!hits(&t[0], "10.0.0.1", 1, s, d));
        let (s, d) = icmp(8, 1);
        assert!(hits(&t[0], "10.0.0.1", 1, s, d));
        let (s, d) = icmp(3, 4);
        assert!(hits(&t[1], "10.0.0.1", 1, s, d));
        let (s, d) = icmp(4, 0);
        assert!(!hits(&t[1], "10.0.0.1", 1, s, d));
        assert!(
            !hits(&t[1], "10.0.0.1", 1, 80, 80),
            "icmp never matches ports"
        );
    }
}
