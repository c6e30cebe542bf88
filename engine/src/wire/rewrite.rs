//! In-place rewrites of a parsed frame: MACs, TTL / hop limit, and (for NAT)
//! addresses and ports with incremental checksum updates in the kernel's
//! exact order of operations.
//!
//! Every function takes the frame and the [`Parsed`] the parser produced for
//! it and uses `get_mut`, so a mismatched pair is a no-op, never a panic.
//! Each returns the end offset of the bytes it wrote, so a caller that must
//! restore frames (pcap replay loops) knows how much to copy back.

use super::addr::Mac;
use super::checksum;
use super::parse::{Family, Frag, L4Kind, Parsed};

/// Header field offsets this module writes, from the start of each header
/// (smoltcp's `field` modules). Multi-byte fields are big-endian.
mod field {
    pub mod eth {
        /// Destination MAC, then source MAC: the first 12 bytes.
        pub const DST: usize = 0;
        pub const SRC: usize = 6;
        pub const MACS_END: usize = 12;
    }
    pub mod ipv4 {
        pub const TTL: usize = 8;
        pub const CHECKSUM: usize = 10;
        /// End of the header checksum (where the addresses start).
        pub const CHECKSUM_END: usize = 12;
        pub const SRC_ADDR: usize = 12;
        pub const DST_ADDR: usize = 16;
        /// Header without options.
        pub const MIN_LEN: usize = 20;
    }
    pub mod ipv6 {
        pub const HOP_LIMIT: usize = 7;
        pub const SRC_ADDR: usize = 8;
        pub const DST_ADDR: usize = 24;
        pub const ADDRS_END: usize = 40;
    }
    /// TCP, UDP, UDP-Lite and SCTP: the ports lead.
    pub mod ports {
        pub const SRC: usize = 0;
        pub const DST: usize = 2;
    }
    pub mod tcp {
        pub const CHECKSUM: usize = 16;
        pub const MIN_LEN: usize = 20;
    }
    pub mod udp {
        pub const CHECKSUM: usize = 6;
    }
    pub mod icmp {
        pub const CHECKSUM: usize = 2;
        /// End of type, code and checksum.
        pub const HEADER_END: usize = 4;
        /// The query identifier NAT rewrites like a port.
        pub const ID: usize = 4;
    }
    pub mod sctp {
        pub const CHECKSUM: usize = 8;
        pub const COMMON_LEN: usize = 12;
    }
}

use field::{eth, icmp, ipv4, ipv6, ports, sctp, tcp, udp};

/// Writes destination and source MACs. Returns bytes written (12).
#[inline]
pub fn set_macs(frame: &mut [u8], dst: &Mac, src: &Mac) -> u32 {
    if let Some(h) = frame.get_mut(0..eth::MACS_END) {
        h[eth::DST..eth::SRC].copy_from_slice(dst);
        h[eth::SRC..eth::MACS_END].copy_from_slice(src);
        eth::MACS_END as u32
    } else {
        0
    }
}

/// Decrements the TTL (IPv4, with the kernel's `ip_decrease_ttl` checksum
/// fix-up) or the hop limit (IPv6). Returns the end of the bytes written.
#[inline]
pub fn decrement_ttl(frame: &mut [u8], p: &Parsed) -> u32 {
    let l3 = p.l3 as usize;
    match p.family {
        Family::V4 => {
            if let Some(h) = frame.get_mut(l3..l3 + ipv4::CHECKSUM_END) {
                let c = checksum::ttl_decrement([h[ipv4::CHECKSUM], h[ipv4::CHECKSUM + 1]]);
                h[ipv4::TTL] = h[ipv4::TTL].wrapping_sub(1);
                h[ipv4::CHECKSUM] = c[0];
                h[ipv4::CHECKSUM + 1] = c[1];
                (l3 + ipv4::CHECKSUM_END) as u32
            } else {
                0
            }
        }
        Family::V6 => {
            if let Some(h) = frame.get_mut(l3 + ipv6::HOP_LIMIT) {
                *h = h.wrapping_sub(1);
                (l3 + ipv6::HOP_LIMIT + 1) as u32
            } else {
                0
            }
        }
    }
}

