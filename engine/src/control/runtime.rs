//! The running `sluice run`'s control plane: answers `sluice ctl` requests
//! and metrics scrapes from the live engine's published counters, and
//! reloads the config (SIGHUP or `ctl reload`).
//!
//! Everything here runs on the main thread, between the workers' batches
//! and never inside them. A reload is: the new file's desired state, its
//! [`StateDiff`] from the running one (refused, naming them, where it
//! changes what needs a restart), the state built aside (tables and the
//! compiled policy), and only a complete, valid set of tables handed to the
//! workers (each swaps it in between two batches). A bad file is rejected
//! with its error and the running tables stay.
//!
//! Ports come and go the same way (`ctl port add`/`remove`, a reload whose
//! `ports` changed, an interface deleted under sluice): see
//! [`super::ports`] for their numbers and [`Runtime::apply`] for the order
//! things change in.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::ctfilter::{expired, CtFilter};
use super::explain::{self, Query};
use super::felix::FelixRecord;
use super::metrics::{self, WorkerView};
use super::ports::{merge, AddedPort, PortChanges, PortNumbers};
use super::tap::{TapRequest, TapSession};
use crate::io::sys;
use crate::pipeline::{DropReason, PortId};
use crate::sources::config::Config;
use crate::sources::felix;
use crate::sources::kernel::{self, KernelView, MergeReport, Update};
use crate::state::{build, NodeState, StateDiff};
use crate::tables::conntrack::Conntrack;
use crate::tables::Tables;
use crate::wire::{self, Mac};
use crate::worker::live::{plan_port, LiveEngine, PortPlan, StatsSnapshot};

/// How often the control loop looks for interfaces deleted under sluice.
pub const VANISHED_EVERY: Duration = Duration::from_millis(100);

/// What a reload from `old` to `new` (whose desired states differ by
/// `diff`) cannot apply without a restart: the state's restart-only
/// differences ([`StateDiff::restart_only`]:
/// ports, workers, XDP settings, the connection table's size, masquerade
/// addresses) and the process settings beside it (metrics listener,
/// control socket). A reload that changes one is rejected, naming it.
pub fn restart_only_changes(old: &Config, new: &Config, diff: &StateDiff) -> Vec<&'static str> {
    let mut out = diff.restart_only();
    let d = |x: &dyn std::fmt::Debug| format!("{x:?}");
    if d(&old.metrics) != d(&new.metrics) {
        out.push("metrics");
    }
    if d(&old.control) != d(&new.control) {
        out.push("control");
    }
    if d(&old.felix) != d(&new.felix) {
        out.push("felix");
    }
    out
}

/// A new config checked and built aside, ready to apply.
#[derive(Debug)]
pub struct Prepared {
    pub cfg: Config,
    pub numbers: PortNumbers,
    /// The state with ports at their numbers.
    pub state: NodeState,
    pub tables: Tables,
    pub macs: Vec<Mac>,
    pub changes: PortChanges,
    /// The ports coming up (added or rebound), resolved on this machine.
    pub plans: Vec<PortPlan>,
}

/// Checks `new` against the running `cur` (numbered by `numbers`, with
/// MACs `macs` by number), resolves the ports it brings up (`down`: ports
/// without sockets since their interface vanished, brought up again if it
/// is back) and builds its tables, with the `mirror`ed kernel state merged
/// in when the mirror runs and the Felix model's contribution (`felix`)
/// added. Nothing running is touched.
pub fn prepare(
    cur: &Config,
    numbers: &PortNumbers,
    macs: &[Mac],
    down: &[String],
    new: Config,
    mirror: Option<&KernelView>,
    felix: Option<&FelixRecord>,
) -> Result<Prepared, String> {
    let (old_s, new_s) = (cur.state(), new.state());
    let diff = StateDiff::between(&old_s, &new_s);
    let changed = restart_only_changes(cur, &new, &diff);
    if !changed.is_empty() {
        return Err(format!(
            "{}: {} changed; these need a restart (the running config stays)",
            new.source,
            changed.join(", ")
        ));
    }
    let mut changes = PortChanges::of(&old_s, &new_s, &diff);
    for d in down {
        let back = new_s
            .ports
            .iter()
            .find(|p| p.name == *d)
            .and_then(|p| p.interface.as_deref())
            .is_some_and(|i| sys::if_nametoindex(i).is_ok());
        if back && !changes.up.contains(d) && !changes.rebind.contains(d) {
            changes.up.push(d.clone());
        }
    }
    let new_numbers = numbers.renumber(new_s.ports.iter().map(|p| p.name.as_str()));
    if new_numbers.len() > crate::io::bpf::MAX_PORTS as usize {
        return Err(format!(
            "{}: ports: the XDP program handles port numbers 0..{}",
            new.source,
            crate::io::bpf::MAX_PORTS
        ));
    }
    let state = new_numbers.place(&new_s);
    let state = match mirror {
        Some(v) => kernel::merge(&state, v).0,
        None => state,
    };
    let state = with_felix_ref(felix, state);
    let mut plans = Vec::new();
    for name in changes.up.iter().chain(&changes.rebind) {
        let Some(n) = new_numbers.of(name) else {
            continue;
        };
        let spec = &state.ports[usize::from(n)];
        let plan =
            plan_port(&new.source, &format!("port {name}"), n, spec).map_err(|e| e.to_string())?;
        plans.push(plan);
    }
    let new_macs: Vec<Mac> = (0..new_numbers.len() as u16)
        .map(|n| {
            let Some(name) = new_numbers.name(n) else {
                return [0; 6];
            };
            plans
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.mac)
                .or_else(|| {
                    numbers
                        .of(name)
                        .and_then(|o| macs.get(usize::from(o)).copied())
                })
                .unwrap_or([0; 6])
        })
        .collect();
    let tables = build::tables(&state, &new_macs).map_err(|e| e.to_string())?;
    Ok(Prepared {
        cfg: new,
        numbers: new_numbers,
        state,
        tables,
        macs: new_macs,
        changes,
        plans,
    })
}

