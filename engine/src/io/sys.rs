//! The syscall funnel: every system call of the live data plane goes through
//! here, each behind a typed function whose error names the call
//! ([`SysError`]). Kernel structs are plain `#[repr(C)]` mirrors whose
//! layouts `tests::layouts_match_c` checks against the C headers (the probe
//! `engine/bpf/layout_probe.c`, run by `build.rs`).
//!
//! Nothing here is per packet except the ring wakeups ([`kick_tx`],
//! [`kick_rx`]), which the workers issue at most once per batch and socket,
//! and only when the kernel asks for them (`need_wakeup`).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use thiserror::Error;

/// A failed system call, named.
#[derive(Debug, Error)]
#[error("{call}: {source}")]
pub struct SysError {
    /// The call, with the option or request where that matters
    /// (`setsockopt(XDP_UMEM_REG)`).
    pub call: &'static str,
    pub source: io::Error,
}

impl SysError {
    fn last(call: &'static str) -> SysError {
        SysError {
            call,
            source: io::Error::last_os_error(),
        }
    }

    /// The errno, if any.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

fn check(call: &'static str, ret: libc::c_int) -> Result<libc::c_int, SysError> {
    if ret < 0 {
        Err(SysError::last(call))
    } else {
        Ok(ret)
    }
}

// ---------------------------------------------------------------------------
// Kernel ABI mirrors (checked against C by `tests::layouts_match_c`).

/// `AF_XDP`.
pub const AF_XDP: i32 = 44;
/// `SOL_XDP`.
pub const SOL_XDP: i32 = 283;
pub const XDP_MMAP_OFFSETS: i32 = 1;
pub const XDP_RX_RING: i32 = 2;
pub const XDP_TX_RING: i32 = 3;
pub const XDP_UMEM_REG: i32 = 4;
pub const XDP_UMEM_FILL_RING: i32 = 5;
pub const XDP_UMEM_COMPLETION_RING: i32 = 6;
pub const XDP_STATISTICS: i32 = 7;
pub const XDP_OPTIONS: i32 = 8;
pub const XDP_OPTIONS_ZEROCOPY: u32 = 1;
/// `XDP_MAX_TX_SKB_BUDGET` (Linux 6.17): frames one copy-mode `sendto`
/// may transmit (default 32). Newer than the build machine's headers, so
/// not checked by the layout probe; setting it is best effort.
pub const XDP_MAX_TX_SKB_BUDGET: i32 = 9;
pub const XDP_SHARED_UMEM: u16 = 1;
pub const XDP_COPY: u16 = 1 << 1;
pub const XDP_ZEROCOPY: u16 = 1 << 2;
pub const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
pub const XDP_RING_NEED_WAKEUP: u32 = 1;
pub const XDP_PGOFF_RX_RING: u64 = 0;
pub const XDP_PGOFF_TX_RING: u64 = 0x8000_0000;
pub const XDP_UMEM_PGOFF_FILL_RING: u64 = 0x1_0000_0000;
pub const XDP_UMEM_PGOFF_COMPLETION_RING: u64 = 0x1_8000_0000;
pub const SO_BUSY_POLL: i32 = 46;
pub const SO_PREFER_BUSY_POLL: i32 = 69;
pub const SO_BUSY_POLL_BUDGET: i32 = 70;
pub const SIOCGIFHWADDR: u64 = 0x8927;
pub const SIOCETHTOOL: u64 = 0x8946;
pub const ETHTOOL_GCHANNELS: u32 = 0x3c;
pub const BPF_FS_MAGIC: u64 = 0xcafe_4a11;
pub const BPF_PROG_TEST_RUN: i32 = 10;

/// `struct sockaddr_xdp`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SockaddrXdp {
    pub sxdp_family: u16,
    pub sxdp_flags: u16,
    pub sxdp_ifindex: u32,
    pub sxdp_queue_id: u32,
    pub sxdp_shared_umem_fd: u32,
}

/// `struct xdp_ring_offset`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpRingOffset {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpMmapOffsets {
    pub rx: XdpRingOffset,
    pub tx: XdpRingOffset,
    pub fr: XdpRingOffset,
    pub cr: XdpRingOffset,
}

