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
//! **The rule (at compile time, per rule list and address family):** the
//! byte DFA ([`compile::dfa`]) when every term of the list has one range per
//! field and its automaton fits its budget ([`compile::Config::dfa_budget`]);
//! partitioned cut trees ([`compile::tree`]) otherwise (IPv6, and any list
//! with a range list in a field: IP sets, `notNets`, several ports). Nothing
//! is chosen per packet. ClassBench sets (and 5-tuple ACLs like them) get
//! the DFA; Calico sets with IP sets get the trees. The figures that decided
//! it are below the trees' description.
//!
//! Candidates, on this machine (2 cores of an AMD EPYC Zen3 VM, AVX2, shared
//! with other work — figures vary by ±30% between runs), ClassBench sets of
//! `shared/classbench` through `bench`'s `classbench` binary:
//!
//! | engine | acl1 1k | acl2 10k | memory acl2 10k | note |
//! |---|---|---|---|---|
//! | linear scan (`EngineKind::Linear`) | 1.4 Mpps | 0.14 Mpps | 0.6 MB | O(rules) per packet |
//! | bit vector (per-field ranges → rule bitsets, AND) | — | — | ≈ 12 MB per field at 10k, ≈ 1.2 GB per field at 100k | not built: O(N²) bits breaks the 64 MB budget at 100k without aggregation/compression, and every lookup ANDs ~N/64 words per field |
//! | one cut tree, no partitioning | — | — | — | acl3/fw4 10k: 19–20 MB, 0.9–3 Mpps: wide rules replicate into every cut |
//! | **partitioned cut trees** (chosen) | 8–14 Mpps | 7–11 Mpps | 0.9–1.8 MB | below |
//! | `dpdk-test-acl` (rte_acl, best of scalar/sse/avx2) | 21–34 Mpps | 6.6–8.2 Mpps | — | the peer |
//!
//! The chosen engine ([`compile::tree`]) is HiCuts-style: a node cuts one
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
//! leaf: IPv4 leaves are blocks of four rules scanned with SSE2, which
//! makes a longer scan cheaper than one more dependent tree level (leaves
//! of 8 and four trees, the earlier defaults, measured 5–15% slower on
//! ClassBench 10k and up to 60% slower at 100k). A hard budget (32 entries
//! per rule) bounds memory for any input. The tiers/`Pass`/end-of-tier/profile logic lives in the segment
//! walk, so one engine serves ClassBench and Calico alike.
//! `classify_batch` walks the trees level by level across up to 64 IPv4
//! keys, each level visiting only the keys still above a leaf, so the
//! dependent loads of different keys overlap (4–20% faster than one key at
//! a time on every ClassBench set with a trace and the Calico sets, same-run
//! round robin; an earlier version that visited every key at every level
//! only paid off above 4 MB of tables).
//!
//! Last run (`classbench --sets <every 10k set with a trace> --gen100k
//! acl1,fw1,ipc1 --calico 10000`, at 562dcf8; sluice and each
//! `dpdk-test-acl --alg` alternate over three rounds, best of each side;
//! every answer equal to `firstmatch/` and to rte_acl's):
//!
//! | set | rules | compile | memory | sluice | rte_acl best | ratio |
//! |---|---|---|---|---|---|---|
//! | acl2_10k | 9366 | 26 ms | 0.8 MB | 14.4 Mpps | 7.2 (sse) | 2.00 |
//! | acl3_10k | 9146 | 34 ms | 2.4 MB | 10.9 Mpps | 9.2 (sse) | 1.19 |
//! | acl4_10k | 9020 | 84 ms | 3.2 MB | 6.3 Mpps | 5.3 (sse) | 1.19 |
//! | acl5_10k | 4834 | 18 ms | 0.7 MB | 16.0 Mpps | 27.9 (sse) | 0.57 |
//! | fw1_10k | 9416 | 10 ms | 1.1 MB | 15.2 Mpps | 6.4 (sse) | 2.38 |
//! | fw2_10k | 9645 | 25 ms | 2.4 MB | 19.5 Mpps | 12.7 (sse) | 1.54 |
//! | fw3_10k | 9020 | 18 ms | 2.5 MB | 13.8 Mpps | 4.3 (avx2) | 3.23 |
//! | fw4_10k | 8847 | 42 ms | 3.5 MB | 11.9 Mpps | 5.2 (sse) | 2.29 |
//! | ipc1_10k | 8739 | 35 ms | 1.2 MB | 9.3 Mpps | 7.9 (sse) | 1.17 |
//! | acl1_100k (generated) | 100000 | 456 ms | 9.5 MB | 7.3 Mpps | 19.5 (avx2) | 0.38 |
//! | fw1_100k (generated) | 100000 | 341 ms | 18.4 MB | 3.9 Mpps | 2.4 (sse) | 1.61 |
//! | ipc1_100k (generated) | 100000 | 244 ms | 8.3 MB | 7.2 Mpps | 2.5 (avx2) | 2.88 |
//! | Calico 10k (synthetic, 10k-member IP set) | 10004 | 165 ms | 2.7 MB | 5.5 Mpps | — | — |
//!
//! The ratios move between runs more than the table suggests (rte_acl's own
//! figure for a set varies by up to 2× between runs here): ipc1_10k, the
//! closest of the sets that beat rte_acl, was 1.31–1.73 over five more
//! runs at the same commit, and the Calico 10k recompile 116–131 ms over
//! three. Before lockstep became the default (at 4a1c258) ipc1_10k was
//! 0.88–1.11 and acl4_10k 0.80–1.20.
//!
//! What limits it: sets whose rules are mostly narrow in both addresses
//! with dense, overlapping port ranges (acl5 and the generated acl1 100k,
//! still below rte_acl; ipc1, above it only since lockstep) keep three trees of depth 3–6 plus a leaf scan per lookup — about
//! twice rte_acl's memory touches, whose byte-trie walks one node per key
//! byte with no leaf scan; sets with wide address fields (all fw) are where
//! rte_acl's tries grow and the partitioned trees win. The machine is a
//! shared 2-core VM: the same binary varies by ±30% between runs.
//!
//! A byte-trie DFA like rte_acl was not built: rte_acl's own figures here
//! (7.8 Mpps on acl2 10k, 4.5 Mpps on fw1 10k) are what the trees are
//! measured against; TupleMerge was not built (its lookups probe one hash
//! table per tuple — tens per packet on ClassBench acl sets).
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
