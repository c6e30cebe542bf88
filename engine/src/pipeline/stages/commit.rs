//! Commit stage: new connections enter the conntrack table, with source
//! NAT chosen here (Linux's POSTROUTING masquerade + conntrack confirm).
//!
//! Reads: `meta.track`, `meta.key`, the translation so far, the egress
//! port, the masquerade rules and 1:1 NATs. Sets: `meta.new_src` for
//! masqueraded connections and 1:1 NAT hairpins, `meta.track = Known`. A
//! connection is only committed when its first packet is about to be
//! forwarded, so a dropped packet leaves no state. Masquerade keeps the original source port when the resulting
//! tuple is free (as Linux does), else tries others of the same range.
//! Actions: `Drop(ConntrackFull)`, `Drop(NatExhausted)`,
//! `Drop(ConntrackInvalid)` (the reply tuple belongs to another
//! connection).

use super::super::batch::{Action, DropReason, Slot};
use super::super::meta::{Meta, Track};
use super::super::steps::decide;
use crate::tables::conntrack::{flags, Conntrack, Found, InsertError, Tuple};
use crate::tables::nat::snat_candidates;
use crate::tables::Tables;
use crate::wire::L4Kind;

/// Runs the stage.
// Not inlined: a stage is a unit of cost in profiles (callgrind's per-stage
// breakdown); the call is once per batch.
#[inline(never)]
pub(crate) fn run(
    t: &Tables,
    ct: &Conntrack,
    now: u64,
    owner: u8,
    slots: &mut [Slot<'_>],
    meta: &mut [Meta],
    idx: &[u16],
) {
    let to = &t.timeouts;
    for &i in idx {
        let (Some(s), Some(m)) = (slots.get_mut(usize::from(i)), meta.get_mut(usize::from(i)))
        else {
            continue;
        };
        let Track::New(state) = m.track else { continue };
        if m.done {
            continue;
        }
        let p = &m.parsed;
        let orig = Tuple::from_words(m.key);
        let (dst, dport) = m.new_dst.unwrap_or((orig.dst, orig.dport));
        let mut reply = Tuple {
            src: dst,
            dst: orig.src,
            sport: dport,
            dport: orig.sport,
            ..orig
        };
        let mut fl = if m.new_dst.is_some() { flags::DNAT } else { 0 };
        let now = if s.ts != 0 { s.ts } else { now };
        let aux = crate::tables::conntrack::aux_pack(m.service, owner, m.decision);
        // Source NAT as Felix's POSTROUTING orders it: a 1:1 NAT's
        // hairpin (`cali-fip-snat`) first, then masquerade (NAT outgoing).
        let snat = match t.nat.floating_snat(p.family, p.src, dst) {
            Some(ext) => Some((ext, None)),
            None => t
                .nat
                .masquerade_for(p.family, p.src, m.out_port)
                .map(|mq| (mq.addr, mq.ports)),
        };
        let result = match snat {
            None => ct
                .insert(&orig, &reply, state, fl, aux, now, to)
                .map(|id| (id, None)),
            Some((addr, ports)) => {
                fl |= flags::SNAT;
                let ported = p.l4kind.has_ports() || p.l4kind == L4Kind::IcmpQuery;
                let mut out = Err(InsertError::ReplyExists);
                let candidates =
                    snat_candidates(orig.sport, ports, p.l4kind == L4Kind::IcmpQuery, m.hash);
                for port in candidates.take(if ported { 256 } else { 1 }) {
                    let port = if ported { port } else { 0 };
                    reply.dst = addr;
                    reply.dport = port;
                    match ct.insert(&orig, &reply, state, fl, aux, now, to) {
                        Ok(id) => {
                            out = Ok((id, Some((addr, port))));
                            break;
                        }
                        Err(InsertError::ReplyExists) => continue,
                        Err(e) => {
                            out = Err(e);
                            break;
                        }
                    }
                }
                match out {
                    Err(InsertError::ReplyExists) => {
                        decide(s, m, Action::Drop(DropReason::NatExhausted));
                        continue;
                    }
                    other => other,
                }
            }
        };
        match result {
            Ok((id, snat)) => {
                m.new_src = snat;
                m.committed = true;
                m.track = Track::Known {
                    id,
                    dir: crate::tables::conntrack::Dir::Original,
                };
            }
            Err(InsertError::Full) => decide(s, m, Action::Drop(DropReason::ConntrackFull)),
            Err(InsertError::OrigExists) => {
                // Another worker committed this connection first: use it.
                match ct.lookup(&orig, m.hash, now, to) {
                    Some(h) => {
                        let f = Found::of_hit(&h);
                        m.new_dst = f.new_dst;
                        m.new_src = f.new_src;
                        m.track = Track::Known {
                            id: h.id,
                            dir: h.dir,
                        };
                    }
                    None => decide(s, m, Action::Drop(DropReason::ConntrackInvalid)),
                }
            }
            Err(InsertError::ReplyExists) => {
                decide(s, m, Action::Drop(DropReason::ConntrackInvalid))
            }
        }
    }
}
