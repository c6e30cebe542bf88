//! Live workers: the pipeline on real interfaces through AF_XDP.
//!
//! [`LiveEngine::start`] resolves the config's interfaces (index, MAC,
//! queues), loads the XDP redirector and fills its maps, gives every worker
//! its (port, queue) sockets over one shared UMEM, points the XSKMAP at them,
//! attaches XDP, and starts one thread per `workers.cores` entry, pinned to
//! that core.
//!
//! ## A worker's loop
//! For each of its sockets in turn: reclaim completed TX frames, top up the
//! fill ring from the free list, take an RX burst of up to `workers.batch`
//! frames, build a [`Batch`] of the frames' bytes in the UMEM (the pipeline
//! rewrites them in place), run [`Pipeline::process`], then act on each
//! slot: `Forward(port)` moves the frame's descriptor to the TX ring of the
//! worker's socket on that port (same UMEM: no copy); `Drop(_)` returns the
//! frame to the free list; `Kernel` also returns it and counts it as
//! `kernel_unreachable`: the XDP program already passes to the kernel what
//! the pipeline's local decision would (ARP/ND, the node's addresses,
//! broadcast, multicast, link-local), so a `Kernel` verdict here means the
//! two disagree (e.g. a reply to a masquerade port not marked in use) and
//! the frame cannot be re-injected. After all sockets, TX rings that
//! received frames are kicked (`sendto`) if the kernel asks for it
//! (`need_wakeup`; always in copy mode), and the counters are published.
//!
//! No lock, allocation or syscall per packet: the batch and the per-batch
//! scratch are on the stack or preallocated, frames move between
//! preallocated rings and the free list, syscalls are per batch (TX kick)
//! or per idle period (`poll`). Control messages ([`WorkerCommand`]) are
//! read between batches. When idle, a worker sleeps in `poll` (1 ms), or
//! with `workers.busy_poll` spins on `recvfrom` with `SO_PREFER_BUSY_POLL`.
//!
//! ## Stopping
//! [`LiveEngine::shutdown`] detaches XDP first (the kernel takes the
//! traffic), then stops the workers; each drains its RX rings through the
//! pipeline, flushes TX, reclaims completions and reports where every UMEM
//! frame is ([`Accounting`]): the leak check.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use crossbeam::channel::{self, Receiver, Sender};
use thiserror::Error;

use crate::control::config::{Config, FailMode, Queues, XskMode};
use crate::io::bpf::{self, Attached, BpfError, NatPorts, XdpCounter, XdpMaps, XdpProgram};
use crate::io::sys::{self, SysError, XdpStatistics};
use crate::io::xsk::{
    Accounting, BindMode, BusyPoll, FramePool, RingSizes, RxFrame, SocketSpec, Umem, UmemConfig,
    XskError, XskSocket,
};
use crate::pipeline::{Action, Batch, Counters, DropReason, Pipeline, PortId, MAX_BATCH};
use crate::tables::Tables;
use crate::wire::Mac;

/// Why the live data plane could not start or run.
#[derive(Debug, Error)]
pub enum LiveError {
    /// The config does not fit the machine (exit 2).
    #[error("{file}: {path}: {msg}")]
    Config {
        file: String,
        path: String,
        msg: String,
    },
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error("{what}: {source}")]
    Xsk { what: String, source: XskError },
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("worker {0} failed: {1}")]
    Worker(usize, String),
}

impl LiveError {
    /// Exit status: 2 for a config that does not fit, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            LiveError::Config { .. } => 2,
            _ => 1,
        }
    }
}

/// A message to a worker, handled between batches.
#[derive(Debug)]
pub enum WorkerCommand {
    /// Use these tables from the next batch on.
    SetTables(Arc<Tables>),
    /// Drain and exit.
    Stop,
}

/// Sizing and behaviour knobs not in the config file.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Entries per ring (fill, completion, RX, TX), a power of two.
    pub ring_size: u32,
    /// UMEM chunk size (2048 or 4096).
    pub frame_size: u32,
    /// Back the UMEM with huge pages when available.
    pub hugepages: bool,
    /// Where fail-closed links are pinned.
    pub pin_dir: PathBuf,
    /// Idle sleep in `poll`, milliseconds.
    pub idle_ms: i32,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            ring_size: 8192,
            frame_size: 2048,
            hugepages: false,
            pin_dir: PathBuf::from("/sys/fs/bpf/sluice"),
            idle_ms: 1,
        }
    }
}

/// A configured port resolved on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortPlan {
    pub port: PortId,
    pub name: String,
    pub ifname: String,
    pub ifindex: u32,
    pub mac: Mac,
    /// Queues sluice binds (config `queues`, `all` = every rx queue).
    pub queues: Vec<u32>,
    pub mode: XskMode,
}

