//! The expiry sweep is paced by time, not by traffic: a pipeline checks
//! its part of the connection table at the rate that covers it once per
//! `SWEEP_PERIOD_NS`, however many batches arrive in that time, and an
//! expired connection's slot comes back within about one period.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bench::packet::{self as pk, flags, Ip};
use common::*;
use engine::pipeline::{Action, Pipeline, SWEEP_MAX_PER_BATCH, SWEEP_PERIOD_NS};
use engine::tables::conntrack::Conntrack;

const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const SEC: u64 = 1_000_000_000;
/// Connections opened, all at once.
const OPENED: usize = 500;

/// A SYN from outside host `i` to the backend pod's allowed port 8080.
fn syn(i: usize) -> Vec<u8> {
    let c = Ip::V4([198, 51, (i >> 8) as u8, i as u8]);
    let pod = Ip::p("10.1.0.5");
    let seg = pk::tcp(c, pod, 40000, 8080, 1, 0, flags::SYN, &[]);
    pk::eth_ip(UPLINK_MAC, GW_MAC, &pk::ip(c, pod, 6, 64, &seg))
}

/// Opens `OPENED` connections at 1 s, then keeps one more alive with a
/// batch every `step` ns from 40 s (the others' 30 s SYN timeout has
/// passed) to `until`; returns the live entries left.
fn run(step: u64, until: u64) -> usize {
    let mut p = Pipeline::new(kernel_policy_tables(), Arc::new(Conntrack::new(4096, 1)));
    let opened: Vec<Vec<u8>> = (0..OPENED).map(syn).collect();
    for chunk in opened.chunks(50) {
        let actions = send_batch(&mut p, SEC, chunk);
        assert!(
            actions.iter().all(|a| matches!(a, Action::Forward(_))),
            "{actions:?}"
        );
    }
    assert_eq!(p.conntrack().len(), OPENED);
    let keep = syn(OPENED);
    let mut now = 40 * SEC;
    while now <= until {
        send_batch(&mut p, now, std::slice::from_ref(&keep));
        now += step;
    }
    p.conntrack().len()
}

#[test]
fn the_sweep_is_paced_by_time_and_reclaims_within_a_period() {
    let period = SWEEP_PERIOD_NS;
    // A fifth of a period after the sweep starts: about a fifth of the
    // table checked, whether that took 200 batches or 2,000, plus what the
    // first batch after the 39 s idle gap catches up (the most a batch
    // checks, and one more batch's worth owed).
    let fifth = 40 * SEC + period / 5;
    let few = run(period / 1000, fifth);
    let many = run(period / 10_000, fifth);
    let checked = (OPENED + 1) / 5 + 2 * SWEEP_MAX_PER_BATCH;
    for left in [few, many] {
        let removed = OPENED + 1 - left;
        assert!(
            removed.abs_diff(checked) <= 3,
            "{removed} removed, about {checked} expected (left: {few} and {many})"
        );
    }
    // After a whole period (and a little), only the live one is left.
    assert_eq!(run(period / 1000, 40 * SEC + period + period / 20), 1);
}
