//! `explain` answers from the live tables and conntrack, without changing
//! them: which connection a flow belongs to, the backend a service would
//! pick, the route, and which tier/policy/rule decided.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use engine::control::explain::{explain, Query};
use engine::pipeline::{Batch, Pipeline};
use engine::tables::conntrack::Conntrack;
use engine::tables::Tables;
use serde_json::json;

fn setup() -> (Arc<Tables>, Arc<Conntrack>) {
    (kernel_policy_tables(), Arc::new(Conntrack::new(1024, 3)))
}

fn q(t: &Tables, v: serde_json::Value) -> Query {
    Query::from_json(&v, t).unwrap()
}

#[test]
fn a_denied_flow_names_what_denied_it() {
    let (t, ct) = setup();
    let e = explain(
        &t,
        &ct,
        1,
        &q(
            &t,
            json!({"proto": "icmp", "src": "192.0.2.100", "dst": "10.1.0.5", "icmp_type": 8, "icmp_code": 0}),
        ),
    );
    assert_eq!(
        e["verdict"],
        json!({"action": "drop", "reason": "policy"}),
        "{e}"
    );
    assert_eq!(e["policy"]["ingress"]["verdict"], "deny");
    assert_eq!(
        e["policy"]["ingress"]["endpoint"],
        "default/node1-k8s-web--0-eth0"
    );
    assert_eq!(
        e["policy"]["ingress"]["decided_by"],
        json!({"tier": "default", "end_of_tier": true})
    );
    assert_eq!(e["route"]["port"], "pods");
}

#[test]
fn a_service_flow_shows_backend_and_allowing_rule() {
    let (t, ct) = setup();
    let e = explain(
        &t,
        &ct,
        1,
        &q(
            &t,
            json!({"proto": "tcp", "src": "192.0.2.100", "sport": 40000, "dst": "10.96.0.10", "dport": 80}),
        ),
    );
    assert_eq!(
        e["service"],
        json!({"name": "web", "backend": "10.1.0.5:8080"})
    );
    assert_eq!(e["verdict"]["action"], "forward");
    assert_eq!(
        e["policy"]["ingress"]["decided_by"],
        json!({"tier": "default", "policy": "default/web-ingress-only-service-ports", "rule": 0})
    );
    assert_eq!(e["conntrack"], serde_json::Value::Null);
}

#[test]
fn a_known_connection_is_found_in_both_directions() {
    let (t, ct) = setup();
    // Open a masqueraded connection from the pod by replaying its first packet.
    let frames = frames(&fixtures().join("kernel/pods-in.pcap"));
    let syn = frames
        .iter()
        .find(|f| engine::wire::parse(f).is_ok_and(|p| p.dport == 8000 && p.tcp_flags == 0x02))
        .unwrap()
        .clone();
    let p = engine::wire::parse(&syn).unwrap();
    let mut pl = Pipeline::new(t.clone(), ct.clone());
    let mut f = syn.clone();
    let mut b = Batch::new();
    b.push(&mut f, 1).unwrap();
    pl.process(1_000, &mut b);
    drop(b);
    assert_eq!(ct.len(), 1);
    let fwd = explain(
        &t,
        &ct,
        2_000,
        &q(
            &t,
            json!({"proto": "tcp", "src": "10.1.0.5", "sport": p.sport, "dst": "192.0.2.100", "dport": 8000, "ingress": "pods"}),
        ),
    );
    assert_eq!(fwd["conntrack"]["direction"], "original", "{fwd}");
    assert_eq!(fwd["conntrack"]["state"], "SYN_SENT");
    assert_eq!(fwd["translated_source"], format!("192.0.2.1:{}", p.sport));
    assert_eq!(fwd["policy"]["evaluated"], false);
    // The reply, addressed to the node, belongs to it too.
    let rev = explain(
        &t,
        &ct,
        2_000,
        &q(
            &t,
            json!({"proto": "tcp", "src": "192.0.2.100", "sport": 8000, "dst": "192.0.2.1", "dport": p.sport}),
        ),
    );
    assert_eq!(rev["conntrack"]["direction"], "reply", "{rev}");
    assert_eq!(
        rev["translated_destination"],
        format!("10.1.0.5:{}", p.sport)
    );
    assert_eq!(rev["verdict"]["action"], "forward");
    // The connection records which rule allowed it (egress of the pod).
    assert_eq!(
        fwd["conntrack"]["policy"],
        json!({"tier": "default", "policy": "default/web-ingress-only-service-ports", "rule": 0})
    );
    // explain changed nothing.
    assert_eq!(ct.len(), 1);
}
