//! `sluice replay`: the pipeline offline over capture files.
//!
//! Capture files are loaded into memory first (normalised to Ethernet, merged
//! in timestamp order, ties in file order) and split over the workers by the
//! symmetric flow hash; each worker's frames lie in one contiguous arena.
//! Each worker thread is pinned to a core, and for every loop walks its
//! frames in batches of `workers.batch` (a batch is also cut where capture
//! time jumps by more than a millisecond, so the `now` a batch is processed
//! at is within 1 ms of every frame's own timestamp). Each batch is copied
//! from the arena into one buffer the worker reuses, just before the
//! pipeline takes it (a run of adjacent slices, like a receive ring's
//! frames in a UMEM), so the pipeline's rewrites never reach the arena and
//! every loop sees the capture as recorded. Time is the capture's, shifted
//! forward on each loop so it never runs backwards; state carries across
//! loops unless `fresh_state`.
//!
//! The first loop is recorded: one action per input frame (for
//! `--verdicts`) and every frame as it would leave (for `--out-dir`).

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use thiserror::Error;

use crate::io::pcap::{self, PcapError, PcapWriter};
use crate::pipeline::{Action, Batch, Counters, DropReason, Pipeline, PortId};
use crate::state::{build, BuildError, NodeState};
use crate::tables::conntrack::Conntrack;
use crate::tables::Tables;
use crate::worker::steer;

/// Why a replay could not run.
#[derive(Debug, Error)]
pub enum ReplayError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Pcap(#[from] PcapError),
    #[error("{0}")]
    BadArgs(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("worker thread failed: {0}")]
    Worker(String),
}

impl ReplayError {
    /// Exit status: 2 for bad input, 1 for runtime failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            ReplayError::Pcap(e) if !e.is_bad_input() => 1,
            ReplayError::Io { .. } | ReplayError::Worker(_) => 1,
            _ => 2,
        }
    }
}

/// One `--pcap` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// Port name (`PORT=FILE`), or `None` for the ingress port.
    pub port: Option<String>,
    pub path: PathBuf,
}

impl Input {
    /// Parses `FILE` or `PORT=FILE`; `PORT=` is recognised only when PORT is
    /// one of `ports` (so file names containing `=` still work).
    pub fn parse(arg: &str, ports: &[String]) -> Input {
        if let Some((p, f)) = arg.split_once('=') {
            if ports.iter().any(|n| n == p) {
                return Input {
                    port: Some(p.to_string()),
                    path: PathBuf::from(f),
                };
            }
        }
        Input {
            port: None,
            path: PathBuf::from(arg),
        }
    }

    /// [`Input::parse`], refusing `NAME=FILE` when NAME is no port and no
    /// file is called `NAME=FILE` (a typo in the port name).
    pub fn parse_checked(arg: &str, ports: &[String]) -> Result<Input, String> {
        let i = Input::parse(arg, ports);
        if let (None, Some((p, _))) = (&i.port, arg.split_once('=')) {
            if !i.path.exists() {
                return Err(format!(
                    "--pcap {arg}: no port named {p:?} (the ports are {}) and no file {arg:?}",
                    ports.join(", ")
                ));
            }
        }
        Ok(i)
    }
}

/// What to replay and how.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub inputs: Vec<Input>,
    /// Port for inputs without `PORT=` (default: the first port).
    pub ingress: Option<String>,
    pub workers: usize,
    pub loops: u64,
    pub fresh_state: bool,
    pub out_dir: Option<PathBuf>,
    pub verdicts: Option<PathBuf>,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// Override `workers.batch`.
    pub batch: Option<usize>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            inputs: Vec::new(),
            ingress: None,
            workers: 1,
            loops: 1,
            fresh_state: false,
            out_dir: None,
            verdicts: None,
            progress: false,
            batch: None,
        }
    }
}

