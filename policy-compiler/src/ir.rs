//! The IR: for each direction and each *endpoint class* (endpoints with the
//! same applicable policies and profiles), the ordered decision list of
//! policy.md section 3, with every selector resolved to address ranges and
//! every named port resolved to numbers.
//!
//! Shape:
//! - A direction has *segments*: one per tier (the rules of every policy of
//!   that tier that applies to some endpoint, in policy order) and one per
//!   profile. Each rule carries the set of classes it applies to, so one
//!   segment serves every class.
//! - A class has the list of segments it walks: the tiers where at least one
//!   policy applies to it, then its profiles in the listed order.
//! - Evaluation of a class in a segment asks for the first rule (of that
//!   class) matching the packet. `Allow`/`Deny` end the direction, `Pass`
//!   goes to the class's next segment; no match applies the segment's
//!   `miss`: the tier's end-of-tier Deny, or go on (`defaultAction: Pass`,
//!   profiles). After the last segment: deny, `no_match`.
//! - `Log` rules never decide, so they are not in the IR (their indices are
//!   kept: `decided_by.rule` counts every rule as written).
//! - A rule is a disjunction of *terms*; a term is a conjunction of one value
//!   set per field (source, destination, protocol, source port, destination
//!   port). Negations (`notNets`, `notSelector`, `notPorts`, `notProtocol`,
//!   `notICMP`), named ports and Kubernetes peers are all expressed this way.
//!
//! Field encodings (what a packet's key holds):
//! - addresses: IPv4 as `u32`, IPv6 as `u128`, in separate families;
//! - protocol: 0..=255;
//! - source/destination "port" fields: the port (0..=65535) for TCP, UDP,
//!   SCTP, UDPLite; `ICMP_BASE + type` / `ICMP_BASE + code` for ICMP;
//!   `NO_L4` when the packet has neither. So `ports` never match ICMP or
//!   port-less packets, and `icmp` never matches a packet with ports.

use ahash::AHashMap as HashMap;
use std::collections::BTreeMap;
use std::fmt;

use crate::model::*;
use crate::ranges::{AddrSet, RangeSet};
use crate::selector::{EvalMode, Labels, Selector};

/// Largest value of the port fields.
pub const L4_MAX: u128 = 0x1FFFF;
/// Largest real port.
pub const PORT_MAX: u128 = 0xFFFF;
/// ICMP type/code are stored as `ICMP_BASE + value`.
pub const ICMP_BASE: u128 = 0x10000;
/// Port field value of a packet with neither ports nor ICMP type/code.
pub const NO_L4: u128 = 0x1FFFF;
/// Largest protocol value.
pub const PROTO_MAX: u128 = 255;

/// Direction index: egress.
pub const EGRESS: usize = 0;
/// Direction index: ingress.
pub const INGRESS: usize = 1;

/// Direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Egress of the source endpoint.
    Egress,
    /// Ingress of the destination endpoint.
    Ingress,
}

impl Dir {
    /// Index (`EGRESS` / `INGRESS`).
    pub fn idx(self) -> usize {
        match self {
            Dir::Egress => EGRESS,
            Dir::Ingress => INGRESS,
        }
    }
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Dir::Egress => "egress",
            Dir::Ingress => "ingress",
        }
    }
}

/// A compact id of what decided a direction's verdict; index into
/// [`Ir::decisions`] (and `Classifier::decision_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Decision(pub u32);

impl Decision {
    /// No endpoint owns the address: nothing was evaluated.
    pub const NONE: Decision = Decision(0);
    /// Egress: no tier decided and the profiles were exhausted.
    pub const NO_MATCH_EGRESS: Decision = Decision(1);
    /// Ingress: no tier decided and the profiles were exhausted.
    pub const NO_MATCH_INGRESS: Decision = Decision(2);
}

