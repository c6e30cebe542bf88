//! Which conntrack entries a `ctl conntrack` request names: by protocol,
//! by an address or a port on either end of either direction, or by the
//! original direction's source and destination (conntrack -L's filters).
//! Expired entries, which lookups already ignore, are never named.

use serde_json::Value;

use crate::tables::conntrack::{Snapshot, Timeouts, Tuple};
use crate::wire::{self, Family};

/// A filter; every field that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CtFilter {
    pub proto: Option<u8>,
    /// Either end of either direction.
    pub addr: Option<(Family, u128)>,
    /// Either end of either direction.
    pub port: Option<u16>,
    /// The original direction's ends.
    pub src: Option<(Family, u128)>,
    pub dst: Option<(Family, u128)>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

fn ip(req: &Value, key: &str) -> Result<Option<(Family, u128)>, String> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse::<std::net::IpAddr>()
            .map(|a| Some(wire::from_ip(a)))
            .map_err(|_| format!("{key}: {s:?} is not an IP address")),
        Some(v) => Err(format!("{key}: {v} is not an IP address")),
    }
}

fn port(req: &Value, key: &str) -> Result<Option<u16>, String> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("{key}: {v} is not a port (0-65535)")),
    }
}

/// A protocol by name or number.
pub fn proto_number(s: &str) -> Option<u8> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "icmpv6" => Some(58),
        "sctp" => Some(132),
        "udplite" => Some(136),
        n => n.parse().ok(),
    }
}

impl CtFilter {
    /// The filter of a request's `proto`, `addr`, `port`, `src`, `dst`,
    /// `sport` and `dport` fields.
    pub fn from_request(req: &Value) -> Result<CtFilter, String> {
        let proto = match req.get("proto") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(proto_number(s).ok_or_else(|| format!("proto: {s:?} is not a protocol"))?)
            }
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| format!("proto: {v} is not a protocol"))?,
            ),
        };
        Ok(CtFilter {
            proto,
            addr: ip(req, "addr")?,
            port: port(req, "port")?,
            src: ip(req, "src")?,
            dst: ip(req, "dst")?,
            sport: port(req, "sport")?,
            dport: port(req, "dport")?,
        })
    }

    /// No field set: names every entry.
    pub fn is_empty(&self) -> bool {
        *self == CtFilter::default()
    }

    /// Whether `s` matches.
    pub fn matches(&self, s: &Snapshot) -> bool {
        let o = &s.orig;
        let ends = |t: &Tuple| [(t.family, t.src, t.sport), (t.family, t.dst, t.dport)];
        let all: Vec<(Family, u128, u16)> = ends(o).into_iter().chain(ends(&s.reply)).collect();
        self.proto.is_none_or(|p| o.proto == p)
            && self
                .addr
                .is_none_or(|a| all.iter().any(|e| (e.0, e.1) == a))
            && self.port.is_none_or(|p| all.iter().any(|e| e.2 == p))
            && self.src.is_none_or(|a| (o.family, o.src) == a)
            && self.dst.is_none_or(|a| (o.family, o.dst) == a)
            && self.sport.is_none_or(|p| o.sport == p)
            && self.dport.is_none_or(|p| o.dport == p)
    }
}

/// Whether `s` has expired at `now` (lookups no longer find it; the sweep
/// will remove it).
pub fn expired(s: &Snapshot, now: u64, to: &Timeouts) -> bool {
    now.saturating_sub(s.last_seen) > to.of(s.state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snap(sport: u16, dport: u16, proto: u8) -> Snapshot {
        let orig = Tuple {
            src: 0x0a01_0005,
            dst: 0xc000_0264,
            sport,
            dport,
            proto,
            family: Family::V4,
            zone: 0,
        };
        Snapshot {
            id: 1,
            orig,
            reply: Tuple {
                src: orig.dst,
                dst: 0xc000_0201,
                sport: dport,
                dport: sport,
                ..orig
            },
            state: crate::tables::conntrack::State::Datagram,
            flags: 0,
            last_seen: 10,
            created: 10,
            aux: 0,
        }
    }

    #[test]
    fn filters_match_what_they_name() {
        let s = snap(4000, 53, 17);
        let f = |v: Value| CtFilter::from_request(&v).unwrap().matches(&s);
        assert!(f(json!({})));
        assert!(f(json!({"proto": "udp", "port": 53})));
        assert!(!f(json!({"proto": "tcp"})));
        // Either end, either direction: the masquerade address is only in
        // the reply.
        assert!(f(json!({"addr": "192.0.2.1"})));
        assert!(f(json!({"addr": "10.1.0.5", "dport": 53})));
        assert!(!f(json!({"src": "192.0.2.100"})));
        assert!(f(json!({"dst": "192.0.2.100", "sport": 4000})));
        assert!(!f(json!({"sport": 53})));
        assert!(CtFilter::from_request(&json!({"addr": "x"})).is_err());
        assert!(CtFilter::from_request(&json!({"port": 70000})).is_err());
        assert!(CtFilter::from_request(&json!({"proto": "bogus"})).is_err());
    }

    #[test]
    fn expiry() {
        let s = snap(1, 2, 17);
        let to = Timeouts {
            udp: 5,
            ..Timeouts::default()
        };
        assert!(!expired(&s, 15, &to));
        assert!(expired(&s, 16, &to));
    }
}
