//! The loss-free search (`bench/peers/search.py`) against synthetic
//! forwarders in place of `trial.sh`: one that loses nothing up to a
//! capacity and everything past it beyond, one that the generator cannot
//! push to its limit, and one whose losses are random. Each checks what
//! the search reports against what the fake forwarder was built to do.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/search.py")
}

/// A fake trial command: forwards up to `cap` pps without loss (loss
/// (rate - cap) / rate above), the generator offers at most `gen_max`; with
/// `noise`, a trial loses `noise` more at random one time in three.
fn fake_trial(dir: &Path, cap: f64, gen_max: f64, noise: f64) -> PathBuf {
    let f = dir.join("trial");
    std::fs::write(
        &f,
        format!(
            "#!/usr/bin/env python3\n\
             import random, sys\n\
             rate = float(sys.argv[2])\n\
             offered = min(rate, {gen_max})\n\
             loss = max(0.0, (offered - {cap}) / offered)\n\
             if {noise} > 0 and random.random() < 1 / 3:\n\
             \x20   loss += {noise}\n\
             print(f'loss {{loss:.6f}} offered {{offered:.0f}} delivered {{offered * (1 - loss):.0f}}')\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    f
}

/// Runs the search; returns its one stdout line's fields and the trials.
fn search(name: &str, trial: &Path, top: u64, budget: u32) -> (Vec<String>, serde_json::Value) {
    let dir = trial.parent().unwrap();
    let json = dir.join(format!("{name}.json"));
    let o = Command::new("python3")
        .arg(script())
        .args(["--name", name, "--top", &top.to_string()])
        .args(["--max-trials", &budget.to_string(), "--json"])
        .arg(&json)
        .arg("--trial-cmd")
        .arg(trial)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "search.py failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8(o.stdout).unwrap();
    let fields = out.split_whitespace().map(str::to_string).collect();
    let j = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (fields, j)
}

/// A scratch folder of its own per test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("sluice-search-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn num(fields: &[String], key: &str) -> f64 {
    let i = fields.iter().position(|f| f == key).unwrap();
    fields[i + 1].parse().unwrap()
}

#[test]
fn finds_the_capacity_within_the_width() {
    let d = Scratch::new("clean");
    let t = fake_trial(d.path(), 400_000.0, 5e6, 0.0);
    let (f, j) = search("clean", &t, 2_000_000, 30);
    let ndr = num(&f, "ndr");
    assert!(
        (400_000.0 * 0.98..=400_000.0).contains(&ndr),
        "NDR {ndr} for a 400 kpps forwarder: {f:?}"
    );
    // PDR: loss <= 0.5% holds up to cap / 0.995.
    let pdr = num(&f, "pdr");
    assert!(
        (ndr..=400_000.0 / 0.995).contains(&pdr),
        "PDR {pdr}, NDR {ndr}"
    );
    assert_eq!(num(&f, "capped"), 0.0);
    // The reported NDR passed REPEAT (2) full-length trials.
    let full = j["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["rate"].as_f64() == Some(ndr) && t["seconds"].as_f64() == Some(5.0))
        .count();
    assert!(full >= 2, "{full} full-length trials at the NDR");
    // Overload at 2x and 5x the NDR: this forwarder delivers its capacity.
    let ol = &j["overload"];
    for k in ["2.0", "5.0"] {
        let v = ol[k].as_f64().unwrap();
        assert!((v - 400_000.0).abs() < 1.0, "overload {k}: {v}");
    }
}

#[test]
fn a_generator_that_falls_short_gives_a_lower_bound() {
    let d = Scratch::new("short");
    // The forwarder takes 3 Mpps; the generator offers 1 Mpps at most.
    let t = fake_trial(d.path(), 3e6, 1e6, 0.0);
    let (f, _) = search("short", &t, 2_000_000, 30);
    assert_eq!(num(&f, "capped"), 1.0, "{f:?}");
    assert!(num(&f, "ndr") <= 1e6);
    assert!(num(&f, "ndr") >= 0.95e6, "{f:?}");
}

#[test]
fn random_losses_never_raise_the_figure_past_the_capacity() {
    let d = Scratch::new("noisy");
    let t = fake_trial(d.path(), 250_000.0, 5e6, 0.01);
    for i in 0..3 {
        let (f, _) = search(&format!("noisy{i}"), &t, 2_000_000, 30);
        let ndr = num(&f, "ndr");
        assert!(ndr <= 250_000.0, "NDR {ndr} above the capacity: {f:?}");
        let trials = num(&f, "trials");
        // The budget bounds the search's own trials (the overload trials
        // come on top).
        assert!(trials <= 32.0, "{trials} trials");
    }
}
