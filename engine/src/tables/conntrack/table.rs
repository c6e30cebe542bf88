//! The shared connection table: its entries, its index, the free list and
//! the insert locks, and where a hash lands in the index. Lookups, the
//! per-packet path, insertion and sweeping add their methods in their own
//! files.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};

use super::entry::Entry;
use super::index::{Bucket, SLOTS};
use super::key::{HashKeys, Key, Tuple};
use super::natref::{NatPortSink, NatRefs};
use crate::wire::parse::Family;

/// Insert locks, chosen by a key's hash.
pub(super) const STRIPES: usize = 4096;

/// The shared connection table.
#[derive(Debug)]
pub struct Conntrack {
    pub(super) entries: Box<[Entry]>,
    pub(super) index: Box<[Bucket]>,
    pub(super) bucket_mask: usize,
    pub(super) free_head: AtomicU64,
    pub(super) next_free: Box<[AtomicU64]>,
    /// Entries below this were handed out at least once; above, never.
    pub(super) bump: AtomicUsize,
    pub(super) live: AtomicUsize,
    pub(super) max: usize,
    /// Entries that never saw a reply, removed to make room in a full
    /// table (Linux's early drop).
    pub(super) evicted_unassured: AtomicU64,
    /// Inserts refused because the table was full and nothing could go.
    pub(super) refused_full: AtomicU64,
    pub(super) keys: HashKeys,
    pub(super) stripes: Box<[AtomicBool]>,
    pub(super) nat_refs: Option<NatRefs>,
}

impl Conntrack {
    /// A table for `max_entries` connections. `seed` keys the hash (use a
    /// random one live; replay uses a fixed one so runs repeat).
    pub fn new(max_entries: usize, seed: u64) -> Conntrack {
        let max = max_entries.clamp(1, (1 << 31) - 1);
        // Two keys per connection at no more than 50% slot load.
        let buckets = (max * 4).div_ceil(SLOTS).next_power_of_two().max(2);
        let next_free: Box<[AtomicU64]> = (0..max).map(|_| AtomicU64::new(0)).collect();
        let entries: Box<[Entry]> = (0..max).map(|_| Entry::default()).collect();
        let index: Box<[Bucket]> = (0..buckets).map(|_| Bucket::default()).collect();
        // Lookups land on random entries and buckets: huge pages keep a
        // million-connection table within the TLB's reach. Advice only: if
        // THP is off the table works the same, slower.
        let _ = crate::mem::advise_hugepages(&entries);
        let _ = crate::mem::advise_hugepages(&index);
        Conntrack {
            entries,
            index,
            bucket_mask: buckets - 1,
            // head: (aba counter << 32) | index; u32::MAX = empty.
            free_head: AtomicU64::new(u64::from(u32::MAX)),
            next_free,
            bump: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            max,
            evicted_unassured: AtomicU64::new(0),
            refused_full: AtomicU64::new(0),
            keys: HashKeys::from_seed(seed),
            stripes: (0..STRIPES).map(|_| AtomicBool::new(false)).collect(),
            nat_refs: None,
        }
    }

    /// Reports masquerade ports in use to `sink`: `slots` are the
    /// masquerade addresses in slot order. Set before traffic flows.
    pub fn with_nat_sink(
        mut self,
        slots: Vec<(Family, u128)>,
        sink: std::sync::Arc<dyn NatPortSink>,
    ) -> Self {
        let n = slots.len() * 3 * 65536;
        self.nat_refs = Some(NatRefs {
            slots,
            counts: (0..n)
                .map(|_| std::sync::atomic::AtomicU32::new(0))
                .collect(),
            sink,
        });
        self
    }

    /// Capacity.
    pub fn capacity(&self) -> usize {
        self.max
    }

    /// Live connections (including expired ones not yet removed).
    pub fn len(&self) -> usize {
        self.live.load(Relaxed)
    }

    /// Entries removed to make room because they never saw a reply.
    pub fn evicted_unassured(&self) -> u64 {
        self.evicted_unassured.load(Relaxed)
    }

    /// Inserts refused because the table was full.
    pub fn refused_full(&self) -> u64 {
        self.refused_full.load(Relaxed)
    }

    /// No live connections.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by entries and index.
    pub fn memory(&self) -> usize {
        self.entries.len() * std::mem::size_of::<Entry>()
            + std::mem::size_of_val(&*self.index)
            + self.next_free.len() * 8
    }

    /// Hash of a tuple under this table's seed.
    #[inline]
    pub fn hash(&self, t: &Tuple) -> u64 {
        self.keys.hash(&t.words())
    }

    /// Hash of a key under this table's seed (the same as
    /// [`Conntrack::hash`] of its tuple).
    #[inline]
    pub fn hash_key(&self, k: &Key) -> u64 {
        self.keys.hash(k)
    }

    /// The two buckets a key of hash `h` may live in (the first is
    /// [`Conntrack::first_bucket`]; the second differs from it).
    #[inline]
    pub(super) fn buckets(&self, h: u64) -> (usize, usize) {
        let b1 = self.first_bucket(h);
        let mut b2 =
            ((h >> 17) as usize ^ (h >> 47) as usize).wrapping_mul(0x9e37_79b9) & self.bucket_mask;
        if b2 == b1 {
            b2 = (b1 + 1) & self.bucket_mask;
        }
        (b1, b2)
    }

    /// The bucket a key of hash `h` goes to unless it is nearly full.
    #[inline]
    pub(super) fn first_bucket(&self, h: u64) -> usize {
        (h as usize) & self.bucket_mask
    }
}
