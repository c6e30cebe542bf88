//! Conntrack and NAT lookup stage (Linux's PREROUTING conntrack + DNAT).
//!
//! Reads: `meta.parsed`, the ingress port's zone, the shared conntrack
//! table, the services. Sets: `meta.tuple`, `meta.track` and the
//! translation to apply (`meta.new_dst`, `meta.new_src`; for a related ICMP
//! error also `meta.inner`). Packets of a known connection update its state
//! (last seen, TCP state) and will skip the classifier. A new connection to
//! a service VIP (or a node port on a node address) gets its backend by
//! Maglev here, so routing sees the backend. Actions: `Drop(NoBackend)`.
//! Packets that cannot start a connection are marked invalid here and
//! dropped by the route stage only if they are to be forwarded (the node's
//! own traffic always reaches the kernel).

use super::super::{Action, DropReason, Meta, Slot, Track};
use super::decide;
use crate::tables::conntrack::{self, Conntrack, Dir, State, TcpNew, Tuple};
use crate::tables::Tables;
use crate::wire::{parse, Family, L4Kind, Parsed};

/// The tuple of a parsed packet as conntrack keys it.
#[inline]
pub fn tuple_of(p: &Parsed, zone: u16) -> Tuple {
    let (sport, dport) = match p.l4kind {
        L4Kind::Tcp | L4Kind::Udp | L4Kind::UdpLite | L4Kind::Sctp | L4Kind::IcmpQuery => {
            (p.sport, p.dport)
        }
        _ => (0, 0),
    };
    Tuple {
        src: p.src,
        dst: p.dst,
        sport,
        dport,
        proto: p.proto,
        family: p.family,
        zone,
    }
}

/// Whether frame `j` (with key `jt`) might belong to the connection that the
/// earlier, not yet committed new frame `i` opens: the same key, or a key
/// from `i`'s far end back to it (its reply, possibly translated).
#[inline]
fn may_depend(i: &Meta, jt: &Tuple) -> bool {
    let it = &i.tuple;
    let (d, dp) = i.new_dst.unwrap_or((it.dst, it.dport));
    jt.proto == it.proto
        && (jt == it
            || (jt.src == d && jt.sport == dp)
            || (jt.dst == it.src && jt.dport == it.sport))
}

