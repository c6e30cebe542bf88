//! The config's schema: serde types, one per section, unknown keys
//! rejected, values parsed while deserializing so errors carry their key
//! path.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use thiserror::Error;

pub use crate::io::bpf::{AttachMode, FailMode};
pub use crate::state::{QueueSel as Queues, Unresolved, XskMode};
pub use crate::tables::nat::Affinity;
pub use crate::wire::Cidr;
use crate::wire::{self, Mac};

/// A config error naming the file and the key path.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {path}: {msg}")]
    Invalid {
        file: String,
        path: String,
        msg: String,
    },
}

// A prefix in config form: `10.1.0.0/16`, `2001:db8::1/64`, or a bare
// address (a host prefix).
impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Cidr::parse(&s).map_err(D::Error::custom)
    }
}

/// A MAC address in config form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacAddr(pub Mac);

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        wire::parse_mac(&s).map(MacAddr).ok_or_else(|| {
            D::Error::custom(format!("{s:?} is not a MAC address (02:00:00:00:00:01)"))
        })
    }
}

/// A duration: `30s`, `500ms`, `2m`, `1h`, `1d`, or a number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parses the forms above.
    pub fn parse(s: &str) -> Result<Dur, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, unit) = s.split_at(split);
        let n: u64 = n
            .parse()
            .map_err(|_| format!("{s:?} is not a duration (30s, 500ms, 2m, 1h, 1d)"))?;
        let secs = |m: u64| Duration::from_secs(n.saturating_mul(m));
        let d = match unit.trim() {
            "" | "s" => secs(1),
            "ms" => Duration::from_millis(n),
            "m" => secs(60),
            "h" => secs(3600),
            "d" => secs(86400),
            _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h, d)")),
        };
        Ok(Dur(d))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Dur(Duration::from_secs(n))),
            Raw::S(s) => Dur::parse(&s).map_err(D::Error::custom),
        }
    }
}

// Which queues of an interface a port uses: `all` or a list.
impl<'de> Deserialize<'de> for Queues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            L(Vec<u32>),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) if s == "all" => Ok(Queues::All),
            Raw::S(s) => Err(D::Error::custom(format!(
                "{s:?}: queues is \"all\" or a list of queue ids"
            ))),
            Raw::L(l) => Ok(Queues::List(l)),
        }
    }
}

/// Deserializes a plain enum (of a lower layer) from its lower-case or
/// kebab-case name, with serde's own message for an unknown name.
macro_rules! named_enum {
    ($f:ident, $t:ty, { $($name:literal => $v:expr,)* }) => {
        fn $f<'de, D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
            let s = String::deserialize(d)?;
            match s.as_str() {
                $($name => Ok($v),)*
                _ => Err(D::Error::unknown_variant(&s, &[$($name),*])),
            }
        }
    };
}

named_enum!(de_xsk_mode, XskMode, {
    "auto" => XskMode::Auto,
    "zerocopy" => XskMode::Zerocopy,
    "copy" => XskMode::Copy,
});
named_enum!(de_affinity, Affinity, {
    "none" => Affinity::None,
    "client-ip" => Affinity::ClientIp,
});
named_enum!(de_fail_mode, FailMode, {
    "open" => FailMode::Open,
    "closed" => FailMode::Closed,
});
named_enum!(de_attach_mode, AttachMode, {
    "auto" => AttachMode::Auto,
    "native" => AttachMode::Native,
    "generic" => AttachMode::Generic,
});
named_enum!(de_unresolved, Option<Unresolved>, {
    "kernel" => Some(Unresolved::Kernel),
    "drop" => Some(Unresolved::Drop),
});

/// A logical port.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    pub name: String,
    #[serde(default)]
    pub interface: Option<String>,
    #[serde(default)]
    pub queues: Queues,
    #[serde(default, deserialize_with = "de_xsk_mode")]
    pub mode: XskMode,
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// The node's own addresses on this port (address/prefix).
    #[serde(default)]
    pub addresses: Vec<Cidr>,
    /// Conntrack zone of traffic entering here (default 0: one zone).
    #[serde(default)]
    pub zone: u16,
}

