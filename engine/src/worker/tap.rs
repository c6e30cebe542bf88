//! Taps: the frames a `ctl trace` or `ctl capture` asks for, taken from a
//! worker's batches as they pass. With no tap a worker pays one branch
//! per batch. With one, it parses each frame of the batch against the
//! filter before the pipeline runs (copying the ones a capture wants, as
//! received), and after it reads back what the pipeline did with those
//! ([`crate::pipeline::report`]) and copies them as sent. The records go
//! to the control side on a bounded channel; when it is full a record is
//! dropped and counted, never waited for.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crossbeam::channel::Sender;

use crate::pipeline::report::FrameReport;
use crate::pipeline::{Action, Batch, Pipeline, PortId};
use crate::wire::{self, Family};

/// Which frames: every field set must match (addresses and ports on the
/// frame as received; `ports` is the sluice port it arrived on or leaves
/// by).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapFilter {
    pub proto: Option<u8>,
    /// Source or destination.
    pub addr: Option<(Family, u128)>,
    /// Source or destination port.
    pub port: Option<u16>,
    pub src: Option<(Family, u128)>,
    pub dst: Option<(Family, u128)>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// Sluice port numbers (ingress or egress).
    pub ports: Option<Vec<PortId>>,
}

impl TapFilter {
    /// Whether a frame as received on `ingress` may match (the egress
    /// port is checked after processing).
    fn matches_input(&self, frame: &[u8]) -> bool {
        let l3 = self.proto.is_some()
            || self.addr.is_some()
            || self.port.is_some()
            || self.src.is_some()
            || self.dst.is_some()
            || self.sport.is_some()
            || self.dport.is_some();
        if !l3 {
            return true;
        }
        let Ok(p) = wire::parse(frame) else {
            return false;
        };
        let ports = p.l4kind.has_ports();
        self.proto.is_none_or(|x| p.proto == x)
            && self
                .addr
                .is_none_or(|a| a == (p.family, p.src) || a == (p.family, p.dst))
            && self
                .port
                .is_none_or(|x| ports && (p.sport == x || p.dport == x))
            && self.src.is_none_or(|a| a == (p.family, p.src))
            && self.dst.is_none_or(|a| a == (p.family, p.dst))
            && self.sport.is_none_or(|x| ports && p.sport == x)
            && self.dport.is_none_or(|x| ports && p.dport == x)
    }

    fn matches_ports(&self, ingress: PortId, action: Action) -> bool {
        let Some(ps) = &self.ports else {
            return true;
        };
        let egress = match action {
            Action::Forward(p) => Some(p),
            _ => None,
        };
        ps.contains(&ingress) || egress.is_some_and(|e| ps.contains(&e))
    }
}

/// One tapped frame.
#[derive(Clone, Debug)]
pub struct TapRecord {
    /// Unix time, ns.
    pub ts: u64,
    /// The pipeline's clock (for reading conntrack ages).
    pub now: u64,
    pub worker: usize,
    pub ingress: PortId,
    pub action: Action,
    /// The frame as received and as sent (a capture's).
    pub rx: Option<Vec<u8>>,
    pub tx: Option<Vec<u8>>,
    /// Its path through the stages (a trace's).
    pub report: Option<FrameReport>,
}

/// A running trace or capture.
#[derive(Debug)]
pub struct Tap {
    pub id: u64,
    pub filter: TapFilter,
    /// Record each frame's path (trace) and its bytes (capture).
    pub trace: bool,
    pub capture: bool,
    /// Frames still wanted (all workers together); below 1, none.
    pub remaining: AtomicI64,
    pub records: Sender<TapRecord>,
    /// Records the control side was too slow to take.
    pub dropped: AtomicU64,
}

/// The frames of `batch` `tap` wants, before the pipeline runs: index and,
/// for a capture, a copy as received.
pub fn before(tap: &Tap, batch: &Batch<'_>) -> Vec<(usize, Option<Vec<u8>>)> {
    if tap.remaining.load(Ordering::Relaxed) <= 0 {
        return Vec::new();
    }
    batch
        .slots()
        .iter()
        .enumerate()
        .filter(|(_, s)| tap.filter.matches_input(s.frame))
        .map(|(i, s)| (i, tap.capture.then(|| s.frame.to_vec())))
        .collect()
}

/// After the pipeline ran: a record per wanted frame whose ports match.
pub fn after(
    tap: &Tap,
    pipeline: &Pipeline,
    batch: &Batch<'_>,
    marks: Vec<(usize, Option<Vec<u8>>)>,
    worker: usize,
    now: u64,
) {
    if marks.is_empty() {
        return;
    }
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    for (i, rx) in marks {
        let Some(s) = batch.slots().get(i) else {
            continue;
        };
        if !tap.filter.matches_ports(s.ingress, s.action) {
            continue;
        }
        if tap.remaining.fetch_sub(1, Ordering::Relaxed) <= 0 {
            return;
        }
        let sent = matches!(s.action, Action::Forward(_) | Action::ViaKernel);
        let r = TapRecord {
            ts,
            now,
            worker,
            ingress: s.ingress,
            action: s.action,
            rx,
            tx: (tap.capture && sent).then(|| s.frame.to_vec()),
            report: if tap.trace {
                pipeline.report(i, batch)
            } else {
                None
            },
        };
        if tap.records.try_send(r).is_err() {
            tap.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
