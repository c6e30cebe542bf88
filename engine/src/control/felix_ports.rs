//! Felix's workload endpoints as ports: each endpoint whose interface
//! exists is attached as a port, the same way `ctl port add` attaches one
//! ([`Runtime::change`]: numbers kept, sockets opened on the control
//! thread, the other ports undisturbed), named after the endpoint
//! ([`felix::convert::port_name`]) so that an update moving it to another
//! interface rebinds the same port. A remove detaches it. What the model
//! then adds for it (routes, neighbours, source filter) comes from
//! [`felix::to_state`] on the state with the port in it.
//!
//! An endpoint whose interface does not exist (yet: the CNI usually
//! creates the veth first, not always) is `down` and attached when the
//! interface appears (looked for every [`super::runtime::VANISHED_EVERY`]);
//! an interface deleted under sluice takes its port away and the endpoint
//! is `down` again. An attach that fails is `error`, with the reason in
//! the log and `ctl felix`, and is retried when the endpoint or its
//! interface changes. An endpoint whose interface is already a port of the
//! config is served by that port. The status of each goes back to Felix
//! once the tables that program it are swapped in
//! ([`FelixRecord::send_statuses`]), with the host endpoints' status
//! ([`super::felix_hosts`]).

use std::collections::BTreeMap;

use super::felix::{Endpoint, EpStatus, FelixRecord};
use super::ports::AddedPort;
use super::runtime::Runtime;
use crate::io::sys;
use crate::sources::config::PortConfig;
use crate::sources::felix::{self, convert::port_name};
use crate::state::NodeState;
use crate::worker::live::{LiveEngine, PortPlan};

fn log(msg: &str) {
    tracing::warn!("{msg}");
    eprintln!("sluice: felix: {msg}");
}

/// The port attached for an endpoint on interface `ifname`.
fn port(name: String, ifname: &str) -> AddedPort {
    AddedPort {
        port: PortConfig {
            name,
            interface: Some(ifname.to_string()),
            queues: Default::default(),
            mode: Default::default(),
            mac: None,
            addresses: Vec::new(),
            zone: 0,
        },
        routes: Vec::new(),
        neighbors: Vec::new(),
    }
}

/// Whether two lists of Felix ports attach the same names to the same
/// interfaces.
fn same(a: &[AddedPort], b: &[AddedPort]) -> bool {
    a.len() == b.len()
        && a.iter().all(|x| {
            b.iter()
                .any(|y| y.port.name == x.port.name && y.port.interface == x.port.interface)
        })
}

impl Runtime {
    /// Attaches and detaches ports until they match the last Felix
    /// model's endpoints (see the module docs), then builds the state with
    /// what the model adds, swaps it in (if it differs from `old`, the
    /// state the running tables were built from) and sends the endpoints'
    /// status. An error is a state that could not be built: the tables
    /// that run stay.
    pub fn felix_program(&mut self, engine: &mut LiveEngine, old: NodeState) -> Result<(), String> {
        let changed = self.felix_attach(engine);
        // A port change swapped in tables built with the model already.
        let old = if changed { self.state() } else { old };
        let base = self.base();
        let Some(f) = self.felix.as_mut() else {
            return Ok(());
        };
        let Some((_, m)) = f.model.as_ref() else {
            return Ok(());
        };
        let (new, rep) = felix::to_state(m, &base);
        let new = f.with_policy(new);
        f.reported(rep);
        let r = self.swap_state(engine, &old, &new).map(|_| ());
        self.felix_hosts_status(r.as_ref().err().map(|e| e.as_str()));
        let Some(f) = self.felix.as_mut() else {
            return r;
        };
        if let Err(e) = &r {
            // Not enforcing what the model says: report it.
            for ep in f.endpoints.values_mut() {
                if ep.status == EpStatus::Up {
                    ep.status = EpStatus::Error;
                    ep.reason = Some(format!("tables not built: {e}"));
                }
            }
        }
        f.send_statuses();
        r
    }

    /// Records each host endpoint's status under the tables in use
    /// (`build_error`: why the last state could not be built); the caller
    /// sends what changed.
    fn felix_hosts_status(&mut self, build_error: Option<&str>) {
        let tables = self.tables.clone();
        let down = self.down.clone();
        let Some(f) = self.felix.as_mut() else {
            return;
        };
        let Some((_, m)) = f.model.as_ref() else {
            return;
        };
        let fail_closed = f
            .policy
            .as_ref()
            .map(|p| p.report.fail_closed.as_slice())
            .unwrap_or_default();
        f.host_endpoints =
            super::felix_hosts::statuses(m, &tables, &down, fail_closed, build_error);
    }

    /// After ports went down or came back outside a Felix update (an
    /// interface deleted, a reload): the host endpoints' status again,
    /// sent if it changed.
    pub(super) fn felix_hosts_refresh(&mut self) {
        self.felix_hosts_status(None);
        if let Some(f) = self.felix.as_mut() {
            f.send_statuses();
        }
    }