/// Whether a TCP or UDP segment carries a *partial* checksum: the field
/// holds the folded sum of the pseudo-header only, as a sender with
/// transmit checksum offload leaves it for the device to complete (Linux's
/// `CHECKSUM_PARTIAL`; a veth in a pod hands XDP such frames). A full
/// checksum that happens to equal that sum completes to itself, so treating
/// it as partial changes nothing. Whole datagrams only: a fragment's
/// checksum covers bytes it does not hold.
#[inline]
pub fn has_partial_checksum(frame: &[u8], p: &Parsed) -> bool {
    let ck = match p.l4kind {
        L4Kind::Tcp => tcp::CHECKSUM,
        L4Kind::Udp => udp::CHECKSUM,
        _ => return false,
    };
    if p.frag != Frag::Whole {
        return false;
    }
    let at = p.l4 as usize + ck;
    let Some(&[a, b]) = frame.get(at..at + 2) else {
        return false;
    };
    // The pseudo-header's 16-bit words summed two (IPv4) or four (IPv6)
    // lanes at a time; at most 2^22, so two folds finish it.
    let lanes = |x: u64| {
        let y = (x & 0x0000_ffff_0000_ffff) + ((x >> 16) & 0x0000_ffff_0000_ffff);
        (y & 0xffff_ffff) + (y >> 32)
    };
    let addrs = match p.family {
        Family::V4 => lanes((p.src as u64 & 0xffff_ffff) | (p.dst as u64) << 32),
        Family::V6 => {
            lanes(p.src as u64)
                + lanes((p.src >> 64) as u64)
                + lanes(p.dst as u64)
                + lanes((p.dst >> 64) as u64)
        }
    };
    let len = u64::from(p.end.wrapping_sub(p.l4));
    let sum = addrs + u64::from(p.proto) + (len & 0xffff) + (len >> 16);
    let f = (sum & 0xffff) + (sum >> 16);
    let f = (f & 0xffff) + (f >> 16);
    u64::from(u16::from_be_bytes([a, b])) == f
}

/// Completes the TCP or UDP checksum of a frame whose checksum was partial
/// (see [`has_partial_checksum`]), after any rewrite: the sum of the
/// segment and of the pseudo-header of the addresses it now carries,
/// stored as Linux's `skb_checksum_help` stores it for a device without
/// checksum offload (a zero result is sent as 0xffff). Returns the end of
/// the bytes written.
pub fn complete_checksum(frame: &mut [u8], p: &Parsed) -> u32 {
    let ck = match p.l4kind {
        L4Kind::Tcp => tcp::CHECKSUM,
        L4Kind::Udp => udp::CHECKSUM,
        _ => return 0,
    };
    let (l3, l4, end) = (p.l3 as usize, p.l4 as usize, p.end as usize);
    let (a0, a1) = match p.family {
        Family::V4 => (l3 + ipv4::SRC_ADDR, l3 + ipv4::DST_ADDR + 4),
        Family::V6 => (l3 + ipv6::SRC_ADDR, l3 + ipv6::ADDRS_END),
    };
    if end > frame.len() || l4 + ck + 2 > end || a1 > l4 {
        return 0;
    }
    frame[l4 + ck..l4 + ck + 2].copy_from_slice(&[0, 0]);
    let (addrs, seg) = frame.split_at(l4);
    let (src, dst) = addrs[a0..a1].split_at((a1 - a0) / 2);
    let sum = checksum::sum_be_words(&seg[..end - l4], 0)
        + checksum::pseudo_header_sum(src, dst, p.proto, (end - l4) as u32);
    let c = match !checksum::fold(sum) {
        0 => 0xffff,
        c => c,
    };
    frame[l4 + ck..l4 + ck + 2].copy_from_slice(&c.to_be_bytes());
    (l4 + ck + 2) as u32
}

/// Which side of the tuple a NAT rewrite changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
}

/// Offset of the transport checksum field, and whether it covers the
/// pseudo-header (so it changes with the addresses).
fn l4_checksum_field(p: &Parsed) -> Option<(usize, bool)> {
    let l4 = p.l4 as usize;
    match p.l4kind {
        // A TCP header quoted in an ICMP error may be cut after 8 bytes; the
        // kernel then rewrites the ports but not the checksum.
        L4Kind::Tcp if l4 + tcp::MIN_LEN > p.end as usize => None,
        L4Kind::Tcp => Some((l4 + tcp::CHECKSUM, true)),
        L4Kind::Udp | L4Kind::UdpLite => Some((l4 + udp::CHECKSUM, true)),
        L4Kind::IcmpQuery | L4Kind::IcmpError | L4Kind::IcmpOther => {
            Some((l4 + icmp::CHECKSUM, p.family == Family::V6))
        }
        _ => None,
    }
}

