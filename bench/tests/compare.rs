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
        schema: 1,
        suite: "test".into(),
        workloads: ws,
        ..Results::default()
    }
}

#[test]
fn thresholds() {
    let t = Thresholds::default();
    let base = results(vec![result("a", 1000.0, Some(10.0))]);
    // +2.9% instructions, -9% Mpps: within.
    let ok = results(vec![result("a", 1029.0, Some(9.1))]);
    assert!(!compare(&base, &ok, t).regressed());
    // +3.1% instructions.
    let slow = results(vec![result("a", 1031.0, Some(10.0))]);
    assert!(compare(&base, &slow, t).regressed());
    // -11% Mpps.
    let wall = results(vec![result("a", 1000.0, Some(8.9))]);
    assert!(compare(&base, &wall, t).regressed());
    // Looser thresholds let both through.
    let loose = Thresholds {
        max_instr_regress: 5.0,
        max_loop_regress: 10.0,
        max_mpps_regress: 20.0,
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
