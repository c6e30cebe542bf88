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
//! 1. [`stages::parse`]: Ethernet, VLAN/QinQ, IPv4/IPv6 and transport;
//!    live, [`stages::checksum`] then completes partial checksums;
//!    [`stages::spoof`] drops frames from a filtered port (a workload's)
//!    whose source address it does not allow.
//!    With host endpoints, [`stages::host`]'s untracked pass (raw
//!    PREROUTING) judges frames from their ports before conntrack.
//! 2. [`stages::track`]: conntrack and NAT lookup (before the local
//!    decision because a reply to a masqueraded flow is addressed to the
//!    node itself, as Linux's conntrack runs in PREROUTING); service DNAT
//!    for new connections.
//! 3. [`stages::route`]: one FIB lookup on the (translated) destination:
//!    the node's own addresses, broadcast, multicast and link-local are
//!    local routes and go to the kernel; martians, no route and TTL expiry
//!    are dropped. The lookup precedes policy as Linux's routing decision
//!    precedes its FORWARD hook.
//!    After it, [`stages::host`]'s pre-DNAT pass judges new connections
//!    from host endpoint ports, its input pass new connections to the node
//!    itself.
//! 4. [`stages::policy`]: the compiled classifier, once per new connection;
//!    then [`stages::host`]'s forward pass (host endpoints' forward tiers).
//! 5. [`stages::neigh`]: the next hop's MAC.
//! 6. [`stages::commit`]: new connections enter the connection table, with
//!    masquerade's source port chosen (POSTROUTING + conntrack confirm).
//! 7. [`stages::rewrite`]: NAT, MACs, TTL/hop-limit decrement with
//!    incremental checksums.
//!
//! Counters per action, drop reason and port are accumulated once per
//! batch and owned by the pipeline (one per worker); the expiry sweep
//! checks a few connection-table entries per batch, paced by time.
//!
//! Stages visit lists of frame indices (VPP's frame vectors). The track
//! stage's first part (`stages::track::prepare`) settles the packets of
//! known connections: those need neither policy nor commit, and what
//! route, neighbour and rewrite do to one of them depends on that frame
//! alone, so it forwards each as soon as it finds its connection
//! ([`stages::known`]), with the next hop its conntrack entry caches for
//! the tables in use; a packet of a denied flow (a miss whose key the
//! policy memo holds) is routed and dropped there too. The other frames
//! (new connections, ICMP errors, untracked packets) are listed and go
//! through stages 2–7 in order. The per-frame steps those stages share
//! (route decision, next-hop MAC, writing the frame) live in `steps`.
//!
//! Files: `batch` (what callers hand in and get back), `meta` (per-frame
//! scratch), `report` (a frame's path through the stages, read back after
//! processing), `steps`, `stages/`, and [`Pipeline`] here.

pub mod batch;
pub(crate) mod meta;
pub mod report;
pub mod stages;
pub(crate) mod steps;

use std::sync::Arc;

pub use batch::{Action, Batch, Counters, DropReason, PortId, Slot, MAX_BATCH};
use meta::{Frames, Meta};

use crate::tables::conntrack::Conntrack;
use crate::tables::Tables;

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

/// The pipeline of one worker: shared read-mostly tables plus its own
/// scratch and counters.
pub struct Pipeline {
    tables: Arc<Tables>,
    ct: Arc<Conntrack>,
    meta: Vec<Meta>,
    counters: Counters,
    policy: stages::policy::PolicyScratch,
    /// The frames still undecided after the track stage's first part.
    general: Frames,
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
    /// Complete partial TCP/UDP checksums (see
    /// [`Pipeline::complete_partial_checksums`]).
    complete_partial: bool,
    /// The ports' MTUs and the ICMP error limiter ([`stages::mtu`]).
    mtu: stages::mtu::MtuState,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("counters", &self.counters)
            .finish()
    }
}

