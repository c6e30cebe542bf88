//! Read-mostly tables the pipeline consults: the forwarding table, the
//! neighbour table, the ports and the node's own addresses, NAT, and the
//! shared connection table. Built aside from plain values (the desired
//! state's builder, `state::build`, is the one caller that knows where
//! they come from) and published whole (an `Arc` swapped between batches).

pub mod conntrack;
pub mod fib;
pub mod host;
pub mod nat;
pub mod neigh;
pub mod spoof;

pub use fib::{Fib, NextHop, Route, RouteKind};
pub use neigh::{Neighbor, Neighbors};
pub use spoof::SourceFilter;

use crate::wire::{Cidr, Family, Mac};

/// A port as the data plane sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    pub name: String,
    pub mac: Mac,
    /// The node's addresses on the port (the source of ICMP errors sent
    /// out of it).
    pub addresses: Vec<crate::wire::Cidr>,
}

/// Routes every node has, like Linux's `local` table and its martian
/// checks: `(family, prefix, len, kind)`.
const SPECIAL_ROUTES: &[(Family, u128, u8, RouteKind)] = &[
    (Family::V4, 0x0000_0000, 8, RouteKind::Martian),
    (Family::V4, 0x7f00_0000, 8, RouteKind::Martian),
    (Family::V4, 0xe000_0000, 4, RouteKind::Local),
    (Family::V4, 0xf000_0000, 4, RouteKind::Martian),
    (Family::V4, 0xffff_ffff, 32, RouteKind::Local),
    (Family::V6, 0, 128, RouteKind::Martian),
    (Family::V6, 1, 128, RouteKind::Martian),
    (Family::V6, 0xff00 << 112, 8, RouteKind::Local),
    (Family::V6, 0xfe80 << 112, 10, RouteKind::Local),
];

/// The special range (what it is, and the range) that user route
/// `prefix` lies inside, if any: Linux decides those addresses before any
/// route (martian checks, the `local` table), so no route may take them
/// (which known-connection forwarding relies on: see `route::one`).
pub fn special_range(prefix: &Cidr) -> Option<(&'static str, Cidr)> {
    SPECIAL_ROUTES
        .iter()
        .find_map(|&(family, addr, len, kind)| {
            let range = Cidr { family, addr, len };
            let inside = prefix.len >= len && range.contains(prefix.family, prefix.addr);
            inside.then(|| {
                let what = match kind {
                    RouteKind::Martian => "martian",
                    _ => "local: multicast, broadcast or link-local",
                };
                (what, range)
            })
        })
}

/// Builds the FIB from user routes plus the local and martian routes; on
/// the same prefix, the node's own route wins (Linux consults `local`
/// before `main`).
pub fn build_fib(
    user: impl Iterator<Item = (Family, Route)>,
    local: &[(Family, u128, u8)],
) -> Result<Fib, fib::FibError> {
    let mut special: Vec<(Family, Route)> = SPECIAL_ROUTES
        .iter()
        .map(|&(f, prefix, len, kind)| {
            (
                f,
                Route {
                    prefix,
                    len,
                    next_hop: NextHop {
                        port: 0,
                        via: None,
                        kind,
                    },
                },
            )
        })
        .collect();
    for &(f, a, len) in local {
        special.push((
            f,
            Route {
                prefix: a,
                len,
                next_hop: NextHop {
                    port: 0,
                    via: None,
                    kind: RouteKind::Local,
                },
            },
        ));
    }
    special.sort_by_key(|(f, r)| (*f == Family::V6, r.prefix, r.len));
    special.dedup_by_key(|(f, r)| (*f == Family::V6, r.prefix, r.len));
    let taken: std::collections::HashSet<(bool, u128, u8)> = special
        .iter()
        .map(|(f, r)| (*f == Family::V6, r.prefix, r.len))
        .collect();
    let (mut r4, mut r6) = (Vec::new(), Vec::new());
    for (f, r) in special
        .into_iter()
        .chain(user.filter(|(f, r)| !taken.contains(&(*f == Family::V6, r.prefix, r.len))))
    {
        match f {
            Family::V4 => r4.push(r),
            Family::V6 => r6.push(r),
        }
    }
    Fib::build(&r4, &r6)
}

