//! The compiler's configuration: which engine, and the engines' build
//! parameters.

/// Which engine to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// The default: per rule list and address family, the byte DFA
    /// ([`dfa`](super::dfa)) where it applies (IPv4, one range per field,
    /// within its budget), partitioned cut trees ([`tree`](super::tree))
    /// for the rest; see the
    /// crate docs for why.
    Auto,
    /// Partitioned cut trees for every rule list.
    CutTree,
    /// One linear list per segment: the baseline, and a second engine for
    /// the differential tests.
    Linear,
}

/// Compiler configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Engine.
    pub engine: EngineKind,
    /// Leaf size: a node with at most this many rules is not cut.
    pub binth: usize,
    /// Space factor: a cut may replicate rules up to `spfac × n` entries.
    pub spfac: f64,
    /// Most bits cut at one node (`2^bits` children).
    pub max_cut_bits: u8,
    /// Partition rules by address-field size into this many trees: 1 (no
    /// partitioning), 2 (small source | rest), 3 (small source | small
    /// destination | rest), 4 (by small source × small destination).
    pub partitions: u8,
    /// Keep up to this many rules that every child of a cut would hold at
    /// the cut's node (scanned on the way down) instead of copying them into
    /// each child; 0 never pushes.
    pub push: usize,
    /// DFA: a state of at most this many rules is a leaf (its rules
    /// scanned as SIMD blocks).
    pub dfa_leaf: usize,
    /// DFA: most transition words (4 bytes each) before the build gives
    /// up and the rule list gets cut trees.
    pub dfa_budget: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            engine: EngineKind::Auto,
            binth: 32,
            spfac: 4.0,
            max_cut_bits: 8,
            partitions: 3,
            push: 8,
            dfa_leaf: 12,
            dfa_budget: 1 << 21,
        }
    }
}

impl Config {
    /// The linear engine.
    pub fn linear() -> Config {
        Config {
            engine: EngineKind::Linear,
            binth: usize::MAX,
            partitions: 1,
            ..Config::default()
        }
    }

    /// Effective tree parameters (the linear engine is a tree that is one
    /// leaf).
    pub(super) fn effective(&self) -> Config {
        match self.engine {
            EngineKind::Auto | EngineKind::CutTree => self.clone(),
            EngineKind::Linear => Config {
                binth: usize::MAX,
                partitions: 1,
                ..self.clone()
            },
        }
    }
}
