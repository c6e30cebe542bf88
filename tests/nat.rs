//! Conntrack and NAT through the whole pipeline, in memory: services
//! (DNAT), masquerade (SNAT), replies translated back, related ICMP errors,
//! TCP pickup, port collisions and exhaustion, a full table.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bench::packet::{self as pk, flags, Ip};
use engine::pipeline::{Action, Batch, DropReason, Pipeline};
use engine::sources::config::Config;
use engine::tables::conntrack::Conntrack;
use engine::wire::{self, checksum, Family};

const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PODS_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

fn config(extra: &str) -> Config {
    let y = format!(
        r#"
ports:
  - {{name: uplink, mac: "02:00:00:00:00:01", addresses: ["192.0.2.1/24", "2001:db8::1/64"]}}
  - {{name: pods, mac: "02:00:00:00:00:02", addresses: ["10.1.0.1/16", "fd00:1::1/64"]}}
routes:
  - {{prefix: "10.1.0.0/16", port: pods}}
  - {{prefix: "fd00:1::/64", port: pods}}
  - {{prefix: "192.0.2.0/24", port: uplink}}
  - {{prefix: "2001:db8::/64", port: uplink}}
  - {{prefix: "0.0.0.0/0", port: uplink, via: "192.0.2.254"}}
  - {{prefix: "::/0", port: uplink, via: "2001:db8::fe"}}
neighbors:
  - {{ip: "192.0.2.254", mac: "02:00:00:00:00:fe", port: uplink}}
  - {{ip: "2001:db8::fe", mac: "02:00:00:00:00:fe", port: uplink}}
  - {{ip: "10.1.0.5", mac: "02:00:00:01:00:05", port: pods}}
  - {{ip: "10.1.0.6", mac: "02:00:00:01:00:06", port: pods}}
  - {{ip: "fd00:1::5", mac: "02:00:00:01:00:05", port: pods}}
{extra}
"#
    );
    Config::from_yaml(&y, "test.yaml", std::path::Path::new(".")).unwrap()
}

struct Node {
    p: Pipeline,
    now: u64,
}

impl Node {
    fn new(extra: &str) -> Node {
        Node::with_state(extra, |_| {})
    }

    /// A node whose state `edit` changes first (what no YAML says: a
    /// Felix model's floating IPs).
    fn with_state(extra: &str, edit: impl FnOnce(&mut engine::state::NodeState)) -> Node {
        let cfg = config(extra);
        let mut st = cfg.state();
        edit(&mut st);
        let t = Arc::new(engine::state::build::replay_tables(&st).unwrap());
        let ct = Arc::new(Conntrack::new(cfg.conntrack.max_entries.min(1 << 16), 9));
        Node {
            p: Pipeline::new(t, ct),
            now: 1_000_000_000,
        }
    }
    /// Sends one frame in on `port`; returns the action and the frame as it leaves.
    fn send(&mut self, port: u16, frame: Vec<u8>) -> (Action, Vec<u8>) {
        let mut f = frame;
        self.now += 1_000_000;
        let a = {
            let mut b = Batch::new();
            b.push(f.as_mut_slice(), port).unwrap();
            self.p.process(self.now, &mut b);
            b.slots()[0].action
        };
        (a, f)
    }
}

impl Node {
    /// Sends frames as one batch; returns actions and frames as they leave.
    fn send_batch(&mut self, frames: Vec<(u16, Vec<u8>)>) -> Vec<(Action, Vec<u8>)> {
        let mut fs: Vec<(u16, Vec<u8>)> = frames;
        self.now += 1_000_000;
        let actions: Vec<Action> = {
            let mut b = Batch::new();
            for (port, f) in fs.iter_mut() {
                b.push(f.as_mut_slice(), *port).unwrap();
            }
            self.p.process(self.now, &mut b);
            b.slots().iter().map(|s| s.action).collect()
        };
        actions
            .into_iter()
            .zip(fs.into_iter().map(|f| f.1))
            .collect()
    }
}

fn from_uplink(ip: Vec<u8>) -> Vec<u8> {
    pk::eth_ip(UPLINK_MAC, ROUTER_MAC, &ip)
}
fn from_pod(n: u8, ip: Vec<u8>) -> Vec<u8> {
    pk::eth_ip(PODS_MAC, [2, 0, 0, 1, 0, n], &ip)
}