/// Host routes for the static neighbours on directly connected prefixes,
/// each "via" the neighbour itself, so the next hop carries the MAC and the
/// data plane needs no per-packet neighbour lookup (DPDK l3fwd's shape).
/// Added only where the neighbour's longest user route is connected on the
/// neighbour's port and no user route names that exact host, so lookups
/// answer exactly what "route, then neighbour" would.
pub fn neighbor_host_routes(
    user: &[(Family, Route)],
    neighbors: &[Neighbor],
) -> Vec<(Family, Route)> {
    // User routes by (family, length, prefix), and the lengths present per
    // family, longest first: a neighbour's longest match is the first hit.
    let mut by_len: std::collections::HashMap<(bool, u8, u128), &Route> =
        std::collections::HashMap::new();
    let mut lens: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    for (f, r) in user {
        let v6 = *f == Family::V6;
        by_len.insert((v6, r.len, r.prefix), r);
        lens[usize::from(v6)].push(r.len);
    }
    for l in &mut lens {
        l.sort_unstable_by(|a, b| b.cmp(a));
        l.dedup();
    }
    let mut out = Vec::new();
    for n in neighbors {
        let v6 = n.family == Family::V6;
        let bits = if v6 { 128u8 } else { 32 };
        let best = lens[usize::from(v6)].iter().find_map(|&len| {
            let p = if v6 {
                fib::mask6(n.ip, len)
            } else {
                u128::from(fib::mask4(n.ip as u32, len))
            };
            by_len.get(&(v6, len, p)).copied()
        });
        if let Some(r) = best {
            if r.len < bits && r.next_hop.via.is_none() && r.next_hop.port == n.port {
                out.push((
                    n.family,
                    Route {
                        prefix: n.ip,
                        len: bits,
                        next_hop: NextHop {
                            port: n.port,
                            via: Some(n.ip),
                            kind: RouteKind::Forward,
                        },
                    },
                ));
            }
        }
    }
    out
}

/// Everything read-only the pipeline needs.
#[derive(Debug)]
pub struct Tables {
    pub ports: Vec<PortInfo>,
    /// Conntrack zone of each port.
    pub zones: Vec<u16>,
    /// Services and masquerade.
    pub nat: nat::Nat,
    /// Conntrack timeouts and pickup rule.
    pub timeouts: conntrack::Timeouts,
    pub tcp_loose: bool,
    /// A frame whose next hop has no neighbour entry goes to the kernel to
    /// resolve and send (else it is dropped as `no_neighbor`).
    pub unresolved_to_kernel: bool,
    /// The compiled policy (allow-all without policy paths).
    pub policy: std::sync::Arc<policy_compiler::Classifier>,
    /// The forwarding table, including the node's local routes (its
    /// addresses, subnet broadcasts, multicast, link-local) and the martian
    /// ranges, as Linux keeps them in its `local` table.
    pub fib: Fib,
    pub neigh: Neighbors,
    /// Each port's source filter (anti-spoofing), by port number; empty
    /// when no port has one (the pipeline then skips the check).
    pub source_filters: Vec<Option<SourceFilter>>,
    /// Host endpoint policy by port (empty without host endpoints or
    /// workload ports).
    pub host: host::HostTables,
    /// What the data plane needs of each next hop, by next-hop id (entry 0:
    /// no route), in one small record: DPDK l3fwd's next-hop array.
    adjacency: Vec<Adjacency>,
    /// Every resolved next hop (egress port and MACs), by hop id (entry 0:
    /// none), for the route cache in conntrack entries (see [`Hop`]).
    hops: Vec<Hop>,
    /// The hop of each neighbour slot, reached through its own port.
    neigh_hops: Vec<u16>,
    /// This build's number (never 0): a hop id cached in a conntrack entry
    /// is only used by tables of the generation that cached it. The route
    /// fields (`ports`, `fib`, `neigh`) must not change after assembly.
    generation: u32,
}

/// A next hop resolved down to the frame: the egress port, the MAC to send
/// to (a gateway's or a directly connected destination's) and the port's
/// MAC. A packet of a known connection always goes the same way while the
/// tables stay the same (its destination after NAT is fixed), so each
/// conntrack entry caches its two directions' hop ids with the tables'
/// generation, and such a packet skips the FIB and neighbour lookups and
/// their cache misses (see [`crate::pipeline::stages::known`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hop {
    pub port: u16,
    pub dst_mac: Mac,
    pub src_mac: Mac,
}

/// The generation of the next tables built (see [`Tables::generation`]).
static GENERATION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

fn next_generation() -> u32 {
    loop {
        let g = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if g != 0 {
            return g;
        }
    }
}

/// A next hop as the per-packet path uses it: the route's kind, its port
/// and, for a gateway whose neighbour entry is known, the MAC to send to
/// (resolved when the tables are built; a directly connected destination
/// is looked up per packet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Adjacency {
    /// `None` for id 0 (no route).
    pub kind: Option<RouteKind>,
    pub port: u16,
    /// The route has no gateway: the destination is the neighbour.
    pub connected: bool,
    /// The gateway's MAC, when the route has a gateway with a neighbour
    /// entry.
    pub mac: Option<Mac>,
    /// The MAC of `port` (the source MAC of frames sent this way).
    pub src_mac: Mac,
    /// The [`Hop`] of a forward route whose gateway MAC is known, else 0.
    pub hop: u16,
}

