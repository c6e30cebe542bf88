//! One document into a typed object: each kind's fields checked as policy.md
//! section 1 and section 6 (unsupported features rejected by name) require,
//! errors carrying the field path.

use std::collections::BTreeMap;

use serde::de::{self, IgnoredAny};
use serde::Deserialize;
use serde_norway::Value;

use crate::model::*;
use crate::selector::Selector;

/// A `Tier`.
pub(super) fn tier(v: Value) -> Result<Object, (String, String)> {
    let d: Doc<TierSpec> = typed(v)?;
    let name = d.name()?;
    let spec = d.spec.unwrap_or_default();
    if name == "default" && spec.order.is_some_and(|o| o != 1_000_000.0) {
        return Err((
            "spec.order".into(),
            "the tier `default` always has order 1000000".into(),
        ));
    }
    if spec.order.is_some_and(|o| !o.is_finite()) {
        return Err(("spec.order".into(), "order must be a finite number".into()));
    }
    let is_default = name == "default";
    Ok(Object::Tier(Tier {
        name,
        order: if spec.order.is_none() && is_default {
            Some(1_000_000.0)
        } else {
            spec.order
        },
        default_action: spec.default_action.unwrap_or(TierAction::Deny),
    }))
}

/// A `GlobalNetworkPolicy` (`global`) or Calico `NetworkPolicy`.
pub(super) fn calico_policy(v: Value, global: bool) -> Result<Object, (String, String)> {
    let d: Doc<PolicySpec> = typed(v)?;
    let name = d.name()?;
    let spec = d.spec.clone().unwrap_or_default();
    if name.starts_with("knp.default.") {
        return Err((
                "metadata.name".into(),
                format!("{name:?}: names starting with `knp.default.` are reserved for Kubernetes NetworkPolicies"),
            ));
    }
    for (present, field) in [
        (spec.do_not_track.is_some(), "doNotTrack"),
        (spec.pre_dnat.is_some(), "preDNAT"),
        (spec.apply_on_forward.is_some(), "applyOnForward"),
        (
            spec.service_account_selector.is_some(),
            "serviceAccountSelector",
        ),
        (spec.performance_hints.is_some(), "performanceHints"),
    ] {
        if present {
            return Err((format!("spec.{field}"), unsupported(field)));
        }
    }
    if !global && spec.namespace_selector.is_some() {
        return Err((
            "spec.namespaceSelector".into(),
            "namespaceSelector is only allowed in a GlobalNetworkPolicy".into(),
        ));
    }
    if spec.order.is_some_and(|o| !o.is_finite()) {
        return Err(("spec.order".into(), "order must be a finite number".into()));
    }
    check_rules(&spec.ingress, "spec.ingress")?;
    check_rules(&spec.egress, "spec.egress")?;
    let pname = ObjectName {
        namespace: if global { None } else { Some(d.namespace()) },
        name,
    };
    let p = CalicoPolicy { name: pname, spec };
    Ok(if global {
        Object::GlobalNetworkPolicy(p)
    } else {
        Object::NetworkPolicy(p)
    })
}

/// A `Profile`.
pub(super) fn profile(v: Value) -> Result<Object, (String, String)> {
    let d: Doc<ProfileSpec> = typed(v)?;
    let name = d.name()?;
    let spec = d.spec.clone().unwrap_or_default();
    check_rules(&spec.ingress, "spec.ingress")?;
    check_rules(&spec.egress, "spec.egress")?;
    Ok(Object::Profile(Profile { name, spec }))
}

/// A `WorkloadEndpoint`.
pub(super) fn wep(v: Value) -> Result<Object, (String, String)> {
    let d: Doc<WorkloadEndpointSpec> = typed(v)?;
    let name = d.name()?;
    let spec = d.spec.clone().unwrap_or_default();
    for (i, c) in spec.ip_networks.iter().flatten().enumerate() {
        let host = if c.is_v4() { 32 } else { 128 };
        if c.len != host {
            return Err((
                format!("spec.ipNetworks[{i}]"),
                format!("{c} is not a single address (/{host}): an endpoint's ipNetworks are its addresses, as in Calico"),
            ));
        }
    }
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        if !matches!(p.protocol.0, 6 | 17 | 132) {
            return Err((
                format!("spec.ports[{i}].protocol"),
                "a port's protocol must be TCP, UDP or SCTP".into(),
            ));
        }
    }
    Ok(Object::WorkloadEndpoint(WorkloadEndpoint {
        name: ObjectName {
            namespace: Some(d.namespace()),
            name,
        },
        labels: d.labels(),
        spec,
    }))
}

