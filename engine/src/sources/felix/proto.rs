//! The messages of Felix's data-plane driver protocol, `package felix` of
//! `shared/third_party/calico/felixbackend.proto` (Calico v3.32.1), as
//! prost derive structs: the wire format is the contract, so each field
//! carries the `.proto`'s number and type (a test, `proto_drift`, reads
//! the `.proto` and this file and fails on any difference). Only what a
//! driver reads and writes is here: `ToDataplane` with every payload of its
//! oneof and `FromDataplane` with its payloads; the gRPC `PolicySync`
//! service's own messages are not used.
//!
//! A payload this file does not know (a newer Felix) decodes as
//! `payload: None` (prost skips unknown fields), which the session counts
//! and ignores. Enum fields are `i32` (proto3 enums are open).

use std::collections::BTreeMap;

// ---------------------------------------------------------------------------
// Envelopes.

/// Felix to the driver.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ToDataplane {
    #[prost(uint64, tag = "15")]
    pub sequence_number: u64,
    #[prost(
        oneof = "to_dataplane::Payload",
        tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 18, 37, 38, 16, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36"
    )]
    pub payload: Option<to_dataplane::Payload>,
}

pub mod to_dataplane {
    /// What a `ToDataplane` carries.
    // One message is decoded at a time and moved on once; boxing the
    // large payloads would add an allocation per message for nothing.
    #[allow(clippy::large_enum_variant)]
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Payload {
        #[prost(message, tag = "1")]
        InSync(super::InSync),
        #[prost(message, tag = "2")]
        IpsetUpdate(super::IpSetUpdate),
        #[prost(message, tag = "3")]
        IpsetDeltaUpdate(super::IpSetDeltaUpdate),
        #[prost(message, tag = "4")]
        IpsetRemove(super::IpSetRemove),
        #[prost(message, tag = "5")]
        ActiveProfileUpdate(super::ActiveProfileUpdate),
        #[prost(message, tag = "6")]
        ActiveProfileRemove(super::ActiveProfileRemove),
        #[prost(message, tag = "7")]
        ActivePolicyUpdate(super::ActivePolicyUpdate),
        #[prost(message, tag = "8")]
        ActivePolicyRemove(super::ActivePolicyRemove),
        #[prost(message, tag = "9")]
        HostEndpointUpdate(super::HostEndpointUpdate),
        #[prost(message, tag = "10")]
        HostEndpointRemove(super::HostEndpointRemove),
        #[prost(message, tag = "11")]
        WorkloadEndpointUpdate(super::WorkloadEndpointUpdate),
        #[prost(message, tag = "12")]
        WorkloadEndpointRemove(super::WorkloadEndpointRemove),
        #[prost(message, tag = "13")]
        ConfigUpdate(super::ConfigUpdate),
        #[prost(message, tag = "14")]
        HostMetadataUpdate(super::HostMetadataUpdate),
        #[prost(message, tag = "18")]
        HostMetadataRemove(super::HostMetadataRemove),
        #[prost(message, tag = "37")]
        HostMetadataV4v6Update(super::HostMetadataV4v6Update),
        #[prost(message, tag = "38")]
        HostMetadataV4v6Remove(super::HostMetadataV4v6Remove),
        #[prost(message, tag = "16")]
        IpamPoolUpdate(super::IpamPoolUpdate),
        #[prost(message, tag = "17")]
        IpamPoolRemove(super::IpamPoolRemove),
        #[prost(message, tag = "19")]
        ServiceAccountUpdate(super::ServiceAccountUpdate),
        #[prost(message, tag = "20")]
        ServiceAccountRemove(super::ServiceAccountRemove),
        #[prost(message, tag = "21")]
        NamespaceUpdate(super::NamespaceUpdate),
        #[prost(message, tag = "22")]
        NamespaceRemove(super::NamespaceRemove),
        #[prost(message, tag = "23")]
        RouteUpdate(super::RouteUpdate),
        #[prost(message, tag = "24")]
        RouteRemove(super::RouteRemove),
        #[prost(message, tag = "25")]
        VtepUpdate(super::VxlanTunnelEndpointUpdate),
        #[prost(message, tag = "26")]
        VtepRemove(super::VxlanTunnelEndpointRemove),
        #[prost(message, tag = "27")]
        WireguardEndpointUpdate(super::WireguardEndpointUpdate),
        #[prost(message, tag = "28")]
        WireguardEndpointRemove(super::WireguardEndpointRemove),
        #[prost(message, tag = "29")]
        GlobalBgpConfigUpdate(super::GlobalBgpConfigUpdate),
        #[prost(message, tag = "30")]
        Encapsulation(super::Encapsulation),
        #[prost(message, tag = "31")]
        ServiceUpdate(super::ServiceUpdate),
        #[prost(message, tag = "32")]
        ServiceRemove(super::ServiceRemove),
        #[prost(message, tag = "33")]
        WireguardEndpointV6Update(super::WireguardEndpointV6Update),
        #[prost(message, tag = "34")]
        WireguardEndpointV6Remove(super::WireguardEndpointV6Remove),
        #[prost(message, tag = "35")]
        HostMetadataV6Update(super::HostMetadataV6Update),
        #[prost(message, tag = "36")]
        HostMetadataV6Remove(super::HostMetadataV6Remove),
    }
}

