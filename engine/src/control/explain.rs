//! `explain`: what the running data plane would do with a flow, and why —
//! answered by the data plane itself.
//!
//! The flow becomes a frame ([`crate::wire::build`]) that runs through
//! [`Pipeline::process`] on the live tables in a dry run: the pipeline
//! gets a scratch connection table holding copies of the live entries the
//! frame can meet (the connection it belongs to, found with its state and
//! translation, and those a new connection's translation could collide
//! with) and no link to the XDP program's maps, and its counters are its
//! own, so nothing running changes. What each stage decided is
//! then read back ([`crate::pipeline::report`]): the connection (state,
//! direction, translation, the policy decision recorded when it was
//! allowed), the service and backend, the route, the policy verdict with
//! what decided it (the spec's `decided_by`), the source NAT chosen, the
//! egress port and the final action. There is no second implementation
//! to disagree with the pipeline.

use std::net::IpAddr;
use std::sync::Arc;

use policy_compiler::ir::DecisionInfo;
use policy_compiler::model::Action as RuleAction;
use serde_json::{json, Value};

use super::ctfilter::expired;
use crate::pipeline::report::{CtOutcome, FrameReport};
use crate::pipeline::stages::track::tuple_of;
use crate::pipeline::{Action, Batch, Pipeline};
use crate::tables::conntrack::{aux_decision, aux_service, Conntrack, Dir, Snapshot, Tuple};
use crate::tables::{RouteKind, Tables};
use crate::wire::build::{self, FrameSpec};
use crate::wire::{self, Family, L4Kind, Parsed};

/// A flow to explain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// For ICMP: type and code (an echo's identifier goes in `sport`).
    pub icmp: Option<(u8, u8)>,
    /// Port the packet arrives on (its conntrack zone).
    pub ingress: u16,
    /// TCP flags; `None`: SYN for a flow conntrack does not know, else
    /// what the connection's state expects next (see [`default_flags`]).
    pub tcp_flags: Option<u8>,
    /// TTL / hop limit as received (default 64).
    pub ttl: Option<u8>,
}

impl Query {
    /// Parses the `ctl explain` JSON form, the same as `policy eval`'s:
    /// `{"proto": "tcp", "src": .., "sport": .., "dst": .., "dport": ..}`
    /// (`icmp_type`/`icmp_code`, optional `id`, for ICMP; optional
    /// `ingress` port name).
    pub fn from_json(v: &Value, t: &Tables) -> Result<Query, String> {
        let key = policy_compiler::cli::parse_packet(&v.to_string())?;
        let (sport, dport, icmp) = match key.l4() {
            policy_compiler::L4::Ports { sport, dport } => (sport, dport, None),
            policy_compiler::L4::Icmp { ty, code } => {
                let id = v.get("id").and_then(Value::as_u64).unwrap_or(0) as u16;
                (id, id, Some((ty, code)))
            }
            policy_compiler::L4::None => (0, 0, None),
        };
        let ingress = match v.get("ingress").and_then(Value::as_str) {
            None => 0,
            Some(name) => t
                .ports
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| format!("ingress: no port named {name:?}"))?
                as u16,
        };
        Ok(Query {
            proto: key.proto(),
            src: key.src(),
            dst: key.dst(),
            sport,
            dport,
            icmp,
            ingress,
            tcp_flags: v
                .get("flags")
                .and_then(Value::as_str)
                .map(parse_tcp_flags)
                .transpose()?,
            ttl: v
                .get("ttl")
                .and_then(Value::as_u64)
                .map(|t| u8::try_from(t).map_err(|_| format!("ttl: {t} is not 0-255")))
                .transpose()?,
        })
    }

    fn parsed(&self) -> Parsed {
        let (family, src) = wire::from_ip(self.src);
        let (_, dst) = wire::from_ip(self.dst);
        let l4kind = match (self.proto, self.icmp) {
            (6, _) => L4Kind::Tcp,
            (17, _) => L4Kind::Udp,
            (136, _) => L4Kind::UdpLite,
            (132, _) => L4Kind::Sctp,
            (1 | 58, Some((ty, _))) if wire::parse::icmp_reply_type(family, ty).is_some() => {
                L4Kind::IcmpQuery
            }
            (1 | 58, Some(_)) => L4Kind::IcmpOther,
            _ => L4Kind::Other,
        };
        let (ty, code) = self.icmp.unwrap_or((0, 0));
        Parsed {
            src,
            dst,
            family,
            proto: self.proto,
            l4kind,
            sport: self.sport,
            dport: self.dport,
            icmp_type: ty,
            icmp_code: code,
            ttl: 64,
            ..Parsed::default()
        }
    }
}

