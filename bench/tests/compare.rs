//! The regression gate catches a slowdown: `sluice-bench compare` passes an
//! unmodified re-run and fails a run with deliberately injected work (the
//! measured child burns extra instructions per packet), both measured under
//! callgrind on a tiny workload. Plus the thresholds on hand-made results.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use bench::suite::compare::{compare, Thresholds};
use bench::suite::results::{Instr, Results, Run, WorkloadResult};

const EXE: &str = env!("CARGO_BIN_EXE_sluice-bench");

fn have_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn measure(dir: &Path, name: &str, burn: Option<u64>) -> PathBuf {
    let out = dir.join(format!("{name}.json"));
    let mut c = Command::new(EXE);
    c.args(["run", "--suite", "tiny", "--instr-only", "--out"])
        .arg(&out);
    if let Some(b) = burn {
        c.env("SLUICE_BENCH_INJECT_BURN", b.to_string());
    }
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "sluice-bench run failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn compare_exit(base: &Path, new: &Path) -> (i32, String) {
    let o = Command::new(EXE)
        .arg("compare")
        .arg(base)
        .arg(new)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn compare_catches_injected_slowdown() {
    // valgrind is a dependency (scripts/ensure-deps.sh installs it): its
    // absence is a failure, not a skip.
    assert!(have_valgrind(), "valgrind is not installed");
    let dir = std::env::temp_dir().join(format!("sluice-bench-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = measure(&dir, "base", None);
    let again = measure(&dir, "again", None);

    // An unmodified run passes: callgrind counts are deterministic.
    let (code, text) = compare_exit(&base, &again);
    assert_eq!(code, 0, "unmodified run flagged:\n{text}");

    // Burn ~30% more instructions per packet outside the pipeline (each
    // burn iteration is at least three instructions): past the loop's +10%
    // threshold (the pipeline's own count stays put).
    let b = Results::load(&base).unwrap();
    let per = b.workloads[0].instr.as_ref().unwrap().loop_per_packet;
    assert!(per > 100.0, "implausible instructions per packet: {per}");
    let burn = (per * 0.30 / 3.0).ceil() as u64;
    let slow = measure(&dir, "slow", Some(burn));
    let (code, text) = compare_exit(&base, &slow);
    assert_eq!(code, 1, "injected slowdown not caught:\n{text}");
    assert!(text.contains("REGRESSION"), "{text}");
    let s = Results::load(&slow).unwrap();
    let grown = s.workloads[0].instr.as_ref().unwrap().loop_per_packet / per - 1.0;
    assert!(grown > 0.10, "burn added only {:.1}%", grown * 100.0);

    let _ = std::fs::remove_dir_all(&dir);
}

fn result(name: &str, pipeline: f64, mpps: Option<f64>) -> WorkloadResult {
    WorkloadResult {
        name: name.into(),
        workload: bench::suite::tiny(),
        frames: 1000,
        rules: 20,
        flows: 100,
        actions: [1000, 0, 0],
        drops: Default::default(),
        runs: mpps
            .map(|m| Run {
                workers: 1,
                loops: 10,
                packets: 10_000,
                seconds: 0.01,
                mpps: m,
                mpps_runs: Vec::new(),
                mpps_min: m,
                mpps_max: m,
                mpps_mad: 0.0,
                p99_runs: Vec::new(),
                ns_per_packet: 1e3 / m,
                pipeline_ns_per_packet: 1e3 / m,
                p50_ns: 100,
                p99_ns: 200,
                p999_ns: 300,
                max_ns: 400,
                latency_cdf: Vec::new(),
            })
            .into_iter()
            .collect(),
        instr: Some(Instr {
            loop_per_packet: pipeline + 100.0,
            pipeline_per_packet: pipeline,
            stages: Default::default(),
            loops: (1, 9),
            packets: 8000,
            injected_burn: 0,
        }),
    }
}

fn results(ws: Vec<WorkloadResult>) -> Results {
    Results {
        schema: 2,
        suite: "test".into(),
        workloads: ws,
        ..Results::default()
    }
}

#[test]
fn thresholds() {
    let t = Thresholds::default();
    let base = results(vec![result("a", 1000.0, Some(10.0))]);
    // +2.9% instructions, -4% Mpps (no repeats: the 5% floor): within.
    let ok = results(vec![result("a", 1029.0, Some(9.6))]);
    assert!(!compare(&base, &ok, t).regressed());
    // +3.1% instructions.
    let slow = results(vec![result("a", 1031.0, Some(10.0))]);
    assert!(compare(&base, &slow, t).regressed());
    // -6% Mpps.
    let wall = results(vec![result("a", 1000.0, Some(9.4))]);
    assert!(compare(&base, &wall, t).regressed());
    // Looser thresholds let both through.
    let loose = Thresholds {
        max_instr_regress: 5.0,
        max_loop_regress: 10.0,
        max_mpps_regress: 20.0,
        noise_k: 3.0,
    };
    assert!(!compare(&base, &slow, loose).regressed());
    assert!(!compare(&base, &wall, loose).regressed());
    // Fewer instructions and missing metrics are never regressions; an
    // unknown workload is a warning.
    let fast = results(vec![
        result("a", 900.0, None),
        result("b", 5000.0, Some(1.0)),
    ]);
    let r = compare(&base, &fast, t);
    assert!(!r.regressed());
    assert!(r.warnings.iter().any(|w| w.starts_with("b:")));
}

/// A result whose Mpps comes from repeats.
fn repeated(pipeline: f64, mpps: &[f64]) -> WorkloadResult {
    let mut w = result("a", pipeline, Some(1.0));
    let runs = mpps
        .iter()
        .map(|&m| Run {
            mpps: m,
            p99_ns: 200,
            ..w.runs[0].clone()
        })
        .collect();
    w.runs = vec![Run::of_repeats(runs).unwrap()];
    w
}

#[test]
fn throughput_band_follows_the_measured_spread() {
    let t = Thresholds::default();
    // Tight repeats (MAD 0.1 of 10: sigma 1.5%, band max(5%, 4.4%) = 5%).
    let tight = results(vec![repeated(1000.0, &[10.0, 10.1, 9.9, 10.0, 10.2])]);
    let r = &tight.workloads[0].runs[0];
    assert_eq!((r.mpps, r.mpps_min, r.mpps_max), (10.0, 9.9, 10.2));
    assert!((r.mpps_mad - 0.1).abs() < 1e-9);
    let down8 = results(vec![repeated(1000.0, &[9.2, 9.3, 9.1, 9.2, 9.2])]);
    let rep = compare(&tight, &down8, t);
    assert!(rep.regressed(), "{}", rep.to_text());
    // Noisy repeats (MAD 1 of 10: sigma 15%, band 44%): the same fall is
    // noise, and so is a fall of 30%; 50% is not.
    let noisy = results(vec![repeated(1000.0, &[10.0, 11.0, 9.0, 12.0, 8.0])]);
    assert!(!compare(&noisy, &down8, t).regressed());
    let down30 = results(vec![repeated(1000.0, &[7.0, 7.1, 6.9, 7.0, 7.0])]);
    assert!(!compare(&noisy, &down30, t).regressed());
    let down50 = results(vec![repeated(1000.0, &[5.0, 5.1, 4.9, 5.0, 5.0])]);
    assert!(compare(&noisy, &down50, t).regressed());
    // The band is printed.
    assert!(compare(&noisy, &down50, t).to_text().contains("-44.5%"));
}

#[test]
fn other_machine_gates_instructions_only() {
    let t = Thresholds::default();
    let mut base = results(vec![repeated(1000.0, &[10.0, 10.1, 9.9, 10.0, 10.2])]);
    base.host.cpu_model = "AMD EPYC".into();
    base.host.cpus = 2;
    let mut half = results(vec![repeated(1000.0, &[5.0, 5.1, 4.9, 5.0, 5.0])]);
    half.host.cpu_model = "Intel(R) Xeon(R) Processor".into();
    half.host.cpus = 2;
    let rep = compare(&base, &half, t);
    assert!(!rep.regressed(), "{}", rep.to_text());
    let text = rep.to_text();
    assert!(
        text.contains("WARNING: baseline and result come from different machines"),
        "{text}"
    );
    assert!(
        text.contains("AMD EPYC") && text.contains("Intel(R) Xeon(R) Processor"),
        "{text}"
    );
    // Instructions still gate.
    let mut slow = results(vec![repeated(1040.0, &[10.0, 10.1, 9.9, 10.0, 10.2])]);
    slow.host = half.host.clone();
    assert!(compare(&base, &slow, t).regressed());
}
