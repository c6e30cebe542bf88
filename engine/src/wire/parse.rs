//! One-pass frame parser: Ethernet (up to two VLAN tags) → IPv4 / IPv6 (with
//! extension headers) → TCP, UDP, UDP-Lite, SCTP, ICMP, ICMPv6.
//!
//! The parser reads each header once, checks its length once and returns a
//! [`Parsed`] holding offsets and the flow fields; every later access to the
//! frame goes through offsets this function validated. It never allocates and
//! never panics (every read is a bounds-checked `get`), which the fuzz target
//! `parse_pipeline` and the property tests against etherparse hold it to.
//!
//! What counts as malformed follows what Linux's receive path refuses
//! (`ip_rcv_core`, `ipv6_rcv`, conntrack's L4 `*_error` checks): a header cut
//! short, IHL below 5, a total length below the header or past the frame, a bad
//! IPv4 header checksum, a version nibble that contradicts the ethertype, an
//! IPv6 payload length past the frame, a broken jumbogram, a truncated or
//! misplaced extension header, a TCP data offset below 5 or past the segment, a
//! UDP length outside 8..=datagram. Non-IP frames (ARP, LLDP, MPLS, PPPoE,
//! 802.3 length frames, three or more VLAN tags) are not malformed: they go to
//! the kernel.

/// The frame could not be turned into a [`Parsed`] IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unparsed {
    /// Not IP (or not IP at a depth sluice handles): the kernel's business.
    NotIp,
    /// Broken: drop and count.
    Malformed,
}

/// IP version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub enum Family {
    #[default]
    V4,
    V6,
}

/// What the transport layer is, as far as sluice needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum L4Kind {
    /// No transport header available: a non-first fragment, or a first
    /// fragment too short to hold it.
    #[default]
    None,
    Tcp,
    Udp,
    UdpLite,
    Sctp,
    /// ICMP or ICMPv6 query (echo and friends) with an identifier in
    /// `sport`/`dport`.
    IcmpQuery,
    /// ICMP or ICMPv6 error quoting another packet at `inner`.
    IcmpError,
    /// Any other ICMP/ICMPv6 message (neighbour discovery, router
    /// advertisements, MLD, ...).
    IcmpOther,
    /// A protocol without ports (GRE, ESP, OSPF, IP-in-IP, ...).
    Other,
}

impl L4Kind {
    /// The protocol carries ports.
    #[inline]
    pub fn has_ports(self) -> bool {
        matches!(
            self,
            L4Kind::Tcp | L4Kind::Udp | L4Kind::UdpLite | L4Kind::Sctp
        )
    }
    /// ICMP or ICMPv6 with type and code available.
    #[inline]
    pub fn is_icmp(self) -> bool {
        matches!(
            self,
            L4Kind::IcmpQuery | L4Kind::IcmpError | L4Kind::IcmpOther
        )
    }
}

/// Fragment position of the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Frag {
    #[default]
    Whole,
    /// Offset 0 with more fragments to come.
    First,
    /// Offset > 0: no transport header.
    Later,
}

/// IP protocol numbers sluice knows by name.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
    pub const UDPLITE: u8 = 136;
}

/// Ethertypes.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const QINQ_OLD: u16 = 0x9100;
}

/// Length of an Ethernet header without tags.
pub const ETH_LEN: usize = 14;
/// Most VLAN tags sluice looks through (802.1Q, and QinQ).
pub const MAX_VLAN_TAGS: u8 = 2;
/// Most IPv6 extension headers walked before giving up (malformed).
pub const MAX_EXT_HEADERS: u8 = 8;

