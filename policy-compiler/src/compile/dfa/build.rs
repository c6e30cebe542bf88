//! Building the automata (see the [module docs](super)): rules as boxes,
//! partitions, the reading order of the key's bytes, states split byte by
//! byte into nodes, leaves and misses, within a budget of words,
//! remembered states and work.

use ahash::AHashMap as HashMap;

use super::super::block::{self, Block, BlockRule, NO_EXT};
use super::super::config::Config;
use super::super::partition::partition_by;
use super::super::types::{ERule, NFIELDS};
use super::automaton::{Dfa, DfaStats, End, Part, BASE, END, KB, PAD_BYTE};

/// Words a build may add after it went over its budget (a node per level
/// of the walk being built: 256 words for each of at most `KB` bytes,
/// plus ends), kept below [`BASE`] so that every slot fits a word.
const OVERSHOOT: usize = KB * 260;
/// Remembered state entries (`(rule, lo, hi)`, 12 bytes each) allowed per
/// word of budget.
const MEMO_PER_WORD: usize = 2;
/// Entry visits while splitting states allowed per word of budget.
const WORK_PER_WORD: usize = 256;

/// A chunk of the reading order: which key byte, its field, how many bits
/// it holds and how many of the field are left before it is read.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    byte: u8,
    field: u8,
    bits: u8,
    rem: u8,
    /// The last chunk of its field.
    last: bool,
}

/// A rule's box: inclusive bounds per field.
#[derive(Clone, Copy, Debug)]
struct RBox {
    lo: [u32; NFIELDS],
    hi: [u32; NFIELDS],
    prio: u32,
}

/// A state: `(rule, lo, hi)` per rule still possible (see the module docs).
type State = Vec<(u32, u32, u32)>;

struct Builder<'a> {
    boxes: &'a [RBox],
    full: [u32; NFIELDS],
    leaf_max: usize,
    budget: usize,
    /// The partition's chunks in reading order.
    seq: Vec<Chunk>,
    /// Per rule: the first chunk from which every field is a wildcard for
    /// it.
    wild_from: Vec<u8>,
    memo: HashMap<(u8, State), u32>,
    /// Entries of the states in `memo` (the partition's; `stats` keeps
    /// the most over all partitions).
    memo_entries: usize,
    end_memo: HashMap<End, u32>,
    leaf_memo: HashMap<Vec<u32>, End>,
    trans: Vec<u32>,
    blocks: Vec<Block>,
    stats: DfaStats,
    over: Option<GaveUp>,
}

/// Why a build gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaveUp {
    /// A field of some rule is not one range (or the rule checks a set).
    NotOneRange,
    /// The automaton outgrew its budget of words.
    Words,
    /// The states remembered outgrew `MEMO_PER_WORD` per word of budget.
    States,
    /// Splitting states took more than `WORK_PER_WORD` per word of
    /// budget.
    Work,
}

/// The low `bits` bits set.
fn ones(bits: u32) -> u32 {
    u32::MAX.checked_shr(32 - bits.min(32)).unwrap_or(0)
}

/// Whether a range of `hi − lo + 1` values is small (a /8 or longer, as
/// the cut trees' partitions count it).
fn small(lo: u32, hi: u32) -> bool {
    hi - lo < 1 << 24
}

