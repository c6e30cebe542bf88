//! The cut-tree engine: first match over a priority-ordered list of boxes
//! (one value set per field), HiCuts-style equal-size cuts on one field per
//! node, EffiCuts-style partitioning of the rules by which address fields
//! are small, leaves scanned linearly in priority order.
//!
//! Build (per partition):
//! - A node owns an aligned power-of-two region per field and the rules that
//!   intersect it, in priority order. Rules after the first one that covers
//!   the whole region can never be the first match there and are dropped.
//! - A node with at most `binth` rules is a leaf. Otherwise, for each field
//!   and cut count `2^b` (b ≤ `max_cut_bits`), the children's rule counts are
//!   computed; the largest `b` whose total stays within `spfac × n + 2^b` is
//!   that field's candidate, and the candidate with the smallest largest
//!   child wins (ties: smallest total). No progress → leaf.
//! - Leaves are deduplicated by content. A leaf stores each rule's field
//!   ranges inline; a field whose value set is not one range inside the
//!   leaf's region is checked against the clipped range list (`ext`), which
//!   is rare. IPv4 leaves are laid out as blocks of four rules, field-major
//!   (`Block`), and scanned with SSE2 (via `wide`, no `unsafe`): every field
//!   of four rules in a dozen instructions and one branch, instead of a
//!   data-dependent branch per rule (ClassBench 10k, same run: acl +6–11%,
//!   ipc +10%, fw −10%, fw still 1.3–3× `dpdk-test-acl`). IPv6 leaves are
//!   scanned rule by rule.
//!
//! Lookup: for each partition in order of its best priority (stopping as
//! soon as no partition can beat the best match so far), walk from the root:
//! `child = slots[base + ((key[field] >> shift) & mask)]`, one dependent
//! load per level (a 16-byte slot holds the node and its subtree's best
//! priority), then scan the leaf.

use super::block::{self, Block, BlockRule, KeyVec, NO_EXT};
use super::{Addr, Config, EKey, ERule, BATCH, NFIELDS};
use crate::ranges::RangeSet;
use ahash::AHashMap as HashMap;
use std::hash::Hash;

const LEAF_FIELD: u64 = 7;

/// A node packed in 8 bytes: `base` (bits 0..32), field (32..35, 7 =
/// leaf), shift (35..42), the cut's bit count or the leaf's rule count
/// (42..63), and (bit 63) whether an internal node has pushed rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Node(u64);

impl Node {
    fn internal(field: u8, shift: u8, bits: u8, base: u32, pushed: bool) -> Node {
        Node(
            base as u64
                | (field as u64) << 32
                | (shift as u64) << 35
                | (bits as u64) << 42
                | (pushed as u64) << 63,
        )
    }
    #[inline(always)]
    fn has_push(self) -> bool {
        self.0 >> 63 != 0
    }
    fn leaf(base: u32, len: u32) -> Node {
        Node(base as u64 | LEAF_FIELD << 32 | (len as u64) << 42)
    }
    #[inline(always)]
    fn is_leaf(self) -> bool {
        (self.0 >> 32) & 7 == LEAF_FIELD
    }
    #[inline(always)]
    fn field(self) -> u8 {
        ((self.0 >> 32) & 7) as u8
    }
    #[inline(always)]
    fn shift(self) -> u8 {
        ((self.0 >> 35) & 127) as u8
    }
    #[inline(always)]
    fn upper(self) -> u32 {
        ((self.0 >> 42) & 0x1f_ffff) as u32
    }
    #[inline(always)]
    fn base(self) -> u32 {
        self.0 as u32
    }
}

/// A rule as stored in a leaf: inclusive bounds per field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct LeafRule<A> {
    lo: [A; NFIELDS],
    hi: [A; NFIELDS],
    prio: u32,
    /// Index into `ext_heads`, or `NO_EXT`.
    ext: u32,
}

/// The part of a leaf rule read for every rule scanned: addresses (which
/// reject most rules) and priority. 20 bytes for IPv4, so a leaf of eight
/// rules spans three cache lines instead of seven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hot<A> {
    src: [A; 2],
    dst: [A; 2],
    prio: u32,
}