/// Ports added, removed and vanished while running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortEvents {
    pub added: u64,
    pub removed: u64,
    /// Removed because their interface was deleted under sluice.
    pub vanished: u64,
    /// Interface MTU changes followed.
    pub mtu_changes: u64,
}

/// The live engine's control state.
#[derive(Debug)]
pub struct Runtime {
    pub config_path: PathBuf,
    /// The config running: the file's, minus ports removed and plus ports
    /// added with `ctl port` (see [`super::ports`]).
    pub cfg: Config,
    /// The config file as last loaded.
    pub file: Config,
    /// Each port's number.
    pub numbers: PortNumbers,
    /// Ports added with `ctl port add`.
    pub added: Vec<AddedPort>,
    /// Ports of the file removed with `ctl port remove`.
    pub removed: Vec<String>,
    /// Ports attached for Felix's workload endpoints
    /// ([`super::felix_ports`]).
    pub felix_ports: Vec<AddedPort>,
    /// Ports of the file whose interface vanished: configured, without
    /// sockets; a reload brings them up again once the interface is back.
    pub down: Vec<String>,
    pub port_events: PortEvents,
    last_vanished_check: Instant,
    /// Each port's MAC, by number.
    pub macs: Vec<Mac>,
    pub tables: Arc<Tables>,
    pub ct: Arc<Conntrack>,
    /// Successful and rejected reloads.
    pub reloads: (u64, u64),
    pub started: Instant,
    /// The counters as they were at the last `ctl stats --reset`: `ctl
    /// stats` shows what came since (Prometheus counters never reset).
    pub baseline: Option<Baseline>,
    /// The kernel mirror's view and record, when it runs.
    pub kernel: Option<KernelMirror>,
    /// The running trace or capture (its id), and the last id given.
    pub tap: Option<u64>,
    pub tap_ids: u64,
    /// The Felix socket's record, when the config has a `felix` section.
    pub felix: Option<FelixRecord>,
}

/// The kernel mirror as the control thread keeps it.
#[derive(Debug, Default)]
pub struct KernelMirror {
    pub view: KernelView,
    pub report: MergeReport,
    /// Updates received, messages they carried, unparsable messages,
    /// re-dumps after a notification overflow.
    pub updates: u64,
    pub events: u64,
    pub malformed: u64,
    pub resyncs: u64,
    /// Updates that changed the data plane (a table swap each).
    pub swaps: u64,
    /// From the first change of an update read to its tables swapped in,
    /// ms: the last and the worst.
    pub last_ms: Option<f64>,
    pub max_ms: f64,
    /// Updates whose state could not be built (the tables stayed).
    pub failed: u64,
    pub last_error: Option<String>,
}

/// Readings taken at a counter reset.
#[derive(Debug)]
pub struct Baseline {
    pub workers: Vec<StatsSnapshot>,
    pub total: StatsSnapshot,
    pub xdp: Vec<u64>,
    pub at: Instant,
}

fn totals(engine: &LiveEngine, ports: usize) -> (Vec<StatsSnapshot>, StatsSnapshot) {
    let per = engine.worker_stats();
    let mut t = StatsSnapshot {
        counters: crate::pipeline::Counters::new(ports),
        ..StatsSnapshot::default()
    };
    for s in &per {
        t.add(s);
    }
    (per, t)
}

/// `s` with the last Felix model's contribution, if there is one.
fn with_felix_ref(f: Option<&FelixRecord>, s: NodeState) -> NodeState {
    match f {
        Some(f) => f.overlay(&s),
        None => s,
    }
}

/// `s` with the last Felix model's contribution, if there is one.
fn with_felix(f: &Option<FelixRecord>, s: NodeState) -> NodeState {
    match f {
        Some(f) => f.overlay(&s),
        None => s,
    }
}

impl Runtime {
    /// The control state of an engine started from `cfg` (ports numbered
    /// in the config's order, `macs` by number).
    pub fn new(
        config_path: PathBuf,
        cfg: Config,
        macs: Vec<Mac>,
        tables: Arc<Tables>,
        ct: Arc<Conntrack>,
    ) -> Runtime {
        Runtime {
            config_path,
            numbers: PortNumbers::dense(&cfg.state()),
            file: cfg.clone(),
            cfg,
            added: Vec::new(),
            removed: Vec::new(),
            felix_ports: Vec::new(),
            down: Vec::new(),
            port_events: PortEvents::default(),
            last_vanished_check: Instant::now(),
            macs,
            tables,
            ct,
            reloads: (0, 0),
            started: Instant::now(),
            baseline: None,
            kernel: None,
            tap: None,
            tap_ids: 0,
            felix: None,
        }
    }

    /// Starts a trace or capture (one at a time): the tap is on every
    /// worker when this returns; the caller streams its records and then
    /// calls [`Runtime::tap_stop`].
    pub fn tap_start(&mut self, engine: &LiveEngine, req: &Value) -> Result<TapSession, String> {
        if let Some(id) = self.tap {
            return Err(format!(
                "a trace or capture is running (tap {id}); one at a time"
            ));
        }
        let ports: Vec<String> = self.state().ports.iter().map(|p| p.name.clone()).collect();
        let r = TapRequest::from_request(req, &ports)?;
        self.tap_ids += 1;
        let s = TapSession::new(self.tap_ids, r, self.tables.clone(), ports);
        engine.set_tap(Some(s.tap.clone()));
        self.tap = Some(self.tap_ids);
        Ok(s)
    }

    /// Removes tap `id` from the workers.
    pub fn tap_stop(&mut self, engine: &LiveEngine, id: u64) {
        if self.tap == Some(id) {
            engine.set_tap(None);
            self.tap = None;
        }
    }

    /// The running desired state, ports at their numbers: the config's
    /// (and `ctl port`'s), with the kernel's merged in when the mirror
    /// runs and the Felix model's added.
    pub fn state(&self) -> NodeState {
        with_felix(&self.felix, self.base_state())
    }

