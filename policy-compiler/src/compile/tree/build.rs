//! Building the cut trees (see the [module docs](super)): partitions, the
//! choice of cut per node, pushed rules, leaves and their range lists, and
//! the IPv4 leaves laid out as SIMD blocks.

use ahash::AHashMap as HashMap;

use super::super::block::{self, BlockRule, NO_EXT};
use super::super::config::Config;
use super::super::partition::partition_by;
use super::super::types::{Addr, ERule, NFIELDS};
use super::layout::{Cold, CutTree, Hot, LeafRule, Node, Slot, Tree, TreeStats, CHECK_ITEM};
use crate::ir::{SetCheck, SetSide};
use crate::ranges::RangeSet;

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

/// The `ext_items` field byte of a set check (see [`CHECK_ITEM`]).
fn check_item(c: &SetCheck) -> u8 {
    CHECK_ITEM | u8::from(c.side == SetSide::Dst) | u8::from(c.negated) << 1
}

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
        // A rule with set checks may fail anywhere: it shadows nothing.
        r.checks.is_empty()
            && (0..NFIELDS).all(|f| r.fields[f].covers(region[f].0, region_hi(region[f])))
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
        // (not SipHash: the set can be 100k ranges, hashed once per term)
        // and compare candidates in place, without a copy.
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
        for c in r.checks {
            self.ext_items.push((check_item(c), c.set, 0));
            n += 1;
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
            needs_ext |= !self.rules[id as usize].checks.is_empty();
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
