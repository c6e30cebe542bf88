//! Finding a connection by key, in either direction: what a lookup reports
//! ([`Hit`], [`Found`], [`Located`], [`Probe`]) and the full lookup, which
//! reads both of a key's buckets and removes an entry found expired.

use std::sync::atomic::{fence, Ordering::*};

use super::entry::{
    dir_words, load_words, same_words, st_flags, st_state, EntryId, Snapshot, LIVE,
};
use super::index::{slot_entry, slot_tag};
use super::key::Tuple;
use super::state::{Dir, State, Timeouts};
use super::table::Conntrack;

/// What a lookup found: the connection's tuples and state, read in one
/// consistent pass (no packet counts or creation time: those are for
/// [`Conntrack::read_entry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub id: EntryId,
    pub dir: Dir,
    /// The entry's sequence number when read (changes when the entry is
    /// removed or reused).
    pub seq: u64,
    /// The entry's route-cache word when read
    /// ([`hops_of`](super::entry::hops_of)).
    pub hops: u64,
    pub orig: Tuple,
    pub reply: Tuple,
    pub state: State,
    pub flags: u8,
    pub last_seen: u64,
    pub aux: u64,
}

impl Hit {
    /// Where it was found, as [`Conntrack::probe`] reports it.
    pub fn located(&self) -> Located {
        Located {
            id: self.id,
            dir: self.dir,
            seq: self.seq,
            hops: self.hops,
        }
    }

    /// The same facts as a [`Snapshot`] (counts and creation time zero).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            id: self.id,
            orig: self.orig,
            reply: self.reply,
            state: self.state,
            flags: self.flags,
            last_seen: self.last_seen,
            created: 0,
            aux: self.aux,
        }
    }
}

/// What a packet of a known connection needs, read in one pass: the
/// connection, the packet's direction, the state and the translation this
/// direction gets (`(new destination, new source)`, each `None` when
/// unchanged; the same as `pipeline::stages::track::translation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub id: EntryId,
    pub dir: Dir,
    pub state: State,
    pub new_dst: Option<(u128, u16)>,
    pub new_src: Option<(u128, u16)>,
}

impl Found {
    /// From a full [`Hit`]. Whichever the direction, a packet with key `k`
    /// of a connection whose other key is `o` is sent to `o`'s source and
    /// comes from `o`'s destination (`o` is the reverse of `k` when nothing
    /// is translated).
    pub fn of_hit(h: &Hit) -> Found {
        let (k, o) = match h.dir {
            Dir::Original => (&h.orig, &h.reply),
            Dir::Reply => (&h.reply, &h.orig),
        };
        Found {
            id: h.id,
            dir: h.dir,
            state: h.state,
            new_dst: ((o.src, o.sport) != (k.dst, k.dport)).then_some((o.src, o.sport)),
            new_src: ((o.dst, o.dport) != (k.src, k.sport)).then_some((o.dst, o.dport)),
        }
    }
}

/// Where [`Conntrack::probe`] found a packet's connection: its entry, the
/// packet's direction, and the entry's sequence number and route-cache
/// word when read (see [`hops_of`](super::entry::hops_of),
/// [`Conntrack::cache_hop`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    pub id: EntryId,
    pub dir: Dir,
    pub seq: u64,
    pub hops: u64,
}

/// What [`Conntrack::probe`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A live connection; the packet is recorded on it.
    Hit(Located),
    /// No live connection has this key.
    Miss,
    /// The packet reopens the connection it matched (see
    /// [`reopens`](super::state::reopens));
    /// nothing was recorded.
    Reopen,
}