/// Latency percentiles (ns per packet, from per-batch time / batch size).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// The outcome of a replay.
#[derive(Debug)]
pub struct ReplaySummary {
    pub packets: u64,
    pub frames_read: u64,
    pub seconds: f64,
    /// Time spent inside the pipeline, summed over workers (excludes
    /// batching, frame restore and recording).
    pub busy_seconds: f64,
    /// `busy_seconds` by loop (each loop replays every input frame once):
    /// the first loop opens the connections, later ones find them.
    pub busy_seconds_by_loop: Vec<f64>,
    pub workers: usize,
    pub counters: Counters,
    pub latency: Latency,
    /// The latency distribution as (quantile, ns per packet) points: every
    /// percentile, then the tail (99.5, 99.9, 99.99, 100), for CDF plots.
    pub latency_cdf: Vec<(f64, u64)>,
    /// Per-frame actions of the first loop, in input order.
    pub actions: Vec<Action>,
    pub warnings: Vec<String>,
    pub port_names: Vec<String>,
}

impl ReplaySummary {
    /// Million packets per second.
    pub fn mpps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.packets as f64 / self.seconds / 1e6
        } else {
            0.0
        }
    }

    /// Wall-clock nanoseconds per packet.
    pub fn ns_per_packet(&self) -> f64 {
        if self.packets > 0 {
            self.seconds * 1e9 / self.packets as f64
        } else {
            0.0
        }
    }

    /// Pipeline nanoseconds per packet per worker: time inside
    /// `Pipeline::process` over packets processed.
    pub fn pipeline_ns_per_packet(&self) -> f64 {
        if self.packets > 0 {
            self.busy_seconds * 1e9 / self.packets as f64
        } else {
            0.0
        }
    }

    /// [`ReplaySummary::pipeline_ns_per_packet`] over loops `from..to` only
    /// (every loop replays the `frames_read` input frames): `(0, 1)` is the
    /// loop that opens the connections, `(1, loops)` the ones that find them.
    pub fn pipeline_ns_per_packet_of(&self, from: usize, to: usize) -> f64 {
        let by = &self.busy_seconds_by_loop;
        let (from, to) = (from.min(by.len()), to.min(by.len()));
        let busy: f64 = by[from..to.max(from)].iter().sum();
        let packets = self.frames_read as f64 * to.saturating_sub(from) as f64;
        if packets > 0.0 {
            busy * 1e9 / packets
        } else {
            0.0
        }
    }

    /// The spec's `--json` object.
    pub fn to_json(&self) -> serde_json::Value {
        let c = &self.counters;
        let drops: serde_json::Map<String, serde_json::Value> = DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), c.drop_count(*r).into()))
            .collect();
        let ports: serde_json::Map<String, serde_json::Value> = self
            .port_names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.clone(),
                    serde_json::json!({
                        "rx": c.port_rx.get(i).copied().unwrap_or(0),
                        "tx": c.port_tx.get(i).copied().unwrap_or(0),
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "packets": self.packets,
            "seconds": self.seconds,
            "mpps": self.mpps(),
            "ns_per_packet": self.ns_per_packet(),
            "workers": self.workers,
            "actions": {"forward": c.actions[0], "drop": c.actions[1], "kernel": c.actions[2]},
            "drops": drops,
            "latency_ns": {"p50": self.latency.p50, "p99": self.latency.p99,
                           "p999": self.latency.p999, "max": self.latency.max},
            "frames_read": self.frames_read,
            "pipeline_ns_per_packet": self.pipeline_ns_per_packet(),
            "ports": ports,
            "policy": {"allowed": c.policy_allowed, "denied": c.policy_denied},
        })
    }

    /// The same facts for a person.
    pub fn to_text(&self) -> String {
        let c = &self.counters;
        let mut s = format!(
            "{} packets in {:.3} s on {} worker(s): {:.2} Mpps, {:.1} ns/packet ({:.1} ns/packet inside the pipeline)\n",
            self.packets,
            self.seconds,
            self.workers,
            self.mpps(),
            self.ns_per_packet(),
            self.pipeline_ns_per_packet()
        );
        s += &format!(
            "actions: forward {}, drop {}, kernel {}\n",
            c.actions[0], c.actions[1], c.actions[2]
        );
        let drops: Vec<String> = DropReason::ALL
            .iter()
            .filter(|r| c.drop_count(**r) > 0)
            .map(|r| format!("{} {}", r.name(), c.drop_count(*r)))
            .collect();
        if !drops.is_empty() {
            s += &format!("drops: {}\n", drops.join(", "));
        }
        for (i, n) in self.port_names.iter().enumerate() {
            s += &format!(
                "port {n}: rx {} tx {}\n",
                c.port_rx.get(i).copied().unwrap_or(0),
                c.port_tx.get(i).copied().unwrap_or(0)
            );
        }
        s += &format!(
            "latency ns/packet: p50 {} p99 {} p999 {} max {}\n",
            self.latency.p50, self.latency.p99, self.latency.p999, self.latency.max
        );
        s
    }
}

