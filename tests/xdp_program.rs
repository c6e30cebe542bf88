//! The XDP redirector, run by the kernel on synthetic frames
//! (`BPF_PROG_TEST_RUN`): which frames go to the kernel and which to
//! sluice, the counters, the masquerade-port bitmap, the fail mode; and a
//! differential check against the pipeline's own verdicts on the fixture
//! captures. Needs root (loads BPF).
//!
//! With no AF_XDP socket bound, a frame bound for sluice gets the fail-mode
//! action: with `fail_mode: closed` that is XDP_DROP (1), while frames for
//! the kernel are XDP_PASS (2), so the return value tells the decision.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use bench::packet::{self as pk, Ip};
use engine::io::bpf::{self, NatProto, XdpCounter, XdpMaps, XdpProgram};
use engine::sources::config::Config;

const DROP: u32 = 1;
const PASS: u32 = 2;
const NODE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

fn config(fail_mode: &str) -> Config {
    let y = format!(
        r#"
ports:
  - {{name: uplink, mac: "02:00:00:00:00:01", addresses: ["192.0.2.1/24", "2001:db8::1/64"]}}
  - {{name: pods, mac: "02:00:00:00:00:02", addresses: ["10.1.0.1/16", "fd00:1::1/64"]}}
routes:
  - {{prefix: "10.1.0.0/16", port: pods}}
  - {{prefix: "0.0.0.0/0", port: uplink, via: "192.0.2.254"}}
neighbors:
  - {{ip: "192.0.2.254", mac: "02:00:00:00:00:fe", port: uplink}}
services:
  - {{name: web, vip: "10.96.0.10", port: 80, protocol: UDP, node_port: 30080,
     backends: ["10.1.0.5:8080"]}}
masquerade:
  - {{from: "10.1.0.0/16", port: uplink}}
xdp: {{fail_mode: {fail_mode}}}
"#
    );
    Config::from_yaml(&y, "xdp-test.yaml", Path::new(".")).unwrap()
}

fn load(fail_mode: &str) -> (XdpProgram, XdpMaps) {
    let (prog, mut maps) = bpf::load().expect("loading the XDP program (needs root)");
    maps.sync(&engine::state::build::xdp_contents(
        &config(fail_mode).state(),
    ))
    .unwrap();
    // Test runs arrive on the loopback device: make it port 0.
    maps.set_port(1, 0).unwrap();
    (prog, maps)
}

fn v4(s: &str) -> [u8; 4] {
    match Ip::p(s) {
        Ip::V4(a) => a,
        Ip::V6(_) => unreachable!(),
    }
}

fn v6(s: &str) -> [u8; 16] {
    match Ip::p(s) {
        Ip::V6(a) => a,
        Ip::V4(_) => unreachable!(),
    }
}

fn tcp4(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    let (s, d) = (Ip::p(src), Ip::p(dst));
    let seg = pk::tcp(s, d, sport, dport, 1, 0, pk::flags::SYN, &[]);
    pk::eth_ip(NODE_MAC, PEER_MAC, &pk::ip(s, d, 6, 64, &seg))
}

fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    let (s, d) = (Ip::p(src), Ip::p(dst));
    let seg = pk::udp(s, d, sport, dport, b"hello", false);
    pk::eth_ip(NODE_MAC, PEER_MAC, &pk::ip(s, d, 17, 64, &seg))
}

fn icmp4(src: &str, dst: &str, ty: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let m = pk::icmp4(ty, 0, rest, body);
    pk::eth_ip(
        NODE_MAC,
        PEER_MAC,
        &pk::ip(Ip::p(src), Ip::p(dst), 1, 64, &m),
    )
}

fn icmp6(src: &str, dst: &str, ty: u8) -> Vec<u8> {
    let (s, d) = (Ip::p(src), Ip::p(dst));
    let m = pk::icmp6(s, d, ty, 0, [0; 4], &[0; 16]);
    pk::eth_ip(NODE_MAC, PEER_MAC, &pk::ip(s, d, 58, 255, &m))
}

/// Runs `frame` and checks the action and which counter moved.
fn expect(
    prog: &mut XdpProgram,
    maps: &XdpMaps,
    what: &str,
    frame: &[u8],
    action: u32,
    counter: XdpCounter,
) {
    let before = maps.counters().unwrap();
    let got = prog.test_run(frame, None, 0).unwrap();
    let after = maps.counters().unwrap();
    assert_eq!(got, action, "{what}: action");
    assert_eq!(
        after[XdpCounter::Rx as usize] - before[XdpCounter::Rx as usize],
        1,
        "{what}: rx counted once"
    );
    let moved: Vec<XdpCounter> = XdpCounter::ALL
        .iter()
        .copied()
        .filter(|c| *c != XdpCounter::Rx && after[*c as usize] != before[*c as usize])
        .collect();
    assert_eq!(moved, vec![counter], "{what}: counters");
}

