//! `sluice-bench`: the benchmark and regression suite (issue 6).
//!
//! ```text
//! flock /tmp/sluice-cpu.lock target/release/sluice-bench run --suite quick --out bench/results/quick/results.json
//! target/release/sluice-bench compare bench/baselines/quick.json bench/results/quick/results.json
//! # a deliberately slower build, for the gate's own check:
//! cargo build --release -p bench --bin sluice-bench --features gate-selftest
//! sudo target/release/sluice-bench peers          # takes the CPU lock per step itself
//! sudo target/release/sluice-bench cps            # connection setup rate vs the kernel
//! ```
//! See `bench/src/suite/` for what each step measures and `tuning.md` for
//! what the numbers say.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bench::suite::measure::{self, ChildCmd, Loaded};
use bench::suite::results::{Host, Results, Run, WorkloadResult, SCHEMA};
use bench::suite::workload::Prepared;
use bench::suite::{compare, cps, peers, plot};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "sluice's benchmark and regression suite")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a suite: Mpps, ns/packet, latency percentiles on 1..N workers,
    /// instructions per packet and per stage under callgrind; writes the
    /// results JSON and plots next to it.
    Run(RunArgs),
    /// Compare two results files; exits 1 on a regression past the thresholds.
    Compare(CompareArgs),
    /// Peer ratios in one run: classifier vs dpdk-test-acl, FIB vs
    /// dpdk-test-fib, live veth forwarding vs the xdp-redirect ceiling,
    /// testpmd and kernel+nftables (saturation, NDR and PDR). Exits 1
    /// naming every peer that failed or produced no figures.
    Peers(PeersArgs),
    /// Connection setup rate: new TCP connections per second through a
    /// service VIP with masquerade and policy, sluice vs the kernel's
    /// conntrack + nftables in one run of bench/peers/cps.sh (root), the
    /// no-NAT rows, and sluice's offline replay of whole connections.
    /// Exits 1 naming every peer that failed or completed nothing.
    Cps(CpsArgs),
    /// The offline connection replay under the CPU lock (internal).
    #[command(hide = true)]
    CpsOffline(CpsOfflineArgs),
    /// The measured child of the callgrind runs (internal).
    #[command(hide = true)]
    Child(ChildArgs),
}

#[derive(Parser)]
struct RunArgs {
    /// quick (< 5 min here), full, or ci (the gate's small workload).
    #[arg(long, default_value = "quick")]
    suite: String,
    /// Workers: each workload runs on 1..=N (default: the CPU count).
    #[arg(long)]
    workers: Option<usize>,
    /// Only these workloads (names; default: all of the suite).
    #[arg(long, value_delimiter = ',')]
    workload: Vec<String>,
    /// Only instruction counts (the CI gate): no wall-clock runs, no plots.
    #[arg(long)]
    instr_only: bool,
    /// No callgrind runs.
    #[arg(long, conflicts_with = "instr_only")]
    no_callgrind: bool,
    /// Timed runs per workload and worker count (default: the suite's);
    /// the median counts and the spread is recorded.
    #[arg(long)]
    repeat: Option<usize>,
    /// Batch size (workers.batch).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Packets per wall-clock run (default: the suite's).
    #[arg(long)]
    packets: Option<u64>,
    /// Packets between the two callgrind runs (default: the suite's).
    #[arg(long)]
    callgrind_packets: Option<u64>,
    /// Results file; plots go next to it.
    #[arg(long)]
    out: PathBuf,
    /// Keep the generated workloads and callgrind profiles (in OUT's
    /// directory, `work/`).
    #[arg(long)]
    keep: bool,
    /// Burn this many extra loop iterations per packet in the measured
    /// child (a deliberate slowdown, to test the gate). Also
    /// `$SLUICE_BENCH_INJECT_BURN`.
    #[arg(long, hide = true, default_value_t = 0)]
    inject_burn: u64,
}

