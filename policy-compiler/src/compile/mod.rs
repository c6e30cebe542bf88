//! IR → engines. Each segment of each direction (see [`crate::ir`]) is
//! compiled, per address family, into a first-match engine over its terms;
//! endpoints into a longest-prefix-match table. The engine is chosen once,
//! here, by [`Config`]; nothing is chosen per packet.

pub(crate) mod block;
pub mod dfa;
pub mod lpm;
pub mod tree;

use crate::classifier::{CDir, CSeg, Classifier, Outcome};
use crate::ir::{self, Ir, IrError, RuleAction};
use crate::model::PolicySet;
use crate::ranges::RangeSet;

/// Number of match fields: class, source, destination, protocol, source
/// port field, destination port field.
pub const NFIELDS: usize = 6;

/// Most keys an engine looks up together (`classify_batch` chunks).
pub const BATCH: usize = 64;

/// An address type of the engines: `u32` (IPv4) or `u128` (IPv6).
pub trait Addr:
    Copy + Ord + Eq + Default + std::hash::Hash + std::fmt::Debug + Send + Sync + 'static
{
    /// Width in bits.
    const BITS: u32;
    /// From a value known to fit.
    fn from_u128(v: u128) -> Self;
    /// From a value, saturating at the maximum.
    fn from_u128_sat(v: u128) -> Self;
    /// To `u128`.
    fn to_u128(self) -> u128;
    /// `(self >> shift)` truncated to 32 bits.
    fn shr_u32(self, shift: u8) -> u32;
}

impl Addr for u32 {
    const BITS: u32 = 32;
    #[inline(always)]
    fn from_u128(v: u128) -> Self {
        v as u32
    }
    #[inline(always)]
    fn from_u128_sat(v: u128) -> Self {
        u32::try_from(v).unwrap_or(u32::MAX)
    }
    #[inline(always)]
    fn to_u128(self) -> u128 {
        self as u128
    }
    #[inline(always)]
    fn shr_u32(self, shift: u8) -> u32 {
        self >> (shift & 31)
    }
}

impl Addr for u128 {
    const BITS: u32 = 128;
    #[inline(always)]
    fn from_u128(v: u128) -> Self {
        v
    }
    #[inline(always)]
    fn from_u128_sat(v: u128) -> Self {
        v
    }
    #[inline(always)]
    fn to_u128(self) -> u128 {
        self
    }
    #[inline(always)]
    fn shr_u32(self, shift: u8) -> u32 {
        (self >> (shift & 127)) as u32
    }
}

/// A packet as the engines see it: one value per field, in field order
/// (class, source, destination, protocol, source port field, destination
/// port field), each as the family's address type so that a node's field
/// is an index, not a branch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EKey<A> {
    /// The field values.
    pub f: [A; NFIELDS],
}

impl<A: Addr> EKey<A> {
    /// A key.
    #[inline(always)]
    pub fn new(class: u32, src: A, dst: A, proto: u32, sport: u32, dport: u32) -> EKey<A> {
        EKey {
            f: [
                A::from_u128(class as u128),
                src,
                dst,
                A::from_u128(proto as u128),
                A::from_u128(sport as u128),
                A::from_u128(dport as u128),
            ],
        }
    }
    /// Source address.
    #[inline(always)]
    pub fn src(&self) -> A {
        self.f[1]
    }
    /// Destination address.
    #[inline(always)]
    pub fn dst(&self) -> A {
        self.f[2]
    }
    /// Set the class.
    #[inline(always)]
    pub fn set_class(&mut self, c: u32) {
        self.f[0] = A::from_u128(c as u128);
    }
}

/// One term of one rule, as the engines take it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ERule<'a> {
    /// Priority: lower wins (the rule's index in its segment).
    pub prio: u32,
    /// Value set per field: class, src, dst, proto, sport, dport (borrowed
    /// from the IR: a big IP set is not copied per term).
    pub fields: [&'a RangeSet; NFIELDS],
}

/// Which engine to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// The default: per rule list and address family, the byte DFA
    /// ([`dfa`]) where it applies (IPv4, one range per field, within its
    /// budget), partitioned cut trees ([`tree`]) for the rest; see the
    /// crate docs for why.
    Auto,
    /// Partitioned cut trees for every rule list.
    CutTree,
    /// One linear list per segment: the baseline, and a second engine for
    /// the differential tests.
    Linear,
}

