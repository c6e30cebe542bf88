//! The running data plane: [`LiveEngine`] loads and attaches XDP, starts
//! the workers and stops them; fail-closed pins and the panic hook.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Sender};

use super::plan::{
    assign_queues, check_mtus, plan_err, resolve_cores, LiveError, LiveOptions, PortPlan,
};
use super::sockets::{open_worker_io, start_reaper, SocketFactory};
use super::stats::{StatsSnapshot, WorkerReport, WorkerStats};
use super::worker::{Worker, WorkerCommand};
use crate::io::bpf::{
    self, AttachMode, Attached, FailMode, NatPorts, XdpCounter, XdpMaps, XdpProgram,
};
use crate::io::inject::KernelInjector;
use crate::io::xsk::BusyPoll;
use crate::pipeline::{Counters, Pipeline, PortId};
use crate::state::{build, NodeState};
use crate::tables::Tables;

pub(super) struct WorkerHandle {
    thread: Option<std::thread::JoinHandle<WorkerReport>>,
    commands: Sender<WorkerCommand>,
    stats: Arc<WorkerStats>,
    /// Opens sockets on the worker's UMEM for ports added while running.
    factory: SocketFactory,
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
    /// How ports added while running are attached.
    attach: AttachMode,
    /// Where fail-closed links are pinned (`None`: fail open).
    pin_dir: Option<PathBuf>,
    frame_size: u32,
    /// The workers' UMEMs carry packets over several frames.
    multi_buffer: bool,
    /// Closes the sockets of removed ports off the workers' threads.
    reaper: Option<std::thread::JoinHandle<()>>,
}

/// How long the control thread waits for the workers to open or close a
/// port's sockets.
const WORKER_ANSWER: Duration = Duration::from_secs(5);

impl std::fmt::Debug for LiveEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveEngine")
            .field("ports", &self.ports)
            .field("attached", &self.attached)
            .finish_non_exhaustive()
    }
}

impl LiveEngine {
    /// Starts the live data plane for `state`. `pipelines` builds the
    /// pipeline of worker `w` of `n` (all sharing whatever state the caller
    /// shares, e.g. conntrack); `stop` ends the workers when set.
    pub fn start(
        state: &NodeState,
        ports: Vec<PortPlan>,
        mut pipelines: impl FnMut(usize, usize, &NatPorts) -> Pipeline,
        opts: &LiveOptions,
        stop: Arc<AtomicBool>,
    ) -> Result<LiveEngine, LiveError> {
        let cores = resolve_cores(state)?;
        let nw = cores.len();
        let assignment = assign_queues(state, &ports, nw)?;
        // Optimistic (multi-buffer) until the sockets say what they got.
        check_mtus(state, &ports, opts.frame_size, true)?;
        if !opts.ring_size.is_power_of_two() || opts.ring_size < 64 {
            return Err(plan_err(
                state,
                "--ring-size",
                "must be a power of two >= 64",
            ));
        }

        // XDP program and maps, filled before anything is attached.
        let (mut program, mut maps) = bpf::load()?;
        maps.sync(&build::xdp_contents(state))?;
        for p in &ports {
            maps.set_port(p.ifindex, p.port)?;
        }

        // Sockets, then the XSKMAP.
        let busy = state.workers.busy_poll.then_some(BusyPoll {
            usecs: 20,
            budget: state.workers.batch as u32,
        });
        let mut ios = Vec::with_capacity(nw);
        for mine in &assignment {
            ios.push(open_worker_io(&ports, mine, opts, busy)?);
        }
        let multi_buffer = ios.iter().all(|io| io.umem.multi_buffer());
        check_mtus(state, &ports, opts.frame_size, multi_buffer)?;
        let mut zerocopy = true;
        for io in &ios {
            for (s, p) in io.sockets.iter().zip(&io.port_of) {
                maps.set_socket(*p, s.spec().queue, s.fd().as_fd())?;
                zerocopy &= s.zerocopy();
            }
        }

        // Attach last: until now every frame went to the kernel.
        let pin = state.xdp.fail_mode == FailMode::Closed;
        if pin {
            if let Some(w) = bpf::prepare_pin_dir(&opts.pin_dir)? {
                tracing::warn!("{w}");
                eprintln!("sluice: warning: {w}");
            }
        }
        let mut attached = Vec::new();
        for p in &ports {
            let path = pin.then(|| bpf::pin_path(&opts.pin_dir, &p.ifname));
            let a = program.attach(&p.ifname, p.ifindex, state.xdp.attach, path.as_deref())?;
            attached.push((p.ifname.clone(), a));
        }
        register_pins(program.pins());

        let epoch = Instant::now();
        let nat = maps.nat_ports().clone();
        let (reaper, reaper_thread) =
            start_reaper().map_err(|e| LiveError::Worker(0, format!("reaper thread: {e}")))?;
        let mut workers = Vec::with_capacity(nw);
        for (w, (mut io, core)) in ios.into_iter().zip(cores).enumerate() {
            let factory = io.factory();
            let (inject, why) = KernelInjector::open();
            for msg in why {
                tracing::warn!("{msg}: frames for the kernel to resolve will be counted as failed");
            }
            let (tx, rx) = channel::unbounded();
            let (done_tx, done_rx) = channel::unbounded();
            io.reaper = Some((reaper.clone(), done_tx, done_rx));
            // Counters for every port number a port may take while running.
            let stats = Arc::new(WorkerStats::new(core.id, bpf::MAX_PORTS as usize));
            let worker = Worker {
                id: w,
                core: Some(core),
                core_num: core.id,
                pipeline: pipelines(w, nw, &nat),
                io,
                inject,
                scratch: Default::default(),
                tap: None,
                commands: rx,
                stats: stats.clone(),
                stop: stop.clone(),
                batch: state.workers.batch as u32,
                busy_poll: state.workers.busy_poll,
                nice: state.workers.nice,
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
                factory,
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
            attach: state.xdp.attach,
            pin_dir: pin.then(|| opts.pin_dir.clone()),
            frame_size: opts.frame_size,
            multi_buffer,
            reaper: Some(reaper_thread),
        })
    }