/// Worker threads.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConfig {
    #[serde(default = "default_cores")]
    pub cores: Vec<usize>,
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Busy-poll (spin) instead of sleeping in poll() when idle.
    #[serde(default)]
    pub busy_poll: bool,
    /// The workers' nice value (-20..=19). Default -20, or 0 with
    /// `busy_poll` (a spinning worker at -20 would starve the kernel's
    /// receive work on its core). See `WorkerSpec::nice`.
    #[serde(default)]
    pub nice: Option<i32>,
}

fn default_cores() -> Vec<usize> {
    vec![0]
}
fn default_batch() -> usize {
    64
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            cores: default_cores(),
            batch: default_batch(),
            busy_poll: false,
            nice: None,
        }
    }
}

/// Policy inputs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Files or directories (`shared/spec/policy.md`); relative paths are
    /// relative to the config file. Empty: allow all.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
}

/// A route.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: Cidr,
    pub port: String,
    #[serde(default)]
    pub via: Option<IpAddr>,
}

/// A static neighbour.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborConfig {
    pub ip: IpAddr,
    pub mac: MacAddr,
    pub port: String,
}

/// Transport protocol of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceProto {
    Tcp,
    Udp,
    Sctp,
}

impl ServiceProto {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            ServiceProto::Tcp => 6,
            ServiceProto::Udp => 17,
            ServiceProto::Sctp => 132,
        }
    }
}

impl<'de> Deserialize<'de> for ServiceProto {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(ServiceProto::Tcp),
            "UDP" => Ok(ServiceProto::Udp),
            "SCTP" => Ok(ServiceProto::Sctp),
            _ => Err(D::Error::custom(format!(
                "{s:?}: protocol is TCP, UDP or SCTP"
            ))),
        }
    }
}

/// A backend `ip:port` (`[v6]:port` for IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backend(pub SocketAddr);

impl<'de> Deserialize<'de> for Backend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<SocketAddr>()
            .map(Backend)
            .map_err(|_| D::Error::custom(format!("{s:?} is not ip:port (use [v6]:port for IPv6)")))
    }
}

/// A load-balanced service (DNAT).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    #[serde(default = "default_proto")]
    pub protocol: ServiceProto,
    #[serde(default)]
    pub backends: Vec<Backend>,
    #[serde(default, deserialize_with = "de_affinity")]
    pub affinity: Affinity,
    /// Also answer on every node address at this port (NodePort-style).
    #[serde(default)]
    pub node_port: Option<u16>,
}

fn default_proto() -> ServiceProto {
    ServiceProto::Tcp
}

/// An inclusive port range `"1024-65535"` (or a single port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange(pub u16, pub u16);

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u16),
            S(String),
        }
        let bad = |s: &str| D::Error::custom(format!("{s:?} is not a port range (\"1024-65535\")"));
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(PortRange(n, n)),
            Raw::S(s) => {
                let (a, b) = s.split_once('-').unwrap_or((&s, &s));
                let lo: u16 = a.trim().parse().map_err(|_| bad(&s))?;
                let hi: u16 = b.trim().parse().map_err(|_| bad(&s))?;
                if lo > hi {
                    return Err(bad(&s));
                }
                Ok(PortRange(lo, hi))
            }
        }
    }
}

/// Masquerade (SNAT) for traffic from `from` leaving through `port`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasqueradeConfig {
    pub from: Cidr,
    pub port: String,
    /// Source address to use; default: the port's first address of the family.
    #[serde(default)]
    pub address: Option<IpAddr>,
    /// Source ports to use (like nftables `masquerade to :lo-hi`); default:
    /// Linux's choice (keep the port's class 1-511, 600-1023, 1024-65535).
    #[serde(default)]
    pub ports: Option<PortRange>,
}

/// Conntrack timeouts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    #[serde(default = "t_syn")]
    pub tcp_syn: Dur,
    #[serde(default = "t_est")]
    pub tcp_established: Dur,
    #[serde(default = "t_closing")]
    pub tcp_closing: Dur,
    #[serde(default = "t_udp")]
    pub udp: Dur,
    #[serde(default = "t_icmp")]
    pub icmp: Dur,
}
fn t_syn() -> Dur {
    Dur(Duration::from_secs(30))
}
fn t_est() -> Dur {
    Dur(Duration::from_secs(3600))
}
fn t_closing() -> Dur {
    Dur(Duration::from_secs(30))
}
fn t_udp() -> Dur {
    Dur(Duration::from_secs(60))
}
fn t_icmp() -> Dur {
    Dur(Duration::from_secs(30))
}
impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn: t_syn(),
            tcp_established: t_est(),
            tcp_closing: t_closing(),
            udp: t_udp(),
            icmp: t_icmp(),
        }
    }
}

