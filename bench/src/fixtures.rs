//! The deterministic fixtures in `pcap-fixtures/`.
//!
//! Each fixture is a list of frames with the verdict the generator *intends*
//! under the bundled config (`sluice.yaml`): forward to a port, drop with a
//! reason, or kernel. The generator writes `<name>.pcap` and
//! `<name>.expected.jsonl` (one line per frame, the `--verdicts` shape), and
//! the end-to-end tests hold the engine to those intentions. Nothing here
//! runs the engine.

use std::path::Path;

use crate::packet::{self as pk, flags, Ip, Mac, Rng, V4Opts};

/// MAC of the `uplink` port.
pub const UPLINK_MAC: Mac = [2, 0, 0, 0, 0, 1];
/// MAC of the `pods` port.
pub const PODS_MAC: Mac = [2, 0, 0, 0, 0, 2];
/// MAC of the upstream router (192.0.2.254, 2001:db8::fe).
pub const ROUTER_MAC: Mac = [2, 0, 0, 0, 0, 0xfe];
/// Number of pods with neighbour entries.
pub const PODS: u8 = 64;

/// MAC of pod `n` (10.1.0.n, fd00:1::n).
pub fn pod_mac(n: u8) -> Mac {
    [2, 0, 0, 1, 0, n]
}
/// IPv4 of pod `n`.
pub fn pod4(n: u8) -> Ip {
    Ip::V4([10, 1, 0, n])
}
/// IPv6 of pod `n`.
pub fn pod6(n: u8) -> Ip {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[1] = 0;
    a[3] = 1;
    a[15] = n;
    Ip::V6(a)
}

/// What the generator intends for a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Forward(&'static str),
    Drop(&'static str),
    Kernel,
}

