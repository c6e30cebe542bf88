//! The live data plane end to end: `sluice run` between network
//! namespaces (see `netns/mod.rs`), real traffic through XDP and AF_XDP.
//! Needs root. Every test builds its own namespaces and removes them on
//! drop, also when it fails.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod netns;
mod ports;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use netns::*;

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
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
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
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
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
    let _heavy = heavy();
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

/// Tests that load both cores (floods, iperf3 streams, two workers) run
/// one at a time: beside each other they measure the machine, not sluice.
fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Two cores to pin two workers on.
fn two_cores() -> Vec<usize> {
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap()
        .iter()
        .map(|c| c.id)
        .take(2)
        .collect();
    assert_eq!(cores.len(), 2, "this test needs two cores");
    cores
}

/// Two workers on two cores, each with its own queue of both ports (and
/// its own UMEM): connections spread over both and all complete.
#[test]
fn two_workers_on_two_queues() {
    let _heavy = heavy();
    let cores = two_cores();
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

/// Two workers on two-queue veths, a service VIP whose backend is reached
/// masqueraded behind the node: a connection's request and its replies
/// (which carry other addresses on both ends) arrive on whichever queue
/// the veth picks, often another worker's; the shared connection table
/// makes that work. 200 HTTP exchanges, none may fail.
#[test]
fn two_workers_vip_and_masquerade() {
    let _heavy = heavy();
    let cores = two_cores();
    let mut t = Topo::new("w", 2);
    let cfg = t.config(
        &cores,
        &format!(
            "services:\n  - {{name: web, vip: \"10.96.0.10\", port: 80, protocol: TCP, backends: [\"{SERVER_IP}:8080\"]}}\n\
             masquerade:\n  - {{from: \"10.77.1.0/24\", port: b, address: \"{NODE_B}\"}}\n"
        ),
    );
    let s = t.start_sluice(&cfg, &[]);
    const N: usize = 200;
    let listener = netns_listener(&t.server, 8080);
    let server = std::thread::spawn(move || {
        let mut peers = std::collections::BTreeSet::new();
        for _ in 0..N {
            let (mut c, peer) = listener.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = [0u8; 64];
            let n = c.read(&mut req).unwrap();
            assert!(req[..n].starts_with(b"GET / HTTP/1.0"), "request");
            c.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .unwrap();
            peers.insert(peer.ip().to_string());
        }
        peers
    });
    let failures = in_netns(&t.client, || {
        let mut failures = Vec::new();
        for i in 0..N {
            let r = (|| -> std::io::Result<String> {
                let mut c = TcpStream::connect_timeout(
                    &"10.96.0.10:80".parse().unwrap(),
                    Duration::from_secs(5),
                )?;
                c.set_read_timeout(Some(Duration::from_secs(5)))?;
                c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                let mut b = String::new();
                c.read_to_string(&mut b)?;
                Ok(b)
            })();
            match r {
                Ok(b) if b.starts_with("HTTP/1.0 200 OK") && b.ends_with("ok") => {}
                other => failures.push(format!("connection {i}: {other:?}")),
            }
        }
        failures
    })
    .join()
    .expect("client");
    assert!(
        failures.is_empty(),
        "{} of {N} failed: {failures:?}",
        failures.len()
    );
    let peers = server.join().expect("server");
    assert_eq!(
        peers.into_iter().collect::<Vec<_>>(),
        vec![NODE_B.to_string()],
        "the backend saw only the node's address"
    );
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    let workers = r["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    for w in workers {
        assert!(n(&w["rx"]) > 0, "every worker got traffic: {r}");
    }
    assert_eq!(n(&r["kernel_unreachable"]), 0, "{r}");
    assert_eq!(n(&r["actions"]["drop"]), 0, "{r}");
    assert_no_leak(&r);
}

/// Runs `iperf3 -c DST ARGS -J` from the client (a server listens in the
/// server namespace on `port`); the received rate in Gbit/s, or the error.
fn iperf3(t: &mut Topo, dst: &str, port: u16, args: &[&str]) -> Result<f64, String> {
    let server = std::process::Command::new("ip")
        .args(["netns", "exec", &t.server, "iperf3", "-s", "-1", "-p"])
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    t.adopt(server);
    std::thread::sleep(Duration::from_millis(300));
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", &t.client, "iperf3", "-c", dst, "-p"])
        .arg(port.to_string())
        .args(args)
        .arg("-J")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| {
        format!(
            "iperf3 {dst} {args:?}: {e}: {}",
            String::from_utf8_lossy(&o.stderr)
        )
    })?;
    if let Some(e) = v["error"].as_str() {
        return Err(format!("iperf3 {dst} {args:?}: {e}"));
    }
    let end = &v["end"];
    let bps = end["sum_received"]["bits_per_second"]
        .as_f64()
        .or_else(|| end["sum"]["bits_per_second"].as_f64())
        .ok_or_else(|| format!("iperf3 {dst} {args:?}: no rate in {end}"))?;
    // UDP: datagrams the receiver lost.
    if let Some(lost) = end["sum"]["lost_percent"].as_f64() {
        if lost > 5.0 {
            return Err(format!("iperf3 {dst} {args:?}: {lost}% of datagrams lost"));
        }
    }
    Ok(bps / 1e9)
}

/// With the kernel's default offloads on the pods' veths (transmit
/// checksum offload on: partial checksums), TCP streams (IPv4 and IPv6,
/// 5 s each) and UDP pass through sluice directly, through a service VIP
/// and masqueraded, and so does an HTTP-style exchange. (iperf3's UDP test
/// has a TCP control connection on the same port: the UDP VIP has a TCP
/// service beside it.)
#[test]
fn default_offloads_tcp_and_udp_v4_v6_direct_vip_masquerade() {
    let _heavy = heavy();
    let mut t = Topo::new("d", 1);
    t.enable_v6();
    let cfg = t.config(
        &[worker_core()],
        &format!(
            "services:\n  - {{name: v4, vip: \"10.96.0.10\", port: 5301, protocol: TCP, backends: [\"{SERVER_IP}:5301\"]}}\n\
             \x20 - {{name: v6, vip: \"fd96::10\", port: 5302, protocol: TCP, backends: [\"[fd77:2::2]:5302\"]}}\n\
             \x20 - {{name: u4, vip: \"10.96.0.10\", port: 5303, protocol: UDP, backends: [\"{SERVER_IP}:5303\"]}}\n\
             \x20 - {{name: u4c, vip: \"10.96.0.10\", port: 5303, protocol: TCP, backends: [\"{SERVER_IP}:5303\"]}}\n\
             masquerade:\n  - {{from: \"10.77.1.0/24\", port: b, address: \"{NODE_B}\"}}\n"
        ),
    );
    // The client reaches the IPv6 VIP through the node.
    t.exec(
        &t.client,
        &["ip", "-6", "route", "add", "fd96::/64", "via", "fd77:1::1"],
    );
    let s = t.start_sluice(&cfg, &[]);
    tcp_exchange(&t, 7400, 300_000, 300_000);
    let mut rates = Vec::new();
    for (what, dst, port, args) in [
        ("TCP v4, masqueraded", SERVER_IP, 5201u16, vec!["-t", "5"]),
        ("TCP v6, direct", "fd77:2::2", 5202, vec!["-t", "5"]),
        (
            "TCP v4, VIP + masquerade",
            "10.96.0.10",
            5301,
            vec!["-t", "5"],
        ),
        ("TCP v6, VIP", "fd96::10", 5302, vec!["-t", "5"]),
        (
            "UDP v4, masqueraded",
            SERVER_IP,
            5203,
            vec!["-u", "-b", "200M", "-t", "2"],
        ),
        (
            "UDP v6, direct",
            "fd77:2::2",
            5204,
            vec!["-u", "-b", "200M", "-t", "2"],
        ),
        (
            "UDP v4, VIP + masquerade",
            "10.96.0.10",
            5303,
            vec!["-u", "-b", "200M", "-t", "2"],
        ),
    ] {
        let r = iperf3(&mut t, dst, port, &args).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(r > 0.01, "{what}: {r} Gbit/s");
        rates.push(format!("{what}: {r:.2} Gbit/s"));
    }
    eprintln!(
        "iperf3 through sluice, default offloads:\n  {}",
        rates.join("\n  ")
    );
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&r["kernel_unreachable"]), 0, "{r}");
    assert_no_leak(&r);
}

