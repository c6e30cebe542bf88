//! The typed model: one serde type per kind of policy.md section 1, with
//! unknown fields rejected (`deny_unknown_fields`) and the field types that
//! carry syntax (CIDRs, ports, protocols, actions, selectors) parsed while
//! deserializing, so that a malformed value is reported with its field path.
//!
//! Conventions, all from policy.md section 1:
//! - a key whose value is null is the same as an absent key (every optional
//!   field is an `Option`, and null deserializes to `None`);
//! - an empty list, an empty selector string, an empty `types` list are the
//!   same as absent: the `de_*` helpers below turn them into `None`;
//! - the unsupported features of section 6 are declared as fields of type
//!   [`Unsupported`] so that they are recognised (and rejected by the loader
//!   with an error naming the feature) even when their value is empty;
//! - fields that carry no packet semantics are declared as [`Ignored`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::de::{self, Deserializer, IgnoredAny};
use serde::Deserialize;

use crate::selector::Selector;

pub mod fields;
pub use fields::{
    Action, Cidr, IcmpMatch, PolicyType, PortSpec, Protocol, RuleProtocol, TierAction,
};

/// A field accepted and ignored (no packet semantics).
pub type Ignored = Option<IgnoredAny>;

/// A field of an unsupported feature (policy.md section 6). Present (even
/// empty) means the document is rejected; null means absent.
pub type Unsupported = Option<IgnoredAny>;

/// `metadata` of every document. Fields other than `name`, `namespace` and
/// `labels` are accepted and ignored.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// `metadata.name`.
    #[serde(default)]
    pub name: Option<String>,
    /// `metadata.namespace`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// `metadata.labels`.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// `projectcalico.org/v3` `Tier`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TierSpec {
    /// `spec.order`.
    #[serde(default)]
    pub order: Option<f64>,
    /// `spec.defaultAction` (`Deny` when absent).
    #[serde(default)]
    pub default_action: Option<TierAction>,
}

/// `spec` of a Calico `GlobalNetworkPolicy` or `NetworkPolicy`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySpec {
    /// `spec.tier` (`default` when absent).
    #[serde(default, deserialize_with = "de_nonempty_string")]
    pub tier: Option<String>,
    /// `spec.order`.
    #[serde(default)]
    pub order: Option<f64>,
    /// `spec.selector` (absent = `all()`).
    #[serde(default, deserialize_with = "de_selector")]
    pub selector: Option<Selector>,
    /// `spec.namespaceSelector` (GlobalNetworkPolicy only).
    #[serde(default, deserialize_with = "de_selector")]
    pub namespace_selector: Option<Selector>,
    /// `spec.types`.
    #[serde(default, deserialize_with = "de_vec")]
    pub types: Option<Vec<PolicyType>>,
    /// `spec.ingress`.
    #[serde(default, deserialize_with = "de_vec")]
    pub ingress: Option<Vec<Rule>>,
    /// `spec.egress`.
    #[serde(default, deserialize_with = "de_vec")]
    pub egress: Option<Vec<Rule>>,
    /// Unsupported: `doNotTrack`.
    #[serde(default)]
    pub do_not_track: Unsupported,
    /// Unsupported: `preDNAT`.
    #[serde(default, rename = "preDNAT")]
    pub pre_dnat: Unsupported,
    /// Unsupported: `applyOnForward`.
    #[serde(default)]
    pub apply_on_forward: Unsupported,
    /// Unsupported: `serviceAccountSelector`.
    #[serde(default)]
    pub service_account_selector: Unsupported,
    /// Unsupported: `performanceHints`.
    #[serde(default)]
    pub performance_hints: Unsupported,
}