/// Every checksum in the frame verifies (IPv4 header, TCP/UDP/ICMP, and the
/// quoted packet of an ICMP error).
fn assert_checksums(f: &[u8]) {
    let p = wire::parse(f).expect("parses");
    let (l3, l4, end) = (p.l3 as usize, p.l4 as usize, p.end as usize);
    let v6 = p.family == Family::V6;
    if !v6 {
        let ihl = usize::from(f[l3] & 0xf) * 4;
        assert_eq!(
            checksum::checksum(&f[l3..l3 + ihl]),
            0,
            "IPv4 header checksum"
        );
    }
    let (src, dst) = if v6 {
        (&f[l3 + 8..l3 + 24], &f[l3 + 24..l3 + 40])
    } else {
        (&f[l3 + 12..l3 + 16], &f[l3 + 16..l3 + 20])
    };
    let seg = &f[l4..end];
    let pseudo = || checksum::pseudo_header_sum(src, dst, p.proto, seg.len() as u32);
    match p.proto {
        6 | 136 => assert_eq!(
            checksum::fold(checksum::sum_be_words(seg, 0) + pseudo()),
            0xffff,
            "L4 checksum"
        ),
        17 if seg[6..8] != [0, 0] => assert_eq!(
            checksum::fold(checksum::sum_be_words(seg, 0) + pseudo()),
            0xffff,
            "UDP checksum"
        ),
        1 => assert_eq!(checksum::checksum(seg), 0, "ICMP checksum"),
        58 => assert_eq!(
            checksum::fold(checksum::sum_be_words(seg, 0) + pseudo()),
            0xffff,
            "ICMPv6 checksum"
        ),
        _ => {}
    }
}

fn addr(f: &[u8]) -> (u128, u16, u128, u16) {
    let p = wire::parse(f).unwrap();
    (p.src, p.sport, p.dst, p.dport)
}

fn v4(s: &str) -> u128 {
    u128::from(u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()))
}

const SVC: &str = r#"
services:
  - {name: web, vip: "10.96.0.10", port: 80, protocol: TCP, backends: ["10.1.0.5:8080"]}
masquerade:
  - {from: "10.1.0.0/16", port: uplink}
"#;

#[test]
fn service_dnat_and_reply_reverse() {
    let mut n = Node::new(SVC);
    let c = Ip::p("198.51.100.10");
    let vip = Ip::p("10.96.0.10");
    let b = Ip::p("10.1.0.5");
    let (a, f) = n.send(
        0,
        from_uplink(pk::ip(
            c,
            vip,
            6,
            64,
            &pk::tcp(c, vip, 40000, 80, 1, 0, flags::SYN, &[]),
        )),
    );
    assert_eq!(a, Action::Forward(1));
    assert_eq!(addr(&f), (v4("198.51.100.10"), 40000, v4("10.1.0.5"), 8080));
    assert_eq!(&f[0..6], &[2, 0, 0, 1, 0, 5]);
    assert_checksums(&f);
    // The backend's reply comes back from the VIP.
    let (a, f) = n.send(
        1,
        from_pod(
            5,
            pk::ip(
                b,
                c,
                6,
                64,
                &pk::tcp(b, c, 8080, 40000, 9, 2, flags::SYN | flags::ACK, &[]),
            ),
        ),
    );
    assert_eq!(a, Action::Forward(0));
    assert_eq!(addr(&f), (v4("10.96.0.10"), 80, v4("198.51.100.10"), 40000));
    assert_checksums(&f);
    // More packets of the connection keep the translation.
    let (a, f) = n.send(
        0,
        from_uplink(pk::ip(
            c,
            vip,
            6,
            64,
            &pk::tcp(c, vip, 40000, 80, 2, 10, flags::ACK, b"hello"),
        )),
    );
    assert_eq!(a, Action::Forward(1));
    assert_eq!(addr(&f).2, v4("10.1.0.5"));
    assert_checksums(&f);
    assert_eq!(n.p.conntrack().len(), 1);
}

