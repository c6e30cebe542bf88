//! What a tap costs per packet: `Pipeline::process` alone, and with a
//! trace or a capture taking every frame (the worker's own tap code:
//! `worker::tap::{before, after}`; the records go to a thread that drains
//! them, as the control side does), over the fixture captures in
//! 64-frame batches, rounds interleaved in one run.
//!
//! `cargo run --release -p bench --bin tap-bench [-- --seconds 2]`

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use engine::pipeline::{Batch, Pipeline};
use engine::tables::conntrack::Conntrack;
use engine::worker::tap::{self, Tap, TapFilter};

#[derive(Parser)]
struct Args {
    /// Seconds per mode.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pcap-fixtures");
    let cfg = engine::sources::config::Config::load(&root.join("sluice.yaml"))?;
    let tables = Arc::new(engine::state::build::replay_tables(&cfg.state())?);
    let mut frames = Vec::new();
    for f in ["tcp4-session", "tcp6-session", "udp", "imix", "icmp"] {
        let cap = engine::io::pcap::read_file(&root.join(format!("{f}.pcap")), &[0; 6])?;
        frames.extend((0..cap.frames.len()).map(|i| cap.frame(i).to_vec()));
    }
    let (tx, rx) = crossbeam::channel::bounded(1 << 16);
    std::thread::spawn(move || for _ in rx {});
    let tap = |trace: bool| {
        Arc::new(Tap {
            id: 1,
            filter: TapFilter::default(),
            trace,
            capture: !trace,
            remaining: AtomicI64::new(i64::MAX),
            records: tx.clone(),
            dropped: AtomicU64::new(0),
        })
    };
    let modes: [(&str, Option<Arc<Tap>>); 3] = [
        ("off", None),
        ("trace", Some(tap(true))),
        ("capture", Some(tap(false))),
    ];
    let mut results = vec![(0u64, 0f64); modes.len()];
    let rounds = 10;
    for _ in 0..rounds {
        for (m, (_, t)) in modes.iter().enumerate() {
            let ct = Arc::new(Conntrack::new(1 << 16, 3));
            let mut p = Pipeline::new(tables.clone(), ct);
            let until =
                Instant::now() + std::time::Duration::from_secs_f64(a.seconds / rounds as f64);
            let t0 = Instant::now();
            let mut n = 0u64;
            let mut now = 1u64;
            while Instant::now() < until {
                for chunk in frames.chunks(64) {
                    let mut copies: Vec<Vec<u8>> = chunk.to_vec();
                    let mut b = Batch::new();
                    for f in copies.iter_mut() {
                        let _ = b.push(f, 0);
                    }
                    now += 1000;
                    let marks = t.as_ref().map(|t| tap::before(t, &b));
                    p.process(now, &mut b);
                    if let (Some(t), Some(m)) = (t, marks) {
                        tap::after(t, &p, &b, m, 0, now);
                    }
                    n += chunk.len() as u64;
                }
            }
            results[m].0 += n;
            results[m].1 += t0.elapsed().as_secs_f64();
        }
    }
    let ns = |m: usize| results[m].1 * 1e9 / results[m].0 as f64;
    println!(
        "{} fixture frames, 64-frame batches, {} s per mode (frame copies included in every mode):",
        frames.len(),
        a.seconds
    );
    for (m, (name, _)) in modes.iter().enumerate() {
        println!(
            "  tap {name:<8} {:8.1} ns/packet  ({:.2}x off)",
            ns(m),
            ns(m) / ns(0)
        );
    }
    Ok(())
}
