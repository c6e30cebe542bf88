//! Conntrack and NAT lookup stage (Linux's PREROUTING conntrack + DNAT).
//!
//! Reads: `meta.parsed`, the ingress port's zone, the shared conntrack
//! table, the services. Sets: `meta.key`, `meta.track` and the
//! translation to apply (`meta.new_dst`, `meta.new_src`; for a related ICMP
//! error also `meta.inner`). Packets of a known connection update its state
//! (last seen, TCP state), skip the classifier and are forwarded right here
//! ([`super::known`]: route, neighbour and rewrite, with their actions). A new connection to
//! a service VIP (or a node port on a node address) gets its backend by
//! Maglev here, so routing sees the backend. Actions: `Drop(NoBackend)`.
//! Packets that cannot start a connection are marked invalid here and
//! dropped by the route stage only if they are to be forwarded (the node's
//! own traffic always reaches the kernel).

use arrayvec::ArrayVec;

use super::super::batch::{Action, Counters, DropReason, Slot, MAX_BATCH};
use super::super::meta::{Frames, Meta, Track, NO_DECISION};
use super::super::steps::{decide, route_one};
use super::known;
use super::policy::{self, PolicyScratch};
use crate::tables::conntrack::{self, Conntrack, Key, Probe, State, TcpNew, Tuple};
use crate::tables::Tables;
use crate::wire::{parse, L4Kind, Parsed};

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
    let it = &Tuple::from_words(i.key);
    let (d, dp) = i.new_dst.unwrap_or((it.dst, it.dport));
    jt.proto == it.proto
        && (jt == it
            || (jt.src == d && jt.sport == dp)
            || (jt.dst == it.src && jt.dport == it.sport))
}

/// A parsed packet's conntrack key, built straight from the parse (the
/// words of [`tuple_of`]).
#[inline]
pub fn key_of(p: &Parsed, zone: u16) -> Key {
    let (sport, dport) = match p.l4kind {
        L4Kind::Tcp | L4Kind::Udp | L4Kind::UdpLite | L4Kind::Sctp | L4Kind::IcmpQuery => {
            (p.sport, p.dport)
        }
        _ => (0, 0),
    };
    [
        p.src as u64,
        (p.src >> 64) as u64,
        p.dst as u64,
        (p.dst >> 64) as u64,
        conntrack::meta_word(sport, dport, p.proto, p.family, zone),
    ]
}

