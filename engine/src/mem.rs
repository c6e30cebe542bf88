//! Memory hints for the big tables: a cache-line prefetch and huge-page
//! advice. Neither changes what memory holds; both only change how fast it
//! is reached. Here rather than in `io` so that `tables` can use them
//! without depending on the outside-world layer: a tiny fenced module, one
//! of the few allowed `unsafe` (each block argued).
#![allow(unsafe_code)]

use std::io;

use thiserror::Error;

/// A failed `madvise`, named (the advice was not taken).
#[derive(Debug, Error)]
#[error("{call}: {source}")]
pub struct AdviceError {
    /// The call and its advice (`madvise(MADV_HUGEPAGE)`).
    pub call: &'static str,
    pub source: io::Error,
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
pub fn advise_hugepages<T>(s: &[T]) -> Result<(), AdviceError> {
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
        return Err(AdviceError {
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
        Err(AdviceError {
            call: "madvise(MADV_COLLAPSE)",
            source: io::Error::last_os_error(),
        })
    }
}
