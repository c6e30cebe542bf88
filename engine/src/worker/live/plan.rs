//! Planning a live start: the desired state's ports resolved on this
//! machine (interface index, MAC, queues), queues spread over the workers,
//! cores checked, and the errors that say why a state does not fit.

use std::path::PathBuf;

use thiserror::Error;

use crate::io::bpf::{self, BpfError};
use crate::io::sys::{self, SysError};
use crate::io::xsk::XskError;
use crate::pipeline::PortId;
use crate::state::{NodeState, PortSpec, QueueSel, XskMode};
use crate::wire::Mac;

/// Why the live data plane could not start or run.
#[derive(Debug, Error)]
pub enum LiveError {
    /// The config does not fit the machine (exit 2).
    #[error("{file}: {path}: {msg}")]
    Config {
        file: String,
        path: String,
        msg: String,
    },
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error("{what}: {source}")]
    Xsk { what: String, source: XskError },
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("worker {0} failed: {1}")]
    Worker(usize, String),
    /// A port could not be added while running.
    #[error("port {name}: {msg}")]
    Port { name: String, msg: String },
}

impl LiveError {
    /// Exit status: 2 for a config that does not fit, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            LiveError::Config { .. } => 2,
            _ => 1,
        }
    }
}

/// Sizing and behaviour knobs not in the config file.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Entries per ring (fill, completion, RX, TX), a power of two.
    pub ring_size: u32,
    /// UMEM chunk size (2048 or 4096).
    pub frame_size: u32,
    /// Back the UMEM with huge pages when available.
    pub hugepages: bool,
    /// Where fail-closed links are pinned.
    pub pin_dir: PathBuf,
    /// Idle sleep in `poll`, milliseconds.
    pub idle_ms: i32,
    /// Frames each worker's UMEM holds beyond what its sockets at start
    /// need, for the sockets of ports added while running.
    pub spare_frames: u32,
    /// Entries per ring of a socket opened for a port added while running
    /// (at most `ring_size`).
    pub added_ring_size: u32,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            ring_size: 8192,
            frame_size: 2048,
            hugepages: false,
            pin_dir: PathBuf::from("/sys/fs/bpf/sluice"),
            idle_ms: 1,
            spare_frames: 8192,
            added_ring_size: 1024,
        }
    }
}

/// A configured port resolved on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortPlan {
    pub port: PortId,
    pub name: String,
    pub ifname: String,
    pub ifindex: u32,
    pub mac: Mac,
    /// Queues sluice binds (config `queues`, `all` = every rx queue).
    pub queues: Vec<u32>,
    pub mode: XskMode,
    /// The interface's MTU.
    pub mtu: u32,
}

pub(super) fn plan_err(
    state: &NodeState,
    path: impl Into<String>,
    msg: impl Into<String>,
) -> LiveError {
    LiveError::Config {
        file: state.origin.clone(),
        path: path.into(),
        msg: msg.into(),
    }
}

/// Resolves every port's interface: index, MAC, queues.
pub fn plan_ports(state: &NodeState) -> Result<Vec<PortPlan>, LiveError> {
    let mut out: Vec<PortPlan> = Vec::new();
    for (i, p) in state.ports.iter().enumerate() {
        let plan = plan_port(&state.origin, &format!("ports[{i}]"), i as PortId, p)?;
        if out.iter().any(|o| o.ifindex == plan.ifindex) {
            return Err(plan_err(
                state,
                format!("ports[{i}].interface"),
                format!("{} is already another port", plan.ifname),
            ));
        }
        out.push(plan);
    }
    Ok(out)
}