/// A Calico rule (policy.md section 3).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// `action` (required).
    pub action: Action,
    /// `ipVersion`: 4 or 6.
    #[serde(default, deserialize_with = "fields::de_ip_version")]
    pub ip_version: Option<u8>,
    /// `protocol`.
    #[serde(default)]
    pub protocol: Option<RuleProtocol>,
    /// `notProtocol`.
    #[serde(default)]
    pub not_protocol: Option<RuleProtocol>,
    /// `icmp`.
    #[serde(default)]
    pub icmp: Option<IcmpMatch>,
    /// `notICMP`.
    #[serde(default, rename = "notICMP")]
    pub not_icmp: Option<IcmpMatch>,
    /// `source`.
    #[serde(default)]
    pub source: Option<EntityRule>,
    /// `destination`.
    #[serde(default)]
    pub destination: Option<EntityRule>,
    /// A rule's `metadata` (annotations): ignored.
    #[serde(default)]
    pub metadata: Ignored,
    /// Unsupported: `http`.
    #[serde(default)]
    pub http: Unsupported,
}

/// `source` / `destination` of a Calico rule.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntityRule {
    /// `nets`.
    #[serde(default, deserialize_with = "de_vec")]
    pub nets: Option<Vec<Cidr>>,
    /// `notNets`.
    #[serde(default, deserialize_with = "de_vec")]
    pub not_nets: Option<Vec<Cidr>>,
    /// `selector`.
    #[serde(default, deserialize_with = "de_selector")]
    pub selector: Option<Selector>,
    /// `notSelector`.
    #[serde(default, deserialize_with = "de_selector")]
    pub not_selector: Option<Selector>,
    /// `namespaceSelector` (may use `global()`).
    #[serde(default, deserialize_with = "de_ns_selector")]
    pub namespace_selector: Option<Selector>,
    /// `ports`.
    #[serde(default, deserialize_with = "de_vec")]
    pub ports: Option<Vec<PortSpec>>,
    /// `notPorts`.
    #[serde(default, deserialize_with = "de_vec")]
    pub not_ports: Option<Vec<PortSpec>>,
    /// Unsupported: `serviceAccounts`.
    #[serde(default)]
    pub service_accounts: Unsupported,
    /// Unsupported: `services`.
    #[serde(default)]
    pub services: Unsupported,
    /// Unsupported (Calico Enterprise): `domains`.
    #[serde(default)]
    pub domains: Unsupported,
}

impl EntityRule {
    /// True when the entity has `selector`, `notSelector` or
    /// `namespaceSelector`.
    pub fn has_selector_fields(&self) -> bool {
        self.selector.is_some() || self.not_selector.is_some() || self.namespace_selector.is_some()
    }
}

/// `projectcalico.org/v3` `Profile` spec.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfileSpec {
    /// `spec.ingress`.
    #[serde(default, deserialize_with = "de_vec")]
    pub ingress: Option<Vec<Rule>>,
    /// `spec.egress`.
    #[serde(default, deserialize_with = "de_vec")]
    pub egress: Option<Vec<Rule>>,
    /// `spec.labelsToApply`.
    #[serde(default)]
    pub labels_to_apply: Option<BTreeMap<String, String>>,
}

/// A named port of a WorkloadEndpoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointPort {
    /// `name`.
    pub name: String,
    /// `port`.
    pub port: u16,
    /// `protocol`: TCP, UDP or SCTP (required, as in Calico).
    pub protocol: Protocol,
    /// Ignored: `hostPort`, `hostIP` (no packet semantics here).
    #[serde(default)]
    pub host_port: Ignored,
    /// Ignored.
    #[serde(default, rename = "hostIP")]
    pub host_ip: Ignored,
}