/// Rewrites the address (and, when the transport has them, the port or ICMP
/// identifier) on one side of the packet, updating the IPv4 header checksum
/// and the transport checksum incrementally, in the order the kernel's
/// `nf_nat_ipv{4,6}_manip_pkt` does: transport first (pseudo-header, then
/// port), then the IP header. A UDP checksum of zero stays zero (IPv4: "no
/// checksum"); a computed zero is sent as 0xffff. Returns the end of the
/// bytes written.
#[inline]
pub fn nat_rewrite(frame: &mut [u8], p: &Parsed, side: Side, addr: u128, port: u16) -> u32 {
    if p.family == Family::V4 {
        if let Some(w) = nat_rewrite_v4_ports(frame, p, side, addr as u32, port) {
            return w;
        }
    }
    nat_rewrite_general(frame, p, side, addr, port)
}

/// [`nat_rewrite`] for an IPv4 TCP or UDP packet with its checksum field
/// (nearly every NATed packet): the same bytes, by four fixed-size
/// updates. `None` for anything else, untouched.
#[inline]
fn nat_rewrite_v4_ports(
    frame: &mut [u8],
    p: &Parsed,
    side: Side,
    addr: u32,
    port: u16,
) -> Option<u32> {
    let (l3, l4) = (p.l3 as usize, p.l4 as usize);
    let is_udp = match p.l4kind {
        L4Kind::Tcp if l4 + tcp::MIN_LEN <= p.end as usize => false,
        L4Kind::Udp => true,
        _ => return None,
    };
    let ck = if is_udp {
        l4 + udp::CHECKSUM
    } else {
        l4 + tcp::CHECKSUM
    };
    let (aoff, poff) = match side {
        Side::Src => (l3 + ipv4::SRC_ADDR, l4 + ports::SRC),
        Side::Dst => (l3 + ipv4::DST_ADDR, l4 + ports::DST),
    };
    let new_addr = addr.to_be_bytes();
    let new_port = port.to_be_bytes();
    // Every field read and written below lies inside these two checks.
    if frame.len() < ck + 2 || l3 + ipv4::MIN_LEN > l4 {
        return None;
    }
    let old_addr: [u8; 4] = *frame.get(aoff..)?.first_chunk::<4>()?;
    let old_port: [u8; 2] = *frame.get(poff..)?.first_chunk::<2>()?;
    let c: [u8; 2] = *frame.get(ck..)?.first_chunk::<2>()?;
    let mut written = (aoff + 4).max(poff + 2);
    // Transport first (pseudo-header, then the port), as the kernel does;
    // an IPv4 UDP datagram without checksum keeps none.
    if !(is_udp && c == [0, 0]) {
        let mut c = checksum::replace4(c, old_addr, new_addr);
        c = checksum::replace2(c, old_port, new_port);
        if is_udp {
            c = checksum::udp_mangled(c);
        }
        frame.get_mut(ck..ck + 2)?.copy_from_slice(&c);
        written = written.max(ck + 2);
    }
    frame.get_mut(poff..poff + 2)?.copy_from_slice(&new_port);
    // Then the IP header.
    frame.get_mut(aoff..aoff + 4)?.copy_from_slice(&new_addr);
    let h = frame.get_mut(l3 + ipv4::CHECKSUM..l3 + ipv4::CHECKSUM_END)?;
    let c = checksum::replace4([h[0], h[1]], old_addr, new_addr);
    h.copy_from_slice(&c);
    Some(written as u32)
}

