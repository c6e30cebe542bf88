//! Kubernetes NetworkPolicy rules into terms (policy.md section 4): every
//! rule allows; peers select endpoints only; a named port is looked up per
//! egress peer, and among every endpoint for ingress.

use super::resolve::{Resolver, Selected};
use super::types::{and_terms, with_addr, Side, Term};
use crate::model::{
    K8sEgressRule, K8sIngressRule, K8sPeer, K8sPolicy, K8sPort, PortSpec, Protocol,
};
use crate::ranges::{AddrSet, RangeSet};

/// The terms of egress rule `r` of policy `p`: one set of terms per peer,
/// each with its named ports resolved among the peer's endpoints.
pub(super) fn egress_terms(
    res: &mut Resolver<'_>,
    p: &K8sPolicy,
    r: &K8sEgressRule,
) -> Result<Vec<Term>, String> {
    let ns = p.name.namespace.as_deref().unwrap_or("default");
    let peers: Vec<Selected> = match &r.to {
        Some(peers) => peers
            .iter()
            .map(|peer| selected_by(res, ns, peer))
            .collect::<Result<_, _>>()?,
        None => vec![std::sync::Arc::new((
            AddrSet::full(),
            (0..res.weps.len()).collect(),
        ))],
    };
    let mut out = Vec::new();
    for sel in peers {
        let (a, weps) = &*sel;
        let mut terms = vec![with_addr(Side::Dst, a.clone())];
        if let Some(ports) = &r.ports {
            let mut alts = Vec::new();
            for port in ports {
                alts.extend(port_terms(res, port, weps));
            }
            terms = and_terms(terms, &alts);
        }
        out.extend(terms);
    }
    Ok(out)
}

/// The terms of ingress rule `r` of policy `p`.
pub(super) fn ingress_terms(
    res: &mut Resolver<'_>,
    p: &K8sPolicy,
    r: &K8sIngressRule,
) -> Result<Vec<Term>, String> {
    let ns = p.name.namespace.as_deref().unwrap_or("default");
    let mut terms = vec![Term::full()];
    if let Some(peers) = &r.from {
        let mut alts = Vec::new();
        for peer in peers {
            let sel = selected_by(res, ns, peer)?;
            alts.push(with_addr(Side::Src, sel.0.clone()));
        }
        terms = and_terms(terms, &alts);
    }
    if let Some(ports) = &r.ports {
        let all: Vec<usize> = (0..res.weps.len()).collect();
        let mut alts = Vec::new();
        for port in ports {
            alts.extend(port_terms(res, port, &all));
        }
        terms = and_terms(terms, &alts);
    }
    Ok(terms)
}

/// A Kubernetes port entry as terms on the destination port, with named
/// ports resolved against `weps`.
fn port_terms(res: &mut Resolver<'_>, p: &K8sPort, weps: &[usize]) -> Vec<Term> {
    let proto = p.protocol.unwrap_or(Protocol::TCP).0;
    let mut t = Term::full();
    t.proto = RangeSet::single(proto as u128);
    match &p.port {
        None => vec![t],
        Some(PortSpec::Range(lo, _)) => {
            let hi = p.end_port.unwrap_or(*lo);
            t.dport = RangeSet::range(*lo as u128, hi as u128);
            vec![t]
        }
        Some(PortSpec::Named(n)) => {
            let mut out = Vec::new();
            for ((pr, num), a) in res.named(weps, n) {
                if pr != proto {
                    continue;
                }
                let mut x = t.clone();
                x.dport = RangeSet::single(num as u128);
                x.dst = a;
                out.push(x);
            }
            out
        }
    }
}