    /// The config's state with the kernel's merged in (see
    /// [`Runtime::state`]).
    pub(super) fn base(&self) -> NodeState {
        self.base_state()
    }

    /// The config's state (ports at their numbers) with the kernel's merged
    /// in: what a Felix model adds to.
    fn base_state(&self) -> NodeState {
        let s = self.numbers.place(&self.cfg.state());
        match &self.kernel {
            Some(k) => kernel::merge(&s, &k.view).0,
            None => s,
        }
    }

    /// Builds `new`'s tables (the compiled policy reused) and swaps them
    /// in, syncing the XDP maps when needed; false when nothing differs
    /// from `old`. Refuses what needs a restart.
    pub(super) fn swap_state(
        &mut self,
        engine: &LiveEngine,
        old: &NodeState,
        new: &NodeState,
    ) -> Result<bool, String> {
        let d = StateDiff::between(old, new);
        if d.is_empty() {
            return Ok(false);
        }
        let r = d.restart_only();
        if !r.is_empty() {
            return Err(format!(
                "{} would change; these need a restart",
                r.join(", ")
            ));
        }
        // The running policy unless the input changed: a Felix model's
        // compiled policy comes with the state; back to the config's one
        // (no model any more) is loaded again.
        let policy = if d.policy {
            build::load_policy(&new.origin, &new.policy).map_err(|e| e.to_string())?
        } else {
            self.tables.policy.clone()
        };
        let t = build::tables_with_policy(new, &self.macs, policy).map_err(|e| e.to_string())?;
        if d.rebuild().xdp_maps {
            let mut maps = engine.maps().lock().map_err(|_| "XDP maps lock poisoned")?;
            maps.sync(&build::xdp_contents(new))
                .map_err(|e| e.to_string())?;
        }
        let t = Arc::new(t);
        engine.set_tables(t.clone());
        self.tables = t;
        Ok(true)
    }

    /// Takes an event of the Felix socket: a session connected or ended
    /// (recorded), or a model to apply — the running state plus what the
    /// model adds ([`felix::to_state`]), built aside and swapped in like a
    /// kernel update, what it cannot apply yet reported (`ctl felix`, the
    /// log). A state that cannot be built leaves the running tables,
    /// counted. The snapshot at `InSync` is answered at once with a
    /// `ProcessStatusUpdate`.
    pub fn apply_felix(&mut self, engine: &mut LiveEngine, ev: felix::Event) {
        let uptime = self.started.elapsed();
        let old = self.state();
        let Some(f) = self.felix.as_mut() else {
            return;
        };
        let u = match ev {
            felix::Event::Connected { session, out } => return f.connected(session, out),
            felix::Event::Ended {
                session,
                reason,
                error,
                stats,
            } => return f.ended(session, reason, error, stats),
            felix::Event::Update(u) => u,
        };
        if !f.take_update(&u) {
            return;
        }
        let t0 = Instant::now();
        let r = self.felix_program(engine, old);
        let Some(f) = self.felix.as_mut() else {
            return;
        };
        match r {
            Ok(()) => {
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                f.last_apply_ms = Some(ms);
                f.max_apply_ms = f.max_apply_ms.max(ms);
                f.last_latency_ms = Some(u.first.elapsed().as_secs_f64() * 1e3);
            }
            Err(e) => {
                f.failed += 1;
                eprintln!(
                    "sluice: felix: update from session {} not applied: {e}",
                    u.session
                );
                f.last_error = Some(e);
            }
        }
        if u.initial {
            f.status_tick(uptime, true);
        }
    }

    /// Periodic work for the Felix session (`ProcessStatusUpdate` every
    /// 10 s); called from the main loop.
    pub fn felix_tick(&mut self) {
        let uptime = self.started.elapsed();
        if let Some(f) = self.felix.as_mut() {
            f.status_tick(uptime, false);
        }
    }

    /// Applies a kernel mirror update: the merged state's tables built
    /// aside (the compiled policy reused) and swapped in, and the XDP
    /// program's address map synced when the ports' addresses moved. A
    /// state that cannot be built leaves the running tables, counted.
    pub fn apply_kernel(&mut self, engine: &LiveEngine, u: Update) {
        let base = self.numbers.place(&self.cfg.state());
        let Some(k) = self.kernel.as_mut() else {
            return;
        };
        let old = with_felix(&self.felix, kernel::merge(&base, &k.view).0);
        k.view = u.view;
        k.updates += 1;
        k.events += u.events;
        k.malformed = u.malformed;
        k.resyncs = u.resyncs;
        let (new, rep) = kernel::merge(&base, &k.view);
        let new = with_felix(&self.felix, new);
        k.report = rep;
        let d = StateDiff::between(&old, &new);
        if d.is_empty() {
            return;
        }
        let built = build::tables_with_policy(&new, &self.macs, self.tables.policy.clone())
            .map_err(|e| e.to_string())
            .and_then(|t| {
                if d.rebuild().xdp_maps {
                    let mut maps = engine.maps().lock().map_err(|_| "XDP maps lock poisoned")?;
                    maps.sync(&build::xdp_contents(&new))
                        .map_err(|e| e.to_string())?;
                }
                Ok(t)
            });
        match built {
            Ok(t) => {
                let t = Arc::new(t);
                engine.set_tables(t.clone());
                self.tables = t;
                let ms = u.first.elapsed().as_secs_f64() * 1e3;
                k.swaps += 1;
                k.last_ms = Some(ms);
                k.max_ms = k.max_ms.max(ms);
            }
            Err(e) => {
                k.failed += 1;
                tracing::warn!("kernel mirror: update not applied: {e}");
                k.last_error = Some(e);
            }
        }
    }

