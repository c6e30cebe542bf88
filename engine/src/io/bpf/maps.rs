//! The redirector's maps as typed handles ([`XdpMaps`]), filled from an
//! [`XdpContents`] (built from the desired state), the Rust mirrors of
//! `engine/bpf/shared.h` (checked by `tests::layouts_match_c`), its
//! counters ([`XdpCounter`]), and the masquerade-port bitmap userspace
//! writes without a syscall ([`NatPorts`]).
//!
//! ## Maps (`engine/bpf/shared.h`)
//! - `sl_xsks` (XSKMAP): AF_XDP socket per `port * SLUICE_MAX_QUEUES + queue`.
//! - `sl_ports` (hash): ifindex → port id.
//! - `sl_addrs` (hash): the node's addresses (`ports[].addresses`) and their
//!   directed broadcasts → flags and the address's masquerade slot.
//! - `sl_nodeports`, `sl_failsafe` (hash): (protocol, port) of service node
//!   ports and of `xdp.failsafe`.
//! - `sl_nat` (array, `BPF_F_MMAPABLE`): one bit per (masquerade slot,
//!   protocol, port) in use, written through an mmap by [`NatPorts`].
//! - `sl_config` (array): the no-socket action (`xdp.fail_mode`).
//! - `sl_counters` (per-CPU array): indexed by [`XdpCounter`].
#![allow(unsafe_code)]

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use aya::maps::{Array, HashMap, MapData, PerCpuArray, XskMap};
use aya::Ebpf;

use super::error::{map_err, BpfError};
use crate::io::sys::mmap::{page_size, Mmap};
use crate::wire::{self, Cidr, Family};

// Mirrors of engine/bpf/shared.h (checked by `tests::layouts_match_c`).
pub const MAX_PORTS: u32 = 256;
pub const MAX_QUEUES: u32 = 64;
pub const XSK_ENTRIES: u32 = MAX_PORTS * MAX_QUEUES;
pub const MAX_ADDRS: u32 = 1024;
pub const MAX_L4PORTS: u32 = 1024;
pub const NAT_SLOTS: u32 = 16;
pub const NAT_PROTOS: u32 = 4;
pub const NAT_WORDS_PER_PROTO: u32 = 65536 / 64;
pub const NAT_WORDS: u32 = NAT_SLOTS * NAT_PROTOS * NAT_WORDS_PER_PROTO;
pub const NO_NAT_SLOT: u32 = u32::MAX;
pub const AF_INET: u32 = 4;
pub const AF_INET6: u32 = 6;
pub const ADDR_LOCAL: u32 = 1;
pub const ADDR_BROADCAST: u32 = 2;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// `struct sluice_addr_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrKey {
    pub family: u32,
    pub addr: [u8; 16],
}

impl AddrKey {
    /// The key of an address (IPv4 in the first four bytes).
    pub fn new(family: Family, addr: u128) -> AddrKey {
        let mut a = [0u8; 16];
        match family {
            Family::V4 => {
                a[..4].copy_from_slice(&(addr as u32).to_be_bytes());
                AddrKey {
                    family: AF_INET,
                    addr: a,
                }
            }
            Family::V6 => AddrKey {
                family: AF_INET6,
                addr: addr.to_be_bytes(),
            },
        }
    }
}

/// `struct sluice_addr_val`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrVal {
    pub flags: u32,
    pub nat_slot: u32,
}

/// `struct sluice_l4_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct L4Key {
    pub proto: u8,
    pub pad: u8,
    pub port: u16,
}

/// `struct sluice_xdp_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpConfigVal {
    pub no_socket_action: u32,
    pub flags: u32,
}

// SAFETY: repr(C), integers and byte arrays only, no padding (20 bytes =
// 4 + 16); every bit pattern is valid.
unsafe impl aya::Pod for AddrKey {}
// SAFETY: repr(C), two u32, no padding.
unsafe impl aya::Pod for AddrVal {}
// SAFETY: repr(C), u8 + u8 + u16, no padding.
unsafe impl aya::Pod for L4Key {}
// SAFETY: repr(C), two u32, no padding.
unsafe impl aya::Pod for XdpConfigVal {}

