//! `sluice replay --workers N` gives the same bytes as one worker when NAT
//! changes both ends of a connection: pods reach a service VIP whose
//! backends are outside, masqueraded on the way (the reply then shares no
//! end with the request), beside DNAT-only, SNAT-only and plain flows,
//! many connections interleaved in capture time. Every output (each port's
//! pcap, the kernel and drop captures, the per-frame verdicts) must be
//! byte-identical for 1, 2 and 4 workers, run after run.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bench::packet::{self as pk, flags, Ip};
use engine::io::pcap::PcapWriter;
use engine::sources::config::Config;
use engine::tables::Tables;
use engine::wire::{self, Family};
use engine::worker::replay::{self, Input, ReplayOptions};

const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PODS_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const NODE: [u8; 4] = [192, 0, 2, 1];

const CONFIG: &str = r#"
ports:
  - {name: uplink, mac: "02:00:00:00:00:01", addresses: ["192.0.2.1/24"]}
  - {name: pods, mac: "02:00:00:00:00:02", addresses: ["10.1.0.1/16"]}
routes:
  - {prefix: "10.1.0.0/16", port: pods}
  - {prefix: "192.0.2.0/24", port: uplink}
  - {prefix: "0.0.0.0/0", port: uplink, via: "192.0.2.254"}
services:
  - {name: ext, vip: "10.96.0.10", port: 80, protocol: TCP, backends: ["192.0.2.100:8080", "192.0.2.101:8080"]}
  - {name: dns, vip: "10.96.0.11", port: 53, protocol: UDP, backends: ["10.1.0.5:5353"]}
masquerade:
  - {from: "10.1.0.0/16", port: uplink}
neighbors:
  - {ip: "192.0.2.254", mac: "02:00:00:00:00:fe", port: uplink}
  - {ip: "192.0.2.100", mac: "02:00:00:00:00:64", port: uplink}
  - {ip: "192.0.2.101", mac: "02:00:00:00:00:65", port: uplink}
  - {ip: "10.1.0.5", mac: "02:00:00:01:00:05", port: pods}
"#;

fn pod(n: u16) -> [u8; 4] {
    [10, 1, (n >> 8) as u8 + 1, (n & 0xff) as u8]
}

fn pod_mac(n: u16) -> [u8; 6] {
    [2, 0, 0, 1, (n >> 8) as u8 + 1, (n & 0xff) as u8]
}

/// Frames `(ns, port, frame)` to write, in capture order once sorted.
struct Capture {
    frames: Vec<(u64, u16, Vec<u8>)>,
}

impl Capture {
    fn add(&mut self, t: u64, port: u16, f: Vec<u8>) {
        self.frames.push((t, port, f));
    }

    /// Writes one pcap per ingress port (`uplink.pcap`, `pods.pcap`).
    fn write(mut self, dir: &Path) -> Vec<Input> {
        self.frames.sort_by_key(|f| f.0);
        let mut out = Vec::new();
        for (port, name) in [(0u16, "uplink"), (1, "pods")] {
            let path = dir.join(format!("{name}-in.pcap"));
            let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
            for (t, _, f) in self.frames.iter().filter(|f| f.1 == port) {
                w.write(*t, f).unwrap();
            }
            w.finish().unwrap();
            out.push(Input {
                port: Some(name.to_string()),
                path,
            });
        }
        out
    }
}

fn from_pod(n: u16, ip: &[u8]) -> Vec<u8> {
    pk::eth_ip(PODS_MAC, pod_mac(n), ip)
}

fn from_uplink(ip: &[u8]) -> Vec<u8> {
    pk::eth_ip(UPLINK_MAC, ROUTER_MAC, ip)
}

