//! What a connection is in: its direction, its state (the TCP state
//! machine without window tracking, or a pseudo-connection), the flags an
//! entry keeps and the timeouts that expire it.

/// Which way a packet goes relative to the connection's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Original,
    Reply,
}

/// Connection state. TCP without window tracking; UDP, ICMP queries and
/// other protocols as pseudo-connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// TCP: SYN seen.
    SynSent = 1,
    /// TCP: SYN/ACK seen from the other side.
    SynRecv = 2,
    /// TCP: handshake done (or picked up mid-stream).
    Established = 3,
    /// TCP: one side sent FIN.
    FinWait = 4,
    /// TCP: both sides sent FIN.
    TimeWait = 5,
    /// TCP: reset.
    Close = 6,
    /// UDP / UDP-Lite / SCTP / other protocols.
    Datagram = 7,
    /// ICMP / ICMPv6 query.
    Icmp = 8,
}

impl State {
    const fn from_u8_slow(v: u8) -> State {
        match v {
            1 => State::SynSent,
            2 => State::SynRecv,
            3 => State::Established,
            4 => State::FinWait,
            5 => State::TimeWait,
            6 => State::Close,
            8 => State::Icmp,
            _ => State::Datagram,
        }
    }
    /// The state stored as `v` (a table lookup: this runs per packet).
    #[inline]
    pub(super) fn from_u8(v: u8) -> State {
        const TABLE: [State; 256] = {
            let mut t = [State::Datagram; 256];
            let mut i = 0;
            while i < 256 {
                t[i] = State::from_u8_slow(i as u8);
                i += 1;
            }
            t
        };
        TABLE[usize::from(v)]
    }
    /// Name for `ctl conntrack`.
    pub fn name(self) -> &'static str {
        match self {
            State::SynSent => "SYN_SENT",
            State::SynRecv => "SYN_RECV",
            State::Established => "ESTABLISHED",
            State::FinWait => "FIN_WAIT",
            State::TimeWait => "TIME_WAIT",
            State::Close => "CLOSE",
            State::Datagram => "UDP",
            State::Icmp => "ICMP",
        }
    }
}

/// Timeouts in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn: u64,
    pub tcp_established: u64,
    pub tcp_closing: u64,
    pub udp: u64,
    pub icmp: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        const S: u64 = 1_000_000_000;
        Timeouts {
            tcp_syn: 30 * S,
            tcp_established: 3600 * S,
            tcp_closing: 30 * S,
            udp: 60 * S,
            icmp: 30 * S,
        }
    }
}

/// [`Timeouts`] as an array indexed by the state byte of an entry, built
/// once per batch so the per-packet expiry check is one load.
#[derive(Clone, Copy, Debug)]
pub struct TimeoutTable([u64; 16]);

impl TimeoutTable {
    /// The timeout of an entry whose state word is `st`.
    #[inline]
    pub(super) fn of_word(&self, st: u64) -> u64 {
        self.0[(st & 15) as usize]
    }
}

impl Timeouts {
    /// The timeouts as a table (see [`TimeoutTable`]).
    pub fn table(&self) -> TimeoutTable {
        // Bytes that are no state read as Datagram, as `State::from_u8`.
        TimeoutTable(std::array::from_fn(|i| self.of(State::from_u8(i as u8))))
    }

    /// Timeout of an entry in `state`. A reset connection lingers 10 s (or
    /// `tcp_closing` if shorter), as Linux's CLOSE state does.
    #[inline]
    pub fn of(&self, state: State) -> u64 {
        match state {
            State::SynSent | State::SynRecv => self.tcp_syn,
            State::Established => self.tcp_established,
            State::FinWait | State::TimeWait => self.tcp_closing,
            State::Close => self.tcp_closing.min(10_000_000_000),
            State::Datagram => self.udp,
            State::Icmp => self.icmp,
        }
    }
}

/// Flags of an entry (state word bits 8..16).
pub mod flags {
    /// Destination NAT in the original direction (service).
    pub const DNAT: u8 = 0x01;
    /// Source NAT in the original direction (masquerade).
    pub const SNAT: u8 = 0x02;
    /// A packet was seen in the reply direction.
    pub const SEEN_REPLY: u8 = 0x04;
    /// FIN seen from the original side.
    pub const FIN_ORIG: u8 = 0x08;
    /// FIN seen from the reply side.
    pub const FIN_REPLY: u8 = 0x10;
}

/// The TCP state machine without window tracking, after Linux's
/// `tcp_conntracks` table reduced to the states sluice keeps.
#[inline]
pub fn tcp_next(state: State, fl: &mut u8, dir: Dir, f: u8) -> State {
    use crate::wire::parse::tcp_flags::{ACK, FIN, RST, SYN};
    if f & RST != 0 {
        return State::Close;
    }
    match state {
        State::SynSent if dir == Dir::Reply && f & SYN != 0 && f & ACK != 0 => State::SynRecv,
        State::SynSent | State::SynRecv if dir == Dir::Original && f & SYN != 0 => state,
        State::SynRecv if dir == Dir::Original && f & ACK != 0 && f & FIN == 0 => {
            State::Established
        }
        _ if f & FIN != 0 => {
            *fl |= if dir == Dir::Original {
                flags::FIN_ORIG
            } else {
                flags::FIN_REPLY
            };
            if *fl & flags::FIN_ORIG != 0 && *fl & flags::FIN_REPLY != 0 {
                State::TimeWait
            } else {
                State::FinWait
            }
        }
        s => s,
    }
}

/// Whether a packet with TCP flags `f` (0 when not TCP) reopens the
/// connection it matched: a SYN without ACK in the original direction of a
/// closed or closing connection (the kernel
/// destroys the old entry and starts over).
#[inline]
pub fn reopens(dir: Dir, state: State, f: u8) -> bool {
    use crate::wire::parse::tcp_flags::{ACK, SYN};
    // The rare condition first (a bare SYN), so the test is one
    // predictable branch on nearly every packet.
    f & (SYN | ACK) == SYN
        && dir == Dir::Original
        && matches!(state, State::TimeWait | State::Close)
}

/// How a packet without a conntrack entry may start a connection (Linux's
/// `tcp_new`): a SYN opens one; a plain ACK is picked up as established
/// when loose pickup is on; SYN/ACK, FIN and RST never open one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpNew {
    Syn,
    Pickup,
    Invalid,
}

/// Classifies a TCP packet that matched no entry.
#[inline]
pub fn tcp_new(f: u8, loose: bool) -> TcpNew {
    use crate::wire::parse::tcp_flags::{ACK, FIN, RST, SYN};
    if f & RST != 0 {
        TcpNew::Invalid
    } else if f & SYN != 0 {
        if f & ACK != 0 {
            TcpNew::Invalid
        } else {
            TcpNew::Syn
        }
    } else if f & FIN != 0 {
        TcpNew::Invalid
    } else if f & ACK != 0 && loose {
        TcpNew::Pickup
    } else {
        TcpNew::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_syn_or_a_loose_pickup_opens_a_connection() {
        use crate::wire::parse::tcp_flags::*;
        assert_eq!(tcp_new(ACK, true), TcpNew::Pickup);
        assert_eq!(tcp_new(ACK, false), TcpNew::Invalid);
        assert_eq!(tcp_new(SYN | ACK, true), TcpNew::Invalid);
        assert_eq!(tcp_new(FIN | ACK, true), TcpNew::Invalid);
        assert_eq!(tcp_new(RST, true), TcpNew::Invalid);
        assert_eq!(tcp_new(SYN, false), TcpNew::Syn);
    }
}