    /// Applies `new`, prepared by [`prepare`], to the engine, in an order
    /// that keeps every other port forwarding: new ports come up first
    /// (sockets, maps, XDP; if one fails, those brought up are taken down
    /// again and nothing else changed), then the tables that route to them
    /// and no longer to the ports going away are swapped in, then those
    /// ports go down (XDP detached, then sockets closed and their frames
    /// taken back), rebound ports come up again, and the XDP maps get the
    /// new addresses.
    fn apply(&mut self, engine: &mut LiveEngine, p: Prepared) -> Result<Value, String> {
        let Prepared {
            cfg,
            numbers,
            state,
            tables,
            macs,
            changes,
            plans,
        } = p;
        let (fresh, rebound): (Vec<PortPlan>, Vec<PortPlan>) = plans
            .into_iter()
            .partition(|p| changes.up.contains(&p.name));
        let mut brought_up = Vec::new();
        for plan in fresh {
            let (n, name) = (plan.port, plan.name.clone());
            if let Err(e) = engine.add_port(plan) {
                for d in brought_up {
                    engine.remove_port(d);
                }
                return Err(e.to_string());
            }
            brought_up.push(n);
            self.down.retain(|d| *d != name);
        }
        let tables = Arc::new(tables);
        engine.set_tables(tables.clone());
        let mut errors = Vec::new();
        for name in changes.down.iter().chain(&changes.rebind) {
            if let Some(n) = self.numbers.of(name) {
                if engine.remove_port(n).is_some() {
                    self.port_events.removed += 1;
                }
            }
        }
        for plan in rebound {
            let name = plan.name.clone();
            match engine.add_port(plan) {
                Ok(()) => self.port_events.added += 1,
                Err(e) => {
                    errors.push(format!("{e} (the port is down)"));
                    self.down.push(name);
                }
            }
        }
        self.port_events.added += brought_up.len() as u64;
        if let Ok(mut m) = engine.maps().lock() {
            if let Err(e) = m.sync(&build::xdp_contents(&state)) {
                errors.push(e.to_string());
            }
        }
        self.down.retain(|d| cfg.ports.iter().any(|p| p.name == *d));
        self.cfg = cfg;
        self.numbers = numbers;
        self.macs = macs;
        self.tables = tables;
        if errors.is_empty() {
            Ok(json!({
                "ports_up": changes.up, "ports_down": changes.down, "ports_rebound": changes.rebind,
            }))
        } else {
            Err(errors.join("; "))
        }
    }

    /// Prepares and applies the config the file `file` and the `ctl`
    /// port changes `removed` and `added` add up to.
    /// The ports attached for Felix's workload endpoints are added too.
    pub(super) fn change(
        &mut self,
        engine: &mut LiveEngine,
        file: &Config,
        removed: &[String],
        added: &[AddedPort],
    ) -> Result<Value, String> {
        let mut all = added.to_vec();
        all.extend(self.felix_ports.iter().cloned());
        let new = merge(file, removed, &all)?;
        let kernel = self.kernel.as_ref().map(|k| &k.view);
        let p = prepare(
            &self.cfg,
            &self.numbers,
            &self.macs,
            &self.down,
            new,
            kernel,
            self.felix.as_ref(),
        )?;
        let v = self.apply(engine, p)?;
        // Ports came or went: the host endpoints they serve.
        self.felix_hosts_refresh();
        Ok(v)
    }

    /// Reloads from `path` (default: the file `run` was started with). The
    /// ports added with `ctl port add` stay (unless the file now defines
    /// one of the same name); the file's ports are as it lists them.
    pub fn reload(
        &mut self,
        engine: &mut LiveEngine,
        path: Option<&Path>,
    ) -> Result<Value, String> {
        let path = path.unwrap_or(&self.config_path).to_path_buf();
        let t0 = Instant::now();
        let r = Config::load(&path)
            .map_err(|e| e.to_string())
            .and_then(|file| {
                let added: Vec<AddedPort> = self
                    .added
                    .iter()
                    .filter(|a| !file.ports.iter().any(|p| p.name == a.port.name))
                    .cloned()
                    .collect();
                let v = self.change(engine, &file, &[], &added)?;
                self.file = file;
                self.added = added;
                self.removed.clear();
                Ok(v)
            });
        match r {
            Ok(v) => {
                self.config_path = path;
                self.reloads.0 += 1;
                // The file's tables hold no Felix routes: add them back.
                if self.felix.as_ref().is_some_and(|f| f.model.is_some()) {
                    let base = self.base_state();
                    let new = self.state();
                    if let Err(e) = self.swap_state(engine, &base, &new) {
                        eprintln!("sluice: felix: after the reload: {e}");
                    }
                }
                let mut out = json!({
                    "ok": true,
                    "config": self.config_path.display().to_string(),
                    "build_ms": t0.elapsed().as_secs_f64() * 1e3,
                    "policy_decisions": self.tables.policy.decisions().len(),
                });
                if let (Some(o), Some(p)) = (out.as_object_mut(), v.as_object()) {
                    o.extend(p.clone());
                }
                Ok(out)
            }
            Err(e) => {
                self.reloads.1 += 1;
                Err(e)
            }
        }
    }

    /// `port add`: a port (the config's port keys), with routes and
    /// neighbours through it.
    fn port_add(&mut self, engine: &mut LiveEngine, req: &Value) -> Result<Value, String> {
        let t0 = Instant::now();
        let a = AddedPort::from_request(req)?;
        let name = a.port.name.clone();
        if self.cfg.ports.iter().any(|p| p.name == name) {
            return Err(format!("port add: there is already a port named {name:?}"));
        }
        let mut added = self.added.clone();
        added.push(a);
        let mut removed = self.removed.clone();
        removed.retain(|r| *r != name);
        let file = self.file.clone();
        self.change(engine, &file, &removed, &added)
            .map_err(|e| format!("port add {name}: {e}"))?;
        self.added = added;
        self.removed = removed;
        let n = self.numbers.of(&name);
        Ok(json!({"port": name, "number": n, "ms": t0.elapsed().as_secs_f64() * 1e3}))
    }

