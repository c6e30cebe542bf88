//! The system calls of the live data plane, each behind a typed function
//! whose error names the call: AF_XDP sockets and their options, ring
//! wakeups, `poll`, BPF test runs, interface queries, network namespaces and
//! bpffs. Every pointer handed to the kernel points at a mirror of
//! [`super::abi`] or a live buffer of the size passed.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::abi::{
    zeroed, BpfAttrTestRun, EthtoolChannels, IfReq, IfReqU, KernelPod, SockaddrXdp, XdpMd, AF_XDP,
    BPF_PROG_TEST_RUN, ETHTOOL_GCHANNELS, SIOCETHTOOL, SIOCGIFHWADDR, SIOCGIFMTU,
};
use super::error::{check, SysError};

// ---------------------------------------------------------------------------
// Sockets.

/// A new AF_XDP socket.
pub fn xsk_socket() -> Result<OwnedFd, SysError> {
    // SAFETY: socket(2) takes no pointers; the returned descriptor is owned
    // by nobody else.
    let fd = check("socket(AF_XDP)", unsafe {
        libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: `fd` is a fresh descriptor we exclusively own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, level, name, &v)`.
pub fn setsockopt<T: KernelPod>(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    v: &T,
    call: &'static str,
) -> Result<(), SysError> {
    // SAFETY: `v` points to a live, initialised T of the given size; the
    // kernel only reads it.
    check(call, unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// `getsockopt(fd, level, name)`, requiring the kernel to fill all of `T`.
pub fn getsockopt<T: KernelPod>(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    call: &'static str,
) -> Result<T, SysError> {
    let mut v: T = zeroed();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` is a writable T and `len` its size; the kernel writes at
    // most `len` bytes and any bytes are a valid T (KernelPod).
    check(call, unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut T).cast(),
            &mut len,
        )
    })?;
    if len as usize != std::mem::size_of::<T>() {
        return Err(SysError {
            call,
            source: io::Error::other(format!(
                "kernel returned {len} bytes, expected {} (kernel too old?)",
                std::mem::size_of::<T>()
            )),
        });
    }
    Ok(v)
}

/// Binds an AF_XDP socket.
pub fn bind_xdp(fd: BorrowedFd<'_>, sa: &SockaddrXdp) -> Result<(), SysError> {
    // SAFETY: `sa` is a valid sockaddr_xdp of the size passed; the kernel
    // only reads it.
    check("bind(AF_XDP)", unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (sa as *const SockaddrXdp).cast(),
            std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// Result of a wakeup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kick {
    /// The kernel did the work.
    Done,
    /// The kernel is busy or out of budget (EAGAIN, EBUSY, ENOBUFS): try
    /// again next batch.
    Again,
}

fn kick_result(call: &'static str, ret: isize) -> Result<Kick, SysError> {
    if ret >= 0 {
        return Ok(Kick::Done);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN | libc::EINTR) => {
            Ok(Kick::Again)
        }
        _ => Err(SysError { call, source: e }),
    }
}

/// Asks the kernel to transmit what is on the TX ring
/// (`sendto(fd, NULL, 0, MSG_DONTWAIT)`).
pub fn kick_tx(fd: BorrowedFd<'_>) -> Result<Kick, SysError> {
    // SAFETY: a zero-length send with null buffer and address: the kernel
    // dereferences nothing.
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    kick_result("sendto(AF_XDP tx wakeup)", r)
}

/// Asks the kernel to process the fill ring / drive busy polling
/// (`recvfrom(fd, NULL, 0, MSG_DONTWAIT)`).
pub fn kick_rx(fd: BorrowedFd<'_>) -> Result<Kick, SysError> {
    // SAFETY: a zero-length receive with null buffer and address.
    let r = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    kick_result("recvfrom(AF_XDP rx wakeup)", r)
}

/// A set of descriptors to wait on for input, built once per worker.
#[derive(Debug)]
pub struct PollSet {
    fds: Vec<libc::pollfd>,
}

