//! A worker's loop (see the module docs of `worker::live`): RX burst,
//! pipeline, dispatch, TX, between-batch commands, drain on stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::os::fd::OwnedFd;

use crossbeam::channel::{Receiver, Sender};

use super::jumbo::{self, Head, Held, Scratch, SendError, MAX_PACKET, NONE};
use super::sockets::WorkerIo;
use super::stats::{publish, publish_hits, Local, WorkerReport, WorkerStats, HITS_EVERY};
use crate::io::inject::KernelInjector;
use crate::io::sys::{self};
use crate::io::xsk::{Accounting, FramePool, RxFrame, Umem, XskSocket};
use crate::pipeline::{Action, Batch, Pipeline, PortId, MAX_BATCH};
use crate::tables::Tables;
use crate::wire::{self, frag::Fragments};
use crate::worker::tap::{self, Tap};

/// A message to a worker, handled between batches.
#[derive(Debug)]
pub enum WorkerCommand {
    /// Use these tables from the next batch on.
    SetTables(Arc<Tables>),
    /// A duplicate of a bound socket's descriptor, for the control thread
    /// to open a new port's sockets on this worker's UMEM.
    OwnerFd { reply: Sender<Option<OwnedFd>> },
    /// Take into service the sockets the control thread opened for a port
    /// added while running (its number may be a removed port's: its
    /// counters start over); answer when they are polled.
    AddPort {
        port: PortId,
        /// The interface's MTU (forwarded packets are checked against it).
        mtu: u32,
        sockets: Vec<XskSocket>,
        reply: Sender<()>,
    },
    /// Close the sockets of `port` (XDP is already detached from it and its
    /// XSKMAP entries removed) and take back their frames; answer when
    /// done.
    RemovePort { port: PortId, reply: Sender<()> },
    /// Start (`Some`) or stop a trace or capture.
    SetTap(Option<Arc<Tap>>),
    /// A port's interface MTU changed: forwarded packets are checked
    /// against the new one from the next batch on.
    SetMtu { port: PortId, mtu: u32 },
    /// Drain and exit.
    Stop,
}

pub(super) struct Worker {
    pub(super) id: usize,
    pub(super) core: Option<core_affinity::CoreId>,
    pub(super) core_num: usize,
    pub(super) pipeline: Pipeline,
    pub(super) io: WorkerIo,
    /// Where `ViaKernel` frames go.
    pub(super) inject: KernelInjector,
    /// Packets that arrived in several frames, while processed.
    pub(super) scratch: Scratch,
    /// The running trace or capture, if any.
    pub(super) tap: Option<Arc<Tap>>,
    pub(super) commands: Receiver<WorkerCommand>,
    pub(super) stats: Arc<WorkerStats>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) batch: u32,
    pub(super) busy_poll: bool,
    /// Nice value to take when the thread starts (`WorkerSpec::nice`).
    pub(super) nice: i32,
    pub(super) idle_ms: i32,
    pub(super) epoch: Instant,
}

