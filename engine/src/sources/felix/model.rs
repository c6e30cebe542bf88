//! A Felix session's model of the node's desired state: what Felix has
//! sent so far, as plain data keyed as Felix keys it (`shared/spec/
//! felix.md` section 2). [`FelixModel::apply`] takes one message:
//! updates replace, removes delete (a remove of something never sent is
//! ignored and counted), IP set deltas edit members, `ConfigUpdate`
//! replaces the settings (Felix sends the whole set each time, so applying
//! one again is idempotent), `InSync` marks the snapshot complete.
//!
//! The model keeps the proto messages themselves for what is compiled
//! later (policies, profiles, endpoints: rule lists and tiers as Felix
//! wrote them), so the policy front end reads exactly what was sent. IP
//! sets, policies and profiles sit behind [`Arc`]s: a snapshot handed to
//! the control thread is a cheap clone, and a later change copies only the
//! object it touches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use thiserror::Error;

use super::proto::{self, to_dataplane::Payload};
use crate::wire::Cidr;

/// Felix's own defaults for the settings sluice uses, from
/// `felix/config/config_params.go` (the `config:"..."` tags of
/// `FailsafeInboundHostPorts`, `FailsafeOutboundHostPorts`,
/// `DefaultEndpointToHostAction` and `InterfacePrefix`). `ConfigUpdate`
/// carries only the settings set explicitly; these fill in the rest.
pub mod defaults {
    pub const FAILSAFE_INBOUND_HOST_PORTS: &str =
        "tcp:22,udp:68,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667";
    pub const FAILSAFE_OUTBOUND_HOST_PORTS: &str =
        "udp:53,udp:67,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667";
    pub const DEFAULT_ENDPOINT_TO_HOST_ACTION: &str = "DROP";
    pub const INTERFACE_PREFIX: &str = "cali";
}

/// A failsafe port: `protocol:port`, optionally only for a network
/// (Felix's `(tcp|udp):<cidr>:<port>`, IPv6 CIDRs in brackets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtoPort {
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    pub port: u16,
    pub net: Option<Cidr>,
}

/// What Felix does with traffic from a workload to its own host
/// (`DefaultEndpointToHostAction`) once the endpoint's egress policy
/// allowed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointToHost {
    Drop,
    /// Leaves Calico's rules (iptables `RETURN` from `cali-INPUT`): the
    /// host's own INPUT rules decide, outside sluice, so it is delivered.
    Return,
    Accept,
}

/// The session's Felix settings: the raw values sent and the ones sluice
/// uses, parsed, with Felix's defaults where nothing was sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Name → value, as `ConfigUpdate.config` carried them.
    pub raw: BTreeMap<String, String>,
    pub failsafe_inbound: Vec<ProtoPort>,
    pub failsafe_outbound: Vec<ProtoPort>,
    pub endpoint_to_host: EndpointToHost,
    /// Interface name prefixes of workload endpoints.
    pub interface_prefixes: Vec<String>,
    /// Values sluice could not parse (the default is used instead).
    pub invalid: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::from_raw(BTreeMap::new())
    }
}

impl Settings {
    /// The settings `raw` gives, Felix's defaults for the rest.
    pub fn from_raw(raw: BTreeMap<String, String>) -> Settings {
        let mut invalid = Vec::new();
        // Felix matches names case-insensitively.
        let get = |name: &str, default: &'static str| -> (String, &'static str) {
            let v = raw
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone());
            (v.unwrap_or_else(|| default.to_string()), default)
        };
        let mut ports = |name: &str, default: &'static str| {
            let (v, d) = get(name, default);
            parse_port_list(&v).unwrap_or_else(|e| {
                invalid.push(format!("{name}={v:?}: {e}"));
                parse_port_list(d).unwrap_or_default()
            })
        };
        let failsafe_inbound = ports(
            "FailsafeInboundHostPorts",
            defaults::FAILSAFE_INBOUND_HOST_PORTS,
        );
        let failsafe_outbound = ports(
            "FailsafeOutboundHostPorts",
            defaults::FAILSAFE_OUTBOUND_HOST_PORTS,
        );
        let (v, _) = get(
            "DefaultEndpointToHostAction",
            defaults::DEFAULT_ENDPOINT_TO_HOST_ACTION,
        );
        let endpoint_to_host = match v.to_ascii_uppercase().as_str() {
            "DROP" => EndpointToHost::Drop,
            "RETURN" => EndpointToHost::Return,
            "ACCEPT" => EndpointToHost::Accept,
            _ => {
                invalid.push(format!(
                    "DefaultEndpointToHostAction={v:?}: not DROP, RETURN or ACCEPT"
                ));
                EndpointToHost::Drop
            }
        };
        let (v, _) = get("InterfacePrefix", defaults::INTERFACE_PREFIX);
        let mut interface_prefixes: Vec<String> = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if interface_prefixes.is_empty() {
            invalid.push(format!("InterfacePrefix={v:?}: empty"));
            interface_prefixes.push(defaults::INTERFACE_PREFIX.into());
        }
        Settings {
            raw,
            failsafe_inbound,
            failsafe_outbound,
            endpoint_to_host,
            interface_prefixes,
            invalid,
        }
    }
}