macro_rules! xdp_counters {
    ($($name:ident = $text:literal,)*) => {
        /// The XDP program's counters (`enum sluice_xdp_counter`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u32)]
        pub enum XdpCounter { $($name,)* }
        impl XdpCounter {
            /// Every counter, in index order.
            pub const ALL: &'static [XdpCounter] = &[$(XdpCounter::$name,)*];
            /// Number of counters.
            pub const COUNT: usize = XdpCounter::ALL.len();
            /// Metric label / JSON key.
            pub fn name(self) -> &'static str {
                match self { $(XdpCounter::$name => $text,)* }
            }
        }
    };
}

xdp_counters! {
    Rx = "rx",
    PassNotIp = "pass_not_ip",
    PassNd = "pass_nd",
    PassLocal = "pass_local",
    PassBroadcast = "pass_broadcast",
    PassMulticast = "pass_multicast",
    PassLinkLocal = "pass_link_local",
    PassFailsafe = "pass_failsafe",
    Redirect = "redirect",
    RedirectNodePort = "redirect_node_port",
    RedirectNat = "redirect_nat",
    NoSocketPass = "no_socket_pass",
    NoSocketDrop = "no_socket_drop",
    PassUnknownPort = "pass_unknown_port",
}

/// Masquerade protocol index in the bitmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum NatProto {
    Tcp = 0,
    Udp = 1,
    Sctp = 2,
    /// ICMP and ICMPv6 echo identifiers.
    Icmp = 3,
}

/// Conntrack's masquerade-port reference counts drive the bitmap: a port
/// is marked when its first connection is created and cleared when its last
/// one expires, so the XDP program redirects exactly the replies sluice can
/// translate back.
impl crate::tables::conntrack::NatPortSink for NatPorts {
    fn set(&self, slot: u8, proto: u8, port: u16, in_use: bool) {
        if let Some(p) = NatProto::from_ip(proto) {
            NatPorts::set(self, slot, p, port, in_use);
        }
    }
}

impl NatProto {
    /// From an IP protocol number.
    pub fn from_ip(proto: u8) -> Option<NatProto> {
        match proto {
            6 => Some(NatProto::Tcp),
            17 => Some(NatProto::Udp),
            132 => Some(NatProto::Sctp),
            1 | 58 => Some(NatProto::Icmp),
            _ => None,
        }
    }
}

/// What the program should do with frames when no AF_XDP socket is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Pass to the kernel (traffic keeps flowing without policy).
    #[default]
    Open,
    /// Drop.
    Closed,
}

/// What the program's address, node-port, failsafe and config maps hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XdpContents {
    /// Where it came from, for messages.
    pub origin: String,
    /// The node's addresses, in port order.
    pub addresses: Vec<Cidr>,
    /// The distinct masquerade addresses: slot `i` is the `i`th. NAT code
    /// passes these slot numbers to [`NatPorts::set`].
    pub masquerade_slots: Vec<(Family, u128)>,
    /// `(IP protocol, port)` of service node ports.
    pub nodeports: Vec<(u8, u16)>,
    /// `(IP protocol, port)` to the node that always go to the kernel.
    pub failsafe: Vec<(u8, u16)>,
    pub fail_mode: FailMode,
}

/// The masquerade-ports-in-use bitmap, shared with the XDP program through
/// an mmap: setting a bit is one atomic instruction, no syscall. Cheap to
/// clone (`Arc`) and `Send + Sync`: workers may call it from the NAT path.
#[derive(Debug, Clone)]
pub struct NatPorts {
    mem: Arc<Mmap>,
}

impl NatPorts {
    #[inline]
    fn word(slot: u8, proto: NatProto, port: u16) -> (usize, u64) {
        let idx = ((u32::from(slot) * NAT_PROTOS + proto as u32) << 10) | (u32::from(port) >> 6);
        (idx as usize, 1u64 << (port & 63))
    }