/// The driver to Felix.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct FromDataplane {
    #[prost(uint64, tag = "8")]
    pub sequence_number: u64,
    #[prost(oneof = "from_dataplane::Payload", tags = "3, 4, 5, 6, 7, 9, 10")]
    pub payload: Option<from_dataplane::Payload>,
}

pub mod from_dataplane {
    /// What a `FromDataplane` carries.
    // As `to_dataplane::Payload`: one at a time, not worth a box.
    #[allow(clippy::large_enum_variant)]
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Payload {
        #[prost(message, tag = "3")]
        ProcessStatusUpdate(super::ProcessStatusUpdate),
        #[prost(message, tag = "4")]
        HostEndpointStatusUpdate(super::HostEndpointStatusUpdate),
        #[prost(message, tag = "5")]
        HostEndpointStatusRemove(super::HostEndpointStatusRemove),
        #[prost(message, tag = "6")]
        WorkloadEndpointStatusUpdate(super::WorkloadEndpointStatusUpdate),
        #[prost(message, tag = "7")]
        WorkloadEndpointStatusRemove(super::WorkloadEndpointStatusRemove),
        #[prost(message, tag = "9")]
        WireguardStatusUpdate(super::WireguardStatusUpdate),
        #[prost(message, tag = "10")]
        DataplaneInSync(super::DataplaneInSync),
    }
}

// ---------------------------------------------------------------------------
// Config and sync.

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ConfigUpdate {
    #[prost(string, tag = "3")]
    pub message: String,
    /// The settings in force that were set explicitly (name → raw value).
    #[prost(btree_map = "string, string", tag = "1")]
    pub config: BTreeMap<String, String>,
    #[prost(btree_map = "uint32, message", tag = "2")]
    pub source_to_raw_config: BTreeMap<u32, RawConfig>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RawConfig {
    #[prost(string, tag = "1")]
    pub source: String,
    #[prost(btree_map = "string, string", tag = "2")]
    pub config: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct InSync {}

// ---------------------------------------------------------------------------
// IP sets.

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IpSetUpdate {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, repeated, tag = "2")]
    pub members: Vec<String>,
    #[prost(enumeration = "IpSetType", tag = "3")]
    pub r#type: i32,
}

