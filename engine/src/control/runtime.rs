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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::ctfilter::{expired, CtFilter};
use super::explain::{self, Query};
use super::felix::FelixRecord;
use super::metrics::{self, WorkerView};
use crate::pipeline::DropReason;
use crate::sources::config::Config;
use crate::sources::felix;
use crate::sources::kernel::{self, KernelView, MergeReport, Update};
use crate::state::{build, NodeState, StateDiff};
use crate::tables::conntrack::Conntrack;
use crate::tables::Tables;
use crate::wire::{self, Mac};
use crate::worker::live::{LiveEngine, StatsSnapshot};

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

/// Loads `path` and builds its tables (with the kernel's state merged in
/// when the mirror runs), or says why not. Nothing running is touched.
pub fn prepare_reload(
    cur: &Config,
    path: &Path,
    macs: &[Mac],
    kernel: Option<&KernelView>,
) -> Result<(Config, Tables), String> {
    let new = Config::load(path).map_err(|e| e.to_string())?;
    let with_kernel = |s: NodeState| match kernel {
        Some(v) => kernel::merge(&s, v).0,
        None => s,
    };
    let state = with_kernel(new.state());
    let old = with_kernel(cur.state());
    let changed = restart_only_changes(cur, &new, &StateDiff::between(&old, &state));
    if !changed.is_empty() {
        return Err(format!(
            "{}: {} changed; these need a restart (the running config stays)",
            path.display(),
            changed.join(", ")
        ));
    }
    let tables = build::tables(&state, macs).map_err(|e| e.to_string())?;
    Ok((new, tables))
}

/// The live engine's control state.
#[derive(Debug)]
pub struct Runtime {
    pub config_path: PathBuf,
    pub cfg: Config,
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
fn with_felix(f: &Option<FelixRecord>, s: NodeState) -> NodeState {
    match f {
        Some(f) => f.overlay(&s),
        None => s,
    }
}

impl Runtime {
    /// The desired state running: the config's, with the kernel's merged
    /// in when the mirror runs and the Felix model's added.
    pub fn state(&self) -> NodeState {
        with_felix(&self.felix, self.base_state())
    }

    /// The config's state with the kernel's merged in: what a Felix model
    /// adds to.
    fn base_state(&self) -> NodeState {
        let s = self.cfg.state();
        match &self.kernel {
            Some(k) => kernel::merge(&s, &k.view).0,
            None => s,
        }
    }