/// Runs the stage on the batch and returns how many frames, from the
/// start, the rest of the pipeline must take before this stage runs again
/// on the remainder: a frame whose connection an earlier frame of the same
/// batch is about to open (a SYN and its SYN/ACK arriving together) must
/// wait until that connection is committed. Batches of established traffic
/// and of unrelated new flows go through whole.
// Not inlined: a stage is a unit of cost in profiles (callgrind's per-stage
// breakdown); the call is once per batch.
#[inline(never)]
pub(crate) fn run(
    t: &Tables,
    ct: &Conntrack,
    now: u64,
    slots: &mut [Slot<'_>],
    meta: &mut [Meta],
) -> usize {
    let to = &t.timeouts;
    // Three passes, so that a batch has its misses in flight together
    // instead of stalling frame by frame (a DRAM miss costs ~175 ns): keys
    // and hashes, loading both index buckets of each key; then each key's
    // candidate slot, loading its entry; then the lookups.
    // Pass 1: keys and hashes.
    for (s, m) in slots.iter_mut().zip(meta.iter_mut()) {
        m.track = Track::Untracked;
        m.new_dst = None;
        m.new_src = None;
        m.service = 0;
        if m.done {
            continue;
        }
        let zone = t.zone(s.ingress);
        match m.parsed.l4kind {
            L4Kind::IcmpError => match parse::parse_quoted(s.frame, &m.parsed) {
                Some(inner) => {
                    m.inner = inner;
                    m.tuple = tuple_of(&inner, zone).reverse();
                    m.track = Track::RelatedCandidate;
                }
                None => continue,
            },
            L4Kind::IcmpOther => continue,
            _ => {
                m.tuple = tuple_of(&m.parsed, zone);
                m.track = Track::Lookup;
            }
        }
        m.hash = ct.hash(&m.tuple);
        m.buckets = ct.prefetch_buckets(m.hash);
    }
    // Pass 2: candidate slots.
    for m in meta.iter_mut() {
        if let Track::Lookup | Track::RelatedCandidate = m.track {
            m.cand = ct.candidate(m.hash, m.buckets);
        }
    }
    // Pass 3: lookups.
    let mut opened = 0usize; // new connections so far in this round
    for j in 0..slots.len().min(meta.len()) {
        let (Some(s), Some(m)) = (slots.get_mut(j), meta.get(j)) else {
            break;
        };
        if m.done || matches!(m.track, Track::Untracked) {
            continue;
        }
        let now = if s.ts != 0 { s.ts } else { now };
        let hit = ct.find(&m.tuple, m.hash, m.cand, now, to);
        if hit.is_none() && opened > 0 {
            let jt = m.tuple;
            if meta[..j]
                .iter()
                .any(|i| matches!(i.track, Track::New(_)) && !i.done && may_depend(i, &jt))
            {
                return j;
            }
        }
        let Some(m) = meta.get_mut(j) else { break };
        let mut hit = hit;
        if let Track::RelatedCandidate = m.track {
            m.track = match hit {
                Some(h) => {
                    m.new_dst = h.new_dst;
                    m.new_src = h.new_src;
                    Track::Related {
                        id: h.id,
                        dir: h.dir,
                    }
                }
                // An ICMP error about nothing sluice tracks: policy decides.
                None => Track::Untracked,
            };
            continue;
        }
        let p = &m.parsed;
        let tcp = (p.l4kind == L4Kind::Tcp).then_some(p.tcp_flags);
        if let (Some(h), Some(f)) = (hit, tcp) {
            // A new SYN on a closed or closing connection reopens it (the
            // kernel destroys the old entry and starts over).
            use crate::wire::parse::tcp_flags::{ACK, SYN};
            let reopens = |dir: Dir, state: State| {
                dir == Dir::Original
                    && f & SYN != 0
                    && f & ACK == 0
                    && matches!(state, State::TimeWait | State::Close)
            };
            if reopens(h.dir, h.state) {
                // Rare: remove what a full lookup reads (the whole entry).
                hit = match ct.lookup(&m.tuple, m.hash, now, to) {
                    Some(full) if reopens(full.dir, full.state) => {
                        ct.remove(&full.snapshot());
                        None
                    }
                    other => other.map(|full| conntrack::Found::of_hit(&full)),
                };
            }
        }
        if let Some(h) = hit {
            ct.touch_id(h.id, h.dir, tcp, now);
            m.new_dst = h.new_dst;
            m.new_src = h.new_src;
            m.track = Track::Known {
                id: h.id,
                dir: h.dir,
            };
            continue;
        }
        // A new connection, if this packet may start one.
        let state = match p.l4kind {
            L4Kind::Tcp => match conntrack::tcp_new(p.tcp_flags, t.tcp_loose) {
                TcpNew::Syn => State::SynSent,
                TcpNew::Pickup => State::Established,
                TcpNew::Invalid => {
                    m.track = Track::Invalid;
                    continue;
                }
            },
            L4Kind::IcmpQuery => {
                if !parse::icmp_is_request(p.family, p.icmp_type) {
                    m.track = Track::Invalid;
                    continue;
                }
                State::Icmp
            }
            _ => State::Datagram,
        };
        m.track = Track::New(state);
        opened += 1;
        // Services: DNAT before routing.
        if p.l4kind.has_ports() && !t.nat.services.is_empty() {
            let is_node = t.is_local(p.family, p.dst);
            if let Some((i, svc)) = t
                .nat
                .service_index(p.proto, p.family, p.dst, p.dport, is_node)
            {
                match svc.pick(p.src, p.sport, p.dst, p.dport) {
                    Some(b) => {
                        m.new_dst = Some(b);
                        m.service = i as u16 + 1;
                    }
                    None => decide(s, m, Action::Drop(DropReason::NoBackend)),
                }
            }
        }
    }
    slots.len()
}

/// The destination the packet will have after DNAT / de-SNAT.
#[inline]
pub(crate) fn effective_dst(m: &Meta) -> u128 {
    m.new_dst.map_or(m.parsed.dst, |d| d.0)
}

/// Whether a family matches (helper for tests).
pub fn same_family(a: Family, b: Family) -> bool {
    a == b
}
