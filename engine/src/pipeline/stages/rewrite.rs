//! Rewrite stage: the frame as it leaves.
//!
//! Reads: `meta.parsed`, `meta.out_port`, `meta.next_mac`, the NAT
//! translation. Writes the frame: destination NAT, TTL / hop limit − 1,
//! source NAT (each with incremental checksum updates in the kernel's order
//! and arithmetic; a related ICMP error also gets its quoted packet
//! translated and its checksum recomputed, as the kernel does), destination
//! MAC = next hop, source MAC = egress port (VLAN tags, IP ID and options
//! untouched). Sets `slot.written`. Actions: `Forward(port)` for
//! every frame still undecided.

use super::super::{Action, Meta, Slot, Track};
use super::decide;
use crate::tables::Tables;
use crate::wire::rewrite::{self, Side};
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
    let (dst_mac, src_mac) = (m.next_mac, t.port_mac(m.out_port));
    with_macs(s, m, &dst_mac, &src_mac);
}

/// [`one`] with the MACs given.
#[inline(always)]
pub(crate) fn with_macs(s: &mut Slot<'_>, m: &mut Meta, dst_mac: &Mac, src_mac: &Mac) {
    let p = &m.parsed;
    let mut w = rewrite::set_macs(s.frame, dst_mac, src_mac);
    // The kernel's order: destination NAT (PREROUTING), TTL (forward),
    // source NAT (POSTROUTING); checksum updates follow the same order.
    if let Track::Related { .. } = m.track {
        if let Some((a, port)) = m.new_dst {
            w = w.max(rewrite::icmp_related(
                s.frame,
                p,
                &m.inner,
                Side::Dst,
                a,
                a,
                port,
            ));
        }
        w = w.max(rewrite::decrement_ttl(s.frame, p));
        if let Some((a, port)) = m.new_src {
            w = w.max(rewrite::icmp_related(
                s.frame,
                p,
                &m.inner,
                Side::Src,
                a,
                a,
                port,
            ));
        }
    } else {
        if let Some((a, port)) = m.new_dst {
            w = w.max(rewrite::nat_rewrite(s.frame, p, Side::Dst, a, port));
        }
        w = w.max(rewrite::decrement_ttl(s.frame, p));
        if let Some((a, port)) = m.new_src {
            w = w.max(rewrite::nat_rewrite(s.frame, p, Side::Src, a, port));
        }
    }
    s.written = s.written.max(w);
    decide(s, m, Action::Forward(m.out_port));
}
