//! The per-frame scratch the stages pass along ([`Meta`]) and the frame
//! lists they visit ([`Frames`]).

use arrayvec::ArrayVec;

use super::batch::{PortId, MAX_BATCH};
use crate::tables::conntrack;
use crate::wire::{Mac, Parsed};

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
    /// ([`conntrack::Conntrack::candidate`]).
    pub buckets: conntrack::Buckets,
    pub cand: u64,
    pub new_dst: Option<(u128, u16)>,
    pub new_src: Option<(u128, u16)>,
    pub inner: Parsed,
    pub service: u16,
    /// Policy stage: the classifier's decision id for a new connection
    /// ([`NO_DECISION`] when the stage did not judge the frame).
    pub decision: u32,
    /// Host stage (`stages::host`): the decision of the frame's host
    /// endpoint's untracked or pre-DNAT tiers that accepted it (Felix's
    /// accept mark: that endpoint's later policy for this side is
    /// skipped) or dropped it; [`NO_DECISION`] if none.
    pub pre_decision: u32,
    /// Commit stage: this frame's connection was committed by it (a new
    /// connection; `track` then says `Known`).
    pub committed: bool,
    /// Route stage: next hop (1-based id) and egress port.
    pub nh: u16,
    pub out_port: PortId,
    /// Neighbour stage: next-hop MAC, or none known and the frame goes to
    /// the kernel once written (`unresolved`; the commit stage still
    /// commits its connection first).
    pub next_mac: Mac,
    pub unresolved: bool,
}

impl Meta {
    /// Whether the frame's host endpoint accepted it in its untracked or
    /// pre-DNAT tiers (a frame they dropped is decided: no stage asks).
    #[inline]
    pub(crate) fn host_accepted(&self) -> bool {
        self.pre_decision != NO_DECISION
    }
}

/// `Meta::decision` of a frame the policy stage did not judge.
pub(crate) const NO_DECISION: u32 = u32::MAX;

/// A list of frames (indices into the batch, ascending): what a stage
/// visits, as VPP passes a node its frame vector.
pub(crate) type Frames = ArrayVec<u16, MAX_BATCH>;