/// A frame assigned to a worker.
#[derive(Clone, Copy, Debug)]
struct WFrame {
    index: u32,
    ts: u64,
    port: PortId,
    off: usize,
    len: u32,
}

/// One worker's share of the input.
struct Share {
    frames: Vec<WFrame>,
    data: Vec<u8>,
}

/// What a worker brings back.
struct WorkerOut {
    counters: Counters,
    /// Nanoseconds spent inside `Pipeline::process`, by loop.
    busy_ns: Vec<u64>,
    hist: Histogram<u64>,
    /// (input index, action, offset and length of the output bytes in `out`).
    records: Vec<(u32, Action, usize, u32)>,
    out: Vec<u8>,
}

/// Merges the captures: each file in its own order, the next frame taken
/// from the file whose next frame is earliest (ties: the earlier file).
/// Returns `(time, file, frame)` with time made non-decreasing (a capture
/// whose clock steps back keeps its order; time does not run backwards).
fn merge(caps: &[(PortId, pcap::Capture)]) -> Vec<(u64, usize, usize)> {
    let total: usize = caps.iter().map(|c| c.1.frames.len()).sum();
    let mut next = vec![0usize; caps.len()];
    let mut out = Vec::with_capacity(total);
    let mut clock = 0u64;
    while out.len() < total {
        let mut best: Option<(u64, usize)> = None;
        for (fi, (_, c)) in caps.iter().enumerate() {
            if let Some(f) = c.frames.get(next[fi]) {
                if best.is_none_or(|(t, _)| f.ts_ns < t) {
                    best = Some((f.ts_ns, fi));
                }
            }
        }
        let Some((ts, fi)) = best else { break };
        clock = clock.max(ts);
        out.push((clock, fi, next[fi]));
        next[fi] += 1;
    }
    out
}

/// Largest gap of capture time inside one batch.
const BATCH_SPAN_NS: u64 = 1_000_000;