/// A TCP exchange between `(c, cport)` and `(s, sport)` whose frames enter
/// on `cin` (client side) and `sin` (server side), seen by the node at
/// `t0` onwards, each frame `gap` ns after the one before in its
/// connection; `reply_to` is where the server's packets are addressed (the
/// masquerade address and port when the connection is masqueraded).
#[allow(clippy::too_many_arguments)]
fn tcp_exchange(
    cap: &mut Capture,
    t0: u64,
    gap: u64,
    client: (u16, [u8; 4], u16),
    to: ([u8; 4], u16),
    server: ([u8; 4], u16),
    reply_to: ([u8; 4], u16),
) {
    let (n, c, cport) = client;
    let ip = |s: [u8; 4], d: [u8; 4], seg: Vec<u8>| pk::ip(Ip::V4(s), Ip::V4(d), 6, 64, &seg);
    let seg = |s: [u8; 4], d: [u8; 4], sp: u16, dp: u16, seq: u32, ack: u32, fl: u8, pl: &[u8]| {
        pk::tcp(Ip::V4(s), Ip::V4(d), sp, dp, seq, ack, fl, pl)
    };
    let (v, vport) = to;
    let (s, sport) = server;
    let (r, rport) = reply_to;
    let mut t = t0;
    let mut step = || {
        t += gap;
        t
    };
    let req = |seq: u32, ack: u32, fl: u8, pl: &[u8]| {
        from_pod(n, &ip(c, v, seg(c, v, cport, vport, seq, ack, fl, pl)))
    };
    let rsp = |seq: u32, ack: u32, fl: u8, pl: &[u8]| {
        from_uplink(&ip(s, r, seg(s, r, sport, rport, seq, ack, fl, pl)))
    };
    cap.add(step(), 1, req(1000, 0, flags::SYN, b""));
    cap.add(step(), 0, rsp(5000, 1001, flags::SYN | flags::ACK, b""));
    cap.add(step(), 1, req(1001, 5001, flags::ACK, b""));
    cap.add(
        step(),
        1,
        req(
            1001,
            5001,
            flags::ACK | flags::PSH,
            b"GET / HTTP/1.0\r\n\r\n",
        ),
    );
    cap.add(
        step(),
        0,
        rsp(
            5001,
            1019,
            flags::ACK | flags::PSH,
            b"HTTP/1.0 200 OK\r\n\r\nhello",
        ),
    );
    cap.add(step(), 1, req(1019, 5025, flags::ACK | flags::FIN, b""));
    cap.add(step(), 0, rsp(5025, 1020, flags::ACK | flags::FIN, b""));
    cap.add(step(), 1, req(1020, 5026, flags::ACK, b""));
}

/// The capture: `conns` pods each opening a connection to the external
/// service (DNAT and masquerade), to an outside host (masquerade only),
/// and a DNS query to the in-cluster VIP (DNAT only), all interleaved.
fn build(dir: &Path, tables: &Tables, conns: u16) -> Vec<Input> {
    let mut cap = Capture { frames: Vec::new() };
    let t0 = 1_700_000_000_000_000_000u64;
    let vip = [10, 96, 0, 10];
    for i in 0..conns {
        let c = pod(i);
        let cport = 20_000 + i;
        // The backend Maglev picks, as the pipeline will.
        let (_, svc) = tables
            .nat
            .service_index(6, Family::V4, wire::from_ip(vip.into()).1, 80, false)
            .unwrap();
        let (b, bport) = svc
            .pick(
                wire::from_ip(c.into()).1,
                cport,
                wire::from_ip(vip.into()).1,
                80,
            )
            .unwrap();
        let b = (b as u32).to_be_bytes();
        // Start times close together, so connections overlap in batches.
        let start = t0 + u64::from(i) * 3_000;
        tcp_exchange(
            &mut cap,
            start,
            7_000,
            (i, c, cport),
            (vip, 80),
            (b, bport),
            (NODE, cport),
        );
        let remote = [198, 51, 100, (i % 7) as u8 + 1];
        tcp_exchange(
            &mut cap,
            start + 1_000,
            7_000,
            (i, c, cport + 10_000),
            (remote, 443),
            (remote, 443),
            (NODE, cport + 10_000),
        );
        // DNS to the in-cluster VIP (DNAT only), answered by the backend pod.
        let q = pk::udp(
            Ip::V4(c),
            Ip::V4([10, 96, 0, 11]),
            40_000 + i,
            53,
            b"query",
            false,
        );
        cap.add(
            start + 2_000,
            1,
            from_pod(i, &pk::ip(Ip::V4(c), Ip::V4([10, 96, 0, 11]), 17, 64, &q)),
        );
        let a = pk::udp(
            Ip::V4([10, 1, 0, 5]),
            Ip::V4(c),
            5353,
            40_000 + i,
            b"answer",
            false,
        );
        cap.add(
            start + 9_000,
            1,
            pk::eth_ip(
                PODS_MAC,
                [2, 0, 0, 1, 0, 5],
                &pk::ip(Ip::V4([10, 1, 0, 5]), Ip::V4(c), 17, 64, &a),
            ),
        );
    }
    cap.write(dir)
}