/// What a [`Decision`] stands for: the identity used by counters and
/// `explain`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DecisionInfo {
    /// No endpoint (`decided_by: null`).
    NoEndpoint,
    /// `{"no_match": true}`.
    NoMatch {
        /// Direction.
        dir: Dir,
    },
    /// `{"tier": T, "policy": KEY, "rule": i}`.
    Rule {
        /// Direction.
        dir: Dir,
        /// Tier name.
        tier: String,
        /// Policy key.
        policy: String,
        /// Rule index in the direction's rule list.
        rule: u32,
        /// The rule's action.
        action: Action,
    },
    /// `{"tier": T, "end_of_tier": true}`.
    EndOfTier {
        /// Direction.
        dir: Dir,
        /// Tier name.
        tier: String,
    },
    /// `{"profile": NAME, "rule": i}`.
    Profile {
        /// Direction.
        dir: Dir,
        /// Profile name.
        profile: String,
        /// Rule index.
        rule: u32,
        /// The rule's action.
        action: Action,
    },
}

impl DecisionInfo {
    /// The `decided_by` JSON object of policy.md section 5.
    pub fn json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            DecisionInfo::NoEndpoint => serde_json::Value::Null,
            DecisionInfo::NoMatch { .. } => json!({"no_match": true}),
            DecisionInfo::Rule {
                tier, policy, rule, ..
            } => json!({"tier": tier, "policy": policy, "rule": rule}),
            DecisionInfo::EndOfTier { tier, .. } => json!({"tier": tier, "end_of_tier": true}),
            DecisionInfo::Profile { profile, rule, .. } => {
                json!({"profile": profile, "rule": rule})
            }
        }
    }
}

impl fmt::Display for DecisionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecisionInfo::NoEndpoint => write!(f, "no endpoint"),
            DecisionInfo::NoMatch { dir } => write!(f, "{} no_match", dir.name()),
            DecisionInfo::Rule {
                dir,
                tier,
                policy,
                rule,
                action,
            } => write!(
                f,
                "{} tier {tier} policy {policy} rule {rule} ({action:?})",
                dir.name()
            ),
            DecisionInfo::EndOfTier { dir, tier } => {
                write!(f, "{} tier {tier} end_of_tier", dir.name())
            }
            DecisionInfo::Profile {
                dir,
                profile,
                rule,
                action,
            } => write!(
                f,
                "{} profile {profile} rule {rule} ({action:?})",
                dir.name()
            ),
        }
    }
}

/// The action of a compiled rule (`Log` never decides and is dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleAction {
    /// Allow.
    Allow,
    /// Deny.
    Deny,
    /// Go to the class's next segment.
    Pass,
}

/// A conjunction of per-field value sets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Term {
    /// Source address.
    pub src: AddrSet,
    /// Destination address.
    pub dst: AddrSet,
    /// Protocol (0..=255).
    pub proto: RangeSet,
    /// Source port field (see the module docs for the encoding).
    pub sport: RangeSet,
    /// Destination port field.
    pub dport: RangeSet,
}

impl Term {
    /// Matches every packet.
    pub fn full() -> Term {
        Term {
            src: AddrSet::full(),
            dst: AddrSet::full(),
            proto: RangeSet::full(PROTO_MAX),
            sport: RangeSet::full(L4_MAX),
            dport: RangeSet::full(L4_MAX),
        }
    }

    /// True when no packet of either family can match.
    pub fn is_empty(&self) -> bool {
        let v4 = !self.src.v4.is_empty() && !self.dst.v4.is_empty();
        let v6 = !self.src.v6.is_empty() && !self.dst.v6.is_empty();
        (!v4 && !v6) || self.proto.is_empty() || self.sport.is_empty() || self.dport.is_empty()
    }

    /// Conjunction, `None` when empty.
    pub fn and(&self, o: &Term) -> Option<Term> {
        let t = Term {
            src: self.src.intersect(&o.src),
            dst: self.dst.intersect(&o.dst),
            proto: self.proto.intersect(&o.proto),
            sport: self.sport.intersect(&o.sport),
            dport: self.dport.intersect(&o.dport),
        };
        (!t.is_empty()).then_some(t)
    }
}

/// Conjunction of two disjunctions.
fn and_terms(a: Vec<Term>, b: &[Term]) -> Vec<Term> {
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in &a {
        for y in b {
            if let Some(t) = x.and(y) {
                out.push(t);
            }
        }
    }
    out
}

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct IrRule {
    /// What decided, when this rule decides.
    pub decision: Decision,
    /// Allow, Deny or Pass.
    pub action: RuleAction,
    /// Endpoint classes (of this direction) the rule applies to.
    pub classes: RangeSet,
    /// The rule matches when any term matches.
    pub terms: Vec<Term>,
}

