//! The route cache in conntrack entries: a known connection's packets skip
//! the FIB and neighbour lookups with the hop their direction resolved to,
//! which must hold only while the tables it was resolved with are in use.
//! Each direction fills its cache on its first known packet; new tables
//! (a neighbour's MAC changed, a route gone) take effect on the very next
//! packet, and the TTL is still the packet's own.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bench::packet::{self as pk, flags, Ip};
use common::TempDir;
use engine::pipeline::{Action, Batch, DropReason, Pipeline};
use engine::sources::config::Config;
use engine::tables::conntrack::{self, Conntrack, Dir, Timeouts, Tuple};
use engine::tables::Tables;
use engine::wire::Family;

const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PODS_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const GW: &str = "192.0.2.254";

/// Tables for a node with a pod network and a gateway, the pod's and the
/// gateway's MACs given (`None`: no neighbour entry), and optionally the
/// route to the client's network.
fn tables(dir: &TempDir, pod_mac: Option<&str>, gw_mac: &str, client_route: bool) -> Arc<Tables> {
    let mut y = String::from(
        "ports:\n  - {name: uplink, mac: \"02:00:00:00:00:01\", addresses: [\"192.0.2.1/24\"]}\n  - {name: pods, mac: \"02:00:00:00:00:02\", addresses: [\"10.1.0.1/16\"]}\nroutes:\n  - {prefix: \"192.0.2.0/24\", port: uplink}\n  - {prefix: \"10.1.0.0/16\", port: pods}\n",
    );
    if client_route {
        y += &format!("  - {{prefix: \"198.51.100.0/24\", port: uplink, via: \"{GW}\"}}\n");
    }
    y += &format!("neighbors:\n  - {{ip: \"{GW}\", mac: \"{gw_mac}\", port: uplink}}\n");
    if let Some(m) = pod_mac {
        y += &format!("  - {{ip: \"10.1.0.5\", mac: \"{m}\", port: pods}}\n");
    }
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, y).unwrap();
    Arc::new(engine::state::build::replay_tables(&Config::load(&path).unwrap().state()).unwrap())
}

/// One frame through `p` on port `ingress`: its action and bytes after.
fn send(p: &mut Pipeline, now: u64, ingress: u16, frame: &[u8]) -> (Action, Vec<u8>) {
    let mut f = frame.to_vec();
    let mut b = Batch::new();
    b.push(f.as_mut_slice(), ingress).unwrap();
    p.process(now, &mut b);
    let a = b.slots()[0].action;
    drop(b);
    (a, f)
}

/// The route-cache hops of the connection `inbound` opened, per direction,
/// for `t`'s generation.
fn cached(ct: &Conntrack, t: &Tables, inbound: &Tuple) -> (u16, u16) {
    let hit = ct
        .lookup(inbound, ct.hash(inbound), 1, &Timeouts::default())
        .expect("the connection is there");
    (
        conntrack::hops_of(hit.hops, Dir::Original, t.generation()),
        conntrack::hops_of(hit.hops, Dir::Reply, t.generation()),
    )
}