/// Compiler configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Engine.
    pub engine: EngineKind,
    /// Leaf size: a node with at most this many rules is not cut.
    pub binth: usize,
    /// Space factor: a cut may replicate rules up to `spfac × n` entries.
    pub spfac: f64,
    /// Most bits cut at one node (`2^bits` children).
    pub max_cut_bits: u8,
    /// Partition rules by address-field size into this many trees: 1 (no
    /// partitioning), 2 (small source | rest), 3 (small source | small
    /// destination | rest), 4 (by small source × small destination).
    pub partitions: u8,
    /// Keep up to this many rules that every child of a cut would hold at
    /// the cut's node (scanned on the way down) instead of copying them into
    /// each child; 0 never pushes.
    pub push: usize,
    /// DFA: a state of at most this many rules is a leaf (its rules
    /// scanned as SIMD blocks).
    pub dfa_leaf: usize,
    /// DFA: most transition words (4 bytes each) before the build gives
    /// up and the rule list gets cut trees.
    pub dfa_budget: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            engine: EngineKind::Auto,
            binth: 32,
            spfac: 4.0,
            max_cut_bits: 8,
            partitions: 3,
            push: 8,
            dfa_leaf: 12,
            dfa_budget: 1 << 21,
        }
    }
}

impl Config {
    /// The linear engine.
    pub fn linear() -> Config {
        Config {
            engine: EngineKind::Linear,
            binth: usize::MAX,
            partitions: 1,
            ..Config::default()
        }
    }

    /// Effective tree parameters (the linear engine is a tree that is one
    /// leaf).
    fn effective(&self) -> Config {
        match self.engine {
            EngineKind::Auto | EngineKind::CutTree => self.clone(),
            EngineKind::Linear => Config {
                binth: usize::MAX,
                partitions: 1,
                ..self.clone()
            },
        }
    }
}

/// A compile failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// The IR could not be built.
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// Builder for a [`Classifier`].
#[derive(Clone, Debug, Default)]
pub struct Builder {
    cfg: Config,
}

impl Builder {
    /// Default configuration.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// With a configuration.
    pub fn with_config(cfg: Config) -> Builder {
        Builder { cfg }
    }

    /// Choose the engine.
    pub fn engine(mut self, e: EngineKind) -> Builder {
        self.cfg.engine = e;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Compile a loaded policy set.
    pub fn compile(&self, set: &PolicySet) -> Result<Classifier, CompileError> {
        let ir = ir::build(set)?;
        Ok(self.compile_ir(&ir))
    }

    /// Compile an IR.
    pub fn compile_ir(&self, ir: &Ir) -> Classifier {
        let cfg = self.cfg.effective();
        let mut dirs: Vec<CDir> = Vec::with_capacity(2);
        for d in &ir.dirs {
            let nclasses = d.num_classes().max(1);
            let class_bits = (usize::BITS - (nclasses - 1).leading_zeros()) as u8;
            let mut segs = Vec::with_capacity(d.segments.len());
            for s in &d.segments {
                let (r4, r6) = engine_rules(&s.rules);
                let rules = s.rules.iter().map(|r| match r.action {
                    RuleAction::Allow => Outcome::allow(r.decision),
                    RuleAction::Deny => Outcome::deny(r.decision),
                    RuleAction::Pass => Outcome::NEXT,
                });
                let miss = s.miss.map_or(Outcome::NEXT, Outcome::deny);
                segs.push(CSeg {
                    outcome: rules.chain([miss]).collect(),
                    t4: V4Engine::build(&r4, class_bits, &cfg),
                    t6: tree::CutTree::build(&r6, class_bits, &cfg),
                });
            }
            let mut class_segs = Vec::with_capacity(d.class_segments.len());
            let mut seg_list = Vec::new();
            for cs in &d.class_segments {
                class_segs.push((seg_list.len() as u32, cs.len() as u32));
                seg_list.extend_from_slice(cs);
            }
            dirs.push(CDir::new(
                d.endpoint_class.clone(),
                class_segs,
                seg_list,
                segs,
            ));
        }
        let ingress = dirs.pop().unwrap_or_default();
        let egress = dirs.pop().unwrap_or_default();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (i, e) in ir.endpoints.iter().enumerate() {
            for c in &e.nets {
                let (lo, hi) = crate::ranges::cidr_range(c);
                if c.is_v4() {
                    v4.push((lo, hi, c.len, i as u32));
                } else {
                    v6.push((lo, hi, c.len, i as u32));
                }
            }
        }
        Classifier::assemble(
            ir.endpoints.iter().map(|e| e.name.clone()).collect(),
            lpm::Lpm::build(&v4),
            lpm::Lpm::build(&v6),
            [egress, ingress],
            ir.decisions.clone(),
        )
    }
}

/// Compile with the default configuration.
pub fn compile(set: &PolicySet) -> Result<Classifier, CompileError> {
    Builder::new().compile(set)
}

/// Engine rules (one per term) for each family.
fn engine_rules(rules: &[ir::IrRule]) -> (Vec<ERule<'_>>, Vec<ERule<'_>>) {
    let mut r4 = Vec::new();
    let mut r6 = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        for t in &r.terms {
            let prio = i as u32;
            let fields = |src, dst| [&r.classes, src, dst, &t.proto, &t.sport, &t.dport];
            if !t.src.v4.is_empty() && !t.dst.v4.is_empty() {
                r4.push(ERule {
                    prio,
                    fields: fields(&t.src.v4, &t.dst.v4),
                });
            }
            if !t.src.v6.is_empty() && !t.dst.v6.is_empty() {
                r6.push(ERule {
                    prio,
                    fields: fields(&t.src.v6, &t.dst.v6),
                });
            }
        }
    }
    (r4, r6)
}

