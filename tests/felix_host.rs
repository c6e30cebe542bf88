//! Host endpoints under Felix through the pipeline: untracked, pre-DNAT
//! and forward tiers judged by the interface a packet comes in or goes out
//! through, and `DefaultEndpointToHostAction` for a workload's traffic to
//! its own host (semantics: `engine/src/sources/felix/policy.rs`).
//!
//! The node: `eth0` (uplink, default route), `eth1` (a connected LAN with
//! a server at 198.51.100.7) and `cali1` (a pod, 10.1.0.5, whose profile
//! allows everything); a service VIP 10.96.0.10:80 → the pod's 8080. Each
//! test gives the host endpoints of `eth0` and `eth1` the tiers it needs.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use bench::packet::{self as pk, flags, Ip};
use common::TempDir;
use engine::pipeline::{Action, Batch, DropReason, Pipeline};
use engine::sources::config::Config;
use engine::sources::felix::proto::{self, PolicyId};
use engine::sources::felix::{FelixModel, HowCompiled, PolicyCompiler, Settings};
use engine::state::{CompiledInput, NodeState, PolicyInput};
use engine::tables::conntrack::Conntrack;
use policy_compiler::ir::{Decision, DecisionInfo};

const ETH0_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const ETH1_MAC: [u8; 6] = [2, 0, 0, 0, 0, 3];
const PODS_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 2, 0, 7];
const POD_MAC: [u8; 6] = [2, 0, 0, 1, 0, 5];