impl Expect {
    /// The `--verdicts` JSON line for frame `index`.
    pub fn json(&self, index: usize) -> String {
        match self {
            Expect::Forward(p) => format!(r#"{{"index":{index},"action":"forward","port":"{p}"}}"#),
            Expect::Drop(r) => format!(r#"{{"index":{index},"action":"drop","reason":"{r}"}}"#),
            Expect::Kernel => format!(r#"{{"index":{index},"action":"kernel"}}"#),
        }
    }
}

/// A fixture under construction.
#[derive(Debug, Default)]
pub struct Fixture {
    pub frames: Vec<(u64, Vec<u8>, Expect)>,
    pub(crate) ts: u64,
}

const T0: u64 = 1_700_000_000_000_000_000;

impl Fixture {
    fn new() -> Self {
        Fixture {
            frames: Vec::new(),
            ts: T0,
        }
    }
    fn add(&mut self, gap_us: u64, frame: Vec<u8>, e: Expect) {
        self.ts += gap_us * 1000;
        self.frames.push((self.ts, frame, e));
    }
    /// Writes `<dir>/<name>.pcap` and `<dir>/<name>.expected.jsonl`.
    pub fn write(&self, dir: &Path, name: &str) -> std::io::Result<()> {
        let f = std::fs::File::create(dir.join(format!("{name}.pcap")))?;
        let mut w = engine::io::pcap::PcapWriter::new(std::io::BufWriter::new(f))?;
        let mut exp = String::new();
        for (i, (ts, frame, e)) in self.frames.iter().enumerate() {
            w.write(*ts, frame)?;
            exp += &e.json(i);
            exp.push('\n');
        }
        w.finish()?;
        std::fs::write(dir.join(format!("{name}.expected.jsonl")), exp)
    }
}

fn from_uplink(ip: &[u8]) -> Vec<u8> {
    pk::eth_ip(UPLINK_MAC, ROUTER_MAC, ip)
}
fn from_pod(n: u8, ip: &[u8]) -> Vec<u8> {
    pk::eth_ip(PODS_MAC, pod_mac(n), ip)
}

fn v4(ip: Ip) -> [u8; 4] {
    match ip {
        Ip::V4(a) => a,
        Ip::V6(_) => [0; 4],
    }
}

/// A full TCP session between an outside client and pod `n`: handshake,
/// request, response, FIN from both sides.
fn tcp_session(fx: &mut Fixture, client: Ip, pod: u8, sport: u16) {
    let srv = if client.is_v6() { pod6(pod) } else { pod4(pod) };
    let c = |seq, ack, fl, data: &[u8]| {
        pk::ip(
            client,
            srv,
            6,
            64,
            &pk::tcp(client, srv, sport, 80, seq, ack, fl, data),
        )
    };
    let s = |seq, ack, fl, data: &[u8]| {
        pk::ip(
            srv,
            client,
            6,
            64,
            &pk::tcp(srv, client, 80, sport, seq, ack, fl, data),
        )
    };
    let req = b"GET / HTTP/1.1\r\nHost: pod\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    let (ci, si) = (1000u32, 5000u32);
    let up = Expect::Forward("pods");
    let down = Expect::Forward("uplink");
    fx.add(100, from_uplink(&c(ci, 0, flags::SYN, &[])), up.clone());
    fx.add(
        50,
        from_pod(pod, &s(si, ci + 1, flags::SYN | flags::ACK, &[])),
        down.clone(),
    );
    fx.add(
        50,
        from_uplink(&c(ci + 1, si + 1, flags::ACK, &[])),
        up.clone(),
    );
    fx.add(
        10,
        from_uplink(&c(ci + 1, si + 1, flags::ACK | flags::PSH, req)),
        up.clone(),
    );
    let ci2 = ci + 1 + req.len() as u32;
    fx.add(
        50,
        from_pod(pod, &s(si + 1, ci2, flags::ACK, &[])),
        down.clone(),
    );
    fx.add(
        10,
        from_pod(pod, &s(si + 1, ci2, flags::ACK | flags::PSH, resp)),
        down.clone(),
    );
    let si2 = si + 1 + resp.len() as u32;
    fx.add(50, from_uplink(&c(ci2, si2, flags::ACK, &[])), up.clone());
    fx.add(
        10,
        from_uplink(&c(ci2, si2, flags::FIN | flags::ACK, &[])),
        up.clone(),
    );
    fx.add(
        50,
        from_pod(pod, &s(si2, ci2 + 1, flags::FIN | flags::ACK, &[])),
        down,
    );
    fx.add(50, from_uplink(&c(ci2 + 1, si2 + 1, flags::ACK, &[])), up);
}

/// IPv4 and IPv6 TCP sessions.
pub fn tcp_sessions() -> (Fixture, Fixture) {
    let mut a = Fixture::new();
    tcp_session(&mut a, Ip::p("198.51.100.10"), 5, 40000);
    tcp_session(&mut a, Ip::p("203.0.113.7"), 6, 40001);
    let mut b = Fixture::new();
    tcp_session(&mut b, Ip::p("2001:db8:100::10"), 5, 40000);
    (a, b)
}

/// DNS-like UDP request/response, IPv4 (with and without checksum) and IPv6.
pub fn udp() -> Fixture {
    let mut fx = Fixture::new();
    let q =
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
    for (client, pod, zero) in [
        (Ip::p("198.51.100.20"), pod4(7), false),
        (Ip::p("198.51.100.21"), pod4(8), true),
        (Ip::p("2001:db8:100::20"), pod6(7), false),
    ] {
        let n = match pod {
            Ip::V4(a) => a[3],
            Ip::V6(a) => a[15],
        };
        fx.add(
            100,
            from_uplink(&pk::ip(
                client,
                pod,
                17,
                64,
                &pk::udp(client, pod, 53000, 53, q, zero),
            )),
            Expect::Forward("pods"),
        );
        let mut r = q.to_vec();
        r[2] = 0x81;
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 93, 184, 216, 34]);
        fx.add(
            80,
            from_pod(
                n,
                &pk::ip(
                    pod,
                    client,
                    17,
                    64,
                    &pk::udp(pod, client, 53, 53000, &r, zero),
                ),
            ),
            Expect::Forward("uplink"),
        );
    }
    // UDP-Lite and SCTP pass through too.
    let c = Ip::p("198.51.100.22");
    let lite = pk::udplite(c, pod4(9), 4000, 4001, b"lite");
    fx.add(
        100,
        from_uplink(&pk::ip(c, pod4(9), 136, 64, &lite)),
        Expect::Forward("pods"),
    );
    fx.add(
        100,
        from_uplink(&pk::ip(
            c,
            pod4(9),
            132,
            64,
            &pk::sctp(3868, 3868, 0xdead_beef, &[0; 16]),
        )),
        Expect::Forward("pods"),
    );
    fx
}

/// ICMP and ICMPv6: echo both ways and errors.
pub fn icmp() -> Fixture {
    let mut fx = Fixture::new();
    let c4 = Ip::p("198.51.100.30");
    let p4 = pod4(10);
    let body = [0x55u8; 56];
    for seq in 1..=2u16 {
        let rest = [0x12, 0x34, (seq >> 8) as u8, seq as u8];
        fx.add(
            1000,
            from_uplink(&pk::ip(c4, p4, 1, 64, &pk::icmp4(8, 0, rest, &body))),
            Expect::Forward("pods"),
        );
        fx.add(
            100,
            from_pod(10, &pk::ip(p4, c4, 1, 64, &pk::icmp4(0, 0, rest, &body))),
            Expect::Forward("uplink"),
        );
    }
    let c6 = Ip::p("2001:db8:100::30");
    let p6 = pod6(10);
    let rest = [0x00, 0x07, 0x00, 0x01];
    fx.add(
        1000,
        from_uplink(&pk::ip(
            c6,
            p6,
            58,
            64,
            &pk::icmp6(c6, p6, 128, 0, rest, &body),
        )),
        Expect::Forward("pods"),
    );
    fx.add(
        100,
        from_pod(
            10,
            &pk::ip(p6, c6, 58, 64, &pk::icmp6(p6, c6, 129, 0, rest, &body)),
        ),
        Expect::Forward("uplink"),
    );
    // Port unreachable from a pod, quoting a UDP datagram the client sent.
    let quoted = pk::ip(c4, p4, 17, 63, &pk::udp(c4, p4, 5353, 9999, b"x", false));
    fx.add(
        100,
        from_pod(
            10,
            &pk::ip(p4, c4, 1, 64, &pk::icmp4(3, 3, [0; 4], &quoted)),
        ),
        Expect::Forward("uplink"),
    );
    // Time exceeded from the outside router about a pod's packet.
    let quoted = pk::ip(
        p4,
        Ip::p("203.0.113.99"),
        17,
        1,
        &pk::udp(p4, Ip::p("203.0.113.99"), 33434, 33434, &[0; 8], false),
    );
    fx.add(
        100,
        from_uplink(&pk::ip(
            Ip::p("198.51.100.1"),
            p4,
            1,
            250,
            &pk::icmp4(11, 0, [0; 4], &quoted),
        )),
        Expect::Forward("pods"),
    );
    // IPv6 packet too big towards a pod.
    let q6 = pk::ip(
        p6,
        c6,
        17,
        63,
        &pk::udp(p6, c6, 4444, 5555, &[0; 1200], false),
    );
    fx.add(
        100,
        from_uplink(&pk::ip(
            Ip::p("2001:db8:100::1"),
            p6,
            58,
            64,
            &pk::icmp6(
                Ip::p("2001:db8:100::1"),
                p6,
                2,
                0,
                1280u32.to_be_bytes(),
                &q6[..1232],
            ),
        )),
        Expect::Forward("pods"),
    );
    fx
}

/// 802.1Q and QinQ tagged traffic; tags are kept on the way out.
pub fn vlan() -> Fixture {
    let mut fx = Fixture::new();
    let c = Ip::p("198.51.100.40");
    let ip = pk::ip(
        c,
        pod4(11),
        17,
        64,
        &pk::udp(c, pod4(11), 1000, 2000, b"vlan", false),
    );
    fx.add(
        100,
        pk::eth(UPLINK_MAC, ROUTER_MAC, &[(0x8100, 100)], 0x0800, &ip),
        Expect::Forward("pods"),
    );
    fx.add(
        100,
        pk::eth(
            UPLINK_MAC,
            ROUTER_MAC,
            &[(0x88a8, 10), (0x8100, 100)],
            0x0800,
            &ip,
        ),
        Expect::Forward("pods"),
    );
    fx.add(
        100,
        pk::eth(
            UPLINK_MAC,
            ROUTER_MAC,
            &[(0x8100, 10), (0x8100, 100)],
            0x0800,
            &ip,
        ),
        Expect::Forward("pods"),
    );
    let ip6 = pk::ip(
        Ip::p("2001:db8:100::40"),
        pod6(11),
        6,
        64,
        &pk::tcp(
            Ip::p("2001:db8:100::40"),
            pod6(11),
            1000,
            80,
            1,
            0,
            flags::SYN,
            &[],
        ),
    );
    fx.add(
        100,
        pk::eth(UPLINK_MAC, ROUTER_MAC, &[(0x8100, 0x2064)], 0x86dd, &ip6),
        Expect::Forward("pods"),
    );
    // Three tags: deeper than sluice looks, so the kernel decides.
    fx.add(
        100,
        pk::eth(
            UPLINK_MAC,
            ROUTER_MAC,
            &[(0x88a8, 1), (0x8100, 2), (0x8100, 3)],
            0x0800,
            &ip,
        ),
        Expect::Kernel,
    );
    // ARP inside a VLAN.
    let mut arp = pk::arp_request(ROUTER_MAC, [192, 0, 2, 254], [192, 0, 2, 1]);
    arp.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
    fx.add(100, arp, Expect::Kernel);
    fx
}

/// IPv4 and IPv6 fragments: forwarded one by one (no reassembly).
pub fn fragments() -> Fixture {
    let mut fx = Fixture::new();
    let c = Ip::p("198.51.100.50");
    let p = pod4(12);
    let dgram = pk::udp(c, p, 7000, 7001, &[0xab; 2000], false);
    let mut off = 0usize;
    while off < dgram.len() {
        let end = (off + 1480).min(dgram.len());
        let more = end < dgram.len();
        let o = V4Opts {
            frag: ((off / 8) as u16) | if more { 0x2000 } else { 0 },
            id: 0x4242,
            ..V4Opts::default()
        };
        fx.add(
            10,
            from_uplink(&pk::ipv4(v4(c), v4(p), 17, &o, &dgram[off..end])),
            Expect::Forward("pods"),
        );
        off = end;
    }
    // IPv6: fragment header (44) in front of UDP.
    let c6 = Ip::p("2001:db8:100::50");
    let p6 = pod6(12);
    let (Ip::V6(s6), Ip::V6(d6)) = (c6, p6) else {
        unreachable!()
    };
    let d = pk::udp(c6, p6, 7000, 7001, &[0xcd; 2000], false);
    let mut off = 0usize;
    while off < d.len() {
        let end = (off + 1232).min(d.len());
        let more = end < d.len();
        let mut fh = vec![17, 0];
        fh.extend_from_slice(&(((off / 8) as u16) << 3 | u16::from(more)).to_be_bytes());
        fh.extend_from_slice(&0x0001_0203u32.to_be_bytes());
        fx.add(
            10,
            from_uplink(&pk::ipv6(s6, d6, 64, 44, &fh, &d[off..end])),
            Expect::Forward("pods"),
        );
        off = end;
    }
    fx
}

/// Frames the kernel gets, or that are dropped for a reason other than
/// being malformed.
pub fn edge() -> Fixture {
    let mut fx = Fixture::new();
    let c = Ip::p("198.51.100.60");
    let udp = |src: Ip, dst: Ip, ttl: u8| {
        pk::ip(src, dst, 17, ttl, &pk::udp(src, dst, 1, 2, b"e", false))
    };
    fx.add(
        10,
        from_uplink(&udp(c, pod4(13), 1)),
        Expect::Drop("ttl_exceeded"),
    );
    fx.add(
        10,
        from_uplink(&udp(c, pod4(13), 0)),
        Expect::Drop("ttl_exceeded"),
    );
    fx.add(
        10,
        from_uplink(&udp(c, pod4(13), 2)),
        Expect::Forward("pods"),
    );
    fx.add(
        10,
        from_uplink(&udp(Ip::p("2001:db8:100::60"), pod6(13), 1)),
        Expect::Drop("ttl_exceeded"),
    );
    fx.add(
        10,
        from_uplink(&udp(c, Ip::p("192.0.2.1"), 64)),
        Expect::Kernel,
    );
    fx.add(
        10,
        from_uplink(&udp(c, Ip::p("192.0.2.255"), 64)),
        Expect::Kernel,
    );
    fx.add(
        10,
        from_uplink(&udp(c, Ip::p("255.255.255.255"), 64)),
        Expect::Kernel,
    );
    fx.add(
        10,
        from_uplink(&udp(c, Ip::p("224.0.0.251"), 255)),
        Expect::Kernel,
    );
    fx.add(
        10,
        from_uplink(&udp(Ip::p("2001:db8:100::60"), Ip::p("2001:db8::1"), 64)),
        Expect::Kernel,
    );
    fx.add(
        10,
        from_uplink(&udp(Ip::p("fe80::1"), Ip::p("ff02::fb"), 255)),
        Expect::Kernel,
    );
    fx.add(
        10,
        from_uplink(&udp(Ip::p("fe80::1"), Ip::p("fe80::2"), 255)),
        Expect::Kernel,
    );
    fx.add(
        10,
        from_uplink(&udp(Ip::p("127.0.0.1"), pod4(13), 64)),
        Expect::Drop("martian"),
    );
    fx.add(
        10,
        from_uplink(&udp(Ip::p("224.0.0.1"), pod4(13), 64)),
        Expect::Drop("martian"),
    );
    fx.add(
        10,
        from_uplink(&udp(c, Ip::p("127.0.0.1"), 64)),
        Expect::Drop("martian"),
    );
    fx.add(
        10,
        from_uplink(&udp(Ip::p("fe80::1"), pod6(13), 64)),
        Expect::Drop("martian"),
    );
    // 10.1.0.200 is on the pods subnet but has no neighbour entry.
    fx.add(
        10,
        from_uplink(&udp(c, pod4(200), 64)),
        Expect::Drop("no_neighbor"),
    );
    // No route for this ULA range (no IPv6 default route to it? there is
    // one: it goes to the uplink gateway).
    fx.add(
        10,
        from_pod(13, &udp(pod4(13), Ip::p("203.0.113.5"), 64)),
        Expect::Forward("uplink"),
    );
    fx.add(
        10,
        from_pod(13, &udp(pod6(13), Ip::p("2001:db8:100::5"), 64)),
        Expect::Forward("uplink"),
    );
    fx.add(
        10,
        pk::arp_request(ROUTER_MAC, [192, 0, 2, 254], [192, 0, 2, 1]),
        Expect::Kernel,
    );
    // IPv6 neighbour solicitation to the node's global address.
    let ns_src = Ip::p("2001:db8::fe");
    let node = Ip::p("2001:db8::1");
    let mut target = match node {
        Ip::V6(a) => a.to_vec(),
        Ip::V4(_) => Vec::new(),
    };
    target.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 0xfe]);
    fx.add(
        10,
        from_uplink(&pk::ip(
            ns_src,
            node,
            58,
            255,
            &pk::icmp6(ns_src, node, 135, 0, [0; 4], &target),
        )),
        Expect::Kernel,
    );
    // LLDP.
    fx.add(
        10,
        pk::eth(
            [0x01, 0x80, 0xc2, 0, 0, 0x0e],
            ROUTER_MAC,
            &[],
            0x88cc,
            &[0; 40],
        ),
        Expect::Kernel,
    );
    // IPv4 with options (router alert) is forwarded with options intact.
    let o = V4Opts {
        options: vec![0x94, 0x04, 0x00, 0x00],
        ..V4Opts::default()
    };
    fx.add(
        10,
        from_uplink(&pk::ipv4(
            v4(c),
            v4(pod4(13)),
            17,
            &o,
            &pk::udp(c, pod4(13), 1, 2, b"opt", false),
        )),
        Expect::Forward("pods"),
    );
    // GRE (no ports) is forwarded.
    fx.add(
        10,
        from_uplink(&pk::ip(
            c,
            pod4(13),
            47,
            64,
            &[0, 0, 0x08, 0x00, 0x45, 0, 0, 20],
        )),
        Expect::Forward("pods"),
    );
    fx
}

