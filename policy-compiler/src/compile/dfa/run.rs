//! Lookups in the automata: one key ([`Dfa::first_match`]), a batch walked
//! eight keys at a time ([`Dfa::first_match_many`]), and the debug walks
//! that count what lookups cost.

use super::super::block::{self, KeyVec};
use super::super::types::{EKey, BATCH};
use super::automaton::{is_end, key_bytes, next, Dfa, End, Part, BASE, END, KB};

/// Keys walked side by side in `first_match_many`.
const GROUP: usize = 8;

impl Dfa {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::compile::config::Config;
    use crate::compile::types::{ERule, NFIELDS};
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
    pub(crate) fn erules(rules: &[[RangeSet; NFIELDS]]) -> Vec<ERule<'_>> {
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| ERule {
                prio: i as u32,
                fields: [&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]],
                checks: &[],
            })
            .collect()
    }

    /// Builds `rules` and checks that every lookup of `keys` (one at a time
    /// and as batches) answers as a linear scan.
    pub(crate) fn check(
        rules: &[[RangeSet; NFIELDS]],
        keys: &[EKey<u32>],
        class_bits: u8,
        cfg: &Config,
    ) {
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