    /// `port remove`: a port added with `ctl` (with its routes and
    /// neighbours) or one of the file's (refused while a route, neighbour
    /// or masquerade rule of the file names it).
    fn port_remove(&mut self, engine: &mut LiveEngine, req: &Value) -> Result<Value, String> {
        let t0 = Instant::now();
        let name = req
            .get("name")
            .and_then(Value::as_str)
            .ok_or("port remove: which port? (\"name\")")?
            .to_string();
        if !self.cfg.ports.iter().any(|p| p.name == name) {
            return Err(format!(
                "port remove: no port named {name:?} (ports: {})",
                self.cfg
                    .ports
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if self.felix_ports.iter().any(|p| p.port.name == name) {
            return Err(format!(
                "port remove: {name:?} is attached for a Felix workload endpoint; it goes when Felix removes the endpoint"
            ));
        }
        let number = self.numbers.of(&name);
        let mut added = self.added.clone();
        let mut removed = self.removed.clone();
        if added.iter().any(|a| a.port.name == name) {
            added.retain(|a| a.port.name != name);
        } else {
            removed.push(name.clone());
        }
        let file = self.file.clone();
        self.change(engine, &file, &removed, &added)
            .map_err(|e| format!("port remove {name}: {e}"))?;
        self.added = added;
        self.removed = removed;
        self.down.retain(|d| *d != name);
        Ok(json!({"port": name, "number": number, "ms": t0.elapsed().as_secs_f64() * 1e3}))
    }

    /// `port list`: every port with its number, interface and state.
    fn port_list(&self, engine: &LiveEngine) -> Value {
        let ports: Vec<Value> = self
            .cfg
            .ports
            .iter()
            .map(|p| {
                let n = self.numbers.of(&p.name);
                let plan = engine.ports().iter().find(|x| x.name == p.name);
                let from = if self.added.iter().any(|a| a.port.name == p.name) {
                    "ctl"
                } else if self.felix_ports.iter().any(|a| a.port.name == p.name) {
                    "felix"
                } else {
                    "config"
                };
                json!({"name": p.name, "number": n, "interface": p.interface,
                       "ifindex": plan.map(|x| x.ifindex),
                       "queues": plan.map(|x| x.queues.clone()),
                       "mtu": plan.map(|x| x.mtu),
                       "state": if plan.is_some() { "up" } else { "down" },
                       "from": from})
            })
            .collect();
        json!({"ports": ports, "events": {"added": self.port_events.added,
               "removed": self.port_events.removed, "vanished": self.port_events.vanished,
               "mtu_changes": self.port_events.mtu_changes}})
    }

    /// Removes the ports whose interface was deleted (or replaced by
    /// another of the same name) under sluice: a port added with `ctl` is
    /// removed with its routes and neighbours; a port of the file stays
    /// configured and goes down (its sockets closed; frames routed to it
    /// are counted as `tx_no_socket`) until a reload finds its interface
    /// back. Counted in `ports.vanished` and logged once per port. Returns
    /// the ports removed. (The control loop calls this every
    /// [`VANISHED_EVERY`]; a netlink link event can call it directly.)
    pub fn remove_vanished(&mut self, engine: &mut LiveEngine) -> Vec<String> {
        let gone: Vec<PortPlan> = engine
            .ports()
            .iter()
            .filter(|p| sys::if_nametoindex(&p.ifname).ok() != Some(p.ifindex))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for p in gone {
            let msg = format!(
                "port {}: interface {} (index {}) is gone; port removed",
                p.name, p.ifname, p.ifindex
            );
            tracing::warn!("{msg}");
            eprintln!("sluice: {msg}");
            self.port_events.vanished += 1;
            if self.felix_ports.iter().any(|a| a.port.name == p.name) {
                self.felix_vanished(engine, &p);
            } else if self.added.iter().any(|a| a.port.name == p.name) {
                let mut added = self.added.clone();
                added.retain(|a| a.port.name != p.name);
                let file = self.file.clone();
                let removed = self.removed.clone();
                match self.change(engine, &file, &removed, &added) {
                    Ok(_) => self.added = added,
                    Err(e) => {
                        eprintln!("sluice: port {}: {e}", p.name);
                        engine.remove_port(p.port);
                    }
                }
            } else {
                engine.remove_port(p.port);
                self.port_events.removed += 1;
                self.down.push(p.name.clone());
            }
            out.push(p.name);
        }
        if !out.is_empty() {
            self.felix_hosts_refresh();
        }
        out
    }

    /// Follows the ports' interface MTUs (`ip link set IF mtu N` under
    /// sluice): the MTU stage checks forwarded packets against the new
    /// one; logged, counted in `ports.mtu_changes`. Returns the ports
    /// whose MTU changed.
    pub fn follow_mtus(&mut self, engine: &mut LiveEngine) -> Vec<String> {
        let changed: Vec<(PortId, String, String, u32, u32)> = engine
            .ports()
            .iter()
            .filter_map(|p| match sys::interface_mtu(&p.ifname) {
                Ok(m) if m != p.mtu && m > 0 => {
                    Some((p.port, p.name.clone(), p.ifname.clone(), p.mtu, m))
                }
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        for (port, name, ifname, old, new) in changed {
            self.port_events.mtu_changes += 1;
            let msg = format!("port {name}: {ifname} MTU {old} -> {new}");
            tracing::info!("{msg}");
            eprintln!("sluice: {msg}");
            if let Err(e) = engine.set_port_mtu(port, new) {
                tracing::error!("port {name}: {e}");
                eprintln!("sluice: port {name}: {e}");
            }
            out.push(name);
        }
        out
    }

    /// Periodic work of the control loop: looks for vanished interfaces
    /// and changed MTUs every [`VANISHED_EVERY`].
    pub fn tick(&mut self, engine: &mut LiveEngine) {
        if self.last_vanished_check.elapsed() >= VANISHED_EVERY {
            self.last_vanished_check = Instant::now();
            self.remove_vanished(engine);
            self.follow_mtus(engine);
            self.felix_recheck(engine);
        }
    }

    /// Answers one control request.
    pub fn handle(&mut self, engine: &mut LiveEngine, req: &Value) -> Value {
        let cmd = req.get("cmd").and_then(Value::as_str).unwrap_or("");
        let r = match cmd {
            "stats" => Ok(self.stats(engine, req)),
            "conntrack" => self.conntrack(engine, req),
            "services" => Ok(self.services()),
            "routes" => Ok(self.routes()),
            "kernel" => Ok(self.kernel_status()),
            "felix" => Ok(self.felix.as_ref().map_or_else(
                || json!({"enabled": false}),
                |f| {
                    let mut v = f.status();
                    v["staged"] = self.staged(engine);
                    v
                },
            )),
            "reload" => {
                let p = req.get("config").and_then(Value::as_str).map(PathBuf::from);
                self.reload(engine, p.as_deref())
            }
            "explain" => self.explain(engine, req),
            "port" => match req.get("op").and_then(Value::as_str).unwrap_or("") {
                "add" => self.port_add(engine, req),
                "remove" => self.port_remove(engine, req),
                "list" => Ok(self.port_list(engine)),
                other => Err(format!("port: unknown operation {other:?} (add, remove, list)")),
            },
            "" => Err("request has no \"cmd\"".to_string()),
            other => Err(format!(
                "unknown command {other:?} (stats, conntrack, services, routes, kernel, felix, reload, explain, port)"
            )),
        };
        match r {
            Ok(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    o.insert("ok".into(), true.into());
                }
                v
            }
            Err(e) => json!({"ok": false, "error": e}),
        }
    }

    fn stats(&mut self, engine: &LiveEngine, req: &Value) -> Value {
        let (now_per, now_t) = totals(engine, self.numbers.len());
        let xdp_now = engine.xdp_counters();
        let (mut per, mut t) = (now_per.clone(), now_t.clone());
        let mut xdp_since: Vec<u64> = xdp_now.iter().map(|(_, v)| *v).collect();
        if let Some(b) = &self.baseline {
            t.sub(&b.total);
            for (s, o) in per.iter_mut().zip(&b.workers) {
                s.sub(o);
            }
            for (v, o) in xdp_since.iter_mut().zip(&b.xdp) {
                *v = v.saturating_sub(*o);
            }
        }
        let since_reset_s = self.baseline.as_ref().map(|b| b.at.elapsed().as_secs_f64());
        if req.get("reset").and_then(Value::as_bool).unwrap_or(false) {
            // What this answer read is the new zero.
            self.baseline = Some(Baseline {
                workers: now_per,
                total: now_t,
                xdp: xdp_now.iter().map(|(_, v)| *v).collect(),
                at: Instant::now(),
            });
        }
        let c = &t.counters;
        let drops: serde_json::Map<String, Value> = DropReason::ALL
            .iter()
            .map(|d| (d.name().to_string(), c.drop_count(*d).into()))
            .collect();
        let ports: Vec<Value> = self
            .cfg
            .ports
            .iter()
            .map(|p| {
                let i = self.numbers.of(&p.name).map_or(usize::MAX, usize::from);
                json!({"name": p.name, "interface": p.interface,
                       "rx": c.port_rx.get(i).copied().unwrap_or(0),
                       "tx": c.port_tx.get(i).copied().unwrap_or(0)})
            })
            .collect();
        let workers: Vec<Value> = per
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({"id": i, "rx": s.rx, "tx": s.tx, "batches": s.batches,
                       "tx_ring_full": s.tx_ring_full, "table_swaps": s.table_swaps})
            })
            .collect();
        let xdp: serde_json::Map<String, Value> = xdp_now
            .iter()
            .zip(&xdp_since)
            .map(|((k, _), v)| (k.name().to_string(), (*v).into()))
            .collect();
        json!({
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "since_reset_s": since_reset_s,
            "packets": c.packets,
            "bytes": c.bytes,
            "rx": t.rx,
            "tx": t.tx,
            "actions": {"forward": c.actions[0], "drop": c.actions[1], "kernel": c.actions[2]},
            "drops": drops,
            "policy": {"allowed": c.policy_allowed, "denied": c.policy_denied,
                       "staged": {"would_deny": c.pending_denied, "would_allow": c.pending_allowed}},
            "conntrack": {"entries": self.live_entries(engine.now()), "capacity": self.ct.capacity(),
                          "evicted_unassured": self.ct.evicted_unassured(),
                          "full": self.ct.refused_full()},
            "reloads": {"ok": self.reloads.0, "rejected": self.reloads.1},
            "tap": self.tap,
            "tx_ring_full": t.tx_ring_full,
            "kernel_unreachable": t.kernel_unreachable,
            "icmp_too_big": c.icmp_too_big,
            "fragmented": c.fragmented,
            "via_kernel": {"frames": c.via_kernel, "sent": t.kernel_sent,
                           "failed": t.kernel_send_failed},
            "tx_no_socket": t.tx_no_socket,
            "multi_buffer": t.multi_buffer,
            "too_long": t.too_long,
            "ports_added": self.port_events.added,
            "ports_removed": self.port_events.removed,
            "ports_vanished": self.port_events.vanished,
            "sockets_gone": t.sockets_gone,
            "frames_reclaimed": t.frames_reclaimed,
            "ports": ports,
            "workers": workers,
            "xdp": xdp,
        })
    }

    /// Lists the live entries a filter names (expired ones are neither
    /// listed nor counted), or deletes them (`delete`; an empty filter
    /// only with `flush`). A deleted connection's next packet is judged
    /// again, as a new one.
    fn conntrack(&self, engine: &LiveEngine, req: &Value) -> Result<Value, String> {
        let limit = req.get("limit").and_then(Value::as_u64).unwrap_or(100) as usize;
        let filter = CtFilter::from_request(req)?;
        let flag = |k: &str| req.get(k).and_then(Value::as_bool).unwrap_or(false);
        let (delete, flush) = (flag("delete"), flag("flush"));
        if delete && filter.is_empty() && !flush {
            return Err(
                "conntrack delete needs a filter (proto, addr, port, src, dst, sport, \
                        dport); `conntrack flush` deletes every entry"
                    .into(),
            );
        }
        if flush && !filter.is_empty() {
            return Err("conntrack flush takes no filter (use delete with one)".into());
        }
        let now = engine.now();
        let to = &self.tables.timeouts;
        let named: Vec<_> = self
            .ct
            .snapshot_all()
            .into_iter()
            .filter(|s| !expired(s, now, to) && filter.matches(s))
            .collect();
        if delete || flush {
            for s in &named {
                self.ct.remove(s);
            }
            return Ok(json!({"deleted": named.len(), "count": self.live_entries(now)}));
        }
        let entries: Vec<Value> = named
            .iter()
            .take(limit)
            .map(|s| explain::entry_json(&self.tables, s, now))
            .collect();
        Ok(json!({"entries": entries, "count": named.len(), "capacity": self.ct.capacity()}))
    }

    /// Entries lookups still find (not expired).
    fn live_entries(&self, now: u64) -> usize {
        self.ct.unexpired(now, &self.tables.timeouts)
    }

    /// Services with their backends and the tracked connections on each.
    fn services(&self) -> Value {
        let all = self.ct.snapshot_all();
        let svcs: Vec<Value> = self
            .cfg
            .services
            .iter()
            .map(|s| {
                let backends: Vec<Value> = s
                    .backends
                    .iter()
                    .map(|b| {
                        let (f, a) = wire::from_ip(b.0.ip());
                        let conns = all
                            .iter()
                            .filter(|e| {
                                e.flags & crate::tables::conntrack::flags::DNAT != 0
                                    && e.reply.family == f
                                    && e.reply.src == a
                                    && e.reply.sport == b.0.port()
                            })
                            .count();
                        json!({"address": b.0.to_string(), "connections": conns})
                    })
                    .collect();
                json!({"name": s.name, "vip": s.vip.to_string(), "port": s.port,
                       "protocol": format!("{:?}", s.protocol).to_uppercase(),
                       "node_port": s.node_port,
                       "affinity": format!("{:?}", s.affinity).to_lowercase(),
                       "backends": backends})
            })
            .collect();
        json!({"services": svcs})
    }

    /// The running routes, neighbours and local addresses, each with where
    /// it came from (`config` or `kernel`).
    fn routes(&self) -> Value {
        let base = self.numbers.place(&self.cfg.state());
        let st = self.state();
        let name = |p: u16| st.ports.get(usize::from(p)).map(|p| p.name.clone());
        let from = |is_static: bool| if is_static { "config" } else { "kernel" };
        let routes: Vec<Value> = st
            .routes
            .iter()
            .map(|r| {
                json!({"prefix": r.prefix.to_string(), "port": name(r.port),
                       "via": r.via.map(|v| wire::to_ip(r.prefix.family, v).to_string()),
                       "source": from(base.routes.contains(r))})
            })
            .collect();
        let neighbors: Vec<Value> = st
            .neighbors
            .iter()
            .map(|n| {
                json!({"ip": wire::to_ip(n.family, n.ip).to_string(),
                       "mac": wire::mac_to_string(&n.mac), "port": name(n.port),
                       "source": from(base.neighbors.contains(n))})
            })
            .collect();
        let local: Vec<Value> = st
            .ports
            .iter()
            .zip(&base.ports)
            .flat_map(|(p, b)| {
                p.addresses.iter().map(move |a| {
                    json!({"address": a.to_string(), "port": p.name,
                           "source": from(b.addresses.contains(a))})
                })
            })
            .collect();
        json!({"routes": routes, "neighbors": neighbors, "local": local})
    }

    /// The kernel mirror's record (`ctl kernel`).
    fn kernel_status(&self) -> Value {
        let Some(k) = &self.kernel else {
            return json!({"mirror": false});
        };
        let spec = self.cfg.state().kernel;
        let r = &k.report;
        let links: Vec<Value> = self
            .cfg
            .ports
            .iter()
            .map(|p| {
                let l = p
                    .interface
                    .as_deref()
                    .and_then(|n| k.view.ifindex(n).and_then(|i| k.view.links.get(&i)));
                json!({"port": p.name, "interface": p.interface, "up": l.map(|l| l.up)})
            })
            .collect();
        json!({
            "mirror": true,
            "routes": spec.routes, "neighbors": spec.neighbors, "addresses": spec.addresses,
            "unresolved": format!("{:?}", spec.unresolved).to_lowercase(),
            "mirrored": {"routes": r.routes, "neighbors": r.neighbors, "addresses": r.addresses},
            "left_out": {"routes_elsewhere": r.routes_elsewhere,
                         "routes_unsupported": r.routes_unsupported,
                         "routes_link_down": r.routes_link_down,
                         "routes_overridden": r.routes_overridden,
                         "neighbors_unusable": r.neighbors_unusable},
            "links": links,
            "updates": k.updates, "events": k.events, "swaps": k.swaps,
            "malformed": k.malformed, "resyncs": k.resyncs,
            "failed": k.failed, "last_error": k.last_error,
            "last_update_ms": k.last_ms, "max_update_ms": k.max_ms,
        })
    }

    fn explain(&self, engine: &LiveEngine, req: &Value) -> Result<Value, String> {
        let now = engine.now();
        let q = if let Some(id) = req.get("entry").and_then(Value::as_u64) {
            let e = self
                .ct
                .snapshot_all()
                .into_iter()
                .find(|s| u64::from(s.id) == id)
                .ok_or_else(|| format!("entry: no conntrack entry {id}"))?;
            let o = &e.orig;
            let ingress = self
                .tables
                .zones
                .iter()
                .position(|z| *z == o.zone)
                .unwrap_or(0) as u16;
            let icmp = matches!(o.proto, 1 | 58).then_some(if o.family == wire::Family::V4 {
                (8, 0)
            } else {
                (128, 0)
            });
            Query {
                proto: o.proto,
                src: wire::to_ip(o.family, o.src),
                dst: wire::to_ip(o.family, o.dst),
                sport: o.sport,
                dport: o.dport,
                icmp,
                ingress,
                tcp_flags: None,
                ttl: None,
            }
        } else {
            let pkt = req.get("packet").unwrap_or(req);
            Query::from_json(pkt, &self.tables)?
        };
        Ok(explain::explain(&self.tables, &self.ct, now, &q))
    }

    /// What the staged policies would have done since the tables were
    /// last swapped: per staged policy, the connection directions its
    /// rules decided in the pending walk, by the rule's action, and the
    /// connections whose verdict enforcing them would change (since
    /// start). `null` without staged policies.
    fn staged(&self, engine: &LiveEngine) -> Value {
        let policy = &self.tables.policy;
        if policy.staged().is_none() {
            return Value::Null;
        }
        let mut hits = vec![0u64; policy.decisions().len()];
        for (_, w) in engine.policy_hits(&self.tables) {
            for (a, b) in hits.iter_mut().zip(w) {
                *a += b;
            }
        }
        let (_, t) = totals(engine, self.numbers.len());
        json!({
            "would_deny": t.counters.pending_denied,
            "would_allow": t.counters.pending_allowed,
            "policies": explain::staged_hits(policy.decisions(), &hits),
        })
    }

    /// The Prometheus exposition.
    pub fn metrics(&self, engine: &LiveEngine) -> String {
        let (per, _) = totals(engine, self.numbers.len());
        let hits = engine.policy_hits(&self.tables);
        let workers: Vec<WorkerView> = per
            .into_iter()
            .enumerate()
            .zip(hits)
            .map(|((i, mut stats), (h, sh))| {
                stats.counters.policy_hits = h;
                stats.counters.staged_hits = sh;
                WorkerView {
                    id: i,
                    core: self.cfg.workers.cores.get(i).copied().unwrap_or(0),
                    stats,
                }
            })
            .collect();
        // By number; a vacant number has no name (and is not shown).
        let names: Vec<String> = (0..self.numbers.len() as u16)
            .map(|n| self.numbers.name(n).unwrap_or_default().to_string())
            .collect();
        let xdp: Vec<(String, u64)> = engine
            .xdp_counters()
            .iter()
            .map(|(k, v)| (k.name().to_string(), *v))
            .collect();
        metrics::render(metrics::View {
            ports: names,
            workers,
            classifier: self.tables.policy.clone(),
            conntrack_entries: self.live_entries(engine.now()),
            conntrack_capacity: self.ct.capacity(),
            conntrack_evicted_unassured: self.ct.evicted_unassured(),
            conntrack_refused_full: self.ct.refused_full(),
            xdp,
            reloads: self.reloads,
            port_events: [
                ("added", self.port_events.added),
                ("removed", self.port_events.removed),
                ("vanished", self.port_events.vanished),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A reload of `path` over `cur` (no port comes up: no interface is
    /// resolved).
    fn prepare_reload(cur: &Config, path: &Path, macs: &[Mac]) -> Result<(Config, Tables), String> {
        let new = Config::load(path).map_err(|e| e.to_string())?;
        let p = prepare(
            cur,
            &PortNumbers::dense(&cur.state()),
            macs,
            &[],
            new,
            None,
            None,
        )?;
        Ok((p.cfg, p.tables))
    }

    fn write(dir: &Path, name: &str, s: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, s).unwrap();
        p
    }

    const BASE: &str = r#"ports:
  - {name: a, interface: p0, mac: "02:00:00:00:00:01", addresses: ["10.0.1.1/24"]}
  - {name: b, interface: p1, mac: "02:00:00:00:00:02", addresses: ["10.0.2.1/24"]}
routes:
  - {prefix: "10.0.1.0/24", port: a}
  - {prefix: "10.0.2.0/24", port: b}
"#;

    #[test]
    fn reload_accepts_table_changes_and_rejects_restart_only_ones() {
        let dir = std::env::temp_dir().join(format!("sluice-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cur = Config::load(&write(&dir, "a.yaml", BASE)).unwrap();
        let macs: [Mac; 2] = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];
        // Routes and services may change.
        let more = format!("{BASE}  - {{prefix: \"10.9.0.0/16\", port: b, via: \"10.0.2.9\"}}\nservices:\n  - {{name: w, vip: \"10.96.0.1\", port: 80, backends: [\"10.0.2.5:80\"]}}\n");
        let (cfg, t) = prepare_reload(&cur, &write(&dir, "b.yaml", &more), &macs).unwrap();
        assert_eq!(cfg.routes.len(), 3);
        assert_eq!(t.nat.services.len(), 1);
        // Workers may not.
        let w = format!("{BASE}workers: {{cores: [0, 1]}}\n");
        let e = prepare_reload(&cur, &write(&dir, "c.yaml", &w), &macs).unwrap_err();
        assert!(e.contains("workers changed") && e.contains("c.yaml"), "{e}");
        // A broken file names the file and the key.
        let bad = format!("{BASE}routes: 7\n");
        let e = prepare_reload(&cur, &write(&dir, "d.yaml", &bad), &macs).unwrap_err();
        assert!(e.contains("d.yaml"), "{e}");
        // A policy path that does not compile.
        let pol = write(&dir, "p.yaml", "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: x}\nspec: {selector: \"a ==\"}\n");
        let bp = format!("{BASE}policy: {{paths: [\"{}\"]}}\n", pol.display());
        let e = prepare_reload(&cur, &write(&dir, "e.yaml", &bp), &macs).unwrap_err();
        assert!(e.contains("p.yaml"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