impl PollSet {
    /// Waits on `fds` (which must outlive the set's use: the workers own both).
    pub fn new(fds: &[BorrowedFd<'_>]) -> PollSet {
        PollSet {
            fds: fds
                .iter()
                .map(|f| libc::pollfd {
                    fd: f.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect(),
        }
    }

    /// Positions (in the order given to [`PollSet::new`]) whose last wait
    /// reported an error or hang-up rather than input.
    pub fn failed(&self) -> impl Iterator<Item = usize> + '_ {
        self.fds
            .iter()
            .enumerate()
            .filter(|(_, p)| p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0)
            .map(|(i, _)| i)
    }

    /// Waits up to `timeout_ms` for input on any; returns how many are ready.
    pub fn wait(&mut self, timeout_ms: i32) -> Result<usize, SysError> {
        // SAFETY: `fds` is a valid array of `len` pollfd structs the kernel
        // may write `revents` into.
        let r = unsafe {
            libc::poll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                timeout_ms,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(0);
            }
            return Err(SysError {
                call: "poll",
                source: e,
            });
        }
        Ok(r as usize)
    }
}

// ---------------------------------------------------------------------------
// BPF test runs.

/// Runs the XDP program `prog` over copies of `frame`
/// (`BPF_PROG_TEST_RUN`) `repeat` times; returns the last XDP action. `ctx`
/// sets the ingress interface and rx queue (default: loopback, queue 0).
/// With [`super::abi::BPF_F_TEST_XDP_LIVE_FRAMES`] in `flags` the frames are real:
/// redirected or transmitted ones leave through the target device.
pub fn bpf_xdp_test_run_with(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ctx: Option<&XdpMd>,
    repeat: u32,
    flags: u32,
    batch_size: u32,
) -> Result<u32, SysError> {
    let c = ctx.map(|c| XdpMd {
        data: 0,
        data_end: frame.len() as u32,
        data_meta: 0,
        ..*c
    });
    let mut attr = BpfAttrTestRun {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        flags,
        batch_size,
        ..Default::default()
    };
    if let Some(c) = &c {
        attr.ctx_in = (c as *const XdpMd) as u64;
        attr.ctx_size_in = std::mem::size_of::<XdpMd>() as u32;
    }
    // SAFETY: `attr` points at `frame` and (optionally) `c`, both alive for
    // the call; the kernel only reads them (data_out and ctx_out are null).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut BpfAttrTestRun,
            std::mem::size_of::<BpfAttrTestRun>(),
        )
    };
    if r < 0 {
        return Err(SysError::last("bpf(BPF_PROG_TEST_RUN)"));
    }
    Ok(attr.retval)
}

/// Runs the XDP program `prog` once over a copy of `frame`; returns the
/// XDP action.
pub fn bpf_xdp_test_run(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ctx: Option<&XdpMd>,
) -> Result<u32, SysError> {
    bpf_xdp_test_run_with(prog, frame, ctx, 1, 0, 0)
}

// ---------------------------------------------------------------------------
// Interfaces.

fn ifname(name: &str) -> Result<[u8; 16], SysError> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 15 || b.contains(&0) {
        return Err(SysError {
            call: "interface name",
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not an interface name"),
            ),
        });
    }
    let mut out = [0u8; 16];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

// ---------------------------------------------------------------------------
// Threads.

/// Sets the calling thread's nice value (`setpriority(PRIO_PROCESS, tid)`:
/// on Linux the nice value is per thread). Lowering it below 0 needs
/// `CAP_SYS_NICE`.
pub fn set_thread_nice(nice: i32) -> Result<(), SysError> {
    // SAFETY: gettid(2) and setpriority(2) take no pointers.
    let r = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    check("setpriority", r).map(|_| ())
}

/// The interface index of `name` in the current network namespace.
pub fn if_nametoindex(name: &str) -> Result<u32, SysError> {
    let c = CString::new(name).map_err(|_| SysError {
        call: "if_nametoindex",
        source: io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"),
    })?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(SysError::last("if_nametoindex"));
    }
    Ok(i)
}