    /// Builds `new`'s tables (the compiled policy reused) and swaps them
    /// in, syncing the XDP maps when needed; false when nothing differs
    /// from `old`. Refuses what needs a restart.
    fn swap_state(
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
        let t = build::tables_with_policy(new, &self.macs, self.tables.policy.clone())
            .map_err(|e| e.to_string())?;
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
    pub fn apply_felix(&mut self, engine: &LiveEngine, ev: felix::Event) {
        let uptime = self.started.elapsed();
        let old = self.state();
        let base = self.base_state();
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
        let (new, rep) = felix::to_state(&u.model, &base);
        f.reported(rep);
        let t0 = Instant::now();
        let r = self.swap_state(engine, &old, &new);
        let Some(f) = self.felix.as_mut() else {
            return;
        };
        match r {
            Ok(_) => {
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
        let base = self.cfg.state();
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

    /// Reloads from `path` (default: the file `run` was started with).
    pub fn reload(&mut self, engine: &LiveEngine, path: Option<&Path>) -> Result<Value, String> {
        let path = path.unwrap_or(&self.config_path).to_path_buf();
        let t0 = Instant::now();
        let view = self.kernel.as_ref().map(|k| &k.view);
        match prepare_reload(&self.cfg, &path, &self.macs, view) {
            Ok((cfg, tables)) => {
                let tables = Arc::new(tables);
                engine.set_tables(tables.clone());
                self.tables = tables;
                self.cfg = cfg;
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
                Ok(json!({
                    "ok": true,
                    "config": self.config_path.display().to_string(),
                    "build_ms": t0.elapsed().as_secs_f64() * 1e3,
                    "policy_decisions": self.tables.policy.decisions().len(),
                }))
            }
            Err(e) => {
                self.reloads.1 += 1;
                Err(e)
            }
        }
    }

    /// Answers one control request.
    pub fn handle(&mut self, engine: &LiveEngine, req: &Value) -> Value {
        let cmd = req.get("cmd").and_then(Value::as_str).unwrap_or("");
        let r = match cmd {
            "stats" => Ok(self.stats(engine, req)),
            "conntrack" => self.conntrack(engine, req),
            "services" => Ok(self.services()),
            "routes" => Ok(self.routes()),
            "kernel" => Ok(self.kernel_status()),
            "felix" => Ok(self
                .felix
                .as_ref()
                .map_or_else(|| json!({"enabled": false}), FelixRecord::status)),
            "reload" => {
                let p = req.get("config").and_then(Value::as_str).map(PathBuf::from);
                self.reload(engine, p.as_deref())
            }
            "explain" => self.explain(engine, req),
            "" => Err("request has no \"cmd\"".to_string()),
            other => Err(format!(
                "unknown command {other:?} (stats, conntrack, services, routes, kernel, felix, reload, explain)"
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
        let (now_per, now_t) = totals(engine, self.cfg.ports.len());
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
            .enumerate()
            .map(|(i, p)| {
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
            "policy": {"allowed": c.policy_allowed, "denied": c.policy_denied},
            "conntrack": {"entries": self.live_entries(engine.now()), "capacity": self.ct.capacity(),
                          "evicted_unassured": self.ct.evicted_unassured(),
                          "full": self.ct.refused_full()},
            "reloads": {"ok": self.reloads.0, "rejected": self.reloads.1},
            "tx_ring_full": t.tx_ring_full,
            "kernel_unreachable": t.kernel_unreachable,
            "via_kernel": {"frames": c.via_kernel, "sent": t.kernel_sent,
                           "failed": t.kernel_send_failed},
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
        let base = self.cfg.state();
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
            }
        } else {
            let pkt = req.get("packet").unwrap_or(req);
            Query::from_json(pkt, &self.tables)?
        };
        Ok(explain::explain(&self.tables, &self.ct, now, &q))
    }

    /// The Prometheus exposition.
    pub fn metrics(&self, engine: &LiveEngine) -> String {
        let (per, _) = totals(engine, self.cfg.ports.len());
        let hits = engine.policy_hits(&self.tables);
        let workers: Vec<WorkerView> = per
            .into_iter()
            .enumerate()
            .zip(hits)
            .map(|((i, s), h)| {
                let mut counters = s.counters;
                counters.policy_hits = h;
                WorkerView {
                    id: i,
                    core: self.cfg.workers.cores.get(i).copied().unwrap_or(0),
                    counters,
                    io: vec![
                        ("rx", s.rx),
                        ("tx", s.tx),
                        ("batches", s.batches),
                        ("tx_ring_full", s.tx_ring_full),
                        ("kernel_unreachable", s.kernel_unreachable),
                        ("kernel_sent", s.kernel_sent),
                        ("kernel_send_failed", s.kernel_send_failed),
                        ("table_swaps", s.table_swaps),
                    ],
                }
            })
            .collect();
        let names: Vec<String> = self.cfg.ports.iter().map(|p| p.name.clone()).collect();
        let xdp: Vec<(String, u64)> = engine
            .xdp_counters()
            .iter()
            .map(|(k, v)| (k.name().to_string(), *v))
            .collect();
        metrics::render(&metrics::View {
            ports: &names,
            workers: &workers,
            classifier: &self.tables.policy,
            conntrack_entries: self.live_entries(engine.now()),
            conntrack_capacity: self.ct.capacity(),
            conntrack_evicted_unassured: self.ct.evicted_unassured(),
            conntrack_refused_full: self.ct.refused_full(),
            xdp: &xdp,
            reloads: self.reloads,
        })
    }
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

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
        let (cfg, t) = prepare_reload(&cur, &write(&dir, "b.yaml", &more), &macs, None).unwrap();
        assert_eq!(cfg.routes.len(), 3);
        assert_eq!(t.nat.services.len(), 1);
        // Workers may not.
        let w = format!("{BASE}workers: {{cores: [0, 1]}}\n");
        let e = prepare_reload(&cur, &write(&dir, "c.yaml", &w), &macs, None).unwrap_err();
        assert!(e.contains("workers changed") && e.contains("c.yaml"), "{e}");
        // A broken file names the file and the key.
        let bad = format!("{BASE}routes: 7\n");
        let e = prepare_reload(&cur, &write(&dir, "d.yaml", &bad), &macs, None).unwrap_err();
        assert!(e.contains("d.yaml"), "{e}");
        // A policy path that does not compile.
        let pol = write(&dir, "p.yaml", "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: x}\nspec: {selector: \"a ==\"}\n");
        let bp = format!("{BASE}policy: {{paths: [\"{}\"]}}\n", pol.display());
        let e = prepare_reload(&cur, &write(&dir, "e.yaml", &bp), &macs, None).unwrap_err();
        assert!(e.contains("p.yaml"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
