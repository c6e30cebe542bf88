//! Ports that come and go while running: their numbers, the config they
//! add up to, and what applying a new set means.
//!
//! ## Port numbers
//! Routes, neighbours, masquerade rules, counters, the XDP port map and the
//! XSKMAP name a port by number. At start the numbers are the config's
//! order (`shared/spec/cli.md`). While running a number is held by a port
//! name for as long as that port exists: removing a port never renumbers
//! another; its number stays vacant (a placeholder port with no name, no
//! interface and no address, which nothing routes to) and is taken by the
//! next port added (the lowest vacant number, else a new one). A reused
//! number's counters start over in the workers, so per-port counters
//! always mean the port named beside them.
//!
//! ## Where ports come from
//! The config file's ports, minus those removed with `ctl port remove`,
//! plus those added with `ctl port add` (each with the routes and
//! neighbours given with it). A reload re-reads the file (its ports come
//! back as it lists them) and keeps the ports added with `ctl`, unless the
//! file now defines one of the same name (the file's wins).

use std::collections::HashSet;

use serde_json::Value;

use crate::sources::config::{Config, NeighborConfig, PortConfig, RouteConfig};
use crate::state::{NodeState, PortSpec, QueueSel, StateDiff};

/// The number each port name holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortNumbers {
    /// Index: port number; `None`: vacant.
    names: Vec<Option<String>>,
}

impl PortNumbers {
    /// The config order: port `i` is the `i`th.
    pub fn dense(state: &NodeState) -> PortNumbers {
        PortNumbers {
            names: state.ports.iter().map(|p| Some(p.name.clone())).collect(),
        }
    }

    /// The number of `name`.
    pub fn of(&self, name: &str) -> Option<u16> {
        self.names
            .iter()
            .position(|n| n.as_deref() == Some(name))
            .map(|i| i as u16)
    }

    /// The name holding `number`.
    pub fn name(&self, number: u16) -> Option<&str> {
        self.names.get(usize::from(number))?.as_deref()
    }

    /// Numbers in use or vacant (the next new number).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// No number at all.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The numbers for `names` (a new set of ports): kept names keep
    /// theirs, gone names leave theirs vacant, new names take the lowest
    /// vacant number not vacated by this very change (so a port removed
    /// and another added in one step never share a number while the old
    /// one's sockets close), else a new one.
    pub fn renumber<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> PortNumbers {
        let names: Vec<&str> = names.into_iter().collect();
        let mut out: Vec<Option<String>> = self
            .names
            .iter()
            .map(|n| n.clone().filter(|n| names.contains(&n.as_str())))
            .collect();
        let vacated: HashSet<usize> = self
            .names
            .iter()
            .enumerate()
            .filter(|(i, n)| n.is_some() && out[*i].is_none())
            .map(|(i, _)| i)
            .collect();
        for n in names {
            if out.iter().any(|o| o.as_deref() == Some(n)) {
                continue;
            }
            match (0..out.len()).find(|i| out[*i].is_none() && !vacated.contains(i)) {
                Some(i) => out[i] = Some(n.to_string()),
                None => out.push(Some(n.to_string())),
            }
        }
        while out.last().is_some_and(Option::is_none) {
            out.pop();
        }
        PortNumbers { names: out }
    }

    /// `state` (ports numbered by position, as a source makes it) with each
    /// port at its number here and vacant numbers filled with
    /// placeholders; routes, neighbours and masquerade rules renamed to
    /// match. Every port of `state` must have a number.
    pub fn place(&self, state: &NodeState) -> NodeState {
        let mut out = state.clone();
        out.ports = self
            .names
            .iter()
            .map(|n| {
                n.as_ref()
                    .and_then(|n| state.ports.iter().find(|p| p.name == *n))
                    .cloned()
                    .unwrap_or_else(vacant)
            })
            .collect();
        let map = |old: u16| -> u16 {
            state
                .ports
                .get(usize::from(old))
                .and_then(|p| self.of(&p.name))
                .unwrap_or(old)
        };
        for r in &mut out.routes {
            r.port = map(r.port);
        }
        for n in &mut out.neighbors {
            n.port = map(n.port);
        }
        for m in &mut out.masquerade {
            m.port = map(m.port);
        }
        for f in &mut out.source_filters {
            f.port = map(f.port);
        }
        out
    }
}

