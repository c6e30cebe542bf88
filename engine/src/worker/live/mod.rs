//! Live workers: the pipeline on real interfaces through AF_XDP.
//!
//! [`LiveEngine::start`] resolves the desired state's interfaces (index, MAC,
//! queues), loads the XDP redirector and fills its maps, gives every worker
//! its (port, queue) sockets over one shared UMEM, points the XSKMAP at them,
//! attaches XDP, and starts one thread per `workers.cores` entry, pinned to
//! that core.
//!
//! ## A worker's loop
//! For each of its sockets in turn: reclaim completed TX frames, top up the
//! fill ring from the free list, take an RX burst of up to `workers.batch`
//! frames, build a [`Batch`] of the frames' bytes in the UMEM (the pipeline
//! rewrites them in place), run [`Pipeline::process`], then act on each
//! slot: `Forward(port)` moves the frame's descriptor to the TX ring of the
//! worker's socket on that port (same UMEM: no copy); `Drop(_)` returns the
//! frame to the free list; `Kernel` also returns it and counts it as
//! `kernel_unreachable`: the XDP program already passes to the kernel what
//! the pipeline's local decision would (ARP/ND, the node's addresses,
//! broadcast, multicast, link-local), so a `Kernel` verdict here means the
//! two disagree (e.g. a reply to a masquerade port not marked in use) and
//! the frame cannot be re-injected. After all sockets, TX rings that
//! received frames are kicked (`sendto`) if the kernel asks for it
//! (`need_wakeup`; always in copy mode), and the counters are published.
//!
//! No lock, allocation or syscall per packet: the batch and the per-batch
//! scratch are on the stack or preallocated, frames move between
//! preallocated rings and the free list, syscalls are per batch (TX kick)
//! or per idle period (`poll`). Control messages ([`WorkerCommand`]) are
//! read between batches. When idle, a worker sleeps in `poll` (1 ms), or
//! with `workers.busy_poll` spins on `recvfrom` with `SO_PREFER_BUSY_POLL`.
//!
//! ## Stopping
//! [`LiveEngine::shutdown`] detaches XDP first (the kernel takes the
//! traffic), then stops the workers; each drains its RX rings through the
//! pipeline, flushes TX, reclaims completions and reports where every UMEM
//! frame is ([`Accounting`]): the leak check.

//!
//! ## Files
//! `plan` (ports, queues and cores resolved on this machine; the errors),
//! `sockets` (a worker's UMEM and sockets), `worker` (the loop), `stats`
//! (what workers publish and report), `engine` ([`LiveEngine`]).

mod engine;
mod jumbo;
mod plan;
mod sockets;
mod stats;
mod worker;

pub use engine::{install_panic_hook, LiveEngine, LiveReport};
pub use plan::{
    assign_queues, check_mtus, plan_port, plan_ports, LiveError, LiveOptions, PortPlan,
};
pub use stats::{BatchTimes, StatsSnapshot, WorkerReport, WorkerStats, BATCH_BUCKETS};
pub use worker::WorkerCommand;