/// Resolves one port's interface as port number `number`; errors name
/// `origin` and `at` (`ports[3]`, or the port added while running).
pub fn plan_port(
    origin: &str,
    at: &str,
    number: PortId,
    p: &PortSpec,
) -> Result<PortPlan, LiveError> {
    let err = |key: &str, msg: String| LiveError::Config {
        file: origin.to_string(),
        path: format!("{at}.{key}"),
        msg,
    };
    let ifname = p.interface.clone().ok_or_else(|| {
        err(
            "interface",
            "required for run (the interface this port is)".into(),
        )
    })?;
    let bad = |e: SysError| err("interface", format!("{ifname:?}: {e}"));
    let ifindex = sys::if_nametoindex(&ifname).map_err(bad)?;
    let mac = sys::interface_mac(&ifname).map_err(bad)?;
    let mtu = sys::interface_mtu(&ifname).map_err(bad)?;
    let n = sys::interface_rx_queues(&ifname).map_err(bad)?;
    let queues = match &p.queues {
        QueueSel::All => (0..n).collect(),
        QueueSel::List(l) => {
            for q in l {
                if *q >= n {
                    return Err(err(
                        "queues",
                        format!("{ifname} has {n} rx queue(s); queue {q} does not exist"),
                    ));
                }
            }
            l.clone()
        }
    };
    if queues.is_empty() {
        return Err(err("queues", "at least one queue".into()));
    }
    if let Some(q) = queues.iter().find(|&&q| q >= bpf::MAX_QUEUES) {
        return Err(err(
            "queues",
            format!(
                "queue {q}: the XDP program handles queues 0..{}",
                bpf::MAX_QUEUES
            ),
        ));
    }
    Ok(PortPlan {
        port: number,
        name: p.name.clone(),
        ifname,
        ifindex,
        mac,
        queues,
        mode: p.mode,
        mtu,
    })
}

/// Bytes of link-layer header a frame may carry beyond the MTU: Ethernet
/// and two VLAN tags.
pub const LINK_OVERHEAD: u32 = 14 + 2 * 4;

/// Refuses a port whose MTU sluice cannot serve: every frame the interface
/// may receive (MTU plus link headers) must fit what sluice takes in one
/// packet — `limit` bytes: [`super::jumbo::MAX_PACKET`] with AF_XDP
/// multi-buffer (a packet over several UMEM frames), one UMEM frame
/// (`frame_size`) where the kernel refused it — or the kernel drops the
/// larger ones before sluice sees them, uncounted by it.
pub fn check_mtus(
    state: &NodeState,
    ports: &[PortPlan],
    frame_size: u32,
    multi_buffer: bool,
) -> Result<(), LiveError> {
    let limit = if multi_buffer {
        super::jumbo::MAX_PACKET as u32
    } else {
        frame_size
    };
    for p in ports {
        let need = p.mtu.saturating_add(LINK_OVERHEAD);
        if need > limit {
            let why = if multi_buffer {
                format!("the longest packet sluice takes is {limit} bytes")
            } else {
                format!(
                    "they do not fit a {frame_size}-byte UMEM frame, and this kernel or driver \
                     refused AF_XDP multi-buffer (XDP_USE_SG)"
                )
            };
            let hint = if !multi_buffer && need <= 4096 && frame_size < 4096 {
                "run with `--frame-size 4096`".to_string()
            } else {
                format!(
                    "lower its MTU to {} or less (`ip link set {} mtu ...`)",
                    limit - LINK_OVERHEAD,
                    p.ifname
                )
            };
            return Err(plan_err(
                state,
                format!("ports[{}].interface", p.port),
                format!(
                    "{} has MTU {}: its frames (up to {need} bytes with link headers) would be \
                     lost: {why}; {hint}",
                    p.ifname, p.mtu
                ),
            ));
        }
    }
    Ok(())
}

/// The sockets of each worker: queue `queues[k]` of a port goes to worker
/// `k % workers`. Every worker needs a queue on every port (it transmits
/// there), so a port needs at least as many queues as there are workers.
pub fn assign_queues(
    state: &NodeState,
    ports: &[PortPlan],
    workers: usize,
) -> Result<Vec<Vec<(PortId, u32)>>, LiveError> {
    let mut out = vec![Vec::new(); workers];
    for p in ports {
        if p.queues.len() < workers {
            return Err(plan_err(
                state,
                format!("ports[{}].queues", p.port),
                format!(
                    "{} has {} queue(s) for {} workers (workers.cores); every worker needs \
                     a queue on every port: add queues (veth: numrxqueues/numtxqueues, \
                     NICs: ethtool -L) or use fewer cores",
                    p.ifname,
                    p.queues.len(),
                    workers
                ),
            ));
        }
        for (k, q) in p.queues.iter().enumerate() {
            out[k % workers].push((p.port, *q));
        }
    }
    Ok(out)
}

