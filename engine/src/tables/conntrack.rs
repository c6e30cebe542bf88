//! Connection tracking: one entry per connection, found from either
//! direction, shared by all workers.
//!
//! # Why a shared table
//!
//! With AF_XDP the NIC's RSS decides which queue (and so which worker) sees a
//! packet, and both directions of a NATed connection carry different tuples
//! (the reply comes from the backend, or to the masquerade address), so no
//! hash of the frame's own tuple can bring them to one worker. The choices
//! are a table every worker can read (lock-free lookups, cheap inserts) or
//! per-worker shards with hand-off (VPP's NAT44-ED). Hand-off needs a second
//! queue hop for every reply packet and, to route replies, SNAT ports that
//! encode their owner, which breaks "keep the source port when it is free"
//! (what Linux does, and what the kernel comparison test checks). So sluice
//! shares one table:
//!
//! - Entries live in a fixed array of 128-byte records made of atomics.
//!   Fields fixed at creation (the two tuples, the NAT kind) are published
//!   under a per-entry sequence lock; readers retry if it moved. The state
//!   word (TCP state, flags) changes by compare-and-swap, the last-seen time
//!   by a plain store. Each entry also keeps a route cache for the
//!   pipeline (a hop id per direction and the tables generation it
//!   belongs to, [`hops_of`]), written under the sequence lock, so a reader
//!   never pairs one connection's key with another's route; writers take
//!   the lock by compare-and-swap.
//! - The index is a bucketised two-choice hash table: every key may live in
//!   one of two 64-byte buckets of 8 slots; a slot is a `u64` holding a 32-bit
//!   tag of the key's hash, the direction and the entry number. A key goes
//!   to its first bucket unless that is nearly full, so lookups of known
//!   connections nearly always read one cache line of index (at most two)
//!   and one entry, with no lock. Removal
//!   clears a slot (no tombstones), so churn never slows lookups down.
//! - Inserting a connection (a new flow, not a packet) takes one of 4096
//!   striped spin locks chosen by each key's hash, so two workers cannot
//!   insert the same key twice (the SNAT port uniqueness check depends on
//!   it); unrelated inserts do not contend. The free list of entries is a
//!   Treiber stack with an ABA counter.
//! - Expiry needs no global pause: a lookup treats an entry older than its
//!   timeout as absent (and removes it), and every worker sweeps its own
//!   slice of the array a few entries per batch, paced by time so that the
//!   slice is covered once per `pipeline::SWEEP_PERIOD_NS` whatever the
//!   packet rate.
//!
//! Each connection costs one 128-byte entry plus two index slots (16 bytes,
//! at most 50% load: 32 bytes of index).
//!
//! `benches/` compares this table with a plain single-worker `HashMap`.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering::*};

use crate::wire::Family;

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

/// Which way a packet goes relative to the connection's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Original,
    Reply,
}

/// Connection state. TCP without window tracking; UDP, ICMP queries and
/// other protocols as pseudo-connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// TCP: SYN seen.
    SynSent = 1,
    /// TCP: SYN/ACK seen from the other side.
    SynRecv = 2,
    /// TCP: handshake done (or picked up mid-stream).
    Established = 3,
    /// TCP: one side sent FIN.
    FinWait = 4,
    /// TCP: both sides sent FIN.
    TimeWait = 5,
    /// TCP: reset.
    Close = 6,
    /// UDP / UDP-Lite / SCTP / other protocols.
    Datagram = 7,
    /// ICMP / ICMPv6 query.
    Icmp = 8,
}