/// The IPv4 engine of one rule list, chosen once when it is compiled.
#[derive(Clone, Debug)]
pub(crate) enum V4Engine {
    /// Partitioned cut trees.
    Tree(tree::CutTree<u32>),
    /// The byte DFA.
    Dfa(dfa::Dfa),
}

impl V4Engine {
    fn build(rules: &[ERule<'_>], class_bits: u8, cfg: &Config) -> V4Engine {
        if cfg.engine == EngineKind::Auto {
            if let Some(d) = dfa::Dfa::build(rules, class_bits, cfg) {
                return V4Engine::Dfa(d);
            }
        }
        V4Engine::Tree(tree::CutTree::build(rules, class_bits, cfg))
    }

    /// Priority of the first matching rule, if any.
    #[inline]
    pub(crate) fn first_match(&self, k: &EKey<u32>) -> Option<u32> {
        match self {
            V4Engine::Tree(t) => t.first_match(k),
            V4Engine::Dfa(d) => d.first_match(k),
        }
    }

    /// First match of up to [`BATCH`] keys (see `CutTree::first_match_many`).
    pub(crate) fn first_match_many(&self, keys: &[EKey<u32>], best: &mut [u32]) {
        match self {
            V4Engine::Tree(t) => t.first_match_many(keys, best),
            V4Engine::Dfa(d) => d.first_match_many(keys, best),
        }
    }

    /// Bytes of the compiled structure.
    pub(crate) fn memory(&self) -> usize {
        match self {
            V4Engine::Tree(t) => t.memory(),
            V4Engine::Dfa(d) => d.memory(),
        }
    }

    /// Rules stored in leaves.
    pub(crate) fn leaf_rules(&self) -> usize {
        match self {
            V4Engine::Tree(t) => t.stats().leaf_rules,
            V4Engine::Dfa(d) => d.stats().leaf_rules,
        }
    }

    /// Statistics, for debugging.
    pub(crate) fn debug_stats(&self) -> String {
        match self {
            V4Engine::Tree(t) => format!("{:?}", t.stats()),
            V4Engine::Dfa(d) => format!("{:?}", d.stats()),
        }
    }
}

impl V4Engine {
    /// For debugging: how lookups of `keys` walk the engine.
    pub(crate) fn debug_walks(&self, keys: &[EKey<u32>]) -> String {
        match self {
            V4Engine::Tree(_) => String::new(),
            V4Engine::Dfa(d) => d.debug_walks(keys) + &d.debug_cost(keys),
        }
    }
}

/// A first-match engine of one address family, as the segment walk uses it.
pub(crate) trait FirstMatch<A> {
    /// Priority of the first matching rule, if any.
    fn first_match(&self, k: &EKey<A>) -> Option<u32>;
}

impl FirstMatch<u32> for V4Engine {
    #[inline]
    fn first_match(&self, k: &EKey<u32>) -> Option<u32> {
        V4Engine::first_match(self, k)
    }
}

impl<A: Addr> FirstMatch<A> for tree::CutTree<A> {
    #[inline]
    fn first_match(&self, k: &EKey<A>) -> Option<u32> {
        tree::CutTree::first_match(self, k)
    }
}
