//! The benchmark and regression suite behind `sluice-bench` (issue 6).
//!
//! - [`workload`]: workloads as code (a synthetic generator with knobs, real
//!   captures) and the suites that list them;
//! - [`measure`]: wall-clock replays on 1..N workers through the engine's
//!   replay API, and instructions per packet under callgrind;
//! - [`results`]: the JSON results file; [`compare`]: the regression gate;
//! - [`plot`]: SVG and PNG plots; [`peers`]: the peer ratios in one run
//!   ([`hugepages`]: what its DPDK peers need from the host); [`cps`]: the
//!   connection setup rate against the kernel, live and offline.

pub mod compare;
pub mod cps;
pub mod hugepages;
pub mod measure;
pub mod peers;
pub mod plot;
pub mod results;
pub mod workload;

use std::path::{Path, PathBuf};

use workload::{imix, Source, Synthetic, Workload};

/// What a suite measures.
#[derive(Clone, Debug)]
pub struct Suite {
    pub name: String,
    pub workloads: Vec<Workload>,
    /// Workloads (by name) measured under callgrind too.
    pub callgrind: Vec<String>,
    /// Packets between the two callgrind runs: they replay 1 and
    /// 1 + ceil(this / frames) loops (the same for a workload in every
    /// suite, so the CI gate and the baseline measure alike).
    pub callgrind_packets: u64,
    /// Packets per wall-clock run (loops are chosen to reach it, at least 3).
    pub target_packets: u64,
    /// Wall-clock runs per worker count: the median counts, and their
    /// spread sets the throughput gate's band (see `compare`).
    pub repeat: usize,
}

/// See [`Suite::callgrind_packets`]: ~80k packets keep setup noise (hash
/// seeds differ between runs) under 0.2% of a packet's count.
pub const CALLGRIND_PACKETS: u64 = 80_000;

/// The two loop counts of the callgrind runs for a workload of `frames`.
pub fn callgrind_loops(frames: u64, packets: u64) -> (u64, u64) {
    (1, 1 + packets.div_ceil(frames.max(1)).max(1))
}

/// The workspace root (where `pcap-fixtures/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Real captures: `$SLUICE_PCAPS` or `../shared/pcaps` next to the workspace.
pub fn shared_pcaps() -> PathBuf {
    std::env::var_os("SLUICE_PCAPS")
        .map_or_else(|| workspace_root().join("../shared/pcaps"), PathBuf::from)
}

/// The small synthetic workload of the CI gate.
pub fn ci_small() -> Workload {
    Workload::synthetic(
        "ci-small",
        Synthetic {
            flows: 1000,
            packets: 10_000,
            policy_rules: 100,
            routes: 1000,
            sizes: imix(),
            ..Synthetic::default()
        },
    )
}

fn rules(n: usize, packets: usize) -> Workload {
    Workload::synthetic(
        &format!("rules-{}", plot::human(n)),
        Synthetic {
            flows: 10_000,
            packets,
            policy_rules: n,
            ..Synthetic::default()
        },
    )
}

fn flows(n: usize) -> Workload {
    Workload::synthetic(
        &format!("flows-{}", plot::human(n)),
        Synthetic {
            flows: n,
            packets: (2 * n).max(100_000),
            ..Synthetic::default()
        },
    )
}

fn mixed(packets: usize) -> Workload {
    Workload::synthetic(
        "imix-v6-newflows",
        Synthetic {
            flows: 10_000,
            packets,
            sizes: imix(),
            ipv6_pct: 30,
            tcp_pct: 60,
            icmp_pct: 5,
            new_flow_pct: 5,
            ..Synthetic::default()
        },
    )
}

fn captures(name: &str, paths: Vec<PathBuf>) -> Workload {
    Workload {
        name: name.into(),
        source: Source::Captures {
            paths,
            routes: 1000,
        },
    }
}

fn fixtures_capture() -> Workload {
    let root = workspace_root().join("pcap-fixtures");
    captures(
        "capture-fixtures",
        [
            "imix",
            "tcp4-session",
            "tcp6-session",
            "udp",
            "icmp",
            "vlan",
            "fragments",
            "edge",
        ]
        .iter()
        .map(|n| root.join(format!("{n}.pcap")))
        .collect(),
    )
}

fn pcaps_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A tiny workload for the gate's own test (seconds under callgrind in a
/// debug build).
pub fn tiny() -> Workload {
    Workload::synthetic(
        "tiny",
        Synthetic {
            flows: 100,
            packets: 1000,
            policy_rules: 20,
            routes: 100,
            sizes: imix(),
            ..Synthetic::default()
        },
    )
}

/// A named suite: `quick` (< 5 minutes here), `full`, `ci` (the gate's
/// small workload; use with `--instr-only`) or `tiny` (the gate's test).
pub fn suite(name: &str) -> Option<Suite> {
    let shared = shared_pcaps();
    match name {
        "tiny" => Some(Suite {
            name: name.into(),
            workloads: vec![tiny()],
            callgrind: vec!["tiny".into()],
            callgrind_packets: 8_000,
            target_packets: 10_000,
            repeat: 1,
        }),
        "ci" => Some(Suite {
            name: name.into(),
            workloads: vec![ci_small()],
            callgrind: vec!["ci-small".into()],
            callgrind_packets: CALLGRIND_PACKETS,
            target_packets: 200_000,
            repeat: 1,
        }),
        "quick" => {
            let mut w = vec![ci_small()];
            w.extend([0, 100, 1000, 10_000].map(|n| rules(n, 100_000)));
            w.extend([1000, 100_000, 1_000_000].map(flows));
            w.push(mixed(100_000));
            w.push(fixtures_capture());
            w.push(captures(
                "capture-real",
                vec![
                    shared.join("normal/bro.org.pcap"),
                    shared.join("normal/quic-ipv6-chromium.pcap"),
                ],
            ));
            w.retain(|w| match &w.source {
                Source::Captures { paths, .. } => paths.iter().all(|p| p.exists()),
                Source::Synthetic(_) => true,
            });
            Some(Suite {
                name: name.into(),
                workloads: w,
                callgrind: vec![
                    "ci-small".into(),
                    "rules-0".into(),
                    "rules-1k".into(),
                    "imix-v6-newflows".into(),
                    "capture-fixtures".into(),
                ],
                callgrind_packets: CALLGRIND_PACKETS,
                target_packets: 1_000_000,
                repeat: 5,
            })
        }
        "full" => {
            let mut w = vec![ci_small()];
            w.extend([0, 10, 100, 1000, 10_000, 30_000].map(|n| rules(n, 200_000)));
            w.extend([1000, 100_000, 1_000_000].map(flows));
            w.push(mixed(400_000));
            w.push(fixtures_capture());
            let mut real = Vec::new();
            for d in ["normal", "tagged", "ipv6-ext", "tunnels"] {
                real.extend(pcaps_in(&shared.join(d)));
            }
            if !real.is_empty() {
                w.push(captures("capture-real", real));
            }
            let callgrind = w
                .iter()
                .filter(|w| w.flows() <= 100_000)
                .map(|w| w.name.clone())
                .collect();
            Some(Suite {
                name: name.into(),
                workloads: w,
                callgrind,
                callgrind_packets: CALLGRIND_PACKETS,
                target_packets: 5_000_000,
                repeat: 5,
            })
        }
        _ => None,
    }
}
