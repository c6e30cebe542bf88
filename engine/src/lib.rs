//! # sluice engine
//!
//! A userspace packet-processing engine: an XDP program redirects frames
//! into AF_XDP sockets, pinned workers run each batch through a sans-IO
//! pipeline (parse, conntrack and NAT, route, policy, neighbour, commit,
//! rewrite) and send the frames back out. The same pipeline runs offline
//! over pcap files.
//!
//! ## The map
//!
//! Packets flow **wire → tables → pipeline → io → worker**; the node's
//! desired state flows **sources → state → (one builder) → tables**, and
//! control swaps what was built into the workers. The modules are layers,
//! lowest first; a module uses only its own layer and those below it, and
//! no two files use each other (the architecture test, `tests/
//! architecture.rs`, fails on an upward import or a cycle):
//!
//! 1. [`mem`]: prefetch and huge-page advice, the two memory hints the
//!    tables need (fenced: it opts into `unsafe`).
//! 2. [`wire`]: packet bytes and network values. A one-pass parser turns a
//!    frame into offsets and flow fields ([`wire::Parsed`]); small rewrite
//!    functions change MACs, TTLs, addresses and ports with incremental
//!    checksums computed exactly as the kernel does; [`wire::Cidr`], MACs
//!    and masks. Nothing else knows a header layout.
//! 3. [`tables`]: what the pipeline consults, built from plain values and
//!    swapped whole: the FIB, neighbours, ports, NAT (services, masquerade)
//!    and the shared connection table.
//! 4. [`pipeline`]: the sans-IO core. [`pipeline::Pipeline::process`] takes
//!    a [`pipeline::Batch`] of frames owned by the caller and sets one
//!    [`pipeline::Action`] per frame. It reads no clock and makes no
//!    syscall, so it runs the same under AF_XDP, pcap replay, unit tests
//!    and `explain`.
//! 5. [`io`]: the outside world — AF_XDP (UMEM, rings, sockets), syscalls,
//!    the XDP program and its maps, pcap files. With [`mem`], the only
//!    place `unsafe` lives: `unsafe` is denied everywhere except in
//!    `engine/src/mem.rs`, `engine/src/io/sys/{abi,calls,mmap}.rs`,
//!    `engine/src/io/xsk/{ring,umem,socket}.rs`, `engine/src/io/bpf/maps.rs`
//!    and `bench/src/trafficgen.rs`; each of those files opts in with
//!    `#![allow(unsafe_code)]` and argues every block.
//! 6. [`state`]: the node's desired state as plain data
//!    ([`state::NodeState`]), the difference of two states
//!    ([`state::StateDiff`]), and the one builder ([`state::build`]) that
//!    turns a state into tables, XDP map contents and the connection
//!    table's size. It sits above `io` because what it builds includes the
//!    XDP program's map contents.
//! 7. [`worker`]: threads driving pipelines: live AF_XDP workers and pcap
//!    replay, each started from a desired state.
//! 8. [`sources`]: what produces a desired state: the YAML config (the
//!    only code below the CLI that knows its schema), the kernel mirror,
//!    and a Felix session (the external data-plane driver protocol), each
//!    a module here.
//! 9. [`control`]: the running engine's control plane: the control socket,
//!    metrics, `explain`, reload (load, diff, build, swap).
//! 10. [`cli`]: the `sluice` subcommands, called by `main.rs`.

pub mod cli;
pub mod control;
pub mod io;
pub mod mem;
pub mod pipeline;
pub mod sources;
pub mod state;
pub mod tables;
pub mod wire;
pub mod worker;