fn endpoint(f: Family, a: u128, port: u16) -> String {
    match f {
        Family::V4 => format!("{}:{port}", wire::to_ip(f, a)),
        Family::V6 => format!("[{}]:{port}", wire::to_ip(f, a)),
    }
}

fn tuple_json(t: &Tuple) -> Value {
    json!({"src": endpoint(t.family, t.src, t.sport), "dst": endpoint(t.family, t.dst, t.dport), "proto": t.proto})
}

/// A conntrack entry as JSON (for `ctl conntrack` too).
pub fn entry_json(t: &Tables, s: &Snapshot, now: u64) -> Value {
    let svc = aux_service(s.aux);
    json!({
        "id": s.id,
        "state": s.state.name(),
        "original": tuple_json(&s.orig),
        "reply": tuple_json(&s.reply),
        "dnat": s.flags & crate::tables::conntrack::flags::DNAT != 0,
        "snat": s.flags & crate::tables::conntrack::flags::SNAT != 0,
        "service": (svc > 0).then(|| t.nat.services.get(usize::from(svc) - 1).map(|x| x.name.clone())).flatten(),
        "age_s": now.saturating_sub(s.created) as f64 / 1e9,
        "idle_s": now.saturating_sub(s.last_seen) as f64 / 1e9,
        "expires_in_s": (t.timeouts.of(s.state) as f64 - now.saturating_sub(s.last_seen) as f64) / 1e9,
        "policy": t.policy.decision_info(policy_compiler::Decision(aux_decision(s.aux))).json(),
    })
}

/// TCP flags written as letters (`S`, `SA`, `A`, `FA`, `R`, `PA`: the
/// tcpdump / Scapy letters F S R P A U).
pub fn parse_tcp_flags(s: &str) -> Result<u8, String> {
    s.chars().try_fold(0u8, |f, c| {
        Ok(f | match c.to_ascii_uppercase() {
            'F' => 0x01,
            'S' => 0x02,
            'R' => 0x04,
            'P' => 0x08,
            'A' => 0x10,
            'U' => 0x20,
            _ => return Err(format!("flags: {c:?} is not one of F S R P A U")),
        })
    })
}

/// The TCP flags of the next packet of a connection in direction `dir`
/// and state `state`, as `explain` assumes when none are given: a SYN
/// opening a flow conntrack does not know, the SYN+ACK answering one, and
/// an ACK otherwise.
pub fn default_flags(hit: Option<(&Snapshot, Dir)>) -> u8 {
    match hit {
        None => 0x02,
        Some((s, Dir::Reply)) if s.state.name() == "SYN_SENT" => 0x12,
        Some((s, Dir::Original)) if s.state.name() == "SYN_SENT" => 0x02,
        Some(_) => 0x10,
    }
}

/// The frame of `q` as it arrives on its ingress port.
fn frame_of(t: &Tables, q: &Query, flags: u8) -> Vec<u8> {
    let (family, src) = wire::from_ip(q.src);
    let (_, dst) = wire::from_ip(q.dst);
    build::frame(&FrameSpec {
        dst_mac: t.port_mac(q.ingress),
        src_mac: [0x02, 0, 0, 0, 0, 0x01],
        family,
        src,
        dst,
        proto: q.proto,
        sport: q.sport,
        dport: q.dport,
        icmp: q.icmp.unwrap_or((0, 0)),
        tcp_flags: flags,
        ttl: q.ttl.unwrap_or(64),
        payload: 0,
    })
}