/// Malformed frames: every one is a `malformed` drop.
pub fn malformed() -> Fixture {
    let mut fx = Fixture::new();
    let c = Ip::p("198.51.100.70");
    let p = pod4(14);
    let good = from_uplink(&pk::ip(
        c,
        p,
        6,
        64,
        &pk::tcp(c, p, 1, 80, 1, 0, flags::SYN, &[]),
    ));
    let m = Expect::Drop("malformed");
    // Truncated Ethernet header.
    fx.add(10, good[..10].to_vec(), m.clone());
    // Truncated IPv4 header.
    fx.add(10, good[..14 + 12].to_vec(), m.clone());
    // IHL 4 (< 5).
    let mut f = good.clone();
    f[14] = 0x44;
    fx.add(10, f, m.clone());
    // IHL 15 (60 bytes) past the datagram.
    let mut f = good.clone();
    f[14] = 0x4f;
    fx.add(10, f, m.clone());
    // Total length past the frame.
    let mut f = good.clone();
    f[16..18].copy_from_slice(&200u16.to_be_bytes());
    fix_ip4_csum(&mut f);
    fx.add(10, f, m.clone());
    // Total length below the header.
    let mut f = good.clone();
    f[16..18].copy_from_slice(&19u16.to_be_bytes());
    fix_ip4_csum(&mut f);
    fx.add(10, f, m.clone());
    // Bad header checksum.
    let mut f = good.clone();
    f[24] ^= 0xff;
    fx.add(10, f, m.clone());
    // Version 6 behind ethertype IPv4.
    let mut f = good.clone();
    f[14] = 0x65;
    fx.add(10, f, m.clone());
    // TCP header cut short (total length says 30).
    let mut f = good.clone();
    f[16..18].copy_from_slice(&30u16.to_be_bytes());
    fix_ip4_csum(&mut f);
    fx.add(10, f, m.clone());
    // TCP data offset 3.
    let mut f = good.clone();
    f[14 + 20 + 12] = 0x30;
    fx.add(10, f, m.clone());
    // UDP length 4.
    let u = from_uplink(&pk::ip(c, p, 17, 64, &pk::udp(c, p, 1, 2, b"abcd", false)));
    let mut f = u.clone();
    f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4u16.to_be_bytes());
    fx.add(10, f, m.clone());
    // UDP length past the datagram.
    let mut f = u.clone();
    f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&400u16.to_be_bytes());
    fx.add(10, f, m.clone());
    // IPv6: payload length past the frame.
    let c6 = Ip::p("2001:db8:100::70");
    let p6 = pod6(14);
    let g6 = from_uplink(&pk::ip(
        c6,
        p6,
        17,
        64,
        &pk::udp(c6, p6, 1, 2, b"v6", false),
    ));
    let mut f = g6.clone();
    f[18..20].copy_from_slice(&500u16.to_be_bytes());
    fx.add(10, f, m.clone());
    // IPv6 header cut short.
    fx.add(10, g6[..14 + 30].to_vec(), m.clone());
    // IPv6 version nibble 4.
    let mut f = g6.clone();
    f[14] = 0x40;
    fx.add(10, f, m.clone());
    // Truncated hop-by-hop header (claims 16 bytes, 8 present).
    let (Ip::V6(s6), Ip::V6(d6)) = (c6, p6) else {
        unreachable!()
    };
    let f = from_uplink(&pk::ipv6(s6, d6, 64, 0, &[17, 1, 0, 0, 0, 0, 0, 0], &[]));
    fx.add(10, f, m.clone());
    // Hop-by-hop not first.
    let f = from_uplink(&pk::ipv6(
        s6,
        d6,
        64,
        60,
        &[0, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0],
        &pk::udp(c6, p6, 1, 2, b"", false),
    ));
    fx.add(10, f, m.clone());
    // Payload length 0 with hop-by-hop but no jumbo option.
    let mut f = from_uplink(&pk::ipv6(
        s6,
        d6,
        64,
        0,
        &[17, 0, 1, 4, 0, 0, 0, 0],
        &pk::udp(c6, p6, 1, 2, b"", false),
    ));
    f[18..20].copy_from_slice(&[0, 0]);
    fx.add(10, f, m);
    fx
}

