//! AF_XDP: UMEM, rings, sockets and the [`Frame`] token.
//!
//! Implemented directly over the kernel ABI (through [`crate::io::sys`]) rather
//! than with xsk-rs: xsk-rs's frame descriptors are `Copy` and its data
//! accessors are `unsafe` with a "no other descriptor aliases this frame"
//! contract left to the caller, while here a UMEM frame is a move-only
//! [`Frame`] token, so the compiler enforces one owner per frame; the rings
//! are ~150 lines tested against a model (`ring::tests::ring_matches_model`
//! and a two-thread test, both clean under Miri: `cd engine && cargo
//! +nightly miri test --lib io::xsk::ring::tests`), and there is no C
//! library (libxdp) to build.
//!
//! ## Ownership of frames
//! Every frame (a `frame_size` chunk of the UMEM) is, at any time, in
//! exactly one place: the worker's free list ([`FramePool`]), a fill ring,
//! the kernel (between fill and RX, or TX and completion), an RX ring, a
//! batch the worker holds, a TX ring, or a completion ring. Tokens are
//! created once ([`Umem::new`] returns one per chunk) and re-created only
//! when the kernel hands a frame back on an RX or completion ring, which it
//! does exactly once per frame given (the AF_XDP ring contract). Moving a
//! token into a fill or TX ring consumes it. [`Accounting`] counts every
//! place and must sum to the total: the leak test checks it after a burst.
//!
//! ## Shared UMEM
//! One UMEM per worker, shared by all of the worker's sockets (one per
//! (port, queue) the worker owns): a frame received on one port is sent out
//! of another by moving its descriptor, without copying. Each socket has its
//! own fill and completion rings (required when sockets of one UMEM are on
//! different devices or queues), and all share the worker's free list.
//!
//! ## Files
//! - `ring`: the producer and consumer sides of a ring, tested against a
//!   model.
//! - `umem`: the UMEM, the [`Frame`] token and the [`FramePool`].
//! - `socket`: [`XskSocket`] (bind, the rings as the worker drives them,
//!   wakeups, statistics) and the frame [`Accounting`].
//! - `error`: [`XskError`].

mod error;
mod ring;
mod socket;
mod umem;

pub use error::XskError;
pub use socket::{Accounting, BindMode, BusyPoll, RingLevels, RingSizes, SocketSpec, XskSocket};
pub use umem::{Frame, FramePool, RxFrame, Umem, UmemConfig};
