//! The per-packet path: a batched lookup in steps (prefetch the key's
//! first bucket, then its candidate entry, then probe it), so a batch has
//! all its cache misses in flight at once; the update a packet makes to its
//! connection (last seen, TCP state); and the route cache written after a
//! hit.

use std::sync::atomic::{fence, Ordering::*};

use super::entry::{
    dir_words, load_words, same_words, st_flags, st_state, with_hop, Entry, EntryId, LIVE, PLAIN,
};
use super::index::{slot_entry, slot_tag};
use super::key::{Key, Tuple};
use super::lookup::{Found, Hit, Located, Probe};
use super::state::{flags, reopens, tcp_next, Dir, State, TimeoutTable, Timeouts};
use super::table::Conntrack;

/// The first index bucket of a key (from [`Conntrack::prefetch_buckets`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Buckets(pub(super) u32);

/// [`Found::of_hit`]'s translation on entry words, `k` the packet's key and
/// `o` the other direction's: each side that changes is written.
#[inline]
fn translation(
    k: &Key,
    o: &Key,
    new_dst: &mut Option<(u128, u16)>,
    new_src: &mut Option<(u128, u16)>,
) {
    let (ksport, kdport) = (k[4] as u16, (k[4] >> 16) as u16);
    let (osport, odport) = (o[4] as u16, (o[4] >> 16) as u16);
    let join = |lo: u64, hi: u64| u128::from(lo) | u128::from(hi) << 64;
    if (o[0] ^ k[2]) | (o[1] ^ k[3]) != 0 || osport != kdport {
        *new_dst = Some((join(o[0], o[1]), osport));
    }
    if (o[2] ^ k[0]) | (o[3] ^ k[1]) != 0 || odport != ksport {
        *new_src = Some((join(o[2], o[3]), odport));
    }
}

impl Conntrack {
    /// Starts loading the first index bucket of hash `h` (where nearly all
    /// keys live, see `put_slot`) and returns it: the first step of a
    /// batched lookup ([`Conntrack::candidate`], then [`Conntrack::find`]),
    /// so a batch has all its index misses in flight at once.
    #[inline]
    pub fn prefetch_buckets(&self, h: u64) -> Buckets {
        let b1 = self.first_bucket(h);
        if let Some(b) = self.index.get(b1) {
            crate::mem::prefetch(b);
        }
        Buckets(b1 as u32)
    }

    /// The second step: the first slot of first bucket `bs` whose tag
    /// matches hash `h`, with its entry on its way to L1; or 0, with the
    /// second bucket on its way ([`Conntrack::find`] then takes the full
    /// lookup, which reads it). Only a hint: `find` checks it.
    #[inline]
    pub fn candidate(&self, h: u64, bs: Buckets) -> u64 {
        let tag = slot_tag(h);
        if let Some(b) = self.index.get(bs.0 as usize) {
            for slot in &b.0 {
                let v = slot.load(Relaxed);
                if v >> 32 == tag {
                    self.warm(slot_entry(v).0);
                    return v;
                }
            }
        }
        if let Some(b) = self.index.get(self.buckets(h).1) {
            crate::mem::prefetch(b);
        }
        0
    }

    /// The per-packet lookup: what [`Conntrack::lookup`] finds, as a
    /// [`Found`], starting at the slot [`Conntrack::candidate`] gave. When
    /// that slot holds the key, live and unexpired (nearly always, for a
    /// known connection), this is one pass over one entry: the key compared
    /// in place, the other key read only for the translation. Anything else
    /// (no candidate, a tag collision, a slot changed since, a dead or
    /// expired entry, a torn read) takes the full [`Conntrack::lookup`],
    /// which settles it (and removes an expired entry). Keys are unique
    /// among live entries and the candidate is the first slot the full
    /// lookup would try, so both give the same answer.
    #[inline]
    pub fn find(&self, t: &Tuple, h: u64, cand: u64, now: u64, to: &Timeouts) -> Option<Found> {
        if cand >> 32 == slot_tag(h) {
            let (id, dir) = slot_entry(cand);
            if let Some((f, _, _)) = self.read_found(id, dir, &t.words(), now, to) {
                return Some(f);
            }
        }
        self.lookup(t, h, now, to).map(|h| Found::of_hit(&h))
    }

