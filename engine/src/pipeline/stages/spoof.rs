//! Source check stage (anti-spoofing): a frame entering through a port
//! that has a source filter (a workload endpoint's port under Felix) must
//! come from one of the filter's prefixes, as Felix drops what a workload
//! sends from an address that is not its own (or in its
//! `allow_spoofed_source_prefixes`). It runs before conntrack, so a
//! spoofed packet neither opens nor continues a connection.
//!
//! Reads: the ingress port, `meta.parsed` (family, source),
//! `Tables::source_filters`. Actions: `Drop(Spoofed)`. Costs one branch
//! per batch when no port has a filter, and one indexed load per frame
//! from a port without one.

use super::super::batch::{Action, DropReason, Slot};
use super::super::meta::Meta;
use super::super::steps::decide;
use crate::tables::Tables;

/// Runs the stage.
// Not inlined: a stage is a unit of cost in profiles (callgrind's per-stage
// breakdown); the call is once per batch.
#[inline(never)]
pub(crate) fn run(t: &Tables, slots: &mut [Slot<'_>], meta: &mut [Meta]) {
    if t.source_filters.is_empty() {
        return;
    }
    for (s, m) in slots.iter_mut().zip(meta.iter_mut()) {
        if m.done {
            continue;
        }
        let Some(Some(f)) = t.source_filters.get(usize::from(s.ingress)) else {
            continue;
        };
        if !f.allows(m.parsed.family, m.parsed.src) {
            decide(s, m, Action::Drop(DropReason::Spoofed));
        }
    }
}