/// `projectcalico.org/v3` `WorkloadEndpoint` spec.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadEndpointSpec {
    /// `spec.ipNetworks`.
    #[serde(default, deserialize_with = "de_vec")]
    pub ip_networks: Option<Vec<Cidr>>,
    /// `spec.profiles`.
    #[serde(default, deserialize_with = "de_vec")]
    pub profiles: Option<Vec<String>>,
    /// `spec.ports`.
    #[serde(default, deserialize_with = "de_vec")]
    pub ports: Option<Vec<EndpointPort>>,
    /// `spec.interfaceName`.
    #[serde(default)]
    pub interface_name: Option<String>,
    /// Ignored.
    #[serde(default)]
    pub node: Ignored,
    /// Ignored.
    #[serde(default)]
    pub orchestrator: Ignored,
    /// Ignored.
    #[serde(default)]
    pub workload: Ignored,
    /// Ignored.
    #[serde(default)]
    pub pod: Ignored,
    /// Ignored.
    #[serde(default)]
    pub endpoint: Ignored,
    /// Ignored.
    #[serde(default, rename = "containerID")]
    pub container_id: Ignored,
    /// Ignored.
    #[serde(default)]
    pub mac: Ignored,
    /// Ignored.
    #[serde(default, rename = "ipNATs")]
    pub ip_nats: Ignored,
    /// Ignored.
    #[serde(default)]
    pub ipv4_gateway: Ignored,
    /// Ignored.
    #[serde(default)]
    pub ipv6_gateway: Ignored,
    /// Ignored.
    #[serde(default)]
    pub service_account_name: Ignored,
    /// Ignored.
    #[serde(default)]
    pub allow_spoofed_source_prefixes: Ignored,
}

/// `spec` of a `GlobalNetworkSet` or `NetworkSet`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkSetSpec {
    /// `spec.nets`.
    #[serde(default, deserialize_with = "de_vec")]
    pub nets: Option<Vec<Cidr>>,
    /// Unsupported (Calico Enterprise): `allowedEgressDomains`.
    #[serde(default)]
    pub allowed_egress_domains: Unsupported,
}

/// Kubernetes `LabelSelector`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    /// `matchLabels`.
    #[serde(default)]
    pub match_labels: Option<BTreeMap<String, String>>,
    /// `matchExpressions`.
    #[serde(default, deserialize_with = "de_vec")]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// `key`.
    pub key: String,
    /// `operator`.
    pub operator: LabelOperator,
    /// `values`.
    #[serde(default)]
    pub values: Option<Vec<String>>,
}

/// `matchExpressions[].operator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum LabelOperator {
    /// `In`.
    In,
    /// `NotIn` (true when the key is absent).
    NotIn,
    /// `Exists`.
    Exists,
    /// `DoesNotExist`.
    DoesNotExist,
}

impl LabelSelector {
    /// The selector as a Calico selector AST (all terms ANDed; `{}` is
    /// `all()`). Errors name the problem; the caller adds the path.
    pub fn to_selector(&self) -> Result<Selector, (String, String)> {
        let mut parts = Vec::new();
        for (k, v) in self.match_labels.iter().flatten() {
            parts.push(Selector::Eq(k.clone(), v.clone()));
        }
        for (i, r) in self.match_expressions.iter().flatten().enumerate() {
            let vals = r.values.clone().unwrap_or_default();
            let p = format!("matchExpressions[{i}]");
            parts.push(match r.operator {
                LabelOperator::In | LabelOperator::NotIn if vals.is_empty() => {
                    return Err((p, format!("operator {:?} needs values", r.operator)));
                }
                LabelOperator::Exists | LabelOperator::DoesNotExist if !vals.is_empty() => {
                    return Err((p, format!("operator {:?} takes no values", r.operator)));
                }
                LabelOperator::In => Selector::In(r.key.clone(), vals),
                LabelOperator::NotIn => Selector::NotIn(r.key.clone(), vals),
                LabelOperator::Exists => Selector::Has(r.key.clone()),
                LabelOperator::DoesNotExist => {
                    Selector::Not(Box::new(Selector::Has(r.key.clone())))
                }
            });
        }
        Ok(Selector::and_all(parts))
    }
}

/// Kubernetes `NetworkPolicy` spec.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct K8sPolicySpec {
    /// `podSelector` (absent or null = `{}`).
    #[serde(default)]
    pub pod_selector: Option<LabelSelector>,
    /// `policyTypes`.
    #[serde(default, deserialize_with = "de_vec")]
    pub policy_types: Option<Vec<PolicyType>>,
    /// `ingress`.
    #[serde(default, deserialize_with = "de_vec")]
    pub ingress: Option<Vec<K8sIngressRule>>,
    /// `egress`.
    #[serde(default, deserialize_with = "de_vec")]
    pub egress: Option<Vec<K8sEgressRule>>,
}