/// A 1:1 NAT (a Felix endpoint's floating IP), as Felix's cali-fip-dnat
/// chain: new connections of any protocol to the external address go to
/// the internal one with their ports (or ICMP identifier) kept, replies
/// come back from the external address; other addresses are untouched.
#[test]
fn floating_ip_dnat_for_every_protocol_and_replies_reverse() {
    let mut n = Node::with_state("", |st| {
        st.floating.push(engine::state::FloatingIp {
            family: Family::V4,
            ext: v4("203.0.113.77"),
            int: v4("10.1.0.5"),
        });
    });
    let c = Ip::p("198.51.100.10");
    let ext = Ip::p("203.0.113.77");
    let int = Ip::p("10.1.0.5");
    // TCP, any port.
    let (a, f) = n.send(
        0,
        from_uplink(pk::ip(
            c,
            ext,
            6,
            64,
            &pk::tcp(c, ext, 40000, 5432, 1, 0, flags::SYN, &[]),
        )),
    );
    assert_eq!(a, Action::Forward(1));
    assert_eq!(addr(&f), (v4("198.51.100.10"), 40000, v4("10.1.0.5"), 5432));
    assert_eq!(&f[0..6], &[2, 0, 0, 1, 0, 5]);
    assert_checksums(&f);
    let (a, f) = n.send(
        1,
        from_pod(
            5,
            pk::ip(
                int,
                c,
                6,
                64,
                &pk::tcp(int, c, 5432, 40000, 9, 2, flags::SYN | flags::ACK, &[]),
            ),
        ),
    );
    assert_eq!(a, Action::Forward(0));
    assert_eq!(
        addr(&f),
        (v4("203.0.113.77"), 5432, v4("198.51.100.10"), 40000)
    );
    assert_checksums(&f);
    // UDP.
    let (a, f) = n.send(
        0,
        from_uplink(pk::ip(
            c,
            ext,
            17,
            64,
            &pk::udp(c, ext, 5353, 53, b"q", false),
        )),
    );
    assert_eq!(a, Action::Forward(1));
    assert_eq!(addr(&f), (v4("198.51.100.10"), 5353, v4("10.1.0.5"), 53));
    assert_checksums(&f);
    // ICMP echo: the identifier kept, the reply from the external address.
    let (a, f) = n.send(
        0,
        from_uplink(pk::ip(
            c,
            ext,
            1,
            64,
            &pk::icmp4(8, 0, [0x12, 0x34, 0, 1], b"ping"),
        )),
    );
    assert_eq!(a, Action::Forward(1));
    assert_eq!(addr(&f).2, v4("10.1.0.5"));
    assert_checksums(&f);
    let (a, f) = n.send(
        1,
        from_pod(
            5,
            pk::ip(int, c, 1, 64, &pk::icmp4(0, 0, [0x12, 0x34, 0, 1], b"ping")),
        ),
    );
    assert_eq!(a, Action::Forward(0));
    let p = wire::parse(&f).unwrap();
    assert_eq!(
        (p.src, p.dst, p.sport),
        (v4("203.0.113.77"), v4("198.51.100.10"), 0x1234)
    );
    assert_checksums(&f);
    // The internal address reached directly is not translated.
    let (a, f) = n.send(
        0,
        from_uplink(pk::ip(
            c,
            int,
            6,
            64,
            &pk::tcp(c, int, 40001, 22, 1, 0, flags::SYN, &[]),
        )),
    );
    assert_eq!(a, Action::Forward(1));
    assert_eq!(addr(&f), (v4("198.51.100.10"), 40001, v4("10.1.0.5"), 22));
}

