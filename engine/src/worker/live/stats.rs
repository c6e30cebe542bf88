//! What a worker publishes (counters, once per batch, without locks) and
//! reports when it stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::io::sys::XdpStatistics;
use crate::io::xsk::{Accounting, SocketSpec};
use crate::pipeline::{Counters, DropReason, Pipeline};
use crate::tables::Tables;

/// Counters a worker publishes once per batch (monotonic totals).
#[derive(Debug)]
pub struct WorkerStats {
    pub core: usize,
    pub batches: AtomicU64,
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    /// Forwarded frames dropped because the TX ring was full.
    pub tx_ring_full: AtomicU64,
    /// Frames the pipeline sent to the kernel that XDP had redirected.
    pub kernel_unreachable: AtomicU64,
    /// Frames handed to the kernel's stack to send (next hop unresolved).
    pub kernel_sent: AtomicU64,
    /// Of those, frames the kernel refused (no route of its own, ...).
    pub kernel_send_failed: AtomicU64,
    pub tx_wakeups: AtomicU64,
    pub rx_wakeups: AtomicU64,
    /// Table swaps applied.
    pub table_swaps: AtomicU64,
    /// Frames routed to a port this worker has no socket on (a port being
    /// added or removed, or whose device is gone).
    pub tx_no_socket: AtomicU64,
    /// Packets received in several frames (multi-buffer).
    pub multi_buffer: AtomicU64,
    /// Packets lost for their size: longer than sluice reassembles, or
    /// spanning several frames toward a socket without multi-buffer.
    pub too_long: AtomicU64,
    /// Sockets whose device was deleted under them.
    pub sockets_gone: AtomicU64,
    /// UMEM frames taken back from closed sockets.
    pub frames_reclaimed: AtomicU64,
    pub actions: [AtomicU64; 3],
    pub drops: [AtomicU64; DropReason::COUNT],
    pub port_rx: Vec<AtomicU64>,
    pub port_tx: Vec<AtomicU64>,
    pub bytes: AtomicU64,
    pub policy_allowed: AtomicU64,
    pub policy_denied: AtomicU64,
    pub pending_denied: AtomicU64,
    pub pending_allowed: AtomicU64,
    pub via_kernel: AtomicU64,
    pub icmp_too_big: AtomicU64,
    pub fragmented: AtomicU64,
    /// Time of `Pipeline::process` per batch: a count per bucket of
    /// [`BatchTimes`] (not cumulative) and the sum in nanoseconds.
    pub batch_buckets: [AtomicU64; BATCH_BUCKETS],
    pub batch_ns: AtomicU64,
    /// Hits per policy decision of the tables they belong to, copied by the
    /// worker every `HITS_EVERY` batches and when idle, with `try_lock`
    /// (a worker never waits for a reader).
    pub policy_hits: Mutex<Hits>,
}

/// A worker's per-decision counters (`Counters::policy_hits` and
/// `staged_hits`) and the tables whose decisions they count.
#[derive(Debug, Default)]
pub struct Hits {
    pub tables: Option<Arc<Tables>>,
    pub policy: Vec<u64>,
    pub staged: Vec<u64>,
}

/// How often (in batches) a busy worker copies its policy hit counters.
pub(super) const HITS_EVERY: u64 = 64;

/// Buckets of the batch-time histogram: upper bounds 1 µs doubling to
/// 8.192 ms, then one for anything longer.
pub const BATCH_BUCKETS: usize = 15;

/// A histogram of the time `Pipeline::process` took per batch. Doubling
/// bounds keep the relative resolution constant over four decades (a
/// batch of one frame, a full batch, a batch that met cold tables or a
/// preempted thread) and find a bucket with one `leading_zeros`, no search.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchTimes {
    /// Batches per bucket (not cumulative); the last is `+Inf`.
    pub counts: [u64; BATCH_BUCKETS],
    /// Total time, nanoseconds.
    pub sum_ns: u64,
}

impl BatchTimes {
    /// Upper bound of bucket `i` in nanoseconds (`None`: `+Inf`).
    pub fn bound_ns(i: usize) -> Option<u64> {
        (i + 1 < BATCH_BUCKETS).then(|| 1000 << i)
    }