/// Parses Felix's port-list form: comma-separated `(tcp|udp):<cidr>:<port>`,
/// `(tcp|udp):<port>` or `<port>` (TCP); IPv6 CIDRs in brackets; `none`
/// or nothing is the empty list.
pub fn parse_port_list(s: &str) -> Result<Vec<ProtoPort>, String> {
    let mut out = Vec::new();
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(out);
    }
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (rest, v6) = match (item.find('['), item.find("]:")) {
            (Some(a), Some(b)) if a < b => (
                format!("{}{}", &item[..a], &item[b + 2..]),
                Some(&item[a + 1..b]),
            ),
            _ => (item.to_string(), None),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (proto, net, port) = match (parts.as_slice(), v6) {
            ([port], None) => ("tcp", None, *port),
            ([proto, port], None) => (*proto, None, *port),
            ([proto, port], Some(n)) => (*proto, Some(n), *port),
            ([proto, net, port], None) => (*proto, Some(*net), *port),
            _ => return Err(format!("{item:?}: not (tcp|udp):[net:]port")),
        };
        let proto = match proto.to_ascii_lowercase().as_str() {
            "tcp" => 6,
            "udp" => 17,
            p => return Err(format!("{item:?}: unknown protocol {p:?}")),
        };
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("{item:?}: port is not a number 0-65535"))?;
        let net = net
            .map(|n| Cidr::parse(n).map_err(|e| format!("{item:?}: {e}")))
            .transpose()?;
        out.push(ProtoPort { proto, port, net });
    }
    Ok(out)
}

/// An IP set: its member type and members as Felix wrote them (CIDRs,
/// addresses, or `ip,proto:port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpSet {
    pub kind: proto::IpSetType,
    pub members: BTreeSet<String>,
}

/// A host's addresses (`HostMetadata*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host {
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
}

/// What Felix has sent in one session (see the module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FelixModel {
    pub settings: Settings,
    /// Whether `ConfigUpdate` has come.
    pub configured: bool,
    /// Whether `InSync` has come: the snapshot is complete.
    pub in_sync: bool,
    pub ip_sets: BTreeMap<String, Arc<IpSet>>,
    pub policies: BTreeMap<proto::PolicyId, Arc<proto::Policy>>,
    /// By profile name.
    pub profiles: BTreeMap<String, Arc<proto::Profile>>,
    pub workload_endpoints: BTreeMap<proto::WorkloadEndpointId, Arc<proto::WorkloadEndpoint>>,
    /// By endpoint id.
    pub host_endpoints: BTreeMap<String, Arc<proto::HostEndpoint>>,
    /// By destination CIDR.
    pub routes: BTreeMap<String, proto::RouteUpdate>,
    /// IPAM pools by id.
    pub pools: BTreeMap<String, proto::IpamPool>,
    /// By (namespace, name).
    pub services: BTreeMap<(String, String), proto::ServiceUpdate>,
    pub encapsulation: proto::Encapsulation,
    /// By hostname.
    pub hosts: BTreeMap<String, Host>,
    /// VXLAN tunnel endpoints by node.
    pub vteps: BTreeMap<String, proto::VxlanTunnelEndpointUpdate>,
    /// WireGuard peers by hostname (IPv4, IPv6).
    pub wireguard: BTreeMap<String, proto::WireguardEndpointUpdate>,
    pub wireguard_v6: BTreeMap<String, proto::WireguardEndpointV6Update>,
    pub bgp: Option<proto::GlobalBgpConfigUpdate>,
    /// Namespace and service-account labels (Felix has already resolved
    /// selectors on them into IP sets; kept for `explain`).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub service_accounts: BTreeMap<proto::ServiceAccountId, BTreeMap<String, String>>,
}

