//! The compiled classifier: immutable, `Send + Sync`, shared by worker
//! threads through an `Arc` (and swapped whole by the engine); each worker
//! owns a [`Scratch`]. A lookup allocates nothing.

use std::net::IpAddr;
use std::sync::Arc;

use crate::compile::engine::{FirstMatch, V4Engine};
use crate::compile::lpm::{Lpm, NONE};
use crate::compile::sets::{SetMatch, SetTable};
use crate::compile::tree::CutTree;
use crate::compile::types::{Addr, EKey, BATCH};
use crate::ir::{Decision, DecisionInfo, Dir, ICMP_BASE, NO_L4};

/// Direction `D`'s half of a verdict (0: egress, 1: ingress).
#[inline(always)]
fn dir_mut<const D: usize>(v: &mut Verdict) -> &mut DirVerdict {
    if D == 0 {
        &mut v.egress
    } else {
        &mut v.ingress
    }
}

/// Layer-4 part of a flow key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4 {
    /// TCP, UDP, SCTP, UDPLite.
    Ports {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// ICMP / ICMPv6.
    Icmp {
        /// Type.
        ty: u8,
        /// Code.
        code: u8,
    },
    /// Neither (other protocols, or not parsed).
    None,
}

/// What the classifier looks at: addresses, protocol and L4. IPv4 and
/// IPv6; 48 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    src: u128,
    dst: u128,
    v6: bool,
    proto: u8,
    l4: L4,
}

impl FlowKey {
    /// A key. `src` and `dst` should be of the same family; if they are
    /// not, an IPv4 address is taken as its IPv4-mapped IPv6 form.
    pub fn new(src: IpAddr, dst: IpAddr, proto: u8, l4: L4) -> FlowKey {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => FlowKey::v4(u32::from(s), u32::from(d), proto, l4),
            _ => {
                let six = |a: IpAddr| match a {
                    IpAddr::V4(x) => u128::from(x.to_ipv6_mapped()),
                    IpAddr::V6(x) => u128::from(x),
                };
                FlowKey::v6(six(src), six(dst), proto, l4)
            }
        }
    }

    /// An IPv4 key from host-order addresses.
    #[inline]
    pub fn v4(src: u32, dst: u32, proto: u8, l4: L4) -> FlowKey {
        FlowKey {
            src: src as u128,
            dst: dst as u128,
            v6: false,
            proto,
            l4,
        }
    }

    /// An IPv6 key.
    #[inline]
    pub fn v6(src: u128, dst: u128, proto: u8, l4: L4) -> FlowKey {
        FlowKey {
            src,
            dst,
            v6: true,
            proto,
            l4,
        }
    }

    /// Source address.
    pub fn src(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(self.src.into())
        } else {
            IpAddr::V4((self.src as u32).into())
        }
    }

    /// Destination address.
    pub fn dst(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(self.dst.into())
        } else {
            IpAddr::V4((self.dst as u32).into())
        }
    }

    /// Protocol.
    pub fn proto(&self) -> u8 {
        self.proto
    }

    /// L4.
    pub fn l4(&self) -> L4 {
        self.l4
    }

    /// True for IPv6.
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// The port fields as the engines encode them (see [`crate::ir`]).
    #[inline]
    pub(crate) fn port_fields(&self) -> (u32, u32) {
        match self.l4 {
            L4::Ports { sport, dport } => (sport as u32, dport as u32),
            L4::Icmp { ty, code } => (
                (ICMP_BASE as u32) + ty as u32,
                (ICMP_BASE as u32) + code as u32,
            ),
            L4::None => (NO_L4 as u32, NO_L4 as u32),
        }
    }
}

/// An endpoint's index (see [`Classifier::endpoint_name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(pub u32);

/// The verdict of one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DirVerdict {
    /// Allowed (true when there is no endpoint).
    pub allow: bool,
    /// The endpoint evaluated (source for egress, destination for
    /// ingress), if an endpoint owns the address.
    pub endpoint: Option<EndpointId>,
    /// What decided ([`Decision::NONE`] without an endpoint).
    pub decided_by: Decision,
}

