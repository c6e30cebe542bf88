//! The live data plane end to end: `sluice run` between network
//! namespaces (see `netns/mod.rs`), real traffic through XDP and AF_XDP.
//! Needs root. Every test builds its own namespaces and removes them on
//! drop, also when it fails.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod netns;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use netns::*;

/// The last core: the worker runs there, traffic generators elsewhere.
fn worker_core() -> usize {
    core_affinity::get_core_ids()
        .unwrap()
        .iter()
        .map(|c| c.id)
        .max()
        .unwrap()
}

fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Every worker's UMEM frames are all somewhere: free, in a ring, or held;
/// none is lost in the kernel or leaked.
fn assert_no_leak(report: &serde_json::Value) {
    let workers = report["workers"].as_array().unwrap();
    assert!(!workers.is_empty());
    for w in workers {
        let u = &w["umem"];
        let located = n(&u["free"])
            + n(&u["held"])
            + n(&u["fill"])
            + n(&u["rx"])
            + n(&u["tx"])
            + n(&u["completion"]);
        assert_eq!(located, n(&u["total"]), "UMEM accounting: {u}");
        assert_eq!(u["in_kernel"].as_i64().unwrap(), 0, "{u}");
        assert_eq!(n(&u["held"]), 0, "{u}");
        assert_eq!(n(&u["tx"]), 0, "TX drained: {u}");
    }
}

/// Bytes a TCP peer sends: a pattern the other side can check.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// One TCP connection client → server through sluice: the client sends
/// `up` bytes, the server checks them and sends `down` bytes back.
fn tcp_exchange(t: &Topo, port: u16, up: usize, down: usize) {
    let listener = netns_listener(&t.server, port);
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, pattern(up, 1), "server received the client's bytes");
        s.write_all(&pattern(down, 2)).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
    });
    let client = in_netns(&t.client, move || {
        let mut s = TcpStream::connect_timeout(
            &format!("{SERVER_IP}:{port}").parse().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&pattern(up, 1)).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, pattern(down, 2), "client received the server's bytes");
    });
    client.join().expect("client side");
    server.join().expect("server side");
}

/// A listener bound inside `ns` (returned to the caller's thread; the
/// socket stays in `ns`).
fn netns_listener(ns: &str, port: u16) -> TcpListener {
    in_netns(ns, move || {
        TcpListener::bind(format!("{SERVER_IP}:{port}")).unwrap()
    })
    .join()
    .unwrap()
}

#[test]
fn tcp_ping_and_node_traffic() {
    let mut t = Topo::new("t", 1);
    let cfg = t.config(&[worker_core()], "");
    let s = t.start_sluice(&cfg, &[]);
    assert!(t.xdp_attached("p0") && t.xdp_attached("p1"));
    // Ping across, and ping the node itself (XDP passes it to the kernel).
    assert!(t.ping(&t.client, SERVER_IP, 3), "ping through sluice");
    assert!(t.ping(&t.client, NODE_A, 2), "ping the node");
    assert!(
        t.ping(&t.server, NODE_B, 2),
        "ping the node from the server side"
    );
    // A real TCP connection, a few MB each way.
    tcp_exchange(&t, 7001, 3 << 20, 2 << 20);
    tcp_exchange(&t, 7002, 1000, 1 << 20);
    let (code, r, err) = s.stop_with("-TERM");
    assert_eq!(code, 0, "{err}");
    // 5 MB at ~1448 bytes a segment, plus acks: thousands of frames, all
    // forwarded, none refused.
    let fwd = n(&r["actions"]["forward"]);
    assert!(fwd > 3000, "forwarded {fwd}: {r}");
    assert_eq!(n(&r["actions"]["drop"]), 0, "{r}");
    assert_eq!(n(&r["kernel_unreachable"]), 0, "{r}");
    assert_eq!(n(&r["tx_ring_full"]), 0, "{r}");
    assert_eq!(n(&r["rx"]), n(&r["packets"]), "{r}");
    assert_eq!(n(&r["tx"]), fwd, "{r}");
    // Frames for the node never reached sluice: XDP passed them.
    assert!(n(&r["xdp"]["pass_local"]) >= 4, "{r}");
    assert!(n(&r["xdp"]["pass_not_ip"]) >= 1, "ARP: {r}");
    assert_eq!(n(&r["xdp"]["redirect"]), n(&r["rx"]), "{r}");
    for a in r["attached"].as_array().unwrap() {
        assert_eq!(a["mode"], "native", "{r}");
    }
    assert_no_leak(&r);
    // Detached on exit.
    assert!(!t.xdp_attached("p0") && !t.xdp_attached("p1"));
}

