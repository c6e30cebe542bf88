//! AF_XDP: UMEM, rings, sockets and the [`Frame`] token.
//!
//! Implemented directly over the kernel ABI (through [`super::sys`]) rather
//! than with xsk-rs: xsk-rs's frame descriptors are `Copy` and its data
//! accessors are `unsafe` with a "no other descriptor aliases this frame"
//! contract left to the caller, while here a UMEM frame is a move-only
//! [`Frame`] token, so the compiler enforces one owner per frame; the rings
//! are ~150 lines tested against a model (`tests::ring_matches_model` and a
//! two-thread test, both clean under Miri: `cd engine && cargo +nightly miri
//! test --lib io::xsk::tests::ring`), and there is no C library (libxdp) to
//! build.
//!
//! ## Ownership of frames
//! Every frame (a `frame_size` chunk of the UMEM) is, at any time, in
//! exactly one place: the worker's free list ([`FramePool`]), a fill ring,
//! the kernel (between fill and RX, or TX and completion), an RX ring, a
//! batch the worker holds, a TX ring, or a completion ring. Tokens are
//! created once ([`Umem::new`] returns one per chunk) and re-created only
//! when the kernel hands a frame back on an RX or completion ring, which it
//! does exactly once per frame given (the AF_XDP ring contract). Moving a
//! token into a fill or TX ring consumes it. [`Accounting`] counts every
//! place and must sum to the total: the leak test checks it after a burst.
//!
//! ## Shared UMEM
//! One UMEM per worker, shared by all of the worker's sockets (one per
//! (port, queue) the worker owns): a frame received on one port is sent out
//! of another by moving its descriptor, without copying. Each socket has its
//! own fill and completion rings (required when sockets of one UMEM are on
//! different devices or queues), and all share the worker's free list.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;

use thiserror::Error;

use super::sys::{self, Mmap, SysError, XdpDesc};

/// Errors setting up AF_XDP.
#[derive(Debug, Error)]
pub enum XskError {
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("{0}")]
    Config(String),
    #[error(
        "{ifname} queue {queue}: zero-copy requested but not supported by the driver ({source})"
    )]
    NoZeroCopy {
        ifname: String,
        queue: u32,
        source: SysError,
    },
}

// ---------------------------------------------------------------------------
// Rings.

/// Memory behind a ring: the kernel's mapping, or (tests) the heap.
#[derive(Debug)]
enum RingMem {
    Mmap(#[allow(dead_code)] Mmap),
    #[cfg(test)]
    Heap(#[allow(dead_code)] tests::HeapRing),
}

/// Where one ring's producer and consumer indices, flags and descriptors
/// live. Shared by the two sides of the ring.
#[derive(Debug)]
struct RingRaw<T> {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    size: u32,
    _mem: Arc<RingMem>,
}

// SAFETY: the pointers target `_mem`, which the Arc keeps alive and which is
// Send + Sync; index words are accessed atomically and descriptor slots only
// by the side that owns them under the ring protocol.
unsafe impl<T: Send> Send for RingRaw<T> {}

impl<T: Copy> RingRaw<T> {
    /// A ring laid out in `mem` at the kernel's offsets.
    ///
    /// # Safety
    /// `mem` must hold a ring of `size` entries of `T` at `off`: aligned
    /// 32-bit producer, consumer and flags words and `size` descriptors,
    /// all inside the mapping; `size` a power of two.
    unsafe fn new(mem: Arc<RingMem>, base: *mut u8, off: &sys::XdpRingOffset, size: u32) -> Self {
        // SAFETY: offsets are inside the mapping per the caller's contract.
        unsafe {
            RingRaw {
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                flags: base.add(off.flags as usize).cast(),
                descs: base.add(off.desc as usize).cast(),
                size,
                _mem: mem,
            }
        }
    }

    #[inline]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping (kept by `_mem`), aligned.
        unsafe { &*self.producer }
    }
    #[inline]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.consumer }
    }
    #[inline]
    fn flags(&self) -> u32 {
        // SAFETY: as above.
        unsafe { &*self.flags }.load(Ordering::Relaxed)
    }
    #[inline]
    fn write(&mut self, idx: u32, v: T) {
        // SAFETY: `idx & (size - 1)` < size, inside the descriptor array; the
        // slot belongs to the producer until the producer index is published.
        unsafe { self.descs.add((idx & (self.size - 1)) as usize).write(v) }
    }
    #[inline]
    fn read(&self, idx: u32) -> T {
        // SAFETY: inside the array as above; the slot was published by the
        // producer (acquire load of its index) and not yet released by us.
        unsafe { self.descs.add((idx & (self.size - 1)) as usize).read() }
    }
}

