//! Connection keys: a flow's tuple, the five words entries store it in,
//! and the keyed hash that places it in the index.

use crate::wire::parse::Family;

/// A tuple as the five words an entry stores it in ([`Tuple::words`]):
/// source low and high, destination low and high, then ports, protocol,
/// family and zone. The per-packet path builds, hashes and compares keys in
/// this form.
pub type Key = [u64; 5];

/// A flow as seen on the wire in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Tuple {
    pub src: u128,
    pub dst: u128,
    /// Ports, or the ICMP query identifier in both.
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: Family,
    /// Conntrack zone (`ports[].zone`, default 0).
    pub zone: u16,
}

impl Tuple {
    /// The same flow seen from the other end.
    #[inline]
    pub fn reverse(&self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..*self
        }
    }

    /// The tuple as the five words entries store.
    #[inline]
    pub fn words(&self) -> Key {
        [
            self.src as u64,
            (self.src >> 64) as u64,
            self.dst as u64,
            (self.dst >> 64) as u64,
            self.meta_word(),
        ]
    }

    #[inline]
    fn meta_word(&self) -> u64 {
        meta_word(self.sport, self.dport, self.proto, self.family, self.zone)
    }

    /// The inverse of [`Tuple::words`].
    #[inline]
    pub fn from_words(w: Key) -> Tuple {
        let meta = w[4];
        Tuple {
            src: u128::from(w[0]) | u128::from(w[1]) << 64,
            dst: u128::from(w[2]) | u128::from(w[3]) << 64,
            sport: meta as u16,
            dport: (meta >> 16) as u16,
            proto: (meta >> 32) as u8,
            family: if (meta >> 40) & 1 == 1 {
                Family::V6
            } else {
                Family::V4
            },
            zone: (meta >> 48) as u16,
        }
    }

    /// A keyed hash of the tuple (not direction-symmetric): [`HashKeys`]
    /// of `seed` over its words.
    #[inline]
    pub fn hash(&self, seed: u64) -> u64 {
        HashKeys::from_seed(seed).hash(&self.words())
    }
}

/// The last word of a [`Key`]: ports (or the ICMP query identifier in
/// both), protocol, family and zone.
#[inline]
pub fn meta_word(sport: u16, dport: u16, proto: u8, family: Family, zone: u16) -> u64 {
    u64::from(sport)
        | u64::from(dport) << 16
        | u64::from(proto) << 32
        | u64::from(family == Family::V6) << 40
        | u64::from(zone) << 48
}

/// The secret of the connection table's hash: five words drawn from a
/// seed (random live, fixed in replay so runs repeat).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKeys([u64; 5]);

impl HashKeys {
    /// Keys from `seed` (SplitMix64).
    pub fn from_seed(seed: u64) -> HashKeys {
        let mut x = seed;
        HashKeys(std::array::from_fn(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }))
    }

    /// A keyed hash of a key (not direction-symmetric), in the manner of
    /// foldhash: each pair of words, keyed, multiplied into 128 bits and
    /// folded; three multiplications in all. Without the keys an attacker
    /// cannot zero a factor, so cannot aim flows at one bucket.
    #[inline]
    pub fn hash(&self, w: &Key) -> u64 {
        let k = &self.0;
        let a = fold_mul(w[0] ^ k[0], w[2] ^ k[1]);
        let b = fold_mul(w[1] ^ k[2], w[3] ^ k[3]);
        fold_mul(a ^ w[4], b ^ k[4])
    }
}

/// The 128-bit product of `a` and `b`, its halves xored.
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A TCP/IPv4 tuple in zone 0 (tests).
#[cfg(test)]
pub(super) fn tcp_v4(a: u128, b: u128, sp: u16, dp: u16) -> Tuple {
    Tuple {
        src: a,
        dst: b,
        sport: sp,
        dport: dp,
        proto: 6,
        family: Family::V4,
        zone: 0,
    }
}
