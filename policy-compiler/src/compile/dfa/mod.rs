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
//! - An empty state is a *miss*; one of at most [`Config::dfa_leaf`](super::Config::dfa_leaf)
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
//! counted against multiples of it (`MEMO_PER_WORD`,
//! `WORK_PER_WORD`), since rule sets exist whose distinct states far
//! outnumber the nodes they make (most collapse to one next state).
//!
//! Files: `automaton` (the key's bytes, the word format, the [`Dfa`]),
//! `build`, `run` (lookups and their debug walks).

mod automaton;
mod build;
mod run;

pub use automaton::{Dfa, DfaStats};
pub use build::GaveUp;
