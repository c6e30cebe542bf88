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
//!
//! A denied connection leaves no state (as in Linux and Calico), so every
//! packet of it is judged again. Each worker keeps the last denials it
//! judged in a small direct-mapped memo, indexed by the connection key's
//! hash and checked by the whole classifier key: a packet whose key is
//! there gets the memoised verdict, which is what the classifier would
//! answer (the classifier is a function of the key, and the memo belongs to
//! one classifier: new tables start a new one). Floods and retries of
//! denied flows then cost a memo probe instead of a classification.
//!
//! The track stage consults the memo too, before the in-order part of the
//! pipeline (`memo_denial`): a packet that matches no connection, could
//! open one, and whose key the memo holds as a denial of an untranslated
//! connection is routed and dropped right there, as the general stages
//! would (see that function for why the answer is the same).

use policy_compiler::{Classifier, Decision, FlowKey, Verdict, L4};

use super::super::batch::{Action, Counters, DropReason, Slot, MAX_BATCH};
use super::super::meta::{Frames, Meta, Track};
use super::super::steps::decide;
use crate::tables::Tables;
use crate::wire::Family;

/// Slots of the per-worker memo of denials (a power of two).
const DENIALS: usize = 1024;

/// Per-worker classifier scratch, sized to the largest batch, and the memo
/// of recent denials (see the module docs).
#[derive(Debug)]
pub struct PolicyScratch {
    keys: Vec<FlowKey>,
    which: Vec<u16>,
    out: Vec<Verdict>,
    /// The pending classifier's verdicts (staged policies enforced).
    pending: Vec<Verdict>,
    pub(crate) scratch: policy_compiler::Scratch,
    denials: Box<[Option<Denial>]>,
    /// Frames the host stage's untracked pass accepted (no conntrack) and
    /// denied in this batch (`stages::host`).
    pub(crate) untracked_accepted: Frames,
    pub(crate) untracked_denied: Frames,
}

/// A memoised denial: the classifier's key and answer (and the pending
/// classifier's, when the policy has staged policies), and whether the
/// connection was left untranslated (no service DNAT), which
/// [`memo_denial`] needs.
#[derive(Clone, Copy, Debug)]
struct Denial {
    key: FlowKey,
    verdict: Verdict,
    pending: Option<Verdict>,
    direct: bool,
}

/// A memoised answer: the verdict and the pending verdict.
pub(crate) type Memo = (Verdict, Option<Verdict>);

impl PolicyScratch {
    /// Scratch for `tables`' classifier.
    pub fn new(t: &Tables) -> Self {
        PolicyScratch {
            keys: Vec::with_capacity(MAX_BATCH),
            which: Vec::with_capacity(MAX_BATCH),
            out: vec![Verdict::default(); MAX_BATCH],
            pending: vec![Verdict::default(); MAX_BATCH],
            scratch: t.policy.new_scratch(),
            denials: vec![None; DENIALS].into_boxed_slice(),
            untracked_accepted: Frames::new(),
            untracked_denied: Frames::new(),
        }
    }
}

/// The memo slot of a frame's connection key.
#[inline]
fn denial_slot(m: &Meta) -> usize {
    m.hash as usize & (DENIALS - 1)
}

/// The classifier's key for a packet (destination after DNAT).
#[inline]
pub(crate) fn flow_key(m: &Meta) -> FlowKey {
    let p = &m.parsed;
    key_to(m, m.new_dst.unwrap_or((p.dst, p.dport)))
}

/// The classifier's key for a packet as it arrived (before DNAT).
#[inline]
pub(crate) fn arrival_key(m: &Meta) -> FlowKey {
    key_to(m, (m.parsed.dst, m.parsed.dport))
}