/// `IPSetUpdate.IPSetType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum IpSetType {
    /// Members are addresses.
    Ip = 0,
    /// Members are `<IP>,(tcp|udp):port`.
    IpAndPort = 1,
    /// Members are CIDRs.
    Net = 2,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IpSetDeltaUpdate {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, repeated, tag = "2")]
    pub added_members: Vec<String>,
    #[prost(string, repeated, tag = "3")]
    pub removed_members: Vec<String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IpSetRemove {
    #[prost(string, tag = "1")]
    pub id: String,
}

// ---------------------------------------------------------------------------
// Profiles and policies.

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ActiveProfileUpdate {
    #[prost(message, optional, tag = "1")]
    pub id: Option<ProfileId>,
    #[prost(message, optional, tag = "2")]
    pub profile: Option<Profile>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ActiveProfileRemove {
    #[prost(message, optional, tag = "1")]
    pub id: Option<ProfileId>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Message)]
pub struct ProfileId {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub inbound_rules: Vec<Rule>,
    #[prost(message, repeated, tag = "2")]
    pub outbound_rules: Vec<Rule>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ActivePolicyUpdate {
    #[prost(message, optional, tag = "1")]
    pub id: Option<PolicyId>,
    #[prost(message, optional, tag = "2")]
    pub policy: Option<Policy>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ActivePolicyRemove {
    #[prost(message, optional, tag = "1")]
    pub id: Option<PolicyId>,
}

/// A policy's key: name, namespace (namespaced kinds) and kind.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Message)]
pub struct PolicyId {
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub namespace: String,
    #[prost(string, tag = "4")]
    pub kind: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Policy {
    #[prost(string, tag = "5")]
    pub namespace: String,
    #[prost(message, repeated, tag = "1")]
    pub inbound_rules: Vec<Rule>,
    #[prost(message, repeated, tag = "2")]
    pub outbound_rules: Vec<Rule>,
    #[prost(bool, tag = "3")]
    pub untracked: bool,
    #[prost(bool, tag = "4")]
    pub pre_dnat: bool,
    #[prost(string, tag = "6")]
    pub original_selector: String,
    #[prost(string, repeated, tag = "7")]
    pub perf_hints: Vec<String>,
    #[prost(string, tag = "8")]
    pub tier: String,
}

/// `IPVersion`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum IpVersion {
    Any = 0,
    Ipv4 = 4,
    Ipv6 = 6,
}

/// One rule; its fields are ANDed (`shared/spec/felix.md` section 3).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Rule {
    #[prost(string, tag = "1")]
    pub action: String,
    #[prost(enumeration = "IpVersion", tag = "2")]
    pub ip_version: i32,
    #[prost(message, optional, tag = "3")]
    pub protocol: Option<Protocol>,
    #[prost(string, repeated, tag = "4")]
    pub src_net: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    pub src_ports: Vec<PortRange>,
    #[prost(string, repeated, tag = "12")]
    pub src_named_port_ip_set_ids: Vec<String>,
    #[prost(string, repeated, tag = "6")]
    pub dst_net: Vec<String>,
    #[prost(message, repeated, tag = "7")]
    pub dst_ports: Vec<PortRange>,
    #[prost(string, repeated, tag = "13")]
    pub dst_named_port_ip_set_ids: Vec<String>,
    #[prost(oneof = "rule::Icmp", tags = "8, 9")]
    pub icmp: Option<rule::Icmp>,
    #[prost(string, repeated, tag = "10")]
    pub src_ip_set_ids: Vec<String>,
    #[prost(string, repeated, tag = "11")]
    pub dst_ip_set_ids: Vec<String>,
    #[prost(string, repeated, tag = "15")]
    pub dst_ip_port_set_ids: Vec<String>,
    #[prost(message, optional, tag = "102")]
    pub not_protocol: Option<Protocol>,
    #[prost(string, repeated, tag = "103")]
    pub not_src_net: Vec<String>,
    #[prost(message, repeated, tag = "104")]
    pub not_src_ports: Vec<PortRange>,
    #[prost(string, repeated, tag = "105")]
    pub not_dst_net: Vec<String>,
    #[prost(message, repeated, tag = "106")]
    pub not_dst_ports: Vec<PortRange>,
    #[prost(oneof = "rule::NotIcmp", tags = "107, 108")]
    pub not_icmp: Option<rule::NotIcmp>,
    #[prost(string, repeated, tag = "109")]
    pub not_src_ip_set_ids: Vec<String>,
    #[prost(string, repeated, tag = "110")]
    pub not_dst_ip_set_ids: Vec<String>,
    #[prost(string, repeated, tag = "112")]
    pub not_src_named_port_ip_set_ids: Vec<String>,
    #[prost(string, repeated, tag = "113")]
    pub not_dst_named_port_ip_set_ids: Vec<String>,
    #[prost(string, tag = "114")]
    pub original_src_selector: String,
    #[prost(string, tag = "115")]
    pub original_dst_selector: String,
    #[prost(string, tag = "116")]
    pub original_src_namespace_selector: String,
    #[prost(string, tag = "117")]
    pub original_dst_namespace_selector: String,
    #[prost(string, tag = "118")]
    pub original_not_src_selector: String,
    #[prost(string, tag = "119")]
    pub original_not_dst_selector: String,
    #[prost(string, tag = "132")]
    pub original_src_service: String,
    #[prost(string, tag = "133")]
    pub original_src_service_namespace: String,
    #[prost(string, tag = "130")]
    pub original_dst_service: String,
    #[prost(string, tag = "131")]
    pub original_dst_service_namespace: String,
    #[prost(message, optional, tag = "120")]
    pub src_service_account_match: Option<ServiceAccountMatch>,
    #[prost(message, optional, tag = "121")]
    pub dst_service_account_match: Option<ServiceAccountMatch>,
    #[prost(message, optional, tag = "122")]
    pub http_match: Option<HttpMatch>,
    #[prost(message, optional, tag = "123")]
    pub metadata: Option<RuleMetadata>,
    #[prost(string, tag = "201")]
    pub rule_id: String,
}

pub mod rule {
    /// ICMP match: a type, or a type and a code.
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Icmp {
        #[prost(int32, tag = "8")]
        IcmpType(i32),
        #[prost(message, tag = "9")]
        IcmpTypeCode(super::IcmpTypeAndCode),
    }

