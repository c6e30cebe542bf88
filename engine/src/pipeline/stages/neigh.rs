//! Neighbour stage: the next hop's MAC.
//!
//! Reads: `meta.nh`, the destination after DNAT. Sets: `meta.next_mac`. Actions:
//! `Drop(NoNeighbor)` when the gateway (or, for a directly connected
//! prefix, the destination) has no neighbour entry.

use super::super::{Action, DropReason, Meta, Slot};
use super::decide;
use crate::tables::{Adjacency, Tables};
use crate::wire::Mac;

/// Runs the stage on the frames `idx` names.
// Not inlined: a stage is a unit of cost in profiles (callgrind's per-stage
// breakdown); the call is once per batch.
#[inline(never)]
pub(crate) fn run(t: &Tables, slots: &mut [Slot<'_>], meta: &mut [Meta], idx: &[u16]) {
    for &i in idx {
        let (Some(s), Some(m)) = (slots.get_mut(usize::from(i)), meta.get_mut(usize::from(i)))
        else {
            continue;
        };
        if !m.done {
            one(t, s, m);
        }
    }
}

/// The stage for one undecided frame.
#[inline(always)]
pub(crate) fn one(t: &Tables, s: &mut Slot<'_>, m: &mut Meta) {
    match resolve(t, &t.adjacency(m.nh), m) {
        Some(mac) => m.next_mac = mac,
        None => decide(s, m, Action::Drop(DropReason::NoNeighbor)),
    }
}

/// The MAC to send a frame to through next hop `a`: the gateway's,
/// resolved when the tables were built, or for a directly connected
/// destination (after DNAT) its neighbour entry, looked up per packet.
#[inline(always)]
pub(crate) fn resolve(t: &Tables, a: &Adjacency, m: &Meta) -> Option<Mac> {
    resolve_hop(t, a, m).map(|(mac, _)| mac)
}

/// [`resolve`] with the [`crate::tables::Hop`] id the route cache keeps
/// for it ([`Tables::resolve`]).
#[inline(always)]
pub(crate) fn resolve_hop(t: &Tables, a: &Adjacency, m: &Meta) -> Option<(Mac, u16)> {
    t.resolve(a, m.parsed.family, super::track::effective_dst(m))
}
