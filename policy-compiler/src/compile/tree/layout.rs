//! The compiled cut trees: node words, slots, leaf rules in their scalar
//! (IPv6) and block (IPv4) forms, and the [`CutTree`] value.

use super::super::block::Block;
use super::super::types::{Addr, NFIELDS};

const LEAF_FIELD: u64 = 7;

/// An `ext_items` entry whose field byte has this bit is a set check:
/// bit 0 the side (1: destination), bit 1 negated, `start` the set index.
pub(super) const CHECK_ITEM: u8 = 0x80;

/// A node packed in 8 bytes: `base` (bits 0..32), field (32..35, 7 =
/// leaf), shift (35..42), the cut's bit count or the leaf's rule count
/// (42..63), and (bit 63) whether an internal node has pushed rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct Node(pub(super) u64);

impl Node {
    pub(super) fn internal(field: u8, shift: u8, bits: u8, base: u32, pushed: bool) -> Node {
        Node(
            base as u64
                | (field as u64) << 32
                | (shift as u64) << 35
                | (bits as u64) << 42
                | (pushed as u64) << 63,
        )
    }
    #[inline(always)]
    pub(super) fn has_push(self) -> bool {
        self.0 >> 63 != 0
    }
    pub(super) fn leaf(base: u32, len: u32) -> Node {
        Node(base as u64 | LEAF_FIELD << 32 | (len as u64) << 42)
    }
    #[inline(always)]
    pub(super) fn is_leaf(self) -> bool {
        (self.0 >> 32) & 7 == LEAF_FIELD
    }
    #[inline(always)]
    pub(super) fn field(self) -> u8 {
        ((self.0 >> 32) & 7) as u8
    }
    #[inline(always)]
    pub(super) fn shift(self) -> u8 {
        ((self.0 >> 35) & 127) as u8
    }
    #[inline(always)]
    pub(super) fn upper(self) -> u32 {
        ((self.0 >> 42) & 0x1f_ffff) as u32
    }
    #[inline(always)]
    pub(super) fn base(self) -> u32 {
        self.0 as u32
    }
}

/// A rule as stored in a leaf: inclusive bounds per field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct LeafRule<A> {
    pub(super) lo: [A; NFIELDS],
    pub(super) hi: [A; NFIELDS],
    pub(super) prio: u32,
    /// Index into `ext_heads`, or `NO_EXT`.
    pub(super) ext: u32,
}

/// The part of a leaf rule read for every rule scanned: addresses (which
/// reject most rules) and priority. 20 bytes for IPv4, so a leaf of eight
/// rules spans three cache lines instead of seven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hot<A> {
    pub(super) src: [A; 2],
    pub(super) dst: [A; 2],
    pub(super) prio: u32,
}

/// The rest, read only when the addresses match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cold<A> {
    /// class, proto, sport, dport.
    pub(super) lo: [A; 4],
    pub(super) hi: [A; 4],
    pub(super) ext: u32,
}

/// A node slot: the node and the best priority below it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub(super) node: Node,
    pub(super) min: u32,
}

/// One partition's tree.
#[derive(Clone, Debug)]
pub(super) struct Tree {
    pub(super) root: Node,
    /// Rules pushed up to the root (see `Builder::node`).
    pub(super) root_push: Node,
    /// Lowest priority (best) of any rule in the tree.
    pub(super) min_prio: u32,
}

/// The compiled engine for one rule list and one address family.
#[derive(Clone, Debug)]
pub struct CutTree<A> {
    pub(super) trees: Vec<Tree>,
    /// Node slots, each with the best (lowest) priority in its subtree: a
    /// walk stops as soon as it cannot beat the match it already has. One
    /// 16-byte slot, so a level costs one cache line, not two.
    pub(super) slots: Vec<Slot>,
    /// For a node slot whose internal node has pushed rules: the leaf-like
    /// list of them (rules that every child would hold), scanned on the way
    /// down instead of being copied into every child.
    pub(super) push: Vec<Node>,
    /// Leaf rules for the scalar scan (IPv6; empty for IPv4).
    pub(super) hot: Vec<Hot<A>>,
    pub(super) cold: Vec<Cold<A>>,
    /// Leaf rules for the SIMD scan (IPv4; empty for IPv6): a leaf is
    /// `ceil(len / 4)` consecutive blocks, and its node's base is the first.
    pub(super) blocks: Vec<Block>,
    /// (start, len) into `ext_items`.
    pub(super) ext_heads: Vec<(u32, u32)>,
    /// (field, start, len) into `ext_ranges`, or a set check
    /// ([`CHECK_ITEM`]).
    pub(super) ext_items: Vec<(u8, u32, u32)>,
    pub(super) ext_ranges: Vec<(A, A)>,
    pub(super) stats: TreeStats,
}

/// Build statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Partitions (trees).
    pub trees: usize,
    /// Nodes (internal and leaf slots).
    pub nodes: usize,
    /// Rules stored in leaves (with replication).
    pub leaf_rules: usize,
    /// Deepest leaf.
    pub max_depth: usize,
    /// Largest leaf.
    pub max_leaf: usize,
    /// Per partition: (rules, nodes, leaf entries).
    pub per_tree: Vec<(usize, usize, usize)>,
}

impl<A: Addr> CutTree<A> {
    /// Bytes of the compiled structure.
    pub fn memory(&self) -> usize {
        self.trees.len() * std::mem::size_of::<Tree>()
            + self.slots.len() * std::mem::size_of::<Slot>()
            + self.push.len() * std::mem::size_of::<Node>()
            + self.hot.len() * std::mem::size_of::<Hot<A>>()
            + self.cold.len() * std::mem::size_of::<Cold<A>>()
            + self.blocks.len() * std::mem::size_of::<Block>()
            + self.ext_heads.len() * 8
            + self.ext_items.len() * 12
            + self.ext_ranges.len() * 2 * std::mem::size_of::<A>()
    }

    /// Build statistics.
    pub fn stats(&self) -> &TreeStats {
        &self.stats
    }
}