const YAML: &str = "ports:
  - {name: eth0, mac: \"02:00:00:00:00:01\", addresses: [\"192.0.2.1/24\"]}
  - {name: eth1, mac: \"02:00:00:00:00:03\", addresses: [\"198.51.100.1/24\"]}
  - {name: cali1, mac: \"02:00:00:00:00:02\", addresses: [\"10.1.0.1/16\"]}
routes:
  - {prefix: \"198.51.100.0/24\", port: eth1}
  - {prefix: \"10.1.0.0/16\", port: cali1}
  - {prefix: \"0.0.0.0/0\", port: eth0, via: \"192.0.2.254\"}
neighbors:
  - {ip: \"192.0.2.254\", mac: \"02:00:00:00:00:fe\", port: eth0}
  - {ip: \"198.51.100.7\", mac: \"02:00:00:02:00:07\", port: eth1}
  - {ip: \"10.1.0.5\", mac: \"02:00:00:01:00:05\", port: cali1}
services:
  - {name: web, vip: \"10.96.0.10\", port: 80, protocol: TCP, backends: [\"10.1.0.5:8080\"]}
";

const ETH0: u16 = 0;
const ETH1: u16 = 1;
const PODS: u16 = 2;

fn base_state() -> NodeState {
    let dir = TempDir::new("felix-host");
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, YAML).unwrap();
    Config::load(&path).unwrap().state()
}

fn pid(name: &str) -> PolicyId {
    PolicyId {
        name: name.into(),
        namespace: String::new(),
        kind: "GlobalNetworkPolicy".into(),
    }
}

/// A rule: `action` for TCP to `dport` (any port when 0), optionally
/// from `src` and to `dst`.
fn tcp_rule(action: &str, dport: i32, src: Option<&str>, dst: Option<&str>) -> proto::Rule {
    proto::Rule {
        action: action.into(),
        protocol: Some(proto::Protocol {
            number_or_name: Some(proto::protocol::NumberOrName::Name("tcp".into())),
        }),
        dst_ports: if dport == 0 {
            vec![]
        } else {
            vec![proto::PortRange {
                first: dport,
                last: dport,
            }]
        },
        src_net: src.map(|s| vec![s.to_string()]).unwrap_or_default(),
        dst_net: dst.map(|s| vec![s.to_string()]).unwrap_or_default(),
        ..Default::default()
    }
}

fn tier(policy: &str, ingress: bool, egress: bool, default_action: &str) -> proto::TierInfo {
    proto::TierInfo {
        name: "default".into(),
        ingress_policies: if ingress { vec![pid(policy)] } else { vec![] },
        egress_policies: if egress { vec![pid(policy)] } else { vec![] },
        default_action: default_action.into(),
    }
}

/// The model: the pod with an open profile (or `pod_egress` as its
/// profile's egress rules), and the host endpoints given.
fn model(
    heps: Vec<(&str, proto::HostEndpoint)>,
    policies: Vec<(&str, proto::Policy)>,
    to_host: &str,
    pod_egress: Vec<proto::Rule>,
) -> FelixModel {
    let mut m = FelixModel::default();
    let mut raw = BTreeMap::new();
    raw.insert(
        "DefaultEndpointToHostAction".to_string(),
        to_host.to_string(),
    );
    m.settings = Settings::from_raw(raw);
    let open = vec![proto::Rule::default()];
    m.profiles.insert(
        "open".into(),
        Arc::new(proto::Profile {
            inbound_rules: open.clone(),
            outbound_rules: if pod_egress.is_empty() {
                open
            } else {
                pod_egress
            },
        }),
    );
    m.workload_endpoints.insert(
        proto::WorkloadEndpointId {
            orchestrator_id: "k8s".into(),
            workload_id: "default/pod".into(),
            endpoint_id: "eth0".into(),
        },
        Arc::new(proto::WorkloadEndpoint {
            name: "cali1".into(),
            ipv4_nets: vec!["10.1.0.5/32".into()],
            profile_ids: vec!["open".into()],
            ..Default::default()
        }),
    );
    for (id, h) in heps {
        m.host_endpoints.insert(id.into(), Arc::new(h));
    }
    for (name, p) in policies {
        m.policies.insert(pid(name), Arc::new(p));
    }
    m
}

fn hep(name: &str) -> proto::HostEndpoint {
    proto::HostEndpoint {
        name: name.into(),
        ..Default::default()
    }
}

/// A pipeline over the node with `m`'s policy, and its connection table.
fn pipeline(m: &FelixModel) -> (Pipeline, Arc<Conntrack>) {
    let c = PolicyCompiler::default().compile(m);
    let mut s = base_state();
    s.policy = PolicyInput::Compiled(CompiledInput {
        origin: "felix".into(),
        classifier: c.classifier,
        host: c.host,
    });
    let t = Arc::new(engine::state::build::replay_tables(&s).unwrap());
    let ct = Arc::new(Conntrack::new(1024, 1));
    (Pipeline::new(t, ct.clone()), ct)
}

/// Sends one frame; its action and the decision that judged it.
fn send(p: &mut Pipeline, ingress: u16, frame: &[u8]) -> (Action, Option<DecisionInfo>) {
    let mut f = frame.to_vec();
    let mut b = Batch::new();
    b.push(f.as_mut_slice(), ingress).unwrap();
    p.process(1, &mut b);
    let r = p.report(0, &b).unwrap();
    let d = r
        .policy
        .map(|(_, d)| p.tables().policy.decision_info(d).clone());
    (b.slots()[0].action, d)
}

/// A TCP segment from `src` to `dst` arriving from the neighbour on the
/// port given by its MACs.
fn tcp(
    (port_mac, peer_mac): ([u8; 6], [u8; 6]),
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    fl: u8,
) -> Vec<u8> {
    let (s, d) = (Ip::p(src), Ip::p(dst));
    let seg = pk::tcp(
        s,
        d,
        sport,
        dport,
        1,
        if fl & flags::ACK != 0 { 1 } else { 0 },
        fl,
        &[],
    );
    pk::eth_ip(port_mac, peer_mac, &pk::ip(s, d, 6, 64, &seg))
}

const FROM_ETH0: ([u8; 6], [u8; 6]) = (ETH0_MAC, GW_MAC);
const FROM_ETH1: ([u8; 6], [u8; 6]) = (ETH1_MAC, SERVER_MAC);
const FROM_POD: ([u8; 6], [u8; 6]) = (PODS_MAC, POD_MAC);
const CLIENT: &str = "203.0.113.9";
const SERVER: &str = "198.51.100.7";

fn rule_of(d: &Option<DecisionInfo>) -> (String, String, u32) {
    match d {
        Some(DecisionInfo::Rule {
            tier, policy, rule, ..
        }) => (tier.clone(), policy.clone(), *rule),
        other => panic!("decided by {other:?}, not a rule"),
    }
}

#[test]
fn untracked_allow_leaves_no_connection_both_ways_and_deny_drops() {
    // Both interfaces' endpoints allow TCP untracked, except to port 6000.
    let notrack = proto::Policy {
        inbound_rules: vec![
            tcp_rule("deny", 6000, None, None),
            tcp_rule("allow", 0, None, None),
        ],
        ..Default::default()
    };
    let untracked = |name: &str| proto::HostEndpoint {
        untracked_tiers: vec![tier("notrack", true, false, "Deny")],
        ..hep(name)
    };
    let m = model(
        vec![("eth0", untracked("eth0")), ("eth1", untracked("eth1"))],
        vec![("notrack", notrack)],
        "DROP",
        vec![],
    );
    let (mut p, ct) = pipeline(&m);
    let (a, d) = send(
        &mut p,
        ETH0,
        &tcp(FROM_ETH0, CLIENT, SERVER, 40000, 5000, flags::SYN),
    );
    assert_eq!(a, Action::Forward(ETH1));
    assert_eq!(rule_of(&d), ("default".into(), "notrack".into(), 1));
    // The reply, judged by eth1's untracked policy, is forwarded too.
    let (a, _) = send(
        &mut p,
        ETH1,
        &tcp(
            FROM_ETH1,
            SERVER,
            CLIENT,
            5000,
            40000,
            flags::SYN | flags::ACK,
        ),
    );
    assert_eq!(a, Action::Forward(ETH0));
    assert_eq!(ct.len(), 0, "untracked traffic opened a connection");
    // A mid-stream segment (no SYN) passes as well: nothing tracks it.
    let (a, _) = send(
        &mut p,
        ETH0,
        &tcp(FROM_ETH0, CLIENT, SERVER, 40000, 5000, flags::ACK),
    );
    assert_eq!(a, Action::Forward(ETH1));
    assert_eq!(ct.len(), 0);
    // Deny drops, naming the rule.
    let (a, d) = send(
        &mut p,
        ETH0,
        &tcp(FROM_ETH0, CLIENT, SERVER, 40001, 6000, flags::SYN),
    );
    assert_eq!(a, Action::Drop(DropReason::Policy));
    assert_eq!(rule_of(&d), ("default".into(), "notrack".into(), 0));
    // UDP matches no untracked rule: it falls through to conntrack.
    let seg = pk::udp(Ip::p(CLIENT), Ip::p(SERVER), 40000, 53, b"q", false);
    let udp = pk::eth_ip(
        ETH0_MAC,
        GW_MAC,
        &pk::ip(Ip::p(CLIENT), Ip::p(SERVER), 17, 64, &seg),
    );
    let (a, _) = send(&mut p, ETH0, &udp);
    assert_eq!(a, Action::Forward(ETH1));
    assert_eq!(
        ct.len(),
        1,
        "traffic untracked policy did not match is tracked"
    );
    // In one batch with tracked frames around it, an untracked frame is
    // forwarded in its place and opens nothing.
    let udp2 = |sport: u16| {
        let seg = pk::udp(Ip::p(CLIENT), Ip::p(SERVER), sport, 53, b"q", false);
        pk::eth_ip(
            ETH0_MAC,
            GW_MAC,
            &pk::ip(Ip::p(CLIENT), Ip::p(SERVER), 17, 64, &seg),
        )
    };
    let mut frames = [
        udp2(41000),
        tcp(FROM_ETH0, CLIENT, SERVER, 40002, 5000, flags::SYN),
        tcp(FROM_ETH0, CLIENT, SERVER, 40003, 6000, flags::SYN),
        udp2(41001),
    ];
    let mut b = Batch::new();
    for f in frames.iter_mut() {
        b.push(f.as_mut_slice(), ETH0).unwrap();
    }
    p.process(1, &mut b);
    let actions: Vec<Action> = b.slots().iter().map(|s| s.action).collect();
    assert_eq!(
        actions,
        vec![
            Action::Forward(ETH1),
            Action::Forward(ETH1),
            Action::Drop(DropReason::Policy),
            Action::Forward(ETH1),
        ]
    );
    assert_eq!(ct.len(), 3, "only the two UDP flows are tracked");

    // Without untracked tiers the same SYN is tracked.
    let m = model(vec![("eth0", hep("eth0"))], vec![], "DROP", vec![]);
    let (mut p, ct) = pipeline(&m);
    let (a, _) = send(
        &mut p,
        ETH0,
        &tcp(FROM_ETH0, CLIENT, SERVER, 40000, 5000, flags::SYN),
    );
    assert_eq!(a, Action::Forward(ETH1));
    assert_eq!(ct.len(), 1);
}

#[test]
fn pre_dnat_judges_the_service_address_on_its_interface_only() {
    // eth0's endpoint denies new connections to the service VIP before
    // DNAT; eth1's has no pre-DNAT tiers.
    let guard = proto::Policy {
        inbound_rules: vec![tcp_rule("deny", 80, None, Some("10.96.0.10/32"))],
        ..Default::default()
    };
    let m = model(
        vec![
            (
                "eth0",
                proto::HostEndpoint {
                    pre_dnat_tiers: vec![tier("guard", true, false, "Deny")],
                    ..hep("eth0")
                },
            ),
            ("eth1", hep("eth1")),
        ],
        vec![("guard", guard)],
        "DROP",
        vec![],
    );
    let (mut p, ct) = pipeline(&m);
    let (a, d) = send(
        &mut p,
        ETH0,
        &tcp(FROM_ETH0, CLIENT, "10.96.0.10", 40000, 80, flags::SYN),
    );
    assert_eq!(a, Action::Drop(DropReason::Policy));
    assert_eq!(rule_of(&d), ("default".into(), "guard".into(), 0));
    assert_eq!(ct.len(), 0);
    // The same connection from eth1 reaches the backend.
    let (a, _) = send(
        &mut p,
        ETH1,
        &tcp(FROM_ETH1, SERVER, "10.96.0.10", 40000, 80, flags::SYN),
    );
    assert_eq!(a, Action::Forward(PODS));
    assert_eq!(ct.len(), 1);
    // `explain` names the pre-DNAT rule for the packet arriving on eth0,
    // and nothing of it for the same packet on eth1.
    let explain = |ingress: &str| {
        let q = serde_json::json!({"proto": "tcp", "src": CLIENT, "sport": 40002,
                                   "dst": "10.96.0.10", "dport": 80, "ingress": ingress});
        let t = p.tables().clone();
        let q = engine::control::explain::Query::from_json(&q, &t).unwrap();
        engine::control::explain::explain(&t, &ct, 1, &q)
    };
    let e = explain("eth0");
    assert_eq!(
        e["policy"]["decision"],
        serde_json::json!({"tier": "default", "policy": "guard", "rule": 0}),
        "{e}"
    );
    // The verdict is the pipeline's (the host rule's), the classifier's
    // own beside it.
    assert_eq!(e["policy"]["verdict"], "deny", "{e}");
    assert_eq!(e["policy"]["classifier_verdict"], "allow", "{e}");
    assert_eq!(e["verdict"]["action"], "drop", "{e}");
    let e = explain("eth1");
    assert_ne!(e["policy"]["decision"]["policy"], "guard", "{e}");
    // On eth0, what the pre-DNAT rule does not match goes on (no end of
    // tier drop): straight to the pod's address is allowed.
    let (a, _) = send(
        &mut p,
        ETH0,
        &tcp(FROM_ETH0, CLIENT, "10.1.0.5", 40001, 8080, flags::SYN),
    );
    assert_eq!(a, Action::Forward(PODS));
}

#[test]
fn forward_tiers_judge_traffic_in_and_out_through_their_interface() {
    // eth1's endpoint: egress (out through eth1) denies TCP 7000 and
    // allows 7001; ingress (in through eth1) denies TCP to 8080; the
    // tier's default action drops the rest.
    let fwd = proto::Policy {
        outbound_rules: vec![
            tcp_rule("deny", 7000, None, None),
            tcp_rule("allow", 7001, None, None),
        ],
        inbound_rules: vec![
            tcp_rule("deny", 8080, None, None),
            tcp_rule("allow", 0, None, None),
        ],
        ..Default::default()
    };
    let m = model(
        vec![
            ("eth0", hep("eth0")),
            (
                "eth1",
                proto::HostEndpoint {
                    forward_tiers: vec![tier("fwd", true, true, "Deny")],
                    ..hep("eth1")
                },
            ),
        ],
        vec![("fwd", fwd)],
        "DROP",
        vec![],
    );
    let (mut p, _) = pipeline(&m);
    let (a, d) = send(
        &mut p,
        ETH0,
        &tcp(FROM_ETH0, CLIENT, SERVER, 40000, 7000, flags::SYN),
    );
    assert_eq!(a, Action::Drop(DropReason::Policy));
    assert_eq!(rule_of(&d), ("default".into(), "fwd".into(), 0));
    let (a, d) = send(
        &mut p,
        ETH0,
        &tcp(FROM_ETH0, CLIENT, SERVER, 40000, 7001, flags::SYN),
    );
    assert_eq!(a, Action::Forward(ETH1));
    assert_eq!(rule_of(&d), ("default".into(), "fwd".into(), 1));
    // No rule matched: the tier's default action.
    let (a, d) = send(
        &mut p,
        ETH0,
        &tcp(FROM_ETH0, CLIENT, SERVER, 40000, 7002, flags::SYN),
    );
    assert_eq!(a, Action::Drop(DropReason::Policy));
    assert!(matches!(d, Some(DecisionInfo::EndOfTier { .. })), "{d:?}");
    // In through eth1 to the pod: the ingress rules (and the pod's own).
    let (a, _) = send(
        &mut p,
        ETH1,
        &tcp(FROM_ETH1, SERVER, "10.1.0.5", 40000, 8080, flags::SYN),
    );
    assert_eq!(a, Action::Drop(DropReason::Policy));
    let (a, _) = send(
        &mut p,
        ETH1,
        &tcp(FROM_ETH1, SERVER, "10.1.0.5", 40000, 9090, flags::SYN),
    );
    assert_eq!(a, Action::Forward(PODS));
    // eth0 has no forward tiers: eth0 → pod is not judged by any.
    let (a, _) = send(
        &mut p,
        ETH0,
        &tcp(FROM_ETH0, CLIENT, "10.1.0.5", 40000, 8080, flags::SYN),
    );
    assert_eq!(a, Action::Forward(PODS));
}

#[test]
fn default_endpoint_to_host_action_each_value() {
    let to_host = || tcp(FROM_POD, "10.1.0.5", "10.1.0.1", 40000, 9090, flags::SYN);
    let setting = |d: &Option<DecisionInfo>| match d {
        Some(DecisionInfo::Setting { setting, value, .. }) => (setting.clone(), value.clone()),
        other => panic!("decided by {other:?}"),
    };
    for (value, want) in [
        ("DROP", Action::Drop(DropReason::Policy)),
        ("RETURN", Action::Kernel),
        ("ACCEPT", Action::Kernel),
    ] {
        let m = model(vec![("eth0", hep("eth0"))], vec![], value, vec![]);
        let (mut p, _) = pipeline(&m);
        let (a, d) = send(&mut p, PODS, &to_host());
        assert_eq!(a, want, "DefaultEndpointToHostAction={value}");
        assert_eq!(
            setting(&d),
            ("DefaultEndpointToHostAction".to_string(), value.to_string())
        );
        // A pod's answer to the host (a connection the host opened) is
        // not judged.
        let (a, _) = send(
            &mut p,
            PODS,
            &tcp(
                FROM_POD,
                "10.1.0.5",
                "10.1.0.1",
                8080,
                40000,
                flags::SYN | flags::ACK,
            ),
        );
        assert_eq!(a, Action::Kernel, "DefaultEndpointToHostAction={value}");
        // The host's own traffic from the uplink is not the setting's.
        let (a, _) = send(
            &mut p,
            ETH0,
            &tcp(FROM_ETH0, CLIENT, "192.0.2.1", 40000, 9090, flags::SYN),
        );
        assert_eq!(a, Action::Kernel);
    }
    // The workload's egress policy comes first: a deny wins over ACCEPT.
    let m = model(
        vec![],
        vec![],
        "ACCEPT",
        vec![tcp_rule("deny", 9090, None, None), proto::Rule::default()],
    );
    let (mut p, _) = pipeline(&m);
    let (a, d) = send(&mut p, PODS, &to_host());
    assert_eq!(a, Action::Drop(DropReason::Policy));
    assert!(
        matches!(d, Some(DecisionInfo::Profile { rule: 0, .. })),
        "{d:?}"
    );
    let (a, _) = send(
        &mut p,
        PODS,
        &tcp(FROM_POD, "10.1.0.5", "10.1.0.1", 40000, 9091, flags::SYN),
    );
    assert_eq!(a, Action::Kernel);
    let _ = Decision::NONE;
}

#[test]
fn normal_tiers_of_a_host_endpoint_judge_new_connections_to_its_address() {
    // eth0's endpoint expects 192.0.2.1; its normal tier denies TCP 9090
    // and allows other TCP; its end of tier drops the rest.
    let host = proto::Policy {
        inbound_rules: vec![
            tcp_rule("deny", 9090, None, None),
            tcp_rule("allow", 0, None, None),
        ],
        ..Default::default()
    };
    let h = proto::HostEndpoint {
        expected_ipv4_addrs: vec!["192.0.2.1".into()],
        tiers: vec![tier("host", true, false, "Deny")],
        ..hep("")
    };
    let m = model(vec![("eth0", h)], vec![("host", host)], "ACCEPT", vec![]);
    let (mut p, _) = pipeline(&m);
    let to = |dport: u16| tcp(FROM_ETH0, CLIENT, "192.0.2.1", 40000, dport, flags::SYN);
    let (a, d) = send(&mut p, ETH0, &to(9090));
    assert_eq!(a, Action::Drop(DropReason::Policy));
    assert_eq!(rule_of(&d), ("default".into(), "host".into(), 0));
    let (a, d) = send(&mut p, ETH0, &to(9091));
    assert_eq!(a, Action::Kernel);
    assert_eq!(rule_of(&d), ("default".into(), "host".into(), 1));
    // An echo request: the end of the tier.
    let echo = pk::icmp4(8, 0, [0, 1, 0, 1], b"ping");
    let echo = pk::eth_ip(
        ETH0_MAC,
        GW_MAC,
        &pk::ip(Ip::p(CLIENT), Ip::p("192.0.2.1"), 1, 64, &echo),
    );
    let (a, d) = send(&mut p, ETH0, &echo);
    assert_eq!(a, Action::Drop(DropReason::Policy));
    assert!(matches!(d, Some(DecisionInfo::EndOfTier { .. })), "{d:?}");
    // What may answer a connection the host opened (through the kernel,
    // which tracks it: sluice cannot tell) is not judged: a SYN/ACK, UDP.
    let (a, _) = send(
        &mut p,
        ETH0,
        &tcp(
            FROM_ETH0,
            CLIENT,
            "192.0.2.1",
            9090,
            40000,
            flags::SYN | flags::ACK,
        ),
    );
    assert_eq!(a, Action::Kernel);
    let seg = pk::udp(Ip::p(CLIENT), Ip::p("192.0.2.1"), 53, 40000, b"a", false);
    let udp = pk::eth_ip(
        ETH0_MAC,
        GW_MAC,
        &pk::ip(Ip::p(CLIENT), Ip::p("192.0.2.1"), 17, 64, &seg),
    );
    assert_eq!(send(&mut p, ETH0, &udp).0, Action::Kernel);
    // A failsafe port is allowed first.
    let (a, d) = send(&mut p, ETH0, &to(22));
    assert_eq!(a, Action::Kernel);
    assert_eq!(rule_of(&d).0, "failsafe");
    // Another host address (no endpoint expects it) is not judged; the
    // pod's traffic to 192.0.2.1 is judged by DefaultEndpointToHostAction,
    // not by the host endpoint.
    let (a, _) = send(
        &mut p,
        ETH1,
        &tcp(FROM_ETH1, SERVER, "198.51.100.1", 40000, 9090, flags::SYN),
    );
    assert_eq!(a, Action::Kernel);
    let (a, d) = send(
        &mut p,
        PODS,
        &tcp(FROM_POD, "10.1.0.5", "192.0.2.1", 40000, 9090, flags::SYN),
    );
    assert_eq!(a, Action::Kernel);
    assert!(matches!(d, Some(DecisionInfo::Setting { .. })), "{d:?}");
}

/// The host endpoints' classifiers are compiled with the main one as one
/// group of the engine cache: a change to one host policy builds only its
/// segment (each compile used to leave only its own engines behind, so
/// the next compile rebuilt the others).
#[test]
fn host_classifiers_and_the_main_one_keep_each_others_engines() {
    let fwd = |port| proto::Policy {
        inbound_rules: vec![tcp_rule("deny", port, None, None)],
        outbound_rules: vec![tcp_rule("allow", 0, None, None)],
        ..Default::default()
    };
    let heps = || {
        vec![(
            "eth1",
            proto::HostEndpoint {
                forward_tiers: vec![tier("fwd", true, true, "Deny")],
                untracked_tiers: vec![tier("raw", true, false, "Deny")],
                ..hep("eth1")
            },
        )]
    };
    let raw = proto::Policy {
        inbound_rules: vec![tcp_rule("allow", 22, None, None)],
        ..Default::default()
    };
    let m = model(
        heps(),
        vec![("fwd", fwd(8080)), ("raw", raw.clone())],
        "DROP",
        vec![],
    );
    let mut pc = PolicyCompiler::default();
    let built = |how| match how {
        HowCompiled::Full { segments_built, .. } => segments_built,
        HowCompiled::SetsOnly { .. } => panic!("a full compile expected"),
    };
    let first = built(pc.compile(&m).report.how);
    assert!(first >= 3, "main, forward and untracked segments: {first}");
    // One host policy changed: its segments only.
    let m3 = model(
        heps(),
        vec![("fwd", fwd(9090)), ("raw", raw)],
        "DROP",
        vec![],
    );
    let again = built(pc.compile(&m3).report.how);
    assert_eq!(
        again, 1,
        "the changed forward ingress segment only (of {first})"
    );
    assert!(again >= 1 && again < first, "{again} of {first}");
}

/// Untracked policy meets packets before conntrack, so, as Felix's raw
/// table does, the failsafe ports come first both ways: the inbound ones
/// as destination ports and the outbound ones as source ports (replies to
/// the host's own failsafe connections: BGP, etcd, the API server, DNS),
/// which go on to conntrack; anything else the untracked deny drops.
#[test]
fn untracked_policy_lets_failsafe_ports_and_their_replies_go_on() {
    let deny_all = proto::Policy {
        inbound_rules: vec![tcp_rule("deny", 0, None, None)],
        ..Default::default()
    };
    let m = model(
        vec![(
            "eth0",
            proto::HostEndpoint {
                untracked_tiers: vec![tier("deny-all", true, false, "Deny")],
                ..hep("eth0")
            },
        )],
        vec![("deny-all", deny_all)],
        "DROP",
        vec![],
    );
    let (mut p, ct) = pipeline(&m);
    // A reply from the far end of an outbound failsafe port (TCP 179).
    let (a, d) = send(
        &mut p,
        ETH0,
        &tcp(FROM_ETH0, CLIENT, SERVER, 179, 40000, flags::SYN),
    );
    assert_eq!(a, Action::Forward(ETH1), "{d:?}");
    assert_eq!(ct.len(), 1, "it goes on, tracked");
    // An inbound failsafe port (TCP 22) as destination.
    let (a, d) = send(
        &mut p,
        ETH0,
        &tcp(FROM_ETH0, CLIENT, SERVER, 40001, 22, flags::SYN),
    );
    assert_eq!(a, Action::Forward(ETH1), "{d:?}");
    // Anything else: the untracked deny.
    let (a, d) = send(
        &mut p,
        ETH0,
        &tcp(FROM_ETH0, CLIENT, SERVER, 40002, 5000, flags::SYN),
    );
    assert_eq!(a, Action::Drop(DropReason::Policy));
    assert_eq!(rule_of(&d), ("default".into(), "deny-all".into(), 0));
}
