//! Frames handed to the kernel's stack to send ([`crate::pipeline::Action::ViaKernel`]):
//! the network layer of a frame whose next hop sluice could not resolve,
//! sent on a raw IP socket (IPv4 `IPPROTO_RAW`, which implies
//! `IP_HDRINCL`; IPv6 `IPPROTO_RAW`), so the kernel routes it by its own
//! table, resolves the neighbour (ARP / ND) and sends it as its own
//! forwarding would. The kernel's neighbour entry then reaches sluice
//! through the kernel mirror, and the connection's next packets are
//! forwarded by sluice. As the kernel's `raw(7)` says, it fills in the
//! IPv4 header checksum and an ID of 0 when DF is clear; everything else
//! goes as written (TTL already decremented, NAT applied).
//!
//! This is the slow path of a cold neighbour (one `sendto` per frame); the
//! sockets never block a worker (a full socket buffer is an error,
//! counted).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

/// Why a frame could not be handed to the kernel.
#[derive(Debug, Error)]
pub enum InjectError {
    #[error("not an IPv4 or IPv6 frame")]
    NotIp,
    #[error("no raw {0} socket")]
    NoSocket(&'static str),
    #[error("sendto: {0}")]
    Send(#[from] io::Error),
}

/// Raw sockets to the kernel's output path, one per family.
#[derive(Debug)]
pub struct KernelInjector {
    v4: Option<Socket>,
    v6: Option<Socket>,
}

fn raw(domain: Domain) -> io::Result<Socket> {
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

impl KernelInjector {
    /// Opens both sockets (needs `CAP_NET_RAW`); a family whose socket
    /// cannot be opened is reported by [`Self::send`] for each frame.
    pub fn open() -> (KernelInjector, Vec<String>) {
        let mut why = Vec::new();
        let mut open = |d: Domain, name: &str| match raw(d) {
            Ok(s) => Some(s),
            Err(e) => {
                why.push(format!("raw {name} socket: {e}"));
                None
            }
        };
        let v4 = open(Domain::IPV4, "IPv4");
        let v6 = open(Domain::IPV6, "IPv6");
        (KernelInjector { v4, v6 }, why)
    }

    /// Sends `frame`'s network layer (after its Ethernet header and up to
    /// two VLAN tags, without link-layer padding) through the kernel.
    pub fn send(&self, frame: &[u8]) -> Result<(), InjectError> {
        let (l3, dst) = network_layer(frame).ok_or(InjectError::NotIp)?;
        let (sock, name) = match dst {
            SocketAddr::V4(_) => (&self.v4, "IPv4"),
            SocketAddr::V6(_) => (&self.v6, "IPv6"),
        };
        let sock = sock.as_ref().ok_or(InjectError::NoSocket(name))?;
        sock.send_to(l3, &dst.into())?;
        Ok(())
    }
}

/// The IP packet in an Ethernet frame and its destination, trimmed to the
/// length its header gives.
pub fn network_layer(frame: &[u8]) -> Option<(&[u8], SocketAddr)> {
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    for _ in 0..2 {
        if ethertype != 0x8100 && ethertype != 0x88a8 {
            break;
        }
        off += 4;
        ethertype = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    }
    let ip = frame.get(off + 2..)?;
    match ethertype {
        0x0800 => {
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            let pkt = ip.get(..total)?;
            let d: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
            Some((pkt, SocketAddrV4::new(Ipv4Addr::from(d), 0).into()))
        }
        0x86dd => {
            let total = 40 + usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            let pkt = ip.get(..total)?;
            let d: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
            Some((pkt, SocketAddrV6::new(Ipv6Addr::from(d), 0, 0, 0).into()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_layer_trims_padding_and_skips_vlan_tags() {
        // Ethernet + 802.1Q tag + a 28-byte IPv4 packet + 14 bytes padding.
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        ip.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0xee; 14]);
        let (l3, dst) = network_layer(&f).unwrap();
        assert_eq!(l3, &ip[..]);
        assert_eq!(dst, "10.0.0.2:0".parse().unwrap());
        // A header claiming more than the frame holds is refused.
        f[18 + 3] = 200;
        assert!(network_layer(&f).is_none());
        // IPv6: 40 + payload length.
        let mut f6 = vec![0u8; 12];
        f6.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 4, 17, 64]);
        f6.extend_from_slice(&[0; 16]);
        let mut d = [0u8; 16];
        d[0] = 0xfd;
        d[15] = 2;
        f6.extend_from_slice(&d);
        f6.extend_from_slice(&[1, 2, 3, 4, 9, 9]);
        let (l3, dst) = network_layer(&f6).unwrap();
        assert_eq!(l3.len(), 44);
        assert_eq!(dst, "[fd00::2]:0".parse().unwrap());
        assert!(network_layer(&f6[..20]).is_none());
        assert!(network_layer(&[0u8; 40]).is_none());
    }
}
