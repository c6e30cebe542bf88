//! A connection's entry: 128 bytes of atomics holding its two keys, its
//! status word (state, flags, liveness), the pipeline's aux word and route
//! cache, published under a per-entry sequence lock.

use std::sync::atomic::{fence, AtomicU64, Ordering::*};

use super::key::Tuple;
use super::state::{Dir, State};

/// Index of an entry.
pub type EntryId = u32;

/// Packs the data the pipeline attaches to an entry: the service a
/// connection was DNATed to (index + 1, 0 = none), the worker that created
/// it, and the policy decision id.
#[inline]
pub fn aux_pack(service: u16, owner: u8, decision: u32) -> u64 {
    u64::from(service) | u64::from(owner) << 16 | u64::from(decision) << 32
}

/// The service of an entry's aux (index + 1, 0 = none).
#[inline]
pub fn aux_service(aux: u64) -> u16 {
    aux as u16
}

/// The worker that created the entry.
#[inline]
pub fn aux_owner(aux: u64) -> u8 {
    (aux >> 16) as u8
}

/// The policy decision id.
#[inline]
pub fn aux_decision(aux: u64) -> u32 {
    (aux >> 32) as u32
}

// Entry layout. The first cache line holds sequence, state, last seen and
// the original key; the second the reply key, the pipeline's aux word, the
// creation time and the route cache ([`hops_of`]). A packet reads both
// (loaded together, see `warm`).

// State word layout: state (bits 0..8), flags (8..16), PLAIN (32), LIVE
// (63). Only state and flags change after insertion.
pub(super) const LIVE: u64 = 1 << 63;
/// The reply key is the original key reversed: nothing is translated in
/// either direction, so a lookup needs only its own key.
pub(super) const PLAIN: u64 = 1 << 32;
#[inline]
pub(super) fn st_state(w: u64) -> State {
    State::from_u8(w as u8)
}
#[inline]
pub(super) fn st_flags(w: u64) -> u8 {
    (w >> 8) as u8
}
#[inline]
pub(super) fn st_make(state: State, flags: u8) -> u64 {
    LIVE | u64::from(state as u8) | u64::from(flags) << 8
}

/// 128 bytes on a 128-byte boundary: exactly two cache lines (an
/// unaligned entry would straddle three, and a lookup would miss on each).
#[derive(Debug, Default)]
#[repr(C, align(128))]
pub(super) struct Entry {
    /// Sequence lock over the fields fixed at creation (odd: being written).
    pub(super) seq: AtomicU64,
    /// See "State word layout".
    pub(super) state: AtomicU64,
    /// Last seen (ns).
    pub(super) seen: AtomicU64,
    /// The original direction's key ([`Tuple::words`]).
    pub(super) orig: [AtomicU64; 5],
    /// The reply direction's key.
    pub(super) reply: [AtomicU64; 5],
    /// Service (u16) | owner (u8) | policy decision (u32).
    pub(super) aux: AtomicU64,
    pub(super) created: AtomicU64,
    /// The route cache: a hop id per direction and the tables generation
    /// they belong to ([`hops_of`]); written under the sequence lock.
    pub(super) hops: AtomicU64,
}

impl Entry {
    /// Every word (to clear the entry).
    pub(super) fn words(&self) -> impl Iterator<Item = &AtomicU64> {
        [&self.seq, &self.state, &self.seen]
            .into_iter()
            .chain(&self.orig)
            .chain(&self.reply)
            .chain([&self.aux, &self.created, &self.hops])
    }

    /// Takes the sequence lock (makes the sequence odd) and returns the
    /// even value it had, for [`Entry::unlock_seq`]; the writes that follow
    /// are ordered after it.
    /// Writers of an entry are one at a time already (an entry is
    /// inserted by the one thread that took it off the free list and
    /// killed by the one that flipped LIVE off), but `Conntrack::cache_hop`
    /// may hold the lock for a moment, so taking it is a compare-and-swap.
    pub(super) fn lock_seq(&self) -> u64 {
        loop {
            let s = self.seq.load(Relaxed);
            if self.try_lock_seq(s) {
                return s;
            }
            std::hint::spin_loop();
        }
    }