/// The live entry `tuple` belongs to, if any, and its direction.
fn live_entry(t: &Tables, ct: &Conntrack, now: u64, tuple: &Tuple) -> Option<(Snapshot, Dir)> {
    let h = ct.peek(tuple, ct.hash(tuple), now, &t.timeouts)?;
    let snap = ct.read_entry(h.id).unwrap_or_else(|| h.snapshot());
    Some((snap, h.dir))
}

/// Explains `q` against the tables and conntrack as they are at `now`.
pub fn explain(t: &Arc<Tables>, ct: &Conntrack, now: u64, q: &Query) -> Value {
    let p = q.parsed();
    let tuple: Tuple = tuple_of(&p, t.zone(q.ingress));
    let hit = if matches!(p.l4kind, L4Kind::IcmpOther) {
        None
    } else {
        live_entry(t, ct, now, &tuple)
    };
    let flags = q
        .tcp_flags
        .unwrap_or_else(|| default_flags(hit.as_ref().map(|(s, d)| (s, *d))));
    explain_frame(t, ct, now, q.ingress, &frame_of(t, q, flags)).1
}

/// Runs `frame`, arriving on port `ingress`, through the pipeline in a dry
/// run against the live tables and (a copy of the entry it meets in) the
/// live connection table at `now`; the action it takes and the report.
pub fn explain_frame(
    t: &Arc<Tables>,
    ct: &Conntrack,
    now: u64,
    ingress: u16,
    frame: &[u8],
) -> (Action, Value) {
    let parsed = wire::parse(frame).ok();
    let tuple = parsed.as_ref().map(|p| tuple_of(p, t.zone(ingress)));
    // The live entry the frame belongs to (for an ICMP error, the one its
    // quoted packet does), copied into a scratch table.
    let lookup = match &parsed {
        Some(p) if p.l4kind == L4Kind::IcmpError => wire::parse::parse_quoted(frame, p)
            .map(|inner| tuple_of(&inner, t.zone(ingress)).reverse()),
        Some(p) if p.l4kind == L4Kind::IcmpOther => None,
        _ => tuple,
    };
    let hit = lookup.and_then(|k| live_entry(t, ct, now, &k));
    // The scratch table holds copies of the live entries the frame can
    // meet: the one it belongs to, and every one with an end at its
    // source or destination address — those a new connection's reply
    // tuple could collide with (a masquerade port in use, a DNAT reply),
    // so the commit stage decides as it would live. Each copy keeps its
    // tuples, state, flags and decision, last seen at the same time (so
    // it expires when the live one does).
    let ends: Vec<(Family, u128)> = parsed
        .iter()
        .flat_map(|p| [(p.family, p.src), (p.family, p.dst)])
        .collect();
    let copies: Vec<Snapshot> = ct
        .snapshot_all()
        .into_iter()
        .filter(|s| !expired(s, now, &t.timeouts))
        .filter(|s| {
            hit.as_ref().is_some_and(|(h, _)| h.orig == s.orig)
                || [&s.orig, &s.reply]
                    .iter()
                    .any(|u| ends.contains(&(u.family, u.src)) || ends.contains(&(u.family, u.dst)))
        })
        .collect();
    let scratch = Conntrack::new((copies.len() * 2 + 64).next_power_of_two(), 1);
    for s in &copies {
        let _ = scratch.insert(
            &s.orig,
            &s.reply,
            s.state,
            s.flags,
            s.aux,
            s.last_seen,
            &t.timeouts,
        );
    }
    let mut pl = Pipeline::new(t.clone(), Arc::new(scratch));
    let mut bytes = frame.to_vec();
    let mut batch = Batch::new();
    if batch.push(&mut bytes, ingress).is_err() {
        return (Action::Kernel, json!({"error": "no room for one frame"}));
    }
    pl.process(now, &mut batch);
    let Some(r) = pl.report(0, &batch) else {
        return (Action::Kernel, json!({"error": "no report"}));
    };
    let v = render(t, now, tuple.as_ref(), hit.as_ref(), &r);
    (r.action, v)
}

fn port_name(t: &Tables, p: u16) -> Option<String> {
    t.ports.get(usize::from(p)).map(|p| p.name.clone())
}

