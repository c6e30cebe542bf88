//! Per-frame steps several stages share: deciding a frame, the
//! destination after NAT, the routing decision, resolving the next hop's
//! MAC and writing the frame as it leaves. The route, neighbour and
//! rewrite stages are loops over these, and known-connection forwarding
//! ([`super::stages::known`]) takes the same steps frame by frame, so
//! each decision is written once.

use super::batch::{Action, DropReason, Slot};
use super::meta::{Meta, Track};
use crate::tables::{Adjacency, RouteKind, Tables};
use crate::wire::rewrite::{self, Side};
use crate::wire::{Family, L4Kind, Mac};

/// Decides a frame's action; later stages skip it.
#[inline]
pub(crate) fn decide(slot: &mut Slot<'_>, meta: &mut Meta, action: Action) {
    slot.action = action;
    meta.done = true;
}

/// The destination the packet will have after DNAT / de-SNAT.
#[inline]
pub(crate) fn effective_dst(m: &Meta) -> u128 {
    m.new_dst.map_or(m.parsed.dst, |d| d.0)
}

#[inline]
fn martian_source(family: Family, src: u128) -> bool {
    match family {
        Family::V4 => {
            let s = src as u32;
            let s8 = s >> 24;
            s8 == 0 || s8 == 127 || s >> 28 >= 0xe
        }
        Family::V6 => src <= 1 || src >> 120 == 0xff || src >> 118 == 0xfe80 >> 6,
    }
}

/// The FIB's answer for the frame's destination after DNAT / de-SNAT:
/// its next-hop id, 0 for no route.
#[inline(always)]
pub(crate) fn fib_lookup(t: &Tables, m: &Meta) -> u16 {
    t.fib.lookup_id(m.parsed.family, effective_dst(m))
}

/// The stage for one undecided frame: its next hop when it is to be
/// forwarded, else `None` with the frame decided.
///
/// `KNOWN`: the frame belongs to a connection conntrack found, which was
/// only committed when its first packet was forwarded. Such a frame
/// cannot be invalid, and its source cannot be martian: the original
/// direction's source was checked then, and the reply direction's source
/// is the address that packet was forwarded to, which a forward route
/// never covers (the martian ranges are martian routes, multicast and
/// the limited broadcast local ones, and those come before any forward
/// route). Those two checks are skipped.
#[inline(always)]
pub(crate) fn route_one<const KNOWN: bool>(
    t: &Tables,
    s: &mut Slot<'_>,
    m: &mut Meta,
) -> Option<Adjacency> {
    let id = fib_lookup(t, m);
    route_with_id::<KNOWN>(t, s, m, id)
}

/// [`route_one`] with the FIB's answer for the frame's destination (`id`, 0 for
/// no route) already at hand.
#[inline(always)]
pub(crate) fn route_with_id<const KNOWN: bool>(
    t: &Tables,
    s: &mut Slot<'_>,
    m: &mut Meta,
    id: u16,
) -> Option<Adjacency> {
    let p = &m.parsed;
    if p.family == Family::V6 && p.l4kind == L4Kind::IcmpOther && (133..=137).contains(&p.icmp_type)
    {
        decide(s, m, Action::Kernel);
        return None;
    }
    let a = t.adjacency(id);
    match a.kind {
        None => decide(s, m, Action::Drop(DropReason::NoRoute)),
        Some(RouteKind::Local) => decide(s, m, Action::Kernel),
        Some(RouteKind::Martian) => decide(s, m, Action::Drop(DropReason::Martian)),
        Some(RouteKind::Forward) if !KNOWN && martian_source(p.family, p.src) => {
            decide(s, m, Action::Drop(DropReason::Martian))
        }
        Some(RouteKind::Forward) if p.ttl <= 1 => {
            decide(s, m, Action::Drop(DropReason::TtlExceeded))
        }
        Some(RouteKind::Forward) if !KNOWN && m.track == Track::Invalid => {
            decide(s, m, Action::Drop(DropReason::ConntrackInvalid))
        }
        Some(RouteKind::Forward) => {
            m.nh = id;
            m.out_port = a.port;
            return Some(a);
        }
    }
    None
}

/// The MAC to send a frame to through next hop `a`: the gateway's,
/// resolved when the tables were built, or for a directly connected
/// destination (after DNAT) its neighbour entry, looked up per packet.
#[inline(always)]
pub(crate) fn resolve_mac(t: &Tables, a: &Adjacency, m: &Meta) -> Option<Mac> {
    resolve_hop(t, a, m).map(|(mac, _)| mac)
}

/// [`resolve_mac`] with the [`crate::tables::Hop`] id the route cache keeps
/// for it ([`Tables::resolve`]).
#[inline(always)]
pub(crate) fn resolve_hop(t: &Tables, a: &Adjacency, m: &Meta) -> Option<(Mac, u16)> {
    t.resolve(a, m.parsed.family, effective_dst(m))
}

/// A frame of a known connection whose next hop has no neighbour entry:
/// with `Tables::unresolved_to_kernel` its network layer is written as it
/// leaves (the MACs are the kernel's to write: zero here) and the kernel
/// resolves the neighbour and sends it ([`Action::ViaKernel`]); else it
/// is dropped as `no_neighbor`. (A new connection's frame is first
/// committed: see the neighbour stage.)
#[inline(never)]
pub(crate) fn unresolved(t: &Tables, s: &mut Slot<'_>, m: &mut Meta) {
    if t.unresolved_to_kernel {
        write_out(s, m, &[0; 6], &t.port_mac(m.out_port));
        decide(s, m, Action::ViaKernel);
    } else {
        decide(s, m, Action::Drop(DropReason::NoNeighbor));
    }
}

/// The rewrite stage's work on one frame with the MACs given: NAT, TTL
/// and MACs written, the frame forwarded.
#[inline(always)]
pub(crate) fn write_out(s: &mut Slot<'_>, m: &mut Meta, dst_mac: &Mac, src_mac: &Mac) {
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