#[test]
fn kernel_or_sluice_by_case() {
    let (mut p, m) = load("closed");
    let p = &mut p;
    use XdpCounter as C;
    // Not IP.
    let arp = pk::arp_request(PEER_MAC, v4("192.0.2.254"), v4("192.0.2.1"));
    expect(p, &m, "arp", &arp, PASS, C::PassNotIp);
    let lldp = pk::eth([1, 0x80, 0xc2, 0, 0, 0xe], PEER_MAC, &[], 0x88cc, &[0; 40]);
    expect(p, &m, "lldp", &lldp, PASS, C::PassNotIp);
    // Forwarded traffic goes to sluice (no socket: dropped, fail closed).
    let fwd = tcp4("198.51.100.7", "10.1.0.5", 40000, 80);
    expect(p, &m, "forward v4", &fwd, DROP, C::NoSocketDrop);
    let fwd6 = pk::eth_ip(
        NODE_MAC,
        PEER_MAC,
        &pk::ip(
            Ip::p("2001:db8::99"),
            Ip::p("fd00:1::5"),
            17,
            64,
            &pk::udp(Ip::p("2001:db8::99"), Ip::p("fd00:1::5"), 5, 6, b"x", false),
        ),
    );
    expect(p, &m, "forward v6", &fwd6, DROP, C::NoSocketDrop);
    // Martian destinations are the pipeline's to drop and count.
    expect(
        p,
        &m,
        "martian dst",
        &tcp4("198.51.100.7", "127.0.0.1", 1, 2),
        DROP,
        C::NoSocketDrop,
    );
    // The node's addresses.
    expect(
        p,
        &m,
        "node ssh (failsafe)",
        &tcp4("198.51.100.7", "192.0.2.1", 40000, 22),
        PASS,
        C::PassFailsafe,
    );
    expect(
        p,
        &m,
        "node tcp 8080",
        &tcp4("198.51.100.7", "10.1.0.1", 40000, 8080),
        PASS,
        C::PassLocal,
    );
    expect(
        p,
        &m,
        "node port (udp 30080)",
        &udp("198.51.100.7", "192.0.2.1", 5000, 30080),
        DROP,
        C::NoSocketDrop,
    );
    expect(
        p,
        &m,
        "tcp 30080 is not the (udp) node port",
        &tcp4("198.51.100.7", "192.0.2.1", 5000, 30080),
        PASS,
        C::PassLocal,
    );
    let ping = icmp4("198.51.100.7", "192.0.2.1", 8, [0, 7, 0, 1], b"ping");
    expect(p, &m, "ping the node", &ping, PASS, C::PassLocal);
    // Broadcast and multicast.
    expect(
        p,
        &m,
        "limited broadcast",
        &udp("192.0.2.9", "255.255.255.255", 68, 67),
        PASS,
        C::PassBroadcast,
    );
    expect(
        p,
        &m,
        "directed broadcast",
        &udp("192.0.2.9", "192.0.2.255", 137, 137),
        PASS,
        C::PassBroadcast,
    );
    expect(
        p,
        &m,
        "multicast",
        &udp("192.0.2.9", "224.0.0.251", 5353, 5353),
        PASS,
        C::PassMulticast,
    );
    // IPv6: ND (also unicast to someone else), link-local, node address.
    expect(
        p,
        &m,
        "neighbour solicitation",
        &icmp6("fe80::2", "ff02::1:ff00:1", 135),
        PASS,
        C::PassNd,
    );
    expect(
        p,
        &m,
        "unicast NA to a pod",
        &icmp6("fd00:1::9", "fd00:1::5", 136),
        PASS,
        C::PassNd,
    );
    expect(
        p,
        &m,
        "router advertisement",
        &icmp6("fe80::1", "ff02::1", 134),
        PASS,
        C::PassNd,
    );
    expect(
        p,
        &m,
        "link-local",
        &icmp6("fe80::2", "fe80::1", 128),
        PASS,
        C::PassLinkLocal,
    );
    expect(
        p,
        &m,
        "v6 multicast",
        &icmp6("fe80::2", "ff02::16", 143),
        PASS,
        C::PassMulticast,
    );
    expect(
        p,
        &m,
        "v6 node address",
        &icmp6("2001:db8::99", "2001:db8::1", 128),
        PASS,
        C::PassLocal,
    );
    // A hop-by-hop header in front of ND.
    let (s6, d6) = (v6("fe80::2"), v6("ff02::1:ff00:1"));
    let ns = pk::icmp6(Ip::V6(s6), Ip::V6(d6), 135, 0, [0; 4], &[0; 16]);
    let hbh = [58u8, 0, 5, 2, 0, 0, 1, 0];
    let f = pk::eth_ip(NODE_MAC, PEER_MAC, &pk::ipv6(s6, d6, 255, 0, &hbh, &ns));
    expect(p, &m, "ND after hop-by-hop", &f, PASS, C::PassNd);

    // VLAN: one and two tags looked through, three are not IP to sluice.
    let ipb = pk::ip(Ip::p("198.51.100.7"), Ip::p("192.0.2.1"), 6, 64, &{
        let (s, d) = (Ip::p("198.51.100.7"), Ip::p("192.0.2.1"));
        pk::tcp(s, d, 1, 8080, 1, 0, 2, &[])
    });
    let one = pk::eth(NODE_MAC, PEER_MAC, &[(0x8100, 10)], 0x0800, &ipb);
    expect(p, &m, "one tag, to node", &one, PASS, C::PassLocal);
    let two = pk::eth(
        NODE_MAC,
        PEER_MAC,
        &[(0x88a8, 10), (0x8100, 20)],
        0x0800,
        &ipb,
    );
    expect(p, &m, "two tags, to node", &two, PASS, C::PassLocal);
    let three = pk::eth(
        NODE_MAC,
        PEER_MAC,
        &[(0x88a8, 10), (0x8100, 20), (0x8100, 30)],
        0x0800,
        &ipb,
    );
    expect(p, &m, "three tags", &three, PASS, C::PassNotIp);
    let fwd_tagged = pk::eth(NODE_MAC, PEER_MAC, &[(0x8100, 10)], 0x0800, &{
        let (s, d) = (Ip::p("198.51.100.7"), Ip::p("10.1.0.5"));
        pk::ip(s, d, 6, 64, &pk::tcp(s, d, 1, 80, 1, 0, 2, &[]))
    });
    expect(p, &m, "tagged forward", &fwd_tagged, DROP, C::NoSocketDrop);

    // Malformed: too short for an IPv4 header; the pipeline drops it.
    let mut short = tcp4("198.51.100.7", "192.0.2.1", 1, 2);
    short.truncate(14 + 12);
    expect(p, &m, "truncated", &short, DROP, C::NoSocketDrop);
}

