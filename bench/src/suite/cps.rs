//! `sluice-bench cps`: new TCP connections per second through the
//! forwarder with a service VIP, masquerade and policy — sluice against the
//! kernel's conntrack + nftables in one run of `bench/peers/cps.sh` (root,
//! network namespaces), plus the no-NAT rows — and beside them sluice's
//! offline figure: whole connections replayed through the pipeline
//! ([`crate::cps`]), in a child under the CPU lock.
//!
//! A peer that fails or completes no connection is an error naming the
//! peer (the command exits 1), never a ratio of zero. cps.sh takes the CPU
//! lock itself; `SLUICE_CPS_SCRIPT` replaces it (the failure test's fake).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::peers::{locked, output};
use crate::cps::Offline;

/// The peers cps.sh runs, as it names them, and how they are printed.
pub const CPS_PEERS: [(&str, &str); 4] = [
    ("sluice", "sluice (VIP + masquerade)"),
    ("kernel", "kernel conntrack + nftables (VIP + masquerade)"),
    ("sluice-plain", "sluice (no NAT)"),
    ("kernel-plain", "kernel conntrack + nftables (no NAT)"),
];

/// One peer's figures from cps.sh.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CpsFigures {
    pub peer: String,
    pub cps: f64,
    pub completed: u64,
    pub failed: u64,
    pub setup_p50_us: u64,
    pub setup_p99_us: u64,
    pub exchange_p50_us: u64,
    pub exchange_p99_us: u64,
    /// Busy share of the generator's and the DUT's core over the window.
    pub gen_busy: f64,
    pub dut_busy: f64,
    /// DUT core microseconds per completed connection.
    pub dut_us_per_conn: Option<f64>,
}

/// Parses cps.sh's `result PEER cps X completed N ...` line for `peer`.
pub fn parse_result(text: &str, peer: &str) -> Option<CpsFigures> {
    let line = text.lines().find(|l| {
        let mut it = l.split_whitespace();
        it.next() == Some("result") && it.next() == Some(peer)
    })?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let get = |key: &str| -> Option<&str> {
        let i = words.iter().position(|w| *w == key)?;
        words.get(i + 1).copied()
    };
    let f = |key: &str| get(key)?.parse::<f64>().ok();
    let u = |key: &str| get(key)?.parse::<u64>().ok();
    Some(CpsFigures {
        peer: peer.to_string(),
        cps: f("cps")?,
        completed: u("completed")?,
        failed: u("failed")?,
        setup_p50_us: u("setup_p50_us")?,
        setup_p99_us: u("setup_p99_us")?,
        exchange_p50_us: u("exchange_p50_us")?,
        exchange_p99_us: u("exchange_p99_us")?,
        gen_busy: f("gen_busy")?,
        dut_busy: f("dut_busy")?,
        dut_us_per_conn: f("dut_us_per_conn"),
    })
}

/// Options of the live run.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub peers: Vec<String>,
    pub seconds: u64,
    pub warmup: u64,
    pub concurrency: usize,
}

fn script() -> PathBuf {
    std::env::var_os("SLUICE_CPS_SCRIPT").map_or_else(
        || super::workspace_root().join("bench/peers/cps.sh"),
        PathBuf::from,
    )
}

/// Runs cps.sh for `o.peers`; every peer must have completed connections.
pub fn live(o: &LiveOptions) -> Result<Vec<CpsFigures>> {
    for p in &o.peers {
        if !CPS_PEERS.iter().any(|(n, _)| n == p) {
            bail!(
                "no cps peer {p:?} ({})",
                CPS_PEERS.map(|(n, _)| n).join(", ")
            );
        }
    }
    let mut c = Command::new(script());
    c.args(&o.peers)
        .env("SECONDS_RUN", o.seconds.to_string())
        .env("WARMUP", o.warmup.to_string())
        .env("CONCURRENCY", o.concurrency.to_string());
    let text = output(c, "bench/peers/cps.sh")?;
    let mut v = Vec::new();
    let mut bad = Vec::new();
    for p in &o.peers {
        match parse_result(&text, p) {
            None => bad.push(format!("{}: cps.sh printed no figures", label(p))),
            Some(f) if f.cps.is_nan() || f.cps <= 0.0 || f.completed == 0 => bad.push(format!(
                "{}: completed no connection ({} failed)",
                label(p),
                f.failed
            )),
            Some(f) => v.push(f),
        }
    }
    if !bad.is_empty() {
        bail!("{}", bad.join("; "));
    }
    Ok(v)
}

/// How a peer is printed.
pub fn label(peer: &str) -> &str {
    CPS_PEERS
        .iter()
        .find(|(n, _)| *n == peer)
        .map_or(peer, |(_, l)| l)
}

