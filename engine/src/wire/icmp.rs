//! ICMP errors the node itself sends, written in place over the packet
//! they are about: IPv4 "fragmentation needed" (type 3 code 4, with the
//! next-hop MTU) and ICMPv6 "packet too big" (type 2), as Linux's
//! `icmp_send` / `icmp6_send` build them: the offending packet quoted from
//! its IP header on, up to 576 bytes of IPv4 datagram (548 quoted) or the
//! IPv6 minimum MTU (1232 quoted); IPv4 TOS `(tos & 0x1e) | 0xc0`, no DF,
//! TTL / hop limit 64, traffic class 0. The frame's buffer holds the
//! original, which is longer than the error: the quote moves right by the
//! new headers and the frame shrinks.

use super::checksum::{checksum, fold, pseudo_header_sum, sum_be_words};
use super::parse::Family;

/// Quoted bytes at most.
pub const QUOTE_V4: usize = 576 - 20 - 8;
pub const QUOTE_V6: usize = 1280 - 40 - 8;

/// Turns the frame (Ethernet and VLAN tags up to `l3`, then the
/// offending IP packet of `ip_len` bytes) into the error from `src` to the
/// packet's source, reporting `mtu`; `id` is the IPv4 identification.
/// Returns the new frame length, or `None` if the frame is too short.
pub fn too_big_in_place(
    frame: &mut [u8],
    l3: usize,
    ip_len: usize,
    family: Family,
    src: u128,
    mtu: u32,
    id: u16,
) -> Option<usize> {
    match family {
        Family::V4 => {
            let q = ip_len.min(QUOTE_V4);
            let end = l3 + 28 + q;
            if frame.len() < end || q < 20 {
                return None;
            }
            let tos = frame[l3 + 1];
            let orig_src: [u8; 4] = frame.get(l3 + 12..l3 + 16)?.try_into().ok()?;
            frame.copy_within(l3..l3 + q, l3 + 28);
            let ip = frame.get_mut(l3..l3 + 20)?;
            ip[0] = 0x45;
            ip[1] = (tos & 0x1e) | 0xc0;
            ip[2..4].copy_from_slice(&((28 + q) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&id.to_be_bytes());
            ip[6..8].copy_from_slice(&[0, 0]);
            ip[8] = 64;
            ip[9] = 1;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&(src as u32).to_be_bytes());
            ip[16..20].copy_from_slice(&orig_src);
            let c = checksum(ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let icmp = frame.get_mut(l3 + 20..end)?;
            icmp[0] = 3;
            icmp[1] = 4;
            icmp[2..4].copy_from_slice(&[0, 0]);
            icmp[4..6].copy_from_slice(&[0, 0]);
            icmp[6..8].copy_from_slice(&(mtu.min(0xffff) as u16).to_be_bytes());
            let c = checksum(icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            Some(end)
        }
        Family::V6 => {
            let q = ip_len.min(QUOTE_V6);
            let end = l3 + 48 + q;
            if frame.len() < end || q < 40 {
                return None;
            }
            let orig_src: [u8; 16] = frame.get(l3 + 8..l3 + 24)?.try_into().ok()?;
            frame.copy_within(l3..l3 + q, l3 + 48);
            let ip = frame.get_mut(l3..l3 + 40)?;
            ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            ip[4..6].copy_from_slice(&((8 + q) as u16).to_be_bytes());
            ip[6] = 58;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&src.to_be_bytes());
            ip[24..40].copy_from_slice(&orig_src);
            let ph = pseudo_header_sum(&src.to_be_bytes(), &orig_src, 58, (8 + q) as u32);
            let icmp = frame.get_mut(l3 + 40..end)?;
            icmp[0] = 2;
            icmp[1] = 0;
            icmp[2..4].copy_from_slice(&[0, 0]);
            icmp[4..8].copy_from_slice(&mtu.to_be_bytes());
            let c = !fold(sum_be_words(icmp, 0) + ph);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            Some(end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build::{frame, FrameSpec};
    use crate::wire::{parse, L4Kind};

    #[test]
    fn errors_parse_as_icmp_errors_quoting_the_packet() {
        for (family, src, dst, me) in [
            (
                Family::V4,
                0x0a00_0002u128,
                0x0a01_0002u128,
                0x0a00_0001u128,
            ),
            (
                Family::V6,
                0xfd00 << 112 | 2,
                0xfd01 << 112 | 2,
                0xfd00 << 112 | 1,
            ),
        ] {
            let spec = FrameSpec {
                dst_mac: [2, 0, 0, 0, 0, 1],
                src_mac: [2, 0, 0, 0, 0, 2],
                family,
                src,
                dst,
                proto: 17,
                sport: 5000,
                dport: 53,
                icmp: (0, 0),
                tcp_flags: 0,
                ttl: 64,
                payload: 1400,
            };
            let mut f = frame(&spec);
            let orig = f.clone();
            let ip_len = f.len() - 14;
            let n = too_big_in_place(&mut f, 14, ip_len, family, me, 1400, 7).unwrap();
            f.truncate(n);
            let p = parse(&f).unwrap();
            assert_eq!(p.l4kind, L4Kind::IcmpError, "{family:?}");
            assert_eq!((p.src, p.dst), (me, src));
            let (hdr, q) = match family {
                Family::V4 => (28, QUOTE_V4),
                Family::V6 => (48, QUOTE_V6),
            };
            assert_eq!(n, 14 + hdr + q);
            assert_eq!(
                &f[14 + hdr..],
                &orig[14..14 + q],
                "the quote is the packet's start"
            );
            // An independent parser agrees on the checksums.
            let e = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
            match e.transport {
                Some(etherparse::TransportSlice::Icmpv4(i)) => {
                    assert_eq!(
                        i.icmp_type(),
                        etherparse::Icmpv4Type::DestinationUnreachable(
                            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                                next_hop_mtu: 1400
                            }
                        )
                    );
                    assert_eq!(i.checksum(), i.icmp_type().calc_checksum(i.payload()));
                }
                Some(etherparse::TransportSlice::Icmpv6(i)) => {
                    assert_eq!(
                        i.icmp_type(),
                        etherparse::Icmpv6Type::PacketTooBig { mtu: 1400 }
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