/// A workload reaching itself through its own floating IP (the hairpin):
/// as Felix's `cali-fip-dnat` then `cali-fip-snat`, the destination goes
/// to the internal address and the source, now equal to it, to the
/// external address — of two external addresses for the workload, the one
/// first as text — so the reply comes back through sluice and is
/// translated back.
#[test]
fn floating_ip_hairpin_snats_to_the_external_address() {
    let mut n = Node::with_state("", |st| {
        for ext in ["203.0.113.9", "203.0.113.10"] {
            st.floating.push(engine::state::FloatingIp {
                family: Family::V4,
                ext: v4(ext),
                int: v4("10.1.0.5"),
            });
        }
    });
    let int = Ip::p("10.1.0.5");
    let ext9 = Ip::p("203.0.113.9");
    let (a, f) = n.send(
        1,
        from_pod(
            5,
            pk::ip(
                int,
                ext9,
                6,
                64,
                &pk::tcp(int, ext9, 40000, 5432, 1, 0, flags::SYN, &[]),
            ),
        ),
    );
    assert_eq!(a, Action::Forward(1), "back to the pod");
    // "203.0.113.10" < "203.0.113.9" as text.
    assert_eq!(addr(&f), (v4("203.0.113.10"), 40000, v4("10.1.0.5"), 5432));
    assert_eq!(&f[0..6], &[2, 0, 0, 1, 0, 5]);
    assert_checksums(&f);
    // The pod answers the external address; it leaves as from the
    // floating IP the pod dialled, to the pod.
    let ext10 = Ip::p("203.0.113.10");
    let (a, f) = n.send(
        1,
        from_pod(
            5,
            pk::ip(
                int,
                ext10,
                6,
                64,
                &pk::tcp(int, ext10, 5432, 40000, 9, 2, flags::SYN | flags::ACK, &[]),
            ),
        ),
    );
    assert_eq!(a, Action::Forward(1));
    assert_eq!(addr(&f), (v4("203.0.113.9"), 5432, v4("10.1.0.5"), 40000));
    assert_checksums(&f);
    assert_eq!(n.p.conntrack().len(), 1);
    // Another source to the floating IP is not source-translated.
    let c = Ip::p("10.1.0.6");
    let (a, f) = n.send(
        1,
        from_pod(
            6,
            pk::ip(
                c,
                ext9,
                6,
                64,
                &pk::tcp(c, ext9, 40001, 5432, 1, 0, flags::SYN, &[]),
            ),
        ),
    );
    assert_eq!(a, Action::Forward(1));
    assert_eq!(addr(&f), (v4("10.1.0.6"), 40001, v4("10.1.0.5"), 5432));
}

/// A backend reached by a directly connected host route (no gateway, so
/// its MAC is looked up per packet): the neighbour looked up is the
/// backend, not the VIP the packet arrived for.
#[test]
fn service_backend_on_a_connected_host_route() {
    let y = r#"
ports:
  - {name: uplink, mac: "02:00:00:00:00:01", addresses: ["192.0.2.1/24"]}
  - {name: pods, mac: "02:00:00:00:00:02", addresses: ["10.1.0.1/16"]}
routes:
  - {prefix: "10.1.0.0/16", port: pods}
  - {prefix: "10.1.0.7/32", port: pods}
  - {prefix: "0.0.0.0/0", port: uplink, via: "192.0.2.254"}
neighbors:
  - {ip: "192.0.2.254", mac: "02:00:00:00:00:fe", port: uplink}
  - {ip: "10.1.0.7", mac: "02:00:00:01:00:07", port: pods}
services:
  - {name: web, vip: "10.96.0.10", port: 80, protocol: TCP, backends: ["10.1.0.7:8080"]}
"#;
    let cfg = Config::from_yaml(y, "test.yaml", std::path::Path::new(".")).unwrap();
    let t = Arc::new(engine::state::build::replay_tables(&cfg.state()).unwrap());
    let mut n = Node {
        p: Pipeline::new(t, Arc::new(Conntrack::new(1024, 9))),
        now: 1_000_000_000,
    };
    // The host route names the backend itself, so no neighbour route is
    // made for it: its next hop is "connected", its MAC looked up per
    // packet, for the first packet and the ones after.
    let c = Ip::p("198.51.100.10");
    let vip = Ip::p("10.96.0.10");
    for (sport, fl) in [
        (40000, flags::SYN),
        (40000, flags::ACK),
        (40001, flags::SYN),
    ] {
        let (a, f) = n.send(
            0,
            from_uplink(pk::ip(
                c,
                vip,
                6,
                64,
                &pk::tcp(c, vip, sport, 80, 1, 0, fl, &[]),
            )),
        );
        assert_eq!(a, Action::Forward(1));
        assert_eq!(addr(&f), (v4("198.51.100.10"), sport, v4("10.1.0.7"), 8080));
        assert_eq!(&f[0..6], &[2, 0, 0, 1, 0, 7]);
    }
}

