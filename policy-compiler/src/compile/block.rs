//! Leaf rules of the IPv4 engines as SIMD blocks: four rules per block,
//! field by field, every field of the four compared at once with SSE2
//! (through `wide`, no `unsafe`). Shared by the cut trees' leaves and the
//! DFA's leaves.

use wide::i32x4;

use super::types::{Addr, EKey, NFIELDS};

/// No multi-range check for this rule.
pub(crate) const NO_EXT: u32 = u32::MAX;

/// Four leaf rules, field-major: per field the rules' lower bounds and
/// their widths `hi − lo` with the sign bit flipped (SSE2 compares signed),
/// as pairs `[lo, span]`. What every scanned block reads (priorities and
/// the address fields, 80 bytes) comes first, so it spans two cache lines
/// wherever the block starts; the rest is read only when an address matches.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct Block {
    /// The rules' priorities (`u32::MAX` in padding lanes).
    prio: [u32; 4],
    /// Source, destination.
    addr: [[i32x4; 2]; 2],
    /// The rules' `ext` indexes.
    ext: [u32; 4],
    /// Class, protocol, source port, destination port.
    rest: [[i32x4; 2]; 4],
}

/// One rule for [`push_blocks`]: inclusive bounds per field (field order
/// of [`EKey`]), priority, and its `ext` index (or [`NO_EXT`]).
pub(crate) struct BlockRule {
    pub(crate) lo: [u32; NFIELDS],
    pub(crate) hi: [u32; NFIELDS],
    pub(crate) prio: u32,
    pub(crate) ext: u32,
}

/// Append `rules` (in priority order) as `ceil(len / 4)` blocks.
pub(crate) fn push_blocks(
    blocks: &mut Vec<Block>,
    rules: impl ExactSizeIterator<Item = BlockRule>,
) {
    let mut lo = [[0i32; 4]; NFIELDS];
    let mut span = [[i32::MIN; 4]; NFIELDS];
    let mut prio = [u32::MAX; 4];
    let mut ext = [NO_EXT; 4];
    let n = rules.len();
    for (i, r) in rules.enumerate() {
        let j = i % 4;
        for f in 0..NFIELDS {
            lo[f][j] = r.lo[f] as i32;
            span[f][j] = (r.hi[f].wrapping_sub(r.lo[f]) ^ 0x8000_0000) as i32;
        }
        prio[j] = r.prio;
        ext[j] = r.ext;
        if j == 3 || i + 1 == n {
            let pair = |f: usize| [i32x4::new(lo[f]), i32x4::new(span[f])];
            blocks.push(Block {
                prio,
                addr: [pair(1), pair(2)],
                ext,
                rest: [pair(0), pair(3), pair(4), pair(5)],
            });
            lo = [[0i32; 4]; NFIELDS];
            span = [[i32::MIN; 4]; NFIELDS];
            prio = [u32::MAX; 4];
            ext = [NO_EXT; 4];
        }
    }
}

/// The priority of a block's first rule (for debugging statistics).
pub(crate) fn first_prio(b: &Block) -> u32 {
    b.prio[0]
}

/// A key's fields, each broadcast to four lanes (IPv4).
pub(crate) struct KeyVec([i32x4; NFIELDS]);

impl KeyVec {
    const ZERO: KeyVec = KeyVec([i32x4::ZERO; NFIELDS]);
    /// The vector form of an IPv4 key; unused (zero) for IPv6, whose
    /// leaves are scanned rule by rule.
    #[inline(always)]
    pub(crate) fn of<A: Addr>(k: &EKey<A>) -> KeyVec {
        if A::BITS != 32 {
            return KeyVec::ZERO;
        }
        // Written out: `array::map` goes through an out-of-line `try_map`.
        let f = |i: usize| i32x4::splat(k.f[i].to_u128() as u32 as i32);
        KeyVec([f(0), f(1), f(2), f(3), f(4), f(5)])
    }
}

/// The first rule of `blocks` (in priority order) matching `kv` with a
/// priority below `best`, else `best`: four rules at a time, every field
/// compared at once (`key − lo ≤ hi − lo`, unsigned, as a signed compare
/// of biased values), then the matching lanes in priority order; a rule
/// with an `ext` index matches only if `ext_ok` says so.
#[inline(always)]
pub(crate) fn scan(
    blocks: &[Block],
    kv: &KeyVec,
    best: u32,
    mut ext_ok: impl FnMut(u32) -> bool,
) -> u32 {
    let bias = i32x4::splat(i32::MIN);
    for blk in blocks {
        if blk.prio[0] >= best {
            return best;
        }
        let out = |k: i32x4, [lo, span]: [i32x4; 2]| ((k - lo) ^ bias).simd_gt(span);
        // The addresses first: they rule out most blocks on their own.
        let bad = out(kv.0[1], blk.addr[0]) | out(kv.0[2], blk.addr[1]);
        if bad.to_bitmask() == 0xf {
            continue;
        }
        let bad = bad
            | out(kv.0[0], blk.rest[0])
            | out(kv.0[3], blk.rest[1])
            | out(kv.0[4], blk.rest[2])
            | out(kv.0[5], blk.rest[3]);
        let mut m = !(bad.to_bitmask()) & 0xf;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            let p = blk.prio[i % 4];
            if p >= best {
                return best;
            }
            let e = blk.ext[i % 4];
            if e == NO_EXT || ext_ok(e) {
                return p;
            }
            m &= m - 1;
        }
    }
    best
}

/// [`scan`] for rules with no `ext` and a class field that is always 0
/// (the byte DFA's leaves when the list has one class): the class is not
/// compared, and there is no early exit on the addresses (the DFA has
/// usually read them already, so they rarely rule a block out).
#[inline(always)]
pub(crate) fn scan_no_class(blocks: &[Block], kv: &KeyVec, best: u32) -> u32 {
    let bias = i32x4::splat(i32::MIN);
    for blk in blocks {
        if blk.prio[0] >= best {
            return best;
        }
        let out = |k: i32x4, [lo, span]: [i32x4; 2]| ((k - lo) ^ bias).simd_gt(span);
        let bad = out(kv.0[1], blk.addr[0])
            | out(kv.0[2], blk.addr[1])
            | out(kv.0[3], blk.rest[1])
            | out(kv.0[4], blk.rest[2])
            | out(kv.0[5], blk.rest[3]);
        let m = !(bad.to_bitmask()) & 0xf;
        if m != 0 {
            // Lanes are in priority order. A padding lane (all bounds 0)
            // matches an all-zero key, but its priority is `u32::MAX`,
            // which never beats `best`.
            let p = blk.prio[m.trailing_zeros() as usize % 4];
            return p.min(best);
        }
    }
    best
}
