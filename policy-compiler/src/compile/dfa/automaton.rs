//! The compiled automaton: the key's bytes, the word format (nodes and
//! ends), and the [`Dfa`] value.

use super::super::block::Block;
use super::super::types::EKey;

/// Bytes of a key as the automata read it: the six `u32` fields of the
/// [`EKey`], little-endian, then padding to a power of two (so that a
/// node's byte index needs no bounds check). Byte `4 * f + j` is bits
/// `8j..8j+8` of field `f`.
pub(super) const KB: usize = 32;

/// A key's bytes (see [`KB`]): a copy, no per-field work.
#[inline(always)]
pub(super) fn key_bytes(k: &EKey<u32>) -> [u8; KB] {
    let mut b = [0u8; KB];
    for (d, f) in b.chunks_exact_mut(4).zip(&k.f) {
        d.copy_from_slice(&f.to_le_bytes());
    }
    b
}

/// An end word: bit 31 set (see `Builder::end`).
pub(super) const END: u32 = 1 << 31;

/// A byte of [`key_bytes`] that is always 0.
pub(super) const PAD_BYTE: u32 = 31;
/// A node word's base (the index of its first next word).
pub(super) const BASE: u32 = (1 << 26) - 1;

/// Whether `w` ends a walk.
#[inline(always)]
pub(super) fn is_end(w: u32) -> bool {
    w >= END
}

/// The index of the word after node `w` for a key with bytes `kb`.
#[inline(always)]
pub(super) fn next(w: u32, kb: &[u8; KB]) -> usize {
    ((w & BASE) + u32::from(kb[(w >> 26) as usize % KB])) as usize
}

/// How a walk ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum End {
    /// No rule of the partition matches.
    Miss,
    /// Scan `n` blocks from `start`.
    Leaf { start: u32, n: u32 },
}

/// One partition's automaton: its root word and its best priority.
#[derive(Clone, Debug)]
pub(super) struct Part {
    pub(super) root: u32,
    pub(super) min_prio: u32,
}

/// Build statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DfaStats {
    /// Partitions (automata).
    pub parts: usize,
    /// Nodes (of 256 words each).
    pub nodes: usize,
    /// Distinct leaves.
    pub leaves: usize,
    /// Rules stored in leaves.
    pub leaf_rules: usize,
    /// Words.
    pub words: usize,
    /// Entry visits spent splitting states (see `WORK_PER_WORD`).
    pub work: usize,
    /// Most state entries remembered at once (see `MEMO_PER_WORD`).
    pub memo_entries: usize,
}

/// The compiled engine for one IPv4 rule list.
#[derive(Clone, Debug)]
pub struct Dfa {
    pub(super) parts: Vec<Part>,
    /// The class field is always 0 (one class): leaves skip it.
    pub(super) one_class: bool,
    pub(super) trans: Vec<u32>,
    pub(super) blocks: Vec<Block>,
    pub(super) stats: DfaStats,
}

impl Dfa {
    /// Bytes of the compiled structure.
    pub fn memory(&self) -> usize {
        self.parts.len() * std::mem::size_of::<Part>()
            + self.trans.len() * 4
            + self.blocks.len() * std::mem::size_of::<Block>()
    }

    /// Build statistics.
    pub fn stats(&self) -> &DfaStats {
        &self.stats
    }

    /// What end word `w` stands for (for statistics).
    pub(super) fn end_of(&self, w: u32) -> End {
        let s = (w & BASE) as usize;
        match (self.trans[s + 1], self.trans[s + 2]) {
            (a, b) if a == b => End::Miss,
            (a, b) => End::Leaf { start: a, n: b - a },
        }
    }
}
