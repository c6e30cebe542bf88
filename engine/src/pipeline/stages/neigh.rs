//! Neighbour stage: the next hop's MAC.
//!
//! Reads: `meta.nh`, the destination after DNAT. Sets: `meta.next_mac`,
//! `meta.unresolved`. When the gateway (or, for a directly connected
//! prefix, the destination) has no neighbour entry: with
//! `Tables::unresolved_to_kernel`, `meta.unresolved` (the commit stage
//! commits the connection, the rewrite stage writes the frame and hands it
//! to the kernel: `ViaKernel`), else the action `Drop(NoNeighbor)`.

use super::super::batch::{Action, DropReason, Slot};
use super::super::meta::Meta;
use super::super::steps::{decide, resolve_mac};
use crate::tables::Tables;

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
    match resolve_mac(t, &t.adjacency(m.nh), m) {
        Some(mac) => {
            m.next_mac = mac;
            m.unresolved = false;
        }
        None if t.unresolved_to_kernel => {
            m.next_mac = [0; 6];
            m.unresolved = true;
        }
        None => decide(s, m, Action::Drop(DropReason::NoNeighbor)),
    }
}
