//! Sources of the node's desired state: each parses and validates its own
//! input and produces a [`crate::state::NodeState`]: the YAML config
//! ([`config`]) and the kernel's routes, neighbours and addresses
//! ([`kernel`], merged into the config's) and a Felix session
//! ([`felix`], added to both). Each is a module here that changes nothing
//! below `state`.

pub mod config;
pub mod felix;
pub mod kernel;
