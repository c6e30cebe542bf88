//! A worker's AF_XDP sockets: one UMEM, its free frames and a socket per
//! (port, queue) the worker owns; sockets opened for a port added while
//! running, and the closing of a removed (or vanished) port's sockets with
//! every frame they held taken back.
//!
//! ## Closing a socket
//! The control thread first detaches XDP from the interface and removes
//! the socket from the XSKMAP, so no new frame reaches it. The worker then
//! takes the socket out of its active set (nothing is read from or sent to
//! it any more), keeps draining it (RX frames back to the free list, TX
//! kicked, completions collected) until its TX and completion rings are
//! empty or [`CLOSE_DEADLINE`] passes (a deleted device never transmits),
//! and hands it to the reaper thread, which closes it (closing an AF_XDP
//! socket waits for the network stack's RCU grace period and the RTNL
//! lock: milliseconds the worker must not stall for) and, [`RECLAIM_GRACE`]
//! later, when the kernel has released the socket's buffer pool
//! (zero-copy drivers stop DMA in deferred work), tells the worker to take
//! back the frames still lent through it (fill ring, TX ring, inside the
//! kernel) by their lending record ([`FramePool::reclaim_lent`]).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};

use super::plan::{LiveError, LiveOptions, PortPlan};
use crate::io::xsk::{
    BindMode, BusyPoll, FramePool, RingSizes, SocketSpec, Umem, UmemConfig, XskSocket,
};
use crate::pipeline::PortId;
use crate::state::XskMode;

/// How long a closing socket may take to drain its TX ring.
pub(super) const CLOSE_DEADLINE: Duration = Duration::from_millis(100);
/// How long after closing a socket its lent frames are taken back.
pub(super) const RECLAIM_GRACE: Duration = Duration::from_millis(50);

/// No socket: frames routed to a port this worker has no socket on.
pub(super) const NO_SOCKET: usize = usize::MAX;

/// A socket taken out of service, draining until it can be closed.
pub(super) struct Closing {
    pub(super) sock: XskSocket,
    pub(super) port: PortId,
    pub(super) deadline: Instant,
}

/// A worker's I/O: one UMEM, its free frames and its sockets.
pub(super) struct WorkerIo {
    pub(super) umem: Arc<Umem>,
    pub(super) pool: FramePool,
    pub(super) sockets: Vec<XskSocket>,
    /// Port of each socket.
    pub(super) port_of: Vec<PortId>,
    /// The socket each port transmits on ([`NO_SOCKET`]: none).
    pub(super) tx_of: Vec<usize>,
    /// Sockets being closed.
    pub(super) closing: Vec<Closing>,
    /// Serials of closed sockets whose frames are taken back at the time
    /// given.
    pub(super) reclaim: Vec<(Instant, u16)>,
    /// Ring sizes of sockets opened for ports added while running.
    pub(super) added_rings: RingSizes,
    /// Bind mode when a socket must register the UMEM anew (the worker had
    /// no socket left to share it with).
    pub(super) mode: BindMode,
    pub(super) busy_poll: Option<BusyPoll>,
    /// The socket set changed (the loop rebuilds its poll set).
    pub(super) changed: bool,
    /// Where closed sockets go, with where the reaper answers (the serial
    /// of each socket closed and released); `None`: the worker closes them
    /// itself.
    pub(super) reaper: Option<(Sender<Reap>, Sender<u16>, Receiver<u16>)>,
    /// Sockets with the reaper, by serial, with their port.
    pub(super) reaping: Vec<(u16, PortId)>,
}

/// Sockets opened for a port and a duplicate of each descriptor, by queue
/// (for the XSKMAP).
pub(super) type Opened = (Vec<XskSocket>, Vec<(u32, OwnedFd)>);

/// How to open sockets on a worker's UMEM from another thread.
#[derive(Debug, Clone)]
pub(super) struct SocketFactory {
    pub(super) umem: Arc<Umem>,
    pub(super) rings: RingSizes,
    pub(super) mode: BindMode,
    pub(super) busy_poll: Option<BusyPoll>,
}

