//! Workloads as code: a synthetic generator with knobs, and real captures.
//!
//! A [`Workload`] materialises into a directory (`sluice.yaml`, `policy/`,
//! the capture) that both the in-process replay and the callgrind child read,
//! so every measurement of a workload sees the same bytes.
//!
//! The synthetic model (deterministic in `seed`), a node between an uplink
//! and 256 pods:
//! - pods 10.64.0.0/16 and fd00:40::/64 on `pods`, one neighbour each, each
//!   a WorkloadEndpoint labelled `app: aK` (K = pod % apps);
//! - policy (`policy_rules` > 0): `apps` = clamp(rules / 20, 1, 50)
//!   NetworkPolicies, each with rules / apps ingress rules allowing TCP (even
//!   j) or UDP (odd j) to port 8000 + j from 100.64.0.0/10, and one egress
//!   rule allowing everything; 5% of inbound flows aim at a denied port.
//!   `policy_rules` = 0: no policy (everything allowed);
//! - `routes` extra routes in 100.64.0.0/10 (/24s, /28s above 16,384, /32s
//!   above 262,144) via the uplink gateway: outside v4 hosts live behind
//!   them, so replies walk a big FIB;
//! - flows: IPv6 and ICMP flows go from a pod to the outside (egress allows
//!   them; the replies come back established); IPv4 TCP/UDP flows come from
//!   the outside to a pod, except `nat_pct` of them: half to a service VIP
//!   (DNAT to one of four backends, TCP), half from a pod to the outside
//!   (masquerade);
//! - packets: each flow's first packet in order, then random flows, half in
//!   the reply direction (service and masquerade flows repeat the request:
//!   the generator does not know the translated addresses);
//! - `new_flow_pct`: that share of packets are one-packet flows with fresh
//!   tuples (TCP SYN or UDP); such workloads replay with fresh state each
//!   loop, so every loop opens them again;
//! - frame sizes from `sizes` (frame length without FCS, weight).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::fixtures::IMIX;
use crate::packet::{self as pk, flags, Ip, Mac, Rng};

/// The knobs of a synthetic workload.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Synthetic {
    /// Long-lived flows.
    pub flows: usize,
    /// Packets per pass over the capture (at least `flows`).
    pub packets: usize,
    /// Frame sizes (bytes without FCS) and weights; [`IMIX`] is 7:4:1.
    pub sizes: Vec<(usize, u32)>,
    /// Share of flows over IPv6, percent.
    pub ipv6_pct: u64,
    /// TCP and ICMP shares of flows, percent; the rest is UDP.
    pub tcp_pct: u64,
    pub icmp_pct: u64,
    /// Share of packets that open a one-packet flow, percent.
    pub new_flow_pct: u64,
    /// Ingress rules in the policy (0: no policy).
    pub policy_rules: usize,
    /// Share of IPv4 TCP/UDP flows through NAT (half DNAT, half SNAT), percent.
    pub nat_pct: u64,
    /// Extra routes in the FIB.
    pub routes: usize,
    pub seed: u64,
}

impl Default for Synthetic {
    fn default() -> Self {
        Synthetic {
            flows: 10_000,
            packets: 100_000,
            sizes: vec![(64, 1)],
            ipv6_pct: 10,
            tcp_pct: 70,
            icmp_pct: 2,
            new_flow_pct: 0,
            policy_rules: 1000,
            nat_pct: 20,
            routes: 10_000,
            seed: 7,
        }
    }
}

/// Where a workload's packets come from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Synthetic(Synthetic),
    /// Real captures replayed with the bundled config
    /// (`pcap-fixtures/sluice.yaml`, allow-all, `routes` extra routes).
    Captures {
        paths: Vec<PathBuf>,
        routes: usize,
    },
}

/// A named workload.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Workload {
    pub name: String,
    pub source: Source,
}

impl Workload {
    /// A synthetic workload.
    pub fn synthetic(name: &str, s: Synthetic) -> Workload {
        Workload {
            name: name.to_string(),
            source: Source::Synthetic(s),
        }
    }

    /// Whether the replay should start from empty state on every loop.
    pub fn fresh_state(&self) -> bool {
        matches!(&self.source, Source::Synthetic(s) if s.new_flow_pct > 0)
    }

    /// Rules in the policy (0 for none).
    pub fn rules(&self) -> usize {
        match &self.source {
            Source::Synthetic(s) => s.policy_rules,
            Source::Captures { .. } => 0,
        }
    }

