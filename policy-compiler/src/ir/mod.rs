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
//!
//! Files: `types` (the values above and the term algebra),
//! `resolve` (selectors and named ports against the set's objects),
//! `calico` and `k8s` (a rule into terms, policy.md sections 3 and 4),
//! `policies` (tier and policy order, *Applies to*), `build` (classes,
//! segments and decisions).

mod build;
mod calico;
mod k8s;
mod policies;
mod resolve;
mod types;

pub use build::build;
pub use types::{
    Decision, DecisionInfo, Dir, DirIr, EndpointIr, Ir, IrError, IrRule, RuleAction, Segment,
    SegmentKind, SetCheck, SetSide, Term, EGRESS, ICMP_BASE, INGRESS, L4_MAX, MAX_TERMS, NO_L4,
    PORT_MAX, PROTO_MAX,
};
