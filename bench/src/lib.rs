//! sluice's workloads and benchmarks: a packet builder, the deterministic
//! fixtures of `pcap-fixtures/`, synthetic workload generators, the XDP
//! traffic generator and the in-kernel ceiling forwarder of the peer
//! comparison ([`trafficgen`], [`xdpfwd`]), and (in
//! `src/bin/`) the fixture generator and benchmark drivers.

pub mod classbench;
pub mod cps;
pub mod fixtures;
pub mod packet;
pub mod stateful;
pub mod suite;
pub mod trafficgen;
pub mod xdpfwd;
