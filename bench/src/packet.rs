//! A small, explicit packet builder for fixtures and workloads.
//!
//! Deliberately independent of the engine's parser (it writes headers field
//! by field from the RFCs), so tests can check one against the other, and
//! against etherparse.

use engine::wire::checksum;

/// An IP address in builder form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Ip {
    /// Parses a literal; panics on a bad literal (fixtures are constants).
    pub fn p(s: &str) -> Ip {
        match s.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(a)) => Ip::V4(a.octets()),
            Ok(std::net::IpAddr::V6(a)) => Ip::V6(a.octets()),
            Err(_) => panic!("bad address literal {s}"),
        }
    }
    fn bytes(&self) -> &[u8] {
        match self {
            Ip::V4(a) => a,
            Ip::V6(a) => a,
        }
    }
    /// IPv6?
    pub fn is_v6(&self) -> bool {
        matches!(self, Ip::V6(_))
    }
}

/// A MAC address.
pub type Mac = [u8; 6];

/// TCP flags.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

fn l4_checksum(src: Ip, dst: Ip, proto: u8, seg: &[u8]) -> u16 {
    let ph = checksum::pseudo_header_sum(src.bytes(), dst.bytes(), proto, seg.len() as u32);
    !checksum::fold(checksum::sum_be_words(seg, 0) + ph)
}

/// A TCP segment with a valid checksum.
// One argument per header field a workload varies.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    src: Ip,
    dst: Ip,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    fl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut s = Vec::with_capacity(20 + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&ack.to_be_bytes());
    s.push(5 << 4);
    s.push(fl);
    s.extend_from_slice(&64240u16.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    s.extend_from_slice(payload);
    let c = l4_checksum(src, dst, 6, &s);
    s[16..18].copy_from_slice(&c.to_be_bytes());
    s
}

/// A UDP datagram with a valid checksum (IPv4: `zero_csum` leaves it 0).
pub fn udp(src: Ip, dst: Ip, sport: u16, dport: u16, payload: &[u8], zero_csum: bool) -> Vec<u8> {
    let mut s = Vec::with_capacity(8 + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    if !zero_csum || src.is_v6() {
        let mut c = l4_checksum(src, dst, 17, &s);
        if c == 0 {
            c = 0xffff;
        }
        s[6..8].copy_from_slice(&c.to_be_bytes());
    }
    s
}

/// A UDP-Lite datagram with checksum coverage 0 (the whole datagram).
pub fn udplite(src: Ip, dst: Ip, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(8 + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    s.extend_from_slice(payload);
    let mut c = l4_checksum(src, dst, 136, &s);
    if c == 0 {
        c = 0xffff;
    }
    s[6..8].copy_from_slice(&c.to_be_bytes());
    s
}

/// An SCTP common header plus a DATA-ish chunk, CRC32c filled in.
pub fn sctp(sport: u16, dport: u16, vtag: u32, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&vtag.to_be_bytes());
    s.extend_from_slice(&[0; 4]);
    s.extend_from_slice(payload);
    let crc = engine::wire::rewrite::crc32c(&s);
    s[8..12].copy_from_slice(&crc.to_le_bytes());
    s
}

/// An ICMP (IPv4) message: type, code, the 4 "rest of header" bytes, body.
pub fn icmp4(ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut s = vec![ty, code, 0, 0];
    s.extend_from_slice(&rest);
    s.extend_from_slice(body);
    let c = checksum::checksum(&s);
    s[2..4].copy_from_slice(&c.to_be_bytes());
    s
}

/// An ICMPv6 message (checksum over the pseudo-header).
pub fn icmp6(src: Ip, dst: Ip, ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut s = vec![ty, code, 0, 0];
    s.extend_from_slice(&rest);
    s.extend_from_slice(body);
    let c = l4_checksum(src, dst, 58, &s);
    s[2..4].copy_from_slice(&c.to_be_bytes());
    s
}

/// IPv4 header fields beyond addresses and protocol.
#[derive(Clone, Debug)]
pub struct V4Opts {
    pub ttl: u8,
    pub id: u16,
    /// Flags and fragment offset word (DF 0x4000, MF 0x2000, offset in 8s).
    pub frag: u16,
    pub tos: u8,
    /// Options (padded to a multiple of 4 by the caller).
    pub options: Vec<u8>,
}

impl Default for V4Opts {
    fn default() -> Self {
        V4Opts {
            ttl: 64,
            id: 0x1234,
            frag: 0x4000,
            tos: 0,
            options: Vec::new(),
        }
    }
}

/// An IPv4 datagram with a valid header checksum.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, o: &V4Opts, payload: &[u8]) -> Vec<u8> {
    let ihl = 20 + o.options.len();
    let total = ihl + payload.len();
    let mut h = Vec::with_capacity(total);
    h.push(0x40 | (ihl / 4) as u8);
    h.push(o.tos);
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&o.id.to_be_bytes());
    h.extend_from_slice(&o.frag.to_be_bytes());
    h.push(o.ttl);
    h.push(proto);
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&o.options);
    let c = checksum::checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An IPv6 packet; `ext` is the raw extension-header chain whose first
/// header type is `first`, ending with `proto` as the last next-header.
pub fn ipv6(
    src: [u8; 16],
    dst: [u8; 16],
    hop: u8,
    first: u8,
    ext: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut h = Vec::with_capacity(40 + ext.len() + payload.len());
    h.extend_from_slice(&[0x60, 0, 0, 0]);
    h.extend_from_slice(&((ext.len() + payload.len()) as u16).to_be_bytes());
    h.push(first);
    h.push(hop);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(ext);
    h.extend_from_slice(payload);
    h
}

/// An IP packet of either family carrying `proto` with default options.
pub fn ip(src: Ip, dst: Ip, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (Ip::V4(s), Ip::V4(d)) => ipv4(
            s,
            d,
            proto,
            &V4Opts {
                ttl,
                ..V4Opts::default()
            },
            payload,
        ),
        (Ip::V6(s), Ip::V6(d)) => ipv6(s, d, ttl, proto, &[], payload),
        _ => panic!("mixed families"),
    }
}

/// Ethernet framing with optional VLAN tags `(tpid, tci)`.
pub fn eth(dst: Mac, src: Mac, tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * tags.len() + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    // Pad to the Ethernet minimum (60 bytes without FCS), as NICs do.
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// Ethernet frame around an IP packet of either family.
pub fn eth_ip(dst: Mac, src: Mac, ip: &[u8]) -> Vec<u8> {
    let et = if ip.first().map(|b| b >> 4) == Some(6) {
        0x86dd
    } else {
        0x0800
    };
    eth(dst, src, &[], et, ip)
}

/// An ARP request frame.
pub fn arp_request(src_mac: Mac, src_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&src_mac);
    a.extend_from_slice(&src_ip);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target_ip);
    eth([0xff; 6], src_mac, &[], 0x0806, &a)
}

/// Deterministic random numbers (splitmix64).
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }
}
