//! Host endpoint stage: what Felix's host endpoints and
//! `DefaultEndpointToHostAction` judge besides the policy stage's
//! classifier: by the interface a packet comes in or goes out through,
//! and traffic to the host itself (`sources::felix::policy` gives the semantics and the Felix source each
//! follows). Four passes, each at the point of the pipeline where Linux
//! runs the chain it mirrors, each skipped with one branch per batch when
//! no port needs it ([`crate::tables::host::HostTables`]):
//!
//! - `untracked` (raw PREROUTING, before conntrack): every packet
//!   arriving on a port whose host endpoint has untracked tiers, judged on
//!   its ingress rules. A deny drops it; an allow records the accepting
//!   decision (`pre_decision`, Felix's accept mark) and holds the frame
//!   through the track stage's first part, after which `untracked_after`
//!   lists it for the general stages as `Untracked` (no lookup, no entry,
//!   no NAT): they route it and judge it by the normal policy as a packet
//!   without a connection.
//! - `pre_dnat` (mangle PREROUTING, before DNAT): a new connection
//!   arriving on a port whose host endpoint has pre-DNAT tiers, judged on
//!   its ingress rules with the destination it arrived with, whether it
//!   is forwarded or for the host (then only if it can only open a
//!   connection: `opening`). A deny drops it; an allow records the
//!   accepting decision (`pre_decision`). It runs after routing, which it does not depend on,
//!   so that it knows which frames are for the host.
//! - `input` (INPUT), after routing, on new connections routing hands
//!   to the kernel (only packets that can only open one: `opening`):
//!   from a workload's port (`cali-wl-to-host`), the
//!   workload's egress policy, then `DefaultEndpointToHostAction`; the
//!   host endpoint's own policy does not apply (it judges the host's
//!   interfaces). From another port, the normal tiers and profiles of the
//!   host endpoint at the destination address (the main classifier's
//!   ingress verdict; Felix dispatches by the interface, sluice's normal
//!   host endpoint policy is by address), unless untracked or pre-DNAT
//!   policy accepted the packet (`acceptAlreadyAccepted`).
//! - `forward` (FORWARD), after the policy stage: a new connection
//!   forwarded in through a port whose host endpoint has forward tiers
//!   (its ingress rules, unless accepted upstream: Felix skips them for a
//!   packet raw or pre-DNAT policy accepted) and out through one (its
//!   egress rules); a deny drops it.
//!
//! Reads: the ingress port, `meta.parsed`, `meta.track`, `meta.out_port`,
//! the host tables and the main classifier (`input`). Sets:
//! `meta.pre_decision`, `meta.track` (untracked) and `meta.decision` (the deciding rule, as `explain` shows it). Actions:
//! `Drop(Policy)`. Each judged frame is one classification (a host
//! endpoint's classifier holds only its own tiers of that kind); frames
//! of ports without a host role pay one indexed load per pass that runs.

use policy_compiler::{Decision, FlowKey};

use super::super::batch::{Action, Counters, DropReason, Slot};
use super::super::meta::{Frames, Meta, Track};
use super::policy::{arrival_key, count_decision, flow_key, record, PolicyScratch};
use crate::tables::host::{Effect, KindPolicy, ToHost};
use crate::tables::Tables;
use crate::wire::parse::tcp_flags;
use crate::wire::L4Kind;

/// Judges `key` by `k` on one side (ingress: the packet arrives through
/// the endpoint's interface; else it leaves through it): the effect and
/// the deciding rule.
#[inline]
fn judge(k: &KindPolicy, key: &FlowKey, ingress: bool, ps: &mut PolicyScratch) -> (Effect, u32) {
    let v = k.classifier.classify(key, &mut ps.scratch);
    let d = if ingress { v.ingress } else { v.egress };
    (k.effect(d.decided_by), d.decided_by.0)
}

