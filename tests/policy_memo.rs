//! Packets of denied flows are judged again each time (a denied connection
//! leaves no state); each worker's memo of recent denials must answer
//! exactly what the classifier answers, and forget everything when the
//! policy changes.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bench::packet::{self as pk, flags, Ip, Rng};
use common::*;
use engine::pipeline::{Action, DropReason, Pipeline};
use engine::sources::config::Config;
use engine::tables::conntrack::Conntrack;

const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

/// A SYN from the outside to the backend pod on `dport` (the policy allows
/// TCP 8080 and 9999 only).
fn syn(src: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let (c, pod) = (Ip::V4(src), Ip::p("10.1.0.5"));
    let seg = pk::tcp(c, pod, sport, dport, 1, 0, flags::SYN, &[]);
    pk::eth_ip(UPLINK_MAC, GW_MAC, &pk::ip(c, pod, 6, 64, &seg))
}

#[test]
fn every_packet_of_a_denied_flow_is_dropped_and_counted() {
    let t = kernel_policy_tables();
    let mut p = Pipeline::new(t.clone(), Arc::new(Conntrack::new(1024, 1)));
    let f = syn([192, 0, 2, 100], 40000, 22);
    // Once alone, then three times in one batch, then again alone.
    let mut actions = send_batch(&mut p, 1_000, std::slice::from_ref(&f));
    actions.extend(send_batch(
        &mut p,
        2_000,
        &[f.clone(), f.clone(), f.clone()],
    ));
    actions.extend(send_batch(&mut p, 3_000, std::slice::from_ref(&f)));
    assert!(actions
        .iter()
        .all(|a| *a == Action::Drop(DropReason::Policy)));
    let c = p.counters();
    assert_eq!((c.policy_denied, c.policy_allowed), (5, 0));
    assert_eq!(c.policy_hits.iter().sum::<u64>(), 5, "{:?}", c.policy_hits);
    assert_eq!(p.conntrack().len(), 0, "a denied flow leaves no state");
}

/// One long-lived pipeline (its memo carried from batch to batch) and one
/// made afresh for every batch (no memo) see the same random mix of denied
/// and allowed flows, many repeated: their actions and counters agree.
#[test]
fn the_memo_answers_as_the_classifier() {
    let t = kernel_policy_tables();
    let mut kept = Pipeline::new(t.clone(), Arc::new(Conntrack::new(1 << 14, 1)));
    let fresh_ct = Arc::new(Conntrack::new(1 << 14, 1));
    let mut fresh_counters = engine::pipeline::Counters::new(t.ports.len());
    let mut r = Rng(5);
    // 3000 flows over 300 sources and a few ports, so that flows repeat and
    // distinct denied keys share memo slots.
    let flows: Vec<([u8; 4], u16, u16)> = (0..3000)
        .map(|_| {
            let s = [198, 51, 100, 1 + r.below(250) as u8];
            let dport = [22, 23, 80, 443, 8080, 9999][r.below(6) as usize];
            (s, 1024 + r.below(8) as u16, dport)
        })
        .collect();
    let mut now = 1_000_000;
    let mut denied = 0;
    for chunk in (0..20_000)
        .map(|_| flows[r.below(3000) as usize])
        .collect::<Vec<_>>()
        .chunks(64)
    {
        now += 1_000;
        let frames: Vec<Vec<u8>> = chunk.iter().map(|&(s, sp, dp)| syn(s, sp, dp)).collect();
        let a = send_batch(&mut kept, now, &frames);
        let mut p = Pipeline::new(t.clone(), fresh_ct.clone());
        let b = send_batch(&mut p, now, &frames);
        fresh_counters.add(p.counters());
        assert_eq!(a, b);
        denied += a
            .iter()
            .filter(|x| **x == Action::Drop(DropReason::Policy))
            .count();
    }
    assert!(denied > 5_000, "denied {denied}");
    let k = kept.counters();
    assert_eq!(k.policy_denied, fresh_counters.policy_denied);
    assert_eq!(k.policy_allowed, fresh_counters.policy_allowed);
    assert_eq!(k.policy_hits, fresh_counters.policy_hits);
}