impl SocketFactory {
    /// Opens a socket on each of `queues` of `plan`'s interface over the
    /// UMEM (shared with `owner`, else registering it). Returns them and a
    /// duplicate of each descriptor, by queue, for the XSKMAP. On failure
    /// nothing stays open.
    pub(super) fn open(
        &self,
        plan: &PortPlan,
        queues: &[u32],
        owner: Option<BorrowedFd<'_>>,
    ) -> Result<Opened, LiveError> {
        let mut opened: Vec<XskSocket> = Vec::new();
        let mut fds = Vec::new();
        for q in queues {
            let spec = SocketSpec {
                ifname: plan.ifname.clone(),
                ifindex: plan.ifindex,
                queue: *q,
            };
            let own = owner.or(opened.first().map(|s| s.fd()));
            let s = XskSocket::create(
                &self.umem,
                &spec,
                self.rings,
                self.mode,
                own,
                self.busy_poll,
            )
            .map_err(|source| LiveError::Xsk {
                what: format!("AF_XDP socket on {} queue {q}", plan.ifname),
                source,
            })?;
            let fd = s.fd().try_clone_to_owned().map_err(|source| {
                LiveError::Sys(crate::io::sys::SysError {
                    call: "dup(AF_XDP socket)",
                    source,
                })
            })?;
            opened.push(s);
            fds.push((*q, fd));
        }
        Ok((opened, fds))
    }
}

/// A socket for the reaper to close.
pub(super) struct Reap {
    sock: XskSocket,
    reply: Sender<u16>,
}

/// The reaper thread: closes the sockets workers hand it and, a grace
/// period later, tells each worker to take back the frames lent through
/// them. Ends when every sender is gone and nothing is pending.
pub(super) fn start_reaper() -> std::io::Result<(Sender<Reap>, std::thread::JoinHandle<()>)> {
    let (tx, rx): (Sender<Reap>, Receiver<Reap>) = channel::unbounded();
    let t = std::thread::Builder::new()
        .name("sluice-reaper".into())
        .spawn(move || {
            let mut pending: Vec<(Instant, u16, Sender<u16>)> = Vec::new();
            let mut open = true;
            while open || !pending.is_empty() {
                match rx.recv_timeout(Duration::from_millis(10)) {
                    Ok(r) => {
                        let serial = r.sock.serial();
                        drop(r.sock);
                        pending.push((Instant::now() + RECLAIM_GRACE, serial, r.reply));
                    }
                    Err(channel::RecvTimeoutError::Disconnected) => open = false,
                    Err(channel::RecvTimeoutError::Timeout) => {}
                }
                let now = Instant::now();
                pending.retain(|(at, serial, reply)| {
                    let due = !open || now >= *at;
                    if due {
                        let _ = reply.send(*serial);
                    }
                    !due
                });
            }
        })?;
    Ok((tx, t))
}

pub(super) fn bind_mode(modes: &[XskMode]) -> BindMode {
    if modes.contains(&XskMode::Copy) {
        BindMode::Copy
    } else if modes.contains(&XskMode::Zerocopy) {
        BindMode::ZeroCopy
    } else {
        BindMode::Auto
    }
}