#[test]
fn masquerade_keeps_the_port_and_translates_replies() {
    let mut n = Node::new(SVC);
    let pod = Ip::p("10.1.0.6");
    let x = Ip::p("203.0.113.9");
    let node = Ip::p("192.0.2.1");
    let (a, f) = n.send(
        1,
        from_pod(
            6,
            pk::ip(pod, x, 17, 64, &pk::udp(pod, x, 5353, 53, b"q", false)),
        ),
    );
    assert_eq!(a, Action::Forward(0));
    assert_eq!(addr(&f), (v4("192.0.2.1"), 5353, v4("203.0.113.9"), 53));
    assert_checksums(&f);
    // The reply is addressed to the node itself, yet reaches the pod.
    let (a, f) = n.send(
        0,
        from_uplink(pk::ip(
            x,
            node,
            17,
            60,
            &pk::udp(x, node, 53, 5353, b"answer", false),
        )),
    );
    assert_eq!(a, Action::Forward(1));
    assert_eq!(addr(&f), (v4("203.0.113.9"), 53, v4("10.1.0.6"), 5353));
    assert_checksums(&f);
    // Unsolicited traffic to the node's address still goes to the kernel.
    let (a, _) = n.send(
        0,
        from_uplink(pk::ip(
            x,
            node,
            17,
            60,
            &pk::udp(x, node, 53, 5354, b"x", false),
        )),
    );
    assert_eq!(a, Action::Kernel);
    // An IPv4 UDP datagram without checksum keeps none.
    let (_, f) = n.send(
        1,
        from_pod(
            6,
            pk::ip(pod, x, 17, 64, &pk::udp(pod, x, 6000, 53, b"q", true)),
        ),
    );
    let p = wire::parse(&f).unwrap();
    assert_eq!(&f[p.l4 as usize + 6..p.l4 as usize + 8], &[0, 0]);
}

#[test]
fn masquerade_port_collision_picks_another_port() {
    let mut n = Node::new(SVC);
    let x = Ip::p("203.0.113.9");
    let p5 = Ip::p("10.1.0.5");
    let p6 = Ip::p("10.1.0.6");
    let (_, f1) = n.send(
        1,
        from_pod(
            5,
            pk::ip(
                p5,
                x,
                6,
                64,
                &pk::tcp(p5, x, 41000, 443, 1, 0, flags::SYN, &[]),
            ),
        ),
    );
    let (_, f2) = n.send(
        1,
        from_pod(
            6,
            pk::ip(
                p6,
                x,
                6,
                64,
                &pk::tcp(p6, x, 41000, 443, 1, 0, flags::SYN, &[]),
            ),
        ),
    );
    let (s1, s2) = (addr(&f1), addr(&f2));
    assert_eq!(s1.1, 41000, "first keeps its port");
    assert_ne!(s2.1, 41000, "second must not collide");
    assert!(s2.1 >= 1024);
    assert_checksums(&f2);
    // Each reply goes back to its own pod.
    let node = Ip::p("192.0.2.1");
    let (_, r2) = n.send(
        0,
        from_uplink(pk::ip(
            x,
            node,
            6,
            60,
            &pk::tcp(x, node, 443, s2.1, 7, 2, flags::SYN | flags::ACK, &[]),
        )),
    );
    assert_eq!(addr(&r2), (v4("203.0.113.9"), 443, v4("10.1.0.6"), 41000));
    let (_, r1) = n.send(
        0,
        from_uplink(pk::ip(
            x,
            node,
            6,
            60,
            &pk::tcp(x, node, 443, 41000, 7, 2, flags::SYN | flags::ACK, &[]),
        )),
    );
    assert_eq!(addr(&r1), (v4("203.0.113.9"), 443, v4("10.1.0.5"), 41000));
}

#[test]
fn masquerade_exhaustion_is_counted() {
    let mut n =
        Node::new("masquerade:\n  - {from: \"10.1.0.0/16\", port: uplink, ports: \"2000-2001\"}\n");
    let x = Ip::p("203.0.113.9");
    let mut actions = Vec::new();
    for sport in 0..3u16 {
        let p5 = Ip::p("10.1.0.5");
        let (a, _) = n.send(
            1,
            from_pod(
                5,
                pk::ip(
                    p5,
                    x,
                    17,
                    64,
                    &pk::udp(p5, x, 3000 + sport, 53, b"q", false),
                ),
            ),
        );
        actions.push(a);
    }
    assert_eq!(&actions[..2], &[Action::Forward(0), Action::Forward(0)]);
    assert_eq!(actions[2], Action::Drop(DropReason::NatExhausted));
    assert_eq!(n.p.counters().drop_count(DropReason::NatExhausted), 1);
}

