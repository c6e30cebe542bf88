//! Adding and removing connections: the striped insert locks (two workers
//! cannot insert one key twice), the free list of entries (a Treiber stack
//! with an ABA counter), placing and clearing index slots, and emptying the
//! table.

use std::sync::atomic::{AtomicU64, Ordering::*};

use super::entry::{st_make, EntryId, Snapshot, LIVE, PLAIN};
use super::index::{slot_make, slot_tag, SPILL};
use super::key::Tuple;
use super::state::{flags, Dir, State, Timeouts};
use super::table::{Conntrack, STRIPES};

/// Why an insert failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// `max_entries` connections are live and none had expired.
    Full,
    /// The original key exists already (another worker won the race).
    OrigExists,
    /// The reply key exists already (for SNAT: pick another port).
    ReplyExists,
}

/// Entries examined for an expired one when inserting into a full table.
const EVICT_SCAN: usize = 32;

impl Conntrack {
    #[inline]
    fn stripe(h: u64) -> usize {
        (h as usize >> 7) % STRIPES
    }

    fn lock(&self, i: usize) {
        if let Some(l) = self.stripes.get(i) {
            while l
                .compare_exchange_weak(false, true, Acquire, Relaxed)
                .is_err()
            {
                std::hint::spin_loop();
            }
        }
    }

    fn unlock(&self, i: usize) {
        if let Some(l) = self.stripes.get(i) {
            l.store(false, Release);
        }
    }

    fn alloc(&self) -> Option<EntryId> {
        let mut head = self.free_head.load(Acquire);
        loop {
            let idx = head as u32;
            if idx == u32::MAX || idx as usize >= self.max {
                // Free list empty: take a never-used entry.
                let i = self.bump.fetch_add(1, AcqRel);
                if i < self.max {
                    return Some(i as EntryId);
                }
                self.bump.fetch_sub(1, AcqRel);
                return None;
            }
            let next = self.next_free.get(idx as usize)?.load(Relaxed);
            let new = ((head >> 32).wrapping_add(1) << 32) | (next & 0xffff_ffff);
            match self
                .free_head
                .compare_exchange_weak(head, new, AcqRel, Acquire)
            {
                Ok(_) => return Some(idx),
                Err(h) => head = h,
            }
        }
    }

