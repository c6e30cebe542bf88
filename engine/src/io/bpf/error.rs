//! The errors of loading the XDP program, filling its maps and attaching
//! it.

use std::path::PathBuf;

use thiserror::Error;

use crate::io::sys::error::SysError;

/// Errors of the loader.
#[derive(Debug, Error)]
pub enum BpfError {
    #[error("loading the XDP object: {0}")]
    Load(Box<aya::EbpfError>),
    #[error("XDP program: {0}")]
    Program(Box<aya::programs::ProgramError>),
    #[error("XDP map {map}: {source}")]
    Map {
        map: &'static str,
        source: Box<aya::maps::MapError>,
    },
    #[error("the XDP object has no {0}")]
    Missing(&'static str),
    #[error("attaching XDP to {ifname} ({mode}): {source}{hint}")]
    Attach {
        ifname: String,
        mode: &'static str,
        source: Box<aya::programs::ProgramError>,
        hint: &'static str,
    },
    #[error("pinning the XDP link of {ifname} at {path}: {msg}")]
    Pin {
        ifname: String,
        path: PathBuf,
        msg: String,
    },
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("{0}")]
    Limit(String),
}

impl From<aya::EbpfError> for BpfError {
    fn from(e: aya::EbpfError) -> Self {
        BpfError::Load(Box::new(e))
    }
}

impl From<aya::programs::ProgramError> for BpfError {
    fn from(e: aya::programs::ProgramError) -> Self {
        BpfError::Program(Box::new(e))
    }
}

/// Wraps a map error with the map's name.
pub(super) fn map_err(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> BpfError {
    move |source| BpfError::Map {
        map,
        source: Box::new(source),
    }
}