/// The peers' veths with transmit checksum offload off (full checksums
/// from the senders) work as well as with the kernel's defaults, which
/// every other test uses (partial checksums, completed by sluice).
#[test]
fn tcp_with_checksum_offload_off() {
    let mut t = Topo::new("o", 1);
    t.offloads_off();
    let cfg = t.config(&[worker_core()], "");
    let s = t.start_sluice(&cfg, &[]);
    tcp_exchange(&t, 7300, 100_000, 100_000);
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert_no_leak(&r);
}

/// iperf3 TCP (IPv4 and IPv6, 3 s each) through the same topology, in one
/// run: the kernel forwarding, sluice with the pods' default offloads,
/// sluice with transmit offloads off, the kernel again with them off. The
/// figures go to the note; each must be a working stream.
#[test]
fn iperf3_default_offloads_vs_offloads_off_vs_kernel() {
    let _heavy = heavy();
    let mut t = Topo::new("i", 1);
    t.enable_v6();
    t.exec(
        &t.router,
        &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"],
    );
    let cfg = t.config(&[worker_core()], "");
    let mut rows = Vec::new();
    let mut port = 5500u16;
    let mut run = |t: &mut Topo, what: &str| {
        for dst in [SERVER_IP, "fd77:2::2"] {
            port += 1;
            let r =
                iperf3(t, dst, port, &["-t", "3"]).unwrap_or_else(|e| panic!("{what}, {dst}: {e}"));
            assert!(r > 0.05, "{what}, {dst}: {r} Gbit/s");
            rows.push(format!("{what:<34} {dst:<10} {r:6.2} Gbit/s"));
        }
    };
    run(&mut t, "kernel, default offloads");
    let s = t.start_sluice(&cfg, &[]);
    run(&mut t, "sluice, default offloads");
    t.offloads_off();
    run(&mut t, "sluice, tx offloads off");
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert_no_leak(&r);
    run(&mut t, "kernel, tx offloads off");
    eprintln!("iperf3 TCP, one run:\n  {}", rows.join("\n  "));
}