/// The rest, read only when the addresses match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cold<A> {
    /// class, proto, sport, dport.
    lo: [A; 4],
    hi: [A; 4],
    ext: u32,
}

/// A node slot: the node and the best priority below it.
#[derive(Clone, Copy, Debug)]
struct Slot {
    node: Node,
    min: u32,
}

/// One partition's tree.
#[derive(Clone, Debug)]
struct Tree {
    root: Node,
    /// Rules pushed up to the root (see `Builder::node`).
    root_push: Node,
    /// Lowest priority (best) of any rule in the tree.
    min_prio: u32,
}

/// The compiled engine for one rule list and one address family.
#[derive(Clone, Debug)]
pub struct CutTree<A> {
    trees: Vec<Tree>,
    /// Node slots, each with the best (lowest) priority in its subtree: a
    /// walk stops as soon as it cannot beat the match it already has. One
    /// 16-byte slot, so a level costs one cache line, not two.
    slots: Vec<Slot>,
    /// For a node slot whose internal node has pushed rules: the leaf-like
    /// list of them (rules that every child would hold), scanned on the way
    /// down instead of being copied into every child.
    push: Vec<Node>,
    /// Leaf rules for the scalar scan (IPv6; empty for IPv4).
    hot: Vec<Hot<A>>,
    cold: Vec<Cold<A>>,
    /// Leaf rules for the SIMD scan (IPv4; empty for IPv6): a leaf is
    /// `ceil(len / 4)` consecutive blocks, and its node's base is the first.
    blocks: Vec<Block>,
    /// (start, len) into `ext_items`.
    ext_heads: Vec<(u32, u32)>,
    /// (field, start, len) into `ext_ranges`.
    ext_items: Vec<(u8, u32, u32)>,
    ext_ranges: Vec<(A, A)>,
    stats: TreeStats,
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
    /// Build from terms (sorted or not; priority is `ERule::prio`).
    pub fn build(rules: &[ERule<'_>], class_bits: u8, cfg: &Config) -> CutTree<A> {
        let widths: [u8; NFIELDS] = [class_bits, A::BITS as u8, A::BITS as u8, 8, 17, 17];
        let mut b = Builder::<A> {
            rules,
            cfg,
            nodes: Vec::new(),
            mins: Vec::new(),
            push: Vec::new(),
            last_push: Node::leaf(0, 0),
            leaf_rules: Vec::new(),
            ext_heads: Vec::new(),
            ext_items: Vec::new(),
            ext_ranges: Vec::new(),
            ext_dedup: HashMap::default(),
            leaf_dedup: HashMap::default(),
            term_ext: HashMap::default(),
            diff: Vec::new(),
            runs: Vec::new(),
            clips: Vec::new(),
            leaf_scratch: Vec::new(),
            stats: TreeStats::default(),
            budget: rules.len().saturating_mul(32).saturating_add(1 << 16),
        };
        let mut order: Vec<u32> = (0..rules.len() as u32).collect();
        order.sort_by_key(|&i| (rules[i as usize].prio, i));
        let groups = if cfg.partitions > 1 && rules.len() > cfg.binth {
            partition(rules, &order, &widths, cfg.partitions)
        } else {
            vec![order]
        };
        let mut trees = Vec::new();
        for g in groups {
            if g.is_empty() {
                continue;
            }
            let min_prio = rules[g[0] as usize].prio;
            let mut region = [(0u128, 0u8); NFIELDS];
            for (f, w) in widths.iter().enumerate() {
                region[f] = (0, *w);
            }
            let (n0, l0, nrules) = (b.nodes.len(), b.leaf_rules.len(), g.len());
            let root = b.node(&g, region, 0);
            let root_push = b.last_push;
            b.stats
                .per_tree
                .push((nrules, b.nodes.len() - n0, b.leaf_rules.len() - l0));
            trees.push(Tree {
                root,
                root_push,
                min_prio,
            });
        }
        trees.sort_by_key(|t| t.min_prio);
        b.stats.trees = trees.len();
        b.stats.nodes = b.nodes.len();
        b.stats.leaf_rules = b.leaf_rules.len();
        let mut t = CutTree {
            trees,
            slots: b
                .nodes
                .iter()
                .zip(&b.mins)
                .map(|(&node, &min)| Slot { node, min })
                .collect(),
            push: b.push,
            blocks: Vec::new(),
            hot: b
                .leaf_rules
                .iter()
                .map(|r| Hot {
                    src: [r.lo[1], r.hi[1]],
                    dst: [r.lo[2], r.hi[2]],
                    prio: r.prio,
                })
                .collect(),
            cold: b
                .leaf_rules
                .iter()
                .map(|r| Cold {
                    lo: [r.lo[0], r.lo[3], r.lo[4], r.lo[5]],
                    hi: [r.hi[0], r.hi[3], r.hi[4], r.hi[5]],
                    ext: r.ext,
                })
                .collect(),
            ext_heads: b.ext_heads,
            ext_items: b.ext_items,
            ext_ranges: b.ext_ranges,
            stats: b.stats,
        };
        if A::BITS == 32 {
            t.lay_out_blocks(&b.leaf_rules);
        }
        t
    }

    /// Re-lay the leaves as SIMD blocks (IPv4): every leaf-form node (leaf
    /// slots, roots, pushed lists) gets its blocks' base; the scalar arrays
    /// are dropped.
    fn lay_out_blocks(&mut self, leaf_rules: &[LeafRule<A>]) {
        let mut done: HashMap<(u32, u32), u32> = HashMap::default();
        let mut blocks = Vec::new();
        let mut relay = |n: Node| -> Node {
            if !n.is_leaf() || n.upper() == 0 {
                return n;
            }
            let (base, len) = (n.base(), n.upper());
            let nb = *done.entry((base, len)).or_insert_with(|| {
                let first = blocks.len() as u32;
                let rules = &leaf_rules[base as usize..(base + len) as usize];
                block::push_blocks(
                    &mut blocks,
                    rules.iter().map(|r| BlockRule {
                        lo: r.lo.map(|x| x.to_u128() as u32),
                        hi: r.hi.map(|x| x.to_u128() as u32),
                        prio: r.prio,
                        ext: r.ext,
                    }),
                );
                first
            });
            Node((n.0 & !0xffff_ffff) | nb as u64)
        };
        for s in self.slots.iter_mut() {
            s.node = relay(s.node);
        }
        for n in self.push.iter_mut() {
            *n = relay(*n);
        }
        for t in self.trees.iter_mut() {
            t.root = relay(t.root);
            t.root_push = relay(t.root_push);
        }
        self.blocks = blocks;
        self.hot = Vec::new();
        self.cold = Vec::new();
    }

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

    /// Index of the child slot of internal node `n` for key `k`.
    #[inline(always)]
    fn slot(n: Node, k: &EKey<A>) -> usize {
        let mask = (1u32 << n.upper()) - 1;
        (n.base() + (k.f[n.field() as usize % NFIELDS].shr_u32(n.shift()) & mask)) as usize
    }

    /// Walk tree `t` for `k`, scanning pushed rules on the way; returns
    /// the best priority (at most `best`).
    #[inline]
    fn walk(&self, t: &Tree, k: &EKey<A>, kv: &KeyVec, mut best: u32) -> u32 {
        let mut n = t.root;
        if n.has_push() {
            best = self.scan(t.root_push, k, kv, best);
        }
        while !n.is_leaf() {
            let i = Self::slot(n, k);
            let slot = self.slots[i];
            if slot.min >= best {
                return best;
            }
            n = slot.node;
            if n.has_push() {
                best = self.scan(self.push[i], k, kv, best);
            }
        }
        self.scan(n, k, kv, best)
    }

    /// Scan a leaf (or a pushed list) for `k`; `kv` is its vector form ([`KeyVec::of`]).
    #[inline(always)]
    fn scan(&self, leaf: Node, k: &EKey<A>, kv: &KeyVec, best: u32) -> u32 {
        if A::BITS == 32 {
            self.scan_blocks(leaf, k, kv, best)
        } else {
            self.scan_scalar(leaf, k, best)
        }
    }

    /// The SIMD scan of a leaf (IPv4; see [`block::scan`]).
    #[inline(always)]
    fn scan_blocks(&self, leaf: Node, k: &EKey<A>, kv: &KeyVec, best: u32) -> u32 {
        let start = leaf.base() as usize;
        let len = leaf.upper() as usize;
        block::scan(
            &self.blocks[start..start + len.div_ceil(4)],
            kv,
            best,
            |e| self.ext_ok(e, k),
        )
    }

    #[inline(always)]
    fn scan_scalar(&self, leaf: Node, k: &EKey<A>, best: u32) -> u32 {
        let start = leaf.base() as usize;
        let end = start + leaf.upper() as usize;
        let (src, dst) = (k.f[1], k.f[2]);
        for (i, h) in self.hot[start..end].iter().enumerate() {
            if h.prio >= best {
                break;
            }
            if (h.src[0] <= src) & (src <= h.src[1]) & (h.dst[0] <= dst) & (dst <= h.dst[1]) {
                let c = &self.cold[start + i];
                let ok = (c.lo[0] <= k.f[0])
                    & (k.f[0] <= c.hi[0])
                    & (c.lo[1] <= k.f[3])
                    & (k.f[3] <= c.hi[1])
                    & (c.lo[2] <= k.f[4])
                    & (k.f[4] <= c.hi[2])
                    & (c.lo[3] <= k.f[5])
                    & (k.f[5] <= c.hi[3]);
                if ok && (c.ext == NO_EXT || self.ext_ok(c.ext, k)) {
                    return h.prio;
                }
            }
        }
        best
    }

    /// First match for up to [`BATCH`] keys at once: the trees are walked
    /// level by level across the keys, so the independent node loads of
    /// different keys overlap in the memory system instead of waiting one
    /// after another. `best[i]` must start at `u32::MAX` (or a bound);
    /// it ends as the priority of the first match (`u32::MAX`: none).
    pub fn first_match_many(&self, keys: &[EKey<A>], best: &mut [u32]) {
        let n = keys.len().min(best.len()).min(BATCH);
        let (keys, best) = (&keys[..n], &mut best[..n]);
        let mut cur = [Node::default(); BATCH];
        // `open`: the keys this tree can still improve; `walk`: those of
        // them still above a leaf. A level only visits the walking keys.
        let mut open = [0u8; BATCH];
        let mut walk = [0u8; BATCH];
        for t in &self.trees {
            let mut no = 0;
            for (i, &b) in best.iter().enumerate() {
                open[no] = i as u8;
                no += usize::from(b > t.min_prio);
            }
            if no == 0 {
                continue;
            }
            let open = &open[..no];
            for &i in open {
                let i = usize::from(i);
                if t.root.has_push() {
                    best[i] = self.scan(t.root_push, &keys[i], &KeyVec::of(&keys[i]), best[i]);
                }
                cur[i] = t.root;
            }
            let mut nw = 0;
            if !t.root.is_leaf() {
                walk[..no].copy_from_slice(open);
                nw = no;
            }
            while nw != 0 {
                let mut j = 0;
                for x in 0..nw {
                    let i = usize::from(walk[x]);
                    let s = Self::slot(cur[i], &keys[i]);
                    let slot = self.slots[s];
                    let next = if slot.min >= best[i] {
                        Node::leaf(0, 0)
                    } else {
                        if slot.node.has_push() {
                            best[i] =
                                self.scan(self.push[s], &keys[i], &KeyVec::of(&keys[i]), best[i]);
                        }
                        slot.node
                    };
                    cur[i] = next;
                    walk[j] = i as u8;
                    j += usize::from(!next.is_leaf());
                }
                nw = j;
            }
            for &i in open {
                let i = usize::from(i);
                if best[i] > t.min_prio {
                    best[i] = self.scan(cur[i], &keys[i], &KeyVec::of(&keys[i]), best[i]);
                }
            }
        }
    }

    fn ext_ok(&self, ext: u32, k: &EKey<A>) -> bool {
        let (s, l) = self.ext_heads[ext as usize];
        for &(f, rs, rl) in &self.ext_items[s as usize..(s + l) as usize] {
            let v = k.f[f as usize % NFIELDS];
            let r = &self.ext_ranges[rs as usize..(rs + rl) as usize];
            let i = r.partition_point(|&(_, hi)| hi < v);
            if i >= r.len() || r[i].0 > v {
                return false;
            }
        }
        true
    }

    /// Priority of the first matching rule, if any.
    #[inline]
    pub fn first_match(&self, k: &EKey<A>) -> Option<u32> {
        let mut best = u32::MAX;
        let kv = KeyVec::of(k);
        for t in &self.trees {
            if t.min_prio >= best {
                break;
            }
            best = self.walk(t, k, &kv, best);
        }
        (best != u32::MAX).then_some(best)
    }
}

/// Split rules into groups by whether their source and destination sets
/// are small (EffiCuts): cutting on an address field replicates every rule
/// that is wide in it, so wide and narrow rules live in different trees.
fn partition(rules: &[ERule<'_>], order: &[u32], widths: &[u8; NFIELDS], n: u8) -> Vec<Vec<u32>> {
    let small = |s: &RangeSet, w: u8| -> bool {
        let total: u128 = s
            .ranges()
            .iter()
            .map(|(a, b)| b.saturating_sub(*a).saturating_add(1))
            .fold(0u128, |x, y| x.saturating_add(y));
        // Small: at most 2^(w - w/4) values (a /8 or longer for IPv4).
        let lim = 1u128 << (w - w / 4);
        total <= lim
    };
    partition_by(order, n, |i| {
        let r = &rules[i as usize];
        (small(r.fields[1], widths[1]), small(r.fields[2], widths[2]))
    })
}

/// Split `order` into `n` groups (1..4, see [`Config::partitions`]) by
/// `small(rule)` = (small source, small destination), keeping the order.
pub(crate) fn partition_by(
    order: &[u32],
    n: u8,
    small: impl Fn(u32) -> (bool, bool),
) -> Vec<Vec<u32>> {
    let mut groups: Vec<Vec<u32>> = vec![Vec::new(); 4];
    for &i in order {
        let (s, d) = small(i);
        let g = match n {
            // Small source | the rest.
            2 => usize::from(!s),
            // Small source | small destination | wide in both.
            3 => match (s, d) {
                (true, _) => 0,
                (false, true) => 1,
                (false, false) => 2,
            },
            _ => usize::from(s) | (usize::from(d) << 1),
        };
        groups[g].push(i);
    }
    groups
}

struct Builder<'a, A> {
    rules: &'a [ERule<'a>],
    cfg: &'a Config,
    nodes: Vec<Node>,
    mins: Vec<u32>,
    push: Vec<Node>,
    /// Pushed rules of the node being returned to the caller, which stores
    /// them in its slot (or the tree's root).
    last_push: Node,
    leaf_rules: Vec<LeafRule<A>>,
    ext_heads: Vec<(u32, u32)>,
    ext_items: Vec<(u8, u32, u32)>,
    ext_ranges: Vec<(A, A)>,
    /// Range lists already stored, so equal sets (one selector used by many
    /// rules) are stored once.
    ext_dedup: HashMap<(u8, u32), Vec<(u32, u32)>>,
    leaf_dedup: HashMap<Vec<LeafRule<A>>, Node>,
    term_ext: HashMap<u32, u32>,
    stats: TreeStats,
    budget: usize,
    /// Scratch of `count`.
    diff: Vec<i64>,
    runs: Vec<(usize, usize)>,
    /// Scratch of `leaf`.
    leaf_scratch: Vec<LeafRule<A>>,
    /// Scratch of `clip_field`, read by `count`.
    clips: Vec<(u128, u128)>,
}

