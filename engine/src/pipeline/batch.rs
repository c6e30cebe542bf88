//! The batch the pipeline works on and what it reports: frames with their
//! ingress port and, after processing, one [`Action`] each; the drop
//! reasons; the per-pipeline counters.

use arrayvec::ArrayVec;

/// Largest batch.
pub const MAX_BATCH: usize = 256;

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
    /// Larger than the egress port's MTU and not answered with an ICMP
    /// error (IPv4 without DF, an ICMP error, no route back, rate limit).
    TooBig = "too_big",
    /// From a port with a source filter (a workload's, anti-spoofing) and
    /// a source address the filter does not allow.
    Spoofed = "spoofed",
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
    /// Forwarded, but the next hop's MAC is unknown: the network layer is
    /// written as it leaves (NAT, TTL), and the kernel's stack resolves the
    /// neighbour (ARP / ND) and sends it (live: a raw IP socket). Counted
    /// with `kernel` in [`Counters::actions`] and on its own in
    /// [`Counters::via_kernel`].
    ViaKernel,
}

impl Action {
    /// Index in [`Counters::actions`]: forward 0, drop 1, kernel 2 (both
    /// ways to the kernel).
    pub fn index(self) -> usize {
        match self {
            Action::Forward(_) => 0,
            Action::Drop(_) => 1,
            Action::Kernel | Action::ViaKernel => 2,
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
    /// Set by [`super::Pipeline::process`].
    pub action: Action,
    /// End offset of the bytes the pipeline wrote (0: untouched), so a
    /// caller replaying the same buffers can restore exactly that much.
    pub written: u32,
    /// The frame's own time (ns), or 0 to use the batch's `now`. Replay
    /// sets it from the capture so results do not depend on how frames
    /// were batched.
    pub ts: u64,
    /// Set with `Forward`: send the IPv4 packet as fragments for this MTU
    /// (0: as it is). Whoever transmits does the splitting
    /// ([`crate::wire::frag::Fragments`]): the pipeline writes in place and
    /// one frame becomes several.
    pub fragment: u16,
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
                fragment: 0,
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
    /// Of the `kernel` action: frames forwarded through the kernel because
    /// their next hop had no neighbour entry ([`Action::ViaKernel`]).
    pub via_kernel: u64,
    /// ICMP "fragmentation needed" / "packet too big" errors sent back
    /// for packets larger than their egress MTU (each also counted as
    /// forwarded, to the port it left by).
    pub icmp_too_big: u64,
    /// IPv4 packets without DF bigger than the egress MTU, forwarded as
    /// fragments.
    pub fragmented: u64,
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
    /// With staged policies: per direction of each new connection judged,
    /// what decided it in the pending walk (staged policies enforced;
    /// `Classifier::staged`), by decision id. Empty without.
    pub staged_hits: Vec<u64>,
    /// New connections allowed that the pending walk denies, and denied
    /// that it allows.
    pub pending_denied: u64,
    pub pending_allowed: u64,
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
        self.via_kernel += other.via_kernel;
        self.icmp_too_big += other.icmp_too_big;
        self.fragmented += other.fragmented;
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
        if self.staged_hits.len() < other.staged_hits.len() {
            self.staged_hits.resize(other.staged_hits.len(), 0);
        }
        for (a, b) in self.staged_hits.iter_mut().zip(&other.staged_hits) {
            *a += b;
        }
        self.pending_denied += other.pending_denied;
        self.pending_allowed += other.pending_allowed;
    }

    /// Takes `other` (an earlier reading of the same counters) out of
    /// `self`, each counter saturating at zero.
    pub fn sub(&mut self, other: &Counters) {
        let sub = |a: &mut u64, b: u64| *a = a.saturating_sub(b);
        sub(&mut self.packets, other.packets);
        sub(&mut self.bytes, other.bytes);
        for (a, b) in self.actions.iter_mut().zip(other.actions) {
            sub(a, b);
        }
        for (a, b) in self.drops.iter_mut().zip(other.drops) {
            sub(a, b);
        }
        for (a, b) in self.port_rx.iter_mut().zip(&other.port_rx) {
            sub(a, *b);
        }
        for (a, b) in self.port_tx.iter_mut().zip(&other.port_tx) {
            sub(a, *b);
        }
        sub(&mut self.policy_allowed, other.policy_allowed);
        sub(&mut self.policy_denied, other.policy_denied);
        sub(&mut self.via_kernel, other.via_kernel);
        sub(&mut self.icmp_too_big, other.icmp_too_big);
        sub(&mut self.fragmented, other.fragmented);
        for (a, b) in self.policy_hits.iter_mut().zip(&other.policy_hits) {
            sub(a, *b);
        }
        for (a, b) in self.staged_hits.iter_mut().zip(&other.staged_hits) {
            sub(a, *b);
        }
        sub(&mut self.pending_denied, other.pending_denied);
        sub(&mut self.pending_allowed, other.pending_allowed);
    }

    /// Count of drops for `reason`.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
}
