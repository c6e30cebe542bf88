//! The loader: paths → files → YAML documents → typed, validated objects
//! (policy.md section 1).
//!
//! - A path is a file or a directory; a directory is read recursively, every
//!   `*.yaml` / `*.yml`, in sorted path order.
//! - A file holds documents separated by `---`; a `kind: List` document holds
//!   its objects in `items`; a document that is a YAML sequence is a list of
//!   objects. Empty documents are skipped.
//! - Errors name the file, the **0-based** index of the YAML document in the
//!   file (`doc 0` is the first document) and the field path inside it
//!   (`items[2].spec.ingress[0].destination.ports[1]`).
//! - Every document is first read into a plain tree that keeps repeated
//!   mapping keys, so a repeated key is reported with its path (the typed
//!   pass alone would silently keep one of them), and so that integers wider
//!   than 64 bits in ignored fields do not stop the load.
//! - All problems of a set are collected; a set with any problem is rejected
//!   whole ([`LoadError`] lists them all).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_norway::Value;

use crate::model::*;
use crate::selector::Selector;

/// One problem found while loading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// File.
    pub file: PathBuf,
    /// 0-based document index in the file, when the problem is in one.
    pub doc: Option<usize>,
    /// Field path inside the document (may be empty).
    pub field: String,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(d) = self.doc {
            write!(f, " doc {d}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.msg)
    }
}

/// A policy set that failed to load: every problem found. The set is
/// rejected whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    /// The problems, in the order found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A warning: the set loads, but something is probably not what was meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Where.
    pub origin: Origin,
    /// Field path.
    pub field: String,
    /// What.
    pub msg: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.field, self.msg)
    }
}

/// Load a policy set from files and directories.
pub fn load(paths: &[PathBuf]) -> Result<(PolicySet, Vec<Warning>), LoadError> {
    let mut l = Loader::default();
    let mut files = Vec::new();
    for p in paths {
        l.expand(p, &mut files);
    }
    for f in &files {
        match std::fs::read_to_string(f) {
            Ok(text) => l.load_text(f, &text),
            Err(e) => l.problem(f, None, "", format!("cannot read: {e}")),
        }
    }
    l.finish()
}

/// Load a policy set from YAML text (as if it were the file `name`).
pub fn load_str(name: &str, text: &str) -> Result<(PolicySet, Vec<Warning>), LoadError> {
    let mut l = Loader::default();
    l.load_text(Path::new(name), text);
    l.finish()
}

#[derive(Default)]
struct Loader {
    set: PolicySet,
    problems: Vec<Problem>,
}

impl Loader {
    fn problem(&mut self, file: &Path, doc: Option<usize>, field: &str, msg: String) {
        self.problems.push(Problem {
            file: file.to_path_buf(),
            doc,
            field: field.to_string(),
            msg,
        });
    }

    fn at(&mut self, o: &Origin, field: &str, msg: String) {
        let f = o.field(field);
        self.problem(&o.file, Some(o.doc), &f, msg);
    }