#[test]
fn related_icmp_errors_are_translated_inside_and_out() {
    let mut n = Node::new(SVC);
    let pod = Ip::p("10.1.0.6");
    let x = Ip::p("203.0.113.9");
    let (_, out) = n.send(
        1,
        from_pod(
            6,
            pk::ip(
                pod,
                x,
                17,
                64,
                &pk::udp(pod, x, 5353, 53, b"question", false),
            ),
        ),
    );
    // A router on the way answers "port unreachable" to the node's address,
    // quoting the packet as it left (after masquerade, TTL 63).
    let quoted = &out[14..];
    let r = Ip::p("198.51.100.1");
    let node = Ip::p("192.0.2.1");
    let err = pk::ip(r, node, 1, 250, &pk::icmp4(3, 3, [0; 4], quoted));
    let (a, f) = n.send(0, from_uplink(err));
    assert_eq!(a, Action::Forward(1), "related error goes to the pod");
    let p = wire::parse(&f).unwrap();
    assert_eq!((p.src, p.dst), (v4("198.51.100.1"), v4("10.1.0.6")));
    let inner = wire::parse::parse_quoted(&f, &p).unwrap();
    assert_eq!(
        (inner.src, inner.sport, inner.dst, inner.dport),
        (v4("10.1.0.6"), 5353, v4("203.0.113.9"), 53)
    );
    assert_checksums(&f);
    // The quoted IPv4 header's checksum is valid too.
    let q = p.inner as usize;
    assert_eq!(checksum::checksum(&f[q..q + 20]), 0);
    // The same for a service: an error from a router about the client's
    // packet, sent to the client, seems to come from the VIP.
    let mut n = Node::new(SVC);
    let c = Ip::p("198.51.100.10");
    let vip = Ip::p("10.96.0.10");
    let b = Ip::p("10.1.0.5");
    n.send(
        0,
        from_uplink(pk::ip(
            c,
            vip,
            6,
            64,
            &pk::tcp(c, vip, 40000, 80, 1, 0, flags::SYN, &[]),
        )),
    );
    // The backend's SYN/ACK to the client, as it left the node, provokes
    // an error from an outside router; the node sees it coming back.
    let (_, synack) = n.send(
        1,
        from_pod(
            5,
            pk::ip(
                b,
                c,
                6,
                64,
                &pk::tcp(b, c, 8080, 40000, 9, 2, flags::SYN | flags::ACK, &[]),
            ),
        ),
    );
    let err = pk::ip(r, vip, 1, 250, &pk::icmp4(11, 0, [0; 4], &synack[14..]));
    let (a, f) = n.send(0, from_uplink(err));
    assert_eq!(a, Action::Forward(1));
    let p = wire::parse(&f).unwrap();
    assert_eq!(p.dst, v4("10.1.0.5"), "error delivered to the backend");
    let inner = wire::parse::parse_quoted(&f, &p).unwrap();
    assert_eq!((inner.src, inner.sport), (v4("10.1.0.5"), 8080));
    assert_checksums(&f);
}

