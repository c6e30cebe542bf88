//! A worker's AF_XDP sockets: one UMEM, its free frames and a socket per
//! (port, queue) the worker owns.

use std::sync::Arc;

use super::plan::{LiveError, LiveOptions, PortPlan};
use crate::io::xsk::{
    BindMode, BusyPoll, FramePool, RingSizes, SocketSpec, Umem, UmemConfig, XskSocket,
};
use crate::pipeline::PortId;
use crate::state::XskMode;

/// A worker's I/O: one UMEM, its free frames and its sockets.
pub(super) struct WorkerIo {
    pub(super) umem: Arc<Umem>,
    pub(super) pool: FramePool,
    pub(super) sockets: Vec<XskSocket>,
    /// Port of each socket.
    pub(super) port_of: Vec<PortId>,
    /// The socket each port transmits on.
    pub(super) tx_of: Vec<usize>,
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
    // Enough frames to fill every fill ring and every TX ring at once.
    let frames = mine.len() as u32 * (rings.fill + rings.tx);
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
            let s = XskSocket::create(&umem, &spec, rings, mode, socks.first(), busy_poll)
                .map_err(|source| LiveError::Xsk {
                    what: format!("AF_XDP socket on {} queue {q}", pp.ifname),
                    source,
                })?;
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
    let tx_of = (0..ports.len())
        .map(|p| {
            port_of
                .iter()
                .position(|&x| usize::from(x) == p)
                .unwrap_or(0)
        })
        .collect();
    let mut io = WorkerIo {
        umem,
        pool: FramePool::new(Vec::new()),
        sockets,
        port_of,
        tx_of,
    };
    for s in &mut io.sockets {
        s.refill(&mut pool);
    }
    io.pool = pool;
    Ok(io)
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
