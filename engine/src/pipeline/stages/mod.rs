//! The pipeline's stages, composed statically by [`super::Pipeline::process`].
//! Each takes the batch's slots and the per-frame scratch, skips frames whose
//! action is already decided, and documents its contract.

pub mod commit;
pub mod known;
pub mod neigh;
pub mod parse;
pub mod policy;
pub mod rewrite;
pub mod route;
pub mod track;

use super::{Action, Meta, Slot};

/// Decides a frame's action; later stages skip it.
#[inline]
pub(crate) fn decide(slot: &mut Slot<'_>, meta: &mut Meta, action: Action) {
    slot.action = action;
    meta.done = true;
}