    /// Counts one batch that took `ns` nanoseconds.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        // Bucket i holds (1000 << (i-1), 1000 << i] ns: the whole
        // microseconds rounded up, then the bit length of one less.
        let us = ns.div_ceil(1000);
        let i = (u64::BITS - us.saturating_sub(1).leading_zeros()) as usize;
        if let Some(c) = self.counts.get_mut(i.min(BATCH_BUCKETS - 1)) {
            *c += 1;
        }
        self.sum_ns += ns;
    }

    /// Batches counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn add(&mut self, o: &BatchTimes) {
        for (a, b) in self.counts.iter_mut().zip(o.counts) {
            *a += b;
        }
        self.sum_ns += o.sum_ns;
    }

    fn sub(&mut self, o: &BatchTimes) {
        for (a, b) in self.counts.iter_mut().zip(o.counts) {
            *a = a.saturating_sub(b);
        }
        self.sum_ns = self.sum_ns.saturating_sub(o.sum_ns);
    }
}

/// A plain copy of [`WorkerStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub batches: u64,
    pub rx: u64,
    pub tx: u64,
    pub tx_ring_full: u64,
    pub kernel_unreachable: u64,
    pub kernel_sent: u64,
    pub kernel_send_failed: u64,
    pub tx_wakeups: u64,
    pub rx_wakeups: u64,
    pub table_swaps: u64,
    pub tx_no_socket: u64,
    pub multi_buffer: u64,
    pub too_long: u64,
    pub sockets_gone: u64,
    pub frames_reclaimed: u64,
    pub batch_times: BatchTimes,
    /// The pipeline's counters.
    pub counters: Counters,
}

impl StatsSnapshot {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &StatsSnapshot) {
        self.batches += o.batches;
        self.rx += o.rx;
        self.tx += o.tx;
        self.tx_ring_full += o.tx_ring_full;
        self.kernel_unreachable += o.kernel_unreachable;
        self.kernel_sent += o.kernel_sent;
        self.kernel_send_failed += o.kernel_send_failed;
        self.tx_wakeups += o.tx_wakeups;
        self.rx_wakeups += o.rx_wakeups;
        self.table_swaps += o.table_swaps;
        self.tx_no_socket += o.tx_no_socket;
        self.multi_buffer += o.multi_buffer;
        self.too_long += o.too_long;
        self.sockets_gone += o.sockets_gone;
        self.frames_reclaimed += o.frames_reclaimed;
        self.batch_times.add(&o.batch_times);
        self.counters.add(&o.counters);
    }

    /// Takes `o` (an earlier snapshot of the same worker or total) out of
    /// `self`.
    pub fn sub(&mut self, o: &StatsSnapshot) {
        let sub = |a: &mut u64, b: u64| *a = a.saturating_sub(b);
        sub(&mut self.batches, o.batches);
        sub(&mut self.rx, o.rx);
        sub(&mut self.tx, o.tx);
        sub(&mut self.tx_ring_full, o.tx_ring_full);
        sub(&mut self.kernel_unreachable, o.kernel_unreachable);
        sub(&mut self.kernel_sent, o.kernel_sent);
        sub(&mut self.kernel_send_failed, o.kernel_send_failed);
        sub(&mut self.tx_wakeups, o.tx_wakeups);
        sub(&mut self.rx_wakeups, o.rx_wakeups);
        sub(&mut self.table_swaps, o.table_swaps);
        sub(&mut self.tx_no_socket, o.tx_no_socket);
        sub(&mut self.multi_buffer, o.multi_buffer);
        sub(&mut self.too_long, o.too_long);
        sub(&mut self.sockets_gone, o.sockets_gone);
        sub(&mut self.frames_reclaimed, o.frames_reclaimed);
        self.batch_times.sub(&o.batch_times);
        self.counters.sub(&o.counters);
    }
}

pub(super) fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