#[test]
fn tcp_pickup_and_invalid() {
    let mut n = Node::new("");
    let c = Ip::p("198.51.100.10");
    let pod = Ip::p("10.1.0.5");
    // Mid-stream ACK: picked up (Linux's default).
    let (a, _) = n.send(
        0,
        from_uplink(pk::ip(
            c,
            pod,
            6,
            64,
            &pk::tcp(c, pod, 1000, 80, 5, 5, flags::ACK, b"x"),
        )),
    );
    assert_eq!(a, Action::Forward(1));
    // SYN/ACK, FIN and RST without a connection are invalid.
    for fl in [flags::SYN | flags::ACK, flags::FIN | flags::ACK, flags::RST] {
        let (a, _) = n.send(
            0,
            from_uplink(pk::ip(
                c,
                pod,
                6,
                64,
                &pk::tcp(c, pod, 2000, 80, 5, 5, fl, &[]),
            )),
        );
        assert_eq!(
            a,
            Action::Drop(DropReason::ConntrackInvalid),
            "flags {fl:#x}"
        );
    }
    // An echo reply without a request is invalid; a request is fine.
    let (a, _) = n.send(
        0,
        from_uplink(pk::ip(
            c,
            pod,
            1,
            64,
            &pk::icmp4(0, 0, [0, 1, 0, 1], &[0; 8]),
        )),
    );
    assert_eq!(a, Action::Drop(DropReason::ConntrackInvalid));
    let (a, _) = n.send(
        0,
        from_uplink(pk::ip(
            c,
            pod,
            1,
            64,
            &pk::icmp4(8, 0, [0, 1, 0, 1], &[0; 8]),
        )),
    );
    assert_eq!(a, Action::Forward(1));
    let (a, _) = n.send(
        1,
        from_pod(
            5,
            pk::ip(pod, c, 1, 64, &pk::icmp4(0, 0, [0, 1, 0, 1], &[0; 8])),
        ),
    );
    assert_eq!(a, Action::Forward(0));
    // With loose pickup off, a mid-stream ACK is dropped.
    let mut strict = Node::new("conntrack: {tcp_loose: false}\n");
    let (a, _) = strict.send(
        0,
        from_uplink(pk::ip(
            c,
            pod,
            6,
            64,
            &pk::tcp(c, pod, 1000, 80, 5, 5, flags::ACK, b"x"),
        )),
    );
    assert_eq!(a, Action::Drop(DropReason::ConntrackInvalid));
    // ...but the node's own traffic still reaches the kernel.
    let node = Ip::p("192.0.2.1");
    let (a, _) = strict.send(
        0,
        from_uplink(pk::ip(
            c,
            node,
            6,
            64,
            &pk::tcp(c, node, 1000, 22, 5, 5, flags::ACK, b"x"),
        )),
    );
    assert_eq!(a, Action::Kernel);
}

/// A query from the outside client's port `sport` to the pod's DNS, and
/// the pod's answer.
fn dns(sport: u16, answer: bool) -> (u16, Vec<u8>) {
    let c = Ip::p("198.51.100.10");
    let pod = Ip::p("10.1.0.5");
    if answer {
        (
            1,
            from_pod(
                5,
                pk::ip(pod, c, 17, 64, &pk::udp(pod, c, 53, sport, b"a", false)),
            ),
        )
    } else {
        (
            0,
            from_uplink(pk::ip(
                c,
                pod,
                17,
                64,
                &pk::udp(c, pod, sport, 53, b"q", false),
            )),
        )
    }
}

/// A full table of connections that all saw replies refuses new flows
/// (counted) and keeps the old ones.
#[test]
fn full_table_refuses_new_flows_but_keeps_old_ones() {
    let mut n = Node::new("conntrack: {max_entries: 4}\n");
    for i in 0..4u16 {
        let (port, f) = dns(1000 + i, false);
        assert_eq!(n.send(port, f).0, Action::Forward(1));
        let (port, f) = dns(1000 + i, true);
        assert_eq!(n.send(port, f).0, Action::Forward(0));
    }
    for i in 4..6u16 {
        let (port, f) = dns(1000 + i, false);
        assert_eq!(n.send(port, f).0, Action::Drop(DropReason::ConntrackFull));
    }
    assert_eq!(n.p.counters().drop_count(DropReason::ConntrackFull), 2);
    assert_eq!(n.p.conntrack().refused_full(), 2);
    assert_eq!(n.p.conntrack().evicted_unassured(), 0);
    // An established flow still passes.
    let (port, f) = dns(1000, true);
    assert_eq!(n.send(port, f).0, Action::Forward(0));
}

/// A full table makes room for a new flow by dropping the least recently
/// seen flow that never saw a reply, as Linux's early drop does, never one
/// that did.
#[test]
fn full_table_drops_a_flow_that_never_saw_a_reply() {
    let mut n = Node::new("conntrack: {max_entries: 4}\n");
    // Flows 0 and 2 are answered; 1 and 3 are not; 1 is the older.
    for i in 0..4u16 {
        let (port, f) = dns(1000 + i, false);
        assert_eq!(n.send(port, f).0, Action::Forward(1));
        if i % 2 == 0 {
            let (port, f) = dns(1000 + i, true);
            assert_eq!(n.send(port, f).0, Action::Forward(0));
        }
    }
    let (port, f) = dns(1004, false);
    assert_eq!(n.send(port, f).0, Action::Forward(1), "a new flow gets in");
    assert_eq!(n.p.conntrack().evicted_unassured(), 1);
    assert_eq!(n.p.counters().drop_count(DropReason::ConntrackFull), 0);
    // Flow 1 (the older unanswered one) went; the answered flows and the
    // newer unanswered one stayed.
    let sports: Vec<u16> =
        n.p.conntrack()
            .snapshot_all()
            .iter()
            .map(|e| e.orig.sport)
            .collect();
    for (sport, there) in [
        (1000, true),
        (1001, false),
        (1002, true),
        (1003, true),
        (1004, true),
    ] {
        assert_eq!(sports.contains(&sport), there, "flow {sport}: {sports:?}");
    }
    assert_eq!(n.p.conntrack().len(), 4);
}