    /// Adds a port while running: every worker opens sockets on its share
    /// of the interface's queues (queue `k` to worker `k % workers`, as at
    /// start) over its UMEM, the XDP maps learn the interface and the
    /// sockets, and the program is attached to the interface. Other ports
    /// keep forwarding throughout. On failure nothing of the port stays.
    /// The caller swaps in tables that route to the port afterwards.
    pub fn add_port(&mut self, plan: PortPlan) -> Result<(), LiveError> {
        let nw = self.workers.len();
        let gone = |msg: String| LiveError::Port {
            name: plan.name.clone(),
            msg,
        };
        if self
            .ports
            .iter()
            .any(|p| p.port == plan.port || p.name == plan.name)
        {
            return Err(gone(format!("port number {} is in use", plan.port)));
        }
        if let Some(o) = self.ports.iter().find(|p| p.ifindex == plan.ifindex) {
            return Err(gone(format!("{} is already port {}", plan.ifname, o.name)));
        }
        if u32::from(plan.port) >= bpf::MAX_PORTS {
            return Err(gone(format!(
                "the XDP program handles {} ports",
                bpf::MAX_PORTS
            )));
        }
        if plan.queues.len() < nw {
            return Err(gone(format!(
                "{} has {} queue(s) for {nw} workers; every worker needs a queue on every port",
                plan.ifname,
                plan.queues.len()
            )));
        }
        let need = plan.mtu.saturating_add(super::plan::LINK_OVERHEAD);
        let limit = if self.multi_buffer {
            super::jumbo::MAX_PACKET as u32
        } else {
            self.frame_size
        };
        if need > limit {
            return Err(gone(format!(
                "{} has MTU {}: its frames (up to {need} bytes) exceed the {limit} bytes sluice \
                 takes in one packet ({})",
                plan.ifname,
                plan.mtu,
                if self.multi_buffer {
                    "multi-buffer"
                } else {
                    "one UMEM frame: this kernel or driver refused AF_XDP multi-buffer"
                }
            )));
        }
        self.maps_locked()?.set_port(plan.ifindex, plan.port)?;
        // Sockets, opened here on the control thread: binding one takes
        // the kernel's RTNL lock, which under pod churn can hold a worker
        // for milliseconds (long enough for TCP tail-loss probes on the
        // streams it forwards). The workers only fill and poll them.
        let mut per_worker = Vec::with_capacity(nw);
        let mut fds = Vec::new();
        let mut failed = None;
        for (w, h) in self.workers.iter().enumerate() {
            let queues: Vec<u32> = plan
                .queues
                .iter()
                .enumerate()
                .filter(|(k, _)| k % nw == w)
                .map(|(_, q)| *q)
                .collect();
            let (tx, rx) = channel::bounded(1);
            let _ = h.commands.send(WorkerCommand::OwnerFd { reply: tx });
            let owner = match rx.recv_timeout(WORKER_ANSWER) {
                Ok(o) => o,
                Err(_) => {
                    failed = Some(LiveError::Worker(w, "did not answer".into()));
                    break;
                }
            };
            match h
                .factory
                .open(&plan, &queues, owner.as_ref().map(|o| o.as_fd()))
            {
                Ok((socks, f)) => {
                    per_worker.push(socks);
                    fds.extend(f);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if failed.is_none() {
            // Never in the XSKMAP or filled until here.
            let mut answers = Vec::with_capacity(nw);
            for (h, sockets) in self.workers.iter().zip(per_worker) {
                let (tx, rx) = channel::bounded(1);
                let _ = h.commands.send(WorkerCommand::AddPort {
                    port: plan.port,
                    mtu: plan.mtu,
                    sockets,
                    reply: tx,
                });
                answers.push(rx);
            }
            for (w, rx) in answers.into_iter().enumerate() {
                if rx.recv_timeout(WORKER_ANSWER).is_err() {
                    failed.get_or_insert(LiveError::Worker(w, "did not answer".into()));
                }
            }
        }
        let result = match failed {
            Some(e) => Err(e),
            None => self.attach_port(&plan, &fds),
        };
        drop(fds);
        if let Err(e) = result {
            self.release_port(&plan);
            return Err(gone(e.to_string()));
        }
        self.ports.push(plan);
        Ok(())
    }

    fn maps_locked(&self) -> Result<std::sync::MutexGuard<'_, XdpMaps>, LiveError> {
        self.maps
            .lock()
            .map_err(|_| LiveError::Worker(0, "XDP maps lock poisoned".into()))
    }

    /// Points the XSKMAP at the port's sockets and attaches XDP.
    fn attach_port(
        &mut self,
        plan: &PortPlan,
        fds: &[(u32, std::os::fd::OwnedFd)],
    ) -> Result<(), LiveError> {
        {
            let mut maps = self.maps_locked()?;
            for (q, fd) in fds {
                maps.set_socket(plan.port, *q, fd.as_fd())?;
            }
        }
        let path = self
            .pin_dir
            .as_ref()
            .map(|d| bpf::pin_path(d, &plan.ifname));
        let program = self
            .program
            .as_mut()
            .ok_or_else(|| LiveError::Worker(0, "XDP program unloaded".into()))?;
        let a = program.attach(&plan.ifname, plan.ifindex, self.attach, path.as_deref())?;
        register_pins(program.pins());
        self.attached.push((plan.ifname.clone(), a));
        Ok(())
    }

    /// Undoes whatever of `plan` is in place: XDP detached (the kernel
    /// takes the interface's traffic), maps cleared, then every worker
    /// closes its sockets on it and takes their frames back (waited for).
    fn release_port(&mut self, plan: &PortPlan) {
        if let Some(p) = self.program.as_mut() {
            p.detach(&plan.ifname);
            register_pins(p.pins());
        }
        self.attached.retain(|(i, _)| *i != plan.ifname);
        if let Ok(mut maps) = self.maps.lock() {
            for q in &plan.queues {
                let _ = maps.clear_socket(plan.port, *q);
            }
            let _ = maps.remove_port(plan.ifindex);
        }
        let answers: Vec<_> = self
            .workers
            .iter()
            .map(|h| {
                let (tx, rx) = channel::bounded(1);
                let _ = h.commands.send(WorkerCommand::RemovePort {
                    port: plan.port,
                    reply: tx,
                });
                rx
            })
            .collect();
        for rx in answers {
            let _ = rx.recv_timeout(WORKER_ANSWER);
        }
    }

    /// Removes port `port` while running: XDP detached first (the kernel
    /// takes the traffic), its maps entries and pin removed, then the
    /// workers close its sockets and take back every frame they held.
    /// Returns the removed port's plan (`None`: no such port). The caller
    /// swaps in tables that no longer route to it first.
    pub fn remove_port(&mut self, port: PortId) -> Option<PortPlan> {
        let i = self.ports.iter().position(|p| p.port == port)?;
        let plan = self.ports.remove(i);
        self.release_port(&plan);
        Some(plan)
    }

    /// The workers' clock: conntrack timestamps are nanoseconds since this.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Each worker's policy hits and pending-walk hits
    /// (`Counters::policy_hits`, `staged_hits`) per decision of `tables`
    /// (a worker still on other tables shows none).
    pub fn policy_hits(&self, tables: &Arc<Tables>) -> Vec<(Vec<u64>, Vec<u64>)> {
        let n = tables.policy.decisions().len();
        let ns = tables.policy.staged().map_or(0, |_| n);
        self.workers
            .iter()
            .map(|w| {
                let (mut out, mut staged) = (vec![0u64; n], vec![0u64; ns]);
                if let Ok(g) = w.stats.policy_hits.lock() {
                    if g.tables.as_ref().is_some_and(|t| Arc::ptr_eq(t, tables)) {
                        for (o, h) in out.iter_mut().zip(&g.policy) {
                            *o = *h;
                        }
                        for (o, h) in staged.iter_mut().zip(&g.staged) {
                            *o = *h;
                        }
                    }
                }
                (out, staged)
            })
            .collect()
    }

    /// Sends new tables to every worker (applied between batches).
    pub fn set_tables(&self, tables: Arc<Tables>) {
        for w in &self.workers {
            let _ = w.commands.send(WorkerCommand::SetTables(tables.clone()));
        }
    }

    /// Follows a port's new interface MTU: recorded in its plan and sent
    /// to every worker's MTU stage. An MTU whose frames no longer fit a
    /// UMEM frame is an error (the kernel drops the larger frames, counted
    /// only in the sockets' `rx_dropped`): the MTU is still followed for
    /// what is forwarded out of the port.
    pub fn set_port_mtu(&mut self, port: PortId, mtu: u32) -> Result<(), String> {
        let Some(p) = self.ports.iter_mut().find(|p| p.port == port) else {
            return Ok(());
        };
        p.mtu = mtu;
        for w in &self.workers {
            let _ = w.commands.send(WorkerCommand::SetMtu { port, mtu });
        }
        let need = mtu.saturating_add(super::plan::LINK_OVERHEAD);
        let limit = if self.multi_buffer {
            super::jumbo::MAX_PACKET as u32
        } else {
            self.frame_size
        };
        if need > limit {
            return Err(format!(
                "{} has MTU {mtu} now: its frames (up to {need} bytes) exceed the {limit} bytes \
                 sluice takes in one packet and larger ones are dropped by the kernel \
                 (rx_dropped); lower the MTU",
                p.ifname
            ));
        }
        Ok(())
    }

    /// Starts (`Some`) or stops a trace or capture on every worker.
    pub fn set_tap(&self, tap: Option<Arc<crate::worker::tap::Tap>>) {
        for w in &self.workers {
            let _ = w.commands.send(WorkerCommand::SetTap(tap.clone()));
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

    /// Interfaces where `xdp.attach: auto` fell back to generic XDP, with
    /// why native attachment failed.
    pub fn xdp_fallbacks(&self) -> Vec<(String, String)> {
        self.program
            .as_ref()
            .map(|p| p.fallbacks().to_vec())
            .unwrap_or_default()
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
        if let Some(t) = self.reaper.take() {
            let _ = t.join();
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let mut total = StatsSnapshot {
            counters: Counters::new(bpf::MAX_PORTS as usize),
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

pub(super) fn register_pins(p: Vec<PathBuf>) {
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
}
