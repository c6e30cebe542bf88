//! The sans-IO packet pipeline.
//!
//! A [`Pipeline`] takes a [`Batch`] of frames whose bytes the caller owns
//! (UMEM frames when live, pcap buffers offline, vectors in tests) and sets
//! one [`Action`] per frame: forward to a port, drop with a [`DropReason`], or
//! hand to the kernel. It never reads a clock (time is passed in), never makes
//! a syscall, never allocates or locks per packet. The same call runs under
//! AF_XDP, under `sluice replay` and in unit tests.
//!
//! Stages, in order, each a loop over the batch (VPP-style), each documented
//! with what it reads, what it sets and which actions it can produce:
//!
//! 1. [`stages::parse`]: Ethernet, VLAN/QinQ, IPv4/IPv6 and transport.
//! 2. Conntrack and NAT lookup (runs before the local decision because a
//!    reply to a masqueraded flow is addressed to the node itself, as
//!    Linux's conntrack runs in PREROUTING).
//! 3. [`stages::route`]: one FIB lookup on the (translated) destination:
//!    the node's own addresses, broadcast, multicast and link-local are
//!    local routes and go to the kernel; martians, no route and TTL expiry
//!    are dropped. The lookup precedes policy as Linux's routing decision
//!    precedes its FORWARD hook.
//! 4. [`stages::policy`]: the compiled classifier, once per new connection.
//! 5. [`stages::neigh`]: the next hop's MAC.
//! 6. [`stages::rewrite`]: NAT, MACs, TTL/hop-limit decrement with
//!    incremental checksums.
//! 7. Counters per action, drop reason and port, accumulated in the batch
//!    loop and owned by the pipeline (one per worker).
//!
//! Stages visit lists of frame indices (VPP's frame vectors). The track
//! stage's first part (`stages::track::prepare`) settles the packets of
//! known connections: those need neither policy nor commit, and what
//! route, neighbour and rewrite do to one of them depends on that frame
//! alone, so it forwards each as soon as it finds its connection
//! ([`stages::known`]), with the next hop its conntrack entry caches for
//! the tables in use; a packet of a denied flow (a miss whose key the
//! policy memo holds) is routed and dropped there too. The other frames (new connections, ICMP errors,
//! untracked packets) are listed and go through stages 2–6 in order.

pub mod stages;

use std::sync::Arc;

use arrayvec::ArrayVec;

use crate::tables::conntrack::{self, Conntrack};
use crate::tables::Tables;
use crate::wire::{Mac, Parsed};

/// Largest batch.
pub const MAX_BATCH: usize = 256;

/// How long one pass of a pipeline's expiry sweep over its part of the
/// connection table takes: entries are checked at the rate that covers
/// the part in this time, whatever the packet rate (Linux's conntrack GC
/// worker likewise paces its scan by time, not by traffic). An expired
/// entry is already dead to lookups and the first to go when the table
/// is full; the sweep only gives its slot back within this time.
pub const SWEEP_PERIOD_NS: u64 = 5_000_000_000;

/// Most entries one batch checks for expiry (after an idle gap the sweep
/// catches up over several batches instead of stalling one).
pub const SWEEP_MAX_PER_BATCH: usize = 64;

/// A logical port (index into the config's `ports`).
pub type PortId = u16;

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $name:ident = $text:literal,)*) => {
        /// Why a frame was dropped. Indexes the drop counters; the names are
        /// the keys of the replay summary's `drops` object and the metrics
        /// label values.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason { $($(#[$doc])* $name,)* }
        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// Number of reasons.
            pub const COUNT: usize = DropReason::ALL.len();
            /// The reason's name (`malformed`, `no_route`, ...).
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$name => $text,)* }
            }
        }
    };
}

drop_reasons! {
    /// The frame could not be parsed (truncated, inconsistent lengths, bad
    /// IPv4 header checksum, ...).
    Malformed = "malformed",
    /// Source or destination address that must never be forwarded
    /// (loopback, multicast source, 0.0.0.0/8, link-local beyond scope).
    Martian = "martian",
    /// Denied by policy.
    Policy = "policy",
    /// No route to the destination.
    NoRoute = "no_route",
    /// The next hop has no neighbour entry (MAC unknown).
    NoNeighbor = "no_neighbor",
    /// TTL or hop limit would reach zero.
    TtlExceeded = "ttl_exceeded",
    /// The conntrack table is full and nothing could be evicted.
    ConntrackFull = "conntrack_full",
    /// A TCP packet that cannot start a connection (not a SYN) and matches
    /// none, with `conntrack.tcp_loose: false`.
    ConntrackInvalid = "conntrack_invalid",
    /// Masquerade found no free source port.
    NatExhausted = "nat_exhausted",
    /// A service with no backends.
    NoBackend = "no_backend",
}