/// What a segment is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    /// A tier.
    Tier(String),
    /// A profile.
    Profile(String),
}

/// An ordered rule list walked as one unit.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Tier or profile.
    pub kind: SegmentKind,
    /// When no rule matches: `Some(d)` denies with `d` (end of tier),
    /// `None` goes on with the next segment.
    pub miss: Option<Decision>,
    /// Rules in order.
    pub rules: Vec<IrRule>,
}

/// One direction.
#[derive(Clone, Debug, Default)]
pub struct DirIr {
    /// Class of each endpoint.
    pub endpoint_class: Vec<u32>,
    /// Segments walked by each class, in order.
    pub class_segments: Vec<Vec<u32>>,
    /// The segments.
    pub segments: Vec<Segment>,
}

impl DirIr {
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_segments.len()
    }
}

/// An endpoint.
#[derive(Clone, Debug)]
pub struct EndpointIr {
    /// `namespace/name`.
    pub name: String,
    /// Its `ipNetworks`.
    pub nets: Vec<Cidr>,
}

/// The whole IR.
#[derive(Clone, Debug)]
pub struct Ir {
    /// Endpoints, in load order.
    pub endpoints: Vec<EndpointIr>,
    /// `[egress, ingress]`.
    pub dirs: [DirIr; 2],
    /// Decision table.
    pub decisions: Vec<DecisionInfo>,
}

/// Errors building the IR (the loader catches these first for loaded sets;
/// sets built in code reach them here).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IrError {
    /// A policy names a tier without a Tier document.
    #[error("policy {policy}: tier {tier:?} has no Tier document")]
    UnknownTier {
        /// Policy key.
        policy: String,
        /// Tier name.
        tier: String,
    },
    /// Two endpoints list the same prefix.
    #[error("{prefix} is listed by two WorkloadEndpoints: {a} and {b}")]
    DuplicatePrefix {
        /// The prefix.
        prefix: String,
        /// One endpoint.
        a: String,
        /// The other.
        b: String,
    },
    /// A rule expands to too many terms.
    #[error("{what}: rule {rule} expands to more than {limit} match terms")]
    TooComplex {
        /// Policy or profile.
        what: String,
        /// Rule index.
        rule: usize,
        /// The limit.
        limit: usize,
    },
    /// A selector in a Kubernetes policy is invalid.
    #[error("{policy}: {msg}")]
    BadSelector {
        /// Policy key.
        policy: String,
        /// Message.
        msg: String,
    },
}

/// Maximum terms per rule.
pub const MAX_TERMS: usize = 1 << 16;

/// Tier order key: ordered tiers by order, then unordered; ties by name.
fn tier_sort_key(t: &Tier) -> (u8, f64, String) {
    match t.order {
        Some(o) => (0, o, t.name.clone()),
        None => (1, 0.0, t.name.clone()),
    }
}

/// A policy of any kind.
#[derive(Clone, Copy)]
pub(crate) enum PolicyRef<'a> {
    /// Calico GNP (`namespace == None`) or NP.
    Calico(&'a CalicoPolicy),
    /// Kubernetes NP.
    K8s(&'a K8sPolicy),
}

impl PolicyRef<'_> {
    pub(crate) fn key(&self) -> String {
        match self {
            PolicyRef::Calico(p) => p.key(),
            PolicyRef::K8s(p) => p.key(),
        }
    }
    pub(crate) fn tier(&self) -> &str {
        match self {
            PolicyRef::Calico(p) => p.tier(),
            PolicyRef::K8s(_) => "default",
        }
    }
    pub(crate) fn order(&self) -> Option<f64> {
        match self {
            PolicyRef::Calico(p) => p.spec.order,
            PolicyRef::K8s(_) => Some(1000.0),
        }
    }
}

