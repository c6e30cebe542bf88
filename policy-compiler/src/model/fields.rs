//! Field types that carry syntax, parsed while deserializing so that a
//! malformed value is reported with its field path.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// An IPv4 or IPv6 prefix, host bits cleared. A bare address is a host
/// prefix (/32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// Network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl Cidr {
    /// Parse `a.b.c.d/n`, `x::y/n` or a bare address.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let t = s.trim();
        let (a, l) = match t.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (t, None),
        };
        let addr = IpAddr::from_str(a).map_err(|_| format!("{s:?} is not a CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max && !l.starts_with('+') => n,
                _ => return Err(format!("{s:?} is not a CIDR (bad prefix length)")),
            },
        };
        Ok(Cidr::new(addr, len))
    }

    /// The prefix of `addr` with `len` bits (host bits cleared).
    pub fn new(addr: IpAddr, len: u8) -> Cidr {
        let addr = match addr {
            IpAddr::V4(a) => {
                let m = if len == 0 {
                    0
                } else {
                    u32::MAX << (32 - len as u32)
                };
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
            }
            IpAddr::V6(a) => {
                let m = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len as u32)
                };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
            }
        };
        Cidr { addr, len }
    }

    /// True when `a` lies inside the prefix.
    pub fn contains(&self, a: &IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                self.len == 0 || (u32::from(*a) ^ u32::from(n)) >> (32 - self.len as u32) == 0
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                self.len == 0 || (u128::from(*a) ^ u128::from(n)) >> (128 - self.len as u32) == 0
            }
            _ => false,
        }
    }

    /// True for IPv4.
    pub fn is_v4(&self) -> bool {
        self.addr.is_ipv4()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Cidr::parse(&s).map_err(de::Error::custom)
    }
}

/// An entry of `ports` / `notPorts` (or a Kubernetes `port`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortSpec {
    /// Inclusive range (a single port is `lo == hi`).
    Range(u16, u16),
    /// A named port.
    Named(String),
}