/// A Kubernetes ingress rule. `{}` is a valid rule (allows everything).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct K8sIngressRule {
    /// `from` peers (absent/null/empty = every source).
    #[serde(default, deserialize_with = "de_vec")]
    pub from: Option<Vec<K8sPeer>>,
    /// `ports` (absent/null/empty = every port).
    #[serde(default, deserialize_with = "de_vec")]
    pub ports: Option<Vec<K8sPort>>,
}

/// A Kubernetes egress rule.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct K8sEgressRule {
    /// `to` peers (absent/null/empty = every destination).
    #[serde(default, deserialize_with = "de_vec")]
    pub to: Option<Vec<K8sPeer>>,
    /// `ports`.
    #[serde(default, deserialize_with = "de_vec")]
    pub ports: Option<Vec<K8sPort>>,
}

/// A Kubernetes `NetworkPolicyPeer`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct K8sPeer {
    /// `podSelector`.
    #[serde(default)]
    pub pod_selector: Option<LabelSelector>,
    /// `namespaceSelector`.
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    /// `ipBlock`.
    #[serde(default)]
    pub ip_block: Option<IpBlock>,
}

/// `ipBlock`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpBlock {
    /// `cidr`.
    pub cidr: Cidr,
    /// `except`.
    #[serde(default, deserialize_with = "de_vec")]
    pub except: Option<Vec<Cidr>>,
}

/// A Kubernetes `NetworkPolicyPort`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct K8sPort {
    /// `protocol` (TCP when absent).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// `port`: a number or a named port (absent = every port).
    #[serde(default)]
    pub port: Option<PortSpec>,
    /// `endPort`.
    #[serde(default)]
    pub end_port: Option<u16>,
}

/// Object names and namespaces.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectName {
    /// Namespace (`None` for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// Where a document came from: file, 0-based document index in the file,
/// and the path prefix of the document inside it (`items[3]` for a
/// `kind: List`, `[3]` for a YAML sequence, empty otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub file: std::path::PathBuf,
    /// 0-based index of the YAML document in the file.
    pub doc: usize,
    /// Path of the object inside the document (`items[2]`), or empty.
    pub prefix: String,
}

impl Origin {
    /// Field path inside the document, with the item prefix.
    pub fn field(&self, path: &str) -> String {
        match (self.prefix.is_empty(), path.is_empty()) {
            (true, _) => path.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) if path.starts_with('[') => format!("{}{path}", self.prefix),
            (false, false) => format!("{}.{path}", self.prefix),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} doc {}", self.file.display(), self.doc)
    }
}

/// A Tier.
#[derive(Clone, Debug)]
pub struct Tier {
    /// Name.
    pub name: String,
    /// `spec.order` (`None` = after all ordered tiers).
    pub order: Option<f64>,
    /// `spec.defaultAction`.
    pub default_action: TierAction,
}

/// A Calico GlobalNetworkPolicy (`namespace == None`) or NetworkPolicy.
#[derive(Clone, Debug)]
pub struct CalicoPolicy {
    /// Name and (for a NetworkPolicy) namespace.
    pub name: ObjectName,
    /// The spec; `tier`, `selector`, `types` normalised by the loader.
    pub spec: PolicySpec,
}

impl CalicoPolicy {
    /// The policy's key (policy.md section 3).
    pub fn key(&self) -> String {
        self.name.to_string()
    }
    /// Tier name.
    pub fn tier(&self) -> &str {
        self.spec.tier.as_deref().unwrap_or("default")
    }
    /// Effective `types` (section 3 defaults).
    pub fn types(&self) -> (bool, bool) {
        match &self.spec.types {
            Some(t) => (
                t.contains(&PolicyType::Ingress),
                t.contains(&PolicyType::Egress),
            ),
            None => {
                let i = self.spec.ingress.is_some();
                let e = self.spec.egress.is_some();
                match (i, e) {
                    (false, true) => (false, true),
                    (true, true) => (true, true),
                    _ => (true, false),
                }
            }
        }
    }
}

