//! The control thread's record of the Felix socket: the current session,
//! the last model applied and what it changed, what it could not apply,
//! and why sessions ended (`sluice ctl felix`, `shared/spec/felix.md`
//! section 4). The runtime feeds it [`Event`]s and asks it for the state
//! to run ([`FelixRecord::overlay`]).
//!
//! The last model applied outlives its session: when Felix restarts, the
//! engine keeps forwarding on what it was told until the next session's
//! `InSync` replaces it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::sources::felix::proto::{
    from_dataplane, EndpointStatus, HostEndpointId, HostEndpointStatusRemove,
    HostEndpointStatusUpdate, ProcessStatusUpdate, WorkloadEndpoint, WorkloadEndpointId,
    WorkloadEndpointStatusRemove, WorkloadEndpointStatusUpdate,
};
use crate::sources::felix::session::iso8601;
use crate::sources::felix::{
    self, CompiledPolicy, FelixModel, Outbox, PolicyCompiler, Report, Stats,
};
use crate::state::{CompiledInput, NodeState, PolicyInput};

/// How often `ProcessStatusUpdate` goes back to Felix (Felix's own data
/// plane reports every 10 s: `StatusReportingInterval`).
pub const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// The session connected now.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub since: SystemTime,
    pub out: Outbox,
    pub in_sync: bool,
    pub stats: Stats,
    /// When the last `ProcessStatusUpdate` was queued.
    pub status_at: Option<Instant>,
    pub status_sent: u64,
}

/// A workload endpoint's status as Felix's data planes report it: `up`
/// (attached and enforcing), `down` (its interface is absent) or `error`
/// (attaching failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpStatus {
    Up,
    Down,
    Error,
}

impl EpStatus {
    /// The string Felix's status messages carry.
    pub fn as_str(self) -> &'static str {
        match self {
            EpStatus::Up => "up",
            EpStatus::Down => "down",
            EpStatus::Error => "error",
        }
    }
}

/// Where one workload endpoint stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// The port serving it (attached for it, or a config port on its
    /// interface), and its interface.
    pub port: String,
    pub interface: String,
    pub status: EpStatus,
    /// Why it is down or in error.
    pub reason: Option<String>,
    /// The endpoint as it was when attaching failed, with the interface's
    /// index then: retried only once either changes.
    pub failed: Option<(Arc<WorkloadEndpoint>, u32)>,
}

/// Where one host endpoint stands ([`super::felix_hosts`]).
#[derive(Clone, Debug, PartialEq)]
pub struct HostEp {
    /// The ports it governs.
    pub ports: Vec<String>,
    pub status: EpStatus,
    /// Why it is down or in error.
    pub reason: Option<String>,
}

/// How a session ended.
#[derive(Clone, Debug)]
pub struct Ending {
    pub id: u64,
    pub at: SystemTime,
    pub reason: String,
    pub error: bool,
    pub stats: Stats,
}

/// The record (see the module docs).
#[derive(Debug)]
pub struct FelixRecord {
    pub socket: PathBuf,
    pub max_frame: u64,
    /// Sessions accepted so far.
    pub sessions: u64,
    pub current: Option<Session>,
    pub last_end: Option<Ending>,
    /// Sessions that ended with an error.
    pub failed_sessions: u64,
    /// The last model applied (from an `InSync` on) and the session it
    /// came from.
    pub model: Option<(u64, FelixModel)>,
    /// The last model's policy, compiled when the model was taken: it
    /// replaces the config's policy (Felix wins while its model is
    /// applied), and `overlay` reuses it instead of compiling per call.
    pub policy: Option<CompiledPolicy>,
    /// Keeps parsed IP sets between compiles.
    pub compiler: PolicyCompiler,
    pub report: Report,
    /// Updates applied; those whose state could not be built.
    pub updates: u64,
    pub failed: u64,
    pub last_error: Option<String>,
    pub last_update: Option<SystemTime>,
    /// Building and swapping the last update's tables, ms; from its first
    /// message read to the swap, ms.
    pub last_apply_ms: Option<f64>,
    pub last_latency_ms: Option<f64>,
    pub max_apply_ms: f64,
    /// Unknown message types over all sessions.
    pub unknown_total: u64,
    /// The features reported unsupported so far (each logged once).
    pub unsupported_seen: BTreeSet<&'static str>,
    /// The last model's workload endpoints and their status.
    pub endpoints: BTreeMap<WorkloadEndpointId, Endpoint>,
    /// The status last sent to the current session, per endpoint.
    pub sent: BTreeMap<WorkloadEndpointId, EpStatus>,
    /// The last model's host endpoints (by id) and their status, and the
    /// status last sent to the current session.
    pub host_endpoints: BTreeMap<String, HostEp>,
    pub host_sent: BTreeMap<String, EpStatus>,
    /// Endpoint status messages sent (updates, removes; workload and host).
    pub status_updates: u64,
    pub status_removes: u64,
}