impl State {
    const fn from_u8_slow(v: u8) -> State {
        match v {
            1 => State::SynSent,
            2 => State::SynRecv,
            3 => State::Established,
            4 => State::FinWait,
            5 => State::TimeWait,
            6 => State::Close,
            8 => State::Icmp,
            _ => State::Datagram,
        }
    }
    /// The state stored as `v` (a table lookup: this runs per packet).
    #[inline]
    fn from_u8(v: u8) -> State {
        const TABLE: [State; 256] = {
            let mut t = [State::Datagram; 256];
            let mut i = 0;
            while i < 256 {
                t[i] = State::from_u8_slow(i as u8);
                i += 1;
            }
            t
        };
        TABLE[usize::from(v)]
    }
    /// Name for `ctl conntrack`.
    pub fn name(self) -> &'static str {
        match self {
            State::SynSent => "SYN_SENT",
            State::SynRecv => "SYN_RECV",
            State::Established => "ESTABLISHED",
            State::FinWait => "FIN_WAIT",
            State::TimeWait => "TIME_WAIT",
            State::Close => "CLOSE",
            State::Datagram => "UDP",
            State::Icmp => "ICMP",
        }
    }
}

/// Timeouts in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn: u64,
    pub tcp_established: u64,
    pub tcp_closing: u64,
    pub udp: u64,
    pub icmp: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        const S: u64 = 1_000_000_000;
        Timeouts {
            tcp_syn: 30 * S,
            tcp_established: 3600 * S,
            tcp_closing: 30 * S,
            udp: 60 * S,
            icmp: 30 * S,
        }
    }
}

/// [`Timeouts`] as an array indexed by the state byte of an entry, built
/// once per batch so the per-packet expiry check is one load.
#[derive(Clone, Copy, Debug)]
pub struct TimeoutTable([u64; 16]);

impl TimeoutTable {
    /// The timeout of an entry whose state word is `st`.
    #[inline]
    fn of_word(&self, st: u64) -> u64 {
        self.0[(st & 15) as usize]
    }
}

impl Timeouts {
    /// The timeouts as a table (see [`TimeoutTable`]).
    pub fn table(&self) -> TimeoutTable {
        // Bytes that are no state read as Datagram, as `State::from_u8`.
        TimeoutTable(std::array::from_fn(|i| self.of(State::from_u8(i as u8))))
    }

    /// Timeout of an entry in `state`. A reset connection lingers 10 s (or
    /// `tcp_closing` if shorter), as Linux's CLOSE state does.
    #[inline]
    pub fn of(&self, state: State) -> u64 {
        match state {
            State::SynSent | State::SynRecv => self.tcp_syn,
            State::Established => self.tcp_established,
            State::FinWait | State::TimeWait => self.tcp_closing,
            State::Close => self.tcp_closing.min(10_000_000_000),
            State::Datagram => self.udp,
            State::Icmp => self.icmp,
        }
    }
}

/// Flags of an entry (state word bits 8..16).
pub mod flags {
    /// Destination NAT in the original direction (service).
    pub const DNAT: u8 = 0x01;
    /// Source NAT in the original direction (masquerade).
    pub const SNAT: u8 = 0x02;
    /// A packet was seen in the reply direction.
    pub const SEEN_REPLY: u8 = 0x04;
    /// FIN seen from the original side.
    pub const FIN_ORIG: u8 = 0x08;
    /// FIN seen from the reply side.
    pub const FIN_REPLY: u8 = 0x10;
}

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
const LIVE: u64 = 1 << 63;
/// The reply key is the original key reversed: nothing is translated in
/// either direction, so a lookup needs only its own key.
const PLAIN: u64 = 1 << 32;
#[inline]
fn st_state(w: u64) -> State {
    State::from_u8(w as u8)
}
#[inline]
fn st_flags(w: u64) -> u8 {
    (w >> 8) as u8
}
#[inline]
fn st_make(state: State, flags: u8) -> u64 {
    LIVE | u64::from(state as u8) | u64::from(flags) << 8
}

