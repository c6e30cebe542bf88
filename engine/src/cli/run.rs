//! `sluice run --config FILE`: the live data plane until SIGINT or SIGTERM.
//!
//! Loads the config, reads each port's MAC from its interface, builds the
//! tables, loads and attaches the XDP redirector, opens the AF_XDP sockets,
//! starts the pinned workers ([`crate::worker::live`]), and on SIGINT or
//! SIGTERM (or a worker failure) detaches XDP, drains the workers and prints
//! the final counters. Exit status: 0 after a signal, 1 on a runtime failure,
//! 2 for a bad config or arguments.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crossbeam::channel::{self, Sender};

use crate::control::felix::FelixRecord;
use crate::control::runtime::{KernelMirror, Runtime};
use crate::control::socket;
use crate::control::tap::TapSession;
use crate::io::bpf::NatPorts;
use crate::io::sys;
use crate::pipeline::{DropReason, Pipeline};
use crate::sources::config::Config;
use crate::sources::{felix, kernel};
use crate::state::build;
use crate::tables::conntrack::Conntrack;
use crate::worker::live::{self, LiveEngine, LiveOptions, LiveReport};

/// `sluice run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Config file (YAML).
    #[arg(long)]
    pub config: PathBuf,
    /// Run in the network namespace /run/netns/NAME (only the network
    /// namespace changes, so fail-closed pins stay in the host's bpffs).
    #[arg(long)]
    pub netns: Option<String>,
    /// Print the final report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print a line of counters every N seconds (0: only at exit).
    #[arg(long, default_value_t = 0)]
    pub stats_interval: u64,
    /// Create this file once the data plane is up (for scripts and tests).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Entries in each AF_XDP ring (fill, completion, RX, TX). The UMEM
    /// holds 2 x this many frames per socket. Large rings let one wakeup
    /// move many frames when the kernel's copy-mode work shares a core with
    /// the worker.
    #[arg(long, default_value_t = 8192)]
    pub ring_size: u32,
    /// UMEM frame size (2048 or 4096).
    #[arg(long, default_value_t = 2048)]
    pub frame_size: u32,
    /// Back UMEMs with 2 MiB huge pages when available.
    #[arg(long)]
    pub hugepages: bool,
    /// UMEM frames each worker holds beyond what the ports at start need,
    /// for the sockets of ports added while running (`ctl port add`).
    #[arg(long, default_value_t = 8192)]
    pub spare_frames: u32,
    /// bpffs directory for fail-closed XDP links.
    #[arg(long, default_value = "/sys/fs/bpf/sluice")]
    pub pin_dir: PathBuf,
}

/// The longest a burst of kernel changes is held before its tables are
/// built (a quiet kernel hands each change over within a millisecond).
const KERNEL_COALESCE: Duration = Duration::from_millis(10);

fn fail(code: i32, msg: impl std::fmt::Display) -> i32 {
    eprintln!("sluice: {msg}");
    code
}

/// A request from the control or metrics thread to the main thread, which
/// owns the engine.
enum Request {
    Control(serde_json::Value, Sender<serde_json::Value>),
    Metrics(Sender<String>),
    /// Start a trace or capture; the client's thread streams it.
    Tap(serde_json::Value, Sender<Result<TapSession, String>>),
    TapStop(u64),
}

/// Answers a `trace` or `capture` request on the client's own thread: the
/// main thread puts the tap on the workers, this thread streams its
/// records (a JSON header line, then JSON lines or pcapng) and has the
/// tap removed when a limit is reached or the client leaves.
fn stream_tap(
    tx: &Sender<Request>,
    v: &serde_json::Value,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let (rtx, rrx) = channel::bounded(1);
    let started = if tx.send(Request::Tap(v.clone(), rtx)).is_err() {
        Err("sluice is stopping".to_string())
    } else {
        rrx.recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| Err("no answer from the engine".into()))
    };
    let session = match started {
        Ok(s) => s,
        Err(e) => {
            writeln!(out, "{}", serde_json::json!({"ok": false, "error": e}))?;
            return out.flush();
        }
    };
    let id = session.tap.id;
    writeln!(
        out,
        "{}",
        serde_json::json!({"ok": true, "tap": id, "capture": session.req.capture,
                           "ports": session.ports})
    )?;
    let r = session.stream(out);
    let _ = tx.send(Request::TapStop(id));
    let summary = r?;
    if !session.req.capture {
        writeln!(out, "{}", serde_json::json!({"done": summary}))?;
    }
    out.flush()
}

