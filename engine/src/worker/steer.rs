//! Which worker a frame belongs to.
//!
//! Replay spreads frames over workers by a *symmetric* flow hash: both
//! directions of a connection land on the same worker, in order, which keeps
//! per-connection processing sequential and the results independent of the
//! number of workers.

use crate::wire::{self, Parsed};

#[inline]
fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser.
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[inline]
fn endpoint(addr: u128, port: u16) -> u64 {
    mix((addr as u64) ^ ((addr >> 64) as u64).rotate_left(17) ^ (u64::from(port) << 48))
}

/// A hash of the flow that is the same for both directions.
#[inline]
pub fn symmetric_hash(p: &Parsed) -> u64 {
    let a = endpoint(p.src, p.sport);
    let b = endpoint(p.dst, p.dport);
    // Order-independent combination that is not just XOR (which would send
    // every flow with src == dst to one bucket).
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    mix(lo ^ hi.rotate_left(23) ^ u64::from(p.proto))
}

/// Hash of a raw frame: the symmetric flow hash for IP, 0 for the rest.
pub fn frame_hash(frame: &[u8]) -> u64 {
    match wire::parse(frame) {
        Ok(p) => symmetric_hash(&p),
        Err(_) => 0,
    }
}

/// NAT-aware steering for replay: both directions of a connection, and
/// ICMP errors about it, go to the same worker even when NAT gives the
/// reply a different tuple, and so do connections that compete for the
/// same reply tuple (a masquerade port towards one remote end). It keys
/// each frame on an end of its connection that NAT does not change and
/// that both directions carry, in this order:
/// 1. to a service VIP or node port: the backend Maglev picks for it (a
///    pure function of the tables and the tuple) when the connection is
///    also masqueraded on its way there, else the client (source) side;
/// 2. to a masquerade address (a reply to SNAT, also of a DNATed and
///    masqueraded connection, whose source is its backend): the remote
///    (source) side;
/// 3. from a service backend: the client (destination) side;
/// 4. exactly one end inside a masquerade `from` prefix: the other end;
/// 5. otherwise the symmetric hash of both ends.
///
/// Frames of one worker are processed in capture order, so a connection's
/// frames meet the pipeline in the order one worker would give them; the
/// frames of connections that share nothing are independent. The result:
/// `--workers N` gives the results of one worker. It depends only on the
/// tables, never on state, so a run is repeatable.
#[derive(Debug)]
pub struct Steering<'a> {
    tables: &'a crate::tables::Tables,
}

impl<'a> Steering<'a> {
    /// Steering for `tables`.
    pub fn new(tables: &'a crate::tables::Tables) -> Self {
        Steering { tables }
    }

    /// The egress port of a packet forwarded to `dst`, if it is forwarded.
    fn egress(&self, family: wire::Family, dst: u128) -> Option<u16> {
        let a = self
            .tables
            .adjacency(self.tables.fib.lookup_id(family, dst));
        (a.kind == Some(crate::tables::RouteKind::Forward)).then_some(a.port)
    }

    /// The steering hash of a frame.
    pub fn hash(&self, frame: &[u8]) -> u64 {
        let Ok(p) = wire::parse(frame) else { return 0 };
        let p = if p.l4kind == wire::L4Kind::IcmpError {
            match wire::parse::parse_quoted(frame, &p) {
                // The quoted packet went the other way.
                Some(q) => Parsed {
                    src: q.dst,
                    dst: q.src,
                    sport: q.dport,
                    dport: q.sport,
                    proto: q.proto,
                    ..q
                },
                None => p,
            }
        } else {
            p
        };
        let nat = &self.tables.nat;
        if nat.is_empty() {
            return symmetric_hash(&p);
        }
        let one = |a: u128, port: u16| mix(endpoint(a, port) ^ u64::from(p.proto));
        let f = p.family;
        let is_node = self.tables.is_local(f, p.dst);
        if let Some((_, svc)) = nat.service_index(p.proto, f, p.dst, p.dport, is_node) {
            if let Some((b, bport)) = svc.pick(p.src, p.sport, p.dst, p.dport) {
                let masqueraded = self
                    .egress(f, b)
                    .is_some_and(|port| nat.masquerade_for(f, p.src, port).is_some());
                if masqueraded {
                    return one(b, bport);
                }
            }
            return one(p.src, p.sport);
        }
        if nat.is_masquerade_addr(f, p.dst) {
            return one(p.src, p.sport);
        }
        if nat.is_backend(f, p.src, p.sport) {
            return one(p.dst, p.dport);
        }
        match (
            nat.in_masquerade_from(f, p.src),
            nat.in_masquerade_from(f, p.dst),
        ) {
            (true, false) => one(p.dst, p.dport),
            (false, true) => one(p.src, p.sport),
            _ => symmetric_hash(&p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric() {
        let p = Parsed {
            src: 1,
            dst: 2,
            sport: 1000,
            dport: 80,
            proto: 6,
            ..Parsed::default()
        };
        let r = Parsed {
            src: 2,
            dst: 1,
            sport: 80,
            dport: 1000,
            ..p
        };
        assert_eq!(symmetric_hash(&p), symmetric_hash(&r));
        let other = Parsed { sport: 1001, ..p };
        assert_ne!(symmetric_hash(&p), symmetric_hash(&other));
    }
}