    /// Marks `port` of `proto` on masquerade slot `slot` in use (replies
    /// to it are redirected to sluice) or free (they go to the kernel).
    /// Slots beyond [`NAT_SLOTS`] are ignored.
    #[inline]
    pub fn set(&self, slot: u8, proto: NatProto, port: u16, in_use: bool) {
        if u32::from(slot) >= NAT_SLOTS {
            return;
        }
        let (i, bit) = Self::word(slot, proto, port);
        if let Some(w) = self.mem.as_atomic_u64s().get(i) {
            if in_use {
                w.fetch_or(bit, Ordering::Release);
            } else {
                w.fetch_and(!bit, Ordering::Release);
            }
        }
    }

    /// Whether the bit is set.
    pub fn get(&self, slot: u8, proto: NatProto, port: u16) -> bool {
        if u32::from(slot) >= NAT_SLOTS {
            return false;
        }
        let (i, bit) = Self::word(slot, proto, port);
        self.mem
            .as_atomic_u64s()
            .get(i)
            .is_some_and(|w| w.load(Ordering::Acquire) & bit != 0)
    }

    /// Clears every bit.
    pub fn clear(&self) {
        for w in self.mem.as_atomic_u64s() {
            w.store(0, Ordering::Release);
        }
    }
}

/// Typed handles on the program's maps.
pub struct XdpMaps {
    xsks: XskMap<MapData>,
    ports: HashMap<MapData, u32, u32>,
    addrs: HashMap<MapData, AddrKey, AddrVal>,
    nodeports: HashMap<MapData, L4Key, u32>,
    failsafe: HashMap<MapData, L4Key, u32>,
    config: Array<MapData, XdpConfigVal>,
    counters: PerCpuArray<MapData, u64>,
    nat: NatPorts,
    /// Keeps the NAT map's descriptor open as long as its mapping lives.
    _nat_map: MapData,
}

impl std::fmt::Debug for XdpMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpMaps").finish_non_exhaustive()
    }
}

impl XdpMaps {
    /// Takes typed handles on the maps of the loaded program `ebpf`, and
    /// maps the masquerade-port bitmap.
    pub(super) fn from_ebpf(ebpf: &mut Ebpf) -> Result<XdpMaps, BpfError> {
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(BpfError::Missing(name));
        let xsks = XskMap::try_from(take("sl_xsks")?).map_err(map_err("sl_xsks"))?;
        let ports = HashMap::try_from(take("sl_ports")?).map_err(map_err("sl_ports"))?;
        let addrs = HashMap::try_from(take("sl_addrs")?).map_err(map_err("sl_addrs"))?;
        let nodeports =
            HashMap::try_from(take("sl_nodeports")?).map_err(map_err("sl_nodeports"))?;
        let failsafe = HashMap::try_from(take("sl_failsafe")?).map_err(map_err("sl_failsafe"))?;
        let config = Array::try_from(take("sl_config")?).map_err(map_err("sl_config"))?;
        let counters =
            PerCpuArray::try_from(take("sl_counters")?).map_err(map_err("sl_counters"))?;
        let nat_map = match take("sl_nat")? {
            aya::maps::Map::Array(d) => d,
            _ => return Err(BpfError::Missing("array map sl_nat")),
        };
        let len = (NAT_WORDS as usize * 8).div_ceil(page_size()) * page_size();
        let mem = Mmap::shared(nat_map.fd().as_fd(), len, 0, "mmap(sl_nat)")?;
        let maps = XdpMaps {
            xsks,
            ports,
            addrs,
            nodeports,
            failsafe,
            config,
            counters,
            nat: NatPorts { mem: Arc::new(mem) },
            _nat_map: nat_map,
        };
        Ok(maps)
    }

