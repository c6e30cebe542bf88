//! Kernel ABI mirrors: the constants and `#[repr(C)]` structs of
//! `linux/if_xdp.h`, `linux/bpf.h`, `net/if.h` and `linux/ethtool.h` that the
//! calls pass to and read from the kernel. `tests::layouts_match_c` and
//! `tests::constants_match_c` check them against the C headers (the probe
//! `engine/bpf/layout_probe.c`, run by `build.rs`). Unsafe only to state
//! which of them the kernel may fill ([`KernelPod`]).
#![allow(unsafe_code)]

/// `AF_XDP`.
pub const AF_XDP: i32 = 44;
/// `SOL_XDP`.
pub const SOL_XDP: i32 = 283;
pub const XDP_MMAP_OFFSETS: i32 = 1;
pub const XDP_RX_RING: i32 = 2;
pub const XDP_TX_RING: i32 = 3;
pub const XDP_UMEM_REG: i32 = 4;
pub const XDP_UMEM_FILL_RING: i32 = 5;
pub const XDP_UMEM_COMPLETION_RING: i32 = 6;
pub const XDP_STATISTICS: i32 = 7;
pub const XDP_OPTIONS: i32 = 8;
pub const XDP_OPTIONS_ZEROCOPY: u32 = 1;
/// `XDP_MAX_TX_SKB_BUDGET` (Linux 6.17): frames one copy-mode `sendto`
/// may transmit (default 32). Newer than the build machine's headers, so
/// not checked by the layout probe; setting it is best effort.
pub const XDP_MAX_TX_SKB_BUDGET: i32 = 9;
pub const XDP_SHARED_UMEM: u16 = 1;
pub const XDP_COPY: u16 = 1 << 1;
pub const XDP_ZEROCOPY: u16 = 1 << 2;
pub const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
pub const XDP_RING_NEED_WAKEUP: u32 = 1;
/// `XDP_USE_SG` (Linux 6.6): the socket's packets may span several
/// frames (AF_XDP multi-buffer). Newer than the build machine's headers,
/// so not checked by the layout probe.
pub const XDP_USE_SG: u16 = 1 << 4;
/// `XDP_PKT_CONTD` in `xdp_desc.options` (Linux 6.6): the packet goes on
/// in the next descriptor.
pub const XDP_PKT_CONTD: u32 = 1;
pub const XDP_PGOFF_RX_RING: u64 = 0;
pub const XDP_PGOFF_TX_RING: u64 = 0x8000_0000;
pub const XDP_UMEM_PGOFF_FILL_RING: u64 = 0x1_0000_0000;
pub const XDP_UMEM_PGOFF_COMPLETION_RING: u64 = 0x1_8000_0000;
pub const SO_BUSY_POLL: i32 = 46;
pub const SO_PREFER_BUSY_POLL: i32 = 69;
pub const SO_BUSY_POLL_BUDGET: i32 = 70;
pub const SIOCGIFHWADDR: u64 = 0x8927;
pub const SIOCGIFMTU: u64 = 0x8921;
pub const SIOCETHTOOL: u64 = 0x8946;
pub const ETHTOOL_GCHANNELS: u32 = 0x3c;
pub const BPF_FS_MAGIC: u64 = 0xcafe_4a11;
pub const BPF_PROG_TEST_RUN: i32 = 10;

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: a test run whose frames really go out
/// (XDP_TX / redirect), for traffic generation.
pub const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// `struct sockaddr_xdp`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SockaddrXdp {
    pub sxdp_family: u16,
    pub sxdp_flags: u16,
    pub sxdp_ifindex: u32,
    pub sxdp_queue_id: u32,
    pub sxdp_shared_umem_fd: u32,
}

/// `struct xdp_ring_offset`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpRingOffset {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpMmapOffsets {
    pub rx: XdpRingOffset,
    pub tx: XdpRingOffset,
    pub fr: XdpRingOffset,
    pub cr: XdpRingOffset,
}

/// `struct xdp_umem_reg` (the tail is `flags` and, on newer kernels,
/// `tx_metadata_len`, which must be zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpUmemReg {
    pub addr: u64,
    pub len: u64,
    pub chunk_size: u32,
    pub headroom: u32,
    pub flags: u32,
    pub tx_metadata_len: u32,
}

/// `struct xdp_statistics`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStatistics {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// `struct xdp_options`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct XdpOptions {
    pub flags: u32,
}

/// `struct xdp_desc`: one RX or TX ring entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpDesc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