/// A `GlobalNetworkSet` (`global`) or `NetworkSet`.
pub(super) fn netset(v: Value, global: bool) -> Result<Object, (String, String)> {
    let d: Doc<NetworkSetSpec> = typed(v)?;
    let name = d.name()?;
    let spec = d.spec.clone().unwrap_or_default();
    if spec.allowed_egress_domains.is_some() {
        return Err((
            "spec.allowedEgressDomains".into(),
            unsupported("allowedEgressDomains"),
        ));
    }
    let s = NetworkSet {
        name: ObjectName {
            namespace: if global { None } else { Some(d.namespace()) },
            name,
        },
        labels: d.labels(),
        nets: spec.nets.unwrap_or_default(),
    };
    Ok(if global {
        Object::GlobalNetworkSet(s)
    } else {
        Object::NetworkSet(s)
    })
}

/// A `Namespace`.
pub(super) fn namespace(v: Value) -> Result<Object, (String, String)> {
    let d: Doc<IgnoredAny> = typed(v)?;
    Ok(Object::Namespace(Namespace {
        name: d.name()?,
        labels: d.labels(),
    }))
}

/// A Kubernetes `NetworkPolicy`.
pub(super) fn k8s_policy(v: Value) -> Result<Object, (String, String)> {
    let d: Doc<K8sPolicySpec> = typed(v)?;
    let name = d.name()?;
    let spec = d.spec.clone().unwrap_or_default();
    let pod_selector = match &spec.pod_selector {
        Some(ls) => ls
            .to_selector()
            .map_err(|(p, m)| (format!("spec.podSelector.{p}"), m))?,
        None => Selector::All,
    };
    for (i, r) in spec.ingress.iter().flatten().enumerate() {
        check_k8s_rule(&r.from, &r.ports, &format!("spec.ingress[{i}]"), "from")?;
    }
    for (i, r) in spec.egress.iter().flatten().enumerate() {
        check_k8s_rule(&r.to, &r.ports, &format!("spec.egress[{i}]"), "to")?;
    }
    Ok(Object::K8sNetworkPolicy(K8sPolicy {
        name: ObjectName {
            namespace: Some(d.namespace()),
            name,
        },
        pod_selector,
        spec,
    }))
}

/// The message for an unsupported feature.
fn unsupported(feature: &str) -> String {
    format!("{feature} is not supported (policy.md section 6)")
}

/// The checks of Calico rules the typed pass cannot make.
fn check_rules(rules: &Option<Vec<Rule>>, path: &str) -> Result<(), (String, String)> {
    for (i, r) in rules.iter().flatten().enumerate() {
        let p = format!("{path}[{i}]");
        if r.http.is_some() {
            return Err((format!("{p}.http"), unsupported("http match")));
        }
        for (side, e) in [("source", &r.source), ("destination", &r.destination)] {
            let Some(e) = e else { continue };
            if e.service_accounts.is_some() {
                return Err((
                    format!("{p}.{side}.serviceAccounts"),
                    unsupported("serviceAccounts match"),
                ));
            }
            if e.services.is_some() {
                return Err((
                    format!("{p}.{side}.services"),
                    unsupported("services match"),
                ));
            }
            if e.domains.is_some() {
                return Err((
                    format!("{p}.{side}.domains"),
                    unsupported("domains (Calico Enterprise)"),
                ));
            }
            let port_proto = r
                .protocol
                .is_some_and(|x| matches!(x.number.0, 6 | 17 | 132));
            if (e.ports.is_some() || e.not_ports.is_some()) && !port_proto {
                let f = if e.ports.is_some() {
                    "ports"
                } else {
                    "notPorts"
                };
                return Err((
                    format!("{p}.{side}.{f}"),
                    "ports are only allowed with protocol TCP, UDP or SCTP".into(),
                ));
            }
        }
        for (f, m) in [("icmp", &r.icmp), ("notICMP", &r.not_icmp)] {
            if m.is_some() && r.protocol.and_then(|x| x.ip_version()).is_none() {
                return Err((
                    format!("{p}.{f}"),
                    format!("{f} needs protocol ICMP or ICMPv6 (by name)"),
                ));
            }
        }
        if let Some(v) = r.ip_version {
            for (f, pr) in [("protocol", r.protocol), ("notProtocol", r.not_protocol)] {
                if let Some(pv) = pr.and_then(|x| x.ip_version()) {
                    if pv != v {
                        return Err((
                            format!("{p}.{f}"),
                            format!("{} is IPv{pv} only but ipVersion is {v}", pr_name(pv)),
                        ));
                    }
                }
            }
        }
        // All CIDRs of a rule are of one family, and of its ipVersion.
        let mut family: Option<(u8, String)> = r.ip_version.map(|v| (v, "ipVersion".into()));
        for (side, e) in [("source", &r.source), ("destination", &r.destination)] {
            let Some(e) = e else { continue };
            for (f, list) in [("nets", &e.nets), ("notNets", &e.not_nets)] {
                for (j, c) in list.iter().flatten().enumerate() {
                    let v = if c.is_v4() { 4 } else { 6 };
                    let here = format!("{p}.{side}.{f}[{j}]");
                    match &family {
                        Some((fv, what)) if *fv != v => {
                            return Err((
                                here,
                                format!("{c} is IPv{v} but {what} is IPv{fv}: a rule's CIDRs are of one family"),
                            ))
                        }
                        Some(_) => {}
                        None => family = Some((v, format!("{side}.{f}[{j}]"))),
                    }
                }
            }
        }
    }
    Ok(())
}