    /// Fills the address, node-port, failsafe and fail-mode maps with
    /// `c` (adding what is new, then removing what is gone, so a reload
    /// never leaves a node address unlisted).
    pub fn sync(&mut self, c: &XdpContents) -> Result<(), BpfError> {
        let slots = &c.masquerade_slots;
        if slots.len() > NAT_SLOTS as usize {
            return Err(BpfError::Limit(format!(
                "{}: masquerade: {} distinct addresses, the XDP program tracks {NAT_SLOTS}",
                c.origin,
                slots.len()
            )));
        }
        let mut addrs: Vec<(AddrKey, AddrVal)> = Vec::new();
        for a in &c.addresses {
            let slot = slots
                .iter()
                .position(|s| *s == (a.family, a.addr))
                .map_or(NO_NAT_SLOT, |i| i as u32);
            addrs.push((
                AddrKey::new(a.family, a.addr),
                AddrVal {
                    flags: ADDR_LOCAL,
                    nat_slot: slot,
                },
            ));
        }
        for a in &c.addresses {
            if let Some(b) = a.broadcast_v4() {
                let k = AddrKey::new(Family::V4, u128::from(b));
                if !addrs.iter().any(|(x, _)| *x == k) {
                    addrs.push((
                        k,
                        AddrVal {
                            flags: ADDR_BROADCAST,
                            nat_slot: NO_NAT_SLOT,
                        },
                    ));
                }
            }
        }
        if addrs.len() > MAX_ADDRS as usize {
            return Err(BpfError::Limit(format!(
                "{}: ports[].addresses: {} addresses and broadcasts, the XDP program holds {MAX_ADDRS}",
                c.origin,
                addrs.len()
            )));
        }
        for (k, v) in &addrs {
            self.addrs.insert(k, v, 0).map_err(map_err("sl_addrs"))?;
        }
        let stale: Vec<AddrKey> = self
            .addrs
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !addrs.iter().any(|(x, _)| x == k))
            .collect();
        for k in stale {
            self.addrs.remove(&k).map_err(map_err("sl_addrs"))?;
        }

        let l4 = |&(proto, port): &(u8, u16)| L4Key {
            proto,
            pad: 0,
            port,
        };
        let nodeports: Vec<L4Key> = c.nodeports.iter().map(l4).collect();
        sync_l4(&mut self.nodeports, &nodeports, "sl_nodeports")?;
        let failsafe: Vec<L4Key> = c.failsafe.iter().map(l4).collect();
        sync_l4(&mut self.failsafe, &failsafe, "sl_failsafe")?;

        let action = match c.fail_mode {
            FailMode::Open => XDP_PASS,
            FailMode::Closed => XDP_DROP,
        };
        self.config
            .set(
                0,
                XdpConfigVal {
                    no_socket_action: action,
                    flags: 0,
                },
                0,
            )
            .map_err(map_err("sl_config"))?;
        Ok(())
    }

    /// Declares interface `ifindex` to be port `port`.
    pub fn set_port(&mut self, ifindex: u32, port: u16) -> Result<(), BpfError> {
        if u32::from(port) >= MAX_PORTS {
            return Err(BpfError::Limit(format!(
                "port {port}: the XDP program handles {MAX_PORTS} ports"
            )));
        }
        self.ports
            .insert(ifindex, u32::from(port), 0)
            .map_err(map_err("sl_ports"))
    }

    /// Forgets interface `ifindex` (its frames then go to the kernel).
    pub fn remove_port(&mut self, ifindex: u32) -> Result<(), BpfError> {
        match self.ports.remove(&ifindex) {
            Ok(()) => Ok(()),
            // Not there: nothing to forget.
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_err("sl_ports")(e)),
        }
    }

    fn xsk_key(port: u16, queue: u32) -> Result<u32, BpfError> {
        if u32::from(port) >= MAX_PORTS || queue >= MAX_QUEUES {
            return Err(BpfError::Limit(format!(
                "port {port} queue {queue}: the XDP program handles {MAX_PORTS} ports of {MAX_QUEUES} queues"
            )));
        }
        Ok(u32::from(port) * MAX_QUEUES + queue)
    }

    /// Steers frames of (`port`, `queue`) to the socket `fd`.
    pub fn set_socket(
        &mut self,
        port: u16,
        queue: u32,
        fd: BorrowedFd<'_>,
    ) -> Result<(), BpfError> {
        let key = Self::xsk_key(port, queue)?;
        self.xsks
            .set(key, fd.as_raw_fd(), 0)
            .map_err(map_err("sl_xsks"))
    }

    /// Removes the socket of (`port`, `queue`).
    pub fn clear_socket(&mut self, port: u16, queue: u32) -> Result<(), BpfError> {
        let key = Self::xsk_key(port, queue)?;
        self.xsks.unset(key).map_err(map_err("sl_xsks"))
    }

    /// The counters, summed over CPUs, in [`XdpCounter`] order.
    pub fn counters(&self) -> Result<[u64; XdpCounter::COUNT], BpfError> {
        let mut out = [0u64; XdpCounter::COUNT];
        for (i, o) in out.iter_mut().enumerate() {
            let v = self
                .counters
                .get(&(i as u32), 0)
                .map_err(map_err("sl_counters"))?;
            *o = v.iter().sum();
        }
        Ok(out)
    }

    /// The masquerade-port bitmap (clone it into whoever allocates ports).
    pub fn nat_ports(&self) -> &NatPorts {
        &self.nat
    }

    /// Shorthand for [`NatPorts::set`].
    pub fn nat_port(&self, slot: u8, proto: NatProto, port: u16, in_use: bool) {
        self.nat.set(slot, proto, port, in_use)
    }
}