impl Tables {
    /// Assembles tables from ports, routes and neighbours, with no NAT,
    /// default timeouts and allow-all policy (the builder sets those).
    pub fn assemble(ports: Vec<PortInfo>, fib: Fib, neigh: Neighbors) -> Tables {
        let port_mac = |p: u16| ports.get(usize::from(p)).map_or([0; 6], |p| p.mac);
        // Hops, one per (port, MAC); ids past u16 are not cached (0).
        let mut hops = vec![Hop::default()];
        let mut hop_ids = std::collections::HashMap::new();
        let mut hop = |port: u16, mac: Mac| -> u16 {
            *hop_ids
                .entry((port, mac))
                .or_insert_with(|| match u16::try_from(hops.len()) {
                    Ok(id) => {
                        hops.push(Hop {
                            port,
                            dst_mac: mac,
                            src_mac: port_mac(port),
                        });
                        id
                    }
                    Err(_) => 0,
                })
        };
        let adjacency = std::iter::once(Adjacency::default())
            .chain(fib.next_hops().iter().enumerate().map(|(i, nh)| {
                let family = if fib.next_hop_is_v6(i as u16 + 1) {
                    Family::V6
                } else {
                    Family::V4
                };
                let mac = nh
                    .via
                    .and_then(|via| neigh.lookup(family, via).map(|(mac, _)| mac));
                Adjacency {
                    kind: Some(nh.kind),
                    port: nh.port,
                    connected: nh.via.is_none(),
                    mac,
                    src_mac: port_mac(nh.port),
                    hop: match mac {
                        Some(m) if nh.kind == RouteKind::Forward => hop(nh.port, m),
                        _ => 0,
                    },
                }
            }))
            .collect();
        let neigh_hops = (0..neigh.slots())
            .map(|i| neigh.get(i).map_or(0, |(mac, port)| hop(port, mac)))
            .collect();
        Tables {
            hops,
            neigh_hops,
            generation: next_generation(),
            zones: vec![0; ports.len()],
            ports,
            nat: nat::Nat::default(),
            timeouts: conntrack::Timeouts::default(),
            tcp_loose: true,
            unresolved_to_kernel: false,
            policy: std::sync::Arc::new(policy_compiler::Classifier::allow_all()),
            fib,
            neigh,
            source_filters: Vec::new(),
            host: host::HostTables::default(),
            adjacency,
        }
    }

    /// MAC of the gateway of next hop `id` (1-based), if resolved.
    #[inline]
    pub fn gateway_mac(&self, id: u16) -> Option<Mac> {
        self.adjacency(id).mac
    }

    /// Next hop `id` (0, or an id past the table: no route).
    #[inline]
    pub fn adjacency(&self, id: u16) -> Adjacency {
        self.adjacency
            .get(usize::from(id))
            .copied()
            .unwrap_or_default()
    }

    /// This build's generation (never 0; see [`Hop`]).
    #[inline]
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Hop `id`, if it names one (0 does not).
    #[inline]
    pub fn hop(&self, id: u16) -> Option<&Hop> {
        if id == 0 {
            return None;
        }
        self.hops.get(usize::from(id))
    }

    /// The MAC a packet sent through forward adjacency `a` to `dst` (after
    /// NAT) goes to: the gateway's, or for a directly connected
    /// destination its neighbour entry's (`None` without one); with the
    /// [`Hop`] id the route cache keeps for it, 0 when there is none (a
    /// neighbour entry on another port than the route's, more hops than
    /// ids).
    #[inline]
    pub fn resolve(&self, a: &Adjacency, family: Family, dst: u128) -> Option<(Mac, u16)> {
        if let Some(mac) = a.mac {
            return Some((mac, a.hop));
        }
        if !a.connected {
            return None;
        }
        let i = self.neigh.find(family, dst)?;
        let (mac, port) = self.neigh.get(i)?;
        let hop = match self.neigh_hops.get(i) {
            Some(&h) if port == a.port => h,
            _ => 0,
        };
        Some((mac, hop))
    }

    /// Conntrack zone of port `p`.
    #[inline]
    pub fn zone(&self, p: u16) -> u16 {
        self.zones.get(usize::from(p)).copied().unwrap_or(0)
    }

    /// Whether `dst` is one of the node's own (local-route) addresses.
    #[inline]
    pub fn is_local(&self, family: Family, dst: u128) -> bool {
        self.fib
            .next_hop(self.fib.lookup_id(family, dst))
            .is_some_and(|nh| nh.kind == RouteKind::Local)
    }

    /// MAC of port `p`.
    #[inline]
    pub fn port_mac(&self, p: u16) -> Mac {
        self.ports
            .get(usize::from(p))
            .map(|p| p.mac)
            .unwrap_or([0; 6])
    }
}
