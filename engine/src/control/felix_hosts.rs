//! Felix's host endpoints' status (`shared/spec/felix.md` section 2.5),
//! from the tables in use: an endpoint is `up` when it governs at least
//! one port (sluice is attached to the interface and enforces its
//! policy there), `down` when no port's interface is its (the interface
//! is absent, or not one sluice runs on) and `error` when the tables
//! could not be built or its policy fails closed (something it names was
//! never sent). [`super::felix::FelixRecord::send_statuses`] sends each
//! change once, everything again to a new session, and a remove for an
//! endpoint that went, as for workload endpoints.

use std::collections::BTreeMap;

use super::felix::{EpStatus, HostEp};
use crate::sources::felix::FelixModel;
use crate::tables::host::Binding;
use crate::tables::Tables;

/// Each host endpoint of `m` with its status under tables `t`, whose
/// ports named in `down` have no interface now; `fail_closed` lists the policy's endpoints that fail closed (names
/// `host:<id>`, possibly with the kind in parentheses), `build_error` why
/// the last state could not be built.
pub fn statuses(
    m: &FelixModel,
    t: &Tables,
    down: &[String],
    fail_closed: &[(String, String)],
    build_error: Option<&str>,
) -> BTreeMap<String, HostEp> {
    let mut out = BTreeMap::new();
    for id in m.host_endpoints.keys() {
        let index = t.host.policy.endpoints.iter().position(|e| &e.id == id);
        let bound: Vec<String> = index
            .map(|i| {
                t.host
                    .ports_of(i)
                    .into_iter()
                    .filter_map(|p| t.ports.get(usize::from(p)).map(|p| p.name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let (ports, absent): (Vec<String>, Vec<String>) =
            bound.into_iter().partition(|p| !down.contains(p));
        let key = format!("host:{id}");
        let failed = fail_closed
            .iter()
            .find(|(e, _)| *e == key || e.starts_with(&format!("{key} (")));
        let (status, reason) = if let Some(e) = build_error {
            (EpStatus::Error, Some(format!("tables not built: {e}")))
        } else if let Some((_, why)) = failed {
            (EpStatus::Error, Some(format!("fails closed: {why}")))
        } else if ports.is_empty() && !absent.is_empty() {
            let why = format!("interface of port(s) {} absent", absent.join(", "));
            (EpStatus::Down, Some(why))
        } else if ports.is_empty() {
            let why = match index.map(|i| &t.host.policy.endpoints[i].binding) {
                Some(Binding::Name(n)) => format!("no port on interface {n:?}"),
                Some(Binding::All) => "no port without a host endpoint of its own".into(),
                Some(Binding::Addresses(a)) if a.is_empty() => {
                    "neither an interface nor expected addresses".into()
                }
                Some(Binding::Addresses(_)) => "no port holds its expected addresses".into(),
                None => "not in the policy applied".into(),
            };
            (EpStatus::Down, Some(why))
        } else {
            (EpStatus::Up, None)
        };
        out.insert(
            id.clone(),
            HostEp {
                ports,
                status,
                reason,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::control::felix::FelixRecord;
    use crate::sources::felix::proto::{self, from_dataplane::Payload};
    use crate::sources::felix::{Outbox, PolicyCompiler};
    use crate::state::{build, CompiledInput, NodeState, PolicyInput, PortSpec};

    fn tables(m: &FelixModel) -> Tables {
        let c = PolicyCompiler::default().compile(m);
        let mut s = NodeState::empty("test");
        for name in ["eth0", "cali1"] {
            s.ports.push(PortSpec {
                name: name.into(),
                interface: Some(name.into()),
                queues: Default::default(),
                mode: Default::default(),
                mac: Some([2, 0, 0, 0, 0, 1]),
                addresses: Vec::new(),
                zone: 0,
            });
        }
        s.policy = PolicyInput::Compiled(CompiledInput {
            origin: "felix".into(),
            classifier: c.classifier,
            host: c.host,
        });
        build::replay_tables(&s).unwrap()
    }

    fn hep(name: &str) -> Arc<proto::HostEndpoint> {
        Arc::new(proto::HostEndpoint {
            name: name.into(),
            ..Default::default()
        })
    }

    /// The host endpoint status messages queued, as (id, status or
    /// "removed").
    fn sent(rx: &crossbeam::channel::Receiver<Payload>) -> Vec<(String, String)> {
        rx.try_iter()
            .filter_map(|p| match p {
                Payload::HostEndpointStatusUpdate(u) => {
                    Some((u.id.unwrap().endpoint_id, u.status.unwrap().status))
                }
                Payload::HostEndpointStatusRemove(r) => {
                    Some((r.id.unwrap().endpoint_id, "removed".into()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn host_endpoint_status_up_down_error_and_remove_once_per_change() {
        let mut m = FelixModel::default();
        m.host_endpoints.insert("a-eth0".into(), hep("eth0"));
        m.host_endpoints.insert("b-eth9".into(), hep("eth9"));
        // A workload interface is never a host endpoint's, even by name.
        m.host_endpoints.insert("c-cali".into(), hep("cali1"));
        let t = tables(&m);
        let st = statuses(&m, &t, &[], &[], None);
        assert_eq!(st["a-eth0"].status, EpStatus::Up);
        assert_eq!(st["a-eth0"].ports, vec!["eth0".to_string()]);
        assert_eq!(st["b-eth9"].status, EpStatus::Down);
        assert!(st["b-eth9"].reason.as_deref().unwrap().contains("eth9"));
        assert_eq!(st["c-cali"].status, EpStatus::Down);
        // eth0's interface gone: down; a build error: error; failing
        // closed: error.
        let down = statuses(&m, &t, &["eth0".into()], &[], None);
        assert_eq!(down["a-eth0"].status, EpStatus::Down);
        let err = statuses(&m, &t, &[], &[], Some("no"));
        assert_eq!(err["a-eth0"].status, EpStatus::Error);
        let fc = [(
            "host:a-eth0 (forward)".to_string(),
            "policy p was never sent".to_string(),
        )];
        let fc = statuses(&m, &t, &[], &fc, None);
        assert_eq!(fc["a-eth0"].status, EpStatus::Error);
        assert_eq!(fc["b-eth9"].status, EpStatus::Down);

        let mut f = FelixRecord::new(PathBuf::from("/nonexistent"), 1 << 20);
        let (out, rx) = Outbox::channel(64);
        f.connected(1, out);
        f.current.as_mut().unwrap().in_sync = true;
        f.host_endpoints = st.clone();
        f.send_statuses();
        let mut got = sent(&rx);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("a-eth0".to_string(), "up".to_string()),
                ("b-eth9".to_string(), "down".to_string()),
                ("c-cali".to_string(), "down".to_string()),
            ]
        );
        // Nothing changed: nothing sent.
        f.send_statuses();
        assert!(sent(&rx).is_empty());
        // eth0 goes down, b goes away.
        f.host_endpoints = down;
        f.host_endpoints.remove("b-eth9");
        f.send_statuses();
        let mut got = sent(&rx);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("a-eth0".to_string(), "down".to_string()),
                ("b-eth9".to_string(), "removed".to_string()),
            ]
        );
        // A new session hears everything again.
        let (out, rx2) = Outbox::channel(64);
        f.connected(2, out);
        f.current.as_mut().unwrap().in_sync = true;
        f.send_statuses();
        assert_eq!(sent(&rx2).len(), 2);
    }
}
