//! `sluice ctl`'s answers for people: aligned tables for stats, conntrack,
//! services and routes, `key: value` lines for the rest. JSON stays the
//! format for scripts (`--json`, or whenever stdout is not a terminal).

use serde_json::Value;

/// Columns padded to their widest cell, two spaces apart.
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s += c;
            } else {
                s += &format!("{c:<width$}  ", width = w[i]);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(head.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out += &line(r.clone());
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) => x.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// `key: value` lines of an object, nested objects indented.
fn lines(v: &Value, indent: usize, out: &mut String) {
    if let Value::Object(m) = v {
        for (k, x) in m {
            if k == "ok" {
                continue;
            }
            match x {
                Value::Object(_) => {
                    *out += &format!("{:indent$}{k}:\n", "");
                    lines(x, indent + 2, out);
                }
                Value::Array(a) if a.iter().any(Value::is_object) => {
                    *out += &format!("{:indent$}{k}:\n", "");
                    for e in a {
                        lines(e, indent + 2, out);
                        *out += "\n";
                    }
                }
                _ => *out += &format!("{:indent$}{k}: {}\n", "", s(x)),
            }
        }
    }
}

fn stats(v: &Value) -> String {
    let mut out = format!(
        "packets {}  bytes {}  forward {}  drop {}  kernel {}  (uptime {} s{})\n",
        s(&v["packets"]),
        s(&v["bytes"]),
        s(&v["actions"]["forward"]),
        s(&v["actions"]["drop"]),
        s(&v["actions"]["kernel"]),
        s(&v["uptime_s"]),
        match v["since_reset_s"].as_f64() {
            Some(r) => format!(", counters since a reset {r:.1} s ago"),
            None => String::new(),
        }
    );
    out += &format!(
        "policy allowed {}  denied {}   conntrack {} of {} (evicted unassured {}, refused full {})\n\n",
        s(&v["policy"]["allowed"]),
        s(&v["policy"]["denied"]),
        s(&v["conntrack"]["entries"]),
        s(&v["conntrack"]["capacity"]),
        s(&v["conntrack"]["evicted_unassured"]),
        s(&v["conntrack"]["full"]),
    );
    let ports: Vec<Vec<String>> = v["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| vec![s(&p["name"]), s(&p["interface"]), s(&p["rx"]), s(&p["tx"])])
                .collect()
        })
        .unwrap_or_default();
    out += &table(&["PORT", "INTERFACE", "RX", "TX"], &ports);
    let drops: Vec<Vec<String>> = v["drops"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(|(k, n)| vec![k.clone(), s(n)])
                .collect()
        })
        .unwrap_or_default();
    if !drops.is_empty() {
        out += "\n";
        out += &table(&["DROP REASON", "PACKETS"], &drops);
    }
    let workers: Vec<Vec<String>> = v["workers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| {
                    vec![
                        s(&w["id"]),
                        s(&w["rx"]),
                        s(&w["tx"]),
                        s(&w["batches"]),
                        s(&w["tx_ring_full"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    out += "\n";
    out += &table(&["WORKER", "RX", "TX", "BATCHES", "TX RING FULL"], &workers);
    out
}

fn conntrack(v: &Value) -> String {
    if let Some(d) = v.get("deleted") {
        return format!("deleted {}; {} entries left\n", s(d), s(&v["count"]));
    }
    let rows: Vec<Vec<String>> = v["entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let nat = match (e["dnat"].as_bool(), e["snat"].as_bool()) {
                        (Some(true), Some(true)) => "dnat+snat",
                        (Some(true), _) => "dnat",
                        (_, Some(true)) => "snat",
                        _ => "-",
                    };
                    vec![
                        s(&e["id"]),
                        s(&e["original"]["proto"]),
                        s(&e["state"]),
                        format!(
                            "{} > {}",
                            s(&e["original"]["src"]),
                            s(&e["original"]["dst"])
                        ),
                        format!("{} > {}", s(&e["reply"]["src"]), s(&e["reply"]["dst"])),
                        nat.to_string(),
                        s(&e["expires_in_s"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = table(
        &[
            "ID",
            "PROTO",
            "STATE",
            "ORIGINAL",
            "REPLY",
            "NAT",
            "EXPIRES IN S",
        ],
        &rows,
    );
    out += &format!(
        "{} entries (capacity {}){}\n",
        s(&v["count"]),
        s(&v["capacity"]),
        if rows.len() < v["count"].as_u64().unwrap_or(0) as usize {
            format!(", {} shown (--limit)", rows.len())
        } else {
            String::new()
        }
    );
    out
}

fn services(v: &Value) -> String {
    let mut rows = Vec::new();
    for svc in v["services"].as_array().into_iter().flatten() {
        let vip = format!("{}:{}", s(&svc["vip"]), s(&svc["port"]));
        let backends = svc["backends"].as_array().cloned().unwrap_or_default();
        if backends.is_empty() {
            rows.push(vec![
                s(&svc["name"]),
                vip.clone(),
                s(&svc["protocol"]),
                "-".into(),
                "-".into(),
            ]);
        }
        for b in backends {
            rows.push(vec![
                s(&svc["name"]),
                vip.clone(),
                s(&svc["protocol"]),
                s(&b["address"]),
                s(&b["connections"]),
            ]);
        }
    }
    table(
        &["SERVICE", "VIP", "PROTO", "BACKEND", "CONNECTIONS"],
        &rows,
    )
}

fn routes(v: &Value) -> String {
    let rows = |k: &str, f: &dyn Fn(&Value) -> Vec<String>| -> Vec<Vec<String>> {
        v[k].as_array()
            .map(|a| a.iter().map(f).collect())
            .unwrap_or_default()
    };
    let mut out = table(
        &["PREFIX", "PORT", "VIA", "SOURCE"],
        &rows("routes", &|r| {
            vec![
                s(&r["prefix"]),
                s(&r["port"]),
                s(&r["via"]),
                s(&r["source"]),
            ]
        }),
    );
    out += "\n";
    out += &table(
        &["NEIGHBOUR", "MAC", "PORT", "SOURCE"],
        &rows("neighbors", &|n| {
            vec![s(&n["ip"]), s(&n["mac"]), s(&n["port"]), s(&n["source"])]
        }),
    );
    out += "\n";
    out += &table(
        &["LOCAL ADDRESS", "PORT", "SOURCE"],
        &rows("local", &|l| {
            vec![s(&l["address"]), s(&l["port"]), s(&l["source"])]
        }),
    );
    out
}

/// One traced frame on one line: when, where it came in, what conntrack,
/// policy and the route did, and the verdict.
pub fn trace_line(v: &Value) -> String {
    let p = &v["packet"];
    let mut out = format!(
        "{:.6} {} {} > {} proto {}",
        v["ts"].as_f64().unwrap_or(0.0),
        s(&v["ingress"]),
        s(&p["src"]),
        s(&p["dst"]),
        s(&p["proto"])
    );
    out += &format!(" | conntrack {}", s(&v["conntrack_outcome"]));
    if let Some(svc) = v.get("service") {
        out += &format!(" | service {} -> {}", s(&svc["name"]), s(&svc["backend"]));
    }
    if let Some(d) = v.get("translated_destination") {
        out += &format!(" | dnat {}", s(d));
    }
    if let Some(x) = v.get("translated_source") {
        out += &format!(" | snat {}", s(x));
    }
    if let Some(pol) = v.get("policy") {
        if pol["evaluated"] == Value::Bool(true) {
            out += &format!(" | policy {} by {}", s(&pol["verdict"]), pol["decision"]);
        }
    }
    let vd = &v["verdict"];
    out += &format!(" | {}", s(&vd["action"]));
    for k in ["reason", "port"] {
        if let Some(x) = vd.get(k) {
            out += &format!(" {}", s(x));
        }
    }
    out
}

/// The answer to `cmd` for a person.
pub fn render(cmd: &str, v: &Value) -> String {
    match cmd {
        "stats" => stats(v),
        "conntrack" => conntrack(v),
        "services" => services(v),
        "routes" => routes(v),
        _ => {
            let mut out = String::new();
            lines(v, 0, &mut out);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_name_what_they_show() {
        let v = json!({"ok": true, "count": 1, "capacity": 4, "entries": [{
            "id": 7, "state": "established", "dnat": true, "snat": true,
            "original": {"src": "10.1.0.5:4000", "dst": "10.96.0.10:80", "proto": 6},
            "reply": {"src": "192.0.2.100:8080", "dst": "192.0.2.1:4000", "proto": 6},
            "expires_in_s": 3599.5}]});
        let t = render("conntrack", &v);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID  PROTO  STATE"), "{t}");
        assert!(lines[1].contains("10.1.0.5:4000 > 10.96.0.10:80"), "{t}");
        assert!(
            lines[1].contains("dnat+snat") && lines[1].ends_with("3599.5"),
            "{t}"
        );
        assert_eq!(lines[0].find("STATE"), lines[1].find("established"), "{t}");
        assert!(t.contains("1 entries (capacity 4)"), "{t}");
        let e = render(
            "explain",
            &json!({"ok": true, "verdict": "forward", "policy": {"tier": "default"}}),
        );
        assert_eq!(e, "verdict: forward\npolicy:\n  tier: default\n");
    }
}