/// The classifier's key for a packet with destination `(dst, dport)`.
#[inline]
fn key_to(m: &Meta, (dst, dport): (u128, u16)) -> FlowKey {
    let p = &m.parsed;
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
        let key = flow_key(m);
        // Only new connections have a key hash to index the memo by; a
        // port with a host role judges more than the key (see
        // `stages::host`), so its frames neither use nor fill the memo.
        let plain = |slots: &[Slot<'_>]| {
            slots
                .get(usize::from(i))
                .is_some_and(|s| t.host.role(s.ingress).is_plain())
        };
        if let Track::New(_) = m.track {
            if let Some(Some(d)) = ps.denials.get(denial_slot(m)) {
                if d.key == key && plain(slots) {
                    let memo = (d.verdict, d.pending);
                    if let Some(s) = slots.get_mut(usize::from(i)) {
                        apply_memo(&memo, s, m, c);
                    }
                    continue;
                }
            }
        }
        ps.keys.push(key);
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
    // Staged policies: the pending classifier judges the same keys, for
    // the counters only (one branch per batch without staged policies).
    let pending = match (classifier.staged(), ps.pending.get_mut(..n)) {
        (Some(pc), Some(p)) => {
            pc.classify_batch(&ps.keys, p, &mut ps.scratch);
            Some(&*p)
        }
        _ => None,
    };
    for (k, ((v, &i), key)) in out.iter().zip(&ps.which).zip(&ps.keys).enumerate() {
        let (Some(s), Some(m)) = (slots.get_mut(usize::from(i)), meta.get_mut(usize::from(i)))
        else {
            continue;
        };
        apply(v, s, m, c);
        let pv = pending.and_then(|p| p.get(k)).copied();
        if let Some(p) = &pv {
            count_pending(v, p, c);
        }
        if v.allow
            && m.host_accepted()
            && v.egress.endpoint.is_none()
            && v.ingress.endpoint.is_none()
        {
            // Nothing here judged it: what accepted it upstream decided.
            m.decision = m.pre_decision;
        }
        if !v.allow && matches!(m.track, Track::New(_)) && t.host.role(s.ingress).is_plain() {
            if let Some(d) = ps.denials.get_mut(denial_slot(m)) {
                *d = Some(Denial {
                    key: *key,
                    verdict: *v,
                    pending: pv,
                    direct: m.new_dst.is_none(),
                });
            }
        }
    }
}

/// Counts what the staged policies would have done with a connection:
/// per direction evaluated, the decision of the pending walk
/// (`staged_hits`), and whether enforcing them would change the verdict.
#[inline]
fn count_pending(v: &Verdict, p: &Verdict, c: &mut Counters) {
    for d in [&p.egress, &p.ingress] {
        if d.endpoint.is_some() {
            if let Some(h) = c.staged_hits.get_mut(d.decided_by.0 as usize) {
                *h += 1;
            }
        }
    }
    match (v.allow, p.allow) {
        (true, false) => c.pending_denied += 1,
        (false, true) => c.pending_allowed += 1,
        _ => {}
    }
}

/// Applies a memoised answer: the verdict, and the pending one's counts.
#[inline]
pub(crate) fn apply_memo(memo: &Memo, s: &mut Slot<'_>, m: &mut Meta, c: &mut Counters) {
    apply(&memo.0, s, m, c);
    if let Some(p) = &memo.1 {
        count_pending(&memo.0, p, c);
    }
}

/// The memoised denial for a frame the track stage found no connection
/// for (so nothing has translated it yet): `Some` only if the memo holds the frame's classifier
/// key as a denial of an untranslated connection, in which case the
/// general stages would deny it too. Whether a new connection is DNATed is
/// a function of the tables and of its protocol, destination address and
/// port, all in the key, so a frame with that key is untranslated as well;
/// its classifier key is then the one computed here; and the verdict is
/// the classifier's function of that key. Only for frames with ports (the
/// key of any other holds fields the connection key lacks, such as ICMP
/// codes). The caller checks the rest of what the general stages would
/// do first: that the frame may open a connection and that no earlier
/// frame of the batch may open the one it belongs to; routing still runs.
#[inline]
pub(crate) fn memo_denial(ps: &PolicyScratch, m: &Meta) -> Option<Memo> {
    if !m.parsed.l4kind.has_ports() {
        return None;
    }
    let d = ps.denials.get(denial_slot(m))?.as_ref()?;
    (d.direct && !d.verdict.allow && d.key == flow_key(m)).then_some((d.verdict, d.pending))
}

/// Applies a verdict to a frame: what decided, the counters, the drop.
#[inline]
pub(crate) fn apply(v: &Verdict, s: &mut Slot<'_>, m: &mut Meta, c: &mut Counters) {
    record(c, s, m, deciding(v).0, v.allow);
}

/// Records decision `d` on a frame: counted, and a drop for a denial.
#[inline]
pub(crate) fn record(c: &mut Counters, s: &mut Slot<'_>, m: &mut Meta, d: u32, allow: bool) {
    count_decision(c, m, d, allow);
    if !allow {
        decide(s, m, Action::Drop(DropReason::Policy));
    }
}

/// Counts decision `d` (its hits, allowed or denied) and records it on
/// the frame's meta (what `explain` and the conntrack entry show).
#[inline]
pub(crate) fn count_decision(c: &mut Counters, m: &mut Meta, d: u32, allow: bool) {
    if let Some(h) = c.policy_hits.get_mut(d as usize) {
        *h += 1;
    }
    m.decision = d;
    if allow {
        c.policy_allowed += 1;
    } else {
        c.policy_denied += 1;
    }
}
