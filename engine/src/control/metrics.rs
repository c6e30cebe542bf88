//! The `/metrics` exposition: OpenMetrics text written by
//! `prometheus-client` (the Prometheus project's Rust client) from the
//! snapshots the workers publish once per batch. A scrape builds a
//! registry around one [`View`] — plain copies of the counters, read in
//! the control thread — and encodes it; nothing here touches the fast path.
//!
//! Per scrape rather than long-lived metric families: the workers'
//! counters are already monotonic totals in atomics, so a family kept
//! between scrapes would only mirror them (copying deltas each scrape),
//! and its label sets would go stale when ports are removed or a reload
//! renumbers the policy's rules. Built from the snapshot, each scrape
//! shows exactly the current ports and rules, in a stable order.
//!
//! Every family has its own HELP, one TYPE and one label set for all its
//! samples (the README lists them).

use std::collections::HashMap;
use std::sync::Arc;

use policy_compiler::{Classifier, DecisionInfo};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::process_metrics::ProcessMetrics;
use crate::pipeline::DropReason;
use crate::worker::live::{BatchTimes, StatsSnapshot};

/// The Content-Type of what [`render`] returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One worker's numbers (its snapshot, with the policy hits it copied).
#[derive(Clone, Debug, Default)]
pub struct WorkerView {
    pub id: usize,
    pub core: usize,
    pub stats: StatsSnapshot,
}