fn cfg_err(cfg: &Config, path: impl Into<String>, msg: impl Into<String>) -> LiveError {
    LiveError::Config {
        file: cfg.source.clone(),
        path: path.into(),
        msg: msg.into(),
    }
}

/// Resolves every port's interface: index, MAC, queues.
pub fn plan_ports(cfg: &Config) -> Result<Vec<PortPlan>, LiveError> {
    let mut out = Vec::new();
    for (i, p) in cfg.ports.iter().enumerate() {
        let ifname = p.interface.clone().ok_or_else(|| {
            cfg_err(
                cfg,
                format!("ports[{i}].interface"),
                "required for run (the interface this port is)",
            )
        })?;
        let bad = |e: SysError| {
            cfg_err(
                cfg,
                format!("ports[{i}].interface"),
                format!("{ifname:?}: {e}"),
            )
        };
        let ifindex = sys::if_nametoindex(&ifname).map_err(bad)?;
        let mac = sys::interface_mac(&ifname).map_err(bad)?;
        let n = sys::interface_rx_queues(&ifname).map_err(bad)?;
        let queues = match &p.queues {
            Queues::All => (0..n).collect(),
            Queues::List(l) => {
                for q in l {
                    if *q >= n {
                        return Err(cfg_err(
                            cfg,
                            format!("ports[{i}].queues"),
                            format!("{ifname} has {n} rx queue(s); queue {q} does not exist"),
                        ));
                    }
                }
                l.clone()
            }
        };
        if queues.is_empty() {
            return Err(cfg_err(
                cfg,
                format!("ports[{i}].queues"),
                "at least one queue",
            ));
        }
        if let Some(q) = queues.iter().find(|&&q| q >= bpf::MAX_QUEUES) {
            return Err(cfg_err(
                cfg,
                format!("ports[{i}].queues"),
                format!(
                    "queue {q}: the XDP program handles queues 0..{}",
                    bpf::MAX_QUEUES
                ),
            ));
        }
        if out.iter().any(|o: &PortPlan| o.ifindex == ifindex) {
            return Err(cfg_err(
                cfg,
                format!("ports[{i}].interface"),
                format!("{ifname} is already another port"),
            ));
        }
        out.push(PortPlan {
            port: i as PortId,
            name: p.name.clone(),
            ifname,
            ifindex,
            mac,
            queues,
            mode: p.mode,
        });
    }
    Ok(out)
}

/// The sockets of each worker: queue `queues[k]` of a port goes to worker
/// `k % workers`. Every worker needs a queue on every port (it transmits
/// there), so a port needs at least as many queues as there are workers.
pub fn assign_queues(
    cfg: &Config,
    ports: &[PortPlan],
    workers: usize,
) -> Result<Vec<Vec<(PortId, u32)>>, LiveError> {
    let mut out = vec![Vec::new(); workers];
    for p in ports {
        if p.queues.len() < workers {
            return Err(cfg_err(
                cfg,
                format!("ports[{}].queues", p.port),
                format!(
                    "{} has {} queue(s) for {} workers (workers.cores); every worker needs \
                     a queue on every port: add queues (veth: numrxqueues/numtxqueues, \
                     NICs: ethtool -L) or use fewer cores",
                    p.ifname,
                    p.queues.len(),
                    workers
                ),
            ));
        }
        for (k, q) in p.queues.iter().enumerate() {
            out[k % workers].push((p.port, *q));
        }
    }
    Ok(out)
}

/// Counters a worker publishes once per batch (monotonic totals).
#[derive(Debug)]
pub struct WorkerStats {
    pub core: usize,
    pub batches: AtomicU64,
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    /// Forwarded frames dropped because the TX ring was full.
    pub tx_ring_full: AtomicU64,
    /// Frames the pipeline sent to the kernel that XDP had redirected.
    pub kernel_unreachable: AtomicU64,
    pub tx_wakeups: AtomicU64,
    pub rx_wakeups: AtomicU64,
    /// Table swaps applied.
    pub table_swaps: AtomicU64,
    pub actions: [AtomicU64; 3],
    pub drops: [AtomicU64; DropReason::COUNT],
    pub port_rx: Vec<AtomicU64>,
    pub port_tx: Vec<AtomicU64>,
    pub bytes: AtomicU64,
    pub policy_allowed: AtomicU64,
    pub policy_denied: AtomicU64,
    /// Hits per policy decision of the tables they belong to, copied by the
    /// worker every `HITS_EVERY` batches and when idle, with `try_lock`
    /// (a worker never waits for a reader).
    pub policy_hits: Mutex<(Option<Arc<Tables>>, Vec<u64>)>,
}

/// How often (in batches) a busy worker copies its policy hit counters.
const HITS_EVERY: u64 = 64;