pub(super) fn open_worker_io(
    ports: &[PortPlan],
    mine: &[(PortId, u32)],
    opts: &LiveOptions,
    busy_poll: Option<BusyPoll>,
) -> Result<WorkerIo, LiveError> {
    let rings = RingSizes {
        fill: opts.ring_size,
        completion: opts.ring_size,
        rx: opts.ring_size,
        tx: opts.ring_size,
    };
    // Enough frames to fill every fill ring and every TX ring at once, and
    // a reserve for the sockets of ports added while running.
    let frames = mine.len() as u32 * (rings.fill + rings.tx) + opts.spare_frames;
    let (umem, tokens) = Umem::new(UmemConfig {
        frames,
        frame_size: opts.frame_size,
        hugepages: opts.hugepages,
    })
    .map_err(|source| LiveError::Xsk {
        what: "UMEM".into(),
        source,
    })?;
    let mut pool = FramePool::new(tokens);
    // With one shared UMEM all of a worker's sockets run in one mode.
    let modes: Vec<XskMode> = mine
        .iter()
        .filter_map(|(p, _)| ports.get(usize::from(*p)).map(|pp| pp.mode))
        .collect();
    let mode = bind_mode(&modes);
    let open = |mode: BindMode| -> Result<Vec<XskSocket>, LiveError> {
        let mut socks: Vec<XskSocket> = Vec::with_capacity(mine.len());
        for (p, q) in mine {
            let pp = &ports[usize::from(*p)];
            let spec = SocketSpec {
                ifname: pp.ifname.clone(),
                ifindex: pp.ifindex,
                queue: *q,
            };
            let owner = socks.first().map(|s| s.fd());
            let s = XskSocket::create(&umem, &spec, rings, mode, owner, busy_poll).map_err(
                |source| LiveError::Xsk {
                    what: format!("AF_XDP socket on {} queue {q}", pp.ifname),
                    source,
                },
            )?;
            socks.push(s);
        }
        Ok(socks)
    };
    let sockets = match open(mode) {
        Ok(s) => s,
        // Auto: the first port did zero-copy but a later one cannot share
        // it in zero-copy; everyone copies.
        Err(_) if mode == BindMode::Auto => open(BindMode::Copy)?,
        Err(e) => return Err(e),
    };
    let port_of: Vec<PortId> = mine.iter().map(|(p, _)| *p).collect();
    let added = opts.added_ring_size.min(opts.ring_size);
    let mut io = WorkerIo {
        umem,
        pool: FramePool::new(Vec::new()),
        sockets,
        port_of,
        tx_of: Vec::new(),
        closing: Vec::new(),
        reclaim: Vec::new(),
        added_rings: RingSizes {
            fill: added,
            completion: added,
            rx: added,
            tx: added,
        },
        mode,
        busy_poll,
        changed: false,
        reaper: None,
        reaping: Vec::new(),
    };
    io.reindex();
    for s in &mut io.sockets {
        s.refill(&mut pool);
    }
    io.pool = pool;
    Ok(io)
}

impl WorkerIo {
    /// Recomputes the socket each port transmits on.
    pub(super) fn reindex(&mut self) {
        let n = self.port_of.iter().map(|p| usize::from(*p) + 1).max();
        self.tx_of = vec![NO_SOCKET; n.unwrap_or(0)];
        for (i, p) in self.port_of.iter().enumerate() {
            if let Some(t) = self.tx_of.get_mut(usize::from(*p)) {
                if *t == NO_SOCKET {
                    *t = i;
                }
            }
        }
        self.changed = true;
    }

    /// What the control thread needs to open sockets on this worker's
    /// UMEM for a port added while running.
    pub(super) fn factory(&self) -> SocketFactory {
        SocketFactory {
            umem: self.umem.clone(),
            rings: self.added_rings,
            mode: self.mode,
            busy_poll: self.busy_poll,
        }
    }

    /// A duplicate of a bound socket's descriptor, for new sockets to share
    /// the UMEM with (`None`: the worker has no socket left).
    pub(super) fn owner_fd(&self) -> Option<OwnedFd> {
        self.sockets
            .first()
            .and_then(|s| s.fd().try_clone_to_owned().ok())
    }

    /// Takes sockets opened for `port` into service: fills their fill
    /// rings. No system call: opening them (which takes the kernel's RTNL
    /// lock, milliseconds under churn) happened on the control thread.
    pub(super) fn adopt(&mut self, port: PortId, sockets: Vec<XskSocket>) {
        for mut s in sockets {
            s.refill(&mut self.pool);
            self.sockets.push(s);
            self.port_of.push(port);
        }
        self.reindex();
    }