impl DirVerdict {
    const NO_ENDPOINT: DirVerdict = DirVerdict {
        allow: true,
        endpoint: None,
        decided_by: Decision::NONE,
    };

    /// Endpoint `ep`'s traffic when no rule of its segments decided (or it
    /// has none in this direction): denied, by `no_match`.
    fn unmatched(ep: u32, no_match: Decision) -> DirVerdict {
        DirVerdict {
            allow: false,
            endpoint: Some(EndpointId(ep)),
            decided_by: no_match,
        }
    }
}

/// The verdict for a packet: egress of the source endpoint AND ingress of
/// the destination endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// `egress.allow && ingress.allow`.
    pub allow: bool,
    /// Egress of the source's endpoint.
    pub egress: DirVerdict,
    /// Ingress of the destination's endpoint.
    pub ingress: DirVerdict,
}

impl Default for Verdict {
    fn default() -> Verdict {
        Verdict {
            allow: true,
            egress: DirVerdict::NO_ENDPOINT,
            ingress: DirVerdict::NO_ENDPOINT,
        }
    }
}

/// Per-worker mutable state for lookups: the buffers of
/// [`Classifier::classify_batch`], one engine batch each (fixed arrays, so
/// lookups never allocate and filling them costs no capacity checks).
#[derive(Clone, Debug)]
pub struct Scratch {
    keys: [EKey<u32>; BATCH],
    best: [u32; BATCH],
    idx: [u16; BATCH],
    ep: [[u32; 2]; BATCH],
    pend: [(u32, u16); BATCH],
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            keys: [EKey::default(); BATCH],
            best: [0; BATCH],
            idx: [0; BATCH],
            ep: [[0; 2]; BATCH],
            pend: [(0, 0); BATCH],
        }
    }
}

/// What a segment's answer does, packed in a `u32`: the decision (low 30
/// bits), allow (bit 31), or go on to the class's next segment (bit 30:
/// a `Pass` rule, or a miss in a segment without an end of tier).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outcome(u32);