impl Dfa {
    /// Build from terms, or `None` when a field of some term is not one
    /// range or the automaton outgrows its budget.
    pub fn build(rules: &[ERule<'_>], class_bits: u8, cfg: &Config) -> Option<Dfa> {
        Self::try_build(rules, class_bits, cfg).ok()
    }

    /// [`Dfa::build`], saying why it gave up.
    pub fn try_build(rules: &[ERule<'_>], class_bits: u8, cfg: &Config) -> Result<Dfa, GaveUp> {
        let widths: [u8; NFIELDS] = [class_bits, 32, 32, 8, 17, 17];
        let full = widths.map(|w| ones(u32::from(w)));
        let mut boxes = Vec::with_capacity(rules.len());
        for r in rules {
            if !r.checks.is_empty() {
                return Err(GaveUp::NotOneRange);
            }
            let mut b = RBox {
                lo: [0; NFIELDS],
                hi: [0; NFIELDS],
                prio: r.prio,
            };
            let mut empty = false;
            for (f, (set, &max)) in r.fields.iter().zip(&full).enumerate() {
                match set.ranges() {
                    [] => empty = true,
                    [(lo, hi)] => {
                        if *lo > u128::from(max) {
                            empty = true;
                        } else {
                            b.lo[f] = *lo as u32;
                            b.hi[f] = (*hi).min(u128::from(max)) as u32;
                        }
                    }
                    _ => return Err(GaveUp::NotOneRange),
                }
            }
            if !empty {
                boxes.push(b);
            }
        }
        let mut order: Vec<u32> = (0..boxes.len() as u32).collect();
        order.sort_by_key(|&i| (boxes[i as usize].prio, i));
        let mut groups = if cfg.partitions > 1 && boxes.len() > cfg.dfa_leaf.max(1) {
            partition_by(&order, cfg.partitions, |i| {
                let b = &boxes[i as usize];
                (small(b.lo[1], b.hi[1]), small(b.lo[2], b.hi[2]))
            })
        } else {
            vec![order]
        };
        groups.retain(|g| !g.is_empty());
        let budget = cfg.dfa_budget.min(BASE as usize - OVERSHOOT);
        let dfa = Self::build_parts(&boxes, &groups, full, &widths, cfg.dfa_leaf, budget)?;
        Ok(Self::merge_small(
            dfa,
            &boxes,
            groups,
            full,
            &widths,
            cfg.dfa_leaf,
            budget,
        ))
    }

    /// `dfa` or, when that is better, the automata with the small
    /// partitions merged into the biggest, or else into one of their own
    /// (see below).
    fn merge_small(
        dfa: Dfa,
        boxes: &[RBox],
        groups: Vec<Vec<u32>>,
        full: [u32; NFIELDS],
        widths: &[u8; NFIELDS],
        leaf_max: usize,
        budget: usize,
    ) -> Dfa {
        // A partition of a few rules costs every key that reaches it a
        // walk of its own. Copied into the biggest partition, they may cost
        // little more than that partition (a few wide-source rules) or blow
        // it up (rules wide in both addresses). So: merged if the merged
        // automata stay within a quarter more words.
        let few = (boxes.len() / 64).max(leaf_max);
        let Some(big) = (0..groups.len()).max_by_key(|&i| groups[i].len()) else {
            return dfa;
        };
        let mut small: Vec<u32> = Vec::new();
        let mut n_small = 0;
        let mut kept: Vec<Vec<u32>> = Vec::new();
        let mut big_at = 0;
        for (i, g) in groups.into_iter().enumerate() {
            if i != big && g.len() <= few {
                small.extend_from_slice(&g);
                n_small += 1;
            } else {
                if i == big {
                    big_at = kept.len();
                }
                kept.push(g);
            }
        }
        if n_small == 0 {
            return dfa;
        }
        small.sort_by_key(|&i| (boxes[i as usize].prio, i));
        let by_prio = |mut g: Vec<u32>| {
            g.sort_by_key(|&i| (boxes[i as usize].prio, i));
            g
        };
        let words = dfa.trans.len();
        let mut into_big = kept.clone();
        into_big[big_at] = by_prio([kept[big_at].as_slice(), &small].concat());
        let quarter = budget.min(words + words / 4);
        if let Ok(d) = Self::build_parts(boxes, &into_big, full, widths, leaf_max, quarter) {
            return d;
        }
        // Too big for that: two or more small partitions (a few rules wide
        // in the source, a few wide in both) become one, so a key walks one
        // automaton for them instead of one each, if the whole stays
        // within a quarter more bytes (their merged states read more bytes,
        // so the words alone may grow more than the blocks do).
        if n_small < 2 {
            return dfa;
        }
        kept.push(small);
        match Self::build_parts(boxes, &kept, full, widths, leaf_max, budget) {
            Ok(d) if d.memory() <= dfa.memory() + dfa.memory() / 4 => d,
            _ => dfa,
        }
    }

    /// One automaton per group of `boxes` (each in priority order), or
    /// `None` past `budget` words.
    fn build_parts(
        boxes: &[RBox],
        groups: &[Vec<u32>],
        full: [u32; NFIELDS],
        widths: &[u8; NFIELDS],
        leaf_max: usize,
        budget: usize,
    ) -> Result<Dfa, GaveUp> {
        let mut b = Builder {
            boxes,
            full,
            leaf_max,
            budget,
            seq: Vec::new(),
            wild_from: vec![0; boxes.len()],
            memo: HashMap::default(),
            memo_entries: 0,
            end_memo: HashMap::default(),
            leaf_memo: HashMap::default(),
            trans: Vec::new(),
            blocks: Vec::new(),
            stats: DfaStats::default(),
            over: None,
        };
        let mut parts = Vec::new();
        for g in groups {
            let Some(&first) = g.first() else {
                continue;
            };
            // The partition's narrow address first.
            let narrow = |f: usize| {
                g.iter()
                    .filter(|&&i| small(boxes[i as usize].lo[f], boxes[i as usize].hi[f]))
                    .count()
            };
            let order: [usize; NFIELDS] = if narrow(2) > narrow(1) {
                [2, 1, 3, 5, 4, 0]
            } else {
                [1, 2, 3, 5, 4, 0]
            };
            let root = b.part(g, &order, widths);
            if let Some(why) = b.over {
                return Err(why);
            }
            parts.push(Part {
                root,
                min_prio: boxes[first as usize].prio,
            });
        }
        parts.sort_by_key(|p| p.min_prio);
        let mut stats = b.stats;
        stats.parts = parts.len();
        stats.words = b.trans.len();
        Ok(Dfa {
            parts,
            one_class: widths[0] == 0,
            trans: b.trans,
            blocks: b.blocks,
            stats,
        })
    }
}

impl Builder<'_> {
    /// Build one partition's automaton (rules `ids`, in priority order),
    /// reading the fields in `order`; its root word.
    fn part(&mut self, ids: &[u32], order: &[usize; NFIELDS], widths: &[u8; NFIELDS]) -> u32 {
        self.seq.clear();
        self.memo.clear();
        self.memo_entries = 0;
        // Each field with a width, most significant byte first; the first
        // byte of a field holds what is left of the width after whole bytes.
        let mut field_start = [0u8; NFIELDS];
        for &f in order {
            field_start[f] = self.seq.len() as u8;
            let w = widths[f];
            let nbytes = w.div_ceil(8);
            let mut left = w;
            for j in 0..nbytes {
                let bits = left - 8 * (nbytes - 1 - j);
                self.seq.push(Chunk {
                    byte: (4 * f) as u8 + (nbytes - 1 - j),
                    field: f as u8,
                    bits,
                    rem: left,
                    last: j + 1 == nbytes,
                });
                left -= bits;
            }
        }
        let nch = self.seq.len() as u8;
        for &id in ids {
            let b = &self.boxes[id as usize];
            let mut w = nch;
            for &f in order.iter().rev() {
                if widths[f] == 0 {
                    continue;
                }
                if b.lo[f] == 0 && b.hi[f] == self.full[f] {
                    w = field_start[f];
                } else {
                    break;
                }
            }
            self.wild_from[id as usize] = w;
        }
        let first = self.seq.first().map_or(0, |c| c.field as usize);
        let mut st: State = ids
            .iter()
            .map(|&id| {
                let b = &self.boxes[id as usize];
                (id, b.lo[first], b.hi[first])
            })
            .collect();
        self.prune(0, &mut st);
        self.node(0, st)
    }

    /// Whether entry `e` matches every key left at depth `d`.
    fn covers(&self, d: u8, e: &(u32, u32, u32)) -> bool {
        let d = usize::from(d);
        let Some(c) = self.seq.get(d) else {
            return true;
        };
        let mask = ones(u32::from(c.rem));
        // The rest of this field, and every later field a wildcard.
        let mut next_field = d + 1;
        while next_field < self.seq.len() && !self.seq[next_field - 1].last {
            next_field += 1;
        }
        e.1 == 0 && e.2 == mask && usize::from(self.wild_from[e.0 as usize]) <= next_field
    }

    /// Drop the entries after the first one that matches everything left.
    fn prune(&self, d: u8, st: &mut State) {
        if let Some(p) = st.iter().position(|e| self.covers(d, e)) {
            st.truncate(p + 1);
        }
    }

    /// The word of end `e` (one word per distinct end).
    fn end(&mut self, e: End) -> u32 {
        if let Some(&w) = self.end_memo.get(&e) {
            return w;
        }
        // A self-loop: the word at `slot` is the end word itself and it
        // reads the padding byte (always 0), so walking on from an end
        // stays there. The two words after it say what the end is: a
        // leaf's blocks `a..b` (a miss: none).
        debug_assert!(self.trans.len() + 3 <= BASE as usize);
        let slot = self.trans.len() as u32;
        let w = END | PAD_BYTE << 26 | slot;
        let (a, b) = match e {
            End::Miss => (0, 0),
            End::Leaf { start, n } => (start, start + n),
        };
        self.trans.extend([w, a, b]);
        self.end_memo.insert(e, w);
        w
    }

    fn leaf(&mut self, st: &[(u32, u32, u32)]) -> u32 {
        let ids: Vec<u32> = st.iter().map(|e| e.0).collect();
        if let Some(&e) = self.leaf_memo.get(&ids) {
            return self.end(e);
        }
        let start = self.blocks.len() as u32;
        let boxes = self.boxes;
        block::push_blocks(
            &mut self.blocks,
            ids.iter().map(|&i| {
                let b = &boxes[i as usize];
                BlockRule {
                    lo: b.lo,
                    hi: b.hi,
                    prio: b.prio,
                    ext: NO_EXT,
                }
            }),
        );
        let e = End::Leaf {
            start,
            n: self.blocks.len() as u32 - start,
        };
        self.stats.leaves += 1;
        self.stats.leaf_rules += ids.len();
        self.leaf_memo.insert(ids, e);
        self.end(e)
    }

    /// The word of state `st` at depth `d` (already pruned).
    fn node(&mut self, d: u8, st: State) -> u32 {
        let Some(first) = st.first() else {
            return self.end(End::Miss);
        };
        if self.over.is_some() {
            return self.end(End::Miss);
        }
        if self.covers(d, first) {
            // A leaf of that one rule, not a match: a walk may have come
            // here past a byte it did not read (see below), so the answer
            // is checked.
            return self.leaf(&st[..1]);
        }
        if st.len() <= self.leaf_max {
            return self.leaf(&st);
        }
        let key = (d, st);
        if let Some(&w) = self.memo.get(&key) {
            return w;
        }
        let st = key.1;
        let c = self.seq[usize::from(d)];
        let r = u32::from(c.rem - c.bits);
        let rmask = ones(r);
        let chunk_of = |x: u32| x.checked_shr(r).unwrap_or(0);
        // Elementary intervals of the byte's values.
        let mut points: Vec<u32> = Vec::with_capacity(st.len() * 4 + 1);
        points.push(0);
        for e in &st {
            let (c0, c1) = (chunk_of(e.1), chunk_of(e.2));
            points.extend([c0, c0 + 1, c1, c1 + 1]);
        }
        points.retain(|&p| p < 1 << c.bits);
        points.sort_unstable();
        points.dedup();
        self.stats.work += st.len() * points.len();
        if self.stats.work > self.budget.saturating_mul(WORK_PER_WORD) {
            self.over = Some(GaveUp::Work);
            return self.end(End::Miss);
        }
        let next_field = match self.seq.get(usize::from(d) + 1) {
            Some(n) if c.last => Some(usize::from(n.field)),
            _ => None,
        };
        let mut nexts: Vec<(u32, u32)> = Vec::with_capacity(points.len());
        for &v in &points {
            let mut child: State = Vec::new();
            for e in &st {
                let (c0, c1) = (chunk_of(e.1), chunk_of(e.2));
                if v < c0 || v > c1 {
                    continue;
                }
                let (lo, hi) = match next_field {
                    Some(f) => {
                        let b = &self.boxes[e.0 as usize];
                        (b.lo[f], b.hi[f])
                    }
                    None if c.last => (0, 0),
                    None => (
                        if v == c0 { e.1 & rmask } else { 0 },
                        if v == c1 { e.2 & rmask } else { rmask },
                    ),
                };
                child.push((e.0, lo, hi));
            }
            self.prune(d + 1, &mut child);
            let w = self.node(d + 1, child);
            if nexts.last().is_none_or(|&(_, lw)| lw != w) {
                nexts.push((v, w));
            }
        }
        // A byte that only tells the state's keys from keys that match none
        // of its rules (one next state and misses) is not read either: a key
        // that would miss goes on to that next state, and since every end
        // below is a leaf that checks its rules' full boxes, it still
        // matches nothing.
        let miss = self.end(End::Miss);
        let mut ahead = nexts.iter().map(|&(_, w)| w).filter(|&w| w != miss);
        let only = match ahead.next() {
            None => Some(miss),
            Some(x) => ahead.all(|w| w == x).then_some(x),
        };
        let w = match only {
            Some(w) => w,
            // Over budget below: the build is given up, no more nodes.
            None if self.over.is_some() => miss,
            None => {
                // 256 words whatever the byte's width, so that no byte value
                // leaves the node.
                let base = self.trans.len() as u32;
                let mut j = 0;
                for v in 0..256 {
                    while j + 1 < nexts.len() && nexts[j + 1].0 <= v {
                        j += 1;
                    }
                    self.trans.push(nexts[j].1);
                }
                self.stats.nodes += 1;
                if self.trans.len() > self.budget {
                    self.over = Some(GaveUp::Words);
                }
                debug_assert!(self.trans.len() <= BASE as usize);
                base | u32::from(c.byte) << 26
            }
        };
        self.memo_entries += st.len();
        self.stats.memo_entries = self.stats.memo_entries.max(self.memo_entries);
        if self.memo_entries > self.budget.saturating_mul(MEMO_PER_WORD) {
            self.over = Some(GaveUp::States);
        }
        self.memo.insert((d, st), w);
        w
    }
}

#[cfg(test)]
mod tests {
    use super::super::run::tests::{check, erules};
    use super::*;
    use crate::compile::types::EKey;
    use crate::ranges::RangeSet;