/// [`nat_rewrite`] for any packet.
#[inline(never)]
fn nat_rewrite_general(frame: &mut [u8], p: &Parsed, side: Side, addr: u128, port: u16) -> u32 {
    let l3 = p.l3 as usize;
    let (addr_off, alen) = match (p.family, side) {
        (Family::V4, Side::Src) => (l3 + ipv4::SRC_ADDR, 4),
        (Family::V4, Side::Dst) => (l3 + ipv4::DST_ADDR, 4),
        (Family::V6, Side::Src) => (l3 + ipv6::SRC_ADDR, 16),
        (Family::V6, Side::Dst) => (l3 + ipv6::DST_ADDR, 16),
    };
    let mut old_addr = [0u8; 16];
    let mut new_addr = [0u8; 16];
    match frame.get(addr_off..addr_off + alen) {
        Some(a) => old_addr[..alen].copy_from_slice(a),
        None => return 0,
    }
    if alen == 4 {
        new_addr[..4].copy_from_slice(&(addr as u32).to_be_bytes());
    } else {
        new_addr = addr.to_be_bytes();
    }
    let mut written = addr_off + alen;

    // Transport: pseudo-header change, then the port / identifier.
    let has_l4 = !matches!(p.l4kind, L4Kind::None | L4Kind::Other | L4Kind::Sctp);
    if has_l4 {
        let l4 = p.l4 as usize;
        let port_off = match (p.l4kind, side) {
            (L4Kind::IcmpQuery, _) => Some(l4 + icmp::ID),
            (L4Kind::IcmpError | L4Kind::IcmpOther, _) => None,
            (_, Side::Src) => Some(l4 + ports::SRC),
            (_, Side::Dst) => Some(l4 + ports::DST),
        };
        if let Some((ck, pseudo)) = l4_checksum_field(p) {
            let is_udp = matches!(p.l4kind, L4Kind::Udp);
            if let Some(c) = frame.get(ck..ck + 2) {
                let mut c = [c[0], c[1]];
                // An IPv4 UDP datagram without checksum keeps none.
                let do_csum = !(is_udp && c == [0, 0] && p.family == Family::V4);
                if do_csum {
                    if pseudo {
                        c = if alen == 4 {
                            checksum::replace4(
                                c,
                                [old_addr[0], old_addr[1], old_addr[2], old_addr[3]],
                                [new_addr[0], new_addr[1], new_addr[2], new_addr[3]],
                            )
                        } else {
                            checksum::replace16(c, &old_addr, &new_addr)
                        };
                    }
                    if let Some(po) = port_off {
                        if let Some(old) = frame.get(po..po + 2) {
                            let old = [old[0], old[1]];
                            // Like the kernel, always through replace2, even
                            // when the value does not change.
                            c = checksum::replace2(c, old, port.to_be_bytes());
                        }
                    }
                    if is_udp || p.l4kind == L4Kind::UdpLite {
                        c = checksum::udp_mangled(c);
                    }
                    if let Some(f) = frame.get_mut(ck..ck + 2) {
                        f.copy_from_slice(&c);
                        written = written.max(ck + 2);
                    }
                }
            }
        }
        if let Some(po) = port_off {
            if let Some(f) = frame.get_mut(po..po + 2) {
                f.copy_from_slice(&port.to_be_bytes());
                written = written.max(po + 2);
            }
        }
    } else if p.l4kind == L4Kind::Sctp {
        // SCTP's CRC32c covers no pseudo-header; the kernel's
        // `sctp_manip_pkt` recomputes it on every NAT rewrite.
        let l4 = p.l4 as usize;
        let po = if side == Side::Src {
            l4 + ports::SRC
        } else {
            l4 + ports::DST
        };
        if let Some(f) = frame.get_mut(po..po + 2) {
            f.copy_from_slice(&port.to_be_bytes());
            written = written.max(sctp_recrc(frame, p));
        }
    }

    // IP header last.
    if let Some(a) = frame.get_mut(addr_off..addr_off + alen) {
        a.copy_from_slice(&new_addr[..alen]);
    }
    if p.family == Family::V4 {
        if let Some(h) = frame.get_mut(l3..l3 + ipv4::CHECKSUM_END) {
            let c = checksum::replace4(
                [h[ipv4::CHECKSUM], h[ipv4::CHECKSUM + 1]],
                [old_addr[0], old_addr[1], old_addr[2], old_addr[3]],
                [new_addr[0], new_addr[1], new_addr[2], new_addr[3]],
            );
            h[ipv4::CHECKSUM] = c[0];
            h[ipv4::CHECKSUM + 1] = c[1];
        }
    }
    written as u32
}