/// A tapped frame's report as `ctl trace` prints it (the same shape as
/// explain's, without the live entry's details).
pub fn render_traced(t: &Tables, now: u64, ingress: u16, r: &FrameReport) -> Value {
    let tuple = r.parsed.as_ref().map(|p| tuple_of(p, t.zone(ingress)));
    let mut v = render(t, now, tuple.as_ref(), None, r);
    if let Some(m) = v.as_object_mut() {
        m.remove("dry_run");
        m.remove("conntrack");
        let id = match r.conntrack {
            CtOutcome::Committed(id) | CtOutcome::Known(id, _) | CtOutcome::Related(id, _) => {
                Some(id)
            }
            _ => None,
        };
        m.insert("conntrack_entry".into(), json!(id));
    }
    v
}

/// The report as `ctl explain` prints it.
fn render(
    t: &Tables,
    now: u64,
    tuple: Option<&Tuple>,
    hit: Option<&(Snapshot, Dir)>,
    r: &FrameReport,
) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("dry_run".into(), json!(true));
    out.insert("packet".into(), tuple.map_or(Value::Null, tuple_json));
    let verdict = match r.action {
        Action::Forward(p) => json!({"action": "forward", "port": port_name(t, p)}),
        Action::Drop(d) => json!({"action": "drop", "reason": d.name()}),
        Action::Kernel => json!({"action": "kernel"}),
        Action::ViaKernel => {
            json!({"action": "via_kernel", "port": r.out_port.and_then(|p| port_name(t, p)),
                   "why": "next hop unresolved: the kernel resolves it and sends the packet"})
        }
    };
    let Some(p) = r.parsed else {
        out.insert("verdict".into(), verdict);
        return Value::Object(out);
    };
    // Conntrack: the live entry, and what the pipeline did with it.
    match hit {
        Some((s, dir)) => {
            let mut e = entry_json(t, s, now);
            if let Some(m) = e.as_object_mut() {
                let d = if *dir == Dir::Original {
                    "original"
                } else {
                    "reply"
                };
                m.insert("direction".into(), json!(d));
            }
            out.insert("conntrack".into(), e);
        }
        None => {
            out.insert("conntrack".into(), Value::Null);
        }
    }
    let outcome = match r.conntrack {
        CtOutcome::Untracked => "untracked",
        CtOutcome::Invalid => "invalid",
        CtOutcome::New => "new, not committed",
        CtOutcome::Committed(_) => "new, committed",
        CtOutcome::Known(..) => "known",
        CtOutcome::Related(..) => "related",
    };
    out.insert("conntrack_outcome".into(), json!(outcome));
    let new = matches!(r.conntrack, CtOutcome::New | CtOutcome::Committed(_));
    // The service a new connection went to (or found without backends).
    if let Some(i) = r.service {
        if let Some(svc) = t.nat.services.get(i) {
            let b = r.new_dst.map(|d| endpoint(p.family, d.0, d.1));
            out.insert("service".into(), json!({"name": svc.name, "backend": b}));
        }
    } else if r.action == Action::Drop(crate::pipeline::DropReason::NoBackend) {
        let is_node = t.is_local(p.family, p.dst);
        if let Some((_, svc)) = t
            .nat
            .service_index(p.proto, p.family, p.dst, p.dport, is_node)
        {
            out.insert("service".into(), json!({"name": svc.name, "backend": null}));
        }
    }
    if let Some(d) = r.new_dst {
        out.insert(
            "translated_destination".into(),
            json!(endpoint(p.family, d.0, d.1)),
        );
    }
    if let Some(s) = r.new_src {
        out.insert(
            "translated_source".into(),
            json!(endpoint(p.family, s.0, s.1)),
        );
        if new {
            out.insert(
                "masquerade".into(),
                json!({"address": wire::to_ip(p.family, s.0).to_string()}),
            );
        }
    }
    // Route.
    if let Some(id) = r.route {
        let route = match t.fib.next_hop(id) {
            None => Value::Null,
            Some(nh) => match nh.kind {
                RouteKind::Local => json!({"local": true}),
                RouteKind::Martian => json!({"martian": true}),
                RouteKind::Forward => json!({
                    "port": port_name(t, nh.port),
                    "via": nh.via.map(|v| wire::to_ip(p.family, v).to_string()),
                    "next_hop_mac": r.next_mac.map(|m| wire::mac_to_string(&m)),
                }),
            },
        };
        out.insert("route".into(), route);
    }
    // Policy: the pipeline's decision, with the classifier's account of
    // both directions for the same key.
    match &r.policy {
        Some((key, d)) => {
            let v = t.policy.classify(key, &mut t.policy.new_scratch());
            let mut pol = t.policy.verdict_json(&v);
            if let Some(m) = pol.as_object_mut() {
                m.insert("evaluated".into(), json!(true));
                m.insert("decision".into(), t.policy.decision_info(*d).json());
                // Something besides the endpoints' classifier decided (a
                // host endpoint's tiers, `DefaultEndpointToHostAction`, an
                // untracked or pre-DNAT accept): the verdict is what the
                // pipeline did; the classifier's own stays beside it.
                if crate::pipeline::stages::policy::deciding(&v) != *d {
                    let denied = r.action == Action::Drop(crate::pipeline::DropReason::Policy);
                    let own = m.insert(
                        "verdict".into(),
                        json!(if denied { "deny" } else { "allow" }),
                    );
                    m.insert("classifier_verdict".into(), own.unwrap_or(Value::Null));
                }
                // With staged policies: what they would make of it (the
                // pending walk; never enforced).
                if let Some(pc) = t.policy.staged() {
                    let pv = pc.classify(key, &mut pc.new_scratch());
                    let mut staged = pc.verdict_json(&pv);
                    if let Some(sm) = staged.as_object_mut() {
                        sm.insert("changes_verdict".into(), json!(pv.allow != v.allow));
                    }
                    m.insert("staged".into(), staged);
                }
            }
            out.insert("policy".into(), pol);
        }
        None if matches!(r.conntrack, CtOutcome::Known(..) | CtOutcome::Related(..)) => {
            out.insert(
                "policy".into(),
                json!({"evaluated": false, "why": "packet of a known connection: allowed when the connection was"}),
            );
        }
        None => {}
    }
    out.insert("verdict".into(), verdict);
    Value::Object(out)
}