    /// Rules whose states far outnumber the nodes they make: 255
    /// overlapping source ranges, 255 overlapping destination ranges, then
    /// `m` rules on distinct destination ports. Every pair of a source
    /// and a destination range is a distinct state, and most of them
    /// lead to no node of their own, so the remembered states outgrow
    /// the words.
    fn state_blowup(m: u32) -> Vec<[RangeSet; NFIELDS]> {
        let any = |bits: u32| RangeSet::range(0, (1u128 << bits) - 1);
        let wide = |i: u32| RangeSet::range(u128::from(i) << 24, (u128::from(i) + 2) << 24);
        let rule = |src: RangeSet, dst: RangeSet, dport: RangeSet| {
            [RangeSet::single(0), src, dst, any(8), dport, any(17)]
        };
        let mut rules = Vec::new();
        for i in 0..255 {
            rules.push(rule(wide(i), any(32), RangeSet::single(1)));
        }
        for i in 0..255 {
            rules.push(rule(any(32), wide(i), RangeSet::single(2)));
        }
        for p in 0..m {
            rules.push(rule(any(32), any(32), RangeSet::single(u128::from(p) + 10)));
        }
        rules
    }

    /// Many rules narrow in the source, then a few wide in the source
    /// (narrow destination) and a few wide in both: the few blow up the
    /// narrow-source automaton, but fit together in one of their own.
    fn two_small_partitions() -> Vec<[RangeSet; NFIELDS]> {
        let any = |bits: u32| RangeSet::range(0, (1u128 << bits) - 1);
        let net = |a: u32, len: u32| {
            let lo = u128::from(a) & !((1u128 << (32 - len)) - 1);
            RangeSet::range(lo, lo + (1u128 << (32 - len)) - 1)
        };
        let rule = |src: RangeSet, dst: RangeSet, dport: RangeSet| {
            [
                RangeSet::single(0),
                src,
                dst,
                RangeSet::single(6),
                any(17),
                dport,
            ]
        };
        let mut rules = Vec::new();
        for i in 0..1500u32 {
            let src = 0x0a00_0000 | i.wrapping_mul(0x9e37_79b9) >> 8 & 0x00ff_ff00;
            let dst = 0xc0a8_0000 | (i % 200) << 8;
            rules.push(rule(
                net(src, 24),
                net(dst, 24),
                RangeSet::single(u128::from(i % 90) + 1),
            ));
        }
        for i in 0..12u32 {
            rules.push(rule(any(32), net(0xac10_0000 | i << 12, 20), any(17)));
        }
        for i in 0..12u32 {
            let lo = u128::from(i) * 1000;
            rules.push(rule(any(32), any(32), RangeSet::range(lo, lo + 499)));
        }
        rules
    }