    /// Brings the Felix ports in line with the model's endpoints and
    /// records each endpoint's status; whether the ports changed (tables
    /// swapped).
    fn felix_attach(&mut self, engine: &mut LiveEngine) -> bool {
        let Some(f) = self.felix.as_ref() else {
            return false;
        };
        let eps: Vec<_> = f
            .model
            .as_ref()
            .map(|(_, m)| {
                m.workload_endpoints
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut states = BTreeMap::new();
        let mut want: Vec<AddedPort> = Vec::new();
        for (id, e) in &eps {
            let name = port_name(id);
            let mut st = Endpoint {
                port: name.clone(),
                interface: e.name.clone(),
                status: EpStatus::Down,
                reason: None,
                failed: None,
            };
            // A port of the config (or of `ctl`) on the interface serves it.
            let other = self.cfg.ports.iter().find(|p| {
                p.interface.as_deref() == Some(e.name.as_str())
                    && !self.felix_ports.iter().any(|x| x.port.name == p.name)
            });
            if let Some(p) = other {
                st.port = p.name.clone();
                if engine.ports().iter().any(|x| x.name == p.name) {
                    st.status = EpStatus::Up;
                } else {
                    st.reason = Some(format!("port {} is down", p.name));
                }
                states.insert(id.clone(), st);
                continue;
            }
            if e.name.is_empty() {
                st.status = EpStatus::Error;
                st.reason = Some("the endpoint names no interface".into());
                states.insert(id.clone(), st);
                continue;
            }
            let Ok(ifindex) = sys::if_nametoindex(&e.name) else {
                st.reason = Some(format!("interface {} does not exist", e.name));
                states.insert(id.clone(), st);
                continue;
            };
            let prev = f.endpoints.get(id);
            if let Some(p) = prev.filter(|p| {
                p.failed
                    .as_ref()
                    .is_some_and(|(was, idx)| **was == **e && *idx == ifindex)
            }) {
                states.insert(id.clone(), p.clone());
                continue;
            }
            want.push(port(name, &e.name));
            states.insert(id.clone(), st);
        }
        let mut changed = false;
        if !same(&want, &self.felix_ports) {
            let old = std::mem::replace(&mut self.felix_ports, want.clone());
            if self.felix_change(engine).is_ok() {
                changed = true;
            } else {
                // Find which: keep what stays, then add the others one by
                // one.
                self.felix_ports = old
                    .into_iter()
                    .filter(|p| {
                        want.iter().any(|w| {
                            w.port.name == p.port.name && w.port.interface == p.port.interface
                        })
                    })
                    .collect();
                match self.felix_change(engine) {
                    Ok(_) => changed = true,
                    Err(e) => log(&format!("detaching endpoints: {e}")),
                }
                for w in &want {
                    if self.felix_ports.iter().any(|p| p.port.name == w.port.name) {
                        continue;
                    }
                    self.felix_ports.push(w.clone());
                    match self.felix_change(engine) {
                        Ok(_) => changed = true,
                        Err(e) => {
                            self.felix_ports.pop();
                            let id = states
                                .iter()
                                .find(|(_, s)| s.port == w.port.name)
                                .map(|(id, _)| id.clone());
                            if let Some(st) = id.and_then(|id| states.get_mut(&id)) {
                                log(&format!(
                                    "endpoint {}: attaching interface {} failed: {e}",
                                    st.port, st.interface
                                ));
                                let ep = eps.iter().find(|(i, _)| port_name(i) == st.port);
                                let idx = sys::if_nametoindex(&st.interface).unwrap_or(0);
                                st.status = EpStatus::Error;
                                st.reason = Some(e);
                                st.failed = ep.map(|(_, x)| (x.clone(), idx));
                            }
                        }
                    }
                }
            }
        }
        // Attached and with sockets: up.
        for st in states.values_mut() {
            let attached = self.felix_ports.iter().any(|p| p.port.name == st.port);
            if attached {
                if engine.ports().iter().any(|p| p.name == st.port) {
                    st.status = EpStatus::Up;
                    st.reason = None;
                } else {
                    st.status = EpStatus::Error;
                    st.reason = Some(format!("port {} has no sockets", st.port));
                }
            }
        }
        if let Some(f) = self.felix.as_mut() {
            f.endpoints = states;
        }
        changed
    }

    /// [`Runtime::change`] with the file's and `ctl`'s ports as they are.
    fn felix_change(&mut self, engine: &mut LiveEngine) -> Result<(), String> {
        let (file, removed, added) = (self.file.clone(), self.removed.clone(), self.added.clone());
        self.change(engine, &file, &removed, &added).map(|_| ())
    }

    /// A Felix port whose interface was deleted under sluice: detached,
    /// its endpoint `down` until the interface is back.
    pub(super) fn felix_vanished(&mut self, engine: &mut LiveEngine, p: &PortPlan) {
        let old = self.state();
        self.felix_ports.retain(|a| a.port.name != p.name);
        if let Err(e) = self.felix_change(engine) {
            log(&format!("port {}: {e}", p.name));
            engine.remove_port(p.port);
        }
        if let Err(e) = self.felix_program(engine, old) {
            log(&format!("after port {} vanished: {e}", p.name));
        }
    }

    /// Attaches the endpoints that were `down` once their interface
    /// exists (called every [`super::runtime::VANISHED_EVERY`]).
    pub(super) fn felix_recheck(&mut self, engine: &mut LiveEngine) {
        let due = self.felix.as_ref().is_some_and(|f: &FelixRecord| {
            f.endpoints.values().any(|e| {
                e.status == EpStatus::Down
                    && !e.interface.is_empty()
                    && sys::if_nametoindex(&e.interface).is_ok()
            })
        });
        if due {
            let old = self.state();
            if let Err(e) = self.felix_program(engine, old) {
                log(&format!("attaching endpoints: {e}"));
            }
        }
    }
}
