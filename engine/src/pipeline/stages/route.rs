//! Route stage: FIB, TTL, neighbour.
//!
//! Reads: `meta.parsed` (family, destination, TTL). Sets: `meta.out_port`,
//! `meta.next_mac`. Actions: `Drop(NoRoute)`, `Drop(TtlExceeded)` (after the
//! route lookup, as in the kernel's `ip_forward`), `Drop(NoNeighbor)`.

use super::super::{Action, DropReason, Meta, Slot};
use super::decide;
use crate::tables::Tables;
use crate::wire::Family;

/// Runs the stage.
pub(crate) fn run(t: &Tables, slots: &mut [Slot<'_>], meta: &mut [Meta]) {
    for (s, m) in slots.iter_mut().zip(meta.iter_mut()) {
        if m.done {
            continue;
        }
        let p = &m.parsed;
        let (nh, id) = match p.family {
            Family::V4 => {
                let id = t.fib.lookup_v4_id(p.dst as u32);
                (t.fib.next_hops().get(usize::from(id).wrapping_sub(1)), id)
            }
            Family::V6 => (t.fib.lookup_v6(p.dst), 0),
        };
        let Some(nh) = nh else {
            decide(s, m, Action::Drop(DropReason::NoRoute));
            continue;
        };
        if p.ttl <= 1 {
            decide(s, m, Action::Drop(DropReason::TtlExceeded));
            continue;
        }
        let mac = match nh.via {
            // Gateway MACs are resolved when the tables are built.
            Some(_) if p.family == Family::V4 => t.gateway_mac(id),
            Some(via) => t.neigh.lookup(p.family, via).map(|(mac, _)| mac),
            None => t.neigh.lookup(p.family, p.dst).map(|(mac, _)| mac),
        };
        let Some(mac) = mac else {
            decide(s, m, Action::Drop(DropReason::NoNeighbor));
            continue;
        };
        m.out_port = nh.port;
        m.next_mac = mac;
    }
}
