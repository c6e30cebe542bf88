//! Known-connection stage: route, neighbour and rewrite in one pass over
//! the packets of connections the track stage found.
//!
//! Such a packet was judged when its connection opened, so policy and
//! commit have nothing to do with it, and what the three stages do with a
//! frame depends on that frame alone: taking them together for each frame
//! gives the same actions and bytes as taking each stage over the batch in
//! turn, with one visit per frame instead of three (the general stages,
//! with their own loops, take the remaining frames: new connections, ICMP
//! errors, untracked packets).
//!
//! Reads and sets what [`super::route`], [`super::neigh`] and
//! [`super::rewrite`] do. Actions: theirs.

use super::super::{Meta, Slot};
use super::{neigh, rewrite, route};
use crate::tables::Tables;

/// Runs the stage on the frames `idx` names.
// Not inlined: a stage is a unit of cost in profiles (callgrind's per-stage
// breakdown); the call is once per batch.
#[inline(never)]
pub(crate) fn run(t: &Tables, slots: &mut [Slot<'_>], meta: &mut [Meta], idx: &[u16]) {
    route::prefetch(t, meta, idx);
    for &i in idx {
        let (Some(s), Some(m)) = (slots.get_mut(usize::from(i)), meta.get_mut(usize::from(i)))
        else {
            continue;
        };
        if m.done {
            continue;
        }
        route::one(t, s, m);
        if m.done {
            continue;
        }
        neigh::one(t, s, m);
        if m.done {
            continue;
        }
        rewrite::one(t, s, m);
    }
}