/// `struct xdp_umem_reg` (the tail is `flags` and, on newer kernels,
/// `tx_metadata_len`, which must be zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpUmemReg {
    pub addr: u64,
    pub len: u64,
    pub chunk_size: u32,
    pub headroom: u32,
    pub flags: u32,
    pub tx_metadata_len: u32,
}

/// `struct xdp_statistics`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStatistics {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// `struct xdp_options`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpOptions {
    pub flags: u32,
}

/// `struct xdp_desc`: one RX or TX ring entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpDesc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

/// `struct ifreq` (name plus a 24-byte union; we use the hardware address
/// and the data pointer members).
#[repr(C)]
#[derive(Clone, Copy)]
struct IfReq {
    name: [u8; 16],
    ifru: IfReqU,
}

#[repr(C)]
#[derive(Clone, Copy)]
union IfReqU {
    hwaddr: libc::sockaddr,
    data: *mut libc::c_void,
    _pad: [u8; 24],
}

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// The `test` member of `union bpf_attr` (`BPF_PROG_TEST_RUN`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct BpfAttrTestRun {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `struct xdp_md`: the XDP context, as passed to a test run.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpMd {
    pub data: u32,
    pub data_end: u32,
    pub data_meta: u32,
    pub ingress_ifindex: u32,
    pub rx_queue_index: u32,
    pub egress_ifindex: u32,
}

/// Plain kernel structs that may be passed to and filled by the kernel.
///
/// # Safety
/// The type is `#[repr(C)]` (or a primitive integer), holds no pointers or
/// references, and every bit pattern (in particular all zeroes) is a valid
/// value.
pub unsafe trait KernelPod: Copy + 'static {}
// SAFETY: primitive integers: any bit pattern is valid.
unsafe impl KernelPod for u32 {}
// SAFETY: as above.
unsafe impl KernelPod for i32 {}
// SAFETY: repr(C) struct of integers.
unsafe impl KernelPod for XdpMmapOffsets {}
// SAFETY: repr(C) struct of integers.
unsafe impl KernelPod for XdpUmemReg {}
// SAFETY: repr(C) struct of integers.
unsafe impl KernelPod for XdpStatistics {}
// SAFETY: repr(C) struct of integers.
unsafe impl KernelPod for XdpOptions {}

fn zeroed<T: KernelPod>() -> T {
    // SAFETY: KernelPod guarantees all-zero bits are a valid T.
    unsafe { std::mem::zeroed() }
}

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

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: a test run whose frames really go out
/// (XDP_TX / redirect), for traffic generation.
pub const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// Runs the XDP program `prog` over copies of `frame`
/// (`BPF_PROG_TEST_RUN`) `repeat` times; returns the last XDP action. `ctx`
/// sets the ingress interface and rx queue (default: loopback, queue 0).
/// With [`BPF_F_TEST_XDP_LIVE_FRAMES`] in `flags` the frames are real:
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
// Memory maps.