/// A message the model cannot take: the session ends.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Violation {
    #[error("{kind} without its {field}")]
    Missing {
        kind: &'static str,
        field: &'static str,
    },
    #[error("IPSetDeltaUpdate for IP set {0:?}, which was never sent")]
    UnknownIpSet(String),
}

/// What one message did to the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The model changed (or may have: an update of equal content counts).
    Changed,
    /// A remove of something never sent: nothing to do.
    IgnoredRemove,
    /// `InSync`.
    InSync,
}

/// The message type's name, as the `.proto` spells it (for counters and
/// messages).
pub fn kind(p: &Payload) -> &'static str {
    match p {
        Payload::InSync(_) => "InSync",
        Payload::IpsetUpdate(_) => "IPSetUpdate",
        Payload::IpsetDeltaUpdate(_) => "IPSetDeltaUpdate",
        Payload::IpsetRemove(_) => "IPSetRemove",
        Payload::ActiveProfileUpdate(_) => "ActiveProfileUpdate",
        Payload::ActiveProfileRemove(_) => "ActiveProfileRemove",
        Payload::ActivePolicyUpdate(_) => "ActivePolicyUpdate",
        Payload::ActivePolicyRemove(_) => "ActivePolicyRemove",
        Payload::HostEndpointUpdate(_) => "HostEndpointUpdate",
        Payload::HostEndpointRemove(_) => "HostEndpointRemove",
        Payload::WorkloadEndpointUpdate(_) => "WorkloadEndpointUpdate",
        Payload::WorkloadEndpointRemove(_) => "WorkloadEndpointRemove",
        Payload::ConfigUpdate(_) => "ConfigUpdate",
        Payload::HostMetadataUpdate(_) => "HostMetadataUpdate",
        Payload::HostMetadataRemove(_) => "HostMetadataRemove",
        Payload::HostMetadataV4v6Update(_) => "HostMetadataV4V6Update",
        Payload::HostMetadataV4v6Remove(_) => "HostMetadataV4V6Remove",
        Payload::IpamPoolUpdate(_) => "IPAMPoolUpdate",
        Payload::IpamPoolRemove(_) => "IPAMPoolRemove",
        Payload::ServiceAccountUpdate(_) => "ServiceAccountUpdate",
        Payload::ServiceAccountRemove(_) => "ServiceAccountRemove",
        Payload::NamespaceUpdate(_) => "NamespaceUpdate",
        Payload::NamespaceRemove(_) => "NamespaceRemove",
        Payload::RouteUpdate(_) => "RouteUpdate",
        Payload::RouteRemove(_) => "RouteRemove",
        Payload::VtepUpdate(_) => "VXLANTunnelEndpointUpdate",
        Payload::VtepRemove(_) => "VXLANTunnelEndpointRemove",
        Payload::WireguardEndpointUpdate(_) => "WireguardEndpointUpdate",
        Payload::WireguardEndpointRemove(_) => "WireguardEndpointRemove",
        Payload::GlobalBgpConfigUpdate(_) => "GlobalBGPConfigUpdate",
        Payload::Encapsulation(_) => "Encapsulation",
        Payload::ServiceUpdate(_) => "ServiceUpdate",
        Payload::ServiceRemove(_) => "ServiceRemove",
        Payload::WireguardEndpointV6Update(_) => "WireguardEndpointV6Update",
        Payload::WireguardEndpointV6Remove(_) => "WireguardEndpointV6Remove",
        Payload::HostMetadataV6Update(_) => "HostMetadataV6Update",
        Payload::HostMetadataV6Remove(_) => "HostMetadataV6Remove",
    }
}

