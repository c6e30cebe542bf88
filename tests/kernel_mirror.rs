//! The kernel mirror end to end: `sluice run` with `kernel: {routes,
//! neighbors, addresses}` and no static routes, neighbours or addresses,
//! between network namespaces (see `netns/mod.rs`). The router
//! namespace's kernel is the only source of where things are: its
//! connected routes, the neighbours it learns, a route added and deleted
//! with `ip route`. Needs root.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod netns;

use std::time::{Duration, Instant};

use netns::*;

fn config(t: &Topo) -> std::path::PathBuf {
    let y = format!(
        "ports:\n  - {{name: a, interface: p0}}\n  - {{name: b, interface: p1}}\n\
         workers: {{cores: [{}], batch: 64}}\n\
         kernel: {{routes: true, neighbors: true, addresses: true}}\n\
         metrics: {{listen: null}}\ncontrol: {{socket: \"{}\"}}\n",
        worker_core(),
        t.control_socket().display()
    );
    let p = t.dir().join("mirror.yaml");
    std::fs::write(&p, y).unwrap();
    p
}

/// Whether `ctl routes` lists `prefix` (as a route) from the kernel.
fn has_route(t: &Topo, prefix: &str) -> bool {
    let (code, v, err) = t.ctl(&["--json", "routes"]);
    assert_eq!(code, 0, "{err}");
    v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["prefix"] == prefix && r["source"] == "kernel")
}

/// Polls `ctl routes` until `prefix` is (or is not) there; the time it took.
fn wait_route(t: &Topo, prefix: &str, present: bool) -> Duration {
    let t0 = Instant::now();
    while has_route(t, prefix) != present {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{prefix} still {} after 5 s",
            if present { "missing" } else { "there" }
        );
    }
    t0.elapsed()
}

fn stats(t: &Topo) -> serde_json::Value {
    let (code, v, err) = t.ctl(&["--json", "stats"]);
    assert_eq!(code, 0, "{err}");
    v
}

fn ip(t: &Topo, args: &[&str]) {
    let mut v = vec!["ip", "-n", t.router.as_str()];
    v.extend_from_slice(args);
    let o = sh(&v);
    assert!(
        o.status.success(),
        "{v:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn kernel_routes_neighbours_and_addresses_are_followed() {
    let mut t = Topo::new("k", 1);
    t.enable_v6();
    // Something behind the server for a route to point at.
    t.exec(
        &t.server,
        &["ip", "addr", "add", "10.99.0.1/32", "dev", "lo"],
    );
    t.exec(
        &t.server,
        &["ip", "addr", "add", "fd99::1/128", "dev", "lo"],
    );
    let cfg = config(&t);
    let s = t.start_sluice(&cfg, &[]);

    // At start: the connected routes and the ports' addresses, all from
    // the kernel; no neighbour yet (nothing has talked).
    let (_, r, _) = t.ctl(&["--json", "routes"]);
    for p in ["10.77.1.0/24", "10.77.2.0/24", "fd77:1::/64", "fd77:2::/64"] {
        assert!(has_route(&t, p), "{p}: {r}");
    }
    let local: Vec<String> = r["local"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["address"].as_str().unwrap().to_string())
        .collect();
    for a in [
        "10.77.1.1/24",
        "10.77.2.1/24",
        "fd77:1::1/64",
        "fd77:2::1/64",
    ] {
        assert!(local.contains(&a.to_string()), "{a}: {r}");
    }
    let (_, k, _) = t.ctl(&["--json", "kernel"]);
    assert_eq!(k["mirror"], true, "{k}");
    // Link-local prefixes are the kernel's (XDP passes them): left out.
    assert!(n(&k["left_out"]["routes_unsupported"]) >= 2, "{k}");

    // A next hop nobody resolved yet: the first packets go through the
    // kernel (which resolves it and sends them), the next through sluice.
    for dst in [SERVER_IP, "fd77:2::2"] {
        let ok = t.ping_waiting(&t.client, dst, 3, 3);
        let (_, r, _) = t.ctl(&["--json", "routes"]);
        assert!(ok, "ping {dst} with a cold neighbour: {}\n{r}", stats(&t));
    }
    let v = stats(&t);
    let via = &v["via_kernel"];
    assert!(n(&via["frames"]) >= 2, "{v}");
    assert_eq!(n(&via["sent"]), n(&via["frames"]), "{v}");
    assert_eq!(n(&via["failed"]), 0, "{v}");
    assert_eq!(n(&v["drops"]["no_neighbor"]), 0, "{v}");
    let (_, r, _) = t.ctl(&["--json", "routes"]);
    let learned: Vec<&str> = r["neighbors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["source"] == "kernel")
        .map(|n| n["ip"].as_str().unwrap())
        .collect();
    for a in [SERVER_IP, CLIENT_IP, "fd77:2::2", "fd77:1::2"] {
        assert!(learned.contains(&a), "{a} not learned: {r}");
    }
    // Now sluice forwards on its own.
    let (_, _, _) = t.ctl(&["stats", "--reset"]);
    for dst in [SERVER_IP, "fd77:2::2"] {
        assert!(t.ping(&t.client, dst, 5), "ping {dst} warm");
    }
    let v = stats(&t);
    assert_eq!(n(&v["via_kernel"]["frames"]), 0, "{v}");
    assert!(n(&v["actions"]["forward"]) >= 20, "{v}");

    // A route added with `ip route` is used without a restart...
    assert!(!t.ping(&t.client, "10.99.0.1", 1), "no route yet");
    let t0 = Instant::now();
    ip(
        &t,
        &[
            "route",
            "add",
            "10.99.0.0/24",
            "via",
            SERVER_IP,
            "dev",
            "p1",
        ],
    );
    ip(
        &t,
        &[
            "-6",
            "route",
            "add",
            "fd99::/64",
            "via",
            "fd77:2::2",
            "dev",
            "p1",
        ],
    );
    let seen = wait_route(&t, "10.99.0.0/24", true);
    wait_route(&t, "fd99::/64", true);
    let (_, k, _) = t.ctl(&["--json", "kernel"]);
    eprintln!(
        "route add -> listed by ctl: {:.1} ms (ctl polling included); \
         mirror update (first message read -> tables swapped): last {:.2} ms, worst {:.2} ms",
        seen.as_secs_f64() * 1e3,
        k["last_update_ms"].as_f64().unwrap(),
        k["max_update_ms"].as_f64().unwrap()
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(k["last_update_ms"].as_f64().unwrap() < 100.0, "{k}");
    let before = stats(&t);
    for dst in ["10.99.0.1", "fd99::1"] {
        assert!(t.ping(&t.client, dst, 3), "ping {dst} over the new route");
    }
    let after = stats(&t);
    // ...by sluice (port b sent the requests).
    assert!(
        n(&after["ports"][1]["tx"]) >= n(&before["ports"][1]["tx"]) + 6,
        "{before}\n{after}"
    );

    // A route deleted stops being used.
    ip(&t, &["route", "del", "10.99.0.0/24"]);
    wait_route(&t, "10.99.0.0/24", false);
    let before = stats(&t);
    assert!(
        !t.ping(&t.client, "10.99.0.1", 2),
        "deleted route still used"
    );
    let after = stats(&t);
    assert!(
        n(&after["drops"]["no_route"]) >= n(&before["drops"]["no_route"]) + 2,
        "{before}\n{after}"
    );

    let (code, r, err) = s.stop();
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&r["via_kernel"]["failed"]), 0, "{r}");
}
