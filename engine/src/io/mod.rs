//! Everything that touches the outside world: capture files now; AF_XDP
//! sockets, the BPF loader and syscalls later. The only module allowed
//! `unsafe` (in `xsk` and `sys`, each block argued).

pub mod pcap;
