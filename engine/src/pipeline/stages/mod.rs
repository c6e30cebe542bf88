//! The pipeline's stages, composed statically by [`super::Pipeline::process`].
//! Each takes the batch's slots and the per-frame scratch, skips frames whose
//! action is already decided, and documents its contract.

pub mod checksum;
pub mod commit;
pub mod host;
pub mod known;
pub mod mtu;
pub mod neigh;
pub mod parse;
pub mod policy;
pub mod rewrite;
pub mod route;
pub mod spoof;
pub mod track;
