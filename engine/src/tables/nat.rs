//! NAT tables: services (DNAT with Maglev consistent hashing) and
//! masquerade rules (SNAT). Read-only, rebuilt with the tables and swapped
//! with the other tables. Which connection is translated how lives in the
//! conntrack entry, so a backend change never moves an established
//! connection.

use ahash::AHashMap as HashMap;

use crate::wire::{self, Cidr, Family};

/// Maglev lookup table size: a prime ≥ 65,537 (Eisenbud et al. 2016, M ≫ N).
pub const MAGLEV_SIZE: usize = 65_537;

/// A Maglev lookup table: `entry[hash % M]` is a backend index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maglev {
    table: Vec<u16>,
}

/// FNV-1a with a seed, for backend names (stable across runs and hosts).
fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Finalise so nearby names spread.
    let h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Maglev {
    /// Builds the table for backends named `names` (e.g. `10.1.0.5:8080`);
    /// `m` must be prime. Each backend fills the table along its own
    /// permutation `(offset + j * skip) mod m`, taking turns.
    pub fn build(names: &[String], m: usize) -> Maglev {
        let n = names.len();
        if n == 0 {
            return Maglev { table: Vec::new() };
        }
        let perm: Vec<(usize, usize)> = names
            .iter()
            .map(|s| {
                let offset = (fnv(0x5eed_0001, s.as_bytes()) % m as u64) as usize;
                let skip = (fnv(0x5eed_0002, s.as_bytes()) % (m as u64 - 1)) as usize + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0usize; n];
        let mut table = vec![u16::MAX; m];
        let mut filled = 0;
        'fill: loop {
            for (i, &(offset, skip)) in perm.iter().enumerate() {
                let mut c = (offset + next[i] * skip) % m;
                while table[c] != u16::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                table[c] = i as u16;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        Maglev { table }
    }

    /// The backend for a flow hash, or `None` without backends.
    #[inline]
    pub fn lookup(&self, hash: u64) -> Option<u16> {
        if self.table.is_empty() {
            return None;
        }
        self.table
            .get((hash % self.table.len() as u64) as usize)
            .copied()
    }

    /// Table size.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// No backends.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// Session affinity of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Affinity {
    /// Each connection picks its backend by its whole tuple.
    #[default]
    None,
    /// Connections from one client address go to one backend.
    ClientIp,
}

/// A load-balanced service.
#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub family: Family,
    pub proto: u8,
    pub vip: u128,
    pub port: u16,
    pub node_port: Option<u16>,
    pub backends: Vec<(u128, u16)>,
    pub affinity: Affinity,
    pub maglev: Maglev,
}

impl Service {
    /// Picks a backend for a new connection.
    #[inline]
    pub fn pick(&self, src: u128, sport: u16, dst: u128, dport: u16) -> Option<(u128, u16)> {
        let h = match self.affinity {
            Affinity::ClientIp => flow_hash(src, 0, 0, 0, self.proto),
            Affinity::None => flow_hash(src, sport, dst, dport, self.proto),
        };
        let i = self.maglev.lookup(h)?;
        self.backends.get(usize::from(i)).copied()
    }
}

/// The hash Maglev consumes: a stable mix of the flow's fields.
#[inline]
pub fn flow_hash(src: u128, sport: u16, dst: u128, dport: u16, proto: u8) -> u64 {
    let mut h = 0x8422_2325_cbf2_9ce4u64;
    for w in [
        src as u64,
        (src >> 64) as u64,
        dst as u64,
        (dst >> 64) as u64,
        u64::from(sport) << 16 | u64::from(dport) | u64::from(proto) << 32,
    ] {
        h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
    }
    let h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 31)
}

/// A masquerade rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Masquerade {
    pub from: Cidr,
    pub port: u16,
    pub family: Family,
    pub addr: u128,
    /// Explicit source-port range; `None` follows Linux (keep the original
    /// port's class: 1..511, 600..1023 or 1024..65535).
    pub ports: Option<(u16, u16)>,
}

/// A load-balanced service as the desired state gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub family: Family,
    pub vip: u128,
    pub port: u16,
    /// IP protocol number (TCP, UDP or SCTP).
    pub proto: u8,
    pub backends: Vec<std::net::SocketAddr>,
    pub affinity: Affinity,
    /// Also answered on every node address at this port (NodePort-style).
    pub node_port: Option<u16>,
}

