//! The kernel's routing state over rtnetlink (`netlink-packet-route` for
//! the messages, `netlink-sys` for the socket): dumps of links,
//! addresses, routes and neighbours, notifications of their changes, each
//! message turned into a plain [`Event`].

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType as NlRouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::view::{Event, Link, Neighbor, Route, RouteType};
use crate::wire::{self, Cidr, Family};

/// Which kinds to follow.
#[derive(Clone, Copy, Debug)]
pub struct Kinds {
    pub routes: bool,
    pub neighbors: bool,
}

/// An rtnetlink socket.
pub struct Netlink {
    sock: Socket,
    buf: Vec<u8>,
    seq: u32,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").finish_non_exhaustive()
    }
}

/// What one read gave.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Event>,
    /// Messages that could not be parsed (counted, skipped).
    pub malformed: u64,
    /// The dump being read ended.
    pub done: bool,
}

impl Netlink {
    /// A socket for requests (dumps).
    pub fn open() -> io::Result<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink {
            sock,
            buf: vec![0; 1 << 16],
            seq: 0,
        })
    }

    /// A socket subscribed to the notifications of `kinds` (links and
    /// addresses always: ports are found by interface name), with a large
    /// receive buffer; reads time out after `timeout`.
    pub fn subscribe(kinds: Kinds, timeout: Duration) -> io::Result<Netlink> {
        let n = Netlink::open()?;
        let mut groups = vec![
            libc::RTNLGRP_LINK,
            libc::RTNLGRP_IPV4_IFADDR,
            libc::RTNLGRP_IPV6_IFADDR,
        ];
        if kinds.routes {
            groups.extend([libc::RTNLGRP_IPV4_ROUTE, libc::RTNLGRP_IPV6_ROUTE]);
        }
        if kinds.neighbors {
            groups.push(libc::RTNLGRP_NEIGH);
        }
        for g in groups {
            n.sock.add_membership(g)?;
        }
        n.sock.set_rx_buf_sz(8 << 20)?;
        n.set_timeout(timeout)?;
        Ok(n)
    }

    /// Sets the read timeout.
    pub fn set_timeout(&self, t: Duration) -> io::Result<()> {
        socket2::SockRef::from(&self.sock).set_read_timeout(Some(t))
    }

    /// Dumps `kinds` (links and addresses always) as events.
    pub fn dump(&mut self, kinds: Kinds) -> io::Result<Batch> {
        let mut out = Batch::default();
        let mut reqs = vec![
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        ];
        if kinds.routes {
            reqs.push(RouteNetlinkMessage::GetRoute(RouteMessage::default()));
        }
        if kinds.neighbors {
            reqs.push(RouteNetlinkMessage::GetNeighbour(
                NeighbourMessage::default(),
            ));
        }
        for r in reqs {
            self.request(r)?;
            loop {
                let b = self.read()?;
                out.events.extend(b.events);
                out.malformed += b.malformed;
                if b.done {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn request(&mut self, m: RouteNetlinkMessage) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut h = NetlinkHeader::default();
        h.flags = NLM_F_REQUEST | NLM_F_DUMP;
        h.sequence_number = self.seq;
        let mut p = NetlinkMessage::new(h, NetlinkPayload::from(m));
        p.finalize();
        let mut buf = vec![0; p.buffer_len()];
        p.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        Ok(())
    }

    /// Reads one datagram (blocking up to the timeout: `WouldBlock` /
    /// `TimedOut` then) and parses its messages.
    pub fn read(&mut self) -> io::Result<Batch> {
        let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
        Ok(parse_datagram(self.buf.get(..n).unwrap_or(&[])))
    }
}

/// The events of one netlink datagram.
pub fn parse_datagram(mut bytes: &[u8]) -> Batch {
    let mut out = Batch::default();
    while bytes.len() >= 16 {
        let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len < 16 || len > bytes.len() {
            out.malformed += 1;
            break;
        }
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[..len]) {
            Ok(m) => match m.payload {
                NetlinkPayload::Done(_) => out.done = true,
                NetlinkPayload::Error(_) => {
                    out.malformed += 1;
                    out.done = true;
                }
                NetlinkPayload::InnerMessage(m) => out.events.extend(event(m)),
                _ => {}
            },
            Err(_) => out.malformed += 1,
        }
        // Messages are 4-byte aligned.
        let step = (len + 3) & !3;
        bytes = bytes.get(step..).unwrap_or(&[]);
    }
    out
}

fn family(f: AddressFamily) -> Option<Family> {
    match f {
        AddressFamily::Inet => Some(Family::V4),
        AddressFamily::Inet6 => Some(Family::V6),
        _ => None,
    }
}

fn ip(a: IpAddr) -> u128 {
    wire::from_ip(a).1
}

/// The event a message is, if sluice follows it.
pub fn event(m: RouteNetlinkMessage) -> Option<Event> {
    match m {
        RouteNetlinkMessage::NewLink(l) => Some(link(&l, true)),
        RouteNetlinkMessage::DelLink(l) => Some(link(&l, false)),
        RouteNetlinkMessage::NewAddress(a) => address(&a, true),
        RouteNetlinkMessage::DelAddress(a) => address(&a, false),
        RouteNetlinkMessage::NewRoute(r) => route(&r, true),
        RouteNetlinkMessage::DelRoute(r) => route(&r, false),
        RouteNetlinkMessage::NewNeighbour(n) => neighbor(&n, true),
        RouteNetlinkMessage::DelNeighbour(n) => neighbor(&n, false),
        _ => None,
    }
}

fn link(l: &LinkMessage, add: bool) -> Event {
    let i = l.header.index;
    if !add {
        return Event::Link(i, None);
    }
    let name = l
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let f = l.header.flags;
    Event::Link(
        i,
        Some(Link {
            name,
            up: f.contains(LinkFlags::Up) && f.contains(LinkFlags::LowerUp),
        }),
    )
}

fn address(a: &AddressMessage, add: bool) -> Option<Event> {
    let fam = family(a.header.family)?;
    if a.header.scope != AddressScope::Universe {
        return None;
    }
    // IFA_LOCAL is the address; IFA_ADDRESS the peer on point-to-point
    // links (and the address elsewhere, where IFA_LOCAL may be absent).
    let mut addr = None;
    for at in &a.attributes {
        match at {
            AddressAttribute::Local(x) => addr = Some(*x),
            AddressAttribute::Address(x) if addr.is_none() => addr = Some(*x),
            _ => {}
        }
    }
    let addr = addr?;
    Some(Event::Address(
        a.header.index,
        Cidr {
            family: fam,
            addr: ip(addr),
            len: a.header.prefix_len,
        },
        add,
    ))
}

fn route_addr(a: &RouteAddress) -> Option<u128> {
    match a {
        RouteAddress::Inet(x) => Some(ip(IpAddr::V4(*x))),
        RouteAddress::Inet6(x) => Some(ip(IpAddr::V6(*x))),
        _ => None,
    }
}

fn route(r: &RouteMessage, add: bool) -> Option<Event> {
    let fam = family(r.header.address_family)?;
    let mut table = u32::from(r.header.table);
    let (mut dst, mut oif, mut via, mut metric, mut nh_object) = (0u128, 0u32, None, 0u32, false);
    let mut multipath = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = route_addr(d)?,
            RouteAttribute::Oif(i) => oif = *i,
            RouteAttribute::Gateway(g) => via = route_addr(g),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::NhId(_) => nh_object = true,
            RouteAttribute::MultiPath(hops) => multipath = hops.first().cloned(),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    // ECMP: the first path only (said in the README).
    if let Some(h) = multipath {
        oif = h.interface_index;
        for a in &h.attributes {
            if let RouteAttribute::Gateway(g) = a {
                via = route_addr(g);
            }
        }
    }
    let len = r.header.destination_prefix_length;
    let prefix = Cidr {
        family: fam,
        addr: dst,
        len,
    };
    let prefix = Cidr {
        addr: prefix.network(),
        ..prefix
    };
    let dev = if fam == Family::V6 { oif } else { 0 };
    let key = (fam, prefix.addr, len, metric, r.header.tos, dev);
    if !add {
        return Some(Event::Route(key, None));
    }
    let kind = if r.header.kind == NlRouteType::Unicast && !nh_object && oif != 0 {
        RouteType::Unicast
    } else {
        RouteType::Other
    };
    Some(Event::Route(
        key,
        Some(Route {
            prefix,
            kind,
            oif,
            via,
            metric,
        }),
    ))
}

fn neighbor(n: &NeighbourMessage, add: bool) -> Option<Event> {
    let fam = family(n.header.family)?;
    let mut addr = None;
    let mut mac = None;
    for a in &n.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(x)) => {
                addr = Some(ip(IpAddr::V4(*x)))
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(x)) => {
                addr = Some(ip(IpAddr::V6(*x)))
            }
            NeighbourAttribute::LinkLayerAddress(b) => {
                mac = <[u8; 6]>::try_from(b.as_slice())
                    .ok()
                    .filter(|m| *m != [0; 6])
            }
            _ => {}
        }
    }
    let ip = addr?;
    let key = (n.header.ifindex, fam, ip);
    if !add {
        return Some(Event::Neighbor(key, None));
    }
    let usable = matches!(
        n.header.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    );
    Some(Event::Neighbor(
        key,
        Some(Neighbor {
            ifindex: n.header.ifindex,
            family: fam,
            ip,
            mac,
            usable,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(m: RouteNetlinkMessage) -> Vec<u8> {
        let mut p = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(m));
        p.finalize();
        let mut buf = vec![0; p.buffer_len()];
        p.serialize(&mut buf);
        buf
    }

    #[test]
    fn route_and_neighbour_messages_become_events() {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.destination_prefix_length = 16;
        r.header.table = RouteHeader::RT_TABLE_MAIN;
        r.header.kind = NlRouteType::Unicast;
        r.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet("10.9.7.7".parse().unwrap())),
            RouteAttribute::Gateway(RouteAddress::Inet("10.1.0.2".parse().unwrap())),
            RouteAttribute::Oif(3),
            RouteAttribute::Priority(20),
        ];
        let mut n = NeighbourMessage::default();
        n.header.family = AddressFamily::Inet6;
        n.header.ifindex = 3;
        n.header.state = NeighbourState::Stale;
        n.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet6("fd00::2".parse().unwrap())),
            NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 0, 9]),
        ];
        let mut d = bytes(RouteNetlinkMessage::NewRoute(r.clone()));
        // Two messages in one datagram, then garbage.
        d.extend(bytes(RouteNetlinkMessage::NewNeighbour(n)));
        d.extend([0xff; 20]);
        let b = parse_datagram(&d);
        assert_eq!(b.malformed, 1);
        let Event::Route(k, Some(rt)) = &b.events[0] else {
            panic!("{:?}", b.events)
        };
        assert_eq!(rt.prefix, Cidr::parse("10.9.0.0/16").unwrap());
        assert_eq!((rt.oif, rt.via, rt.metric), (3, Some(0x0a01_0002), 20));
        assert_eq!(rt.kind, RouteType::Unicast);
        assert_eq!(k.3, 20);
        let Event::Neighbor(_, Some(nb)) = &b.events[1] else {
            panic!("{:?}", b.events)
        };
        assert!(nb.usable && nb.mac == Some([2, 0, 0, 0, 0, 9]) && nb.family == Family::V6);
        // Another table's route is not followed; a blackhole is kept as
        // such (counted by the merge).
        r.header.table = 100;
        assert_eq!(event(RouteNetlinkMessage::NewRoute(r.clone())), None);
        r.header.table = RouteHeader::RT_TABLE_MAIN;
        r.header.kind = NlRouteType::BlackHole;
        let Some(Event::Route(_, Some(rt))) = event(RouteNetlinkMessage::NewRoute(r)) else {
            panic!()
        };
        assert_eq!(rt.kind, RouteType::Other);
        // Truncated or empty input parses to nothing, never panics.
        for cut in 0..d.len() {
            let _ = parse_datagram(&d[..cut]);
        }
    }
}