impl Outcome {
    const ALLOW: u32 = 1 << 31;
    const NEXT_BIT: u32 = 1 << 30;
    /// Go on to the next segment.
    pub(crate) const NEXT: Outcome = Outcome(Self::NEXT_BIT);
    /// Allowed by `d`.
    pub(crate) fn allow(d: Decision) -> Outcome {
        Outcome(d.0 | Self::ALLOW)
    }
    /// Denied by `d`.
    pub(crate) fn deny(d: Decision) -> Outcome {
        Outcome(d.0)
    }
    #[inline(always)]
    fn is_next(self) -> bool {
        self.0 & Self::NEXT_BIT != 0
    }
    /// The verdict of endpoint `ep` (not for [`Outcome::NEXT`]).
    #[inline(always)]
    fn verdict(self, ep: u32) -> DirVerdict {
        DirVerdict {
            allow: self.0 & Self::ALLOW != 0,
            endpoint: Some(EndpointId(ep)),
            decided_by: Decision(self.0 & (Self::NEXT_BIT - 1)),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct CSeg {
    /// Per rule (by priority), then one more for a miss.
    pub(crate) outcome: Vec<Outcome>,
    /// The engines, shared with later compiles of the same rules
    /// ([`crate::compile::EngineCache`]).
    pub(crate) eng: Arc<SegEngines>,
}

/// A segment's engines, one per address family.
#[derive(Debug)]
pub(crate) struct SegEngines {
    pub(crate) t4: V4Engine,
    pub(crate) t6: CutTree<u128>,
}

impl CSeg {
    /// The outcome of first match `r` (`None`: a miss).
    #[inline(always)]
    fn outcome(&self, r: Option<u32>) -> Outcome {
        self.outcome_of(r.unwrap_or(u32::MAX))
    }

    /// The outcome of priority `r` (`u32::MAX`: a miss), without a branch.
    #[inline(always)]
    fn outcome_of(&self, r: u32) -> Outcome {
        let last = self.outcome.len().saturating_sub(1);
        self.outcome
            .get((r as usize).min(last))
            .copied()
            .unwrap_or(Outcome::NEXT)
    }
}

/// No segment (for `CDir::start`).
const NO_SEG: u32 = u32::MAX;

#[derive(Clone, Debug, Default)]
pub(crate) struct CDir {
    pub(crate) endpoint_class: Vec<u32>,
    pub(crate) class_segs: Vec<(u32, u32)>,
    pub(crate) seg_list: Vec<u32>,
    pub(crate) segs: Vec<CSeg>,
    /// Per endpoint: its class and its first segment (or `NO_SEG`), one
    /// load for the batch path.
    pub(crate) start: Vec<(u32, u32)>,
}

impl CDir {
    pub(crate) fn new(
        endpoint_class: Vec<u32>,
        class_segs: Vec<(u32, u32)>,
        seg_list: Vec<u32>,
        segs: Vec<CSeg>,
    ) -> CDir {
        let start = endpoint_class
            .iter()
            .map(|&c| {
                let first = match class_segs.get(c as usize) {
                    Some(&(at, len)) if len > 0 => seg_list[at as usize],
                    _ => NO_SEG,
                };
                (c, first)
            })
            .collect();
        CDir {
            endpoint_class,
            class_segs,
            seg_list,
            segs,
            start,
        }
    }
}

/// Facts about a compiled classifier.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClassifierStats {
    /// Endpoints.
    pub endpoints: usize,
    /// Endpoint classes (egress, ingress).
    pub classes: [usize; 2],
    /// Segments (egress, ingress).
    pub segments: [usize; 2],
    /// Compiled rules (all segments, both directions; `Log` not counted).
    pub rules: usize,
    /// Rule entries stored in engine leaves, replication included (IPv4,
    /// IPv6).
    pub leaf_entries: [usize; 2],
    /// Bytes of the compiled structure.
    pub memory_bytes: usize,
}

/// Fewest IPv4 keys of a batch that `classify_batch` walks in lockstep;
/// smaller batches (the pipeline's new connections, often one or two per
/// batch) take the one-at-a-time path, which has no batch set-up to pay.
/// (8 is a choice, not a measured crossover.) Lockstep overlaps the keys'
/// dependent loads: the cut trees are walked level by level, each level
/// visiting only the keys still above a leaf, and the DFA eight keys at a
/// time.
pub const LOCKSTEP_MIN: usize = 8;

/// The compiled classifier. Cloning it is cheap (the tables are shared);
/// [`Classifier::with_set`] makes a copy with one set's members replaced.
#[derive(Clone, Debug)]
pub struct Classifier {
    /// Lockstep batch lookups (on unless turned off for tests or
    /// comparisons).
    lockstep: bool,
    core: Arc<Core>,
    /// The sets the rules' checks name (see [`crate::compile::sets`]).
    sets: SetTable,
    /// The pending classifier: the same policy with its staged policies
    /// enforced where they stand, which says what the staged policies
    /// would do (never what is enforced). It shares this classifier's set
    /// indices and decisions.
    staged: Option<Arc<Classifier>>,
}

/// Everything but the sets.
#[derive(Debug)]
struct Core {
    endpoints: Vec<String>,
    lpm4: Lpm<u32>,
    lpm6: Lpm<u128>,
    dirs: [CDir; 2],
    decisions: Vec<DecisionInfo>,
}

impl Classifier {
    pub(crate) fn assemble(
        endpoints: Vec<String>,
        lpm4: Lpm<u32>,
        lpm6: Lpm<u128>,
        dirs: [CDir; 2],
        decisions: Vec<DecisionInfo>,
        sets: SetTable,
    ) -> Classifier {
        Classifier {
            lockstep: true,
            core: Arc::new(Core {
                endpoints,
                lpm4,
                lpm6,
                dirs,
                decisions,
            }),
            sets,
            staged: None,
        }
    }

    /// Allows everything: the classifier of a configuration without policy
    /// (no endpoints, so nothing is evaluated).
    pub fn allow_all() -> Classifier {
        Classifier {
            lockstep: false,
            core: Arc::new(Core {
                endpoints: Vec::new(),
                lpm4: Lpm::default(),
                lpm6: Lpm::default(),
                dirs: Default::default(),
                decisions: vec![
                    DecisionInfo::NoEndpoint,
                    DecisionInfo::NoMatch { dir: Dir::Egress },
                    DecisionInfo::NoMatch { dir: Dir::Ingress },
                ],
            }),
            sets: Vec::new(),
            staged: None,
        }
    }

    /// This classifier with set `index`'s members replaced by `set` (the
    /// compiled rules and every other set shared, not copied); `None` when
    /// the classifier has no set `index`.
    pub fn with_set(&self, index: u32, set: Arc<SetMatch>) -> Option<Classifier> {
        let mut c = self.clone();
        if let Some(p) = &self.staged {
            c.staged = Some(Arc::new(p.with_set(index, set.clone())?));
        }
        *c.sets.get_mut(index as usize)? = set;
        Some(c)
    }

    /// This classifier with `pending` as its pending classifier (see
    /// [`Classifier::staged`]). `pending` must come from the same IR with
    /// the staged policies enforced, and share the set table's indices and
    /// the decisions.
    pub fn with_staged(mut self, pending: Classifier) -> Classifier {
        self.staged = Some(Arc::new(pending));
        self
    }

    /// The pending classifier, when the policy has staged policies: the
    /// verdicts the policy would give with them enforced. Its decisions
    /// are this classifier's ([`Classifier::decisions`]).
    pub fn staged(&self) -> Option<&Classifier> {
        self.staged.as_deref()
    }

    /// The sets the rules' checks name, by index.
    pub fn sets(&self) -> &[Arc<SetMatch>] {
        &self.sets
    }

    /// Scratch for one worker.
    pub fn new_scratch(&self) -> Scratch {
        Scratch::default()
    }

    /// Classify one packet as a new connection.
    #[inline]
    pub fn classify(&self, key: &FlowKey, _scratch: &mut Scratch) -> Verdict {
        let (sp, dp) = key.port_fields();
        if key.v6 {
            let k = EKey::new(0, key.src, key.dst, key.proto as u32, sp, dp);
            self.classify_fam(&k, &self.core.lpm6, |s| &s.eng.t6)
        } else {
            let k = EKey::new(0, key.src as u32, key.dst as u32, key.proto as u32, sp, dp);
            self.classify_fam(&k, &self.core.lpm4, |s| &s.eng.t4)
        }
    }

    /// Classify a batch: `out[i]` is the verdict of `keys[i]` (the shorter
    /// of the two lengths is used); the answers are those of
    /// [`Classifier::classify`]. IPv4 keys are looked up [`BATCH`] at a
    /// time (chunks of at least [`LOCKSTEP_MIN`]), each engine walked
    /// across the keys (cut trees level by level, `CutTree::first_match_many`;
    /// the DFA eight keys at a time, `Dfa::first_match_many`), so the
    /// independent loads of different keys overlap.
    pub fn classify_batch(&self, keys: &[FlowKey], out: &mut [Verdict], scratch: &mut Scratch) {
        for (kc, oc) in keys.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
            if self.lockstep && kc.len() >= LOCKSTEP_MIN && kc.iter().all(|k| !k.v6) {
                self.batch4(kc, oc, scratch);
            } else {
                for (k, o) in kc.iter().zip(oc.iter_mut()) {
                    *o = self.classify(k, scratch);
                }
            }
        }
    }

    fn batch4(&self, kc: &[FlowKey], oc: &mut [Verdict], s: &mut Scratch) {
        let n = kc.len().min(oc.len()).min(BATCH);
        let (kc, oc) = (&kc[..n], &mut oc[..n]);
        match self.core.lpm4.single_owner() {
            Some(e) => {
                self.batch4_one::<0>(e, kc, oc, s);
                self.batch4_one::<1>(e, kc, oc, s);
            }
            None => {
                for (e, k) in s.ep.iter_mut().zip(kc) {
                    *e = [
                        self.core.lpm4.lookup(k.src as u32),
                        self.core.lpm4.lookup(k.dst as u32),
                    ];
                }
                self.batch4_dir::<0>(kc, oc, s);
                self.batch4_dir::<1>(kc, oc, s);
            }
        }
        for o in oc.iter_mut() {
            o.allow = o.egress.allow & o.ingress.allow;
        }
    }

    /// Direction `D` of [`Classifier::batch4`] when endpoint `e` (or
    /// `NONE`) owns every address (a policy for one endpoint, ClassBench):
    /// one segment list for every key, no grouping.
    fn batch4_one<const D: usize>(
        &self,
        e: u32,
        kc: &[FlowKey],
        oc: &mut [Verdict],
        s: &mut Scratch,
    ) {
        let dir = &self.core.dirs[D];
        let no_match = if D == 0 {
            Decision::NO_MATCH_EGRESS
        } else {
            Decision::NO_MATCH_INGRESS
        };
        let (class, first) = match dir.start.get(e as usize) {
            Some(&(class, first)) if e != NONE && first != NO_SEG => (class, first),
            _ => {
                let v = if e == NONE {
                    DirVerdict::NO_ENDPOINT
                } else {
                    DirVerdict::unmatched(e, no_match)
                };
                for o in oc.iter_mut() {
                    *dir_mut::<D>(o) = v;
                }
                return;
            }
        };
        let n = kc.len();
        for ((key, best), k) in s.keys.iter_mut().zip(s.best.iter_mut()).zip(kc) {
            let (sp, dp) = k.port_fields();
            *key = EKey::new(class, k.src as u32, k.dst as u32, k.proto as u32, sp, dp);
            *best = u32::MAX;
        }
        let seg = &dir.segs[first as usize];
        seg.eng
            .t4
            .first_match_many(&s.keys[..n], &mut s.best[..n], &self.sets);
        let outcomes = &seg.outcome[..];
        let last = outcomes.len().saturating_sub(1);
        for ((o, &r), key) in oc.iter_mut().zip(&s.best[..n]).zip(&s.keys[..n]) {
            let out = outcomes
                .get((r as usize).min(last))
                .copied()
                .unwrap_or(Outcome::NEXT);
            *dir_mut::<D>(o) = if out.is_next() {
                self.eval_dir_from(dir, e, key, |x| &x.eng.t4, no_match, 1)
            } else {
                out.verdict(e)
            };
        }
    }

    /// Direction `D` of [`Classifier::batch4`]: keys grouped by their
    /// endpoint's first segment, each group looked up together; a `Pass`
    /// (or a miss that goes on) finishes one key at a time.
    fn batch4_dir<const D: usize>(&self, kc: &[FlowKey], oc: &mut [Verdict], s: &mut Scratch) {
        let dir = &self.core.dirs[D];
        let no_match = if D == 0 {
            Decision::NO_MATCH_EGRESS
        } else {
            Decision::NO_MATCH_INGRESS
        };
        // Keys whose endpoint has segments, as (first segment, key).
        let mut np = 0;
        for (i, (o, ep)) in oc.iter_mut().zip(&s.ep).enumerate() {
            let e = ep[D];
            let v = if e == NONE {
                DirVerdict::NO_ENDPOINT
            } else {
                match dir.start.get(e as usize) {
                    Some(&(_, first)) if first != NO_SEG => {
                        s.pend[np] = (first, i as u16);
                        np += 1;
                        continue;
                    }
                    _ => DirVerdict::unmatched(e, no_match),
                }
            };
            *dir_mut::<D>(o) = v;
        }
        let pend = &mut s.pend[..np];
        if !pend.is_sorted() {
            pend.sort_unstable();
        }
        let mut j = 0;
        while j < np {
            let seg_id = pend[j].0;
            let mut m = 0;
            for &(sg, i) in &pend[j..] {
                if sg != seg_id {
                    break;
                }
                let k = &kc[usize::from(i)];
                let (sp, dp) = k.port_fields();
                let class = dir.start[s.ep[usize::from(i)][D] as usize].0;
                s.keys[m] = EKey::new(class, k.src as u32, k.dst as u32, k.proto as u32, sp, dp);
                s.idx[m] = i;
                s.best[m] = u32::MAX;
                m += 1;
            }
            j += m;
            let seg = &dir.segs[seg_id as usize];
            seg.eng
                .t4
                .first_match_many(&s.keys[..m], &mut s.best[..m], &self.sets);
            for ((&i, &r), key) in s.idx[..m].iter().zip(&s.best[..m]).zip(&s.keys[..m]) {
                let i = usize::from(i);
                let e = s.ep[i][D];
                let o = seg.outcome_of(r);
                let v = if o.is_next() {
                    self.eval_dir_from(dir, e, key, |x| &x.eng.t4, no_match, 1)
                } else {
                    o.verdict(e)
                };
                *dir_mut::<D>(&mut oc[i]) = v;
            }
        }
    }

    #[inline]
    fn classify_fam<A: Addr, E: FirstMatch<A>>(
        &self,
        k: &EKey<A>,
        lpm: &Lpm<A>,
        tree: impl Fn(&CSeg) -> &E + Copy,
    ) -> Verdict {
        let se = lpm.lookup(k.src());
        let de = lpm.lookup(k.dst());
        let egress = if se == NONE {
            DirVerdict::NO_ENDPOINT
        } else {
            self.eval_dir(&self.core.dirs[0], se, k, tree, Decision::NO_MATCH_EGRESS)
        };
        let ingress = if de == NONE {
            DirVerdict::NO_ENDPOINT
        } else {
            self.eval_dir(&self.core.dirs[1], de, k, tree, Decision::NO_MATCH_INGRESS)
        };
        Verdict {
            allow: egress.allow & ingress.allow,
            egress,
            ingress,
        }
    }

    #[inline(always)]
    fn eval_dir<A: Addr, E: FirstMatch<A>>(
        &self,
        d: &CDir,
        ep: u32,
        k: &EKey<A>,
        tree: impl Fn(&CSeg) -> &E,
        no_match: Decision,
    ) -> DirVerdict {
        self.eval_dir_from(d, ep, k, tree, no_match, 0)
    }

    /// Walk the endpoint's class segments from position `from`. Inline,
    /// so an endpoint with no segments left (no policy in this direction)
    /// is answered without the call to the walk.
    #[inline(always)]
    fn eval_dir_from<A: Addr, E: FirstMatch<A>>(
        &self,
        d: &CDir,
        ep: u32,
        k: &EKey<A>,
        tree: impl Fn(&CSeg) -> &E,
        no_match: Decision,
        from: u32,
    ) -> DirVerdict {
        let class = d.endpoint_class[ep as usize];
        let (start, len) = d.class_segs[class as usize];
        if from >= len {
            return DirVerdict::unmatched(ep, no_match);
        }
        let segs = &d.seg_list[(start + from) as usize..(start + len) as usize];
        self.walk_segments(d, segs, ep, class, k, tree, no_match)
    }

    /// The first decision of segments `segs` for endpoint `ep` (of
    /// `class`), or `no_match`.
    // Each argument is a separate input of the walk (direction tables,
    // segments, endpoint, class, key, engine of the family, no-match
    // decision); a struct of them would only be built and taken apart per
    // lookup.
    #[allow(clippy::too_many_arguments)]
    fn walk_segments<A: Addr, E: FirstMatch<A>>(
        &self,
        d: &CDir,
        segs: &[u32],
        ep: u32,
        class: u32,
        k: &EKey<A>,
        tree: impl Fn(&CSeg) -> &E,
        no_match: Decision,
    ) -> DirVerdict {
        let mut key = *k;
        key.set_class(class);
        for &s in segs {
            let seg = &d.segs[s as usize];
            let o = seg.outcome(tree(seg).first_match(&key, &self.sets));
            if !o.is_next() {
                return o.verdict(ep);
            }
        }
        DirVerdict::unmatched(ep, no_match)
    }

    /// What a decision stands for.
    pub fn decision_info(&self, d: Decision) -> &DecisionInfo {
        self.core
            .decisions
            .get(d.0 as usize)
            .unwrap_or(&DecisionInfo::NoEndpoint)
    }

    /// Every decision, indexed by `Decision.0` (for per-rule counters).
    pub fn decisions(&self) -> &[DecisionInfo] {
        &self.core.decisions
    }

    /// `namespace/name` of an endpoint.
    pub fn endpoint_name(&self, e: EndpointId) -> &str {
        self.core
            .endpoints
            .get(e.0 as usize)
            .map_or("", String::as_str)
    }

    /// Force the lockstep batch path on or off (tests, benchmarks).
    pub fn set_lockstep(&mut self, on: bool) {
        self.lockstep = on;
    }

    /// Whether `classify_batch` uses lockstep lookups.
    pub fn lockstep(&self) -> bool {
        self.lockstep
    }

    /// Number of endpoints.
    pub fn num_endpoints(&self) -> usize {
        self.core.endpoints.len()
    }

    /// The `policy eval` output object of cli.md for a verdict.
    pub fn verdict_json(&self, v: &Verdict) -> serde_json::Value {
        let dir = |d: &DirVerdict| {
            serde_json::json!({
                "verdict": if d.allow { "allow" } else { "deny" },
                "endpoint": d.endpoint.map(|e| self.endpoint_name(e).to_string()),
                "decided_by": self.decision_info(d.decided_by).json(),
            })
        };
        serde_json::json!({
            "verdict": if v.allow { "allow" } else { "deny" },
            "egress": dir(&v.egress),
            "ingress": dir(&v.ingress),
        })
    }

    /// Bytes of the compiled structure (tables, engines and sets; an
    /// engine or set shared by several segments or classifiers counted at
    /// each use).
    pub fn memory(&self) -> usize {
        let core = &self.core;
        let mut m = core.lpm4.memory()
            + core.lpm6.memory()
            + core.endpoints.iter().map(|s| s.len() + 24).sum::<usize>()
            + self.sets.iter().map(|s| s.memory() + 16).sum::<usize>();
        for d in &core.dirs {
            m += d.endpoint_class.len() * 4
                + d.class_segs.len() * 8
                + d.seg_list.len() * 4
                + d.start.len() * 8;
            for s in &d.segs {
                m += s.outcome.len() * 4 + s.eng.t4.memory() + s.eng.t6.memory();
            }
        }
        m
    }

    /// Facts for `policy check`.
    pub fn stats(&self) -> ClassifierStats {
        let mut st = ClassifierStats {
            endpoints: self.core.endpoints.len(),
            memory_bytes: self.memory(),
            ..Default::default()
        };
        for (i, d) in self.core.dirs.iter().enumerate() {
            st.classes[i] = d.class_segs.len();
            st.segments[i] = d.segs.len();
            for s in &d.segs {
                st.rules += s.outcome.len() - 1;
                st.leaf_entries[0] += s.eng.t4.leaf_rules();
                st.leaf_entries[1] += s.eng.t6.stats().leaf_rules;
            }
        }
        st
    }
}

impl Classifier {
    /// For debugging: how the egress engines walk for IPv4 `keys` (class 0).
    pub fn debug_walks(&self, keys: &[FlowKey]) -> String {
        let ks: Vec<EKey<u32>> = keys
            .iter()
            .map(|k| {
                let (sp, dp) = k.port_fields();
                EKey::new(0, k.src as u32, k.dst as u32, k.proto as u32, sp, dp)
            })
            .collect();
        self.core.dirs[0]
            .segs
            .iter()
            .map(|s| s.eng.t4.debug_walks(&ks))
            .collect()
    }

    /// Engine statistics, for debugging and `classbench`'s figures.
    pub fn debug_engine_stats(&self) -> String {
        let mut s = String::new();
        for (i, d) in self.core.dirs.iter().enumerate() {
            for (j, seg) in d.segs.iter().enumerate() {
                s.push_str(&format!(
                    "dir {i} seg {j}: rules {} v4 memory {} {}\n",
                    seg.outcome.len() - 1,
                    seg.eng.t4.memory(),
                    seg.eng.t4.debug_stats()
                ));
            }
        }
        s
    }
}