#[test]
fn masquerade_ports_in_use_reach_sluice() {
    let (mut p, m) = load("closed");
    let p = &mut p;
    use XdpCounter as C;
    // 192.0.2.1 is masquerade slot 0 (the uplink's first IPv4 address).
    let c = config("closed");
    assert_eq!(
        c.state().masquerade_slots(),
        vec![(engine::wire::Family::V4, 0xc000_0201)]
    );
    let reply = tcp4("198.51.100.7", "192.0.2.1", 443, 40000);
    expect(p, &m, "reply, port free", &reply, PASS, C::PassLocal);
    m.nat_port(0, NatProto::Tcp, 40000, true);
    assert!(m.nat_ports().get(0, NatProto::Tcp, 40000));
    expect(p, &m, "reply, port in use", &reply, DROP, C::NoSocketDrop);
    // Other protocols and neighbouring ports are unaffected.
    expect(
        p,
        &m,
        "udp same port",
        &udp("198.51.100.7", "192.0.2.1", 443, 40000),
        PASS,
        C::PassLocal,
    );
    expect(
        p,
        &m,
        "tcp next port",
        &tcp4("198.51.100.7", "192.0.2.1", 443, 40001),
        PASS,
        C::PassLocal,
    );
    // Another node address has no masquerade slot.
    expect(
        p,
        &m,
        "other address",
        &tcp4("198.51.100.7", "10.1.0.1", 443, 40000),
        PASS,
        C::PassLocal,
    );
    // Failsafe wins over a NAT port.
    m.nat_port(0, NatProto::Tcp, 22, true);
    expect(
        p,
        &m,
        "failsafe first",
        &tcp4("198.51.100.7", "192.0.2.1", 443, 22),
        PASS,
        C::PassFailsafe,
    );
    m.nat_port(0, NatProto::Tcp, 40000, false);
    expect(p, &m, "reply, port freed", &reply, PASS, C::PassLocal);

    // Echo replies by identifier.
    let echo_reply = icmp4("198.51.100.7", "192.0.2.1", 0, [0x03, 0x09, 0, 1], b"pong");
    expect(
        p,
        &m,
        "echo reply, id free",
        &echo_reply,
        PASS,
        C::PassLocal,
    );
    m.nat_port(0, NatProto::Icmp, 0x0309, true);
    expect(
        p,
        &m,
        "echo reply, id in use",
        &echo_reply,
        DROP,
        C::NoSocketDrop,
    );

    // An ICMP error quoting a masqueraded UDP datagram.
    let quoted = pk::ip(
        Ip::p("192.0.2.1"),
        Ip::p("198.51.100.7"),
        17,
        63,
        &pk::udp(
            Ip::p("192.0.2.1"),
            Ip::p("198.51.100.7"),
            41000,
            53,
            b"q",
            false,
        ),
    );
    let unreach = icmp4("198.51.100.7", "192.0.2.1", 3, [0; 4], &quoted);
    expect(
        p,
        &m,
        "unreachable, port free",
        &unreach,
        PASS,
        C::PassLocal,
    );
    m.nat_port(0, NatProto::Udp, 41000, true);
    expect(
        p,
        &m,
        "unreachable, port in use",
        &unreach,
        DROP,
        C::NoSocketDrop,
    );

    // Fragments to the node go to the kernel whatever the ports.
    let frag = pk::eth_ip(
        NODE_MAC,
        PEER_MAC,
        &pk::ipv4(
            v4("198.51.100.7"),
            v4("192.0.2.1"),
            17,
            &pk::V4Opts {
                frag: 0x2000,
                ..pk::V4Opts::default()
            },
            &pk::udp(
                Ip::p("198.51.100.7"),
                Ip::p("192.0.2.1"),
                53,
                41000,
                &[0; 32],
                false,
            ),
        ),
    );
    expect(p, &m, "first fragment", &frag, PASS, C::PassLocal);
    m.nat_ports().clear();
    assert!(!m.nat_ports().get(0, NatProto::Udp, 41000));
    expect(p, &m, "cleared", &unreach, PASS, C::PassLocal);
}