    /// Long-lived flows (0 when unknown).
    pub fn flows(&self) -> usize {
        match &self.source {
            Source::Synthetic(s) => s.flows,
            Source::Captures { .. } => 0,
        }
    }

    /// Writes the workload under `dir` (config, policy, captures) and
    /// returns what to replay.
    pub fn materialise(&self, dir: &Path) -> Result<Prepared> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        match &self.source {
            Source::Synthetic(s) => {
                let config = dir.join("sluice.yaml");
                std::fs::write(&config, config_yaml(s))?;
                if s.policy_rules > 0 {
                    std::fs::create_dir_all(dir.join("policy"))?;
                    std::fs::write(dir.join("policy/policy.yaml"), policy_yaml(s))?;
                }
                let pcap = dir.join("workload.pcap");
                let frames = generate(s);
                write_pcap(&pcap, &frames)?;
                Ok(Prepared {
                    config,
                    pcaps: vec![pcap],
                    fresh_state: self.fresh_state(),
                })
            }
            Source::Captures { paths, routes } => {
                let config = dir.join("sluice.yaml");
                std::fs::write(&config, crate::fixtures::config_yaml(*routes, None))?;
                for p in paths {
                    if !p.exists() {
                        anyhow::bail!("{}: capture not found", p.display());
                    }
                }
                Ok(Prepared {
                    config,
                    pcaps: paths.clone(),
                    fresh_state: false,
                })
            }
        }
    }
}

/// A workload written to disk (also saved as `prepared.json` in its
/// directory, for the callgrind child).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Prepared {
    pub config: PathBuf,
    pub pcaps: Vec<PathBuf>,
    pub fresh_state: bool,
}

/// Writes `(timestamp ns, frame)`s as a pcap file.
pub(crate) fn write_pcap(path: &Path, frames: &[(u64, Vec<u8>)]) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = engine::io::pcap::PcapWriter::new(std::io::BufWriter::new(f))?;
    for (ts, frame) in frames {
        out.write(*ts, frame)?;
    }
    out.finish()?;
    Ok(())
}

const UPLINK_MAC: Mac = [2, 0, 0, 0, 0, 1];
const PODS_MAC: Mac = [2, 0, 0, 0, 0, 2];
const GW_MAC: Mac = [2, 0, 0, 0, 0, 0xfe];
const PODS: u32 = 256;
const SERVICES: u32 = 10;

fn pod4(i: u32) -> [u8; 4] {
    [10, 64, (i / 250) as u8, (i % 250 + 1) as u8]
}

fn pod6(i: u32) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0xfd, 0, 0, 0x40]);
    a[14..].copy_from_slice(&((i + 1) as u16).to_be_bytes());
    a
}

fn pod_mac(i: u32) -> Mac {
    [2, 0, 0, 2, (i >> 8) as u8, i as u8]
}

/// The `i`th extra route in 100.64.0.0/10: (network, prefix length).
fn route(i: usize, routes: usize) -> (u32, u8) {
    let base = 0x6440_0000u32;
    if routes <= 1 << 14 {
        (base + ((i as u32 & 0x3fff) << 8), 24)
    } else if routes <= 1 << 18 {
        (base + ((i as u32 & 0x3_ffff) << 4), 28)
    } else {
        (base + (i as u32 & 0x3f_ffff), 32)
    }
}

fn apps(s: &Synthetic) -> u32 {
    (s.policy_rules / 20).clamp(1, 50) as u32
}

fn rules_per_app(s: &Synthetic) -> usize {
    (s.policy_rules / apps(s) as usize).max(1)
}

