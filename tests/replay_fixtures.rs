//! End-to-end: `sluice replay` over the generated fixtures.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

const FIXTURES: &[&str] = &[
    "tcp4-session",
    "tcp6-session",
    "udp",
    "icmp",
    "vlan",
    "fragments",
    "edge",
    "malformed",
    "imix",
];

fn parse_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn fixtures_get_their_intended_verdicts() {
    let tmp = TempDir::new("verdicts");
    for name in FIXTURES {
        let v = tmp.path().join(format!("{name}.jsonl"));
        let (code, out, err) = run(sluice()
            .arg("replay")
            .arg("--config")
            .arg(fixtures().join("sluice.yaml"))
            .arg("--pcap")
            .arg(fixtures().join(format!("{name}.pcap")))
            .arg("--verdicts")
            .arg(&v)
            .arg("--json"));
        assert_eq!(code, 0, "{name}: {err}");
        let got = parse_lines(&std::fs::read_to_string(&v).unwrap());
        let want = parse_lines(
            &std::fs::read_to_string(fixtures().join(format!("{name}.expected.jsonl"))).unwrap(),
        );
        assert_eq!(got.len(), want.len(), "{name}: frame count");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{name}");
        }
        // The summary accounts for every frame and agrees with the verdicts.
        let s: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let a = &s["actions"];
        let total = a["forward"].as_u64().unwrap()
            + a["drop"].as_u64().unwrap()
            + a["kernel"].as_u64().unwrap();
        assert_eq!(total, want.len() as u64, "{name}");
        assert_eq!(s["packets"].as_u64().unwrap(), want.len() as u64);
        let malformed = want.iter().filter(|w| w["reason"] == "malformed").count() as u64;
        assert_eq!(
            s["drops"]["malformed"].as_u64().unwrap(),
            malformed,
            "{name}"
        );
        for k in ["seconds", "mpps", "ns_per_packet", "workers"] {
            assert!(s[k].is_number(), "{name}: {k}");
        }
        for k in ["p50", "p99", "p999", "max"] {
            assert!(
                s["latency_ns"][k].as_u64().unwrap() > 0,
                "{name}: latency {k}"
            );
        }
    }
}

/// Every forwarded frame leaves with the next hop's MAC as destination, the
/// egress port's MAC as source, TTL/hop limit one lower, a valid IPv4 header
/// checksum, and every other byte unchanged.
#[test]
fn forwarded_frames_are_rewritten_like_a_router() {
    let tmp = TempDir::new("rewrite");
    for name in [
        "imix",
        "tcp4-session",
        "tcp6-session",
        "vlan",
        "icmp",
        "fragments",
        "udp",
    ] {
        let out = tmp.path().join(name);
        let v = tmp.path().join(format!("{name}.jsonl"));
        let (code, _, err) = run(sluice()
            .args(["replay", "--config"])
            .arg(fixtures().join("sluice.yaml"))
            .arg("--pcap")
            .arg(fixtures().join(format!("{name}.pcap")))
            .arg("--out-dir")
            .arg(&out)
            .arg("--verdicts")
            .arg(&v));
        assert_eq!(code, 0, "{err}");
        let input = frames(&fixtures().join(format!("{name}.pcap")));
        let verdicts = parse_lines(&std::fs::read_to_string(&v).unwrap());
        let mut by_port: std::collections::HashMap<String, std::vec::IntoIter<Vec<u8>>> =
            Default::default();
        for port in ["uplink", "pods"] {
            by_port.insert(
                port.into(),
                frames(&out.join(format!("{port}.pcap"))).into_iter(),
            );
        }
        for (inp, v) in input.iter().zip(&verdicts) {
            if v["action"] != "forward" {
                continue;
            }
            let port = v["port"].as_str().unwrap();
            let got = by_port
                .get_mut(port)
                .unwrap()
                .next()
                .expect("one output frame per forwarded input");
            assert_eq!(got.len(), inp.len());
            let p = engine::wire::parse(inp).unwrap();
            let q = engine::wire::parse(&got).unwrap();
            // MACs.
            let (port_mac, next_mac): ([u8; 6], [u8; 6]) = match port {
                "uplink" => ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 0xfe]),
                _ => ([2, 0, 0, 0, 0, 2], [2, 0, 0, 1, 0, (p.dst & 0xff) as u8]),
            };
            assert_eq!(&got[0..6], &next_mac, "{name}: dst MAC");
            assert_eq!(&got[6..12], &port_mac, "{name}: src MAC");
            // TTL.
            assert_eq!(q.ttl, p.ttl - 1, "{name}: TTL");
            // IPv4 header checksum valid.
            if q.family == engine::wire::Family::V4 {
                let l3 = q.l3 as usize;
                let ihl = usize::from(got[l3] & 0xf) * 4;
                assert_eq!(
                    engine::wire::checksum::checksum(&got[l3..l3 + ihl]),
                    0,
                    "{name}: IP checksum"
                );
            }
            // Nothing else changed.
            let ttl_at = p.l3 as usize
                + if p.family == engine::wire::Family::V4 {
                    8
                } else {
                    7
                };
            let csum = p.l3 as usize + 10;
            for i in 12..inp.len() {
                if i == ttl_at
                    || (p.family == engine::wire::Family::V4 && (i == csum || i == csum + 1))
                {
                    continue;
                }
                assert_eq!(got[i], inp[i], "{name}: byte {i} changed");
            }
        }
        for (port, mut rest) in by_port {
            assert!(rest.next().is_none(), "{name}: extra frames on {port}");
        }
    }
}

