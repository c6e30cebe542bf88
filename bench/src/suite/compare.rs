//! `sluice-bench compare BASE NEW`: a table of deltas and a verdict.
//!
//! Gated: instructions per packet of `Pipeline::process` (inclusive,
//! deterministic to < 0.01 %) may grow by at most `max_instr_regress`
//! percent, those of the whole replay loop (which also counts the harness's
//! thread hand-offs, a few percent of run-to-run jitter on small workloads)
//! by at most `max_loop_regress` percent, and
//! Mpps (per workload and worker count) may fall by at most
//! `max_mpps_regress` percent. A metric missing on either side is shown and
//! not gated (the CI gate measures instructions only). Instruction counts
//! compare only between builds of the same profile.

use std::fmt::Write as _;

use super::results::Results;

/// Thresholds, percent.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    pub max_instr_regress: f64,
    pub max_loop_regress: f64,
    pub max_mpps_regress: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_instr_regress: 3.0,
            max_loop_regress: 10.0,
            max_mpps_regress: 10.0,
        }
    }
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
}

/// The outcome.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub warnings: Vec<String>,
}

impl Report {
    /// Any gated metric past its threshold?
    pub fn regressed(&self) -> bool {
        self.rows.iter().any(|r| r.regressed)
    }

    /// The table.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{:<28} {:<26} {:>14} {:>14} {:>9}  {}\n",
            "workload", "metric", "base", "new", "delta", ""
        );
        for r in &self.rows {
            let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
            let d = r.delta_pct.map_or("-".to_string(), |d| format!("{d:+.2}%"));
            let verdict = if r.regressed {
                "REGRESSION"
            } else if !r.gated {
                "(info)"
            } else {
                "ok"
            };
            let _ = writeln!(
                s,
                "{:<28} {:<26} {:>14} {:>14} {:>9}  {verdict}",
                r.workload,
                r.metric,
                f(r.base),
                f(r.new),
                d
            );
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
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
            push(
                format!(
                    "Mpps ({} worker{})",
                    nr.workers,
                    if nr.workers == 1 { "" } else { "s" }
                ),
                br.map(|r| r.mpps),
                Some(nr.mpps),
                Some(-t.max_mpps_regress),
            );
            push(
                format!("p99 ns ({}w)", nr.workers),
                br.map(|r| r.p99_ns as f64),
                Some(nr.p99_ns as f64),
                None,
            );
        }
    }
    rep
}
