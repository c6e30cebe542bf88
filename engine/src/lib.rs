//! # sluice engine
//!
//! A userspace packet-processing engine. Data flows one way:
//! **wire → pipeline → tables → io → worker → control**.
//!
//! - [`wire`]: packet bytes. A one-pass parser turns a frame into offsets and
//!   flow fields ([`wire::Parsed`]); small rewrite functions change MACs,
//!   TTLs, addresses and ports with incremental checksums computed exactly as
//!   the kernel does. Nothing else knows a header layout.
//! - [`pipeline`]: the sans-IO core. [`pipeline::Pipeline::process`] takes a
//!   [`pipeline::Batch`] of frames owned by the caller and sets one
//!   [`pipeline::Action`] per frame. It reads no clock and makes no syscall,
//!   so it runs the same under AF_XDP, pcap replay and unit tests.
//! - [`tables`]: read-mostly state the pipeline consults (FIB, neighbours,
//!   ports, local addresses), built aside and swapped whole.
//! - [`mem`]: memory hints for the big tables (prefetch, huge pages).
//! - [`io`]: the outside world: capture files, AF_XDP sockets, the XDP
//!   program and its maps, the syscall funnel.
//! - [`worker`]: threads driving pipelines (pcap replay; live workers later).
//! - [`control`]: configuration (and later the control socket and metrics).
//! - [`cli`]: the `sluice` subcommands, called by `main.rs`.
//!
//! `unsafe` is denied everywhere except in `engine/src/mem.rs`,
//! `engine/src/io/sys/{abi,calls,mmap}.rs`,
//! `engine/src/io/xsk/{ring,umem,socket}.rs`, `engine/src/io/bpf/maps.rs`
//! and `bench/src/trafficgen.rs`; each of those files opts in with
//! `#![allow(unsafe_code)]` and argues every block.

pub mod cli;
pub mod control;
pub mod io;
pub mod mem;
pub mod pipeline;
pub mod tables;
pub mod wire;
pub mod worker;
