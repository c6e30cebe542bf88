//! A stateful workload: many flows through conntrack, NAT and a 1k-rule
//! policy, with a large FIB — the shape of issue 4's performance targets.
//!
//! Model (deterministic in `seed`):
//! - 1,000 pods (10.64.0.0/16 on the `pods` port, one neighbour each),
//!   each a WorkloadEndpoint labelled `app: aK` (K = pod % 50);
//! - policy: 50 NetworkPolicies (one per app), each with 20 ingress rules
//!   allowing TCP/UDP to port 8000+j from the outside (1,000 ingress rules)
//!   and one egress rule allowing everything; end of tier denies the rest;
//! - outside hosts live behind `routes` extra /24 routes (100.64.0.0/10,
//!   via the uplink gateway), so replies walk a big FIB;
//! - flows: 80% outside → pod on an allowed port (5% of those on a denied
//!   port), 10% outside → a service VIP (DNAT to a pod), 10% pod → outside
//!   (masquerade); 70% TCP (mid-stream ACKs, picked up), 30% UDP;
//! - packets: each flow's first packet in order, then random flows, half
//!   of them in the reply direction.

use std::fmt::Write as _;

use crate::fixtures::{Expect, Fixture};
use crate::packet::{self as pk, flags, Ip, Rng};

/// Knobs.
#[derive(Clone, Debug)]
pub struct Stateful {
    pub flows: usize,
    pub packets: usize,
    pub routes: usize,
    pub seed: u64,
}

const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PODS_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const PODS: u32 = 1000;
const SERVICES: u32 = 10;

/// The `i`th outside /24 (in 100.64.0.0/10: up to 16,384 routes).
fn outside_net(i: usize) -> u32 {
    0x6440_0000 + ((i as u32 & 0x3fff) << 8)
}

fn pod_ip(i: u32) -> [u8; 4] {
    [10, 64, (i / 250) as u8, (i % 250 + 1) as u8]
}

fn pod_mac(i: u32) -> [u8; 6] {
    [2, 0, 0, 2, (i >> 8) as u8, i as u8]
}

/// The config (YAML) for `routes` extra routes; the policy lives in
/// `policy/` next to it.
pub fn config(routes: usize) -> String {
    let mut s = String::from(
        "ports:\n  - {name: uplink, mac: \"02:00:00:00:00:01\", addresses: [\"192.0.2.1/24\"]}\n  - {name: pods, mac: \"02:00:00:00:00:02\", addresses: [\"10.64.255.254/16\"]}\n\
         policy:\n  paths: [\"policy/\"]\n\
         conntrack: {max_entries: 2097152}\n\
         routes:\n  - {prefix: \"10.64.0.0/16\", port: pods}\n  - {prefix: \"192.0.2.0/24\", port: uplink}\n  - {prefix: \"0.0.0.0/0\", port: uplink, via: \"192.0.2.254\"}\n",
    );
    for i in 0..routes {
        let _ = writeln!(
            s,
            "  - {{prefix: \"{}/24\", port: uplink, via: \"192.0.2.254\"}}",
            std::net::Ipv4Addr::from(outside_net(i))
        );
    }
    s += "neighbors:\n  - {ip: \"192.0.2.254\", mac: \"02:00:00:00:00:fe\", port: uplink}\n";
    for i in 0..PODS {
        let m = pod_mac(i);
        let _ = writeln!(
            s,
            "  - {{ip: \"{}\", mac: \"{}\", port: pods}}",
            std::net::Ipv4Addr::from(pod_ip(i)),
            engine::wire::mac_to_string(&m)
        );
    }
    s += &services_and_masquerade(SERVICES, PODS, |p| pod_ip(p).into());
    s
}

/// The `services:` (`services` VIPs 10.96.0.1.., four backends each on
/// port 8000 among `pods` pods, picked by a fixed stride) and `masquerade:`
/// sections shared by the stateful bench and the suite's synthetic
/// workloads; `pod_ip` gives pod `i`'s IPv4 address.
pub fn services_and_masquerade(
    services: u32,
    pods: u32,
    pod_ip: impl Fn(u32) -> std::net::Ipv4Addr,
) -> String {
    let mut s = String::from("services:\n");
    for v in 0..services {
        let backends: Vec<String> = (0..4)
            .map(|b| format!("\"{}:8000\"", pod_ip((v * 97 + b * 13) % pods)))
            .collect();
        let _ = writeln!(
            s,
            "  - {{name: svc{v}, vip: \"10.96.0.{}\", port: 80, protocol: TCP, backends: [{}]}}",
            v + 1,
            backends.join(", ")
        );
    }
    s += "masquerade:\n  - {from: \"10.64.0.0/16\", port: uplink}\n";
    s
}