impl WorkerStats {
    pub(super) fn new(core: usize, ports: usize) -> WorkerStats {
        WorkerStats {
            core,
            batches: AtomicU64::new(0),
            rx: AtomicU64::new(0),
            tx: AtomicU64::new(0),
            tx_ring_full: AtomicU64::new(0),
            kernel_unreachable: AtomicU64::new(0),
            kernel_sent: AtomicU64::new(0),
            kernel_send_failed: AtomicU64::new(0),
            tx_wakeups: AtomicU64::new(0),
            rx_wakeups: AtomicU64::new(0),
            table_swaps: AtomicU64::new(0),
            tx_no_socket: AtomicU64::new(0),
            multi_buffer: AtomicU64::new(0),
            too_long: AtomicU64::new(0),
            sockets_gone: AtomicU64::new(0),
            frames_reclaimed: AtomicU64::new(0),
            actions: zeros(),
            drops: zeros(),
            port_rx: (0..ports).map(|_| AtomicU64::new(0)).collect(),
            port_tx: (0..ports).map(|_| AtomicU64::new(0)).collect(),
            bytes: AtomicU64::new(0),
            policy_allowed: AtomicU64::new(0),
            policy_denied: AtomicU64::new(0),
            pending_denied: AtomicU64::new(0),
            pending_allowed: AtomicU64::new(0),
            via_kernel: AtomicU64::new(0),
            icmp_too_big: AtomicU64::new(0),
            fragmented: AtomicU64::new(0),
            batch_buckets: zeros(),
            batch_ns: AtomicU64::new(0),
            policy_hits: Mutex::new(Hits::default()),
        }
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut c = Counters::new(self.port_rx.len());
        for (d, s) in c.actions.iter_mut().zip(&self.actions) {
            *d = l(s);
        }
        for (d, s) in c.drops.iter_mut().zip(&self.drops) {
            *d = l(s);
        }
        for (d, s) in c.port_rx.iter_mut().zip(&self.port_rx) {
            *d = l(s);
        }
        for (d, s) in c.port_tx.iter_mut().zip(&self.port_tx) {
            *d = l(s);
        }
        c.packets = c.actions.iter().sum();
        c.bytes = l(&self.bytes);
        c.policy_allowed = l(&self.policy_allowed);
        c.policy_denied = l(&self.policy_denied);
        c.pending_denied = l(&self.pending_denied);
        c.pending_allowed = l(&self.pending_allowed);
        c.via_kernel = l(&self.via_kernel);
        c.icmp_too_big = l(&self.icmp_too_big);
        c.fragmented = l(&self.fragmented);
        let mut batch_times = BatchTimes {
            sum_ns: l(&self.batch_ns),
            ..BatchTimes::default()
        };
        for (d, s) in batch_times.counts.iter_mut().zip(&self.batch_buckets) {
            *d = l(s);
        }
        StatsSnapshot {
            batches: l(&self.batches),
            rx: l(&self.rx),
            tx: l(&self.tx),
            tx_ring_full: l(&self.tx_ring_full),
            kernel_unreachable: l(&self.kernel_unreachable),
            kernel_sent: l(&self.kernel_sent),
            kernel_send_failed: l(&self.kernel_send_failed),
            tx_wakeups: l(&self.tx_wakeups),
            rx_wakeups: l(&self.rx_wakeups),
            table_swaps: l(&self.table_swaps),
            tx_no_socket: l(&self.tx_no_socket),
            multi_buffer: l(&self.multi_buffer),
            too_long: l(&self.too_long),
            sockets_gone: l(&self.sockets_gone),
            frames_reclaimed: l(&self.frames_reclaimed),
            batch_times,
            counters: c,
        }
    }
}

/// Worker-local tallies, flushed into [`WorkerStats`] once per batch.
#[derive(Debug, Default)]
pub(super) struct Local {
    pub(super) batches: u64,
    pub(super) rx: u64,
    pub(super) tx: u64,
    pub(super) tx_ring_full: u64,
    pub(super) kernel_unreachable: u64,
    pub(super) kernel_sent: u64,
    pub(super) kernel_send_failed: u64,
    pub(super) tx_wakeups: u64,
    pub(super) rx_wakeups: u64,
    pub(super) table_swaps: u64,
    pub(super) tx_no_socket: u64,
    pub(super) multi_buffer: u64,
    pub(super) too_long: u64,
    pub(super) sockets_gone: u64,
    pub(super) frames_reclaimed: u64,
    pub(super) batch_times: BatchTimes,
}