/// Resolves the state's worker cores to CPU ids.
pub(super) fn resolve_cores(state: &NodeState) -> Result<Vec<core_affinity::CoreId>, LiveError> {
    let avail = core_affinity::get_core_ids().unwrap_or_default();
    state
        .workers
        .cores
        .iter()
        .enumerate()
        .map(|(i, c)| {
            avail.iter().find(|a| a.id == *c).copied().ok_or_else(|| {
                plan_err(
                    state,
                    format!("workers.cores[{i}]"),
                    format!(
                        "core {c} is not available to this process (have {:?})",
                        avail.iter().map(|a| a.id).collect::<Vec<_>>()
                    ),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state with ports `(name, interface, queues)`.
    fn state(ports: &[(&str, Option<&str>, QueueSel)]) -> NodeState {
        let mut s = NodeState::empty("t.yaml");
        s.ports = ports
            .iter()
            .map(|(n, i, q)| crate::state::PortSpec {
                name: n.to_string(),
                interface: i.map(str::to_string),
                queues: q.clone(),
                mode: XskMode::Auto,
                mac: None,
                addresses: Vec::new(),
                zone: 0,
            })
            .collect();
        s
    }

    fn plan(port: PortId, queues: Vec<u32>) -> PortPlan {
        PortPlan {
            port,
            name: format!("p{port}"),
            ifname: format!("if{port}"),
            ifindex: u32::from(port) + 10,
            mac: [2, 0, 0, 0, 0, port as u8],
            queues,
            mode: XskMode::Auto,
            mtu: 1500,
        }
    }

    #[test]
    fn queues_spread_over_workers() {
        let c = state(&[("a", None, QueueSel::All), ("b", None, QueueSel::All)]);
        let ports = vec![plan(0, vec![0, 1, 2, 3]), plan(1, vec![0, 1])];
        let a = assign_queues(&c, &ports, 2).unwrap();
        assert_eq!(a[0], vec![(0, 0), (0, 2), (1, 0)]);
        assert_eq!(a[1], vec![(0, 1), (0, 3), (1, 1)]);
        let e = assign_queues(&c, &ports, 3).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("ports[1].queues"), "{e}");
    }

    #[test]
    fn run_needs_interfaces() {
        let c = state(&[("a", None, QueueSel::All)]);
        let e = plan_ports(&c).unwrap_err();
        assert!(e.to_string().contains("ports[0].interface"), "{e}");
        let c = state(&[("a", Some("no-such-if9"), QueueSel::All)]);
        let e = plan_ports(&c).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("no-such-if9"), "{e}");
        let c = state(&[("a", Some("lo"), QueueSel::All)]);
        let p = plan_ports(&c).unwrap();
        assert_eq!(p[0].ifindex, 1);
        assert!(!p[0].queues.is_empty());
        let c = state(&[("a", Some("lo"), QueueSel::List(vec![99]))]);
        assert!(plan_ports(&c).is_err());
    }

    #[test]
    fn mtus_that_do_not_fit_are_refused() {
        let c = state(&[("a", None, QueueSel::All)]);
        let mut p = plan(0, vec![0]);
        assert!(check_mtus(&c, &[p.clone()], 2048, false).is_ok());
        p.mtu = 3000;
        let e = check_mtus(&c, &[p.clone()], 2048, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ports[0].interface") && e.contains("if0 has MTU 3000"),
            "{e}"
        );
        assert!(
            e.contains("XDP_USE_SG") && e.contains("--frame-size 4096"),
            "{e}"
        );
        assert!(check_mtus(&c, &[p.clone()], 4096, false).is_ok());
        // Multi-buffer: jumbo frames over several UMEM frames.
        p.mtu = 9000;
        assert!(check_mtus(&c, &[p.clone()], 2048, true).is_ok());
        let e = check_mtus(&c, &[p.clone()], 4096, false).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("lower its MTU to 4074"), "{e}");
        p.mtu = 16_363;
        let e = check_mtus(&c, &[p], 2048, true).unwrap_err().to_string();
        assert!(e.contains("lower its MTU to 16362"), "{e}");
    }
}
