//! `explain`: what the running data plane would do with a flow, and why.
//!
//! Given a 5-tuple (or ICMP type/code), it answers from the live tables and
//! conntrack without changing them: the connection it belongs to (state,
//! direction, translation, and the policy decision recorded when it was
//! allowed), or, for a new connection, the service backend Maglev would
//! pick, the route (local, martian, no route, port and next hop), the
//! policy verdict with what decided it (the spec's `decided_by`, the
//! answer to "which policy dropped this"), and whether masquerade applies.

use std::net::IpAddr;

use serde_json::{json, Value};

use crate::pipeline::stages::track::tuple_of;
use crate::tables::conntrack::{aux_decision, aux_service, Conntrack, Dir, Found, Snapshot, Tuple};
use crate::tables::{RouteKind, Tables};
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

/// Explains `q` against the tables and conntrack as they are at `now`.
pub fn explain(t: &Tables, ct: &Conntrack, now: u64, q: &Query) -> Value {
    let p = q.parsed();
    let tuple: Tuple = tuple_of(&p, t.zone(q.ingress));
    let mut out = serde_json::Map::new();
    out.insert("packet".into(), tuple_json(&tuple));
    // Conntrack: a known connection skips the classifier.
    let hit = if matches!(p.l4kind, L4Kind::IcmpOther) {
        None
    } else {
        ct.lookup(&tuple, ct.hash(&tuple), now, &t.timeouts)
    };
    let (new_dst, new_src, known) = match &hit {
        Some(h) => {
            let f = Found::of_hit(h);
            let (d, s) = (f.new_dst, f.new_src);
            let full = ct.read_entry(h.id).unwrap_or_else(|| h.snapshot());
            let mut e = entry_json(t, &full, now);
            if let Some(m) = e.as_object_mut() {
                m.insert(
                    "direction".into(),
                    json!(if h.dir == Dir::Original {
                        "original"
                    } else {
                        "reply"
                    }),
                );
            }
            out.insert("conntrack".into(), e);
            (d, s, true)
        }
        None => {
            out.insert("conntrack".into(), Value::Null);
            (None, None, false)
        }
    };
    // Services (new connections only).
    let mut dst = new_dst.unwrap_or((p.dst, p.dport));
    if !known && p.l4kind.has_ports() {
        let is_node = t.is_local(p.family, p.dst);
        if let Some((_, svc)) = t
            .nat
            .service_index(p.proto, p.family, p.dst, p.dport, is_node)
        {
            match svc.pick(p.src, p.sport, p.dst, p.dport) {
                Some(b) => {
                    dst = b;
                    out.insert(
                        "service".into(),
                        json!({"name": svc.name, "backend": endpoint(p.family, b.0, b.1)}),
                    );
                }
                None => {
                    out.insert("service".into(), json!({"name": svc.name, "backend": null}));
                    out.insert(
                        "verdict".into(),
                        json!({"action": "drop", "reason": "no_backend"}),
                    );
                    return Value::Object(out);
                }
            }
        }
    }
    if let Some(d) = new_dst {
        out.insert(
            "translated_destination".into(),
            json!(endpoint(p.family, d.0, d.1)),
        );
    }
    if let Some(s) = new_src {
        out.insert(
            "translated_source".into(),
            json!(endpoint(p.family, s.0, s.1)),
        );
    }
    // Route.
    let id = t.fib.lookup_id(p.family, dst.0);
    let verdict = |action: &str, reason: Option<&str>| match reason {
        Some(r) => json!({"action": action, "reason": r}),
        None => json!({"action": action}),
    };
    let route = match t.fib.next_hop(id) {
        None => {
            out.insert("route".into(), Value::Null);
            out.insert("verdict".into(), verdict("drop", Some("no_route")));
            return Value::Object(out);
        }
        Some(nh) => nh,
    };
    match route.kind {
        RouteKind::Local => {
            out.insert("route".into(), json!({"local": true}));
            out.insert("verdict".into(), verdict("kernel", None));
            return Value::Object(out);
        }
        RouteKind::Martian => {
            out.insert("route".into(), json!({"martian": true}));
            out.insert("verdict".into(), verdict("drop", Some("martian")));
            return Value::Object(out);
        }
        RouteKind::Forward => {}
    }
    let port = t.ports.get(usize::from(route.port)).map(|p| p.name.clone());
    out.insert(
        "route".into(),
        json!({"port": port, "via": route.via.map(|v| wire::to_ip(p.family, v).to_string()), "next_hop_mac": t.gateway_mac(id).map(|m| wire::mac_to_string(&m))}),
    );
    // Policy: only a new connection is classified.
    if known {
        out.insert("policy".into(), json!({"evaluated": false, "why": "packet of a known connection: allowed when the connection was"}));
        out.insert("verdict".into(), verdict("forward", None));
        return Value::Object(out);
    }
    let meta_like = |d: (u128, u16)| {
        let l4 = match p.l4kind {
            k if k.has_ports() => policy_compiler::L4::Ports {
                sport: p.sport,
                dport: d.1,
            },
            k if k.is_icmp() => policy_compiler::L4::Icmp {
                ty: p.icmp_type,
                code: p.icmp_code,
            },
            _ => policy_compiler::L4::None,
        };
        match p.family {
            Family::V4 => policy_compiler::FlowKey::v4(p.src as u32, d.0 as u32, p.proto, l4),
            Family::V6 => policy_compiler::FlowKey::v6(p.src, d.0, p.proto, l4),
        }
    };
    let key = meta_like(dst);
    let v = t.policy.classify(&key, &mut t.policy.new_scratch());
    let mut pol = t.policy.verdict_json(&v);
    if let Some(m) = pol.as_object_mut() {
        m.insert("evaluated".into(), json!(true));
    }
    out.insert("policy".into(), pol);
    if !v.allow {
        out.insert("verdict".into(), verdict("drop", Some("policy")));
        return Value::Object(out);
    }
    if let Some(m) = t.nat.masquerade_for(p.family, p.src, route.port) {
        out.insert("masquerade".into(), json!({"address": wire::to_ip(p.family, m.addr).to_string(), "keeps_port_if_free": true}));
    }
    out.insert("verdict".into(), verdict("forward", None));
    Value::Object(out)
}