/// The first part of the stage, once per batch: every frame's key, and
/// every packet of a known connection settled. Three passes, so that a
/// batch has its misses in flight together instead of stalling frame by
/// frame (a DRAM miss costs ~175 ns): keys and hashes, loading each key's
/// first index bucket; then each key's candidate slot, loading its entry;
/// then the probes. The last two share a loop,
/// the candidate step running a few frames ahead of the probe.
/// A probe that finds the connection records the packet on it, the frame
/// is `Known` and is forwarded at once ([`super::known`]); anything else (a
/// miss, a reopening SYN, an ICMP error, an untracked packet) is listed in
/// `general` for [`run`] and the general stages, which take those in order.
/// After a reopening SYN every later frame is left pending too, since the
/// connection it matched is about to be replaced.
// Not inlined: a stage is a unit of cost in profiles (callgrind's per-stage
// breakdown); the call is once per batch. Its arguments are exactly what
// it touches (house style: no context struct over shared state).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(crate) fn prepare(
    t: &Tables,
    ct: &Conntrack,
    now: u64,
    ps: &PolicyScratch,
    c: &mut Counters,
    slots: &mut [Slot<'_>],
    meta: &mut [Meta],
    general: &mut Frames,
) {
    general.clear();
    // Pass 1: keys and hashes.
    for (s, m) in slots.iter_mut().zip(meta.iter_mut()) {
        m.track = Track::Untracked;
        m.new_dst = None;
        m.new_src = None;
        m.service = 0;
        m.decision = NO_DECISION;
        m.committed = false;
        if m.done {
            continue;
        }
        let zone = t.zone(s.ingress);
        match m.parsed.l4kind {
            L4Kind::IcmpError => match parse::parse_quoted(s.frame, &m.parsed) {
                Some(inner) => {
                    m.inner = inner;
                    m.key = tuple_of(&inner, zone).reverse().words();
                    m.track = Track::Pending;
                }
                None => continue,
            },
            L4Kind::IcmpOther => continue,
            _ => {
                m.key = key_of(&m.parsed, zone);
                m.track = Track::Lookup;
            }
        }
        m.hash = ct.hash_key(&m.key);
        m.buckets = ct.prefetch_buckets(m.hash);
    }
    // Pass 2, software-pipelined DIST frames ahead of pass 3 (one loop
    // instead of two; the distance is tuned in tuning.md): candidate slots.
    const DIST: usize = 4;
    for m in meta.iter_mut().take(DIST) {
        candidate(ct, m);
    }
    // Pass 3: probes.
    let tt = t.timeouts.table();
    let mut reopened = false;
    // Whether an earlier frame of the batch may open a connection.
    let mut opening = false;
    for j in 0..slots.len().min(meta.len()) {
        if let Some(m) = meta.get_mut(j + DIST) {
            candidate(ct, m);
        }
        let (Some(s), Some(m)) = (slots.get_mut(j), meta.get_mut(j)) else {
            break;
        };
        if m.done {
            continue;
        }
        let j = j as u16;
        if m.track != Track::Lookup || reopened {
            if m.track == Track::Lookup {
                m.track = Track::Pending;
            }
            let _ = general.try_push(j);
            continue;
        }
        let now = if s.ts != 0 { s.ts } else { now };
        match ct.probe(
            &m.key,
            m.hash,
            m.cand,
            now,
            &tt,
            m.parsed.tcp_flags,
            &mut m.new_dst,
            &mut m.new_src,
        ) {
            Probe::Hit(at) => {
                m.track = Track::Known {
                    id: at.id,
                    dir: at.dir,
                };
                known::one(t, ct, s, m, &at);
            }
            Probe::Miss => {
                // A denied flow's packet is settled here unless an earlier
                // frame of the batch, not yet committed, may open its
                // connection (the in-order part then decides).
                if !opening && settle_denied(t, ps, c, s, m) {
                    continue;
                }
                opening = true;
                m.track = Track::Pending;
                let _ = general.try_push(j);
            }
            Probe::Reopen => {
                m.track = Track::Pending;
                let _ = general.try_push(j);
                reopened = true;
            }
        }
    }
}

/// Pass 2 of [`prepare`] for one frame: its candidate slot (loading the
/// entry). Inlined: it runs for every packet. The FIB line
/// is not loaded: a packet of a known connection nearly always has its
/// route cached in the entry ([`super::known`]), and the general stages
/// load it for the others ([`super::route::run`]).
#[inline(always)]
fn candidate(ct: &Conntrack, m: &mut Meta) {
    if let Track::Lookup | Track::Pending = m.track {
        m.cand = ct.candidate(m.hash, m.buckets);
    }
}