/// A vacant port number's placeholder: no name, no interface, no address.
pub fn vacant() -> PortSpec {
    PortSpec {
        name: String::new(),
        interface: None,
        queues: QueueSel::List(Vec::new()),
        mode: Default::default(),
        mac: None,
        addresses: Vec::new(),
        zone: 0,
    }
}

/// A port added with `ctl port add`, with the routes and neighbours given
/// with it.
#[derive(Clone, Debug)]
pub struct AddedPort {
    pub port: PortConfig,
    pub routes: Vec<RouteConfig>,
    pub neighbors: Vec<NeighborConfig>,
}

impl AddedPort {
    /// From a `port add` request: `port` (the config file's port keys),
    /// `routes` and `neighbors` (the file's keys without `port`).
    pub fn from_request(req: &Value) -> Result<AddedPort, String> {
        let port: PortConfig = serde_json::from_value(req.get("port").cloned().unwrap_or_default())
            .map_err(|e| format!("port add: {e}"))?;
        let name = port.name.clone();
        let with_port = |v: &Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.insert("port".into(), name.clone().into());
            }
            v
        };
        let list = |key: &str| -> Vec<Value> {
            req.get(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().map(with_port).collect())
                .unwrap_or_default()
        };
        let routes = list("routes")
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(|e| format!("port add {name}: route: {e}")))
            .collect::<Result<_, _>>()?;
        let neighbors = list("neighbors")
            .into_iter()
            .map(|v| {
                serde_json::from_value(v).map_err(|e| format!("port add {name}: neighbor: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(AddedPort {
            port,
            routes,
            neighbors,
        })
    }
}

/// The config the ports add up to: `file` without the ports named in
/// `removed`, plus `added` (a port the file defines too is the file's),
/// validated as a whole (a route, neighbour or masquerade rule naming a
/// port that is not there is refused, naming it).
pub fn merge(file: &Config, removed: &[String], added: &[AddedPort]) -> Result<Config, String> {
    let mut c = file.clone();
    c.ports.retain(|p| !removed.contains(&p.name));
    for a in added {
        if file.ports.iter().any(|p| p.name == a.port.name) {
            continue;
        }
        c.ports.push(a.port.clone());
        c.routes.extend(a.routes.iter().cloned());
        c.neighbors.extend(a.neighbors.iter().cloned());
    }
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

/// What applying a new set of ports does to the running sockets, by port
/// name: ports to bring up, ports to take down, and ports taken down and
/// brought up again (their interface, queues or bind mode changed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortChanges {
    pub up: Vec<String>,
    pub down: Vec<String>,
    pub rebind: Vec<String>,
}

impl PortChanges {
    /// From the difference of two states.
    pub fn of(old: &NodeState, new: &NodeState, diff: &StateDiff) -> PortChanges {
        let find = |s: &NodeState, n: &str| s.ports.iter().find(|p| p.name == n).cloned();
        let rebind = diff
            .ports_changed
            .iter()
            .filter(|n| {
                let (a, b) = (find(old, n), find(new, n));
                a.zip(b).is_some_and(|(a, b)| {
                    a.interface != b.interface || a.queues != b.queues || a.mode != b.mode
                })
            })
            .cloned()
            .collect();
        PortChanges {
            up: diff.ports_added.clone(),
            down: diff.ports_removed.clone(),
            rebind,
        }
    }

    /// Nothing to do to sockets.
    pub fn is_empty(&self) -> bool {
        self.up.is_empty() && self.down.is_empty() && self.rebind.is_empty()
    }
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::state::RouteSpec;
    use crate::wire::Cidr;

    fn state(names: &[&str]) -> NodeState {
        let mut s = NodeState::empty("t");
        s.ports = names
            .iter()
            .map(|n| PortSpec {
                name: n.to_string(),
                interface: Some(format!("if-{n}")),
                ..vacant()
            })
            .collect();
        s
    }