/// A parsed IP frame: offsets into the frame and the flow fields.
///
/// Addresses are `u128` for both families; an IPv4 address is its 32-bit
/// value (not v4-mapped), and `family` tells which.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Offset of the IP header.
    pub l3: u32,
    /// Offset of the transport header (meaningful when `l4kind` is not `None`).
    pub l4: u32,
    /// End of the IP datagram (bytes after it are link padding).
    pub end: u32,
    /// Offset of the quoted packet of an ICMP error (`l4 + 8`), else 0.
    pub inner: u32,
    pub src: u128,
    pub dst: u128,
    pub family: Family,
    /// Final protocol (after IPv6 extension headers).
    pub proto: u8,
    pub l4kind: L4Kind,
    pub frag: Frag,
    /// Source port, or the ICMP query identifier.
    pub sport: u16,
    /// Destination port, or the ICMP query identifier.
    pub dport: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10).
    pub tcp_flags: u8,
    /// TTL or hop limit.
    pub ttl: u8,
    /// Number of VLAN tags between the MACs and the IP header.
    pub vlans: u8,
}

/// TCP flag bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at + 2) {
        Some(&[x, y]) => Some(u16::from_be_bytes([x, y])),
        _ => None,
    }
}

#[inline]
fn arr<const N: usize>(b: &[u8], at: usize) -> Option<&[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Parses an Ethernet frame.
#[inline]
pub fn parse(frame: &[u8]) -> Result<Parsed, Unparsed> {
    let mut p = Parsed::default();
    parse_into(frame, &mut p).map(|()| p)
}

/// Parses an Ethernet frame into `p` (the pipeline's per-frame scratch), so
/// the result is written once in place rather than copied around.
#[inline]
pub fn parse_into(frame: &[u8], p: &mut Parsed) -> Result<(), Unparsed> {
    if parse_common_v4(frame, p) {
        return Ok(());
    }
    parse_general(frame, p)
}

/// The shape nearly every frame has: untagged Ethernet, IPv4 without
/// options and not fragmented, a sound header checksum and lengths, TCP or
/// UDP with a whole header inside the datagram. Fills `p` exactly as
/// [`parse_general`] would and returns true; anything else returns false
/// with `p` untouched, for the general parser to settle (including every
/// malformed case). A property test holds the two to the same answers.
#[inline]
fn parse_common_v4(frame: &[u8], p: &mut Parsed) -> bool {
    const L3: usize = ETH_LEN;
    const L4: usize = ETH_LEN + 20;
    // Ethernet, the IPv4 header and the first 8 bytes after it.
    let Some(b) = frame.first_chunk::<{ L4 + 8 }>() else {
        return false;
    };
    let h: &[u8; 20] = match b[L3..L4].try_into() {
        Ok(h) => h,
        Err(_) => return false,
    };
    // Ethertype IPv4, version 4 with IHL 5, no MF and offset 0.
    if b[12] != 0x08 || b[13] != 0x00 || h[0] != 0x45 || h[6] & 0x3f != 0 || h[7] != 0 {
        return false;
    }
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if total < 28 || L3 + total > frame.len() || !ipv4_header20_ok(h) {
        return false;
    }
    let seg = total - 20;
    let t = &b[L4..];
    let (kind, flags) = match h[9] {
        proto::TCP => {
            // Data offset and flags (the datagram holds 20 bytes of TCP).
            let Some(&[doff, flags]) = frame.get(L4 + 12..L4 + 14) else {
                return false;
            };
            let doff = usize::from(doff >> 4) * 4;
            if seg < 20 || doff < 20 || doff > seg {
                return false;
            }
            (L4Kind::Tcp, flags)
        }
        proto::UDP => {
            let ulen = usize::from(u16::from_be_bytes([t[4], t[5]]));
            if ulen < 8 || ulen > seg {
                return false;
            }
            (L4Kind::Udp, 0)
        }
        _ => return false,
    };
    *p = Parsed {
        l3: L3 as u32,
        l4: L4 as u32,
        end: (L3 + total) as u32,
        inner: 0,
        src: u128::from(u32::from_be_bytes([h[12], h[13], h[14], h[15]])),
        dst: u128::from(u32::from_be_bytes([h[16], h[17], h[18], h[19]])),
        family: Family::V4,
        proto: h[9],
        l4kind: kind,
        frag: Frag::Whole,
        sport: u16::from_be_bytes([t[0], t[1]]),
        dport: u16::from_be_bytes([t[2], t[3]]),
        icmp_type: 0,
        icmp_code: 0,
        tcp_flags: flags,
        ttl: h[8],
        vlans: 0,
    };
    true
}

/// Every frame: the one-pass parser of this module's docs.
#[inline(never)]
pub fn parse_general(frame: &[u8], p: &mut Parsed) -> Result<(), Unparsed> {
    *p = Parsed::default();
    let eth = arr::<ETH_LEN>(frame, 0).ok_or(Unparsed::Malformed)?;
    let mut ty = u16::from_be_bytes([eth[12], eth[13]]);
    let mut off = ETH_LEN;
    let mut vlans = 0u8;
    while matches!(ty, ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD) {
        if vlans == MAX_VLAN_TAGS {
            return Err(Unparsed::NotIp);
        }
        ty = be16(frame, off + 2).ok_or(Unparsed::Malformed)?;
        off += 4;
        vlans += 1;
    }
    p.vlans = vlans;
    match ty {
        ethertype::IPV4 => parse_ipv4(frame, off, p),
        ethertype::IPV6 => parse_ipv6(frame, off, p),
        _ => Err(Unparsed::NotIp),
    }
}

/// Whether a 20..60-byte IPv4 header's checksum verifies.
#[inline]
fn ipv4_header_ok(h: &[u8]) -> bool {
    let mut sum = 0u64;
    let mut words = h.chunks_exact(4);
    for w in &mut words {
        sum += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    // IHL is in 4-byte units, so there is no remainder.
    folds_to_ffff(sum)
}

/// Whether a sum of 32-bit words folds to 0xffff (a header whose checksum
/// verifies). Folding adds the high half to the low one, which keeps the
/// value modulo 0xffff (2^16 ≡ 1), and ends at 0xffff rather than 0 for a
/// nonzero sum: so the fold is 0xffff exactly when the sum is a nonzero
/// multiple of 0xffff. A remainder by a constant is a multiply and a
/// shift, fewer instructions than the folds (the property test below
/// checks it against them).
#[inline]
fn folds_to_ffff(sum: u64) -> bool {
    sum != 0 && sum.is_multiple_of(0xffff)
}

/// [`ipv4_header_ok`] for a header without options (nearly every packet):
/// five fixed words, no loop and no slice to cut. The words are read
/// little-endian: a ones'-complement sum of byte-swapped words is the
/// byte-swapped sum, and 0xffff reads the same either way.
#[inline]
fn ipv4_header20_ok(h: &[u8; 20]) -> bool {
    let w = |i: usize| u64::from(u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    folds_to_ffff(w(0) + w(4) + w(8) + w(12) + w(16))
}

/// Parses an IPv4 header at `off` and what follows it.
pub fn parse_ipv4(frame: &[u8], off: usize, p: &mut Parsed) -> Result<(), Unparsed> {
    use Unparsed::Malformed;
    let h = arr::<20>(frame, off).ok_or(Malformed)?;
    if h[0] >> 4 != 4 {
        return Err(Malformed);
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if ihl < 20 || total < ihl || off + total > frame.len() {
        return Err(Malformed);
    }
    let header_ok = if ihl == 20 {
        ipv4_header20_ok(h)
    } else {
        ipv4_header_ok(frame.get(off..off + ihl).ok_or(Malformed)?)
    };
    if !header_ok {
        return Err(Malformed);
    }
    let frag_field = u16::from_be_bytes([h[6], h[7]]);
    let frag = if frag_field & 0x1fff != 0 {
        Frag::Later
    } else if frag_field & 0x2000 != 0 {
        Frag::First
    } else {
        Frag::Whole
    };
    p.l3 = off as u32;
    p.l4 = (off + ihl) as u32;
    p.end = (off + total) as u32;
    p.src = u128::from(u32::from_be_bytes([h[12], h[13], h[14], h[15]]));
    p.dst = u128::from(u32::from_be_bytes([h[16], h[17], h[18], h[19]]));
    p.family = Family::V4;
    p.proto = h[9];
    p.frag = frag;
    p.ttl = h[8];
    if frag != Frag::Later {
        parse_l4(frame, p)?;
    }
    Ok(())
}

/// Parses an IPv6 header at `off`, its extension headers and the transport.
pub fn parse_ipv6(frame: &[u8], off: usize, p: &mut Parsed) -> Result<(), Unparsed> {
    use Unparsed::Malformed;
    let h = arr::<40>(frame, off).ok_or(Malformed)?;
    if h[0] >> 4 != 6 {
        return Err(Malformed);
    }
    let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let mut nh = h[6];
    let start = off + 40;
    let end = if plen == 0 && nh == 0 {
        start + jumbo_length(frame, start)?
    } else {
        start + plen
    };
    if end > frame.len() {
        return Err(Malformed);
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    dst.copy_from_slice(&h[24..40]);
    p.l3 = off as u32;
    p.end = end as u32;
    p.src = u128::from_be_bytes(src);
    p.dst = u128::from_be_bytes(dst);
    p.family = Family::V6;
    p.ttl = h[7];
    let mut at = start;
    let mut count = 0u8;
    loop {
        let len = match nh {
            // Hop-by-hop must come first (RFC 8200 4.1).
            0 if count != 0 => return Err(Malformed),
            0 | 43 | 60 | 135 | 139 | 140 | 253 | 254 => {
                let e = arr::<2>(frame, at).ok_or(Malformed)?;
                (usize::from(e[1]) + 1) * 8
            }
            // Authentication header: length in 4-octet units minus 2; an
            // IPv6 AH is at least 12 bytes.
            51 => {
                let e = arr::<2>(frame, at).ok_or(Malformed)?;
                if e[1] == 0 {
                    return Err(Malformed);
                }
                (usize::from(e[1]) + 2) * 4
            }
            44 => {
                let e = arr::<8>(frame, at).ok_or(Malformed)?;
                if at + 8 > end {
                    return Err(Malformed);
                }
                let offset = u16::from_be_bytes([e[2], e[3]]) >> 3;
                let more = e[3] & 1 != 0;
                if offset != 0 {
                    p.frag = Frag::Later;
                    p.proto = e[0];
                    p.l4 = (at + 8) as u32;
                    return Ok(());
                }
                if more {
                    p.frag = Frag::First;
                }
                8
            }
            _ => break,
        };
        if at + len > end {
            return Err(Malformed);
        }
        nh = frame.get(at).copied().ok_or(Malformed)?;
        at += len;
        count += 1;
        if count > MAX_EXT_HEADERS {
            return Err(Malformed);
        }
    }
    p.proto = nh;
    p.l4 = at as u32;
    parse_l4(frame, p)
}

/// The payload length of a jumbogram: the Jumbo Payload option of the
/// hop-by-hop header at `at` (RFC 2675), which must exist, exceed 65535 and be
/// the only length.
fn jumbo_length(frame: &[u8], at: usize) -> Result<usize, Unparsed> {
    use Unparsed::Malformed;
    let e = arr::<2>(frame, at).ok_or(Malformed)?;
    let hlen = (usize::from(e[1]) + 1) * 8;
    let opts = frame.get(at + 2..at + hlen).ok_or(Malformed)?;
    let mut i = 0;
    while i < opts.len() {
        let ty = opts[i];
        if ty == 0 {
            i += 1;
            continue;
        }
        let olen = usize::from(*opts.get(i + 1).ok_or(Malformed)?);
        if ty == 0xc2 && olen == 4 {
            let v = opts.get(i + 2..i + 6).ok_or(Malformed)?;
            let jlen = u32::from_be_bytes([v[0], v[1], v[2], v[3]]) as usize;
            if jlen <= 65535 {
                return Err(Malformed);
            }
            return Ok(jlen);
        }
        i += 2 + olen;
    }
    Err(Malformed)
}

fn parse_l4(frame: &[u8], p: &mut Parsed) -> Result<(), Unparsed> {
    use Unparsed::Malformed;
    let at = p.l4 as usize;
    let end = p.end as usize;
    let seg = frame.get(at..end).ok_or(Malformed)?;
    // In a first fragment a short transport header is not an error: the
    // rest is in later fragments. Such a packet is classified without ports.
    let fragment = p.frag != Frag::Whole;
    let short = |need: usize| -> Result<bool, Unparsed> {
        if seg.len() >= need {
            Ok(false)
        } else if fragment {
            Ok(true)
        } else {
            Err(Malformed)
        }
    };
    p.l4kind = match (p.proto, p.family) {
        (proto::TCP, _) => {
            if short(20)? {
                return Ok(());
            }
            let doff = usize::from(seg[12] >> 4) * 4;
            if doff < 20 {
                return Err(Malformed);
            }
            if doff > seg.len() {
                if fragment {
                    return Ok(());
                }
                return Err(Malformed);
            }
            p.sport = u16::from_be_bytes([seg[0], seg[1]]);
            p.dport = u16::from_be_bytes([seg[2], seg[3]]);
            p.tcp_flags = seg[13];
            L4Kind::Tcp
        }
        (proto::UDP | proto::UDPLITE, _) => {
            if short(8)? {
                return Ok(());
            }
            let ulen = usize::from(u16::from_be_bytes([seg[4], seg[5]]));
            if !fragment {
                let bad = if p.proto == proto::UDP {
                    ulen < 8 || ulen > seg.len()
                } else {
                    // UDP-Lite: the field is the checksum coverage, 0 = all.
                    ulen != 0 && (ulen < 8 || ulen > seg.len())
                };
                if bad {
                    return Err(Malformed);
                }
            }
            p.sport = u16::from_be_bytes([seg[0], seg[1]]);
            p.dport = u16::from_be_bytes([seg[2], seg[3]]);
            if p.proto == proto::UDP {
                L4Kind::Udp
            } else {
                L4Kind::UdpLite
            }
        }
        (proto::SCTP, _) => {
            if short(12)? {
                return Ok(());
            }
            p.sport = u16::from_be_bytes([seg[0], seg[1]]);
            p.dport = u16::from_be_bytes([seg[2], seg[3]]);
            L4Kind::Sctp
        }
        (proto::ICMP, Family::V4) | (proto::ICMPV6, Family::V6) => {
            if short(8)? {
                return Ok(());
            }
            p.icmp_type = seg[0];
            p.icmp_code = seg[1];
            let v6 = p.family == Family::V6;
            let id = u16::from_be_bytes([seg[4], seg[5]]);
            match (v6, seg[0]) {
                (false, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18) | (true, 128 | 129) => {
                    p.sport = id;
                    p.dport = id;
                    L4Kind::IcmpQuery
                }
                (false, 3 | 4 | 5 | 11 | 12) | (true, 1..=4) => {
                    p.inner = (at + 8) as u32;
                    L4Kind::IcmpError
                }
                _ => L4Kind::IcmpOther,
            }
        }
        _ => L4Kind::Other,
    };
    Ok(())
}

/// Parses the packet quoted in an ICMP error (at `p.inner`): its IP header
/// must be complete, but the datagram may be cut short (RFC 792 quotes the
/// header and 8 bytes; RFC 1812 as much as fits), so its length is not
/// checked against the frame and its checksum is not verified. The
/// transport needs its first 8 bytes (ports, or an ICMP query's
/// identifier). `end` of the result is the end of what is quoted.
pub fn parse_quoted(frame: &[u8], outer: &Parsed) -> Option<Parsed> {
    let off = outer.inner as usize;
    let limit = outer.end as usize;
    let frame = frame.get(..limit)?;
    let mut p = Parsed::default();
    match outer.family {
        Family::V4 => {
            let h = arr::<20>(frame, off)?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if h[0] >> 4 != 4 || ihl < 20 || off + ihl > frame.len() {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            p.l3 = off as u32;
            p.l4 = (off + ihl) as u32;
            p.end = (off + total.max(ihl)).min(frame.len()) as u32;
            p.src = u128::from(u32::from_be_bytes([h[12], h[13], h[14], h[15]]));
            p.dst = u128::from(u32::from_be_bytes([h[16], h[17], h[18], h[19]]));
            p.family = Family::V4;
            p.proto = h[9];
            p.ttl = h[8];
            if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
                p.frag = Frag::Later;
                return Some(p);
            }
        }
        Family::V6 => {
            let h = arr::<40>(frame, off)?;
            if h[0] >> 4 != 6 {
                return None;
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&h[8..24]);
            dst.copy_from_slice(&h[24..40]);
            p.l3 = off as u32;
            p.src = u128::from_be_bytes(src);
            p.dst = u128::from_be_bytes(dst);
            p.family = Family::V6;
            p.ttl = h[7];
            let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            p.end = (off + 40 + plen).min(frame.len()) as u32;
            // Walk extension headers as far as they are quoted.
            let mut nh = h[6];
            let mut at = off + 40;
            for _ in 0..MAX_EXT_HEADERS {
                let len = match nh {
                    0 | 43 | 60 | 135 | 139 | 140 => (usize::from(*frame.get(at + 1)?) + 1) * 8,
                    51 => (usize::from(*frame.get(at + 1)?) + 2) * 4,
                    44 => {
                        let e = arr::<8>(frame, at)?;
                        if u16::from_be_bytes([e[2], e[3]]) >> 3 != 0 {
                            p.frag = Frag::Later;
                            p.proto = e[0];
                            return Some(p);
                        }
                        8
                    }
                    _ => break,
                };
                nh = *frame.get(at)?;
                at += len;
            }
            p.proto = nh;
            p.l4 = at as u32;
        }
    }
    let l4 = p.l4 as usize;
    let seg = frame.get(l4..l4 + 8)?;
    match (p.proto, p.family) {
        (proto::TCP | proto::UDP | proto::UDPLITE | proto::SCTP, _) => {
            p.sport = u16::from_be_bytes([seg[0], seg[1]]);
            p.dport = u16::from_be_bytes([seg[2], seg[3]]);
            p.l4kind = match p.proto {
                proto::TCP => L4Kind::Tcp,
                proto::UDP => L4Kind::Udp,
                proto::UDPLITE => L4Kind::UdpLite,
                _ => L4Kind::Sctp,
            };
        }
        (proto::ICMP, Family::V4) | (proto::ICMPV6, Family::V6) => {
            p.icmp_type = seg[0];
            p.icmp_code = seg[1];
            if icmp_reply_type(p.family, seg[0]).is_some() {
                let id = u16::from_be_bytes([seg[4], seg[5]]);
                p.sport = id;
                p.dport = id;
                p.l4kind = L4Kind::IcmpQuery;
            } else {
                p.l4kind = L4Kind::IcmpOther;
            }
        }
        _ => p.l4kind = L4Kind::Other,
    }
    Some(p)
}

/// ICMP query types and their replies (conntrack's `invmap`).
pub fn icmp_reply_type(family: Family, ty: u8) -> Option<u8> {
    match (family, ty) {
        (Family::V4, 8) => Some(0),
        (Family::V4, 0) => Some(8),
        (Family::V4, 13) => Some(14),
        (Family::V4, 14) => Some(13),
        (Family::V4, 15) => Some(16),
        (Family::V4, 16) => Some(15),
        (Family::V4, 17) => Some(18),
        (Family::V4, 18) => Some(17),
        (Family::V6, 128) => Some(129),
        (Family::V6, 129) => Some(128),
        _ => None,
    }
}

/// ICMP query types that start a conversation (requests).
pub fn icmp_is_request(family: Family, ty: u8) -> bool {
    matches!(
        (family, ty),
        (Family::V4, 8 | 13 | 15 | 17) | (Family::V6, 128)
    )
}

// The tests are a file of their own (`parse/tests.rs`): as long as the
// parser, and a different idea (oracles, hand-built frames).
#[cfg(test)]
mod tests;
