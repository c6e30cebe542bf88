//! Measurements of one prepared workload: wall-clock replays through the
//! engine's replay API on 1..N workers, and instructions per packet under
//! callgrind.
//!
//! Instructions: the `child` subcommand of `sluice-bench` loads the workload
//! and replays it `loops` times in-process, nothing else. It runs twice
//! under `valgrind --tool=callgrind` with different loop counts; the
//! difference of the totals over the difference of packets is the steady
//! state cost per packet (config parsing, table builds and policy compiles
//! are identical in both runs and cancel, and so does the first loop that
//! opens the connections). `callgrind_annotate --inclusive=yes` gives the
//! same difference for `Pipeline::process` and each stage function (they
//! are `#[inline(never)]`, one call per batch).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use engine::sources::config::Config;
use engine::state::NodeState;
use engine::tables::Tables;
use engine::worker::replay::{self, Input, ReplayOptions, ReplaySummary};

use super::results::{Instr, Run};
use super::workload::Prepared;

/// A loaded workload: config and tables built once.
pub struct Loaded {
    pub cfg: Config,
    /// The config's desired state.
    pub state: NodeState,
    pub tables: Arc<Tables>,
    pub prepared: Prepared,
}

impl Loaded {
    /// Loads the config and builds the tables.
    pub fn new(p: &Prepared) -> Result<Loaded> {
        let cfg =
            Config::load(&p.config).with_context(|| format!("loading {}", p.config.display()))?;
        let state = cfg.state();
        let tables =
            Arc::new(engine::state::build::replay_tables(&state).context("building tables")?);
        Ok(Loaded {
            cfg,
            state,
            tables,
            prepared: p.clone(),
        })
    }

    /// One replay.
    pub fn replay(&self, workers: usize, loops: u64, batch: usize) -> Result<ReplaySummary> {
        let opts = ReplayOptions {
            inputs: self
                .prepared
                .pcaps
                .iter()
                .map(|p| Input {
                    port: None,
                    path: p.clone(),
                })
                .collect(),
            workers,
            loops,
            fresh_state: self.prepared.fresh_state,
            batch: Some(batch),
            ..ReplayOptions::default()
        };
        replay::run(&self.state, self.tables.clone(), &opts).context("replay")
    }
}

/// A wall-clock run from a replay summary.
pub fn run_of(s: &ReplaySummary, loops: u64) -> Run {
    Run {
        workers: s.workers,
        loops,
        packets: s.packets,
        seconds: s.seconds,
        mpps: s.mpps(),
        mpps_runs: Vec::new(),
        mpps_min: s.mpps(),
        mpps_max: s.mpps(),
        mpps_mad: 0.0,
        p99_runs: Vec::new(),
        ns_per_packet: s.ns_per_packet(),
        pipeline_ns_per_packet: s.pipeline_ns_per_packet(),
        p50_ns: s.latency.p50,
        p99_ns: s.latency.p99,
        p999_ns: s.latency.p999,
        max_ns: s.latency.max,
        latency_cdf: s.latency_cdf.clone(),
    }
}

/// The child's work: replay `loops` times on one worker, then burn `burn`
/// extra iterations per replayed packet (the gate's own test).
pub fn child(p: &Prepared, loops: u64, batch: usize, burn: u64) -> Result<u64> {
    let l = Loaded::new(p)?;
    let s = l.replay(1, loops, batch)?;
    let mut acc = 0u64;
    for i in 0..s.packets.saturating_mul(burn) {
        acc = std::hint::black_box(acc.wrapping_mul(31).wrapping_add(i));
    }
    std::hint::black_box(acc);
    Ok(s.packets)
}

/// Names of the functions whose inclusive cost is reported, and their
/// full names in the profile (a stage made of several functions is listed
/// once per function, and reported as their sum).
pub const STAGES: [(&str, &str); 10] = [
    ("pipeline", "engine::pipeline::Pipeline::process"),
    ("parse", "engine::pipeline::stages::parse::run"),
    ("track", "engine::pipeline::stages::track::prepare"),
    ("track", "engine::pipeline::stages::track::run"),
    ("route", "engine::pipeline::stages::route::run"),
    ("policy", "engine::pipeline::stages::policy::run"),
    ("neigh", "engine::pipeline::stages::neigh::run"),
    ("commit", "engine::pipeline::stages::commit::run"),
    ("rewrite", "engine::pipeline::stages::rewrite::run"),
    (
        "sweep",
        "engine::tables::conntrack::sweep::<impl engine::tables::conntrack::table::Conntrack>::sweep_owned",
    ),
];

/// Totals of one callgrind run.
#[derive(Debug, Default)]
struct Profile {
    total: u64,
    funcs: BTreeMap<&'static str, u64>,
    packets: u64,
}

/// How to run the child.
#[derive(Clone, Debug)]
pub struct ChildCmd {
    /// The `sluice-bench` executable.
    pub exe: PathBuf,
    pub batch: usize,
    pub burn: u64,
    /// Where callgrind writes (kept for inspection).
    pub out_dir: PathBuf,
}

