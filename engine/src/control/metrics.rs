//! Prometheus text exposition (format 0.0.4) of the data plane's counters.
//!
//! Names: `sluice_packets_total{worker,action}`, `sluice_drops_total{worker,
//! reason}`, `sluice_port_packets_total{port,direction}`,
//! `sluice_policy_rule_hits_total{direction,tier,policy,rule}` (the same
//! identity as `explain`'s `decided_by`), `sluice_conntrack_entries`,
//! `sluice_conntrack_capacity`, `sluice_conntrack_evicted_unassured_total`,
//! `sluice_conntrack_full_total`, `sluice_xdp_packets_total{counter}`, and the
//! live workers' I/O counters. Rendering happens in the metrics thread from
//! snapshots the workers publish once per batch; it never touches the fast
//! path.

use std::fmt::Write as _;

use policy_compiler::{Classifier, DecisionInfo};

use crate::pipeline::{Counters, DropReason};

/// One worker's numbers.
#[derive(Clone, Debug, Default)]
pub struct WorkerView {
    pub id: usize,
    pub core: usize,
    pub counters: Counters,
    /// Extra monotonic I/O counters (name, value), e.g. `tx_ring_full`.
    pub io: Vec<(&'static str, u64)>,
}

/// Everything a scrape shows.
#[derive(Debug)]
pub struct View<'a> {
    pub ports: &'a [String],
    pub workers: &'a [WorkerView],
    pub classifier: &'a Classifier,
    pub conntrack_entries: usize,
    pub conntrack_capacity: usize,
    /// Entries dropped to make room because they never saw a reply.
    pub conntrack_evicted_unassured: u64,
    /// New connections refused because the table was full.
    pub conntrack_refused_full: u64,
    /// XDP program counters (name, value).
    pub xdp: &'a [(String, u64)],
    /// Successful and failed reloads.
    pub reloads: (u64, u64),
    /// Ports added, removed and vanished (interface deleted) while running.
    pub port_events: [(&'static str, u64); 3],
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Renders the exposition text.
pub fn render(v: &View<'_>) -> String {
    let mut o = String::with_capacity(4096);
    head(
        &mut o,
        "sluice_packets_total",
        "counter",
        "Packets processed, by worker and action.",
    );
    for w in v.workers {
        for (i, a) in ["forward", "drop", "kernel"].iter().enumerate() {
            let _ = writeln!(
                o,
                "sluice_packets_total{{worker=\"{}\",action=\"{a}\"}} {}",
                w.id, w.counters.actions[i]
            );
        }
    }
    head(
        &mut o,
        "sluice_drops_total",
        "counter",
        "Dropped packets, by worker and reason.",
    );
    for w in v.workers {
        for r in DropReason::ALL {
            let _ = writeln!(
                o,
                "sluice_drops_total{{worker=\"{}\",reason=\"{}\"}} {}",
                w.id,
                r.name(),
                w.counters.drop_count(*r)
            );
        }
    }
    head(
        &mut o,
        "sluice_bytes_total",
        "counter",
        "Bytes received, by worker.",
    );
    for w in v.workers {
        let _ = writeln!(
            o,
            "sluice_bytes_total{{worker=\"{}\"}} {}",
            w.id, w.counters.bytes
        );
    }
    head(
        &mut o,
        "sluice_port_packets_total",
        "counter",
        "Packets received on and forwarded out of each port.",
    );
    for (p, name) in v.ports.iter().enumerate() {
        if name.is_empty() {
            // A vacant port number.
            continue;
        }
        let rx: u64 = v
            .workers
            .iter()
            .map(|w| w.counters.port_rx.get(p).copied().unwrap_or(0))
            .sum();
        let tx: u64 = v
            .workers
            .iter()
            .map(|w| w.counters.port_tx.get(p).copied().unwrap_or(0))
            .sum();
        let _ = writeln!(
            o,
            "sluice_port_packets_total{{port=\"{}\",direction=\"rx\"}} {rx}",
            esc(name)
        );
        let _ = writeln!(
            o,
            "sluice_port_packets_total{{port=\"{}\",direction=\"tx\"}} {tx}",
            esc(name)
        );
    }
    head(
        &mut o,
        "sluice_policy_connections_total",
        "counter",
        "New connections judged by policy, by verdict.",
    );
    let allowed: u64 = v.workers.iter().map(|w| w.counters.policy_allowed).sum();
    let denied: u64 = v.workers.iter().map(|w| w.counters.policy_denied).sum();
    let _ = writeln!(
        o,
        "sluice_policy_connections_total{{verdict=\"allow\"}} {allowed}"
    );
    let _ = writeln!(
        o,
        "sluice_policy_connections_total{{verdict=\"deny\"}} {denied}"
    );
    head(
        &mut o,
        "sluice_policy_rule_hits_total",
        "counter",
        "New connections decided by each tier/policy/rule (explain's decided_by).",
    );
    for (i, info) in v.classifier.decisions().iter().enumerate() {
        let hits: u64 = v
            .workers
            .iter()
            .map(|w| w.counters.policy_hits.get(i).copied().unwrap_or(0))
            .sum();
        let labels = match info {
            DecisionInfo::NoEndpoint => continue,
            DecisionInfo::NoMatch { dir } => {
                format!("direction=\"{}\",no_match=\"true\"", dir.name())
            }
            DecisionInfo::Rule {
                dir,
                tier,
                policy,
                rule,
                ..
            } => {
                format!(
                    "direction=\"{}\",tier=\"{}\",policy=\"{}\",rule=\"{rule}\"",
                    dir.name(),
                    esc(tier),
                    esc(policy)
                )
            }
            DecisionInfo::EndOfTier { dir, tier } => format!(
                "direction=\"{}\",tier=\"{}\",end_of_tier=\"true\"",
                dir.name(),
                esc(tier)
            ),
            DecisionInfo::Profile {
                dir, profile, rule, ..
            } => {
                format!(
                    "direction=\"{}\",profile=\"{}\",rule=\"{rule}\"",
                    dir.name(),
                    esc(profile)
                )
            }
        };
        let _ = writeln!(o, "sluice_policy_rule_hits_total{{{labels}}} {hits}");
    }
    head(
        &mut o,
        "sluice_conntrack_entries",
        "gauge",
        "Conntrack entries lookups still find (expired ones excluded).",
    );
    let _ = writeln!(o, "sluice_conntrack_entries {}", v.conntrack_entries);
    head(
        &mut o,
        "sluice_conntrack_capacity",
        "gauge",
        "conntrack.max_entries.",
    );
    let _ = writeln!(o, "sluice_conntrack_capacity {}", v.conntrack_capacity);
    head(
        &mut o,
        "sluice_conntrack_evicted_unassured_total",
        "counter",
        "Conntrack entries that never saw a reply, dropped to make room in a full table.",
    );
    let _ = writeln!(
        o,
        "sluice_conntrack_evicted_unassured_total {}",
        v.conntrack_evicted_unassured
    );
    head(
        &mut o,
        "sluice_conntrack_full_total",
        "counter",
        "New connections refused because the conntrack table was full.",
    );
    let _ = writeln!(
        o,
        "sluice_conntrack_full_total {}",
        v.conntrack_refused_full
    );
    if !v.xdp.is_empty() {
        head(
            &mut o,
            "sluice_xdp_packets_total",
            "counter",
            "XDP redirector decisions, summed over CPUs.",
        );
        for (name, n) in v.xdp {
            let _ = writeln!(
                o,
                "sluice_xdp_packets_total{{counter=\"{}\"}} {n}",
                esc(name)
            );
        }
    }
    let io_names: Vec<&str> = v
        .workers
        .first()
        .map(|w| w.io.iter().map(|x| x.0).collect())
        .unwrap_or_default();
    for name in io_names {
        let metric = format!("sluice_worker_{name}_total");
        head(&mut o, &metric, "counter", "Worker I/O counter.");
        for w in v.workers {
            if let Some((_, n)) = w.io.iter().find(|x| x.0 == name) {
                let _ = writeln!(o, "{metric}{{worker=\"{}\",core=\"{}\"}} {n}", w.id, w.core);
            }
        }
    }
    head(
        &mut o,
        "sluice_reloads_total",
        "counter",
        "Config/policy reloads, by result.",
    );
    let _ = writeln!(o, "sluice_reloads_total{{result=\"ok\"}} {}", v.reloads.0);
    let _ = writeln!(
        o,
        "sluice_reloads_total{{result=\"rejected\"}} {}",
        v.reloads.1
    );
    head(
        &mut o,
        "sluice_port_events_total",
        "counter",
        "Ports added, removed and vanished (interface deleted under sluice) while running.",
    );
    for (event, n) in v.port_events {
        let _ = writeln!(o, "sluice_port_events_total{{event=\"{event}\"}} {n}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_well_formed_exposition() {
        let c = Classifier::allow_all();
        let mut counters = Counters::new(2);
        counters.actions = [5, 2, 1];
        counters.drops[DropReason::Policy as usize] = 2;
        counters.port_rx = vec![6, 2];
        let ws = vec![WorkerView {
            id: 0,
            core: 1,
            counters,
            io: vec![("tx_ring_full", 3)],
        }];
        let ports = vec!["uplink".to_string(), "pods".to_string()];
        let text = render(&View {
            ports: &ports,
            workers: &ws,
            classifier: &c,
            conntrack_entries: 7,
            conntrack_capacity: 100,
            conntrack_evicted_unassured: 3,
            conntrack_refused_full: 2,
            xdp: &[("redirect".into(), 9)],
            reloads: (1, 0),
            port_events: [("added", 2), ("removed", 1), ("vanished", 1)],
        });
        assert!(text.contains("sluice_port_events_total{event=\"vanished\"} 1"));
        assert!(text.contains("sluice_packets_total{worker=\"0\",action=\"forward\"} 5"));
        assert!(text.contains("sluice_drops_total{worker=\"0\",reason=\"policy\"} 2"));
        assert!(text.contains("sluice_port_packets_total{port=\"uplink\",direction=\"rx\"} 6"));
        assert!(text.contains("sluice_conntrack_entries 7"));
        assert!(text.contains("sluice_conntrack_evicted_unassured_total 3"));
        assert!(text.contains("sluice_conntrack_full_total 2"));
        assert!(text.contains("sluice_xdp_packets_total{counter=\"redirect\"} 9"));
        assert!(text.contains("sluice_worker_tx_ring_full_total{worker=\"0\",core=\"1\"} 3"));
        // Every sample line is `name{labels} value` or `name value`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            v.parse::<u64>().unwrap();
        }
    }
}
