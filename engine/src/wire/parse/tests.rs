//! The parser's tests: hand-built frames, Linux's receive checks, and a
//! property test against etherparse as an independent oracle.

use super::*;
use etherparse::{PacketBuilder, VlanId};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum L4 {
    Tcp(u16, u16, u8),
    Udp(u16, u16),
    Icmp4Echo(u16),
}

fn build(
    v6: bool,
    vlans: u8,
    ttl: u8,
    src: [u8; 16],
    dst: [u8; 16],
    l4: &L4,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut out = Vec::new();
    macro_rules! finish {
        ($ip:expr) => {{
            match l4 {
                L4::Tcp(s, d, f) => {
                    let mut t = $ip.tcp(*s, *d, 1, 4096);
                    if f & 1 != 0 {
                        t = t.fin();
                    }
                    if f & 2 != 0 {
                        t = t.syn();
                    }
                    if f & 4 != 0 {
                        t = t.rst();
                    }
                    t.write(&mut out, payload).unwrap()
                }
                L4::Udp(s, d) => $ip.udp(*s, *d).write(&mut out, payload).unwrap(),
                L4::Icmp4Echo(id) if !v6 => $ip
                    .icmpv4_echo_request(*id, 1)
                    .write(&mut out, payload)
                    .unwrap(),
                L4::Icmp4Echo(id) => $ip
                    .icmpv6_echo_request(*id, 1)
                    .write(&mut out, payload)
                    .unwrap(),
            }
        }};
    }
    let mut s4 = [0u8; 4];
    s4.copy_from_slice(&src[..4]);
    let mut d4 = [0u8; 4];
    d4.copy_from_slice(&dst[..4]);
    match (vlans, v6) {
        (0, false) => finish!(b.ipv4(s4, d4, ttl)),
        (0, true) => finish!(b.ipv6(src, dst, ttl)),
        (1, false) => finish!(b.single_vlan(VlanId::try_new(7).unwrap()).ipv4(s4, d4, ttl)),
        (1, true) => finish!(b
            .single_vlan(VlanId::try_new(7).unwrap())
            .ipv6(src, dst, ttl)),
        (_, false) => finish!(b
            .double_vlan(VlanId::try_new(1).unwrap(), VlanId::try_new(2).unwrap())
            .ipv4(s4, d4, ttl)),
        (_, true) => finish!(b
            .double_vlan(VlanId::try_new(1).unwrap(), VlanId::try_new(2).unwrap())
            .ipv6(src, dst, ttl)),
    }
    out
}

fn arb_l4() -> impl Strategy<Value = L4> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), 0u8..8).prop_map(|(s, d, f)| L4::Tcp(s, d, f)),
        (any::<u16>(), any::<u16>()).prop_map(|(s, d)| L4::Udp(s, d)),
        any::<u16>().prop_map(L4::Icmp4Echo),
    ]
}

/// The common-shape IPv4 parser answers exactly as the general one
/// whenever it answers: built frames (IPv4 and IPv6, tagged or not,
/// TCP/UDP/ICMP), then bytes of the headers overwritten and the frame
/// cut or padded, so every check of the fast path is crossed; and it
/// does answer for a good share of them.
#[test]
fn common_v4_agrees_with_general() {
    let frames = (
        (
            proptest::bool::weighted(0.1),
            prop_oneof![8 => Just(0u8), 1 => Just(1u8)],
            any::<u8>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            arb_l4(),
            proptest::collection::vec(any::<u8>(), 0..40),
        ),
        (
            proptest::collection::vec((0usize..60, any::<u8>()), 0..3),
            any::<bool>(),
            prop_oneof![Just(0usize), 0usize..24],
            0usize..8,
        ),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(20_000));
    let taken = std::cell::Cell::new(0u32);
    runner
        .run(
            &frames,
            |((v6, vlans, ttl, src, dst, l4, payload), (edits, fix_sum, cut, pad))| {
                let mut f = build(v6, vlans, ttl, src, dst, &l4, &payload);
                for (at, v) in edits {
                    if let Some(b) = f.get_mut(at) {
                        *b = v;
                    }
                }
                if fix_sum && f.len() >= 34 {
                    // Re-sum the (possibly edited) IPv4 header so edits past
                    // the checksum reach the later checks.
                    f[24] = 0;
                    f[25] = 0;
                    let c = crate::wire::checksum::checksum(&f[14..34]);
                    f[24..26].copy_from_slice(&c.to_be_bytes());
                }
                f.truncate(f.len().saturating_sub(cut));
                f.extend(std::iter::repeat_n(0u8, pad));
                let untouched = Parsed {
                    ttl: 7,
                    ..Parsed::default()
                };
                let mut fast = untouched;
                let mut general = Parsed::default();
                let g = parse_general(&f, &mut general);
                if parse_common_v4(&f, &mut fast) {
                    taken.set(taken.get() + 1);
                    prop_assert_eq!(g, Ok(()));
                    prop_assert_eq!(fast, general);
                } else {
                    prop_assert_eq!(fast, untouched);
                }
                Ok(())
            },
        )
        .unwrap();
    assert!(taken.get() > 2_000, "fast path taken {} times", taken.get());
}