/// What a round of the loop noticed about its sockets.
#[derive(Default)]
pub(super) struct Noticed {
    /// A socket whose device is gone (the first seen this round).
    gone: Option<usize>,
}

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
        noticed: &mut Noticed,
    ) -> u32 {
        let io = &mut self.io;
        let Some(sock) = io.sockets.get_mut(si) else {
            return 0;
        };
        sock.complete(&mut io.pool);
        sock.refill(&mut io.pool);
        match sock.kick_rx_if_needed() {
            Ok(true) => local.rx_wakeups += 1,
            Ok(false) => {}
            Err(e) if e.device_gone() => {
                noticed.gone.get_or_insert(si);
            }
            Err(_) => {}
        }
        let port = io.port_of.get(si).copied().unwrap_or(0);
        held.clear();
        let pool = &mut io.pool;
        let n = sock.rx_burst(self.batch, |f| {
            // Heads: at most `batch` <= MAX_BATCH; a frame given back
            // belongs to a packet marked too long (counted with it).
            if let Some(f) = held.take(f, port) {
                pool.push(f.frame);
            }
        });
        if n == 0 {
            return 0;
        }
        local.rx += u64::from(n);
        local.batches += 1;
        let mut actions = [(Action::Kernel, 0u32, 0u16); MAX_BATCH];
        let jumbos = held.multi;
        if jumbos > 0 {
            self.scratch.reserve(jumbos);
        }
        {
            let umem = &*io.umem;
            let mut batch = Batch::new();
            let Held { heads, rest, .. } = held;
            let mut bufs = self.scratch.buf.chunks_exact_mut(MAX_PACKET).zip(0u16..);
            for h in heads.iter_mut() {
                if h.parts == 0 {
                    h.slot = batch.len() as u16;
                    let bytes = umem.bytes_mut(&mut h.rx.frame, h.rx.off, h.rx.len);
                    let _ = batch.push(bytes, h.port);
                    continue;
                }
                if h.too_long {
                    continue;
                }
                let Some((buf, bi)) = bufs.next() else {
                    h.too_long = true;
                    continue;
                };
                match jumbo::gather(umem, h, rest, buf) {
                    Some(len) => {
                        h.slot = batch.len() as u16;
                        h.buf = bi;
                        let _ = batch.push(&mut buf[..len], h.port);
                    }
                    None => h.too_long = true,
                }
            }
            // A tap costs one branch per batch when off.
            let marks = self.tap.as_ref().map(|t| tap::before(t, &batch));
            // Two clock reads per batch: the pipeline's time, and the end
            // of the batch for the batch-time histogram.
            let now = self.epoch.elapsed().as_nanos() as u64;
            self.pipeline.process(now, &mut batch);
            let done = self.epoch.elapsed().as_nanos() as u64;
            local.batch_times.record(done.saturating_sub(now));
            if let (Some(t), Some(m)) = (&self.tap, marks) {
                tap::after(t, &self.pipeline, &batch, m, self.id, now);
            }
            // The length too: an ICMP error written over its packet is
            // shorter.
            for (a, s) in actions.iter_mut().zip(batch.slots()) {
                *a = (s.action, s.frame.len() as u32, s.fragment);
            }
        }
        local.multi_buffer += jumbos as u64;
        let Held { heads, rest, .. } = &mut *held;
        for h in heads.drain(..) {
            if h.slot == NONE {
                // Too long to take: its frames go back.
                local.too_long += 1;
                jumbo::free_parts(rest, &h, &mut io.pool);
                io.pool.push(h.rx.frame);
                continue;
            }
            let (action, len, frag) = actions[usize::from(h.slot)];
            if h.parts > 0 {
                let data = self.scratch.get(h.buf, len as usize);
                send_jumbo(
                    io,
                    &self.inject,
                    rest,
                    h,
                    data,
                    action,
                    frag,
                    local,
                    tx_dirty,
                );
                continue;
            }
            let f = h.rx;
            match action {
                Action::Forward(p) if frag != 0 => {
                    let ti = io.tx_of.get(usize::from(p)).copied().unwrap_or(0);
                    let mut frame = f.frame;
                    let bytes = io.umem.bytes_mut(&mut frame, f.off, len.min(f.len));
                    send_fragments(
                        &io.umem,
                        &mut io.pool,
                        io.sockets.get_mut(ti),
                        ti,
                        bytes,
                        frag,
                        local,
                        tx_dirty,
                    );
                    io.pool.push(frame);
                }
                Action::Forward(p) => {
                    let ti = io.tx_of.get(usize::from(p)).copied().unwrap_or(0);
                    match io.sockets.get_mut(ti) {
                        Some(out) => match out.tx_push(f.frame, f.off, len.min(f.len)) {
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
                        None => {
                            local.tx_no_socket += 1;
                            io.pool.push(f.frame);
                        }
                    }
                }
                Action::Drop(_) => io.pool.push(f.frame),
                Action::ViaKernel => {
                    let mut frame = f.frame;
                    match self
                        .inject
                        .send(io.umem.bytes_mut(&mut frame, f.off, len.min(f.len)))
                    {
                        Ok(()) => local.kernel_sent += 1,
                        Err(_) => local.kernel_send_failed += 1,
                    }
                    io.pool.push(frame);
                }
                Action::Kernel => {
                    local.kernel_unreachable += 1;
                    io.pool.push(f.frame);
                }
            }
        }
        // Frames of parts no packet took (none in practice).
        for f in rest.drain(..).flatten() {
            io.pool.push(f.frame);
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
    fn flush_tx(&mut self, local: &mut Local, tx_dirty: &mut [bool], noticed: &mut Noticed) {
        for (si, (s, d)) in self
            .io
            .sockets
            .iter_mut()
            .zip(tx_dirty.iter_mut())
            .enumerate()
        {
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
                    Err(e) => {
                        if e.device_gone() {
                            noticed.gone.get_or_insert(si);
                        }
                        break;
                    }
                }
            }
        }
    }

    /// The poll set over the active sockets.
    fn poll_set(&self) -> sys::PollSet {
        let fds: Vec<_> = self.io.sockets.iter().map(|s| s.fd()).collect();
        sys::PollSet::new(&fds)
    }

    pub(super) fn run(mut self) -> WorkerReport {
        if let Some(c) = self.core {
            core_affinity::set_for_current(c);
        }
        if self.nice != 0 {
            if let Err(e) = sys::set_thread_nice(self.nice) {
                // Not fatal: the worker runs, and overload may cost more.
                let msg = format!(
                    "worker {}: cannot take nice {} ({e}); under overload the kernel's \
                     receive work on core {} competes with the worker as an equal",
                    self.id, self.nice, self.core_num
                );
                tracing::warn!("{msg}");
                eprintln!("sluice: warning: {msg}");
            }
        }
        let mut local = Local::default();
        let mut held = Held::new();
        let mut nsock = self.io.sockets.len();
        let mut tx_dirty = vec![false; nsock];
        let mut poll = self.poll_set();
        let mut stopping = false;
        let mut hits_dirty = true;
        let mut hits_at = 0u64;
        // Port removals to answer once their sockets are closed.
        let mut removals: Vec<(PortId, Sender<()>)> = Vec::new();
        let mut noticed = Noticed::default();
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
                    WorkerCommand::OwnerFd { reply } => {
                        let _ = reply.send(self.io.owner_fd());
                    }
                    WorkerCommand::AddPort {
                        port,
                        mtu,
                        sockets,
                        reply,
                    } => {
                        self.io.adopt(port, sockets);
                        self.pipeline.reset_port_counters(port);
                        self.pipeline.set_port_mtu(port, mtu);
                        let _ = reply.send(());
                    }
                    WorkerCommand::RemovePort { port, reply } => {
                        self.io.remove_port(port, Instant::now());
                        removals.push((port, reply));
                    }
                    WorkerCommand::SetTap(t) => self.tap = t,
                    WorkerCommand::SetMtu { port, mtu } => self.pipeline.set_port_mtu(port, mtu),
                    WorkerCommand::Stop => stopping = true,
                }
            }
            if let Some(si) = noticed.gone.take() {
                // Its device was deleted: stop using it; the control
                // thread sees the interface gone and removes the port.
                if self.io.retire(si, Instant::now()).is_some() {
                    local.sockets_gone += 1;
                }
            }
            if !self.io.settled() {
                local.frames_reclaimed += u64::from(self.io.service_closing(Instant::now(), false));
            }
            if !removals.is_empty() {
                let io = &self.io;
                removals.retain(|(p, reply)| {
                    let busy = io.has_port(*p);
                    if !busy {
                        let _ = reply.send(());
                    }
                    busy
                });
            }
            if self.io.changed {
                self.io.changed = false;
                nsock = self.io.sockets.len();
                tx_dirty.clear();
                tx_dirty.resize(nsock, false);
                poll = self.poll_set();
                publish(&self.stats, &local, self.pipeline.counters());
            }
            if self.stop.load(Ordering::Relaxed) {
                stopping = true;
            }
            let mut got = 0u32;
            for si in 0..nsock {
                got += self.burst(si, &mut held, &mut local, &mut tx_dirty, &mut noticed);
            }
            self.flush_tx(&mut local, &mut tx_dirty, &mut noticed);
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
                for (si, s) in self.io.sockets.iter_mut().enumerate() {
                    if let Err(e) = s.busy_poll() {
                        if e.device_gone() {
                            noticed.gone.get_or_insert(si);
                        }
                    }
                }
            } else if poll.wait(self.idle_ms).is_ok() {
                if let Some(si) = poll.failed().next() {
                    noticed.gone.get_or_insert(si);
                }
            }
        }
        // Sockets still closing close now (XDP is detached everywhere).
        let t0 = Instant::now();
        while !self.io.settled() && t0.elapsed() < Duration::from_millis(500) {
            local.frames_reclaimed += u64::from(self.io.service_closing(Instant::now(), false));
            std::thread::sleep(Duration::from_millis(1));
        }
        local.frames_reclaimed += u64::from(self.io.service_closing(Instant::now(), true));
        for (_, reply) in removals {
            let _ = reply.send(());
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

/// Sends the IPv4 packet `src` as fragments for `mtu` out of socket `ti`
/// (`out`): each fragment is written into a free frame of the pool and
/// queued. Fragments that find no free frame or TX slot are counted as
/// `tx_ring_full` (the rest still go: the receiver's reassembly times
/// out, as after any loss).
#[cold]
#[allow(clippy::too_many_arguments)] // The worker's parts, split for the borrow checker.
fn send_fragments(
    umem: &Umem,
    pool: &mut FramePool,
    out: Option<&mut XskSocket>,
    ti: usize,
    src: &mut [u8],
    mtu: u16,
    local: &mut Local,
    tx_dirty: &mut [bool],
) {
    let Some(out) = out else {
        local.tx_no_socket += 1;
        return;
    };
    let plan = wire::parse(src)
        .ok()
        .and_then(|p| Fragments::new(src, p.l3 as usize, p.end as usize, usize::from(mtu)));
    let Some(mut plan) = plan else {
        local.tx_ring_full += 1;
        return;
    };
    for _ in 0..plan.count() {
        let Some(mut piece) = pool.pop() else {
            local.tx_ring_full += 1;
            continue;
        };
        let room = umem.bytes_mut(&mut piece, 0, umem.frame_size());
        let Some(n) = plan.write_next(src, room) else {
            pool.push(piece);
            break;
        };
        match out.tx_push(piece, 0, n as u32) {
            Ok(()) => {
                local.tx += 1;
                if let Some(d) = tx_dirty.get_mut(ti) {
                    *d = true;
                }
            }
            Err(piece) => {
                local.tx_ring_full += 1;
                pool.push(piece);
            }
        }
    }
}

/// Dispatches a packet that arrived in several frames, processed in the
/// scratch buffer `data`: sent in its own frames (several, marked
/// "continues"), as fragments, or through the kernel; its frames go back
/// to the pool otherwise.
#[cold]
#[allow(clippy::too_many_arguments)] // The worker's parts, split for the borrow checker.
fn send_jumbo(
    io: &mut WorkerIo,
    inject: &KernelInjector,
    rest: &mut [Option<RxFrame>],
    h: Head,
    data: &mut [u8],
    action: Action,
    frag: u16,
    local: &mut Local,
    tx_dirty: &mut [bool],
) {
    let give_back = |rest: &mut [Option<RxFrame>], h: Head, pool: &mut FramePool| {
        jumbo::free_parts(rest, &h, pool);
        pool.push(h.rx.frame);
    };
    match action {
        Action::Forward(p) => {
            let ti = io.tx_of.get(usize::from(p)).copied().unwrap_or(0);
            let Some(out) = io.sockets.get_mut(ti) else {
                local.tx_no_socket += 1;
                give_back(rest, h, &mut io.pool);
                return;
            };
            if frag != 0 {
                send_fragments(
                    &io.umem,
                    &mut io.pool,
                    Some(out),
                    ti,
                    data,
                    frag,
                    local,
                    tx_dirty,
                );
                give_back(rest, h, &mut io.pool);
                return;
            }
            match jumbo::send(rest, &io.umem, &mut io.pool, out, h, data) {
                Ok(_) => {
                    local.tx += 1;
                    if let Some(d) = tx_dirty.get_mut(ti) {
                        *d = true;
                    }
                }
                Err(SendError::RingFull) => local.tx_ring_full += 1,
                Err(SendError::TooLong) => local.too_long += 1,
            }
        }
        Action::ViaKernel => {
            match inject.send(data) {
                Ok(()) => local.kernel_sent += 1,
                Err(_) => local.kernel_send_failed += 1,
            }
            give_back(rest, h, &mut io.pool);
        }
        Action::Kernel => {
            local.kernel_unreachable += 1;
            give_back(rest, h, &mut io.pool);
        }
        Action::Drop(_) => give_back(rest, h, &mut io.pool),
    }
}