/// 128 bytes on a 128-byte boundary: exactly two cache lines (an
/// unaligned entry would straddle three, and a lookup would miss on each).
#[derive(Debug, Default)]
#[repr(C, align(128))]
struct Entry {
    /// Sequence lock over the fields fixed at creation (odd: being written).
    seq: AtomicU64,
    /// See "State word layout".
    state: AtomicU64,
    /// Last seen (ns).
    seen: AtomicU64,
    /// The original direction's key ([`Tuple::words`]).
    orig: [AtomicU64; 5],
    /// The reply direction's key.
    reply: [AtomicU64; 5],
    /// Service (u16) | owner (u8) | policy decision (u32).
    aux: AtomicU64,
    created: AtomicU64,
    /// The route cache: a hop id per direction and the tables generation
    /// they belong to ([`hops_of`]); written under the sequence lock.
    hops: AtomicU64,
}

impl Entry {
    /// Every word (to clear the entry).
    fn words(&self) -> impl Iterator<Item = &AtomicU64> {
        [&self.seq, &self.state, &self.seen]
            .into_iter()
            .chain(&self.orig)
            .chain(&self.reply)
            .chain([&self.aux, &self.created, &self.hops])
    }
}

const _: () = assert!(std::mem::size_of::<Entry>() == 128);

/// One index bucket: [`SLOTS`] slots in exactly one cache line.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct Bucket([AtomicU64; SLOTS]);

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
fn dir_words(e: &Entry, dir: Dir) -> (&[AtomicU64; 5], &[AtomicU64; 5]) {
    if dir == Dir::Original {
        (&e.orig, &e.reply)
    } else {
        (&e.reply, &e.orig)
    }
}

/// Whether five tuple words equal `key` (one branch, not five).
#[inline(always)]
fn same_words(w: &[AtomicU64; 5], key: &[u64; 5]) -> bool {
    (w[0].load(Relaxed) ^ key[0])
        | (w[1].load(Relaxed) ^ key[1])
        | (w[2].load(Relaxed) ^ key[2])
        | (w[3].load(Relaxed) ^ key[3])
        | (w[4].load(Relaxed) ^ key[4])
        == 0
}