#[test]
fn sigkill_fail_open_gives_the_interfaces_back_to_the_kernel() {
    let mut t = Topo::new("o", 1);
    let cfg = t.config(&[worker_core()], "xdp: {fail_mode: open}\n");
    let s = t.start_sluice(&cfg, &[]);
    assert!(t.ping(&t.client, SERVER_IP, 2));
    s.kill9();
    // The XDP link died with the process: the kernel forwards again.
    assert!(!t.xdp_attached("p0") && !t.xdp_attached("p1"));
    assert!(
        t.ping(&t.client, SERVER_IP, 2),
        "kernel forwarding after SIGKILL"
    );
    tcp_exchange(&t, 7003, 100_000, 100_000);
}

#[test]
fn sigkill_fail_closed_keeps_forwarding_closed_and_the_node_reachable() {
    let mut t = Topo::new("x", 1);
    let cfg = t.config(&[worker_core()], "xdp: {fail_mode: closed}\n");
    let s = t.start_sluice(&cfg, &[]);
    assert!(t.ping(&t.client, SERVER_IP, 2));
    s.kill9();
    // Pinned: still attached, no socket, so forwarded traffic is dropped...
    assert!(t.xdp_attached("p0") && t.xdp_attached("p1"));
    assert!(!t.ping(&t.client, SERVER_IP, 2), "closed after SIGKILL");
    // ...while the node itself (ARP, its addresses) still answers.
    assert!(t.ping(&t.client, NODE_A, 2), "node reachable when closed");
    // A new run takes the pinned links over and forwards again.
    let s = t.start_sluice(&cfg, &[]);
    assert!(t.ping(&t.client, SERVER_IP, 2), "forwarding after restart");
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert_no_leak(&r);
    // A clean exit unpins and detaches: the kernel forwards.
    assert!(!t.xdp_attached("p0") && !t.xdp_attached("p1"));
    assert!(
        t.ping(&t.client, SERVER_IP, 2),
        "kernel forwarding after exit"
    );
}

/// A million 64-byte UDP packets through sluice, then every UMEM frame is
/// accounted for. The sender keeps at most `WINDOW` packets in flight
/// (sent, not yet received by the server), fewer than the RX ring holds, so
/// none is dropped for want of room and all of them cross sluice.
#[test]
fn no_frame_leaks_after_a_million_packets() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    const PACKETS: u64 = 1_000_000;
    const WINDOW: u64 = 128;
    let mut t = Topo::new("m", 1);
    let cfg = t.config(&[worker_core()], "");
    let s = t.start_sluice(&cfg, &[]);
    let delivered = Arc::new(AtomicU64::new(0));
    let d = delivered.clone();
    let sink = in_netns(&t.server, move || {
        let u = UdpSocket::bind(format!("{SERVER_IP}:9999")).unwrap();
        u.set_read_timeout(Some(Duration::from_millis(1000)))
            .unwrap();
        let mut buf = [0u8; 2048];
        while u.recv(&mut buf).is_ok() {
            d.fetch_add(1, Ordering::Relaxed);
        }
    });
    // 64-byte frames: 14 Ethernet + 20 IPv4 + 8 UDP + 22 payload.
    let d = delivered.clone();
    let sender = in_netns(&t.client, move || {
        let u = UdpSocket::bind(format!("{CLIENT_IP}:0")).unwrap();
        u.connect(format!("{SERVER_IP}:9999")).unwrap();
        let payload = [0x5au8; 22];
        let mut sent = 0u64;
        // Packets given up on (lost somewhere), so the window moves on.
        let mut lost = 0u64;
        while sent < PACKETS {
            let waited = std::time::Instant::now();
            while sent - lost - d.load(Ordering::Relaxed) >= WINDOW {
                if waited.elapsed() > Duration::from_millis(100) {
                    lost = sent - d.load(Ordering::Relaxed);
                    break;
                }
                std::thread::yield_now();
            }
            if u.send(&payload).is_ok() {
                sent += 1;
            }
        }
        sent
    });
    assert_eq!(sender.join().unwrap(), PACKETS);
    sink.join().unwrap();
    let delivered = delivered.load(Ordering::Relaxed);
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    let rx = n(&r["rx"]);
    let ring_drops: u64 = r["workers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["sockets"].as_array().unwrap().iter())
        .map(|s| n(&s["rx_dropped"]) + n(&s["rx_ring_full"]))
        .sum();
    eprintln!(
        "sent {PACKETS}, sluice rx {rx} (ring drops {ring_drops}), tx {}, delivered {delivered}",
        n(&r["tx"])
    );
    // Every frame XDP redirected was received (or counted as dropped by
    // the kernel), every frame received was forwarded and sent.
    assert_eq!(n(&r["xdp"]["redirect"]), rx + ring_drops, "{r}");
    assert!(rx >= PACKETS, "sluice received {rx} of {PACKETS}: {r}");
    assert_eq!(n(&r["actions"]["forward"]), rx, "{r}");
    assert_eq!(n(&r["tx"]), rx, "{r}");
    assert!(delivered >= PACKETS * 99 / 100, "delivered {delivered}");
    assert_no_leak(&r);
}

