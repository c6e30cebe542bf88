//! Policy stage: the compiled classifier, once per new connection.
//!
//! Reads: `meta.parsed` flow fields with the destination after DNAT (policy
//! applies to the backend, as in Calico), `meta.track` (only new
//! connections and untracked packets are classified; packets of known
//! connections, in either direction, and related ICMP errors skip the
//! classifier). Sets `meta.decision` (what decided, recorded in the
//! conntrack entry for `explain`). Counts hits per decision. Actions:
//! `Drop(Policy)`. A policy without endpoints constrains nothing, so the
//! stage is skipped outright.

use policy_compiler::{Classifier, Decision, FlowKey, Verdict, L4};

use super::super::{Action, Counters, DropReason, Meta, Slot, Track, MAX_BATCH};
use super::decide;
use crate::tables::Tables;
use crate::wire::Family;

/// Per-worker classifier scratch, sized to the largest batch.
#[derive(Debug)]
pub struct PolicyScratch {
    keys: Vec<FlowKey>,
    which: Vec<u16>,
    out: Vec<Verdict>,
    scratch: policy_compiler::Scratch,
}

impl PolicyScratch {
    /// Scratch for `tables`' classifier.
    pub fn new(t: &Tables) -> Self {
        PolicyScratch {
            keys: Vec::with_capacity(MAX_BATCH),
            which: Vec::with_capacity(MAX_BATCH),
            out: vec![Verdict::default(); MAX_BATCH],
            scratch: t.policy.new_scratch(),
        }
    }
}

/// The classifier's key for a packet (destination after DNAT).
#[inline]
pub(crate) fn flow_key(m: &Meta) -> FlowKey {
    let p = &m.parsed;
    let (dst, dport) = m.new_dst.unwrap_or((p.dst, p.dport));
    let l4 = match p.l4kind {
        k if k.has_ports() => L4::Ports {
            sport: p.sport,
            dport,
        },
        k if k.is_icmp() => L4::Icmp {
            ty: p.icmp_type,
            code: p.icmp_code,
        },
        _ => L4::None,
    };
    match p.family {
        Family::V4 => FlowKey::v4(p.src as u32, dst as u32, p.proto, l4),
        Family::V6 => FlowKey::v6(p.src, dst, p.proto, l4),
    }
}

/// What a verdict records: the direction that denied, else the ingress
/// decision when an endpoint was evaluated there, else the egress one.
#[inline]
pub fn deciding(v: &Verdict) -> Decision {
    if !v.egress.allow {
        v.egress.decided_by
    } else if !v.ingress.allow || v.ingress.endpoint.is_some() {
        v.ingress.decided_by
    } else {
        v.egress.decided_by
    }
}

/// Runs the stage.
// Not inlined: a stage is a unit of cost in profiles (callgrind's per-stage
// breakdown); the call is once per batch.
#[inline(never)]
pub(crate) fn run(
    t: &Tables,
    ps: &mut PolicyScratch,
    slots: &mut [Slot<'_>],
    meta: &mut [Meta],
    idx: &[u16],
    c: &mut Counters,
) {
    let classifier: &Classifier = &t.policy;
    let skip = classifier.num_endpoints() == 0;
    ps.keys.clear();
    ps.which.clear();
    for &i in idx {
        let Some(m) = meta.get_mut(usize::from(i)) else {
            continue;
        };
        if m.done || !matches!(m.track, Track::New(_) | Track::Untracked) {
            continue;
        }
        m.decision = 0;
        if skip {
            c.policy_allowed += 1;
            continue;
        }
        // Non-first fragments carry no ports: classified on addresses and
        // protocol (a rule with ports never matches them).
        ps.keys.push(flow_key(m));
        ps.which.push(i);
    }
    if ps.keys.is_empty() {
        return;
    }
    let n = ps.keys.len();
    let Some(out) = ps.out.get_mut(..n) else {
        return;
    };
    classifier.classify_batch(&ps.keys, out, &mut ps.scratch);
    for (v, &i) in out.iter().zip(&ps.which) {
        let d = deciding(v);
        if let Some(h) = c.policy_hits.get_mut(d.0 as usize) {
            *h += 1;
        }
        let (Some(s), Some(m)) = (slots.get_mut(usize::from(i)), meta.get_mut(usize::from(i)))
        else {
            continue;
        };
        m.decision = d.0;
        if v.allow {
            c.policy_allowed += 1;
        } else {
            c.policy_denied += 1;
            decide(s, m, Action::Drop(DropReason::Policy));
        }
    }
}