fn callgrind_once(cmd: &ChildCmd, dir: &Path, loops: u64, tag: &str) -> Result<Profile> {
    let out = cmd.out_dir.join(format!("callgrind.{tag}.{loops}.out"));
    let o = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&cmd.exe)
        .arg("child")
        .arg("--dir")
        .arg(dir)
        .args(["--loops", &loops.to_string()])
        .args(["--batch", &cmd.batch.to_string()])
        .args(["--burn", &cmd.burn.to_string()])
        .output()
        .context("running valgrind (apt-get install valgrind)")?;
    if !o.status.success() {
        bail!(
            "callgrind child failed: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let packets: u64 = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("packets "))
        .and_then(|v| v.trim().parse().ok())
        .context("child did not report packets")?;
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    let mut p = parse_profile(&text)?;
    p.packets = packets;
    Ok(p)
}

/// Reads a callgrind profile (`events: Ir`): the total, and the inclusive
/// cost of each function in [`STAGES`]. Inclusive = every cost line under
/// the function's `fn=` blocks (its own instructions, whatever source file
/// inlined code came from) plus the costs of the calls it makes (recursive
/// calls excluded). `callgrind_annotate` lists inlined fragments of one
/// function per source file and cannot add them up, hence this reader.
fn parse_profile(text: &str) -> Result<Profile> {
    let mut p = Profile::default();
    let mut names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    // Resolves `(id) name` / `(id)` name compression.
    let mut resolve = |v: &str| -> String {
        let v = v.trim();
        if let Some(rest) = v.strip_prefix('(') {
            if let Some((id, name)) = rest.split_once(')') {
                let name = name.trim();
                if name.is_empty() {
                    return names.get(id).cloned().unwrap_or_default();
                }
                names.insert(id.to_string(), name.to_string());
                return name.to_string();
            }
        }
        v.to_string()
    };
    let mut current: Option<&'static str> = None;
    let mut current_name = String::new();
    let mut callee = String::new();
    let mut in_call = false;
    for line in text.lines() {
        let Some(c) = line.chars().next() else {
            continue;
        };
        if c.is_ascii_digit() || c == '+' || c == '-' || c == '*' {
            let n: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let call = std::mem::take(&mut in_call);
            if let Some(k) = current {
                if !(call && callee == current_name) {
                    *p.funcs.entry(k).or_default() += n;
                }
            }
            continue;
        }
        if let Some(v) = line.strip_prefix("fn=") {
            current_name = resolve(v);
            current = STAGES
                .iter()
                .find(|(_, full)| *full == current_name)
                .map(|(k, _)| *k);
        } else if let Some(v) = line.strip_prefix("cfn=") {
            callee = resolve(v);
        } else if line.starts_with("calls=") {
            in_call = true;
        } else if let Some(v) = line
            .strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))
        {
            p.total = v.trim().parse().unwrap_or(0);
        }
    }
    if p.total == 0 {
        bail!("callgrind profile without a summary");
    }
    Ok(p)
}

/// Instructions per packet of a prepared workload (written in `dir`).
pub fn instructions(cmd: &ChildCmd, dir: &Path, loops: (u64, u64), tag: &str) -> Result<Instr> {
    std::fs::create_dir_all(&cmd.out_dir)?;
    let a = callgrind_once(cmd, dir, loops.0, tag)?;
    let b = callgrind_once(cmd, dir, loops.1, tag)?;
    let packets = b.packets.saturating_sub(a.packets);
    if packets == 0 {
        bail!(
            "no packet difference between {} and {} loops",
            loops.0,
            loops.1
        );
    }
    let per = |x: u64, y: u64| (y as f64 - x as f64) / packets as f64;
    let mut stages = BTreeMap::new();
    for (name, _) in STAGES {
        let x = a.funcs.get(name).copied().unwrap_or(0);
        let y = b.funcs.get(name).copied().unwrap_or(0);
        if name != "pipeline" && (x, y) != (0, 0) {
            stages.insert(name.to_string(), per(x, y));
        }
    }
    let pipeline = per(
        a.funcs.get("pipeline").copied().unwrap_or(0),
        b.funcs.get("pipeline").copied().unwrap_or(0),
    );
    Ok(Instr {
        loop_per_packet: per(a.total, b.total),
        pipeline_per_packet: pipeline,
        stages,
        loops,
        packets,
        injected_burn: cmd.burn,
    })
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn profile_inclusive_across_files_and_calls() {
        let text = "\
events: Ir
summary: 1000
fl=(1) a.rs
fn=(1) engine::pipeline::Pipeline::process
0 10
cfl=(1)
cfn=(2) engine::pipeline::stages::track::run
calls=2 0
0 300
fl=(2) track.rs
fn=(2)
0 200
fi=(3) conntrack.rs
0 100
cfn=(3) some::helper
calls=1 0
0 50
cfn=(2)
calls=1 0
0 999
fn=(3)
0 50
";
        let p = parse_profile(text).unwrap();
        assert_eq!(p.total, 1000);
        assert_eq!(p.funcs["pipeline"], 310);
        // Own cost in two files, plus the helper; the recursive call is not added.
        assert_eq!(p.funcs["track"], 350);
    }
}