#[test]
fn ipv6_masquerade() {
    let mut n = Node::new("masquerade:\n  - {from: \"fd00:1::/64\", port: uplink}\n");
    let pod = Ip::p("fd00:1::5");
    let x = Ip::p("2001:db8:100::9");
    let (a, f) = n.send(
        1,
        from_pod(
            5,
            pk::ip(
                pod,
                x,
                6,
                64,
                &pk::tcp(pod, x, 45000, 443, 1, 0, flags::SYN, &[]),
            ),
        ),
    );
    assert_eq!(a, Action::Forward(0));
    let p = wire::parse(&f).unwrap();
    assert_eq!(
        p.src,
        u128::from("2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap())
    );
    assert_eq!(p.ttl, 63);
    assert_checksums(&f);
    let node = Ip::p("2001:db8::1");
    let (a, f) = n.send(
        0,
        from_uplink(pk::ip(
            x,
            node,
            6,
            60,
            &pk::tcp(x, node, 443, 45000, 7, 2, flags::SYN | flags::ACK, &[]),
        )),
    );
    assert_eq!(a, Action::Forward(1));
    assert_eq!(
        wire::parse(&f).unwrap().dst,
        u128::from("fd00:1::5".parse::<std::net::Ipv6Addr>().unwrap())
    );
    assert_checksums(&f);
}

/// A connection's first packet and its reply in the same batch: the reply
/// waits for the connection to be committed, then is translated.
#[test]
fn reply_in_the_same_batch_as_the_first_packet() {
    let mut n = Node::new(SVC);
    let pod = Ip::p("10.1.0.6");
    let x = Ip::p("203.0.113.9");
    let node = Ip::p("192.0.2.1");
    let c = Ip::p("198.51.100.10");
    let vip = Ip::p("10.96.0.10");
    let b = Ip::p("10.1.0.5");
    let out = n.send_batch(vec![
        (
            1,
            from_pod(
                6,
                pk::ip(
                    pod,
                    x,
                    6,
                    64,
                    &pk::tcp(pod, x, 41000, 443, 1, 0, flags::SYN, &[]),
                ),
            ),
        ),
        (
            0,
            from_uplink(pk::ip(
                c,
                vip,
                6,
                64,
                &pk::tcp(c, vip, 40000, 80, 1, 0, flags::SYN, &[]),
            )),
        ),
        (
            0,
            from_uplink(pk::ip(
                x,
                node,
                6,
                60,
                &pk::tcp(x, node, 443, 41000, 7, 2, flags::SYN | flags::ACK, &[]),
            )),
        ),
        (
            1,
            from_pod(
                5,
                pk::ip(
                    b,
                    c,
                    6,
                    64,
                    &pk::tcp(b, c, 8080, 40000, 9, 2, flags::SYN | flags::ACK, &[]),
                ),
            ),
        ),
        (
            0,
            from_uplink(pk::ip(
                c,
                vip,
                6,
                64,
                &pk::tcp(c, vip, 40000, 80, 2, 10, flags::ACK, &[]),
            )),
        ),
    ]);
    let acts: Vec<Action> = out.iter().map(|o| o.0).collect();
    assert_eq!(
        acts,
        vec![
            Action::Forward(0),
            Action::Forward(1),
            Action::Forward(1),
            Action::Forward(0),
            Action::Forward(1)
        ]
    );
    assert_eq!(
        addr(&out[2].1),
        (v4("203.0.113.9"), 443, v4("10.1.0.6"), 41000)
    );
    assert_eq!(
        addr(&out[3].1),
        (v4("10.96.0.10"), 80, v4("198.51.100.10"), 40000)
    );
    assert_eq!(addr(&out[4].1).2, v4("10.1.0.5"));
    for (_, f) in &out {
        assert_checksums(f);
    }
}