#[test]
fn common_v4_takes_plain_tcp_and_udp() {
    for l4 in [L4::Tcp(1000, 80, 2), L4::Udp(53, 5353)] {
        let f = build(false, 0, 64, [10; 16], [20; 16], &l4, &[1; 30]);
        let mut p = Parsed::default();
        assert!(parse_common_v4(&f, &mut p), "{l4:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Frames etherparse builds parse to the fields it put in, and
    /// etherparse's own slicer agrees on the offsets.
    #[test]
    fn agrees_with_etherparse(v6: bool, vlans in 0u8..3, ttl: u8, src: [u8; 16], dst: [u8; 16],
                              l4 in arb_l4(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let f = build(v6, vlans, ttl, src, dst, &l4, &payload);
        let p = parse(&f).unwrap();
        let sliced = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        prop_assert_eq!(p.vlans, vlans);
        prop_assert_eq!(p.ttl, ttl);
        prop_assert_eq!(p.end as usize, f.len());
        match sliced.net.unwrap() {
            etherparse::NetSlice::Ipv4(ip) => {
                prop_assert_eq!(p.family, Family::V4);
                prop_assert_eq!(p.src, u128::from(u32::from(ip.header().source_addr())));
                prop_assert_eq!(p.dst, u128::from(u32::from(ip.header().destination_addr())));
                prop_assert_eq!(p.l3 as usize, ip.header().slice().as_ptr() as usize - f.as_ptr() as usize);
            }
            etherparse::NetSlice::Ipv6(ip) => {
                prop_assert_eq!(p.family, Family::V6);
                prop_assert_eq!(p.src, u128::from(ip.header().source_addr()));
                prop_assert_eq!(p.dst, u128::from(ip.header().destination_addr()));
            }
            _ => prop_assert!(false),
        }
        match (&l4, sliced.transport.unwrap()) {
            (L4::Tcp(s, d, fl), etherparse::TransportSlice::Tcp(t)) => {
                prop_assert_eq!(p.l4kind, L4Kind::Tcp);
                prop_assert_eq!((p.sport, p.dport), (*s, *d));
                prop_assert_eq!((t.source_port(), t.destination_port()), (*s, *d));
                prop_assert_eq!(p.tcp_flags & 7, fl & 7);
                prop_assert_eq!(p.l4 as usize, t.slice().as_ptr() as usize - f.as_ptr() as usize);
            }
            (L4::Udp(s, d), etherparse::TransportSlice::Udp(_)) => {
                prop_assert_eq!(p.l4kind, L4Kind::Udp);
                prop_assert_eq!((p.sport, p.dport), (*s, *d));
            }
            (L4::Icmp4Echo(id), _) => {
                prop_assert_eq!(p.l4kind, L4Kind::IcmpQuery);
                prop_assert_eq!((p.sport, p.dport), (*id, *id));
                prop_assert_eq!(p.icmp_type, if v6 { 128 } else { 8 });
            }
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
        }
    }

    /// Both header checks answer "the Internet checksum of the header
    /// is zero": the 20-byte one and the general one, with and without
    /// a valid checksum written in.
    #[test]
    fn header_checksum_checks(mut h: [u8; 20], fix: bool) {
        if fix {
            h[10] = 0;
            h[11] = 0;
            let c = crate::wire::checksum::checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let want = crate::wire::checksum::checksum(&h) == 0;
        prop_assert_eq!(ipv4_header20_ok(&h), want);
        prop_assert_eq!(ipv4_header_ok(&h), want);
    }

    /// Any bytes: no panic, and whatever parses has offsets inside the
    /// frame in order.
    #[test]
    fn never_panics(v6: bool, l4 in arb_l4(), cut in 0usize..120, flips in proptest::collection::vec((0usize..120, any::<u8>()), 0..6)) {
        let mut f = build(v6, 1, 64, [1; 16], [2; 16], &l4, &[9; 40]);
        for (i, b) in flips {
            if let Some(x) = f.get_mut(i) { *x ^= b; }
        }
        f.truncate(cut.max(1));
        if let Ok(p) = parse(&f) {
            prop_assert!(p.l3 <= p.l4 || p.l4kind == L4Kind::None);
            prop_assert!((p.end as usize) <= f.len());
            prop_assert!(p.l4 <= p.end);
        }
    }
}

#[test]
fn jumbogram() {
    // HBH with a Jumbo Payload option announcing 70000 bytes.
    let mut f = vec![0u8; 14 + 40 + 8 + 69992];
    f[12] = 0x86;
    f[13] = 0xdd;
    f[14] = 0x60;
    f[14 + 6] = 0; // next: hop-by-hop
    f[14 + 7] = 64;
    let h = 14 + 40;
    f[h] = 59; // then no next header
    f[h + 1] = 0;
    f[h + 2] = 0xc2;
    f[h + 3] = 4;
    f[h + 4..h + 8].copy_from_slice(&70000u32.to_be_bytes());
    let p = parse(&f).unwrap();
    assert_eq!(p.end as usize, 14 + 40 + 70000);
    assert_eq!(p.l4kind, L4Kind::Other);
    // Announce more than there is.
    f[h + 4..h + 8].copy_from_slice(&80000u32.to_be_bytes());
    assert_eq!(parse(&f), Err(Unparsed::Malformed));
}