/// What happens to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send out of this port.
    Forward(PortId),
    /// Drop, counted under the reason.
    Drop(DropReason),
    /// Hand to the kernel's stack (XDP_PASS live).
    Kernel,
}

impl Action {
    /// Index in [`Counters::actions`]: forward 0, drop 1, kernel 2.
    pub fn index(self) -> usize {
        match self {
            Action::Forward(_) => 0,
            Action::Drop(_) => 1,
            Action::Kernel => 2,
        }
    }
}

/// One frame of a batch and, after processing, its fate.
#[derive(Debug)]
pub struct Slot<'a> {
    /// The frame's bytes (rewritten in place when forwarded).
    pub frame: &'a mut [u8],
    /// Port the frame arrived on.
    pub ingress: PortId,
    /// Set by [`Pipeline::process`].
    pub action: Action,
    /// End offset of the bytes the pipeline wrote (0: untouched), so a
    /// caller replaying the same buffers can restore exactly that much.
    pub written: u32,
    /// The frame's own time (ns), or 0 to use the batch's `now`. Replay
    /// sets it from the capture so results do not depend on how frames
    /// were batched.
    pub ts: u64,
}

/// Up to [`MAX_BATCH`] frames. Building one does not allocate.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    slots: ArrayVec<Slot<'a>, MAX_BATCH>,
}

impl<'a> Batch<'a> {
    /// An empty batch.
    pub fn new() -> Self {
        Batch {
            slots: ArrayVec::new(),
        }
    }

    /// Adds a frame; gives it back when the batch is full.
    #[inline]
    pub fn push(&mut self, frame: &'a mut [u8], ingress: PortId) -> Result<(), &'a mut [u8]> {
        self.push_at(frame, ingress, 0)
    }

    /// Adds a frame with its own timestamp (ns, non-zero).
    #[inline]
    pub fn push_at(
        &mut self,
        frame: &'a mut [u8],
        ingress: PortId,
        ts: u64,
    ) -> Result<(), &'a mut [u8]> {
        self.slots
            .try_push(Slot {
                frame,
                ingress,
                action: Action::Kernel,
                written: 0,
                ts,
            })
            .map_err(|e| e.element().frame)
    }

    /// Number of frames.
    #[inline]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// No frames.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The frames and their actions.
    #[inline]
    pub fn slots(&self) -> &[Slot<'a>] {
        &self.slots
    }

    /// Mutable access (for the pipeline and tests).
    #[inline]
    pub fn slots_mut(&mut self) -> &mut [Slot<'a>] {
        &mut self.slots
    }

    /// Removes every frame.
    pub fn clear(&mut self) {
        self.slots.clear();
    }
}

/// Per-pipeline counters: plain integers owned by one worker, summed by
/// whoever reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    /// forward, drop, kernel.
    pub actions: [u64; 3],
    pub drops: [u64; DropReason::COUNT],
    /// Frames received per port.
    pub port_rx: Vec<u64>,
    /// Frames forwarded out of each port.
    pub port_tx: Vec<u64>,
    /// Connections that were policy-checked, allowed and denied.
    pub policy_allowed: u64,
    pub policy_denied: u64,
    /// Hits per policy decision (index: the classifier's decision id; the
    /// names are `Classifier::decision_info`).
    pub policy_hits: Vec<u64>,
}

impl Counters {
    /// Zeroed counters for `ports` ports.
    pub fn new(ports: usize) -> Self {
        Counters {
            port_rx: vec![0; ports],
            port_tx: vec![0; ports],
            ..Counters::default()
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counters) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        for (a, b) in self.actions.iter_mut().zip(other.actions) {
            *a += b;
        }
        for (a, b) in self.drops.iter_mut().zip(other.drops) {
            *a += b;
        }
        if self.port_rx.len() < other.port_rx.len() {
            self.port_rx.resize(other.port_rx.len(), 0);
            self.port_tx.resize(other.port_tx.len(), 0);
        }
        for (a, b) in self.port_rx.iter_mut().zip(&other.port_rx) {
            *a += b;
        }
        for (a, b) in self.port_tx.iter_mut().zip(&other.port_tx) {
            *a += b;
        }
        self.policy_allowed += other.policy_allowed;
        self.policy_denied += other.policy_denied;
        if self.policy_hits.len() < other.policy_hits.len() {
            self.policy_hits.resize(other.policy_hits.len(), 0);
        }
        for (a, b) in self.policy_hits.iter_mut().zip(&other.policy_hits) {
            *a += b;
        }
    }

    /// Count of drops for `reason`.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
}

