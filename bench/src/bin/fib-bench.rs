//! FIB lookups: sluice's DIR-24-8 / multibit trie against `dpdk-test-fib`
//! (rte_fib DIR24_8 / TRIE, the DPDK peer) on the same routes and the same
//! addresses, in the same run. dpdk-test-fib generates both (its `-w`/`-u`
//! dry run), then measures itself; sluice loads the dumped files, checks a
//! sample of its answers against a brute-force longest-prefix match, and
//! measures the same lookups. DPDK prints TSC cycles per lookup; sluice's
//! time is converted with the TSC frequency from /proc/cpuinfo.
//!
//! `cargo run --release -p bench --bin fib-bench [-- --routes 10000 --lookups 1000000 [--v6]]`

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use engine::tables::fib::{Fib, NextHop, Route, RouteKind};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    #[arg(long, default_value_t = 1_000_000)]
    lookups: usize,
    /// IPv6 (rte_fib6 TRIE) instead of IPv4 (DIR24_8).
    #[arg(long)]
    v6: bool,
    /// Seconds of timed lookups for sluice.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

fn dpdk(args: &[&str]) -> Result<String> {
    let out = Command::new("dpdk-test-fib")
        .args(["--no-huge", "-m", "2048", "--log-level=lib.eal:error", "--"])
        .args(args)
        .output()
        .context("running dpdk-test-fib (package dpdk)")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("dpdk-test-fib {args:?} failed: {text}");
    }
    Ok(text)
}

fn tsc_mhz() -> f64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(2000.0)
}

fn parse_routes(path: &Path, v6: bool) -> Result<Vec<Route>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(pfx), Some(nh)) = (it.next(), it.next()) else {
            continue;
        };
        let (a, l) = pfx.split_once('/').context("route without /")?;
        let len: u8 = l.parse()?;
        let ip: std::net::IpAddr = a.parse()?;
        let prefix = match ip {
            std::net::IpAddr::V4(x) if !v6 => u128::from(u32::from(x)),
            std::net::IpAddr::V6(x) if v6 => u128::from(x),
            _ => bail!("unexpected family in {line}"),
        };
        let nh: u64 = nh.parse()?;
        if !seen.insert((prefix, len)) {
            continue;
        }
        // Next hops interned by (port, gateway): keep them below 32767.
        out.push(Route {
            prefix,
            len,
            next_hop: NextHop {
                port: (nh % 200) as u16,
                via: Some(u128::from(nh % 30_000)),
                kind: RouteKind::Forward,
            },
        });
    }
    Ok(out)
}

fn parse_ips(path: &Path) -> Result<Vec<u128>> {
    std::fs::read_to_string(path)?
        .lines()
        .map(|l| {
            let ip: std::net::IpAddr = l.trim().parse()?;
            Ok(match ip {
                std::net::IpAddr::V4(x) => u128::from(u32::from(x)),
                std::net::IpAddr::V6(x) => u128::from(x),
            })
        })
        .collect()
}

fn main() -> Result<()> {
    let a = Args::parse();
    let dir = std::env::temp_dir().join(format!("sluice-fib-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (rf, lf) = (dir.join("routes.txt"), dir.join("ips.txt"));
    let (rs, ls) = (rf.display().to_string(), lf.display().to_string());
    let (n, l) = (a.routes.to_string(), a.lookups.to_string());
    let mut gen = vec!["-n", &n, "-l", &l, "-w", &rs, "-u", &ls];
    if a.v6 {
        gen.push("-6");
    }
    dpdk(&gen)?;
    let routes = parse_routes(&rf, a.v6)?;
    let ips = parse_ips(&lf)?;
    let fib = if a.v6 {
        Fib::build(&[], &routes)?
    } else {
        Fib::build(&routes, &[])?
    };
    let bits = if a.v6 { 128 } else { 32 };

    // Correctness on a sample: brute-force longest-prefix match.
    for &ip in ips.iter().step_by((ips.len() / 2000).max(1)) {
        let want = routes
            .iter()
            .filter(|r| r.len == 0 || (ip ^ r.prefix) >> (bits - u32::from(r.len)) == 0)
            .max_by_key(|r| r.len)
            .map(|r| r.next_hop);
        let got = if a.v6 {
            fib.lookup_v6(ip).copied()
        } else {
            fib.lookup_v4(ip as u32).copied()
        };
        if got != want {
            bail!("lookup of {ip:#x}: sluice {got:?}, longest prefix {want:?}");
        }
    }

    // DPDK measures itself on the same files.
    let mut run = vec!["-f", &rs, "-t", &ls];
    if a.v6 {
        run.push("-6");
    }
    let text = dpdk(&run)?;
    let dpdk_cycles: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("AVG FIB lookup "))
        .and_then(|v| v.trim().parse().ok())
        .context("no 'AVG FIB lookup' in dpdk-test-fib output")?;

    // sluice: the same addresses, bursts of 64 like DPDK's (IPv6: its bulk
    // lookup, as DPDK's; IPv4: one lookup after another, the pipeline's
    // way, already ahead).
    let mut acc = 0u64;
    let mut done = 0usize;
    let mut ids = [0u16; 64];
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < a.seconds {
        for chunk in ips.chunks(64) {
            if a.v6 {
                fib.lookup_v6_bulk(chunk, &mut ids);
                for &id in ids.iter().take(chunk.len()) {
                    acc = acc.wrapping_add(u64::from(id));
                }
            } else {
                for &ip in chunk {
                    acc = acc.wrapping_add(u64::from(fib.lookup_v4_id(ip as u32)));
                }
            }
        }
        done += ips.len();
    }
    let ns = t0.elapsed().as_secs_f64() * 1e9 / done as f64;
    let mhz = tsc_mhz();
    let cycles = ns * mhz / 1e3;
    println!(
        "fib-bench {}: {} routes ({} distinct), {} lookups, FIB memory {:.1} MB",
        if a.v6 {
            "IPv6 (rte_fib6 TRIE vs sluice trie)"
        } else {
            "IPv4 (rte_fib DIR24_8 vs sluice DIR-24-8)"
        },
        a.routes,
        routes.len(),
        ips.len(),
        fib.memory() as f64 / 1e6
    );
    println!(
        "  dpdk-test-fib: {dpdk_cycles:.1} cycles/lookup ({:.2} ns at {mhz:.0} MHz TSC)",
        dpdk_cycles * 1e3 / mhz
    );
    println!("  sluice:        {cycles:.1} cycles/lookup ({ns:.2} ns; {:.1} M lookups/s) [checksum {acc:x}]", 1e3 / ns);
    println!("  ratio sluice/dpdk speed: {:.2}x", dpdk_cycles / cycles);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
