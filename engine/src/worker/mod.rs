//! Threads that drive pipelines: `replay` over capture files; live AF_XDP
//! workers later. Flow steering lives in [`steer`].

pub mod replay;
pub mod steer;
