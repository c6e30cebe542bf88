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
    assert_eq!(code, 0, "{err}");
    assert_no_leak(&r);
}