/// Everything a scrape shows, owned: the registry's collector keeps it.
#[derive(Debug)]
pub struct View {
    /// Port names by number; a vacant number is "" and not shown.
    pub ports: Vec<String>,
    pub workers: Vec<WorkerView>,
    /// The classifier whose decision ids index the workers' policy hits.
    pub classifier: Arc<Classifier>,
    pub conntrack_entries: usize,
    pub conntrack_capacity: usize,
    /// Entries dropped to make room because they never saw a reply.
    pub conntrack_evicted_unassured: u64,
    /// New connections refused because the table was full.
    pub conntrack_refused_full: u64,
    /// XDP program counters (name, value).
    pub xdp: Vec<(String, u64)>,
    /// Successful and failed reloads.
    pub reloads: (u64, u64),
    /// Ports added, removed and vanished (interface deleted) while running.
    pub port_events: [(&'static str, u64); 3],
}

/// The workers' I/O counters: (family, HELP, value). Exposed as
/// `{family}_total{worker,core}`.
type IoCounter = (&'static str, &'static str, fn(&StatsSnapshot) -> u64);
const WORKER_IO: [IoCounter; 13] = [
    (
        "sluice_worker_rx",
        "Frames the worker took from its sockets' RX rings.",
        |s| s.rx,
    ),
    (
        "sluice_worker_tx",
        "Frames the worker placed on TX rings.",
        |s| s.tx,
    ),
    (
        "sluice_worker_batches",
        "Batches the worker ran through the pipeline.",
        |s| s.batches,
    ),
    (
        "sluice_worker_tx_ring_full",
        "Forwarded frames dropped because the TX ring was full.",
        |s| s.tx_ring_full,
    ),
    (
        "sluice_worker_kernel_unreachable",
        "Frames the pipeline passed to the kernel after XDP had redirected them (freed: AF_XDP cannot hand a frame back).",
        |s| s.kernel_unreachable,
    ),
    (
        "sluice_worker_kernel_sent",
        "Frames handed to the kernel's stack to send because their next hop was unresolved.",
        |s| s.kernel_sent,
    ),
    (
        "sluice_worker_kernel_send_failed",
        "Frames the kernel's stack refused to send for sluice (no route of its own, ...).",
        |s| s.kernel_send_failed,
    ),
    (
        "sluice_worker_rx_wakeups",
        "Syscalls made to wake the kernel to fill RX rings (need_wakeup).",
        |s| s.rx_wakeups,
    ),
    (
        "sluice_worker_tx_wakeups",
        "Syscalls made to kick TX rings.",
        |s| s.tx_wakeups,
    ),
    (
        "sluice_worker_table_swaps",
        "Table swaps (reloads, kernel changes, port changes) the worker applied.",
        |s| s.table_swaps,
    ),
    (
        "sluice_worker_tx_no_socket",
        "Frames routed to a port this worker has no socket on (being added or removed, or its device gone).",
        |s| s.tx_no_socket,
    ),
    (
        "sluice_worker_sockets_gone",
        "Sockets whose interface was deleted under them.",
        |s| s.sockets_gone,
    ),
    (
        "sluice_worker_frames_reclaimed",
        "UMEM frames taken back from closed sockets.",
        |s| s.frames_reclaimed,
    ),
];

type Labels = Vec<(&'static str, String)>;

/// A counter family (`name` without `_total`; the encoder appends it).
fn counters(
    d: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = d.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in samples {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A gauge family.
fn gauges<V: EncodeGaugeValue>(
    d: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, V)>,
) -> Result<(), std::fmt::Error> {
    let mut m = d.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in samples {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn one<V>(v: V) -> [(Labels, V); 1] {
    [(Vec::new(), v)]
}

/// `sluice_policy_rule_hits_total`'s labels for one decision: always
/// direction, kind, tier, policy, rule — "" where one does not apply.
/// `kind` is what decided, as `explain`'s `decided_by` says it: `rule`
/// (tier, policy, rule), `end_of_tier` (tier), `profile` (the profile's
/// name in `policy`, and rule), `no_match` or `fail_closed` (what did
/// not resolve in `policy`).
/// One sample per rule, end of tier, profile rule or no-match: the hits
/// (`hits(decision id)`) of every decision with the same labels summed
/// (a rule walked in several segments, or by the enforced and the pending
/// walk, has a decision id in each), in the order first seen.
fn rule_hits(decisions: &[DecisionInfo], hits: impl Fn(usize) -> u64) -> Vec<(Labels, u64)> {
    let mut out: Vec<(Labels, u64)> = Vec::new();
    let mut at: HashMap<Labels, usize> = HashMap::new();
    for (i, info) in decisions.iter().enumerate() {
        let Some(l) = rule_labels(info) else {
            continue;
        };
        let n = hits(i);
        match at.get(&l).and_then(|&k| out.get_mut(k)) {
            Some(e) => e.1 += n,
            None => {
                at.insert(l.clone(), out.len());
                out.push((l, n));
            }
        }
    }
    out
}

fn rule_labels(info: &DecisionInfo) -> Option<Labels> {
    let (dir, kind, tier, policy, rule) = match info {
        DecisionInfo::NoEndpoint => return None,
        DecisionInfo::NoMatch { dir } => (dir, "no_match", "", "", String::new()),
        DecisionInfo::Rule {
            dir,
            tier,
            policy,
            rule,
            ..
        } => (
            dir,
            "rule",
            tier.as_str(),
            policy.as_str(),
            rule.to_string(),
        ),
        DecisionInfo::EndOfTier { dir, tier } => {
            (dir, "end_of_tier", tier.as_str(), "", String::new())
        }
        DecisionInfo::Profile {
            dir, profile, rule, ..
        } => (dir, "profile", "", profile.as_str(), rule.to_string()),
        DecisionInfo::FailClosed { dir, reason } => {
            (dir, "fail_closed", "", reason.as_str(), String::new())
        }
        DecisionInfo::Setting { dir, setting, .. } => {
            (dir, "setting", "", setting.as_str(), String::new())
        }
    };
    Some(vec![
        ("direction", dir.name().to_string()),
        ("kind", kind.to_string()),
        ("tier", tier.to_string()),
        ("policy", policy.to_string()),
        ("rule", rule),
    ])
}

impl View {
    fn worker(w: &WorkerView) -> Labels {
        vec![("worker", w.id.to_string())]
    }

    fn batch_seconds(&self, d: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut m = d.encode_descriptor(
            "sluice_batch_seconds",
            "Time Pipeline::process took per batch (RX burst), by worker.",
            None,
            MetricType::Histogram,
        )?;
        for w in &self.workers {
            let t: &BatchTimes = &w.stats.batch_times;
            let buckets: Vec<(f64, u64)> = t
                .counts
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let le = BatchTimes::bound_ns(i).map_or(f64::INFINITY, |ns| ns as f64 / 1e9);
                    (le, *n)
                })
                .collect();
            let labels = Self::worker(w);
            m.encode_family(&labels)?.encode_histogram::<Labels>(
                t.sum_ns as f64 / 1e9,
                t.count(),
                &buckets,
                None,
            )?;
        }
        Ok(())
    }
}

impl Collector for View {
    fn encode(&self, mut d: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let ws = &self.workers;
        counters(
            &mut d,
            "sluice_packets",
            "Packets the pipeline processed, by worker and the action it took (forward, drop, kernel).",
            ws.iter().flat_map(|w| {
                ["forward", "drop", "kernel"]
                    .iter()
                    .zip(w.stats.counters.actions)
                    .map(|(a, n)| {
                        let mut l = Self::worker(w);
                        l.push(("action", a.to_string()));
                        (l, n)
                    })
            }),
        )?;
        counters(
            &mut d,
            "sluice_drops",
            "Packets the pipeline dropped, by worker and reason.",
            ws.iter().flat_map(|w| {
                DropReason::ALL.iter().map(|r| {
                    let mut l = Self::worker(w);
                    l.push(("reason", r.name().to_string()));
                    (l, w.stats.counters.drop_count(*r))
                })
            }),
        )?;
        counters(
            &mut d,
            "sluice_bytes",
            "Bytes of the frames the pipeline received, by worker.",
            ws.iter().map(|w| (Self::worker(w), w.stats.counters.bytes)),
        )?;
        let port_sum = |p: usize, f: fn(&StatsSnapshot) -> &Vec<u64>| -> u64 {
            ws.iter()
                .map(|w| f(&w.stats).get(p).copied().unwrap_or(0))
                .sum()
        };
        counters(
            &mut d,
            "sluice_port_packets",
            "Packets received on (rx) and forwarded out of (tx) each port, over all workers.",
            self.ports
                .iter()
                .enumerate()
                .filter(|(_, name)| !name.is_empty())
                .flat_map(|(p, name)| {
                    [
                        ("rx", port_sum(p, |s| &s.counters.port_rx)),
                        ("tx", port_sum(p, |s| &s.counters.port_tx)),
                    ]
                    .map(|(dir, n)| {
                        (
                            vec![("port", name.clone()), ("direction", dir.to_string())],
                            n,
                        )
                    })
                }),
        )?;
        let total = |f: fn(&StatsSnapshot) -> u64| -> u64 { ws.iter().map(|w| f(&w.stats)).sum() };
        counters(
            &mut d,
            "sluice_policy_connections",
            "New connections judged by policy, by verdict.",
            [
                ("allow", total(|s| s.counters.policy_allowed)),
                ("deny", total(|s| s.counters.policy_denied)),
            ]
            .map(|(v, n)| (vec![("verdict", v.to_string())], n)),
        )?;
        counters(
            &mut d,
            "sluice_policy_rule_hits",
            "New connections decided by each policy rule, end of tier, profile rule or no-match, per direction (explain's decided_by).",
            rule_hits(self.classifier.decisions(), |i| {
                ws.iter()
                    .map(|w| w.stats.counters.policy_hits.get(i).copied().unwrap_or(0))
                    .sum()
            }),
        )?;
        if self.classifier.staged().is_some() {
            counters(
                &mut d,
                "sluice_policy_staged_rule_hits",
                "With staged policies: new connection directions decided by each rule, end of tier, profile rule or no-match in the pending walk (staged policies enforced where they stand; never enforced).",
                rule_hits(self.classifier.decisions(), |i| {
                    ws.iter()
                        .map(|w| w.stats.counters.staged_hits.get(i).copied().unwrap_or(0))
                        .sum()
                }),
            )?;
        }
        counters(
            &mut d,
            "sluice_policy_staged_changes",
            "New connections whose verdict the staged policies would change if enforced: allowed now and denied by them (deny), or the reverse (allow).",
            [
                ("deny", total(|s| s.counters.pending_denied)),
                ("allow", total(|s| s.counters.pending_allowed)),
            ]
            .map(|(v, n)| (vec![("change", v.to_string())], n)),
        )?;
        gauges(
            &mut d,
            "sluice_conntrack_entries",
            "Conntrack entries lookups still find (expired ones excluded).",
            one(self.conntrack_entries as u64),
        )?;
        gauges(
            &mut d,
            "sluice_conntrack_capacity",
            "Conntrack entries the table holds at most (conntrack.max_entries).",
            one(self.conntrack_capacity as u64),
        )?;
        counters(
            &mut d,
            "sluice_conntrack_evicted_unassured",
            "Conntrack entries that never saw a reply, dropped to make room in a full table.",
            one(self.conntrack_evicted_unassured),
        )?;
        counters(
            &mut d,
            "sluice_conntrack_full",
            "New connections refused because the conntrack table was full.",
            one(self.conntrack_refused_full),
        )?;
        if !self.xdp.is_empty() {
            counters(
                &mut d,
                "sluice_xdp_packets",
                "Packets the XDP redirector counted, by counter, summed over CPUs.",
                self.xdp
                    .iter()
                    .map(|(name, n)| (vec![("counter", name.clone())], *n)),
            )?;
        }
        for (name, help, get) in WORKER_IO {
            counters(
                &mut d,
                name,
                help,
                ws.iter().map(|w| {
                    let mut l = Self::worker(w);
                    l.push(("core", w.core.to_string()));
                    (l, get(&w.stats))
                }),
            )?;
        }
        self.batch_seconds(&mut d)?;
        counters(
            &mut d,
            "sluice_reloads",
            "Config and policy reloads, by result (ok, rejected).",
            [("ok", self.reloads.0), ("rejected", self.reloads.1)]
                .map(|(r, n)| (vec![("result", r.to_string())], n)),
        )?;
        counters(
            &mut d,
            "sluice_port_events",
            "Ports added, removed and vanished (interface deleted under sluice) while running.",
            self.port_events
                .map(|(e, n)| (vec![("event", e.to_string())], n)),
        )?;
        Ok(())
    }
}

/// `sluice_build_info`: what was built, and how.
#[derive(Debug)]
struct BuildInfo;

impl Collector for BuildInfo {
    fn encode(&self, mut d: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let info = Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION")),
            ("rustc", env!("SLUICE_RUSTC_VERSION")),
            (
                "profile",
                if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                },
            ),
            ("target", env!("SLUICE_TARGET")),
        ]);
        let m = d.encode_descriptor(
            "sluice_build",
            "The sluice build: its version, compiler, profile and target.",
            None,
            MetricType::Info,
        )?;
        info.encode(m)
    }
}

/// Renders the whole exposition (ends with `# EOF`): `v`'s families, the
/// build and the process.
pub fn render(v: View) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(v));
    registry.register_collector(Box::new(BuildInfo));
    registry.register_collector(Box::new(ProcessMetrics));
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail and no collector returns an error
    // of its own (an unreadable /proc value is left out instead).
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]

    use std::collections::{BTreeMap, BTreeSet};

    use openmetrics_parser::{MetricNumber, OpenMetricsType, OpenMetricsValue};

    use super::*;
    use crate::pipeline::Counters;

    /// A rule with two decision ids (walked in two segments, or by the
    /// enforced and the pending walk) is one sample with their hits summed:
    /// an exposition never repeats a label set.
    #[test]
    fn one_sample_per_rule_whatever_its_decision_ids() {
        use policy_compiler::ir::Dir;
        let rule = |rule| DecisionInfo::Rule {
            dir: Dir::Ingress,
            tier: "default".into(),
            policy: "p".into(),
            rule,
            action: policy_compiler::model::Action::Allow,
        };
        let decisions = vec![
            DecisionInfo::NoEndpoint,
            rule(0),
            rule(1),
            rule(0),
            DecisionInfo::NoMatch { dir: Dir::Ingress },
        ];
        let s = rule_hits(&decisions, |i| [100, 1, 2, 4, 8][i]);
        let n: Vec<u64> = s.iter().map(|(_, n)| *n).collect();
        assert_eq!(n, [5, 2, 8]);
        assert_eq!(s[0].0, rule_labels(&rule(0)).unwrap());
    }

    /// A policy whose decisions are of every kind: rules, the end of a
    /// tier, a profile's rule, no match.
    const POLICY: &str = r#"apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: server-eth0, namespace: default, labels: {app: web}}
