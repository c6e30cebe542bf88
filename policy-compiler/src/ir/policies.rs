//! The policies of a set in evaluation order and where they apply
//! (policy.md section 3, *Order* and *Applies to*; section 4 for how a
//! Kubernetes policy takes part).

use ahash::AHashMap as HashMap;

use super::types::{Dir, IrError};
use crate::model::{CalicoPolicy, K8sPolicy, Object, PolicySet, Tier, TierAction};
use crate::selector::Labels;

/// Tier order key: ordered tiers by order, then unordered; ties by name.
fn tier_sort_key(t: &Tier) -> (u8, f64, String) {
    match t.order {
        Some(o) => (0, o, t.name.clone()),
        None => (1, 0.0, t.name.clone()),
    }
}

/// A policy of any kind.
#[derive(Clone, Copy)]
pub(super) enum PolicyRef<'a> {
    /// Calico GNP (`namespace == None`) or NP.
    Calico(&'a CalicoPolicy),
    /// Kubernetes NP.
    K8s(&'a K8sPolicy),
}

impl PolicyRef<'_> {
    /// The key naming it in verdicts.
    pub(super) fn key(&self) -> String {
        match self {
            PolicyRef::Calico(p) => p.key(),
            PolicyRef::K8s(p) => p.key(),
        }
    }
    /// The string equal orders sort on (policy.md section 3, *Order*):
    /// `name/namespace/kind`, the namespace empty for a
    /// GlobalNetworkPolicy.
    pub(super) fn sort_name(&self) -> String {
        let (name, ns, kind) = match self {
            PolicyRef::Calico(p) => match &p.name.namespace {
                Some(ns) => (&p.name.name, ns.as_str(), "NetworkPolicy"),
                None => (&p.name.name, "", "GlobalNetworkPolicy"),
            },
            PolicyRef::K8s(p) => (
                &p.name.name,
                p.name.namespace.as_deref().unwrap_or("default"),
                "KubernetesNetworkPolicy",
            ),
        };
        format!("{name}/{ns}/{kind}")
    }
    /// Its tier (`default` for Kubernetes).
    pub(super) fn tier(&self) -> &str {
        match self {
            PolicyRef::Calico(p) => p.tier(),
            PolicyRef::K8s(_) => "default",
        }
    }
    /// Its order within the tier (1000 for Kubernetes).
    pub(super) fn order(&self) -> Option<f64> {
        match self {
            PolicyRef::Calico(p) => p.spec.order,
            PolicyRef::K8s(_) => Some(1000.0),
        }
    }
    /// Its namespace (`None`: a GlobalNetworkPolicy).
    pub(super) fn namespace(&self) -> Option<&str> {
        match self {
            PolicyRef::Calico(cp) => cp.name.namespace.as_deref(),
            PolicyRef::K8s(kp) => kp.name.namespace.as_deref(),
        }
    }
}

/// Tiers of a set in evaluation order (with the implicit `default`).
pub(super) fn ordered_tiers(set: &PolicySet) -> Vec<Tier> {
    let mut tiers: Vec<Tier> = set
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
    tiers.sort_by(|a, b| {
        let (x, y) = (tier_sort_key(a), tier_sort_key(b));
        x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)).then(x.2.cmp(&y.2))
    });
    tiers
}

/// The set's policies grouped by tier (`tiers`, in order), each group in
/// evaluation order.
pub(super) fn policies_by_tier<'s>(
    set: &'s PolicySet,
    tiers: &[Tier],
) -> Result<Vec<Vec<PolicyRef<'s>>>, IrError> {
    let tier_index: HashMap<&str, usize> = tiers
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let mut by_tier: Vec<Vec<PolicyRef<'_>>> = vec![Vec::new(); tiers.len()];
    for l in &set.objects {
        let p = match &l.object {
            Object::GlobalNetworkPolicy(p) | Object::NetworkPolicy(p) => PolicyRef::Calico(p),
            Object::K8sNetworkPolicy(p) => PolicyRef::K8s(p),
            _ => continue,
        };
        let Some(&ti) = tier_index.get(p.tier()) else {
            return Err(IrError::UnknownTier {
                policy: p.key(),
                tier: p.tier().to_string(),
            });
        };
        by_tier[ti].push(p);
    }
    for v in &mut by_tier {
        // Policies within a tier: by order, missing last, ties by
        // `name/namespace/kind` as Felix sorts them (built once, not per
        // comparison).
        let mut keyed: Vec<(String, PolicyRef<'_>)> =
            v.drain(..).map(|p| (p.sort_name(), p)).collect();
        keyed.sort_by(|(ka, a), (kb, b)| {
            let oa = (a.order().is_none(), a.order().unwrap_or(0.0));
            let ob = (b.order().is_none(), b.order().unwrap_or(0.0));
            oa.0.cmp(&ob.0)
                .then(oa.1.total_cmp(&ob.1))
                .then_with(|| ka.cmp(kb))
        });
        v.extend(keyed.into_iter().map(|(_, p)| p));
    }
    Ok(by_tier)
}