/// The config (YAML).
pub fn config_yaml(s: &Synthetic) -> String {
    let mut y = String::from(
        "ports:\n  - {name: uplink, mac: \"02:00:00:00:00:01\", addresses: [\"192.0.2.1/24\", \"2001:db8::1/64\"]}\n  - {name: pods, mac: \"02:00:00:00:00:02\", addresses: [\"10.64.255.254/16\", \"fd00:0:0:40::ffff/64\"]}\n\
         conntrack: {max_entries: 4194304}\n",
    );
    if s.policy_rules > 0 {
        y += "policy:\n  paths: [\"policy/\"]\n";
    }
    y.push_str(
        "routes:\n  - {prefix: \"10.64.0.0/16\", port: pods}\n  - {prefix: \"fd00:0:0:40::/64\", port: pods}\n  - {prefix: \"192.0.2.0/24\", port: uplink}\n  - {prefix: \"2001:db8::/64\", port: uplink}\n  - {prefix: \"0.0.0.0/0\", port: uplink, via: \"192.0.2.254\"}\n  - {prefix: \"::/0\", port: uplink, via: \"2001:db8::fe\"}\n",
    );
    for i in 0..s.routes {
        let (net, len) = route(i, s.routes);
        let _ = writeln!(
            y,
            "  - {{prefix: \"{}/{len}\", port: uplink, via: \"192.0.2.254\"}}",
            Ipv4Addr::from(net)
        );
    }
    y += "neighbors:\n  - {ip: \"192.0.2.254\", mac: \"02:00:00:00:00:fe\", port: uplink}\n  - {ip: \"2001:db8::fe\", mac: \"02:00:00:00:00:fe\", port: uplink}\n";
    for i in 0..PODS {
        let m = engine::wire::mac_to_string(&pod_mac(i));
        let _ = writeln!(
            y,
            "  - {{ip: \"{}\", mac: \"{m}\", port: pods}}\n  - {{ip: \"{}\", mac: \"{m}\", port: pods}}",
            Ipv4Addr::from(pod4(i)),
            Ipv6Addr::from(pod6(i))
        );
    }
    y += &crate::stateful::services_and_masquerade(SERVICES, PODS, |p| Ipv4Addr::from(pod4(p)));
    y
}

/// The policy (YAML): endpoints plus `policy_rules` ingress rules.
pub fn policy_yaml(s: &Synthetic) -> String {
    let apps = apps(s);
    let per = rules_per_app(s);
    let mut y = String::new();
    for i in 0..PODS {
        let _ = writeln!(
            y,
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: pod-{i}, namespace: default, labels: {{app: a{}}}}}\nspec: {{ipNetworks: [\"{}/32\", \"{}/128\"]}}\n---",
            i % apps,
            Ipv4Addr::from(pod4(i)),
            Ipv6Addr::from(pod6(i))
        );
    }
    for a in 0..apps {
        let _ = writeln!(
            y,
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: app-a{a}, namespace: default}}\nspec:\n  selector: app == 'a{a}'\n  types: [Ingress, Egress]\n  ingress:"
        );
        for j in 0..per {
            let proto = if j % 2 == 0 { "TCP" } else { "UDP" };
            let _ = writeln!(
                y,
                "  - action: Allow\n    protocol: {proto}\n    source: {{nets: [\"100.64.0.0/10\"]}}\n    destination: {{ports: [{}]}}",
                8000 + j
            );
        }
        let _ = writeln!(y, "  egress:\n  - action: Allow\n---");
    }
    y
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Outside -> pod.
    Inbound,
    /// Outside -> service VIP (DNAT).
    Service(u32),
    /// Pod -> outside, masqueraded.
    Masq,
    /// Pod -> outside (IPv6 or ICMP), no NAT.
    Outbound,
}

#[derive(Clone, Copy, Debug)]
struct Flow {
    kind: Kind,
    v6: bool,
    outside: Ip,
    pod: u32,
    /// 6, 17 or 1 (ICMP of the flow's family).
    proto: u8,
    sport: u16,
    dport: u16,
}

fn new_flow(s: &Synthetic, r: &mut Rng) -> Flow {
    let v6 = r.below(100) < s.ipv6_pct;
    let k = r.below(100);
    let proto = if k < s.icmp_pct {
        1
    } else if k < s.icmp_pct + s.tcp_pct {
        6
    } else {
        17
    };
    let outside = if v6 {
        let mut a = [0u8; 16];
        a[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00]);
        a[8..].copy_from_slice(&r.next_u64().to_be_bytes());
        Ip::V6(a)
    } else {
        let (net, len) = route(r.below(s.routes.max(1) as u64) as usize, s.routes);
        let host = if len >= 32 {
            0
        } else {
            1 + r.below((1u64 << (32 - len)) - 2) as u32
        };
        Ip::V4((net | host).to_be_bytes())
    };
    let pod = r.below(u64::from(PODS)) as u32;
    let sport = 1024 + r.below(60000) as u16;
    let (kind, proto, dport) = if v6 || proto == 1 {
        (Kind::Outbound, proto, [443u16, 80, 53][r.below(3) as usize])
    } else if r.below(100) < s.nat_pct {
        if r.below(2) == 0 {
            (Kind::Service(r.below(u64::from(SERVICES)) as u32), 6, 80)
        } else {
            (Kind::Masq, proto, 443)
        }
    } else {
        let per = rules_per_app(s) as u64;
        // Rule j allows TCP for even j, UDP for odd j (with a single rule
        // per app, every inbound flow is TCP).
        let proto = if per < 2 { 6 } else { proto };
        let j = if proto == 6 {
            2 * r.below(per.div_ceil(2))
        } else {
            2 * r.below(per / 2) + 1
        };
        let dport = if s.policy_rules > 0 && r.below(100) < 5 {
            40000 + r.below(1000) as u16
        } else {
            8000 + j as u16
        };
        (Kind::Inbound, proto, dport)
    };
    Flow {
        kind,
        v6,
        outside,
        pod,
        proto,
        sport,
        dport,
    }
}

