//! Parse stage.
//!
//! Reads: the frame bytes. Sets: `meta.parsed`, `meta.done = false` for IP
//! frames, and clears the host stage's mark. Actions: `Drop(Malformed)`, `Kernel` (non-IP: ARP, LLDP, MPLS,
//! PPPoE, three or more VLAN tags).

use super::super::batch::{Action, DropReason, Slot};
use super::super::meta::{Meta, NO_DECISION};
use super::super::steps::decide;
use crate::wire::{self, Unparsed};

/// Runs the stage.
// Not inlined: a stage is a unit of cost in profiles (callgrind's per-stage
// breakdown); the call is once per batch.
#[inline(never)]
pub(crate) fn run(slots: &mut [Slot<'_>], meta: &mut [Meta]) {
    for (s, m) in slots.iter_mut().zip(meta.iter_mut()) {
        m.done = false;
        m.pre_decision = NO_DECISION;
        match wire::parse_into(s.frame, &mut m.parsed) {
            Ok(()) => {}
            Err(Unparsed::NotIp) => decide(s, m, Action::Kernel),
            Err(Unparsed::Malformed) => decide(s, m, Action::Drop(DropReason::Malformed)),
        }
    }
}
