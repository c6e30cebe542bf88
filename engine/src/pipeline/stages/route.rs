//! Route stage: one FIB lookup decides local delivery, martians, no route
//! and the TTL, as Linux's `ip_route_input` + `ip_forward` do, before policy.
//!
//! Reads: `meta.parsed` (family, addresses, TTL, ICMPv6 type), the
//! destination after DNAT / de-SNAT, and whether conntrack found the packet
//! invalid. Sets:
//! `meta.nh` (1-based next-hop id) and `meta.out_port`. Actions:
//! - `Kernel`: a local route (the node's addresses, subnet and limited
//!   broadcast, multicast, IPv6 link-local) or IPv6 neighbour discovery;
//! - `Drop(Martian)`: a martian destination route (0/8, 127/8, 240/4, ::,
//!   ::1), or, for a packet to be forwarded, a martian source (0/8, 127/8,
//!   multicast or class E; ::, ::1, multicast, link-local beyond its link);
//! - `Drop(NoRoute)`: no route;
//! - `Drop(TtlExceeded)`: TTL or hop limit 1 or 0 on a packet to forward;
//! - `Drop(ConntrackInvalid)`: a packet to forward that cannot start a
//!   connection and belongs to none.
//!
//! Doing the lookup here rather than after policy follows Linux, where the
//! routing decision precedes the FORWARD hook: an unroutable or expiring
//! packet never reaches the classifier or creates conntrack state.

use arrayvec::ArrayVec;

use super::super::{Action, DropReason, Meta, Slot, Track, MAX_BATCH};
use super::decide;
use crate::tables::{Adjacency, RouteKind, Tables};
use crate::wire::{Family, L4Kind};

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

/// Runs the stage on the frames `idx` names. A pass ahead of the
/// decisions starts every IPv4 frame's first-level FIB load and looks the
/// IPv6 frames up all at once, their trie walks level by level
/// ([`crate::tables::Fib::lookup_v6_bulk`]).
// Not inlined: a stage is a unit of cost in profiles (callgrind's per-stage
// breakdown); the call is once per batch.
#[inline(never)]
pub(crate) fn run(t: &Tables, slots: &mut [Slot<'_>], meta: &mut [Meta], idx: &[u16]) {
    let mut v6: ArrayVec<u128, MAX_BATCH> = ArrayVec::new();
    for &i in idx {
        if let Some(m) = meta.get(usize::from(i)).filter(|m| !m.done) {
            let dst = super::track::effective_dst(m);
            match m.parsed.family {
                Family::V4 => t.fib.prefetch_v4(dst as u32),
                Family::V6 => {
                    let _ = v6.try_push(dst);
                }
            }
        }
    }
    let mut ids = [0u16; MAX_BATCH];
    t.fib.lookup_v6_bulk(&v6, &mut ids);
    let mut v6_ids = ids.iter().take(v6.len()).copied();
    for &i in idx {
        let (Some(s), Some(m)) = (slots.get_mut(usize::from(i)), meta.get_mut(usize::from(i)))
        else {
            continue;
        };
        if !m.done {
            let id = match m.parsed.family {
                Family::V4 => lookup(t, m),
                Family::V6 => v6_ids.next().unwrap_or(0),
            };
            let _ = with_id::<false>(t, s, m, id);
        }
    }
}

/// The FIB's answer for the frame's destination after DNAT / de-SNAT:
/// its next-hop id, 0 for no route.
#[inline(always)]
fn lookup(t: &Tables, m: &Meta) -> u16 {
    let dst = super::track::effective_dst(m);
    match m.parsed.family {
        Family::V4 => t.fib.lookup_v4_id(dst as u32),
        Family::V6 => t.fib.lookup_v6_id(dst),
    }
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
/// route). Those two checks are skipped (9 instructions a packet).
#[inline(always)]
pub(crate) fn one<const KNOWN: bool>(
    t: &Tables,
    s: &mut Slot<'_>,
    m: &mut Meta,
) -> Option<Adjacency> {
    let id = lookup(t, m);
    with_id::<KNOWN>(t, s, m, id)
}

/// [`one`] with the FIB's answer for the frame's destination (`id`, 0 for
/// no route) already at hand.
#[inline(always)]
fn with_id<const KNOWN: bool>(
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