/// The producer side of a ring (fill and TX rings for us).
#[derive(Debug)]
pub(crate) struct Producer<T> {
    raw: RingRaw<T>,
    cached_prod: u32,
    cached_cons: u32,
}

impl<T: Copy> Producer<T> {
    fn new(raw: RingRaw<T>) -> Self {
        let prod = raw.producer().load(Ordering::Relaxed);
        let cons = raw.consumer().load(Ordering::Acquire);
        Producer {
            cached_prod: prod,
            cached_cons: cons.wrapping_add(raw.size),
            raw,
        }
    }

    /// Free slots, refreshing from the consumer's index if fewer than `want`.
    #[inline]
    pub(crate) fn free(&mut self, want: u32) -> u32 {
        let free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free >= want {
            return free;
        }
        self.cached_cons = self
            .raw
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(self.raw.size);
        self.cached_cons.wrapping_sub(self.cached_prod)
    }

    /// Writes one entry; the caller checked [`Producer::free`].
    #[inline]
    fn push(&mut self, v: T) {
        debug_assert!(self.cached_cons.wrapping_sub(self.cached_prod) > 0);
        self.raw.write(self.cached_prod, v);
        self.cached_prod = self.cached_prod.wrapping_add(1);
    }

    /// Publishes everything pushed.
    #[inline]
    fn submit(&mut self) {
        self.raw
            .producer()
            .store(self.cached_prod, Ordering::Release);
    }

    /// Entries pushed (published or not) and not yet released by the
    /// consumer.
    fn outstanding(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.raw.consumer().load(Ordering::Acquire))
    }

    fn needs_wakeup(&self) -> bool {
        self.raw.flags() & sys::XDP_RING_NEED_WAKEUP != 0
    }
}

/// The consumer side of a ring (RX and completion rings for us).
#[derive(Debug)]
pub(crate) struct Consumer<T> {
    raw: RingRaw<T>,
    cached_prod: u32,
    cached_cons: u32,
}

impl<T: Copy> Consumer<T> {
    fn new(raw: RingRaw<T>) -> Self {
        let cons = raw.consumer().load(Ordering::Relaxed);
        Consumer {
            cached_prod: raw.producer().load(Ordering::Acquire),
            cached_cons: cons,
            raw,
        }
    }

    /// Entries ready, refreshing from the producer's index when fewer than
    /// `want` are cached.
    #[inline]
    pub(crate) fn available(&mut self, want: u32) -> u32 {
        let n = self.cached_prod.wrapping_sub(self.cached_cons);
        if n >= want {
            return n;
        }
        self.cached_prod = self.raw.producer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Reads one entry; the caller checked [`Consumer::available`].
    #[inline]
    fn pop(&mut self) -> T {
        debug_assert!(self.cached_prod.wrapping_sub(self.cached_cons) > 0);
        let v = self.raw.read(self.cached_cons);
        self.cached_cons = self.cached_cons.wrapping_add(1);
        v
    }

    /// Hands the slots read back to the producer.
    #[inline]
    fn release(&mut self) {
        self.raw
            .consumer()
            .store(self.cached_cons, Ordering::Release);
    }

    /// Entries published by the producer and not yet released.
    fn outstanding(&self) -> u32 {
        self.raw
            .producer()
            .load(Ordering::Acquire)
            .wrapping_sub(self.cached_cons)
    }
}

// ---------------------------------------------------------------------------
// UMEM and frames.

static NEXT_UMEM_ID: AtomicU16 = AtomicU16::new(1);
const ID_SHIFT: u32 = 48;
const ADDR_MASK: u64 = (1 << ID_SHIFT) - 1;

/// One UMEM frame, owned. Not `Clone` or `Copy`: whoever holds the token
/// is the frame's only owner, and giving it to a ring consumes it.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame(u64);

impl Frame {
    /// Offset of the frame's chunk in its UMEM.
    #[inline]
    pub fn addr(&self) -> u64 {
        self.0 & ADDR_MASK
    }
    #[inline]
    fn umem_id(&self) -> u16 {
        (self.0 >> ID_SHIFT) as u16
    }
}

/// A received frame: the token plus where the packet sits in it.
#[derive(Debug)]
pub struct RxFrame {
    pub frame: Frame,
    /// Offset of the packet in the chunk.
    pub off: u32,
    pub len: u32,
}

/// UMEM geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UmemConfig {
    /// Number of frames.
    pub frames: u32,
    /// Chunk size: a power of two, 2048 or 4096.
    pub frame_size: u32,
    /// Try 2 MiB huge pages first.
    pub hugepages: bool,
}

