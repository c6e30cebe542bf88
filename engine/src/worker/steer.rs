//! Which worker a frame belongs to.
//!
//! Replay spreads frames over workers by a *symmetric* flow hash: both
//! directions of a connection land on the same worker, in order, which keeps
//! per-connection processing sequential and the results independent of the
//! number of workers.

use crate::wire::{self, Parsed};

#[inline]
fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser.
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[inline]
fn endpoint(addr: u128, port: u16) -> u64 {
    mix((addr as u64) ^ ((addr >> 64) as u64).rotate_left(17) ^ (u64::from(port) << 48))
}

/// A hash of the flow that is the same for both directions.
#[inline]
pub fn symmetric_hash(p: &Parsed) -> u64 {
    let a = endpoint(p.src, p.sport);
    let b = endpoint(p.dst, p.dport);
    // Order-independent combination that is not just XOR (which would send
    // every flow with src == dst to one bucket).
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    mix(lo ^ hi.rotate_left(23) ^ u64::from(p.proto))
}

/// Hash of a raw frame: the symmetric flow hash for IP, 0 for the rest.
pub fn frame_hash(frame: &[u8]) -> u64 {
    match wire::parse(frame) {
        Ok(p) => symmetric_hash(&p),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric() {
        let p = Parsed {
            src: 1,
            dst: 2,
            sport: 1000,
            dport: 80,
            proto: 6,
            ..Parsed::default()
        };
        let r = Parsed {
            src: 2,
            dst: 1,
            sport: 80,
            dport: 1000,
            ..p
        };
        assert_eq!(symmetric_hash(&p), symmetric_hash(&r));
        let other = Parsed { sport: 1001, ..p };
        assert_ne!(symmetric_hash(&p), symmetric_hash(&other));
    }
}