fn log(msg: &str) {
    tracing::warn!("{msg}");
    eprintln!("sluice: felix: {msg}");
}

impl FelixRecord {
    pub fn new(socket: PathBuf, max_frame: u64) -> FelixRecord {
        FelixRecord {
            socket,
            max_frame,
            sessions: 0,
            current: None,
            last_end: None,
            failed_sessions: 0,
            model: None,
            policy: None,
            compiler: PolicyCompiler::default(),
            report: Report::default(),
            updates: 0,
            failed: 0,
            last_error: None,
            last_update: None,
            last_apply_ms: None,
            last_latency_ms: None,
            max_apply_ms: 0.0,
            unknown_total: 0,
            unsupported_seen: BTreeSet::new(),
            endpoints: BTreeMap::new(),
            sent: BTreeMap::new(),
            host_endpoints: BTreeMap::new(),
            host_sent: BTreeMap::new(),
            status_updates: 0,
            status_removes: 0,
        }
    }

    /// A session connected.
    pub fn connected(&mut self, id: u64, out: Outbox) {
        self.sessions += 1;
        eprintln!("sluice: felix: session {id} connected");
        // A new session knows no status: each endpoint's goes again.
        self.sent.clear();
        self.host_sent.clear();
        self.current = Some(Session {
            id,
            since: SystemTime::now(),
            out,
            in_sync: false,
            stats: Stats::default(),
            status_at: None,
            status_sent: 0,
        });
    }

    /// A session ended (it may already have been replaced).
    pub fn ended(&mut self, id: u64, reason: String, error: bool, stats: Stats) {
        self.unknown_total += stats.unknown;
        if error {
            self.failed_sessions += 1;
            log(&format!("session {id} ended: {reason}"));
        } else {
            eprintln!("sluice: felix: session {id} ended: {reason}");
        }
        if self.current.as_ref().is_some_and(|c| c.id == id) {
            self.current = None;
        }
        self.last_end = Some(Ending {
            id,
            at: SystemTime::now(),
            reason,
            error,
            stats,
        });
    }

    /// `base` with the last model's contribution.
    pub fn overlay(&self, base: &NodeState) -> NodeState {
        match &self.model {
            Some((_, m)) => self.with_policy(felix::to_state(m, base).0),
            None => base.clone(),
        }
    }

    /// `s` with the model's compiled policy in place of the config's.
    pub fn with_policy(&self, mut s: NodeState) -> NodeState {
        if let Some(p) = &self.policy {
            s.policy = PolicyInput::Compiled(CompiledInput {
                origin: "felix".into(),
                classifier: p.classifier.clone(),
                host: p.host.clone(),
            });
        }
        s
    }

    /// Takes a model update (from the current session) in; false if it is
    /// from a session already replaced.
    pub fn take_update(&mut self, u: &felix::Update) -> bool {
        let Some(c) = self.current.as_mut().filter(|c| c.id == u.session) else {
            return false;
        };
        c.in_sync = true;
        c.stats = u.stats.clone();
        let p = self.compiler.compile(&u.model);
        for (ep, why) in p.report.fail_closed.iter().take(3) {
            log(&format!("endpoint {ep} fails closed: {why}"));
        }
        self.policy = Some(p);
        self.model = Some((u.session, u.model.clone()));
        self.updates += 1;
        self.last_update = Some(SystemTime::now());
        true
    }

