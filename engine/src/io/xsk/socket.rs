//! An AF_XDP socket ([`XskSocket`]) bound to one (interface, queue) over a
//! shared UMEM: creating and binding it (copy or zero-copy, busy polling),
//! its four rings as the worker drives them (refill, receive, transmit,
//! complete), the kernel wakeups it asks for, and its statistics, with the
//! [`Accounting`] of where every frame is.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use super::error::XskError;
use super::ring::{ring_mmap, Consumer, Producer, RingRaw};
use super::umem::{Frame, FramePool, RxFrame, Umem};
use crate::io::sys::abi::{self, XdpDesc};
use crate::io::sys::calls;
use crate::io::sys::error::SysError;

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
    /// Marks the frames lent through this socket (see `umem`).
    serial: u16,
    fd: OwnedFd,
}

impl XskSocket {
    /// Creates a socket on `spec` over `umem`. The first socket of a UMEM
    /// (`owner: None`) registers it; later ones share it with `owner` (a
    /// bound socket of the same UMEM, or a duplicate of its descriptor).
    /// `mode` applies to the first socket; sharers inherit it.
    pub fn create(
        umem: &Arc<Umem>,
        spec: &SocketSpec,
        rings: RingSizes,
        mode: BindMode,
        owner: Option<BorrowedFd<'_>>,
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
        let fd = calls::xsk_socket()?;
        let b = fd.as_fd();
        if owner.is_none() {
            let reg = abi::XdpUmemReg {
                addr: umem.area.as_ptr() as u64,
                len: umem.area.len() as u64,
                chunk_size: umem.frame_size,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            calls::setsockopt(
                b,
                abi::SOL_XDP,
                abi::XDP_UMEM_REG,
                &reg,
                "setsockopt(XDP_UMEM_REG)",
            )?;
        }
        calls::setsockopt(
            b,
            abi::SOL_XDP,
            abi::XDP_UMEM_FILL_RING,
            &rings.fill,
            "setsockopt(XDP_UMEM_FILL_RING)",
        )?;
        calls::setsockopt(
            b,
            abi::SOL_XDP,
            abi::XDP_UMEM_COMPLETION_RING,
            &rings.completion,
            "setsockopt(XDP_UMEM_COMPLETION_RING)",
        )?;
        calls::setsockopt(
            b,
            abi::SOL_XDP,
            abi::XDP_RX_RING,
            &rings.rx,
            "setsockopt(XDP_RX_RING)",
        )?;
        calls::setsockopt(
            b,
            abi::SOL_XDP,
            abi::XDP_TX_RING,
            &rings.tx,
            "setsockopt(XDP_TX_RING)",
        )?;
        // Copy mode transmits at most this many frames per wakeup (default
        // 32): let one wakeup drain a whole batch. Older kernels lack the
        // option; then a batch takes a few wakeups.
        let _ = calls::setsockopt(
            b,
            abi::SOL_XDP,
            abi::XDP_MAX_TX_SKB_BUDGET,
            &rings.tx.min(1024),
            "setsockopt(XDP_MAX_TX_SKB_BUDGET)",
        );
        let off: abi::XdpMmapOffsets = calls::getsockopt(
            b,
            abi::SOL_XDP,
            abi::XDP_MMAP_OFFSETS,
            "getsockopt(XDP_MMAP_OFFSETS)",
        )?;
        let u64s = std::mem::size_of::<u64>();
        let descs = std::mem::size_of::<XdpDesc>();
        let (fm, fb) = ring_mmap(
            b,
            &off.fr,
            rings.fill,
            u64s,
            abi::XDP_UMEM_PGOFF_FILL_RING,
            "mmap(fill ring)",
        )?;
        let (cm, cb) = ring_mmap(
            b,
            &off.cr,
            rings.completion,
            u64s,
            abi::XDP_UMEM_PGOFF_COMPLETION_RING,
            "mmap(completion ring)",
        )?;
        let (rm, rb) = ring_mmap(
            b,
            &off.rx,
            rings.rx,
            descs,
            abi::XDP_PGOFF_RX_RING,
            "mmap(rx ring)",
        )?;
        let (tm, tb) = ring_mmap(
            b,
            &off.tx,
            rings.tx,
            descs,
            abi::XDP_PGOFF_TX_RING,
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
            let _ = calls::setsockopt(
                b,
                libc::SOL_SOCKET,
                abi::SO_PREFER_BUSY_POLL,
                &1i32,
                "setsockopt(SO_PREFER_BUSY_POLL)",
            );
            let _ = calls::setsockopt(
                b,
                libc::SOL_SOCKET,
                abi::SO_BUSY_POLL,
                &(bp.usecs as i32),
                "setsockopt(SO_BUSY_POLL)",
            );
            let _ = calls::setsockopt(
                b,
                libc::SOL_SOCKET,
                abi::SO_BUSY_POLL_BUDGET,
                &(bp.budget as i32),
                "setsockopt(SO_BUSY_POLL_BUDGET)",
            );
        }
        let mut sa = abi::SockaddrXdp {
            sxdp_family: abi::AF_XDP as u16,
            sxdp_flags: 0,
            sxdp_ifindex: spec.ifindex,
            sxdp_queue_id: spec.queue,
            sxdp_shared_umem_fd: 0,
        };
        match owner {
            Some(o) => {
                sa.sxdp_flags = abi::XDP_SHARED_UMEM;
                sa.sxdp_shared_umem_fd = std::os::fd::AsRawFd::as_raw_fd(&o) as u32;
                calls::bind_xdp(b, &sa)?;
            }
            None => {
                let try_bind = |flags: u16| {
                    let sa = abi::SockaddrXdp {
                        sxdp_flags: flags | abi::XDP_USE_NEED_WAKEUP,
                        ..sa
                    };
                    calls::bind_xdp(b, &sa)
                };
                // Multi-buffer first (packets bigger than a frame), then
                // without where the kernel or driver lacks it; sharers of
                // the UMEM inherit what the first socket got.
                let bind_mode = |mode: u16| match try_bind(mode | abi::XDP_USE_SG) {
                    Ok(()) => Ok(true),
                    Err(_) => try_bind(mode).map(|()| false),
                };
                let sg = match mode {
                    BindMode::Copy => bind_mode(abi::XDP_COPY)?,
                    BindMode::ZeroCopy => {
                        bind_mode(abi::XDP_ZEROCOPY).map_err(|source| XskError::NoZeroCopy {
                            ifname: spec.ifname.clone(),
                            queue: spec.queue,
                            source,
                        })?
                    }
                    BindMode::Auto => match bind_mode(abi::XDP_ZEROCOPY) {
                        Ok(sg) => sg,
                        Err(_) => bind_mode(abi::XDP_COPY)?,
                    },
                };
                umem.set_multi_buffer(sg);
            }
        }
        let opts: abi::XdpOptions =
            calls::getsockopt(b, abi::SOL_XDP, abi::XDP_OPTIONS, "getsockopt(XDP_OPTIONS)")?;
        Ok(XskSocket {
            fill,
            comp,
            rx,
            tx,
            umem: umem.clone(),
            spec: spec.clone(),
            zerocopy: opts.flags & abi::XDP_OPTIONS_ZEROCOPY != 0,
            serial: umem.new_serial(),
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

    /// The serial its lent frames are marked with: once the socket is
    /// closed, [`FramePool::reclaim_lent`] with it takes them back.
    pub fn serial(&self) -> u16 {
        self.serial
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
                self.umem.note_lent(f.addr(), self.serial);
                self.fill.push(f.addr());
            }
        }
        if n > 0 {
            self.fill.submit();
        }
        n
    }

    /// Takes up to `max` received frames, calling `f` with each, in ring
    /// order. Packets spanning several frames (multi-buffer: every frame
    /// but the last has `cont` set) are never split between bursts: the
    /// burst goes past `max` to finish one, and leaves a packet whose last
    /// frame the kernel has not published yet for the next burst.
    #[inline]
    pub fn rx_burst(&mut self, max: u32, mut f: impl FnMut(RxFrame)) -> u32 {
        let avail = self.rx.available(max);
        let mut n = avail.min(max);
        if n > 0 && self.rx.peek(n - 1).options & abi::XDP_PKT_CONTD != 0 {
            // Finish the last packet if its frames are there, else stop
            // before it.
            let mut end = n;
            while end < avail && self.rx.peek(end - 1).options & abi::XDP_PKT_CONTD != 0 {
                end += 1;
            }
            if self.rx.peek(end - 1).options & abi::XDP_PKT_CONTD == 0 {
                n = end;
            } else {
                while n > 0 && self.rx.peek(n - 1).options & abi::XDP_PKT_CONTD != 0 {
                    n -= 1;
                }
            }
        }
        for _ in 0..n {
            let d = self.rx.pop();
            match self.umem.reclaim(d.addr) {
                Some((frame, off)) if off.saturating_add(d.len) <= self.umem.frame_size => {
                    f(RxFrame {
                        frame,
                        off,
                        len: d.len,
                        cont: d.options & abi::XDP_PKT_CONTD != 0,
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
        self.tx_push_part(frame, off, len, false)
    }

    /// Queues one frame of a packet; `more`: the packet goes on in the
    /// next frame queued (multi-buffer). The caller checked
    /// [`XskSocket::tx_free`] for the whole packet: a packet must never be
    /// left half queued.
    #[inline]
    pub fn tx_push_part(
        &mut self,
        frame: Frame,
        off: u32,
        len: u32,
        more: bool,
    ) -> Result<(), Frame> {
        if self.tx.free(1) == 0 || frame.umem_id() != self.umem.id {
            return Err(frame);
        }
        self.umem.note_lent(frame.addr(), self.serial);
        self.tx.push(XdpDesc {
            addr: frame.addr() + u64::from(off),
            len,
            options: if more { abi::XDP_PKT_CONTD } else { 0 },
        });
        Ok(())
    }

    /// Whether this socket carries packets spanning several frames.
    pub fn multi_buffer(&self) -> bool {
        self.umem.multi_buffer()
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
    pub fn kick_tx(&mut self) -> Result<calls::Kick, SysError> {
        if self.tx.outstanding() > 0 && self.tx.needs_wakeup() {
            calls::kick_tx(self.fd.as_fd())
        } else {
            Ok(calls::Kick::Done)
        }
    }

    /// Wakes the kernel to process the fill ring if it asked for it.
    #[inline]
    pub fn kick_rx_if_needed(&mut self) -> Result<bool, SysError> {
        if self.fill.needs_wakeup() {
            calls::kick_rx(self.fd.as_fd()).map(|_| true)
        } else {
            Ok(false)
        }
    }

    /// Drives busy polling (`recvfrom`), for the busy-poll idle loop.
    pub fn busy_poll(&mut self) -> Result<(), SysError> {
        calls::kick_rx(self.fd.as_fd()).map(|_| ())
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
    pub fn statistics(&self) -> Result<abi::XdpStatistics, SysError> {
        calls::getsockopt(
            self.fd.as_fd(),
            abi::SOL_XDP,
            abi::XDP_STATISTICS,
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
