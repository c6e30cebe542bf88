//! Loading the XDP redirector (`engine/bpf/redirect.bpf.c`, built by
//! `build.rs`) with aya, and attaching it to interfaces and detaching it.
//!
//! ## Attachment and the fail mode
//! Attachment uses a BPF link (kernel ≥ 5.9). With `xdp.fail_mode: open` the
//! link is held only by sluice's file descriptor: when sluice exits, however
//! it exits (SIGKILL included), the kernel detaches the program and the
//! interfaces carry traffic through the kernel again. With `closed` the
//! link is also pinned in bpffs (`/sys/fs/bpf/sluice/<netns>-<ifname>`):
//! after a SIGKILL the program stays attached with no socket bound and drops
//! everything sluice would have forwarded, while frames for the node
//! (ARP/ND, its addresses, the failsafe ports) still reach the kernel. The
//! next `sluice run` replaces the program in the pinned link atomically; a
//! clean exit, SIGINT/SIGTERM or a panic unpins and detaches. To release a
//! stale pin by hand: `rm /sys/fs/bpf/sluice/<netns>-<ifname>`.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;

use super::error::BpfError;
use super::maps::XdpMaps;
use crate::io::sys::abi::{XdpMd, BPF_FS_MAGIC};
use crate::io::sys::calls;
use crate::io::sys::error::SysError;

/// How to attach the program to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// Native (driver) mode where the driver has it, else generic.
    #[default]
    Auto,
    Native,
    Generic,
}

#[repr(C, align(32))]
struct Aligned<B: ?Sized>(B);

static OBJECT: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/redirect.bpf.o")));

/// The compiled XDP object (ELF), 32-byte aligned for the ELF parser.
pub fn object() -> &'static [u8] {
    &OBJECT.0
}

/// Name of the XDP program in the object.
pub const PROGRAM: &str = "sluice_redirect";

/// How the program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    Native,
    Generic,
}

impl Attached {
    pub fn name(self) -> &'static str {
        match self {
            Attached::Native => "native",
            Attached::Generic => "generic",
        }
    }
}

#[derive(Debug)]
struct Link {
    ifname: String,
    link: FdLink,
    pin: Option<PathBuf>,
}

/// The loaded program and its attachments. Dropping it detaches (and
/// unpins) everything.
#[derive(Debug)]
pub struct XdpProgram {
    ebpf: Ebpf,
    links: Vec<Link>,
    /// Interfaces where `auto` fell back to generic mode, with why native
    /// attachment failed.
    fallbacks: Vec<(String, String)>,
}

/// Loads the program and takes typed handles on its maps.
pub fn load() -> Result<(XdpProgram, XdpMaps), BpfError> {
    let mut ebpf = Ebpf::load(object())?;
    {
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or(BpfError::Missing("program sluice_redirect"))?
            .try_into()?;
        prog.load()?;
    }
    let maps = XdpMaps::from_ebpf(&mut ebpf)?;
    Ok((
        XdpProgram {
            ebpf,
            links: Vec::new(),
            fallbacks: Vec::new(),
        },
        maps,
    ))
}

/// The pin path of `ifname`'s link under `dir`, unique per network
/// namespace.
pub fn pin_path(dir: &Path, ifname: &str) -> PathBuf {
    let ns = std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0);
    dir.join(format!("{ns}-{ifname}"))
}

/// Makes sure `dir` is on a bpffs (mounting one at `/sys/fs/bpf` if that is
/// where `dir` points and nothing is mounted there) and exists. Returns a
/// warning when pins there will not outlive this process (a private mount
/// namespace, as under `ip netns exec`).
pub fn prepare_pin_dir(dir: &Path) -> Result<Option<String>, BpfError> {
    let bpffs = Path::new("/sys/fs/bpf");
    let on_bpffs = |p: &Path| calls::fs_magic(p).is_ok_and(|m| m == BPF_FS_MAGIC);
    if dir.starts_with(bpffs) && !on_bpffs(bpffs) {
        calls::mount_bpffs(bpffs)?;
    }
    std::fs::create_dir_all(dir).map_err(|source| {
        BpfError::Sys(SysError {
            call: "mkdir(pin dir)",
            source,
        })
    })?;
    if !on_bpffs(dir) {
        return Err(BpfError::Sys(SysError {
            call: "statfs(pin dir)",
            source: std::io::Error::other(format!("{} is not on a bpffs", dir.display())),
        }));
    }
    let mine = std::fs::metadata("/proc/self/ns/mnt").map(|m| m.ino()).ok();
    let init = std::fs::metadata("/proc/1/ns/mnt").map(|m| m.ino()).ok();
    Ok((mine.is_some() && init.is_some() && mine != init).then(|| {
        "xdp.fail_mode closed: sluice runs in a private mount namespace (ip netns exec?); \
         its bpffs pins die with it, so after a crash the program is detached (fail open). \
         Use `sluice run --netns NAME` instead to keep the pins in the host's bpffs"
            .to_string()
    }))
}

impl XdpProgram {
    fn prog(&mut self) -> Result<&mut Xdp, BpfError> {
        Ok(self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(BpfError::Missing("program sluice_redirect"))?
            .try_into()?)
    }

