//! MTU stage (live, once the ports' MTUs are known): a forwarded packet
//! larger than its egress port's MTU is answered as Linux's `ip_forward`
//! / `ip6_forward` answer it — IPv4 with DF set gets ICMP "fragmentation
//! needed" carrying the MTU, IPv6 "packet too big" — so path-MTU discovery
//! works through the node instead of black-holing.
//!
//! Runs after the stages wrote the frame, so it first puts the packet
//! back as it arrived (TTL / hop limit, then any NAT undone), which is
//! what the error quotes, as the sender sees it. The error goes back to
//! the packet's source through the FIB and neighbours, from the address
//! of the port it leaves by (Linux picks the route's preferred source: the
//! port's address in that case). IPv4 errors are rate-limited per
//! destination as Linux's `icmp_ratelimit` (1 s, a burst of 6: only
//! type 3 is in the default `icmp_ratemask`); IPv6 "packet too big" is not
//! in Linux's default mask and is not limited. Not answered, counted as
//! `too_big`: an ICMP error with DF (never answered with another), a
//! source with no route or neighbour, and what the limit holds back.
//!
//! IPv4 without DF is fragmented, as Linux's forwarding does: the packet
//! stays `Forward` with `Slot::fragment` set to the MTU, and whoever
//! transmits splits it (`wire::frag`, Linux's own sizes, flags and
//! option rules), since one frame becomes several. Sluice fragments
//! rather than handing the packet to the kernel because the kernel's raw
//! sockets refuse a header-included packet bigger than the MTU
//! (`EMSGSIZE`) instead of fragmenting it.
//!
//! Reads: the slot's action and frame, `meta.parsed`, the translation.
//! Actions: `Forward(port)` (the error, or the packet to fragment),
//! `Drop(TooBig)`.

use super::super::batch::{Action, Counters, DropReason, Slot};
use super::super::meta::{Meta, Track};
use crate::tables::{RouteKind, Tables};
use crate::wire::checksum::checksum;
use crate::wire::icmp::too_big_in_place;
use crate::wire::rewrite::{self, Side};
use crate::wire::{Family, L4Kind};

/// `net.ipv4.icmp_ratelimit` (ms → ns) and the burst Linux allows
/// (`XRLIM_BURST_FACTOR`).
const RATE_NS: u64 = 1_000_000_000;
const BURST: u64 = 6;

/// Per-destination token buckets, by a hash of the address.
const PEERS: usize = 64;

/// The stage's state: each port's MTU (0: unknown, not checked) and the
/// rate limiter.
#[derive(Debug)]
pub(crate) struct MtuState {
    pub(crate) mtu: Vec<u32>,
    peers: [(u128, u64, u64); PEERS],
    ident: u16,
}

impl Default for MtuState {
    fn default() -> Self {
        MtuState {
            mtu: Vec::new(),
            peers: [(0, 0, 0); PEERS],
            ident: 1,
        }
    }
}