impl Default for UmemConfig {
    fn default() -> Self {
        UmemConfig {
            frames: 8192,
            frame_size: 2048,
            hugepages: false,
        }
    }
}

/// The packet buffer area shared with the kernel.
#[derive(Debug)]
pub struct Umem {
    id: u16,
    area: Mmap,
    frame_size: u32,
    frames: u32,
    huge: bool,
}

impl Umem {
    /// Maps the area and returns it with one token per frame.
    pub fn new(cfg: UmemConfig) -> Result<(Arc<Umem>, Vec<Frame>), XskError> {
        if !matches!(cfg.frame_size, 2048 | 4096) {
            return Err(XskError::Config(format!(
                "frame size {} must be 2048 or 4096",
                cfg.frame_size
            )));
        }
        if cfg.frames == 0 || cfg.frames > (1 << 24) {
            return Err(XskError::Config(format!(
                "{} frames: must be 1..=16M",
                cfg.frames
            )));
        }
        let len = cfg.frames as usize * cfg.frame_size as usize;
        let (area, huge) = if cfg.hugepages {
            let huge_len = len.div_ceil(2 << 20) * (2 << 20);
            match Mmap::anonymous(huge_len, true) {
                Ok(m) => (m, true),
                Err(_) => (Mmap::anonymous(len, false)?, false),
            }
        } else {
            (Mmap::anonymous(len, false)?, false)
        };
        let id = NEXT_UMEM_ID.fetch_add(1, Ordering::Relaxed);
        let tokens = (0..cfg.frames)
            .map(|i| {
                Frame((u64::from(id) << ID_SHIFT) | (u64::from(i) * u64::from(cfg.frame_size)))
            })
            .collect();
        Ok((
            Arc::new(Umem {
                id,
                area,
                frame_size: cfg.frame_size,
                frames: cfg.frames,
                huge,
            }),
            tokens,
        ))
    }

    /// Chunk size.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// Number of frames.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Backed by huge pages.
    pub fn hugepages(&self) -> bool {
        self.huge
    }

    /// The bytes `off..off + len` of `frame`, for as long as the token is
    /// borrowed. Panics if the token is from another UMEM or the range
    /// leaves the chunk (both are bugs: the rings validate what they hand
    /// out).
    #[inline]
    pub fn bytes_mut<'a>(&'a self, frame: &'a mut Frame, off: u32, len: u32) -> &'a mut [u8] {
        assert_eq!(frame.umem_id(), self.id, "frame from another UMEM");
        assert!(
            off.checked_add(len).is_some_and(|e| e <= self.frame_size),
            "range outside the frame"
        );
        let start = frame.addr() as usize + off as usize;
        // SAFETY: the range lies inside this UMEM's area (the token is of
        // this UMEM, so addr < frames * frame_size, and off + len <=
        // frame_size). The token is unique for its chunk (tokens are never
        // duplicated: see the module docs) and mutably borrowed for 'a, so
        // no other slice of this chunk exists for 'a; the kernel does not
        // touch a chunk whose token we hold.
        unsafe { std::slice::from_raw_parts_mut(self.area.as_ptr().add(start), len as usize) }
    }

    /// A token for the chunk containing `addr`, as handed back by the
    /// kernel, with the offset of `addr` in it; `None` if outside the UMEM.
    #[inline]
    fn reclaim(&self, addr: u64) -> Option<(Frame, u32)> {
        let base = addr & !u64::from(self.frame_size - 1);
        if base >= u64::from(self.frames) * u64::from(self.frame_size) {
            return None;
        }
        Some((
            Frame((u64::from(self.id) << ID_SHIFT) | base),
            (addr - base) as u32,
        ))
    }
}

/// The free frames of a worker. Preallocated: pushing never allocates.
#[derive(Debug)]
pub struct FramePool {
    free: Vec<Frame>,
    total: u32,
}

