//! # policy-compiler
//!
//! Calico v3 and Kubernetes `NetworkPolicy` compiled into an immutable
//! packet classifier that answers exactly as `shared/spec/policy.md` says,
//! including *what decided* (section 5).
//!
//! ## Map (data flows one way)
//!
//! ```text
//! paths ──loader──▶ PolicySet (model) ──ir::build──▶ Ir ──compile──▶ Classifier
//!          │             │                              │                │
//!     LoadError     selector ASTs              CompileError      classify / classify_batch
//!     Warning       (selector.rs)                                 (Scratch per worker)
//! ```
//!
//! - [`model`]: serde types, one per kind of policy.md section 1, unknown
//!   fields rejected; CIDRs, ports, protocols, actions and selectors parsed
//!   while deserializing so errors carry their field path. The unsupported
//!   features of section 6 are declared fields, so they are rejected by name
//!   even when empty.
//! - [`loader`]: paths (directories recursively, sorted), multi-document
//!   files, `kind: List`, YAML sequences; repeated mapping keys and repeated
//!   objects rejected; cross-document checks (tiers exist, `default` tier
//!   order, `knp.default.` reserved, endpoint prefixes unique); warnings
//!   (missing profiles). Errors name the file, the **0-based** document
//!   index (`doc 0` is the first document of the file) and the field path
//!   (`items[2].spec.ingress[0].destination.ports[1]`); every problem of a
//!   set is reported and the set is rejected whole ([`LoadError`]).
//! - [`selector`]: Calico's selector grammar into an AST (precedence `!` >
//!   `&&` > `||`), Kubernetes `LabelSelector` into the same AST.
//! - [`ir`]: per direction, endpoints grouped into *classes* (same
//!   applicable policies and profiles), and *segments* (one per tier, one per
//!   profile) of rules. Each rule is a disjunction of *terms*, a term one
//!   value set per field ([`ranges`]), with selectors resolved to address
//!   ranges and named ports resolved to numbers; Kubernetes policies
//!   translated per section 4. `Log` rules never decide and are left out
//!   (indices keep counting them).
//! - [`compile`](mod@compile): IR → engines ([`compile::Config`], [`compile::Builder`]):
//!   per segment and address family a first-match engine; endpoints into a
//!   longest-prefix table ([`compile::lpm`]).
//! - [`classifier`]: the [`Classifier`] (immutable, `Send + Sync`, shared
//!   through an `Arc` and swapped whole), [`FlowKey`], [`Verdict`],
//!   [`Scratch`]. Lookups allocate nothing.
//! - [`reference`](mod@reference): policy.md read literally, one packet at a time, over the
//!   model — the oracle of the differential tests.
//! - [`cli`]: `sluice policy check` and `sluice policy eval` (cli.md), the
//!   crate's edge (the only code that reads a clock: compile time).
//!
//! ## Evaluation with the compiled classifier
//!
//! For a packet, the source's and destination's endpoints are found by
//! longest prefix. For each direction with an endpoint, its class gives the
//! list of segments to walk; each segment answers "the first rule of this
//! class matching the packet". `Allow`/`Deny` decide, `Pass` moves to the
//! class's next segment, a miss applies the segment's end (tier
//! `defaultAction: Deny` → `end_of_tier`; `Pass` and profiles → next), and
//! after the last segment `no_match`. A [`Decision`] is a `u32` index into
//! [`Classifier::decisions`]: tier, policy key, direction and rule index
//! (or profile, end of tier, no match), for counters and `explain`.
//!
//! ## Engine choice, by measurement
//!
//! The engine answers "first term (in priority order) whose every field set
//! holds the key's value" over six fields: endpoint class, source,
//! destination, protocol, source port (or ICMP type), destination port (or
//! ICMP code). Field sets are arbitrary range lists (complements from
//! `notNets`/`notSelector`/`notPorts`, IP sets of 100k members), which rules
//! out engines that only take one prefix or range per field unless terms are
//! multiplied out.
//!
//! **The rule** (at compile time, once per rule list and address family;
//! [`compile::EngineKind::Auto`], the default): the byte DFA
//! ([`compile::dfa`]) when the list is IPv4, every term has one range per
//! field, and the automaton fits its budget ([`compile::Config::dfa_budget`],
//! 2M words = 8 MB, which also bounds the build: 2 remembered state
//! entries and 256 entry visits per word, so a set whose states outnumber
//! its nodes gives up in under half a second instead of growing to
//! gigabytes); partitioned cut trees ([`compile::tree`]) otherwise:
//! IPv6, any list with a range list in a field (IP sets, `notNets`, several
//! ports or CIDRs in one term) and lists whose automaton outgrows the budget
//! (ClassBench fw4_10k: its 673 rules wide in both addresses). Nothing is
//! chosen per packet. ClassBench sets (and 5-tuple ACLs like them) get the
//! DFA; Calico sets with IP sets keep the trees. The tiers/`Pass`/end of
//! tier/profiles logic lives in the segment walk, so either engine serves
//! any policy.
//!
//! Candidates, on this machine (2 cores of an AMD EPYC Zen 2 VM, AVX2,
//! shared with other work: figures vary by ±30% between runs), ClassBench
//! sets of `shared/classbench` through `bench`'s `classbench` binary, one
//! binary (at ecf9935) with `--engine`, round robin, best of 3:
//!
//! | engine | acl5 10k | ipc1 10k | acl4 10k | memory acl4 10k | note |
//! |---|---|---|---|---|---|
//! | linear scan (`EngineKind::Linear`) | 0.87 Mpps | 0.52 Mpps | 0.52 Mpps | — | O(rules) per packet |
//! | bit vector (per-field ranges → rule bitsets, AND) | — | — | — | ≈ 12 MB per field at 10k, ≈ 1.2 GB per field at 100k | not built: O(N²) bits breaks the 64 MB budget at 100k without aggregation/compression, and every lookup ANDs ~N/64 words per field |
//! | one cut tree, no partitioning | — | — | — | 19–20 MB (acl3/fw4) | 0.9–3 Mpps on acl3/fw4 10k: wide rules replicate into every cut |
//! | partitioned cut trees (`EngineKind::CutTree`) | 18.8 Mpps | 14.7 Mpps | 11.2 Mpps | 3.2 MB | chosen where the DFA does not apply |
//! | **byte DFA** | 35.2 Mpps | 22.6 Mpps | 22.2 Mpps | 5.7 MB | chosen where it applies |
//! | `dpdk-test-acl` (rte_acl, best of scalar/sse/avx2, same runs) | 29.6–30.7 Mpps | 11.7–12.4 Mpps | 11.3–12.0 Mpps | — | the peer |
//!
//! Over the nine traced 10k sets the DFA was 1.3–2.0× the trees (acl2
//! +28%, fw2 +31%, fw3 +35%, fw1 +48%, ipc1 +54%, acl3 +85%, acl5 +87%,
//! acl4 +98%); fw4 keeps the trees (same speed: 16.0 Mpps both ways).
//!
//! The cut trees ([`compile::tree`]) are HiCuts-style: a node cuts one
//! field into `2^b` equal parts (`child = nodes[base + (key[f] >> shift &
//! mask)]`, one dependent 8-byte load per level), the cut chosen per node to
//! minimise the largest child under HiCuts' space measure; regions are
//! compacted to the rules' aligned bounding block (so sparse /32 rules cut
//! on their differing bits), rules after a rule covering the whole region
//! are dropped, identical leaves are shared, up to 8 rules that every child
//! would hold stay at the node (HyperCuts' pushing), and each slot records
//! the best priority below it so a walk stops as soon as it cannot beat the
//! match it has. Rules are partitioned EffiCuts-style by whether their
//! source and destination sets are small (prefix /8 or longer) into three
//! trees (small source | wide source, small destination | wide in both),
//! searched in order of best priority. A node of at most 32 rules is a
//! leaf: IPv4 leaves are blocks of four rules scanned with SSE2
//! (the same blocks as the DFA's leaves). A hard budget (32
//! entries per rule) bounds memory for any input. `classify_batch` walks
//! the trees level by level across up to 64 IPv4 keys, each level visiting
//! only the keys still above a leaf.
//!
//! The byte DFA ([`compile::dfa`], after DPDK's rte_acl) reads the key a
//! byte at a time; a state is "the rules still possible" and equal states
//! are one, so a wide rule shared by many branches does not multiply the
//! way it multiplies cut-tree leaves. What made it beat the trees and
//! rte_acl on these sets, each measured when it was added (callgrind
//! instructions per acl5_10k lookup, wrapper included: 612 with the trees
//! before this engine, 263 now):
//! - every node is 256 `u32` words, `next = trans[base + key_byte]`: one
//!   load and no branch per byte; a node word carries which key byte its
//!   node reads, and a byte that does not split a state, or only tells its
//!   keys from keys that match none of its rules, is not read at all
//!   (acl5: 5.6 bytes per lookup where rte_acl reads 13);
//! - a state of at most 12 rules is a leaf scanned as SIMD blocks (the
//!   cut trees' leaf blocks), checking full boxes, which saves the bytes
//!   that would tell them apart; every end is such a check, so skipping a
//!   byte never changes an answer;
//! - end words loop on themselves, so a batch walks its keys eight at a
//!   time with no branch per byte (8 instructions per key and byte,
//!   against 28 with a list of the keys still walking);
//! - partitions as the trees' (each key walks few automata), except that
//!   a partition of at most n/64 rules joins the biggest when that costs at
//!   most a quarter more words (acl5: one automaton instead of two).
//!
//! Last run (`classbench --sets <every 10k set with a trace>`, twice, then
//! `--gen100k acl1,fw1,ipc1 --calico 10000`, at ecf9935; sluice and each
//! `dpdk-test-acl --alg` alternate over three rounds, best of each side;
//! every answer equal to `firstmatch/` (generated sets: to a brute-force
//! first match on a sample) and to rte_acl's; ratios of the two runs):
//!
//! | set | engine | compile | memory | sluice | rte_acl best | ratio |
//! |---|---|---|---|---|---|---|
//! | acl2_10k | DFA | 21 ms | 2.0 MB | 24.9 Mpps | 11.0 (sse) | 2.27, 2.48 |
//! | acl3_10k | DFA | 48 ms | 3.9 MB | 25.0 Mpps | 12.6 (sse) | 1.99, 1.92 |
//! | acl4_10k | DFA | 66 ms | 5.7 MB | 21.7 Mpps | 11.3 (sse) | 1.91, 1.86 |
//! | acl5_10k | DFA | 11 ms | 1.0 MB | 35.2 Mpps | 29.6 (sse) | 1.19, 1.14 (1.16 in the third run) |
//! | fw1_10k | DFA | 32 ms | 4.3 MB | 26.3 Mpps | 6.9 (avx2) | 3.82, 3.46 |
//! | fw2_10k | DFA | 24 ms | 2.5 MB | 33.0 Mpps | 15.7 (sse) | 2.10, 2.11 |
//! | fw3_10k | DFA | 41 ms | 3.8 MB | 22.5 Mpps | 5.8 (avx2) | 3.90, 3.30 |
//! | fw4_10k | trees | 221 ms | 3.5 MB | 15.2 Mpps | 5.7 (avx2) | 2.69, 2.34 |
//! | ipc1_10k | DFA | 23 ms | 2.0 MB | 21.8 Mpps | 11.7 (sse) | 1.87, 1.71 |
//! | acl1_100k (generated) | DFA | 347 ms | 9.6 MB | 13.8 Mpps | 28.7 (sse) | 0.48 |
//! | fw1_100k (generated) | DFA | 450 ms | 18.4 MB | 8.1 Mpps | 4.0 (sse) | 2.01 |
//! | ipc1_100k (generated) | DFA | 251 ms | 14.7 MB | 9.2 Mpps | 3.5 (avx2) | 2.65 |
//! | Calico 10k (synthetic, 10k-member IP set) | trees | 89 ms | 2.7 MB | 7.4 Mpps | — | — |
//!
//! fw4_10k's compile time is mostly the DFA attempt that runs out of
//! budget before the trees are built (the trees alone: 41 ms).
//!
//! What limits it: acl5_10k is the closest set (1.14–1.19), a set of host
//! pairs where rte_acl's single trie is at its best (91 cycles per lookup).
//! There a lookup costs about 263 instructions: 60 of them the classifier's
//! wrapper (the verdict for both directions, which `dpdk-test-acl` does not
//! build), about 30 setting up the batch, 74 for the bytes (5.6 per key,
//! 6.6 per group of eight: a group steps until its deepest key ends), and
//! about 90 for the leaf (1.2 blocks of four rules per key, plus finding
//! the blocks and broadcasting the key). With the trace's 64 first keys
//! repeated (everything in cache) it ran 38.7 against 35.0 Mpps on the
//! real trace: the lookup is bound by instructions more than by memory.
//! The generated acl1 100k set (addresses random below the top 8 bits)
//! stays below rte_acl (0.48): its three partitions all hold early
//! priorities, so a key walks all three (2.9 automata and 2.6 leaf blocks
//! per lookup), and one automaton for all of them outgrows the budget.
//!
//! TupleMerge was not built (its lookups probe one hash table per tuple —
//! tens per packet on ClassBench acl sets).
//!
//! Figures for every set (compile time, memory, lookups, `dpdk-test-acl`
//! in the same run, matches checked against `firstmatch/`) are produced by
//! `flock /tmp/sluice-cpu.lock target/release/classbench --all`; see
//! `bench/src/classbench.rs` for how a ClassBench set becomes a policy.

pub mod classifier;
pub mod cli;
pub mod compile;
pub mod ir;
pub mod loader;
pub mod model;
pub mod ranges;
pub mod reference;
pub mod selector;

pub use classifier::{
    Classifier, ClassifierStats, DirVerdict, EndpointId, FlowKey, Scratch, Verdict, L4,
};
pub use compile::{compile, Builder, CompileError, Config, EngineKind};
pub use ir::{Decision, DecisionInfo, Dir};
pub use loader::{load, LoadError, Warning};
pub use model::PolicySet;

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn classifier_is_send_sync_and_shareable() {
        assert_send_sync::<Classifier>();
        let c = std::sync::Arc::new(Classifier::allow_all());
        let h = {
            let c = c.clone();
            std::thread::spawn(move || {
                let k = FlowKey::new(
                    "10.0.0.1".parse().unwrap(),
                    "10.0.0.2".parse().unwrap(),
                    6,
                    L4::Ports { sport: 1, dport: 2 },
                );
                c.classify(&k, &mut c.new_scratch()).allow
            })
        };
        assert!(h.join().unwrap());
    }
}
