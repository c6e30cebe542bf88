//! The YAML config of `sluice run` and `sluice replay` (`shared/spec/cli.md`):
//! one source of the node's desired state, and the process settings
//! (metrics listener, control socket) beside it.
//!
//! Loading is two steps: serde (unknown keys are errors; `serde_path_to_error`
//! gives the key path of a type error) and then [`Config::validate`], which
//! checks cross references (route → port, neighbour → port, families, duplicate
//! names) and also names the key path. Every error names the file.
//! [`Config::state`] converts a validated config into a [`NodeState`]; this
//! file is the only code below the CLI that knows the schema.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use thiserror::Error;

pub use crate::io::bpf::{AttachMode, FailMode};
use crate::state::{
    ConntrackSpec, NeighborSpec, NodeState, PolicyInput, PortSpec, RouteSpec, ServiceSpec,
    WorkerSpec, XdpSpec,
};
pub use crate::state::{QueueSel as Queues, XskMode};
use crate::tables::conntrack;
pub use crate::tables::nat::Affinity;
use crate::tables::nat::Masquerade;
pub use crate::wire::Cidr;
use crate::wire::{self, Family, Mac};

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
    /// Directory of the config file; relative policy paths resolve from it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file it came from (for messages).
    #[serde(skip)]
    pub source: String,
}

use crate::pipeline::MAX_BATCH;

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::from_yaml(&text, &file, &base)
    }

    /// Parses and validates config text; `file` names it in errors.
    pub fn from_yaml(text: &str, file: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let de = serde_norway::Deserializer::from_str(text);
        let mut cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde_norway prefixes the path itself; keep one copy.
            let msg = inner
                .strip_prefix(&format!("{path}: "))
                .unwrap_or(&inner)
                .to_string();
            ConfigError::Invalid {
                file: file.to_string(),
                path: if path == "." { "(top)".into() } else { path },
                msg,
            }
        })?;
        cfg.base_dir = base_dir.to_path_buf();
        cfg.source = file.to_string();
        cfg.validate()?;
        Ok(cfg)
    }

    fn err(&self, path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.source.clone(),
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// Index of the port named `name`.
    pub fn port_index(&self, name: &str) -> Option<u16> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as u16)
    }

    /// Cross-reference checks; errors name the key path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ports.is_empty() {
            return Err(self.err("ports", "at least one port is required"));
        }
        if self.ports.len() > 250 {
            return Err(self.err("ports", "at most 250 ports"));
        }
        let mut names = HashSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            if p.name.is_empty() {
                return Err(self.err(format!("ports[{i}].name"), "must not be empty"));
            }
            if matches!(p.name.as_str(), "kernel" | "drops") {
                return Err(self.err(
                    format!("ports[{i}].name"),
                    format!(
                        "{:?} is reserved (replay writes kernel.pcap and drops.pcap)",
                        p.name
                    ),
                ));
            }
            if !names.insert(p.name.as_str()) {
                return Err(self.err(
                    format!("ports[{i}].name"),
                    format!("duplicate port {:?}", p.name),
                ));
            }
        }
        let w = &self.workers;
        if w.batch == 0 || w.batch > MAX_BATCH {
            return Err(self.err("workers.batch", format!("must be 1..={MAX_BATCH}")));
        }
        if w.cores.is_empty() {
            return Err(self.err("workers.cores", "at least one core"));
        }
        let port_ref = |path: String, name: &str| -> Result<u16, ConfigError> {
            self.port_index(name)
                .ok_or_else(|| self.err(path, format!("no port named {name:?}")))
        };
        let mut prefixes = HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            port_ref(format!("routes[{i}].port"), &r.port)?;
            if r.prefix.network() != r.prefix.addr {
                return Err(self.err(
                    format!("routes[{i}].prefix"),
                    format!(
                        "{} has host bits set (did you mean {}/{}?)",
                        r.prefix,
                        wire::to_ip(r.prefix.family, r.prefix.network()),
                        r.prefix.len
                    ),
                ));
            }
            if let Some((what, range)) = crate::tables::special_range(&r.prefix) {
                return Err(self.err(
                    format!("routes[{i}].prefix"),
                    format!(
                        "{} lies inside {range} ({what}), which the node never forwards \
                         (Linux decides it before any route)",
                        r.prefix
                    ),
                ));
            }
            if !prefixes.insert((r.prefix.family, r.prefix.addr, r.prefix.len)) {
                return Err(self.err(
                    format!("routes[{i}].prefix"),
                    format!("duplicate route {}", r.prefix),
                ));
            }
            if let Some(via) = r.via {
                if wire::from_ip(via).0 != r.prefix.family {
                    return Err(self.err(
                        format!("routes[{i}].via"),
                        "gateway family differs from the prefix",
                    ));
                }
            }
        }
        let mut neigh = HashSet::new();
        for (i, n) in self.neighbors.iter().enumerate() {
            port_ref(format!("neighbors[{i}].port"), &n.port)?;
            if !neigh.insert(n.ip) {
                return Err(self.err(
                    format!("neighbors[{i}].ip"),
                    format!("duplicate neighbour {}", n.ip),
                ));
            }
        }
        let mut svc_names = HashSet::new();
        let mut svc_keys = HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            if !svc_names.insert(s.name.as_str()) {
                return Err(self.err(
                    format!("services[{i}].name"),
                    format!("duplicate service {:?}", s.name),
                ));
            }
            if !svc_keys.insert((s.vip, s.port, s.protocol)) {
                return Err(self.err(
                    format!("services[{i}]"),
                    "another service has the same vip, port and protocol",
                ));
            }
            for (j, b) in s.backends.iter().enumerate() {
                if b.0.is_ipv4() != s.vip.is_ipv4() {
                    return Err(self.err(
                        format!("services[{i}].backends[{j}]"),
                        "backend family differs from the vip",
                    ));
                }
            }
        }
        for (i, m) in self.masquerade.iter().enumerate() {
            let port = port_ref(format!("masquerade[{i}].port"), &m.port)?;
            match m.address {
                Some(a) if wire::from_ip(a).0 != m.from.family => {
                    return Err(self.err(
                        format!("masquerade[{i}].address"),
                        "address family differs from `from`",
                    ));
                }
                Some(_) => {}
                None => {
                    let has = self.ports[usize::from(port)]
                        .addresses
                        .iter()
                        .any(|a| a.family == m.from.family);
                    if !has {
                        return Err(self.err(
                            format!("masquerade[{i}].address"),
                            format!("port {:?} has no address of this family to masquerade to; set `address`", m.port),
                        ));
                    }
                }
            }
        }
        if self.conntrack.max_entries == 0 {
            return Err(self.err("conntrack.max_entries", "must be at least 1"));
        }
        Ok(())
    }

    /// Policy paths resolved against the config file's directory.
    pub fn policy_paths(&self) -> Vec<PathBuf> {
        self.policy
            .paths
            .iter()
            .map(|p| {
                if p.is_absolute() {
                    p.clone()
                } else {
                    self.base_dir.join(p)
                }
            })
            .collect()
    }

    /// The masquerade source address of entry `i`.
    pub fn masquerade_address(&self, i: usize) -> Option<(Family, u128)> {
        let m = self.masquerade.get(i)?;
        if let Some(a) = m.address {
            return Some(wire::from_ip(a));
        }
        let port = self.port_index(&m.port)?;
        self.ports[usize::from(port)]
            .addresses
            .iter()
            .find(|a| a.family == m.from.family)
            .map(|a| (a.family, a.addr))
    }
}

