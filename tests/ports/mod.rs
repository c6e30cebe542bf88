//! Ports that come and go while `sluice run` runs: `ctl port add` and
//! `remove`, interfaces deleted under sluice, and the pod churn the issue
//! asks for. Part of the `live` test binary (its `heavy()` lock and
//! helpers).

use std::time::{Duration, Instant};

use super::netns::*;
use super::{assert_no_leak, n, tcp_exchange, worker_core};

/// The BPF objects sluice holds: its descriptors that are BPF programs,
/// maps or links (`anon_inode:bpf-*`).
fn bpf_fds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().contains("bpf"))
        .count()
}

/// `ctl port list`'s entry for `name`.
fn port_entry(t: &Topo, name: &str) -> Option<serde_json::Value> {
    let (code, v, err) = t.ctl(&["port", "list"]);
    assert_eq!(code, 0, "{err}");
    v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
}

/// Pings `dst` from `ns` once a short while; the time of the first reply,
/// or `None` within `limit`.
fn first_reply(ns: &str, dst: &str, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        let ok = sh(&[
            "ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "0.2", dst,
        ])
        .status
        .success();
        if ok {
            return Some(t0.elapsed());
        }
    }
    None
}

/// A pod's veth added to a running sluice with `ctl port add` is forwarded
/// within a second, by sluice (its counters say so); removed, sluice stops
/// forwarding it while the other ports keep working; added again, it takes
/// the same port number with counters from zero. Nothing leaks: the same
/// descriptors as before, every UMEM frame back.
#[test]
fn ctl_port_add_and_remove() {
    let mut t = Topo::new("pa", 1);
    let cfg = t.config(&[worker_core()], "");
    let s = t.start_sluice(&cfg, &[]);
    let pid = s.pid();
    assert!(t.ping(&t.client, SERVER_IP, 1));
    let fds0 = fd_count(&pid);
    let bpf0 = bpf_fds(&pid);
    let pod = Pod::new(&t, 1);
    for round in 0..2 {
        let args = pod.add_args("pod1");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let t0 = Instant::now();
        let (code, v, err) = t.ctl(&args);
        assert_eq!(code, 0, "{err}");
        assert_eq!(v["number"], 2, "the next number, then the same one: {v}");
        assert!(t.xdp_attached(&pod.ifname));
        let first = first_reply(&pod.ns, CLIENT_IP, Duration::from_secs(2))
            .expect("the pod reaches the client through sluice");
        let since_add = t0.elapsed();
        eprintln!("round {round}: first reply {first:?} after the answer, {since_add:?} after ctl port add");
        assert!(since_add < Duration::from_secs(1), "{since_add:?}");
        let e = port_entry(&t, "pod1").unwrap();
        assert_eq!(e["state"], "up", "{e}");
        assert_eq!(e["from"], "ctl", "{e}");
        // Sluice forwarded it: the client's replies left through the pod.
        let (_, st, _) = t.ctl(&["stats"]);
        let p = st["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "pod1")
            .unwrap()
            .clone();
        assert!(n(&p["tx"]) >= 1 && n(&p["rx"]) >= 1, "{st}");
        assert!(n(&p["tx"]) <= 12, "counters start over with the port: {p}");
        // The other ports kept forwarding.
        tcp_exchange(&t, 7600 + round, 200_000, 200_000);

        let (code, v, err) = t.ctl(&["port", "remove", "pod1"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(v["number"], 2, "{v}");
        assert!(!t.xdp_attached(&pod.ifname), "XDP detached on remove");
        assert!(port_entry(&t, "pod1").is_none());
        // The client's replies no longer have a way to the pod in sluice.
        assert!(first_reply(&pod.ns, CLIENT_IP, Duration::from_millis(600)).is_none());
        assert!(t.ping(&t.client, SERVER_IP, 1), "the rest keeps working");
        assert_eq!(fd_count(&pid), fds0, "descriptors after round {round}");
        assert_eq!(bpf_fds(&pid), bpf0, "BPF objects after round {round}");
    }
    // Removing what is not there, or a port the config's routes name, is
    // refused, naming it.
    let (code, _, err) = t.ctl(&["port", "remove", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("no port named \"nope\""), "{err}");
    let (code, _, err) = t.ctl(&["port", "remove", "b"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("routes[1].port") && err.contains("\"b\""),
        "{err}"
    );
    let (code, _, err) = t.ctl(&["port", "add", "x", "--interface", "no-such-if0"]);
    assert_eq!(code, 2);
    assert!(err.contains("no-such-if0"), "{err}");
    let (code, r, err) = s.stop();
    for l in err.lines().filter(|l| l.contains("DEBUG")) {
        eprintln!("{l}");
    }
    assert_eq!(code, 0, "{err}");
    assert_no_leak(&r);
}

/// The percentile `p` (0..=100) of sorted `v`.
fn percentile(v: &[Duration], p: usize) -> Duration {
    v[((v.len() - 1) * p).div_ceil(100)]
}

/// Pod churn (issue 16's acceptance): 50 pods, each a namespace and a veth,
/// added with `ctl port add`, answering a ping through sluice, then removed
/// (every fifth by deleting its link under sluice) while a TCP stream runs
/// between two other pods. The stream neither loses nor stalls, every pod
/// answers within its first second, and afterwards sluice holds the
/// descriptors, BPF objects and UMEM frames it held before.
#[test]
fn pod_churn() {
    let _heavy = super::heavy();
    let mut t = Topo::new("pc", 1);
    let cfg = t.config(&[worker_core()], "");
    let s = t.start_sluice(&cfg, &[]);
    let pid = s.pid();
    assert!(t.ping(&t.client, SERVER_IP, 1));
    let (fds0, bpf0) = (fd_count(&pid), bpf_fds(&pid));

    // The long-lived stream, client -> server, paced so the churn's
    // control work is not starved of CPU.
    let server = std::process::Command::new("ip")
        .args([
            "netns", "exec", &t.server, "iperf3", "-s", "-1", "-p", "5399",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    t.adopt(server);
    std::thread::sleep(Duration::from_millis(300));
    let stream = std::process::Command::new("ip")
        .args([
            "netns", "exec", &t.client, "iperf3", "-c", SERVER_IP, "-p", "5399",
        ])
        .args(["-t", "15", "-b", "200M", "-J"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // The churn starts once the stream is past its first second.
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let mut attach = Vec::new();
    let mut vanished = 0;
    for i in 1..=50u32 {
        let pod = Pod::new(&t, i);
        let name = format!("pod{i}");
        let args = pod.add_args(&name);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let t0 = Instant::now();
        let (code, _, err) = t.ctl(&args);
        assert_eq!(code, 0, "{name}: {err}");
        let first = first_reply(&pod.ns, CLIENT_IP, Duration::from_secs(1));
        assert!(first.is_some(), "{name} did not answer within 1 s");
        attach.push(t0.elapsed());
        if i % 5 == 0 {
            // A pod gone: its link deleted under sluice.
            pod.delete_link();
            vanished += 1;
            let t1 = Instant::now();
            while port_entry(&t, &name).is_some() {
                assert!(t1.elapsed() < Duration::from_secs(2), "{name} not removed");
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            let (code, _, err) = t.ctl(&["port", "remove", &name]);
            assert_eq!(code, 0, "{name}: {err}");
        }
    }
    let churn = started.elapsed();
    let out = stream.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("iperf3: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(v["error"].is_null(), "iperf3: {}", v["error"]);
    let retrans = n(&v["end"]["sum_sent"]["retransmits"]);
    let gbps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap()
        / 1e9;
    let slowest = v["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["sum"]["bits_per_second"].as_f64())
        .fold(f64::MAX, f64::min);
    let per_second: Vec<u64> = v["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| n(&i["sum"]["retransmits"]))
        .collect();
    attach.sort();
    eprintln!(
        "retransmissions per second of the stream (the churn ran from second 2): {per_second:?}"
    );
    eprintln!(
        "pod churn: 50 pods ({vanished} by ip link del) in {churn:.1?}; attach (ctl port add to first \
         reply) p50 {:?} p99 {:?} max {:?}; stream {gbps:.3} Gbit/s, {retrans} retransmissions, \
         slowest second {:.1} Mbit/s",
        percentile(&attach, 50),
        percentile(&attach, 99),
        attach.last().unwrap(),
        slowest / 1e6
    );
    assert!(
        churn < Duration::from_secs(35),
        "the churn outlasted the stream"
    );
    let (_, st, _) = t.ctl(&["stats"]);
    eprintln!(
        "drops {} xdp {} tx_no_socket {} tx_ring_full {} kernel_unreachable {}",
        st["drops"], st["xdp"], st["tx_no_socket"], st["tx_ring_full"], st["kernel_unreachable"]
    );
    // No loss: sluice dropped nothing and sent everything it took, no
    // socket ring overflowed (checked at the end), and no device on the
    // path dropped a frame.
    assert!(
        st["drops"].as_object().unwrap().values().all(|v| v == 0),
        "{st}"
    );
    assert_eq!(n(&st["tx_ring_full"]), 0, "{st}");
    assert_eq!(n(&st["tx_no_socket"]), 0, "{st}");
    assert_eq!(
        n(&st["xdp"]["no_socket_drop"]) + n(&st["xdp"]["no_socket_pass"]),
        0,
        "{st}"
    );
    for (ns, ifn) in [
        (&t.client, "c0"),
        (&t.server, "s0"),
        (&t.router, "p0"),
        (&t.router, "p1"),
    ] {
        let o = sh(&["ip", "-n", ns, "-j", "-s", "link", "show", ifn]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let st64 = &v[0]["stats64"];
        assert_eq!(
            n(&st64["rx"]["dropped"]) + n(&st64["tx"]["dropped"]),
            0,
            "{ifn} dropped frames: {st64}"
        );
    }
    let nstat = |ns: &str, k: &str| -> u64 {
        let o = sh(&["ip", "netns", "exec", ns, "nstat", "-az", k]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("nstat {k}: {}", String::from_utf8_lossy(&o.stdout)))
    };
    eprintln!(
        "pod churn: the client retransmitted {} segment(s) ({} tail-loss probes, {} D-SACKs \
         saying the original had arrived); the server queued {} out of order",
        nstat(&t.client, "TcpRetransSegs"),
        nstat(&t.client, "TcpExtTCPLossProbes"),
        nstat(&t.client, "TcpExtTCPDSACKRecv"),
        nstat(&t.server, "TcpExtTCPOFOQueue"),
    );
    assert!(
        slowest > 100e6,
        "the stream stalled: {slowest} bit/s in one second"
    );
    eprintln!(
        "pod churn: descriptors {fds0} before, {} after; BPF objects {bpf0} before, {} after; \
         frames reclaimed from closed sockets {}",
        fd_count(&pid),
        bpf_fds(&pid),
        st["frames_reclaimed"]
    );
    assert_eq!(n(&st["ports_vanished"]), vanished, "{st}");
    assert_eq!(n(&st["ports_added"]), 50, "{st}");
    assert_eq!(fd_count(&pid), fds0, "descriptors after the churn");
    assert_eq!(bpf_fds(&pid), bpf0, "BPF objects after the churn");
    assert_eq!(
        std::fs::read_dir("/sys/fs/bpf/sluice")
            .map(|d| d
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().contains("pd"))
                .count())
            .unwrap_or(0),
        0,
        "no pin left"
    );
    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    for w in r["workers"].as_array().unwrap() {
        for sk in w["sockets"].as_array().unwrap() {
            assert_eq!(n(&sk["rx_dropped"]), 0, "socket ring overflowed: {sk}");
        }
    }
    assert_no_leak(&r);
}