/// Whether a decision's policy key names a staged policy (`staged:NAME`,
/// namespaced or not).
pub fn is_staged_key(policy: &str) -> bool {
    policy
        .rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("staged:"))
}

/// The pending walk's hits per decision (`Counters::staged_hits`, summed
/// over workers) gathered per staged policy: for each, by direction,
/// how many connection directions its rules would have allowed, denied
/// or passed, and the rules that did.
pub fn staged_hits(decisions: &[DecisionInfo], hits: &[u64]) -> Value {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<(&str, &str), serde_json::Map<String, Value>> = BTreeMap::new();
    for (info, &n) in decisions.iter().zip(hits) {
        let DecisionInfo::Rule {
            dir,
            tier,
            policy,
            rule,
            action,
        } = info
        else {
            continue;
        };
        if !is_staged_key(policy) {
            continue;
        }
        let e = by.entry((tier.as_str(), policy.as_str())).or_default();
        let what = match action {
            RuleAction::Allow => "would_allow",
            RuleAction::Deny => "would_deny",
            RuleAction::Pass => "would_pass",
            RuleAction::Log => continue,
        };
        let total = e.get(what).and_then(Value::as_u64).unwrap_or(0) + n;
        e.insert(what.into(), json!(total));
        if n > 0 {
            let rules = e.entry("rules").or_insert_with(|| json!([]));
            if let Some(a) = rules.as_array_mut() {
                a.push(json!({"direction": dir.name(), "rule": rule, "action": what, "hits": n}));
            }
        }
    }
    Value::Array(
        by.into_iter()
            .map(|((tier, policy), mut m)| {
                m.insert("tier".into(), json!(tier));
                m.insert("policy".into(), json!(policy));
                for k in ["would_allow", "would_deny", "would_pass"] {
                    m.entry(k).or_insert(json!(0));
                }
                m.entry("rules").or_insert(json!([]));
                Value::Object(m)
            })
            .collect(),
    )
}
