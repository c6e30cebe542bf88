//! The ceiling of the peer comparison (`bench/bpf/xdp_fwd.bpf.c`, built by
//! `bench/build.rs`): an in-kernel XDP forwarder between two ports that
//! rewrites the MACs and redirects through a DEVMAP, nothing else. Used by
//! `peer-gen xdp-fwd`; not part of the data plane.

use anyhow::{Context, Result};
use aya::maps::{DevMapHash, HashMap, MapData};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;

#[repr(C, align(32))]
struct Aligned<B: ?Sized>(B);

/// The compiled forwarder (ELF), 32-byte aligned for the ELF parser.
static XDP_FWD: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/xdp_fwd.bpf.o")));

const PROG: &str = "sluice_xdp_fwd";

/// One direction: frames received on `ifindex` leave through
/// `egress_ifindex` with source MAC `src` (the egress port's) and
/// destination MAC `dst` (the next hop's).
#[derive(Clone, Copy, Debug)]
pub struct Way {
    pub ifindex: u32,
    pub egress_ifindex: u32,
    pub dst: [u8; 6],
    pub src: [u8; 6],
}

/// The loaded and attached forwarder; detached when dropped (or when the
/// process exits: the attachments are BPF links).
pub struct XdpFwd {
    _ebpf: Ebpf,
}

impl std::fmt::Debug for XdpFwd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpFwd").finish_non_exhaustive()
    }
}

impl XdpFwd {
    /// Loads the forwarder, fills its maps with `ways` and attaches it in
    /// driver mode to each way's ingress port.
    pub fn attach(ways: &[Way]) -> Result<XdpFwd> {
        let mut ebpf = Ebpf::load(&XDP_FWD.0).context("loading bench/bpf/xdp_fwd.bpf.o")?;
        {
            let mut ports: DevMapHash<&mut MapData> =
                DevMapHash::try_from(ebpf.map_mut("fwd_ports").context("no map fwd_ports")?)
                    .context("map fwd_ports")?;
            for w in ways {
                ports
                    .insert(w.ifindex, w.egress_ifindex, None, 0)
                    .with_context(|| format!("fwd_ports[{}] = {}", w.ifindex, w.egress_ifindex))?;
            }
        }
        {
            let mut macs: HashMap<&mut MapData, u32, [u8; 12]> =
                HashMap::try_from(ebpf.map_mut("fwd_macs").context("no map fwd_macs")?)
                    .context("map fwd_macs")?;
            for w in ways {
                let mut v = [0u8; 12];
                v[..6].copy_from_slice(&w.dst);
                v[6..].copy_from_slice(&w.src);
                macs.insert(w.ifindex, v, 0)
                    .with_context(|| format!("fwd_macs[{}]", w.ifindex))?;
            }
        }
        let prog: &mut Xdp = ebpf
            .program_mut(PROG)
            .with_context(|| format!("no program {PROG}"))?
            .try_into()
            .context("not an XDP program")?;
        prog.load().context("loading (verifier)")?;
        for w in ways {
            prog.attach_to_if_index(w.ifindex, XdpMode::Driver)
                .with_context(|| format!("attaching to ifindex {} (driver mode)", w.ifindex))?;
        }
        Ok(XdpFwd { _ebpf: ebpf })
    }
}
