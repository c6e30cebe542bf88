//! Network value types: MAC addresses, IP addresses in sluice's
//! `(Family, u128)` form, prefixes ([`Cidr`]) and prefix masks. Plain
//! values shared by the tables, the desired state and its sources.

use std::net::IpAddr;

use super::parse::Family;

/// A MAC address.
pub type Mac = [u8; 6];

/// Formats a MAC address as `02:00:00:00:00:01`.
pub fn mac_to_string(m: &Mac) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Parses `02:00:00:00:00:01` (or with `-`).
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Turns a parsed address into a std address.
pub fn to_ip(family: Family, a: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(std::net::Ipv4Addr::from(a as u32)),
        Family::V6 => IpAddr::V6(std::net::Ipv6Addr::from(a)),
    }
}

/// Splits a std address into sluice's (family, u128) form.
pub fn from_ip(ip: IpAddr) -> (Family, u128) {
    match ip {
        IpAddr::V4(v4) => (Family::V4, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (Family::V6, u128::from(v6)),
    }
}

/// Masks an IPv4 address to `len` bits.
#[inline]
pub fn mask4(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(len.min(32))))
    }
}

/// Masks an IPv6 address to `len` bits.
#[inline]
pub fn mask6(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(len.min(128))))
    }
}

/// An address with a prefix length: `10.1.0.0/16`, `2001:db8::1/64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub family: Family,
    pub addr: u128,
    pub len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/len` or `v6/len`; a bare address is a host prefix.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        let (family, addr) = from_ip(ip);
        let max = if family == Family::V4 { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { family, addr, len })
    }

    /// Bits in an address of this family.
    pub fn bits(&self) -> u8 {
        if self.family == Family::V4 {
            32
        } else {
            128
        }
    }

    /// The address with host bits cleared.
    pub fn network(&self) -> u128 {
        match self.family {
            Family::V4 => u128::from(mask4(self.addr as u32, self.len)),
            Family::V6 => mask6(self.addr, self.len),
        }
    }

    /// Whether `addr` of `family` lies inside.
    pub fn contains(&self, family: Family, addr: u128) -> bool {
        if family != self.family {
            return false;
        }
        let other = Cidr {
            family,
            addr,
            len: self.len,
        };
        other.network() == self.network()
    }

    /// The IPv4 directed broadcast address (all host bits set), for /0../30.
    pub fn broadcast_v4(&self) -> Option<u32> {
        (self.family == Family::V4 && self.len <= 30)
            .then(|| self.network() as u32 | (u32::MAX >> self.len))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", to_ip(self.family, self.addr), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains(Family::V4, 0x0a01_ffff));
        assert!(!c.contains(Family::V4, 0x0a02_0000));
        assert!(!c.contains(Family::V6, 0x0a01_0000));
        assert_eq!(
            Cidr::parse("192.0.2.1/24").unwrap().broadcast_v4(),
            Some(0xc000_02ff)
        );
    }
}
