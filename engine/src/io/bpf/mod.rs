//! The XDP redirector (`engine/bpf/redirect.bpf.c`): loading it with aya,
//! filling its maps from an [`XdpContents`] (built from the desired state), attaching and detaching it, reading its
//! counters, and the masquerade-port bitmap userspace writes without a
//! syscall.
//!
//! - `program`: the compiled object, [`load`], [`XdpProgram`] (attach,
//!   pin, detach, test runs) and the fail mode's pins.
//! - `maps`: [`XdpMaps`], the typed handles on the program's maps, the Rust
//!   mirrors of `engine/bpf/shared.h`, [`XdpCounter`] and [`NatPorts`].
//! - `error`: [`BpfError`].

mod error;
mod maps;
mod program;

pub use error::BpfError;
pub use maps::{
    addr_key, AddrKey, AddrVal, FailMode, L4Key, NatPorts, NatProto, XdpConfigVal, XdpContents,
    XdpCounter, XdpMaps, ADDR_BROADCAST, ADDR_LOCAL, AF_INET, AF_INET6, MAX_ADDRS, MAX_L4PORTS,
    MAX_PORTS, MAX_QUEUES, NAT_PROTOS, NAT_SLOTS, NAT_WORDS, NAT_WORDS_PER_PROTO, NO_NAT_SLOT,
    XSK_ENTRIES,
};
pub use program::{
    load, object, pin_path, prepare_pin_dir, AttachMode, Attached, XdpProgram, PROGRAM,
};