/// Runs a replay.
pub fn run(
    state: &NodeState,
    tables: Arc<Tables>,
    opts: &ReplayOptions,
) -> Result<ReplaySummary, ReplayError> {
    if opts.inputs.is_empty() {
        return Err(ReplayError::BadArgs(
            "replay: at least one --pcap is required".into(),
        ));
    }
    if opts.workers == 0 || opts.workers > 64 {
        return Err(ReplayError::BadArgs(
            "replay: --workers must be 1..=64".into(),
        ));
    }
    if opts.loops == 0 {
        return Err(ReplayError::BadArgs(
            "replay: --loops must be at least 1".into(),
        ));
    }
    let batch = opts.batch.unwrap_or(state.workers.batch);
    if batch == 0 || batch > crate::pipeline::MAX_BATCH {
        return Err(ReplayError::BadArgs(format!(
            "replay: batch must be 1..={}",
            crate::pipeline::MAX_BATCH
        )));
    }
    let ingress = match &opts.ingress {
        None => 0,
        Some(name) => state.port_index(name).ok_or_else(|| {
            ReplayError::BadArgs(format!("replay: --ingress: no port named {name:?}"))
        })?,
    };

    // Load every input.
    let mut warnings = Vec::new();
    let mut caps = Vec::new();
    for input in &opts.inputs {
        let port = match &input.port {
            None => ingress,
            Some(n) => state.port_index(n).ok_or_else(|| {
                ReplayError::BadArgs(format!("replay: --pcap: no port named {n:?}"))
            })?,
        };
        let cap = pcap::read_file(&input.path, &tables.port_mac(port))?;
        warnings.extend(cap.warnings.iter().cloned());
        caps.push((port, cap));
    }
    let order = merge(&caps);
    let total = order.len();
    if total > u32::MAX as usize {
        return Err(ReplayError::BadArgs("replay: more than 2^32 frames".into()));
    }

    // Split over workers.
    let nw = opts.workers;
    let steering = steer::Steering::new(&tables);
    let mut shares: Vec<Share> = (0..nw)
        .map(|_| Share {
            frames: Vec::new(),
            data: Vec::new(),
        })
        .collect();
    let first_ts = order.first().map(|o| o.0).unwrap_or(0);
    let last_ts = order.last().map(|o| o.0).unwrap_or(0);
    for (index, &(ts, fi, i)) in order.iter().enumerate() {
        let (port, cap) = &caps[fi];
        let bytes = cap.frame(i);
        let w = if nw == 1 {
            0
        } else {
            (steering.hash(bytes) % nw as u64) as usize
        };
        let sh = &mut shares[w];
        sh.frames.push(WFrame {
            index: index as u32,
            ts,
            port: *port,
            off: sh.data.len(),
            len: bytes.len() as u32,
        });
        sh.data.extend_from_slice(bytes);
    }
    drop(caps);

    // The connection table, shared by the workers. Sized to the state's
    // max_entries, but never larger than the number of input frames: no
    // replay can hold more connections than it has frames, so this changes
    // no outcome and spares small replays a large allocation.
    let ct = Arc::new(Conntrack::new(
        build::conntrack_capacity(state).min(total.max(1)),
        REPLAY_SEED,
    ));
    let barrier = std::sync::Barrier::new(nw);
    let record = opts.verdicts.is_some() || opts.out_dir.is_some();
    let keep_bytes = opts.out_dir.is_some();
    let span = last_ts.saturating_sub(first_ts) + 1_000_000_000;
    let progress = Arc::new(AtomicU64::new(0));
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let cfg_cores = &state.workers.cores;

    let started = Instant::now();
    let results: Vec<Result<WorkerOut, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .iter()
            .enumerate()
            .map(|(w, share)| {
                let tables = tables.clone();
                let progress = progress.clone();
                let ct = ct.clone();
                let barrier = &barrier;
                let core = if nw == cfg_cores.len() {
                    cfg_cores[w]
                } else {
                    w
                };
                let core_id = cores
                    .iter()
                    .find(|c| c.id == core % cores.len().max(1))
                    .copied();
                std::thread::Builder::new()
                    .name(format!("sluice-replay-{w}"))
                    .spawn_scoped(scope, move || {
                        if let Some(c) = core_id {
                            core_affinity::set_for_current(c);
                        }
                        let ctx = WorkerCtx {
                            index: w,
                            ct,
                            barrier,
                        };
                        run_worker(
                            share, tables, &ctx, opts, batch, span, record, keep_bytes, &progress,
                        )
                    })
            })
            .collect();
        let bar = progress_bar(opts.progress, total as u64 * opts.loops);
        let handles: Vec<_> = handles.into_iter().collect();
        // Without a bar, just join: no polling, so the main thread's work
        // does not depend on how long the workers take (callgrind counts
        // stay deterministic).
        while let Some(b) = &bar {
            let done = handles
                .iter()
                .all(|h| h.as_ref().map(|h| h.is_finished()).unwrap_or(true));
            b.set_position(progress.load(Ordering::Relaxed));
            if done {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().map_err(|e| panic_text(&e)),
                Err(e) => Err(e.to_string()),
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();

    let mut counters = Counters::new(tables.ports.len());
    let mut hist = new_hist();
    let mut actions = if record {
        vec![Action::Kernel; total]
    } else {
        Vec::new()
    };
    let mut outs = Vec::with_capacity(nw);
    let mut busy_ns = vec![0u64; opts.loops as usize];
    for r in results {
        let out = r.map_err(ReplayError::Worker)?;
        for (b, w) in busy_ns.iter_mut().zip(&out.busy_ns) {
            *b += w;
        }
        counters.add(&out.counters);
        hist.add(&out.hist)
            .map_err(|e| ReplayError::Worker(e.to_string()))?;
        for &(i, a, _, _) in &out.records {
            if let Some(slot) = actions.get_mut(i as usize) {
                *slot = a;
            }
        }
        outs.push(out);
    }

    let port_names: Vec<String> = tables.ports.iter().map(|p| p.name.clone()).collect();
    if let Some(path) = &opts.verdicts {
        write_verdicts(path, &actions, &port_names)?;
    }
    if let Some(dir) = &opts.out_dir {
        write_out_dir(dir, &outs, &order, first_ts, &port_names, total)?;
    }
    let q = |p: f64| hist.value_at_quantile(p);
    Ok(ReplaySummary {
        packets: counters.packets,
        frames_read: total as u64,
        seconds,
        busy_seconds: busy_ns.iter().sum::<u64>() as f64 / 1e9,
        busy_seconds_by_loop: busy_ns.iter().map(|&b| b as f64 / 1e9).collect(),
        workers: nw,
        latency: Latency {
            p50: q(0.5),
            p99: q(0.99),
            p999: q(0.999),
            max: hist.max(),
        },
        latency_cdf: (0..100)
            .map(|p| f64::from(p) / 100.0)
            .chain([0.995, 0.999, 0.9999, 1.0])
            .map(|p| (p, q(p)))
            .collect(),
        counters,
        actions,
        warnings,
        port_names,
    })
}

fn new_hist() -> Histogram<u64> {
    // 1 ns .. 1 s per packet, 3 significant digits.
    Histogram::new_with_bounds(1, 1_000_000_000, 3).expect("constant histogram bounds are valid")
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

fn progress_bar(enabled: bool, total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} packets ({per_sec})",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// Fixed conntrack hash seed, so replays repeat exactly.
const REPLAY_SEED: u64 = 0x51u64 << 56 | 0x1ce;

/// What a replay worker shares with the others.
struct WorkerCtx<'a> {
    index: usize,
    ct: Arc<Conntrack>,
    barrier: &'a std::sync::Barrier,
}

// The worker's share, its tables, the shared context and the options: each
// argument is something it uses.
#[allow(clippy::too_many_arguments)]
fn run_worker(
    share: &Share,
    tables: Arc<Tables>,
    ctx: &WorkerCtx<'_>,
    opts: &ReplayOptions,
    batch_size: usize,
    span: u64,
    record: bool,
    keep_bytes: bool,
    progress: &AtomicU64,
) -> WorkerOut {
    let mut pipeline = Pipeline::new(tables.clone(), ctx.ct.clone());
    pipeline.set_owner(ctx.index as u8, true);
    let mut counters = Counters::new(tables.ports.len());
    let mut hist = new_hist();
    // Each batch is copied from the capture into one buffer the worker
    // reuses, just before the pipeline takes it, as a NIC's RX ring hands
    // out the same few buffers again and again (and DPDK's pcap PMD copies
    // each packet into a recycled mbuf). The pipeline rewrites frames in
    // place; the capture stays as read, for the next loop.
    let mut buf: Vec<u8> = Vec::new();
    let mut records = Vec::new();
    let mut out = Vec::new();
    let mut last_now = 0u64;
    let mut busy_ns = vec![0u64; opts.loops as usize];
    for lp in 0..opts.loops {
        if lp > 0 && opts.fresh_state {
            // Every worker finishes the loop, one empties the table, all go on.
            if ctx.barrier.wait().is_leader() {
                ctx.ct.clear();
            }
            ctx.barrier.wait();
            counters.add(pipeline.counters());
            pipeline = Pipeline::new(tables.clone(), ctx.ct.clone());
            pipeline.set_owner(ctx.index as u8, true);
        }
        let shift = lp.saturating_mul(span);
        let mut start = 0;
        let frames = &share.frames;
        while start < frames.len() {
            // Cut the batch at batch_size frames or a time jump.
            let t0 = frames[start].ts;
            let mut end = start + 1;
            while end < frames.len()
                && end - start < batch_size
                && frames[end].ts.saturating_sub(t0) <= BATCH_SPAN_NS
            {
                end += 1;
            }
            let now = (t0.saturating_add(shift)).max(last_now);
            last_now = now;
            let lo = frames[start].off;
            let hi = frames[end - 1].off + frames[end - 1].len as usize;
            let mut batch = Batch::new();
            buf.clear();
            buf.extend_from_slice(share.data.get(lo..hi).unwrap_or(&[]));
            let mut rest: &mut [u8] = &mut buf;
            for f in &frames[start..end] {
                let n = (f.len as usize).min(rest.len());
                let (a, b) = std::mem::take(&mut rest).split_at_mut(n);
                let _ = batch.push_at(a, f.port, f.ts.saturating_add(shift).max(1));
                rest = b;
            }
            let t = Instant::now();
            pipeline.process(now, &mut batch);
            let dt = t.elapsed().as_nanos() as u64;
            if let Some(b) = busy_ns.get_mut(lp as usize) {
                *b += dt;
            }
            let n = batch.len() as u64;
            let _ = hist.record_n((dt / n.max(1)).max(1), n);
            for (slot, f) in batch.slots_mut().iter_mut().zip(&frames[start..end]) {
                if lp == 0 && record {
                    let (o, l) = if keep_bytes {
                        let o = out.len();
                        out.extend_from_slice(slot.frame);
                        (o, slot.frame.len() as u32)
                    } else {
                        (0, 0)
                    };
                    records.push((f.index, slot.action, o, l));
                }
            }
            progress.fetch_add(n, Ordering::Relaxed);
            start = end;
        }
    }
    counters.add(pipeline.counters());
    WorkerOut {
        counters,
        busy_ns,
        hist,
        records,
        out,
    }
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> ReplayError {
    move |source| ReplayError::Io { what, source }
}

fn write_verdicts(path: &PathBuf, actions: &[Action], ports: &[String]) -> Result<(), ReplayError> {
    let what = format!("{}", path.display());
    let f = std::fs::File::create(path).map_err(io_err(what.clone()))?;
    let mut w = BufWriter::new(f);
    for (i, a) in actions.iter().enumerate() {
        let line = match a {
            Action::Forward(p) => serde_json::json!({"index": i, "action": "forward",
                "port": ports.get(usize::from(*p)).cloned().unwrap_or_default()}),
            Action::Drop(r) => {
                serde_json::json!({"index": i, "action": "drop", "reason": r.name()})
            }
            Action::Kernel => serde_json::json!({"index": i, "action": "kernel"}),
            Action::ViaKernel => serde_json::json!({"index": i, "action": "via_kernel"}),
        };
        writeln!(w, "{line}").map_err(io_err(what.clone()))?;
    }
    w.flush().map_err(io_err(what))
}

fn write_out_dir(
    dir: &PathBuf,
    outs: &[WorkerOut],
    order: &[(u64, usize, usize)],
    first_ts: u64,
    ports: &[String],
    total: usize,
) -> Result<(), ReplayError> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("{}", dir.display())))?;
    let open = |name: &str| -> Result<PcapWriter<BufWriter<std::fs::File>>, ReplayError> {
        let p = dir.join(format!("{name}.pcap"));
        let what = format!("{}", p.display());
        let f = std::fs::File::create(&p).map_err(io_err(what.clone()))?;
        PcapWriter::new(BufWriter::new(f)).map_err(io_err(what))
    };
    let mut port_w = Vec::new();
    for p in ports {
        port_w.push(open(p)?);
    }
    let mut kernel_w = open("kernel")?;
    let mut drops_w = open("drops")?;
    // Put records back in input order.
    let mut by_index: Vec<Option<(usize, usize)>> = vec![None; total];
    for (wi, o) in outs.iter().enumerate() {
        for (ri, r) in o.records.iter().enumerate() {
            if let Some(s) = by_index.get_mut(r.0 as usize) {
                *s = Some((wi, ri));
            }
        }
    }
    let what = format!("{}", dir.display());
    for (i, slot) in by_index.iter().enumerate() {
        let Some((wi, ri)) = *slot else { continue };
        let (_, action, off, len) = outs[wi].records[ri];
        let bytes = outs[wi].out.get(off..off + len as usize).unwrap_or(&[]);
        let ts = order.get(i).map(|o| o.0).unwrap_or(first_ts);
        let w = match action {
            Action::Forward(p) => match port_w.get_mut(usize::from(p)) {
                Some(w) => w,
                None => continue,
            },
            // Offline there is no kernel to resolve the next hop: the
            // frame, as written for it, goes with the kernel's.
            Action::Kernel | Action::ViaKernel => &mut kernel_w,
            Action::Drop(_) => &mut drops_w,
        };
        w.write(ts, bytes).map_err(io_err(what.clone()))?;
    }
    for w in port_w.into_iter().chain([kernel_w, drops_w]) {
        w.finish().map_err(io_err(what.clone()))?;
    }
    Ok(())
}
