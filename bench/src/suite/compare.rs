//! `sluice-bench compare BASE NEW`: a table of deltas and a verdict.
//!
//! The hard gate is instructions per packet (callgrind, deterministic to
//! < 0.01 % for `Pipeline::process`): inclusive `Pipeline::process` may grow
//! by at most `max_instr_regress` percent, the whole replay loop (which also
//! counts the harness's thread hand-offs, a few percent of run-to-run jitter
//! on small workloads) by at most `max_loop_regress` percent.
//!
//! Throughput is gated against the noise measured in the two results: each
//! run is the median of repeated timed runs, and the spread of the repeats
//! (σ ≈ 1.4826 × MAD / median, the larger of the two sides) sets the band.
//! The rule: a workload and worker count regresses when its median Mpps
//! falls by more than `max(max_mpps_regress %, noise_k × σ)`. A side without
//! repeats (schema 1) contributes no σ. When BASE and NEW come from
//! different CPU models (or CPU counts) throughput is not gated at all (shown
//! for information, with a loud warning): only instructions are.
//!
//! A metric missing on either side is shown and not gated (the CI gate
//! measures instructions only). Instruction counts compare only between
//! builds of the same profile.

use std::fmt::Write as _;

use super::results::Results;

/// Thresholds, percent (`noise_k`: standard deviations).
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    pub max_instr_regress: f64,
    pub max_loop_regress: f64,
    /// The throughput band's floor.
    pub max_mpps_regress: f64,
    /// The throughput band in standard deviations of the repeats.
    pub noise_k: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_instr_regress: 3.0,
            max_loop_regress: 10.0,
            max_mpps_regress: 5.0,
            noise_k: 3.0,
        }
    }
}

/// The throughput band (percent) for one workload and worker count: the
/// larger of the floor and `noise_k` standard deviations of the repeats
/// of either side.
pub fn mpps_band(t: &Thresholds, base: Option<f64>, new: Option<f64>) -> f64 {
    let sigma = base.into_iter().chain(new).fold(0.0, f64::max);
    t.max_mpps_regress.max(t.noise_k * sigma * 100.0)
}

/// One compared metric.
#[derive(Clone, Debug)]
pub struct Row {
    pub workload: String,
    pub metric: String,
    pub base: Option<f64>,
    pub new: Option<f64>,
    /// Percent change (new vs base), when both exist.
    pub delta_pct: Option<f64>,
    pub regressed: bool,
    /// Whether this metric is gated at all.
    pub gated: bool,
    /// The tolerated change, percent (+ growth, - fall), when gated.
    pub tolerance_pct: Option<f64>,
}

/// The outcome.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub warnings: Vec<String>,
    /// Set when the two results come from different machines (CPU model or
    /// count): throughput is shown but not gated.
    pub machine_mismatch: Option<String>,
}

impl Report {
    /// Any gated metric past its threshold?
    pub fn regressed(&self) -> bool {
        self.rows.iter().any(|r| r.regressed)
    }

    /// The loud warning of results from different machines, if any.
    pub fn banner(&self) -> Option<String> {
        self.machine_mismatch.as_ref().map(|m| {
            let bar = "!".repeat(78);
            format!(
                "{bar}\nWARNING: {m}.\nThroughput and latency are NOT compared (shown for information only);\n\
                 only instruction counts are gated. Record a baseline on this machine to gate throughput.\n{bar}\n"
            )
        })
    }