/// The rest of the stage, in frame order, on the frames `general` names
/// (what [`prepare`] did not settle): related ICMP errors, reopened
/// connections and new ones; untracked frames are passed over. Returns
/// how many entries of `general`, from the start, the rest of the pipeline
/// must take before this runs again on the remainder: a frame whose connection
/// an earlier frame of the same batch is about to open (a SYN and its
/// SYN/ACK arriving together) must wait until that connection is
/// committed. Batches of established traffic and of unrelated new flows go
/// through whole.
// Not inlined: a stage is a unit of cost in profiles (callgrind's per-stage
// breakdown); the call is once per batch.
#[inline(never)]
pub(crate) fn run(
    t: &Tables,
    ct: &Conntrack,
    now: u64,
    slots: &mut [Slot<'_>],
    meta: &mut [Meta],
    general: &[u16],
) -> usize {
    let to = &t.timeouts;
    // Frames that opened a new connection so far in this round.
    let mut opened: ArrayVec<u16, MAX_BATCH> = ArrayVec::new();
    for (pos, j) in general.iter().map(|&i| usize::from(i)).enumerate() {
        let (Some(s), Some(m)) = (slots.get_mut(j), meta.get(j)) else {
            continue;
        };
        if m.done || m.track != Track::Pending {
            continue;
        }
        let now = if s.ts != 0 { s.ts } else { now };
        let tuple = Tuple::from_words(m.key);
        let hit = ct.lookup(&tuple, m.hash, now, to);
        if hit.is_none()
            && opened.iter().any(|&i| {
                meta.get(usize::from(i)).is_some_and(|i| {
                    matches!(i.track, Track::New(_)) && !i.done && may_depend(i, &tuple)
                })
            })
        {
            return pos;
        }
        let Some(m) = meta.get_mut(j) else { break };
        if m.parsed.l4kind == L4Kind::IcmpError {
            m.track = match hit {
                Some(h) => {
                    let f = conntrack::Found::of_hit(&h);
                    m.new_dst = f.new_dst;
                    m.new_src = f.new_src;
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
        let mut hit = hit;
        if let Some(h) = hit {
            if conntrack::reopens(h.dir, h.state, p.tcp_flags) {
                ct.remove(&h.snapshot());
                hit = None;
            }
        }
        if let Some(h) = hit {
            ct.touch_id(h.id, h.dir, p.tcp_flags, now);
            let f = conntrack::Found::of_hit(&h);
            m.new_dst = f.new_dst;
            m.new_src = f.new_src;
            m.track = Track::Known {
                id: h.id,
                dir: h.dir,
            };
            continue;
        }
        // A new connection, if this packet may start one.
        let Some(state) = opening_state(p, t.tcp_loose) else {
            m.track = Track::Invalid;
            continue;
        };
        m.track = Track::New(state);
        let _ = opened.try_push(j as u16);
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
                continue;
            }
        }
        // 1:1 NATs (floating IPs): every protocol conntrack follows, ports
        // (or the ICMP identifier) kept.
        if let Some(int) = t.nat.floating_dnat(p.family, p.dst) {
            m.new_dst = Some((int, p.dport));
        }
    }
    general.len()
}

/// The state of the connection a packet that matches none opens, or `None`
/// if it cannot open one (conntrack then calls it invalid).
#[inline]
fn opening_state(p: &Parsed, tcp_loose: bool) -> Option<State> {
    match p.l4kind {
        L4Kind::Tcp => match conntrack::tcp_new(p.tcp_flags, tcp_loose) {
            TcpNew::Syn => Some(State::SynSent),
            TcpNew::Pickup => Some(State::Established),
            TcpNew::Invalid => None,
        },
        L4Kind::IcmpQuery => parse::icmp_is_request(p.family, p.icmp_type).then_some(State::Icmp),
        _ => Some(State::Datagram),
    }
}

/// Settles a frame that matched no connection whose first packet the
/// policy memo says is denied ([`policy::memo_denial`]): it would open a
/// connection, so it is `New`; routing decides it as the route stage
/// would (the node's own traffic, no route, martians and TTL come before
/// policy), and a frame to forward is denied. Returns whether the frame
/// was settled; if not, it is untouched. The caller makes sure no earlier
/// frame of the batch may open the connection this one belongs to.
// Not inlined: a miss is rare on the per-packet path, and inlined the
// early path cost every packet of that loop instructions.
#[inline(never)]
fn settle_denied(
    t: &Tables,
    ps: &PolicyScratch,
    c: &mut Counters,
    s: &mut Slot<'_>,
    m: &mut Meta,
) -> bool {
    let Some(memo) = policy::memo_denial(ps, m) else {
        return false;
    };
    // A port with a host role judges more than the key (`stages::host`).
    if !t.host.role(s.ingress).is_plain() {
        return false;
    }
    let Some(state) = opening_state(&m.parsed, t.tcp_loose) else {
        return false;
    };
    m.track = Track::New(state);
    if route_one::<false>(t, s, m).is_some() {
        policy::apply_memo(&memo, s, m, c);
    }
    true
}