impl FramePool {
    /// A pool holding `frames` (all the UMEM's tokens).
    pub fn new(frames: Vec<Frame>) -> FramePool {
        let total = frames.len() as u32;
        let mut free = Vec::with_capacity(frames.len());
        free.extend(frames);
        FramePool { free, total }
    }
    /// Takes a free frame.
    #[inline]
    pub fn pop(&mut self) -> Option<Frame> {
        self.free.pop()
    }
    /// Returns a frame.
    #[inline]
    pub fn push(&mut self, f: Frame) {
        debug_assert!(self.free.len() < self.free.capacity());
        self.free.push(f);
    }
    /// Frames free.
    pub fn len(&self) -> u32 {
        self.free.len() as u32
    }
    /// No frame free.
    pub fn is_empty(&self) -> bool {
        self.free.is_empty()
    }
    /// Frames of the UMEM in total.
    pub fn total(&self) -> u32 {
        self.total
    }
}

// ---------------------------------------------------------------------------
// Sockets.

/// Copy or zero-copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// Zero-copy if the driver supports it, else copy.
    Auto,
    ZeroCopy,
    Copy,
}

/// Ring sizes (powers of two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSizes {
    pub fill: u32,
    pub completion: u32,
    pub rx: u32,
    pub tx: u32,
}

impl Default for RingSizes {
    fn default() -> Self {
        RingSizes {
            fill: 2048,
            completion: 2048,
            rx: 2048,
            tx: 2048,
        }
    }
}

/// Busy-polling settings (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`,
/// `SO_BUSY_POLL_BUDGET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusyPoll {
    pub usecs: u32,
    pub budget: u32,
}

/// Where a socket binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketSpec {
    pub ifname: String,
    pub ifindex: u32,
    pub queue: u32,
}

/// Counts of a socket's rings as the kernel and we see them now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingLevels {
    pub fill: u32,
    pub rx: u32,
    pub tx: u32,
    pub completion: u32,
}

/// An AF_XDP socket bound to one (interface, queue), with its four rings.
#[derive(Debug)]
pub struct XskSocket {
    fill: Producer<u64>,
    comp: Consumer<u64>,
    rx: Consumer<XdpDesc>,
    tx: Producer<XdpDesc>,
    umem: Arc<Umem>,
    spec: SocketSpec,
    zerocopy: bool,
    fd: OwnedFd,
}

fn ring_mmap(
    fd: BorrowedFd<'_>,
    off: &sys::XdpRingOffset,
    entries: u32,
    entry_size: usize,
    pgoff: u64,
    call: &'static str,
) -> Result<(Arc<RingMem>, *mut u8), SysError> {
    let len = off.desc as usize + entries as usize * entry_size;
    let m = Mmap::shared(fd, len, pgoff, call)?;
    let base = m.as_ptr();
    Ok((Arc::new(RingMem::Mmap(m)), base))
}