    /// The table.
    pub fn to_text(&self) -> String {
        let mut s = self.banner().unwrap_or_default();
        s += &format!(
            "{:<28} {:<26} {:>14} {:>14} {:>9} {:>9}  {}\n",
            "workload", "metric", "base", "new", "delta", "gate", ""
        );
        for r in &self.rows {
            let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
            let d = r.delta_pct.map_or("-".to_string(), |d| format!("{d:+.2}%"));
            let g = r
                .tolerance_pct
                .map_or("-".to_string(), |g| format!("{g:+.1}%"));
            let verdict = if r.regressed {
                "REGRESSION"
            } else if !r.gated {
                "(info)"
            } else {
                "ok"
            };
            let _ = writeln!(
                s,
                "{:<28} {:<26} {:>14} {:>14} {:>9} {:>9}  {verdict}",
                r.workload,
                r.metric,
                f(r.base),
                f(r.new),
                d,
                g
            );
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        if let Some(b) = self.banner() {
            s += &b;
        }
        s
    }
}

fn pct(base: f64, new: f64) -> Option<f64> {
    (base != 0.0).then(|| (new - base) / base * 100.0)
}

/// Compares `new` against `base`.
pub fn compare(base: &Results, new: &Results, t: Thresholds) -> Report {
    let mut rep = Report::default();
    let (bh, nh) = (&base.host, &new.host);
    if bh.cpu_model != nh.cpu_model || bh.cpus != nh.cpus {
        rep.machine_mismatch = Some(format!(
            "baseline and result come from different machines: base {:?} ({} CPUs), new {:?} ({} CPUs)",
            bh.cpu_model, bh.cpus, nh.cpu_model, nh.cpus
        ));
    }
    let gate_mpps = rep.machine_mismatch.is_none();
    if base.host.profile != new.host.profile {
        rep.warnings.push(format!(
            "profiles differ (base {}, new {}): instruction counts are not comparable",
            base.host.profile, new.host.profile
        ));
    }
    for n in &new.workloads {
        let Some(b) = base.workload(&n.name) else {
            rep.warnings
                .push(format!("{}: not in the baseline (skipped)", n.name));
            continue;
        };
        let mut push = |metric: String, bv: Option<f64>, nv: Option<f64>, gate: Option<f64>| {
            let delta = match (bv, nv) {
                (Some(x), Some(y)) => pct(x, y),
                _ => None,
            };
            // gate: positive = max growth, negative = max fall.
            let regressed = match (gate, delta) {
                (Some(g), Some(d)) if g >= 0.0 => d > g,
                (Some(g), Some(d)) => d < g,
                _ => false,
            };
            rep.rows.push(Row {
                workload: n.name.clone(),
                metric,
                base: bv,
                new: nv,
                delta_pct: delta,
                regressed,
                gated: gate.is_some(),
                tolerance_pct: gate,
            });
        };
        match (&b.instr, &n.instr) {
            (None, None) => {}
            (bi, ni) => {
                let gate = Some(t.max_instr_regress);
                push(
                    "instr/packet (pipeline)".into(),
                    bi.as_ref().map(|i| i.pipeline_per_packet),
                    ni.as_ref().map(|i| i.pipeline_per_packet),
                    gate,
                );
                push(
                    "instr/packet (loop)".into(),
                    bi.as_ref().map(|i| i.loop_per_packet),
                    ni.as_ref().map(|i| i.loop_per_packet),
                    Some(t.max_loop_regress),
                );
                if let (Some(bi), Some(ni)) = (bi, ni) {
                    for (stage, nv) in &ni.stages {
                        push(
                            format!("  instr/packet {stage}"),
                            bi.stages.get(stage).copied(),
                            Some(*nv),
                            None,
                        );
                    }
                }
            }
        }
        for nr in &n.runs {
            let br = b.runs.iter().find(|r| r.workers == nr.workers);
            let band = mpps_band(&t, br.and_then(|r| r.rel_sigma()), nr.rel_sigma());
            push(
                format!(
                    "Mpps median ({} worker{})",
                    nr.workers,
                    if nr.workers == 1 { "" } else { "s" }
                ),
                br.map(|r| r.mpps),
                Some(nr.mpps),
                gate_mpps.then_some(-band),
            );
            push(
                format!("  Mpps MAD ({}w)", nr.workers),
                br.filter(|r| r.mpps_runs.len() >= 3).map(|r| r.mpps_mad),
                (nr.mpps_runs.len() >= 3).then_some(nr.mpps_mad),
                None,
            );
            push(
                format!("p99 ns median ({}w)", nr.workers),
                br.map(|r| r.p99_ns as f64),
                Some(nr.p99_ns as f64),
                None,
            );
        }
    }
    rep
}
