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
//! - sluice as a fraction of the ceiling, `xdp-redirect`: an in-kernel XDP
//!   forwarder that does nothing but rewrite the MACs and redirect through a
//!   DEVMAP (`bench/bpf/xdp_fwd.bpf.c`), which no AF_XDP forwarder can beat.
//!
//! A peer that fails, produces no figures or delivers nothing is an error
//! naming the peer and why (the command exits non-zero), never a ratio of
//! zero. The in-process steps run under `flock /tmp/sluice-cpu.lock`; run.sh
//! takes the lock itself, so do not wrap this command in the lock
//! (`SLUICE_PEERS_LOCKED=1` says the caller already holds it).

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
    /// ClassBench sets (empty: every set with a trace).
    pub classbench_sets: Vec<String>,
    /// Families whose 10k template `classbench` scales to 100k rules.
    pub gen100k: Vec<String>,
    pub fib_routes: usize,
    /// Rule counts of the live runs (empty: skip them).
    pub live_rules: Vec<usize>,
    pub live_seconds: u64,
    /// Trials of each loss-free search (0: saturation only).
    pub search_steps: u32,
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
    /// sluice / peer (> 1: sluice is faster); for the live rows, of the
    /// delivered rates at saturation.
    pub ratio: f64,
    /// Live rows with the loss-free search: sluice / peer of the loss-free
    /// rates (NDR, loss <= 0.1%) and PDR (loss <= 0.5%).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ndr_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pdr_ratio: Option<f64>,
    pub detail: String,
}

/// `exe` under the CPU lock, unless the caller holds it.
pub(crate) fn locked(exe: &Path) -> Command {
    if std::env::var_os("SLUICE_PEERS_LOCKED").is_some_and(|v| v == "1") {
        return Command::new(exe);
    }
    let mut c = Command::new("flock");
    c.arg("/tmp/sluice-cpu.lock").arg(exe);
    c
}

/// Runs `c`; on failure the error carries the lines where a peers script
/// (`run.sh`, `cps.sh`) names the failed peer, or else the output's tail.
pub(crate) fn output(mut c: Command, what: &str) -> Result<String> {
    let o = c.output().with_context(|| format!("running {what}"))?;
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        // The scripts name the failed peer on lines of their own.
        let named: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("run.sh: ") || l.starts_with("cps.sh: "))
            .collect();
        if !named.is_empty() {
            bail!("{what} failed ({}): {}", o.status, named.join("; "));
        }
        bail!(
            "{what} failed ({}):\n{}",
            o.status,
            crate::classbench::tail(&(text + &err), 20)
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

/// Classifier vs dpdk-test-acl: parses `classbench`'s rows, one per
/// ClassBench set (`classbench_sets`, or every set with a trace when empty)
/// and one per generated 100k set (`gen100k` families); each must be there
/// with a positive ratio.
pub fn acl(o: &PeerOptions) -> Result<Vec<Ratio>> {
    let mut c = locked(&exe(&o.bin_dir, "classbench")?);
    c.arg("--classbench").arg(&o.classbench_dir);
    let traces = o.classbench_dir.join("traces");
    let mut expect: Vec<String> = if o.classbench_sets.is_empty() {
        crate::classbench::traced_sets(&o.classbench_dir)?
    } else {
        for s in &o.classbench_sets {
            if !traces.join(format!("{s}_trace")).is_file() {
                bail!(
                    "classbench set {s}: no trace {}/{s}_trace (its first matches are \
                     what the comparison checks); for a 100k set use --gen100k",
                    traces.display()
                );
            }
        }
        o.classbench_sets.clone()
    };
    c.arg("--sets").arg(if expect.is_empty() {
        "none".to_string()
    } else {
        expect.join(",")
    });
    if !o.gen100k.is_empty() {
        c.arg("--gen100k").arg(o.gen100k.join(","));
        expect.extend(o.gen100k.iter().map(|f| format!("{f}_100k_s1")));
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
        let ratio = r.trim().parse::<f64>().unwrap_or(f64::NAN);
        if !(ratio.is_finite() && ratio > 0.0) {
            bail!("classbench {set}: no ratio against dpdk-test-acl (sluice {sl} Mpps, dpdk best {dp} Mpps): {line}");
        }
        v.push(Ratio {
            what: format!("classifier {set}"),
            peer: "dpdk-test-acl".into(),
            ratio,
            ndr_ratio: None,
            pdr_ratio: None,
            detail: format!("sluice {sl} Mpps, dpdk best {dp} Mpps (lookups, 1 core)"),
        });
    }
    let missing: Vec<&String> = expect
        .iter()
        .filter(|s| !v.iter().any(|r| r.what == format!("classifier {s}")))
        .collect();
    if !missing.is_empty() {
        bail!(
            "classbench printed no ratio for {}:\n{text}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
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
            .filter(|r| r.is_finite() && *r > 0.0)
            .with_context(|| {
                format!("fib-bench printed no ratio against dpdk-test-fib:\n{text}")
            })?;
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
            ndr_ratio: None,
            pdr_ratio: None,
            detail: format!("sluice {sl} cycles/lookup, dpdk {dp} cycles/lookup"),
        });
    }
    Ok(v)
}