/// Starts the control socket and the metrics listener (if configured);
/// they forward each request to the main thread through `tx`.
fn start_servers(
    cfg: &Config,
    tx: &Sender<Request>,
) -> Result<Vec<socket::Server>, socket::ControlError> {
    let mut servers = Vec::new();
    if !cfg.control.socket.as_os_str().is_empty() {
        let tx = tx.clone();
        servers.push(socket::serve_control_streaming(
            &cfg.control.socket,
            move |v, out| {
                if matches!(v["cmd"].as_str(), Some("trace" | "capture")) {
                    return stream_tap(&tx, v, out);
                }
                let (rtx, rrx) = channel::bounded(1);
                let reply = if tx.send(Request::Control(v.clone(), rtx)).is_err() {
                    serde_json::json!({"ok": false, "error": "sluice is stopping"})
                } else {
                    rrx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(
                        |_| serde_json::json!({"ok": false, "error": "no answer from the engine"}),
                    )
                };
                writeln!(out, "{reply}")?;
                out.flush()
            },
        )?);
    }
    if let Some(addr) = cfg.metrics.listen {
        let tx = tx.clone();
        servers.push(socket::serve_metrics(addr, move || {
            let (rtx, rrx) = channel::bounded(1);
            tx.send(Request::Metrics(rtx)).ok()?;
            rrx.recv_timeout(Duration::from_secs(10)).ok()
        })?);
    }
    Ok(servers)
}

