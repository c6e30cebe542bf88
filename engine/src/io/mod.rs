//! Everything that touches the outside world: capture files, AF_XDP
//! sockets, the XDP program and its maps, frames handed to the kernel's
//! stack, syscalls.
//!
//! `unsafe` is denied everywhere except in `engine/src/mem.rs`,
//! `engine/src/io/sys/{abi,calls,mmap}.rs`,
//! `engine/src/io/xsk/{ring,umem,socket}.rs`, `engine/src/io/bpf/maps.rs`
//! and `bench/src/trafficgen.rs`; each of those files opts in with
//! `#![allow(unsafe_code)]` and argues every block.

pub mod bpf;
pub mod inject;
pub mod pcap;
pub mod pcapng;
pub mod sys;
pub mod xsk;
