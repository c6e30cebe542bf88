//! Policy stage: the compiled classifier, once per new connection.
//!
//! Reads: `meta.parsed` flow fields, `meta.track` (only new connections and
//! untracked packets are classified; packets of known connections, in
//! either direction, and related ICMP errors skip the classifier). Sets
//! `meta.decision`. Actions: `Drop(Policy)`.
//! (Allow-all until the policy compiler is wired in.)

use super::super::{Counters, Meta, Slot};
use crate::tables::Tables;

/// Per-worker classifier scratch.
#[derive(Debug, Default)]
pub struct PolicyScratch {}

impl PolicyScratch {
    /// Scratch sized for `tables`' classifier.
    pub fn new(_t: &Tables) -> Self {
        PolicyScratch {}
    }
}

/// Runs the stage.
pub(crate) fn run(
    _t: &Tables,
    _scratch: &mut PolicyScratch,
    _slots: &mut [Slot<'_>],
    _meta: &mut [Meta],
    _c: &mut Counters,
) {
}
