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
use super::metrics::{self, WorkerView};
use crate::pipeline::DropReason;
use crate::sources::config::Config;
use crate::state::{build, StateDiff};
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
    out
}

/// Loads `path` and builds its tables, or says why not. Nothing running
/// is touched.
pub fn prepare_reload(cur: &Config, path: &Path, macs: &[Mac]) -> Result<(Config, Tables), String> {
    let new = Config::load(path).map_err(|e| e.to_string())?;
    let state = new.state();
    let changed = restart_only_changes(cur, &new, &StateDiff::between(&cur.state(), &state));
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

impl Runtime {
    /// Reloads from `path` (default: the file `run` was started with).
    pub fn reload(&mut self, engine: &LiveEngine, path: Option<&Path>) -> Result<Value, String> {
        let path = path.unwrap_or(&self.config_path).to_path_buf();
        let t0 = Instant::now();
        match prepare_reload(&self.cfg, &path, &self.macs) {
            Ok((cfg, tables)) => {
                let tables = Arc::new(tables);
                engine.set_tables(tables.clone());
                self.tables = tables;
                self.cfg = cfg;
                self.config_path = path;
                self.reloads.0 += 1;
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
            "reload" => {
                let p = req.get("config").and_then(Value::as_str).map(PathBuf::from);
                self.reload(engine, p.as_deref())
            }
            "explain" => self.explain(engine, req),
            "" => Err("request has no \"cmd\"".to_string()),
            other => Err(format!(
                "unknown command {other:?} (stats, conntrack, services, routes, reload, explain)"
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

    fn routes(&self) -> Value {
        let routes: Vec<Value> = self
            .cfg
            .routes
            .iter()
            .map(|r| json!({"prefix": r.prefix.to_string(), "port": r.port, "via": r.via.map(|v| v.to_string())}))
            .collect();
        let neighbors: Vec<Value> = self
            .cfg
            .neighbors
            .iter()
            .map(|n| json!({"ip": n.ip.to_string(), "mac": wire::mac_to_string(&n.mac.0), "port": n.port}))
            .collect();
        let local: Vec<Value> = self
            .cfg
            .ports
            .iter()
            .flat_map(|p| {
                p.addresses
                    .iter()
                    .map(move |a| json!({"address": a.to_string(), "port": p.name}))
            })
            .collect();
        json!({"routes": routes, "neighbors": neighbors, "local": local})
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