/// The 1k-rule policy (YAML).
pub fn policy() -> String {
    let mut s = String::new();
    for i in 0..PODS {
        let _ = writeln!(
            s,
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: pod-{i}, namespace: default, labels: {{app: a{}}}}}\nspec: {{ipNetworks: [\"{}/32\"]}}\n---",
            i % 50,
            std::net::Ipv4Addr::from(pod_ip(i))
        );
    }
    for a in 0..50 {
        let _ = writeln!(
            s,
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: app-a{a}, namespace: default}}\nspec:\n  selector: app == 'a{a}'\n  types: [Ingress, Egress]\n  ingress:"
        );
        for j in 0..20 {
            let proto = if j % 3 == 2 { "UDP" } else { "TCP" };
            let _ = writeln!(s, "  - action: Allow\n    protocol: {proto}\n    source: {{nets: [\"100.64.0.0/10\"]}}\n    destination: {{ports: [{}]}}", 8000 + j);
        }
        let _ = writeln!(s, "  egress:\n  - action: Allow\n---");
    }
    s
}

#[derive(Clone, Copy)]
enum Kind {
    Inbound,
    Service(u32),
    Masq,
}

#[derive(Clone, Copy)]
struct Flow {
    kind: Kind,
    outside: [u8; 4],
    pod: u32,
    tcp: bool,
    sport: u16,
    dport: u16,
}

/// Generates the packets.
pub fn generate(w: &Stateful) -> Fixture {
    let mut r = Rng(w.seed);
    let routes = w.routes.max(1) as u64;
    let flows: Vec<Flow> = (0..w.flows)
        .map(|_| {
            let i = r.below(routes) as usize;
            let outside = (outside_net(i) | (1 + r.below(250) as u32)).to_be_bytes();
            let pod = r.below(u64::from(PODS)) as u32;
            let k = r.below(100);
            let tcp = r.below(10) < 7;
            let (kind, dport) = if k < 80 {
                // Allowed: TCP on 8000+j (j % 3 != 2), UDP on 8000+j (j % 3 == 2).
                let j = if tcp {
                    [0, 1, 3, 4, 6, 7, 9, 10][r.below(8) as usize]
                } else {
                    [2, 5, 8, 11][r.below(4) as usize]
                };
                let port = if r.below(100) < 5 {
                    40000 + r.below(1000) as u16
                } else {
                    8000 + j
                };
                (Kind::Inbound, port)
            } else if k < 90 {
                (Kind::Service(r.below(u64::from(SERVICES)) as u32), 80)
            } else {
                (Kind::Masq, 443)
            };
            let tcp = tcp || matches!(kind, Kind::Service(_));
            Flow {
                kind,
                outside,
                pod,
                tcp,
                sport: 1024 + r.below(60000) as u16,
                dport,
            }
        })
        .collect();
    let mut fx = Fixture::default();
    let mut ts = 1_700_000_000_000_000_000u64;
    let mut emit = |f: &Flow, reply: bool, fx: &mut Fixture| {
        let outside = Ip::V4(f.outside);
        let (pod_side, port_for_pod) = match f.kind {
            Kind::Service(v) => (Ip::V4([10, 96, 0, v as u8 + 1]), 80),
            _ => (Ip::V4(pod_ip(f.pod)), f.dport),
        };
        let masq = matches!(f.kind, Kind::Masq);
        // Forward direction: outside -> pod (or VIP); for masquerade, pod -> outside.
        let (src, dst, sp, dp, from_pods) = match (masq, reply) {
            (false, false) => (outside, pod_side, f.sport, port_for_pod, false),
            (false, true) => {
                // The reply of a DNATed flow comes from the chosen backend,
                // which the generator does not know: send the reply of the
                // plain flows only; service flows repeat the request.
                if matches!(f.kind, Kind::Service(_)) {
                    (outside, pod_side, f.sport, port_for_pod, false)
                } else {
                    (pod_side, outside, port_for_pod, f.sport, true)
                }
            }
            (true, false) => (Ip::V4(pod_ip(f.pod)), outside, f.sport, f.dport, true),
            (true, true) => (Ip::V4(pod_ip(f.pod)), outside, f.sport, f.dport, true),
        };
        let seg = if f.tcp {
            pk::tcp(src, dst, sp, dp, 1, 1, flags::ACK, &[0x5a; 6])
        } else {
            pk::udp(src, dst, sp, dp, &[0x5a; 6], false)
        };
        let ip = pk::ip(src, dst, if f.tcp { 6 } else { 17 }, 64, &seg);
        let frame = if from_pods {
            pk::eth_ip(PODS_MAC, pod_mac(f.pod), &ip)
        } else {
            pk::eth_ip(UPLINK_MAC, GW_MAC, &ip)
        };
        ts += 100;
        fx.frames.push((ts, frame, Expect::Kernel));
    };
    for f in &flows {
        emit(f, false, &mut fx);
    }
    for _ in flows.len()..w.packets {
        let f = flows[r.below(flows.len() as u64) as usize];
        emit(&f, r.below(2) == 0, &mut fx);
    }
    fx
}

/// Writes `dir/sluice.yaml`, `dir/policy/policy.yaml` and `dir/stateful.pcap`.
pub fn write(w: &Stateful, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("policy"))?;
    std::fs::write(dir.join("sluice.yaml"), config(w.routes))?;
    std::fs::write(dir.join("policy/policy.yaml"), policy())?;
    let fx = generate(w);
    let f = std::fs::File::create(dir.join("stateful.pcap"))?;
    let mut out = engine::io::pcap::PcapWriter::new(std::io::BufWriter::new(f))?;
    for (ts, frame, _) in &fx.frames {
        out.write(*ts, frame)?;
    }
    out.finish()?;
    Ok(())
}