/// `struct ifreq` (name plus a 24-byte union; we use the hardware address
/// and the data pointer members).
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct IfReq {
    pub(super) name: [u8; 16],
    pub(super) ifru: IfReqU,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub(super) union IfReqU {
    pub(super) hwaddr: libc::sockaddr,
    pub(super) data: *mut libc::c_void,
    pub(super) mtu: libc::c_int,
    pub(super) _pad: [u8; 24],
}

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct EthtoolChannels {
    pub(super) cmd: u32,
    pub(super) max_rx: u32,
    pub(super) max_tx: u32,
    pub(super) max_other: u32,
    pub(super) max_combined: u32,
    pub(super) rx_count: u32,
    pub(super) tx_count: u32,
    pub(super) other_count: u32,
    pub(super) combined_count: u32,
}

/// The `test` member of `union bpf_attr` (`BPF_PROG_TEST_RUN`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct BpfAttrTestRun {
    pub(super) prog_fd: u32,
    pub(super) retval: u32,
    pub(super) data_size_in: u32,
    pub(super) data_size_out: u32,
    pub(super) data_in: u64,
    pub(super) data_out: u64,
    pub(super) repeat: u32,
    pub(super) duration: u32,
    pub(super) ctx_size_in: u32,
    pub(super) ctx_size_out: u32,
    pub(super) ctx_in: u64,
    pub(super) ctx_out: u64,
    pub(super) flags: u32,
    pub(super) cpu: u32,
    pub(super) batch_size: u32,
    pub(super) _pad: u32,
}

/// `struct xdp_md`: the XDP context, as passed to a test run.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpMd {
    pub data: u32,
    pub data_end: u32,
    pub data_meta: u32,
    pub ingress_ifindex: u32,
    pub rx_queue_index: u32,
    pub egress_ifindex: u32,
}

/// Plain kernel structs that may be passed to and filled by the kernel.
///
/// # Safety
/// The type is `#[repr(C)]` (or a primitive integer), holds no pointers or
/// references, and every bit pattern (in particular all zeroes) is a valid
/// value.
pub unsafe trait KernelPod: Copy + 'static {}
// SAFETY: primitive integers: any bit pattern is valid.
unsafe impl KernelPod for u32 {}
// SAFETY: as above.
unsafe impl KernelPod for i32 {}
// SAFETY: repr(C) struct of integers.
unsafe impl KernelPod for XdpMmapOffsets {}
// SAFETY: repr(C) struct of integers.
unsafe impl KernelPod for XdpUmemReg {}
// SAFETY: repr(C) struct of integers.
unsafe impl KernelPod for XdpStatistics {}
// SAFETY: repr(C) struct of integers.
unsafe impl KernelPod for XdpOptions {}