fn pick_size(sizes: &[(usize, u32)], r: &mut Rng) -> usize {
    let total: u64 = sizes.iter().map(|s| u64::from(s.1)).sum();
    let mut pick = r.below(total.max(1));
    for &(sz, w) in sizes {
        if pick < u64::from(w) {
            return sz;
        }
        pick -= u64::from(w);
    }
    60
}

/// One frame of `f`; `reply` sends it in the reply direction where the
/// generator knows the reply's addresses.
fn frame(f: &Flow, reply: bool, syn: bool, size: usize) -> Vec<u8> {
    let pod = if f.v6 {
        Ip::V6(pod6(f.pod))
    } else {
        Ip::V4(pod4(f.pod))
    };
    let (pod_side, pod_port) = match f.kind {
        Kind::Service(v) => (Ip::V4([10, 96, 0, v as u8 + 1]), 80),
        _ => (pod, f.dport),
    };
    // (src, dst, sport, dport, from the pods port)
    let (src, dst, sp, dp, from_pods) = match f.kind {
        Kind::Inbound if reply => (pod_side, f.outside, pod_port, f.sport, true),
        Kind::Inbound | Kind::Service(_) => (f.outside, pod_side, f.sport, pod_port, false),
        Kind::Masq => (pod, f.outside, f.sport, f.dport, true),
        Kind::Outbound if reply => (f.outside, pod, f.dport, f.sport, false),
        Kind::Outbound => (pod, f.outside, f.sport, f.dport, true),
    };
    let l3 = if f.v6 { 40 } else { 20 };
    let l4 = if f.proto == 6 { 20 } else { 8 };
    let payload = vec![0x5a; size.saturating_sub(14 + l3 + l4).max(6)];
    let (seg, proto) = match f.proto {
        6 => {
            let fl = if syn { flags::SYN } else { flags::ACK };
            (pk::tcp(src, dst, sp, dp, 1, 1, fl, &payload), 6)
        }
        17 => (pk::udp(src, dst, sp, dp, &payload, false), 17),
        _ => {
            // Echo request out, echo reply back; the id is the source port.
            let id = f.sport.to_be_bytes();
            let rest = [id[0], id[1], 0, 1];
            if f.v6 {
                let ty = if reply { 129 } else { 128 };
                (pk::icmp6(src, dst, ty, 0, rest, &payload), 58)
            } else {
                let ty = if reply { 0 } else { 8 };
                (pk::icmp4(ty, 0, rest, &payload), 1)
            }
        }
    };
    let ip = pk::ip(src, dst, proto, 64, &seg);
    if from_pods {
        pk::eth_ip(PODS_MAC, pod_mac(f.pod), &ip)
    } else {
        pk::eth_ip(UPLINK_MAC, GW_MAC, &ip)
    }
}

/// Generates the frames (timestamp ns, bytes).
pub fn generate(s: &Synthetic) -> Vec<(u64, Vec<u8>)> {
    let mut r = Rng(s.seed);
    let flows: Vec<Flow> = (0..s.flows.max(1)).map(|_| new_flow(s, &mut r)).collect();
    let packets = s.packets.max(flows.len());
    let mut out = Vec::with_capacity(packets);
    let mut ts = 1_700_000_000_000_000_000u64;
    for f in &flows {
        ts += 100;
        let size = pick_size(&s.sizes, &mut r);
        out.push((ts, frame(f, false, false, size)));
    }
    for _ in flows.len()..packets {
        ts += 100;
        let size = pick_size(&s.sizes, &mut r);
        if r.below(100) < s.new_flow_pct {
            let f = new_flow(s, &mut r);
            out.push((ts, frame(&f, false, true, size)));
            continue;
        }
        let f = flows[r.below(flows.len() as u64) as usize];
        let reply = r.below(2) == 0;
        out.push((ts, frame(&f, reply, false, size)));
    }
    out
}

/// The IMIX size distribution as knob values.
pub fn imix() -> Vec<(usize, u32)> {
    IMIX.to_vec()
}
