//! The syscall funnel: every system call of the live data plane goes through
//! here, each behind a typed function whose error names the call
//! ([`SysError`]).
//!
//! - [`abi`]: the kernel ABI mirrors, plain `#[repr(C)]` structs and
//!   constants whose layouts and values a test checks against the C headers.
//! - [`calls`]: the calls that use them (sockets and their options, ring
//!   wakeups, `poll`, BPF test runs, interfaces, namespaces, bpffs,
//!   inherited descriptors).
//! - [`mmap`]: owned memory mappings (UMEM, rings, mmapable BPF maps).
//! - [`error`]: [`SysError`], the one error every call returns.
//!
//! Nothing here is per packet except the ring wakeups ([`kick_tx`],
//! [`kick_rx`]), which the workers issue at most once per batch and socket,
//! and only when the kernel asks for them (`need_wakeup`).

pub mod abi;
pub mod calls;
pub mod error;
pub mod mmap;

pub use abi::*;
pub use calls::{
    bind_xdp, bpf_xdp_test_run, bpf_xdp_test_run_with, enter_netns, fs_magic, getsockopt,
    if_nametoindex, inherited_fd, interface_mac, interface_mtu, interface_rx_queues, kick_rx,
    kick_tx, mount_bpffs, set_thread_nice, setsockopt, xsk_socket, Kick, PollSet,
};
pub use error::SysError;
pub use mmap::{page_size, Mmap};