pub(super) fn publish(s: &WorkerStats, l: &Local, c: &Counters) {
    let st = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
    st(&s.batches, l.batches);
    st(&s.rx, l.rx);
    st(&s.tx, l.tx);
    st(&s.tx_ring_full, l.tx_ring_full);
    st(&s.kernel_unreachable, l.kernel_unreachable);
    st(&s.kernel_sent, l.kernel_sent);
    st(&s.kernel_send_failed, l.kernel_send_failed);
    st(&s.tx_wakeups, l.tx_wakeups);
    st(&s.rx_wakeups, l.rx_wakeups);
    st(&s.table_swaps, l.table_swaps);
    st(&s.tx_no_socket, l.tx_no_socket);
    st(&s.multi_buffer, l.multi_buffer);
    st(&s.too_long, l.too_long);
    st(&s.sockets_gone, l.sockets_gone);
    st(&s.frames_reclaimed, l.frames_reclaimed);
    for (a, v) in s.batch_buckets.iter().zip(l.batch_times.counts) {
        st(a, v);
    }
    st(&s.batch_ns, l.batch_times.sum_ns);
    for (a, v) in s.actions.iter().zip(c.actions) {
        st(a, v);
    }
    for (a, v) in s.drops.iter().zip(c.drops) {
        st(a, v);
    }
    for (a, v) in s.port_rx.iter().zip(&c.port_rx) {
        st(a, *v);
    }
    for (a, v) in s.port_tx.iter().zip(&c.port_tx) {
        st(a, *v);
    }
    st(&s.bytes, c.bytes);
    st(&s.policy_allowed, c.policy_allowed);
    st(&s.policy_denied, c.policy_denied);
    st(&s.pending_denied, c.pending_denied);
    st(&s.pending_allowed, c.pending_allowed);
    st(&s.via_kernel, c.via_kernel);
    st(&s.icmp_too_big, c.icmp_too_big);
    st(&s.fragmented, c.fragmented);
}

/// Copies the pipeline's policy hits for readers, unless one holds them.
pub(super) fn publish_hits(s: &WorkerStats, p: &Pipeline) {
    if let Ok(mut g) = s.policy_hits.try_lock() {
        let h = &mut *g;
        if !h
            .tables
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, p.tables()))
        {
            h.tables = Some(p.tables().clone());
        }
        h.policy.clear();
        h.policy.extend_from_slice(&p.counters().policy_hits);
        h.staged.clear();
        h.staged.extend_from_slice(&p.counters().staged_hits);
    }
}

/// What a worker reports when it stops.
#[derive(Debug)]
pub struct WorkerReport {
    pub id: usize,
    pub core: usize,
    pub stats: StatsSnapshot,
    /// Where every UMEM frame is, after draining.
    pub accounting: Accounting,
    /// The kernel's per-socket counters.
    pub sockets: Vec<(SocketSpec, XdpStatistics)>,
    pub zerocopy: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_sums() {
        let s = WorkerStats::new(0, 2);
        s.actions[0].store(3, Ordering::Relaxed);
        s.actions[2].store(1, Ordering::Relaxed);
        s.port_rx[1].store(4, Ordering::Relaxed);
        let snap = s.snapshot();
        assert_eq!(snap.counters.packets, 4);
        assert_eq!(snap.counters.port_rx, vec![0, 4]);
        let mut t = StatsSnapshot::default();
        t.add(&snap);
        t.add(&snap);
        assert_eq!(t.counters.packets, 8);
    }

    #[test]
    fn batch_times_bucket_edges() {
        let mut b = BatchTimes::default();
        // (duration ns, bucket): a bound belongs to its own bucket.
        let cases = [
            (0, 0),
            (1000, 0),
            (1001, 1),
            (2000, 1),
            (2001, 2),
            (8_192_000, 13),
            (8_192_001, 14),
            (u64::MAX / 2, 14),
        ];
        for (ns, want) in cases {
            let mut one = BatchTimes::default();
            one.record(ns);
            assert_eq!(one.counts[want], 1, "{ns} ns in bucket {want}: {one:?}");
            assert_eq!(one.count(), 1);
            if let Some(hi) = BatchTimes::bound_ns(want) {
                assert!(ns <= hi, "{ns} above bucket {want}'s bound {hi}");
            }
            if let Some(lo) = want.checked_sub(1).and_then(BatchTimes::bound_ns) {
                assert!(ns > lo, "{ns} within bucket {}'s bound {lo}", want - 1);
            }
            b.record(ns);
        }
        assert_eq!(b.count(), cases.len() as u64);
        assert_eq!(BatchTimes::bound_ns(0), Some(1000));
        assert_eq!(BatchTimes::bound_ns(13), Some(8_192_000));
        assert_eq!(BatchTimes::bound_ns(14), None);
        let mut t = b;
        t.sub(&b);
        assert_eq!(t, BatchTimes::default());
    }

    #[test]
    fn batch_times_are_published() {
        let s = WorkerStats::new(0, 1);
        let mut l = Local::default();
        l.batch_times.record(1500);
        l.batch_times.record(20_000);
        publish(&s, &l, &Counters::new(1));
        let snap = s.snapshot();
        assert_eq!(snap.batch_times, l.batch_times);
        assert_eq!(snap.batch_times.sum_ns, 21_500);
    }
}
