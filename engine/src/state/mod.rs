//! The node's desired state and the one seam from it to the data plane.
//!
//! Sources (`crate::sources`: the YAML file today; the kernel and Felix
//! next) each produce a [`NodeState`], plain data. [`build`] turns a state
//! into everything the workers use; [`StateDiff`] is the difference of two
//! states (ports added, removed or changed; what to rebuild), so applying a
//! new state is: diff, build, swap.

pub mod build;
pub mod diff;
pub mod node;

pub use crate::tables::nat::ServiceSpec;
pub use build::BuildError;
pub use diff::{Rebuild, StateDiff};
pub use node::{
    CompiledInput, ConntrackSpec, FloatingIp, KernelSpec, NeighborSpec, NodeState, PolicyInput,
    PortSpec, QueueSel, RouteSpec, SourceFilterSpec, Unresolved, WorkerSpec, XdpSpec, XskMode,
};