/// Generic (skb) XDP attachment and busy polling work too.
#[test]
fn generic_xdp_and_busy_polling() {
    let mut t = Topo::new("g", 1);
    // The peers keep their default offloads. Generic (skb) XDP hands a
    // sender's GSO segments over whole, which no UMEM frame can take
    // (README, "veth"), so the TCP traffic here is exchanges that fit one
    // segment each way.
    let cfg = t.config(&[worker_core()], "xdp: {attach: generic}\n");
    // busy_poll is a workers key: rewrite the workers line.
    let y = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("batch: 64}", "batch: 64, busy_poll: true}");
    std::fs::write(&cfg, y).unwrap();
    let s = t.start_sluice(&cfg, &[]);
    assert!(t.ping(&t.client, SERVER_IP, 2));
    assert!(t.ping(&t.client, NODE_A, 1));
    for i in 0..40 {
        tcp_exchange(&t, 7200 + i, 1000, 1000);
    }
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
    use engine::pipeline::Pipeline;
    use engine::sources::config::Config;
    use engine::tables::conntrack::Conntrack;

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
        let ports = live::plan_ports(&cfg.state()).unwrap();
        let macs: Vec<_> = ports.iter().map(|p| p.mac).collect();
        let tables = Arc::new(engine::state::build::tables(&cfg.state(), &macs).unwrap());
        let ct = Arc::new(Conntrack::new(4096, 7));
        let pipelines = |_w: usize, _n: usize, _nat: &engine::io::bpf::NatPorts| {
            Pipeline::new(tables.clone(), ct.clone())
        };
        let stop = Arc::new(AtomicBool::new(false));
        let opts = LiveOptions {
            ring_size: 256,
            ..LiveOptions::default()
        };
        let engine = LiveEngine::start(&cfg.state(), ports, pipelines, &opts, stop).unwrap();
        assert!(ping(SERVER_IP), "forwarding with the first tables");
        // The same config without the route to the server.
        let mut no_route = cfg.clone();
        no_route.routes.retain(|r| r.port != "b");
        no_route.neighbors.retain(|n| n.port != "b");
        engine.set_tables(Arc::new(
            engine::state::build::tables(&no_route.state(), &macs).unwrap(),
        ));
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

/// The server's workload endpoint (both its addresses) and a policy that
/// lets in TCP 7001 and 8080 and UDP 9000 only.
const SERVER_POLICY: &str = r#"apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: server-eth0, namespace: default, labels: {app: web}}
spec: {interfaceName: s0, ipNetworks: ["10.77.2.2/32", "10.77.2.3/32"]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-in, namespace: default}
spec:
  selector: app == 'web'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: TCP
      destination: {ports: [7001, 8080]}
    - action: Allow
      protocol: UDP
      destination: {ports: [9000]}
"#;

/// `ctl capture` and `ctl trace` on a running engine: the capture of a
/// ping, an allowed TCP exchange and a denied connection is a pcapng
/// tshark reads, with each frame's interface (port), direction and
/// verdict; the trace of the denied connection names the rule (here the
/// end of the tier) that denied it.
#[test]
fn capture_and_trace_show_ports_verdicts_and_the_deciding_rule() {
    let mut t = Topo::new("c", 1);
    let pol = t.dir().join("policy.yaml");
    std::fs::write(&pol, SERVER_POLICY).unwrap();
    let cfg = t.config(
        &[worker_core()],
        &format!("policy: {{paths: [\"{}\"]}}\n", pol.display()),
    );
    let s = t.start_sluice(&cfg, &[]);
    let wait_tap = |t: &Topo, on: bool| {
        let t0 = std::time::Instant::now();
        loop {
            let (_, st, _) = t.ctl(&["--json", "stats"]);
            if st["tap"].is_null() != on {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "tap not {on}: {st}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let sock = t.control_socket();
    let pcap = t.dir().join("cap.pcapng");
    let cap = std::process::Command::new(sluice)
        .args(["ctl", "--socket"])
        .arg(&sock)
        .args(["capture", "--timeout", "6", "-w"])
        .arg(&pcap)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_tap(&t, true);
    // The policy lets only TCP 7001 (and 8080, UDP 9000) in: ping is
    // denied.
    assert!(!t.ping(&t.client, SERVER_IP, 1));
    tcp_exchange(&t, 7001, 2000, 2000);
    let _l = netns_listener(&t.server, 7002);
    assert!(!connects(&t, 7002, 300));
    let out = cap.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = sh(&[
        "tshark",
        "-r",
        pcap.to_str().unwrap(),
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "frame.interface_name",
        "-e",
        "frame.packet_flags_direction",
        "-e",
        "frame.comment",
        "-e",
        "ip.proto",
        "-e",
        "tcp.dstport",
    ]);
    assert!(
        o.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rows: Vec<Vec<String>> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect();
    let has = |f: &dyn Fn(&[String]) -> bool| rows.iter().any(|r| f(r));
    // The exchange in on a and out on b, as received and as sent, both
    // ways; the ping and the denied SYN as dropped, with the reason.
    // epb_flags: 1 inbound, 2 outbound (tshark prints the word in hex).
    let dir =
        |r: &[String], d: u32| u32::from_str_radix(r[1].trim_start_matches("0x"), 16) == Ok(d);
    let rx_a = |r: &[String]| r[0] == "a" && dir(r, 1);
    assert!(
        has(&|r| rx_a(r) && r[2] == "rx port=a verdict=forward to b" && r[4] == "7001"),
        "{rows:?}"
    );
    assert!(
        has(&|r| r[0] == "b" && dir(r, 2) && r[2] == "tx port=b from=a" && r[4] == "7001"),
        "{rows:?}"
    );
    assert!(
        has(&|r| r[0] == "b" && dir(r, 1) && r[2] == "rx port=b verdict=forward to a"),
        "{rows:?}"
    );
    assert!(
        has(&|r| rx_a(r) && r[2] == "rx port=a verdict=drop: policy" && r[3] == "1"),
        "{rows:?}"
    );
    assert!(
        has(&|r| rx_a(r) && r[2] == "rx port=a verdict=drop: policy" && r[4] == "7002"),
        "{rows:?}"
    );
    wait_tap(&t, false);

    // Trace the next connection to the denied port.
    let tr = std::process::Command::new(sluice)
        .args(["ctl", "--json", "--socket"])
        .arg(&sock)
        .args(["trace", "--dport", "7002", "--count", "1", "--timeout", "6"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_tap(&t, true);
    let _ = connects(&t, 7002, 300);
    let out = tr.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(
        v["verdict"],
        serde_json::json!({"action": "drop", "reason": "policy"}),
        "{v}"
    );
    assert_eq!(v["ingress"], "a", "{v}");
    assert_eq!(
        v["policy"]["ingress"]["endpoint"], "default/server-eth0",
        "{v}"
    );
    assert_eq!(
        v["policy"]["decision"],
        serde_json::json!({"tier": "default", "end_of_tier": true}),
        "{v}"
    );
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert_no_leak(&r);
}

/// Whether the client connects to the server's `port` within `ms`.
fn connects(t: &Topo, port: u16, ms: u64) -> bool {
    in_netns(&t.client, move || {
        TcpStream::connect_timeout(
            &format!("{SERVER_IP}:{port}").parse().unwrap(),
            Duration::from_millis(ms),
        )
        .is_ok()
    })
    .join()
    .unwrap()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A denied connection is blocked and counted; `ctl explain` names what
/// denied it; the per-rule hit counters in /metrics use the same names;
/// `ctl stats` and `ctl conntrack` see the allowed connection.
#[test]
fn denied_flow_is_blocked_counted_and_explained() {
    let mut t = Topo::new("d", 1);
    let pol = t.dir().join("policy.yaml");
    std::fs::write(&pol, SERVER_POLICY).unwrap();
    let mport = free_tcp_port();
    let cfg = t.config(
        &[worker_core()],
        &format!(
            "policy: {{paths: [\"{}\"]}}\nmetrics: {{listen: \"127.0.0.1:{mport}\"}}\n",
            pol.display()
        ),
    );
    let s = t.start_sluice(&cfg, &[]);
    // Allowed port: a real exchange.
    tcp_exchange(&t, 7001, 10_000, 10_000);
    // Denied port: a listener is there, the SYN never reaches it.
    let _l = netns_listener(&t.server, 7002);
    assert!(
        !connects(&t, 7002, 1500),
        "a connection to the denied port succeeded"
    );

    let (code, st, err) = t.ctl(&["stats"]);
    assert_eq!(code, 0, "{err}");
    assert!(n(&st["drops"]["policy"]) >= 1, "{st}");
    assert!(n(&st["policy"]["denied"]) >= 1, "{st}");
    assert!(n(&st["policy"]["allowed"]) >= 1, "{st}");
    assert_eq!(n(&st["reloads"]["ok"]), 0, "{st}");

    let (code, e, err) = t.ctl(&[
        "explain", "--proto", "tcp", "--src", CLIENT_IP, "--sport", "40000", "--dst", SERVER_IP,
        "--dport", "7002",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        e["verdict"],
        serde_json::json!({"action": "drop", "reason": "policy"}),
        "{e}"
    );
    assert_eq!(
        e["policy"]["ingress"]["decided_by"],
        serde_json::json!({"tier": "default", "end_of_tier": true}),
        "{e}"
    );
    let (code, e, _) = t.ctl(&[
        "explain", "--proto", "tcp", "--src", CLIENT_IP, "--sport", "40000", "--dst", SERVER_IP,
        "--dport", "7001",
    ]);
    assert_eq!(code, 0);
    assert_eq!(e["verdict"]["action"], "forward", "{e}");
    assert_eq!(
        e["policy"]["ingress"]["decided_by"],
        serde_json::json!({"tier": "default", "policy": "default/web-in", "rule": 0}),
        "{e}"
    );
    // A malformed request is rejected with a message, exit 2.
    let (code, _, err) = t.ctl(&[
        "explain", "--proto", "tcp", "--src", "nope", "--dst", SERVER_IP,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope") || err.contains("src"), "{err}");

    // The allowed connection is (or was) tracked: TCP state visible.
    let (code, ctv, err) = t.ctl(&["conntrack"]);
    assert_eq!(code, 0, "{err}");
    assert!(n(&ctv["count"]) >= 1, "{ctv}");

    // Metrics: rule hits under explain's names; the denial at end of tier.
    let m = http_get(&format!("127.0.0.1:{mport}"), "/metrics");
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    let hit = |needle: &str| {
        m.lines()
            .find(|l| l.starts_with("sluice_policy_rule_hits_total") && l.contains(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no hits line with {needle}: {m}"))
    };
    assert!(
        hit("kind=\"rule\",tier=\"default\",policy=\"default/web-in\",rule=\"0\"") >= 1,
        "{m}"
    );
    // Every sample carries the same labels: "" where one does not apply.
    assert!(
        hit("kind=\"end_of_tier\",tier=\"default\",policy=\"\",rule=\"\"") >= 1,
        "{m}"
    );
    assert!(m.contains("# TYPE sluice_batch_seconds histogram"), "{m}");
    assert!(m.trim_end().ends_with("# EOF"), "{m}");
    assert!(m.contains("sluice_drops_total"), "{m}");

    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert!(n(&r["drops"]["policy"]) >= 1, "{r}");
    assert_no_leak(&r);
}

/// A service VIP spreads real connections over its two backends (both
/// addresses of the server namespace), and `ctl services` counts them.
#[test]
fn service_vip_spreads_connections_over_backends() {
    let mut t = Topo::new("v", 1);
    t.exec(
        &t.server,
        &["ip", "addr", "add", "10.77.2.3/24", "dev", "s0"],
    );
    let cfg = t.config(
        &[worker_core()],
        "services:\n  - {name: web, vip: \"10.96.0.10\", port: 80, protocol: TCP, backends: [\"10.77.2.2:8080\", \"10.77.2.3:8080\"]}\n",
    );
    // The second backend's neighbour: same MAC, appended to the list.
    let y = std::fs::read_to_string(&cfg).unwrap().replace(
        "neighbors:\n",
        "neighbors:\n  - {ip: \"10.77.2.3\", mac: \"02:00:00:77:02:02\", port: b}\n",
    );
    std::fs::write(&cfg, y).unwrap();
    let s = t.start_sluice(&cfg, &[]);
    const N: usize = 60;
    let listener = in_netns(&t.server, || TcpListener::bind("0.0.0.0:8080").unwrap())
        .join()
        .unwrap();
    let server = std::thread::spawn(move || {
        let mut per = std::collections::BTreeMap::<String, usize>::new();
        for _ in 0..N {
            let (mut c, _) = listener.accept().unwrap();
            let local = c.local_addr().unwrap().ip().to_string();
            *per.entry(local.clone()).or_default() += 1;
            c.write_all(local.as_bytes()).unwrap();
        }
        per
    });
    let client = in_netns(&t.client, || {
        let mut seen = Vec::new();
        for _ in 0..N {
            let mut c = TcpStream::connect_timeout(
                &"10.96.0.10:80".parse().unwrap(),
                Duration::from_secs(5),
            )
            .unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = String::new();
            c.read_to_string(&mut b).unwrap();
            seen.push(b);
        }
        seen
    });
    let seen = client.join().expect("client");
    let per = server.join().expect("server");
    assert_eq!(seen.len(), N);
    assert_eq!(per.len(), 2, "both backends used: {per:?}");
    for (b, c) in &per {
        assert!(*c >= N / 5, "backend {b} got only {c} of {N}: {per:?}");
    }
    let (code, v, err) = t.ctl(&["services"]);
    assert_eq!(code, 0, "{err}");
    let backends = v["services"][0]["backends"].as_array().unwrap();
    let tracked: u64 = backends.iter().map(|b| n(&b["connections"])).sum();
    assert!(tracked >= 2, "connections tracked per backend: {v}");
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&r["drops"]["no_backend"]), 0, "{r}");
    assert_no_leak(&r);
}

/// Traffic from the client masqueraded behind the node's address on the
/// server side: the server sees the node, its replies (addressed to the
/// node) are redirected by XDP because the port is marked in use, and are
/// translated back to the client. TCP and ping.
#[test]
fn masqueraded_traffic_returns() {
    let mut t = Topo::new("m", 1);
    let cfg = t.config(
        &[worker_core()],
        "masquerade:\n  - {from: \"10.77.1.0/24\", port: b, address: \"10.77.2.1\"}\n",
    );
    let s = t.start_sluice(&cfg, &[]);
    let listener = netns_listener(&t.server, 7005);
    let server = std::thread::spawn(move || {
        let (mut c, peer) = listener.accept().unwrap();
        c.write_all(b"hello").unwrap();
        peer.ip().to_string()
    });
    let got = in_netns(&t.client, || {
        let mut c = TcpStream::connect_timeout(
            &format!("{SERVER_IP}:7005").parse().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = String::new();
        c.read_to_string(&mut b).unwrap();
        b
    })
    .join()
    .expect("client");
    assert_eq!(got, "hello");
    assert_eq!(
        server.join().unwrap(),
        NODE_B,
        "the server saw the node's address"
    );
    assert!(t.ping(&t.client, SERVER_IP, 3), "masqueraded ping returns");
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&r["kernel_unreachable"]), 0, "{r}");
    assert!(n(&r["actions"]["forward"]) >= 8, "{r}");
    assert_no_leak(&r);
}

/// The server namespace's UDP `RcvbufErrors` (datagrams its sockets had
/// no room for).
fn udp_rcvbuf_errors(ns: &str) -> u64 {
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/snmp"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (head, vals) = (udp.next().unwrap(), udp.next().unwrap());
    let i = head
        .split_whitespace()
        .position(|h| h == "RcvbufErrors")
        .unwrap();
    vals.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// Reloads under load: a steady UDP stream on allowed flows plus a denied
/// flow, while the policy is swapped between two equivalent texts a few
/// times, one bad reload (rejected, the running policy stays) and one
/// SIGHUP. Every allowed datagram arrives, no denied one does, and the
/// only drops are the denied flow's.
#[test]
fn reload_under_load_loses_and_misclassifies_nothing() {
    let _heavy = heavy();
    let mut t = Topo::new("r", 1);
    let pol = t.dir().join("policy.yaml");
    std::fs::write(&pol, SERVER_POLICY).unwrap();
    let cfg = t.config(
        &[worker_core()],
        &format!("policy: {{paths: [\"{}\"]}}\n", pol.display()),
    );
    let s = t.start_sluice(&cfg, &[]);
    // Receivers: allowed UDP 9000, denied UDP 9001.
    let rx = |port: u16| {
        let sock = in_netns(&t.server, move || {
            UdpSocket::bind(format!("{SERVER_IP}:{port}")).unwrap()
        })
        .join()
        .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let mut seen = std::collections::HashSet::new();
            while let Ok(n) = sock.recv(&mut buf) {
                if n >= 8 {
                    seen.insert(u64::from_le_bytes(buf[..8].try_into().unwrap()));
                }
            }
            seen
        })
    };
    let rcvbuf0 = udp_rcvbuf_errors(&t.server);
    let allowed_rx = rx(9000);
    let denied_rx = rx(9001);
    const SENT: u64 = 40_000;
    let sender = in_netns(&t.client, || {
        // 32 allowed flows (source ports), one denied flow; ~20k pps.
        let socks: Vec<UdpSocket> = (0..33)
            .map(|_| UdpSocket::bind("0.0.0.0:0").unwrap())
            .collect();
        let mut denied = 0u64;
        let t0 = std::time::Instant::now();
        for i in 0..SENT {
            let k = (i % 32) as usize;
            socks[k]
                .send_to(&i.to_le_bytes(), format!("{SERVER_IP}:9000"))
                .unwrap();
            if i % 16 == 0 {
                socks[32]
                    .send_to(&i.to_le_bytes(), format!("{SERVER_IP}:9001"))
                    .unwrap();
                denied += 1;
            }
            // Pace: packet i at i * 100 µs (10k pps).
            let due = Duration::from_micros(i * 100);
            let el = t0.elapsed();
            if due > el {
                std::thread::sleep(due - el);
            }
        }
        denied
    });
    // Reloads while it runs (~2 s): alternate two equivalent policies.
    let equivalent = SERVER_POLICY.replace(
        "      destination: {ports: [9000]}\n",
        "      destination: {ports: [9000]}\n    - action: Deny\n      protocol: UDP\n      destination: {ports: [9999]}\n",
    );
    let mut ok = 0;
    for i in 0..6 {
        std::thread::sleep(Duration::from_millis(250));
        let text = if i % 2 == 0 {
            &equivalent
        } else {
            SERVER_POLICY
        };
        std::fs::write(&pol, text).unwrap();
        if i == 3 {
            // SIGHUP reloads too.
            let pid = s.pid();
            assert!(std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success());
            ok += 1;
            continue;
        }
        let (code, v, err) = t.ctl(&["reload"]);
        assert_eq!(code, 0, "reload {i}: {err}");
        assert_eq!(v["ok"], true);
        ok += 1;
    }
    // A bad policy is rejected, naming the file; the running one stays.
    std::fs::write(&pol, "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: x}\nspec: {selector: \"app ==\"}\n").unwrap();
    let (code, _, err) = t.ctl(&["reload"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("policy.yaml"), "{err}");
    let denied_sent = sender.join().expect("sender");
    let allowed = allowed_rx.join().unwrap();
    let denied = denied_rx.join().unwrap();
    // Datagrams the server's socket buffer overflowed on (a busy test
    // machine) are the receiver's loss, not sluice's: counted apart.
    let overflow = udp_rcvbuf_errors(&t.server) - rcvbuf0;
    assert_eq!(
        allowed.len() as u64 + overflow,
        SENT,
        "allowed datagrams lost across reloads (receiver overflow {overflow})"
    );
    assert!(
        denied.is_empty(),
        "{} denied datagrams arrived",
        denied.len()
    );
    // Give the SIGHUP'd reload time to be counted, then read the counters.
    let (code, st, err) = t.ctl(&["stats"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&st["reloads"]["ok"]), ok, "{st}");
    assert_eq!(n(&st["reloads"]["rejected"]), 1, "{st}");
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&r["drops"]["policy"]), denied_sent, "{r}");
    assert_eq!(
        n(&r["actions"]["drop"]),
        denied_sent,
        "only the denied flow dropped: {r}"
    );
    assert_eq!(n(&r["table_swaps"]), ok, "{r}");
    // sluice forwarded every allowed datagram (and whatever else the
    // namespaces sent, e.g. ARP goes to the kernel, not counted here).
    assert!(n(&r["actions"]["forward"]) >= SENT, "{r}");
    assert_no_leak(&r);
}

/// A flood of new UDP flows, four times the connection table's size, for
/// 10 s (as one pod scanning the network would): new TCP connections keep
/// getting in within a second, during the flood and after it, because a
/// full table drops an entry that never saw a reply to make room (Linux's
/// early drop), and an established stream is never dropped. The evictions
/// are counted.
#[test]
fn conntrack_flood_does_not_lock_out_new_connections() {
    let _heavy = heavy();
    let mut t = Topo::new("f", 1);
    let cfg = t.config(&[worker_core()], "conntrack: {max_entries: 4096}\n");
    let s = t.start_sluice(&cfg, &[]);
    // An established stream, answered both ways, before the flood.
    let stream_listener = netns_listener(&t.server, 7600);
    let stream_server = std::thread::spawn(move || {
        let (mut c, _) = stream_listener.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        // One acknowledgement byte per chunk, until the client closes.
        while c.read_exact(&mut buf).is_ok() {
            total += buf.len();
            if c.write_all(&buf[..1]).is_err() {
                break;
            }
        }
        total
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_stream = stop.clone();
    let stream = in_netns(&t.client, move || {
        let mut c = TcpStream::connect_timeout(
            &format!("{SERVER_IP}:7600").parse().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let chunk = [7u8; 4096];
        let mut ack = [0u8; 1];
        let mut sent = 0usize;
        while !stop_stream.load(std::sync::atomic::Ordering::Relaxed) {
            // One chunk, one acknowledgement byte: the stream stalls if
            // its connection is ever lost.
            c.write_all(&chunk).unwrap();
            c.read_exact(&mut ack).unwrap();
            sent += chunk.len();
            // Paced (~30 Mbit/s): the stream is there to be kept, not to
            // load the two cores the flood and sluice share with it.
            std::thread::sleep(Duration::from_millis(1));
        }
        sent
    });
    // Connections that must get in: a listener answering each with a byte.
    let listener = netns_listener(&t.server, 7601);
    std::thread::spawn(move || {
        for c in listener.incoming() {
            let Ok(mut c) = c else { break };
            let _ = c.write_all(b"x");
        }
    });
    let probe = |t: &Topo| -> Result<Duration, String> {
        in_netns(&t.client, || {
            let t0 = std::time::Instant::now();
            let mut c = TcpStream::connect_timeout(
                &format!("{SERVER_IP}:7601").parse().unwrap(),
                Duration::from_secs(3),
            )
            .map_err(|e| format!("connect: {e}"))?;
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).map_err(|e| format!("read: {e}"))?;
            Ok(t0.elapsed())
        })
        .join()
        .unwrap()
    };
    // The flood: 16,384 distinct flows (destination ports), ~20 kpps, 10 s.
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let f2 = flooding.clone();
    let flood = in_netns(&t.client, move || {
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        let t0 = std::time::Instant::now();
        let mut sent = 0u64;
        while t0.elapsed() < Duration::from_secs(10) {
            // 20 datagrams a millisecond: ~20 kpps without bursts that
            // only measure the veth rings.
            for _ in 0..20 {
                let port = 20_000 + (sent % 16_384) as u16;
                let _ = sock.send_to(b"flood", format!("{SERVER_IP}:{port}"));
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        f2.store(false, std::sync::atomic::Ordering::Relaxed);
        sent
    });
    let mut worst = Duration::ZERO;
    let mut probes = 0;
    std::thread::sleep(Duration::from_millis(1500));
    while flooding.load(std::sync::atomic::Ordering::Relaxed) {
        let d = probe(&t).unwrap_or_else(|e| panic!("new connection during the flood: {e}"));
        worst = worst.max(d);
        probes += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let flooded = flood.join().unwrap();
    for _ in 0..3 {
        let d = probe(&t).unwrap_or_else(|e| panic!("new connection after the flood: {e}"));
        worst = worst.max(d);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let streamed = stream.join().expect("the established stream never stalled");
    let (code, v, err) = t.ctl(&["stats"]);
    assert_eq!(code, 0, "{err}");
    let evicted = n(&v["conntrack"]["evicted_unassured"]);
    eprintln!(
        "flood: {flooded} datagrams; {probes} connections during it, worst {worst:?}; \
         evicted_unassured {evicted}, full {}; established stream {} KiB",
        n(&v["conntrack"]["full"]),
        streamed / 1024
    );
    assert!(probes >= 10, "{probes} probes");
    assert!(
        worst <= Duration::from_secs(1),
        "worst new connection {worst:?}"
    );
    assert!(evicted > 1000, "evictions counted: {v}");
    // Every refusal is counted as such; in this flood there is always an
    // unassured entry to drop, so none is refused.
    assert_eq!(
        n(&v["drops"]["conntrack_full"]),
        n(&v["conntrack"]["full"]),
        "{v}"
    );
    assert_eq!(n(&v["conntrack"]["full"]), 0, "{v}");
    assert!(streamed > 0);
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert!(stream_server.join().unwrap() >= streamed);
    assert_no_leak(&r);
}

/// The interfaces' MTU is checked against what sluice takes: MTU 3000
/// veths are served with `--frame-size 4096` in one frame per packet
/// (full-size pings with DF and a TCP exchange pass, no multi-buffer
/// packet), and an MTU beyond the longest packet sluice reassembles is
/// refused at start (exit 2, naming the port and the remedy).
/// (`jumbo_mtus_pass_full_size_packets` covers multi-buffer.)
#[test]
fn interface_mtu_is_checked_and_served() {
    let mut t = Topo::new("u", 1);
    let set_mtu = |t: &Topo, mtu: &str| {
        for (ns, ifn) in [
            (&t.client, "c0"),
            (&t.router, "p0"),
            (&t.router, "p1"),
            (&t.server, "s0"),
        ] {
            t.exec(ns, &["ip", "link", "set", ifn, "mtu", mtu]);
        }
    };
    set_mtu(&t, "3000");
    let cfg = t.config(&[worker_core()], "");
    let router = t.router.clone();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--config"])
            .arg(&cfg)
            .args(["--netns", &router])
            .args(extra)
            .output()
            .unwrap()
    };
    // 4096-byte frames hold a 3000-byte MTU's frames whole.
    let s = t.start_sluice(&cfg, &["--frame-size", "4096"]);
    assert!(
        sh(&[
            "ip", "netns", "exec", &t.client, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-M",
            "do", "-s", "2972", SERVER_IP
        ])
        .status
        .success(),
        "full-size pings with DF at MTU 3000"
    );
    tcp_exchange(&t, 7700, 1_000_000, 1_000_000);
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&r["multi_buffer"]), 0, "one frame per packet: {r}");
    assert_no_leak(&r);
    // Longer than sluice takes even over several frames: refused at
    // start, naming the port and the fix.
    set_mtu(&t, "16400");
    let o = run(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ports[0].interface")
            && err.contains("p0 has MTU 16400")
            && err.contains("lower its MTU to 16362"),
        "{err}"
    );
}

/// `ctl conntrack` lists only what its filter names and only entries
/// still live; `--delete` removes exactly those (the flow's next packet
/// opens, and is judged as, a new connection), `--flush` removes all, and
/// a delete without a filter is refused. `ctl stats --reset` starts the
/// counters over.
#[test]
fn conntrack_filter_delete_flush() {
    let mut t = Topo::new("k", 1);
    let cfg = t.config(&[worker_core()], "conntrack: {timeouts: {udp: 3s}}\n");
    let s = t.start_sluice(&cfg, &[]);
    let send = |t: &Topo, port: u16| {
        in_netns(&t.client, move || {
            let u = UdpSocket::bind("0.0.0.0:0").unwrap();
            u.send_to(b"x", format!("{SERVER_IP}:{port}")).unwrap();
        })
        .join()
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    };
    let list = |t: &Topo, args: &[&str]| {
        let mut a = vec!["conntrack"];
        a.extend_from_slice(args);
        let (code, v, err) = t.ctl(&a);
        assert_eq!(code, 0, "{err}");
        v
    };
    send(&t, 9100);
    send(&t, 9101);
    assert_eq!(n(&list(&t, &[])["count"]), 2);
    // For a person: tables (the default on a terminal; `--table` here).
    for (cmd, head) in [
        ("conntrack", "ID  PROTO  STATE"),
        ("stats", "PORT  INTERFACE"),
        ("routes", "PREFIX"),
    ] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["ctl", "--socket"])
            .arg(t.control_socket())
            .args([cmd, "--table"])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && out.contains(head), "{cmd}: {out}");
        assert!(!out.trim_start().starts_with('{'), "{cmd}: {out}");
    }
    let v = list(&t, &["--proto", "udp", "--port", "9100"]);
    assert_eq!(n(&v["count"]), 1, "{v}");
    assert_eq!(
        v["entries"][0]["original"]["dst"],
        format!("{SERVER_IP}:9100")
    );
    assert_eq!(n(&list(&t, &["--dport", "9999"])["count"]), 0);
    // Delete names exactly what it filters.
    let v = list(&t, &["--delete", "--dport", "9100"]);
    assert_eq!(n(&v["deleted"]), 1, "{v}");
    let v = list(&t, &[]);
    assert_eq!(n(&v["count"]), 1);
    assert_eq!(
        v["entries"][0]["original"]["dst"],
        format!("{SERVER_IP}:9101")
    );
    // The deleted flow's next packet is a new connection, judged again.
    let (_, before, _) = t.ctl(&["stats"]);
    send(&t, 9100);
    let (_, after, _) = t.ctl(&["stats"]);
    assert_eq!(
        n(&after["policy"]["allowed"]),
        n(&before["policy"]["allowed"]) + 1,
        "judged again"
    );
    let v = list(&t, &["--dport", "9100"]);
    assert_eq!(n(&v["count"]), 1);
    // A delete without a filter is refused; flush takes everything.
    let (code, _, err) = t.ctl(&["conntrack", "--delete"]);
    assert_eq!(code, 2);
    assert!(err.contains("needs a filter"), "{err}");
    assert_eq!(n(&list(&t, &["--flush"])["deleted"]), 2);
    assert_eq!(n(&list(&t, &[])["count"]), 0);
    // Expired entries are neither listed nor counted (before the sweep
    // removes them).
    send(&t, 9102);
    assert_eq!(n(&list(&t, &[])["count"]), 1);
    std::thread::sleep(Duration::from_millis(3300));
    assert_eq!(n(&list(&t, &[])["count"]), 0);
    let (_, v, _) = t.ctl(&["stats"]);
    assert_eq!(n(&v["conntrack"]["entries"]), 0, "{v}");
    // Counters reset: `stats --reset` answers the counters so far, later
    // answers count from then.
    let (code, v, err) = t.ctl(&["stats", "--reset"]);
    assert_eq!(code, 0, "{err}");
    assert!(n(&v["packets"]) >= 4, "{v}");
    let (_, v, _) = t.ctl(&["stats"]);
    assert_eq!(n(&v["packets"]), 0, "{v}");
    assert!(v["since_reset_s"].is_number(), "{v}");
    // A listener, so the server answers no ICMP error.
    let _sink = in_netns(&t.server, || {
        UdpSocket::bind(format!("{SERVER_IP}:9103")).unwrap()
    })
    .join()
    .unwrap();
    send(&t, 9103);
    let (_, v, _) = t.ctl(&["stats"]);
    assert_eq!(n(&v["packets"]), 1, "{v}");
    assert_eq!(n(&v["actions"]["forward"]), 1, "{v}");
    // `ctl reload --config X` reloads X, not the running file.
    let other = t.dir().join("other.yaml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&cfg).unwrap() + "services:\n  - {name: w, vip: \"10.96.0.9\", port: 80, backends: [\"10.77.2.2:80\"]}\n",
    )
    .unwrap();
    let (code, v, err) = t.ctl(&["reload", "--config", other.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(v["config"].as_str().unwrap().ends_with("other.yaml"), "{v}");
    let (_, v, _) = t.ctl(&["services"]);
    assert_eq!(v["services"][0]["name"], "w", "{v}");
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert_no_leak(&r);
}

/// Starts tcpdump in namespace `ns` on `ifname`, writing `count` frames
/// that match `filter` to `pcap`; returns once its socket is open (it
/// says "listening on").
fn tcpdump(
    ns: &str,
    ifname: &str,
    count: u32,
    filter: &str,
    pcap: &std::path::Path,
) -> std::process::Child {
    let mut dump = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "tcpdump", "-i", ifname, "-U", "-c"])
        .arg(count.to_string())
        .arg("-w")
        .arg(pcap)
        .arg(filter)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut line = String::new();
    let mut r = std::io::BufReader::new(dump.stderr.take().unwrap());
    r.read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "tcpdump: {line}");
    dump
}

/// What a too-big packet's ICMP error says, as the client receives it:
/// the outer header and ICMP fields with the IPv4 identification, the
/// header checksum and the IPv6 flow label masked (Linux draws those at
/// random), whether the quote is the start of the packet the client sent,
/// and whether the checksums verify.
fn too_big_reply(t: &mut Topo, v6: bool) -> (Vec<u8>, bool) {
    too_big_reply_of(t, v6, "1450")
}

/// [`too_big_reply`] for an IPv4 ping of `size` bytes of data.
fn too_big_reply_sized(t: &mut Topo, size: &str) -> (Vec<u8>, bool) {
    too_big_reply_of(t, false, size)
}

fn too_big_reply_of(t: &mut Topo, v6: bool, size: &str) -> (Vec<u8>, bool) {
    let pcap = t.dir().join(if v6 { "icmp6.pcap" } else { "icmp4.pcap" });
    let filter = if v6 {
        "icmp6 and ip6[40] <= 128"
    } else {
        "icmp"
    };
    let dump = tcpdump(&t.client, "c0", 2, filter, &pcap);
    let dst = if v6 { "fd77:2::2" } else { SERVER_IP };
    let mut ping = vec!["ip", "netns", "exec", &t.client, "ping"];
    if v6 {
        ping.push("-6");
    }
    ping.extend(["-M", "do", "-s", size, "-c", "1", "-W", "1", dst]);
    let o = sh(&ping);
    assert!(
        !o.status.success(),
        "a DF ping with {size} bytes of data crossed a smaller link"
    );
    let out = wait_timeout(dump, Duration::from_secs(5));
    assert!(
        out.status.success(),
        "tcpdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cap = engine::io::pcap::read_file(&pcap, &[0; 6]).unwrap();
    assert_eq!(cap.frames.len(), 2, "request and error");
    let (req, err) = (cap.frame(0).to_vec(), cap.frame(1).to_vec());
    let mut e = err.clone();
    let (hdr, quote_max) = if v6 { (48, 1232) } else { (28, 548) };
    let ip_len = req.len() - 14;
    let q = ip_len.min(quote_max);
    let quote_ok = e.len() == 14 + hdr + q && e[14 + hdr..] == req[14..14 + q];
    let sums_ok = if v6 {
        let ph = engine::wire::checksum::pseudo_header_sum(
            &e[22..38],
            &e[38..54],
            58,
            (e.len() - 54) as u32,
        );
        engine::wire::checksum::fold(engine::wire::checksum::sum_be_words(&e[54..], 0) + ph)
            == 0xffff
    } else {
        engine::wire::checksum::checksum(&e[14..34]) == 0
            && engine::wire::checksum::checksum(&e[34..]) == 0
    };
    if v6 {
        e[15] &= 0xf0;
        e[16] = 0;
        e[17] = 0;
    } else {
        e[18] = 0;
        e[19] = 0;
        e[24] = 0;
        e[25] = 0;
    }
    // The headers and the ICMP fields (type, code, checksum aside, MTU).
    let mut fields = e[..14 + hdr].to_vec();
    if v6 {
        fields[56] = 0;
        fields[57] = 0;
    } else {
        fields[36] = 0;
        fields[37] = 0;
    }
    (fields, quote_ok && sums_ok)
}

/// Linux is the reference for path-MTU discovery: a DF packet bigger than
/// the egress link's MTU gets the same ICMP "fragmentation needed" (IPv6:
/// "packet too big") through sluice as through the kernel's forwarding —
/// the same addresses, TOS, TTL, lengths, MTU and quote — byte for byte
/// but for the fields Linux draws at random.
#[test]
fn too_big_packets_get_the_kernels_icmp_errors() {
    let topo = || {
        let mut t = Topo::new("m", 1);
        t.enable_v6();
        t.exec(
            &t.router,
            &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"],
        );
        for (ns, ifn) in [(&t.router, "p1"), (&t.server, "s0")] {
            t.exec(ns, &["ip", "link", "set", ifn, "mtu", "1400"]);
        }
        t
    };
    let mut k = topo();
    let kernel4 = too_big_reply(&mut k, false);
    let kernel6 = too_big_reply(&mut k, true);
    drop(k);
    let mut t = topo();
    let cfg = t.config(&[worker_core()], "");
    let s = t.start_sluice(&cfg, &[]);
    let ours4 = too_big_reply(&mut t, false);
    let ours6 = too_big_reply(&mut t, true);
    assert!(
        kernel4.1 && kernel6.1,
        "the kernel's errors quote the packet, checksums verify"
    );
    assert!(ours4.1, "sluice's IPv4 error: quote or checksums wrong");
    assert!(ours6.1, "sluice's IPv6 error: quote or checksums wrong");
    assert_eq!(
        ours4.0, kernel4.0,
        "fragmentation needed: sluice vs the kernel"
    );
    assert_eq!(ours6.0, kernel6.0, "packet too big: sluice vs the kernel");
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&r["icmp_too_big"]), 2, "{r}");
    assert_no_leak(&r);
}

/// The fragments of one `ping -M dont -s 1450` (1478 bytes, DF clear)
/// that reach the server through a 1400-byte link, with the fields the
/// client's kernel draws (the IPv4 identification, hence the header
/// checksum) masked, after checking each header checksum verifies. The
/// ping must be answered (the server reassembles the fragments).
fn fragments_reaching_the_server(t: &mut Topo) -> Vec<Vec<u8>> {
    let pcap = t.dir().join("frags.pcap");
    let filter = format!("src host {CLIENT_IP} and (ip[6:2] & 0x3fff) != 0");
    let dump = tcpdump(&t.server, "s0", 2, &filter, &pcap);
    let o = sh(&[
        "ip", "netns", "exec", &t.client, "ping", "-M", "dont", "-s", "1450", "-c", "1", "-W", "2",
        SERVER_IP,
    ]);
    assert!(
        o.status.success(),
        "a 1478-byte packet without DF was not answered through a 1400-byte link: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let out = wait_timeout(dump, Duration::from_secs(5));
    assert!(
        out.status.success(),
        "tcpdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cap = engine::io::pcap::read_file(&pcap, &[0; 6]).unwrap();
    (0..cap.frames.len())
        .map(|i| {
            let mut f = cap.frame(i).to_vec();
            assert_eq!(
                engine::wire::checksum::checksum(&f[14..34]),
                0,
                "fragment {i}: IPv4 header checksum"
            );
            for b in [18, 19, 24, 25] {
                f[b] = 0;
            }
            f
        })
        .collect()
}

/// Linux is the reference for fragmentation: an IPv4 packet without DF
/// bigger than the egress MTU leaves sluice as the same fragments the
/// kernel's forwarding sends — sizes, offsets, flags, TTL, the data —
/// byte for byte but for the ID the client drew.
#[test]
fn packets_without_df_are_fragmented_as_the_kernel_does() {
    let topo = || {
        let t = Topo::new("f", 1);
        for (ns, ifn) in [(&t.router, "p1"), (&t.server, "s0")] {
            t.exec(ns, &["ip", "link", "set", ifn, "mtu", "1400"]);
        }
        t
    };
    let mut k = topo();
    let kernel = fragments_reaching_the_server(&mut k);
    drop(k);
    let mut t = topo();
    let cfg = t.config(&[worker_core()], "");
    let s = t.start_sluice(&cfg, &[]);
    let ours = fragments_reaching_the_server(&mut t);
    assert_eq!(kernel.len(), 2, "the kernel sent two fragments");
    assert_eq!(ours.len(), kernel.len(), "fragments: sluice vs the kernel");
    for (i, (o, k)) in ours.iter().zip(&kernel).enumerate() {
        // The ICMP payload starts with ping's timestamp: compare the
        // headers, the lengths, and the data after the first 16 bytes.
        assert_eq!(o.len(), k.len(), "fragment {i}: length");
        assert_eq!(o[..34], k[..34], "fragment {i}: link and IPv4 header");
        let from = if i == 0 { 34 + 8 + 16 } else { 34 };
        assert_eq!(o[from..], k[from..], "fragment {i}: data");
    }
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert!(n(&r["fragmented"]) >= 1, "{r}");
    assert_no_leak(&r);
}

/// sluice follows a port's MTU changed under it (`ip link set p1 mtu
/// 1300` while running): `ctl port list` shows the new MTU, and a DF
/// packet that fitted before now gets "fragmentation needed" carrying
/// 1300.
#[test]
fn mtu_changes_under_sluice_are_followed() {
    let mut t = Topo::new("u", 1);
    let cfg = t.config(&[worker_core()], "");
    let s = t.start_sluice(&cfg, &[]);
    let ping = |t: &Topo| {
        sh(&[
            "ip", "netns", "exec", &t.client, "ping", "-M", "do", "-s", "1350", "-c", "1", "-W",
            "1", SERVER_IP,
        ])
        .status
        .success()
    };
    assert!(ping(&t), "a 1378-byte DF ping through 1500-byte links");
    for (ns, ifn) in [(&t.router, "p1"), (&t.server, "s0")] {
        t.exec(ns, &["ip", "link", "set", ifn, "mtu", "1300"]);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, l, _) = t.ctl(&["port", "list"]);
        let mtus: Vec<u64> = l["ports"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["mtu"].as_u64()).collect())
            .unwrap_or_default();
        if mtus.contains(&1300) {
            assert_eq!(l["events"]["mtu_changes"], 1, "{l}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "MTU not followed: {l}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (fields, ok) = too_big_reply_sized(&mut t, "1350");
    assert!(ok, "the error quotes the packet, checksums verify");
    assert_eq!(fields[14 + 20], 3, "destination unreachable");
    assert_eq!(fields[14 + 21], 4, "fragmentation needed");
    assert_eq!(
        u16::from_be_bytes([fields[14 + 26], fields[14 + 27]]),
        1300,
        "the new MTU"
    );
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&r["icmp_too_big"]), 1, "{r}");
    assert_no_leak(&r);
}

/// Jumbo MTUs (3000 and 9000 on every veth) with the default 2048-byte
/// UMEM frames: packets span several frames (AF_XDP multi-buffer), a
/// full-size DF ping crosses both ways, and a TCP stream runs at full
/// segment size through sluice (its multi-frame counter covers the
/// stream; nothing is lost for size). Prints each rate.
#[test]
fn jumbo_mtus_pass_full_size_packets() {
    let _heavy = heavy();
    for mtu in [3000u32, 9000] {
        let mut t = Topo::new(if mtu == 3000 { "j3" } else { "j9" }, 1);
        for (ns, ifn) in [
            (&t.client, "c0"),
            (&t.router, "p0"),
            (&t.router, "p1"),
            (&t.server, "s0"),
        ] {
            t.exec(ns, &["ip", "link", "set", ifn, "mtu", &mtu.to_string()]);
        }
        let cfg = t.config(&[worker_core()], "");
        let s = t.start_sluice(&cfg, &[]);
        let size = (mtu - 28).to_string();
        let o = sh(&[
            "ip", "netns", "exec", &t.client, "ping", "-M", "do", "-s", &size, "-c", "2", "-W",
            "2", SERVER_IP,
        ]);
        assert!(
            o.status.success(),
            "MTU {mtu}: a full-size DF ping was not answered: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let gbps = iperf3(&mut t, SERVER_IP, 5301, &["-t", "2"])
            .unwrap_or_else(|e| panic!("MTU {mtu}: {e}"));
        println!("MTU {mtu}: TCP through sluice {gbps:.2} Gbit/s");
        assert!(gbps > 0.0);
        let (code, r, err) = s.stop();
        assert_eq!(code, 0, "{err}");
        // 2 s of TCP at full size: every data segment spans frames.
        assert!(n(&r["multi_buffer"]) >= 1000, "MTU {mtu}: {r}");
        assert_eq!(n(&r["too_long"]), 0, "MTU {mtu}: {r}");
        assert_eq!(n(&r["actions"]["drop"]), 0, "MTU {mtu}: {r}");
        assert_no_leak(&r);
    }
}