    /// Records the report of the state just applied, logging each kind of
    /// unsupported thing the first time it appears.
    pub fn reported(&mut self, mut rep: Report) {
        if let Some(p) = &self.policy {
            rep.unsupported.extend(p.report.unsupported.iter().cloned());
            if !p.report.fail_closed.is_empty() {
                let eps: Vec<String> = p
                    .report
                    .fail_closed
                    .iter()
                    .map(|(e, why)| format!("{e} ({why})"))
                    .collect();
                rep.unsupported.push((
                    "unresolved references",
                    format!(
                        "{} endpoint(s) fail closed: {}",
                        eps.len(),
                        eps.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
                    ),
                ));
            }
        }
        for (feature, what) in &rep.unsupported {
            if self.unsupported_seen.insert(feature) {
                log(&format!("not applied ({feature}): {what}"));
            }
        }
        self.report = rep;
    }

    /// Sends the current session each endpoint status that changed since
    /// it last heard (after the tables that program them are swapped in),
    /// and a `WorkloadEndpointStatusRemove` / `HostEndpointStatusRemove`
    /// for each endpoint it heard of that is gone, as Felix's own data
    /// planes do.
    pub fn send_statuses(&mut self) {
        let Some(c) = self.current.as_mut().filter(|c| c.in_sync) else {
            return;
        };
        let model = self.model.as_ref().map(|(_, m)| m);
        for (id, e) in &self.endpoints {
            if self.sent.get(id) == Some(&e.status) {
                continue;
            }
            let p = from_dataplane::Payload::WorkloadEndpointStatusUpdate(
                WorkloadEndpointStatusUpdate {
                    id: Some(id.clone()),
                    status: Some(EndpointStatus {
                        status: e.status.as_str().into(),
                    }),
                    endpoint: model
                        .and_then(|m| m.workload_endpoints.get(id))
                        .map(|w| (**w).clone()),
                },
            );
            if c.out.send(p) {
                self.sent.insert(id.clone(), e.status);
                self.status_updates += 1;
            }
        }
        let gone: Vec<WorkloadEndpointId> = self
            .sent
            .keys()
            .filter(|id| !self.endpoints.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            let p = from_dataplane::Payload::WorkloadEndpointStatusRemove(
                WorkloadEndpointStatusRemove {
                    id: Some(id.clone()),
                },
            );
            if c.out.send(p) {
                self.sent.remove(&id);
                self.status_removes += 1;
            }
        }
        for (id, e) in &self.host_endpoints {
            if self.host_sent.get(id) == Some(&e.status) {
                continue;
            }
            let p = from_dataplane::Payload::HostEndpointStatusUpdate(HostEndpointStatusUpdate {
                id: Some(HostEndpointId {
                    endpoint_id: id.clone(),
                }),
                status: Some(EndpointStatus {
                    status: e.status.as_str().into(),
                }),
            });
            if c.out.send(p) {
                self.host_sent.insert(id.clone(), e.status);
                self.status_updates += 1;
            }
        }
        let gone: Vec<String> = self
            .host_sent
            .keys()
            .filter(|id| !self.host_endpoints.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            let p = from_dataplane::Payload::HostEndpointStatusRemove(HostEndpointStatusRemove {
                id: Some(HostEndpointId {
                    endpoint_id: id.clone(),
                }),
            });
            if c.out.send(p) {
                self.host_sent.remove(&id);
                self.status_removes += 1;
            }
        }
    }

    /// Queues a `ProcessStatusUpdate` when one is due (every
    /// [`STATUS_INTERVAL`] once in sync; `now` forces one).
    pub fn status_tick(&mut self, uptime: Duration, force: bool) {
        let Some(c) = self.current.as_mut().filter(|c| c.in_sync) else {
            return;
        };
        if !force && c.status_at.is_some_and(|t| t.elapsed() < STATUS_INTERVAL) {
            return;
        }
        c.status_at = Some(Instant::now());
        let p = from_dataplane::Payload::ProcessStatusUpdate(ProcessStatusUpdate {
            iso_timestamp: iso8601(SystemTime::now()),
            uptime: uptime.as_secs_f64(),
        });
        if c.out.send(p) {
            c.status_sent += 1;
        }
    }

