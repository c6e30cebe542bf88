//! Selector and named-port resolution (policy.md section 2 and *Selector
//! scope* of section 3): effective labels, the objects selectors can match,
//! and, cached per selector, the addresses and endpoints a selector picks
//! and the ports a set of endpoints declares under a name.

use ahash::AHashMap as HashMap;
use std::collections::BTreeMap;

use crate::model::{Cidr, Object, PolicySet, Profile, WorkloadEndpoint};
use crate::ranges::{AddrSet, RangeSet};
use crate::selector::{EvalMode, Labels, Selector};

/// Namespace effective labels (section 2).
fn namespace_labels(set: &PolicySet) -> HashMap<String, Labels> {
    let mut m = HashMap::new();
    for l in &set.objects {
        if let Object::Namespace(n) = &l.object {
            m.insert(n.name.clone(), ns_effective(&n.name, Some(&n.labels)));
        }
    }
    m
}

/// Effective labels of namespace `name` with `labels` (section 2).
fn ns_effective(name: &str, labels: Option<&Labels>) -> Labels {
    let mut l = labels.cloned().unwrap_or_default();
    l.insert("projectcalico.org/name".into(), name.to_string());
    l.insert("kubernetes.io/metadata.name".into(), name.to_string());
    l
}

/// WorkloadEndpoint effective labels (section 2).
pub(super) fn wep_effective(w: &WorkloadEndpoint, profiles: &HashMap<&str, &Profile>) -> Labels {
    let mut l = w.labels.clone();
    for p in w.spec.profiles.iter().flatten() {
        if let Some(prof) = profiles.get(p.as_str()) {
            for (k, v) in prof.spec.labels_to_apply.iter().flatten() {
                l.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    l.insert(
        "projectcalico.org/namespace".into(),
        w.name.namespace.clone().unwrap_or_default(),
    );
    l
}

/// NetworkSet effective labels (section 2): its labels, then the
/// `labelsToApply` keys not yet present of Profile `kns.<namespace>` (its
/// parent in Calico), plus its namespace.
pub(crate) fn netset_effective(set: &PolicySet, s: &crate::model::NetworkSet) -> Labels {
    let ns = s.name.namespace.clone().unwrap_or_default();
    let mut l = s.labels.clone();
    let parent = format!("kns.{ns}");
    for o in &set.objects {
        if let Object::Profile(p) = &o.object {
            if p.name == parent {
                for (k, v) in p.spec.labels_to_apply.iter().flatten() {
                    l.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
    l.insert("projectcalico.org/namespace".into(), ns);
    l
}

/// An object selectors can match.
struct SelObj {
    /// `Some(ns)` for namespaced objects.
    namespace: Option<String>,
    labels: Labels,
    nets: AddrSet,
    /// Index into the endpoint list for WorkloadEndpoints.
    wep: Option<usize>,
}

/// Where a Calico rule side's selectors look (section 3, *Selector scope*).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) enum ScopeKey {
    None,
    Ns(String),
    NsSel(Selector),
}

/// A selector's addresses and the endpoints among them; shared, because the
/// same selector (a big network set, say) is used by many rules and copying
/// its ranges for each would dominate compile time.
pub(super) type Selected = std::sync::Arc<(AddrSet, Vec<usize>)>;
/// (protocol, port) → addresses of the endpoints declaring it.
type NamedPorts = BTreeMap<(u8, u16), AddrSet>;

/// Resolves selectors and named ports over one policy set's objects,
/// caching each answer.
pub(super) struct Resolver<'a> {
    objs: Vec<SelObj>,
    ns_labels: HashMap<String, Labels>,
    /// The WorkloadEndpoints, in load order (endpoint indices index it).
    pub(super) weps: Vec<&'a WorkloadEndpoint>,
    /// (scope, selector, notSelector) → (address set, admitted endpoint
    /// indices)
    cache: HashMap<(ScopeKey, Option<Selector>, Option<Selector>), Selected>,
    not_cache: HashMap<Selector, AddrSet>,
    k8s_cache: HashMap<(String, Option<Selector>, Option<Selector>), Selected>,
    named_cache: HashMap<(Vec<usize>, String), NamedPorts>,
}

impl<'a> Resolver<'a> {
    /// The resolver of `set`, whose WorkloadEndpoints are `weps` with
    /// effective labels `wep_labels`.
    pub(super) fn new(
        set: &PolicySet,
        weps: &[&'a WorkloadEndpoint],
        wep_labels: &[Labels],
    ) -> Resolver<'a> {
        let mut objs = Vec::new();
        for (i, w) in weps.iter().enumerate() {
            objs.push(SelObj {
                namespace: w.name.namespace.clone(),
                labels: wep_labels[i].clone(),
                nets: AddrSet::from_cidrs(w.spec.ip_networks.iter().flatten()),
                wep: Some(i),
            });
        }
        for l in &set.objects {
            match &l.object {
                Object::NetworkSet(s) => {
                    objs.push(SelObj {
                        namespace: s.name.namespace.clone(),
                        labels: netset_effective(set, s),
                        nets: AddrSet::from_cidrs(&s.nets),
                        wep: None,
                    });
                }
                Object::GlobalNetworkSet(s) => objs.push(SelObj {
                    namespace: None,
                    labels: s.labels.clone(),
                    nets: AddrSet::from_cidrs(&s.nets),
                    wep: None,
                }),
                _ => {}
            }
        }
        Resolver {
            objs,
            ns_labels: namespace_labels(set),
            weps: weps.to_vec(),
            cache: HashMap::new(),
            not_cache: HashMap::new(),
            k8s_cache: HashMap::new(),
            named_cache: HashMap::new(),
        }
    }

    /// Effective labels of namespace `ns` (a namespace without a document
    /// has just its two name labels).
    pub(super) fn ns_labels(&self, ns: &str) -> Labels {
        self.ns_labels
            .get(ns)
            .cloned()
            .unwrap_or_else(|| ns_effective(ns, None))
    }

    fn in_scope(&self, scope: &ScopeKey, o: &SelObj) -> bool {
        match scope {
            ScopeKey::None => true,
            ScopeKey::Ns(ns) => o.namespace.as_deref() == Some(ns.as_str()),
            ScopeKey::NsSel(sel) => match &o.namespace {
                Some(ns) => sel.eval(&self.ns_labels(ns), EvalMode::NAMESPACED),
                None => sel.eval(&Labels::new(), EvalMode::GLOBAL_SET),
            },
        }
    }

    /// Objects in `scope` matching `sel` and not matching `not`: their
    /// addresses and the endpoints among them.
    pub(super) fn select(
        &mut self,
        scope: ScopeKey,
        sel: Option<&Selector>,
        not: Option<&Selector>,
    ) -> Selected {
        let key = (scope, sel.cloned(), not.cloned());
        if let Some(v) = self.cache.get(&key) {
            return v.clone();
        }
        let mut set = AddrSet::empty();
        let mut weps = Vec::new();
        let mut ranges4 = Vec::new();
        let mut ranges6 = Vec::new();
        for o in &self.objs {
            if self.in_scope(&key.0, o)
                && sel.is_none_or(|s| s.matches(&o.labels))
                && !not.is_some_and(|s| s.matches(&o.labels))
            {
                ranges4.extend_from_slice(o.nets.v4.ranges());
                ranges6.extend_from_slice(o.nets.v6.ranges());
                if let Some(w) = o.wep {
                    weps.push(w);
                }
            }
        }
        set.v4 = RangeSet::from_ranges(ranges4);
        set.v6 = RangeSet::from_ranges(ranges6);
        let v = std::sync::Arc::new((set, weps));
        self.cache.insert(key, v.clone());
        v
    }

    /// Addresses of no object that `sel` matches, in any namespace or global.
    pub(super) fn not_select(&mut self, sel: &Selector) -> AddrSet {
        if let Some(v) = self.not_cache.get(sel) {
            return v.clone();
        }
        let c = self.select(ScopeKey::None, Some(sel), None).0.complement();
        self.not_cache.insert(sel.clone(), c.clone());
        c
    }

    /// Kubernetes peer selection: endpoints only.
    pub(super) fn k8s_select(
        &mut self,
        ns: &str,
        pod: Option<&Selector>,
        nssel: Option<&Selector>,
    ) -> Selected {
        let key = (ns.to_string(), pod.cloned(), nssel.cloned());
        if let Some(v) = self.k8s_cache.get(&key) {
            return v.clone();
        }
        let mut r4 = Vec::new();
        let mut r6 = Vec::new();
        let mut weps = Vec::new();
        for o in &self.objs {
            let Some(w) = o.wep else { continue };
            let ons = o.namespace.as_deref().unwrap_or("default");
            let ns_ok = match nssel {
                Some(s) => s.matches(&self.ns_labels(ons)),
                None => ons == ns,
            };
            if ns_ok && pod.is_none_or(|s| s.matches(&o.labels)) {
                r4.extend_from_slice(o.nets.v4.ranges());
                r6.extend_from_slice(o.nets.v6.ranges());
                weps.push(w);
            }
        }
        let v = std::sync::Arc::new((
            AddrSet {
                v4: RangeSet::from_ranges(r4),
                v6: RangeSet::from_ranges(r6),
            },
            weps,
        ));
        self.k8s_cache.insert(key, v.clone());
        v
    }

    /// For the endpoints `weps`, the (protocol, number) pairs of their ports
    /// named `name`, each with the addresses of the endpoints declaring it.
    pub(super) fn named(&mut self, weps: &[usize], name: &str) -> BTreeMap<(u8, u16), AddrSet> {
        let key = (weps.to_vec(), name.to_string());
        if let Some(v) = self.named_cache.get(&key) {
            return v.clone();
        }
        let mut m: BTreeMap<(u8, u16), Vec<&Cidr>> = BTreeMap::new();
        for &i in weps {
            let w = self.weps[i];
            for p in w.spec.ports.iter().flatten() {
                if p.name == name {
                    let proto = p.protocol.0;
                    m.entry((proto, p.port))
                        .or_default()
                        .extend(w.spec.ip_networks.iter().flatten());
                }
            }
        }
        let out: BTreeMap<(u8, u16), AddrSet> = m
            .into_iter()
            .map(|(k, v)| (k, AddrSet::from_cidrs(v)))
            .collect();
        self.named_cache.insert(key, out.clone());
        out
    }
}

/// A set's profiles by name and its workload endpoints, in set order.
pub(super) fn profiles_and_endpoints(
    set: &PolicySet,
) -> (HashMap<&str, &Profile>, Vec<&WorkloadEndpoint>) {
    let profiles = set
        .objects
        .iter()
        .filter_map(|l| match &l.object {
            Object::Profile(p) => Some((p.name.as_str(), p)),
            _ => None,
        })
        .collect();
    let weps = set
        .objects
        .iter()
        .filter_map(|l| match &l.object {
            Object::WorkloadEndpoint(w) => Some(w),
            _ => None,
        })
        .collect();
    (profiles, weps)
}

/// Runs `f` with the resolver of `set` (for the translations' tests).
#[cfg(test)]
pub(super) fn with_resolver_of<R>(set: &PolicySet, f: impl FnOnce(&mut Resolver<'_>) -> R) -> R {
    let (profiles, weps) = profiles_and_endpoints(set);
    let labels: Vec<Labels> = weps.iter().map(|w| wep_effective(w, &profiles)).collect();
    f(&mut Resolver::new(set, &weps, &labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod}}
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: base}
spec:
  labelsToApply: {app: base, tier: backend}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web, namespace: prod, labels: {app: web}}
spec:
  ipNetworks: [10.0.0.1/32]
  profiles: [base]
  ports: [{name: http, port: 8080, protocol: TCP}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: db, namespace: dev, labels: {app: db}}
spec:
  ipNetworks: [10.0.1.1/32]
  ports: [{name: http, port: 9090, protocol: TCP}]
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: ext, namespace: prod, labels: {app: web}}
spec:
  nets: [192.168.0.0/16]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: world, labels: {app: web}}
spec:
  nets: [172.16.0.0/12]
"#;

    fn with_resolver(check: impl FnOnce(&mut Resolver<'_>)) {
        let (set, _) = crate::loader::load_str("t.yaml", SET).unwrap();
        with_resolver_of(&set, check);
    }

    fn addrs(c: &[&str]) -> AddrSet {
        let v: Vec<Cidr> = c.iter().map(|s| Cidr::parse(s).unwrap()).collect();
        AddrSet::from_cidrs(&v)
    }

    fn sel(s: &str) -> Selector {
        Selector::parse(s, true).unwrap()
    }

    #[test]
    fn effective_labels() {
        with_resolver(|r| {
            let web = &r.objs[0].labels;
            // A profile's labels never override the endpoint's own.
            assert_eq!(web["app"], "web");
            assert_eq!(web["tier"], "backend");
            assert_eq!(web["projectcalico.org/namespace"], "prod");
            let prod = r.ns_labels("prod");
            assert_eq!(prod["env"], "prod");
            assert_eq!(prod["projectcalico.org/name"], "prod");
            // A namespace without a document: its two name labels.
            let dev = r.ns_labels("dev");
            assert_eq!(dev.len(), 2);
            assert_eq!(dev["kubernetes.io/metadata.name"], "dev");
        });
    }

    #[test]
    fn selection_follows_the_scope() {
        with_resolver(|r| {
            let web = sel("app == 'web'");
            let all = r.select(ScopeKey::None, Some(&web), None);
            assert_eq!(
                all.0,
                addrs(&["10.0.0.1/32", "192.168.0.0/16", "172.16.0.0/12"])
            );
            assert_eq!(all.1, vec![0]);
            let prod = r.select(ScopeKey::Ns("prod".into()), Some(&web), None);
            assert_eq!(prod.0, addrs(&["10.0.0.1/32", "192.168.0.0/16"]));
            // `global()` in a namespaceSelector picks the global sets.
            let global = r.select(ScopeKey::NsSel(sel("global()")), None, None);
            assert_eq!(global.0, addrs(&["172.16.0.0/12"]));
            assert!(global.1.is_empty());
            let not = r.not_select(&web);
            assert!(!not.contains(&"10.0.0.1".parse().unwrap()));
            assert!(not.contains(&"10.0.1.1".parse().unwrap()));
        });
    }

    #[test]
    fn kubernetes_peers_are_endpoints_only() {
        with_resolver(|r| {
            let web = sel("app == 'web'");
            let s = r.k8s_select("prod", Some(&web), None);
            assert_eq!(
                (s.0.clone(), s.1.clone()),
                (addrs(&["10.0.0.1/32"]), vec![0])
            );
            assert!(r.k8s_select("dev", Some(&web), None).1.is_empty());
            let any_ns = r.k8s_select("prod", None, Some(&Selector::All));
            assert_eq!(any_ns.1, vec![0, 1]);
        });
    }

    #[test]
    fn named_ports_of_the_admitted_endpoints() {
        with_resolver(|r| {
            let http = r.named(&[0, 1], "http");
            assert_eq!(
                http.into_iter().collect::<Vec<_>>(),
                vec![
                    ((6, 8080), addrs(&["10.0.0.1/32"])),
                    ((6, 9090), addrs(&["10.0.1.1/32"])),
                ]
            );
            let dns = r.named(&[1], "dns");
            assert!(dns.is_empty());
            let dns = r.named(&[0], "dns");
            assert_eq!(dns.keys().copied().collect::<Vec<_>>(), vec![(17, 53)]);
        });
    }
}
