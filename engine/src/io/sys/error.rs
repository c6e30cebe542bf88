//! The funnel's error: a failed system call, named by the call (and the
//! option or request where that matters), so a log line says what the
//! kernel refused.

use std::io;

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
    /// The error of the call that just failed (`errno`).
    pub(super) fn last(call: &'static str) -> SysError {
        SysError {
            call,
            source: io::Error::last_os_error(),
        }
    }

    /// The errno, if any.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// The call failed because the device is gone: an AF_XDP socket whose
    /// interface was deleted is unbound (ENXIO), an interface looked up
    /// after deletion does not exist (ENODEV).
    pub fn device_gone(&self) -> bool {
        matches!(self.errno(), Some(libc::ENXIO | libc::ENODEV))
    }
}

/// `ret` as a result: negative means the call failed (`errno`).
pub(super) fn check(call: &'static str, ret: libc::c_int) -> Result<libc::c_int, SysError> {
    if ret < 0 {
        Err(SysError::last(call))
    } else {
        Ok(ret)
    }
}