    #[test]
    fn small_partitions_too_big_for_the_biggest_become_one() {
        let rules = two_small_partitions();
        let er = erules(&rules);
        let d = Dfa::try_build(&er, 0, &Config::default()).expect("builds");
        // Narrow source | the 24 others in one automaton (three without
        // the merge).
        assert_eq!(d.stats().parts, 2, "{:?}", d.stats());
        let keys: Vec<EKey<u32>> = (0..3000u32)
            .map(|i| {
                let r = &rules[i as usize * 7 % rules.len()];
                let at = |f: usize, x: u32| {
                    let (lo, hi) = r[f].ranges()[0];
                    (lo as u32).wrapping_add(x % (hi - lo + 1).min(1 << 31) as u32)
                };
                EKey {
                    f: [0, at(1, i * 31), at(2, i * 17), 6, i % 3000, at(5, i)],
                }
            })
            .collect();
        check(&rules, &keys, 0, &Config::default());
    }

    #[test]
    fn build_gives_up_within_its_budget_when_states_blow_up() {
        let rules = state_blowup(500);
        let er = erules(&rules);
        let budget = 1 << 14;
        let cfg = Config {
            dfa_budget: budget,
            partitions: 1,
            ..Config::default()
        };
        // Without the bounds on remembered states and work, this build
        // stays under its word budget while it remembers millions of
        // state entries.
        let why = Dfa::try_build(&er, 0, &cfg).err();
        assert!(
            matches!(why, Some(GaveUp::States | GaveUp::Work)),
            "{why:?}"
        );
        // The same rules with a budget that fits them build, and match as
        // a linear scan does.
        let keys: Vec<EKey<u32>> = (0..2000u32)
            .map(|i| EKey {
                f: [
                    0,
                    i.wrapping_mul(0x9e37_79b9),
                    i.wrapping_mul(0x85eb_ca6b),
                    6,
                    i % 60,
                    80,
                ],
            })
            .collect();
        let small = state_blowup(3);
        check(
            &small,
            &keys,
            0,
            &Config {
                partitions: 1,
                ..Config::default()
            },
        );
    }
}