fn need<T>(v: Option<T>, kind: &'static str, field: &'static str) -> Result<T, Violation> {
    v.ok_or(Violation::Missing { kind, field })
}

/// Removes `k`; whether it was there.
fn remove<K: Ord, V>(m: &mut BTreeMap<K, V>, k: &K) -> Applied {
    match m.remove(k) {
        Some(_) => Applied::Changed,
        None => Applied::IgnoredRemove,
    }
}

impl FelixModel {
    /// Counts for people: IP sets, their members, policies, profiles,
    /// endpoints, routes, pools.
    pub fn ip_set_members(&self) -> usize {
        self.ip_sets.values().map(|s| s.members.len()).sum()
    }

    /// Applies one message (see the module docs).
    pub fn apply(&mut self, p: Payload) -> Result<Applied, Violation> {
        use Applied::Changed;
        Ok(match p {
            Payload::InSync(_) => {
                self.in_sync = true;
                Applied::InSync
            }
            Payload::ConfigUpdate(c) => {
                self.settings = Settings::from_raw(c.config);
                self.configured = true;
                Changed
            }
            Payload::IpsetUpdate(u) => {
                let kind = proto::IpSetType::try_from(u.r#type).unwrap_or(proto::IpSetType::Ip);
                let members = u.members.into_iter().collect();
                self.ip_sets.insert(u.id, Arc::new(IpSet { kind, members }));
                Changed
            }
            Payload::IpsetDeltaUpdate(d) => {
                let set = self
                    .ip_sets
                    .get_mut(&d.id)
                    .ok_or_else(|| Violation::UnknownIpSet(d.id.clone()))?;
                let set = Arc::make_mut(set);
                for m in &d.removed_members {
                    set.members.remove(m);
                }
                set.members.extend(d.added_members);
                Changed
            }
            Payload::IpsetRemove(r) => remove(&mut self.ip_sets, &r.id),
            Payload::ActiveProfileUpdate(u) => {
                let id = need(u.id, "ActiveProfileUpdate", "id")?;
                let p = need(u.profile, "ActiveProfileUpdate", "profile")?;
                self.profiles.insert(id.name, Arc::new(p));
                Changed
            }
            Payload::ActiveProfileRemove(r) => {
                let id = need(r.id, "ActiveProfileRemove", "id")?;
                remove(&mut self.profiles, &id.name)
            }
            Payload::ActivePolicyUpdate(u) => {
                let id = need(u.id, "ActivePolicyUpdate", "id")?;
                let p = need(u.policy, "ActivePolicyUpdate", "policy")?;
                self.policies.insert(id, Arc::new(p));
                Changed
            }
            Payload::ActivePolicyRemove(r) => {
                let id = need(r.id, "ActivePolicyRemove", "id")?;
                remove(&mut self.policies, &id)
            }
            Payload::WorkloadEndpointUpdate(u) => {
                let id = need(u.id, "WorkloadEndpointUpdate", "id")?;
                let e = need(u.endpoint, "WorkloadEndpointUpdate", "endpoint")?;
                self.workload_endpoints.insert(id, Arc::new(e));
                Changed
            }
            Payload::WorkloadEndpointRemove(r) => {
                let id = need(r.id, "WorkloadEndpointRemove", "id")?;
                remove(&mut self.workload_endpoints, &id)
            }
            Payload::HostEndpointUpdate(u) => {
                let id = need(u.id, "HostEndpointUpdate", "id")?;
                let e = need(u.endpoint, "HostEndpointUpdate", "endpoint")?;
                self.host_endpoints.insert(id.endpoint_id, Arc::new(e));
                Changed
            }
            Payload::HostEndpointRemove(r) => {
                let id = need(r.id, "HostEndpointRemove", "id")?;
                remove(&mut self.host_endpoints, &id.endpoint_id)
            }
            Payload::RouteUpdate(u) => {
                self.routes.insert(u.dst.clone(), u);
                Changed
            }
            Payload::RouteRemove(r) => remove(&mut self.routes, &r.dst),
            Payload::IpamPoolUpdate(u) => {
                let p = need(u.pool, "IPAMPoolUpdate", "pool")?;
                self.pools.insert(u.id, p);
                Changed
            }
            Payload::IpamPoolRemove(r) => remove(&mut self.pools, &r.id),
            Payload::ServiceUpdate(u) => {
                self.services
                    .insert((u.namespace.clone(), u.name.clone()), u);
                Changed
            }
            Payload::ServiceRemove(r) => remove(&mut self.services, &(r.namespace, r.name)),
            Payload::Encapsulation(e) => {
                self.encapsulation = e;
                Changed
            }
            Payload::HostMetadataUpdate(h) => {
                self.hosts.entry(h.hostname).or_default().ipv4 = Some(h.ipv4_addr);
                Changed
            }
            Payload::HostMetadataV6Update(h) => {
                self.hosts.entry(h.hostname).or_default().ipv6 = Some(h.ipv6_addr);
                Changed
            }
            Payload::HostMetadataV4v6Update(h) => {
                let some = |s: String| (!s.is_empty()).then_some(s);
                self.hosts.insert(
                    h.hostname,
                    Host {
                        ipv4: some(h.ipv4_addr),
                        ipv6: some(h.ipv6_addr),
                    },
                );
                Changed
            }
            Payload::HostMetadataRemove(h) => remove(&mut self.hosts, &h.hostname),
            Payload::HostMetadataV6Remove(h) => {
                match self.hosts.get_mut(&h.hostname).and_then(|x| x.ipv6.take()) {
                    Some(_) => Changed,
                    None => Applied::IgnoredRemove,
                }
            }
            Payload::HostMetadataV4v6Remove(h) => remove(&mut self.hosts, &h.hostname),
            Payload::VtepUpdate(v) => {
                self.vteps.insert(v.node.clone(), v);
                Changed
            }
            Payload::VtepRemove(v) => remove(&mut self.vteps, &v.node),
            Payload::WireguardEndpointUpdate(w) => {
                self.wireguard.insert(w.hostname.clone(), w);
                Changed
            }
            Payload::WireguardEndpointRemove(w) => remove(&mut self.wireguard, &w.hostname),
            Payload::WireguardEndpointV6Update(w) => {
                self.wireguard_v6.insert(w.hostname.clone(), w);
                Changed
            }
            Payload::WireguardEndpointV6Remove(w) => remove(&mut self.wireguard_v6, &w.hostname),
            Payload::GlobalBgpConfigUpdate(b) => {
                self.bgp = Some(b);
                Changed
            }
            Payload::NamespaceUpdate(n) => {
                let id = need(n.id, "NamespaceUpdate", "id")?;
                self.namespaces.insert(id.name, n.labels);
                Changed
            }
            Payload::NamespaceRemove(n) => {
                let id = need(n.id, "NamespaceRemove", "id")?;
                remove(&mut self.namespaces, &id.name)
            }
            Payload::ServiceAccountUpdate(s) => {
                let id = need(s.id, "ServiceAccountUpdate", "id")?;
                self.service_accounts.insert(id, s.labels);
                Changed
            }
            Payload::ServiceAccountRemove(s) => {
                let id = need(s.id, "ServiceAccountRemove", "id")?;
                remove(&mut self.service_accounts, &id)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn felix_defaults_apply_where_nothing_was_sent() {
        let s = Settings::default();
        assert_eq!(s.failsafe_inbound.len(), 9);
        assert_eq!(
            s.failsafe_inbound[..2],
            [
                ProtoPort {
                    proto: 6,
                    port: 22,
                    net: None
                },
                ProtoPort {
                    proto: 17,
                    port: 68,
                    net: None
                }
            ]
        );
        assert_eq!(
            s.failsafe_outbound[0],
            ProtoPort {
                proto: 17,
                port: 53,
                net: None
            }
        );
        assert_eq!(s.endpoint_to_host, EndpointToHost::Drop);
        assert_eq!(s.interface_prefixes, vec!["cali".to_string()]);
        assert!(s.invalid.is_empty());
        // Sent values win, names match case-insensitively; a bad value
        // keeps the default and is reported.
        let raw: BTreeMap<String, String> = [
            (
                "failsafeinboundhostports",
                "udp:10.0.0.0/8:53, 80, tcp:[fd00::/64]:443",
            ),
            ("FailsafeOutboundHostPorts", "none"),
            ("DefaultEndpointToHostAction", "Accept"),
            ("InterfacePrefix", "cali,tap"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = Settings::from_raw(raw);
        let ports: Vec<_> = s
            .failsafe_inbound
            .iter()
            .map(|p| (p.proto, p.port, p.net.map(|n| n.to_string())))
            .collect();
        assert_eq!(
            ports,
            vec![
                (17, 53, Some("10.0.0.0/8".into())),
                (6, 80, None),
                (6, 443, Some("fd00::/64".into()))
            ]
        );
        assert!(s.failsafe_outbound.is_empty());
        assert_eq!(s.endpoint_to_host, EndpointToHost::Accept);
        assert_eq!(s.interface_prefixes, vec!["cali", "tap"]);
        let s = Settings::from_raw(
            [("FailsafeInboundHostPorts".to_string(), "sctp:9".to_string())].into(),
        );
        assert_eq!(s.failsafe_inbound.len(), 9);
        assert!(s.invalid[0].contains("sctp"), "{:?}", s.invalid);
    }

    fn pid(name: &str) -> proto::PolicyId {
        proto::PolicyId {
            name: name.into(),
            namespace: String::new(),
            kind: "GlobalNetworkPolicy".into(),
        }
    }

    #[test]
    fn updates_removes_and_deltas() {
        let mut m = FelixModel::default();
        let set = |members: &[&str]| {
            Payload::IpsetUpdate(proto::IpSetUpdate {
                id: "s1".into(),
                members: members.iter().map(|s| s.to_string()).collect(),
                r#type: proto::IpSetType::Net as i32,
            })
        };
        m.apply(set(&["10.0.0.0/24", "10.0.1.0/24"])).unwrap();
        let snapshot = m.clone();
        m.apply(Payload::IpsetDeltaUpdate(proto::IpSetDeltaUpdate {
            id: "s1".into(),
            added_members: vec!["10.0.2.0/24".into()],
            removed_members: vec!["10.0.0.0/24".into(), "10.9.9.9/32".into()],
        }))
        .unwrap();
        let members: Vec<_> = m.ip_sets["s1"].members.iter().cloned().collect();
        assert_eq!(members, vec!["10.0.1.0/24", "10.0.2.0/24"]);
        // The snapshot taken before is untouched (copy on write).
        assert_eq!(snapshot.ip_sets["s1"].members.len(), 2);
        assert!(snapshot.ip_sets["s1"].members.contains("10.0.0.0/24"));
        // A delta for a set never sent is a protocol violation.
        let e = m
            .apply(Payload::IpsetDeltaUpdate(proto::IpSetDeltaUpdate {
                id: "nope".into(),
                ..Default::default()
            }))
            .unwrap_err();
        assert_eq!(e, Violation::UnknownIpSet("nope".into()));
        // Removes of things never sent are ignored.
        let r = m
            .apply(Payload::ActivePolicyRemove(proto::ActivePolicyRemove {
                id: Some(pid("ghost")),
            }))
            .unwrap();
        assert_eq!(r, Applied::IgnoredRemove);
        m.apply(Payload::ActivePolicyUpdate(proto::ActivePolicyUpdate {
            id: Some(pid("p")),
            policy: Some(proto::Policy::default()),
        }))
        .unwrap();
        assert_eq!(m.policies.len(), 1);
        let r = m
            .apply(Payload::ActivePolicyRemove(proto::ActivePolicyRemove {
                id: Some(pid("p")),
            }))
            .unwrap();
        assert_eq!((r, m.policies.len()), (Applied::Changed, 0));
        // An update without its body is a violation naming it.
        let e = m
            .apply(Payload::ActivePolicyUpdate(proto::ActivePolicyUpdate {
                id: Some(pid("p")),
                policy: None,
            }))
            .unwrap_err();
        assert_eq!(e.to_string(), "ActivePolicyUpdate without its policy");
        assert_eq!(
            m.apply(Payload::InSync(proto::InSync {})).unwrap(),
            Applied::InSync
        );
        assert!(m.in_sync);
    }
}