/// Runs `sluice run`; returns the exit status.
pub fn run(a: RunArgs) -> i32 {
    let cfg = match Config::load(&a.config) {
        Ok(c) => c,
        Err(e) => return fail(2, e),
    };
    // The listeners bind in the caller's namespace (so `--netns` keeps
    // /metrics reachable from the host), before anything is attached.
    let (req_tx, req_rx) = channel::unbounded::<Request>();
    let servers = match start_servers(&cfg, &req_tx) {
        Ok(s) => s,
        Err(e) => return fail(1, e),
    };
    if let Some(ns) = &a.netns {
        let path = PathBuf::from("/run/netns").join(ns);
        if let Err(e) = sys::enter_netns(&path) {
            return fail(2, format!("--netns {ns}: {}: {e}", path.display()));
        }
    }
    // The kernel mirror, when the config asks for one: subscribed and
    // dumped before anything is built, so the first tables hold the
    // kernel's routes and neighbours.
    let (ktx, krx) = channel::unbounded::<kernel::Update>();
    let mut state = cfg.state();
    let mut mirror = None;
    let mut kview = None;
    if state.kernel.any() {
        let kinds = kernel::Kinds {
            routes: state.kernel.routes,
            neighbors: state.kernel.neighbors,
        };
        match kernel::Mirror::start(kinds, KERNEL_COALESCE, ktx.clone()) {
            Ok((view, m)) => {
                state = kernel::merge(&state, &view).0;
                mirror = Some(m);
                kview = Some(view);
            }
            Err(e) => return fail(1, format!("kernel mirror: netlink: {e}")),
        }
    }
    let ports = match live::plan_ports(&state) {
        Ok(p) => p,
        Err(e) => return fail(e.exit_code(), e),
    };
    let macs: Vec<_> = ports.iter().map(|p| p.mac).collect();
    let tables = match build::tables(&state, &macs) {
        Ok(t) => Arc::new(t),
        Err(e) => return fail(2, e),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGTERM, &stop),
        (signal_hook::consts::SIGHUP, &hup),
    ] {
        if let Err(e) = signal_hook::flag::register(sig, flag.clone()) {
            return fail(1, format!("installing the signal handler: {e}"));
        }
    }
    live::install_panic_hook(stop.clone());

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ u64::from(std::process::id()) << 32;
    // Conntrack is shared by all workers; its masquerade-port reference
    // counts drive the XDP program's bitmap, so replies to masqueraded
    // connections are redirected to sluice rather than passed to the kernel.
    let mut ct: Option<Arc<Conntrack>> = None;
    let mtus: Vec<(u16, u32)> = ports.iter().map(|p| (p.port, p.mtu)).collect();
    let pipelines = |w: usize, n: usize, nat: &NatPorts| {
        let ct = ct
            .get_or_insert_with(|| {
                Arc::new(
                    Conntrack::new(build::conntrack_capacity(&state), seed)
                        .with_nat_sink(state.masquerade_slots(), Arc::new(nat.clone())),
                )
            })
            .clone();
        let mut p = Pipeline::new(tables.clone(), ct);
        // Frames from a veth may carry partial checksums (see the method).
        p.complete_partial_checksums(true);
        // Packets too big for their egress port get Linux's ICMP errors.
        for &(port, mtu) in &mtus {
            p.set_port_mtu(port, mtu);
        }
        p.set_sweep_slice(w, n);
        p
    };
    let opts = LiveOptions {
        ring_size: a.ring_size,
        frame_size: a.frame_size,
        hugepages: a.hugepages,
        pin_dir: a.pin_dir.clone(),
        spare_frames: a.spare_frames,
        ..LiveOptions::default()
    };
    let mut engine = match LiveEngine::start(&state, ports, pipelines, &opts, stop.clone()) {
        Ok(e) => e,
        Err(e) => return fail(e.exit_code(), e),
    };
    let Some(ct) = ct else {
        return fail(1, "no worker was started");
    };
    for (ifname, why) in engine.xdp_fallbacks() {
        let w = format!(
            "{ifname}: native XDP failed ({why}); attached in generic mode instead \
             (each frame becomes an skb before XDP sees it: slower; `xdp.attach: native` \
             makes this an error)"
        );
        tracing::warn!("{w}");
        eprintln!("sluice: warning: {w}");
    }
    let desc: Vec<String> = engine
        .ports()
        .iter()
        .zip(engine.attached())
        .map(|(p, (_, at))| {
            format!(
                "{}={} ({} XDP, {} queue(s))",
                p.name,
                p.ifname,
                at.name(),
                p.queues.len()
            )
        })
        .collect();
    eprintln!(
        "sluice: running on {} with {} worker(s), AF_XDP {} mode; Ctrl-C stops, SIGHUP reloads",
        desc.join(", "),
        cfg.workers.cores.len(),
        if engine.zerocopy() {
            "zero-copy"
        } else {
            "copy"
        }
    );
    let mut rt = Runtime::new(a.config.clone(), cfg.clone(), macs, tables, ct);
    rt.kernel = kview.map(|view| KernelMirror {
        report: kernel::merge(&cfg.state(), &view).1,
        view,
        ..KernelMirror::default()
    });
    rt.felix = cfg
        .felix
        .as_ref()
        .map(|f| FelixRecord::new(f.socket.clone(), f.max_frame));
    // The Felix socket, when configured: sessions report to the main loop.
    let (ftx, frx) = channel::unbounded::<felix::Event>();
    let listener = match &cfg.felix {
        Some(f) => {
            let o = felix::Options::new(f.socket.clone(), f.max_frame);
            match felix::Listener::start(o, ftx.clone()) {
                Ok(l) => Some(l),
                Err(e) => return fail(1, e),
            }
        }
        None => None,
    };
    if let Some(f) = &a.ready_file {
        if let Err(e) = std::fs::write(f, b"ready\n") {
            eprintln!("sluice: warning: --ready-file {}: {e}", f.display());
        }
    }

    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) && !engine.any_worker_finished() {
        // The senders stay alive here (`req_tx`, `ktx`, `ftx`), so no
        // channel disconnects and the wait is a wait.
        channel::select! {
            recv(req_rx) -> r => match r {
                Ok(Request::Control(v, reply)) => {
                    let _ = reply.send(rt.handle(&mut engine, &v));
                }
                Ok(Request::Metrics(reply)) => {
                    let _ = reply.send(rt.metrics(&engine));
                }
                Ok(Request::Tap(v, reply)) => {
                    let _ = reply.send(rt.tap_start(&engine, &v));
                }
                Ok(Request::TapStop(id)) => rt.tap_stop(&engine, id),
                Err(_) => {}
            },
            recv(krx) -> u => if let Ok(u) = u {
                rt.apply_kernel(&engine, u);
            },
            recv(frx) -> e => if let Ok(e) = e {
                rt.apply_felix(&mut engine, e);
            },
            default(Duration::from_millis(20)) => {}
        }
        rt.tick(&mut engine);
        rt.felix_tick();
        if hup.swap(false, Ordering::Relaxed) {
            match rt.reload(&mut engine, None) {
                Ok(v) => eprintln!("sluice: SIGHUP: reloaded {}", v["config"]),
                Err(e) => eprintln!(
                    "sluice: SIGHUP: reload rejected, still running the previous config: {e}"
                ),
            }
        }
        if a.stats_interval > 0 && last.elapsed() >= Duration::from_secs(a.stats_interval) {
            last = Instant::now();
            let mut t = live::StatsSnapshot::default();
            for s in engine.worker_stats() {
                t.add(&s);
            }
            eprintln!(
                "sluice: rx {} tx {} forward {} drop {} kernel {} tx_ring_full {}",
                t.rx,
                t.tx,
                t.counters.actions[0],
                t.counters.actions[1],
                t.counters.actions[2],
                t.tx_ring_full
            );
        }
    }
    drop(servers);
    drop(mirror);
    drop(listener);
    drop((req_tx, ktx, ftx));
    let worker_died = !stop.load(Ordering::Relaxed);
    match engine.shutdown() {
        Ok(report) => {
            let mut out = std::io::stdout().lock();
            let r = if a.json {
                writeln!(out, "{}", report_json(&report))
            } else {
                write!(out, "{}", report_text(&report))
            };
            if let Err(e) = r {
                return fail(1, e);
            }
            if worker_died {
                return fail(1, "a worker stopped unexpectedly");
            }
            0
        }
        Err(e) => fail(1, e),
    }
}

