//! Rewrite stage: the frame as it leaves.
//!
//! Reads: `meta.parsed`, `meta.out_port`, `meta.next_mac`. Writes the frame:
//! destination MAC = next hop, source MAC = egress port, TTL / hop limit − 1
//! with the IPv4 header checksum fixed up incrementally (VLAN tags, IP ID and
//! options untouched). Sets `slot.written`. Actions: `Forward(port)` for
//! every frame still undecided.

use super::super::{Action, Meta, Slot};
use super::decide;
use crate::tables::Tables;
use crate::wire::rewrite;

/// Runs the stage.
pub(crate) fn run(t: &Tables, slots: &mut [Slot<'_>], meta: &mut [Meta]) {
    for (s, m) in slots.iter_mut().zip(meta.iter_mut()) {
        if m.done {
            continue;
        }
        let src_mac = t.port_mac(m.out_port);
        let w1 = rewrite::set_macs(s.frame, &m.next_mac, &src_mac);
        let w2 = rewrite::decrement_ttl(s.frame, &m.parsed);
        s.written = s.written.max(w1).max(w2);
        decide(s, m, Action::Forward(m.out_port));
    }
}