/// Zeroed per-decision counters of the pending walk: one per decision
/// when the policy has staged policies, none without.
fn staged_hits(t: &Tables) -> Vec<u64> {
    let n = t.policy.staged().map_or(0, |_| t.policy.decisions().len());
    vec![0; n]
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
        counters.staged_hits = staged_hits(&tables);
        Pipeline {
            tables,
            ct,
            meta: vec![Meta::default(); MAX_BATCH],
            counters,
            policy,
            general: Frames::new(),
            sweep,
            sweep_cursor: 0,
            owner: 0,
            sweep_owned_only: false,
            sweep_last: 0,
            sweep_credit: 0,
            complete_partial: false,
            mtu: stages::mtu::MtuState::default(),
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

    /// Completes partial TCP and UDP checksums ([`stages::checksum`]; off
    /// by default). Live, frames from a veth whose sender has transmit
    /// checksum offload on carry a checksum field holding only the
    /// pseudo-header sum (the kernel's `CHECKSUM_PARTIAL`, which XDP does
    /// not see); the egress device would complete it, and AF_XDP transmit
    /// does not, so the live engine turns this on. A frame from a capture
    /// or a wire is never partial: replay leaves it off, as the kernel
    /// forwards such a frame's checksum untouched.
    pub fn complete_partial_checksums(&mut self, on: bool) {
        self.complete_partial = on;
    }

    /// Starts port `port`'s counters over: its number now names another
    /// port (a removed port's number is reused by the next one added).
    pub fn reset_port_counters(&mut self, port: PortId) {
        let i = usize::from(port);
        for c in [&mut self.counters.port_rx, &mut self.counters.port_tx] {
            if let Some(v) = c.get_mut(i) {
                *v = 0;
            }
        }
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
        self.counters.staged_hits = staged_hits(&tables);
        self.tables = tables;
    }

    /// Checks forwarded packets against port `port`'s MTU (0: do not),
    /// answering those too big as Linux does ([`stages::mtu`]). Live:
    /// the interface's MTU; until one is set nothing is checked.
    pub fn set_port_mtu(&mut self, port: PortId, mtu: u32) {
        let i = usize::from(port);
        if self.mtu.mtu.len() <= i {
            self.mtu.mtu.resize(i + 1, 0);
        }
        self.mtu.mtu[i] = mtu;
    }

    /// What the last [`Pipeline::process`] did with the frame in slot `i`
    /// of `batch` (the same batch, still holding its frames).
    pub fn report(&self, i: usize, batch: &Batch<'_>) -> Option<report::FrameReport> {
        let s = batch.slots().get(i)?;
        let m = self.meta.get(i)?;
        Some(report::of(&self.tables, m, s))
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
        if self.complete_partial {
            stages::checksum::run(slots, meta);
        }
        stages::spoof::run(t, slots, meta);
        stages::host::untracked(t, &mut self.policy, &mut self.counters, slots, meta);
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
        stages::host::untracked_after(&self.policy, meta, general);
        // The rest, usually in one round; more when a frame must wait for a
        // connection an earlier frame of the batch opens (see
        // `stages::track::run`).
        let mut rest: &[u16] = general;
        while !rest.is_empty() {
            let k = stages::track::run(t, ct, now, slots, meta, rest).max(1);
            let (round, next) = rest.split_at(k.min(rest.len()));
            let (ps, c) = (&mut self.policy, &mut self.counters);
            stages::route::run(t, slots, meta, round);
            stages::host::pre_dnat(t, ps, c, slots, meta, round);
            stages::host::input(t, ps, c, slots, meta, round);
            stages::policy::run(t, ps, slots, meta, round, c);
            stages::host::forward(t, ps, c, slots, meta, round);
            stages::neigh::run(t, slots, meta, round);
            stages::commit::run(t, ct, now, self.owner, slots, meta, round);
            stages::rewrite::run(t, slots, meta, round);
            rest = next;
        }
        if !self.mtu.mtu.is_empty() {
            stages::mtu::run(t, &mut self.mtu, now, slots, meta, &mut self.counters);
        }
        #[cfg(feature = "gate-selftest")]
        gate_selftest_pass(slots);
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
            Action::ViaKernel => {
                other += 1;
                c.actions[2] += 1;
                c.via_kernel += 1;
            }
        }
    }
    let n = slots.len() as u64;
    c.packets += n;
    c.actions[0] += n - other;
}

/// The `gate-selftest` feature's extra pass over a batch: folds the first
/// 64 bytes of every frame, a slowdown of the kind a careless change adds,
/// for the regression gate to catch. Not compiled in any real build.
#[cfg(feature = "gate-selftest")]
#[inline(never)]
fn gate_selftest_pass(slots: &[Slot<'_>]) {
    let mut acc = 0u32;
    for s in slots {
        for b in s.frame.iter().take(64) {
            acc = acc.rotate_left(5) ^ u32::from(*b);
        }
    }
    std::hint::black_box(acc);
}
