//! The IPv4 engine of a rule list (byte DFA or cut trees, chosen once when
//! the list is compiled) and the first-match interface the segment walk
//! uses over both families.

use std::sync::Arc;

use super::config::{Config, EngineKind};
use super::dfa;
use super::sets::SetMatch;
use super::tree;
use super::types::{Addr, EKey, ERule};

/// The IPv4 engine of one rule list, chosen once when it is compiled.
#[derive(Clone, Debug)]
pub(crate) enum V4Engine {
    /// Partitioned cut trees.
    Tree(tree::CutTree<u32>),
    /// The byte DFA.
    Dfa(dfa::Dfa),
}

impl V4Engine {
    pub(super) fn build(rules: &[ERule<'_>], class_bits: u8, cfg: &Config) -> V4Engine {
        if cfg.engine == EngineKind::Auto {
            if let Some(d) = dfa::Dfa::build(rules, class_bits, cfg) {
                return V4Engine::Dfa(d);
            }
        }
        V4Engine::Tree(tree::CutTree::build(rules, class_bits, cfg))
    }

    /// Priority of the first matching rule, if any.
    #[inline]
    pub(crate) fn first_match(&self, k: &EKey<u32>, sets: &[Arc<SetMatch>]) -> Option<u32> {
        match self {
            V4Engine::Tree(t) => t.first_match_in(k, sets),
            V4Engine::Dfa(d) => d.first_match(k),
        }
    }

    /// First match of up to [`BATCH`](super::BATCH) keys (see `CutTree::first_match_many`).
    pub(crate) fn first_match_many(
        &self,
        keys: &[EKey<u32>],
        best: &mut [u32],
        sets: &[Arc<SetMatch>],
    ) {
        match self {
            V4Engine::Tree(t) => t.first_match_many_in(keys, best, sets),
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
    /// Priority of the first matching rule, if any (`sets`: the table
    /// the rules' set checks name).
    fn first_match(&self, k: &EKey<A>, sets: &[Arc<SetMatch>]) -> Option<u32>;
}

impl FirstMatch<u32> for V4Engine {
    #[inline]
    fn first_match(&self, k: &EKey<u32>, sets: &[Arc<SetMatch>]) -> Option<u32> {
        V4Engine::first_match(self, k, sets)
    }
}

impl<A: Addr> FirstMatch<A> for tree::CutTree<A> {
    #[inline]
    fn first_match(&self, k: &EKey<A>, sets: &[Arc<SetMatch>]) -> Option<u32> {
        tree::CutTree::first_match_in(self, k, sets)
    }
}