/// Raw PREROUTING: untracked tiers (see the module docs). Runs before the
/// track stage, on every frame of the batch. A frame accepted here is
/// held as decided through the track stage's first part (which then
/// neither looks it up nor forwards it on a connection), and
/// [`untracked_after`] hands it to the general stages.
// Not inlined: a stage is a unit of cost in profiles; once per batch.
#[inline(never)]
pub(crate) fn untracked(
    t: &Tables,
    ps: &mut PolicyScratch,
    c: &mut Counters,
    slots: &mut [Slot<'_>],
    meta: &mut [Meta],
) {
    ps.untracked_accepted.clear();
    ps.untracked_denied.clear();
    if !t.host.untracked {
        return;
    }
    for (i, (s, m)) in slots.iter_mut().zip(meta.iter_mut()).enumerate() {
        if m.done {
            continue;
        }
        let Some(k) = t
            .host
            .endpoint(s.ingress)
            .and_then(|e| e.untracked.as_ref())
        else {
            continue;
        };
        let (effect, d) = judge(k, &arrival_key(m), true, ps);
        match effect {
            Effect::Deny => {
                m.pre_decision = d;
                record(c, s, m, d, false);
                let _ = ps.untracked_denied.try_push(i as u16);
            }
            Effect::Accept => {
                if let Some(h) = c.policy_hits.get_mut(d as usize) {
                    *h += 1;
                }
                m.pre_decision = d;
                m.done = true;
                let _ = ps.untracked_accepted.try_push(i as u16);
            }
            Effect::Continue => {}
        }
    }
}

/// After the track stage's first part: the frames [`untracked`] judged
/// get their decision back (that part starts every frame's over), and
/// those it accepted go to the general stages as untracked packets
/// (`general` kept in frame order). One branch per batch otherwise.
#[inline(never)]
pub(crate) fn untracked_after(ps: &PolicyScratch, meta: &mut [Meta], general: &mut Frames) {
    if ps.untracked_accepted.is_empty() && ps.untracked_denied.is_empty() {
        return;
    }
    for &i in &ps.untracked_denied {
        if let Some(m) = meta.get_mut(usize::from(i)) {
            m.decision = m.pre_decision;
        }
    }
    for &i in &ps.untracked_accepted {
        let Some(m) = meta.get_mut(usize::from(i)) else {
            continue;
        };
        m.decision = m.pre_decision;
        m.done = false;
        m.track = Track::Untracked;
        if let Err(at) = general.binary_search(&i) {
            let _ = general.try_insert(at, i);
        }
    }
}

/// Mangle PREROUTING: pre-DNAT tiers, on the frames `idx` names, after
/// routing (the verdict does not depend on it, and a frame for the host
/// is judged only if it can only open a connection: see [`opening`]).
#[inline(never)]
pub(crate) fn pre_dnat(
    t: &Tables,
    ps: &mut PolicyScratch,
    c: &mut Counters,
    slots: &mut [Slot<'_>],
    meta: &mut [Meta],
    idx: &[u16],
) {
    if !t.host.pre_dnat {
        return;
    }
    for &i in idx {
        let (Some(s), Some(m)) = (slots.get_mut(usize::from(i)), meta.get_mut(usize::from(i)))
        else {
            continue;
        };
        let local = m.done && s.action == Action::Kernel;
        if (m.done && !local) || m.host_accepted() || !matches!(m.track, Track::New(_)) {
            continue;
        }
        if local && !opening(m) {
            continue;
        }
        let Some(k) = t.host.endpoint(s.ingress).and_then(|e| e.pre_dnat.as_ref()) else {
            continue;
        };
        let (effect, d) = judge(k, &arrival_key(m), true, ps);
        match effect {
            Effect::Deny if local => record_decided(c, s, m, Decision(d), false),
            Effect::Deny => record(c, s, m, d, false),
            Effect::Accept => {
                if let Some(h) = c.policy_hits.get_mut(d as usize) {
                    *h += 1;
                }
                m.pre_decision = d;
            }
            Effect::Continue => {}
        }
    }
}

/// Whether a packet for the host can only open a connection: a TCP SYN
/// without ACK, or an ICMP request (echo, and the like), that no
/// connection of sluice's knows. The kernel tracks the host's
/// connections, and those the host opens leave through the kernel, not
/// sluice: a reply to one (a SYN/ACK, a UDP answer) looks new here but is
/// established for the kernel, which accepts it before any of Felix's
/// rules (`RELATED,ESTABLISHED`). So only these are judged; UDP and
/// other datagrams to the host are not (reported in the module docs of
/// `sources::felix::policy`). ICMPv6 router and neighbour discovery is
/// no request, and Felix lets a workload send it regardless.
#[inline]
fn opening(m: &Meta) -> bool {
    let p = &m.parsed;
    matches!(m.track, Track::New(_))
        && match p.l4kind {
            L4Kind::Tcp => p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN,
            L4Kind::IcmpQuery => true,
            _ => false,
        }
}

/// INPUT: new connections routing handed to the kernel, on the frames
/// `idx` names. From a workload: its egress policy, then
/// `DefaultEndpointToHostAction`. From another port: the ingress policy of
/// the host endpoint at the destination address, unless untracked or
/// pre-DNAT policy accepted the packet.
#[inline(never)]
pub(crate) fn input(
    t: &Tables,
    ps: &mut PolicyScratch,
    c: &mut Counters,
    slots: &mut [Slot<'_>],
    meta: &mut [Meta],
    idx: &[u16],
) {
    if !t.host.to_host && !t.host.input {
        return;
    }
    for &i in idx {
        let (Some(s), Some(m)) = (slots.get_mut(usize::from(i)), meta.get_mut(usize::from(i)))
        else {
            continue;
        };
        if !m.done || s.action != Action::Kernel || !opening(m) {
            continue;
        }
        if t.host.role(s.ingress).workload {
            let Some((action, setting)) = t.host.policy.to_host else {
                continue;
            };
            let v = t.policy.classify(&flow_key(m), &mut ps.scratch);
            let (allow, d) = if !v.egress.allow {
                (false, v.egress.decided_by)
            } else {
                (action != ToHost::Drop, setting)
            };
            // The frame is already decided (to the kernel): a denial
            // replaces that action.
            record_decided(c, s, m, d, allow);
        } else if t.host.input && !m.host_accepted() {
            let Some(from) = t.host.policy.input_from else {
                continue;
            };
            let v = t.policy.classify(&flow_key(m), &mut ps.scratch);
            let d = v.ingress;
            if d.endpoint.is_some_and(|e| e.0 >= from) {
                record_decided(c, s, m, d.decided_by, d.allow);
            }
        }
    }
}

/// [`record`] for a frame another stage already decided.
#[inline]
fn record_decided(c: &mut Counters, s: &mut Slot<'_>, m: &mut Meta, d: Decision, allow: bool) {
    count_decision(c, m, d.0, allow);
    if !allow {
        s.action = Action::Drop(DropReason::Policy);
    }
}

/// FORWARD: the forward tiers of the host endpoints of the ports a
/// forwarded new connection comes in and goes out through, on the frames
/// `idx` names, after the policy stage allowed them.
#[inline(never)]
pub(crate) fn forward(
    t: &Tables,
    ps: &mut PolicyScratch,
    c: &mut Counters,
    slots: &mut [Slot<'_>],
    meta: &mut [Meta],
    idx: &[u16],
) {
    if !t.host.forward {
        return;
    }
    for &i in idx {
        let (Some(s), Some(m)) = (slots.get_mut(usize::from(i)), meta.get_mut(usize::from(i)))
        else {
            continue;
        };
        if m.done || !matches!(m.track, Track::New(_) | Track::Untracked) {
            continue;
        }
        let from = (!m.host_accepted())
            .then(|| t.host.endpoint(s.ingress).and_then(|e| e.forward.as_ref()))
            .flatten();
        let to = t.host.endpoint(m.out_port).and_then(|e| e.forward.as_ref());
        if from.is_none() && to.is_none() {
            continue;
        }
        let key = flow_key(m);
        for (k, ingress) in [(from, true), (to, false)] {
            let Some(k) = k else { continue };
            let (effect, d) = judge(k, &key, ingress, ps);
            match effect {
                Effect::Deny => {
                    record(c, s, m, d, false);
                    break;
                }
                // An allow names itself where nothing else judged the
                // packet (no workload endpoint on either side).
                Effect::Accept if m.decision == Decision::NONE.0 => {
                    if let Some(h) = c.policy_hits.get_mut(d as usize) {
                        *h += 1;
                    }
                    m.decision = d;
                }
                _ => {}
            }
        }
    }
}