    fn free(&self, id: EntryId) {
        let mut head = self.free_head.load(Acquire);
        loop {
            if let Some(n) = self.next_free.get(id as usize) {
                n.store(head & 0xffff_ffff, Relaxed);
            }
            let new = ((head >> 32).wrapping_add(1) << 32) | u64::from(id);
            match self
                .free_head
                .compare_exchange_weak(head, new, AcqRel, Acquire)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Puts a key into its first bucket while that has fewer than
    /// [`SPILL`] slots in use, else into the less loaded of its two ("power
    /// of two choices" where it matters: with 8-slot buckets at no more
    /// than 50% load, both buckets full is vanishingly rare; a full pair is
    /// reported as a full table). Most keys so live in their first bucket,
    /// and a lookup of a known connection reads one line of index.
    fn put_slot(&self, h: u64, value: u64) -> bool {
        let (b1, b2) = self.buckets(h);
        let load = |b: usize| {
            self.index
                .get(b)
                .map_or(0, |b| b.0.iter().filter(|s| s.load(Relaxed) != 0).count())
        };
        let l1 = load(b1);
        let (first, second) = if l1 >= SPILL && load(b2) < l1 {
            (b2, b1)
        } else {
            (b1, b2)
        };
        for b in [first, second] {
            for s in self.index.get(b).into_iter().flat_map(|b| &b.0) {
                if s.compare_exchange(0, value, AcqRel, Relaxed).is_ok() {
                    return true;
                }
            }
        }
        false
    }

    fn clear_slot(&self, t: &Tuple, id: EntryId, dir: Dir) {
        let h = self.hash(t);
        let want = slot_make(slot_tag(h), dir, id);
        let (b1, b2) = self.buckets(h);
        for b in [b1, b2] {
            for s in self.index.get(b).into_iter().flat_map(|b| &b.0) {
                if s.compare_exchange(want, 0, AcqRel, Relaxed).is_ok() {
                    return;
                }
            }
        }
    }

    /// Inserts a connection with its original and reply tuples. On success
    /// the entry is live with `state`, `flags`, `aux` and last-seen `now`.
    /// Evicts expired entries first when the table is full.
    // The new entry's tuples, state, flags and aux, and the clock and
    // timeouts its existence checks and eviction need: all plain values.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &self,
        orig: &Tuple,
        reply: &Tuple,
        state: State,
        flags: u8,
        aux: u64,
        now: u64,
        to: &Timeouts,
    ) -> Result<EntryId, InsertError> {
        let ho = self.hash(orig);
        let hr = self.hash(reply);
        // Take both keys' stripes in index order (one if they coincide), so
        // no other insert of either key can interleave.
        let (a, b) = (Self::stripe(ho), Self::stripe(hr));
        let (lo, hi) = (a.min(b), a.max(b));
        self.lock(lo);
        if hi != lo {
            self.lock(hi);
        }
        let r = self.insert_locked(orig, reply, ho, hr, state, flags, aux, now, to);
        if hi != lo {
            self.unlock(hi);
        }
        self.unlock(lo);
        r
    }

    /// [`Conntrack::insert`] holding both keys' stripes, `ho` and `hr`
    /// their hashes.
    // `insert`'s arguments and the two hashes it computed.
    #[allow(clippy::too_many_arguments)]
    fn insert_locked(
        &self,
        orig: &Tuple,
        reply: &Tuple,
        ho: u64,
        hr: u64,
        state: State,
        flags: u8,
        aux: u64,
        now: u64,
        to: &Timeouts,
    ) -> Result<EntryId, InsertError> {
        if self.lookup(orig, ho, now, to).is_some() {
            return Err(InsertError::OrigExists);
        }
        if self.lookup(reply, hr, now, to).is_some() {
            return Err(InsertError::ReplyExists);
        }
        if self.live.load(Relaxed) >= self.max {
            // Expired entries go first, then (as Linux's early drop) one
            // that never saw a reply; each a bounded look, so a flood
            // against a full table costs each flow little and cannot keep
            // new connections out while it lasts.
            self.evict_some(now, to, EVICT_SCAN);
            if self.live.load(Relaxed) >= self.max {
                self.evict_unassured(now, EVICT_SCAN);
            }
        }
        if self.live.fetch_add(1, AcqRel) >= self.max {
            self.live.fetch_sub(1, AcqRel);
            self.refused_full.fetch_add(1, Relaxed);
            return Err(InsertError::Full);
        }
        let Some(id) = self.alloc() else {
            self.live.fetch_sub(1, AcqRel);
            self.refused_full.fetch_add(1, Relaxed);
            return Err(InsertError::Full);
        };
        let Some(e) = self.entries.get(id as usize) else {
            self.live.fetch_sub(1, AcqRel);
            return Err(InsertError::Full);
        };
        // Publish under the sequence lock.
        let s = e.lock_seq();
        let put = |w: &[AtomicU64; 5], t: &Tuple| {
            for (w, v) in w.iter().zip(t.words()) {
                w.store(v, Relaxed);
            }
        };
        put(&e.orig, orig);
        put(&e.reply, reply);
        e.aux.store(aux, Relaxed);
        e.created.store(now, Relaxed);
        e.hops.store(0, Relaxed);
        e.seen.store(now, Relaxed);
        let plain = if *reply == orig.reverse() { PLAIN } else { 0 };
        e.state.store(st_make(state, flags) | plain, Relaxed);
        e.unlock_seq(s);
        // A key whose two buckets are full (rare, but a table kept full by
        // churn meets it) makes room there by the early drop, once.
        let put = |h: u64, dir: Dir| {
            let v = slot_make(slot_tag(h), dir, id);
            self.put_slot(h, v) || (self.evict_unassured_in(h, id) && self.put_slot(h, v))
        };
        let ok1 = put(ho, Dir::Original);
        let ok2 = ok1 && put(hr, Dir::Reply);
        if !ok2 {
            // Still no room for a key: a full table.
            if ok1 {
                self.clear_slot(orig, id, Dir::Original);
            }
            self.kill(id);
            self.refused_full.fetch_add(1, Relaxed);
            return Err(InsertError::Full);
        }
        if flags & flags::SNAT != 0 {
            if let Some(n) = &self.nat_refs {
                n.claim(reply);
            }
        }
        Ok(id)
    }

    /// Marks an entry dead and returns it to the free list (slots already
    /// cleared). Only the caller that flipped LIVE off frees it.
    fn kill(&self, id: EntryId) -> bool {
        let Some(e) = self.entries.get(id as usize) else {
            return false;
        };
        let mut st = e.state.load(Acquire);
        loop {
            if st & LIVE == 0 {
                return false;
            }
            match e
                .state
                .compare_exchange_weak(st, st & !LIVE, AcqRel, Acquire)
            {
                Ok(_) => break,
                Err(x) => st = x,
            }
        }
        // Bump the sequence so readers holding old copies retry and see it dead.
        let s = e.lock_seq();
        e.unlock_seq(s);
        self.live.fetch_sub(1, AcqRel);
        self.free(id);
        true
    }

    /// Removes a connection (both keys).
    pub fn remove(&self, snap: &Snapshot) {
        self.clear_slot(&snap.orig, snap.id, Dir::Original);
        self.clear_slot(&snap.reply, snap.id, Dir::Reply);
        if self.kill(snap.id) && snap.flags & flags::SNAT != 0 {
            if let Some(n) = &self.nat_refs {
                n.release(&snap.reply);
            }
        }
    }

    /// Empties the table. Only while no other thread uses it (replay
    /// `--fresh-state` calls it between loops, at a barrier).
    pub fn clear(&self) {
        if let Some(n) = &self.nat_refs {
            for s in self.snapshot_all() {
                if s.flags & flags::SNAT != 0 {
                    n.release(&s.reply);
                }
            }
        }
        for e in self.entries.iter().take(self.bump.load(Acquire)) {
            // Sequence numbers only grow, so a reader holding an old
            // sequence never mistakes a reused entry for the one it read.
            let seq = e.seq.load(Relaxed);
            for w in e.words() {
                w.store(0, Relaxed);
            }
            e.seq.store((seq | 1).wrapping_add(1), Relaxed);
        }
        for s in self.index.iter().flat_map(|b| &b.0) {
            s.store(0, Relaxed);
        }
        self.free_head.store(u64::from(u32::MAX), Relaxed);
        self.bump.store(0, Relaxed);
        self.live.store(0, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::conntrack::key::tcp_v4 as t;
    use crate::tables::conntrack::natref::NatPortSink;
    use crate::wire::parse::Family;

    #[test]
    fn concurrent_inserts_of_one_key_have_one_winner() {
        let ct = std::sync::Arc::new(Conntrack::new(1 << 12, 7));
        let to = Timeouts::default();
        let wins: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|w| {
                    let ct = ct.clone();
                    s.spawn(move || {
                        let mut won = 0;
                        for i in 0..2000u16 {
                            // Every worker tries the same 2000 keys, with
                            // distinct originals but one shared reply each.
                            let o = t(100 + w, 2, i, 80);
                            let r = t(2, 9, 80, i);
                            if ct.insert(&o, &r, State::SynSent, 0, 0, 0, &to).is_ok() {
                                won += 1;
                            }
                        }
                        won
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 2000);
        assert_eq!(ct.len(), 2000);
    }

    #[derive(Debug, Default)]
    struct Bits(std::sync::Mutex<std::collections::HashSet<(u8, u8, u16)>>);
    impl NatPortSink for Bits {
        fn set(&self, slot: u8, proto: u8, port: u16, in_use: bool) {
            let mut b = self.0.lock().unwrap();
            if in_use {
                assert!(b.insert((slot, proto, port)), "set twice");
            } else {
                assert!(b.remove(&(slot, proto, port)), "cleared while clear");
            }
        }
    }

    #[test]
    fn masquerade_ports_are_reference_counted() {
        let bits = std::sync::Arc::new(Bits::default());
        let masq = 0xc000_0201u128;
        let ct = Conntrack::new(8, 1).with_nat_sink(vec![(Family::V4, masq)], bits.clone());
        let to = Timeouts {
            tcp_established: 10,
            ..Timeouts::default()
        };
        // Two connections share masquerade port 40000 towards different servers.
        let o1 = t(10, 50, 40000, 443);
        let r1 = t(50, masq, 443, 40000);
        let o2 = t(11, 51, 40000, 443);
        let r2 = t(51, masq, 443, 40000);
        ct.insert(&o1, &r1, State::Established, flags::SNAT, 0, 0, &to)
            .unwrap();
        ct.insert(&o2, &r2, State::Established, flags::SNAT, 0, 5, &to)
            .unwrap();
        assert!(bits.0.lock().unwrap().contains(&(0, 6, 40000)));
        // The first expires; the port stays in use for the second.
        assert!(ct.lookup(&o1, ct.hash(&o1), 12, &to).is_none());
        assert!(bits.0.lock().unwrap().contains(&(0, 6, 40000)));
        assert!(ct.lookup(&o2, ct.hash(&o2), 20, &to).is_none());
        assert!(bits.0.lock().unwrap().is_empty());
    }
}