/// `ICMP` or `ICMPv6`, by the version it implies.
fn pr_name(v: u8) -> &'static str {
    if v == 4 {
        "ICMP"
    } else {
        "ICMPv6"
    }
}

/// The checks of a Kubernetes rule's peers and ports the typed pass cannot
/// make.
fn check_k8s_rule(
    peers: &Option<Vec<K8sPeer>>,
    ports: &Option<Vec<K8sPort>>,
    path: &str,
    peer_field: &str,
) -> Result<(), (String, String)> {
    for (j, peer) in peers.iter().flatten().enumerate() {
        let pp = format!("{path}.{peer_field}[{j}]");
        let sel = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
        if peer.ip_block.is_some() && sel {
            return Err((
                pp,
                "ipBlock cannot be combined with podSelector or namespaceSelector".into(),
            ));
        }
        if peer.ip_block.is_none() && !sel {
            return Err((
                pp,
                "a peer needs podSelector, namespaceSelector or ipBlock".into(),
            ));
        }
        if let Some(s) = &peer.pod_selector {
            s.to_selector()
                .map_err(|(p, m)| (format!("{pp}.podSelector.{p}"), m))?;
        }
        if let Some(s) = &peer.namespace_selector {
            s.to_selector()
                .map_err(|(p, m)| (format!("{pp}.namespaceSelector.{p}"), m))?;
        }
        if let Some(b) = &peer.ip_block {
            for (k, e) in b.except.iter().flatten().enumerate() {
                if e.is_v4() != b.cidr.is_v4() {
                    return Err((
                        format!("{pp}.ipBlock.except[{k}]"),
                        format!("{e} is not of the same IP family as {}", b.cidr),
                    ));
                }
            }
        }
    }
    for (j, port) in ports.iter().flatten().enumerate() {
        let pp = format!("{path}.ports[{j}]");
        if let Some(pr) = port.protocol {
            if !matches!(pr.0, 6 | 17 | 132) {
                return Err((
                    format!("{pp}.protocol"),
                    "protocol must be TCP, UDP or SCTP".into(),
                ));
            }
        }
        if let Some(end) = port.end_port {
            match &port.port {
                Some(PortSpec::Range(lo, hi)) if lo == hi => {
                    if end < *lo {
                        return Err((
                            format!("{pp}.endPort"),
                            format!("endPort {end} is below port {lo}"),
                        ));
                    }
                }
                Some(PortSpec::Range(..)) => {
                    return Err((
                        format!("{pp}.port"),
                        "port must be a single number when endPort is set".into(),
                    ));
                }
                Some(PortSpec::Named(_)) => {
                    return Err((
                        format!("{pp}.endPort"),
                        "endPort cannot be used with a named port".into(),
                    ));
                }
                None => return Err((format!("{pp}.endPort"), "endPort needs port".into())),
            }
        } else if let Some(PortSpec::Range(lo, hi)) = &port.port {
            if lo != hi {
                return Err((
                    format!("{pp}.port"),
                    "a Kubernetes port is a number or a name (use endPort for a range)".into(),
                ));
            }
        }
    }
    Ok(())
}

