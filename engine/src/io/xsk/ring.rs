//! The AF_XDP rings: single-producer single-consumer queues of
//! descriptors shared with the kernel, as a [`Producer`] (fill and TX rings
//! for us) or a [`Consumer`] (RX and completion rings). Each side caches
//! the other's index and refreshes it only when the cached view falls
//! short. `tests::ring_matches_model` checks them against a `VecDeque`
//! model and `tests::ring_across_threads` across two threads; both run
//! under Miri (`cd engine && cargo +nightly miri test --lib
//! io::xsk::ring::tests`).
#![allow(unsafe_code)]

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::io::sys::abi;
use crate::io::sys::error::SysError;
use crate::io::sys::mmap::Mmap;

/// Memory behind a ring: the kernel's mapping, or (tests) the heap.
#[derive(Debug)]
pub(super) enum RingMem {
    // The payloads are never read, only owned: they keep the memory the
    // ring's pointers target alive (hence `dead_code`).
    Mmap(#[allow(dead_code)] Mmap),
    #[cfg(test)]
    Heap(#[allow(dead_code)] HeapRing),
}

/// Where one ring's producer and consumer indices, flags and descriptors
/// live. Shared by the two sides of the ring.
#[derive(Debug)]
pub(super) struct RingRaw<T> {
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
    pub(super) unsafe fn new(
        mem: Arc<RingMem>,
        base: *mut u8,
        off: &abi::XdpRingOffset,
        size: u32,
    ) -> Self {
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
    pub(super) fn new(raw: RingRaw<T>) -> Self {
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
    pub(super) fn push(&mut self, v: T) {
        debug_assert!(self.cached_cons.wrapping_sub(self.cached_prod) > 0);
        self.raw.write(self.cached_prod, v);
        self.cached_prod = self.cached_prod.wrapping_add(1);
    }

    /// Publishes everything pushed.
    #[inline]
    pub(super) fn submit(&mut self) {
        self.raw
            .producer()
            .store(self.cached_prod, Ordering::Release);
    }

    /// Entries pushed (published or not) and not yet released by the
    /// consumer.
    pub(super) fn outstanding(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.raw.consumer().load(Ordering::Acquire))
    }

    pub(super) fn needs_wakeup(&self) -> bool {
        self.raw.flags() & abi::XDP_RING_NEED_WAKEUP != 0
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
    pub(super) fn new(raw: RingRaw<T>) -> Self {
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

    /// Reads the `i`-th entry after the next one without consuming it; the
    /// caller checked [`Consumer::available`] covers it.
    #[inline]
    pub(super) fn peek(&self, i: u32) -> T {
        debug_assert!(self.cached_prod.wrapping_sub(self.cached_cons) > i);
        self.raw.read(self.cached_cons.wrapping_add(i))
    }

    /// Reads one entry; the caller checked [`Consumer::available`].
    #[inline]
    pub(super) fn pop(&mut self) -> T {
        debug_assert!(self.cached_prod.wrapping_sub(self.cached_cons) > 0);
        let v = self.raw.read(self.cached_cons);
        self.cached_cons = self.cached_cons.wrapping_add(1);
        v
    }

    /// Hands the slots read back to the producer.
    #[inline]
    pub(super) fn release(&mut self) {
        self.raw
            .consumer()
            .store(self.cached_cons, Ordering::Release);
    }

    /// Entries published by the producer and not yet released.
    pub(super) fn outstanding(&self) -> u32 {
        self.raw
            .producer()
            .load(Ordering::Acquire)
            .wrapping_sub(self.cached_cons)
    }
}

/// Maps the ring of `entries` entries of `entry_size` bytes at the kernel's
/// offsets `off` (page offset `pgoff` of the socket `fd`); returns the
/// mapping and its base address, for [`RingRaw::new`].
pub(super) fn ring_mmap(
    fd: BorrowedFd<'_>,
    off: &abi::XdpRingOffset,
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

/// Ring memory from the allocator (raw, so both sides' pointers keep
/// their provenance; freed on drop).
#[cfg(test)]
#[derive(Debug)]
pub(super) struct HeapRing {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

// SAFETY: plain memory owned by this value; accessed through the ring
// protocol (atomics for indices).
#[cfg(test)]
unsafe impl Send for HeapRing {}
// SAFETY: as above.
#[cfg(test)]
unsafe impl Sync for HeapRing {}

#[cfg(test)]
impl Drop for HeapRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `heap_ring` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A ring on the heap with both sides, laid out like the kernel's:
    /// producer, consumer and flags words on their own cache lines, then
    /// the descriptors.
    fn heap_ring(size: u32) -> (Producer<u64>, Consumer<u64>) {
        let off = abi::XdpRingOffset {
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
}