/// Where a frame stands with conntrack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Track {
    /// Not tracked (non-tracked ICMP, ICMP errors about unknown flows).
    #[default]
    Untracked,
    /// Key computed, not looked up yet.
    Lookup,
    /// Left for the in-order part of the track stage: a packet that matched
    /// no connection (or reopens one), or an ICMP error whose quoted packet
    /// is still to be looked up.
    Pending,
    /// Cannot start a connection (TCP without SYN and no pickup, ICMP reply).
    Invalid,
    /// A new connection in this state, not yet committed.
    New(conntrack::State),
    /// A packet of a known connection.
    Known {
        id: conntrack::EntryId,
        dir: conntrack::Dir,
    },
    /// An ICMP error about a known connection.
    Related {
        id: conntrack::EntryId,
        dir: conntrack::Dir,
    },
}

/// Per-frame scratch the stages pass along.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Meta {
    /// The action is decided; later stages skip the frame.
    pub done: bool,
    pub parsed: Parsed,
    /// Track stage: conntrack key (for a related ICMP error, the quoted
    /// packet's reversed; see [`conntrack::Key`]), its hash, the state, the translation to apply,
    /// the quoted packet, and the service a new connection is DNATed to
    /// (index + 1, 0 = none).
    pub track: Track,
    pub key: conntrack::Key,
    pub hash: u64,
    /// The key's first index bucket and the slot that probably holds it
    /// ([`Conntrack::candidate`]).
    pub buckets: conntrack::Buckets,
    pub cand: u64,
    pub new_dst: Option<(u128, u16)>,
    pub new_src: Option<(u128, u16)>,
    pub inner: Parsed,
    pub service: u16,
    /// Policy stage: the classifier's decision id for a new connection.
    pub decision: u32,
    /// Route stage: next hop (1-based id) and egress port.
    pub nh: u16,
    pub out_port: PortId,
    /// Neighbour stage: next-hop MAC.
    pub next_mac: Mac,
}

/// The pipeline of one worker: shared read-mostly tables plus its own
/// scratch and counters.
pub struct Pipeline {
    tables: Arc<Tables>,
    ct: Arc<Conntrack>,
    meta: Vec<Meta>,
    counters: Counters,
    policy: stages::policy::PolicyScratch,
    /// The frames still undecided after the track stage's first part.
    general: stages::track::Frames,
    /// The slice of conntrack entries this pipeline sweeps, and where.
    sweep: std::ops::Range<usize>,
    sweep_cursor: usize,
    /// This pipeline's worker number (recorded in the entries it creates)
    /// and whether it sweeps only those (replay: each flow's entries then
    /// expire on its own worker's clock, so results do not depend on how
    /// fast the other workers run).
    owner: u8,
    sweep_owned_only: bool,
    /// The sweep's pace (see [`SWEEP_PERIOD_NS`]): the time of the last
    /// batch (0: none yet) and the entry-nanoseconds owed.
    sweep_last: u64,
    sweep_credit: u128,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("counters", &self.counters)
            .finish()
    }
}

impl Pipeline {
    /// A pipeline over `tables` sharing the connection table `ct` with the
    /// other workers. It sweeps all of `ct` for expired entries until told
    /// its slice with [`Pipeline::set_sweep_slice`].
    pub fn new(tables: Arc<Tables>, ct: Arc<Conntrack>) -> Pipeline {
        let ports = tables.ports.len();
        let policy = stages::policy::PolicyScratch::new(&tables);
        let sweep = 0..ct.capacity();
        let mut counters = Counters::new(ports);
        counters.policy_hits = vec![0; tables.policy.decisions().len()];
        Pipeline {
            tables,
            ct,
            meta: vec![Meta::default(); MAX_BATCH],
            counters,
            policy,
            general: stages::track::Frames::new(),
            sweep,
            sweep_cursor: 0,
            owner: 0,
            sweep_owned_only: false,
            sweep_last: 0,
            sweep_credit: 0,
        }
    }

    /// Sets the worker number recorded in new entries; with `owned_only`,
    /// expiry sweeps touch only this worker's entries.
    pub fn set_owner(&mut self, owner: u8, owned_only: bool) {
        self.owner = owner;
        self.sweep_owned_only = owned_only;
    }

    /// Makes this pipeline sweep slice `w` of `n` of the connection table.
    pub fn set_sweep_slice(&mut self, w: usize, n: usize) {
        let cap = self.ct.capacity();
        let n = n.max(1);
        self.sweep = cap * w / n..cap * (w + 1) / n;
        self.sweep_cursor = self.sweep.start;
    }

    /// The shared connection table.
    pub fn conntrack(&self) -> &Arc<Conntrack> {
        &self.ct
    }