#[derive(Parser)]
struct CompareArgs {
    /// The baseline results file (e.g. bench/baselines/quick.json).
    base: PathBuf,
    /// The results to judge against it.
    new: PathBuf,
    /// Largest tolerated growth of instructions per packet, percent.
    #[arg(long, default_value_t = 3.0)]
    max_instr_regress: f64,
    /// Largest tolerated growth of the whole replay loop's instructions per
    /// packet, percent (it carries a few percent of jitter).
    #[arg(long, default_value_t = 10.0)]
    max_loop_regress: f64,
    /// Smallest tolerated fall of the median Mpps, percent: the band is
    /// the larger of this and --noise-k standard deviations of the repeats
    /// (see `compare`).
    #[arg(long, default_value_t = 5.0)]
    max_mpps_regress: f64,
    /// Width of the throughput band in standard deviations of the repeats.
    #[arg(long, default_value_t = 3.0)]
    noise_k: f64,
}

#[derive(Parser)]
struct PeersArgs {
    /// ClassBench folder.
    #[arg(long)]
    classbench: Option<PathBuf>,
    /// ClassBench sets (default: every set with a trace).
    #[arg(long, value_delimiter = ',')]
    sets: Vec<String>,
    /// 100k-rule sets generated (seed 1) from these families' 10k templates.
    #[arg(long, value_delimiter = ',', default_values_t = ["acl1".to_string(), "fw1".to_string(), "ipc1".to_string()])]
    gen100k: Vec<String>,
    #[arg(long, default_value_t = 10_000)]
    fib_routes: usize,
    /// Rule counts of the live veth runs (needs root).
    #[arg(long, value_delimiter = ',', default_values_t = [0usize, 1000, 10_000])]
    rules: Vec<usize>,
    /// Saturation seconds per live peer.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Trials of the loss-free search (NDR and PDR) per live peer (0:
    /// saturation only).
    #[arg(long, default_value_t = 30)]
    search_steps: u32,
    /// 2 MiB hugepages the DPDK peers need: reserved (and a hugetlbfs
    /// mounted) if missing, put back as they were at the end. 0: leave the
    /// host alone.
    #[arg(long, default_value_t = 1024)]
    hugepages: u64,
    /// nftables verdict caching for the kernel peer: per-connection or per-packet.
    #[arg(long, default_value = "per-connection")]
    nft_ct: String,
    #[arg(long)]
    skip_acl: bool,
    #[arg(long)]
    skip_fib: bool,
    #[arg(long)]
    skip_live: bool,
    /// Also write the ratios and the live figures as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Directory for the plot of the live loss-free rate against the rule
    /// count (live-ndr-vs-rules.svg/.png; needs two rule counts or more).
    #[arg(long)]
    plot_dir: Option<PathBuf>,
}

#[derive(Parser)]
struct CpsArgs {
    /// Peers of bench/peers/cps.sh, in order.
    #[arg(long, value_delimiter = ',', default_values_t = cps::CPS_PEERS.map(|(p, _)| p.to_string()))]
    peers: Vec<String>,
    /// Measured seconds per peer, after --warmup.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Connections in flight from the generator.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Connections per loop of the offline replay (one source port each).
    #[arg(long, default_value_t = 60_000)]
    offline_connections: u32,
    #[arg(long, default_value_t = 5)]
    offline_loops: u64,
    #[arg(long)]
    skip_live: bool,
    #[arg(long)]
    skip_offline: bool,
    /// Also write the figures as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Parser)]
struct CpsOfflineArgs {
    #[arg(long, default_value_t = 60_000)]
    connections: u32,
    #[arg(long, default_value_t = 5)]
    loops: u64,
    #[arg(long, default_value_t = 64)]
    batch: usize,
}

#[derive(Parser)]
struct ChildArgs {
    /// A materialised workload directory (with prepared.json).
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    loops: u64,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 0)]
    burn: u64,
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run(a) => run(a).map(|()| 0),
        Cmd::Compare(a) => compare_cmd(a),
        Cmd::Peers(a) => peers_cmd(a),
        Cmd::Cps(a) => cps_cmd(a),
        Cmd::CpsOffline(a) => cps_offline(a).map(|()| 0),
        Cmd::Child(a) => child(a).map(|()| 0),
    };
    match r {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("sluice-bench: {e:#}");
            std::process::exit(2);
        }
    }
}