/// A plain copy of [`WorkerStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub batches: u64,
    pub rx: u64,
    pub tx: u64,
    pub tx_ring_full: u64,
    pub kernel_unreachable: u64,
    pub tx_wakeups: u64,
    pub rx_wakeups: u64,
    pub table_swaps: u64,
    /// The pipeline's counters.
    pub counters: Counters,
}

impl StatsSnapshot {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &StatsSnapshot) {
        self.batches += o.batches;
        self.rx += o.rx;
        self.tx += o.tx;
        self.tx_ring_full += o.tx_ring_full;
        self.kernel_unreachable += o.kernel_unreachable;
        self.tx_wakeups += o.tx_wakeups;
        self.rx_wakeups += o.rx_wakeups;
        self.table_swaps += o.table_swaps;
        self.counters.add(&o.counters);
    }
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

impl WorkerStats {
    fn new(core: usize, ports: usize) -> WorkerStats {
        WorkerStats {
            core,
            batches: AtomicU64::new(0),
            rx: AtomicU64::new(0),
            tx: AtomicU64::new(0),
            tx_ring_full: AtomicU64::new(0),
            kernel_unreachable: AtomicU64::new(0),
            tx_wakeups: AtomicU64::new(0),
            rx_wakeups: AtomicU64::new(0),
            table_swaps: AtomicU64::new(0),
            actions: zeros(),
            drops: zeros(),
            port_rx: (0..ports).map(|_| AtomicU64::new(0)).collect(),
            port_tx: (0..ports).map(|_| AtomicU64::new(0)).collect(),
            bytes: AtomicU64::new(0),
            policy_allowed: AtomicU64::new(0),
            policy_denied: AtomicU64::new(0),
            policy_hits: Mutex::new((None, Vec::new())),
        }
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut c = Counters::new(self.port_rx.len());
        for (d, s) in c.actions.iter_mut().zip(&self.actions) {
            *d = l(s);
        }
        for (d, s) in c.drops.iter_mut().zip(&self.drops) {
            *d = l(s);
        }
        for (d, s) in c.port_rx.iter_mut().zip(&self.port_rx) {
            *d = l(s);
        }
        for (d, s) in c.port_tx.iter_mut().zip(&self.port_tx) {
            *d = l(s);
        }
        c.packets = c.actions.iter().sum();
        c.bytes = l(&self.bytes);
        c.policy_allowed = l(&self.policy_allowed);
        c.policy_denied = l(&self.policy_denied);
        StatsSnapshot {
            batches: l(&self.batches),
            rx: l(&self.rx),
            tx: l(&self.tx),
            tx_ring_full: l(&self.tx_ring_full),
            kernel_unreachable: l(&self.kernel_unreachable),
            tx_wakeups: l(&self.tx_wakeups),
            rx_wakeups: l(&self.rx_wakeups),
            table_swaps: l(&self.table_swaps),
            counters: c,
        }
    }
}

/// Worker-local tallies, flushed into [`WorkerStats`] once per batch.
#[derive(Debug, Default)]
struct Local {
    batches: u64,
    rx: u64,
    tx: u64,
    tx_ring_full: u64,
    kernel_unreachable: u64,
    tx_wakeups: u64,
    rx_wakeups: u64,
    table_swaps: u64,
}

fn publish(s: &WorkerStats, l: &Local, c: &Counters) {
    let st = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
    st(&s.batches, l.batches);
    st(&s.rx, l.rx);
    st(&s.tx, l.tx);
    st(&s.tx_ring_full, l.tx_ring_full);
    st(&s.kernel_unreachable, l.kernel_unreachable);
    st(&s.tx_wakeups, l.tx_wakeups);
    st(&s.rx_wakeups, l.rx_wakeups);
    st(&s.table_swaps, l.table_swaps);
    for (a, v) in s.actions.iter().zip(c.actions) {
        st(a, v);
    }
    for (a, v) in s.drops.iter().zip(c.drops) {
        st(a, v);
    }
    for (a, v) in s.port_rx.iter().zip(&c.port_rx) {
        st(a, *v);
    }
    for (a, v) in s.port_tx.iter().zip(&c.port_tx) {
        st(a, *v);
    }
    st(&s.bytes, c.bytes);
    st(&s.policy_allowed, c.policy_allowed);
    st(&s.policy_denied, c.policy_denied);
}

/// Copies the pipeline's policy hits for readers, unless one holds them.
fn publish_hits(s: &WorkerStats, p: &Pipeline) {
    if let Ok(mut g) = s.policy_hits.try_lock() {
        let (t, hits) = &mut *g;
        if !t.as_ref().is_some_and(|t| Arc::ptr_eq(t, p.tables())) {
            *t = Some(p.tables().clone());
        }
        hits.clear();
        hits.extend_from_slice(&p.counters().policy_hits);
    }
}