impl Config {
    /// The desired state this (validated) config describes.
    pub fn state(&self) -> NodeState {
        let port = |name: &str| self.port_index(name).unwrap_or(0);
        let ns = |d: &Dur| u64::try_from(d.0.as_nanos()).unwrap_or(u64::MAX);
        let t = &self.conntrack.timeouts;
        NodeState {
            origin: self.source.clone(),
            ports: self
                .ports
                .iter()
                .map(|p| PortSpec {
                    name: p.name.clone(),
                    interface: p.interface.clone(),
                    queues: p.queues.clone(),
                    mode: p.mode,
                    mac: p.mac.map(|m| m.0),
                    addresses: p.addresses.clone(),
                    zone: p.zone,
                })
                .collect(),
            workers: WorkerSpec {
                cores: self.workers.cores.clone(),
                batch: self.workers.batch,
                busy_poll: self.workers.busy_poll,
            },
            routes: self
                .routes
                .iter()
                .map(|r| RouteSpec {
                    prefix: r.prefix,
                    port: port(&r.port),
                    via: r.via.map(|v| wire::from_ip(v).1),
                })
                .collect(),
            neighbors: self
                .neighbors
                .iter()
                .map(|n| {
                    let (family, ip) = wire::from_ip(n.ip);
                    NeighborSpec {
                        family,
                        ip,
                        mac: n.mac.0,
                        port: port(&n.port),
                    }
                })
                .collect(),
            services: self
                .services
                .iter()
                .map(|s| {
                    let (family, vip) = wire::from_ip(s.vip);
                    ServiceSpec {
                        name: s.name.clone(),
                        family,
                        vip,
                        port: s.port,
                        proto: s.protocol.number(),
                        backends: s.backends.iter().map(|b| b.0).collect(),
                        affinity: s.affinity,
                        node_port: s.node_port,
                    }
                })
                .collect(),
            masquerade: (0..self.masquerade.len())
                .filter_map(|i| {
                    let m = &self.masquerade[i];
                    let (family, addr) = self.masquerade_address(i)?;
                    Some(Masquerade {
                        from: m.from,
                        port: port(&m.port),
                        family,
                        addr,
                        ports: m.ports.map(|r| (r.0, r.1)),
                    })
                })
                .collect(),
            conntrack: ConntrackSpec {
                max_entries: self.conntrack.max_entries,
                timeouts: conntrack::Timeouts {
                    tcp_syn: ns(&t.tcp_syn),
                    tcp_established: ns(&t.tcp_established),
                    tcp_closing: ns(&t.tcp_closing),
                    udp: ns(&t.udp),
                    icmp: ns(&t.icmp),
                },
                tcp_loose: self.conntrack.tcp_loose,
            },
            xdp: XdpSpec {
                fail_mode: self.xdp.fail_mode,
                failsafe: self
                    .xdp
                    .failsafe
                    .iter()
                    .map(|f| (f.protocol.number(), f.port))
                    .collect(),
                attach: self.xdp.attach,
            },
            policy: PolicyInput::Paths(self.policy_paths()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(y: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(y, "test.yaml", Path::new("."))
    }

    const MIN: &str =
        "ports:\n  - {name: uplink, mac: \"02:00:00:00:00:01\", addresses: [\"192.0.2.1/24\"]}\n";

    #[test]
    fn defaults() {
        let c = load(MIN).unwrap();
        assert_eq!(c.workers.batch, 64);
        assert_eq!(c.conntrack.max_entries, 1 << 20);
        assert_eq!(
            c.conntrack.timeouts.tcp_established.0,
            Duration::from_secs(3600)
        );
        assert!(c.conntrack.tcp_loose);
        assert_eq!(c.ports[0].mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
    }

    #[test]
    fn unknown_key_names_path() {
        let e = load(&format!(
            "{MIN}routes:\n  - {{prefix: 10.0.0.0/8, port: uplink, gw: 1.2.3.4}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("test.yaml: routes[0]"), "{e}");
        assert!(e.contains("unknown field `gw`"), "{e}");
    }

    #[test]
    fn routes_into_special_ranges_are_refused() {
        for (prefix, range) in [
            ("127.5.0.0/16", "127.0.0.0/8 (martian"),
            ("0.1.2.0/24", "0.0.0.0/8 (martian"),
            ("240.0.0.0/4", "240.0.0.0/4 (martian"),
            ("224.1.0.0/16", "224.0.0.0/4 (local"),
            ("\"fe80::/64\"", "fe80::/10 (local"),
            ("\"ff02::1/128\"", "ff00::/8 (local"),
        ] {
            let e = load(&format!(
                "{MIN}routes:\n  - {{prefix: {prefix}, port: uplink}}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.starts_with("test.yaml: routes[0].prefix: "), "{e}");
            assert!(e.contains(&format!("lies inside {range}")), "{e}");
        }
        // Routes that only cover a special range are fine (the range wins).
        for prefix in ["0.0.0.0/0", "96.0.0.0/3", "\"::/0\"", "\"fe00::/7\""] {
            load(&format!(
                "{MIN}routes:\n  - {{prefix: {prefix}, port: uplink}}\n"
            ))
            .unwrap_or_else(|e| panic!("{prefix}: {e}"));
        }
    }

    #[test]
    fn bad_values_name_path() {
        let e = load(&format!(
            "{MIN}routes:\n  - {{prefix: 10.0.0.0/33, port: uplink}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("routes[0].prefix") && e.contains("prefix length"),
            "{e}"
        );
        let e = load(&format!(
            "{MIN}routes:\n  - {{prefix: 10.0.0.0/8, port: nowhere}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert_eq!(e, "test.yaml: routes[0].port: no port named \"nowhere\"");
        let e = load(&format!(
            "{MIN}routes:\n  - {{prefix: 10.0.0.1/8, port: uplink}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("host bits"), "{e}");
        let e = load(&format!("{MIN}conntrack:\n  timeouts: {{udp: 5x}}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("conntrack.timeouts.udp") && e.contains("unknown unit"),
            "{e}"
        );
        let e = load("ports:\n  - {name: a, mac: \"zz\"}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ports[0].mac") && e.contains("not a MAC"), "{e}");
        let e = load("workers: {batch: 64}\n").unwrap_err().to_string();
        assert!(e.contains("missing field `ports`"), "{e}");
        let e = load(&format!("{MIN}workers: {{batch: 1000}}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("workers.batch"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(Dur::parse("500ms").unwrap().0, Duration::from_millis(500));
        assert_eq!(Dur::parse("2m").unwrap().0, Duration::from_secs(120));
        assert_eq!(Dur::parse("1d").unwrap().0, Duration::from_secs(86400));
        assert!(Dur::parse("x").is_err());
    }
}
