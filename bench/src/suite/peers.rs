//! `sluice-bench peers`: every peer comparison in one run, each printed as a
//! ratio (sluice / peer, higher is better for sluice):
//!
//! - classifier vs `dpdk-test-acl` on ClassBench sets (the `classbench`
//!   binary: best of DPDK's scalar/sse/avx2); without their traces in the
//!   ClassBench folder's `traces/`, 100k-rule sets generated from the sets' 10k
//!   templates;
//! - FIB vs `dpdk-test-fib`, IPv4 DIR-24-8 and IPv6 trie (`fib-bench`);
//! - live veth forwarding vs `dpdk-testpmd` (net_af_xdp, io mode) and vs
//!   kernel forwarding + an equivalent nftables ruleset, at each rule count
//!   (`bench/peers/run.sh`; root, network namespaces, hugepages).
//!
//! The in-process steps run under `flock /tmp/sluice-cpu.lock`; run.sh takes
//! the lock itself, so do not wrap this command in the lock.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// Options.
#[derive(Clone, Debug)]
pub struct PeerOptions {
    /// Directory of the release binaries (`classbench`, `fib-bench`).
    pub bin_dir: PathBuf,
    pub classbench_dir: PathBuf,
    pub classbench_sets: Vec<String>,
    pub fib_routes: usize,
    /// Rule counts of the live runs (empty: skip them).
    pub live_rules: Vec<usize>,
    pub live_seconds: u64,
    /// `NFT_CT` for run.sh.
    pub nft_ct: String,
    pub skip_acl: bool,
    pub skip_fib: bool,
}

/// One printed ratio.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub what: String,
    pub peer: String,
    /// sluice / peer (> 1: sluice is faster).
    pub ratio: f64,
    pub detail: String,
}

fn locked(exe: &Path) -> Command {
    let mut c = Command::new("flock");
    c.arg("/tmp/sluice-cpu.lock").arg(exe);
    c
}

fn output(mut c: Command, what: &str) -> Result<String> {
    let o = c.output().with_context(|| format!("running {what}"))?;
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    if !o.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            o.status,
            text,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(text)
}

fn exe(dir: &Path, name: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    if !p.exists() {
        bail!(
            "{} missing: cargo build --release -p bench --bins",
            p.display()
        );
    }
    Ok(p)
}

/// Classifier vs dpdk-test-acl: parses `classbench`'s rows.
pub fn acl(o: &PeerOptions) -> Result<Vec<Ratio>> {
    let mut c = locked(&exe(&o.bin_dir, "classbench")?);
    c.arg("--classbench").arg(&o.classbench_dir);
    let traced = o.classbench_sets.iter().all(|s| {
        o.classbench_dir
            .join("traces")
            .join(format!("{s}_trace"))
            .is_file()
    });
    if traced {
        c.arg("--sets").arg(o.classbench_sets.join(","));
    } else {
        // No traces shipped: classbench generates 100k-rule sets from the
        // 10k templates, with traces.
        let fams: Vec<&str> = o
            .classbench_sets
            .iter()
            .map(|s| s.split('_').next().unwrap_or(s))
            .collect();
        c.arg("--gen100k").arg(fams.join(","));
    }
    let text = output(c, "classbench")?;
    let mut v = Vec::new();
    for line in text.lines() {
        let Some((_, r)) = line.rsplit_once("ratio sluice/dpdk ") else {
            continue;
        };
        let set = line.split_whitespace().next().unwrap_or("?").to_string();
        let sl = field(line, "sluice ", " Mpps");
        let dp = field(line, "best ", " Mpps");
        if let Ok(ratio) = r.trim().parse::<f64>() {
            v.push(Ratio {
                what: format!("classifier {set}"),
                peer: "dpdk-test-acl".into(),
                ratio,
                detail: format!("sluice {sl} Mpps, dpdk best {dp} Mpps (lookups, 1 core)"),
            });
        }
    }
    if v.is_empty() {
        bail!("classbench printed no ratios:\n{text}");
    }
    Ok(v)
}

fn field<'a>(line: &'a str, before: &str, after: &str) -> &'a str {
    line.split_once(before)
        .and_then(|(_, r)| r.trim_start().split_once(after))
        .map_or("?", |(v, _)| v.trim())
}