/// What a worker reports when it stops.
#[derive(Debug)]
pub struct WorkerReport {
    pub id: usize,
    pub core: usize,
    pub stats: StatsSnapshot,
    /// Where every UMEM frame is, after draining.
    pub accounting: Accounting,
    /// The kernel's per-socket counters.
    pub sockets: Vec<(SocketSpec, XdpStatistics)>,
    pub zerocopy: bool,
}

/// A worker's I/O: one UMEM, its free frames and its sockets.
struct WorkerIo {
    umem: Arc<Umem>,
    pool: FramePool,
    sockets: Vec<XskSocket>,
    /// Port of each socket.
    port_of: Vec<PortId>,
    /// The socket each port transmits on.
    tx_of: Vec<usize>,
}

fn bind_mode(modes: &[XskMode]) -> BindMode {
    if modes.contains(&XskMode::Copy) {
        BindMode::Copy
    } else if modes.contains(&XskMode::Zerocopy) {
        BindMode::ZeroCopy
    } else {
        BindMode::Auto
    }
}

fn open_worker_io(
    ports: &[PortPlan],
    mine: &[(PortId, u32)],
    opts: &LiveOptions,
    busy_poll: Option<BusyPoll>,
) -> Result<WorkerIo, LiveError> {
    let rings = RingSizes {
        fill: opts.ring_size,
        completion: opts.ring_size,
        rx: opts.ring_size,
        tx: opts.ring_size,
    };
    // Enough frames to fill every fill ring and every TX ring at once.
    let frames = mine.len() as u32 * (rings.fill + rings.tx);
    let (umem, tokens) = Umem::new(UmemConfig {
        frames,
        frame_size: opts.frame_size,
        hugepages: opts.hugepages,
    })
    .map_err(|source| LiveError::Xsk {
        what: "UMEM".into(),
        source,
    })?;
    let mut pool = FramePool::new(tokens);
    // With one shared UMEM all of a worker's sockets run in one mode.
    let modes: Vec<XskMode> = mine
        .iter()
        .filter_map(|(p, _)| ports.get(usize::from(*p)).map(|pp| pp.mode))
        .collect();
    let mode = bind_mode(&modes);
    let open = |mode: BindMode| -> Result<Vec<XskSocket>, LiveError> {
        let mut socks: Vec<XskSocket> = Vec::with_capacity(mine.len());
        for (p, q) in mine {
            let pp = &ports[usize::from(*p)];
            let spec = SocketSpec {
                ifname: pp.ifname.clone(),
                ifindex: pp.ifindex,
                queue: *q,
            };
            let s = XskSocket::create(&umem, &spec, rings, mode, socks.first(), busy_poll)
                .map_err(|source| LiveError::Xsk {
                    what: format!("AF_XDP socket on {} queue {q}", pp.ifname),
                    source,
                })?;
            socks.push(s);
        }
        Ok(socks)
    };
    let sockets = match open(mode) {
        Ok(s) => s,
        // Auto: the first port did zero-copy but a later one cannot share
        // it in zero-copy; everyone copies.
        Err(_) if mode == BindMode::Auto => open(BindMode::Copy)?,
        Err(e) => return Err(e),
    };
    let port_of: Vec<PortId> = mine.iter().map(|(p, _)| *p).collect();
    let tx_of = (0..ports.len())
        .map(|p| {
            port_of
                .iter()
                .position(|&x| usize::from(x) == p)
                .unwrap_or(0)
        })
        .collect();
    let mut io = WorkerIo {
        umem,
        pool: FramePool::new(Vec::new()),
        sockets,
        port_of,
        tx_of,
    };
    for s in &mut io.sockets {
        s.refill(&mut pool);
    }
    io.pool = pool;
    Ok(io)
}

struct Worker {
    id: usize,
    core: Option<core_affinity::CoreId>,
    core_num: usize,
    pipeline: Pipeline,
    io: WorkerIo,
    commands: Receiver<WorkerCommand>,
    stats: Arc<WorkerStats>,
    stop: Arc<AtomicBool>,
    batch: u32,
    busy_poll: bool,
    idle_ms: i32,
    epoch: Instant,
}

type Held = ArrayVec<(RxFrame, PortId), MAX_BATCH>;

