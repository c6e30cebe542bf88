//! What the pipeline did with one frame, read back from its per-frame
//! state after [`super::Pipeline::process`]: `explain` and `trace` report
//! this, so they describe the data plane's own decisions instead of
//! re-deriving them. Reading it costs the hot path nothing: the stages
//! keep these fields anyway.

use policy_compiler::{Decision, FlowKey};

use super::batch::{Action, DropReason, Slot};
use super::meta::{Meta, Track, NO_DECISION};
use super::stages::policy::flow_key;
use super::steps::fib_lookup;
use crate::tables::conntrack::{Dir, EntryId};
use crate::tables::Tables;
use crate::wire::{self, Mac, Parsed};

/// Conntrack's part in a frame's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtOutcome {
    /// Not tracked (ICMP that is neither a query nor an error about a
    /// known connection; frames decided before tracking).
    Untracked,
    /// Cannot start a connection and matches none.
    Invalid,
    /// A new connection, not committed (the frame was dropped first).
    New,
    /// A new connection, committed by this frame as entry `0`.
    Committed(EntryId),
    /// A packet of a known connection.
    Known(EntryId, Dir),
    /// An ICMP error about a known connection.
    Related(EntryId, Dir),
}

/// One frame's path through the stages.
#[derive(Clone, Debug)]
pub struct FrameReport {
    pub action: Action,
    /// The frame as received, when it parsed as IP.
    pub parsed: Option<Parsed>,
    pub conntrack: CtOutcome,
    /// Index into `Tables::nat.services` of the service a new connection
    /// was sent to.
    pub service: Option<usize>,
    /// The destination after DNAT (or de-SNAT) and the source after SNAT
    /// (or de-DNAT).
    pub new_dst: Option<(u128, u16)>,
    pub new_src: Option<(u128, u16)>,
    /// The classifier's key and decision when the policy stage judged the
    /// frame (a new connection).
    pub policy: Option<(FlowKey, Decision)>,
    /// The FIB's next-hop id for the destination after NAT (0: no route),
    /// when the frame got as far as routing.
    pub route: Option<u16>,
    /// Egress port and next-hop MAC of a forwarded frame (`None` for the
    /// MAC of one the kernel resolves).
    pub out_port: Option<u16>,
    pub next_mac: Option<Mac>,
}

/// The report of frame `s` whose per-frame state is `m`.
pub(crate) fn of(t: &Tables, m: &Meta, s: &Slot<'_>) -> FrameReport {
    let ip = match s.action {
        Action::Drop(DropReason::Malformed) => false,
        // Non-IP frames are decided by the parse stage; the bytes are
        // untouched, so parsing them again tells.
        Action::Kernel => wire::parse(s.frame).is_ok(),
        _ => true,
    };
    let mut r = FrameReport {
        action: s.action,
        parsed: ip.then_some(m.parsed),
        conntrack: CtOutcome::Untracked,
        service: None,
        new_dst: None,
        new_src: None,
        policy: None,
        route: None,
        out_port: None,
        next_mac: None,
    };
    if !ip {
        return r;
    }
    r.conntrack = match m.track {
        Track::Known { id, .. } if m.committed => CtOutcome::Committed(id),
        Track::Known { id, dir } => CtOutcome::Known(id, dir),
        Track::Related { id, dir } => CtOutcome::Related(id, dir),
        Track::New(_) | Track::Pending | Track::Lookup => CtOutcome::New,
        Track::Invalid => CtOutcome::Invalid,
        Track::Untracked => CtOutcome::Untracked,
    };
    r.service = (m.service > 0).then(|| usize::from(m.service) - 1);
    r.new_dst = m.new_dst;
    r.new_src = m.new_src;
    if m.decision != NO_DECISION {
        r.policy = Some((flow_key(m), Decision(m.decision)));
    }
    // Frames the track stage dropped never asked the FIB.
    if !matches!(s.action, Action::Drop(DropReason::NoBackend)) {
        r.route = Some(fib_lookup(t, m));
    }
    match s.action {
        Action::Forward(p) => {
            r.out_port = Some(p);
            r.next_mac = Some(m.next_mac);
        }
        Action::ViaKernel => r.out_port = Some(m.out_port),
        _ => {}
    }
    r
}