/// Rewrites an ICMP error related to a NATed connection, as the kernel's
/// `nf_nat_icmp_reply_translation` does in one NAT hook: the quoted packet
/// gets the mirror of the translation (`inner_side` := `inner_addr`:
/// `inner_port`), the ICMP checksum is recomputed over the whole message,
/// then the outer header's `side` becomes `outer_addr`. Returns the end of
/// the bytes written.
pub fn icmp_related(
    frame: &mut [u8],
    outer: &Parsed,
    inner: &Parsed,
    side: Side,
    outer_addr: u128,
    inner_addr: u128,
    inner_port: u16,
) -> u32 {
    let inner_side = if side == Side::Src {
        Side::Dst
    } else {
        Side::Src
    };
    let w1 = nat_rewrite(frame, inner, inner_side, inner_addr, inner_port);
    let w2 = recompute_icmp(frame, outer);
    let w3 = nat_rewrite(frame, outer, side, outer_addr, 0);
    w1.max(w2).max(w3)
}

/// Recomputes an ICMP / ICMPv6 message's checksum from scratch.
pub fn recompute_icmp(frame: &mut [u8], p: &Parsed) -> u32 {
    let (l3, l4, end) = (p.l3 as usize, p.l4 as usize, p.end as usize);
    if frame
        .get(l4..end)
        .is_none_or(|m| m.len() < icmp::HEADER_END)
    {
        return 0;
    }
    if let Some(c) = frame.get_mut(l4 + icmp::CHECKSUM..l4 + icmp::HEADER_END) {
        c.copy_from_slice(&[0, 0]);
    }
    let mut sum = frame
        .get(l4..end)
        .map_or(0, |m| checksum::sum_be_words(m, 0));
    if p.family == Family::V6 {
        if let Some(h) = frame.get(l3 + ipv6::SRC_ADDR..l3 + ipv6::ADDRS_END) {
            let (src, dst) = h.split_at(ipv6::DST_ADDR - ipv6::SRC_ADDR);
            sum += checksum::pseudo_header_sum(src, dst, 58, (end - l4) as u32);
        }
    }
    let c = !checksum::fold(sum);
    if let Some(f) = frame.get_mut(l4 + icmp::CHECKSUM..l4 + icmp::HEADER_END) {
        f.copy_from_slice(&c.to_be_bytes());
    }
    (l4 + icmp::HEADER_END) as u32
}

/// Recomputes an SCTP packet's CRC32c. Returns the end of the bytes written.
fn sctp_recrc(frame: &mut [u8], p: &Parsed) -> usize {
    let l4 = p.l4 as usize;
    let end = p.end as usize;
    let Some(seg) = frame.get_mut(l4..end) else {
        return 0;
    };
    if seg.len() < sctp::COMMON_LEN {
        return 0;
    }
    seg[sctp::CHECKSUM..sctp::COMMON_LEN].copy_from_slice(&[0; 4]);
    let crc = crc32c(seg);
    seg[sctp::CHECKSUM..sctp::COMMON_LEN].copy_from_slice(&crc.to_le_bytes());
    end
}

