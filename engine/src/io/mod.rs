//! Everything that touches the outside world: capture files, AF_XDP
//! sockets, the XDP program and its maps, syscalls. The only module allowed
//! `unsafe` (in `xsk`, `sys` and `bpf`, each block argued).

pub mod bpf;
pub mod pcap;
pub mod sys;
pub mod xsk;
