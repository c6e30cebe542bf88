//! Expiry: each worker sweeps its own slice of the entries a few per
//! batch, and an insert into a full table sweeps a little from a point of
//! its own; both remove entries past their timeout. When that frees
//! nothing, the insert drops the least recently seen of a few entries that
//! never saw a reply (Linux's early drop of unassured connections).

use std::sync::atomic::Ordering::*;

use super::entry::{aux_owner, st_flags, st_state, EntryId, LIVE};
use super::index::slot_entry;
use super::state::flags;
use super::state::Timeouts;
use super::table::Conntrack;

impl Conntrack {
    /// Sweeps `count` entries starting at `*cursor` (wrapping inside
    /// `range`), removing expired ones; with `owner`, only entries whose
    /// [`aux_owner`] is that. Returns how many it removed.
    pub fn sweep_owned(
        &self,
        range: std::ops::Range<usize>,
        cursor: &mut usize,
        count: usize,
        now: u64,
        to: &Timeouts,
        owner: Option<u8>,
    ) -> usize {
        let std::ops::Range { start: lo, end: hi } = self.used_part(range);
        if lo >= hi {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..count.min(hi - lo) {
            if *cursor < lo || *cursor >= hi {
                *cursor = lo;
            }
            let id = *cursor as EntryId;
            *cursor += 1;
            // Cheap check first: state and last-seen words only.
            let Some(e) = self.entries.get(id as usize) else {
                continue;
            };
            let st = e.state.load(Relaxed);
            if st & LIVE == 0 || now.saturating_sub(e.seen.load(Relaxed)) <= to.of(st_state(st)) {
                continue;
            }
            if let Some(s) = self.read(id) {
                if owner.is_some_and(|o| aux_owner(s.aux) != o) {
                    continue;
                }
                if now.saturating_sub(s.last_seen) > to.of(s.state) {
                    self.remove(&s);
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Entries lookups still find at `now`: live and not past their
    /// timeout (what `ctl` and the metrics count; expired entries wait for
    /// the sweep). One pass over the entries handed out so far.
    pub fn unexpired(&self, now: u64, to: &Timeouts) -> usize {
        let used = self.bump.load(Relaxed).min(self.max);
        self.entries
            .iter()
            .take(used)
            .filter(|e| {
                let st = e.state.load(Relaxed);
                st & LIVE != 0 && now.saturating_sub(e.seen.load(Relaxed)) <= to.of(st_state(st))
            })
            .count()
    }

    /// The part of `range` whose entries have ever been handed out: what a
    /// sweep of `range` visits.
    pub fn used_part(&self, range: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let used = self.bump.load(Relaxed);
        range.start.min(used)..range.end.min(used)
    }

    /// Sweeps `count` entries starting at `*cursor` (wrapping inside
    /// `range`), removing expired ones. Returns how many it removed.
    pub fn sweep(
        &self,
        range: std::ops::Range<usize>,
        cursor: &mut usize,
        count: usize,
        now: u64,
        to: &Timeouts,
    ) -> usize {
        self.sweep_owned(range, cursor, count, now, to, None)
    }

    /// Sweeps `budget` entries from a point picked by `now`: what an
    /// insert into a full table does before giving up.
    pub(super) fn evict_some(&self, now: u64, to: &Timeouts, budget: usize) {
        // Start where the hash of `now` points, so concurrent evictors spread.
        let used = self.bump.load(Relaxed).max(1);
        let mut cursor = (now as usize).wrapping_mul(0x9e37_79b9) % used;
        self.sweep(0..self.max, &mut cursor, budget, now, to);
    }

    /// Looks at `budget` entries from a point picked by `now` and removes
    /// the least recently seen one that never saw a reply (not assured),
    /// if any: what an insert into a full table does when no entry has
    /// expired. Established connections are never chosen. Returns whether
    /// it removed one.
    pub(super) fn evict_unassured(&self, now: u64, budget: usize) -> bool {
        let used = self.bump.load(Relaxed).max(1);
        let start = (now as usize ^ 0x5bd1_e995).wrapping_mul(0x9e37_79b9) % used;
        let ids = (0..budget.min(used)).map(|k| ((start + k) % used) as EntryId);
        self.drop_oldest_unassured(ids)
    }

    /// Removes the least recently seen entry that never saw a reply among
    /// those indexed in the two buckets of hash `h`, other than `keep`: an
    /// insert whose key finds both its buckets full makes room there (as
    /// Linux's early drop looks in the new entry's own hash chain). Returns
    /// whether one went.
    pub(super) fn evict_unassured_in(&self, h: u64, keep: EntryId) -> bool {
        let (b1, b2) = self.buckets(h);
        let ids = [b1, b2]
            .into_iter()
            .filter_map(|b| self.index.get(b))
            .flat_map(|b| &b.0)
            .map(|s| s.load(Relaxed))
            .filter(|&v| v != 0)
            .map(|v| slot_entry(v).0)
            .filter(|&id| id != keep);
        self.drop_oldest_unassured(ids)
    }

    /// Of the entries `ids`, removes the least recently seen live one that
    /// never saw a reply, if any. Returns whether one went.
    fn drop_oldest_unassured(&self, ids: impl Iterator<Item = EntryId>) -> bool {
        let mut best: Option<(u64, EntryId)> = None;
        for id in ids {
            let Some(e) = self.entries.get(id as usize) else {
                continue;
            };
            let st = e.state.load(Relaxed);
            if st & LIVE == 0 || st_flags(st) & flags::SEEN_REPLY != 0 {
                continue;
            }
            let seen = e.seen.load(Relaxed);
            if best.is_none_or(|(x, _)| seen < x) {
                best = Some((seen, id));
            }
        }
        best.is_some_and(|(_, id)| self.remove_unassured(id))
    }

    /// Removes entry `id` if, read whole, it still never saw a reply (it
    /// may have changed since it was chosen), and counts it.
    fn remove_unassured(&self, id: EntryId) -> bool {
        match self.read(id) {
            Some(s) if s.flags & flags::SEEN_REPLY == 0 => {
                self.remove(&s);
                self.evicted_unassured.fetch_add(1, Relaxed);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::conntrack::insert::InsertError;
    use crate::tables::conntrack::key::{tcp_v4 as t, Tuple};
    use crate::tables::conntrack::state::{Dir, State};
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A full table makes room by dropping the least recently seen entry
    /// that never saw a reply (and counts it); when every entry has seen
    /// one, the insert is refused (and counted), and nothing established
    /// is touched.
    #[test]
    fn full_table_drops_unassured_before_refusing() {
        let ct = Conntrack::new(4, 1);
        let to = Timeouts::default();
        let udp = |p: u16| Tuple {
            proto: 17,
            ..t(1, 2, p, 53)
        };
        let mut ids = Vec::new();
        for p in 1..=4u16 {
            ids.push(
                ct.insert(
                    &udp(p),
                    &udp(p).reverse(),
                    State::Datagram,
                    0,
                    0,
                    u64::from(p),
                    &to,
                )
                .unwrap(),
            );
        }
        // Flows 1 and 3 saw a reply; 2 was seen before 4.
        ct.touch_id(ids[0], Dir::Reply, 0, 10);
        ct.touch_id(ids[2], Dir::Reply, 0, 10);
        ct.insert(&udp(5), &udp(5).reverse(), State::Datagram, 0, 0, 20, &to)
            .unwrap();
        assert_eq!(ct.evicted_unassured(), 1);
        assert!(ct
            .lookup(&udp(2), ct.hash_key(&udp(2).words()), 20, &to)
            .is_none());
        for p in [1, 3, 4, 5] {
            assert!(
                ct.lookup(&udp(p), ct.hash_key(&udp(p).words()), 20, &to)
                    .is_some(),
                "{p}"
            );
        }
        // Now 4 and 5 are the unassured ones; make them assured too.
        for p in [4, 5] {
            let h = ct
                .lookup(&udp(p), ct.hash_key(&udp(p).words()), 21, &to)
                .unwrap();
            ct.touch_id(h.id, Dir::Reply, 0, 21);
        }
        assert_eq!(
            ct.insert(&udp(6), &udp(6).reverse(), State::Datagram, 0, 0, 22, &to),
            Err(InsertError::Full)
        );
        assert_eq!(ct.refused_full(), 1);
        assert_eq!(ct.evicted_unassured(), 1);
        assert_eq!(ct.len(), 4);
    }

    #[test]
    fn expiry_on_lookup_and_full_table_evicts_expired() {
        let ct = Conntrack::new(2, 1);
        let to = Timeouts {
            udp: 10,
            ..Timeouts::default()
        };
        let a = Tuple {
            proto: 17,
            ..t(1, 2, 1, 1)
        };
        let b = Tuple {
            proto: 17,
            ..t(1, 2, 2, 2)
        };
        let c = Tuple {
            proto: 17,
            ..t(1, 2, 3, 3)
        };
        let ia = ct
            .insert(&a, &a.reverse(), State::Datagram, 0, 0, 0, &to)
            .unwrap();
        let ib = ct
            .insert(&b, &b.reverse(), State::Datagram, 0, 0, 5, &to)
            .unwrap();
        // Both saw a reply (assured): nothing may be dropped early.
        ct.touch_id(ia, Dir::Reply, 0, 0);
        ct.touch_id(ib, Dir::Reply, 0, 5);
        assert_eq!(
            ct.insert(&c, &c.reverse(), State::Datagram, 0, 0, 6, &to),
            Err(InsertError::Full)
        );
        // At 12, `a` (seen at 0) has expired; `b` (seen at 5) has not.
        ct.insert(&c, &c.reverse(), State::Datagram, 0, 0, 12, &to)
            .unwrap();
        assert!(ct.lookup(&a, ct.hash(&a), 12, &to).is_none());
        assert!(ct.lookup(&b, ct.hash(&b), 12, &to).is_some());
        assert!(
            ct.lookup(&b, ct.hash(&b), 16, &to).is_none(),
            "expired at lookup"
        );
        assert_eq!(ct.len(), 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8, u16),
        Remove(u8, u8, u16),
        Advance(u8),
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// The table behaves like a plain HashMap model under random
        /// inserts, removals, lookups and time passing.
        #[test]
        fn matches_a_hashmap_model(ops in proptest::collection::vec(prop_oneof![
            (0u8..8, 0u8..8, 0u16..4).prop_map(|(a, b, p)| Op::Insert(a, b, p)),
            (0u8..8, 0u8..8, 0u16..4).prop_map(|(a, b, p)| Op::Remove(a, b, p)),
            (0u8..20).prop_map(Op::Advance),
        ], 1..200)) {
            let to = Timeouts { udp: 30, ..Timeouts::default() };
            let ct = Conntrack::new(24, 3);
            let mut model: HashMap<Tuple, (Tuple, u64)> = HashMap::new(); // orig -> (reply, seen)
            let mut now = 0u64;
            let mk = |a: u8, b: u8, p: u16| Tuple { proto: 17, ..t(u128::from(a), u128::from(b) + 100, p, 53) };
            for op in ops {
                match op {
                    Op::Advance(d) => {
                        now += u64::from(d);
                        model.retain(|_, (_, seen)| now.saturating_sub(*seen) <= to.udp);
                    }
                    Op::Insert(a, b, p) => {
                        let o = mk(a, b, p);
                        let r = o.reverse();
                        let exists = model.contains_key(&o) || model.values().any(|(rr, _)| *rr == r)
                            || model.contains_key(&r) || model.values().any(|(rr, _)| *rr == o);
                        let evicted = ct.evicted_unassured();
                        let res = ct.insert(&o, &r, State::Datagram, 0, 0, now, &to);
                        if exists {
                            prop_assert!(res.is_err());
                        } else {
                            // No entry here ever sees a reply, so a full
                            // table makes room by the early drop: the least
                            // recently seen entry goes (the scan covers the
                            // whole table). A key whose two buckets are full
                            // may also drop one there.
                            prop_assert!(res.is_ok(), "{:?}", res);
                            let gone: Vec<Tuple> = model
                                .keys()
                                .filter(|k| ct.lookup(k, ct.hash(k), now, &to).is_none())
                                .copied()
                                .collect();
                            prop_assert_eq!(gone.len() as u64, ct.evicted_unassured() - evicted);
                            if model.len() >= 24 {
                                prop_assert_eq!(gone.len(), 1);
                                let oldest = model.values().map(|(_, seen)| *seen).min();
                                prop_assert_eq!(Some(model[&gone[0]].1), oldest);
                            }
                            for k in gone {
                                model.remove(&k);
                            }
                            model.insert(o, (r, now));
                        }
                    }
                    Op::Remove(a, b, p) => {
                        let o = mk(a, b, p);
                        if let Some(h) = ct.lookup(&o, ct.hash(&o), now, &to) {
                            prop_assert_eq!(h.dir, Dir::Original);
                            ct.remove(&h.snapshot());
                            prop_assert!(model.remove(&o).is_some());
                        } else {
                            prop_assert!(!model.contains_key(&o));
                        }
                    }
                }
                for (o, (r, _)) in &model {
                    prop_assert_eq!(ct.lookup(o, ct.hash(o), now, &to).map(|h| h.dir), Some(Dir::Original));
                    prop_assert_eq!(ct.lookup(r, ct.hash(r), now, &to).map(|h| h.dir), Some(Dir::Reply));
                }
                // Expired entries linger until a lookup or a sweep finds them.
                prop_assert!(ct.len() >= model.len());
                let mut cursor = 0;
                ct.sweep(0..24, &mut cursor, 24, now, &to);
                prop_assert_eq!(ct.len(), model.len());
            }
        }
    }
}
