//! The node's desired state as plain data: what the node should look like,
//! whoever says so (the YAML file, the kernel, a Felix session). No serde,
//! no file formats: a source parses and validates its own input and
//! converts it into a [`NodeState`]; [`super::build`] turns one into what
//! the workers use; [`super::diff`] says what changed between two.

use std::path::PathBuf;
use std::sync::Arc;

use crate::io::bpf::{AttachMode, FailMode};
use crate::tables::conntrack::Timeouts;
use crate::tables::nat::{Masquerade, ServiceSpec};
use crate::wire::{Cidr, Family, Mac};

/// Everything the node's data plane should be. Ports are numbered by their
/// position; routes, neighbours and masquerade rules name ports by that
/// number.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeState {
    /// Where this state came from, for messages (a file name, `felix`).
    pub origin: String,
    pub ports: Vec<PortSpec>,
    pub workers: WorkerSpec,
    pub routes: Vec<RouteSpec>,
    pub neighbors: Vec<NeighborSpec>,
    pub services: Vec<ServiceSpec>,
    /// Masquerade rules with their source address resolved.
    pub masquerade: Vec<Masquerade>,
    /// Ports that accept only some source addresses (anti-spoofing).
    pub source_filters: Vec<SourceFilterSpec>,
    /// 1:1 NATs (floating IPs): a new connection to `ext` goes to `int`.
    pub floating: Vec<FloatingIp>,
    pub conntrack: ConntrackSpec,
    pub xdp: XdpSpec,
    pub policy: PolicyInput,
    /// What the running engine mirrors from the kernel (the state above is
    /// then the merge of the source's and the kernel's: `sources::kernel`).
    pub kernel: KernelSpec,
}

/// The kernel mirror's settings: which of the node's kernel state sluice
/// follows (over netlink, live only) and what a frame whose next hop is
/// unresolved does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSpec {
    /// The main table's routes out of the ports' interfaces.
    pub routes: bool,
    /// ARP and ND entries on the ports' interfaces.
    pub neighbors: bool,
    /// The ports' addresses (global scope).
    pub addresses: bool,
    pub unresolved: Unresolved,
}

impl KernelSpec {
    /// Whether anything is mirrored.
    pub fn any(&self) -> bool {
        self.routes || self.neighbors || self.addresses
    }
}

/// What happens to a frame whose next hop has no neighbour entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unresolved {
    /// Dropped, counted as `no_neighbor`.
    Drop,
    /// Handed to the kernel, which resolves the neighbour and sends it.
    Kernel,
}

/// A logical port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub name: String,
    /// The interface it is (live); `None` offline.
    pub interface: Option<String>,
    pub queues: QueueSel,
    pub mode: XskMode,
    /// Its MAC when given (replay needs one; live reads the interface's).
    pub mac: Option<Mac>,
    /// The node's own addresses on this port (address/prefix).
    pub addresses: Vec<Cidr>,
    /// Conntrack zone of traffic entering here.
    pub zone: u16,
}

/// Which receive queues of an interface a port uses.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum QueueSel {
    #[default]
    All,
    List(Vec<u32>),
}

/// AF_XDP bind mode of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XskMode {
    #[default]
    Auto,
    Zerocopy,
    Copy,
}

/// Worker threads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSpec {
    /// One pinned worker per core listed.
    pub cores: Vec<usize>,
    /// Frames per batch (1..=`pipeline::MAX_BATCH`).
    pub batch: usize,
    /// Spin instead of sleeping in poll() when idle.
    pub busy_poll: bool,
    /// The workers' nice value. On the live path the kernel's share of
    /// receiving (the NAPI poll that runs the XDP program and, in copy mode,
    /// copies each frame into the RX ring) runs on the worker's core too;
    /// at equal priority the scheduler splits the core between them, and
    /// under overload the kernel fills a ring the worker has no time to
    /// drain: the frames are copied, then dropped (receive livelock, half
    /// the loss-free rate delivered on veth). A worker above the kernel's
    /// threads only leaves them the time it does not need, so overload is
    /// shed where it costs least, before the kernel's receive work.
    pub nice: i32,
}

impl WorkerSpec {
    /// -20 for sleeping workers; 0 for spinning ones (`busy_poll`), which
    /// would otherwise starve the kernel's receive work on their core.
    pub fn default_nice(busy_poll: bool) -> i32 {
        if busy_poll {
            0
        } else {
            -20
        }
    }
}

/// A route: `prefix` (host bits clear) out of port `port`, through
/// gateway `via` (same family) or directly connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    pub prefix: Cidr,
    pub port: u16,
    pub via: Option<u128>,
}