    fn expand(&mut self, p: &Path, out: &mut Vec<PathBuf>) {
        if p.is_dir() {
            let mut stack = vec![p.to_path_buf()];
            let mut found = Vec::new();
            while let Some(d) = stack.pop() {
                match std::fs::read_dir(&d) {
                    Ok(rd) => {
                        for e in rd.flatten() {
                            let ep = e.path();
                            if ep.is_dir() {
                                stack.push(ep);
                            } else if ep.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                                found.push(ep);
                            }
                        }
                    }
                    Err(e) => self.problem(&d, None, "", format!("cannot read directory: {e}")),
                }
            }
            found.sort();
            out.extend(found);
        } else if p.exists() {
            out.push(p.to_path_buf());
        } else {
            self.problem(p, None, "", "no such file or directory".into());
        }
    }

    fn load_text(&mut self, file: &Path, text: &str) {
        for (doc, d) in serde_norway::Deserializer::from_str(text).enumerate() {
            let node = match Node::deserialize(d) {
                Ok(n) => n,
                Err(e) => {
                    self.problem(file, Some(doc), "", format!("YAML: {e}"));
                    // The parser cannot resume after a syntax error.
                    return;
                }
            };
            if let Err((path, key)) = node.check_duplicates(&mut String::new()) {
                self.problem(
                    file,
                    Some(doc),
                    &path,
                    format!("duplicate key `{key}` (YAML mapping keys must be unique)"),
                );
                continue;
            }
            let value = node.into_value();
            let origin = Origin {
                file: file.to_path_buf(),
                doc,
                prefix: String::new(),
            };
            match value {
                Value::Null => {}
                Value::Sequence(items) => {
                    for (i, v) in items.into_iter().enumerate() {
                        let o = Origin {
                            prefix: format!("[{i}]"),
                            ..origin.clone()
                        };
                        self.object(&o, v);
                    }
                }
                v => self.document(&origin, v),
            }
        }
    }

    /// A top-level document: an object or a `kind: List`.
    fn document(&mut self, origin: &Origin, v: Value) {
        if get_str(&v, "kind") == Some("List") {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields, rename_all = "camelCase")]
            struct List {
                #[serde(default)]
                api_version: Option<String>,
                #[allow(dead_code)]
                kind: String,
                #[serde(default)]
                items: Option<Vec<Value>>,
                #[serde(default)]
                metadata: Ignored,
            }
            let l: List = match serde_path_to_error::deserialize(v) {
                Ok(l) => l,
                Err(e) => {
                    let p = e.path().to_string();
                    return self.at(origin, &clean_path(&p), e.into_inner().to_string());
                }
            };
            let _ = (l.api_version, l.metadata);
            for (i, item) in l.items.into_iter().flatten().enumerate() {
                let o = Origin {
                    prefix: format!("items[{i}]"),
                    ..origin.clone()
                };
                self.object(&o, item);
            }
        } else {
            self.object(origin, v);
        }
    }

    fn object(&mut self, o: &Origin, v: Value) {
        if !v.is_mapping() {
            return self.at(
                o,
                "",
                "a document must be a mapping with apiVersion and kind".into(),
            );
        }
        let Some(api) = get_str(&v, "apiVersion").map(str::to_string) else {
            return self.at(o, "apiVersion", "missing apiVersion".into());
        };
        let Some(kind) = get_str(&v, "kind").map(str::to_string) else {
            return self.at(o, "kind", "missing kind".into());
        };
        let r = match (api.as_str(), kind.as_str()) {
            ("projectcalico.org/v3", "Tier") => self.tier(o, v),
            ("projectcalico.org/v3", "GlobalNetworkPolicy") => self.calico_policy(o, v, true),
            ("projectcalico.org/v3", "NetworkPolicy") => self.calico_policy(o, v, false),
            ("projectcalico.org/v3", "Profile") => self.profile(o, v),
            ("projectcalico.org/v3", "WorkloadEndpoint") => self.wep(o, v),
            ("projectcalico.org/v3", "GlobalNetworkSet") => self.netset(o, v, true),
            ("projectcalico.org/v3", "NetworkSet") => self.netset(o, v, false),
            ("networking.k8s.io/v1", "NetworkPolicy") => self.k8s_policy(o, v),
            ("v1", "Namespace") => self.namespace(o, v),
            ("projectcalico.org/v3", k @ ("HostEndpoint" | "StagedNetworkPolicy" | "StagedGlobalNetworkPolicy" | "StagedKubernetesNetworkPolicy")) => {
                Err(("kind".to_string(), format!("kind {k} is not supported (policy.md section 6)")))
            }
            ("crd.projectcalico.org/v1", _) => Err((
                "apiVersion".to_string(),
                "apiVersion crd.projectcalico.org/v1 is not supported (policy.md section 6; use projectcalico.org/v3)".to_string(),
            )),
            ("projectcalico.org/v3" | "networking.k8s.io/v1" | "v1", k) => {
                Err(("kind".to_string(), format!("unknown kind {k} for apiVersion {api}")))
            }
            (a, _) => Err(("apiVersion".to_string(), format!("unknown apiVersion {a}"))),
        };
        match r {
            Ok(obj) => self.set.objects.push(Loaded {
                origin: o.clone(),
                object: obj,
            }),
            Err((field, msg)) => self.at(o, &field, msg),
        }
    }

    fn tier(&mut self, _o: &Origin, v: Value) -> Result<Object, (String, String)> {
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

    fn calico_policy(
        &mut self,
        _o: &Origin,
        v: Value,
        global: bool,
    ) -> Result<Object, (String, String)> {
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

    fn profile(&mut self, _o: &Origin, v: Value) -> Result<Object, (String, String)> {
        let d: Doc<ProfileSpec> = typed(v)?;
        let name = d.name()?;
        let spec = d.spec.clone().unwrap_or_default();
        check_rules(&spec.ingress, "spec.ingress")?;
        check_rules(&spec.egress, "spec.egress")?;
        Ok(Object::Profile(Profile { name, spec }))
    }

    fn wep(&mut self, _o: &Origin, v: Value) -> Result<Object, (String, String)> {
        let d: Doc<WorkloadEndpointSpec> = typed(v)?;
        let name = d.name()?;
        let spec = d.spec.clone().unwrap_or_default();
        for (i, p) in spec.ports.iter().flatten().enumerate() {
            if let Some(pr) = p.protocol {
                if !pr.has_ports() {
                    return Err((
                        format!("spec.ports[{i}].protocol"),
                        "a port's protocol must be TCP, UDP, SCTP or UDPLite".into(),
                    ));
                }
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

    fn netset(&mut self, _o: &Origin, v: Value, global: bool) -> Result<Object, (String, String)> {
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

    fn namespace(&mut self, _o: &Origin, v: Value) -> Result<Object, (String, String)> {
        let d: Doc<IgnoredAny> = typed(v)?;
        Ok(Object::Namespace(Namespace {
            name: d.name()?,
            labels: d.labels(),
        }))
    }

    fn k8s_policy(&mut self, _o: &Origin, v: Value) -> Result<Object, (String, String)> {
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

    /// Cross-document checks, then the result.
    fn finish(mut self) -> Result<(PolicySet, Vec<Warning>), LoadError> {
        let mut warnings = Vec::new();
        // Duplicate objects.
        let mut seen: HashMap<(&'static str, ObjectName), Origin> = HashMap::new();
        let mut dups = Vec::new();
        for l in &self.set.objects {
            let key = (l.object.kind(), l.object.name());
            if let Some(first) = seen.get(&key) {
                dups.push((
                    l.origin.clone(),
                    format!(
                        "duplicate {} {:?} (also defined in {}{})",
                        key.0,
                        key.1.to_string(),
                        first,
                        if first.prefix.is_empty() {
                            String::new()
                        } else {
                            format!(" at {}", first.prefix)
                        }
                    ),
                ));
            } else {
                seen.insert(key, l.origin.clone());
            }
        }
        for (o, m) in dups {
            self.at(&o, "metadata.name", m);
        }
        // Tiers named by policies.
        let tiers: BTreeMap<String, ()> = self
            .set
            .objects
            .iter()
            .filter_map(|l| match &l.object {
                Object::Tier(t) => Some((t.name.clone(), ())),
                _ => None,
            })
            .collect();
        let mut missing = Vec::new();
        for l in &self.set.objects {
            if let Object::GlobalNetworkPolicy(p) | Object::NetworkPolicy(p) = &l.object {
                let t = p.tier();
                if t != "default" && !tiers.contains_key(t) {
                    missing.push((l.origin.clone(), format!("tier {t:?} has no Tier document")));
                }
            }
        }
        for (o, m) in missing {
            self.at(&o, "spec.tier", m);
        }
        // Endpoint prefixes: no two endpoints may list the same prefix.
        let mut owners: HashMap<Cidr, (ObjectName, Origin)> = HashMap::new();
        let mut clashes = Vec::new();
        for l in &self.set.objects {
            if let Object::WorkloadEndpoint(w) = &l.object {
                for (i, c) in w.spec.ip_networks.iter().flatten().enumerate() {
                    match owners.get(c) {
                        Some((other, oo)) if *other != w.name => clashes.push((
                            l.origin.clone(),
                            format!("spec.ipNetworks[{i}]"),
                            format!("{c} is also listed by WorkloadEndpoint {other} ({oo})"),
                        )),
                        Some(_) => {}
                        None => {
                            owners.insert(*c, (w.name.clone(), l.origin.clone()));
                        }
                    }
                }
            }
        }
        for (o, f, m) in clashes {
            self.at(&o, &f, m);
        }
        // Profiles named by endpoints.
        let profiles: BTreeMap<&str, ()> = self
            .set
            .objects
            .iter()
            .filter_map(|l| match &l.object {
                Object::Profile(p) => Some((p.name.as_str(), ())),
                _ => None,
            })
            .collect();
        for l in &self.set.objects {
            if let Object::WorkloadEndpoint(w) = &l.object {
                for (i, p) in w.spec.profiles.iter().flatten().enumerate() {
                    if !profiles.contains_key(p.as_str()) {
                        warnings.push(Warning {
                            origin: l.origin.clone(),
                            field: l.origin.field(&format!("spec.profiles[{i}]")),
                            msg: format!("profile {p:?} has no Profile document; skipped"),
                        });
                    }
                }
            }
        }
        if self.problems.is_empty() {
            Ok((self.set, warnings))
        } else {
            Err(LoadError {
                problems: self.problems,
            })
        }
    }
}

fn unsupported(feature: &str) -> String {
    format!("{feature} is not supported (policy.md section 6)")
}

fn check_rules(rules: &Option<Vec<Rule>>, path: &str) -> Result<(), (String, String)> {
    for (i, r) in rules.iter().flatten().enumerate() {
        let p = format!("{path}[{i}]");
        if r.http.is_some() {
            return Err((format!("{p}.http"), unsupported("http match")));
        }
        let mut has_ports = false;
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
            if e.ports.is_some() || e.not_ports.is_some() {
                has_ports = true;
                if !r.protocol.is_some_and(|x| x.has_ports()) {
                    let f = if e.ports.is_some() {
                        "ports"
                    } else {
                        "notPorts"
                    };
                    return Err((
                        format!("{p}.{side}.{f}"),
                        "ports are only allowed with protocol TCP, UDP, SCTP or UDPLite".into(),
                    ));
                }
            }
        }
        let _ = has_ports;
        for (f, m) in [("icmp", &r.icmp), ("notICMP", &r.not_icmp)] {
            if m.is_some() && !r.protocol.is_some_and(|x| x.is_icmp()) {
                return Err((
                    format!("{p}.{f}"),
                    format!("{f} needs protocol ICMP or ICMPv6"),
                ));
            }
        }
    }
    Ok(())
}

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

fn typed<T: de::DeserializeOwned>(v: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let p = clean_path(&e.path().to_string());
        (p, e.into_inner().to_string())
    })
}

/// serde_path_to_error prints `.` for the root and `?` for unknown
/// positions; keep paths readable.
fn clean_path(p: &str) -> String {
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.as_mapping()?.get(key)?.as_str()
}

/// A YAML document as a plain tree that keeps repeated keys.
enum Node {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    /// An integer wider than 64 bits, kept as text.
    Big(String),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    fn key_text(&self) -> String {
        match self {
            Node::Null => "null".into(),
            Node::Bool(b) => b.to_string(),
            Node::I64(n) => n.to_string(),
            Node::U64(n) => n.to_string(),
            Node::F64(n) => n.to_string(),
            Node::Big(s) | Node::Str(s) => s.clone(),
            Node::Seq(_) | Node::Map(_) => "<complex key>".into(),
        }
    }

    fn check_duplicates(&self, path: &mut String) -> Result<(), (String, String)> {
        match self {
            Node::Seq(items) => {
                for (i, n) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    n.check_duplicates(path)?;
                    path.truncate(len);
                }
            }
            Node::Map(entries) => {
                let mut seen = std::collections::HashSet::new();
                for (k, v) in entries {
                    let kt = k.key_text();
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&kt);
                    if !seen.insert(kt.clone()) {
                        return Err((path.clone(), kt));
                    }
                    v.check_duplicates(path)?;
                    path.truncate(len);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn into_value(self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::I64(n) => Value::Number(n.into()),
            Node::U64(n) => Value::Number(n.into()),
            Node::F64(n) => Value::Number(n.into()),
            Node::Big(s) | Node::Str(s) => Value::String(s),
            Node::Seq(items) => Value::Sequence(items.into_iter().map(Node::into_value).collect()),
            Node::Map(entries) => {
                let mut m = serde_norway::Mapping::new();
                for (k, v) in entries {
                    m.insert(k.into_value(), v.into_value());
                }
                Value::Mapping(m)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Node, D2::Error> {
                Node::deserialize(d)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
                Ok(Node::I64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
                Ok(Node::U64(v))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
                Ok(Node::Big(v.to_string()))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
                Ok(Node::Big(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
                Ok(Node::F64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some(n) = a.next_element::<Node>()? {
                    out.push(n);
                }
                Ok(Node::Seq(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = a.next_entry::<Node, Node>()? {
                    out.push((k, v));
                }
                Ok(Node::Map(out))
            }
            fn visit_enum<A: de::EnumAccess<'de>>(self, _a: A) -> Result<Node, A::Error> {
                Err(de::Error::custom("YAML tags are not supported"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        load_str("t.yaml", text).unwrap_err().to_string()
    }

    #[test]
    fn duplicate_key_is_named() {
        let e = err("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n");
        assert_eq!(
            e,
            "t.yaml doc 0: metadata.name: duplicate key `name` (YAML mapping keys must be unique)"
        );
    }

    #[test]
    fn port_error_has_path() {
        let e = err(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a}\n---\n\
             apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: b}\nspec:\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [80, \"80-90\"]\n",
        );
        assert_eq!(
            e,
            "t.yaml doc 1: spec.ingress[0].destination.ports[1]: \"80-90\" is not a port or range (use \"80:90\")"
        );
    }

    #[test]
    fn list_and_sequence_prefixes() {
        let e = err("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: b, labels: {x: 1}}\n");
        assert!(
            e.starts_with("t.yaml doc 0: items[1].metadata.labels.x: "),
            "{e}"
        );
        let e = err("- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n  spex: 1\n");
        assert!(
            e.starts_with("t.yaml doc 0: [0].spex: unknown field `spex`"),
            "{e}"
        );
    }

    #[test]
    fn nulls_and_empties_are_absent() {
        let (s, _) = load_str(
            "t.yaml",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec:\n  podSelector:\n    matchLabels:\n  egress:\n  - to:\n    ports:\n    - port: 53\n      protocol: UDP\n",
        )
        .unwrap();
        let Object::K8sNetworkPolicy(p) = &s.objects[0].object else {
            panic!()
        };
        assert_eq!(p.pod_selector, Selector::All);
        assert!(p.spec.egress.as_ref().unwrap()[0].to.is_none());
        assert_eq!(p.name.namespace.as_deref(), Some("default"));
    }
}