#[test]
fn fail_open_passes_what_sluice_would_take() {
    let (mut p, mut m) = load("open");
    let fwd = tcp4("198.51.100.7", "10.1.0.5", 40000, 80);
    expect(&mut p, &m, "open", &fwd, PASS, XdpCounter::NoSocketPass);
    m.sync(&engine::state::build::xdp_contents(
        &config("closed").state(),
    ))
    .unwrap();
    expect(&mut p, &m, "closed", &fwd, DROP, XdpCounter::NoSocketDrop);
}

/// The XDP program and the pipeline agree on what belongs to the kernel:
/// every fixture frame the pipeline hands to the kernel, XDP passes; every
/// frame the pipeline forwards or drops, XDP redirects to sluice.
#[test]
fn agrees_with_the_pipeline_on_the_fixtures() {
    let cfg = Config::load(&common::fixtures().join("sluice.yaml")).unwrap();
    let (mut prog, mut maps) = bpf::load().unwrap();
    let cfg_closed = {
        let mut c = cfg.clone();
        c.xdp.fail_mode = engine::sources::config::FailMode::Closed;
        c
    };
    maps.sync(&engine::state::build::xdp_contents(&cfg_closed.state()))
        .unwrap();
    maps.set_port(1, 0).unwrap();
    let mut checked = 0;
    let mut kernel = 0;
    for name in [
        "edge",
        "fragments",
        "icmp",
        "imix",
        "malformed",
        "tcp4-session",
        "tcp6-session",
        "udp",
        "vlan",
    ] {
        let frames = common::frames(&common::fixtures().join(format!("{name}.pcap")));
        let want: Vec<serde_json::Value> =
            std::fs::read_to_string(common::fixtures().join(format!("{name}.expected.jsonl")))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        assert_eq!(frames.len(), want.len(), "{name}");
        for (i, (f, w)) in frames.iter().zip(&want).enumerate() {
            if f.len() < 14 {
                continue; // the kernel refuses to test-run runts
            }
            let got = prog.test_run(f, None, 0).unwrap();
            let action = w["action"].as_str().unwrap();
            if action == "kernel" {
                kernel += 1;
                assert_eq!(
                    got, PASS,
                    "{name}[{i}]: pipeline says kernel, XDP must pass"
                );
            } else {
                assert_eq!(
                    got, DROP,
                    "{name}[{i}]: pipeline says {w}, XDP must hand it to sluice"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 1000, "{checked}");
    assert!(kernel >= 10, "{kernel}");
}