/// The final report as JSON.
pub fn report_json(r: &LiveReport) -> serde_json::Value {
    let c = &r.total.counters;
    let drops: serde_json::Map<String, serde_json::Value> = DropReason::ALL
        .iter()
        .map(|d| (d.name().to_string(), c.drop_count(*d).into()))
        .collect();
    let xdp: serde_json::Map<String, serde_json::Value> = r
        .xdp
        .iter()
        .map(|(k, v)| (k.name().to_string(), (*v).into()))
        .collect();
    let workers: Vec<serde_json::Value> = r
        .workers
        .iter()
        .map(|w| {
            let a = &w.accounting;
            serde_json::json!({
                "id": w.id,
                "core": w.core,
                "rx": w.stats.rx,
                "tx": w.stats.tx,
                "batches": w.stats.batches,
                "zerocopy": w.zerocopy,
                "umem": {"total": a.total, "free": a.free, "held": a.held, "fill": a.fill,
                         "rx": a.rx, "tx": a.tx, "completion": a.completion,
                         "in_kernel": a.in_kernel()},
                "sockets": w.sockets.iter().map(|(s, st)| serde_json::json!({
                    "interface": s.ifname, "queue": s.queue,
                    "rx_dropped": st.rx_dropped, "rx_ring_full": st.rx_ring_full,
                    "rx_fill_ring_empty": st.rx_fill_ring_empty_descs,
                    "rx_invalid": st.rx_invalid_descs, "tx_invalid": st.tx_invalid_descs,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "packets": c.packets,
        "rx": r.total.rx,
        "tx": r.total.tx,
        "actions": {"forward": c.actions[0], "drop": c.actions[1], "kernel": c.actions[2]},
        "drops": drops,
        "kernel_unreachable": r.total.kernel_unreachable,
        "multi_buffer": r.total.multi_buffer,
        "too_long": r.total.too_long,
        "icmp_too_big": c.icmp_too_big,
            "fragmented": c.fragmented,
        "via_kernel": {"frames": c.via_kernel, "sent": r.total.kernel_sent,
                       "failed": r.total.kernel_send_failed},
        "tx_ring_full": r.total.tx_ring_full,
        "tx_wakeups": r.total.tx_wakeups,
        "table_swaps": r.total.table_swaps,
        "xdp": xdp,
        "attached": r.attached.iter().map(|(i, a)| serde_json::json!({"interface": i, "mode": a.name()})).collect::<Vec<_>>(),
        "workers": workers,
    })
}

/// The final report for a person.
pub fn report_text(r: &LiveReport) -> String {
    let c = &r.total.counters;
    let mut s = format!(
        "rx {} tx {} packets {}: forward {}, drop {}, kernel {} (unreachable: {})\n",
        r.total.rx,
        r.total.tx,
        c.packets,
        c.actions[0],
        c.actions[1],
        c.actions[2],
        r.total.kernel_unreachable
    );
    let drops: Vec<String> = DropReason::ALL
        .iter()
        .filter(|d| c.drop_count(**d) > 0)
        .map(|d| format!("{} {}", d.name(), c.drop_count(*d)))
        .collect();
    if !drops.is_empty() {
        s += &format!("drops: {}\n", drops.join(", "));
    }
    if r.total.tx_ring_full > 0 {
        s += &format!("tx ring full: {}\n", r.total.tx_ring_full);
    }
    if c.via_kernel > 0 {
        s += &format!(
            "via the kernel (next hop unresolved): {}, {} refused by the kernel\n",
            c.via_kernel, r.total.kernel_send_failed
        );
    }
    let xdp: Vec<String> = r
        .xdp
        .iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{} {v}", k.name()))
        .collect();
    s += &format!("xdp: {}\n", xdp.join(", "));
    for w in &r.workers {
        let a = &w.accounting;
        s += &format!(
            "worker {} (core {}): rx {} tx {}; umem {} frames: free {} fill {} rx {} tx {} completion {} held {} in-kernel {}\n",
            w.id, w.core, w.stats.rx, w.stats.tx, a.total, a.free, a.fill, a.rx, a.tx,
            a.completion, a.held, a.in_kernel()
        );
    }
    s
}
