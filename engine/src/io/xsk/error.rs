//! The error of setting up AF_XDP (UMEM and sockets).

use thiserror::Error;

use crate::io::sys::error::SysError;

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
