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
//!   data-dependent branch per rule. IPv6 leaves are scanned rule by rule.
//!
//! Lookup: for each partition in order of its best priority (stopping as
//! soon as no partition can beat the best match so far), walk from the root:
//! `child = slots[base + ((key[field] >> shift) & mask)]`, one dependent
//! load per level (a 16-byte slot holds the node and its subtree's best
//! priority), then scan the leaf.
//!
//! Files: `layout` (the compiled form), `build`, `lookup`.

mod build;
mod layout;
mod lookup;

pub use layout::{CutTree, TreeStats};
