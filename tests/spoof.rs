//! Anti-spoofing through the pipeline: a port with a source filter (a
//! Felix workload's) forwards what its endpoint sends from its own
//! addresses or an allowed prefix, and drops anything else as `spoofed`,
//! before conntrack: a spoofed packet neither opens a connection nor
//! passes on one that exists; ports without a filter are untouched.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bench::packet::{self as pk, flags, Ip};
use common::TempDir;
use engine::pipeline::{Action, Batch, DropReason, Pipeline};
use engine::sources::config::Config;
use engine::state::SourceFilterSpec;
use engine::tables::conntrack::Conntrack;
use engine::wire::Cidr;

const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PODS_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const POD_MAC: [u8; 6] = [2, 0, 0, 1, 0, 5];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

fn send(p: &mut Pipeline, ingress: u16, frame: &[u8]) -> Action {
    let mut f = frame.to_vec();
    let mut b = Batch::new();
    b.push(f.as_mut_slice(), ingress).unwrap();
    p.process(1, &mut b);
    b.slots()[0].action
}

#[test]
fn workload_ports_drop_sources_not_their_own() {
    let dir = TempDir::new("spoof");
    let y = "ports:\n  - {name: uplink, mac: \"02:00:00:00:00:01\", addresses: [\"192.0.2.1/24\"]}\n  - {name: pods, mac: \"02:00:00:00:00:02\", addresses: [\"10.1.0.1/16\"]}\nroutes:\n  - {prefix: \"10.1.0.0/16\", port: pods}\n  - {prefix: \"0.0.0.0/0\", port: uplink, via: \"192.0.2.254\"}\nneighbors:\n  - {ip: \"192.0.2.254\", mac: \"02:00:00:00:00:fe\", port: uplink}\n  - {ip: \"10.1.0.5\", mac: \"02:00:00:01:00:05\", port: pods}\n";
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, y).unwrap();
    let mut s = Config::load(&path).unwrap().state();
    s.source_filters.push(SourceFilterSpec {
        port: 1,
        allowed: vec![
            Cidr::parse("10.1.0.5/32").unwrap(),
            Cidr::parse("172.16.9.0/24").unwrap(),
        ],
    });
    let t = Arc::new(engine::state::build::replay_tables(&s).unwrap());
    let ct = Arc::new(Conntrack::new(1024, 1));
    let mut p = Pipeline::new(t, ct.clone());
    let (pod, client) = (Ip::p("10.1.0.5"), Ip::p("198.51.100.7"));
    let from_pod = |src: Ip, fl: u8, seq: u32| {
        let seg = pk::tcp(src, client, 8080, 40000, seq, 0, fl, &[]);
        pk::eth_ip(PODS_MAC, POD_MAC, &pk::ip(src, client, 6, 64, &seg))
    };
    // The pod's own address and an allowed prefix are forwarded.
    assert_eq!(
        send(&mut p, 1, &from_pod(pod, flags::SYN, 1)),
        Action::Forward(0)
    );
    let allowed = Ip::p("172.16.9.77");
    assert_eq!(
        send(&mut p, 1, &from_pod(allowed, flags::SYN, 1)),
        Action::Forward(0)
    );
    let opened = ct.len();
    // Another source is dropped as spoofed and opens nothing.
    let other = Ip::p("10.1.0.6");
    assert_eq!(
        send(&mut p, 1, &from_pod(other, flags::SYN, 1)),
        Action::Drop(DropReason::Spoofed)
    );
    assert_eq!(ct.len(), opened, "a spoofed SYN opened a connection");
    // A spoofed packet of the pod's own connection (the client's address
    // as source, as a reflection attack would) is dropped too.
    let seg = pk::tcp(client, pod, 40000, 8080, 2, 2, flags::ACK, &[]);
    let reflected = pk::eth_ip(PODS_MAC, POD_MAC, &pk::ip(client, pod, 6, 64, &seg));
    assert_eq!(
        send(&mut p, 1, &reflected),
        Action::Drop(DropReason::Spoofed)
    );
    // The same source on the uplink (no filter) is the client's own.
    let seg = pk::tcp(client, pod, 40000, 8080, 2, 2, flags::SYN | flags::ACK, &[]);
    let reply = pk::eth_ip(UPLINK_MAC, GW_MAC, &pk::ip(client, pod, 6, 64, &seg));
    assert_eq!(send(&mut p, 0, &reply), Action::Forward(1));
    let c = p.counters();
    assert_eq!(c.drops[DropReason::Spoofed as usize], 2);
    assert_eq!(DropReason::Spoofed.name(), "spoofed");
}