impl Worker {
    /// One batch from socket `si`: RX, pipeline, dispatch. Returns frames
    /// received.
    #[inline]
    fn burst(
        &mut self,
        si: usize,
        held: &mut Held,
        local: &mut Local,
        tx_dirty: &mut [bool],
    ) -> u32 {
        let io = &mut self.io;
        let Some(sock) = io.sockets.get_mut(si) else {
            return 0;
        };
        sock.complete(&mut io.pool);
        sock.refill(&mut io.pool);
        if let Ok(true) = sock.kick_rx_if_needed() {
            local.rx_wakeups += 1;
        }
        let port = io.port_of.get(si).copied().unwrap_or(0);
        held.clear();
        let n = sock.rx_burst(self.batch, |f| {
            // Capacity is MAX_BATCH >= batch: never full.
            let _ = held.try_push((f, port));
        });
        if n == 0 {
            return 0;
        }
        local.rx += u64::from(n);
        local.batches += 1;
        let now = self.epoch.elapsed().as_nanos() as u64;
        let mut actions = [Action::Kernel; MAX_BATCH];
        {
            let umem = &*io.umem;
            let mut batch = Batch::new();
            for (f, p) in held.iter_mut() {
                let bytes = umem.bytes_mut(&mut f.frame, f.off, f.len);
                let _ = batch.push(bytes, *p);
            }
            self.pipeline.process(now, &mut batch);
            for (a, s) in actions.iter_mut().zip(batch.slots()) {
                *a = s.action;
            }
        }
        for ((f, _), action) in held.drain(..).zip(actions) {
            match action {
                Action::Forward(p) => {
                    let ti = io.tx_of.get(usize::from(p)).copied().unwrap_or(0);
                    match io.sockets.get_mut(ti) {
                        Some(out) => match out.tx_push(f.frame, f.off, f.len) {
                            Ok(()) => {
                                local.tx += 1;
                                if let Some(d) = tx_dirty.get_mut(ti) {
                                    *d = true;
                                }
                            }
                            Err(frame) => {
                                local.tx_ring_full += 1;
                                io.pool.push(frame);
                            }
                        },
                        None => io.pool.push(f.frame),
                    }
                }
                Action::Drop(_) => io.pool.push(f.frame),
                Action::Kernel => {
                    local.kernel_unreachable += 1;
                    io.pool.push(f.frame);
                }
            }
        }
        for (s, d) in io.sockets.iter_mut().zip(tx_dirty.iter()) {
            if *d {
                s.tx_submit();
            }
        }
        n
    }

