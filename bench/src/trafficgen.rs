//! A benchmark traffic generator (`bench/bpf/trafficgen.bpf.c`, built by
//! `bench/build.rs`): an XDP program run in live-frames mode
//! (`BPF_PROG_TEST_RUN`) that sends copies of a template UDP frame out of an
//! interface. Used by `peer-gen tx --engine xdp`; not part of the data
//! plane. Unsafe only to declare the program's config struct plain data for
//! aya ([`aya::Pod`]).
#![allow(unsafe_code)]

use std::os::fd::AsFd;

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;
use engine::io::bpf::BpfError;
use engine::io::sys;

#[repr(C, align(32))]
struct Aligned<B: ?Sized>(B);

/// The compiled generator (ELF), 32-byte aligned for the ELF parser.
static TRAFFICGEN: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/trafficgen.bpf.o"
)));

/// Wraps a map error with the map's name.
fn map_err(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> BpfError {
    move |source| BpfError::Map {
        map,
        source: Box::new(source),
    }
}

/// `struct gen_config` of `bench/bpf/trafficgen.bpf.c`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct GenConfig {
    target_ifindex: u32,
    flows: u32,
    base_port: u32,
    pad: u32,
}

// SAFETY: repr(C), four u32, no padding.
unsafe impl aya::Pod for GenConfig {}

/// The loaded generator: sends copies of a template UDP frame out of an
/// interface, rotating the source port over `flows` values, at the rate the
/// kernel can build frames.
pub struct TrafficGen {
    ebpf: Ebpf,
    count: PerCpuArray<MapData, u64>,
}

impl std::fmt::Debug for TrafficGen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrafficGen").finish_non_exhaustive()
    }
}

impl TrafficGen {
    /// Loads the generator sending out of `target_ifindex`.
    pub fn load(target_ifindex: u32, flows: u32, base_port: u16) -> Result<TrafficGen, BpfError> {
        let mut ebpf = Ebpf::load(&TRAFFICGEN.0)?;
        {
            let prog: &mut Xdp = ebpf
                .program_mut("sluice_trafficgen")
                .ok_or(BpfError::Missing("program sluice_trafficgen"))?
                .try_into()?;
            prog.load()?;
        }
        let mut cfg: Array<MapData, GenConfig> = Array::try_from(
            ebpf.take_map("gen_cfg")
                .ok_or(BpfError::Missing("gen_cfg"))?,
        )
        .map_err(map_err("gen_cfg"))?;
        cfg.set(
            0,
            GenConfig {
                target_ifindex,
                flows,
                base_port: u32::from(base_port),
                pad: 0,
            },
            0,
        )
        .map_err(map_err("gen_cfg"))?;
        let count = PerCpuArray::try_from(
            ebpf.take_map("gen_count")
                .ok_or(BpfError::Missing("gen_count"))?,
        )
        .map_err(map_err("gen_count"))?;
        Ok(TrafficGen { ebpf, count })
    }

    /// Attaches the generator, in driver mode, to `ifindex`: an interface
    /// that stays down and never receives. `BPF_PROG_RUN` installs an XDP
    /// program in the kernel's XDP dispatcher for the length of each call
    /// and takes it out again, and each change waits for an RCU grace period
    /// (`synchronize_rcu`, ~10 ms on this VM), so an unheld generator sends
    /// in bursts with the core idle between calls. While the program is
    /// attached somewhere the dispatcher only counts users: calls cost
    /// microseconds, and the generator can pace in small calls.
    pub fn hold(&mut self, ifindex: u32) -> Result<(), BpfError> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut("sluice_trafficgen")
            .ok_or(BpfError::Missing("program sluice_trafficgen"))?
            .try_into()?;
        prog.attach_to_if_index(ifindex, XdpMode::Driver)?;
        Ok(())
    }

    /// Sends `count` copies of `frame` (which must be an Ethernet + IPv4 +
    /// UDP frame) as if received on `ingress_ifindex` queue 0, flushed to
    /// the device every `batch` frames (1..=256).
    pub fn run(
        &mut self,
        frame: &[u8],
        ingress_ifindex: u32,
        count: u32,
        batch: u32,
    ) -> Result<(), BpfError> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut("sluice_trafficgen")
            .ok_or(BpfError::Missing("program sluice_trafficgen"))?
            .try_into()?;
        let fd = prog.fd()?;
        let ctx = sys::XdpMd {
            ingress_ifindex,
            ..Default::default()
        };
        sys::bpf_xdp_test_run_with(
            fd.as_fd(),
            frame,
            Some(&ctx),
            count,
            sys::BPF_F_TEST_XDP_LIVE_FRAMES,
            batch.clamp(1, 256),
        )?;
        Ok(())
    }

    /// Frames built so far (summed over CPUs).
    pub fn built(&self) -> Result<u64, BpfError> {
        let v = self.count.get(&0, 0).map_err(map_err("gen_count"))?;
        Ok(v.iter().sum())
    }
}