    /// The per-packet step for a packet that may belong to a known
    /// connection: [`Conntrack::find`] by key, then, unless the packet
    /// reopens the connection (a SYN in the original direction of a closed
    /// or closing one, which the caller handles in order), the update
    /// [`Conntrack::touch_id`] makes. `tcp` is the TCP flags byte of a TCP
    /// packet, 0 for any other (as [`crate::wire::Parsed`] has it); `tt` is
    /// [`Timeouts::table`]. On a hit the translation this
    /// direction gets is written to `new_dst` / `new_src` (left alone when
    /// that side is unchanged). Found live and unexpired in the candidate
    /// slot (nearly every packet of a known connection), this reads the
    /// entry once and writes its last-seen word, and its state word only
    /// when the state changes.
    // Per packet: loose values the caller already holds (a struct would be
    // built and taken apart for every packet), and the two translation
    // outputs it keeps across the batch.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn probe(
        &self,
        key: &Key,
        h: u64,
        cand: u64,
        now: u64,
        tt: &TimeoutTable,
        tcp: u8,
        new_dst: &mut Option<(u128, u16)>,
        new_src: &mut Option<(u128, u16)>,
    ) -> Probe {
        if cand >> 32 == slot_tag(h) {
            let (id, dir) = slot_entry(cand);
            if let Some(e) = self.entries.get(id as usize) {
                let (mine, other) = dir_words(e, dir);
                let s1 = e.seq.load(Acquire);
                let st = e.state.load(Relaxed);
                let seen = e.seen.load(Relaxed);
                let hops = e.hops.load(Relaxed);
                if s1 & 1 == 0 && same_words(mine, key) {
                    // An untranslated connection's other key is not read
                    // (there is no translation to find in it).
                    let o = (st & PLAIN == 0).then(|| load_words(other));
                    fence(Acquire);
                    if e.seq.load(Relaxed) == s1
                        && st & LIVE != 0
                        && now.saturating_sub(seen) <= tt.of_word(st)
                    {
                        if reopens(dir, st_state(st), tcp) {
                            return Probe::Reopen;
                        }
                        if let Some(o) = o {
                            translation(key, &o, new_dst, new_src);
                        }
                        Self::step(e, st, dir, tcp, now);
                        return Probe::Hit(Located {
                            id,
                            dir,
                            seq: s1,
                            hops,
                        });
                    }
                }
            }
        }
        self.probe_slow(key, h, now, tt, tcp, new_dst, new_src)
    }

    /// [`Conntrack::probe`] past the candidate slot: the full lookup.
    // `probe`'s arguments, passed on.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn probe_slow(
        &self,
        key: &Key,
        h: u64,
        now: u64,
        tt: &TimeoutTable,
        tcp: u8,
        new_dst: &mut Option<(u128, u16)>,
        new_src: &mut Option<(u128, u16)>,
    ) -> Probe {
        let Some(hit) =
            self.lookup_with(&Tuple::from_words(*key), h, now, |st| tt.of_word(st as u64))
        else {
            return Probe::Miss;
        };
        if reopens(hit.dir, hit.state, tcp) {
            return Probe::Reopen;
        }
        self.touch_id(hit.id, hit.dir, tcp, now);
        let f = Found::of_hit(&hit);
        if f.new_dst.is_some() {
            *new_dst = f.new_dst;
        }
        if f.new_src.is_some() {
            *new_src = f.new_src;
        }
        Probe::Hit(hit.located())
    }

    /// Entry `id` as a [`Found`] if its `dir` key is `key` and it is live
    /// and unexpired at `now`; `None` for anything else (the caller falls
    /// back to the full lookup).
    #[inline]
    fn read_found(
        &self,
        id: EntryId,
        dir: Dir,
        key: &Key,
        now: u64,
        to: &Timeouts,
    ) -> Option<(Found, &Entry, u64)> {
        let e = self.entries.get(id as usize)?;
        let (mine, other) = dir_words(e, dir);
        let s1 = e.seq.load(Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        if !same_words(mine, key) {
            return None;
        }
        let st = e.state.load(Relaxed);
        // An untranslated connection's other key is not read (for the
        // original direction it is on the line the lookup does not need).
        let o = (st & PLAIN == 0).then(|| load_words(other));
        let seen = e.seen.load(Relaxed);
        fence(Acquire);
        if e.seq.load(Relaxed) != s1 || st & LIVE == 0 {
            return None;
        }
        let state = st_state(st);
        if now.saturating_sub(seen) > to.of(state) {
            return None;
        }
        let mut f = Found {
            id,
            dir,
            state,
            new_dst: None,
            new_src: None,
        };
        if let Some(o) = o {
            translation(key, &o, &mut f.new_dst, &mut f.new_src);
        }
        Some((f, e, st))
    }

    /// Starts loading what a probe of entry `id` reads (a safe
    /// prefetch): both of its cache lines (the second holds the reply key
    /// and the route cache).
    #[inline]
    pub fn warm(&self, id: EntryId) {
        if let Some(e) = self.entries.get(id as usize) {
            crate::mem::prefetch(&e.seq);
            crate::mem::prefetch(&e.reply[0]);
        }
    }

    /// Caches hop `hop` of tables generation `gen` for the direction of
    /// `at` (a [`Probe::Hit`]), if the entry is still as it was read then
    /// (same sequence): the word is written under the sequence lock, so a
    /// reader that validates the sequence never pairs a connection with
    /// another's route. Otherwise (the entry changed, or someone holds the
    /// lock) it does nothing: the next packet resolves the route again.
    /// Once per direction per generation, never on the per-packet path.
    pub fn cache_hop(&self, at: &Located, gen: u32, hop: u16) {
        let Located { id, dir, seq, .. } = *at;
        let Some(e) = self.entries.get(id as usize) else {
            return;
        };
        if !e.try_lock_seq(seq) {
            return;
        }
        let w = e.hops.load(Relaxed);
        e.hops.store(with_hop(w, dir, gen, hop), Relaxed);
        e.unlock_seq(seq);
    }

    /// Records a packet on a connection: last-seen time, per-direction
    /// packet count and, for TCP, the state machine (`tcp_flags`: the TCP
    /// flags byte, 0 for other protocols). Returns the new state.
    #[inline]
    pub fn touch(&self, hit: &Hit, tcp_flags: u8, now: u64) -> State {
        self.touch_id(hit.id, hit.dir, tcp_flags, now)
            .unwrap_or(hit.state)
    }

    /// [`Conntrack::touch`] by entry number.
    #[inline]
    pub fn touch_id(&self, id: EntryId, dir: Dir, tcp_flags: u8, now: u64) -> Option<State> {
        let e = self.entries.get(id as usize)?;
        let st = e.state.load(Acquire);
        Some(Self::step(e, st, dir, tcp_flags, now))
    }

    /// Last seen, reply seen, TCP state: the per-packet update. The state
    /// word changes (by compare-and-swap) only when something does, so an
    /// established flow writes one word per packet.
    #[inline(always)]
    fn step(e: &Entry, st: u64, dir: Dir, tcp_flags: u8, now: u64) -> State {
        use crate::wire::parse::tcp_flags::{FIN, RST, SYN};
        if e.seen.load(Relaxed) != now {
            e.seen.store(now, Relaxed);
        }
        // Nearly every packet: an established TCP segment without SYN, FIN
        // or RST, or a datagram, in a direction already seen, changes
        // nothing else (what the loop below would find, without its work).
        // Computed without branches (whether the packet is TCP, and its
        // direction, are random from packet to packet): a TCP connection
        // is quiet only when established, a datagram or ICMP one always
        // (a packet's protocol is its connection's, so only TCP packets
        // meet TCP states; other packets have no flags).
        const QUIET: u32 =
            1 << State::Established as u8 | 1 << State::Datagram as u8 | 1 << State::Icmp as u8;
        let f = tcp_flags;
        let seen_reply = u64::from(flags::SEEN_REPLY) << 8;
        let quiet = (f & (SYN | FIN | RST) == 0)
            & (QUIET >> (st & 15) & 1 == 1)
            & (st & LIVE != 0)
            & ((dir == Dir::Original) | (st & seen_reply != 0));
        if quiet {
            return st_state(st);
        }
        Self::step_state(e, st, dir, f)
    }

    /// The state part of [`Conntrack::step`] for a packet that may change
    /// it (out of line: rare).
    #[inline(never)]
    fn step_state(e: &Entry, mut st: u64, dir: Dir, f: u8) -> State {
        loop {
            if st & LIVE == 0 {
                return st_state(st);
            }
            let (state, mut fl) = (st_state(st), st_flags(st));
            if dir == Dir::Reply {
                fl |= flags::SEEN_REPLY;
            }
            let next = if (st as u8) < State::Datagram as u8 {
                tcp_next(state, &mut fl, dir, f)
            } else {
                state
            };
            let new = (st & !0xffff) | u64::from(next as u8) | u64::from(fl) << 8;
            if new == st {
                return next;
            }
            match e.state.compare_exchange_weak(st, new, AcqRel, Acquire) {
                Ok(_) => return next,
                Err(x) => st = x,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::conntrack::entry::hops_of;
    use crate::tables::conntrack::key::tcp_v4 as t;

    /// Where a probe of key `k` at time 1 finds its connection, from the
    /// candidate slot as the pipeline takes it or (`full`) by the full
    /// lookup.
    fn located(ct: &Conntrack, k: &Tuple, to: &Timeouts, full: bool) -> Located {
        let h = ct.hash(k);
        let cand = if full {
            0
        } else {
            ct.candidate(h, ct.prefetch_buckets(h))
        };
        match ct.probe(&k.words(), h, cand, 1, &to.table(), 0, &mut None, &mut None) {
            Probe::Hit(at) => at,
            p => panic!("no hit: {p:?}"),
        }
    }

    /// A table holding one established, untranslated connection.
    fn one_connection() -> (Conntrack, Timeouts, Tuple) {
        let ct = Conntrack::new(16, 1);
        let to = Timeouts::default();
        let o = t(1, 2, 1000, 80);
        ct.insert(&o, &o.reverse(), State::Established, 0, 0, 0, &to)
            .unwrap();
        (ct, to, o)
    }

    #[test]
    fn a_cached_hop_is_written_only_over_the_entry_as_read() {
        let (ct, to, o) = one_connection();
        let at = |k: &Tuple| located(&ct, k, &to, false);
        let first = at(&o);
        assert_eq!((first.dir, first.hops), (Dir::Original, 0));
        ct.cache_hop(&first, 5, 11);
        let second = at(&o);
        assert_eq!(hops_of(second.hops, Dir::Original, 5), 11);
        assert_ne!(second.seq, first.seq, "the write moved the sequence");
        // A stale read writes nothing.
        ct.cache_hop(&first, 5, 12);
        assert_eq!(hops_of(at(&o).hops, Dir::Original, 5), 11);
        // The other direction joins the same word.
        let reply = at(&o.reverse());
        assert_eq!((reply.id, reply.dir), (first.id, Dir::Reply));
        ct.cache_hop(&reply, 5, 13);
        let both = at(&o);
        assert_eq!(
            (
                hops_of(both.hops, Dir::Original, 5),
                hops_of(both.hops, Dir::Reply, 5)
            ),
            (11, 13)
        );
        // Gone with the entry: a new connection in the same slot starts
        // empty, and the old read cannot write into it.
        let snap = ct.read_entry(first.id).unwrap();
        ct.remove(&snap);
        let id2 = ct
            .insert(&o, &o.reverse(), State::Established, 0, 0, 0, &to)
            .unwrap();
        assert_eq!(id2, first.id, "the slot is reused");
        ct.cache_hop(&both, 5, 14);
        assert_eq!(at(&o).hops, 0);
    }

    #[test]
    fn the_full_lookup_reads_the_route_cache_too() {
        // A key found past its candidate slot gets the same cache word, so
        // its connection is cached as well.
        let (ct, to, o) = one_connection();
        ct.cache_hop(&located(&ct, &o, &to, true), 5, 11);
        assert_eq!(
            hops_of(located(&ct, &o, &to, true).hops, Dir::Original, 5),
            11
        );
    }

    /// The batched per-packet path (buckets, candidate, find) answers as
    /// the full lookup does, including for stale or missing candidates,
    /// and its translation is the pipeline's.
    #[test]
    fn find_agrees_with_lookup() {
        let ct = Conntrack::new(64, 5);
        let to = Timeouts {
            udp: 10,
            ..Timeouts::default()
        };
        let plain = t(1, 2, 1000, 80);
        let dnat_o = t(10, 99, 1000, 80);
        let dnat_r = t(20, 10, 8080, 1000);
        let snat_o = t(30, 40, 5000, 443);
        let snat_r = t(40, 77, 443, 6000);
        let udp = Tuple {
            proto: 17,
            ..t(3, 4, 53, 53)
        };
        // Translated without a flag saying so: whether a lookup may skip
        // the other key is decided from the keys, not from the flags.
        let odd_o = t(50, 60, 1, 2);
        let odd_r = t(61, 50, 2, 1);
        ct.insert(&plain, &plain.reverse(), State::Established, 0, 0, 0, &to)
            .unwrap();
        ct.insert(&odd_o, &odd_r, State::Established, 0, 0, 0, &to)
            .unwrap();
        ct.insert(&dnat_o, &dnat_r, State::SynSent, flags::DNAT, 0, 0, &to)
            .unwrap();
        ct.insert(&snat_o, &snat_r, State::Established, flags::SNAT, 0, 0, &to)
            .unwrap();
        ct.insert(&udp, &udp.reverse(), State::Datagram, 0, 0, 0, &to)
            .unwrap();
        let keys = [
            plain,
            plain.reverse(),
            dnat_o,
            dnat_r,
            dnat_o.reverse(),
            snat_o,
            snat_r,
            udp,
            udp.reverse(),
            odd_o,
            odd_r,
            t(5, 6, 7, 8),
        ];
        for now in [1, 20] {
            for k in keys {
                let h = ct.hash(&k);
                let bs = ct.prefetch_buckets(h);
                let cand = ct.candidate(h, bs);
                let want = ct.lookup(&k, h, now, &to);
                let got = ct.find(&k, h, cand, now, &to);
                // The translation too: `find` derives it from the entry's
                // words, `of_hit` from the tuples.
                assert_eq!(got, want.map(|w| Found::of_hit(&w)), "{k:?} at {now}");
                // Stale or wrong candidates only cost the full lookup.
                for bad in [0, cand ^ 1, cand ^ (1 << 31), u64::MAX] {
                    let again = ct.lookup(&k, h, now, &to).map(|w| Found::of_hit(&w));
                    assert_eq!(ct.find(&k, h, bad, now, &to), again);
                }
            }
        }
        // At 20 the UDP entry had expired: gone, the TCP ones stay.
        assert_eq!(ct.len(), 4);
    }

    #[test]
    fn tcp_states() {
        use crate::wire::parse::tcp_flags::*;
        let ct = Conntrack::new(4, 1);
        let to = Timeouts::default();
        let o = t(1, 2, 1000, 80);
        ct.insert(&o, &o.reverse(), State::SynSent, 0, 0, 0, &to)
            .unwrap();
        let step = |tup: Tuple, f: u8| {
            let h = ct.lookup(&tup, ct.hash(&tup), 1, &to).unwrap();
            ct.touch(&h, f, 1)
        };
        assert_eq!(step(o.reverse(), SYN | ACK), State::SynRecv);
        assert_eq!(step(o, ACK), State::Established);
        assert_eq!(step(o, ACK | FIN), State::FinWait);
        assert_eq!(step(o.reverse(), ACK | FIN), State::TimeWait);
        assert_eq!(step(o, RST), State::Close);
    }
}