fn ioctl_socket() -> Result<OwnedFd, SysError> {
    // SAFETY: socket(2) takes no pointers.
    let fd = check("socket(AF_INET, ioctl)", unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The hardware (MAC) address of `name` (`SIOCGIFHWADDR`).
pub fn interface_mac(name: &str) -> Result<[u8; 6], SysError> {
    let s = ioctl_socket()?;
    let mut req = IfReq {
        name: ifname(name)?,
        ifru: IfReqU { _pad: [0; 24] },
    };
    // SAFETY: SIOCGIFHWADDR reads the name and writes a sockaddr into the
    // union of our correctly sized ifreq.
    check("ioctl(SIOCGIFHWADDR)", unsafe {
        libc::ioctl(s.as_raw_fd(), SIOCGIFHWADDR as _, &mut req as *mut IfReq)
    })?;
    // SAFETY: the kernel filled the `hwaddr` member.
    let sa = unsafe { req.ifru.hwaddr };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *d as u8;
    }
    Ok(mac)
}

/// The MTU of `name` (`SIOCGIFMTU`), in the caller's network namespace.
pub fn interface_mtu(name: &str) -> Result<u32, SysError> {
    let s = ioctl_socket()?;
    let mut req = IfReq {
        name: ifname(name)?,
        ifru: IfReqU { _pad: [0; 24] },
    };
    // SAFETY: SIOCGIFMTU reads the name and writes an int into the union
    // of our correctly sized ifreq.
    check("ioctl(SIOCGIFMTU)", unsafe {
        libc::ioctl(s.as_raw_fd(), SIOCGIFMTU as _, &mut req as *mut IfReq)
    })?;
    // SAFETY: the kernel filled the `mtu` member.
    let mtu = unsafe { req.ifru.mtu };
    Ok(u32::try_from(mtu).unwrap_or(0))
}

/// Number of receive queues of `name` (`ETHTOOL_GCHANNELS`: combined plus
/// rx-only channels; at least 1).
pub fn interface_rx_queues(name: &str) -> Result<u32, SysError> {
    let s = ioctl_socket()?;
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    let mut req = IfReq {
        name: ifname(name)?,
        ifru: IfReqU {
            data: (&mut ch as *mut EthtoolChannels).cast(),
        },
    };
    // SAFETY: SIOCETHTOOL with ETHTOOL_GCHANNELS reads the name and writes
    // an ethtool_channels through the data pointer, which points to our
    // live, correctly sized struct.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), SIOCETHTOOL as _, &mut req as *mut IfReq) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
            return Ok(1);
        }
        return Err(SysError {
            call: "ioctl(SIOCETHTOOL, ETHTOOL_GCHANNELS)",
            source: e,
        });
    }
    Ok((ch.combined_count + ch.rx_count).max(1))
}

// ---------------------------------------------------------------------------
// Namespaces and file systems.

/// Moves the calling thread into the network namespace at `path` (e.g.
/// `/run/netns/NAME`). Threads spawned afterwards inherit it.
pub fn enter_netns(path: &Path) -> Result<(), SysError> {
    let f = File::open(path).map_err(|source| SysError {
        call: "open(netns)",
        source,
    })?;
    // SAFETY: setns(2) takes a descriptor we hold open for the call.
    check("setns(CLONE_NEWNET)", unsafe {
        libc::setns(f.as_fd().as_raw_fd(), libc::CLONE_NEWNET)
    })
    .map(|_| ())
}

/// The file system magic number of `path` (`statfs`).
pub fn fs_magic(path: &Path) -> Result<u64, SysError> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| SysError {
        call: "statfs",
        source: io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"),
    })?;
    // SAFETY: statfs is plain data; zeroed is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a writable statfs.
    check("statfs", unsafe { libc::statfs(c.as_ptr(), &mut st) })?;
    Ok(st.f_type as u64)
}

/// Mounts a bpffs at `path`.
pub fn mount_bpffs(path: &Path) -> Result<(), SysError> {
    let target = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| SysError {
        call: "mount(bpf)",
        source: io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"),
    })?;
    let fstype = c"bpf";
    // SAFETY: all pointers are valid NUL-terminated strings; no data.
    check("mount(bpf)", unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    })
    .map(|_| ())
}

// ---------------------------------------------------------------------------
// Inherited descriptors.

/// Takes ownership of descriptor `fd` inherited from the parent process
/// (Felix starts its data-plane driver with pipes on 3 and 4), after
/// checking it is open, and marks it close-on-exec. Each descriptor
/// (0..64) is handed out at most once per process.
pub fn inherited_fd(fd: i32) -> Result<OwnedFd, SysError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static TAKEN: AtomicU64 = AtomicU64::new(0);
    let refuse = |msg: &str| SysError {
        call: "inherited descriptor",
        source: io::Error::new(io::ErrorKind::InvalidInput, format!("fd {fd}: {msg}")),
    };
    let bit = u32::try_from(fd)
        .ok()
        .and_then(|b| 1u64.checked_shl(b))
        .ok_or_else(|| refuse("not in 0..64"))?;
    if TAKEN.fetch_or(bit, Ordering::SeqCst) & bit != 0 {
        return Err(refuse("already taken"));
    }
    // SAFETY: fcntl(F_GETFD) takes no pointers; it fails (EBADF) if `fd`
    // is not open.
    let flags = check("fcntl(F_GETFD)", unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: as above, F_SETFD takes an integer.
    check("fcntl(F_SETFD)", unsafe {
        libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC)
    })?;
    // SAFETY: `fd` is open (checked above); nothing in this process
    // opened it (it was inherited) and the guard above hands it out once,
    // so the returned owner is its only one.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_an_interface() {
        assert_eq!(if_nametoindex("lo").unwrap(), 1);
        assert_eq!(interface_mac("lo").unwrap(), [0; 6]);
        assert!(interface_rx_queues("lo").unwrap() >= 1);
        assert!(if_nametoindex("no-such-if0").is_err());
        assert!(ifname("a-name-that-is-too-long").is_err());
    }
}
