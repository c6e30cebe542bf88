//! Local-delivery stage: what the node itself must see, and martians.
//!
//! Reads: `meta.parsed` (family, addresses, ICMPv6 type). Actions:
//! `Kernel` for the node's own addresses, multicast, limited and directed
//! broadcast, IPv6 link-local destinations and neighbour discovery (as the
//! kernel's `ip_route_input` would deliver them locally); `Drop(Martian)` for
//! addresses the kernel refuses to forward (loopback, multicast or
//! 0.0.0.0/8 / 240.0.0.0/4 sources, 0/8, 127/8 and 240/4 destinations,
//! unspecified or loopback IPv6, link-local sources beyond their link).

use super::super::{Action, DropReason, Meta, Slot};
use super::decide;
use crate::tables::Tables;
use crate::wire::{Family, L4Kind};

/// Where an address belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Deliver to the node's stack.
    Local,
    /// Never forward.
    Martian,
    /// Forwardable.
    Forward,
}

/// Classifies a packet by its addresses (and, for IPv6, neighbour discovery).
#[inline]
pub fn classify(t: &Tables, family: Family, src: u128, dst: u128, icmp6_nd: bool) -> Disposition {
    match family {
        Family::V4 => {
            let (s, d) = (src as u32, dst as u32);
            if d >> 28 == 0xe || d == u32::MAX || t.local.is_v4(d) {
                return Disposition::Local;
            }
            let (s8, d8) = (s >> 24, d >> 24);
            if s8 == 0 || s8 == 127 || s >> 28 >= 0xe || d8 == 0 || d8 == 127 || d >> 28 == 0xf {
                return Disposition::Martian;
            }
            Disposition::Forward
        }
        Family::V6 => {
            if dst >> 120 == 0xff || dst >> 118 == 0xfe80 >> 6 || icmp6_nd || t.local.is_v6(dst) {
                return Disposition::Local;
            }
            if src >> 120 == 0xff || src <= 1 || dst <= 1 || src >> 118 == 0xfe80 >> 6 {
                return Disposition::Martian;
            }
            Disposition::Forward
        }
    }
}

/// Runs the stage.
pub(crate) fn run(t: &Tables, slots: &mut [Slot<'_>], meta: &mut [Meta]) {
    for (s, m) in slots.iter_mut().zip(meta.iter_mut()) {
        if m.done {
            continue;
        }
        let p = &m.parsed;
        let nd = p.family == Family::V6
            && p.l4kind == L4Kind::IcmpOther
            && (133..=137).contains(&p.icmp_type);
        match classify(t, p.family, p.src, p.dst, nd) {
            Disposition::Local => decide(s, m, Action::Kernel),
            Disposition::Martian => decide(s, m, Action::Drop(DropReason::Martian)),
            Disposition::Forward => {}
        }
    }
}