fn sync_l4(
    map: &mut HashMap<MapData, L4Key, u32>,
    want: &[L4Key],
    name: &'static str,
) -> Result<(), BpfError> {
    if want.len() > MAX_L4PORTS as usize {
        return Err(BpfError::Limit(format!(
            "{name}: {} entries, the XDP program holds {MAX_L4PORTS}",
            want.len()
        )));
    }
    for k in want {
        map.insert(k, 1, 0).map_err(map_err(name))?;
    }
    let stale: Vec<L4Key> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !want.contains(k))
        .collect();
    for k in stale {
        map.remove(&k).map_err(map_err(name))?;
    }
    Ok(())
}
/// Converts an address into the map key form (for tests and tools).
pub fn addr_key(ip: IpAddr) -> AddrKey {
    let (f, a) = wire::from_ip(ip);
    AddrKey::new(f, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    mod c {
        include!(concat!(env!("OUT_DIR"), "/c_layouts.rs"));
    }
    fn size(n: &str) -> usize {
        c::C_SIZES.iter().find(|(x, _)| *x == n).unwrap().1
    }
    fn off(n: &str) -> usize {
        c::C_OFFSETS.iter().find(|(x, _)| *x == n).unwrap().1
    }
    fn cst(n: &str) -> u64 {
        c::C_CONSTS
            .iter()
            .find(|(x, _)| *x == n)
            .unwrap_or_else(|| panic!("{n}"))
            .1
    }

    #[test]
    fn layouts_match_c() {
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<AddrKey>(), size("sluice_addr_key"));
        assert_eq!(offset_of!(AddrKey, family), off("sluice_addr_key.family"));
        assert_eq!(offset_of!(AddrKey, addr), off("sluice_addr_key.addr"));
        assert_eq!(size_of::<AddrVal>(), size("sluice_addr_val"));
        assert_eq!(offset_of!(AddrVal, flags), off("sluice_addr_val.flags"));
        assert_eq!(
            offset_of!(AddrVal, nat_slot),
            off("sluice_addr_val.nat_slot")
        );
        assert_eq!(size_of::<L4Key>(), size("sluice_l4_key"));
        assert_eq!(offset_of!(L4Key, proto), off("sluice_l4_key.proto"));
        assert_eq!(offset_of!(L4Key, pad), off("sluice_l4_key.pad"));
        assert_eq!(offset_of!(L4Key, port), off("sluice_l4_key.port"));
        assert_eq!(size_of::<XdpConfigVal>(), size("sluice_xdp_config"));
        assert_eq!(
            offset_of!(XdpConfigVal, no_socket_action),
            off("sluice_xdp_config.no_socket_action")
        );
        assert_eq!(
            offset_of!(XdpConfigVal, flags),
            off("sluice_xdp_config.flags")
        );
    }

    #[test]
    fn constants_and_counters_match_c() {
        let consts: &[(&str, u64)] = &[
            ("SLUICE_MAX_PORTS", u64::from(MAX_PORTS)),
            ("SLUICE_MAX_QUEUES", u64::from(MAX_QUEUES)),
            ("SLUICE_XSK_ENTRIES", u64::from(XSK_ENTRIES)),
            ("SLUICE_MAX_ADDRS", u64::from(MAX_ADDRS)),
            ("SLUICE_MAX_L4PORTS", u64::from(MAX_L4PORTS)),
            ("SLUICE_NAT_SLOTS", u64::from(NAT_SLOTS)),
            ("SLUICE_NAT_PROTOS", u64::from(NAT_PROTOS)),
            ("SLUICE_NAT_PROTO_TCP", NatProto::Tcp as u64),
            ("SLUICE_NAT_PROTO_UDP", NatProto::Udp as u64),
            ("SLUICE_NAT_PROTO_SCTP", NatProto::Sctp as u64),
            ("SLUICE_NAT_PROTO_ICMP", NatProto::Icmp as u64),
            ("SLUICE_NAT_WORDS_PER_PROTO", u64::from(NAT_WORDS_PER_PROTO)),
            ("SLUICE_NAT_WORDS", u64::from(NAT_WORDS)),
            ("SLUICE_NO_NAT_SLOT", u64::from(NO_NAT_SLOT)),
            ("SLUICE_AF_INET", u64::from(AF_INET)),
            ("SLUICE_AF_INET6", u64::from(AF_INET6)),
            ("SLUICE_ADDR_LOCAL", u64::from(ADDR_LOCAL)),
            ("SLUICE_ADDR_BROADCAST", u64::from(ADDR_BROADCAST)),
            ("XDP_PASS", u64::from(XDP_PASS)),
            ("XDP_DROP", u64::from(XDP_DROP)),
        ];
        for (n, v) in consts {
            assert_eq!(cst(n), *v, "{n}");
        }
        // The counter enum: same order, same count.
        let c_names = [
            "SLUICE_XDP_RX",
            "SLUICE_XDP_PASS_NOT_IP",
            "SLUICE_XDP_PASS_ND",
            "SLUICE_XDP_PASS_LOCAL",
            "SLUICE_XDP_PASS_BROADCAST",
            "SLUICE_XDP_PASS_MULTICAST",
            "SLUICE_XDP_PASS_LINK_LOCAL",
            "SLUICE_XDP_PASS_FAILSAFE",
            "SLUICE_XDP_REDIRECT",
            "SLUICE_XDP_REDIRECT_NODE_PORT",
            "SLUICE_XDP_REDIRECT_NAT",
            "SLUICE_XDP_NO_SOCKET_PASS",
            "SLUICE_XDP_NO_SOCKET_DROP",
            "SLUICE_XDP_PASS_UNKNOWN_PORT",
        ];
        assert_eq!(cst("SLUICE_XDP_COUNTERS") as usize, XdpCounter::COUNT);
        assert_eq!(c_names.len(), XdpCounter::COUNT);
        for (c, r) in c_names.iter().zip(XdpCounter::ALL) {
            assert_eq!(cst(c), *r as u64, "{c}");
            // The Rust name is the C name, lower-cased, without the prefix.
            assert_eq!(
                c.trim_start_matches("SLUICE_XDP_").to_ascii_lowercase(),
                r.name()
            );
        }
    }

    #[test]
    fn addr_keys() {
        let k = addr_key("192.0.2.1".parse().unwrap());
        assert_eq!(k.family, AF_INET);
        assert_eq!(&k.addr[..4], &[192, 0, 2, 1]);
        assert!(k.addr[4..].iter().all(|&b| b == 0));
        let k = addr_key("2001:db8::1".parse().unwrap());
        assert_eq!(k.family, AF_INET6);
        assert_eq!(k.addr[0], 0x20);
        assert_eq!(k.addr[15], 1);
    }

    #[test]
    fn nat_word_layout_matches_c_formula() {
        // ((slot * PROTOS + proto) << 10) | (port >> 6), bit port & 63.
        assert_eq!(NatPorts::word(0, NatProto::Tcp, 0), (0, 1));
        assert_eq!(NatPorts::word(0, NatProto::Tcp, 65), (1, 2));
        assert_eq!(
            NatPorts::word(1, NatProto::Udp, 65535),
            (((4 + 1) << 10) | 1023, 1 << 63)
        );
        let (i, _) = NatPorts::word(15, NatProto::Icmp, 65535);
        assert_eq!(i, NAT_WORDS as usize - 1);
    }
}