spec: {interfaceName: s0, ipNetworks: ["10.77.2.2/32"], profiles: [kns.default]}
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.default}
spec:
  egress:
    - action: Allow
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-in, namespace: default}
spec:
  selector: app == 'web'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: TCP
      destination: {ports: [7001, 8080]}
"#;

    fn classifier() -> Arc<Classifier> {
        let (set, _) = policy_compiler::loader::load_str("policy.yaml", POLICY).unwrap();
        Arc::new(policy_compiler::compile(&set).unwrap())
    }

    fn view() -> View {
        let c = classifier();
        let ws = (0..2)
            .map(|id| {
                let mut counters = Counters::new(3);
                counters.actions = [5 + id as u64, 2, 1];
                counters.drops[DropReason::Policy as usize] = 2;
                counters.port_rx = vec![6, 2, 9];
                counters.port_tx = vec![1, 0, 4];
                counters.bytes = 1000;
                counters.policy_allowed = 3;
                counters.policy_denied = 1;
                counters.policy_hits = vec![1 + id as u64; c.decisions().len()];
                let mut batch_times = BatchTimes::default();
                for ns in [500, 1500, 3000, 3000, 20_000_000] {
                    batch_times.record(ns);
                }
                let stats = StatsSnapshot {
                    rx: 8,
                    tx: 5,
                    batches: 5,
                    tx_ring_full: 3 + id as u64,
                    batch_times,
                    counters,
                    ..StatsSnapshot::default()
                };
                WorkerView {
                    id,
                    core: id + 1,
                    stats,
                }
            })
            .collect();
        View {
            // Number 1 is vacant (a removed port).
            ports: vec!["uplink".into(), String::new(), "pod \"a\"".into()],
            workers: ws,
            classifier: c,
            conntrack_entries: 7,
            conntrack_capacity: 100,
            conntrack_evicted_unassured: 3,
            conntrack_refused_full: 2,
            xdp: vec![("redirect".into(), 9)],
            reloads: (1, 0),
            port_events: [("added", 2), ("removed", 1), ("vanished", 1)],
        }
    }

    fn num(n: &MetricNumber) -> f64 {
        n.as_f64()
    }

    /// The whole exposition parses with an independent OpenMetrics parser
    /// (`# EOF`, `_total` counters, cumulative histograms), and: every
    /// family has HELP and TYPE, no two share a HELP, every sample of a
    /// family has the same label names, buckets are cumulative and end
    /// with +Inf = count, and the values are the snapshot's.
    #[test]
    fn exposition_parses_and_is_consistent() {
        let v = view();
        let expect_hits: u64 = v
            .workers
            .iter()
            .map(|w| w.stats.counters.policy_hits[0])
            .sum();
        let expect_batches = v.workers[0].stats.batch_times;
        let text = render(v);
        assert!(text.ends_with("# EOF\n"), "{text}");
        let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&text)
            .unwrap_or_else(|e| panic!("{e:?}\n{text}"));

        // HELP and TYPE on every family; HELP texts distinct.
        let mut helps = BTreeMap::new();
        for (name, f) in &parsed.families {
            assert!(!f.help.is_empty(), "{name} has no HELP");
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} has no TYPE"
            );
            if let Some(other) = helps.insert(f.help.clone(), name.clone()) {
                panic!("{name} and {other} share HELP {:?}", f.help);
            }
        }
        // Every sample line's label names are its family's (the parser
        // keeps one list per family; check the text itself too).
        let mut names_of: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, _) = l.rsplit_once(' ').unwrap();
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            let family = ["_total", "_bucket", "_sum", "_count", "_info"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| parsed.families.contains_key(*f))
                })
                .unwrap_or(name);
            let mut keys: Vec<String> = labels
                .trim_end_matches('}')
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .map(|kv| kv.split_once('=').unwrap().0.to_string())
                .filter(|k| k != "le")
                .collect();
            keys.sort();
            names_of.entry(family.to_string()).or_default().insert(keys);
        }
        for (family, sets) in &names_of {
            assert_eq!(sets.len(), 1, "{family} mixes label sets: {sets:?}");
            assert!(parsed.families.contains_key(family), "{family} not parsed");
        }
        for f in parsed.families.values() {
            let names: BTreeSet<&String> = f.get_label_names().iter().collect();
            for s in f.iter_samples() {
                let ls = s.get_labelset().unwrap();
                let got: BTreeSet<&String> = ls.iter_names().collect();
                assert_eq!(got, names, "{}", f.family_name);
            }
        }

        let fam = |n: &str| {
            parsed
                .families
                .get(n)
                .unwrap_or_else(|| panic!("no family {n}: {text}"))
        };
        let value = |n: &str, labels: &[(&str, &str)]| -> f64 {
            let f = fam(n);
            let s = f
                .iter_samples()
                .find(|s| {
                    let ls = s.get_labelset().unwrap();
                    labels.iter().all(|(k, v)| ls.get_label_value(k) == Some(v))
                })
                .unwrap_or_else(|| panic!("{n}{labels:?} missing"));
            match &s.value {
                OpenMetricsValue::Counter(c) => {
                    assert_eq!(f.family_type, OpenMetricsType::Counter, "{n}");
                    num(&c.value)
                }
                OpenMetricsValue::Gauge(g) => {
                    assert_eq!(f.family_type, OpenMetricsType::Gauge, "{n}");
                    num(g)
                }
                other => panic!("{n}: {other:?}"),
            }
        };
        // Values are the snapshot's.
        assert_eq!(
            value("sluice_packets", &[("worker", "1"), ("action", "forward")]),
            6.0
        );
        assert_eq!(
            value("sluice_drops", &[("worker", "0"), ("reason", "policy")]),
            2.0
        );
        assert_eq!(value("sluice_bytes", &[("worker", "1")]), 1000.0);
        assert_eq!(
            value(
                "sluice_port_packets",
                &[("port", "uplink"), ("direction", "rx")]
            ),
            12.0
        );
        assert_eq!(
            value(
                "sluice_port_packets",
                &[("port", "pod \"a\""), ("direction", "tx")]
            ),
            8.0
        );
        assert_eq!(
            fam("sluice_port_packets").iter_samples().count(),
            4,
            "vacant port shown"
        );
        assert_eq!(
            value("sluice_policy_connections", &[("verdict", "deny")]),
            2.0
        );
        assert_eq!(value("sluice_conntrack_entries", &[]), 7.0);
        assert_eq!(value("sluice_conntrack_capacity", &[]), 100.0);
        assert_eq!(value("sluice_conntrack_evicted_unassured", &[]), 3.0);
        assert_eq!(value("sluice_conntrack_full", &[]), 2.0);
        assert_eq!(value("sluice_xdp_packets", &[("counter", "redirect")]), 9.0);
        assert_eq!(
            value(
                "sluice_worker_tx_ring_full",
                &[("worker", "1"), ("core", "2")]
            ),
            4.0
        );
        assert_eq!(value("sluice_worker_rx", &[("worker", "0")]), 8.0);
        assert_eq!(value("sluice_reloads", &[("result", "ok")]), 1.0);
        assert_eq!(value("sluice_port_events", &[("event", "vanished")]), 1.0);
        assert_eq!(
            fam("sluice_policy_rule_hits").family_type,
            OpenMetricsType::Counter
        );
        let hits: f64 = fam("sluice_policy_rule_hits")
            .iter_samples()
            .map(|s| match &s.value {
                OpenMetricsValue::Counter(c) => num(&c.value),
                _ => 0.0,
            })
            .sum();
        let shown = fam("sluice_policy_rule_hits").iter_samples().count() as f64;
        assert!(shown >= 1.0, "{text}");
        assert_eq!(hits, shown * expect_hits as f64);

        // The histogram: cumulative buckets, +Inf = count, sum in seconds.
        let h = fam("sluice_batch_seconds");
        assert_eq!(h.family_type, OpenMetricsType::Histogram);
        assert_eq!(h.iter_samples().count(), 2);
        for s in h.iter_samples() {
            let OpenMetricsValue::Histogram(hv) = &s.value else {
                panic!("{s:?}")
            };
            let counts: Vec<f64> = hv.buckets.iter().map(|b| num(&b.count)).collect();
            assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
            let last = hv.buckets.last().unwrap();
            assert_eq!(last.upper_bound, f64::INFINITY);
            assert_eq!(num(&last.count), hv.count.unwrap() as f64);
            assert_eq!(hv.count, Some(expect_batches.count()));
            assert_eq!(hv.buckets.len(), crate::worker::live::BATCH_BUCKETS);
            assert_eq!(hv.buckets[0].upper_bound, 1e-6);
            // 500 ns ≤ 1 µs; 1500 ns ≤ 2 µs; two of 3 µs ≤ 4 µs; 20 ms: +Inf.
            assert_eq!(&counts[..4], &[1.0, 2.0, 4.0, 4.0]);
            assert_eq!(counts[counts.len() - 2], 4.0);
            let sum = num(hv.sum.as_ref().unwrap());
            assert!(
                (sum - expect_batches.sum_ns as f64 / 1e9).abs() < 1e-12,
                "{sum}"
            );
        }

        // Build info and process metrics.
        let b = fam("sluice_build");
        assert_eq!(b.family_type, OpenMetricsType::Info);
        let ls = b.iter_samples().next().unwrap().get_labelset().unwrap();
        assert_eq!(
            ls.get_label_value("version"),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert!(
            ls.get_label_value("rustc").is_some_and(|r| r.contains('.')),
            "{text}"
        );
        assert!(text.contains("sluice_build_info{"), "{text}");
        for p in [
            "process_cpu_seconds",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            fam(p);
        }
        assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
    }

    /// Every sample of the rule-hit family has the same five labels,
    /// whatever decided; the names follow explain's decided_by.
    #[test]
    fn rule_hit_labels_are_one_set() {
        use policy_compiler::model::Action;
        use policy_compiler::Dir;
        let infos = [
            DecisionInfo::NoMatch { dir: Dir::Ingress },
            DecisionInfo::Rule {
                dir: Dir::Egress,
                tier: "default".into(),
                policy: "default/web-in".into(),
                rule: 0,
                action: Action::Allow,
            },
            DecisionInfo::EndOfTier {
                dir: Dir::Ingress,
                tier: "default".into(),
            },
            DecisionInfo::Profile {
                dir: Dir::Ingress,
                profile: "kns.default".into(),
                rule: 2,
                action: Action::Deny,
            },
        ];
        let sets: Vec<Labels> = infos.iter().map(|i| rule_labels(i).unwrap()).collect();
        for s in &sets {
            let names: Vec<&str> = s.iter().map(|(k, _)| *k).collect();
            assert_eq!(names, ["direction", "kind", "tier", "policy", "rule"]);
        }
        let get = |s: &Labels, k: &str| s.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get(&sets[0], "kind"), "no_match");
        assert_eq!(get(&sets[0], "tier"), "");
        assert_eq!(get(&sets[1], "policy"), "default/web-in");
        assert_eq!(get(&sets[1], "rule"), "0");
        assert_eq!(get(&sets[1], "direction"), "egress");
        assert_eq!(get(&sets[2], "kind"), "end_of_tier");
        assert_eq!(get(&sets[2], "rule"), "");
        assert_eq!(get(&sets[3], "policy"), "kns.default");
        assert_eq!(get(&sets[3], "tier"), "");
        assert!(rule_labels(&DecisionInfo::NoEndpoint).is_none());
    }
}