/// A Kubernetes NetworkPolicy.
#[derive(Clone, Debug)]
pub struct K8sPolicy {
    /// Name and namespace.
    pub name: ObjectName,
    /// `podSelector` as a selector.
    pub pod_selector: Selector,
    /// The spec as written.
    pub spec: K8sPolicySpec,
}

impl K8sPolicy {
    /// `ns/knp.default.<name>`.
    pub fn key(&self) -> String {
        format!(
            "{}/knp.default.{}",
            self.name.namespace.as_deref().unwrap_or("default"),
            self.name.name
        )
    }
    /// Effective `policyTypes` (section 4 defaults): (ingress, egress).
    pub fn types(&self) -> (bool, bool) {
        match &self.spec.policy_types {
            Some(t) => (
                t.contains(&PolicyType::Ingress),
                t.contains(&PolicyType::Egress),
            ),
            None => (true, self.spec.egress.is_some()),
        }
    }
}

/// A Profile.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Name.
    pub name: String,
    /// Spec.
    pub spec: ProfileSpec,
}

/// A WorkloadEndpoint.
#[derive(Clone, Debug)]
pub struct WorkloadEndpoint {
    /// Namespace and name.
    pub name: ObjectName,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// Spec.
    pub spec: WorkloadEndpointSpec,
}