#[test]
fn cached_routes_follow_new_tables_at_once() {
    let dir = TempDir::new("route-cache");
    let t1 = tables(&dir, Some("02:00:00:01:00:05"), "02:00:00:00:00:fe", true);
    let ct = Arc::new(Conntrack::new(1024, 1));
    let mut p = Pipeline::new(t1.clone(), ct.clone());
    let (client, pod) = (Ip::p("198.51.100.7"), Ip::p("10.1.0.5"));
    let inbound = |fl: u8, ttl: u8| {
        let seg = pk::tcp(client, pod, 40000, 8080, 1, 0, fl, &[]);
        pk::eth_ip(
            UPLINK_MAC,
            [2, 0, 0, 0, 0, 0xfe],
            &pk::ip(client, pod, 6, ttl, &seg),
        )
    };
    let outbound = |fl: u8| {
        let seg = pk::tcp(pod, client, 8080, 40000, 9, 2, fl, &[]);
        pk::eth_ip(
            PODS_MAC,
            [2, 0, 0, 1, 0, 5],
            &pk::ip(pod, client, 6, 64, &seg),
        )
    };
    let key = Tuple {
        src: 0xc633_6407,
        dst: 0x0a01_0005,
        sport: 40000,
        dport: 8080,
        proto: 6,
        family: Family::V4,
        zone: 0,
    };
    let dst_mac = |f: &[u8]| <[u8; 6]>::try_from(&f[..6]).unwrap();
    let mut now = 1_000;
    let mut step = |p: &mut Pipeline, ingress: u16, f: &[u8]| {
        now += 1_000;
        send(p, now, ingress, f)
    };

    // Opened by the SYN (the general stages: nothing cached yet), then each
    // direction's first known packet caches its hop.
    let (a, f) = step(&mut p, 0, &inbound(flags::SYN, 64));
    assert_eq!((a, dst_mac(&f)), (Action::Forward(1), [2, 0, 0, 1, 0, 5]));
    assert_eq!(cached(&ct, &t1, &key), (0, 0));
    let (a, f) = step(&mut p, 1, &outbound(flags::SYN | flags::ACK));
    assert_eq!(
        (a, dst_mac(&f)),
        (Action::Forward(0), [2, 0, 0, 0, 0, 0xfe])
    );
    let (a, _) = step(&mut p, 0, &inbound(flags::ACK, 64));
    assert_eq!(a, Action::Forward(1));
    let (o, r) = cached(&ct, &t1, &key);
    assert!(o != 0 && r != 0 && o != r, "hops {o} {r}");
    assert_eq!(t1.hop(o).unwrap().dst_mac, [2, 0, 0, 1, 0, 5]);
    assert_eq!(t1.hop(r).unwrap().dst_mac, [2, 0, 0, 0, 0, 0xfe]);
    // From the cache: the same frames as the lookups give.
    let (a, f) = step(&mut p, 0, &inbound(flags::ACK, 64));
    assert_eq!(
        (a, dst_mac(&f), &f[6..12]),
        (Action::Forward(1), [2, 0, 0, 1, 0, 5], &PODS_MAC[..])
    );
    assert_eq!(f[22], 63, "TTL decremented");
    let (a, f) = step(&mut p, 1, &outbound(flags::ACK));
    assert_eq!(
        (a, dst_mac(&f), &f[6..12]),
        (Action::Forward(0), [2, 0, 0, 0, 0, 0xfe], &UPLINK_MAC[..])
    );
    // The TTL is the packet's own.
    let (a, _) = step(&mut p, 0, &inbound(flags::ACK, 1));
    assert_eq!(a, Action::Drop(DropReason::TtlExceeded));

    // New MACs for both: the next packets carry them.
    let t2 = tables(&dir, Some("02:00:00:01:00:55"), "02:00:00:00:00:ef", true);
    assert_ne!(t2.generation(), t1.generation());
    p.set_tables(t2.clone());
    assert_eq!(cached(&ct, &t2, &key), (0, 0), "not valid for new tables");
    let (a, f) = step(&mut p, 0, &inbound(flags::ACK, 64));
    assert_eq!(
        (a, dst_mac(&f)),
        (Action::Forward(1), [2, 0, 0, 1, 0, 0x55])
    );
    let (a, f) = step(&mut p, 1, &outbound(flags::ACK));
    assert_eq!(
        (a, dst_mac(&f)),
        (Action::Forward(0), [2, 0, 0, 0, 0, 0xef])
    );
    let (o, r) = cached(&ct, &t2, &key);
    assert!(o != 0 && r != 0, "hops {o} {r}");
    let (a, f) = step(&mut p, 0, &inbound(flags::ACK, 64));
    assert_eq!(
        (a, dst_mac(&f)),
        (Action::Forward(1), [2, 0, 0, 1, 0, 0x55])
    );

    // The pod's neighbour entry and the client's route gone.
    p.set_tables(tables(&dir, None, "02:00:00:00:00:ef", false));
    let (a, _) = step(&mut p, 0, &inbound(flags::ACK, 64));
    assert_eq!(a, Action::Drop(DropReason::NoNeighbor));
    let (a, _) = step(&mut p, 1, &outbound(flags::ACK));
    assert_eq!(a, Action::Drop(DropReason::NoRoute));
    // And back: the connection still stands.
    p.set_tables(t2);
    let (a, f) = step(&mut p, 1, &outbound(flags::ACK));
    assert_eq!(
        (a, dst_mac(&f)),
        (Action::Forward(0), [2, 0, 0, 0, 0, 0xef])
    );
}
