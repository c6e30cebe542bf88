//! sluice engine.