    /// Negated ICMP match.
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum NotIcmp {
        #[prost(int32, tag = "107")]
        NotIcmpType(i32),
        #[prost(message, tag = "108")]
        NotIcmpTypeCode(super::IcmpTypeAndCode),
    }
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ServiceAccountMatch {
    #[prost(string, tag = "1")]
    pub selector: String,
    #[prost(string, repeated, tag = "2")]
    pub names: Vec<String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct HttpMatch {
    #[prost(string, repeated, tag = "1")]
    pub methods: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    pub paths: Vec<http_match::PathMatch>,
}

pub mod http_match {
    /// `HTTPMatch.PathMatch`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct PathMatch {
        #[prost(oneof = "path_match::PathMatch", tags = "1, 2")]
        pub path_match: Option<path_match::PathMatch>,
    }

    pub mod path_match {
        /// An exact path or a prefix.
        #[derive(Clone, PartialEq, ::prost::Oneof)]
        pub enum PathMatch {
            #[prost(string, tag = "1")]
            Exact(String),
            #[prost(string, tag = "2")]
            Prefix(String),
        }
    }
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RuleMetadata {
    #[prost(btree_map = "string, string", tag = "1")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IcmpTypeAndCode {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(int32, tag = "2")]
    pub code: i32,
}

/// A protocol by number or by name (`tcp`, `udp`, ...).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Protocol {
    #[prost(oneof = "protocol::NumberOrName", tags = "1, 2")]
    pub number_or_name: Option<protocol::NumberOrName>,
}

pub mod protocol {
    /// `Protocol.number_or_name`.
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum NumberOrName {
        #[prost(int32, tag = "1")]
        Number(i32),
        #[prost(string, tag = "2")]
        Name(String),
    }
}

/// Ports `first..=last` (a single port has `first == last`).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PortRange {
    #[prost(int32, tag = "1")]
    pub first: i32,
    #[prost(int32, tag = "2")]
    pub last: i32,
}

// ---------------------------------------------------------------------------
// Workload endpoints.

/// A workload endpoint's key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Message)]
pub struct WorkloadEndpointId {
    #[prost(string, tag = "2")]
    pub orchestrator_id: String,
    #[prost(string, tag = "3")]
    pub workload_id: String,
    #[prost(string, tag = "4")]
    pub endpoint_id: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct WorkloadEndpointUpdate {
    #[prost(message, optional, tag = "1")]
    pub id: Option<WorkloadEndpointId>,
    #[prost(message, optional, tag = "5")]
    pub endpoint: Option<WorkloadEndpoint>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct WorkloadBpfSkipRedir {
    #[prost(bool, tag = "1")]
    pub egress: bool,
    #[prost(bool, tag = "2")]
    pub ingress: bool,
}

/// `LiveMigrationRole`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum LiveMigrationRole {
    NoRole = 0,
    Source = 1,
    Target = 2,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct WorkloadEndpoint {
    #[prost(string, tag = "1")]
    pub state: String,
    /// The host-side interface.
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub mac: String,
    #[prost(string, repeated, tag = "4")]
    pub profile_ids: Vec<String>,
    #[prost(string, repeated, tag = "5")]
    pub ipv4_nets: Vec<String>,
    #[prost(string, repeated, tag = "6")]
    pub ipv6_nets: Vec<String>,
    #[prost(message, repeated, tag = "7")]
    pub tiers: Vec<TierInfo>,
    #[prost(message, repeated, tag = "8")]
    pub ipv4_nat: Vec<NatInfo>,
    #[prost(message, repeated, tag = "9")]
    pub ipv6_nat: Vec<NatInfo>,
    #[prost(string, repeated, tag = "10")]
    pub allow_spoofed_source_prefixes: Vec<String>,
    #[prost(btree_map = "string, string", tag = "11")]
    pub annotations: BTreeMap<String, String>,
    #[prost(message, optional, tag = "12")]
    pub qos_controls: Option<QoSControls>,
    #[prost(message, optional, tag = "13")]
    pub local_bgp_peer: Option<LocalBgpPeer>,
    #[prost(message, optional, tag = "14")]
    pub skip_redir: Option<WorkloadBpfSkipRedir>,
    #[prost(message, repeated, tag = "15")]
    pub qos_policies: Vec<QoSPolicy>,
    #[prost(bool, tag = "16")]
    pub is_istio_ambient: bool,
    #[prost(enumeration = "LiveMigrationRole", tag = "17")]
    pub live_migration_role: i32,
    #[prost(string, tag = "18")]
    pub live_migration_uid: String,
    #[prost(string, tag = "19")]
    pub live_migration_vmi_name: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct QoSControls {
    #[prost(int64, tag = "1")]
    pub ingress_bandwidth: i64,
    #[prost(int64, tag = "2")]
    pub egress_bandwidth: i64,
    #[prost(int64, tag = "3")]
    pub ingress_burst: i64,
    #[prost(int64, tag = "4")]
    pub egress_burst: i64,
    #[prost(int64, tag = "5")]
    pub ingress_packet_rate: i64,
    #[prost(int64, tag = "6")]
    pub egress_packet_rate: i64,
    #[prost(int64, tag = "7")]
    pub ingress_max_connections: i64,
    #[prost(int64, tag = "8")]
    pub egress_max_connections: i64,
    #[prost(int64, tag = "9")]
    pub ingress_peakrate: i64,
    #[prost(int64, tag = "10")]
    pub egress_peakrate: i64,
    #[prost(int64, tag = "11")]
    pub ingress_minburst: i64,
    #[prost(int64, tag = "12")]
    pub egress_minburst: i64,
    #[prost(int64, tag = "13")]
    pub ingress_packet_burst: i64,
    #[prost(int64, tag = "14")]
    pub egress_packet_burst: i64,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct QoSPolicy {
    #[prost(string, tag = "1")]
    pub destination: String,
    #[prost(int32, tag = "2")]
    pub dscp: i32,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LocalBgpPeer {
    #[prost(string, tag = "1")]
    pub bgp_peer_name: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct WorkloadEndpointRemove {
    #[prost(message, optional, tag = "1")]
    pub id: Option<WorkloadEndpointId>,
}

// ---------------------------------------------------------------------------
// Host endpoints.

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Message)]
pub struct HostEndpointId {
    #[prost(string, tag = "2")]
    pub endpoint_id: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct HostEndpointUpdate {
    #[prost(message, optional, tag = "1")]
    pub id: Option<HostEndpointId>,
    #[prost(message, optional, tag = "3")]
    pub endpoint: Option<HostEndpoint>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct HostEndpoint {
    /// An interface, or `*` for all of the host's.
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, repeated, tag = "2")]
    pub profile_ids: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub tiers: Vec<TierInfo>,
    #[prost(message, repeated, tag = "6")]
    pub untracked_tiers: Vec<TierInfo>,
    #[prost(message, repeated, tag = "7")]
    pub pre_dnat_tiers: Vec<TierInfo>,
    #[prost(message, repeated, tag = "8")]
    pub forward_tiers: Vec<TierInfo>,
    #[prost(string, repeated, tag = "4")]
    pub expected_ipv4_addrs: Vec<String>,
    #[prost(string, repeated, tag = "5")]
    pub expected_ipv6_addrs: Vec<String>,
    #[prost(message, repeated, tag = "9")]
    pub qos_policies: Vec<QoSPolicy>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct HostEndpointRemove {
    #[prost(message, optional, tag = "1")]
    pub id: Option<HostEndpointId>,
}

/// A tier's policies for one endpoint, in order.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TierInfo {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, repeated, tag = "2")]
    pub ingress_policies: Vec<PolicyId>,
    #[prost(message, repeated, tag = "3")]
    pub egress_policies: Vec<PolicyId>,
    #[prost(string, tag = "4")]
    pub default_action: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct NatInfo {
    #[prost(string, tag = "1")]
    pub ext_ip: String,
    #[prost(string, tag = "2")]
    pub int_ip: String,
}

// ---------------------------------------------------------------------------
// Status back to Felix.

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ProcessStatusUpdate {
    #[prost(string, tag = "1")]
    pub iso_timestamp: String,
    /// Seconds.
    #[prost(double, tag = "2")]
    pub uptime: f64,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct HostEndpointStatusUpdate {
    #[prost(message, optional, tag = "1")]
    pub id: Option<HostEndpointId>,
    #[prost(message, optional, tag = "2")]
    pub status: Option<EndpointStatus>,
}

/// `up`, `down` or `error`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct EndpointStatus {
    #[prost(string, tag = "1")]
    pub status: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct HostEndpointStatusRemove {
    #[prost(message, optional, tag = "1")]
    pub id: Option<HostEndpointId>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct WorkloadEndpointStatusUpdate {
    #[prost(message, optional, tag = "1")]
    pub id: Option<WorkloadEndpointId>,
    #[prost(message, optional, tag = "2")]
    pub status: Option<EndpointStatus>,
    #[prost(message, optional, tag = "3")]
    pub endpoint: Option<WorkloadEndpoint>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct WorkloadEndpointStatusRemove {
    #[prost(message, optional, tag = "1")]
    pub id: Option<WorkloadEndpointId>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct WireguardStatusUpdate {
    #[prost(string, tag = "1")]
    pub public_key: String,
    #[prost(enumeration = "IpVersion", tag = "2")]
    pub ip_version: i32,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct DataplaneInSync {}

// ---------------------------------------------------------------------------
// Hosts.

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct HostMetadataV4v6Update {
    #[prost(string, tag = "1")]
    pub hostname: String,
    #[prost(string, tag = "2")]
    pub ipv4_addr: String,
    #[prost(string, tag = "3")]
    pub ipv6_addr: String,
    #[prost(string, tag = "4")]
    pub asnumber: String,
    #[prost(btree_map = "string, string", tag = "5")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct HostMetadataV4v6Remove {
    #[prost(string, tag = "1")]
    pub hostname: String,
    #[prost(string, tag = "2")]
    pub ipv4_addr: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct HostMetadataUpdate {
    #[prost(string, tag = "1")]
    pub hostname: String,
    #[prost(string, tag = "2")]
    pub ipv4_addr: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct HostMetadataRemove {
    #[prost(string, tag = "1")]
    pub hostname: String,
    #[prost(string, tag = "2")]
    pub ipv4_addr: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct HostMetadataV6Update {
    #[prost(string, tag = "1")]
    pub hostname: String,
    #[prost(string, tag = "2")]
    pub ipv6_addr: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct HostMetadataV6Remove {
    #[prost(string, tag = "1")]
    pub hostname: String,
    #[prost(string, tag = "2")]
    pub ipv6_addr: String,
}

// ---------------------------------------------------------------------------
// IP pools and encapsulation.

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IpamPoolUpdate {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub pool: Option<IpamPool>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IpamPoolRemove {
    #[prost(string, tag = "1")]
    pub id: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IpamPool {
    #[prost(string, tag = "1")]
    pub cidr: String,
    /// NAT outgoing: traffic from the pool to outside the pools is
    /// masqueraded.
    #[prost(bool, tag = "2")]
    pub masquerade: bool,
    #[prost(string, tag = "3")]
    pub ipip_mode: String,
    #[prost(string, tag = "4")]
    pub vxlan_mode: String,
    #[prost(string, repeated, tag = "5")]
    pub allowed_uses: Vec<String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Encapsulation {
    #[prost(bool, tag = "1")]
    pub ipip_enabled: bool,
    #[prost(bool, tag = "2")]
    pub vxlan_enabled: bool,
    #[prost(bool, tag = "3")]
    pub vxlan_enabled_v6: bool,
}

// ---------------------------------------------------------------------------
// Service accounts and namespaces (their labels; Felix has already
// resolved selectors on them into IP sets).

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ServiceAccountUpdate {
    #[prost(message, optional, tag = "1")]
    pub id: Option<ServiceAccountId>,
    #[prost(btree_map = "string, string", tag = "2")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ServiceAccountRemove {
    #[prost(message, optional, tag = "1")]
    pub id: Option<ServiceAccountId>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Message)]
pub struct ServiceAccountId {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub name: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct NamespaceUpdate {
    #[prost(message, optional, tag = "1")]
    pub id: Option<NamespaceId>,
    #[prost(btree_map = "string, string", tag = "2")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct NamespaceRemove {
    #[prost(message, optional, tag = "1")]
    pub id: Option<NamespaceId>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Message)]
pub struct NamespaceId {
    #[prost(string, tag = "1")]
    pub name: String,
}

// ---------------------------------------------------------------------------
// Routes.

/// `RouteType`: bits of `RouteUpdate.types`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum RouteType {
    CidrInfo = 0,
    RemoteWorkload = 1,
    RemoteHost = 2,
    LocalWorkload = 4,
    LocalHost = 8,
    RemoteTunnel = 16,
    LocalTunnel = 32,
}

/// `IPPoolType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum IpPoolType {
    None = 0,
    NoEncap = 1,
    Vxlan = 2,
    Ipip = 3,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TunnelType {
    #[prost(bool, tag = "1")]
    pub ipip: bool,
    #[prost(bool, tag = "2")]
    pub vxlan: bool,
    #[prost(bool, tag = "3")]
    pub wireguard: bool,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RouteUpdate {
    /// A bitmap of [`RouteType`] values (carried in an enum field).
    #[prost(enumeration = "RouteType", tag = "12")]
    pub types: i32,
    #[prost(enumeration = "IpPoolType", tag = "2")]
    pub ip_pool_type: i32,
    #[prost(string, tag = "3")]
    pub dst: String,
    #[prost(string, tag = "4")]
    pub dst_node_name: String,
    #[prost(string, tag = "5")]
    pub dst_node_ip: String,
    #[prost(bool, tag = "7")]
    pub same_subnet: bool,
    #[prost(bool, tag = "8")]
    pub nat_outgoing: bool,
    #[prost(bool, tag = "9")]
    pub local_workload: bool,
    #[prost(message, optional, tag = "10")]
    pub tunnel_type: Option<TunnelType>,
    #[prost(bool, tag = "11")]
    pub borrowed: bool,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RouteRemove {
    #[prost(string, tag = "2")]
    pub dst: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct VxlanTunnelEndpointUpdate {
    #[prost(string, tag = "1")]
    pub node: String,
    #[prost(string, tag = "2")]
    pub mac: String,
    #[prost(string, tag = "3")]
    pub ipv4_addr: String,
    #[prost(string, tag = "4")]
    pub parent_device_ip: String,
    #[prost(string, tag = "5")]
    pub mac_v6: String,
    #[prost(string, tag = "6")]
    pub ipv6_addr: String,
    #[prost(string, tag = "7")]
    pub parent_device_ipv6: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct VxlanTunnelEndpointRemove {
    #[prost(string, tag = "1")]
    pub node: String,
}

// ---------------------------------------------------------------------------
// WireGuard and BGP.

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct WireguardEndpointUpdate {
    #[prost(string, tag = "1")]
    pub hostname: String,
    #[prost(string, tag = "2")]
    pub public_key: String,
    #[prost(string, tag = "3")]
    pub interface_ipv4_addr: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct WireguardEndpointRemove {
    #[prost(string, tag = "1")]
    pub hostname: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct WireguardEndpointV6Update {
    #[prost(string, tag = "1")]
    pub hostname: String,
    #[prost(string, tag = "2")]
    pub public_key_v6: String,
    #[prost(string, tag = "3")]
    pub interface_ipv6_addr: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct WireguardEndpointV6Remove {
    #[prost(string, tag = "1")]
    pub hostname: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct GlobalBgpConfigUpdate {
    #[prost(string, repeated, tag = "1")]
    pub service_cluster_cidrs: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub service_external_cidrs: Vec<String>,
    #[prost(string, repeated, tag = "3")]
    pub service_loadbalancer_cidrs: Vec<String>,
    #[prost(string, tag = "4")]
    pub local_workload_peering_ip_v4: String,
    #[prost(string, tag = "5")]
    pub local_workload_peering_ip_v6: String,
}

// ---------------------------------------------------------------------------
// Services (cluster IPs and ports, no backends).

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ServicePort {
    #[prost(string, tag = "1")]
    pub protocol: String,
    #[prost(int32, tag = "2")]
    pub port: i32,
    #[prost(int32, tag = "3")]
    pub node_port: i32,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ServiceUpdate {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub namespace: String,
    #[prost(string, tag = "3")]
    pub r#type: String,
    #[prost(string, repeated, tag = "4")]
    pub cluster_ips: Vec<String>,
    #[prost(string, tag = "5")]
    pub loadbalancer_ip: String,
    #[prost(string, repeated, tag = "6")]
    pub external_ips: Vec<String>,
    #[prost(message, repeated, tag = "7")]
    pub ports: Vec<ServicePort>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ServiceRemove {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub namespace: String,
}