/// Two workers on two cores, each with its own queue of both ports (and
/// its own UMEM): connections spread over both and all complete.
#[test]
fn two_workers_on_two_queues() {
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap()
        .iter()
        .map(|c| c.id)
        .take(2)
        .collect();
    assert_eq!(cores.len(), 2, "this test needs two cores");
    let mut t = Topo::new("q", 2);
    let cfg = t.config(&cores, "");
    let s = t.start_sluice(&cfg, &[]);
    assert!(t.ping(&t.client, SERVER_IP, 2));
    for i in 0..16 {
        tcp_exchange(&t, 7100 + i, 20_000, 20_000);
    }
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    let workers = r["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    for w in workers {
        assert!(n(&w["rx"]) > 0, "every worker got traffic: {r}");
        assert_eq!(w["sockets"].as_array().unwrap().len(), 2, "{w}");
    }
    assert_eq!(n(&r["actions"]["forward"]), n(&r["rx"]), "{r}");
    assert_eq!(n(&r["kernel_unreachable"]), 0, "{r}");
    assert_no_leak(&r);
}

/// Generic (skb) XDP attachment and busy polling work too.
#[test]
fn generic_xdp_and_busy_polling() {
    let mut t = Topo::new("g", 1);
    let cfg = t.config(&[worker_core()], "xdp: {attach: generic}\n");
    // busy_poll is a workers key: rewrite the workers line.
    let y = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("batch: 64}", "batch: 64, busy_poll: true}");
    std::fs::write(&cfg, y).unwrap();
    let s = t.start_sluice(&cfg, &[]);
    assert!(t.ping(&t.client, SERVER_IP, 2));
    assert!(t.ping(&t.client, NODE_A, 1));
    tcp_exchange(&t, 7200, 500_000, 500_000);
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    for a in r["attached"].as_array().unwrap() {
        assert_eq!(a["mode"], "generic", "{r}");
    }
    assert!(n(&r["actions"]["forward"]) > 300, "{r}");
    assert_eq!(n(&r["kernel_unreachable"]), 0, "{r}");
    assert_no_leak(&r);
}

/// New tables reach running workers between batches: removing the route to
/// the server stops forwarding (no_route), putting it back restores it.
/// Runs the engine in-process (the thread enters the router namespace; the
/// workers it spawns inherit it).
#[test]
fn tables_swap_while_running() {
    use engine::control::config::Config;
    use engine::pipeline::Pipeline;
    use engine::tables::conntrack::Conntrack;
    use engine::tables::Tables;
    use engine::worker::live::{self, LiveEngine, LiveOptions};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let t = Topo::new("h", 1);
    let cfg_path = t.config(&[worker_core()], "");
    let (client, router) = (t.client.clone(), t.router.clone());
    let ping = move |dst: &str| {
        std::process::Command::new("ip")
            .args([
                "netns", "exec", &client, "ping", "-c", "2", "-i", "0.2", "-W", "1", dst,
            ])
            .output()
            .unwrap()
            .status
            .success()
    };
    let body = in_netns(&router, move || {
        let cfg = Config::load(&cfg_path).unwrap();
        let ports = live::plan_ports(&cfg).unwrap();
        let macs: Vec<_> = ports.iter().map(|p| p.mac).collect();
        let tables = Arc::new(Tables::build(&cfg, &macs).unwrap());
        let ct = Arc::new(Conntrack::new(4096, 7));
        let pipelines = |_w: usize, _n: usize| Pipeline::new(tables.clone(), ct.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let opts = LiveOptions {
            ring_size: 256,
            ..LiveOptions::default()
        };
        let engine = LiveEngine::start(&cfg, ports, pipelines, &opts, stop).unwrap();
        assert!(ping(SERVER_IP), "forwarding with the first tables");
        // The same config without the route to the server.
        let mut no_route = cfg.clone();
        no_route.routes.retain(|r| r.port != "b");
        no_route.neighbors.retain(|n| n.port != "b");
        engine.set_tables(Arc::new(Tables::build(&no_route, &macs).unwrap()));
        assert!(!ping(SERVER_IP), "no route after the swap");
        engine.set_tables(tables.clone());
        assert!(ping(SERVER_IP), "forwarding again after swapping back");
        let r = engine.shutdown().unwrap();
        assert_eq!(r.total.table_swaps, 2);
        assert!(
            r.total
                .counters
                .drop_count(engine::pipeline::DropReason::NoRoute)
                >= 2
        );
        for w in &r.workers {
            assert_eq!(w.accounting.in_kernel(), 0, "{:?}", w.accounting);
        }
    });
    body.join().expect("in-process engine");
}