fn fix_ip4_csum(f: &mut [u8]) {
    let ihl = usize::from(f[14] & 0xf) * 4;
    f[24] = 0;
    f[25] = 0;
    let c = engine::wire::checksum::checksum(&f[14..14 + ihl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// Packet-size classes of the simple IMIX (7:4:1 of 64/594/1518 bytes on the
/// wire, i.e. 60/590/1514 without the FCS).
pub const IMIX: [(usize, u32); 3] = [(60, 7), (590, 4), (1514, 1)];

/// Knobs of a synthetic workload.
#[derive(Clone, Debug)]
pub struct Workload {
    pub packets: usize,
    pub flows: usize,
    /// Share of IPv6 flows, percent.
    pub ipv6_pct: u64,
    /// TCP / UDP / ICMP shares, percent (the rest is UDP).
    pub tcp_pct: u64,
    pub icmp_pct: u64,
    /// Share of flows from pods to the outside, percent.
    pub outbound_pct: u64,
    /// Frame sizes and weights.
    pub sizes: Vec<(usize, u32)>,
    pub seed: u64,
    /// Capture-time gap between frames, ns.
    pub gap_ns: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            packets: 2048,
            flows: 256,
            ipv6_pct: 10,
            tcp_pct: 60,
            icmp_pct: 5,
            outbound_pct: 20,
            sizes: IMIX.to_vec(),
            seed: 1,
            gap_ns: 1000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Flow {
    outside: Ip,
    pod: u8,
    proto: u8,
    sport: u16,
    dport: u16,
    outbound: bool,
}

/// Generates a workload: every frame is forwardable under the bundled config.
pub fn workload(w: &Workload) -> Fixture {
    let mut rng = Rng(w.seed);
    let flows: Vec<Flow> = (0..w.flows.max(1))
        .map(|_| {
            let v6 = rng.below(100) < w.ipv6_pct;
            let h = rng.next_u64();
            let outside = if v6 {
                let mut a = [0u8; 16];
                a[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00]);
                a[8..16].copy_from_slice(&h.to_be_bytes());
                Ip::V6(a)
            } else {
                // 198.18.0.0/15 (benchmarking range), never a node address.
                Ip::V4([198, 18 + (h >> 63) as u8, (h >> 8) as u8, (h as u8).max(1)])
            };
            let r = rng.below(100);
            let proto = if r < w.icmp_pct {
                1
            } else if r < w.icmp_pct + w.tcp_pct {
                6
            } else {
                17
            };
            Flow {
                outside,
                pod: 2 + rng.below(u64::from(PODS)) as u8,
                proto,
                sport: 1024 + rng.below(60000) as u16,
                dport: [80u16, 443, 8080, 5201, 9000][rng.below(5) as usize],
                outbound: rng.below(100) < w.outbound_pct,
            }
        })
        .collect();
    let total_weight: u64 = w.sizes.iter().map(|s| u64::from(s.1)).sum();
    let mut fx = Fixture::new();
    for _ in 0..w.packets {
        let f = flows[rng.below(flows.len() as u64) as usize];
        let mut pick = rng.below(total_weight.max(1));
        let mut size = 60;
        for &(s, wt) in &w.sizes {
            if pick < u64::from(wt) {
                size = s;
                break;
            }
            pick -= u64::from(wt);
        }
        let pod = if f.outside.is_v6() {
            pod6(f.pod)
        } else {
            pod4(f.pod)
        };
        let (src, dst) = if f.outbound {
            (pod, f.outside)
        } else {
            (f.outside, pod)
        };
        let v6 = f.outside.is_v6();
        let l3 = if v6 { 40 } else { 20 };
        let l4h = match f.proto {
            6 => 20,
            _ => 8,
        };
        let payload = vec![0x5a; size.saturating_sub(14 + l3 + l4h)];
        let seg = match f.proto {
            6 => pk::tcp(src, dst, f.sport, f.dport, 1, 1, flags::ACK, &payload),
            17 => pk::udp(src, dst, f.sport, f.dport, &payload, false),
            _ if v6 => pk::icmp6(src, dst, 128, 0, [0, 1, 0, 1], &payload),
            _ => pk::icmp4(8, 0, [0, 1, 0, 1], &payload),
        };
        let proto = if f.proto == 1 && v6 { 58 } else { f.proto };
        let ip = pk::ip(src, dst, proto, 64, &seg);
        let (frame, e) = if f.outbound {
            (from_pod(f.pod, &ip), Expect::Forward("uplink"))
        } else {
            (from_uplink(&ip), Expect::Forward("pods"))
        };
        fx.ts += w.gap_ns;
        fx.frames.push((fx.ts, frame, e));
    }
    fx
}

/// The bundled config (`pcap-fixtures/sluice.yaml`): two ports, the pods'
/// neighbours, and `extra_routes` additional /24 routes via the uplink
/// gateway (172.16.0.0/12 space), for FIB-size benchmarks.
pub fn config_yaml(extra_routes: usize, policy: Option<&str>) -> String {
    let mut s = String::from(
        "# sluice bundled config: a node between an uplink and a pod network.\n\
         # Generated by `cargo run -p bench --bin gen-fixtures` (see pcap-fixtures/README.md).\n\
         ports:\n  \
           - name: uplink\n    interface: sl-uplink\n    mac: \"02:00:00:00:00:01\"\n    addresses: [\"192.0.2.1/24\", \"2001:db8::1/64\"]\n  \
           - name: pods\n    interface: sl-pods\n    mac: \"02:00:00:00:00:02\"\n    addresses: [\"10.1.0.1/16\", \"fd00:1::1/64\"]\n\
         workers:\n  cores: [0]\n  batch: 64\n",
    );
    if let Some(p) = policy {
        s += &format!("policy:\n  paths: [\"{p}\"]\n");
    }
    s += "routes:\n  \
            - {prefix: \"10.1.0.0/16\", port: pods}\n  \
            - {prefix: \"fd00:1::/64\", port: pods}\n  \
            - {prefix: \"192.0.2.0/24\", port: uplink}\n  \
            - {prefix: \"2001:db8::/64\", port: uplink}\n  \
            - {prefix: \"0.0.0.0/0\", port: uplink, via: \"192.0.2.254\"}\n  \
            - {prefix: \"::/0\", port: uplink, via: \"2001:db8::fe\"}\n";
    for i in 0..extra_routes {
        s += &format!(
            "  - {{prefix: \"172.{}.{}.0/24\", port: uplink, via: \"192.0.2.254\"}}\n",
            16 + (i >> 8) % 16,
            i & 0xff
        );
    }
    s += "neighbors:\n  \
            - {ip: \"192.0.2.254\", mac: \"02:00:00:00:00:fe\", port: uplink}\n  \
            - {ip: \"2001:db8::fe\", mac: \"02:00:00:00:00:fe\", port: uplink}\n";
    for n in 2..2 + PODS {
        let m = pod_mac(n);
        s += &format!(
            "  - {{ip: \"10.1.0.{n}\", mac: \"{}\", port: pods}}\n  - {{ip: \"fd00:1::{n:x}\", mac: \"{}\", port: pods}}\n",
            engine::wire::mac_to_string(&m),
            engine::wire::mac_to_string(&m)
        );
    }
    s
}

/// Writes every fixture into `dir`.
pub fn write_all(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let (t4, t6) = tcp_sessions();
    t4.write(dir, "tcp4-session")?;
    t6.write(dir, "tcp6-session")?;
    udp().write(dir, "udp")?;
    icmp().write(dir, "icmp")?;
    vlan().write(dir, "vlan")?;
    fragments().write(dir, "fragments")?;
    edge().write(dir, "edge")?;
    malformed().write(dir, "malformed")?;
    workload(&Workload::default()).write(dir, "imix")?;
    std::fs::write(dir.join("sluice.yaml"), config_yaml(0, None))?;
    Ok(())
}