/// The offline figure, from `sluice-bench cps-offline` run under the lock.
pub fn offline(exe: &Path, connections: u32, loops: u64) -> Result<Offline> {
    let mut c = locked(exe);
    c.args([
        "cps-offline",
        "--connections",
        &connections.to_string(),
        "--loops",
        &loops.to_string(),
    ]);
    let text = output(c, "sluice-bench cps-offline")?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("sluice-bench cps-offline printed no figures:\n{text}"))?;
    let v: serde_json::Value = serde_json::from_str(line).context("cps-offline's JSON")?;
    let num = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    let o = Offline {
        connections: num("connections") as u64,
        loops: num("loops") as u64,
        frames_per_connection: num("frames_per_connection") as u64,
        pipeline_cps: num("pipeline_cps"),
        wall_cps: num("wall_cps"),
        pipeline_ns_per_connection: num("pipeline_ns_per_connection"),
        pipeline_ns_per_packet: num("pipeline_ns_per_packet"),
    };
    if o.pipeline_cps.is_nan() || o.pipeline_cps <= 0.0 {
        bail!("sluice offline replay: no connections per second in {line}");
    }
    Ok(o)
}

/// Which core bounded a peer's rate: `DUT` when the DUT's core was
/// (nearly) full, `generator` when only the generator's was, else `-`
/// (latency: more connections in flight would go faster).
pub fn bound(f: &CpsFigures) -> &'static str {
    if f.dut_busy >= 0.9 {
        "DUT"
    } else if f.gen_busy >= 0.95 {
        "generator"
    } else {
        "-"
    }
}

/// The table for a person.
pub fn table(live: &[CpsFigures], offline: Option<&Offline>, o: &LiveOptions) -> String {
    let mut s = String::new();
    if !live.is_empty() {
        s += &format!(
            "connection setup rate (TCP: connect, 32-byte request, 64-byte reply, server closes; {} in flight, {} s after {} s warmup, generator and server on one core, the DUT on the other):\n",
            o.concurrency, o.seconds, o.warmup
        );
        s += &format!(
            "  {:<48} {:>9} {:>7} {:>15} {:>15} {:>9} {:>11}  bound\n",
            "peer", "conn/s", "failed", "setup p50/p99", "exch. p50/p99", "busy g/d", "DUT us/conn"
        );
        for f in live {
            s += &format!(
                "  {:<48} {:>9.0} {:>7} {:>15} {:>15} {:>9} {:>11}  {}\n",
                label(&f.peer),
                f.cps,
                f.failed,
                format!("{}/{} us", f.setup_p50_us, f.setup_p99_us),
                format!("{}/{} us", f.exchange_p50_us, f.exchange_p99_us),
                format!("{:.2}/{:.2}", f.gen_busy, f.dut_busy),
                f.dut_us_per_conn
                    .map_or("-".to_string(), |v| format!("{v:.1}")),
                bound(f)
            );
        }
        for (a, b) in [("sluice", "kernel"), ("sluice-plain", "kernel-plain")] {
            let (Some(x), Some(y)) = (
                live.iter().find(|f| f.peer == a),
                live.iter().find(|f| f.peer == b),
            ) else {
                continue;
            };
            s += &format!("  {a} / {b}: {:.2}x connections/s", x.cps / y.cps);
            if let (Some(p), Some(q)) = (x.dut_us_per_conn, y.dut_us_per_conn) {
                s += &format!(", {:.2}x the DUT core's time per connection", p / q);
            }
            if bound(y) == "generator" {
                s += &format!(" ({b}'s conn/s is a lower bound: its generator core was the bound)");
            }
            s += "\n";
        }
    }
    if let Some(x) = offline {
        s += &format!(
            "  sluice offline (replay of whole connections, {} frames each, VIP + masquerade + policy, one core): {:.0} conn/s in the pipeline ({:.0} ns per connection, {:.0} ns per packet), {:.0} conn/s with the replay loop\n",
            x.frames_per_connection, x.pipeline_cps, x.pipeline_ns_per_connection, x.pipeline_ns_per_packet, x.wall_cps
        );
    }
    s
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn result_lines() {
        let text = "==> kernel\n\
            result kernel cps 30537.0 completed 91612 failed 2 setup_p50_us 3713 setup_p99_us 5971 exchange_p50_us 8375 exchange_p99_us 12271 gen_busy 0.99 dut_busy 0.58 dut_us_per_conn 19.0\n\
            result sluice cps 0 completed 0 failed 5 setup_p50_us 0 setup_p99_us 0 exchange_p50_us 0 exchange_p99_us 0 gen_busy 0.1 dut_busy 0.1 dut_us_per_conn -\n";
        let k = parse_result(text, "kernel").unwrap();
        assert_eq!((k.cps, k.completed, k.failed), (30537.0, 91612, 2));
        assert_eq!((k.setup_p99_us, k.dut_us_per_conn), (5971, Some(19.0)));
        let s = parse_result(text, "sluice").unwrap();
        assert_eq!((s.completed, s.dut_us_per_conn), (0, None));
        assert!(parse_result(text, "sluice-plain").is_none());
    }
}
