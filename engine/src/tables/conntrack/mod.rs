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
//!
//! # Files
//!
//! - `key`: tuples, the five-word key and its keyed hash.
//! - `state`: direction, connection state, TCP transitions, flags, timeouts.
//! - `entry`: the 128-byte entry, its status word and sequence lock.
//! - `index`: the layout of index buckets and slots.
//! - `natref`: reference counts of masquerade ports.
//! - `table`: the [`Conntrack`] struct and its constructor.
//! - `lookup`: the full lookup and what lookups report.
//! - `probe`: the per-packet path (batched lookup, update, route cache).
//! - `insert`: insertion, removal, the free list and the insert locks.
//! - `sweep`: expiry sweeps and eviction.

mod entry;
mod index;
mod insert;
mod key;
mod lookup;
mod natref;
mod probe;
mod state;
mod sweep;
mod table;

pub use entry::{
    aux_decision, aux_owner, aux_pack, aux_service, hops_of, with_hop, EntryId, Snapshot,
};
pub use insert::InsertError;
pub use key::{meta_word, HashKeys, Key, Tuple};
pub use lookup::{Found, Hit, Located, Probe};
pub use natref::NatPortSink;
pub use probe::Buckets;
pub use state::{flags, reopens, tcp_new, tcp_next, Dir, State, TcpNew, TimeoutTable, Timeouts};
pub use table::Conntrack;
