//! Sources of the node's desired state: each parses and validates its own
//! input and produces a [`crate::state::NodeState`]. Today the YAML config
//! ([`config`]); the kernel (netlink) and Felix sessions come next, each a
//! module here that changes nothing below `state`.

pub mod config;
