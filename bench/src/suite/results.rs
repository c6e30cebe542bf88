//! The results file of `sluice-bench run` (JSON), read back by `compare`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::workload::Workload;

/// Bumped when a field changes meaning.
pub const SCHEMA: u32 = 1;

/// One `sluice-bench run`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results {
    pub schema: u32,
    pub suite: String,
    pub host: Host,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    pub workloads: Vec<WorkloadResult>,
}

/// Where the numbers come from.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Host {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub git_rev: String,
    /// `release` or `debug`: instruction counts compare only within one.
    pub profile: String,
}

impl Host {
    /// This machine.
    pub fn detect() -> Host {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let git_rev = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        Host {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
            git_rev,
            profile: if cfg!(debug_assertions) {
                "debug".into()
            } else {
                "release".into()
            },
        }
    }
}

/// Everything measured for one workload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkloadResult {
    pub name: String,
    pub workload: Workload,
    /// Frames in one pass over the capture(s).
    pub frames: u64,
    /// Policy rules and long-lived flows (for the plots; 0 when unknown).
    pub rules: usize,
    pub flows: usize,
    /// Actions of one pass: forward, drop, kernel.
    pub actions: [u64; 3],
    /// Drops of one pass by reason.
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    /// Wall-clock runs, one per worker count.
    #[serde(default)]
    pub runs: Vec<Run>,
    /// Instruction counts (callgrind), when measured.
    #[serde(default)]
    pub instr: Option<Instr>,
}

/// A replay on `workers` workers (the best of the suite's repetitions).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    pub workers: usize,
    pub loops: u64,
    pub packets: u64,
    pub seconds: f64,
    /// Packets over wall-clock time, all workers.
    pub mpps: f64,
    pub ns_per_packet: f64,
    /// Time inside `Pipeline::process` per packet per worker.
    pub pipeline_ns_per_packet: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    /// (quantile, ns per packet) points of the latency distribution.
    pub latency_cdf: Vec<(f64, u64)>,
}

/// Instructions per packet under callgrind, from the difference of two
/// runs with different loop counts (setup cancels).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Instr {
    /// Whole replay loop (pipeline, batching, frame restore) per packet.
    pub loop_per_packet: f64,
    /// Inclusive `Pipeline::process` per packet: the gated number.
    pub pipeline_per_packet: f64,
    /// Inclusive per stage (and the expiry sweep) per packet.
    pub stages: BTreeMap<String, f64>,
    /// Loop counts of the two runs and the packet difference.
    pub loops: (u64, u64),
    pub packets: u64,
    /// Extra work injected into the measured child (tests of the gate).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub injected_burn: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Results {
    /// Reads a results file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Results> {
        use anyhow::Context;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The workload named `name`.
    pub fn workload(&self, name: &str) -> Option<&WorkloadResult> {
        self.workloads.iter().find(|w| w.name == name)
    }
}
