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

use super::super::batch::{Slot, MAX_BATCH};
use super::super::meta::Meta;
use super::super::steps::{effective_dst, fib_lookup, route_with_id};
use crate::tables::Tables;
use crate::wire::Family;

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
            let dst = effective_dst(m);
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
                Family::V4 => fib_lookup(t, m),
                Family::V6 => v6_ids.next().unwrap_or(0),
            };
            let _ = route_with_id::<false>(t, s, m, id);
        }
    }
}