impl MtuState {
    /// Whether an error to `dst` may go now (Linux's `xrlim_allow`).
    fn allow(&mut self, dst: u128, now: u64) -> bool {
        let h = (dst ^ (dst >> 64)) as u64;
        let i = (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % PEERS;
        let Some(p) = self.peers.get_mut(i) else {
            return false;
        };
        if p.0 != dst || p.2 == 0 {
            *p = (dst, BURST * RATE_NS, now);
        }
        let tokens = (p.1 + now.saturating_sub(p.2)).min(BURST * RATE_NS);
        p.2 = now;
        if tokens >= RATE_NS {
            p.1 = tokens - RATE_NS;
            true
        } else {
            p.1 = tokens;
            false
        }
    }
}

/// The IP packet's length as its header gives it.
fn ip_len(frame: &[u8], family: Family, l3: usize) -> Option<usize> {
    let b = |i: usize| frame.get(l3 + i).copied().map(usize::from);
    match family {
        Family::V4 => Some(b(2)? << 8 | b(3)?),
        Family::V6 => Some(40 + (b(4)? << 8 | b(5)?)),
    }
}

/// Puts the packet back as it arrived: NAT undone (source, then
/// destination, the reverse of the write), TTL / hop limit restored.
fn as_received(s: &mut Slot<'_>, m: &Meta) {
    let p = &m.parsed;
    let l3 = p.l3 as usize;
    if m.new_src.is_some() {
        rewrite::nat_rewrite(s.frame, p, Side::Src, p.src, p.sport);
    }
    if m.new_dst.is_some() {
        rewrite::nat_rewrite(s.frame, p, Side::Dst, p.dst, p.dport);
    }
    match p.family {
        Family::V4 => {
            if let Some(ttl) = s.frame.get_mut(l3 + 8) {
                *ttl = p.ttl;
            }
            let ihl = s.frame.get(l3).map_or(20, |b| usize::from(b & 0x0f) * 4);
            if let Some(h) = s.frame.get_mut(l3..l3 + ihl) {
                h[10] = 0;
                h[11] = 0;
                let c = checksum(h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
        }
        Family::V6 => {
            if let Some(hl) = s.frame.get_mut(l3 + 7) {
                *hl = p.ttl;
            }
        }
    }
}

/// Runs the stage on every forwarded frame.
// Not inlined: a stage is a unit of cost in profiles.
#[inline(never)]
pub(crate) fn run(
    t: &Tables,
    st: &mut MtuState,
    now: u64,
    slots: &mut [Slot<'_>],
    meta: &[Meta],
    c: &mut Counters,
) {
    for (s, m) in slots.iter_mut().zip(meta) {
        let Action::Forward(out) = s.action else {
            continue;
        };
        let Some(&mtu) = st.mtu.get(usize::from(out)) else {
            continue;
        };
        let p = &m.parsed;
        let l3 = p.l3 as usize;
        let Some(len) = ip_len(s.frame, p.family, l3) else {
            continue;
        };
        if mtu == 0 || len <= mtu as usize {
            continue;
        }
        let df = p.family == Family::V6 || s.frame.get(l3 + 6).is_some_and(|f| f & 0x40 != 0);
        let is_error = p.l4kind == L4Kind::IcmpError || matches!(m.track, Track::Related { .. });
        if !df {
            // Fits u16: an IPv4 packet is at most 65,535 bytes.
            s.fragment = u16::try_from(mtu).unwrap_or(u16::MAX);
            c.fragmented += 1;
            continue;
        }
        if is_error {
            s.action = Action::Drop(DropReason::TooBig);
            continue;
        }
        if answer(t, st, now, s, m, len, mtu).is_none() {
            s.action = Action::Drop(DropReason::TooBig);
        } else {
            c.icmp_too_big += 1;
        }
    }
}

/// Writes the error over the frame and sends it back; `None` if it cannot
/// or may not go.
fn answer(
    t: &Tables,
    st: &mut MtuState,
    now: u64,
    s: &mut Slot<'_>,
    m: &Meta,
    len: usize,
    mtu: u32,
) -> Option<()> {
    let p = &m.parsed;
    let a = t.adjacency(t.fib.lookup_id(p.family, p.src));
    if a.kind != Some(RouteKind::Forward) {
        return None;
    }
    let (mac, _) = t.resolve(&a, p.family, p.src)?;
    let src = t
        .ports
        .get(usize::from(a.port))?
        .addresses
        .iter()
        .find(|c| c.family == p.family)?
        .addr;
    if p.family == Family::V4 && !st.allow(p.src, now) {
        return None;
    }
    as_received(s, m);
    st.ident = st.ident.wrapping_add(1);
    let l3 = p.l3 as usize;
    let n = too_big_in_place(s.frame, l3, len, p.family, src, mtu, st.ident)?;
    let f = std::mem::take(&mut s.frame);
    f.get_mut(0..6)?.copy_from_slice(&mac);
    f.get_mut(6..12)?.copy_from_slice(&a.src_mac);
    s.frame = f.get_mut(..n)?;
    s.written = s.written.max(n as u32);
    s.action = Action::Forward(a.port);
    Some(())
}