impl XskSocket {
    /// Creates a socket on `spec` over `umem`. The first socket of a UMEM
    /// (`owner: None`) registers it; later ones share it with `owner`.
    /// `mode` applies to the first socket; sharers inherit it.
    pub fn create(
        umem: &Arc<Umem>,
        spec: &SocketSpec,
        rings: RingSizes,
        mode: BindMode,
        owner: Option<&XskSocket>,
        busy_poll: Option<BusyPoll>,
    ) -> Result<XskSocket, XskError> {
        for (what, n) in [
            ("fill", rings.fill),
            ("completion", rings.completion),
            ("rx", rings.rx),
            ("tx", rings.tx),
        ] {
            if !n.is_power_of_two() {
                return Err(XskError::Config(format!(
                    "{what} ring size {n} must be a power of two"
                )));
            }
        }
        let fd = sys::xsk_socket()?;
        let b = fd.as_fd();
        if owner.is_none() {
            let reg = sys::XdpUmemReg {
                addr: umem.area.as_ptr() as u64,
                len: umem.area.len() as u64,
                chunk_size: umem.frame_size,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            sys::setsockopt(
                b,
                sys::SOL_XDP,
                sys::XDP_UMEM_REG,
                &reg,
                "setsockopt(XDP_UMEM_REG)",
            )?;
        }
        sys::setsockopt(
            b,
            sys::SOL_XDP,
            sys::XDP_UMEM_FILL_RING,
            &rings.fill,
            "setsockopt(XDP_UMEM_FILL_RING)",
        )?;
        sys::setsockopt(
            b,
            sys::SOL_XDP,
            sys::XDP_UMEM_COMPLETION_RING,
            &rings.completion,
            "setsockopt(XDP_UMEM_COMPLETION_RING)",
        )?;
        sys::setsockopt(
            b,
            sys::SOL_XDP,
            sys::XDP_RX_RING,
            &rings.rx,
            "setsockopt(XDP_RX_RING)",
        )?;
        sys::setsockopt(
            b,
            sys::SOL_XDP,
            sys::XDP_TX_RING,
            &rings.tx,
            "setsockopt(XDP_TX_RING)",
        )?;
        // Copy mode transmits at most this many frames per wakeup (default
        // 32): let one wakeup drain a whole batch. Older kernels lack the
        // option; then a batch takes a few wakeups.
        let _ = sys::setsockopt(
            b,
            sys::SOL_XDP,
            sys::XDP_MAX_TX_SKB_BUDGET,
            &rings.tx.min(1024),
            "setsockopt(XDP_MAX_TX_SKB_BUDGET)",
        );
        let off: sys::XdpMmapOffsets = sys::getsockopt(
            b,
            sys::SOL_XDP,
            sys::XDP_MMAP_OFFSETS,
            "getsockopt(XDP_MMAP_OFFSETS)",
        )?;
        let u64s = std::mem::size_of::<u64>();
        let descs = std::mem::size_of::<XdpDesc>();
        let (fm, fb) = ring_mmap(
            b,
            &off.fr,
            rings.fill,
            u64s,
            sys::XDP_UMEM_PGOFF_FILL_RING,
            "mmap(fill ring)",
        )?;
        let (cm, cb) = ring_mmap(
            b,
            &off.cr,
            rings.completion,
            u64s,
            sys::XDP_UMEM_PGOFF_COMPLETION_RING,
            "mmap(completion ring)",
        )?;
        let (rm, rb) = ring_mmap(
            b,
            &off.rx,
            rings.rx,
            descs,
            sys::XDP_PGOFF_RX_RING,
            "mmap(rx ring)",
        )?;
        let (tm, tb) = ring_mmap(
            b,
            &off.tx,
            rings.tx,
            descs,
            sys::XDP_PGOFF_TX_RING,
            "mmap(tx ring)",
        )?;
        // SAFETY: each mapping was made for exactly this ring at the
        // kernel's offsets, with `size` entries of the ring's type; sizes
        // are powers of two (checked above).
        let (fill, comp, rx, tx) = unsafe {
            (
                Producer::new(RingRaw::new(fm, fb, &off.fr, rings.fill)),
                Consumer::new(RingRaw::new(cm, cb, &off.cr, rings.completion)),
                Consumer::new(RingRaw::new(rm, rb, &off.rx, rings.rx)),
                Producer::new(RingRaw::new(tm, tb, &off.tx, rings.tx)),
            )
        };
        if let Some(bp) = busy_poll {
            // Best effort: older kernels lack some of these.
            let _ = sys::setsockopt(
                b,
                libc::SOL_SOCKET,
                sys::SO_PREFER_BUSY_POLL,
                &1i32,
                "setsockopt(SO_PREFER_BUSY_POLL)",
            );
            let _ = sys::setsockopt(
                b,
                libc::SOL_SOCKET,
                sys::SO_BUSY_POLL,
                &(bp.usecs as i32),
                "setsockopt(SO_BUSY_POLL)",
            );
            let _ = sys::setsockopt(
                b,
                libc::SOL_SOCKET,
                sys::SO_BUSY_POLL_BUDGET,
                &(bp.budget as i32),
                "setsockopt(SO_BUSY_POLL_BUDGET)",
            );
        }
        let mut sa = sys::SockaddrXdp {
            sxdp_family: sys::AF_XDP as u16,
            sxdp_flags: 0,
            sxdp_ifindex: spec.ifindex,
            sxdp_queue_id: spec.queue,
            sxdp_shared_umem_fd: 0,
        };
        match owner {
            Some(o) => {
                sa.sxdp_flags = sys::XDP_SHARED_UMEM;
                sa.sxdp_shared_umem_fd = std::os::fd::AsRawFd::as_raw_fd(&o.fd) as u32;
                sys::bind_xdp(b, &sa)?;
            }
            None => {
                let try_bind = |flags: u16| {
                    let sa = sys::SockaddrXdp {
                        sxdp_flags: flags | sys::XDP_USE_NEED_WAKEUP,
                        ..sa
                    };
                    sys::bind_xdp(b, &sa)
                };
                match mode {
                    BindMode::Copy => try_bind(sys::XDP_COPY)?,
                    BindMode::ZeroCopy => {
                        try_bind(sys::XDP_ZEROCOPY).map_err(|source| XskError::NoZeroCopy {
                            ifname: spec.ifname.clone(),
                            queue: spec.queue,
                            source,
                        })?
                    }
                    BindMode::Auto => {
                        if try_bind(sys::XDP_ZEROCOPY).is_err() {
                            try_bind(sys::XDP_COPY)?
                        }
                    }
                }
            }
        }
        let opts: sys::XdpOptions =
            sys::getsockopt(b, sys::SOL_XDP, sys::XDP_OPTIONS, "getsockopt(XDP_OPTIONS)")?;
        Ok(XskSocket {
            fill,
            comp,
            rx,
            tx,
            umem: umem.clone(),
            spec: spec.clone(),
            zerocopy: opts.flags & sys::XDP_OPTIONS_ZEROCOPY != 0,
            fd,
        })
    }

    /// The socket descriptor (for the XSKMAP and poll).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Where it is bound.
    pub fn spec(&self) -> &SocketSpec {
        &self.spec
    }

    /// Bound in zero-copy mode.
    pub fn zerocopy(&self) -> bool {
        self.zerocopy
    }

    /// The UMEM.
    pub fn umem(&self) -> &Arc<Umem> {
        &self.umem
    }

    /// Moves free frames into the fill ring, as many as fit; returns how
    /// many.
    #[inline]
    pub fn refill(&mut self, pool: &mut FramePool) -> u32 {
        let want = pool.len();
        if want == 0 {
            return 0;
        }
        let n = self.fill.free(want).min(want);
        for _ in 0..n {
            if let Some(f) = pool.pop() {
                debug_assert_eq!(f.umem_id(), self.umem.id);
                self.fill.push(f.addr());
            }
        }
        if n > 0 {
            self.fill.submit();
        }
        n
    }

    /// Takes up to `max` received frames, calling `f` with each.
    #[inline]
    pub fn rx_burst(&mut self, max: u32, mut f: impl FnMut(RxFrame)) -> u32 {
        let n = self.rx.available(max).min(max);
        for _ in 0..n {
            let d = self.rx.pop();
            match self.umem.reclaim(d.addr) {
                Some((frame, off)) if off.saturating_add(d.len) <= self.umem.frame_size => {
                    f(RxFrame {
                        frame,
                        off,
                        len: d.len,
                    })
                }
                // The kernel handed back a descriptor outside the UMEM
                // (never seen; would be a kernel bug). Skipping it leaks
                // nothing of ours: no token exists for it.
                _ => {}
            }
        }
        if n > 0 {
            self.rx.release();
        }
        n
    }

    /// Free TX slots (refreshing from the kernel's index when fewer than
    /// `want`).
    #[inline]
    pub fn tx_free(&mut self, want: u32) -> u32 {
        self.tx.free(want)
    }

    /// Queues a frame for transmission; the caller checked
    /// [`XskSocket::tx_free`]. Gives the frame back if the ring is full.
    #[inline]
    pub fn tx_push(&mut self, frame: Frame, off: u32, len: u32) -> Result<(), Frame> {
        if self.tx.free(1) == 0 || frame.umem_id() != self.umem.id {
            return Err(frame);
        }
        self.tx.push(XdpDesc {
            addr: frame.addr() + u64::from(off),
            len,
            options: 0,
        });
        Ok(())
    }

    /// Publishes queued TX entries.
    #[inline]
    pub fn tx_submit(&mut self) {
        self.tx.submit();
    }

    /// TX entries the kernel has not consumed yet.
    pub fn tx_outstanding(&self) -> u32 {
        self.tx.outstanding()
    }

    /// Wakes the kernel to transmit if it asked for it and something is
    /// queued.
    #[inline]
    pub fn kick_tx(&mut self) -> Result<sys::Kick, SysError> {
        if self.tx.outstanding() > 0 && self.tx.needs_wakeup() {
            sys::kick_tx(self.fd.as_fd())
        } else {
            Ok(sys::Kick::Done)
        }
    }

    /// Wakes the kernel to process the fill ring if it asked for it.
    #[inline]
    pub fn kick_rx_if_needed(&mut self) -> Result<bool, SysError> {
        if self.fill.needs_wakeup() {
            sys::kick_rx(self.fd.as_fd()).map(|_| true)
        } else {
            Ok(false)
        }
    }

    /// Drives busy polling (`recvfrom`), for the busy-poll idle loop.
    pub fn busy_poll(&mut self) -> Result<(), SysError> {
        sys::kick_rx(self.fd.as_fd()).map(|_| ())
    }

    /// Moves completed TX frames back to the pool; returns how many.
    #[inline]
    pub fn complete(&mut self, pool: &mut FramePool) -> u32 {
        let n = self.comp.available(u32::MAX);
        for _ in 0..n {
            let addr = self.comp.pop();
            if let Some((frame, _)) = self.umem.reclaim(addr) {
                pool.push(frame);
            }
        }
        if n > 0 {
            self.comp.release();
        }
        n
    }

    /// The kernel's counters for this socket.
    pub fn statistics(&self) -> Result<sys::XdpStatistics, SysError> {
        sys::getsockopt(
            self.fd.as_fd(),
            sys::SOL_XDP,
            sys::XDP_STATISTICS,
            "getsockopt(XDP_STATISTICS)",
        )
    }

    /// Frames in each ring now.
    pub fn levels(&self) -> RingLevels {
        RingLevels {
            fill: self.fill.outstanding(),
            rx: self.rx.outstanding(),
            tx: self.tx.outstanding(),
            completion: self.comp.outstanding(),
        }
    }
}

/// Where every frame of a worker's UMEM is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    pub total: u32,
    pub free: u32,
    pub held: u32,
    pub fill: u32,
    pub rx: u32,
    pub tx: u32,
    pub completion: u32,
}

