//! Whole frames built from a description: Ethernet, IPv4 or IPv6, and a
//! TCP, UDP or ICMP header with valid checksums. `explain` synthesizes the
//! frame it runs through the pipeline with this; tests use it too.

use super::addr::Mac;
use super::checksum::{checksum, fold, pseudo_header_sum, sum_be_words};
use super::parse::{self, Family, Frag, L4Kind};
use super::rewrite;

/// What to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    pub dst_mac: Mac,
    pub src_mac: Mac,
    pub family: Family,
    pub src: u128,
    pub dst: u128,
    /// IP protocol: 6 TCP, 17 UDP, 1 / 58 ICMP; others get no L4 header.
    pub proto: u8,
    /// Ports (TCP, UDP), or an ICMP query's identifier in `sport`.
    pub sport: u16,
    pub dport: u16,
    /// ICMP type and code.
    pub icmp: (u8, u8),
    pub tcp_flags: u8,
    pub ttl: u8,
    /// Zero bytes after the L4 header.
    pub payload: usize,
}

fn addr_bytes(f: Family, a: u128) -> Vec<u8> {
    match f {
        Family::V4 => (a as u32).to_be_bytes().to_vec(),
        Family::V6 => a.to_be_bytes().to_vec(),
    }
}

/// The frame `s` describes.
pub fn frame(s: &FrameSpec) -> Vec<u8> {
    let mut l4 = match s.proto {
        6 => {
            let mut h = vec![0u8; 20];
            h[0..2].copy_from_slice(&s.sport.to_be_bytes());
            h[2..4].copy_from_slice(&s.dport.to_be_bytes());
            h[4..8].copy_from_slice(&1u32.to_be_bytes());
            if s.tcp_flags & 0x10 != 0 {
                h[8..12].copy_from_slice(&1u32.to_be_bytes());
            }
            h[12] = 5 << 4;
            h[13] = s.tcp_flags;
            h[14..16].copy_from_slice(&64240u16.to_be_bytes());
            h
        }
        17 => {
            let mut h = vec![0u8; 8];
            h[0..2].copy_from_slice(&s.sport.to_be_bytes());
            h[2..4].copy_from_slice(&s.dport.to_be_bytes());
            h
        }
        1 | 58 => {
            let mut h = vec![0u8; 8];
            h[0] = s.icmp.0;
            h[1] = s.icmp.1;
            h[4..6].copy_from_slice(&s.sport.to_be_bytes());
            h[6..8].copy_from_slice(&1u16.to_be_bytes());
            h
        }
        _ => Vec::new(),
    };
    l4.resize(l4.len() + s.payload, 0);
    if s.proto == 17 {
        let len = l4.len() as u16;
        l4[4..6].copy_from_slice(&len.to_be_bytes());
    }
    let (src, dst) = (addr_bytes(s.family, s.src), addr_bytes(s.family, s.dst));
    // Transport checksum (ICMPv4 has no pseudo-header).
    let csum_at = match s.proto {
        6 => Some(16),
        17 => Some(6),
        1 | 58 => Some(2),
        _ => None,
    };
    if let Some(at) = csum_at {
        let ph = if s.proto == 1 {
            0
        } else {
            pseudo_header_sum(&src, &dst, s.proto, l4.len() as u32)
        };
        let mut c = !fold(sum_be_words(&l4, 0) + ph);
        if c == 0 && s.proto == 17 {
            c = 0xffff;
        }
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let mut f = Vec::with_capacity(14 + 40 + l4.len());
    f.extend_from_slice(&s.dst_mac);
    f.extend_from_slice(&s.src_mac);
    match s.family {
        Family::V4 => {
            f.extend_from_slice(&[0x08, 0x00]);
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = s.ttl;
            ip[9] = s.proto;
            ip[12..16].copy_from_slice(&src);
            ip[16..20].copy_from_slice(&dst);
            let c = checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        Family::V6 => {
            f.extend_from_slice(&[0x86, 0xdd]);
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
            ip[6] = s.proto;
            ip[7] = s.ttl;
            ip[8..24].copy_from_slice(&src);
            ip[24..40].copy_from_slice(&dst);
            f.extend_from_slice(&ip);
        }
    }
    f.extend_from_slice(&l4);
    f
}

/// Makes a frame's checksums valid in place: the IPv4 header's, then the
/// transport's of a whole (unfragmented) TCP, UDP or ICMP packet. Fuzzers
/// use it so mutated frames get past checksum validation into the state
/// behind it (conntrack, NAT, policy); tests use it after editing bytes.
/// Returns whether the frame parsed.
pub fn fix_checksums(frame: &mut [u8]) -> bool {
    // The IPv4 header first: the parser refuses a bad one.
    let mut off = parse::ETH_LEN;
    let mut ty = frame
        .get(12..14)
        .map_or(0, |t| u16::from_be_bytes([t[0], t[1]]));
    for _ in 0..parse::MAX_VLAN_TAGS {
        if !matches!(ty, 0x8100 | 0x88a8 | 0x9100) {
            break;
        }
        ty = frame
            .get(off + 2..off + 4)
            .map_or(0, |t| u16::from_be_bytes([t[0], t[1]]));
        off += 4;
    }
    if ty == 0x0800 {
        let ihl = frame.get(off).map_or(0, |b| usize::from(b & 15) * 4);
        if ihl >= 20 {
            if let Some(h) = frame.get_mut(off..off + ihl) {
                h[10..12].copy_from_slice(&[0, 0]);
                let c = checksum(h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
        }
    }
    let Ok(p) = parse::parse(frame) else {
        return false;
    };
    if p.frag == Frag::Whole {
        match p.l4kind {
            L4Kind::Tcp | L4Kind::Udp => {
                rewrite::complete_checksum(frame, &p);
            }
            L4Kind::IcmpQuery | L4Kind::IcmpError | L4Kind::IcmpOther => {
                rewrite::recompute_icmp(frame, &p);
            }
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse, L4Kind};

    #[test]
    fn fixed_checksums_are_the_ones_built() {
        for (family, src, dst, proto, icmp) in [
            (Family::V4, 0x0a00_0001u128, 0x0a00_0002u128, 6, (0, 0)),
            (Family::V4, 0x0a00_0001, 0x0a00_0002, 17, (0, 0)),
            (Family::V4, 0x0a00_0001, 0x0a00_0002, 1, (8, 0)),
            (
                Family::V6,
                0xfd00 << 112 | 1,
                0xfd00 << 112 | 2,
                58,
                (128, 0),
            ),
            (Family::V6, 0xfd00 << 112 | 1, 0xfd00 << 112 | 2, 6, (0, 0)),
        ] {
            let good = frame(&FrameSpec {
                dst_mac: [2, 0, 0, 0, 0, 1],
                src_mac: [2, 0, 0, 0, 0, 2],
                family,
                src,
                dst,
                proto,
                sport: 0xbeef,
                dport: 80,
                icmp,
                tcp_flags: 0x02,
                ttl: 64,
                payload: 7,
            });
            let mut bad = good.clone();
            // Change a port and break every checksum.
            let l4 = if family == Family::V4 { 34 } else { 54 };
            bad[l4] ^= 0x11;
            if family == Family::V4 {
                bad[24] ^= 0xff;
            }
            for b in bad.iter_mut().rev().take(2) {
                *b ^= 0x5a;
            }
            assert!(fix_checksums(&mut bad), "{family:?} {proto}");
            assert_ne!(parse(&bad).unwrap().l4kind, L4Kind::None);
            let mut again = bad.clone();
            assert!(fix_checksums(&mut again));
            assert_eq!(again, bad, "fixing is idempotent");
            if family == Family::V4 {
                assert_eq!(checksum(&bad[14..34]), 0, "IPv4 header sums to zero");
            }
            let seg = &bad[l4..];
            let (s, d) = if family == Family::V4 {
                (&bad[26..30], &bad[30..34])
            } else {
                (&bad[22..38], &bad[38..54])
            };
            let ph = if proto == 1 {
                0
            } else {
                pseudo_header_sum(s, d, proto, seg.len() as u32)
            };
            assert_eq!(
                fold(sum_be_words(seg, 0) + ph),
                0xffff,
                "{family:?} {proto}"
            );
        }
    }

    #[test]
    fn built_frames_parse_back_and_etherparse_agrees_on_checksums() {
        for (family, src, dst) in [
            (Family::V4, 0x0a00_0001u128, 0x0a00_0002u128),
            (Family::V6, 0xfd00 << 112 | 1, 0xfd00 << 112 | 2),
        ] {
            for (proto, icmp) in [(6, (0, 0)), (17, (0, 0)), (1, (8, 0)), (58, (128, 0))] {
                if (proto == 1 && family == Family::V6) || (proto == 58 && family == Family::V4) {
                    continue;
                }
                let s = FrameSpec {
                    dst_mac: [2, 0, 0, 0, 0, 1],
                    src_mac: [2, 0, 0, 0, 0, 2],
                    family,
                    src,
                    dst,
                    proto,
                    sport: 4000,
                    dport: 80,
                    icmp,
                    tcp_flags: 0x02,
                    ttl: 64,
                    payload: 5,
                };
                let f = frame(&s);
                let p = parse(&f).unwrap();
                assert_eq!((p.family, p.src, p.dst, p.proto), (family, src, dst, proto));
                if proto == 6 || proto == 17 {
                    assert_eq!((p.sport, p.dport), (4000, 80));
                } else {
                    assert_eq!(p.l4kind, L4Kind::IcmpQuery);
                }
                // An independent parser checks the transport checksum.
                let e = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
                let ok = match (e.net, e.transport) {
                    (
                        Some(etherparse::NetSlice::Ipv4(ip)),
                        Some(etherparse::TransportSlice::Tcp(t)),
                    ) => {
                        t.to_header()
                            .calc_checksum_ipv4(&ip.header().to_header(), t.payload())
                            .unwrap()
                            == t.checksum()
                    }
                    (
                        Some(etherparse::NetSlice::Ipv6(ip)),
                        Some(etherparse::TransportSlice::Udp(u)),
                    ) => {
                        u.to_header()
                            .calc_checksum_ipv6(&ip.header().to_header(), u.payload())
                            .unwrap()
                            == u.checksum()
                    }
                    _ => true,
                };
                assert!(ok, "{s:?}");
            }
        }
    }
}