#[test]
fn new_tables_forget_the_denials() {
    let t = kernel_policy_tables();
    let mut p = Pipeline::new(t.clone(), Arc::new(Conntrack::new(1024, 1)));
    let f = syn([192, 0, 2, 100], 40000, 22);
    assert_eq!(
        send_batch(&mut p, 1_000, std::slice::from_ref(&f)),
        [Action::Drop(DropReason::Policy)]
    );
    // The same node without policy: the flow is allowed now.
    let mut cfg = Config::load(&fixtures().join("kernel/sluice-policy.yaml")).unwrap();
    cfg.policy = Default::default();
    p.set_tables(Arc::new(
        engine::state::build::replay_tables(&cfg.state()).unwrap(),
    ));
    assert_eq!(
        send_batch(&mut p, 2_000, std::slice::from_ref(&f)),
        [Action::Forward(1)]
    );
}

/// The memo is consulted before the in-order part of the track stage, so
/// it must not drop a packet that an earlier frame of its batch makes part
/// of a connection: a pod's SYN out and, in the same batch, a packet back
/// whose key the memo holds as denied (the same tuple was denied inbound
/// before). Without masquerade, that packet is the reply of the pod's
/// connection and is forwarded, as a pipeline without the memo does.
#[test]
fn a_reply_opened_earlier_in_the_batch_is_not_taken_for_a_denial() {
    let mut cfg = Config::load(&fixtures().join("kernel/sluice-policy.yaml")).unwrap();
    cfg.masquerade = Default::default();
    let t = Arc::new(engine::state::build::replay_tables(&cfg.state()).unwrap());
    let (out, pod) = (Ip::p("192.0.2.100"), Ip::p("10.1.0.5"));
    let inbound = |fl: u8, ttl: u8| {
        let seg = pk::tcp(out, pod, 40000, 22, 1, 0, fl, &[]);
        pk::eth_ip(UPLINK_MAC, GW_MAC, &pk::ip(out, pod, 6, ttl, &seg))
    };
    let seg = pk::tcp(pod, out, 22, 40000, 7, 0, flags::SYN, &[]);
    let pod_syn = pk::eth_ip(
        [2, 0, 0, 0, 0, 2],
        [2, 0, 0, 1, 0, 5],
        &pk::ip(pod, out, 6, 64, &seg),
    );
    let mut kept = Pipeline::new(t.clone(), Arc::new(Conntrack::new(1024, 1)));
    // Inbound to port 22 is denied, and memoised.
    assert_eq!(
        send_batch(&mut kept, 1_000, &[inbound(flags::SYN, 64)]),
        [Action::Drop(DropReason::Policy)]
    );
    // A memoised key with TTL 1 is a TTL drop, as routing comes first.
    assert_eq!(
        send_batch(&mut kept, 1_500, &[inbound(flags::ACK, 1)]),
        [Action::Drop(DropReason::TtlExceeded)]
    );
    assert_eq!(
        send_batch(&mut kept, 1_600, &[inbound(flags::ACK, 64)]),
        [Action::Drop(DropReason::Policy)]
    );
    // The pod opens that tuple outbound; the inbound ACK in the same batch
    // is its reply.
    let frames = [pod_syn, inbound(flags::ACK, 64)];
    let fresh = send_batch(
        &mut Pipeline::new(t.clone(), Arc::new(Conntrack::new(1024, 1))),
        2_000,
        &frames,
    );
    assert_eq!(fresh, [Action::Forward(0), Action::Forward(1)]);
    assert_eq!(send_batch(&mut kept, 2_000, &frames), fresh);
    assert_eq!(kept.counters().policy_denied, 2);
}
