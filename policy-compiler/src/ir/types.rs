//! The IR's values: field encodings, directions, decisions, terms, rules,
//! segments and the whole [`Ir`], its error type, and the term algebra the
//! translations share (conjunction, terms on one side of a packet).

use std::fmt;

use crate::model::{Action, Cidr};
use crate::ranges::{AddrSet, RangeSet};

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
    /// `{"fail_closed": REASON}`: the endpoint's policy names something
    /// that does not resolve (an IP set, policy or profile never sent),
    /// so it denies everything (`shared/spec/felix.md` section 2.4).
    FailClosed {
        /// Direction.
        dir: Dir,
        /// What did not resolve.
        reason: String,
    },
    /// `{"setting": NAME, "value": V}`: a data-plane setting decided, not
    /// a rule (Felix's `DefaultEndpointToHostAction` for a workload's
    /// traffic to its own host, after its egress policy allowed it).
    Setting {
        /// Direction.
        dir: Dir,
        /// The setting's name.
        setting: String,
        /// Its value.
        value: String,
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
            DecisionInfo::FailClosed { reason, .. } => json!({ "fail_closed": reason }),
            DecisionInfo::Setting { setting, value, .. } => {
                json!({ "setting": setting, "value": value })
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
            DecisionInfo::FailClosed { dir, reason } => {
                write!(f, "{} fail_closed: {reason}", dir.name())
            }
            DecisionInfo::Setting {
                dir,
                setting,
                value,
            } => write!(f, "{} setting {setting} = {value}", dir.name()),
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

/// Which side of a packet a [`SetCheck`] tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetSide {
    /// The source address (and, for an `(address, protocol, port)` set,
    /// the protocol and source port field).
    Src,
    /// The destination address (and protocol, destination port field).
    Dst,
}

/// A membership test against a set held apart from the rules, by index
/// into the classifier's set table ([`crate::SetMatch`]): an IP set whose
/// members change often, so that a change replaces the set's table alone
/// and leaves every compiled rule as it is. The set's kind says what is
/// looked up: the side's address, or its (address, protocol, port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetCheck {
    /// Index into the set table.
    pub set: u32,
    /// Which side of the packet.
    pub side: SetSide,
    /// True: the packet must not be in the set.
    pub negated: bool,
}

/// A conjunction of per-field value sets (and of set checks).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Term {
    /// Source address.
    pub src: AddrSet,
    /// Destination address.
    pub dst: AddrSet,
    /// Protocol (0..=255).
    pub proto: RangeSet,
    /// Source port field (see [`crate::ir`] for the encoding).
    pub sport: RangeSet,
    /// Destination port field.
    pub dport: RangeSet,
    /// Set checks, all of which must hold (sorted, no repeats); empty for
    /// the YAML front end, which resolves everything into the fields.
    pub checks: Vec<SetCheck>,
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
            checks: Vec::new(),
        }
    }

    /// Matches every packet that passes `c` (a term of one check).
    pub fn with_check(c: SetCheck) -> Term {
        Term {
            checks: vec![c],
            ..Term::full()
        }
    }

    /// True when no packet of either family can match (a check and its
    /// negation together included).
    pub fn is_empty(&self) -> bool {
        let v4 = !self.src.v4.is_empty() && !self.dst.v4.is_empty();
        let v6 = !self.src.v6.is_empty() && !self.dst.v6.is_empty();
        let contradiction = self.checks.windows(2).any(|w| {
            (w[0].set, w[0].side) == (w[1].set, w[1].side) && w[0].negated != w[1].negated
        });
        (!v4 && !v6)
            || self.proto.is_empty()
            || self.sport.is_empty()
            || self.dport.is_empty()
            || contradiction
    }

    /// Conjunction, `None` when empty.
    pub fn and(&self, o: &Term) -> Option<Term> {
        let t = Term {
            src: self.src.intersect(&o.src),
            dst: self.dst.intersect(&o.dst),
            proto: self.proto.intersect(&o.proto),
            sport: self.sport.intersect(&o.sport),
            dport: self.dport.intersect(&o.dport),
            checks: merge_checks(&self.checks, &o.checks),
        };
        (!t.is_empty()).then_some(t)
    }
}