    /// Replaces the tables (between batches).
    pub fn set_tables(&mut self, tables: Arc<Tables>) {
        if tables.ports.len() > self.counters.port_rx.len() {
            self.counters.port_rx.resize(tables.ports.len(), 0);
            self.counters.port_tx.resize(tables.ports.len(), 0);
        }
        self.policy = stages::policy::PolicyScratch::new(&tables);
        // Decision ids belong to a classifier: a new one starts its hits over.
        self.counters.policy_hits = vec![0; tables.policy.decisions().len()];
        self.tables = tables;
    }

    /// The tables in use.
    pub fn tables(&self) -> &Arc<Tables> {
        &self.tables
    }

    /// Counters since creation.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Processes a batch: sets every slot's action (and rewrites forwarded
    /// frames in place). `now` is nanoseconds on a monotonic clock of the
    /// caller's choosing (capture time in replay).
    // Not inlined: profiles (callgrind's per-stage breakdown, the CI gate)
    // find the pipeline by this name; the call is once per batch.
    #[inline(never)]
    pub fn process(&mut self, now: u64, batch: &mut Batch<'_>) {
        let slots = batch.slots_mut();
        let n = slots.len();
        let Some(meta) = self.meta.get_mut(..n) else {
            return;
        };
        let t = &*self.tables;
        let ct = &*self.ct;
        stages::parse::run(slots, meta);
        let general = &mut self.general;
        stages::track::prepare(
            t,
            ct,
            now,
            &self.policy,
            &mut self.counters,
            slots,
            meta,
            general,
        );
        // The rest, usually in one round; more when a frame must wait for a
        // connection an earlier frame of the batch opens (see
        // `stages::track::run`).
        let mut rest: &[u16] = general;
        while !rest.is_empty() {
            let k = stages::track::run(t, ct, now, slots, meta, rest).max(1);
            let (round, next) = rest.split_at(k.min(rest.len()));
            stages::route::run(t, slots, meta, round);
            stages::policy::run(t, &mut self.policy, slots, meta, round, &mut self.counters);
            stages::neigh::run(t, slots, meta, round);
            stages::commit::run(t, ct, now, self.owner, slots, meta, round);
            stages::rewrite::run(t, slots, meta, round);
            rest = next;
        }
        count(&mut self.counters, slots);
        // Incremental expiry: a few entries per batch, no global pause.
        let last = slots
            .last()
            .map_or(now, |s| if s.ts != 0 { s.ts } else { now });
        let span = ct.used_part(self.sweep.clone()).len();
        let due = sweep_due(&mut self.sweep_last, &mut self.sweep_credit, span, last);
        if due > 0 {
            let owner = self.sweep_owned_only.then_some(self.owner);
            ct.sweep_owned(
                self.sweep.clone(),
                &mut self.sweep_cursor,
                due,
                last,
                &t.timeouts,
                owner,
            );
        }
    }
}

/// How many entries the sweep checks at `now`: the entries in use in the
/// pipeline's part of the table (`span`) times the time since the last
/// batch (`last`, 0 before the first), over [`SWEEP_PERIOD_NS`], the
/// remainder carried in `credit` (entry-nanoseconds). At most
/// [`SWEEP_MAX_PER_BATCH`]; what is owed beyond that is kept up to one
/// more batch's worth.
fn sweep_due(last: &mut u64, credit: &mut u128, span: usize, now: u64) -> usize {
    let period = u128::from(SWEEP_PERIOD_NS);
    let max = SWEEP_MAX_PER_BATCH as u128;
    let elapsed = if *last == 0 {
        0
    } else {
        now.saturating_sub(*last)
    };
    *last = (*last).max(now);
    let owed = *credit + u128::from(elapsed) * span as u128;
    let due = (owed / period).min(max);
    *credit = (owed - due * period).min(max * period);
    due as usize
}

fn count(c: &mut Counters, slots: &[Slot<'_>]) {
    // Forwarded frames are counted as what is left (most frames: one add
    // for the batch instead of one per frame).
    let mut other = 0u64;
    for s in slots {
        c.bytes += s.frame.len() as u64;
        if let Some(rx) = c.port_rx.get_mut(usize::from(s.ingress)) {
            *rx += 1;
        }
        match s.action {
            Action::Forward(p) => {
                if let Some(tx) = c.port_tx.get_mut(usize::from(p)) {
                    *tx += 1;
                }
            }
            Action::Drop(r) => {
                other += 1;
                c.actions[1] += 1;
                c.drops[r as usize] += 1;
            }
            Action::Kernel => {
                other += 1;
                c.actions[2] += 1;
            }
        }
    }
    let n = slots.len() as u64;
    c.packets += n;
    c.actions[0] += n - other;
}
