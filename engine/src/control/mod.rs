//! The running engine's control plane: the control socket and metrics
//! ([`socket`], [`metrics`], [`process_metrics`]), `explain`, `trace` and
//! `capture` ([`tap`]), the Felix session's record ([`felix`]), the
//! runtime that applies a new desired state (reload: load, diff, build,
//! swap), and [`ports`]: the numbers of ports that come and go while
//! running.

pub mod ctfilter;
pub mod explain;
pub mod felix;
pub mod felix_hosts;
pub mod felix_ports;
pub mod metrics;
pub mod ports;
pub mod process_metrics;
pub mod runtime;
pub mod socket;
pub mod tap;
