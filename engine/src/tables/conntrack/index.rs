//! The index's layout: buckets of slots, one cache line each. A slot is a
//! `u64` holding a 32-bit tag of a key's hash (never 0, so 0 is a free
//! slot), the key's direction (bit 31) and its entry number.

use std::sync::atomic::AtomicU64;

use super::entry::EntryId;
use super::state::Dir;

/// Slots per bucket.
pub(super) const SLOTS: usize = 8;
/// Slots in use from which a key may go to its second bucket.
pub(super) const SPILL: usize = 6;

/// One index bucket: [`SLOTS`] slots in exactly one cache line.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub(super) struct Bucket(pub(super) [AtomicU64; SLOTS]);

/// The tag of hash `h` in a slot.
#[inline]
pub(super) fn slot_tag(h: u64) -> u64 {
    // Never zero, so a used slot is never 0.
    (h >> 32) | 1
}

/// The entry and direction a slot value names.
#[inline]
pub(super) fn slot_entry(v: u64) -> (EntryId, Dir) {
    let dir = if v & (1 << 31) != 0 {
        Dir::Reply
    } else {
        Dir::Original
    };
    ((v & 0x7fff_ffff) as EntryId, dir)
}

/// The slot value naming entry `id` in direction `dir`, with tag `tag`.
#[inline]
pub(super) fn slot_make(tag: u64, dir: Dir, id: EntryId) -> u64 {
    tag << 32 | u64::from(dir == Dir::Reply) << 31 | u64::from(id)
}
