//! Owned memory mappings: the UMEM's anonymous memory, the AF_XDP rings
//! and mmapable BPF maps shared with the kernel, viewed as atomics where
//! both sides write.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use super::error::SysError;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