/// The union of two sorted check lists, sorted, without repeats.
fn merge_checks(a: &[SetCheck], b: &[SetCheck]) -> Vec<SetCheck> {
    if b.is_empty() {
        return a.to_vec();
    }
    let mut v: Vec<SetCheck> = a.iter().chain(b).copied().collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Conjunction of two disjunctions.
pub(super) fn and_terms(a: Vec<Term>, b: &[Term]) -> Vec<Term> {
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

/// Which side of a packet a rule's `source` / `destination` constrains.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Src,
    Dst,
}

/// Matches every packet whose `side` address is in `a`.
pub(super) fn with_addr(side: Side, a: AddrSet) -> Term {
    let mut t = Term::full();
    match side {
        Side::Src => t.src = a,
        Side::Dst => t.dst = a,
    }
    t
}

/// Matches every packet whose `side` port field is in `p`.
pub(super) fn with_port(side: Side, p: RangeSet) -> Term {
    let mut t = Term::full();
    match side {
        Side::Src => t.sport = p,
        Side::Dst => t.dport = p,
    }
    t
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(c: &[&str]) -> AddrSet {
        let v: Vec<Cidr> = c.iter().map(|s| Cidr::parse(s).unwrap()).collect();
        AddrSet::from_cidrs(&v)
    }

    #[test]
    fn a_term_is_empty_when_no_family_has_both_addresses() {
        assert!(!Term::full().is_empty());
        let mut t = Term::full();
        t.src = cidrs(&["10.0.0.0/8"]);
        t.dst = cidrs(&["fd00::/8"]);
        assert!(t.is_empty());
        t.dst = cidrs(&["10.1.0.0/16", "fd00::/8"]);
        assert!(!t.is_empty());
        t.dport = RangeSet::empty();
        assert!(t.is_empty());
    }

    #[test]
    fn conjunction_drops_empty_terms() {
        let tcp = Term {
            proto: RangeSet::single(6),
            ..Term::full()
        };
        let udp = Term {
            proto: RangeSet::single(17),
            ..Term::full()
        };
        let port80 = with_port(Side::Dst, RangeSet::single(80));
        assert_eq!(tcp.and(&udp), None);
        let both = tcp.and(&port80).unwrap();
        assert_eq!(both.proto, RangeSet::single(6));
        assert_eq!(both.dport, RangeSet::single(80));
        assert_eq!(both.sport, RangeSet::full(L4_MAX));
        // (tcp ∨ udp) ∧ (tcp ∨ port 80) = tcp ∨ tcp∧80 ∨ udp∧80.
        let out = and_terms(vec![tcp.clone(), udp.clone()], &[tcp.clone(), port80]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], tcp);
    }

    #[test]
    fn checks_are_conjoined_and_contradictions_are_empty() {
        let c = |set, negated| SetCheck {
            set,
            side: SetSide::Src,
            negated,
        };
        let a = Term::with_check(c(1, false));
        let b = Term::with_check(c(0, false));
        assert_eq!(a.and(&b).unwrap().checks, vec![c(0, false), c(1, false)]);
        assert_eq!(a.and(&a).unwrap().checks, vec![c(1, false)]);
        assert_eq!(a.and(&Term::with_check(c(1, true))), None);
        let other_side = Term::with_check(SetCheck {
            side: SetSide::Dst,
            ..c(1, true)
        });
        assert!(a.and(&other_side).is_some());
    }

    #[test]
    fn terms_on_one_side() {
        let a = cidrs(&["10.0.0.1/32"]);
        let s = with_addr(Side::Src, a.clone());
        assert_eq!((&s.src, &s.dst), (&a, &AddrSet::full()));
        let d = with_addr(Side::Dst, a.clone());
        assert_eq!((&d.src, &d.dst), (&AddrSet::full(), &a));
        let p = with_port(Side::Src, RangeSet::single(53));
        assert_eq!(
            (&p.sport, &p.dport),
            (&RangeSet::single(53), &RangeSet::full(L4_MAX))
        );
    }

    #[test]
    fn decision_info_as_json_and_text() {
        let rule = DecisionInfo::Rule {
            dir: Dir::Ingress,
            tier: "default".into(),
            policy: "prod/web".into(),
            rule: 2,
            action: Action::Deny,
        };
        assert_eq!(
            rule.json(),
            serde_json::json!({"tier": "default", "policy": "prod/web", "rule": 2})
        );
        assert_eq!(
            rule.to_string(),
            "ingress tier default policy prod/web rule 2 (Deny)"
        );
        assert_eq!(DecisionInfo::NoEndpoint.json(), serde_json::Value::Null);
        let end = DecisionInfo::EndOfTier {
            dir: Dir::Egress,
            tier: "t".into(),
        };
        assert_eq!(
            end.json(),
            serde_json::json!({"tier": "t", "end_of_tier": true})
        );
        assert_eq!(end.to_string(), "egress tier t end_of_tier");
        let none = DecisionInfo::NoMatch { dir: Dir::Egress };
        assert_eq!(none.json(), serde_json::json!({"no_match": true}));
        let prof = DecisionInfo::Profile {
            dir: Dir::Egress,
            profile: "p".into(),
            rule: 0,
            action: Action::Allow,
        };
        assert_eq!(prof.json(), serde_json::json!({"profile": "p", "rule": 0}));
        assert_eq!((Dir::Egress.idx(), Dir::Ingress.idx()), (EGRESS, INGRESS));
    }
}
