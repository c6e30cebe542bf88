//! The byte-DFA engine (IPv4), in the manner of DPDK's rte_acl: the key is
//! read a byte at a time, and every byte is one transition of a
//! deterministic automaton whose state is "the rules still possible, in
//! priority order". States with the same rules (and the same leftover
//! constraint on the field being read) are one state, so a wide rule that
//! many branches share does not multiply the automaton the way it
//! multiplies a cut tree's leaves.
//!
//! Build (per partition, rules in priority order):
//! - The fields are read one after another (the partition's narrow address
//!   first, then the other address, protocol, destination port, source
//!   port, class), each most significant byte first.
//! - A state is a list of `(rule, lo, hi)`: the rules consistent with the
//!   bytes read so far, each with its range on the field being read,
//!   relative to what is left of that field. A rule that matches
//!   everything left (its range covers the rest of the field and every
//!   later field is a wildcard) ends the list: the rules after it can
//!   never be the first match.
//! - An empty state is a *miss*; one of at most [`Config::dfa_leaf`]
//!   rules is a *leaf*: its rules' full boxes scanned as SIMD blocks (the
//!   cut trees' leaf blocks), which saves the transitions that would tell
//!   them apart. A state whose first rule matches everything left is a
//!   leaf of that one rule, not a bare answer: a walk may have come there
//!   past bytes it did not read (see below), so the rule is checked.
//! - Otherwise the next byte's 256 values split into the intervals on
//!   which the next state is the same. One interval (the byte tells the
//!   state's keys nothing) is no node at all: the next state is used
//!   directly, so a walk reads only the bytes that matter to it. Two or
//!   more make a node of 256 next words.
//!
//! A word is a `u32`: a node (`base | byte << 26`, the next word being
//! `trans[base + key_byte[byte]]`: one dependent load and no branch per
//! byte read), or an end (bit 31 set; see `Builder::end`), which loops on
//! itself. Node words carry which key byte their node reads, so keys that
//! skip bytes walk side by side with keys that do not, and a batch walks
//! its keys eight at a time with no branch per byte (a group steps until
//! all eight have ended).
//!
//! Rules are partitioned like the cut trees' (by whether the source and
//! destination are small), one automaton per partition, looked up in
//! order of best priority.
//!
//! Only for rule lists whose every field is one range per rule (ClassBench
//! and other 5-tuple ACLs): a range list per field (IP sets, `notNets`)
//! would make the state the clipped list. The build gives up (returns
//! `None`) past a budget of words, and the caller keeps the cut trees.
//! The budget also bounds the build itself: the states remembered (so
//! that equal states are one) and the work spent splitting them are
//! counted against multiples of it ([`MEMO_PER_WORD`],
//! [`WORK_PER_WORD`]), since rule sets exist whose distinct states far
//! outnumber the nodes they make (most collapse to one next state).

use ahash::AHashMap as HashMap;

use super::block::{self, Block, BlockRule, KeyVec, NO_EXT};
use super::{Config, EKey, ERule, BATCH, NFIELDS};

/// Bytes of a key as the automata read it: the six `u32` fields of the
/// [`EKey`], little-endian, then padding to a power of two (so that a
/// node's byte index needs no bounds check). Byte `4 * f + j` is bits
/// `8j..8j+8` of field `f`.
const KB: usize = 32;

/// A key's bytes (see [`KB`]): a copy, no per-field work.
#[inline(always)]
fn key_bytes(k: &EKey<u32>) -> [u8; KB] {
    let mut b = [0u8; KB];
    for (d, f) in b.chunks_exact_mut(4).zip(&k.f) {
        d.copy_from_slice(&f.to_le_bytes());
    }
    b
}

/// An end word: bit 31 set (see `Builder::end`).
const END: u32 = 1 << 31;
/// Keys walked side by side in `first_match_many`.
const GROUP: usize = 8;

