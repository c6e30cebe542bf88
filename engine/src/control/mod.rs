//! Configuration, and (live) the control socket, metrics and table swaps.

pub mod config;
pub mod explain;
pub mod metrics;
pub mod runtime;
pub mod socket;

use crate::tables::{Tables, TablesError};

/// Builds the data-plane tables for a replay of `cfg`.
pub fn build_tables_for_replay(cfg: &config::Config) -> Result<Tables, TablesError> {
    Tables::for_replay(cfg)
}
