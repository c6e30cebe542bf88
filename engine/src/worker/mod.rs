//! Threads that drive pipelines: `replay` over capture files, `live` on
//! interfaces through AF_XDP. Flow steering lives in [`steer`]; the taps
//! of `ctl trace` and `ctl capture` in [`tap`].

pub mod live;
pub mod replay;
pub mod steer;
pub mod tap;