    /// The endpoints part of `ctl felix`: counts by status, and each
    /// endpoint not up with its reason.
    fn endpoints_status(&self) -> Value {
        let count = |st: EpStatus| self.endpoints.values().filter(|e| e.status == st).count();
        let name = |id: &WorkloadEndpointId| {
            format!(
                "{}/{}/{}",
                id.orchestrator_id, id.workload_id, id.endpoint_id
            )
        };
        let list: Vec<Value> = self
            .endpoints
            .iter()
            .map(|(id, e)| {
                json!({"endpoint": name(id), "port": e.port, "interface": e.interface,
                       "status": e.status.as_str(), "reason": e.reason})
            })
            .collect();
        let hosts: Vec<Value> = self
            .host_endpoints
            .iter()
            .map(|(id, e)| {
                json!({"host_endpoint": id, "ports": e.ports,
                       "status": e.status.as_str(), "reason": e.reason})
            })
            .collect();
        json!({
            "up": count(EpStatus::Up),
            "down": count(EpStatus::Down),
            "error": count(EpStatus::Error),
            "hosts": hosts,
            "status_updates_sent": self.status_updates,
            "status_removes_sent": self.status_removes,
            "list": list,
        })
    }

    /// `sluice ctl felix`.
    pub fn status(&self) -> Value {
        let ago = |t: SystemTime| t.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let session = self.current.as_ref().map(|c| {
            let by_type: serde_json::Map<String, Value> = c
                .stats
                .by_type
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).into()))
                .collect();
            json!({
                "id": c.id,
                "connected_since": iso8601(c.since),
                "connected_s": ago(c.since),
                "in_sync": c.in_sync,
                "messages": c.stats.messages,
                "bytes": c.stats.bytes,
                "by_type": by_type,
                "unknown_messages": c.stats.unknown,
                "ignored_removes": c.stats.ignored_removes,
                "status_sent": c.status_sent,
                "status_dropped": c.out.dropped(),
            })
        });
        let counts = self.model.as_ref().map(|(id, m)| {
            json!({
                "session": id,
                "ip_sets": m.ip_sets.len(),
                "ip_set_members": m.ip_set_members(),
                "policies": m.policies.len(),
                "profiles": m.profiles.len(),
                "workload_endpoints": m.workload_endpoints.len(),
                "host_endpoints": m.host_endpoints.len(),
                "routes": m.routes.len(),
                "pools": m.pools.len(),
                "services": m.services.len(),
            })
        });
        let unsupported: Vec<Value> = self
            .report
            .unsupported
            .iter()
            .map(|(f, w)| json!({"feature": f, "detail": w}))
            .collect();
        let current_unknown = self.current.as_ref().map_or(0, |c| c.stats.unknown);
        json!({
            "enabled": true,
            "socket": self.socket.display().to_string(),
            "max_frame": self.max_frame,
            "connected": self.current.is_some(),
            "in_sync": self.current.as_ref().is_some_and(|c| c.in_sync),
            "session": session,
            "model": counts,
            "applied": {"routes": self.report.routes, "neighbors": self.report.neighbors,
                        "masquerade": self.report.masquerade,
                        "floating_ips": self.report.floating,
                        "routes_overridden": self.report.routes_overridden},
            "unsupported": unsupported,
            "endpoints": self.endpoints_status(),
            "policy": self.policy.as_ref().map(|p| {
                let r = &p.report;
                json!({
                    "workload_endpoints": r.workload_endpoints,
                    "host_endpoints": r.host_endpoints,
                    "rules": r.rules,
                    "decisions": p.classifier.decisions().len(),
                    "fail_closed": r.fail_closed.iter()
                        .map(|(e, why)| json!({"endpoint": e, "reason": why}))
                        .collect::<Vec<_>>(),
                    "staged_not_enforced": r.staged,
                    "ir_ms": r.ir_ms,
                    "compile_ms": r.compile_ms,
                    "ip_sets_parsed": self.compiler.parsed_last,
                })
            }),
            "updates": self.updates,
            "failed": self.failed,
            "last_error": self.last_error,
            "last_update": self.last_update.map(iso8601),
            "last_update_ago_s": self.last_update.map(ago),
            "last_apply_ms": self.last_apply_ms,
            "last_latency_ms": self.last_latency_ms,
            "max_apply_ms": self.max_apply_ms,
            "unknown_messages": self.unknown_total + current_unknown,
            "sessions": self.sessions,
            "failed_sessions": self.failed_sessions,
            "last_end": self.last_end.as_ref().map(|e| json!({
                "session": e.id, "at": iso8601(e.at), "reason": e.reason, "error": e.error,
                "messages": e.stats.messages})),
        })
    }
}
