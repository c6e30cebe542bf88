//! Packet bytes: parsing into offsets ([`parse`](mod@parse)), checksums ([`checksum`])
//! and the small in-place rewrites the pipeline performs ([`rewrite`]).
//!
//! This is the only module that knows header layouts. Everything else holds a
//! [`Parsed`] (offsets validated once on receive) and calls into here.

pub mod checksum;
pub mod parse;
pub mod rewrite;

pub use parse::{parse, parse_into, Family, Frag, L4Kind, Parsed, Unparsed};

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
pub fn to_ip(family: Family, a: u128) -> std::net::IpAddr {
    match family {
        Family::V4 => std::net::IpAddr::V4(std::net::Ipv4Addr::from(a as u32)),
        Family::V6 => std::net::IpAddr::V6(std::net::Ipv6Addr::from(a)),
    }
}

/// Splits a std address into sluice's (family, u128) form.
pub fn from_ip(ip: std::net::IpAddr) -> (Family, u128) {
    match ip {
        std::net::IpAddr::V4(v4) => (Family::V4, u128::from(u32::from(v4))),
        std::net::IpAddr::V6(v6) => (Family::V6, u128::from(v6)),
    }
}