fn child(a: ChildArgs) -> Result<()> {
    let p: Prepared = serde_json::from_str(
        &std::fs::read_to_string(a.dir.join("prepared.json")).context("reading prepared.json")?,
    )?;
    let packets = measure::child(&p, a.loops, a.batch, a.burn)?;
    println!("packets {packets}");
    Ok(())
}

fn run(a: RunArgs) -> Result<()> {
    let started = Instant::now();
    let Some(mut suite) = bench::suite::suite(&a.suite) else {
        bail!("unknown suite {:?} (quick, full, ci)", a.suite);
    };
    if !a.workload.is_empty() {
        for w in &a.workload {
            if !suite.workloads.iter().any(|x| &x.name == w) {
                bail!("suite {} has no workload {w:?}", suite.name);
            }
        }
        suite.workloads.retain(|w| a.workload.contains(&w.name));
    }
    let nw = a
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let out_dir = a
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    std::fs::create_dir_all(&out_dir)?;
    let work = if a.keep {
        out_dir.join("work")
    } else {
        std::env::temp_dir().join(format!("sluice-bench-{}", std::process::id()))
    };
    let exe = std::env::current_exe().context("finding sluice-bench")?;
    let cmd = ChildCmd {
        exe,
        batch: a.batch,
        burn: match std::env::var("SLUICE_BENCH_INJECT_BURN") {
            Ok(v) => v.parse().context("SLUICE_BENCH_INJECT_BURN")?,
            Err(_) => a.inject_burn,
        },
        out_dir: work.join("callgrind"),
    };
    let target = a.packets.unwrap_or(suite.target_packets);
    if let Some(p) = a.callgrind_packets {
        suite.callgrind_packets = p;
    }
    eprintln!(
        "sluice-bench: suite {} ({} workloads), 1..={nw} workers, batch {}, {} packets per run{}",
        suite.name,
        suite.workloads.len(),
        a.batch,
        target,
        if a.instr_only {
            ", instructions only"
        } else {
            ""
        }
    );
    let mut results = Results {
        schema: SCHEMA,
        suite: suite.name.clone(),
        host: Host::detect(),
        ..Results::default()
    };
    // Each workload is prepared, probed and counted under callgrind first;
    // then the timed runs go round the workloads `repeat` times, so each
    // workload's repeats are spread over the whole suite and their spread
    // includes the machine's drift over minutes, not only the jitter of
    // back-to-back runs (two runs of one build moved medians by up to 12%
    // while back-to-back repeats agreed within 2%).
    let repeat = a.repeat.unwrap_or(suite.repeat).max(1);
    let mut prepared_all = Vec::with_capacity(suite.workloads.len());
    for w in &suite.workloads {
        let t0 = Instant::now();
        let dir = work.join(&w.name);
        let prepared = w.materialise(&dir)?;
        std::fs::write(
            dir.join("prepared.json"),
            serde_json::to_string_pretty(&prepared)?,
        )?;
        let loaded = Loaded::new(&prepared).with_context(|| w.name.clone())?;
        let probe = loaded.replay(1, 1, a.batch)?;
        let frames = probe.frames_read;
        let c = &probe.counters;
        let mut r = WorkloadResult {
            name: w.name.clone(),
            workload: w.clone(),
            frames,
            rules: w.rules(),
            flows: w.flows(),
            actions: [c.actions[0], c.actions[1], c.actions[2]],
            drops: engine::pipeline::DropReason::ALL
                .iter()
                .filter(|r| c.drop_count(**r) > 0)
                .map(|r| (r.name().to_string(), c.drop_count(*r)))
                .collect(),
            runs: Vec::new(),
            instr: None,
        };
        if !a.no_callgrind && suite.callgrind.contains(&w.name) {
            r.instr = Some(
                measure::instructions(
                    &cmd,
                    &dir,
                    bench::suite::callgrind_loops(frames, suite.callgrind_packets),
                    &w.name,
                )
                .with_context(|| format!("{}: callgrind", w.name))?,
            );
        }
        let loops = (target / frames.max(1)).max(3);
        prepared_all.push((r, loaded, loops, t0.elapsed().as_secs_f64()));
    }
    // runs[workload][workers - 1]: the repeats.
    let mut runs: Vec<Vec<Vec<Run>>> = prepared_all
        .iter()
        .map(|_| (0..nw).map(|_| Vec::with_capacity(repeat)).collect())
        .collect();
    if !a.instr_only {
        for _ in 0..repeat {
            for (i, (_, loaded, loops, secs)) in prepared_all.iter_mut().enumerate() {
                let t0 = Instant::now();
                for n in 1..=nw {
                    let s = loaded.replay(n, *loops, a.batch)?;
                    runs[i][n - 1].push(measure::run_of(&s, *loops));
                }
                *secs += t0.elapsed().as_secs_f64();
            }
        }
    }
    for ((mut r, _, _, secs), per_n) in prepared_all.into_iter().zip(runs) {
        for rs in per_n {
            r.runs.extend(Run::of_repeats(rs));
        }
        eprintln!("{}", summary(&r, secs));
        results.workloads.push(r);
    }
    results.seconds = started.elapsed().as_secs_f64();
    std::fs::write(&a.out, serde_json::to_string_pretty(&results)? + "\n")
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!("wrote {}", a.out.display());
    if !a.instr_only {
        match plot::plot_all(&results, &out_dir) {
            Ok(files) => {
                for f in files {
                    eprintln!("wrote {}", f.display());
                }
            }
            Err(e) => eprintln!("plots skipped: {e:#}"),
        }
    }
    if !a.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    eprintln!(
        "suite {} done in {:.1} s",
        suite.name,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn summary(r: &WorkloadResult, secs: f64) -> String {
    let mut s = format!(
        "{:<18} {:>7} frames, fwd/drop/kernel {}/{}/{} {:?}",
        r.name, r.frames, r.actions[0], r.actions[1], r.actions[2], r.drops
    );
    for run in &r.runs {
        s += &format!(
            " | {}w {:.2} Mpps ({:.2}-{:.2}, MAD {:.2}, {} runs) {:.0} ns/pkt (pipeline {:.0}) p50/p99/p999 {}/{}/{}",
            run.workers,
            run.mpps,
            run.mpps_min,
            run.mpps_max,
            run.mpps_mad,
            run.mpps_runs.len(),
            run.ns_per_packet,
            run.pipeline_ns_per_packet,
            run.p50_ns,
            run.p99_ns,
            run.p999_ns
        );
    }
    if let Some(i) = &r.instr {
        s += &format!(
            " | {:.0} instr/pkt (loop {:.0}):",
            i.pipeline_per_packet, i.loop_per_packet
        );
        for (k, v) in &i.stages {
            s += &format!(" {k} {v:.0}");
        }
    }
    s + &format!(" [{secs:.1} s]")
}

fn compare_cmd(a: CompareArgs) -> Result<i32> {
    let base = Results::load(&a.base)?;
    let new = Results::load(&a.new)?;
    let rep = compare::compare(
        &base,
        &new,
        compare::Thresholds {
            max_instr_regress: a.max_instr_regress,
            max_loop_regress: a.max_loop_regress,
            max_mpps_regress: a.max_mpps_regress,
            noise_k: a.noise_k,
        },
    );
    print!("{}", rep.to_text());
    if rep.regressed() {
        println!(
            "REGRESSION: past the thresholds (instructions +{}%, loop +{}%, median Mpps below the noise band: max({}%, {} sigma of the repeats))",
            a.max_instr_regress, a.max_loop_regress, a.max_mpps_regress, a.noise_k
        );
        Ok(1)
    } else {
        println!("no regression past the thresholds");
        Ok(0)
    }
}

fn peers_cmd(a: PeersArgs) -> Result<i32> {
    let bin_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .context("executable directory")?;
    let o = peers::PeerOptions {
        bin_dir,
        classbench_dir: a
            .classbench
            .unwrap_or_else(|| bench::suite::workspace_root().join("../shared/classbench")),
        classbench_sets: a.sets,
        gen100k: a.gen100k,
        fib_routes: a.fib_routes,
        live_rules: if a.skip_live { Vec::new() } else { a.rules },
        live_seconds: a.seconds,
        search_steps: a.search_steps,
        nft_ct: a.nft_ct,
        skip_acl: a.skip_acl,
        skip_fib: a.skip_fib,
    };
    let needs_dpdk = !o.skip_acl || !o.skip_fib || !o.live_rules.is_empty();
    let _hugepages = if needs_dpdk && a.hugepages > 0 {
        Some(bench::suite::hugepages::Hugepages::ensure(a.hugepages).context("peers: hugepages")?)
    } else {
        None
    };
    let mut report = peers::run_all(&o);
    println!("\npeer ratios (sluice / peer, > 1 means sluice is faster):");
    for r in &report.ratios {
        println!("  {}", peers::line(r));
    }
    if let Some(dir) = &a.plot_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        match plot::plot_live_rules(&report.live, dir) {
            Ok(files) => {
                for f in files {
                    println!("  plot: {}", f.display());
                }
            }
            Err(e) => report.errors.push(format!("plot: {e:#}")),
        }
    }
    for e in &report.errors {
        println!("  FAILED {e}");
    }
    if let Some(p) = a.json {
        std::fs::write(&p, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(if report.errors.is_empty() { 0 } else { 1 })
}

fn cps_offline(a: CpsOfflineArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("sluice-cps-offline-{}", std::process::id()));
    let w = bench::cps::write(
        &bench::cps::CpsWorkload {
            connections: a.connections,
            ..bench::cps::CpsWorkload::default()
        },
        &dir,
    );
    let r = w.and_then(|w| bench::cps::replay(&w, a.loops, a.batch));
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", serde_json::to_string(&r?)?);
    Ok(())
}

fn cps_cmd(a: CpsArgs) -> Result<i32> {
    let o = cps::LiveOptions {
        peers: a.peers,
        seconds: a.seconds,
        warmup: a.warmup,
        concurrency: a.concurrency,
    };
    let mut errors = Vec::new();
    let live = if a.skip_live {
        Vec::new()
    } else {
        eprintln!("==> connection setup rate, live: {}", o.peers.join(", "));
        cps::live(&o).unwrap_or_else(|e| {
            errors.push(format!("live: {e:#}"));
            Vec::new()
        })
    };
    let offline = if a.skip_offline {
        None
    } else {
        eprintln!("==> connection setup rate, sluice offline");
        let exe = std::env::current_exe().context("finding sluice-bench")?;
        cps::offline(&exe, a.offline_connections, a.offline_loops)
            .map_err(|e| errors.push(format!("offline: {e:#}")))
            .ok()
    };
    println!();
    print!("{}", cps::table(&live, offline.as_ref(), &o));
    for e in &errors {
        println!("  FAILED {e}");
    }
    if let Some(p) = a.json {
        std::fs::write(
            &p,
            serde_json::to_string_pretty(
                &serde_json::json!({"live": live, "offline": offline, "errors": errors}),
            )?,
        )
        .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}