/// The addresses and endpoints that `peer` of a policy in `ns` selects.
fn selected_by(res: &mut Resolver<'_>, ns: &str, peer: &K8sPeer) -> Result<Selected, String> {
    if let Some(b) = &peer.ip_block {
        let mut a = AddrSet::from_cidrs([&b.cidr]);
        if let Some(ex) = &b.except {
            a = a.intersect(&AddrSet::from_cidrs(ex).complement());
        }
        let all = (0..res.weps.len()).collect();
        return Ok(std::sync::Arc::new((a, all)));
    }
    let pod = peer
        .pod_selector
        .as_ref()
        .map(|s| s.to_selector())
        .transpose()
        .map_err(|e| e.1)?;
    let nss = peer
        .namespace_selector
        .as_ref()
        .map(|s| s.to_selector())
        .transpose()
        .map_err(|e| e.1)?;
    Ok(res.k8s_select(ns, pod.as_ref(), nss.as_ref()))
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
  ipNetworks: [10.0.0.1/32]
  ports: [{name: http, port: 8080, protocol: TCP}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: db, namespace: prod, labels: {app: db}}
spec:
  ipNetworks: [10.0.0.2/32]
  ports: [{name: http, port: 9090, protocol: TCP}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: other, namespace: dev, labels: {app: web}}
spec:
  ipNetworks: [10.0.1.1/32]
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: ext, namespace: prod, labels: {app: web}}
spec:
  nets: [192.168.0.0/16]
---
"#;

    /// The terms of each (ingress, egress) rule of the Kubernetes policy in
    /// `prod` whose spec is `spec`.
    fn terms(spec: &str) -> (Vec<Vec<Term>>, Vec<Vec<Term>>) {
        let yaml = format!(
            "{ENDPOINTS}apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: prod}}\nspec:\n{spec}"
        );
        let (set, _) = crate::loader::load_str("t.yaml", &yaml).unwrap();
        let Some(Object::K8sNetworkPolicy(p)) = set.objects.last().map(|l| &l.object) else {
            panic!("no policy");
        };
        with_resolver_of(&set, |res| {
            let ingress = p.spec.ingress.iter().flatten();
            let ingress = ingress.map(|r| ingress_terms(res, p, r).unwrap()).collect();
            let egress = p.spec.egress.iter().flatten();
            let egress = egress.map(|r| egress_terms(res, p, r).unwrap()).collect();
            (ingress, egress)
        })
    }

    /// Whether any of `terms` matches TCP from `src` to `dst`:`dport`.
    fn hits(terms: &[Term], src: &str, dst: &str, dport: u16) -> bool {
        let (src, dst) = (src.parse().unwrap(), dst.parse().unwrap());
        terms.iter().any(|t| {
            t.src.contains(&src)
                && t.dst.contains(&dst)
                && t.proto.contains(6)
                && t.dport.contains(u128::from(dport))
        })
    }

    #[test]
    fn peers_select_endpoints_of_the_policy_namespace() {
        let (i, _) = terms(
            "  podSelector: {}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: web}}}]\n",
        );
        assert!(hits(&i[0], "10.0.0.1", "10.0.0.2", 80));
        assert!(
            !hits(&i[0], "10.0.1.1", "10.0.0.2", 80),
            "another namespace"
        );
        assert!(
            !hits(&i[0], "192.168.0.1", "10.0.0.2", 80),
            "not a network set"
        );
        let (i, _) = terms("  podSelector: {}\n  ingress:\n  - from: [{namespaceSelector: {}}]\n");
        assert!(hits(&i[0], "10.0.1.1", "10.0.0.2", 80));
    }

    #[test]
    fn ip_block_and_port_ranges() {
        let (i, _) = terms(
            "  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.0/24]}}]\n    ports: [{port: 1000, endPort: 1010}]\n",
        );
        assert!(hits(&i[0], "10.0.0.9", "10.0.0.2", 1005));
        assert!(!hits(&i[0], "10.0.1.9", "10.0.0.2", 1005));
        assert!(!hits(&i[0], "10.0.0.9", "10.0.0.2", 1011));
    }

    #[test]
    fn egress_named_ports_are_looked_up_per_peer() {
        let (_, e) = terms(
            "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - to: [{podSelector: {matchLabels: {app: db}}}]\n    ports: [{port: http}]\n",
        );
        assert!(hits(&e[0], "10.0.0.1", "10.0.0.2", 9090));
        assert!(
            !hits(&e[0], "10.0.0.1", "10.0.0.1", 8080),
            "web is not a peer"
        );
        // Ingress: any endpoint declaring the port.
        let (i, _) = terms("  podSelector: {}\n  ingress:\n  - ports: [{port: http}]\n");
        assert!(hits(&i[0], "10.9.9.9", "10.0.0.1", 8080));
        assert!(hits(&i[0], "10.9.9.9", "10.0.0.2", 9090));
        assert!(!hits(&i[0], "10.9.9.9", "10.0.0.2", 8080));
    }
}