/// Port `port` accepts IP frames only from sources in `allowed` (IPv6
/// link-local and unspecified sources excepted: see
/// [`crate::tables::SourceFilter::allows`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFilterSpec {
    pub port: u16,
    pub allowed: Vec<Cidr>,
}

/// A 1:1 NAT as Felix programs a workload endpoint's `ipv4_nat` /
/// `ipv6_nat` (its `cali-fip-dnat` chain): every new connection to `ext`,
/// whatever its protocol and ports, is translated to `int`; replies go
/// back translated by conntrack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloatingIp {
    pub family: Family,
    pub ext: u128,
    pub int: u128,
}

/// A neighbour: `ip` has `mac` on port `port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborSpec {
    pub family: Family,
    pub ip: u128,
    pub mac: Mac,
    pub port: u16,
}

/// Connection tracking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConntrackSpec {
    /// Table capacity (fixed while running).
    pub max_entries: usize,
    /// Timeouts, nanoseconds.
    pub timeouts: Timeouts,
    /// Pick up TCP connections mid-stream (Linux `nf_conntrack_tcp_loose`).
    pub tcp_loose: bool,
}

/// The XDP redirector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpSpec {
    pub fail_mode: FailMode,
    /// `(IP protocol, port)` pairs to the node that always go to the kernel.
    pub failsafe: Vec<(u8, u16)>,
    pub attach: AttachMode,
}

/// Where the policy comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyInput {
    /// No policy: everything is allowed.
    AllowAll,
    /// Calico / Kubernetes YAML files or directories (absolute or relative
    /// to the working directory).
    Paths(Vec<PathBuf>),
    /// A policy a source compiled itself (a Felix session's, which
    /// replaces the config's while its model is applied).
    Compiled(CompiledInput),
}

/// A compiled classifier as desired state: two are equal when they are
/// the same compile (the same `Arc`), so a state diff sees a new compile
/// as a policy change and an unchanged one as none.
#[derive(Clone, Debug)]
pub struct CompiledInput {
    /// Who compiled it, for messages (`felix`).
    pub origin: String,
    pub classifier: Arc<policy_compiler::Classifier>,
    /// Its host endpoints' per-interface policy (bound to ports when the
    /// tables are built).
    pub host: Arc<crate::tables::host::HostPolicy>,
}

impl PartialEq for CompiledInput {
    fn eq(&self, o: &CompiledInput) -> bool {
        Arc::ptr_eq(&self.classifier, &o.classifier) && Arc::ptr_eq(&self.host, &o.host)
    }
}

impl Eq for CompiledInput {}

impl NodeState {
    /// A state with no ports, routes, services or policy, and the same
    /// defaults as the YAML config for the rest (one worker on core 0,
    /// batches of 64, a 2^20-entry connection table with Linux's timeouts,
    /// XDP fail-open with TCP 22 as failsafe).
    pub fn empty(origin: impl Into<String>) -> NodeState {
        NodeState {
            origin: origin.into(),
            ports: Vec::new(),
            workers: WorkerSpec {
                cores: vec![0],
                batch: 64,
                busy_poll: false,
                nice: WorkerSpec::default_nice(false),
            },
            routes: Vec::new(),
            neighbors: Vec::new(),
            services: Vec::new(),
            masquerade: Vec::new(),
            source_filters: Vec::new(),
            floating: Vec::new(),
            conntrack: ConntrackSpec {
                max_entries: 1 << 20,
                timeouts: Timeouts::default(),
                tcp_loose: true,
            },
            xdp: XdpSpec {
                fail_mode: FailMode::Open,
                failsafe: vec![(6, 22)],
                attach: AttachMode::Auto,
            },
            policy: PolicyInput::AllowAll,
            kernel: KernelSpec {
                routes: false,
                neighbors: false,
                addresses: false,
                unresolved: Unresolved::Drop,
            },
        }
    }

    /// Index of the port named `name`.
    pub fn port_index(&self, name: &str) -> Option<u16> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as u16)
    }

    /// The port names, in port order.
    pub fn port_names(&self) -> Vec<String> {
        self.ports.iter().map(|p| p.name.clone()).collect()
    }

    /// The distinct masquerade addresses, in rule order: slot `i` is the
    /// `i`th (the XDP program's masquerade-port bitmap is kept per slot).
    pub fn masquerade_slots(&self) -> Vec<(Family, u128)> {
        let mut out: Vec<(Family, u128)> = Vec::new();
        for m in &self.masquerade {
            let a = (m.family, m.addr);
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }
}