    /// Kicks the TX rings that received frames; copy mode transmits a
    /// budget per call, so a few calls may be needed per batch.
    fn flush_tx(&mut self, local: &mut Local, tx_dirty: &mut [bool]) {
        for (s, d) in self.io.sockets.iter_mut().zip(tx_dirty.iter_mut()) {
            if !*d {
                continue;
            }
            *d = false;
            for _ in 0..16 {
                let before = s.tx_outstanding();
                if before == 0 {
                    break;
                }
                local.tx_wakeups += 1;
                match s.kick_tx() {
                    Ok(sys::Kick::Done) if s.tx_outstanding() >= before => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    }

    fn run(mut self) -> WorkerReport {
        if let Some(c) = self.core {
            core_affinity::set_for_current(c);
        }
        let mut local = Local::default();
        let mut held = Held::new();
        let nsock = self.io.sockets.len();
        let mut tx_dirty = vec![false; nsock];
        let fds: Vec<_> = self.io.sockets.iter().map(|s| s.fd()).collect();
        let mut poll = sys::PollSet::new(&fds);
        drop(fds);
        let mut stopping = false;
        let mut hits_dirty = true;
        let mut hits_at = 0u64;
        loop {
            // Control, between batches.
            while let Ok(cmd) = self.commands.try_recv() {
                match cmd {
                    WorkerCommand::SetTables(t) => {
                        self.pipeline.set_tables(t);
                        local.table_swaps += 1;
                        publish(&self.stats, &local, self.pipeline.counters());
                        publish_hits(&self.stats, &self.pipeline);
                    }
                    WorkerCommand::Stop => stopping = true,
                }
            }
            if self.stop.load(Ordering::Relaxed) {
                stopping = true;
            }
            let mut got = 0u32;
            for si in 0..nsock {
                got += self.burst(si, &mut held, &mut local, &mut tx_dirty);
            }
            self.flush_tx(&mut local, &mut tx_dirty);
            if got > 0 {
                publish(&self.stats, &local, self.pipeline.counters());
                // Bursts per round vary (one per busy socket): compare
                // distances, not multiples.
                if local.batches - hits_at >= HITS_EVERY {
                    publish_hits(&self.stats, &self.pipeline);
                    hits_at = local.batches;
                    hits_dirty = false;
                } else {
                    hits_dirty = true;
                }
                continue;
            }
            if hits_dirty {
                publish_hits(&self.stats, &self.pipeline);
                hits_dirty = false;
            }
            if stopping {
                break;
            }
            if self.busy_poll {
                for s in &mut self.io.sockets {
                    let _ = s.busy_poll();
                }
            } else {
                let _ = poll.wait(self.idle_ms);
            }
        }
        // Drain: everything queued for TX goes out, completions come back.
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            let mut outstanding = 0;
            for s in &mut self.io.sockets {
                let _ = s.kick_tx();
                s.complete(&mut self.io.pool);
                outstanding += s.tx_outstanding();
            }
            let acc = Accounting::of(&self.io.pool, 0, &self.io.sockets);
            if (outstanding == 0 && acc.in_kernel() == 0 && acc.completion == 0)
                || Instant::now() > deadline
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        publish(&self.stats, &local, self.pipeline.counters());
        publish_hits(&self.stats, &self.pipeline);
        let accounting = Accounting::of(&self.io.pool, held.len() as u32, &self.io.sockets);
        let sockets = self
            .io
            .sockets
            .iter()
            .map(|s| (s.spec().clone(), s.statistics().unwrap_or_default()))
            .collect();
        let zerocopy = self.io.sockets.iter().all(|s| s.zerocopy());
        WorkerReport {
            id: self.id,
            core: self.core_num,
            stats: self.stats.snapshot(),
            accounting,
            sockets,
            zerocopy,
        }
    }
}

struct WorkerHandle {
    thread: Option<std::thread::JoinHandle<WorkerReport>>,
    commands: Sender<WorkerCommand>,
    stats: Arc<WorkerStats>,
}

/// Everything `sluice run` reports at the end.
#[derive(Debug)]
pub struct LiveReport {
    pub workers: Vec<WorkerReport>,
    pub total: StatsSnapshot,
    pub xdp: Vec<(XdpCounter, u64)>,
    pub attached: Vec<(String, Attached)>,
}

/// The running data plane.
pub struct LiveEngine {
    program: Option<XdpProgram>,
    maps: Arc<Mutex<XdpMaps>>,
    nat: NatPorts,
    workers: Vec<WorkerHandle>,
    stop: Arc<AtomicBool>,
    ports: Vec<PortPlan>,
    attached: Vec<(String, Attached)>,
    zerocopy: bool,
    epoch: Instant,
}

impl std::fmt::Debug for LiveEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveEngine")
            .field("ports", &self.ports)
            .field("attached", &self.attached)
            .finish_non_exhaustive()
    }
}

/// Resolves the config's cores to CPU ids.
fn resolve_cores(cfg: &Config) -> Result<Vec<core_affinity::CoreId>, LiveError> {
    let avail = core_affinity::get_core_ids().unwrap_or_default();
    cfg.workers
        .cores
        .iter()
        .enumerate()
        .map(|(i, c)| {
            avail.iter().find(|a| a.id == *c).copied().ok_or_else(|| {
                cfg_err(
                    cfg,
                    format!("workers.cores[{i}]"),
                    format!(
                        "core {c} is not available to this process (have {:?})",
                        avail.iter().map(|a| a.id).collect::<Vec<_>>()
                    ),
                )
            })
        })
        .collect()
}

impl LiveEngine {
    /// Starts the live data plane for `cfg`. `pipelines` builds the
    /// pipeline of worker `w` of `n` (all sharing whatever state the caller
    /// shares, e.g. conntrack); `stop` ends the workers when set.
    pub fn start(
        cfg: &Config,
        ports: Vec<PortPlan>,
        mut pipelines: impl FnMut(usize, usize, &NatPorts) -> Pipeline,
        opts: &LiveOptions,
        stop: Arc<AtomicBool>,
    ) -> Result<LiveEngine, LiveError> {
        let cores = resolve_cores(cfg)?;
        let nw = cores.len();
        let assignment = assign_queues(cfg, &ports, nw)?;
        if !opts.ring_size.is_power_of_two() || opts.ring_size < 64 {
            return Err(cfg_err(cfg, "--ring-size", "must be a power of two >= 64"));
        }

        // XDP program and maps, filled before anything is attached.
        let (mut program, mut maps) = bpf::load()?;
        maps.sync_config(cfg)?;
        for p in &ports {
            maps.set_port(p.ifindex, p.port)?;
        }

        // Sockets, then the XSKMAP.
        let busy = cfg.workers.busy_poll.then_some(BusyPoll {
            usecs: 20,
            budget: cfg.workers.batch as u32,
        });
        let mut ios = Vec::with_capacity(nw);
        for mine in &assignment {
            ios.push(open_worker_io(&ports, mine, opts, busy)?);
        }
        let mut zerocopy = true;
        for io in &ios {
            for (s, p) in io.sockets.iter().zip(&io.port_of) {
                maps.set_socket(*p, s.spec().queue, s.fd().as_fd())?;
                zerocopy &= s.zerocopy();
            }
        }

        // Attach last: until now every frame went to the kernel.
        let pin = cfg.xdp.fail_mode == FailMode::Closed;
        if pin {
            if let Some(w) = bpf::prepare_pin_dir(&opts.pin_dir)? {
                tracing::warn!("{w}");
                eprintln!("sluice: warning: {w}");
            }
        }
        let mut attached = Vec::new();
        for p in &ports {
            let path = pin.then(|| bpf::pin_path(&opts.pin_dir, &p.ifname));
            let a = program.attach(&p.ifname, p.ifindex, cfg.xdp.attach, path.as_deref())?;
            attached.push((p.ifname.clone(), a));
        }
        register_pins(program.pins());

        let epoch = Instant::now();
        let nat = maps.nat_ports().clone();
        let mut workers = Vec::with_capacity(nw);
        for (w, (io, core)) in ios.into_iter().zip(cores).enumerate() {
            let (tx, rx) = channel::unbounded();
            let stats = Arc::new(WorkerStats::new(core.id, ports.len()));
            let worker = Worker {
                id: w,
                core: Some(core),
                core_num: core.id,
                pipeline: pipelines(w, nw, &nat),
                io,
                commands: rx,
                stats: stats.clone(),
                stop: stop.clone(),
                batch: cfg.workers.batch as u32,
                busy_poll: cfg.workers.busy_poll,
                idle_ms: opts.idle_ms,
                epoch,
            };
            let thread = std::thread::Builder::new()
                .name(format!("sluice-live-{w}"))
                .spawn(move || worker.run())
                .map_err(|e| LiveError::Worker(w, e.to_string()))?;
            workers.push(WorkerHandle {
                thread: Some(thread),
                commands: tx,
                stats,
            });
        }
        Ok(LiveEngine {
            program: Some(program),
            maps: Arc::new(Mutex::new(maps)),
            nat,
            workers,
            stop,
            ports,
            attached,
            zerocopy,
            epoch,
        })
    }