/// policy.md section 3 *Applies to* (and section 4 for Kubernetes).
pub(super) fn applies(
    p: &PolicyRef<'_>,
    dir: Dir,
    ns: &str,
    labels: &Labels,
    ns_labels: &Labels,
) -> bool {
    match p {
        PolicyRef::Calico(cp) => {
            let (i, e) = cp.types();
            let t = if dir == Dir::Egress { e } else { i };
            if !t {
                return false;
            }
            if let Some(pns) = &cp.name.namespace {
                if pns != ns {
                    return false;
                }
            } else if let Some(nss) = &cp.spec.namespace_selector {
                if !nss.matches(ns_labels) {
                    return false;
                }
            }
            cp.spec.selector.as_ref().is_none_or(|s| s.matches(labels))
        }
        PolicyRef::K8s(kp) => {
            let (i, e) = kp.types();
            let t = if dir == Dir::Egress { e } else { i };
            t && kp.name.namespace.as_deref() == Some(ns) && kp.pod_selector.matches(labels)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(yaml: &str) -> PolicySet {
        crate::loader::load_str("t.yaml", yaml).unwrap().0
    }

    fn gnp(name: &str, spec: &str) -> String {
        format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\nspec: {spec}\n---\n")
    }

    fn tier(name: &str, order: Option<u32>) -> String {
        let order = order.map_or(String::new(), |o| format!("order: {o}"));
        format!("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: {name}}}\nspec: {{{order}}}\n---\n")
    }

    #[test]
    fn tiers_by_order_then_unordered_by_name() {
        let s = set(&[
            tier("z", None),
            tier("b", Some(50)),
            tier("a", None),
            tier("c", Some(10)),
        ]
        .concat());
        let names: Vec<String> = ordered_tiers(&s).into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["c", "b", "default", "a", "z"]);
    }

    #[test]
    fn policies_by_order_missing_last_ties_by_key() {
        let yaml = [
            gnp("web", "{}"),
            gnp("late", "{order: 2000}"),
            gnp("none", "{}"),
            gnp("first", "{order: 1}"),
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: prod}\nspec: {podSelector: {}}\n".into(),
        ]
        .concat();
        let s = set(&yaml);
        let tiers = ordered_tiers(&s);
        let by_tier = policies_by_tier(&s, &tiers).unwrap();
        let keys: Vec<String> = by_tier[0].iter().map(PolicyRef::key).collect();
        assert_eq!(
            keys,
            ["first", "prod/knp.default.web", "late", "none", "web"]
        );
    }

    #[test]
    fn a_policy_naming_a_missing_tier_is_an_error() {
        let mut s = set(&[tier("t", Some(1)), gnp("p", "{tier: t}")].concat());
        s.objects.retain(|l| !matches!(l.object, Object::Tier(_)));
        let e = policies_by_tier(&s, &ordered_tiers(&s)).err();
        assert_eq!(
            e,
            Some(IrError::UnknownTier {
                policy: "p".into(),
                tier: "t".into()
            })
        );
    }

    #[test]
    fn applies_to() {
        let yaml = [
            gnp("sel", "{selector: app == 'web', egress: [{action: Allow}]}"),
            gnp("nssel", "{namespaceSelector: env == 'prod'}"),
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: np, namespace: prod}\nspec: {}\n---\n".into(),
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k, namespace: prod}\nspec: {podSelector: {matchLabels: {app: web}}}\n".into(),
        ]
        .concat();
        let s = set(&yaml);
        let tiers = ordered_tiers(&s);
        let ps = &policies_by_tier(&s, &tiers).unwrap()[0];
        let find = |k: &str| ps.iter().find(|p| p.key() == k).unwrap();
        let web: Labels = [("app".to_string(), "web".to_string())].into();
        let prod: Labels = [("env".to_string(), "prod".to_string())].into();
        let none = Labels::new();
        // Egress rules only: types [Egress].
        assert!(applies(find("sel"), Dir::Egress, "dev", &web, &none));
        assert!(!applies(find("sel"), Dir::Ingress, "dev", &web, &none));
        assert!(!applies(find("sel"), Dir::Egress, "dev", &none, &none));
        assert!(applies(find("nssel"), Dir::Ingress, "x", &none, &prod));
        assert!(!applies(find("nssel"), Dir::Ingress, "x", &none, &none));
        assert!(applies(find("prod/np"), Dir::Ingress, "prod", &none, &none));
        assert!(!applies(find("prod/np"), Dir::Ingress, "dev", &none, &none));
        let k = find("prod/knp.default.k");
        assert!(applies(k, Dir::Ingress, "prod", &web, &none));
        assert!(!applies(k, Dir::Egress, "prod", &web, &none));
        assert!(!applies(k, Dir::Ingress, "prod", &none, &none));
    }
}
