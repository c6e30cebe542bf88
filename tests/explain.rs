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

mod dry_run_is_the_pipeline {
    //! `explain` is the pipeline in a dry run: for generated packet
    //! sequences over several table states, the action explain reports for
    //! each packet (verdict, drop reason, egress port) is the one the
    //! pipeline then takes with the same packet, and explain changes no
    //! connection.
    use super::*;
    use engine::control::explain::explain_frame;
    use engine::pipeline::Action;
    use engine::state::Unresolved;
    use engine::wire::build::{frame, FrameSpec};
    use engine::wire::Family;
    use proptest::prelude::*;

    /// The kernel-reference node: with neighbours missing handed to the
    /// kernel or dropped, with and without mid-stream TCP pickup.
    fn tables(variant: u8) -> Arc<Tables> {
        let cfg =
            engine::sources::config::Config::load(&fixtures().join("kernel/sluice-policy.yaml"))
                .unwrap();
        let mut s = cfg.state();
        s.kernel.unresolved = if variant & 1 == 1 {
            Unresolved::Kernel
        } else {
            Unresolved::Drop
        };
        s.conntrack.tcp_loose = variant & 2 == 0;
        Arc::new(engine::state::build::replay_tables(&s).unwrap())
    }

    const V4: [u32; 7] = [
        0xc000_0264, // 192.0.2.100 outside, with a neighbour
        0xc000_0265, // 192.0.2.101 outside, none
        0x0a01_0005, // 10.1.0.5 pod (backend)
        0x0a01_0007, // 10.1.0.7 pod, no neighbour
        0x0a60_000a, // 10.96.0.10 service VIP
        0x0a60_000b, // 10.96.0.11 service VIP
        0xc000_0201, // 192.0.2.1 the node
    ];
    const PORTS: [u16; 6] = [80, 53, 8080, 8000, 40000, 40001];
    const FLAGS: [u8; 7] = [0x02, 0x12, 0x10, 0x11, 0x04, 0x18, 0x00];

    #[derive(Clone, Debug)]
    struct Pkt {
        ingress: u16,
        src: usize,
        dst: usize,
        proto: u8,
        sport: usize,
        dport: usize,
        flags: usize,
        ttl: u8,
        v6: bool,
        dt: u64,
    }

    fn pkt() -> impl Strategy<Value = Pkt> {
        (
            0u16..2,
            0usize..V4.len(),
            0usize..V4.len(),
            prop_oneof![Just(6u8), Just(17u8), Just(1u8), Just(0u8)],
            (0usize..PORTS.len(), 0usize..PORTS.len()),
            0usize..FLAGS.len(),
            prop_oneof![Just(64u8), Just(1u8)],
            prop::bool::weighted(0.15),
            prop_oneof![Just(0u64), Just(1_000_000u64), Just(200_000_000_000u64)],
        )
            .prop_map(
                |(ingress, src, dst, proto, (sport, dport), flags, ttl, v6, dt)| Pkt {
                    ingress,
                    src,
                    dst,
                    proto,
                    sport,
                    dport,
                    flags,
                    ttl,
                    v6,
                    dt,
                },
            )
    }

    fn bytes(t: &Tables, p: &Pkt) -> Vec<u8> {
        let (family, src, dst, proto) = if p.v6 {
            // The same hosts in 2001:db8::/96 (no IPv6 routes: no_route or
            // martian, which must agree too).
            let six = |a: u32| 0x2001_0db8u128 << 96 | u128::from(a);
            let proto = if p.proto == 1 { 58 } else { p.proto };
            (Family::V6, six(V4[p.src]), six(V4[p.dst]), proto)
        } else {
            (
                Family::V4,
                u128::from(V4[p.src]),
                u128::from(V4[p.dst]),
                p.proto,
            )
        };
        let icmp = match (proto, p.flags % 2) {
            (1, 0) => (8, 0),
            (1, _) => (0, 0),
            (58, 0) => (128, 0),
            (58, _) => (129, 0),
            _ => (0, 0),
        };
        frame(&FrameSpec {
            dst_mac: t.port_mac(p.ingress),
            src_mac: [2, 0, 0, 0, 0, 0xfe],
            family,
            src,
            dst,
            proto: if proto == 0 { 47 } else { proto },
            sport: PORTS[p.sport],
            dport: PORTS[p.dport],
            icmp,
            tcp_flags: FLAGS[p.flags],
            ttl: p.ttl,
            payload: 10,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        #[test]
        fn explain_predicts_every_action(variant in 0u8..4, pkts in prop::collection::vec(pkt(), 1..24)) {
            let t = tables(variant);
            let ct = Arc::new(Conntrack::new(1024, 7));
            let mut pl = Pipeline::new(t.clone(), ct.clone());
            let mut now = 1_000_000u64;
            for p in &pkts {
                now += p.dt;
                let f = bytes(&t, p);
                let before = ct.snapshot_all();
                let (predicted, report) = explain_frame(&t, &ct, now, p.ingress, &f);
                prop_assert_eq!(ct.snapshot_all(), before, "explain changed conntrack");
                let mut g = f.clone();
                let mut b = Batch::new();
                b.push(&mut g, p.ingress).unwrap();
                pl.process(now, &mut b);
                let actual: Action = b.slots()[0].action;
                prop_assert_eq!(predicted, actual, "{:?}\n{}", p, report);
            }
        }
    }
}
