//! Masquerade ports in use: reference counts per (masquerade address,
//! protocol, port), reported to a sink when a port becomes used or free.

use std::sync::atomic::Ordering::*;

use super::key::Tuple;
use crate::wire::parse::Family;

/// Told when a masquerade port becomes used or unused (the live data plane
/// marks it in the XDP program's bitmap, so replies to it are redirected to
/// sluice instead of the kernel). Called on connection setup and teardown,
/// never per packet.
pub trait NatPortSink: Send + Sync + std::fmt::Debug {
    /// `slot` is the masquerade address's index, `proto` the IP protocol.
    fn set(&self, slot: u8, proto: u8, port: u16, in_use: bool);
}

/// Reference counts of masquerade ports: several connections may share one
/// (masquerade address, protocol, port) towards different destinations; the
/// port is free only when the last of them goes.
#[derive(Debug)]
pub(super) struct NatRefs {
    pub(super) slots: Vec<(Family, u128)>,
    pub(super) counts: Box<[std::sync::atomic::AtomicU32]>,
    pub(super) sink: std::sync::Arc<dyn NatPortSink>,
}

impl NatRefs {
    fn index(&self, t: &Tuple) -> Option<(u8, usize)> {
        let slot = self
            .slots
            .iter()
            .position(|&(f, a)| f == t.family && a == t.dst)?;
        let p = match t.proto {
            6 => 0,
            17 => 1,
            1 | 58 => 2,
            _ => return None,
        };
        Some((slot as u8, (slot * 3 + p) * 65536 + usize::from(t.dport)))
    }

    pub(super) fn claim(&self, reply: &Tuple) {
        if let Some((slot, i)) = self.index(reply) {
            if let Some(c) = self.counts.get(i) {
                if c.fetch_add(1, AcqRel) == 0 {
                    self.sink.set(slot, reply.proto, reply.dport, true);
                }
            }
        }
    }

    pub(super) fn release(&self, reply: &Tuple) {
        if let Some((slot, i)) = self.index(reply) {
            if let Some(c) = self.counts.get(i) {
                if c.fetch_sub(1, AcqRel) == 1 {
                    self.sink.set(slot, reply.proto, reply.dport, false);
                }
            }
        }
    }
}
