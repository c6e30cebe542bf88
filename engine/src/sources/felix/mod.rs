//! Calico's Felix as a source of desired state (`shared/spec/felix.md`):
//! Felix starts `sluice felix-shim` as its external data-plane driver, the
//! shim relays the stream to `sluice run`'s Felix socket, and a session
//! here turns it into a [`FelixModel`] that the control thread applies.
//!
//! Files: `proto` (the messages, prost structs carrying the `.proto`'s
//! field numbers), `codec` (length-prefixed frames), `model` (the
//! session's model, Felix's setting defaults), `session` (the socket,
//! the per-session reader, model and writer threads, coalescing),
//! `policy` (the model's policy into policy-compiler's IR and classifier),
//! `convert` (what a model changes in a [`crate::state::NodeState`] and
//! what it cannot yet).

pub mod codec;
pub mod convert;
pub mod model;
pub mod policy;
pub mod proto;
pub mod session;

pub use codec::{FrameDecoder, FrameError, FrameReader, DEFAULT_MAX_FRAME};
pub use convert::{to_state, Report};
pub use model::{FelixModel, Settings};
pub use policy::{CompiledPolicy, HowCompiled, PolicyCompiler, PolicyReport};
pub use session::{Event, Listener, Options, Outbox, Stats, Update};
