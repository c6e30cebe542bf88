//! The kernel as a source of desired state (`sluice run` with a `kernel:`
//! section): the node's links, the addresses of its ports, the main
//! table's routes and the ARP / ND neighbours, mirrored over rtnetlink and
//! merged with the config's static sections, in the manner of VPP's
//! linux-cp / linux-nl. A frame whose next hop the mirror does not (yet)
//! know goes to the kernel, which resolves it and sends that frame itself
//! ([`crate::pipeline::Action::ViaKernel`]); the neighbour entry it
//! creates reaches sluice through the mirror, and the next frames are
//! sluice's.
//!
//! Files: `view` (the mirrored state and how one change applies),
//! `merge` (a source's state plus the kernel's), `netlink` (messages into
//! changes), `mirror` (the thread that follows the kernel and coalesces).

pub mod merge;
pub mod mirror;
pub mod netlink;
pub mod view;

pub use merge::{merge, MergeReport};
pub use mirror::{Mirror, Update};
pub use netlink::Kinds;
pub use view::KernelView;
