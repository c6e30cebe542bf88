//! IR → classifier: each segment's rules into engine rules per address
//! family, each rule list into its engines, the endpoints into the
//! longest-prefix tables, all assembled into a [`Classifier`].

use std::collections::HashMap;
use std::sync::Arc;

use super::config::{Config, EngineKind};
use super::engine::V4Engine;
use super::lpm;
use super::sets::SetTable;
use super::tree;
use super::types::ERule;
use crate::classifier::{CDir, CSeg, Classifier, Outcome, SegEngines};
use crate::ir::{self, Ir, IrError, IrRule, RuleAction};
use crate::model::PolicySet;
use crate::ranges::RangeSet;

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
        self.compile_ir_with(ir, Vec::new(), &mut EngineCache::default())
    }

    /// Compile an IR whose terms check the sets of `sets` (by index),
    /// taking each segment's engines from `cache` when an earlier compile
    /// built them for the same rules, and leaving in `cache` the engines
    /// of this compile only (of its group's compiles, in a group:
    /// [`EngineCache::begin_group`]).
    pub fn compile_ir_with(&self, ir: &Ir, sets: SetTable, cache: &mut EngineCache) -> Classifier {
        let cfg = self.cfg.effective();
        let cfg_key = format!("{cfg:?}");
        if cache.cfg_key != cfg_key {
            *cache = EngineCache {
                cfg_key,
                group: cache.group.as_ref().map(|_| HashMap::new()),
                ..EngineCache::default()
            };
        }
        let mut next: HashMap<u64, Vec<CacheEntry>> = HashMap::new();
        if cache.group.is_none() {
            cache.hits = 0;
            cache.misses = 0;
        }
        let mut dirs: Vec<CDir> = Vec::with_capacity(2);
        for d in &ir.dirs {
            let nclasses = d.num_classes().max(1);
            let class_bits = (usize::BITS - (nclasses - 1).leading_zeros()) as u8;
            let mut segs = Vec::with_capacity(d.segments.len());
            for s in &d.segments {
                let eng = cache.engines(&s.rules, class_bits, &cfg, &mut next);
                let rules = s.rules.iter().map(|r| match r.action {
                    RuleAction::Allow => Outcome::allow(r.decision),
                    RuleAction::Deny => Outcome::deny(r.decision),
                    RuleAction::Pass => Outcome::NEXT,
                });
                let miss = s.miss.map_or(Outcome::NEXT, Outcome::deny);
                segs.push(CSeg {
                    outcome: rules.chain([miss]).collect(),
                    eng,
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
        let c = Classifier::assemble(
            ir.endpoints.iter().map(|e| e.name.clone()).collect(),
            lpm::Lpm::build(&v4),
            lpm::Lpm::build(&v6),
            [egress, ingress],
            ir.decisions.clone(),
            sets,
        );
        match cache.group.as_mut() {
            Some(g) => {
                for (h, v) in next {
                    let e = g.entry(h).or_default();
                    for x in v {
                        if !e.iter().any(|y| y.0 == x.0) {
                            e.push(x);
                        }
                    }
                }
            }
            None => cache.map = next,
        }
        c
    }
}

/// What a segment's engines depend on: the class field's width and, per
/// rule in priority order, its classes and terms (not its action or
/// decision, which the segment's outcomes carry).
#[derive(Debug, PartialEq, Eq, Hash)]
struct SegKey {
    class_bits: u8,
    rules: Vec<(RangeSet, Vec<ir::Term>)>,
}

type CacheEntry = (Arc<SegKey>, Arc<SegEngines>);

/// Engines of segments compiled before, by their rules (see
/// [`Builder::compile_ir_with`]): a compile after a small change of the
/// policy builds only the segments whose rules changed. It holds the
/// engines of the last compile, and is cleared when the configuration
/// changes.
#[derive(Debug, Default)]
pub struct EngineCache {
    cfg_key: String,
    map: HashMap<u64, Vec<CacheEntry>>,
    /// Within a group of compiles ([`EngineCache::begin_group`]): the
    /// engines of the group's compiles so far.
    group: Option<HashMap<u64, Vec<CacheEntry>>>,
    /// Segments of the last compile whose engines were reused.
    pub hits: usize,
    /// Segments of the last compile whose engines were built.
    pub misses: usize,
}

impl EngineCache {
    /// Starts a group of compiles (classifiers built from one model): until
    /// [`EngineCache::end_group`], each compile finds the engines of the
    /// last group's and of this group's earlier compiles, and the cache
    /// keeps all of the group's; `hits` and `misses` count the whole group.
    pub fn begin_group(&mut self) {
        self.group = Some(HashMap::new());
        self.hits = 0;
        self.misses = 0;
    }

    /// Ends the group: the cache holds the engines of its compiles only.
    pub fn end_group(&mut self) {
        if let Some(g) = self.group.take() {
            self.map = g;
        }
    }

    /// The engines of `rules` from the cache or built, recorded in `next`.
    fn engines(
        &mut self,
        rules: &[IrRule],
        class_bits: u8,
        cfg: &Config,
        next: &mut HashMap<u64, Vec<CacheEntry>>,
    ) -> Arc<SegEngines> {
        let key = SegKey {
            class_bits,
            rules: rules
                .iter()
                .map(|r| (r.classes.clone(), r.terms.clone()))
                .collect(),
        };
        let hash = ahash::RandomState::with_seeds(5, 6, 7, 8).hash_one(&key);
        let found = |m: &HashMap<u64, Vec<CacheEntry>>| {
            m.get(&hash)
                .and_then(|v| v.iter().find(|(k, _)| **k == key).cloned())
        };
        if let Some(e) = found(next) {
            self.hits += 1;
            return e.1;
        }
        let entry = match self
            .group
            .as_ref()
            .and_then(found)
            .or_else(|| found(&self.map))
        {
            Some(e) => {
                self.hits += 1;
                e
            }
            None => {
                self.misses += 1;
                let (r4, r6) = engine_rules(rules);
                let eng = Arc::new(SegEngines {
                    t4: V4Engine::build(&r4, class_bits, cfg),
                    t6: tree::CutTree::build(&r6, class_bits, cfg),
                });
                (Arc::new(key), eng)
            }
        };
        let eng = entry.1.clone();
        next.entry(hash).or_default().push(entry);
        eng
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
                    checks: &t.checks,
                });
            }
            if !t.src.v6.is_empty() && !t.dst.v6.is_empty() {
                r6.push(ERule {
                    prio,
                    fields: fields(&t.src.v6, &t.dst.v6),
                    checks: &t.checks,
                });
            }
        }
    }
    (r4, r6)
}
