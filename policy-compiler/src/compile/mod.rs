//! IR → engines. Each segment of each direction (see [`crate::ir`]) is
//! compiled, per address family, into a first-match engine over its terms;
//! endpoints into a longest-prefix-match table. The engine is chosen once,
//! here, by [`Config`]; nothing is chosen per packet.
//!
//! Files: `builder` ([`Builder`]: IR → [`Classifier`](crate::Classifier)),
//! `config` ([`Config`], [`EngineKind`]), `types` (fields, key and rule as
//! the engines take them), `engine` (the IPv4 engine chosen per rule list
//! and the first-match interface), [`dfa`] and [`tree`] (the two engines),
//! `block` (the SIMD leaf blocks both scan), `partition` (rules split by
//! the size of their address fields, for both), [`lpm`] (endpoints by
//! longest prefix), [`sets`] (sets held apart from the rules, checked at
//! the leaves).

mod block;
mod builder;
mod config;
pub mod dfa;
pub(crate) mod engine;
pub mod lpm;
mod partition;
pub mod sets;
pub mod tree;
pub(crate) mod types;

pub use builder::{compile, Builder, CompileError, EngineCache};
pub use config::{Config, EngineKind};
pub use sets::{SetMatch, SetTable};
pub use types::{Addr, EKey, ERule, BATCH, NFIELDS};