#[inline(always)]
fn load_words(w: &[AtomicU64; 5]) -> [u64; 5] {
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
    /// The entry's route-cache word when read ([`hops_of`]).
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

/// The first index bucket of a key (from [`Conntrack::prefetch_buckets`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Buckets(u32);

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

/// Told when a masquerade port becomes used or unused (the live data plane
/// marks it in the XDP program's bitmap, so replies to it are redirected to
/// sluice instead of the kernel). Called on connection setup and teardown,
/// never per packet.
pub trait NatPortSink: Send + Sync + std::fmt::Debug {
    /// `slot` is the masquerade address's index, `proto` the IP protocol.
    fn set(&self, slot: u8, proto: u8, port: u16, in_use: bool);
}

/// Reference counts of masquerade ports: several connections may share one
/// (masquerade address, protocol, port) towards different destinations; the
/// port is free only when the last of them goes.
#[derive(Debug)]
struct NatRefs {
    slots: Vec<(Family, u128)>,
    counts: Box<[std::sync::atomic::AtomicU32]>,
    sink: std::sync::Arc<dyn NatPortSink>,
}

impl NatRefs {
    fn index(&self, t: &Tuple) -> Option<(u8, usize)> {
        let slot = self
            .slots
            .iter()
            .position(|&(f, a)| f == t.family && a == t.dst)?;
        let p = match t.proto {
            6 => 0,
            17 => 1,
            1 | 58 => 2,
            _ => return None,
        };
        Some((slot as u8, (slot * 3 + p) * 65536 + usize::from(t.dport)))
    }

    fn claim(&self, reply: &Tuple) {
        if let Some((slot, i)) = self.index(reply) {
            if let Some(c) = self.counts.get(i) {
                if c.fetch_add(1, AcqRel) == 0 {
                    self.sink.set(slot, reply.proto, reply.dport, true);
                }
            }
        }
    }

    fn release(&self, reply: &Tuple) {
        if let Some((slot, i)) = self.index(reply) {
            if let Some(c) = self.counts.get(i) {
                if c.fetch_sub(1, AcqRel) == 1 {
                    self.sink.set(slot, reply.proto, reply.dport, false);
                }
            }
        }
    }
}

const SLOTS: usize = 8;
/// Slots in use from which a key may go to its second bucket.
const SPILL: usize = 6;
/// Entries examined for an expired one when inserting into a full table.
const EVICT_SCAN: usize = 32;
const STRIPES: usize = 4096;

/// The shared connection table.
#[derive(Debug)]
pub struct Conntrack {
    entries: Box<[Entry]>,
    index: Box<[Bucket]>,
    bucket_mask: usize,
    free_head: AtomicU64,
    next_free: Box<[AtomicU64]>,
    /// Entries below this were handed out at least once; above, never.
    bump: AtomicUsize,
    live: AtomicUsize,
    max: usize,
    keys: HashKeys,
    stripes: Box<[AtomicBool]>,
    nat_refs: Option<NatRefs>,
}

#[inline]
fn slot_tag(h: u64) -> u64 {
    // Never zero, so a used slot is never 0.
    (h >> 32) | 1
}

/// The entry and direction a slot value names.
#[inline]
fn slot_entry(v: u64) -> (EntryId, Dir) {
    let dir = if v & (1 << 31) != 0 {
        Dir::Reply
    } else {
        Dir::Original
    };
    ((v & 0x7fff_ffff) as EntryId, dir)
}

#[inline]
fn slot_make(tag: u64, dir: Dir, id: EntryId) -> u64 {
    tag << 32 | u64::from(dir == Dir::Reply) << 31 | u64::from(id)
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
        let _ = crate::io::sys::advise_hugepages(&entries);
        let _ = crate::io::sys::advise_hugepages(&index);
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

    #[inline]
    fn buckets(&self, h: u64) -> (usize, usize) {
        let b1 = self.first_bucket(h);
        let mut b2 =
            ((h >> 17) as usize ^ (h >> 47) as usize).wrapping_mul(0x9e37_79b9) & self.bucket_mask;
        if b2 == b1 {
            b2 = (b1 + 1) & self.bucket_mask;
        }
        (b1, b2)
    }

    #[inline]
    fn first_bucket(&self, h: u64) -> usize {
        (h as usize) & self.bucket_mask
    }

    fn read(&self, id: EntryId) -> Option<Snapshot> {
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

    /// [`Conntrack::lookup`] with the timeout of a state byte given by
    /// `timeout`.
    #[inline]
    fn lookup_with(&self, t: &Tuple, h: u64, now: u64, timeout: impl Fn(u8) -> u64) -> Option<Hit> {
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
                if now.saturating_sub(hit.last_seen) > timeout(hit.state as u8) {
                    self.remove(&hit.snapshot());
                    return None;
                }
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

    /// Starts loading the first index bucket of hash `h` (where nearly all
    /// keys live, see `put_slot`) and returns it: the first step of a
    /// batched lookup ([`Conntrack::candidate`], then [`Conntrack::find`]),
    /// so a batch has all its index misses in flight at once.
    #[inline]
    pub fn prefetch_buckets(&self, h: u64) -> Buckets {
        let b1 = self.first_bucket(h);
        if let Some(b) = self.index.get(b1) {
            crate::io::sys::prefetch(b);
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
            crate::io::sys::prefetch(b);
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
            crate::io::sys::prefetch(&e.seq);
            crate::io::sys::prefetch(&e.reply[0]);
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
            // Expired entries go first; a bounded look, so a flood against a
            // full table costs each refused flow little.
            self.evict_some(now, to, EVICT_SCAN);
        }
        if self.live.fetch_add(1, AcqRel) >= self.max {
            self.live.fetch_sub(1, AcqRel);
            return Err(InsertError::Full);
        }
        let Some(id) = self.alloc() else {
            self.live.fetch_sub(1, AcqRel);
            return Err(InsertError::Full);
        };
        let Some(e) = self.entries.get(id as usize) else {
            self.live.fetch_sub(1, AcqRel);
            return Err(InsertError::Full);
        };
        // Publish under the sequence lock.
        let s = Self::lock_seq(e);
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
        Self::unlock_seq(e, s);
        let ok1 = self.put_slot(ho, slot_make(slot_tag(ho), Dir::Original, id));
        let ok2 = ok1 && self.put_slot(hr, slot_make(slot_tag(hr), Dir::Reply, id));
        if !ok2 {
            // Both buckets of a key full: treat as a full table.
            if ok1 {
                self.clear_slot(orig, id, Dir::Original);
            }
            self.kill(id);
            return Err(InsertError::Full);
        }
        if flags & flags::SNAT != 0 {
            if let Some(n) = &self.nat_refs {
                n.claim(reply);
            }
        }
        Ok(id)
    }

    /// Takes entry `e`'s sequence lock (makes the sequence odd) and returns
    /// the even value it had, for [`Conntrack::unlock_seq`]; the writes
    /// that follow are ordered after it.
    /// Writers of an entry are one at a time already (an entry is
    /// inserted by the one thread that took it off the free list and
    /// killed by the one that flipped LIVE off), but [`Conntrack::cache_hop`]
    /// may hold the lock for a moment, so taking it is a compare-and-swap.
    fn lock_seq(e: &Entry) -> u64 {
        loop {
            let s = e.seq.load(Relaxed);
            if Self::try_lock_seq(e, s) {
                return s;
            }
            std::hint::spin_loop();
        }
    }

    /// Takes entry `e`'s sequence lock if its sequence is still the even
    /// value `s`; the writes that follow a success are ordered after it.
    fn try_lock_seq(e: &Entry, s: u64) -> bool {
        if s & 1 == 1 || e.seq.compare_exchange(s, s | 1, Acquire, Relaxed).is_err() {
            return false;
        }
        fence(Release);
        true
    }

    /// Releases the sequence lock taken at even value `s`: readers that
    /// saw `s` retry.
    fn unlock_seq(e: &Entry, s: u64) {
        e.seq.store(s.wrapping_add(2), Release);
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
        if !Self::try_lock_seq(e, seq) {
            return;
        }
        let w = e.hops.load(Relaxed);
        e.hops.store(with_hop(w, dir, gen, hop), Relaxed);
        Self::unlock_seq(e, seq);
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
        let s = Self::lock_seq(e);
        Self::unlock_seq(e, s);
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

    /// Sweeps `count` entries starting at `*cursor` (wrapping inside
    /// `range`), removing expired ones; with `owner`, only entries whose
    /// [`aux_owner`] is that. Returns how many it removed.
    #[allow(clippy::too_many_arguments)]
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

    fn evict_some(&self, now: u64, to: &Timeouts, budget: usize) {
        // Start where the hash of `now` points, so concurrent evictors spread.
        let used = self.bump.load(Relaxed).max(1);
        let mut cursor = (now as usize).wrapping_mul(0x9e37_79b9) % used;
        self.sweep(0..self.max, &mut cursor, budget, now, to);
    }

    /// Every live entry (for `ctl conntrack` and tests; not for the fast path).
    pub fn snapshot_all(&self) -> Vec<Snapshot> {
        (0..self.bump.load(Acquire).min(self.max) as u32)
            .filter_map(|i| self.read(i))
            .collect()
    }
}

/// The TCP state machine without window tracking, after Linux's
/// `tcp_conntracks` table reduced to the states sluice keeps.
#[inline]
pub fn tcp_next(state: State, fl: &mut u8, dir: Dir, f: u8) -> State {
    use crate::wire::parse::tcp_flags::{ACK, FIN, RST, SYN};
    if f & RST != 0 {
        return State::Close;
    }
    match state {
        State::SynSent if dir == Dir::Reply && f & SYN != 0 && f & ACK != 0 => State::SynRecv,
        State::SynSent | State::SynRecv if dir == Dir::Original && f & SYN != 0 => state,
        State::SynRecv if dir == Dir::Original && f & ACK != 0 && f & FIN == 0 => {
            State::Established
        }
        _ if f & FIN != 0 => {
            *fl |= if dir == Dir::Original {
                flags::FIN_ORIG
            } else {
                flags::FIN_REPLY
            };
            if *fl & flags::FIN_ORIG != 0 && *fl & flags::FIN_REPLY != 0 {
                State::TimeWait
            } else {
                State::FinWait
            }
        }
        s => s,
    }
}

/// Whether a packet with TCP flags `f` (0 when not TCP) reopens the
/// connection it matched: a SYN without ACK in the original direction of a
/// closed or closing connection (the kernel
/// destroys the old entry and starts over).
#[inline]
pub fn reopens(dir: Dir, state: State, f: u8) -> bool {
    use crate::wire::parse::tcp_flags::{ACK, SYN};
    // The rare condition first (a bare SYN), so the test is one
    // predictable branch on nearly every packet.
    f & (SYN | ACK) == SYN
        && dir == Dir::Original
        && matches!(state, State::TimeWait | State::Close)
}

/// Where [`Conntrack::probe`] found a packet's connection: its entry, the
/// packet's direction, and the entry's sequence number and route-cache
/// word when read (see [`hops_of`], [`Conntrack::cache_hop`]).
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
    /// The packet reopens the connection it matched (see [`reopens`]);
    /// nothing was recorded.
    Reopen,
}

/// How a packet without a conntrack entry may start a connection (Linux's
/// `tcp_new`): a SYN opens one; a plain ACK is picked up as established
/// when loose pickup is on; SYN/ACK, FIN and RST never open one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpNew {
    Syn,
    Pickup,
    Invalid,
}

/// Classifies a TCP packet that matched no entry.
#[inline]
pub fn tcp_new(f: u8, loose: bool) -> TcpNew {
    use crate::wire::parse::tcp_flags::{ACK, FIN, RST, SYN};
    if f & RST != 0 {
        TcpNew::Invalid
    } else if f & SYN != 0 {
        if f & ACK != 0 {
            TcpNew::Invalid
        } else {
            TcpNew::Syn
        }
    } else if f & FIN != 0 {
        TcpNew::Invalid
    } else if f & ACK != 0 && loose {
        TcpNew::Pickup
    } else {
        TcpNew::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn t(a: u128, b: u128, sp: u16, dp: u16) -> Tuple {
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
        ct.insert(&a, &a.reverse(), State::Datagram, 0, 0, 0, &to)
            .unwrap();
        ct.insert(&b, &b.reverse(), State::Datagram, 0, 0, 5, &to)
            .unwrap();
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
        assert_eq!(tcp_new(ACK, true), TcpNew::Pickup);
        assert_eq!(tcp_new(ACK, false), TcpNew::Invalid);
        assert_eq!(tcp_new(SYN | ACK, true), TcpNew::Invalid);
        assert_eq!(tcp_new(FIN | ACK, true), TcpNew::Invalid);
        assert_eq!(tcp_new(RST, true), TcpNew::Invalid);
        assert_eq!(tcp_new(SYN, false), TcpNew::Syn);
    }

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
                        let res = ct.insert(&o, &r, State::Datagram, 0, 0, now, &to);
                        if exists {
                            prop_assert!(res.is_err());
                        } else if model.len() < 24 {
                            prop_assert!(res.is_ok(), "{:?}", res);
                            model.insert(o, (r, now));
                        } else {
                            prop_assert_eq!(res, Err(InsertError::Full));
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
