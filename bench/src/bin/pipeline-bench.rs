//! Single-worker ns/packet of the whole pipeline over `imix.pcap` with the
//! allow-all policy and a FIB of the bundled routes plus N extra /24 routes
//! (default 1,000), through the real replay path.
//!
//! `cargo run --release -p bench --bin pipeline-bench [-- --routes N --loops K --workers W]`

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use engine::sources::config::Config;
use engine::worker::replay::{self, Input, ReplayOptions};

#[derive(Parser)]
struct Args {
    /// Extra /24 routes in the FIB.
    #[arg(long, default_value_t = 1000)]
    routes: usize,
    /// Passes over the capture.
    #[arg(long, default_value_t = 3000)]
    loops: u64,
    #[arg(long, default_value_t = 1)]
    workers: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Capture to replay (default: pcap-fixtures/imix.pcap).
    #[arg(long)]
    pcap: Option<std::path::PathBuf>,
    /// Repetitions; the best is reported along with all.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let text = bench::fixtures::config_yaml(a.routes, None);
    let cfg = Config::from_yaml(&text, "generated.yaml", std::path::Path::new("."))?;
    let state = cfg.state();
    let tables = Arc::new(engine::state::build::replay_tables(&state)?);
    let pcap = a.pcap.unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../pcap-fixtures/imix.pcap").into()
    });
    let opts = ReplayOptions {
        inputs: vec![Input {
            port: None,
            path: pcap.clone(),
        }],
        workers: a.workers,
        loops: a.loops,
        batch: Some(a.batch),
        ..ReplayOptions::default()
    };
    println!(
        "pipeline-bench: {} , {} routes in config ({} in FIB), batch {}, {} worker(s), {} loops",
        pcap.display(),
        cfg.routes.len(),
        tables.fib.len(),
        a.batch,
        a.workers,
        a.loops
    );
    let mut best = f64::MAX;
    for run in 0..a.runs {
        let s = replay::run(&state, tables.clone(), &opts).context("replay")?;
        let p = s.pipeline_ns_per_packet();
        best = best.min(p);
        println!(
            "run {run}: {} packets, pipeline {:.1} ns/packet ({:.1} Mpps per worker), wall {:.1} ns/packet ({:.2} Mpps), p50 {} p99 {} ns",
            s.packets,
            p,
            1e3 / p,
            s.ns_per_packet(),
            s.mpps(),
            s.latency.p50,
            s.latency.p99
        );
    }
    println!(
        "best: {best:.1} ns/packet inside the pipeline ({:.1} Mpps on one core)",
        1e3 / best
    );
    Ok(())
}