/// One forwarder's figures from run.sh (Mpps).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LiveFigures {
    /// Delivered at saturation, and what the generator offered meanwhile.
    pub saturation: f64,
    pub offered: f64,
    /// Highest offered rate with loss <= 0.1% / 0.5% (when searched).
    pub ndr: Option<f64>,
    pub pdr: Option<f64>,
    /// (k, delivered) when offered k times the NDR (when searched).
    pub overload: Vec<(f64, f64)>,
}

/// One forwarder at one rule count, for the JSON and the plot.
#[derive(Clone, Debug, Serialize)]
pub struct LivePoint {
    pub rules: usize,
    pub peer: String,
    #[serde(flatten)]
    pub figures: LiveFigures,
}

/// The peers run.sh runs, as it names them, and how they are printed.
pub const LIVE_PEERS: [(&str, &str); 4] = [
    ("ceiling", "xdp-redirect (ceiling)"),
    ("sluice", "sluice"),
    ("testpmd", "dpdk-testpmd net_af_xdp io"),
    ("kernel", "kernel + nftables"),
];

/// Parses run.sh's `result PEER saturation X offered Y ndr Z pdr W
/// overload K:PPS,...` line for `peer` (`-` for a figure not measured).
pub fn parse_live(text: &str, peer: &str) -> Option<LiveFigures> {
    let line = text.lines().find(|l| {
        let mut it = l.split_whitespace();
        it.next() == Some("result") && it.next() == Some(peer)
    })?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let get = |key: &str| -> Option<f64> {
        let i = words.iter().position(|w| *w == key)?;
        words.get(i + 1)?.parse().ok()
    };
    Some(LiveFigures {
        saturation: get("saturation")?,
        offered: get("offered")?,
        ndr: get("ndr"),
        pdr: get("pdr"),
        overload: words
            .iter()
            .position(|w| *w == "overload")
            .and_then(|i| words.get(i + 1))
            .map(|v| {
                v.split(',')
                    .filter_map(|kv| {
                        let (k, pps) = kv.split_once(':')?;
                        Some((k.parse().ok()?, pps.parse::<f64>().ok()? / 1e6))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Live forwarding at `rules` rules through run.sh, for `peers` (names of
/// [`LIVE_PEERS`]; sluice always): every peer must report a positive
/// delivered rate (run.sh fails first, naming the peer, when one does not
/// start or delivers nothing; this checks again).
pub fn live(o: &PeerOptions, rules: usize, peers: &[&str]) -> Result<(Vec<Ratio>, Vec<LivePoint>)> {
    let script = super::workspace_root().join("bench/peers/run.sh");
    let mut c = Command::new(&script);
    let peers: Vec<(&str, &str)> = LIVE_PEERS
        .into_iter()
        .filter(|(p, _)| *p == "sluice" || peers.contains(p))
        .collect();
    c.args(peers.iter().map(|(p, _)| p))
        .env("RULES", rules.to_string())
        .env("SECONDS_RUN", o.live_seconds.to_string())
        .env("SEARCH_STEPS", o.search_steps.to_string())
        .env("NFT_CT", &o.nft_ct);
    let text = output(c, "bench/peers/run.sh")?;
    let mut figs = Vec::new();
    for &(peer, name) in &peers {
        let f = parse_live(&text, peer)
            .with_context(|| format!("run.sh printed no figures for {name}:\n{text}"))?;
        if f.saturation.is_nan() || f.saturation <= 0.0 {
            bail!(
                "{name} delivered nothing at {rules} rules (generator offered {:.3} Mpps)",
                f.offered
            );
        }
        // A search that found no rate within its loss (0 from run.sh) has
        // no figure to compare: the ratio is left out and the detail says so.
        let f = LiveFigures {
            ndr: f.ndr.filter(|v| *v > 0.0),
            pdr: f.pdr.filter(|v| *v > 0.0),
            ..f
        };
        figs.push((peer, name, f));
    }
    let Some((_, _, sl)) = figs.iter().find(|(p, _, _)| *p == "sluice").cloned() else {
        bail!("run.sh printed no figures for sluice");
    };
    let div = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let mut v = Vec::new();
    // sluice against its own loss-free rate: what it keeps delivering when
    // offered more than it can take (saturation, and k x its NDR).
    if let Some(ndr) = sl.ndr {
        let ks: Vec<String> = sl
            .overload
            .iter()
            .map(|(k, d)| format!("at {k}x NDR {d:.3} ({:.2}x)", d / ndr))
            .collect();
        v.push(Ratio {
            what: format!("live overload, {rules} rules"),
            peer: "sluice's own NDR".into(),
            ratio: sl.saturation / ndr,
            ndr_ratio: None,
            pdr_ratio: None,
            detail: format!(
                "Mpps: NDR {ndr:.3}; delivered at saturation {:.3} (offered {:.3}){}{}",
                sl.saturation,
                sl.offered,
                if ks.is_empty() { "" } else { "; " },
                ks.join(", ")
            ),
        });
    }
    let points = figs
        .iter()
        .map(|(p, _, f)| LivePoint {
            rules,
            peer: p.to_string(),
            figures: f.clone(),
        })
        .collect();
    for (peer, name, f) in figs {
        if peer == "sluice" {
            continue;
        }
        let peer_label = if peer == "kernel" {
            format!("{name} ({})", o.nft_ct)
        } else {
            name.to_string()
        };
        let searched = o.search_steps > 0;
        let fig = |x: &LiveFigures| {
            let mut s = format!("saturation {:.3}", x.saturation);
            if searched {
                let v = |r: Option<f64>| r.map_or("none found".to_string(), |r| format!("{r:.3}"));
                s += &format!(", NDR {}, PDR {}", v(x.ndr), v(x.pdr));
            }
            s
        };
        v.push(Ratio {
            what: format!("live veth forwarding, {rules} rules"),
            peer: peer_label,
            ratio: sl.saturation / f.saturation,
            ndr_ratio: div(sl.ndr, f.ndr),
            pdr_ratio: div(sl.pdr, f.pdr),
            detail: format!(
                "Mpps: sluice {}; {peer} {} (64-byte UDP, one DUT core)",
                fig(&sl),
                fig(&f)
            ),
        });
    }
    Ok((v, points))
}

/// Everything one `peers` run measured.
#[derive(Debug, Default, Serialize)]
pub struct PeerReport {
    pub ratios: Vec<Ratio>,
    pub live: Vec<LivePoint>,
    pub errors: Vec<String>,
}

/// Runs every step; a failing step is reported and the others still run.
/// The live runs: every peer at the first rule count, then sluice and the
/// kernel (the two whose work depends on the rules) at the others.
pub fn run_all(o: &PeerOptions) -> PeerReport {
    let mut ratios = Vec::new();
    let mut errors = Vec::new();
    let mut points = Vec::new();
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
    for (i, &r) in o.live_rules.iter().enumerate() {
        let peers: Vec<&str> = if i == 0 {
            LIVE_PEERS.map(|(p, _)| p).to_vec()
        } else {
            vec!["kernel"]
        };
        eprintln!("==> live veth forwarding, {r} rules: {}", peers.join(", "));
        step(
            "live",
            live(o, r, &peers).map(|(v, p)| {
                points.extend(p);
                v
            }),
        );
    }
    PeerReport {
        ratios,
        live: points,
        errors,
    }
}

/// One ratio for a person.
pub fn line(r: &Ratio) -> String {
    let mut s = format!("{:<36} vs {:<36} {:>6.2}x", r.what, r.peer, r.ratio);
    if let Some(n) = r.ndr_ratio {
        s += &format!(" (NDR {n:.2}x");
        if let Some(p) = r.pdr_ratio {
            s += &format!(", PDR {p:.2}x");
        }
        s += ")";
    }
    s + &format!("   ({})", r.detail)
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn live_result_lines() {
        let text = "sluice: rx 1 tx 1\n\
                    result sluice saturation 0.149 offered 2.81 ndr 0.6 pdr 0.65 overload 2:580000,5:550000\n\
                    result kernel saturation 0.0 offered 2.0 ndr - pdr - overload -\n";
        let s = parse_live(text, "sluice").unwrap();
        assert_eq!(
            s,
            LiveFigures {
                saturation: 0.149,
                offered: 2.81,
                ndr: Some(0.6),
                pdr: Some(0.65),
                overload: vec![(2.0, 0.58), (5.0, 0.55)],
            }
        );
        let k = parse_live(text, "kernel").unwrap();
        assert_eq!((k.saturation, k.ndr, k.pdr), (0.0, None, None));
        assert!(k.overload.is_empty());
        assert!(parse_live(text, "testpmd").is_none());
    }
}