/// The NAT configuration the pipeline consults.
#[derive(Clone, Debug, Default)]
pub struct Nat {
    pub services: Vec<Service>,
    by_vip: HashMap<(u8, bool, u128, u16), usize>,
    by_node_port: HashMap<(u8, u16), usize>,
    pub masquerade: Vec<Masquerade>,
    /// 1:1 NATs: external address → internal, by `(is_v6, ext)`.
    floating: HashMap<(bool, u128), u128>,
    /// Their reverse for hairpins: internal address → the external one a
    /// connection from it to itself leaves with, by `(is_v6, int)`.
    floating_snat: HashMap<(bool, u128), u128>,
    /// Every backend `(family, addr, port)`, for replay steering.
    backends: HashMap<(bool, u128, u16), ()>,
}

impl Nat {
    /// Builds from services and masquerade rules (the desired state's,
    /// in order: a service's index is its position).
    pub fn build(services: &[ServiceSpec], masquerade: &[Masquerade]) -> Nat {
        let mut nat = Nat::default();
        for (i, s) in services.iter().enumerate() {
            let backends: Vec<(u128, u16)> = s
                .backends
                .iter()
                .map(|b| (wire::from_ip(b.ip()).1, b.port()))
                .collect();
            let names: Vec<String> = s.backends.iter().map(|b| b.to_string()).collect();
            for &(a, p) in &backends {
                nat.backends.insert((s.family == Family::V6, a, p), ());
            }
            nat.by_vip
                .insert((s.proto, s.family == Family::V6, s.vip, s.port), i);
            if let Some(np) = s.node_port {
                nat.by_node_port.insert((s.proto, np), i);
            }
            nat.services.push(Service {
                name: s.name.clone(),
                family: s.family,
                proto: s.proto,
                vip: s.vip,
                port: s.port,
                node_port: s.node_port,
                maglev: Maglev::build(&names, MAGLEV_SIZE),
                backends,
                affinity: s.affinity,
            });
        }
        nat.masquerade = masquerade.to_vec();
        nat
    }

    /// The service a new connection to `dst:dport` belongs to: a VIP, or a
    /// node port when `dst_is_node` (the destination is a node address).
    #[inline]
    pub fn service_index(
        &self,
        proto: u8,
        family: Family,
        dst: u128,
        dport: u16,
        dst_is_node: bool,
    ) -> Option<(usize, &Service)> {
        if self.services.is_empty() {
            return None;
        }
        let i = match self.by_vip.get(&(proto, family == Family::V6, dst, dport)) {
            Some(i) => Some(*i),
            None if dst_is_node => self.by_node_port.get(&(proto, dport)).copied(),
            None => None,
        }?;
        self.services
            .get(i)
            .filter(|s| s.family == family)
            .map(|s| (i, s))
    }

    /// Sets the 1:1 NATs `(family, ext, int)`. An external address given
    /// twice keeps its first internal one (the caller orders them). As
    /// Felix's `cali-fip-snat` chain, each internal address also gets the
    /// external address of its hairpin source NAT: of the external
    /// addresses kept for it, the one first as text (Felix's choice).
    pub fn set_floating(&mut self, pairs: impl IntoIterator<Item = (Family, u128, u128)>) {
        self.floating.clear();
        for (f, ext, int) in pairs {
            self.floating.entry((f == Family::V6, ext)).or_insert(int);
        }
        let mut first: HashMap<(bool, u128), (String, u128)> = HashMap::new();
        for (&(v6, ext), &int) in &self.floating {
            let fam = if v6 { Family::V6 } else { Family::V4 };
            let text = crate::wire::to_ip(fam, ext).to_string();
            match first.get(&(v6, int)) {
                Some((t, _)) if *t <= text => {}
                _ => {
                    first.insert((v6, int), (text, ext));
                }
            }
        }
        self.floating_snat = first.into_iter().map(|(k, (_, ext))| (k, ext)).collect();
    }

    /// The source a new connection from `src` to `dst` (after DNAT) is
    /// translated to when both are one 1:1 NAT's internal address (a
    /// workload reaching itself through its floating IP; Felix's
    /// `cali-fip-snat`): that NAT's external address.
    #[inline]
    pub fn floating_snat(&self, family: Family, src: u128, dst: u128) -> Option<u128> {
        if self.floating_snat.is_empty() || src != dst {
            return None;
        }
        self.floating_snat
            .get(&(family == Family::V6, src))
            .copied()
    }

    /// The internal address a new connection to `dst` is translated to, if
    /// `dst` is a 1:1 NAT's external address.
    #[inline]
    pub fn floating_dnat(&self, family: Family, dst: u128) -> Option<u128> {
        if self.floating.is_empty() {
            return None;
        }
        self.floating.get(&(family == Family::V6, dst)).copied()
    }

    /// Whether `addr:port` is a backend of some service.
    pub fn is_backend(&self, family: Family, addr: u128, port: u16) -> bool {
        !self.backends.is_empty()
            && self
                .backends
                .contains_key(&(family == Family::V6, addr, port))
    }

