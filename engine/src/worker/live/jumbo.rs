//! Packets bigger than a UMEM frame (AF_XDP multi-buffer, for MTUs up to
//! 9000 and beyond): the kernel hands such a packet over as several
//! frames in a row, every one but the last marked "continues". The
//! pipeline works on contiguous bytes, so a worker copies such a packet
//! into a scratch buffer for the batch and, once processed, copies the
//! result back into the packet's own frames to send it as several frames
//! again. Copy mode already copies every byte once each way; this adds a
//! copy each way for big packets only. Frames that fit one frame take the
//! usual zero-copy path untouched.
//!
//! [`Held`] is what a burst received: the first frame of each packet, and
//! the other frames of the multi-frame ones beside.

use arrayvec::ArrayVec;

use crate::io::xsk::{Frame, FramePool, RxFrame, Umem, XskSocket};
use crate::pipeline::{PortId, MAX_BATCH};

/// Longest packet sluice reassembles (bytes, link header included).
pub(super) const MAX_PACKET: usize = 16 * 1024;
/// Most frames one packet may span.
pub(super) const MAX_PARTS: usize = 16;
/// No batch slot or scratch buffer.
pub(super) const NONE: u16 = u16::MAX;

/// The first frame of a received packet.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) rx: RxFrame,
    pub(super) port: PortId,
    /// Its other frames: `rest[start..start + parts]`.
    pub(super) start: u16,
    pub(super) parts: u8,
    /// Longer than sluice takes ([`MAX_PACKET`], [`MAX_PARTS`]).
    pub(super) too_long: bool,
    /// Its slot in the batch ([`NONE`]: not in it).
    pub(super) slot: u16,
    /// Its scratch buffer ([`NONE`]: its bytes are in its frame).
    pub(super) buf: u16,
}

/// The frames a burst received.
#[derive(Debug, Default)]
pub(crate) struct Held {
    pub(super) heads: ArrayVec<Head, MAX_BATCH>,
    pub(super) rest: ArrayVec<Option<RxFrame>, { MAX_BATCH + MAX_PARTS }>,
    /// Packets of more than one frame among `heads`.
    pub(super) multi: usize,
    /// The last frame taken said the packet continues.
    open: bool,
}

impl Held {
    pub(super) fn new() -> Self {
        Held::default()
    }

    /// Frames held.
    pub(super) fn len(&self) -> usize {
        self.heads.len() + self.rest.iter().filter(|f| f.is_some()).count()
    }

    pub(super) fn clear(&mut self) {
        self.heads.clear();
        self.rest.clear();
        self.multi = 0;
        self.open = false;
    }

    /// Takes a frame received on `port`, in ring order. Gives back one it
    /// cannot keep (its packet is then marked too long; the caller frees
    /// the frame).
    #[inline]
    pub(super) fn take(&mut self, f: RxFrame, port: PortId) -> Option<RxFrame> {
        let cont = f.cont;
        let r = if self.open {
            match self.heads.last_mut() {
                Some(h) if usize::from(h.parts) < MAX_PARTS && !self.rest.is_full() => {
                    if h.parts == 0 {
                        self.multi += 1;
                    }
                    h.parts += 1;
                    self.rest.push(Some(f));
                    None
                }
                Some(h) => {
                    h.too_long = true;
                    Some(f)
                }
                None => Some(f),
            }
        } else {
            let start = self.rest.len() as u16;
            self.heads
                .try_push(Head {
                    rx: f,
                    port,
                    start,
                    parts: 0,
                    too_long: false,
                    slot: NONE,
                    buf: NONE,
                })
                .err()
                .map(|e| e.element().rx)
        };
        self.open = cont;
        r
    }
}

/// Gives the other frames of `h` (in `rest`) back to the pool.
pub(super) fn free_parts(rest: &mut [Option<RxFrame>], h: &Head, pool: &mut FramePool) {
    let (s, n) = (usize::from(h.start), usize::from(h.parts));
    for f in rest.iter_mut().skip(s).take(n) {
        if let Some(f) = f.take() {
            pool.push(f.frame);
        }
    }
}

/// Sends `data` (the processed packet of `h`) out of `out` in the
/// packet's own frames, as many as it needs, every one but the last
/// marked "continues"; frames left over go back to the pool.
pub(super) fn send(
    rest: &mut [Option<RxFrame>],
    umem: &Umem,
    pool: &mut FramePool,
    out: &mut XskSocket,
    h: Head,
    data: &[u8],
) -> Result<u32, SendError> {
    let fs = umem.frame_size();
    let (s, n) = (usize::from(h.start), usize::from(h.parts));
    let mut pieces: ArrayVec<(Frame, u32), { MAX_PARTS + 1 }> = ArrayVec::new();
    pieces.push((h.rx.frame, h.rx.off));
    for f in rest.iter_mut().skip(s).take(n) {
        if let Some(f) = f.take() {
            pieces.push((f.frame, f.off));
        }
    }
    let mut need = 0;
    let mut room = 0usize;
    for (_, off) in &pieces {
        if room >= data.len() {
            break;
        }
        room += (fs - off) as usize;
        need += 1;
    }
    let err = if room < data.len() || (need > 1 && !out.multi_buffer()) {
        Some(SendError::TooLong)
    } else if out.tx_free(need) < need {
        Some(SendError::RingFull)
    } else {
        None
    };
    if let Some(e) = err {
        for (f, _) in pieces {
            pool.push(f);
        }
        return Err(e);
    }
    let mut at = 0;
    let mut queued = 0;
    for (i, (mut f, off)) in pieces.into_iter().enumerate() {
        if (i as u32) >= need {
            pool.push(f);
            continue;
        }
        let len = ((fs - off) as usize).min(data.len() - at);
        umem.bytes_mut(&mut f, off, len as u32)
            .copy_from_slice(&data[at..at + len]);
        at += len;
        // Cannot fail: the ring had room for all `need` (checked).
        match out.tx_push_part(f, off, len as u32, (i as u32) + 1 < need) {
            Ok(()) => queued += 1,
            Err(f) => pool.push(f),
        }
    }
    Ok(queued)
}