    #[test]
    fn removing_never_renumbers_and_adding_reuses_the_lowest_vacancy() {
        let a = state(&["up", "pod1", "pod2", "pod3"]);
        let n = PortNumbers::dense(&a);
        // pod1 goes: pod2 and pod3 keep 2 and 3, 1 is vacant.
        let n = n.renumber(["up", "pod2", "pod3"]);
        assert_eq!(n.of("pod2"), Some(2));
        assert_eq!(n.of("pod3"), Some(3));
        assert_eq!(n.name(1), None);
        // A port removed and one added in the same step do not share.
        let m = n.renumber(["up", "pod3", "pod4"]);
        assert_eq!(m.of("pod4"), Some(1));
        assert_eq!(m.of("pod3"), Some(3));
        assert_eq!(m.name(2), None);
        let k = n.renumber(["up", "pod2", "pod5"]);
        assert_eq!(k.of("pod5"), Some(1), "the vacancy of an earlier step");
        assert_eq!(k.of("pod2"), Some(2));
        assert_eq!(k.name(3), None);
        // Vacancies at the end are dropped.
        assert_eq!(k.len(), 3);
        // A new name with no vacancy gets the next number.
        let j = k.renumber(["up", "pod2", "pod5", "pod6"]);
        assert_eq!(j.of("pod6"), Some(3));
    }

    #[test]
    fn place_moves_ports_and_what_names_them() {
        let mut s = state(&["up", "pod3"]);
        s.routes.push(RouteSpec {
            prefix: Cidr::parse("10.3.0.0/24").unwrap(),
            port: 1,
            via: None,
        });
        let mut n = PortNumbers::dense(&state(&["up", "pod2", "pod3"]));
        n = n.renumber(["up", "pod3"]);
        let placed = n.place(&s);
        assert_eq!(placed.ports.len(), 3);
        assert_eq!(placed.ports[1].name, "");
        assert!(placed.ports[1].interface.is_none() && placed.ports[1].addresses.is_empty());
        assert_eq!(placed.ports[2].name, "pod3");
        assert_eq!(placed.routes[0].port, 2);
    }

    #[test]
    fn changes_by_name() {
        let a = state(&["up", "pod1"]);
        let mut b = state(&["up", "pod2"]);
        b.ports[0].interface = Some("eth9".into());
        let d = StateDiff::between(&a, &b);
        let c = PortChanges::of(&a, &b, &d);
        assert_eq!(c.up, vec!["pod2".to_string()]);
        assert_eq!(c.down, vec!["pod1".to_string()]);
        assert_eq!(c.rebind, vec!["up".to_string()]);
        let mut e = a.clone();
        e.ports[1].zone = 3;
        let d = StateDiff::between(&a, &e);
        assert!(PortChanges::of(&a, &e, &d).is_empty());
    }

    #[test]
    fn added_ports_merge_and_routes_naming_a_missing_port_are_refused() {
        let file = Config::from_yaml(
            "ports:\n  - {name: up, interface: p0}\n  - {name: b, interface: p1}\nroutes:\n  - {prefix: \"10.0.0.0/8\", port: b}\n",
            "f.yaml",
            std::path::Path::new("."),
        )
        .unwrap();
        let req = serde_json::json!({"port": {"name": "pod1", "interface": "v1", "addresses": ["10.9.0.1/24"]},
                                     "routes": [{"prefix": "10.9.0.2/32"}],
                                     "neighbors": [{"ip": "10.9.0.2", "mac": "02:00:00:00:09:02"}]});
        let added = AddedPort::from_request(&req).unwrap();
        let c = merge(&file, &[], std::slice::from_ref(&added)).unwrap();
        assert_eq!(c.ports.len(), 3);
        assert_eq!(c.routes[1].port, "pod1");
        assert_eq!(c.neighbors[0].port, "pod1");
        // Removing b, which a route of the file names, is refused.
        let e = merge(&file, &["b".into()], &[added]).unwrap_err();
        assert!(e.contains("routes[0].port") && e.contains("\"b\""), "{e}");
        let bad = serde_json::json!({"port": {"name": "x", "mode": "fast"}});
        let e = AddedPort::from_request(&bad).unwrap_err();
        assert!(e.contains("fast"), "{e}");
    }
}
