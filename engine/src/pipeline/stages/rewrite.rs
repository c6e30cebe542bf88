//! Rewrite stage: the frame as it leaves.
//!
//! Reads: `meta.parsed`, `meta.out_port`, `meta.next_mac`, the NAT
//! translation. Writes the frame: destination NAT, TTL / hop limit − 1,
//! source NAT (each with incremental checksum updates in the kernel's order
//! and arithmetic; a related ICMP error also gets its quoted packet
//! translated and its checksum recomputed, as the kernel does), destination
//! MAC = next hop, source MAC = egress port (VLAN tags, IP ID and options
//! untouched). Sets `slot.written`. Actions: `Forward(port)` for
//! every frame still undecided, `ViaKernel` for those whose next hop is
//! unresolved (`meta.unresolved`).

use super::super::batch::{Action, Slot};
use super::super::meta::Meta;
use super::super::steps::{decide, write_out};
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
    let (dst_mac, src_mac) = (m.next_mac, t.port_mac(m.out_port));
    write_out(s, m, &dst_mac, &src_mac);
    if m.unresolved {
        decide(s, m, Action::ViaKernel);
    }
}
