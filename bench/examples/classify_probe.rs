//! Lookups of one ClassBench rule file and trace through the compiled
//! classifier's `classify_batch`, for instruction and cache-miss counts per
//! lookup under callgrind (`classbench` times the same lookups, but its
//! compile, checks and dpdk-test-acl runs would be counted too):
//!
//! ```text
//! valgrind --tool=callgrind --cache-sim=yes --D1=49152,12,64 --LL=2097152,16,64 \
//!     --toggle-collect='classify_probe::lookups' \
//!     target/release/examples/classify_probe RULES TRACE --keys 200000
//! ```
//! Counts cover two passes over `--keys` keys (the second warm) unless
//! `--time`, which prints the engine's shape and the best of seven timed
//! passes instead. The 100k sets come from `classbench --gen100k ... --out-dir`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use bench::classbench as cb;
use clap::Parser;
use policy_compiler::compile::{Builder, Config};
use policy_compiler::{Classifier, FlowKey, Scratch, Verdict, L4};

#[derive(Parser, Debug)]
struct Args {
    /// ClassBench rule file.
    rules: PathBuf,
    /// ClassBench trace (headers).
    trace: PathBuf,
    /// Keys taken from the start of the trace.
    #[arg(long, default_value_t = 200_000)]
    keys: usize,
    /// `Config::partitions`.
    #[arg(long)]
    partitions: Option<u8>,
    /// `Config::dfa_leaf`.
    #[arg(long)]
    dfa_leaf: Option<usize>,
    /// `Config::dfa_budget`, in words.
    #[arg(long)]
    dfa_budget: Option<usize>,
    /// Print the engine's shape and time the lookups.
    #[arg(long)]
    time: bool,
}

/// The counted work: every key through `classify_batch`, 64 at a time.
#[inline(never)]
fn lookups(c: &Classifier, ks: &[FlowKey], out: &mut [Verdict], s: &mut Scratch) {
    for (k, o) in ks.chunks(64).zip(out.chunks_mut(64)) {
        c.classify_batch(k, o, s);
    }
}

fn main() -> Result<()> {
    let a = Args::parse();
    let fs = cb::read_filters(&a.rules)?;
    let hs = cb::read_trace(&a.trace)?;
    let ks: Vec<FlowKey> = hs
        .iter()
        .take(a.keys)
        .map(|h| {
            let l4 = L4::Ports {
                sport: h.sport,
                dport: h.dport,
            };
            FlowKey::v4(h.src, h.dst, h.proto, l4)
        })
        .collect();
    let mut cfg = Config::default();
    cfg.partitions = a.partitions.unwrap_or(cfg.partitions);
    cfg.dfa_leaf = a.dfa_leaf.unwrap_or(cfg.dfa_leaf);
    cfg.dfa_budget = a.dfa_budget.unwrap_or(cfg.dfa_budget);
    let t = Instant::now();
    let c = Builder::with_config(cfg).compile_ir(&cb::filters_to_ir(&fs));
    let compile = t.elapsed();
    let mut s = c.new_scratch();
    let mut out = vec![Verdict::default(); ks.len()];
    lookups(&c, &ks, &mut out, &mut s);
    if a.time {
        print!("{}{}", c.debug_engine_stats(), c.debug_walks(&ks));
        let mut best = 0f64;
        for _ in 0..7 {
            let t = Instant::now();
            lookups(&c, &ks, &mut out, &mut s);
            best = best.max(ks.len() as f64 / t.elapsed().as_secs_f64());
        }
        println!(
            "compile {:.0} ms, memory {:.2} MB, {:.2} Mpps",
            compile.as_secs_f64() * 1e3,
            c.memory() as f64 / 1e6,
            best / 1e6
        );
    } else {
        lookups(&c, &ks, &mut out, &mut s);
    }
    let allowed = out.iter().filter(|v| v.allow).count();
    println!("{} keys, {allowed} allowed", ks.len());
    std::io::Write::flush(&mut std::io::stdout()).context("stdout")?;
    Ok(())
}
