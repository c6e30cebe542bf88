//! Memory hints for the large shared tables: cache prefetch and huge-page
//! advice.

pub use crate::io::sys::{advise_hugepages, prefetch};