    /// Takes the sequence lock if the sequence is still the even value `s`;
    /// the writes that follow a success are ordered after it.
    pub(super) fn try_lock_seq(&self, s: u64) -> bool {
        if s & 1 == 1
            || self
                .seq
                .compare_exchange(s, s | 1, Acquire, Relaxed)
                .is_err()
        {
            return false;
        }
        fence(Release);
        true
    }

    /// Releases the sequence lock taken at even value `s`: readers that
    /// saw `s` retry.
    pub(super) fn unlock_seq(&self, s: u64) {
        self.seq.store(s.wrapping_add(2), Release);
    }
}

const _: () = assert!(std::mem::size_of::<Entry>() == 128);

/// A consistent copy of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub id: EntryId,
    pub orig: Tuple,
    pub reply: Tuple,
    pub state: State,
    pub flags: u8,
    pub last_seen: u64,
    pub created: u64,
    /// Opaque data the pipeline attached at creation (policy decision,
    /// service, backend).
    pub aux: u64,
}

/// An entry's tuple words as seen from direction `dir`: the packet's own
/// tuple and the other one (constant offsets, so no index is checked at run
/// time).
#[inline(always)]
pub(super) fn dir_words(e: &Entry, dir: Dir) -> (&[AtomicU64; 5], &[AtomicU64; 5]) {
    if dir == Dir::Original {
        (&e.orig, &e.reply)
    } else {
        (&e.reply, &e.orig)
    }
}

/// Whether five tuple words equal `key` (one branch, not five).
#[inline(always)]
pub(super) fn same_words(w: &[AtomicU64; 5], key: &[u64; 5]) -> bool {
    (w[0].load(Relaxed) ^ key[0])
        | (w[1].load(Relaxed) ^ key[1])
        | (w[2].load(Relaxed) ^ key[2])
        | (w[3].load(Relaxed) ^ key[3])
        | (w[4].load(Relaxed) ^ key[4])
        == 0
}

#[inline(always)]
pub(super) fn load_words(w: &[AtomicU64; 5]) -> [u64; 5] {
    std::array::from_fn(|i| w[i].load(Relaxed))
}

/// The hop id cached for direction `dir` in an entry's route-cache word
/// for tables of generation `gen`, or 0 (none, or another generation's).
/// The word holds the generation (high 32 bits) and a 16-bit hop id per
/// direction (original low); 0 is empty. What a hop id means belongs to
/// the tables ([`crate::tables::Hop`]); conntrack only keeps it.
#[inline(always)]
pub fn hops_of(word: u64, dir: Dir, gen: u32) -> u16 {
    if (word >> 32) as u32 != gen {
        return 0;
    }
    (word >> (16 * dir as u32)) as u16
}

/// `word` with direction `dir`'s hop set to `hop` for generation `gen`
/// (the other direction's kept if it is of the same generation).
#[inline]
pub fn with_hop(word: u64, dir: Dir, gen: u32, hop: u16) -> u64 {
    let keep = if (word >> 32) as u32 == gen {
        word & 0xffff_ffff
    } else {
        0
    };
    let shift = 16 * dir as u32;
    u64::from(gen) << 32 | (keep & !(0xffff << shift)) | u64::from(hop) << shift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_cache_word_keeps_a_hop_per_direction_and_generation() {
        let w = with_hop(0, Dir::Original, 7, 3);
        assert_eq!(hops_of(w, Dir::Original, 7), 3);
        assert_eq!(hops_of(w, Dir::Reply, 7), 0);
        assert_eq!(hops_of(w, Dir::Original, 8), 0);
        let w = with_hop(w, Dir::Reply, 7, 0xffff);
        assert_eq!(
            (hops_of(w, Dir::Original, 7), hops_of(w, Dir::Reply, 7)),
            (3, 0xffff)
        );
        // Another generation starts over.
        let w = with_hop(w, Dir::Reply, 8, 4);
        assert_eq!(
            (hops_of(w, Dir::Original, 8), hops_of(w, Dir::Reply, 8)),
            (0, 4)
        );
        assert_eq!(
            (hops_of(w, Dir::Original, 7), hops_of(w, Dir::Reply, 7)),
            (0, 0)
        );
    }
}
