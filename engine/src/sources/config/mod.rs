//! The YAML config of `sluice run` and `sluice replay` (`shared/spec/cli.md`):
//! one source of the node's desired state, and the process settings
//! (metrics listener, control socket) beside it.
//!
//! Loading is two steps: serde (unknown keys are errors; `serde_path_to_error`
//! gives the key path of a type error) and then [`Config::validate`], which
//! checks cross references (route → port, neighbour → port, families, duplicate
//! names) and also names the key path. Every error names the file.
//! [`Config::state`] converts a validated config into a [`NodeState`]; this
//! file is the only code below the CLI that knows the schema.

//!
//! Files: `schema` (the serde types), `load` (reading and validating),
//! `state` (into a [`NodeState`](crate::state::NodeState)).

mod load;
mod schema;
mod state;

pub use schema::*;