    /// The workers' clock: conntrack timestamps are nanoseconds since this.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Each worker's policy hits per decision of `tables` (a worker still
    /// on other tables shows none).
    pub fn policy_hits(&self, tables: &Arc<Tables>) -> Vec<Vec<u64>> {
        let n = tables.policy.decisions().len();
        self.workers
            .iter()
            .map(|w| {
                let mut out = vec![0u64; n];
                if let Ok(g) = w.stats.policy_hits.lock() {
                    if g.0.as_ref().is_some_and(|t| Arc::ptr_eq(t, tables)) {
                        for (o, h) in out.iter_mut().zip(&g.1) {
                            *o = *h;
                        }
                    }
                }
                out
            })
            .collect()
    }

    /// Sends new tables to every worker (applied between batches).
    pub fn set_tables(&self, tables: Arc<Tables>) {
        for w in &self.workers {
            let _ = w.commands.send(WorkerCommand::SetTables(tables.clone()));
        }
    }

    /// The XDP maps (control path: reloads, counters).
    pub fn maps(&self) -> &Arc<Mutex<XdpMaps>> {
        &self.maps
    }

    /// The masquerade-port bitmap (for the NAT code: no lock, no syscall).
    pub fn nat_ports(&self) -> &NatPorts {
        &self.nat
    }

    /// The resolved ports.
    pub fn ports(&self) -> &[PortPlan] {
        &self.ports
    }

    /// How XDP is attached on each interface.
    pub fn attached(&self) -> &[(String, Attached)] {
        &self.attached
    }

    /// Every socket runs zero-copy.
    pub fn zerocopy(&self) -> bool {
        self.zerocopy
    }

    /// Per-worker counters now.
    pub fn worker_stats(&self) -> Vec<StatsSnapshot> {
        self.workers.iter().map(|w| w.stats.snapshot()).collect()
    }

    /// A worker thread has ended (it only ends on stop, or by panicking).
    pub fn any_worker_finished(&self) -> bool {
        self.workers
            .iter()
            .any(|w| w.thread.as_ref().is_none_or(|t| t.is_finished()))
    }

    /// The XDP program's counters.
    pub fn xdp_counters(&self) -> Vec<(XdpCounter, u64)> {
        let c = self
            .maps
            .lock()
            .ok()
            .and_then(|m| m.counters().ok())
            .unwrap_or([0; XdpCounter::COUNT]);
        XdpCounter::ALL.iter().copied().zip(c).collect()
    }