/// FIB vs dpdk-test-fib, v4 and v6.
pub fn fib(o: &PeerOptions) -> Result<Vec<Ratio>> {
    let mut v = Vec::new();
    for v6 in [false, true] {
        let mut c = locked(&exe(&o.bin_dir, "fib-bench")?);
        c.args(["--routes", &o.fib_routes.to_string()]);
        if v6 {
            c.arg("--v6");
        }
        let text = output(c, "fib-bench")?;
        let ratio = text
            .lines()
            .find_map(|l| l.split_once("ratio sluice/dpdk speed:"))
            .and_then(|(_, r)| r.trim().trim_end_matches('x').parse::<f64>().ok())
            .with_context(|| format!("fib-bench printed no ratio:\n{text}"))?;
        let sl = text
            .lines()
            .find(|l| l.trim_start().starts_with("sluice:"))
            .map(|l| field(l, "sluice:", "cycles").to_string())
            .unwrap_or_default();
        let dp = text
            .lines()
            .find(|l| l.trim_start().starts_with("dpdk-test-fib:"))
            .map(|l| field(l, "dpdk-test-fib:", "cycles").to_string())
            .unwrap_or_default();
        v.push(Ratio {
            what: format!(
                "FIB {} {} routes",
                if v6 { "IPv6" } else { "IPv4" },
                o.fib_routes
            ),
            peer: "dpdk-test-fib".into(),
            ratio,
            detail: format!("sluice {sl} cycles/lookup, dpdk {dp} cycles/lookup"),
        });
    }
    Ok(v)
}

/// Live forwarding at `rules` rules through run.sh.
pub fn live(o: &PeerOptions, rules: usize) -> Result<Vec<Ratio>> {
    let script = super::workspace_root().join("bench/peers/run.sh");
    let mut c = Command::new(&script);
    c.env("RULES", rules.to_string())
        .env("SECONDS_RUN", o.live_seconds.to_string())
        .env("NFT_CT", &o.nft_ct);
    let text = output(c, "bench/peers/run.sh")?;
    let mpps = |peer: &str| -> Option<f64> {
        text.lines().find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(peer))
                .then(|| it.next())
                .flatten()
                .and_then(|x| x.parse().ok())
        })
    };
    let sl = mpps("sluice").with_context(|| format!("run.sh printed no sluice rate:\n{text}"))?;
    let mut v = Vec::new();
    for peer in ["testpmd", "kernel"] {
        if let Some(p) = mpps(peer) {
            v.push(Ratio {
                what: format!("live veth forwarding, {rules} rules"),
                peer: if peer == "kernel" {
                    format!("kernel + nftables ({})", o.nft_ct)
                } else {
                    "dpdk-testpmd net_af_xdp io".into()
                },
                ratio: if p > 0.0 { sl / p } else { 0.0 },
                detail: format!(
                    "sluice {sl:.3} Mpps, {peer} {p:.3} Mpps (64-byte UDP, saturation)"
                ),
            });
        }
    }
    Ok(v)
}

/// Runs every step; a failing step is reported and the others still run.
pub fn run_all(o: &PeerOptions) -> (Vec<Ratio>, Vec<String>) {
    let mut ratios = Vec::new();
    let mut errors = Vec::new();
    let mut step = |name: &str, r: Result<Vec<Ratio>>| match r {
        Ok(v) => {
            for x in &v {
                println!("{}", line(x));
            }
            ratios.extend(v);
        }
        Err(e) => {
            eprintln!("{name}: {e:#}");
            errors.push(format!("{name}: {e:#}"));
        }
    };
    if !o.skip_acl {
        eprintln!("==> classifier vs dpdk-test-acl");
        step("acl", acl(o));
    }
    if !o.skip_fib {
        eprintln!("==> FIB vs dpdk-test-fib");
        step("fib", fib(o));
    }
    for &r in &o.live_rules {
        eprintln!("==> live veth forwarding, {r} rules");
        step("live", live(o, r));
    }
    (ratios, errors)
}

/// One ratio for a person.
pub fn line(r: &Ratio) -> String {
    format!(
        "{:<36} vs {:<36} {:>6.2}x   ({})",
        r.what, r.peer, r.ratio, r.detail
    )
}