pub(super) fn zeroed<T: KernelPod>() -> T {
    // SAFETY: KernelPod guarantees all-zero bits are a valid T.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod c {
        include!(concat!(env!("OUT_DIR"), "/c_layouts.rs"));
    }

    fn c_size(name: &str) -> usize {
        c::C_SIZES
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("probe has no size for {name}"))
            .1
    }
    fn c_off(name: &str) -> usize {
        c::C_OFFSETS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("probe has no offset for {name}"))
            .1
    }
    pub(crate) fn c_const(name: &str) -> u64 {
        c::C_CONSTS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("probe has no constant {name}"))
            .1
    }

    macro_rules! check_struct {
        ($t:ty, $c:literal, [$($f:ident),*]) => {{
            assert_eq!(std::mem::size_of::<$t>(), c_size($c), "sizeof {}", $c);
            $(assert_eq!(
                std::mem::offset_of!($t, $f),
                c_off(concat!($c, ".", stringify!($f))),
                "offsetof {}.{}", $c, stringify!($f)
            );)*
        }};
    }

    #[test]
    fn layouts_match_c() {
        check_struct!(
            SockaddrXdp,
            "sockaddr_xdp",
            [
                sxdp_family,
                sxdp_flags,
                sxdp_ifindex,
                sxdp_queue_id,
                sxdp_shared_umem_fd
            ]
        );
        check_struct!(
            XdpRingOffset,
            "xdp_ring_offset",
            [producer, consumer, desc, flags]
        );
        check_struct!(XdpMmapOffsets, "xdp_mmap_offsets", [rx, tx, fr, cr]);
        check_struct!(
            XdpUmemReg,
            "xdp_umem_reg",
            [addr, len, chunk_size, headroom, flags]
        );
        check_struct!(
            XdpStatistics,
            "xdp_statistics",
            [
                rx_dropped,
                rx_invalid_descs,
                tx_invalid_descs,
                rx_ring_full,
                rx_fill_ring_empty_descs,
                tx_ring_empty_descs
            ]
        );
        check_struct!(XdpOptions, "xdp_options", [flags]);
        check_struct!(XdpDesc, "xdp_desc", [addr, len, options]);
        check_struct!(
            EthtoolChannels,
            "ethtool_channels",
            [
                cmd,
                max_rx,
                max_tx,
                max_other,
                max_combined,
                rx_count,
                tx_count,
                other_count,
                combined_count
            ]
        );
        check_struct!(
            XdpMd,
            "xdp_md",
            [
                data,
                data_end,
                data_meta,
                ingress_ifindex,
                rx_queue_index,
                egress_ifindex
            ]
        );
        for (f, o) in [
            ("prog_fd", std::mem::offset_of!(BpfAttrTestRun, prog_fd)),
            ("retval", std::mem::offset_of!(BpfAttrTestRun, retval)),
            (
                "data_size_in",
                std::mem::offset_of!(BpfAttrTestRun, data_size_in),
            ),
            (
                "data_size_out",
                std::mem::offset_of!(BpfAttrTestRun, data_size_out),
            ),
            ("data_in", std::mem::offset_of!(BpfAttrTestRun, data_in)),
            ("data_out", std::mem::offset_of!(BpfAttrTestRun, data_out)),
            ("repeat", std::mem::offset_of!(BpfAttrTestRun, repeat)),
            ("duration", std::mem::offset_of!(BpfAttrTestRun, duration)),
            (
                "ctx_size_in",
                std::mem::offset_of!(BpfAttrTestRun, ctx_size_in),
            ),
            (
                "ctx_size_out",
                std::mem::offset_of!(BpfAttrTestRun, ctx_size_out),
            ),
            ("ctx_in", std::mem::offset_of!(BpfAttrTestRun, ctx_in)),
            ("ctx_out", std::mem::offset_of!(BpfAttrTestRun, ctx_out)),
            ("flags", std::mem::offset_of!(BpfAttrTestRun, flags)),
            ("cpu", std::mem::offset_of!(BpfAttrTestRun, cpu)),
            (
                "batch_size",
                std::mem::offset_of!(BpfAttrTestRun, batch_size),
            ),
        ] {
            assert_eq!(o, c_off(&format!("bpf_attr.test.{f}")), "bpf_attr.test.{f}");
        }
        assert_eq!(std::mem::size_of::<IfReq>(), c_size("ifreq"));
        assert_eq!(std::mem::offset_of!(IfReq, name), c_off("ifreq.ifr_name"));
        assert_eq!(std::mem::offset_of!(IfReq, ifru), c_off("ifreq.ifr_hwaddr"));
        assert_eq!(std::mem::offset_of!(IfReq, ifru), c_off("ifreq.ifr_data"));
        assert_eq!(std::mem::offset_of!(IfReq, ifru), c_off("ifreq.ifr_mtu"));
    }

    #[test]
    fn constants_match_c() {
        let pairs: &[(&str, u64)] = &[
            ("AF_XDP", AF_XDP as u64),
            ("XDP_MMAP_OFFSETS", XDP_MMAP_OFFSETS as u64),
            ("XDP_RX_RING", XDP_RX_RING as u64),
            ("XDP_TX_RING", XDP_TX_RING as u64),
            ("XDP_UMEM_REG", XDP_UMEM_REG as u64),
            ("XDP_UMEM_FILL_RING", XDP_UMEM_FILL_RING as u64),
            ("XDP_UMEM_COMPLETION_RING", XDP_UMEM_COMPLETION_RING as u64),
            ("XDP_STATISTICS", XDP_STATISTICS as u64),
            ("XDP_OPTIONS", XDP_OPTIONS as u64),
            ("XDP_OPTIONS_ZEROCOPY", u64::from(XDP_OPTIONS_ZEROCOPY)),
            ("XDP_SHARED_UMEM", u64::from(XDP_SHARED_UMEM)),
            ("XDP_COPY", u64::from(XDP_COPY)),
            ("XDP_ZEROCOPY", u64::from(XDP_ZEROCOPY)),
            ("XDP_USE_NEED_WAKEUP", u64::from(XDP_USE_NEED_WAKEUP)),
            ("XDP_RING_NEED_WAKEUP", u64::from(XDP_RING_NEED_WAKEUP)),
            ("XDP_PGOFF_RX_RING", XDP_PGOFF_RX_RING),
            ("XDP_PGOFF_TX_RING", XDP_PGOFF_TX_RING),
            ("XDP_UMEM_PGOFF_FILL_RING", XDP_UMEM_PGOFF_FILL_RING),
            (
                "XDP_UMEM_PGOFF_COMPLETION_RING",
                XDP_UMEM_PGOFF_COMPLETION_RING,
            ),
            ("SIOCGIFHWADDR", SIOCGIFHWADDR),
            ("SIOCGIFMTU", SIOCGIFMTU),
            ("SIOCETHTOOL", SIOCETHTOOL),
            ("ETHTOOL_GCHANNELS", u64::from(ETHTOOL_GCHANNELS)),
            ("SO_BUSY_POLL", SO_BUSY_POLL as u64),
            ("SO_PREFER_BUSY_POLL", SO_PREFER_BUSY_POLL as u64),
            ("SO_BUSY_POLL_BUDGET", SO_BUSY_POLL_BUDGET as u64),
            ("BPF_FS_MAGIC", BPF_FS_MAGIC),
            ("BPF_PROG_TEST_RUN", BPF_PROG_TEST_RUN as u64),
            ("SYS_bpf", libc::SYS_bpf as u64),
        ];
        for (name, v) in pairs {
            assert_eq!(c_const(name), *v, "{name}");
        }
        assert_eq!(SOL_XDP, libc::SOL_XDP);
    }
}