/// Tiers of a set in evaluation order (with the implicit `default`).
pub(crate) fn ordered_tiers(set: &PolicySet) -> Vec<Tier> {
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

/// Namespace effective labels (section 2).
pub(crate) fn namespace_labels(set: &PolicySet) -> HashMap<String, Labels> {
    let mut m = HashMap::new();
    for l in &set.objects {
        if let Object::Namespace(n) = &l.object {
            m.insert(n.name.clone(), ns_effective(&n.name, Some(&n.labels)));
        }
    }
    m
}

pub(crate) fn ns_effective(name: &str, labels: Option<&Labels>) -> Labels {
    let mut l = labels.cloned().unwrap_or_default();
    l.insert("projectcalico.org/name".into(), name.to_string());
    l.insert("kubernetes.io/metadata.name".into(), name.to_string());
    l
}

/// WorkloadEndpoint effective labels (section 2).
pub(crate) fn wep_effective(w: &WorkloadEndpoint, profiles: &HashMap<&str, &Profile>) -> Labels {
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

/// An object selectors can match.
struct SelObj {
    /// `Some(ns)` for namespaced objects.
    namespace: Option<String>,
    labels: Labels,
    nets: AddrSet,
    /// Index into the endpoint list for WorkloadEndpoints.
    wep: Option<usize>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum ScopeKey {
    None,
    Ns(String),
    NsSel(Selector),
}

/// Addresses of selected objects and the endpoints among them.
/// A selector's addresses and the endpoints among them; shared, because the
/// same selector (a big network set, say) is used by many rules and copying
/// its ranges for each would dominate compile time.
type Selected = std::sync::Arc<(AddrSet, Vec<usize>)>;
/// (protocol, port) → addresses of the endpoints declaring it.
type NamedPorts = BTreeMap<(u8, u16), AddrSet>;
/// Per tier and policy index: the policies that apply; the profiles.
type Signature = (Vec<(usize, usize)>, Vec<usize>);

struct Resolver<'a> {
    objs: Vec<SelObj>,
    ns_labels: HashMap<String, Labels>,
    weps: Vec<&'a WorkloadEndpoint>,
    /// (scope, selector) → (address set, admitted endpoint indices)
    cache: HashMap<(ScopeKey, Option<Selector>, bool), Selected>,
    not_cache: HashMap<Selector, AddrSet>,
    k8s_cache: HashMap<(String, Option<Selector>, Option<Selector>), Selected>,
    named_cache: HashMap<(Vec<usize>, String), NamedPorts>,
}

impl Resolver<'_> {
    fn ns_labels(&self, ns: &str) -> Labels {
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

    /// Objects in `scope` matching `sel`: their addresses and the endpoints
    /// among them.
    fn select(&mut self, scope: ScopeKey, sel: Option<&Selector>) -> Selected {
        let key = (scope, sel.cloned(), false);
        if let Some(v) = self.cache.get(&key) {
            return v.clone();
        }
        let mut set = AddrSet::empty();
        let mut weps = Vec::new();
        let mut ranges4 = Vec::new();
        let mut ranges6 = Vec::new();
        for o in &self.objs {
            if self.in_scope(&key.0, o) && sel.is_none_or(|s| s.matches(&o.labels)) {
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

    fn not_select(&mut self, sel: &Selector) -> AddrSet {
        if let Some(v) = self.not_cache.get(sel) {
            return v.clone();
        }
        let c = self.select(ScopeKey::None, Some(sel)).0.complement();
        self.not_cache.insert(sel.clone(), c.clone());
        c
    }

    /// Kubernetes peer selection: endpoints only.
    fn k8s_select(
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
    fn named(&mut self, weps: &[usize], name: &str) -> BTreeMap<(u8, u16), AddrSet> {
        let key = (weps.to_vec(), name.to_string());
        if let Some(v) = self.named_cache.get(&key) {
            return v.clone();
        }
        let mut m: BTreeMap<(u8, u16), Vec<&Cidr>> = BTreeMap::new();
        for &i in weps {
            let w = self.weps[i];
            for p in w.spec.ports.iter().flatten() {
                if p.name == name {
                    let proto = p.protocol.unwrap_or(Protocol::TCP).0;
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

fn with_addr(side: Side, a: AddrSet) -> Term {
    let mut t = Term::full();
    match side {
        Side::Src => t.src = a,
        Side::Dst => t.dst = a,
    }
    t
}

fn with_port(side: Side, p: RangeSet) -> Term {
    let mut t = Term::full();
    match side {
        Side::Src => t.sport = p,
        Side::Dst => t.dport = p,
    }
    t
}

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

struct Ctx<'a, 'b> {
    res: &'b mut Resolver<'a>,
}

impl Ctx<'_, '_> {
    /// Terms of one side (`source` or `destination`) of a Calico rule.
    fn entity_terms(&mut self, e: &EntityRule, ns: Option<&str>, side: Side) -> Vec<Term> {
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
        let scoped = scope != ScopeKey::None && e.has_selector_fields();
        // Endpoints admitted for named ports.
        let admitted_scope = if scoped {
            scope.clone()
        } else {
            ScopeKey::None
        };
        if scoped || e.selector.is_some() {
            let s = if scoped { scope } else { ScopeKey::None };
            addr = addr.intersect(&self.res.select(s, e.selector.as_ref()).0);
        }
        if let Some(ns_) = &e.not_selector {
            addr = addr.intersect(&self.res.not_select(ns_));
        }
        let mut terms = vec![with_addr(side, addr)];
        let needs_named = e
            .ports
            .iter()
            .chain(e.not_ports.iter())
            .flatten()
            .any(|p| matches!(p, PortSpec::Named(_)));
        let admitted = if needs_named {
            self.res
                .select(admitted_scope, e.selector.as_ref())
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
                for ((proto, num), a) in self.res.named(&admitted, n) {
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
                for ((proto, num), a) in self.res.named(&admitted, n) {
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

    fn calico_rule(&mut self, r: &Rule, ns: Option<&str>) -> Vec<Term> {
        let mut base = Term::full();
        if let Some(v) = r.ip_version {
            base.src = base.src.only_family(v);
            base.dst = base.dst.only_family(v);
        }
        if let Some(p) = r.protocol {
            base.proto = RangeSet::single(p.0 as u128);
        }
        if let Some(p) = r.not_protocol {
            base.proto = base.proto.minus(&RangeSet::single(p.0 as u128), PROTO_MAX);
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
            let t = self.entity_terms(e, ns, Side::Src);
            terms = and_terms(terms, &t);
        }
        if let Some(e) = &r.destination {
            let t = self.entity_terms(e, ns, Side::Dst);
            terms = and_terms(terms, &t);
        }
        terms
    }

    /// A Kubernetes port entry as terms on the destination port, with named
    /// ports resolved against `weps`.
    fn k8s_port(&mut self, p: &K8sPort, weps: &[usize]) -> Vec<Term> {
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
                for ((pr, num), a) in self.res.named(weps, n) {
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

    fn k8s_peer(&mut self, ns: &str, peer: &K8sPeer) -> Result<Selected, String> {
        if let Some(b) = &peer.ip_block {
            let mut a = AddrSet::from_cidrs([&b.cidr]);
            if let Some(ex) = &b.except {
                a = a.intersect(&AddrSet::from_cidrs(ex).complement());
            }
            let all = (0..self.res.weps.len()).collect();
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
        Ok(self.res.k8s_select(ns, pod.as_ref(), nss.as_ref()))
    }

    fn k8s_ingress(&mut self, p: &K8sPolicy, r: &K8sIngressRule) -> Result<Vec<Term>, String> {
        let ns = p.name.namespace.as_deref().unwrap_or("default");
        let mut terms = vec![Term::full()];
        if let Some(peers) = &r.from {
            let mut alts = Vec::new();
            for peer in peers {
                let sel = self.k8s_peer(ns, peer)?;
                alts.push(with_addr(Side::Src, sel.0.clone()));
            }
            terms = and_terms(terms, &alts);
        }
        if let Some(ports) = &r.ports {
            let all: Vec<usize> = (0..self.res.weps.len()).collect();
            let mut alts = Vec::new();
            for port in ports {
                alts.extend(self.k8s_port(port, &all));
            }
            terms = and_terms(terms, &alts);
        }
        Ok(terms)
    }

    fn k8s_egress(&mut self, p: &K8sPolicy, r: &K8sEgressRule) -> Result<Vec<Term>, String> {
        let ns = p.name.namespace.as_deref().unwrap_or("default");
        let peers: Vec<Selected> = match &r.to {
            Some(peers) => peers
                .iter()
                .map(|peer| self.k8s_peer(ns, peer))
                .collect::<Result<_, _>>()?,
            None => vec![std::sync::Arc::new((
                AddrSet::full(),
                (0..self.res.weps.len()).collect(),
            ))],
        };
        let mut out = Vec::new();
        for sel in peers {
            let (a, weps) = &*sel;
            let mut terms = vec![with_addr(Side::Dst, a.clone())];
            if let Some(ports) = &r.ports {
                let mut alts = Vec::new();
                for port in ports {
                    alts.extend(self.k8s_port(port, weps));
                }
                terms = and_terms(terms, &alts);
            }
            out.extend(terms);
        }
        Ok(out)
    }
}

/// Compile a policy set into the IR.
pub fn build(set: &PolicySet) -> Result<Ir, IrError> {
    let tiers = ordered_tiers(set);
    let tier_index: HashMap<&str, usize> = tiers
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let profiles: HashMap<&str, &Profile> = set
        .objects
        .iter()
        .filter_map(|l| match &l.object {
            Object::Profile(p) => Some((p.name.as_str(), p)),
            _ => None,
        })
        .collect();
    let ns_labels = namespace_labels(set);
    let weps: Vec<&WorkloadEndpoint> = set
        .objects
        .iter()
        .filter_map(|l| match &l.object {
            Object::WorkloadEndpoint(w) => Some(w),
            _ => None,
        })
        .collect();
    // Endpoints and their prefixes.
    let mut owners: HashMap<Cidr, usize> = HashMap::new();
    let mut endpoints = Vec::new();
    for (i, w) in weps.iter().enumerate() {
        let nets: Vec<Cidr> = w.spec.ip_networks.clone().unwrap_or_default();
        for c in &nets {
            if let Some(&o) = owners.get(c) {
                if o != i {
                    return Err(IrError::DuplicatePrefix {
                        prefix: c.to_string(),
                        a: weps[o].name.to_string(),
                        b: w.name.to_string(),
                    });
                }
            }
            owners.insert(*c, i);
        }
        endpoints.push(EndpointIr {
            name: w.name.to_string(),
            nets,
        });
    }
    let wep_labels: Vec<Labels> = weps.iter().map(|w| wep_effective(w, &profiles)).collect();
    // Selector objects.
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
                let mut lab = s.labels.clone();
                lab.insert(
                    "projectcalico.org/namespace".into(),
                    s.name.namespace.clone().unwrap_or_default(),
                );
                objs.push(SelObj {
                    namespace: s.name.namespace.clone(),
                    labels: lab,
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
    let mut res = Resolver {
        objs,
        ns_labels,
        weps: weps.clone(),
        cache: HashMap::new(),
        not_cache: HashMap::new(),
        k8s_cache: HashMap::new(),
        named_cache: HashMap::new(),
    };
    // Policies, grouped by tier and ordered.
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
        // Policies within a tier: by order, missing last, ties by key (the
        // keys are built once, not per comparison).
        let mut keyed: Vec<(String, PolicyRef<'_>)> = v.drain(..).map(|p| (p.key(), p)).collect();
        keyed.sort_by(|(ka, a), (kb, b)| {
            let oa = (a.order().is_none(), a.order().unwrap_or(0.0));
            let ob = (b.order().is_none(), b.order().unwrap_or(0.0));
            oa.0.cmp(&ob.0)
                .then(oa.1.total_cmp(&ob.1))
                .then_with(|| ka.cmp(kb))
        });
        v.extend(keyed.into_iter().map(|(_, p)| p));
    }
    let mut decisions = vec![
        DecisionInfo::NoEndpoint,
        DecisionInfo::NoMatch { dir: Dir::Egress },
        DecisionInfo::NoMatch { dir: Dir::Ingress },
    ];
    let mut ctx = Ctx { res: &mut res };
    let mut dirs: [DirIr; 2] = Default::default();
    for dir in [Dir::Egress, Dir::Ingress] {
        let d = dir.idx();
        // Applicability: endpoint → per tier, the applicable policies.
        let mut sigs: Vec<Signature> = Vec::with_capacity(weps.len());
        let profile_names: Vec<&str> = {
            let mut v: Vec<&str> = profiles.keys().copied().collect();
            v.sort_unstable();
            v
        };
        let profile_idx: HashMap<&str, usize> = profile_names
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, i))
            .collect();
        // Candidates per endpoint: the cluster-wide policies and those of
        // its namespace (a namespaced policy applies only there), in
        // (tier, policy) order.
        let mut global_pols: Vec<(usize, usize)> = Vec::new();
        let mut ns_pols: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
        for (ti, ps) in by_tier.iter().enumerate() {
            for (pi, p) in ps.iter().enumerate() {
                let pns = match p {
                    PolicyRef::Calico(cp) => cp.name.namespace.as_deref(),
                    PolicyRef::K8s(kp) => kp.name.namespace.as_deref(),
                };
                match pns {
                    Some(n) => ns_pols.entry(n).or_default().push((ti, pi)),
                    None => global_pols.push((ti, pi)),
                }
            }
        }
        let no_pols: Vec<(usize, usize)> = Vec::new();
        for (ei, w) in weps.iter().enumerate() {
            let ns = w.name.namespace.as_deref().unwrap_or("default");
            let nsl = ctx.res.ns_labels(ns);
            let mut cands: Vec<(usize, usize)> = global_pols.clone();
            cands.extend_from_slice(ns_pols.get(ns).unwrap_or(&no_pols));
            cands.sort_unstable();
            let mut pol = Vec::new();
            for (ti, pi) in cands {
                if applies(&by_tier[ti][pi], dir, ns, &wep_labels[ei], &nsl) {
                    pol.push((ti, pi));
                }
            }
            let profs: Vec<usize> = w
                .spec
                .profiles
                .iter()
                .flatten()
                .filter_map(|n| profile_idx.get(n.as_str()).copied())
                .collect();
            sigs.push((pol, profs));
        }
        // Classes: distinct signatures, sorted so that a policy's classes
        // tend to be contiguous.
        let mut uniq: Vec<Signature> = sigs.clone();
        uniq.sort();
        uniq.dedup();
        let class_of: HashMap<&Signature, u32> = uniq
            .iter()
            .enumerate()
            .map(|(i, s)| (s, i as u32))
            .collect();
        let endpoint_class: Vec<u32> = sigs.iter().map(|s| class_of[s]).collect();
        // Which classes each (tier, policy) applies to.
        let mut pol_classes: BTreeMap<(usize, usize), Vec<(u128, u128)>> = BTreeMap::new();
        for (ci, (pol, _)) in uniq.iter().enumerate() {
            for &tp in pol {
                pol_classes
                    .entry(tp)
                    .or_default()
                    .push((ci as u128, ci as u128));
            }
        }
        let mut segments = Vec::new();
        let mut tier_seg: HashMap<usize, u32> = HashMap::new();
        for (ti, ps) in by_tier.iter().enumerate() {
            let mut rules = Vec::new();
            let mut any = false;
            for (pi, p) in ps.iter().enumerate() {
                let Some(cls) = pol_classes.get(&(ti, pi)) else {
                    continue;
                };
                any = true;
                let classes = RangeSet::from_ranges(cls.clone());
                let key = p.key();
                let tier = tiers[ti].name.clone();
                match p {
                    PolicyRef::Calico(cp) => {
                        let list = if dir == Dir::Egress {
                            &cp.spec.egress
                        } else {
                            &cp.spec.ingress
                        };
                        let ns = cp.name.namespace.as_deref();
                        for (ri, r) in list.iter().flatten().enumerate() {
                            let action = match r.action {
                                Action::Log => continue,
                                Action::Allow => RuleAction::Allow,
                                Action::Deny => RuleAction::Deny,
                                Action::Pass => RuleAction::Pass,
                            };
                            let terms = ctx.calico_rule(r, ns);
                            if terms.len() > MAX_TERMS {
                                return Err(IrError::TooComplex {
                                    what: key.clone(),
                                    rule: ri,
                                    limit: MAX_TERMS,
                                });
                            }
                            decisions.push(DecisionInfo::Rule {
                                dir,
                                tier: tier.clone(),
                                policy: key.clone(),
                                rule: ri as u32,
                                action: r.action,
                            });
                            rules.push(IrRule {
                                decision: Decision(decisions.len() as u32 - 1),
                                action,
                                classes: classes.clone(),
                                terms,
                            });
                        }
                    }
                    PolicyRef::K8s(kp) => {
                        let n = if dir == Dir::Egress {
                            kp.spec.egress.as_ref().map_or(0, Vec::len)
                        } else {
                            kp.spec.ingress.as_ref().map_or(0, Vec::len)
                        };
                        for ri in 0..n {
                            let terms = if dir == Dir::Egress {
                                kp.spec.egress.as_ref().map(|v| ctx.k8s_egress(kp, &v[ri]))
                            } else {
                                kp.spec
                                    .ingress
                                    .as_ref()
                                    .map(|v| ctx.k8s_ingress(kp, &v[ri]))
                            }
                            .unwrap_or_else(|| Ok(Vec::new()))
                            .map_err(|msg| IrError::BadSelector {
                                policy: key.clone(),
                                msg,
                            })?;
                            if terms.len() > MAX_TERMS {
                                return Err(IrError::TooComplex {
                                    what: key.clone(),
                                    rule: ri,
                                    limit: MAX_TERMS,
                                });
                            }
                            decisions.push(DecisionInfo::Rule {
                                dir,
                                tier: tier.clone(),
                                policy: key.clone(),
                                rule: ri as u32,
                                action: Action::Allow,
                            });
                            rules.push(IrRule {
                                decision: Decision(decisions.len() as u32 - 1),
                                action: RuleAction::Allow,
                                classes: classes.clone(),
                                terms,
                            });
                        }
                    }
                }
            }
            if !any {
                continue;
            }
            let miss = match tiers[ti].default_action {
                TierAction::Deny => {
                    decisions.push(DecisionInfo::EndOfTier {
                        dir,
                        tier: tiers[ti].name.clone(),
                    });
                    Some(Decision(decisions.len() as u32 - 1))
                }
                TierAction::Pass => None,
            };
            tier_seg.insert(ti, segments.len() as u32);
            segments.push(Segment {
                kind: SegmentKind::Tier(tiers[ti].name.clone()),
                miss,
                rules,
            });
        }
        // Profile segments, for profiles some class uses.
        let mut prof_seg: HashMap<usize, u32> = HashMap::new();
        let all_classes = RangeSet::range(0, (uniq.len().max(1) - 1) as u128);
        for (_, profs) in &uniq {
            for &pi in profs {
                if prof_seg.contains_key(&pi) {
                    continue;
                }
                let prof = profiles[profile_names[pi]];
                let list = if dir == Dir::Egress {
                    &prof.spec.egress
                } else {
                    &prof.spec.ingress
                };
                let mut rules = Vec::new();
                for (ri, r) in list.iter().flatten().enumerate() {
                    let action = match r.action {
                        Action::Log => continue,
                        Action::Allow => RuleAction::Allow,
                        Action::Deny => RuleAction::Deny,
                        Action::Pass => RuleAction::Pass,
                    };
                    let terms = ctx.calico_rule(r, None);
                    if terms.len() > MAX_TERMS {
                        return Err(IrError::TooComplex {
                            what: format!("profile {}", prof.name),
                            rule: ri,
                            limit: MAX_TERMS,
                        });
                    }
                    decisions.push(DecisionInfo::Profile {
                        dir,
                        profile: prof.name.clone(),
                        rule: ri as u32,
                        action: r.action,
                    });
                    rules.push(IrRule {
                        decision: Decision(decisions.len() as u32 - 1),
                        action,
                        classes: all_classes.clone(),
                        terms,
                    });
                }
                prof_seg.insert(pi, segments.len() as u32);
                segments.push(Segment {
                    kind: SegmentKind::Profile(prof.name.clone()),
                    miss: None,
                    rules,
                });
            }
        }
        let class_segments: Vec<Vec<u32>> = uniq
            .iter()
            .map(|(pol, profs)| {
                let mut v: Vec<u32> = Vec::new();
                for &(ti, _) in pol {
                    let s = tier_seg[&ti];
                    if v.last() != Some(&s) {
                        v.push(s);
                    }
                }
                v.extend(profs.iter().map(|pi| prof_seg[pi]));
                v
            })
            .collect();
        dirs[d] = DirIr {
            endpoint_class,
            class_segments,
            segments,
        };
    }
    Ok(Ir {
        endpoints,
        dirs,
        decisions,
    })
}

/// policy.md section 3 *Applies to* (and section 4 for Kubernetes).
pub(crate) fn applies(
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