/// Every file a replay wrote, by name.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

fn run(cfg: &Config, tables: &Arc<Tables>, inputs: &[Input], workers: usize, dir: PathBuf) {
    std::fs::create_dir_all(&dir).unwrap();
    replay::run(
        &cfg.state(),
        tables.clone(),
        &ReplayOptions {
            inputs: inputs.to_vec(),
            workers,
            out_dir: Some(dir.clone()),
            verdicts: Some(dir.join("verdicts.jsonl")),
            ..ReplayOptions::default()
        },
    )
    .unwrap();
}

#[test]
fn nat_replay_is_identical_for_any_worker_count() {
    let tmp = common::TempDir::new("replay-workers");
    // Every pod's neighbour entry (replies go back to it).
    let mut y = CONFIG.to_string();
    for i in 0..300u16 {
        let (a, m) = (pod(i), pod_mac(i));
        y += &format!(
            "  - {{ip: \"{}.{}.{}.{}\", mac: \"{}\", port: pods}}\n",
            a[0],
            a[1],
            a[2],
            a[3],
            wire::mac_to_string(&m)
        );
    }
    let cfg = Config::from_yaml(&y, "test.yaml", Path::new(".")).unwrap();
    let tables = Arc::new(engine::state::build::replay_tables(&cfg.state()).unwrap());
    let inputs = build(tmp.path(), &tables, 300);
    run(&cfg, &tables, &inputs, 1, tmp.path().join("w1"));
    let want = outputs(&tmp.path().join("w1"));
    // The single worker itself did what the capture intends: every frame
    // of every connection forwarded, replies translated back.
    let verdicts = String::from_utf8(want["verdicts.jsonl"].clone()).unwrap();
    let total = verdicts.lines().count();
    let forwarded = verdicts
        .lines()
        .filter(|l| l.contains("\"forward\""))
        .count();
    assert_eq!(total, 300 * 18, "frames");
    let mut other = BTreeMap::<String, usize>::new();
    for (i, l) in verdicts.lines().enumerate() {
        if !l.contains("\"forward\"") {
            *other
                .entry(format!(
                    "{}/{}",
                    i % 18,
                    l.split("\"action\":").nth(1).unwrap_or("")
                ))
                .or_default() += 1;
        }
    }
    assert_eq!(
        forwarded, total,
        "every frame forwarded by one worker: {other:?}"
    );
    for round in 0..20 {
        for workers in [2, 4] {
            let dir = tmp.path().join(format!("w{workers}-{round}"));
            run(&cfg, &tables, &inputs, workers, dir.clone());
            let got = outputs(&dir);
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>()
            );
            for (name, bytes) in &want {
                assert!(
                    got[name] == *bytes,
                    "{workers} workers, run {round}: {name} differs from one worker's"
                );
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

/// The same on the kernel-captured sessions (`pcap-fixtures/kernel`: two
/// services and masquerade, with and without policy).
#[test]
fn kernel_captures_are_identical_for_any_worker_count() {
    let tmp = common::TempDir::new("replay-workers-kernel");
    let k = common::fixtures().join("kernel");
    let inputs = vec![
        Input {
            port: Some("uplink".into()),
            path: k.join("uplink-in.pcap"),
        },
        Input {
            port: Some("pods".into()),
            path: k.join("pods-in.pcap"),
        },
    ];
    for name in ["sluice.yaml", "sluice-policy.yaml"] {
        let cfg = Config::load(&k.join(name)).unwrap();
        let tables = Arc::new(engine::state::build::replay_tables(&cfg.state()).unwrap());
        let one = tmp.path().join(format!("{name}-w1"));
        run(&cfg, &tables, &inputs, 1, one.clone());
        let want = outputs(&one);
        for round in 0..20 {
            for workers in [2, 4] {
                let dir = tmp.path().join(format!("{name}-w{workers}-{round}"));
                run(&cfg, &tables, &inputs, workers, dir.clone());
                assert!(
                    outputs(&dir) == want,
                    "{name}: {workers} workers, run {round}: outputs differ from one worker's"
                );
                std::fs::remove_dir_all(&dir).unwrap();
            }
        }
    }
}