/// Connection tracking.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConntrackConfig {
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Pick up TCP connections mid-stream (Linux `nf_conntrack_tcp_loose`).
    #[serde(default = "yes")]
    pub tcp_loose: bool,
}
fn default_max_entries() -> usize {
    1 << 20
}
fn yes() -> bool {
    true
}
impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            max_entries: default_max_entries(),
            timeouts: Timeouts::default(),
            tcp_loose: true,
        }
    }
}

/// Prometheus endpoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    #[serde(default = "default_metrics")]
    pub listen: Option<SocketAddr>,
}
fn default_metrics() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9465)))
}
impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: default_metrics(),
        }
    }
}

/// Control socket.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
}
fn default_socket() -> PathBuf {
    PathBuf::from("/run/sluice/control.sock")
}
impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: default_socket(),
        }
    }
}

/// A failsafe: traffic to the node on this protocol/port always goes to the kernel.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failsafe {
    pub protocol: ServiceProto,
    pub port: u16,
}

/// The XDP redirector.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XdpConfig {
    #[serde(default, deserialize_with = "de_fail_mode")]
    pub fail_mode: FailMode,
    #[serde(default = "default_failsafe")]
    pub failsafe: Vec<Failsafe>,
    #[serde(default, deserialize_with = "de_attach_mode")]
    pub attach: AttachMode,
}
fn default_failsafe() -> Vec<Failsafe> {
    vec![Failsafe {
        protocol: ServiceProto::Tcp,
        port: 22,
    }]
}
impl Default for XdpConfig {
    fn default() -> Self {
        XdpConfig {
            fail_mode: FailMode::Open,
            failsafe: default_failsafe(),
            attach: AttachMode::Auto,
        }
    }
}

/// The kernel mirror (`sluice run` only; replay ignores it): which of the
/// node's kernel state to follow over netlink, merged with the static
/// sections (see README "The kernel mirror").
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelConfig {
    /// The main table's routes out of the ports' interfaces.
    #[serde(default)]
    pub routes: bool,
    /// ARP and ND entries on the ports' interfaces.
    #[serde(default)]
    pub neighbors: bool,
    /// The ports' global addresses.
    #[serde(default)]
    pub addresses: bool,
    /// `kernel` (the kernel resolves the next hop and sends the frame) or
    /// `drop` (`no_neighbor`); default `kernel` when neighbours are
    /// mirrored, else `drop`.
    #[serde(default, deserialize_with = "de_unresolved")]
    pub unresolved: Option<Unresolved>,
}

/// The Felix socket (`sluice run` only; off when the section is absent):
/// `sluice felix-shim`, the driver Felix starts, connects here (see README
/// "Running under Felix").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FelixConfig {
    #[serde(default = "default_felix_socket")]
    pub socket: PathBuf,
    /// The longest message accepted, bytes; a longer one ends the session.
    #[serde(default = "default_max_frame")]
    pub max_frame: u64,
}
/// Where `sluice run` listens for Felix and `felix-shim` connects by default.
pub fn default_felix_socket() -> PathBuf {
    PathBuf::from("/run/sluice/felix.sock")
}
fn default_max_frame() -> u64 {
    crate::sources::felix::DEFAULT_MAX_FRAME
}

/// The whole config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub ports: Vec<PortConfig>,
    #[serde(default)]
    pub workers: WorkersConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub neighbors: Vec<NeighborConfig>,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    #[serde(default)]
    pub masquerade: Vec<MasqueradeConfig>,
    #[serde(default)]
    pub conntrack: ConntrackConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub control: ControlConfig,
    #[serde(default)]
    pub xdp: XdpConfig,
    #[serde(default)]
    pub kernel: KernelConfig,
    #[serde(default)]
    pub felix: Option<FelixConfig>,
    /// Directory of the config file; relative policy paths resolve from it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file it came from (for messages).
    #[serde(skip)]
    pub source: String,
}