/// Copies the packet of `h` (its first frame, then its other frames in
/// `rest`) into `buf`; returns its length, or `None` if it does not fit.
pub(super) fn gather(
    umem: &Umem,
    h: &mut Head,
    rest: &mut [Option<RxFrame>],
    buf: &mut [u8],
) -> Option<usize> {
    let mut at = 0;
    let mut copy = |frame: &mut Frame, off: u32, len: u32| -> Option<()> {
        let src = umem.bytes_mut(frame, off, len);
        buf.get_mut(at..at + src.len())?.copy_from_slice(src);
        at += src.len();
        Some(())
    };
    copy(&mut h.rx.frame, h.rx.off, h.rx.len)?;
    let (s, n) = (usize::from(h.start), usize::from(h.parts));
    for f in rest.iter_mut().skip(s).take(n).flatten() {
        copy(&mut f.frame, f.off, f.len)?;
    }
    Some(at)
}

/// Why a multi-frame packet was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SendError {
    /// Its frames cannot hold it, or the socket takes one frame per packet.
    TooLong,
    /// No room in the TX ring for all its frames.
    RingFull,
}

/// Scratch buffers for the multi-frame packets of a batch, grown on first
/// need (at most one per packet of a burst) and kept.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    pub(super) buf: Vec<u8>,
}

impl Scratch {
    /// Makes room for `n` packets.
    pub(super) fn reserve(&mut self, n: usize) {
        if self.buf.len() < n * MAX_PACKET {
            self.buf.resize(n * MAX_PACKET, 0);
        }
    }

    /// Buffer `i`, `len` bytes.
    pub(super) fn get(&mut self, i: u16, len: usize) -> &mut [u8] {
        let at = usize::from(i) * MAX_PACKET;
        &mut self.buf[at..at + len.min(MAX_PACKET)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::xsk::UmemConfig;

    fn frames(n: u32) -> (std::sync::Arc<Umem>, FramePool) {
        let (u, tokens) = Umem::new(UmemConfig {
            frames: n,
            frame_size: 2048,
            hugepages: false,
        })
        .unwrap();
        (u, FramePool::new(tokens))
    }

    fn rx(pool: &mut FramePool, len: u32, cont: bool) -> RxFrame {
        RxFrame {
            frame: pool.pop().unwrap(),
            off: 256,
            len,
            cont,
        }
    }

    #[test]
    fn packets_are_gathered_from_their_frames_in_order() {
        let (umem, mut pool) = frames(16);
        let mut held = Held::new();
        // A one-frame packet, a three-frame packet, a one-frame packet.
        let mut a = rx(&mut pool, 60, false);
        umem.bytes_mut(&mut a.frame, 256, 60).fill(1);
        assert!(held.take(a, 0).is_none());
        for (i, (len, cont)) in [(1792u32, true), (1792, true), (100, false)]
            .into_iter()
            .enumerate()
        {
            let mut f = rx(&mut pool, len, cont);
            umem.bytes_mut(&mut f.frame, 256, len).fill(10 + i as u8);
            assert!(held.take(f, 1).is_none());
        }
        assert!(held.take(rx(&mut pool, 60, false), 0).is_none());
        assert_eq!(held.heads.len(), 3);
        assert_eq!(held.len(), 5);
        assert_eq!(held.multi, 1);
        let (parts, start) = (held.heads[1].parts, held.heads[1].start);
        assert_eq!((parts, start), (2, 0));
        let mut h = held.heads.remove(1);
        let mut buf = vec![0u8; MAX_PACKET];
        let n = gather(&umem, &mut h, &mut held.rest, &mut buf).unwrap();
        assert_eq!(n, 1792 * 2 + 100);
        assert!(buf[..1792].iter().all(|&b| b == 10));
        assert!(buf[1792..3584].iter().all(|&b| b == 11));
        assert!(buf[3584..n].iter().all(|&b| b == 12));
        free_parts(&mut held.rest, &h, &mut pool);
        pool.push(h.rx.frame);
        for h in held.heads.drain(..) {
            pool.push(h.rx.frame);
        }
        assert_eq!(pool.len(), 16, "every frame back");
    }

    #[test]
    fn a_packet_of_too_many_frames_is_marked_and_its_extra_frames_given_back() {
        let (_umem, mut pool) = frames(32);
        let mut held = Held::new();
        let mut back = 0;
        for i in 0..(MAX_PARTS + 3) {
            let last = i == MAX_PARTS + 2;
            if let Some(f) = held.take(rx(&mut pool, 1792, !last), 0) {
                pool.push(f.frame);
                back += 1;
            }
        }
        assert_eq!(back, 2);
        assert!(held.heads[0].too_long);
        assert_eq!(usize::from(held.heads[0].parts), MAX_PARTS);
    }
}