/// A GlobalNetworkSet (`namespace == None`) or NetworkSet.
#[derive(Clone, Debug)]
pub struct NetworkSet {
    /// Name and namespace.
    pub name: ObjectName,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.nets`.
    pub nets: Vec<Cidr>,
}

/// A Namespace.
#[derive(Clone, Debug)]
pub struct Namespace {
    /// Name.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
}

/// One loaded object.
#[derive(Clone, Debug)]
pub enum Object {
    /// Tier.
    Tier(Tier),
    /// GlobalNetworkPolicy.
    GlobalNetworkPolicy(CalicoPolicy),
    /// Calico NetworkPolicy.
    NetworkPolicy(CalicoPolicy),
    /// Kubernetes NetworkPolicy.
    K8sNetworkPolicy(K8sPolicy),
    /// Profile.
    Profile(Profile),
    /// WorkloadEndpoint.
    WorkloadEndpoint(WorkloadEndpoint),
    /// GlobalNetworkSet.
    GlobalNetworkSet(NetworkSet),
    /// NetworkSet.
    NetworkSet(NetworkSet),
    /// Namespace.
    Namespace(Namespace),
}

impl Object {
    /// The kind as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Tier(_) => "Tier",
            Object::GlobalNetworkPolicy(_) => "GlobalNetworkPolicy",
            Object::NetworkPolicy(_) => "NetworkPolicy",
            Object::K8sNetworkPolicy(_) => "NetworkPolicy (networking.k8s.io/v1)",
            Object::Profile(_) => "Profile",
            Object::WorkloadEndpoint(_) => "WorkloadEndpoint",
            Object::GlobalNetworkSet(_) => "GlobalNetworkSet",
            Object::NetworkSet(_) => "NetworkSet",
            Object::Namespace(_) => "Namespace",
        }
    }

    /// Namespace and name.
    pub fn name(&self) -> ObjectName {
        let cluster = |n: &str| ObjectName {
            namespace: None,
            name: n.to_string(),
        };
        match self {
            Object::Tier(t) => cluster(&t.name),
            Object::GlobalNetworkPolicy(p) | Object::NetworkPolicy(p) => p.name.clone(),
            Object::K8sNetworkPolicy(p) => p.name.clone(),
            Object::Profile(p) => cluster(&p.name),
            Object::WorkloadEndpoint(w) => w.name.clone(),
            Object::GlobalNetworkSet(s) | Object::NetworkSet(s) => s.name.clone(),
            Object::Namespace(n) => cluster(&n.name),
        }
    }
}

/// A loaded object and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Origin.
    pub origin: Origin,
    /// Object.
    pub object: Object,
}

/// A validated policy set: every object of every document, in load order.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    /// Objects in load order (files in the order given, directories
    /// recursively in sorted path order, documents in file order).
    pub objects: Vec<Loaded>,
}

/// Counts of a set, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Tier documents.
    pub tiers: usize,
    /// GlobalNetworkPolicies.
    pub global_network_policies: usize,
    /// Calico NetworkPolicies.
    pub network_policies: usize,
    /// Kubernetes NetworkPolicies.
    pub k8s_network_policies: usize,
    /// Profiles.
    pub profiles: usize,
    /// WorkloadEndpoints.
    pub workload_endpoints: usize,
    /// GlobalNetworkSets.
    pub global_network_sets: usize,
    /// NetworkSets.
    pub network_sets: usize,
    /// Namespaces.
    pub namespaces: usize,
    /// Rules written (both directions, all policies and profiles).
    pub rules: usize,
}

impl PolicySet {
    /// Counts by kind.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        let n = |v: &Option<Vec<Rule>>| v.as_ref().map_or(0, Vec::len);
        for o in &self.objects {
            match &o.object {
                Object::Tier(_) => c.tiers += 1,
                Object::GlobalNetworkPolicy(p) => {
                    c.global_network_policies += 1;
                    c.rules += n(&p.spec.ingress) + n(&p.spec.egress);
                }
                Object::NetworkPolicy(p) => {
                    c.network_policies += 1;
                    c.rules += n(&p.spec.ingress) + n(&p.spec.egress);
                }
                Object::K8sNetworkPolicy(p) => {
                    c.k8s_network_policies += 1;
                    c.rules += p.spec.ingress.as_ref().map_or(0, Vec::len)
                        + p.spec.egress.as_ref().map_or(0, Vec::len);
                }
                Object::Profile(p) => {
                    c.profiles += 1;
                    c.rules += n(&p.spec.ingress) + n(&p.spec.egress);
                }
                Object::WorkloadEndpoint(_) => c.workload_endpoints += 1,
                Object::GlobalNetworkSet(_) => c.global_network_sets += 1,
                Object::NetworkSet(_) => c.network_sets += 1,
                Object::Namespace(_) => c.namespaces += 1,
            }
        }
        c
    }

    /// Add an object built in code (tests, benchmarks, generators).
    pub fn push(&mut self, object: Object) {
        let doc = self.objects.len();
        self.objects.push(Loaded {
            origin: Origin {
                file: "<generated>".into(),
                doc,
                prefix: String::new(),
            },
            object,
        });
    }
}

/// Host address of a prefix family, for convenience.
pub fn family_of(a: &IpAddr) -> u8 {
    if a.is_ipv4() {
        4
    } else {
        6
    }
}

// ---- deserialize helpers -------------------------------------------------

/// `Option<Vec<T>>` with an empty list (or null) as `None`.
pub fn de_vec<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let v: Option<Vec<T>> = Option::deserialize(d)?;
    Ok(v.filter(|v| !v.is_empty()))
}

/// A non-empty string, or `None`.
pub fn de_nonempty_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    Ok(v.filter(|s| !s.trim().is_empty()))
}

/// A Calico selector (`global()` not allowed); empty = `None`.
pub fn de_selector<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Selector>, D::Error> {
    de_sel(d, false)
}

/// A rule `namespaceSelector` (`global()` allowed); empty = `None`.
pub fn de_ns_selector<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Selector>, D::Error> {
    de_sel(d, true)
}

fn de_sel<'de, D: Deserializer<'de>>(d: D, global: bool) -> Result<Option<Selector>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    match v {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => {
            let sel = Selector::parse(&s, global)
                .map_err(|e| de::Error::custom(format!("bad selector: {e}")))?;
            // Calico's validator: `global()` is the whole selector or absent.
            if sel.uses_global() && sel != Selector::Global {
                return Err(de::Error::custom(format!(
                    "bad selector: {s:?}: global() cannot be combined with other terms"
                )));
            }
            Ok(Some(sel))
        }
    }
}