/// tshark, with checksum validation on, finds no bad checksum in anything
/// sluice writes.
#[test]
fn tshark_validates_every_output_checksum() {
    require_tool("tshark");
    let tmp = TempDir::new("tshark");
    let mut args = vec![];
    for name in FIXTURES {
        if *name != "malformed" {
            args.push(format!(
                "--pcap={}",
                fixtures().join(format!("{name}.pcap")).display()
            ));
        }
    }
    let (code, _, err) = run(sluice()
        .args(["replay", "--config"])
        .arg(fixtures().join("sluice.yaml"))
        .args(&args)
        .arg("--out-dir")
        .arg(tmp.path()));
    assert_eq!(code, 0, "{err}");
    let mut checked = 0;
    let mut good = 0;
    for port in ["uplink", "pods"] {
        let f = tmp.path().join(format!("{port}.pcap"));
        let lines = tshark_checked(
            &f,
            &[
                "frame.number",
                "ip.checksum.status",
                "tcp.checksum.status",
                "udp.checksum.status",
            ],
        );
        for line in &lines {
            checked += 1;
            // Wireshark's checksum status: 0 bad, 1 good, 2 unverified.
            assert!(
                !line
                    .split('\t')
                    .skip(1)
                    .any(|f| f.split(',').any(|s| s == "0")),
                "bad checksum in {port}: {line}"
            );
            if line
                .split('\t')
                .skip(1)
                .any(|f| f.split(',').any(|s| s == "1"))
            {
                good += 1;
            }
        }
    }
    assert!(checked > 2000, "checked {checked} frames");
    assert!(good > 2000, "{good} frames with a verified-good checksum");
}