    /// Takes every socket of `port` out of service (they drain, then
    /// close). Returns how many.
    pub(super) fn remove_port(&mut self, port: PortId, now: Instant) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.sockets.len() {
            if self.port_of[i] == port {
                self.retire(i, now);
                n += 1;
            } else {
                i += 1;
            }
        }
        n
    }

    /// Takes socket `si` out of service; returns its port.
    pub(super) fn retire(&mut self, si: usize, now: Instant) -> Option<PortId> {
        if si >= self.sockets.len() {
            return None;
        }
        let sock = self.sockets.remove(si);
        let port = self.port_of.remove(si);
        self.closing.push(Closing {
            sock,
            port,
            deadline: now + CLOSE_DEADLINE,
        });
        self.reindex();
        Some(port)
    }

    /// Whether a socket of `port` is still open (active or closing).
    pub(super) fn has_port(&self, port: PortId) -> bool {
        self.port_of.contains(&port)
            || self.closing.iter().any(|c| c.port == port)
            || self.reaping.iter().any(|(_, p)| *p == port)
    }

    /// The reaper closed socket `serial`: takes back its frames.
    pub(super) fn reclaim(&mut self, serial: u16) -> u32 {
        self.reaping.retain(|(s, _)| *s != serial);
        self.pool.reclaim_lent(&self.umem, serial)
    }

    /// Drains the closing sockets, closes those done (or out of time) and
    /// takes back the frames of those closed long enough ago. Returns the
    /// frames taken back.
    pub(super) fn service_closing(&mut self, now: Instant, force: bool) -> u32 {
        let pool = &mut self.pool;
        let mut i = 0;
        while i < self.closing.len() {
            let c = &mut self.closing[i];
            c.sock.rx_burst(u32::MAX, |f| pool.push(f.frame));
            c.sock.complete(pool);
            let _ = c.sock.kick_tx();
            c.sock.complete(pool);
            let drained = c.sock.tx_outstanding() == 0 && c.sock.levels().completion == 0;
            if drained || force || now >= c.deadline {
                let c = self.closing.swap_remove(i);
                let serial = c.sock.serial();
                match (&self.reaper, force) {
                    (Some((reaper, me, _)), false) => {
                        self.reaping.push((serial, c.port));
                        let r = Reap {
                            sock: c.sock,
                            reply: me.clone(),
                        };
                        if let Err(channel::SendError(r)) = reaper.send(r) {
                            drop(r.sock);
                            self.reaping.retain(|(s, _)| *s != serial);
                            self.reclaim.push((now + RECLAIM_GRACE, serial));
                        }
                    }
                    _ => {
                        drop(c.sock);
                        self.reclaim.push((now + RECLAIM_GRACE, serial));
                    }
                }
            } else {
                i += 1;
            }
        }
        let mut got = 0;
        let done: Vec<u16> = match &self.reaper {
            Some((_, _, rx)) => rx.try_iter().collect(),
            None => Vec::new(),
        };
        for serial in done {
            got += self.reclaim(serial);
        }
        if force {
            // Shutting down: XDP is detached everywhere and the reaper has
            // closed (or will drop) what it was given.
            for (serial, _) in std::mem::take(&mut self.reaping) {
                got += self.pool.reclaim_lent(&self.umem, serial);
            }
        }
        let mut i = 0;
        while i < self.reclaim.len() {
            let (at, serial) = self.reclaim[i];
            if force || now >= at {
                got += self.pool.reclaim_lent(&self.umem, serial);
                self.reclaim.swap_remove(i);
            } else {
                i += 1;
            }
        }
        got
    }

    /// Nothing is closing or waiting to be taken back.
    pub(super) fn settled(&self) -> bool {
        self.closing.is_empty() && self.reclaim.is_empty() && self.reaping.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(bind_mode(&[XskMode::Auto, XskMode::Auto]), BindMode::Auto);
        assert_eq!(bind_mode(&[XskMode::Auto, XskMode::Copy]), BindMode::Copy);
        assert_eq!(
            bind_mode(&[XskMode::Zerocopy, XskMode::Auto]),
            BindMode::ZeroCopy
        );
    }
}