    /// Attaches to `ifname` (`ifindex`) in `mode`; with `pin`, also pins
    /// the link there (fail closed), replacing a program a previous run left
    /// pinned at that path.
    pub fn attach(
        &mut self,
        ifname: &str,
        ifindex: u32,
        mode: AttachMode,
        pin: Option<&Path>,
    ) -> Result<Attached, BpfError> {
        // A link a previous (killed) run left pinned: take it over.
        let stale = pin
            .filter(|p| p.exists())
            .and_then(|p| PinnedLink::from_pin(p).ok());
        let mut fell_back = None;
        let prog = self.prog()?;
        let (id, attached) = if let Some(old) = stale {
            let link = aya::programs::xdp::XdpLink::try_from(FdLink::from(old)).map_err(|e| {
                BpfError::Pin {
                    ifname: ifname.to_string(),
                    path: pin.map(Path::to_path_buf).unwrap_or_default(),
                    msg: format!("not an XDP link: {e}"),
                }
            })?;
            let id = prog.attach_to_link(link)?;
            // The mode is the old link's; sluice always wrote it.
            (id, Attached::Native)
        } else {
            let try_mode = |prog: &mut Xdp, m: XdpMode| prog.attach_to_if_index(ifindex, m);
            let hint = " (is another XDP program attached? `ip link show` tells)";
            match mode {
                AttachMode::Native => (
                    try_mode(prog, XdpMode::Driver).map_err(|source| BpfError::Attach {
                        ifname: ifname.to_string(),
                        mode: "native",
                        source: Box::new(source),
                        hint,
                    })?,
                    Attached::Native,
                ),
                AttachMode::Generic => (
                    try_mode(prog, XdpMode::Skb).map_err(|source| BpfError::Attach {
                        ifname: ifname.to_string(),
                        mode: "generic",
                        source: Box::new(source),
                        hint,
                    })?,
                    Attached::Generic,
                ),
                AttachMode::Auto => match try_mode(prog, XdpMode::Driver) {
                    Ok(id) => (id, Attached::Native),
                    Err(native) => (
                        try_mode(prog, XdpMode::Skb).map_err(|source| BpfError::Attach {
                            ifname: ifname.to_string(),
                            mode: "auto: native failed, then generic",
                            source: Box::new(source),
                            hint,
                        })?,
                        {
                            fell_back = Some(native.to_string());
                            Attached::Generic
                        },
                    ),
                },
            }
        };
        let link = prog.take_link(id)?;
        if let Some(why) = fell_back {
            self.fallbacks.push((ifname.to_string(), why));
        }
        let fd = FdLink::try_from(link).map_err(|e| BpfError::Pin {
            ifname: ifname.to_string(),
            path: PathBuf::new(),
            msg: format!("the kernel attached without a BPF link ({e}); sluice needs Linux >= 5.9"),
        })?;
        let mut held = Link {
            ifname: ifname.to_string(),
            link: fd,
            pin: None,
        };
        if let Some(p) = pin {
            if !p.exists() {
                let pinned = held.link.pin(p).map_err(|e| BpfError::Pin {
                    ifname: ifname.to_string(),
                    path: p.to_path_buf(),
                    msg: e.to_string(),
                })?;
                held = Link {
                    ifname: ifname.to_string(),
                    link: FdLink::from(pinned),
                    pin: Some(p.to_path_buf()),
                };
            } else {
                held.pin = Some(p.to_path_buf());
            }
        }
        self.links.push(held);
        Ok(attached)
    }

    /// Runs the program once over `frame` (`BPF_PROG_TEST_RUN`) as if it
    /// arrived on `ifindex` (default: loopback) queue `queue`; returns the
    /// XDP action (1 drop, 2 pass, 4 redirect). For tests and `explain`.
    pub fn test_run(
        &mut self,
        frame: &[u8],
        ifindex: Option<u32>,
        queue: u32,
    ) -> Result<u32, BpfError> {
        let prog = self.prog()?;
        let fd = prog.fd()?;
        let ctx = ifindex.map(|i| XdpMd {
            ingress_ifindex: i,
            rx_queue_index: queue,
            ..Default::default()
        });
        Ok(calls::bpf_xdp_test_run(fd.as_fd(), frame, ctx.as_ref())?)
    }

    /// Interfaces attached so far.
    pub fn attached(&self) -> Vec<String> {
        self.links.iter().map(|l| l.ifname.clone()).collect()
    }

    /// The interfaces where `auto` attachment fell back to generic mode,
    /// each with the reason native attachment failed.
    pub fn fallbacks(&self) -> &[(String, String)] {
        &self.fallbacks
    }

    /// Pin files of the attached links (for the panic hook).
    pub fn pins(&self) -> Vec<PathBuf> {
        self.links.iter().filter_map(|l| l.pin.clone()).collect()
    }

    /// Detaches from `ifname` (unpinning first); false if it was not
    /// attached there. An interface already deleted lost its link with it:
    /// this then only closes sluice's descriptor and removes the pin.
    pub fn detach(&mut self, ifname: &str) -> bool {
        let Some(i) = self.links.iter().position(|l| l.ifname == ifname) else {
            return false;
        };
        let l = self.links.remove(i);
        if let Some(p) = &l.pin {
            let _ = std::fs::remove_file(p);
        }
        drop(l.link);
        self.fallbacks.retain(|(f, _)| f != ifname);
        true
    }

    /// Detaches from every interface (unpinning first).
    pub fn detach_all(&mut self) {
        for l in self.links.drain(..) {
            if let Some(p) = &l.pin {
                let _ = std::fs::remove_file(p);
            }
            drop(l.link);
        }
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        self.detach_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_has_the_program_and_maps() {
        let o = object();
        assert_eq!(&o[..4], b"\x7fELF");
        assert_eq!(o.as_ptr() as usize % 32, 0);
        let has = |s: &[u8]| o.windows(s.len()).any(|w| w == s);
        for name in [
            "sluice_redirect",
            "sl_xsks",
            "sl_ports",
            "sl_addrs",
            "sl_nodeports",
            "sl_failsafe",
            "sl_nat",
            "sl_config",
            "sl_counters",
        ] {
            assert!(has(name.as_bytes()), "{name}");
        }
    }
}
