//! The UMEM, the packet buffer area shared with the kernel, and the
//! [`Frame`] token: one move-only token per `frame_size` chunk, so the
//! compiler enforces one owner per frame. A token carries its UMEM's id,
//! and a UMEM lends bytes only for its own tokens. [`FramePool`] holds a
//! worker's free frames.
//!
//! ## Lending record
//! Every frame handed to the kernel (a fill or TX ring) is marked with the
//! serial of the socket it went through: one store per frame, no lock.
//! When a socket closes, the frames marked with its serial and not back in
//! the free list are exactly those the kernel still held for it (in its
//! rings or inside the kernel); [`FramePool::reclaim_lent`] makes them
//! tokens again, so removing a socket never loses a frame.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use super::error::XskError;
use crate::io::sys::mmap::Mmap;

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
    pub(super) fn umem_id(&self) -> u16 {
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
    /// The packet goes on in the next frame received (multi-buffer).
    pub cont: bool,
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
    pub(super) id: u16,
    pub(super) area: Mmap,
    pub(super) frame_size: u32,
    frames: u32,
    huge: bool,
    /// Serial of the socket each frame was last lent through (0: never).
    /// Written by the one worker owning the UMEM; read when a socket closes.
    lent: Box<[AtomicU16]>,
    /// Serials of the sockets not reclaimed yet (control path only).
    serials: Mutex<Vec<u16>>,
    /// The first socket bound with `XDP_USE_SG`: every socket of this UMEM
    /// receives and sends packets spanning several frames.
    multi_buffer: AtomicBool,
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
                lent: (0..cfg.frames).map(|_| AtomicU16::new(0)).collect(),
                serials: Mutex::new(Vec::new()),
                multi_buffer: AtomicBool::new(false),
            }),
            tokens,
        ))
    }

    /// Whether this UMEM's sockets carry packets spanning several frames
    /// (set when its first socket is bound).
    pub fn multi_buffer(&self) -> bool {
        self.multi_buffer.load(Ordering::Relaxed)
    }

    pub(super) fn set_multi_buffer(&self, on: bool) {
        self.multi_buffer.store(on, Ordering::Relaxed);
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

    /// A serial for a new socket: never 0, never one of a socket whose
    /// frames were not reclaimed yet.
    pub(super) fn new_serial(&self) -> u16 {
        let mut live = self.serials.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = live.last().copied().unwrap_or(0);
        loop {
            s = s.wrapping_add(1);
            if s != 0 && !live.contains(&s) {
                live.push(s);
                return s;
            }
        }
    }

    /// Records that the chunk at `addr` was lent to the kernel through the
    /// socket `serial`.
    #[inline]
    pub(super) fn note_lent(&self, addr: u64, serial: u16) {
        let i = (addr / u64::from(self.frame_size)) as usize;
        if let Some(l) = self.lent.get(i) {
            l.store(serial, Ordering::Relaxed);
        }
    }

    /// A token for the chunk containing `addr`, as handed back by the
    /// kernel, with the offset of `addr` in it; `None` if outside the UMEM.
    #[inline]
    pub(super) fn reclaim(&self, addr: u64) -> Option<(Frame, u32)> {
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

    /// Takes back every frame of `umem` lent through the socket `serial`
    /// and not returned: call once that socket is closed and the kernel is
    /// done with its frames. Returns how many. Not for the fast path (it
    /// walks the whole UMEM).
    pub fn reclaim_lent(&mut self, umem: &Umem, serial: u16) -> u32 {
        if serial == 0 {
            return 0;
        }
        let mut free = vec![false; umem.frames as usize];
        for f in &self.free {
            if f.umem_id() == umem.id {
                if let Some(x) = free.get_mut((f.addr() / u64::from(umem.frame_size)) as usize) {
                    *x = true;
                }
            }
        }
        let mut n = 0;
        for (i, (l, is_free)) in umem.lent.iter().zip(&free).enumerate() {
            if l.load(Ordering::Relaxed) == serial {
                l.store(0, Ordering::Relaxed);
                if !is_free {
                    let addr = i as u64 * u64::from(umem.frame_size);
                    self.free
                        .push(Frame((u64::from(umem.id) << ID_SHIFT) | addr));
                    n += 1;
                }
            }
        }
        let mut live = umem.serials.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|s| *s != serial);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames lent through a socket come back once, whether they were
    /// still with the kernel or already returned; another socket's stay
    /// lent.
    #[test]
    fn lent_frames_are_reclaimed_once() {
        let (umem, tokens) = Umem::new(UmemConfig {
            frames: 8,
            frame_size: 2048,
            hugepages: false,
        })
        .unwrap();
        let mut pool = FramePool::new(tokens);
        let (a, b) = (umem.new_serial(), umem.new_serial());
        assert!(a != 0 && b != 0 && a != b);
        // Three frames lent through `a` (the ring consumes the token), one
        // of them returned; two through `b`.
        let mut back = None;
        for i in 0..3 {
            let f = pool.pop().unwrap();
            umem.note_lent(f.addr(), a);
            if i == 0 {
                back = Some(f);
            }
        }
        for _ in 0..2 {
            let f = pool.pop().unwrap();
            umem.note_lent(f.addr(), b);
        }
        pool.push(back.unwrap());
        assert_eq!(pool.len(), 4);
        assert_eq!(pool.reclaim_lent(&umem, a), 2);
        assert_eq!(pool.len(), 6);
        assert_eq!(pool.reclaim_lent(&umem, a), 0, "once");
        // `a` is free again: a new serial may take it, never `b`'s.
        let c = umem.new_serial();
        assert_ne!(c, b);
        assert_eq!(pool.reclaim_lent(&umem, b), 2);
        assert_eq!(pool.len(), 8);
        let mut addrs: Vec<u64> = std::iter::from_fn(|| pool.pop())
            .map(|f| f.addr())
            .collect();
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(addrs.len(), 8, "no frame twice");
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