impl PortSpec {
    /// Parse the string form: digits, `lo:hi`, or a port name.
    pub fn parse(s: &str) -> Result<PortSpec, String> {
        let t = s.trim();
        let num = |x: &str| -> Option<u16> {
            if !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()) {
                x.parse::<u16>().ok()
            } else {
                None
            }
        };
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            return num(t)
                .map(|n| PortSpec::Range(n, n))
                .ok_or_else(|| format!("{s:?} is not a port (0-65535)"));
        }
        if let Some((a, b)) = t.split_once(':') {
            return match (num(a.trim()), num(b.trim())) {
                (Some(lo), Some(hi)) if lo <= hi => Ok(PortSpec::Range(lo, hi)),
                (Some(_), Some(_)) => Err(format!("{s:?} is not a port range (low > high)")),
                _ => Err(format!("{s:?} is not a port or range")),
            };
        }
        if let Some((a, b)) = t.split_once('-') {
            if num(a.trim()).is_some() && num(b.trim()).is_some() {
                return Err(format!(
                    "{s:?} is not a port or range (use \"{}:{}\")",
                    a.trim(),
                    b.trim()
                ));
            }
        }
        let ok_name = !t.is_empty()
            && t.len() <= 63
            && t.bytes().any(|b| b.is_ascii_alphabetic())
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && t.as_bytes()[0].is_ascii_alphanumeric();
        if ok_name {
            Ok(PortSpec::Named(t.to_string()))
        } else {
            Err(format!("{s:?} is not a port, port range or port name"))
        }
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number, a \"lo:hi\" range or a port name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortSpec, E> {
                u16::try_from(v)
                    .map(|n| PortSpec::Range(n, n))
                    .map_err(|_| E::custom(format!("{v} is not a port (0-65535)")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortSpec, E> {
                u16::try_from(v)
                    .map(|n| PortSpec::Range(n, n))
                    .map_err(|_| E::custom(format!("{v} is not a port (0-65535)")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PortSpec, E> {
                Err(E::custom(format!("{v} is not a port (0-65535)")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortSpec, E> {
                PortSpec::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// An IP protocol number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Protocol(pub u8);

impl Protocol {
    /// TCP.
    pub const TCP: Protocol = Protocol(6);
    /// UDP.
    pub const UDP: Protocol = Protocol(17);
    /// ICMP.
    pub const ICMP: Protocol = Protocol(1);
    /// ICMPv6.
    pub const ICMPV6: Protocol = Protocol(58);
    /// SCTP.
    pub const SCTP: Protocol = Protocol(132);
    /// UDPLite.
    pub const UDPLITE: Protocol = Protocol(136);

    /// Parse a name (case-insensitive) or a number 1..255.
    pub fn parse(s: &str) -> Result<Protocol, String> {
        let t = s.trim();
        let p = match t.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::TCP,
            "udp" => Protocol::UDP,
            "icmp" => Protocol::ICMP,
            "icmpv6" => Protocol::ICMPV6,
            "sctp" => Protocol::SCTP,
            "udplite" => Protocol::UDPLITE,
            _ => match t.parse::<u8>() {
                Ok(n) if n >= 1 => Protocol(n),
                _ => {
                    return Err(format!(
                        "{s:?} is not a protocol (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1..255)"
                    ))
                }
            },
        };
        Ok(p)
    }

    /// True for the protocols that carry ports.
    pub fn has_ports(self) -> bool {
        matches!(self.0, 6 | 17 | 132 | 136)
    }

    /// True for ICMP and ICMPv6.
    pub fn is_icmp(self) -> bool {
        matches!(self.0, 1 | 58)
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Protocol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a protocol name or number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Protocol, E> {
                match u8::try_from(v) {
                    Ok(n) if n >= 1 => Ok(Protocol(n)),
                    _ => Err(E::custom(format!("{v} is not a protocol number (1..255)"))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Protocol, E> {
                match u8::try_from(v) {
                    Ok(n) if n >= 1 => Ok(Protocol(n)),
                    _ => Err(E::custom(format!("{v} is not a protocol number (1..255)"))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Protocol, E> {
                Protocol::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A Calico rule's `protocol` / `notProtocol`: the number, and whether it
/// was written as a name. Calico's validator takes the names spelled
/// exactly `TCP`, `UDP`, `ICMP`, `ICMPv6`, `SCTP`, `UDPLite` (or a number,
/// or a string of digits); only the names `ICMP` / `ICMPv6` give a rule an
/// IP version (policy.md section 3, *Rule fields*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleProtocol {
    /// The protocol number.
    pub number: Protocol,
    /// True when written as a name, not a number.
    pub by_name: bool,
}

impl RuleProtocol {
    /// Parse a name spelled as Calico requires, or a number 1..255.
    pub fn parse(s: &str) -> Result<RuleProtocol, String> {
        let named = |p| RuleProtocol {
            number: p,
            by_name: true,
        };
        Ok(match s {
            "TCP" => named(Protocol::TCP),
            "UDP" => named(Protocol::UDP),
            "ICMP" => named(Protocol::ICMP),
            "ICMPv6" => named(Protocol::ICMPV6),
            "SCTP" => named(Protocol::SCTP),
            "UDPLite" => named(Protocol::UDPLITE),
            _ => match s.parse::<u8>() {
                Ok(n) if n >= 1 && s.bytes().all(|b| b.is_ascii_digit()) => RuleProtocol {
                    number: Protocol(n),
                    by_name: false,
                },
                _ => {
                    return Err(format!(
                        "{s:?} is not a protocol (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite, spelled so, or 1..255)"
                    ))
                }
            },
        })
    }

    /// The IP version the name gives the rule: 4 for `ICMP`, 6 for
    /// `ICMPv6` (never for the numbers 1 and 58).
    pub fn ip_version(self) -> Option<u8> {
        match (self.by_name, self.number) {
            (true, Protocol::ICMP) => Some(4),
            (true, Protocol::ICMPV6) => Some(6),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for RuleProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RuleProtocol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a protocol name or number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RuleProtocol, E> {
                match u8::try_from(v) {
                    Ok(n) if n >= 1 => Ok(RuleProtocol {
                        number: Protocol(n),
                        by_name: false,
                    }),
                    _ => Err(E::custom(format!("{v} is not a protocol number (1..255)"))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RuleProtocol, E> {
                match u64::try_from(v) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("{v} is not a protocol number (1..255)"))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RuleProtocol, E> {
                RuleProtocol::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A rule action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum Action {
    /// Allow (ends evaluation of the direction).
    Allow,
    /// Deny (ends evaluation of the direction).
    Deny,
    /// Skip the rest of the tier (or profile).
    Pass,
    /// Count and go on.
    Log,
}

/// A tier's `defaultAction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum TierAction {
    /// Deny at the end of the tier.
    Deny,
    /// Go on to the next tier.
    Pass,
}

/// `Ingress` or `Egress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum PolicyType {
    /// Ingress.
    Ingress,
    /// Egress.
    Egress,
}

/// `icmp` / `notICMP`: `type` and optional `code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpMatch {
    /// ICMP type.
    #[serde(rename = "type")]
    pub ty: u8,
    /// ICMP code.
    #[serde(default)]
    pub code: Option<u8>,
}

/// `ipVersion`: 4 or 6.
pub fn de_ip_version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    let v: Option<u8> = Option::deserialize(d)?;
    match v {
        None | Some(4) | Some(6) => Ok(v),
        Some(n) => Err(de::Error::custom(format!("ipVersion {n} is not 4 or 6"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(PortSpec::parse("53"), Ok(PortSpec::Range(53, 53)));
        assert_eq!(PortSpec::parse("8:9"), Ok(PortSpec::Range(8, 9)));
        assert_eq!(PortSpec::parse("http"), Ok(PortSpec::Named("http".into())));
        assert_eq!(
            PortSpec::parse("dns-tcp-local"),
            Ok(PortSpec::Named("dns-tcp-local".into()))
        );
        let e = PortSpec::parse("80-90").unwrap_err();
        assert_eq!(e, "\"80-90\" is not a port or range (use \"80:90\")");
        assert!(PortSpec::parse("9:8").is_err());
        assert!(PortSpec::parse("70000").is_err());
        assert!(PortSpec::parse("").is_err());
        assert!(PortSpec::parse("a b").is_err());
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.1.2.3/8").unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(&"10.9.9.9".parse().unwrap()));
        assert!(!c.contains(&"11.0.0.0".parse().unwrap()));
        assert!(!c.contains(&"::1".parse().unwrap()));
        assert_eq!(Cidr::parse("1.2.3.4").unwrap().len, 32);
        assert_eq!(Cidr::parse("::/0").unwrap().len, 0);
        assert!(Cidr::parse("fd00::/64")
            .unwrap()
            .contains(&"fd00::5".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0/8").is_err());
        assert!(Cidr::parse("x").is_err());
    }

    #[test]
    fn protocols() {
        assert_eq!(Protocol::parse("tcp"), Ok(Protocol::TCP));
        assert_eq!(Protocol::parse("ICMPv6"), Ok(Protocol::ICMPV6));
        assert_eq!(Protocol::parse("UDPLite"), Ok(Protocol::UDPLITE));
        assert_eq!(Protocol::parse("47"), Ok(Protocol(47)));
        assert!(Protocol::parse("0").is_err());
        assert!(Protocol::parse("256").is_err());
        assert!(Protocol::parse("foo").is_err());
        // In a rule, names are spelled as Calico's validator requires.
        let named = RuleProtocol::parse("ICMPv6").unwrap();
        assert_eq!(
            (named.number, named.ip_version()),
            (Protocol::ICMPV6, Some(6))
        );
        let number = RuleProtocol::parse("58").unwrap();
        assert_eq!(
            (number.number, number.ip_version()),
            (Protocol::ICMPV6, None)
        );
        assert!(RuleProtocol::parse("tcp").is_err());
        assert!(RuleProtocol::parse("Icmp").is_err());
        assert!(RuleProtocol::parse("+6").is_err());
    }
}
