//! Threads that drive pipelines: `replay` over capture files, `live` on
//! interfaces through AF_XDP. Flow steering lives in [`steer`].

pub mod live;
pub mod replay;
pub mod steer;
