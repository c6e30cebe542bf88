//! Scale benchmark of the policy compiler (issue 3 item 6): ClassBench sets
//! through the compiler against `dpdk-test-acl`, synthetic 100k sets, and
//! synthetic Calico-style sets. Run it under the CPU lock:
//!
//! ```text
//! flock /tmp/sluice-cpu.lock target/release/classbench --all
//! ```
//! `dpdk-test-acl` needs hugepages:
//! `echo 1024 > /proc/sys/vm/nr_hugepages` and hugetlbfs on /dev/hugepages.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bench::classbench::{self as cb, Filter, Header};
use clap::Parser;
use policy_compiler::compile::{Builder, Config, EngineKind};
use policy_compiler::{Classifier, DecisionInfo, FlowKey, Verdict, L4};

#[derive(Parser, Debug)]
#[command(
    about = "ClassBench and Calico-style scale benchmark of the policy compiler, with dpdk-test-acl as the peer"
)]
struct Args {
    /// ClassBench folder (rules/, traces/, firstmatch/).
    #[arg(long, default_value = "../shared/classbench")]
    classbench: PathBuf,
    /// Sets to run (names like acl2_10k); default: every set with a trace;
    /// `none`: no ClassBench set (only `--gen100k` / `--calico`).
    #[arg(long, value_delimiter = ',')]
    sets: Vec<String>,
    /// Run everything: all traced sets, the 100k sets, the Calico sets.
    #[arg(long)]
    all: bool,
    /// Iterations over each trace per timed run (the best run counts).
    #[arg(long, default_value_t = 4)]
    iters: u32,
    /// Skip dpdk-test-acl.
    #[arg(long)]
    no_dpdk: bool,
    /// rte_acl algorithms to run (the best counts). Each must produce
    /// figures: a failed run is an error, never a ratio of zero.
    #[arg(long, value_delimiter = ',', default_values_t = ["scalar".to_string(), "sse".to_string(), "avx2".to_string()])]
    dpdk_algs: Vec<String>,
    /// Generate and run 100k sets from these 10k templates (e.g. acl1,fw1,ipc1).
    #[arg(long, value_delimiter = ',')]
    gen100k: Vec<String>,
    /// Seed of the generated sets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Calico-style sets with these rule counts (e.g. 10,1000,10000,100000).
    #[arg(long, value_delimiter = ',')]
    calico: Vec<usize>,
    /// Engine: auto (the default: the byte DFA where it applies, cut
    /// trees elsewhere), cut-tree, linear.
    #[arg(long, default_value = "auto")]
    engine: String,
    /// Leaf size of the cut trees.
    #[arg(long)]
    binth: Option<usize>,
    /// Most bits cut per node.
    #[arg(long)]
    cut_bits: Option<u8>,
    /// Space factor.
    #[arg(long)]
    spfac: Option<f64>,
    /// Most rules pushed up per node (see `Config::push`).
    #[arg(long)]
    push: Option<usize>,
    /// Trees per rule list (1..4, see `Config::partitions`).
    #[arg(long)]
    partitions: Option<u8>,
    /// Where generated files go.
    #[arg(long, default_value = "bench/results/classbench")]
    out_dir: PathBuf,
    /// Time `classify` one key at a time instead of `classify_batch`.
    #[arg(long)]
    single: bool,
    /// Lockstep batch lookups on or off (default: on, the classifier's
    /// default; off compares with one key at a time through the same call).
    #[arg(long)]
    lockstep: Option<bool>,
    /// DFA: most rules in a leaf.
    #[arg(long)]
    dfa_leaf: Option<usize>,
    /// Print engine statistics.
    #[arg(long)]
    stats: bool,
    /// Also write a JSON summary here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Default, serde::Serialize)]
struct Row {
    set: String,
    rules: usize,
    headers: usize,
    compile_ms: f64,
    memory_bytes: usize,
    mpps: f64,
    ns_per_lookup: f64,
    mismatches_vs_firstmatch: usize,
    checked: usize,
    dpdk: Vec<cb::DpdkRun>,
    dpdk_best_mpps: f64,
    dpdk_mismatches: Option<usize>,
    ratio: f64,
}

fn config(a: &Args) -> Config {
    let mut c = match a.engine.as_str() {
        "linear" => Config::linear(),
        "cut-tree" => Config {
            engine: EngineKind::CutTree,
            ..Config::default()
        },
        _ => Config::default(),
    };
    if let Some(b) = a.binth {
        c.binth = b;
    }
    if let Some(b) = a.cut_bits {
        c.max_cut_bits = b;
    }
    if let Some(b) = a.spfac {
        c.spfac = b;
    }
    if let Some(p) = a.partitions {
        c.partitions = p;
    }
    if let Some(p) = a.push {
        c.push = p;
    }
    if let Some(l) = a.dfa_leaf {
        c.dfa_leaf = l;
    }
    if c.engine == EngineKind::Linear {
        c.binth = usize::MAX;
    }
    c
}

fn keys(hs: &[Header]) -> Vec<FlowKey> {
    hs.iter()
        .map(|h| {
            FlowKey::v4(
                h.src,
                h.dst,
                h.proto,
                L4::Ports {
                    sport: h.sport,
                    dport: h.dport,
                },
            )
        })
        .collect()
}

/// Decision id → rule index (−1 for anything else).
fn rule_map(c: &Classifier) -> Vec<i64> {
    c.decisions()
        .iter()
        .map(|d| match d {
            DecisionInfo::Rule { rule, .. } => *rule as i64,
            _ => -1,
        })
        .collect()
}

/// Lookups per second: the best of `reps` timed runs of `iters` passes over
/// the keys (the machine is shared; the best run is the least disturbed).
fn time_lookups(
    c: &Classifier,
    ks: &[FlowKey],
    iters: u32,
    single: bool,
    reps: usize,
) -> (f64, Vec<Verdict>) {
    let mut scratch = c.new_scratch();
    let mut out = vec![Verdict::default(); ks.len()];
    let mut best = 0.0f64;
    // Warm up.
    for (k, o) in ks.chunks(64).zip(out.chunks_mut(64)) {
        c.classify_batch(k, o, &mut scratch);
    }
    for _ in 0..reps {
        let t = Instant::now();
        for _ in 0..iters {
            if single {
                for (k, o) in ks.iter().zip(out.iter_mut()) {
                    *o = c.classify(k, &mut scratch);
                }
            } else {
                for (k, o) in ks.chunks(64).zip(out.chunks_mut(64)) {
                    c.classify_batch(k, o, &mut scratch);
                }
            }
        }
        let secs = t.elapsed().as_secs_f64();
        best = best.max((ks.len() as f64 * iters as f64) / secs);
    }
    (best, out)
}

fn run_filters(
    a: &Args,
    name: &str,
    fs: &[Filter],
    hs: &[Header],
    expect: Option<&[i64]>,
    rules_path: &Path,
    trace_path: &Path,
) -> Result<Row> {
    let t = Instant::now();
    let ir = cb::filters_to_ir(fs);
    let mut c = Builder::with_config(config(a)).compile_ir(&ir);
    if let Some(on) = a.lockstep {
        c.set_lockstep(on);
    }
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    if !c.lockstep() {
        println!("{name}: lockstep batch lookups off");
    }
    if a.stats {
        print!("{}", c.debug_engine_stats());
    }
    let ks = keys(hs);
    if a.stats {
        print!("{}", c.debug_walks(&ks));
    }
    let (mut pps, out) = time_lookups(&c, &ks, a.iters, a.single, 5);
    let map = rule_map(&c);
    let got: Vec<i64> = out
        .iter()
        .map(|v| map[v.egress.decided_by.0 as usize])
        .collect();
    let mut row = Row {
        set: name.to_string(),
        rules: fs.len(),
        headers: hs.len(),
        compile_ms,
        memory_bytes: c.memory(),
        mpps: pps / 1e6,
        ns_per_lookup: 1e9 / pps,
        ..Default::default()
    };
    match expect {
        Some(e) => {
            row.checked = e.len();
            row.mismatches_vs_firstmatch = got.iter().zip(e).filter(|(g, w)| g != w).count();
        }
        None => {
            // Brute force on a sample (every k-th header).
            let step = (hs.len() / 3000).max(1);
            for i in (0..hs.len()).step_by(step) {
                row.checked += 1;
                if cb::brute_first_match(fs, &hs[i]) != got[i] {
                    row.mismatches_vs_firstmatch += 1;
                }
            }
        }
    }
    if !a.no_dpdk {
        // Three rounds, each a run of every rte_acl algorithm then more
        // sluice runs, best of each side: this VM's speed drifts over
        // seconds, and interleaving keeps a slow spell from landing on one
        // side only.
        if a.dpdk_algs.is_empty() {
            bail!("--dpdk-algs is empty (use --no-dpdk to skip dpdk-test-acl)");
        }
        let mut best: Vec<Option<cb::DpdkRun>> = vec![None; a.dpdk_algs.len()];
        for _ in 0..3 {
            for (alg, b) in a.dpdk_algs.iter().zip(best.iter_mut()) {
                let r = cb::dpdk_run(rules_path, trace_path, alg, a.iters)
                    .with_context(|| format!("{name}: peer dpdk-test-acl failed"))?;
                if b.as_ref().is_none_or(|b| r.pps > b.pps) {
                    *b = Some(r);
                }
            }
            pps = pps.max(time_lookups(&c, &ks, a.iters, a.single, 2).0);
        }
        row.mpps = pps / 1e6;
        row.ns_per_lookup = 1e9 / pps;
        row.dpdk.extend(best.into_iter().flatten());
        row.dpdk_best_mpps = row.dpdk.iter().map(|r| r.pps).fold(0.0, f64::max) / 1e6;
        if !(row.dpdk_best_mpps > 0.0 && row.mpps > 0.0) {
            bail!(
                "{name}: no ratio: sluice {:.3} Mpps, dpdk-test-acl best {:.3} Mpps",
                row.mpps,
                row.dpdk_best_mpps
            );
        }
        row.ratio = row.mpps / row.dpdk_best_mpps;
        if let Ok(d) = cb::dpdk_results(rules_path, trace_path) {
            if d.len() == got.len() {
                row.dpdk_mismatches = Some(d.iter().zip(&got).filter(|(x, y)| x != y).count());
            }
        }
    }
    print_row(&row);
    Ok(row)
}

fn print_row(r: &Row) {
    let dpdk: Vec<String> = r
        .dpdk
        .iter()
        .map(|d| format!("{} {:.2}", d.alg, d.pps / 1e6))
        .collect();
    println!(
        "{:<14} rules {:>6} headers {:>7} | compile {:>8.1} ms | memory {:>6.2} MB | sluice {:>6.2} Mpps ({:>6.1} ns) | mismatches {}/{} | dpdk [{}] best {:.2} Mpps, dpdk vs sluice mismatches {} | ratio sluice/dpdk {:.2}",
        r.set,
        r.rules,
        r.headers,
        r.compile_ms,
        r.memory_bytes as f64 / 1e6,
        r.mpps,
        r.ns_per_lookup,
        r.mismatches_vs_firstmatch,
        r.checked,
        dpdk.join(", "),
        r.dpdk_best_mpps,
        r.dpdk_mismatches.map_or("-".to_string(), |m| m.to_string()),
        r.ratio
    );
}

#[derive(Debug, Default, serde::Serialize)]
struct CalicoRow {
    rules: usize,
    set_members: usize,
    yaml_bytes: usize,
    load_ms: f64,
    compile_ms: f64,
    memory_bytes: usize,
    mpps: f64,
    reference_checked: usize,
    reference_mismatches: usize,
}

fn run_calico(a: &Args, rules: usize) -> Result<CalicoRow> {
    let members = rules.clamp(100, 100_000);
    let yaml = cb::calico::yaml(rules, members, a.seed);
    let t = Instant::now();
    let (set, _) = policy_compiler::loader::load_str("calico.yaml", &yaml)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    // Compile twice; report the second (a recompile of a loaded set).
    let b = Builder::with_config(config(a));
    let _ = b.compile(&set)?;
    let t = Instant::now();
    let mut c = b.compile(&set)?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    if let Some(on) = a.lockstep {
        c.set_lockstep(on);
    }
    if a.stats {
        print!("{}", c.debug_engine_stats());
        let t = Instant::now();
        let ir = policy_compiler::ir::build(&set)?;
        let t_ir = t.elapsed().as_secs_f64() * 1e3;
        let _ = b.compile_ir(&ir);
        println!(
            "IR build {:.1} ms, engines {:.1} ms, classifier memory {} bytes",
            t_ir,
            t.elapsed().as_secs_f64() * 1e3 - t_ir,
            c.memory()
        );
    }
    let ks = cb::calico::packets(1_000_000, a.seed);
    let (pps, out) = time_lookups(&c, &ks, 3, a.single, 5);
    // Check a sample against the reference evaluator.
    let reference = policy_compiler::reference::Reference::new(&set);
    let mut mism = 0;
    let n = 300usize;
    for (k, v) in ks.iter().zip(&out).take(n) {
        let p = policy_compiler::reference::Packet {
            src: k.src(),
            dst: k.dst(),
            proto: k.proto(),
            l4: k.l4(),
        };
        if reference.eval(&p) != c.verdict_json(v) {
            mism += 1;
        }
    }
    let row = CalicoRow {
        rules: set.counts().rules,
        set_members: members,
        yaml_bytes: yaml.len(),
        load_ms,
        compile_ms,
        memory_bytes: c.memory(),
        mpps: pps / 1e6,
        reference_checked: n,
        reference_mismatches: mism,
    };
    println!(
        "calico {:>6} rules, IP set {:>6} members | YAML {:>5.1} MB load {:>8.1} ms | compile {:>7.1} ms | memory {:>6.2} MB | {:>6.2} Mpps | vs reference {}/{} mismatches",
        row.rules,
        row.set_members,
        row.yaml_bytes as f64 / 1e6,
        row.load_ms,
        row.compile_ms,
        row.memory_bytes as f64 / 1e6,
        row.mpps,
        row.reference_mismatches,
        row.reference_checked
    );
    Ok(row)
}

fn main() {
    // One line naming what failed (a peer's failure included), exit 1.
    if let Err(e) = run() {
        eprintln!("classbench: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut a = Args::parse();
    if a.all {
        if a.gen100k.is_empty() {
            a.gen100k = vec!["acl1".into(), "fw1".into(), "ipc1".into()];
        }
        if a.calico.is_empty() {
            a.calico = vec![10, 1000, 10_000, 100_000];
        }
    }
    let root = a.classbench.clone();
    let mut sets = a.sets.clone();
    if sets == ["none"] {
        sets.clear();
    } else if sets.is_empty() {
        sets = cb::traced_sets(&root)?;
    }
    println!(
        "engine {:?}, best of 5 runs (11 with dpdk-test-acl, interleaved with its runs) of {} passes over each trace, single core",
        config(&a).engine,
        a.iters
    );
    let mut rows = Vec::new();
    for s in &sets {
        let rp = root.join("rules").join(s);
        let tp = root.join("traces").join(format!("{s}_trace"));
        let fp = root
            .join("firstmatch")
            .join(format!("{s}_trace.firstmatch"));
        let fs = cb::read_filters(&rp)?;
        let hs = cb::read_trace(&tp)?;
        let fm = cb::read_firstmatch(&fp)?;
        rows.push(run_filters(&a, s, &fs, &hs, Some(&fm), &rp, &tp)?);
    }
    for fam in &a.gen100k {
        std::fs::create_dir_all(&a.out_dir)?;
        let template = cb::read_filters(&root.join("rules").join(format!("{fam}_10k")))?;
        let fs = cb::scale_set(&template, 100_000, a.seed);
        let (hs, gen) = cb::trace_for(&fs, fs.len() * 10, a.seed ^ 0x5eed);
        let name = format!("{fam}_100k_s{}", a.seed);
        let rp = a.out_dir.join(&name);
        let tp = a.out_dir.join(format!("{name}_trace"));
        cb::write_filters(&rp, &fs)?;
        cb::write_trace(&tp, &hs, &gen)?;
        rows.push(run_filters(&a, &name, &fs, &hs, None, &rp, &tp)?);
    }
    let mut crow = Vec::new();
    for &n in &a.calico {
        crow.push(run_calico(&a, n)?);
    }
    if let Some(j) = &a.json {
        std::fs::write(
            j,
            serde_json::to_string_pretty(&serde_json::json!({"classbench": rows, "calico": crow}))?,
        )?;
    }
    Ok(())
}