    /// Detaches XDP (the kernel takes the traffic), stops and joins the
    /// workers after they drained, and reports.
    pub fn shutdown(mut self) -> Result<LiveReport, LiveError> {
        let xdp = self.xdp_counters();
        if let Some(mut p) = self.program.take() {
            p.detach_all();
        }
        register_pins(Vec::new());
        self.stop.store(true, Ordering::Relaxed);
        for w in &self.workers {
            let _ = w.commands.send(WorkerCommand::Stop);
        }
        let mut reports = Vec::new();
        let mut failed = None;
        for (i, w) in self.workers.iter_mut().enumerate() {
            if let Some(t) = w.thread.take() {
                match t.join() {
                    Ok(r) => reports.push(r),
                    Err(e) => {
                        let msg = e
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| e.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "panic".into());
                        failed.get_or_insert(LiveError::Worker(i, msg));
                    }
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let mut total = StatsSnapshot {
            counters: Counters::new(self.ports.len()),
            ..StatsSnapshot::default()
        };
        for r in &reports {
            total.add(&r.stats);
        }
        Ok(LiveReport {
            workers: reports,
            total,
            xdp,
            attached: self.attached.clone(),
        })
    }
}

impl Drop for LiveEngine {
    fn drop(&mut self) {
        if let Some(mut p) = self.program.take() {
            p.detach_all();
        }
        self.stop.store(true, Ordering::Relaxed);
        for w in &mut self.workers {
            let _ = w.commands.send(WorkerCommand::Stop);
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Pin files to remove if the process panics (see [`install_panic_hook`]).
static PINS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn register_pins(p: Vec<PathBuf>) {
    if let Ok(mut g) = PINS.lock() {
        *g = p;
    }
}

/// Makes a panic anywhere detach XDP: the hook removes the fail-closed
/// pins (so the links die with the process) and sets `stop`, so the main
/// thread shuts down (detaching) and exits; then the default hook runs.
pub fn install_panic_hook(stop: Arc<AtomicBool>) {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(g) = PINS.try_lock() {
            for p in g.iter() {
                let _ = std::fs::remove_file(p);
            }
        }
        stop.store(true, Ordering::Relaxed);
        prev(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(y: &str) -> Config {
        Config::from_yaml(y, "t.yaml", Path::new(".")).unwrap()
    }

    fn plan(port: PortId, queues: Vec<u32>) -> PortPlan {
        PortPlan {
            port,
            name: format!("p{port}"),
            ifname: format!("if{port}"),
            ifindex: u32::from(port) + 10,
            mac: [2, 0, 0, 0, 0, port as u8],
            queues,
            mode: XskMode::Auto,
        }
    }

    #[test]
    fn queues_spread_over_workers() {
        let c = cfg("ports:\n  - {name: a}\n  - {name: b}\n");
        let ports = vec![plan(0, vec![0, 1, 2, 3]), plan(1, vec![0, 1])];
        let a = assign_queues(&c, &ports, 2).unwrap();
        assert_eq!(a[0], vec![(0, 0), (0, 2), (1, 0)]);
        assert_eq!(a[1], vec![(0, 1), (0, 3), (1, 1)]);
        let e = assign_queues(&c, &ports, 3).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("ports[1].queues"), "{e}");
    }

    #[test]
    fn run_needs_interfaces() {
        let c = cfg("ports:\n  - {name: a}\n");
        let e = plan_ports(&c).unwrap_err();
        assert!(e.to_string().contains("ports[0].interface"), "{e}");
        let c = cfg("ports:\n  - {name: a, interface: no-such-if9}\n");
        let e = plan_ports(&c).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("no-such-if9"), "{e}");
        let c = cfg("ports:\n  - {name: a, interface: lo}\n");
        let p = plan_ports(&c).unwrap();
        assert_eq!(p[0].ifindex, 1);
        assert!(!p[0].queues.is_empty());
        let c = cfg("ports:\n  - {name: a, interface: lo, queues: [99]}\n");
        assert!(plan_ports(&c).is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(bind_mode(&[XskMode::Auto, XskMode::Auto]), BindMode::Auto);
        assert_eq!(bind_mode(&[XskMode::Auto, XskMode::Copy]), BindMode::Copy);
        assert_eq!(
            bind_mode(&[XskMode::Zerocopy, XskMode::Auto]),
            BindMode::ZeroCopy
        );
    }

    /// A panic anywhere removes the fail-closed pins (so the links die with
    /// the process) and asks the main loop to stop (which detaches).
    #[test]
    fn panic_hook_unpins_and_stops() {
        let dir = std::env::temp_dir().join(format!("sluice-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pin = dir.join("pin");
        std::fs::write(&pin, b"").unwrap();
        register_pins(vec![pin.clone()]);
        let stop = Arc::new(AtomicBool::new(false));
        install_panic_hook(stop.clone());
        let r = std::thread::spawn(|| panic!("worker bug (expected by this test)")).join();
        assert!(r.is_err());
        assert!(stop.load(Ordering::Relaxed));
        assert!(!pin.exists());
        register_pins(Vec::new());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn snapshot_sums() {
        let s = WorkerStats::new(0, 2);
        s.actions[0].store(3, Ordering::Relaxed);
        s.actions[2].store(1, Ordering::Relaxed);
        s.port_rx[1].store(4, Ordering::Relaxed);
        let snap = s.snapshot();
        assert_eq!(snap.counters.packets, 4);
        assert_eq!(snap.counters.port_rx, vec![0, 4]);
        let mut t = StatsSnapshot::default();
        t.add(&snap);
        t.add(&snap);
        assert_eq!(t.counters.packets, 8);
    }
}