    /// The masquerade rule for a packet from `src` leaving through `port`.
    #[inline]
    pub fn masquerade_for(&self, family: Family, src: u128, port: u16) -> Option<&Masquerade> {
        self.masquerade
            .iter()
            .find(|m| m.port == port && m.family == family && m.from.contains(family, src))
    }

    /// Whether `addr` is a masquerade address.
    pub fn is_masquerade_addr(&self, family: Family, addr: u128) -> bool {
        self.masquerade
            .iter()
            .any(|m| m.family == family && m.addr == addr)
    }

    /// Whether `addr` lies in some masquerade `from` prefix.
    pub fn in_masquerade_from(&self, family: Family, addr: u128) -> bool {
        self.masquerade
            .iter()
            .any(|m| m.from.contains(family, addr))
    }

    /// Whether any NAT is configured.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.masquerade.is_empty()
    }
}

/// The source ports to try for a masqueraded connection, in order: the
/// original port first (Linux keeps it when the tuple is free), then the
/// rest of its range starting at a hash-chosen offset. At most 256 tries.
pub fn snat_candidates(
    orig_port: u16,
    range: Option<(u16, u16)>,
    is_icmp: bool,
    seed: u64,
) -> impl Iterator<Item = u16> {
    let (lo, hi) = match (range, is_icmp) {
        (Some(r), _) => r,
        (None, true) => (0, 65535),
        (None, false) if orig_port < 512 => (1, 511),
        (None, false) if orig_port < 1024 => (600, 1023),
        (None, false) => (1024, 65535),
    };
    let size = u32::from(hi) - u32::from(lo) + 1;
    let first = (orig_port >= lo && orig_port <= hi).then_some(orig_port);
    let start = (seed % u64::from(size)) as u32;
    let rest = (0..size.min(256))
        .map(move |i| (u32::from(lo) + (start + i) % size) as u16)
        .filter(move |p| Some(*p) != first);
    first.into_iter().chain(rest).take(256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.1.0.{}:8080", i + 2)).collect()
    }

    #[test]
    fn maglev_spreads_evenly() {
        let m = Maglev::build(&names(10), MAGLEV_SIZE);
        let mut counts = [0usize; 10];
        for i in 0..200_000u64 {
            counts[usize::from(
                m.lookup(flow_hash(u128::from(i), (i % 60000) as u16, 7, 80, 6))
                    .unwrap(),
            )] += 1;
        }
        for c in counts {
            let share = c as f64 / 200_000.0;
            assert!(
                (share - 0.1).abs() <= 0.1 * 0.05,
                "share {share} outside ±5% of 10%: {counts:?}"
            );
        }
        // Table slots themselves are within one slot of M/N each.
        let mut slots = [0usize; 10];
        for &b in &m.table {
            slots[usize::from(b)] += 1;
        }
        assert!(
            slots.iter().all(|&s| s.abs_diff(MAGLEV_SIZE / 10) <= 1),
            "{slots:?}"
        );
    }

    #[test]
    fn maglev_removing_a_backend_moves_few_flows() {
        let all = names(10);
        let before = Maglev::build(&all, MAGLEV_SIZE);
        let mut fewer = all.clone();
        let gone = fewer.remove(3);
        let after = Maglev::build(&fewer, MAGLEV_SIZE);
        let (mut moved, n) = (0usize, 200_000u64);
        for i in 0..n {
            let h = flow_hash(u128::from(i) * 7919, (i % 50000) as u16, 9, 443, 6);
            let a = &all[usize::from(before.lookup(h).unwrap())];
            let b = &fewer[usize::from(after.lookup(h).unwrap())];
            if a != b {
                moved += 1;
                // Only flows that can move are those whose backend went, plus
                // Maglev's small disruption elsewhere.
            }
            if *a != gone {
                // Most flows keep their backend.
            }
        }
        let frac = moved as f64 / n as f64;
        assert!(frac <= 0.1 + 0.01, "{frac} of flows moved");
        assert!(
            frac >= 0.09,
            "the removed backend's flows must move ({frac})"
        );
    }

    #[test]
    fn snat_candidates_keep_the_port_first() {
        let v: Vec<u16> = snat_candidates(40000, None, false, 5).take(3).collect();
        assert_eq!(v[0], 40000);
        assert!(v[1..].iter().all(|&p| p >= 1024));
        let low: Vec<u16> = snat_candidates(700, None, false, 5).collect();
        assert_eq!(low[0], 700);
        assert!(low.iter().all(|&p| (600..=1023).contains(&p)));
        let r: Vec<u16> = snat_candidates(40000, Some((2000, 2003)), false, 1).collect();
        assert_eq!(r.len(), 4);
        assert!(r.iter().all(|&p| (2000..=2003).contains(&p)));
    }
}