impl Accounting {
    /// Frames seen in some place.
    pub fn located(&self) -> u32 {
        self.free + self.held + self.fill + self.rx + self.tx + self.completion
    }
    /// Frames in none of the places: in flight inside the kernel (between a
    /// fill slot and an RX slot, or a TX slot and a completion slot). Zero
    /// once traffic has stopped and TX has drained; anything else is a leak.
    pub fn in_kernel(&self) -> i64 {
        i64::from(self.total) - i64::from(self.located())
    }

    /// Counts the pool, `held` frames and the rings of `sockets`.
    pub fn of(pool: &FramePool, held: u32, sockets: &[XskSocket]) -> Accounting {
        let mut a = Accounting {
            total: pool.total(),
            free: pool.len(),
            held,
            ..Accounting::default()
        };
        for s in sockets {
            let l = s.levels();
            a.fill += l.fill;
            a.rx += l.rx;
            a.tx += l.tx;
            a.completion += l.completion;
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Ring memory from the allocator (raw, so both sides' pointers keep
    /// their provenance; freed on drop).
    #[derive(Debug)]
    pub(super) struct HeapRing {
        ptr: *mut u8,
        layout: std::alloc::Layout,
    }

    // SAFETY: plain memory owned by this value; accessed through the ring
    // protocol (atomics for indices).
    unsafe impl Send for HeapRing {}
    // SAFETY: as above.
    unsafe impl Sync for HeapRing {}

    impl Drop for HeapRing {
        fn drop(&mut self) {
            // SAFETY: allocated in `heap_ring` with this layout, freed once.
            unsafe { std::alloc::dealloc(self.ptr, self.layout) }
        }
    }

    /// A ring on the heap with both sides, laid out like the kernel's:
    /// producer, consumer and flags words on their own cache lines, then
    /// the descriptors.
    fn heap_ring(size: u32) -> (Producer<u64>, Consumer<u64>) {
        let off = sys::XdpRingOffset {
            producer: 0,
            consumer: 64,
            flags: 128,
            desc: 192,
        };
        let layout = std::alloc::Layout::from_size_align(192 + 8 * size as usize, 64).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        let mem = Arc::new(RingMem::Heap(HeapRing { ptr, layout }));
        // SAFETY: the allocation holds aligned index words at 0, 64 and 128
        // and `size` u64 descriptors at 192, and lives as long as `mem`.
        let (a, b) = unsafe {
            (
                RingRaw::new(mem.clone(), ptr, &off, size),
                RingRaw::new(mem, ptr, &off, size),
            )
        };
        (Producer::new(a), Consumer::new(b))
    }

    /// Random pushes, submits, pops and releases against a VecDeque model:
    /// order is FIFO, the producer never sees more than `size` slots, the
    /// consumer never sees unpublished entries, and indices wrap.
    #[test]
    fn ring_matches_model() {
        let size = 8u32;
        let (p, c) = heap_ring(size);
        // Start near the u32 wrap to exercise it.
        let start = u32::MAX - 20;
        p.raw.producer().store(start, Ordering::Relaxed);
        p.raw.consumer().store(start, Ordering::Relaxed);
        let (mut p, mut c) = (Producer::new(p.raw), Consumer::new(c.raw));
        let mut published: VecDeque<u64> = VecDeque::new();
        let mut pending: Vec<u64> = Vec::new();
        let mut popped_unreleased = 0u32;
        let mut next = 0u64;
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut step = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let iters = if cfg!(miri) { 300 } else { 20_000 };
        for _ in 0..iters {
            match step() % 4 {
                0 => {
                    let want = (step() % 5) as u32;
                    let free = p.free(want);
                    let model_free =
                        size - published.len() as u32 - pending.len() as u32 - popped_unreleased;
                    // Refreshed only when the cached view is short.
                    assert!(free <= model_free);
                    if free < want {
                        assert_eq!(free, model_free);
                    }
                    for _ in 0..want.min(free) {
                        p.push(next);
                        pending.push(next);
                        next += 1;
                    }
                }
                1 => {
                    p.submit();
                    published.extend(pending.drain(..));
                }
                2 => {
                    let want = (step() % 5) as u32;
                    let avail = c.available(want);
                    assert!(avail <= published.len() as u32);
                    if avail < want {
                        assert_eq!(avail, published.len() as u32);
                    }
                    for _ in 0..want.min(avail) {
                        assert_eq!(Some(c.pop()), published.pop_front());
                        popped_unreleased += 1;
                    }
                }
                _ => {
                    c.release();
                    popped_unreleased = 0;
                }
            }
            assert_eq!(
                p.outstanding(),
                published.len() as u32 + pending.len() as u32 + popped_unreleased
            );
            assert_eq!(c.outstanding(), published.len() as u32);
        }
    }

    /// Producer and consumer on two threads: every value arrives once, in
    /// order.
    #[test]
    fn ring_across_threads() {
        let (mut p, mut c) = heap_ring(16);
        let n: u64 = if cfg!(miri) { 200 } else { 200_000 };
        let t = std::thread::spawn(move || {
            let mut i = 0u64;
            while i < n {
                let free = p.free(1);
                for _ in 0..free.min((n - i) as u32) {
                    p.push(i);
                    i += 1;
                }
                p.submit();
                std::hint::spin_loop();
            }
        });
        let mut expect = 0u64;
        while expect < n {
            let k = c.available(1);
            for _ in 0..k {
                assert_eq!(c.pop(), expect);
                expect += 1;
            }
            c.release();
            std::hint::spin_loop();
        }
        t.join().unwrap();
    }

    #[test]
    fn frames_are_tokens_of_their_umem() {
        let (umem, tokens) = Umem::new(UmemConfig {
            frames: 4,
            frame_size: 2048,
            hugepages: false,
        })
        .unwrap();
        assert_eq!(tokens.len(), 4);
        let mut pool = FramePool::new(tokens);
        let mut a = pool.pop().unwrap();
        let mut b = pool.pop().unwrap();
        assert_ne!(a.addr(), b.addr());
        // Two frames borrowed at once: disjoint slices.
        let x = umem.bytes_mut(&mut a, 256, 64);
        let y = umem.bytes_mut(&mut b, 256, 64);
        x.fill(1);
        y.fill(2);
        assert!(x.iter().all(|&v| v == 1));
        // Reclaiming an address inside a chunk gives its base and offset.
        let (f, off) = umem.reclaim(a.addr() + 300).unwrap();
        assert_eq!(f.addr(), a.addr());
        assert_eq!(off, 300);
        // `f` is a duplicate made by the test; it goes out of scope unused.
        assert!(umem.reclaim(4 * 2048).is_none());
        pool.push(a);
        pool.push(b);
        assert_eq!(pool.len(), 4);
        // A frame of another UMEM is refused.
        let (other, mut ot) = Umem::new(UmemConfig {
            frames: 1,
            frame_size: 2048,
            hugepages: false,
        })
        .unwrap();
        let mut o = ot.pop().unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = umem.bytes_mut(&mut o, 0, 1);
        }));
        assert!(r.is_err());
        let _ = other.bytes_mut(&mut o, 0, 2048);
        assert!(Umem::new(UmemConfig {
            frames: 1,
            frame_size: 1000,
            hugepages: false
        })
        .is_err());
    }
}