/// A byte of [`key_bytes`] that is always 0.
const PAD_BYTE: u32 = 31;
/// A node word's base (the index of its first next word).
const BASE: u32 = (1 << 26) - 1;
/// Words a build may add after it went over its budget (a node per level
/// of the walk being built: 256 words for each of at most `KB` bytes,
/// plus ends), kept below [`BASE`] so that every slot fits a word.
const OVERSHOOT: usize = KB * 260;
/// Remembered state entries (`(rule, lo, hi)`, 12 bytes each) allowed per
/// word of budget.
const MEMO_PER_WORD: usize = 2;
/// Entry visits while splitting states allowed per word of budget (about
/// a nanosecond each).
const WORK_PER_WORD: usize = 256;

/// Whether `w` ends a walk.
#[inline(always)]
fn is_end(w: u32) -> bool {
    w >= END
}

/// The index of the word after node `w` for a key with bytes `kb`.
#[inline(always)]
fn next(w: u32, kb: &[u8; KB]) -> usize {
    ((w & BASE) + u32::from(kb[(w >> 26) as usize % KB])) as usize
}

/// How a walk ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum End {
    /// No rule of the partition matches.
    Miss,
    /// Scan `n` blocks from `start`.
    Leaf { start: u32, n: u32 },
}

#[derive(Clone, Debug)]
struct Part {
    root: u32,
    min_prio: u32,
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
    /// Entry visits spent splitting states (see [`WORK_PER_WORD`]).
    pub work: usize,
    /// Most state entries remembered at once (see [`MEMO_PER_WORD`]).
    pub memo_entries: usize,
}

