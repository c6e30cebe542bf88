//! Single-worker ns/packet with state: (a) 1k flows and (b) 1M flows, each
//! with a 1k-rule policy, NAT on 20% of flows and 10k routes (issue 4's
//! targets: ≤ 60 ns and ≤ 150 ns per packet). Writes the generated workload
//! to a temporary directory and replays it three times through the real
//! replay path (the first pass creates the connections).
//!
//! `cargo run --release -p bench --bin stateful-bench [-- --flows 1000,1000000]`

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use engine::sources::config::Config;
use engine::worker::replay::{self, Input, ReplayOptions};

#[derive(Parser)]
struct Args {
    /// Flow counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1000usize, 1_000_000])]
    flows: Vec<usize>,
    /// Extra routes.
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    /// Packets per flow count (at least the flow count).
    #[arg(long, default_value_t = 2_000_000)]
    packets: usize,
    #[arg(long, default_value_t = 3)]
    loops: u64,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Write the workloads under DIR (`DIR/<flows>/`) and keep them; with
    /// `--generate-only`, do not run them.
    #[arg(long)]
    keep: Option<std::path::PathBuf>,
    #[arg(long)]
    generate_only: bool,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    for &flows in &a.flows {
        let dir = match &a.keep {
            Some(k) => k.join(flows.to_string()),
            None => std::env::temp_dir().join(format!("sluice-stateful-{flows}")),
        };
        let w = bench::stateful::Stateful {
            flows,
            packets: a.packets.max(flows * 2),
            routes: a.routes,
            seed: 7,
        };
        bench::stateful::write(&w, &dir).context("writing workload")?;
        if a.generate_only {
            println!("{flows} flows: written to {}", dir.display());
            continue;
        }
        let cfg = Config::load(&dir.join("sluice.yaml"))?;
        let t0 = std::time::Instant::now();
        let state = cfg.state();
        let tables = Arc::new(engine::state::build::replay_tables(&state)?);
        let build = t0.elapsed();
        let opts = ReplayOptions {
            inputs: vec![Input {
                port: None,
                path: dir.join("stateful.pcap"),
            }],
            loops: a.loops,
            batch: Some(a.batch),
            ..ReplayOptions::default()
        };
        let s = replay::run(&state, tables.clone(), &opts)?;
        let c = &s.counters;
        println!(
            "{flows} flows, {} packets x {} loops, {} routes, policy {} rules ({} endpoints), tables built in {:.0} ms",
            s.frames_read,
            a.loops,
            tables.fib.len(),
            tables.policy.stats().rules,
            tables.policy.num_endpoints(),
            build.as_secs_f64() * 1e3
        );
        println!(
            "  pipeline {:.1} ns/packet ({:.2} Mpps; first loop {:.1}, later loops {:.1}), wall {:.1} ns/packet; p50 {} p99 {} ns; forward {} drop {} (policy {}, invalid {}) kernel {}",
            s.pipeline_ns_per_packet(),
            1e3 / s.pipeline_ns_per_packet(),
            s.pipeline_ns_per_packet_of(0, 1),
            s.pipeline_ns_per_packet_of(1, s.busy_seconds_by_loop.len()),
            s.ns_per_packet(),
            s.latency.p50,
            s.latency.p99,
            c.actions[0],
            c.actions[1],
            c.drop_count(engine::pipeline::DropReason::Policy),
            c.drop_count(engine::pipeline::DropReason::ConntrackInvalid),
            c.actions[2]
        );
        if a.keep.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(())
}
