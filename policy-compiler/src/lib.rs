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
//!   while deserializing (`model/fields.rs`) so errors carry their field
//!   path. The unsupported features of section 6 are declared fields, so
//!   they are rejected by name even when empty.
//! - [`loader`]: paths (directories recursively, sorted), multi-document
//!   files, `kind: List`, YAML sequences (`loader/files.rs`); repeated
//!   mapping keys rejected (`node.rs`); each kind's checks (`objects.rs`);
//!   cross-document checks (repeated objects, tiers exist, endpoint
//!   prefixes unique) and warnings (missing profiles) (`checks.rs`). Errors
//!   name the file, the **0-based** document index (`doc 0` is the first
//!   document of the file) and the field path
//!   (`items[2].spec.ingress[0].destination.ports[1]`); every problem of a
//!   set is reported and the set is rejected whole ([`LoadError`],
//!   `report.rs`).
//! - [`selector`]: Calico's selector grammar into an AST (precedence `!` >
//!   `&&` > `||`), Kubernetes `LabelSelector` into the same AST.
//! - [`ranges`]: value sets as sorted disjoint ranges, the fields of the IR.
//! - [`ir`]: per direction, endpoints grouped into *classes* (same
//!   applicable policies and profiles), and *segments* (one per tier, one per
//!   profile) of rules. Each rule is a disjunction of *terms*, a term one
//!   value set per field, with selectors resolved to address ranges and
//!   named ports resolved to numbers. Files: `types.rs` (the IR's values),
//!   `resolve.rs` (selectors and named ports), `calico.rs` and `k8s.rs`
//!   (rules into terms; Kubernetes per section 4), `policies.rs` (order
//!   and *Applies to*), `build.rs` (classes, segments, decisions). `Log`
//!   rules never decide and are left out (indices keep counting them).
//! - [`compile`](mod@compile): IR → engines ([`compile::Config`],
//!   [`compile::Builder`] in `compile/builder.rs`): per segment and address
//!   family a first-match engine, the byte DFA ([`compile::dfa`]:
//!   `automaton.rs`, `build.rs`, `run.rs`) or cut trees ([`compile::tree`]:
//!   `layout.rs`, `build.rs`, `lookup.rs`), which share the key and rule
//!   types (`types.rs`), the SIMD leaf blocks (`block.rs`) and the
//!   partitioning of rules (`partition.rs`); endpoints into a
//!   longest-prefix table ([`compile::lpm`]).
//! - [`classifier`]: the [`Classifier`] (immutable, `Send + Sync`, shared
//!   through an `Arc` and swapped whole), [`FlowKey`], [`Verdict`],
//!   [`Scratch`]. Lookups allocate nothing. The builder fills the
//!   classifier's tables; the classifier runs the engines
//!   (`compile/engine.rs`, `dfa`, `tree`, `lpm`) and uses nothing else of
//!   `compile`.
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
//! ## Engine choice
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
//! its nodes gives up early instead of growing without bound); partitioned
//! cut trees ([`compile::tree`]) otherwise: IPv6, any list with a range
//! list in a field (IP sets, `notNets`, several ports or CIDRs in one term)
//! and lists whose automaton outgrows the budget (rules wide in both
//! addresses). Nothing is chosen per packet. ClassBench sets (and 5-tuple
//! ACLs like them) get the DFA; Calico sets with IP sets keep the trees.
//! The tiers/`Pass`/end of tier/profiles logic lives in the segment walk,
//! so either engine serves any policy.
//!
//! Other candidates: a linear scan (`EngineKind::Linear`, kept as the
//! baseline and a second engine for the differential tests) costs O(rules)
//! per packet; bit vectors (per-field ranges → rule bitsets, AND; not
//! built) need O(N²) bits, beyond a memory budget at 100k rules without
//! aggregation or compression, and every lookup ANDs ~N/64 words per
//! field; one cut tree without partitioning (`Config::partitions` = 1)
//! replicates wide rules into every cut; TupleMerge (not built) probes one
//! hash table per tuple, and ACL sets have many tuples.
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
//! way it multiplies cut-tree leaves. What makes it fast:
//! - every node is 256 `u32` words, `next = trans[base + key_byte]`: one
//!   load and no branch per byte; a node word carries which key byte its
//!   node reads, and a byte that does not split a state, or only tells its
//!   keys from keys that match none of its rules, is not read at all;
//! - a state of at most 12 rules is a leaf scanned as SIMD blocks (the
//!   cut trees' leaf blocks), checking full boxes, which saves the bytes
//!   that would tell them apart; every end is such a check, so skipping a
//!   byte never changes an answer;
//! - end words loop on themselves, so a batch walks its keys eight at a
//!   time with no branch per byte;
//! - partitions as the trees' (each key walks few automata), except that
//!   partitions of at most n/64 rules join the biggest when that costs at
//!   most a quarter more words, or else, when there are several, become one
//!   partition when that costs at most a quarter more bytes.
//!
//! Figures for every set (compile time, memory, lookups, `dpdk-test-acl`
//! in the same run, matches checked against `firstmatch/`) are produced by
//! `flock /tmp/sluice-cpu.lock target/release/classbench --all` (see
//! `bench/src/classbench.rs` for how a ClassBench set becomes a policy);
//! the results and what limits each engine are recorded in `tuning.md`.

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
pub use compile::{compile, Builder, CompileError, Config, EngineCache, EngineKind, SetMatch};
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
