//! The results file of `sluice-bench run` (JSON), read back by `compare`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::workload::Workload;

/// Bumped when a field changes meaning. 2: a run's `mpps` and `p99_ns` are
/// the medians of repeated runs (1: the best run's), with every repeat and
/// the spread recorded.
pub const SCHEMA: u32 = 2;

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

/// Replays on `workers` workers, repeated: the medians and the spread of
/// the repeats (the other fields are those of the median run).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    pub workers: usize,
    pub loops: u64,
    pub packets: u64,
    pub seconds: f64,
    /// Packets over wall-clock time, all workers: the median of the repeats.
    pub mpps: f64,
    /// Every repeat's Mpps, in the order run (empty in schema 1 results).
    #[serde(default)]
    pub mpps_runs: Vec<f64>,
    /// Spread of `mpps_runs`: smallest, largest, median absolute deviation.
    #[serde(default)]
    pub mpps_min: f64,
    #[serde(default)]
    pub mpps_max: f64,
    #[serde(default)]
    pub mpps_mad: f64,
    /// Every repeat's p99 (ns); `p99_ns` is their median.
    #[serde(default)]
    pub p99_runs: Vec<u64>,
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

/// Median of `v` (the mean of the middle two for an even count; 0 when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Median absolute deviation of `v` from its median.
pub fn mad(v: &[f64]) -> f64 {
    let m = median(v);
    median(&v.iter().map(|x| (x - m).abs()).collect::<Vec<_>>())
}

impl Run {
    /// Repeats of one measurement folded into one: the run with the median
    /// Mpps (its latency distribution and counts), the median Mpps and p99,
    /// every repeat and the spread. None when `runs` is empty.
    pub fn of_repeats(runs: Vec<Run>) -> Option<Run> {
        let mpps: Vec<f64> = runs.iter().map(|r| r.mpps).collect();
        let p99: Vec<u64> = runs.iter().map(|r| r.p99_ns).collect();
        let med = median(&mpps);
        let mut out = runs
            .into_iter()
            .min_by(|a, b| (a.mpps - med).abs().total_cmp(&(b.mpps - med).abs()))?;
        out.mpps = med;
        out.mpps_min = mpps.iter().copied().fold(f64::INFINITY, f64::min);
        out.mpps_max = mpps.iter().copied().fold(0.0, f64::max);
        out.mpps_mad = mad(&mpps);
        out.p99_ns = median(&p99.iter().map(|&x| x as f64).collect::<Vec<_>>()) as u64;
        out.mpps_runs = mpps;
        out.p99_runs = p99;
        Some(out)
    }

    /// The relative spread of the repeats as a standard deviation estimate
    /// (1.4826 × MAD / median, the normal-consistent MAD); None with fewer
    /// than three repeats (schema 1 results have none).
    pub fn rel_sigma(&self) -> Option<f64> {
        (self.mpps_runs.len() >= 3 && self.mpps > 0.0).then(|| 1.4826 * self.mpps_mad / self.mpps)
    }
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
