//! Known-connection forwarding: route, neighbour and rewrite for a packet
//! of a connection the track stage found, taken by the track stage right
//! where it finds the connection (`super::track::prepare`).
//!
//! Such a packet was judged when its connection opened, so policy and
//! commit have nothing to do with it, and what the three stages do with a
//! frame depends on that frame alone: taking them together, frame by frame,
//! as soon as the connection is found gives the same actions and bytes as
//! taking each stage over the batch in turn, with the frame's fields still
//! at hand and one visit instead of four (figures in tuning.md). The
//! general stages, with their own loops,
//! take the remaining frames: new connections, ICMP errors, untracked
//! packets.
//!
//! Reads and sets what [`super::route`], [`super::neigh`] and
//! [`super::rewrite`] do. Actions: theirs.

use super::super::batch::{Action, DropReason, Slot};
use super::super::meta::Meta;
use super::super::steps::{decide, resolve_hop, route_one, unresolved, write_out};
use crate::tables::conntrack::{self, Conntrack, Located};
use crate::tables::Tables;

/// Route, neighbour and rewrite for one undecided frame (the next hop
/// found by the first serves the other two).
///
/// The route cache: a connection's direction always goes the same way
/// while the tables stay the same (its destination after NAT is fixed,
/// and so are the FIB and the neighbours), so the entry keeps the
/// [`crate::tables::Hop`] each direction resolved to, with the tables'
/// generation. A frame whose direction has one for these tables skips the
/// FIB and neighbour lookups and their cache lines; only the TTL, which is the frame's own, is still checked,
/// as [`route_one`] checks it for a forward route. Any other frame takes
/// the lookups and, when they end in a hop, caches it
/// ([`Conntrack::cache_hop`]).
#[inline(always)]
pub(crate) fn one(t: &Tables, ct: &Conntrack, s: &mut Slot<'_>, m: &mut Meta, at: &Located) {
    if let Some(h) = t.hop(conntrack::hops_of(at.hops, at.dir, t.generation())) {
        if m.parsed.ttl <= 1 {
            decide(s, m, Action::Drop(DropReason::TtlExceeded));
            return;
        }
        m.out_port = h.port;
        write_out(s, m, &h.dst_mac, &h.src_mac);
        return;
    }
    uncached(t, ct, s, m, at);
}

/// [`one`] without a cached hop: the lookups, then the cache filled.
#[inline(never)]
fn uncached(t: &Tables, ct: &Conntrack, s: &mut Slot<'_>, m: &mut Meta, at: &Located) {
    let Some(a) = route_one::<true>(t, s, m) else {
        return;
    };
    match resolve_hop(t, &a, m) {
        Some((mac, hop)) => {
            if hop != 0 {
                ct.cache_hop(at, t.generation(), hop);
            }
            write_out(s, m, &mac, &a.src_mac)
        }
        None => unresolved(t, s, m),
    }
}
