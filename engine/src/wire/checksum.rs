//! Internet checksums, computed the way Linux computes them.
//!
//! Full checksums ([`checksum`], [`pseudo_header_sum`]) are plain RFC 1071.
//! Incremental updates follow RFC 1624 eqn. 3 (`HC' = ~(~HC + ~m + m')`), and
//! are written as exact transcriptions of the kernel's `csum_replace4`,
//! `inet_proto_csum_replace{2,4,16}` and `ip_decrease_ttl`, operating on the
//! same little-endian reading of the header bytes that x86 Linux uses. Ones'
//! complement arithmetic has two zeros (0x0000 and 0xffff); following the
//! kernel's exact sequence of operations makes sluice pick the same one, which
//! is what "byte-identical to the kernel" needs. The property tests below check
//! every update against a full recomputation.

/// Ones'-complement sum of `data` (16-bit big-endian words, odd tail padded)
/// added to `initial`, not folded.
#[inline]
pub fn sum_be_words(data: &[u8], initial: u32) -> u64 {
    let mut sum = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    sum
}

/// Folds a wide ones'-complement sum to 16 bits (not complemented).
#[inline]
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum of `data`, big-endian, ready to store.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum_be_words(data, 0))
}

/// Sum of the IPv4 or IPv6 pseudo-header (addresses, protocol, length).
pub fn pseudo_header_sum(src: &[u8], dst: &[u8], proto: u8, len: u32) -> u64 {
    let s = sum_be_words(src, 0) + sum_be_words(dst, 0);
    s + u64::from(proto) + u64::from(len >> 16) + u64::from(len & 0xffff)
}

// --- Transcriptions of the kernel's helpers (include/net/checksum.h). ---
// Values are the little-endian reading of the wire bytes, as on x86.

#[inline]
fn csum_add(a: u32, b: u32) -> u32 {
    let res = a.wrapping_add(b);
    res.wrapping_add(u32::from(res < b))
}

#[inline]
fn csum_sub(a: u32, b: u32) -> u32 {
    csum_add(a, !b)
}

#[inline]
fn csum_fold(csum: u32) -> u16 {
    let sum = csum.wrapping_add(csum.rotate_left(16));
    !((sum >> 16) as u16)
}

#[inline]
fn le16(b: [u8; 2]) -> u32 {
    u32::from(u16::from_le_bytes(b))
}

#[inline]
fn le32(b: [u8; 4]) -> u32 {
    u32::from_le_bytes(b)
}

/// `csum_replace4`/`inet_proto_csum_replace4` for a 4-byte field change.
/// `check` is the checksum field's two bytes as they sit in the packet.
#[inline]
pub fn replace4(check: [u8; 2], from: [u8; 4], to: [u8; 4]) -> [u8; 2] {
    let tmp = csum_sub(!le16(check), le32(from));
    csum_fold(csum_add(tmp, le32(to))).to_le_bytes()
}

/// `inet_proto_csum_replace2` for a 2-byte field change (ports, ICMP id).
#[inline]
pub fn replace2(check: [u8; 2], from: [u8; 2], to: [u8; 2]) -> [u8; 2] {
    let tmp = csum_sub(!le16(check), le16(from));
    csum_fold(csum_add(tmp, le16(to))).to_le_bytes()
}

/// `inet_proto_csum_replace16` for an IPv6 address change.
#[inline]
pub fn replace16(check: [u8; 2], from: &[u8; 16], to: &[u8; 16]) -> [u8; 2] {
    // csum_partial over { ~from[0..4], to[0..4] } seeded with ~csum_unfold(check).
    let mut sum = u64::from(!le16(check));
    for i in 0..4 {
        let f = le32([
            from[4 * i],
            from[4 * i + 1],
            from[4 * i + 2],
            from[4 * i + 3],
        ]);
        let t = le32([to[4 * i], to[4 * i + 1], to[4 * i + 2], to[4 * i + 3]]);
        sum += u64::from(!f) + u64::from(t);
    }
    // Fold the 64-bit accumulator to 32 bits with end-around carry.
    let mut s = (sum & 0xffff_ffff) + (sum >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    csum_fold(s as u32).to_le_bytes()
}

/// `ip_decrease_ttl`'s checksum adjustment for a TTL decrement by one.
#[inline]
pub fn ttl_decrement(check: [u8; 2]) -> [u8; 2] {
    // check += htons(0x0100); check + (check >= 0xffff)
    let c = le16(check) + 0x0001;
    let c = c + u32::from(c >= 0xffff);
    (c as u16).to_le_bytes()
}

/// The UDP rule: a computed UDP checksum of zero is sent as 0xffff
/// (`CSUM_MANGLED_0`); a zero checksum field in IPv4 means "none".
#[inline]
pub fn udp_mangled(check: [u8; 2]) -> [u8; 2] {
    if check == [0, 0] {
        [0xff, 0xff]
    } else {
        check
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ipv4_header(ttl: u8, src: [u8; 4], dst: [u8; 4], extra: &[u8]) -> Vec<u8> {
        let ihl = 5 + extra.len() / 4;
        let mut h = vec![
            0x40 | ihl as u8,
            0,
            0,
            60,
            0x12,
            0x34,
            0x40,
            0,
            ttl,
            6,
            0,
            0,
        ];
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(extra);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    fn valid(h: &[u8]) -> bool {
        fold(sum_be_words(h, 0)) == 0xffff
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example bytes.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_be_words(&data, 0)), 0xddf2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn ttl_decrement_keeps_header_valid(ttl in 2u8.., src: [u8; 4], dst: [u8; 4]) {
            let mut h = ipv4_header(ttl, src, dst, &[]);
            let c = ttl_decrement([h[10], h[11]]);
            h[8] -= 1;
            h[10..12].copy_from_slice(&c);
            prop_assert!(valid(&h));
        }

        #[test]
        fn replace4_keeps_header_valid(ttl: u8, src: [u8; 4], dst: [u8; 4], new: [u8; 4]) {
            let mut h = ipv4_header(ttl, src, dst, &[]);
            let c = replace4([h[10], h[11]], src, new);
            h[12..16].copy_from_slice(&new);
            h[10..12].copy_from_slice(&c);
            prop_assert!(valid(&h));
        }

        #[test]
        fn replace2_and_16_keep_l4_valid(payload in proptest::collection::vec(any::<u8>(), 8..64),
                                          from: [u8; 16], to: [u8; 16], port: [u8; 2]) {
            // A fake L4 segment whose checksum covers a pseudo-header.
            let mut seg = payload.clone();
            seg[6] = 0; seg[7] = 0;
            let ph = pseudo_header_sum(&from, &[9; 16], 17, seg.len() as u32);
            let c = !fold(sum_be_words(&seg, 0) + ph);
            seg[6..8].copy_from_slice(&c.to_be_bytes());
            // Change the address (pseudo-header) and the port.
            let c = replace16([seg[6], seg[7]], &from, &to);
            let c = replace2(c, [seg[0], seg[1]], port);
            seg[0..2].copy_from_slice(&port);
            seg[6..8].copy_from_slice(&c);
            let ph2 = pseudo_header_sum(&to, &[9; 16], 17, seg.len() as u32);
            prop_assert_eq!(fold(sum_be_words(&seg, 0) + ph2), 0xffff);
        }
    }
}