type Region = [(u128, u8); NFIELDS];

/// Whether the run of children `c0..=c1` is all `nchild` of them. Runs are
/// maximal, so a rule meeting every child has that one run and no other.
fn every_child(c0: usize, c1: usize, nchild: usize) -> bool {
    c0 == 0 && c1 + 1 == nchild
}

fn region_hi(r: (u128, u8)) -> u128 {
    if r.1 >= 128 {
        u128::MAX
    } else {
        r.0 + ((1u128 << r.1) - 1)
    }
}

impl<A: Addr> Builder<'_, A> {
    fn covers(&self, id: u32, region: &Region) -> bool {
        let r = &self.rules[id as usize];
        (0..NFIELDS).all(|f| r.fields[f].covers(region[f].0, region_hi(region[f])))
    }

    /// Shrink each field of the region to the smallest aligned block that
    /// holds every rule's values inside it. Keys outside that block match
    /// none of the node's rules (nor, by induction, any rule below), so
    /// sending them anywhere is correct: the leaf check rejects them.
    fn compact(&self, ids: &[u32], region: &mut Region) {
        for (f, reg) in region.iter_mut().enumerate() {
            if reg.1 == 0 {
                continue;
            }
            let (lo, hi) = (reg.0, region_hi(*reg));
            let mut min = u128::MAX;
            let mut max = 0u128;
            for &id in ids {
                if let Some((a, z)) = self.rules[id as usize].fields[f].bounds_within(lo, hi) {
                    min = min.min(a);
                    max = max.max(z);
                }
                if min == lo && max == hi {
                    break;
                }
            }
            if min > max {
                continue;
            }
            let w = (128 - (min ^ max).leading_zeros()) as u8;
            let blo = if w >= 128 {
                0
            } else {
                min & !((1u128 << w) - 1)
            };
            *reg = (blo, w);
        }
    }

    fn node(&mut self, ids: &[u32], region: Region, depth: usize) -> Node {
        self.last_push = Node::leaf(0, 0);
        let n = self.node_inner(ids, region, depth);
        if n.is_leaf() {
            self.last_push = Node::leaf(0, 0);
        }
        n
    }

    fn node_inner(&mut self, mut ids: &[u32], mut region: Region, depth: usize) -> Node {
        self.compact(ids, &mut region);
        // Drop rules shadowed by a rule covering the whole region.
        if let Some(pos) = ids.iter().position(|&i| self.covers(i, &region)) {
            ids = &ids[..pos + 1];
        }
        self.stats.max_depth = self.stats.max_depth.max(depth);
        // A hard budget on entries and slots keeps any configuration within
        // bounded memory: past it, nodes become (fat) leaves.
        let over_budget = self.leaf_rules.len() + self.nodes.len() / 4 > self.budget;
        if ids.len() <= self.cfg.binth || depth >= 48 || over_budget {
            return self.leaf(ids, &region);
        }
        let n = ids.len();
        // Choose the cut.
        let mut best: Option<(usize, u8, usize, usize)> = None; // (field, bits, max, sum)
        for f in 0..NFIELDS {
            let w = region[f].1;
            if w == 0 {
                continue;
            }
            self.clip_field(ids, &region, f);
            let mut cand: Option<(u8, usize, usize)> = None;
            for b in 1..=w.min(self.cfg.max_cut_bits) {
                // Pushed rules are scanned at this node by every lookup:
                // they count toward the largest child.
                let (max, sum, common) = self.count(ids, &region, f, b);
                let max = max + common;
                // HiCuts' space measure: entries plus child slots.
                let limit = (self.cfg.spfac * n as f64) as usize;
                if b > 1 && sum + (1usize << b) > limit {
                    break;
                }
                cand = Some((b, max, sum));
                if max <= 1 {
                    break;
                }
            }
            if let Some((b, max, sum)) = cand {
                let better = match best {
                    None => true,
                    Some((_, bb, bm, bs)) => (max, sum, b) < (bm, bs, bb),
                };
                if better {
                    best = Some((f, b, max, sum));
                }
            }
        }
        let Some((f, b, max, _)) = best else {
            return self.leaf(ids, &region);
        };
        if max >= n {
            return self.leaf(ids, &region);
        }
        let nchild = 1usize << b;
        let child_w = region[f].1 - b;
        // Each rule's runs of children, in the node's (priority) order.
        self.clip_field(ids, &region, f);
        let mut runs = std::mem::take(&mut self.runs);
        let mut spans: Vec<(u32, u32, u32)> = Vec::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            self.rule_runs(i, id, &region, f, b, &mut runs);
            spans.extend(runs.iter().map(|&(c0, c1)| (id, c0 as u32, c1 as u32)));
        }
        self.runs = runs;
        // Rules that every child would hold are pushed up: kept once, at
        // this node, and scanned on the way down (HyperCuts), unless there
        // are too many to scan here.
        let whole = |s: &(u32, u32, u32)| every_child(s.1 as usize, s.2 as usize, nchild);
        let mut common: Vec<u32> = Vec::new();
        if self.cfg.push > 0 && nchild > 1 {
            common.extend(spans.iter().filter(|s| whole(s)).map(|s| s.0));
            if common.len() > self.cfg.push {
                common.clear();
            }
        }
        if common.len() == ids.len() {
            return self.leaf(ids, &region);
        }
        let pushed_up = |s: &(u32, u32, u32)| !common.is_empty() && whole(s);
        // The children's lists in one buffer: count, then place; each list
        // stays in priority order.
        let mut at = vec![0usize; nchild + 1];
        for s in spans.iter().filter(|s| !pushed_up(s)) {
            for c in s.1..=s.2 {
                at[c as usize + 1] += 1;
            }
        }
        for c in 0..nchild {
            at[c + 1] += at[c];
        }
        let mut lists = vec![0u32; at[nchild]];
        let mut fill = at.clone();
        for s in spans.iter().filter(|s| !pushed_up(s)) {
            for c in s.1..=s.2 {
                lists[fill[c as usize]] = s.0;
                fill[c as usize] += 1;
            }
        }
        drop(spans);
        let base = self.nodes.len();
        self.nodes.resize(base + nchild, Node::default());
        self.mins.resize(base + nchild, u32::MAX);
        self.push.resize(base + nchild, Node::leaf(0, 0));
        for c in 0..nchild {
            let cids = &lists[at[c]..at[c + 1]];
            let mut cr = region;
            cr[f] = (region[f].0 + ((c as u128) << child_w), child_w);
            self.mins[base + c] = cids
                .first()
                .map_or(u32::MAX, |&i| self.rules[i as usize].prio);
            let node = self.node(cids, cr, depth + 1);
            self.nodes[base + c] = node;
            self.push[base + c] = self.last_push;
        }
        let pushed = !common.is_empty();
        self.last_push = if pushed {
            self.leaf(&common, &region)
        } else {
            Node::leaf(0, 0)
        };
        Node::internal(f as u8, child_w, b, base as u32, pushed)
    }

    /// Fill `clips` for the `count`s of field `f`: per rule, its one range
    /// in the region as offsets from the region's start, or `(1, 0)` when
    /// its set has several ranges or misses the region (then `count` asks
    /// `child_runs`).
    fn clip_field(&mut self, ids: &[u32], region: &Region, f: usize) {
        let (lo, hi) = (region[f].0, region_hi(region[f]));
        self.clips.clear();
        self.clips.extend(
            ids.iter()
                .map(|&id| match self.rules[id as usize].fields[f].ranges() {
                    [(a, z)] if *a <= hi && *z >= lo => ((*a).max(lo) - lo, (*z).min(hi) - lo),
                    _ => (1, 0),
                }),
        );
    }

    /// The maximal runs of children (of a cut of field `f` into `2^b`)
    /// that rule `id`, the `i`th of the node, meets, into `runs`: from its
    /// `clip_field` entry when it has one range, else from its set.
    #[inline]
    fn rule_runs(
        &self,
        i: usize,
        id: u32,
        region: &Region,
        f: usize,
        b: u8,
        runs: &mut Vec<(usize, usize)>,
    ) {
        runs.clear();
        let (lo, w) = region[f];
        match self.clips.get(i) {
            Some(&(a, z)) if a <= z => {
                runs.push(((a >> (w - b)) as usize, (z >> (w - b)) as usize))
            }
            _ => {
                self.rules[id as usize].fields[f].child_runs(lo, w, b, |c0, c1| runs.push((c0, c1)))
            }
        }
    }

    /// For a cut of field `f` into `2^b`: (largest child, total entries,
    /// rules touching every child), the first two without the third when
    /// those are pushed up.
    fn count(&mut self, ids: &[u32], region: &Region, f: usize, b: u8) -> (usize, usize, usize) {
        let nchild = 1usize << b;
        let mut diff = std::mem::take(&mut self.diff);
        diff.clear();
        diff.resize(nchild + 1, 0);
        let push = self.cfg.push > 0 && nchild > 1;
        let mut common = 0usize;
        let mut runs = std::mem::take(&mut self.runs);
        for (i, &id) in ids.iter().enumerate() {
            self.rule_runs(i, id, region, f, b, &mut runs);
            if push
                && runs
                    .first()
                    .is_some_and(|&(c0, c1)| every_child(c0, c1, nchild))
            {
                common += 1;
                continue;
            }
            for &(c0, c1) in &runs {
                diff[c0] += 1;
                diff[c1 + 1] -= 1;
            }
        }
        self.runs = runs;
        // Too many to push: they are copied into every child after all.
        if common > self.cfg.push {
            diff[0] += common as i64;
            diff[nchild] -= common as i64;
            common = 0;
        }
        let (mut cur, mut max, mut sum) = (0i64, 0usize, 0usize);
        for d in diff.iter().take(nchild) {
            cur += d;
            max = max.max(cur as usize);
            sum += cur as usize;
        }
        self.diff = diff;
        (max, sum, common)
    }

    /// Store a range list (once per distinct list); its start.
    fn store_ranges(&mut self, f: u8, rs: &[(u128, u128)]) -> u32 {
        // A big IP set is referenced by many terms: hash it with aHash
        // (SipHash over 100k ranges per term was a tenth of a Calico
        // compile) and compare candidates in place, without a copy.
        let key = (
            f,
            ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(rs) as u32,
        );
        let conv = |&(a, b): &(u128, u128)| (A::from_u128_sat(a), A::from_u128_sat(b));
        if let Some(cands) = self.ext_dedup.get(&key) {
            for &(at, len) in cands {
                let stored = &self.ext_ranges[at as usize..(at + len) as usize];
                if stored.len() == rs.len() && stored.iter().zip(rs).all(|(s, r)| *s == conv(r)) {
                    return at;
                }
            }
        }
        let at = self.ext_ranges.len() as u32;
        self.ext_ranges.extend(rs.iter().map(conv));
        self.ext_dedup
            .entry(key)
            .or_default()
            .push((at, rs.len() as u32));
        at
    }

    /// The ext head of a term: its multi-range fields, full sets, stored
    /// once however many leaves hold the term.
    fn term_ext(&mut self, id: u32) -> u32 {
        if let Some(&h) = self.term_ext.get(&id) {
            return h;
        }
        let head = self.ext_heads.len() as u32;
        let start = self.ext_items.len() as u32;
        let r = &self.rules[id as usize];
        let mut n = 0;
        for f in 0..NFIELDS {
            let rs = r.fields[f].ranges();
            if rs.len() > 1 {
                let at = self.store_ranges(f as u8, rs);
                self.ext_items.push((f as u8, at, rs.len() as u32));
                n += 1;
            }
        }
        self.ext_heads.push((start, n));
        self.term_ext.insert(id, head);
        head
    }

    fn leaf(&mut self, ids: &[u32], region: &Region) -> Node {
        self.stats.max_leaf = self.stats.max_leaf.max(ids.len());
        let mut out = std::mem::take(&mut self.leaf_scratch);
        out.clear();
        for &id in ids {
            let mut lo = [0u128; NFIELDS];
            let mut hi = [0u128; NFIELDS];
            let mut needs_ext = false;
            for f in 0..NFIELDS {
                let s = self.rules[id as usize].fields[f];
                if s.ranges().len() == 1 {
                    (lo[f], hi[f]) = s.ranges()[0];
                    continue;
                }
                // Within the region: one range (exact there), or several
                // (the hull here, the full set checked through `ext`).
                let (rlo, rhi) = (region[f].0, region_hi(region[f]));
                match s.bounds_within(rlo, rhi) {
                    None => {
                        // Empty: lo > hi never matches.
                        lo[f] = 1;
                        hi[f] = 0;
                    }
                    Some((a, z)) => {
                        (lo[f], hi[f]) = (a, z);
                        // One range inside the region is exact there.
                        needs_ext |= !s.covers(a, z);
                    }
                }
            }
            let ext = if needs_ext { self.term_ext(id) } else { NO_EXT };
            out.push(LeafRule {
                lo: lo.map(A::from_u128_sat),
                hi: hi.map(A::from_u128_sat),
                prio: self.rules[id as usize].prio,
                ext,
            });
        }
        let node = match self.leaf_dedup.get(&out[..]) {
            Some(n) => *n,
            None => {
                let node = Node::leaf(self.leaf_rules.len() as u32, out.len() as u32);
                self.leaf_rules.extend_from_slice(&out);
                self.leaf_dedup.insert(out.clone(), node);
                node
            }
        };
        self.leaf_scratch = out;
        node
    }
}