/// CRC32c (Castagnoli), bitwise; used only when an SCTP port is rewritten.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82f6_3b78 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
            #![proptest_config(ProptestConfig::with_cases(20000))]

            /// The IPv4 TCP/UDP rewrite writes exactly the bytes the general
            /// one does (and reports the same extent), for either side, any
            /// address and port, a UDP checksum of zero or not, and TCP
            /// segments cut short as in quoted packets.
            #[test]
            fn v4_ports_agrees_with_general(udp: bool, zero_sum: bool, src: u32, dst: u32, sp: u16, dp: u16,
                                            payload in proptest::collection::vec(any::<u8>(), 0..24),
                                            dst_side: bool, addr: u32, port: u16, cut in prop_oneof![Just(0usize), 0usize..30]) {
                let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                    .ipv4(src.to_be_bytes(), dst.to_be_bytes(), 64);
                let mut f = Vec::new();
                if udp {
                    b.udp(sp, dp).write(&mut f, &payload).unwrap();
                    if zero_sum {
                        f[40] = 0;
                        f[41] = 0;
                    }
                } else {
                    b.tcp(sp, dp, 1, 100).write(&mut f, &payload).unwrap();
                }
                let Ok(mut p) = crate::wire::parse(&f) else { return Ok(()) };
                // A shorter end, as the quoted packet of an ICMP error has.
                p.end = p.end.saturating_sub(cut as u32).max(p.l4 + 8);
                let side = if dst_side { Side::Dst } else { Side::Src };
                let mut a = f.clone();
                let mut g = f.clone();
                let fast = nat_rewrite_v4_ports(&mut a, &p, side, addr, port);
                let wg = nat_rewrite_general(&mut g, &p, side, u128::from(addr), port);
                match fast {
                    Some(w) => {
                        prop_assert_eq!(w, wg);
                        prop_assert_eq!(a, g);
                    }
                    None => {
                        prop_assert!(!udp && p.l4 + 20 > p.end);
                        prop_assert_eq!(a, f);
                    }
                }
            }

            /// A partial checksum (the pseudo-header sum, as a sender with
            /// transmit offload leaves it) is recognised and completed to the
            /// full checksum, also after NAT changed an address and a port; a
            /// full checksum is left as it is.
            #[test]
            fn partial_checksums_complete(udp: bool, v6: bool, src: u128, dst: u128, sp: u16, dp: u16,
                                          payload in proptest::collection::vec(any::<u8>(), 0..64),
                                          nat: bool, addr: u128, port: u16) {
                let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
                let b = if v6 {
                    b.ipv6(src.to_be_bytes(), dst.to_be_bytes(), 64)
                } else {
                    b.ipv4((src as u32).to_be_bytes(), (dst as u32).to_be_bytes(), 64)
                };
                let mut full = Vec::new();
                if udp {
                    b.udp(sp, dp).write(&mut full, &payload).unwrap();
                } else {
                    b.tcp(sp, dp, 1, 100).write(&mut full, &payload).unwrap();
                }
                let p = crate::wire::parse(&full).unwrap();
                let ck = p.l4 as usize + if udp { udp::CHECKSUM } else { tcp::CHECKSUM };
                // What the kernel sends for this segment.
                let mut want = full.clone();
                complete_checksum(&mut want, &p);
                let verifies = |f: &[u8]| {
                    let q = crate::wire::parse(f).unwrap();
                    let (l3, l4, end) = (q.l3 as usize, q.l4 as usize, q.end as usize);
                    let (a, n) = if v6 { (l3 + 8, 16) } else { (l3 + 12, 4) };
                    let ps = checksum::pseudo_header_sum(&f[a..a + n], &f[a + n..a + 2 * n], q.proto, (end - l4) as u32);
                    checksum::fold(checksum::sum_be_words(&f[l4..end], 0) + ps) == 0xffff
                };
                prop_assert!(verifies(&want));
                // A full checksum: not partial, or (by coincidence) completing
                // to itself.
                if has_partial_checksum(&full, &p) {
                    prop_assert_eq!(&want, &full);
                }
                // The same segment with its partial checksum.
                let mut part = full.clone();
                let (l3, l4, end) = (p.l3 as usize, p.l4 as usize, p.end as usize);
                let (a, n) = if v6 { (l3 + 8, 16) } else { (l3 + 12, 4) };
                let ps = checksum::pseudo_header_sum(&full[a..a + n], &full[a + n..a + 2 * n], p.proto, (end - l4) as u32);
                part[ck..ck + 2].copy_from_slice(&checksum::fold(ps).to_be_bytes());
                prop_assert!(has_partial_checksum(&part, &p));
                let mut done = part.clone();
                complete_checksum(&mut done, &p);
                prop_assert_eq!(&done, &want);
                if nat {
                    let a = if v6 { addr } else { u128::from(addr as u32) };
                    let mut x = part.clone();
                    nat_rewrite(&mut x, &p, Side::Dst, a, port);
                    complete_checksum(&mut x, &p);
                    prop_assert!(verifies(&x));
                    // Completed first (as the pipeline does), then translated.
                    let mut y = part.clone();
                    complete_checksum(&mut y, &p);
                    nat_rewrite(&mut y, &p, Side::Dst, a, port);
                    prop_assert!(verifies(&y));
                }
            }
    }
}