/// The common document shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Doc<S> {
    // `apiVersion`, `kind` and `status` are declared so that
    // `deny_unknown_fields` accepts them; the caller has read the first two.
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default = "none")]
    spec: Option<S>,
    #[serde(default)]
    #[allow(dead_code)]
    status: Ignored,
}

fn none<S>() -> Option<S> {
    None
}

impl<S> Doc<S> {
    fn metadata_name(&self) -> Option<&str> {
        self.metadata.as_ref().and_then(|m| m.name.as_deref())
    }
    fn name(&self) -> Result<String, (String, String)> {
        match self.metadata_name() {
            Some(n) if !n.is_empty() => Ok(n.to_string()),
            _ => Err(("metadata.name".into(), "missing metadata.name".into())),
        }
    }
    fn namespace(&self) -> String {
        self.metadata
            .as_ref()
            .and_then(|m| m.namespace.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_string())
    }
    fn labels(&self) -> BTreeMap<String, String> {
        self.metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default()
    }
}

/// `v` as a `T`, errors with their field path.
fn typed<T: de::DeserializeOwned>(v: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let p = clean_path(&e.path().to_string());
        (p, e.into_inner().to_string())
    })
}

/// serde_path_to_error prints `.` for the root and `?` for unknown
/// positions; keep paths readable.
pub(super) fn clean_path(p: &str) -> String {
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Value {
        serde_norway::from_str(text).unwrap()
    }

    /// The error of a document (field path, message).
    fn err(r: Result<Object, (String, String)>) -> (String, String) {
        r.expect_err("an error")
    }

    #[test]
    fn the_default_tier_keeps_its_order() {
        let t = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: default}\n";
        let Ok(Object::Tier(d)) = tier(value(t)) else {
            panic!("a tier");
        };
        assert_eq!(
            (d.order, d.default_action),
            (Some(1_000_000.0), TierAction::Deny)
        );
        let e = err(tier(value(&format!("{t}spec: {{order: 5}}\n"))));
        assert_eq!(e.0, "spec.order");
    }

    #[test]
    fn calico_policy_checks() {
        let gnp = |meta: &str, spec: &str| {
            value(&format!(
                "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {meta}\nspec: {spec}\n"
            ))
        };
        let e = err(calico_policy(gnp("{name: knp.default.x}", "{}"), true));
        assert_eq!(e.0, "metadata.name");
        let e = err(calico_policy(gnp("{name: p}", "{doNotTrack: true}"), true));
        assert_eq!(e, ("spec.doNotTrack".into(), unsupported("doNotTrack")));
        let e = err(calico_policy(
            gnp("{name: p}", "{namespaceSelector: all()}"),
            false,
        ));
        assert_eq!(e.0, "spec.namespaceSelector");
        let e = err(calico_policy(
            gnp("{name: p}", "{ingress: [{action: Allow, icmp: {type: 8}}]}"),
            true,
        ));
        assert_eq!(e.0, "spec.ingress[0].icmp");
        let Ok(Object::NetworkPolicy(p)) = calico_policy(gnp("{name: p}", "{}"), false) else {
            panic!("a policy");
        };
        assert_eq!(p.key(), "default/p");
    }

    #[test]
    fn kubernetes_ports_and_peers() {
        let knp = |rule: &str| {
            value(&format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: k, namespace: prod}}\nspec:\n  ingress: [{rule}]\n"
            ))
        };
        let e = err(k8s_policy(knp("{ports: [{port: 90, endPort: 80}]}")));
        assert_eq!(
            e,
            (
                "spec.ingress[0].ports[0].endPort".into(),
                "endPort 80 is below port 90".into()
            )
        );
        let e = err(k8s_policy(knp("{ports: [{port: http, endPort: 80}]}")));
        assert_eq!(e.0, "spec.ingress[0].ports[0].endPort");
        let e = err(k8s_policy(knp(
            "{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}",
        )));
        assert_eq!(e.0, "spec.ingress[0].from[0]");
        assert!(k8s_policy(knp("{ports: [{port: 80, endPort: 90}]}")).is_ok());
    }

    #[test]
    fn unknown_fields_carry_their_path() {
        let w = "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {ipNetworks: [10.0.0.1/32], colour: red}\n";
        let e = err(wep(value(w)));
        assert_eq!(e.0, "spec.colour");
        assert!(e.1.starts_with("unknown field `colour`"), "{}", e.1);
    }
}
