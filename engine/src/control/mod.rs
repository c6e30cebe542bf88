//! The running engine's control plane: the control socket and metrics
//! ([`socket`], [`metrics`]), `explain`, the Felix session's record
//! ([`felix`]), and the runtime that applies a new desired state (reload:
//! load, diff, build, swap).

pub mod ctfilter;
pub mod explain;
pub mod felix;
pub mod metrics;
pub mod runtime;
pub mod socket;