impl Conntrack {
    /// A consistent copy of entry `id`, if live.
    pub(super) fn read(&self, id: EntryId) -> Option<Snapshot> {
        let e = self.entries.get(id as usize)?;
        loop {
            let s1 = e.seq.load(Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let st = e.state.load(Relaxed);
            let o = load_words(&e.orig);
            let r = load_words(&e.reply);
            let aux = e.aux.load(Relaxed);
            let created = e.created.load(Relaxed);
            fence(Acquire);
            if e.seq.load(Relaxed) != s1 {
                continue;
            }
            if st & LIVE == 0 {
                return None;
            }
            let orig = Tuple::from_words(o);
            let reply = Tuple::from_words(r);
            return Some(Snapshot {
                id,
                orig,
                reply,
                state: st_state(st),
                flags: st_flags(st),
                last_seen: e.seen.load(Relaxed),
                created,
                aux,
            });
        }
    }

    /// Finds the connection `t` belongs to, in either direction. An entry
    /// past its timeout at `now` is removed and not returned.
    #[inline]
    pub fn lookup(&self, t: &Tuple, h: u64, now: u64, to: &Timeouts) -> Option<Hit> {
        self.lookup_with(t, h, now, |s| to.of(State::from_u8(s)))
    }

    /// [`Conntrack::lookup`] that changes nothing: an entry past its
    /// timeout is not returned but stays (for `explain`).
    pub fn peek(&self, t: &Tuple, h: u64, now: u64, to: &Timeouts) -> Option<Hit> {
        let timeout = |s: u8| to.of(State::from_u8(s));
        self.find_keyed(t, h)
            .filter(|hit| now.saturating_sub(hit.last_seen) <= timeout(hit.state as u8))
    }

    /// [`Conntrack::lookup`] with the timeout of a state byte given by
    /// `timeout`.
    #[inline]
    pub(super) fn lookup_with(
        &self,
        t: &Tuple,
        h: u64,
        now: u64,
        timeout: impl Fn(u8) -> u64,
    ) -> Option<Hit> {
        let hit = self.find_keyed(t, h)?;
        if now.saturating_sub(hit.last_seen) > timeout(hit.state as u8) {
            self.remove(&hit.snapshot());
            return None;
        }
        Some(hit)
    }

    /// The entry `t` belongs to (either direction), expired or not.
    #[inline]
    fn find_keyed(&self, t: &Tuple, h: u64) -> Option<Hit> {
        let tag = slot_tag(h);
        let (b1, b2) = self.buckets(h);
        let key = t.words();
        for b in [b1, b2] {
            let Some(bucket) = self.index.get(b) else {
                continue;
            };
            for slot in &bucket.0 {
                let v = slot.load(Acquire);
                if v >> 32 != tag {
                    continue;
                }
                let (id, dir) = slot_entry(v);
                let Some(hit) = self.read_keyed(id, dir, &key) else {
                    continue;
                };
                return Some(hit);
            }
        }
        None
    }

    /// Reads entry `id` if its `dir` key equals `key` (as entry words):
    /// compares while reading, under the sequence lock.
    #[inline]
    fn read_keyed(&self, id: EntryId, dir: Dir, key: &[u64; 5]) -> Option<Hit> {
        let e = self.entries.get(id as usize)?;
        let (mine, other) = dir_words(e, dir);
        loop {
            let s1 = e.seq.load(Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            if !same_words(mine, key) {
                // A torn read can only mismatch; confirm it was not one.
                fence(Acquire);
                if e.seq.load(Relaxed) != s1 {
                    continue;
                }
                return None;
            }
            let o = load_words(other);
            let st = e.state.load(Relaxed);
            let aux = e.aux.load(Relaxed);
            let seen = e.seen.load(Relaxed);
            let hops = e.hops.load(Relaxed);
            fence(Acquire);
            if e.seq.load(Relaxed) != s1 {
                continue;
            }
            if st & LIVE == 0 {
                return None;
            }
            let k = Tuple::from_words(*key);
            let ot = Tuple::from_words(o);
            let (orig, reply) = if dir == Dir::Original {
                (k, ot)
            } else {
                (ot, k)
            };
            return Some(Hit {
                id,
                dir,
                seq: s1,
                hops,
                orig,
                reply,
                state: st_state(st),
                flags: st_flags(st),
                last_seen: seen,
                aux,
            });
        }
    }

    /// A consistent copy of entry `id`, if live (for `ctl conntrack`).
    pub fn read_entry(&self, id: EntryId) -> Option<Snapshot> {
        self.read(id)
    }

    /// Whether a key is present (expired entries count as absent).
    pub fn contains(&self, t: &Tuple, now: u64, to: &Timeouts) -> bool {
        self.lookup(t, self.hash(t), now, to).is_some()
    }

    /// Every live entry (for `ctl conntrack` and tests; not for the fast path).
    pub fn snapshot_all(&self) -> Vec<Snapshot> {
        (0..self.bump.load(Acquire).min(self.max) as u32)
            .filter_map(|i| self.read(i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::conntrack::insert::InsertError;
    use crate::tables::conntrack::key::tcp_v4 as t;
    use crate::tables::conntrack::state::flags;

    #[test]
    fn both_directions_find_the_entry() {
        let ct = Conntrack::new(16, 1);
        let to = Timeouts::default();
        let o = t(1, 2, 1000, 80);
        let id = ct
            .insert(&o, &o.reverse(), State::SynSent, 0, 42, 0, &to)
            .unwrap();
        let h = ct.lookup(&o, ct.hash(&o), 1, &to).unwrap();
        assert_eq!((h.id, h.dir, h.aux), (id, Dir::Original, 42));
        let r = o.reverse();
        let h = ct.lookup(&r, ct.hash(&r), 1, &to).unwrap();
        assert_eq!((h.id, h.dir), (id, Dir::Reply));
        assert_eq!(
            ct.insert(&o, &o.reverse(), State::SynSent, 0, 0, 0, &to),
            Err(InsertError::OrigExists)
        );
        assert_eq!(ct.len(), 1);
    }

    #[test]
    fn nat_reply_key_differs() {
        let ct = Conntrack::new(16, 1);
        let to = Timeouts::default();
        let o = t(10, 99, 1000, 80); // client -> vip
        let r = t(20, 10, 8080, 1000); // backend -> client
        ct.insert(&o, &r, State::SynSent, flags::DNAT, 0, 0, &to)
            .unwrap();
        assert_eq!(ct.lookup(&r, ct.hash(&r), 0, &to).unwrap().dir, Dir::Reply);
        assert!(ct
            .lookup(&o.reverse(), ct.hash(&o.reverse()), 0, &to)
            .is_none());
        // Another connection may not claim the same reply tuple.
        let o2 = t(11, 99, 1000, 80);
        assert_eq!(
            ct.insert(&o2, &r, State::SynSent, 0, 0, 0, &to),
            Err(InsertError::ReplyExists)
        );
    }
}