/// Flows spread over 2 and 4 workers give exactly the verdicts and output
/// frames of one worker.
#[test]
fn workers_do_not_change_results() {
    let tmp = TempDir::new("workers");
    let mut results = Vec::new();
    for w in [1, 2, 4] {
        let dir = tmp.path().join(format!("w{w}"));
        let v = tmp.path().join(format!("w{w}.jsonl"));
        let mut cmd = sluice();
        cmd.args(["replay", "--config"])
            .arg(fixtures().join("sluice.yaml"));
        for name in FIXTURES {
            cmd.arg("--pcap")
                .arg(fixtures().join(format!("{name}.pcap")));
        }
        let (code, _, err) = run(cmd
            .arg("--workers")
            .arg(w.to_string())
            .arg("--out-dir")
            .arg(&dir)
            .arg("--verdicts")
            .arg(&v));
        assert_eq!(code, 0, "{err}");
        let mut outs = vec![std::fs::read_to_string(&v).unwrap()];
        for f in ["uplink", "pods", "kernel", "drops"] {
            outs.push(format!("{:?}", frames(&dir.join(format!("{f}.pcap")))));
        }
        results.push(outs);
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}

/// Loops replay the same bytes: TTLs are restored between loops.
#[test]
fn loops_restore_frames() {
    let (code, out, err) = run(sluice()
        .args(["replay", "--json", "--loops", "70", "--config"])
        .arg(fixtures().join("sluice.yaml"))
        .arg("--pcap")
        .arg(fixtures().join("tcp4-session.pcap")));
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(s["packets"], 70 * 20);
    // TTL 64 would expire after 63 loops if rewrites leaked across loops.
    assert_eq!(s["actions"]["forward"], 70 * 20);
}

#[test]
fn bad_inputs_exit_2_naming_the_problem() {
    let tmp = TempDir::new("bad");
    let cfg = tmp.path().join("bad.yaml");
    std::fs::write(&cfg, "ports:\n  - {name: a, mac: \"02:00:00:00:00:01\"}\nroutes:\n  - {prefix: 10.0.0.0/8, port: b}\n").unwrap();
    let (code, _, err) = run(sluice()
        .args(["replay", "--config"])
        .arg(&cfg)
        .arg("--pcap")
        .arg(fixtures().join("udp.pcap")));
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.yaml: routes[0].port: no port named \"b\""),
        "{err}"
    );

    let (code, _, err) = run(sluice()
        .args(["replay", "--config"])
        .arg(fixtures().join("sluice.yaml"))
        .arg("--pcap")
        .arg(shared().join("pcaps/other-linktypes/nflog.pcap")));
    assert_eq!(code, 2);
    assert!(
        err.contains("nflog.pcap") && err.contains("NFLOG (239)"),
        "{err}"
    );

    let (code, _, err) = run(sluice()
        .args(["replay", "--config"])
        .arg(fixtures().join("sluice.yaml"))
        .arg("--pcap")
        .arg(tmp.path().join("missing.pcap")));
    assert_eq!(code, 2, "a missing capture is bad input");
    assert!(err.contains("missing.pcap"), "{err}");

    // A port name that is no port (and no such file): named, with the
    // ports there are.
    let (code, _, err) = run(sluice()
        .args(["replay", "--config"])
        .arg(fixtures().join("sluice.yaml"))
        .arg("--pcap")
        .arg(format!("uplnk={}", fixtures().join("udp.pcap").display())));
    assert_eq!(code, 2);
    assert!(
        err.contains("no port named \"uplnk\"") && err.contains("uplink, pods"),
        "{err}"
    );

    // A truncated capture: the frames before the cut are replayed and
    // reported, and the exit status says the input was bad.
    let mut cut = std::fs::read(fixtures().join("udp.pcap")).unwrap();
    cut.truncate(cut.len() - 7);
    let cut_path = tmp.path().join("cut.pcap");
    std::fs::write(&cut_path, &cut).unwrap();
    let (code, out, err) = run(sluice()
        .args(["replay", "--json", "--config"])
        .arg(fixtures().join("sluice.yaml"))
        .arg("--pcap")
        .arg(&cut_path));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cut short"), "{err}");
    let s: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(s["packets"].as_u64().unwrap() > 0, "{out}");

    let (code, _, err) = run(sluice()
        .args(["replay", "--config"])
        .arg(fixtures().join("sluice.yaml"))
        .arg("--pcap")
        .arg(fixtures().join("udp.pcap"))
        .args(["--ingress", "nope"]));
    assert_eq!(code, 2);
    assert!(err.contains("--ingress") && err.contains("nope"), "{err}");
}
