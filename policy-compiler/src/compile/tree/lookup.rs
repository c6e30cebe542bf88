//! Lookups in the cut trees: one key ([`CutTree::first_match`]) or a batch
//! walked level by level ([`CutTree::first_match_many`]).

use std::sync::Arc;

use super::super::block::{self, KeyVec, NO_EXT};
use super::super::sets::SetMatch;
use super::super::types::{Addr, EKey, BATCH, NFIELDS};
use super::layout::{CutTree, Node, Tree, CHECK_ITEM};
use crate::ir::SetSide;

/// The sets a lookup checks rules against (the classifier's set table).
type Sets<'s> = &'s [Arc<SetMatch>];

impl<A: Addr> CutTree<A> {
    /// Index of the child slot of internal node `n` for key `k`.
    #[inline(always)]
    fn slot(n: Node, k: &EKey<A>) -> usize {
        let mask = (1u32 << n.upper()) - 1;
        (n.base() + (k.f[n.field() as usize % NFIELDS].shr_u32(n.shift()) & mask)) as usize
    }

    /// Walk tree `t` for `k`, scanning pushed rules on the way; returns
    /// the best priority (at most `best`).
    #[inline]
    fn walk(&self, t: &Tree, k: &EKey<A>, kv: &KeyVec, mut best: u32, sets: Sets<'_>) -> u32 {
        let mut n = t.root;
        if n.has_push() {
            best = self.scan(t.root_push, k, kv, best, sets);
        }
        while !n.is_leaf() {
            let i = Self::slot(n, k);
            let slot = self.slots[i];
            if slot.min >= best {
                return best;
            }
            n = slot.node;
            if n.has_push() {
                best = self.scan(self.push[i], k, kv, best, sets);
            }
        }
        self.scan(n, k, kv, best, sets)
    }

    /// Scan a leaf (or a pushed list) for `k`; `kv` is its vector form ([`KeyVec::of`]).
    #[inline(always)]
    fn scan(&self, leaf: Node, k: &EKey<A>, kv: &KeyVec, best: u32, sets: Sets<'_>) -> u32 {
        if A::BITS == 32 {
            self.scan_blocks(leaf, k, kv, best, sets)
        } else {
            self.scan_scalar(leaf, k, best, sets)
        }
    }

    /// The SIMD scan of a leaf (IPv4; see [`block::scan`]).
    #[inline(always)]
    fn scan_blocks(&self, leaf: Node, k: &EKey<A>, kv: &KeyVec, best: u32, sets: Sets<'_>) -> u32 {
        let start = leaf.base() as usize;
        let len = leaf.upper() as usize;
        block::scan(
            &self.blocks[start..start + len.div_ceil(4)],
            kv,
            best,
            |e| self.ext_ok(e, k, sets),
        )
    }

    #[inline(always)]
    fn scan_scalar(&self, leaf: Node, k: &EKey<A>, best: u32, sets: Sets<'_>) -> u32 {
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
                if ok && (c.ext == NO_EXT || self.ext_ok(c.ext, k, sets)) {
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
        self.first_match_many_in(keys, best, &[]);
    }

    /// [`CutTree::first_match_many`] with the set table its rules' checks
    /// name.
    pub fn first_match_many_in(&self, keys: &[EKey<A>], best: &mut [u32], sets: Sets<'_>) {
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
                    best[i] =
                        self.scan(t.root_push, &keys[i], &KeyVec::of(&keys[i]), best[i], sets);
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
                            best[i] = self.scan(
                                self.push[s],
                                &keys[i],
                                &KeyVec::of(&keys[i]),
                                best[i],
                                sets,
                            );
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
                    best[i] = self.scan(cur[i], &keys[i], &KeyVec::of(&keys[i]), best[i], sets);
                }
            }
        }
    }

    fn ext_ok(&self, ext: u32, k: &EKey<A>, sets: Sets<'_>) -> bool {
        let (s, l) = self.ext_heads[ext as usize];
        for &(f, rs, rl) in &self.ext_items[s as usize..(s + l) as usize] {
            if f & CHECK_ITEM != 0 {
                let side = if f & 1 != 0 {
                    SetSide::Dst
                } else {
                    SetSide::Src
                };
                // A set index outside the table cannot be judged: no match.
                let ok = sets
                    .get(rs as usize)
                    .is_some_and(|m| m.contains(k, side) != (f & 2 != 0));
                if !ok {
                    return false;
                }
                continue;
            }
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
        self.first_match_in(k, &[])
    }

    /// [`CutTree::first_match`] with the set table its rules' checks name.
    #[inline]
    pub fn first_match_in(&self, k: &EKey<A>, sets: Sets<'_>) -> Option<u32> {
        let mut best = u32::MAX;
        let kv = KeyVec::of(k);
        for t in &self.trees {
            if t.min_prio >= best {
                break;
            }
            best = self.walk(t, k, &kv, best, sets);
        }
        (best != u32::MAX).then_some(best)
    }
}