/// An owned memory mapping, unmapped on drop.
#[derive(Debug)]
pub struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; all access to
// its contents goes through raw pointers whose users synchronise (atomics
// for ring indices and bitmaps, ownership tokens for frames).
unsafe impl Send for Mmap {}
// SAFETY: as above; `&Mmap` only hands out raw pointers and atomics.
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Anonymous private memory of `len` bytes, populated; with
    /// `hugepages`, backed by 2 MiB pages (fails if none are reserved).
    pub fn anonymous(len: usize, hugepages: bool) -> Result<Mmap, SysError> {
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
        if hugepages {
            flags |= libc::MAP_HUGETLB;
        }
        // SAFETY: an anonymous mapping at a kernel-chosen address touches no
        // existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        Self::from_raw(p, len, "mmap(anonymous)")
    }

    /// A shared read-write mapping of `len` bytes of `fd` at `offset`
    /// (AF_XDP rings, mmapable BPF maps).
    pub fn shared(
        fd: BorrowedFd<'_>,
        len: usize,
        offset: u64,
        call: &'static str,
    ) -> Result<Mmap, SysError> {
        // SAFETY: a new shared mapping at a kernel-chosen address; the
        // kernel validates fd, length and offset.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        Self::from_raw(p, len, call)
    }

    fn from_raw(p: *mut libc::c_void, len: usize, call: &'static str) -> Result<Mmap, SysError> {
        if p == libc::MAP_FAILED {
            return Err(SysError::last(call));
        }
        match NonNull::new(p.cast::<u8>()) {
            Some(ptr) => Ok(Mmap { ptr, len }),
            None => Err(SysError {
                call,
                source: io::Error::other("mmap returned null"),
            }),
        }
    }

    /// Start of the mapping.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Zero length (never, for a successful map).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The 32-bit word at byte `offset` as an atomic, if aligned and inside.
    pub fn atomic_u32(&self, offset: usize) -> Option<&AtomicU32> {
        if !offset.is_multiple_of(4) || offset.checked_add(4)? > self.len {
            return None;
        }
        // SAFETY: the word is inside the live mapping (checked), 4-aligned
        // (the mapping is page-aligned and offset % 4 == 0), and lives as
        // long as `&self`. Other parties (the kernel, other threads) access
        // it only atomically, so an `&AtomicU32` is the right view.
        Some(unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() })
    }

    /// The mapping as atomic 32-bit words.
    pub fn as_atomic_u32s(&self) -> &[AtomicU32] {
        // SAFETY: the mapping is page-aligned, `len / 4` words lie inside it,
        // it lives as long as `&self`, and every access to it (ours and the
        // kernel's) is an aligned atomic load or store of the word.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU32>(), self.len / 4) }
    }

    /// The mapping as atomic 64-bit words (for bitmaps shared with BPF).
    pub fn as_atomic_u64s(&self) -> &[AtomicU64] {
        // SAFETY: as for `as_atomic_u32s`, with 8-byte words (the mapping is
        // page-aligned, so every word is 8-aligned).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU64>(), self.len / 8) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region we mapped, once; no
        // references into it outlive `self` (they borrow it).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
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

/// Asks the CPU to start loading the cache line holding `r` (x86-64
/// `prefetcht0`; nothing elsewhere). Unlike a load, a prefetch never blocks
/// retirement, so a batch can have all its table lookups in flight at once:
/// the pipeline's stages prefetch every frame's entry before touching any.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` (SSE, part of the x86-64 baseline) only hints the
    // cache; it reads no memory architecturally and cannot fault, whatever
    // the address. `r` is a valid reference in any case.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (r as *const T).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Backs `s` with transparent huge pages, for big tables (conntrack, FIB):
/// far fewer TLB misses on random lookups. `madvise(MADV_HUGEPAGE)` marks
/// the range (so pages faulted later are huge even when THP is in
/// `madvise` mode, the Debian default), then `MADV_COLLAPSE` (Linux 6.1)
/// turns the already-touched pages into huge pages now rather than whenever
/// khugepaged gets there. Only the 2 MiB-aligned part of `s` can get huge
/// pages. Errors say which call failed; callers treat them as advice not
/// taken (THP disabled, an old kernel).
pub fn advise_hugepages<T>(s: &[T]) -> Result<(), SysError> {
    /// `MADV_COLLAPSE` from `<linux/mman.h>` (not in the libc crate yet).
    const MADV_COLLAPSE: libc::c_int = 25;
    const HUGE: usize = 2 << 20;
    let start = s.as_ptr() as usize;
    let end = start + std::mem::size_of_val(s);
    let a = (start + HUGE - 1) & !(HUGE - 1);
    let b = end & !(HUGE - 1);
    if b <= a {
        return Ok(());
    }
    // SAFETY: `[a, b)` lies inside the live allocation `s` (rounded inwards
    // to huge-page boundaries); MADV_HUGEPAGE changes only how the kernel
    // backs those pages, never their contents or validity.
    let r = unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE) };
    if r != 0 {
        return Err(SysError {
            call: "madvise(MADV_HUGEPAGE)",
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: as above; MADV_COLLAPSE copies the range's contents into huge
    // pages in place (same addresses, same bytes) or fails and leaves it.
    let r = unsafe { libc::madvise(a as *mut libc::c_void, b - a, MADV_COLLAPSE) };
    if r == 0 {
        Ok(())
    } else {
        Err(SysError {
            call: "madvise(MADV_COLLAPSE)",
            source: io::Error::last_os_error(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod c {
        include!(concat!(env!("OUT_DIR"), "/c_layouts.rs"));
    }

    fn c_size(name: &str) -> usize {
        c::C_SIZES
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("probe has no size for {name}"))
            .1
    }
    fn c_off(name: &str) -> usize {
        c::C_OFFSETS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("probe has no offset for {name}"))
            .1
    }
    pub(crate) fn c_const(name: &str) -> u64 {
        c::C_CONSTS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("probe has no constant {name}"))
            .1
    }

    macro_rules! check_struct {
        ($t:ty, $c:literal, [$($f:ident),*]) => {{
            assert_eq!(std::mem::size_of::<$t>(), c_size($c), "sizeof {}", $c);
            $(assert_eq!(
                std::mem::offset_of!($t, $f),
                c_off(concat!($c, ".", stringify!($f))),
                "offsetof {}.{}", $c, stringify!($f)
            );)*
        }};
    }

    #[test]
    fn layouts_match_c() {
        check_struct!(
            SockaddrXdp,
            "sockaddr_xdp",
            [
                sxdp_family,
                sxdp_flags,
                sxdp_ifindex,
                sxdp_queue_id,
                sxdp_shared_umem_fd
            ]
        );
        check_struct!(
            XdpRingOffset,
            "xdp_ring_offset",
            [producer, consumer, desc, flags]
        );
        check_struct!(XdpMmapOffsets, "xdp_mmap_offsets", [rx, tx, fr, cr]);
        check_struct!(
            XdpUmemReg,
            "xdp_umem_reg",
            [addr, len, chunk_size, headroom, flags]
        );
        check_struct!(
            XdpStatistics,
            "xdp_statistics",
            [
                rx_dropped,
                rx_invalid_descs,
                tx_invalid_descs,
                rx_ring_full,
                rx_fill_ring_empty_descs,
                tx_ring_empty_descs
            ]
        );
        check_struct!(XdpOptions, "xdp_options", [flags]);
        check_struct!(XdpDesc, "xdp_desc", [addr, len, options]);
        check_struct!(
            EthtoolChannels,
            "ethtool_channels",
            [
                cmd,
                max_rx,
                max_tx,
                max_other,
                max_combined,
                rx_count,
                tx_count,
                other_count,
                combined_count
            ]
        );
        check_struct!(
            XdpMd,
            "xdp_md",
            [
                data,
                data_end,
                data_meta,
                ingress_ifindex,
                rx_queue_index,
                egress_ifindex
            ]
        );
        for (f, o) in [
            ("prog_fd", std::mem::offset_of!(BpfAttrTestRun, prog_fd)),
            ("retval", std::mem::offset_of!(BpfAttrTestRun, retval)),
            (
                "data_size_in",
                std::mem::offset_of!(BpfAttrTestRun, data_size_in),
            ),
            (
                "data_size_out",
                std::mem::offset_of!(BpfAttrTestRun, data_size_out),
            ),
            ("data_in", std::mem::offset_of!(BpfAttrTestRun, data_in)),
            ("data_out", std::mem::offset_of!(BpfAttrTestRun, data_out)),
            ("repeat", std::mem::offset_of!(BpfAttrTestRun, repeat)),
            ("duration", std::mem::offset_of!(BpfAttrTestRun, duration)),
            (
                "ctx_size_in",
                std::mem::offset_of!(BpfAttrTestRun, ctx_size_in),
            ),
            (
                "ctx_size_out",
                std::mem::offset_of!(BpfAttrTestRun, ctx_size_out),
            ),
            ("ctx_in", std::mem::offset_of!(BpfAttrTestRun, ctx_in)),
            ("ctx_out", std::mem::offset_of!(BpfAttrTestRun, ctx_out)),
            ("flags", std::mem::offset_of!(BpfAttrTestRun, flags)),
            ("cpu", std::mem::offset_of!(BpfAttrTestRun, cpu)),
            (
                "batch_size",
                std::mem::offset_of!(BpfAttrTestRun, batch_size),
            ),
        ] {
            assert_eq!(o, c_off(&format!("bpf_attr.test.{f}")), "bpf_attr.test.{f}");
        }
        assert_eq!(std::mem::size_of::<IfReq>(), c_size("ifreq"));
        assert_eq!(std::mem::offset_of!(IfReq, name), c_off("ifreq.ifr_name"));
        assert_eq!(std::mem::offset_of!(IfReq, ifru), c_off("ifreq.ifr_hwaddr"));
        assert_eq!(std::mem::offset_of!(IfReq, ifru), c_off("ifreq.ifr_data"));
    }

    #[test]
    fn constants_match_c() {
        let pairs: &[(&str, u64)] = &[
            ("AF_XDP", AF_XDP as u64),
            ("XDP_MMAP_OFFSETS", XDP_MMAP_OFFSETS as u64),
            ("XDP_RX_RING", XDP_RX_RING as u64),
            ("XDP_TX_RING", XDP_TX_RING as u64),
            ("XDP_UMEM_REG", XDP_UMEM_REG as u64),
            ("XDP_UMEM_FILL_RING", XDP_UMEM_FILL_RING as u64),
            ("XDP_UMEM_COMPLETION_RING", XDP_UMEM_COMPLETION_RING as u64),
            ("XDP_STATISTICS", XDP_STATISTICS as u64),
            ("XDP_OPTIONS", XDP_OPTIONS as u64),
            ("XDP_OPTIONS_ZEROCOPY", u64::from(XDP_OPTIONS_ZEROCOPY)),
            ("XDP_SHARED_UMEM", u64::from(XDP_SHARED_UMEM)),
            ("XDP_COPY", u64::from(XDP_COPY)),
            ("XDP_ZEROCOPY", u64::from(XDP_ZEROCOPY)),
            ("XDP_USE_NEED_WAKEUP", u64::from(XDP_USE_NEED_WAKEUP)),
            ("XDP_RING_NEED_WAKEUP", u64::from(XDP_RING_NEED_WAKEUP)),
            ("XDP_PGOFF_RX_RING", XDP_PGOFF_RX_RING),
            ("XDP_PGOFF_TX_RING", XDP_PGOFF_TX_RING),
            ("XDP_UMEM_PGOFF_FILL_RING", XDP_UMEM_PGOFF_FILL_RING),
            (
                "XDP_UMEM_PGOFF_COMPLETION_RING",
                XDP_UMEM_PGOFF_COMPLETION_RING,
            ),
            ("SIOCGIFHWADDR", SIOCGIFHWADDR),
            ("SIOCETHTOOL", SIOCETHTOOL),
            ("ETHTOOL_GCHANNELS", u64::from(ETHTOOL_GCHANNELS)),
            ("SO_BUSY_POLL", SO_BUSY_POLL as u64),
            ("SO_PREFER_BUSY_POLL", SO_PREFER_BUSY_POLL as u64),
            ("SO_BUSY_POLL_BUDGET", SO_BUSY_POLL_BUDGET as u64),
            ("BPF_FS_MAGIC", BPF_FS_MAGIC),
            ("BPF_PROG_TEST_RUN", BPF_PROG_TEST_RUN as u64),
            ("SYS_bpf", libc::SYS_bpf as u64),
        ];
        for (name, v) in pairs {
            assert_eq!(c_const(name), *v, "{name}");
        }
        assert_eq!(SOL_XDP, libc::SOL_XDP);
    }

    #[test]
    fn mmap_atomics() {
        let m = Mmap::anonymous(page_size(), false).unwrap();
        assert!(m.atomic_u32(2).is_none());
        assert!(m.atomic_u32(page_size()).is_none());
        let w = m.atomic_u32(8).unwrap();
        w.store(7, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            m.as_atomic_u32s()[2].load(std::sync::atomic::Ordering::Relaxed),
            7
        );
    }

    #[test]
    fn loopback_is_an_interface() {
        assert_eq!(if_nametoindex("lo").unwrap(), 1);
        assert_eq!(interface_mac("lo").unwrap(), [0; 6]);
        assert!(interface_rx_queues("lo").unwrap() >= 1);
        assert!(if_nametoindex("no-such-if0").is_err());
        assert!(ifname("a-name-that-is-too-long").is_err());
    }
}
