//! Checksum stage, live only ([`super::super::Pipeline::complete_partial_checksums`]):
//! completes partial TCP and UDP checksums.
//!
//! A sender with transmit checksum offload (every pod's veth by default)
//! leaves the checksum field holding only the pseudo-header sum, for the
//! device to complete (the kernel's `CHECKSUM_PARTIAL`); XDP hands sluice
//! such a frame without saying so, and AF_XDP transmit does not complete
//! it. The stage recognises the field (a full checksum equal to it
//! completes to itself) and completes it right after parsing, so the
//! rewrites' incremental updates then keep it correct.
//!
//! Reads: `meta.parsed`. Writes the checksum field, sets `slot.written`.
//! Actions: none.

use super::super::batch::Slot;
use super::super::meta::Meta;
use crate::wire::rewrite;

/// Runs the stage.
// Not inlined: a stage is a unit of cost in profiles; the call is once per
// batch, and only when the pipeline completes partial checksums.
#[inline(never)]
pub(crate) fn run(slots: &mut [Slot<'_>], meta: &[Meta]) {
    for (s, m) in slots.iter_mut().zip(meta) {
        if !m.done && rewrite::has_partial_checksum(s.frame, &m.parsed) {
            let w = rewrite::complete_checksum(s.frame, &m.parsed);
            s.written = s.written.max(w);
        }
    }
}