/// The compiled engine for one IPv4 rule list.
#[derive(Clone, Debug)]
pub struct Dfa {
    parts: Vec<Part>,
    /// The class field is always 0 (one class): leaves skip it.
    one_class: bool,
    trans: Vec<u32>,
    blocks: Vec<Block>,
    stats: DfaStats,
}

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
    /// A field of some rule is not one range.
    NotOneRange,
    /// The automaton outgrew its budget of words.
    Words,
    /// The states remembered outgrew [`MEMO_PER_WORD`] per word of budget.
    States,
    /// Splitting states took more than [`WORK_PER_WORD`] per word of
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
            super::tree::partition_by(&order, cfg.partitions, |i| {
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
    /// partitions merged into the biggest (see below).
    fn merge_small(
        dfa: Dfa,
        boxes: &[RBox],
        mut groups: Vec<Vec<u32>>,
        full: [u32; NFIELDS],
        widths: &[u8; NFIELDS],
        leaf_max: usize,
        budget: usize,
    ) -> Dfa {
        // A partition of a few rules costs every key that reaches it a
        // walk of its own. Copied into the biggest partition, they may cost
        // little more than that partition (ClassBench acl5: 37 wide-source
        // rules of 4834; one automaton instead of two, same-run round
        // robin: +5%) or blow it up (acl3: 55 rules wide in both
        // addresses). So: merged if the merged automata stay within a
        // quarter more words.
        let few = (boxes.len() / 64).max(leaf_max);
        let Some(big) = (0..groups.len()).max_by_key(|&i| groups[i].len()) else {
            return dfa;
        };
        if groups.len() < 2 || !groups.iter().any(|g| g.len() <= few) {
            return dfa;
        }
        let mut merged = std::mem::take(&mut groups[big]);
        groups.retain(|g| {
            let keep = g.len() > few;
            if !keep {
                merged.extend_from_slice(g);
            }
            keep && !g.is_empty()
        });
        merged.sort_by_key(|&i| (boxes[i as usize].prio, i));
        groups.push(merged);
        let words = dfa.trans.len();
        let budget = budget.min(words + words / 4);
        Self::build_parts(boxes, &groups, full, widths, leaf_max, budget).unwrap_or(dfa)
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

    /// Resolve end word `w` for `k` (at most `best`).
    #[inline(always)]
    fn resolve<const ONE_CLASS: bool>(&self, w: u32, k: &EKey<u32>, best: u32) -> u32 {
        let s = (w & BASE) as usize;
        let (a, b) = match self.trans.get(s + 1..s + 3) {
            Some(&[a, b]) => (a, b),
            _ => (0, 0),
        };
        let blocks = self.blocks.get(a as usize..b as usize).unwrap_or(&[]);
        if ONE_CLASS {
            block::scan_no_class(blocks, &KeyVec::of(k), best)
        } else {
            block::scan(blocks, &KeyVec::of(k), best, |_| true)
        }
    }

    /// What end word `w` stands for (for statistics).
    fn end_of(&self, w: u32) -> End {
        let s = (w & BASE) as usize;
        match (self.trans[s + 1], self.trans[s + 2]) {
            (a, b) if a == b => End::Miss,
            (a, b) => End::Leaf { start: a, n: b - a },
        }
    }

    /// The end word of partition `p` for a key with bytes `kb`.
    #[inline(always)]
    fn walk(&self, p: &Part, kb: &[u8; KB]) -> u32 {
        let mut w = p.root;
        while !is_end(w) {
            w = self.trans[next(w, kb)];
        }
        w
    }

    /// Priority of the first matching rule, if any.
    #[inline]
    pub fn first_match(&self, k: &EKey<u32>) -> Option<u32> {
        let mut best = u32::MAX;
        let kb = key_bytes(k);
        for p in &self.parts {
            if p.min_prio >= best {
                break;
            }
            let w = self.walk(p, &kb);
            best = if self.one_class {
                self.resolve::<true>(w, k, best)
            } else {
                self.resolve::<false>(w, k, best)
            };
        }
        (best != u32::MAX).then_some(best)
    }

    /// First match for up to [`BATCH`] keys at once: each automaton is
    /// walked a byte at a time across the keys still walking, so the
    /// independent loads of different keys overlap (see
    /// `CutTree::first_match_many`).
    pub fn first_match_many(&self, keys: &[EKey<u32>], best: &mut [u32]) {
        if self.one_class {
            self.many::<true>(keys, best);
        } else {
            self.many::<false>(keys, best);
        }
    }

    /// [`Dfa::first_match_many`] for automata with (`ONE_CLASS`) or
    /// without one class.
    fn many<const ONE_CLASS: bool>(&self, keys: &[EKey<u32>], best: &mut [u32]) {
        debug_assert!(keys.len() <= BATCH && best.len() >= keys.len());
        let n = keys.len().min(best.len()).min(BATCH);
        let (keys, best) = (&keys[..n], &mut best[..n]);
        // Every key's bytes, one flat array: key `i`'s byte `b` is at
        // `i << 5 | b` (`KB` is 32).
        let mut kb = [0u8; BATCH * KB];
        for (b, k) in kb.chunks_exact_mut(KB).zip(keys) {
            for (d, f) in b.chunks_exact_mut(4).zip(&k.f) {
                d.copy_from_slice(&f.to_le_bytes());
            }
        }
        let mut cur = [0u32; BATCH];
        let mut open = [0u8; BATCH];
        for p in &self.parts {
            let mut no = 0;
            for (i, &b) in best.iter().enumerate() {
                open[no % BATCH] = i as u8;
                no += usize::from(b > p.min_prio);
            }
            let open = &open[..no];
            // Keys walk in groups of `GROUP`, side by side with no branch
            // per byte: an end word loops on itself, so a group steps until
            // all its keys have ended.
            for g in open.chunks(GROUP) {
                let mut ids = [g[0]; GROUP];
                ids[..g.len()].copy_from_slice(g);
                let mut w = [p.root; GROUP];
                loop {
                    let mut all = END;
                    for (w, &i) in w.iter_mut().zip(&ids) {
                        let i = usize::from(i) % BATCH;
                        let v = kb[(i << 5) | (*w >> 26) as usize & 31];
                        *w = self.trans[((*w & BASE) + u32::from(v)) as usize];
                        all &= *w;
                    }
                    if all != 0 {
                        break;
                    }
                }
                for (&w, &i) in w.iter().zip(&ids) {
                    cur[usize::from(i) % BATCH] = w;
                }
            }
            for &i in open {
                let i = usize::from(i);
                best[i] = self.resolve::<ONE_CLASS>(cur[i % BATCH], &keys[i], best[i]);
            }
        }
    }

    /// For debugging: what lookups of `keys` cost, per key: partitions
    /// walked, bytes read, blocks scanned (up to the match).
    pub fn debug_cost(&self, keys: &[EKey<u32>]) -> String {
        let (mut parts, mut steps, mut blocks) = (0usize, 0usize, 0usize);
        for k in keys {
            let kb = key_bytes(k);
            let kv = KeyVec::of(k);
            let mut best = u32::MAX;
            for p in &self.parts {
                if p.min_prio >= best {
                    break;
                }
                parts += 1;
                let mut w = p.root;
                while !is_end(w) {
                    w = self.trans[next(w, &kb)];
                    steps += 1;
                }
                match self.end_of(w) {
                    End::Leaf { start, n } => {
                        for b in &self.blocks[start as usize..(start + n) as usize] {
                            blocks += 1;
                            let r = block::scan(std::slice::from_ref(b), &kv, best, |_| true);
                            if r < best {
                                best = r;
                                break;
                            }
                            if block::first_prio(b) >= best {
                                break;
                            }
                        }
                    }
                    End::Miss => {}
                }
            }
        }
        let n = keys.len().max(1) as f64;
        format!(
            "per key: partitions {:.2}, bytes {:.2}, blocks {:.2}\n",
            parts as f64 / n,
            steps as f64 / n,
            blocks as f64 / n
        )
    }

    /// For debugging: per partition, the bytes read per key, the leaf
    /// blocks met per key, and how many keys end after how many bytes by
    /// kind of end (leaf, miss).
    pub fn debug_walks(&self, keys: &[EKey<u32>]) -> String {
        let mut out = String::new();
        for (pi, p) in self.parts.iter().enumerate() {
            let mut ends = [[0usize; 2]; KB + 1];
            let (mut steps, mut blocks) = (0usize, 0usize);
            for k in keys {
                let kb = key_bytes(k);
                let mut w = p.root;
                let mut d = 0;
                while !is_end(w) {
                    w = self.trans[next(w, &kb)];
                    d += 1;
                }
                steps += d;
                let e = match self.end_of(w) {
                    End::Leaf { n, .. } => {
                        blocks += n as usize;
                        0
                    }
                    End::Miss => 1,
                };
                ends[d.min(KB)][e] += 1;
            }
            let n = keys.len().max(1) as f64;
            let by: Vec<_> = ends
                .iter()
                .enumerate()
                .filter(|(_, e)| e.iter().sum::<usize>() > 0)
                .collect();
            out.push_str(&format!(
                "part {pi} (min prio {}): bytes/key {:.2}, leaf blocks/key {:.2}; ends by bytes read [leaf, miss]: {by:?}\n",
                p.min_prio,
                steps as f64 / n,
                blocks as f64 / n,
            ));
        }
        out
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
    use super::*;
    use crate::ranges::RangeSet;
    use proptest::prelude::*;

    /// A box rule over small domains (so rules overlap a lot), as range
    /// sets per field.
    fn rule_sets(seed: &[u32]) -> [RangeSet; NFIELDS] {
        let pick = |i: usize, max: u32| -> (u128, u128) {
            let a = seed[2 * i] % (max + 1);
            let b = seed[2 * i + 1] % (max + 1);
            (a.min(b) as u128, a.max(b) as u128)
        };
        let prefix = |x: u32, len: u32| -> (u128, u128) {
            let len = len % 33;
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let lo = x & mask;
            (lo as u128, (lo | !mask) as u128)
        };
        let f = |(a, b): (u128, u128)| RangeSet::range(a, b);
        [
            f(pick(0, 3)),
            f(prefix(
                seed[2] & 0xff00_00ff | 0x0a00_0000,
                seed[3] % 4 * 8 + seed[4] % 9,
            )),
            f(prefix(
                seed[5] & 0xff00_00ff | 0x0a00_0000,
                seed[6] % 4 * 8 + seed[7] % 9,
            )),
            if seed[8].is_multiple_of(3) {
                RangeSet::full(255)
            } else {
                RangeSet::single((seed[8] % 4) as u128 + 5)
            },
            f(pick(5, 0x1ffff)),
            if seed[12].is_multiple_of(2) {
                RangeSet::range(0, 65535)
            } else {
                f(pick(6, 70000))
            },
        ]
    }

    /// Rules in priority order as the engine takes them.
    fn erules(rules: &[[RangeSet; NFIELDS]]) -> Vec<ERule<'_>> {
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| ERule {
                prio: i as u32,
                fields: [&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]],
            })
            .collect()
    }

    fn check(rules: &[[RangeSet; NFIELDS]], keys: &[EKey<u32>], class_bits: u8, cfg: &Config) {
        let er = erules(rules);
        let d = Dfa::build(&er, class_bits, cfg).expect("builds");
        let mut best = vec![u32::MAX; keys.len()];
        for chunk in keys.chunks(BATCH).zip(best.chunks_mut(BATCH)) {
            d.first_match_many(chunk.0, chunk.1);
        }
        for (k, b) in keys.iter().zip(&best) {
            let want = er
                .iter()
                .find(|r| (0..NFIELDS).all(|f| r.fields[f].contains(u128::from(k.f[f]))))
                .map(|r| r.prio);
            assert_eq!(d.first_match(k), want, "key {k:?}");
            assert_eq!((*b != u32::MAX).then_some(*b), want, "batch, key {k:?}");
        }
    }

    /// Rules whose states far outnumber the nodes they make: 255
    /// overlapping source ranges, 255 overlapping destination ranges, then
    /// `m` rules on distinct destination ports. Every pair of a source
    /// and a destination range is a distinct state, and most of them
    /// lead to no node of their own, so the remembered states outgrow
    /// the words (before the bound: 3.1 s and 348 MB to give up on 1,010
    /// rules at the default budget; now 0.36 s).
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

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn equals_linear_scan(
            seeds in proptest::collection::vec(proptest::collection::vec(any::<u32>(), 14), 1..60),
            kseeds in proptest::collection::vec(proptest::collection::vec(any::<u32>(), 6), 1..100),
            leaf in 0usize..6,
            parts in 1u8..4,
            one_class in any::<bool>(),
        ) {
            let mut rules: Vec<_> = seeds.iter().map(|s| rule_sets(s)).collect();
            // One class: the class field is always 0 (its width is 0).
            if one_class {
                for r in &mut rules {
                    r[0] = RangeSet::single(0);
                }
            }
            // Keys near the rules' corners, or anywhere.
            let keys: Vec<EKey<u32>> = kseeds
                .iter()
                .map(|s| {
                    let r = &rules[s[0] as usize % rules.len()];
                    let corner = |f: usize, x: u32| {
                        let (lo, hi) = r[f].ranges()[0];
                        match x % 4 {
                            0 => lo as u32,
                            1 => hi as u32,
                            2 => (hi as u32).wrapping_add(1),
                            _ => x,
                        }
                    };
                    EKey {
                        f: [
                            if one_class { 0 } else { s[1] % 4 },
                            corner(1, s[2]),
                            corner(2, s[3]),
                            corner(3, s[4]) & 0xff,
                            corner(4, s[5]) & 0x1ffff,
                            corner(5, s[1]) & 0x1ffff,
                        ],
                    }
                })
                .collect();
            let cfg = Config { dfa_leaf: leaf, partitions: parts, ..Config::default() };
            check(&rules, &keys, if one_class { 0 } else { 2 }, &cfg);
        }
    }
}
