//! Read-mostly tables the pipeline consults: the forwarding table, the
//! neighbour table, the ports and the node's own addresses. Built aside from
//! a config and published whole (an `Arc` swapped between batches).

pub mod fib;
pub mod neigh;

use thiserror::Error;

pub use fib::{Fib, NextHop, Route};
pub use neigh::{Neighbor, Neighbors};

use crate::control::config::Config;
use crate::wire::{self, Family, Mac};

/// A port as the data plane sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    pub name: String,
    pub mac: Mac,
}

/// The node's own addresses, and the IPv4 directed broadcasts of its subnets.
#[derive(Clone, Debug, Default)]
pub struct LocalAddrs {
    v4: Vec<u32>,
    v6: Vec<u128>,
}

impl LocalAddrs {
    /// Whether `a` is one of the node's IPv4 addresses or subnet broadcasts.
    #[inline]
    pub fn is_v4(&self, a: u32) -> bool {
        self.v4.contains(&a)
    }
    /// Whether `a` is one of the node's IPv6 addresses.
    #[inline]
    pub fn is_v6(&self, a: u128) -> bool {
        self.v6.contains(&a)
    }
    /// Whether `a` of `family` is the node's.
    pub fn contains(&self, family: Family, a: u128) -> bool {
        match family {
            Family::V4 => self.is_v4(a as u32),
            Family::V6 => self.is_v6(a),
        }
    }
}

/// Errors turning a config into tables.
#[derive(Debug, Error)]
pub enum TablesError {
    #[error("{file}: routes: {source}")]
    Fib { file: String, source: fib::FibError },
    #[error("{file}: ports[{index}].mac: required for replay (run reads it from the interface)")]
    MissingMac { file: String, index: usize },
}

/// Everything read-only the pipeline needs.
#[derive(Debug)]
pub struct Tables {
    pub ports: Vec<PortInfo>,
    pub local: LocalAddrs,
    pub fib: Fib,
    pub neigh: Neighbors,
    /// MAC of each IPv4 gateway next hop, by 1-based next-hop id.
    gateway_macs: Vec<Option<Mac>>,
}

impl Tables {
    /// Builds tables from a validated config. `macs` gives each port's MAC
    /// (from the config in replay, from the interface when live).
    pub fn build(cfg: &Config, macs: &[Mac]) -> Result<Tables, TablesError> {
        let ports = cfg
            .ports
            .iter()
            .zip(macs)
            .map(|(p, m)| PortInfo {
                name: p.name.clone(),
                mac: *m,
            })
            .collect();
        let mut local = LocalAddrs::default();
        for p in &cfg.ports {
            for a in &p.addresses {
                match a.family {
                    Family::V4 => {
                        local.v4.push(a.addr as u32);
                        if let Some(b) = a.broadcast_v4() {
                            local.v4.push(b);
                        }
                    }
                    Family::V6 => local.v6.push(a.addr),
                }
            }
        }
        local.v4.sort_unstable();
        local.v4.dedup();
        local.v6.sort_unstable();
        local.v6.dedup();

        let (mut r4, mut r6) = (Vec::new(), Vec::new());
        for r in &cfg.routes {
            let route = Route {
                prefix: r.prefix.network(),
                len: r.prefix.len,
                next_hop: NextHop {
                    port: cfg.port_index(&r.port).unwrap_or(0),
                    via: r.via.map(|v| wire::from_ip(v).1),
                },
            };
            match r.prefix.family {
                Family::V4 => r4.push(route),
                Family::V6 => r6.push(route),
            }
        }
        let fib = Fib::build(&r4, &r6).map_err(|source| TablesError::Fib {
            file: cfg.source.clone(),
            source,
        })?;
        let neigh = Neighbors::build(
            &cfg.neighbors
                .iter()
                .map(|n| {
                    let (family, ip) = wire::from_ip(n.ip);
                    Neighbor {
                        family,
                        ip,
                        mac: n.mac.0,
                        port: cfg.port_index(&n.port).unwrap_or(0),
                    }
                })
                .collect::<Vec<_>>(),
        );
        Ok(Tables::assemble(ports, local, fib, neigh))
    }

    /// Builds tables for replay, where every port must carry its MAC.
    pub fn for_replay(cfg: &Config) -> Result<Tables, TablesError> {
        let mut macs = Vec::with_capacity(cfg.ports.len());
        for (index, p) in cfg.ports.iter().enumerate() {
            match p.mac {
                Some(m) => macs.push(m.0),
                None => {
                    return Err(TablesError::MissingMac {
                        file: cfg.source.clone(),
                        index,
                    })
                }
            }
        }
        Tables::build(cfg, &macs)
    }

    /// Assembles tables from parts (tests and benchmarks).
    pub fn assemble(ports: Vec<PortInfo>, local: LocalAddrs, fib: Fib, neigh: Neighbors) -> Tables {
        let gateway_macs = std::iter::once(None)
            .chain(fib.next_hops().iter().map(|nh| {
                nh.via.and_then(|via| {
                    // Next-hop ids are shared by both families; a v4 lookup
                    // only ever yields v4 gateways.
                    neigh.lookup(Family::V4, via).map(|(mac, _)| mac)
                })
            }))
            .collect();
        Tables {
            ports,
            local,
            fib,
            neigh,
            gateway_macs,
        }
    }

    /// MAC of the IPv4 gateway of next hop `id` (1-based), if resolved.
    #[inline]
    pub fn gateway_mac(&self, id: u16) -> Option<Mac> {
        self.gateway_macs.get(usize::from(id)).copied().flatten()
    }

    /// MAC of port `p`.
    #[inline]
    pub fn port_mac(&self, p: u16) -> Mac {
        self.ports
            .get(usize::from(p))
            .map(|p| p.mac)
            .unwrap_or([0; 6])
    }

    /// Local addresses, for tests and tools.
    pub fn local_addrs(v4: Vec<u32>, v6: Vec<u128>) -> LocalAddrs {
        LocalAddrs { v4, v6 }
    }
}
