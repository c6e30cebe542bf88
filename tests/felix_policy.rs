//! Differential test of the two policy front ends (issue 18, acceptance
//! "Differential"): random scenarios written both as Calico v3 YAML for the
//! static loader and as a Felix model (IP sets resolved from the selectors
//! as Felix resolves them, tiers and policies listed per endpoint as Felix
//! orders them), compiled both ways; every generated packet must get the
//! same verdict, per direction, from the same endpoint, decided by the same
//! tier, policy and rule.
//!
//! Scenarios cover tiers with `Pass` rules and `defaultAction: Pass`,
//! staged policies (in the Felix model only: the YAML loader rejects the
//! staged kinds, and a staged policy must change nothing), named ports,
//! not-fields, ICMP, IPv6, endpoints with only profiles, and a host
//! endpoint (a WorkloadEndpoint at the host's address in YAML, with the
//! failsafe ports as an allow-only first tier; a HostEndpoint in Felix).
//!
//! The places where policy.md was amended to follow Calico are generated
//! on purpose: a side with `selector` and `notSelector` (folded into one
//! selector, as Calico rewrites it, so Felix sends one IP set) and with
//! `notSelector` alone (a negated IP set); `notNets` of one family without
//! the rule's `ipVersion`; `protocol: ICMP` / `ICMPv6` without `ipVersion`
//! (Calico gives the rule that version, so the Felix rule carries it);
//! endpoints naming profiles with no document (Felix sends those as its
//! default-drop profile: one deny rule each way).

// Test helpers unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use engine::sources::felix::model::{FelixModel, IpSet};
use engine::sources::felix::proto::{self, rule as prule, IpSetType, PolicyId};
use engine::sources::felix::{self, PolicyCompiler};
use engine::state::{
    build, CompiledInput, NodeState, PolicyInput, PortSpec, QueueSel, StateDiff, XskMode,
};
use policy_compiler::selector::{Labels, Selector};
use policy_compiler::{Classifier, FlowKey, L4};
use proptest::prelude::*;
use serde_json::{json, Value};

mod common;
use common::Rng;

const SELECTORS: &[&str] = &[
    "all()",
    "app == 'a'",
    "app == 'b'",
    "has(app)",
    "!has(app)",
    "app in {'a', 'c'}",
    "role == 'db'",
    "app != 'a'",
];

#[derive(Clone, Debug)]
enum Port {
    Range(u16, u16),
    Named(&'static str),
}

#[derive(Clone, Debug, Default)]
struct Side {
    nets: Vec<String>,
    not_nets: Vec<String>,
    selector: Option<&'static str>,
    not_selector: Option<&'static str>,
    ports: Vec<Port>,
    not_ports: Vec<Port>,
}

#[derive(Clone, Debug)]
struct Rule {
    action: &'static str,
    ip_version: Option<u8>,
    protocol: Option<&'static str>,
    not_protocol: Option<u8>,
    icmp: Option<(u8, Option<u8>)>,
    not_icmp: Option<(u8, Option<u8>)>,
    src: Side,
    dst: Side,
}

#[derive(Clone, Debug)]
struct Wep {
    ns: &'static str,
    name: String,
    labels: Labels,
    v4: Ipv4Addr,
    v6: Option<Ipv6Addr>,
    ports: Vec<(&'static str, u8, u16)>,
    profiles: Vec<String>,
    host: bool,
}

#[derive(Clone, Debug)]
struct Pol {
    name: String,
    tier: String,
    order: u32,
    selector: &'static str,
    ingress: Option<Vec<Rule>>,
    egress: Option<Vec<Rule>>,
    staged: bool,
}

#[derive(Clone, Debug)]
struct Tier {
    name: String,
    order: u32,
    pass: bool,
}

#[derive(Clone, Debug)]
struct Scenario {
    tiers: Vec<Tier>,
    pols: Vec<Pol>,
    profiles: Vec<(String, Vec<Rule>, Vec<Rule>)>,
    weps: Vec<Wep>,
    netsets: Vec<(String, Labels, Vec<String>)>,
}

fn labels(r: &mut Rng) -> Labels {
    let mut l = Labels::new();
    if r.chance(75) {
        l.insert("app".into(), r.pick(&["a", "b", "c"]).to_string());
    }
    if r.chance(40) {
        l.insert("role".into(), r.pick(&["db", "web"]).to_string());
    }
    l
}

fn v4(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, i)
}

fn v6(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(i))
}

fn cidr(r: &mut Rng, six: bool) -> String {
    let l = *r.pick(&[32u8, 32, 30, 28, 24]);
    let host = (r.below(32) as u8) & !(((1u16 << (32 - l).min(8)) - 1) as u8);
    if six {
        format!("fd00::{host:x}/{}", 96 + l)
    } else {
        format!("10.0.0.{host}/{l}")
    }
}

fn ports(r: &mut Rng) -> Vec<Port> {
    (0..1 + r.below(2))
        .map(|_| match r.below(4) {
            0 => Port::Range(80, 80),
            1 => Port::Range(8000, 8100),
            2 => Port::Named("http"),
            _ => Port::Named(r.word(&["dns", "http"])),
        })
        .collect()
}

fn side(r: &mut Rng, with_ports: bool, six: bool) -> (Side, bool) {
    let mut s = Side::default();
    let mut not_nets = false;
    if r.chance(25) {
        s.nets = (0..1 + r.below(2)).map(|_| cidr(r, six)).collect();
    }
    if r.chance(20) {
        s.not_nets = vec![cidr(r, six)];
        not_nets = true;
    }
    match r.below(7) {
        0 | 1 => s.selector = Some(r.word(SELECTORS)),
        2 => s.not_selector = Some(r.word(SELECTORS)),
        3 => {
            s.selector = Some(r.word(SELECTORS));
            s.not_selector = Some(r.word(SELECTORS));
        }
        _ => {}
    }
    if with_ports && r.chance(40) {
        s.ports = ports(r);
    }
    if with_ports && r.chance(20) {
        s.not_ports = ports(r);
    }
    (s, not_nets)
}

fn rule(r: &mut Rng) -> Rule {
    let action = r.word(&["Allow", "Allow", "Deny", "Pass", "Log"]);
    let six = r.chance(30);
    let mut ip_version = r.chance(15).then_some(if six { 6 } else { 4 });
    let (mut protocol, mut icmp, mut not_icmp, mut not_protocol) = (None, None, None, None);
    match r.below(8) {
        0 | 1 => protocol = Some("TCP"),
        2 => protocol = Some("UDP"),
        3 => {
            // Mostly of the rule's family; sometimes the other (a rule
            // that can match nothing), never with a disagreeing ipVersion.
            let v6 = six != r.chance(15);
            protocol = Some(if v6 { "ICMPv6" } else { "ICMP" });
            ip_version = ip_version.filter(|v| *v == if v6 { 6 } else { 4 });
            let ty = *r.pick(&[0u8, 3, 8, 128]);
            let code = r.chance(50).then(|| *r.pick(&[0u8, 1]));
            if r.chance(50) {
                icmp = Some((ty, code));
            } else if r.chance(60) {
                not_icmp = Some((ty, code));
            }
        }
        4 => not_protocol = Some(*r.pick(&[6u8, 17, 1])),
        _ => {}
    }
    let with_ports = matches!(protocol, Some("TCP" | "UDP"));
    let src_ports = with_ports && r.chance(30);
    let (src, _) = side(r, src_ports, six);
    let (dst, _) = side(r, with_ports, six);
    let nets = !(src.nets.is_empty()
        && dst.nets.is_empty()
        && src.not_nets.is_empty()
        && dst.not_nets.is_empty());
    let icmp_v = match protocol {
        Some("ICMP") => Some(4),
        Some("ICMPv6") => Some(6),
        _ => None,
    };
    let fam = if six { 6 } else { 4 };
    if nets && ip_version.is_some_and(|v| v != fam) {
        // Calico's validator: the CIDRs' family is the rule's version.
        ip_version = None;
    }
    if nets && icmp_v.is_none_or(|v| v == fam) && r.chance(30) {
        ip_version = Some(fam);
    }
    Rule {
        action,
        ip_version,
        protocol,
        not_protocol,
        icmp,
        not_icmp,
        src,
        dst,
    }
}

fn rules(r: &mut Rng) -> Vec<Rule> {
    (0..r.below(4)).map(|_| rule(r)).collect()
}

fn generate(seed: u64) -> Scenario {
    let r = &mut Rng(seed | 1);
    let mut tiers = vec![Tier {
        name: "default".into(),
        order: 1_000_000,
        pass: false,
    }];
    for i in 0..r.below(3) {
        tiers.push(Tier {
            name: format!("t{i}"),
            order: *r.pick(&[10u32, 20, 30]) + i as u32,
            pass: r.chance(50),
        });
    }
    let profiles: Vec<(String, Vec<Rule>, Vec<Rule>)> = (0..r.below(3))
        .map(|i| (format!("prof{i}"), rules(r), rules(r)))
        .collect();
    let mut weps = Vec::new();
    let nweps = 2 + r.below(4);
    for i in 0..nweps {
        let mut ports = Vec::new();
        if r.chance(60) {
            ports.push(("http", 6, *r.pick(&[8080u16, 8000])));
        }
        if r.chance(40) {
            ports.push(("dns", 17, 53));
        }
        weps.push(Wep {
            ns: r.word(&["ns0", "ns1"]),
            name: format!("w{i}"),
            labels: labels(r),
            v4: v4(1 + 2 * i as u8),
            v6: r.chance(50).then(|| v6(1 + 2 * i as u8)),
            ports,
            profiles: profiles
                .iter()
                .map(|p| p.0.clone())
                .chain(r.chance(15).then(|| "missing0".to_string()))
                .filter(|_| r.chance(50))
                .collect(),
            host: false,
        });
    }
    if r.chance(40) {
        weps.push(Wep {
            ns: "host",
            name: "hep0".into(),
            labels: labels(r),
            v4: v4(200),
            v6: None,
            ports: Vec::new(),
            profiles: profiles
                .iter()
                .filter(|_| r.chance(30))
                .map(|p| p.0.clone())
                .collect(),
            host: true,
        });
    }
    let netsets = (0..r.below(3))
        .map(|i| {
            let six = r.chance(30);
            (
                format!("set{i}"),
                labels(r),
                (0..1 + r.below(2)).map(|_| cidr(r, six)).collect(),
            )
        })
        .collect();
    let mut pols = Vec::new();
    for i in 0..r.below(6) {
        let tier = r.pick(&tiers).name.clone();
        let (ing, eg) = match r.below(3) {
            0 => (true, false),
            1 => (false, true),
            _ => (true, true),
        };
        pols.push(Pol {
            name: format!("p{i}"),
            tier,
            order: *r.pick(&[100u32, 200, 300]),
            selector: r.word(SELECTORS),
            ingress: ing.then(|| rules(r)),
            egress: eg.then(|| rules(r)),
            staged: r.chance(20),
        });
    }
    Scenario {
        tiers,
        pols,
        profiles,
        weps,
        netsets,
    }
}

// ---------------------------------------------------------------------------
// As YAML.

fn yaml_ports(ps: &[Port]) -> Value {
    ps.iter()
        .map(|p| match p {
            Port::Range(a, b) if a == b => json!(a),
            Port::Range(a, b) => json!(format!("{a}:{b}")),
            Port::Named(n) => json!(n),
        })
        .collect()
}

fn yaml_side(s: &Side) -> Value {
    let mut m = serde_json::Map::new();
    if !s.nets.is_empty() {
        m.insert("nets".into(), json!(s.nets));
    }
    if !s.not_nets.is_empty() {
        m.insert("notNets".into(), json!(s.not_nets));
    }
    if let Some(x) = s.selector {
        m.insert("selector".into(), json!(x));
    }
    if let Some(x) = s.not_selector {
        m.insert("notSelector".into(), json!(x));
    }
    if !s.ports.is_empty() {
        m.insert("ports".into(), yaml_ports(&s.ports));
    }
    if !s.not_ports.is_empty() {
        m.insert("notPorts".into(), yaml_ports(&s.not_ports));
    }
    Value::Object(m)
}

fn yaml_rule(r: &Rule) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("action".into(), json!(r.action));
    if let Some(v) = r.ip_version {
        m.insert("ipVersion".into(), json!(v));
    }
    if let Some(p) = r.protocol {
        m.insert("protocol".into(), json!(p));
    }
    if let Some(p) = r.not_protocol {
        m.insert("notProtocol".into(), json!(p));
    }
    let ic = |(t, c): (u8, Option<u8>)| match c {
        Some(c) => json!({"type": t, "code": c}),
        None => json!({ "type": t }),
    };
    if let Some(x) = r.icmp {
        m.insert("icmp".into(), ic(x));
    }
    if let Some(x) = r.not_icmp {
        m.insert("notICMP".into(), ic(x));
    }
    m.insert("source".into(), yaml_side(&r.src));
    m.insert("destination".into(), yaml_side(&r.dst));
    Value::Object(m)
}

fn yaml_rules(v: &[Rule]) -> Value {
    v.iter().map(yaml_rule).collect()
}

fn to_yaml(s: &Scenario) -> String {
    let mut docs: Vec<Value> = Vec::new();
    let calico = |kind: &str, meta: Value, spec: Value| json!({"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec});
    for t in &s.tiers {
        let action = if t.pass { "Pass" } else { "Deny" };
        docs.push(calico(
            "Tier",
            json!({"name": t.name}),
            json!({"order": t.order, "defaultAction": action}),
        ));
    }
    if s.weps.iter().any(|w| w.host) {
        // The failsafe ports as Felix applies them to host endpoints.
        docs.push(calico(
            "Tier",
            json!({"name": "failsafe"}),
            json!({"order": 0, "defaultAction": "Pass"}),
        ));
        let settings = engine::sources::felix::Settings::default();
        for (name, list, ingress) in [
            ("failsafe-inbound", &settings.failsafe_inbound, true),
            ("failsafe-outbound", &settings.failsafe_outbound, false),
        ] {
            let rules: Vec<Value> = list
                .iter()
                .map(|p| {
                    let proto = if p.proto == 6 { "TCP" } else { "UDP" };
                    json!({"action": "Allow", "protocol": proto, "destination": {"ports": [p.port]}})
                })
                .collect();
            let (key, types) = if ingress {
                ("ingress", ["Ingress"])
            } else {
                ("egress", ["Egress"])
            };
            docs.push(calico(
                "GlobalNetworkPolicy",
                json!({"name": name}),
                json!({"tier": "failsafe", "order": 1, "selector": "projectcalico.org/namespace == 'host'", "types": types, key: rules}),
            ));
        }
    }
    for p in s.pols.iter().filter(|p| !p.staged) {
        let mut spec = json!({"tier": p.tier, "order": p.order, "selector": p.selector});
        let mut types = Vec::new();
        if let Some(r) = &p.ingress {
            spec["ingress"] = yaml_rules(r);
            types.push("Ingress");
        }
        if let Some(r) = &p.egress {
            spec["egress"] = yaml_rules(r);
            types.push("Egress");
        }
        spec["types"] = json!(types);
        docs.push(calico(
            "GlobalNetworkPolicy",
            json!({ "name": p.name }),
            spec,
        ));
    }
    for (name, i, e) in &s.profiles {
        docs.push(calico(
            "Profile",
            json!({ "name": name }),
            json!({"ingress": yaml_rules(i), "egress": yaml_rules(e)}),
        ));
    }
    for w in &s.weps {
        let mut nets = vec![format!("{}/32", w.v4)];
        if let Some(a) = w.v6 {
            nets.push(format!("{a}/128"));
        }
        let ports: Vec<Value> = w
            .ports
            .iter()
            .map(|(n, p, port)| {
                json!({"name": n, "protocol": if *p == 6 { "TCP" } else { "UDP" }, "port": port})
            })
            .collect();
        docs.push(calico(
            "WorkloadEndpoint",
            json!({"name": w.name, "namespace": w.ns, "labels": w.labels}),
            json!({"ipNetworks": nets, "profiles": w.profiles, "ports": ports}),
        ));
    }
    for (name, l, nets) in &s.netsets {
        docs.push(calico(
            "GlobalNetworkSet",
            json!({"name": name, "labels": l}),
            json!({ "nets": nets }),
        ));
    }
    docs.iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

// ---------------------------------------------------------------------------
// As a Felix model.

/// Builds the model's IP sets as Felix's calculation graph would.
struct Felix<'s> {
    s: &'s Scenario,
    ip_sets: BTreeMap<String, IpSet>,
}

impl Felix<'_> {
    fn wep_labels(w: &Wep) -> Labels {
        let mut l = w.labels.clone();
        l.insert("projectcalico.org/namespace".into(), w.ns.to_string());
        l
    }

    /// The NET set of the objects `sel` matches.
    fn sel_set(&mut self, sel: &str) -> String {
        let id = format!("sel:{sel}");
        if !self.ip_sets.contains_key(&id) {
            let p = Selector::parse(sel, false).unwrap();
            let mut members = BTreeSet::new();
            for w in &self.s.weps {
                if p.matches(&Self::wep_labels(w)) {
                    members.insert(format!("{}/32", w.v4));
                    if let Some(a) = w.v6 {
                        members.insert(format!("{a}/128"));
                    }
                }
            }
            for (_, l, nets) in &self.s.netsets {
                if p.matches(l) {
                    members.extend(nets.iter().cloned());
                }
            }
            self.ip_sets.insert(
                id.clone(),
                IpSet {
                    kind: IpSetType::Net,
                    members,
                },
            );
        }
        id
    }

    /// The IP_AND_PORT set of port `name` of the endpoints `sel` matches.
    fn named_set(&mut self, sel: Option<&str>, name: &str) -> String {
        let id = format!("np:{}:{name}", sel.unwrap_or("*"));
        if !self.ip_sets.contains_key(&id) {
            let p = sel.map(|s| Selector::parse(s, false).unwrap());
            let mut members = BTreeSet::new();
            for w in &self.s.weps {
                if !p.as_ref().is_none_or(|p| p.matches(&Self::wep_labels(w))) {
                    continue;
                }
                for (n, proto, port) in &w.ports {
                    if *n == name {
                        let pn = if *proto == 6 { "tcp" } else { "udp" };
                        members.insert(format!("{},{pn}:{port}", w.v4));
                        if let Some(a) = w.v6 {
                            members.insert(format!("{a},{pn}:{port}"));
                        }
                    }
                }
            }
            self.ip_sets.insert(
                id.clone(),
                IpSet {
                    kind: IpSetType::IpAndPort,
                    members,
                },
            );
        }
        id
    }

    fn ports(&mut self, ps: &[Port], sel: Option<&str>) -> (Vec<proto::PortRange>, Vec<String>) {
        let mut nums = Vec::new();
        let mut named = Vec::new();
        for p in ps {
            match p {
                Port::Range(a, b) => nums.push(proto::PortRange {
                    first: i32::from(*a),
                    last: i32::from(*b),
                }),
                Port::Named(n) => named.push(self.named_set(sel, n)),
            }
        }
        (nums, named)
    }

    fn rule(&mut self, r: &Rule) -> proto::Rule {
        let mut p = proto::Rule {
            action: r.action.to_ascii_lowercase(),
            ..Default::default()
        };
        // Calico gives a rule with protocol ICMP / ICMPv6 (by name) that
        // IP version.
        let icmp_v = match r.protocol {
            Some("ICMP") => Some(4),
            Some("ICMPv6") => Some(6),
            _ => None,
        };
        p.ip_version = match r.ip_version.or(icmp_v) {
            Some(4) => proto::IpVersion::Ipv4 as i32,
            Some(6) => proto::IpVersion::Ipv6 as i32,
            _ => 0,
        };
        p.protocol = r.protocol.map(|n| proto::Protocol {
            number_or_name: Some(proto::protocol::NumberOrName::Name(n.to_ascii_lowercase())),
        });
        p.not_protocol = r.not_protocol.map(|n| proto::Protocol {
            number_or_name: Some(proto::protocol::NumberOrName::Number(i32::from(n))),
        });
        let tc = |(t, c): (u8, Option<u8>)| match c {
            Some(c) => (
                None,
                Some(proto::IcmpTypeAndCode {
                    r#type: i32::from(t),
                    code: i32::from(c),
                }),
            ),
            None => (Some(i32::from(t)), None),
        };
        p.icmp = r.icmp.map(|x| match tc(x) {
            (Some(t), _) => prule::Icmp::IcmpType(t),
            (_, Some(c)) => prule::Icmp::IcmpTypeCode(c),
            _ => unreachable!(),
        });
        p.not_icmp = r.not_icmp.map(|x| match tc(x) {
            (Some(t), _) => prule::NotIcmp::NotIcmpType(t),
            (_, Some(c)) => prule::NotIcmp::NotIcmpTypeCode(c),
            _ => unreachable!(),
        });
        for (s, src) in [(&r.src, true), (&r.dst, false)] {
            // Calico folds notSelector into the positive selector when
            // there is one; alone it is a negated IP set.
            let positive = match (s.selector, s.not_selector) {
                (Some(a), Some(b)) => Some(format!("({a}) && !({b})")),
                (a, _) => a.map(str::to_string),
            };
            let sets: Vec<String> = positive
                .as_deref()
                .map(|x| self.sel_set(x))
                .into_iter()
                .collect();
            let not_sets: Vec<String> = s
                .not_selector
                .filter(|_| positive.is_none())
                .map(|x| self.sel_set(x))
                .into_iter()
                .collect();
            let (ports, named) = self.ports(&s.ports, positive.as_deref());
            let (not_ports, not_named) = self.ports(&s.not_ports, positive.as_deref());
            if src {
                p.src_net = s.nets.clone();
                p.not_src_net = s.not_nets.clone();
                p.src_ip_set_ids = sets;
                p.not_src_ip_set_ids = not_sets;
                p.src_ports = ports;
                p.src_named_port_ip_set_ids = named;
                p.not_src_ports = not_ports;
                p.not_src_named_port_ip_set_ids = not_named;
            } else {
                p.dst_net = s.nets.clone();
                p.not_dst_net = s.not_nets.clone();
                p.dst_ip_set_ids = sets;
                p.not_dst_ip_set_ids = not_sets;
                p.dst_ports = ports;
                p.dst_named_port_ip_set_ids = named;
                p.not_dst_ports = not_ports;
                p.not_dst_named_port_ip_set_ids = not_named;
            }
        }
        p
    }

    fn rules(&mut self, v: &[Rule]) -> Vec<proto::Rule> {
        v.iter().map(|r| self.rule(r)).collect()
    }
}

fn pid(p: &Pol) -> PolicyId {
    PolicyId {
        name: p.name.clone(),
        namespace: String::new(),
        kind: if p.staged {
            "StagedGlobalNetworkPolicy".into()
        } else {
            "GlobalNetworkPolicy".into()
        },
    }
}

fn to_felix(s: &Scenario) -> FelixModel {
    let mut f = Felix {
        s,
        ip_sets: BTreeMap::new(),
    };
    let mut m = FelixModel::default();
    for p in &s.pols {
        let policy = proto::Policy {
            inbound_rules: p.ingress.as_deref().map(|r| f.rules(r)).unwrap_or_default(),
            outbound_rules: p.egress.as_deref().map(|r| f.rules(r)).unwrap_or_default(),
            tier: p.tier.clone(),
            ..Default::default()
        };
        m.policies.insert(pid(p), Arc::new(policy));
    }
    for (name, i, e) in &s.profiles {
        let prof = proto::Profile {
            inbound_rules: f.rules(i),
            outbound_rules: f.rules(e),
        };
        m.profiles.insert(name.clone(), Arc::new(prof));
    }
    // A profile named but never defined: Felix sends its default-drop
    // profile, one deny rule each way.
    for w in &s.weps {
        for p in &w.profiles {
            if !m.profiles.contains_key(p) {
                let deny = || proto::Rule {
                    action: "deny".into(),
                    ..Default::default()
                };
                let prof = proto::Profile {
                    inbound_rules: vec![deny()],
                    outbound_rules: vec![deny()],
                };
                m.profiles.insert(p.clone(), Arc::new(prof));
            }
        }
    }
    // Tiers in order (order, then name), policies by (order, name).
    let mut tiers = s.tiers.clone();
    tiers.sort_by(|a, b| (a.order, &a.name).cmp(&(b.order, &b.name)));
    let mut pols: Vec<&Pol> = s.pols.iter().collect();
    pols.sort_by(|a, b| (a.order, &a.name).cmp(&(b.order, &b.name)));
    for w in &s.weps {
        let labels = Felix::wep_labels(w);
        let mut infos = Vec::new();
        for t in &tiers {
            let applies: Vec<&&Pol> = pols
                .iter()
                .filter(|p| {
                    p.tier == t.name && Selector::parse(p.selector, false).unwrap().matches(&labels)
                })
                .collect();
            let ids = |f: &dyn Fn(&Pol) -> bool| -> Vec<PolicyId> {
                applies.iter().filter(|p| f(p)).map(|p| pid(p)).collect()
            };
            let info = proto::TierInfo {
                name: t.name.clone(),
                ingress_policies: ids(&|p| p.ingress.is_some()),
                egress_policies: ids(&|p| p.egress.is_some()),
                default_action: if t.pass { "Pass" } else { "Deny" }.into(),
            };
            if !info.ingress_policies.is_empty() || !info.egress_policies.is_empty() {
                infos.push(info);
            }
        }
        let v4 = vec![format!("{}/32", w.v4)];
        let v6: Vec<String> = w.v6.iter().map(|a| format!("{a}/128")).collect();
        if w.host {
            m.host_endpoints.insert(
                w.name.clone(),
                Arc::new(proto::HostEndpoint {
                    name: "eth0".into(),
                    profile_ids: w.profiles.clone(),
                    tiers: infos,
                    expected_ipv4_addrs: vec![w.v4.to_string()],
                    expected_ipv6_addrs: w.v6.iter().map(|a| a.to_string()).collect(),
                    ..Default::default()
                }),
            );
            continue;
        }
        m.workload_endpoints.insert(
            proto::WorkloadEndpointId {
                orchestrator_id: "k8s".into(),
                workload_id: format!("{}/{}", w.ns, w.name),
                endpoint_id: "eth0".into(),
            },
            Arc::new(proto::WorkloadEndpoint {
                name: format!("cali{}", w.name),
                profile_ids: w.profiles.clone(),
                ipv4_nets: v4,
                ipv6_nets: v6,
                tiers: infos,
                ..Default::default()
            }),
        );
    }
    m.ip_sets = f
        .ip_sets
        .into_iter()
        .map(|(k, v)| (k, Arc::new(v)))
        .collect();
    m.in_sync = true;
    m
}

// ---------------------------------------------------------------------------
// Packets and the comparison.

fn packets(r: &mut Rng, s: &Scenario, n: usize) -> Vec<FlowKey> {
    let mut a4: Vec<Ipv4Addr> = s.weps.iter().map(|w| w.v4).collect();
    a4.extend([v4(2), v4(7), v4(31), Ipv4Addr::new(192, 0, 2, 1)]);
    let mut a6: Vec<Ipv6Addr> = s.weps.iter().filter_map(|w| w.v6).collect();
    a6.extend([v6(2), v6(9), "2001:db8::1".parse().unwrap()]);
    (0..n)
        .map(|_| {
            let six = r.chance(30);
            let (src, dst) = if six {
                (IpAddr::V6(*r.pick(&a6)), IpAddr::V6(*r.pick(&a6)))
            } else {
                (IpAddr::V4(*r.pick(&a4)), IpAddr::V4(*r.pick(&a4)))
            };
            let proto: u8 = *r.pick(&[6, 6, 17, 17, 1, 58, 47, 132]);
            let l4 = match proto {
                6 | 17 | 132 => {
                    let ps = [80u16, 53, 8080, 8000, 8050, 22, 179, 1234, 6443];
                    L4::Ports {
                        sport: *r.pick(&ps),
                        dport: *r.pick(&ps),
                    }
                }
                1 | 58 => L4::Icmp {
                    ty: *r.pick(&[0u8, 3, 8, 128]),
                    code: *r.pick(&[0u8, 1, 2]),
                },
                _ => L4::None,
            };
            FlowKey::new(src, dst, proto, l4)
        })
        .collect()
}

/// A verdict as comparable JSON: per direction the verdict, the endpoint
/// (host endpoints named as their YAML stand-in) and decided_by.
fn verdict(c: &Classifier, k: &FlowKey) -> Value {
    let v = c.classify(k, &mut c.new_scratch());
    let dir = |d: &policy_compiler::DirVerdict| {
        let ep = d.endpoint.map(|e| {
            let n = c.endpoint_name(e);
            match n.strip_prefix("host:") {
                Some(h) => format!("host/{h}"),
                None => n.to_string(),
            }
        });
        json!({"allow": d.allow, "endpoint": ep, "decided_by": c.decision_info(d.decided_by).json()})
    };
    json!({"allow": v.allow, "egress": dir(&v.egress), "ingress": dir(&v.ingress)})
}

fn check_seed(seed: u64, n: usize) -> Result<usize, String> {
    let s = generate(seed);
    let yaml = to_yaml(&s);
    let (set, _) = policy_compiler::loader::load_str("scenario.yaml", &yaml)
        .map_err(|e| format!("seed {seed}: YAML rejected: {e}\n{yaml}"))?;
    let a = policy_compiler::compile(&set).map_err(|e| format!("seed {seed}: {e}"))?;
    let m = to_felix(&s);
    let fc = PolicyCompiler::default().compile(&m);
    if !fc.report.fail_closed.is_empty() {
        return Err(format!(
            "seed {seed}: fail closed: {:?}",
            fc.report.fail_closed
        ));
    }
    let b = &fc.classifier;
    let r = &mut Rng(seed.wrapping_mul(31) | 1);
    let mut denied = 0;
    for k in packets(r, &s, n) {
        let (x, y) = (verdict(&a, &k), verdict(b, &k));
        if x != y {
            return Err(format!(
                "seed {seed}: {k:?}\n yaml:  {x}\n felix: {y}\n{yaml}\nmodel: {m:#?}"
            ));
        }
        denied += usize::from(x["allow"] == json!(false));
    }
    Ok(denied)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    #[test]
    fn yaml_and_felix_give_the_same_verdicts(seed in any::<u64>()) {
        if let Err(e) = check_seed(seed, 64) {
            prop_assert!(false, "{}", e);
        }
    }
}

#[test]
fn scenarios_decide_both_ways() {
    // The generator must produce denials and allowances, by every kind of
    // decision, or the comparison above proves little.
    let mut kinds = BTreeSet::new();
    let (mut denied, mut total) = (0, 0);
    // The amended places (module docs) the scenarios must reach.
    let mut amended: BTreeMap<&str, usize> = BTreeMap::new();
    for seed in 1..200u64 {
        denied += check_seed(seed, 64).unwrap();
        total += 64;
        let s = generate(seed);
        let all_rules = s
            .pols
            .iter()
            .flat_map(|p| p.ingress.iter().chain(p.egress.iter()).flatten())
            .chain(s.profiles.iter().flat_map(|p| p.1.iter().chain(p.2.iter())));
        for r in all_rules {
            for sd in [&r.src, &r.dst] {
                if sd.not_selector.is_some() {
                    *amended
                        .entry(if sd.selector.is_some() {
                            "selector and notSelector"
                        } else {
                            "notSelector alone"
                        })
                        .or_default() += 1;
                }
                if !sd.not_nets.is_empty() && r.ip_version.is_none() {
                    *amended.entry("notNets without ipVersion").or_default() += 1;
                }
            }
            if r.protocol.is_some_and(|p| p.starts_with("ICMP")) && r.ip_version.is_none() {
                *amended.entry("ICMP by name without ipVersion").or_default() += 1;
            }
        }
        let m = to_felix(&s);
        let c = PolicyCompiler::default().compile(&m).classifier;
        let r = &mut Rng(seed.wrapping_mul(31) | 1);
        for k in packets(r, &s, 64) {
            let v = verdict(&c, &k);
            for d in ["egress", "ingress"] {
                let by = &v[d]["decided_by"];
                let kind = match by {
                    Value::Null => "none".to_string(),
                    Value::Object(o) => {
                        let mut keys: Vec<&String> = o.keys().collect();
                        keys.sort();
                        let t = by.get("tier").and_then(Value::as_str).unwrap_or("");
                        format!("{keys:?}{}", if t == "failsafe" { " failsafe" } else { "" })
                    }
                    _ => "?".into(),
                };
                if by.get("profile").and_then(Value::as_str) == Some("missing0") {
                    *amended.entry("missing profile decided").or_default() += 1;
                }
                kinds.insert(kind);
            }
        }
    }
    assert!(
        denied > total / 10 && denied < total * 9 / 10,
        "{denied} of {total}"
    );
    assert_eq!(amended.len(), 5, "{amended:?}");
    assert!(amended.values().all(|&n| n >= 10), "{amended:?}");
    for k in [
        "none",
        r#"["no_match"]"#,
        r#"["end_of_tier", "tier"]"#,
        r#"["policy", "rule", "tier"]"#,
        r#"["policy", "rule", "tier"] failsafe"#,
        r#"["profile", "rule"]"#,
    ] {
        assert!(kinds.contains(k), "no decision of kind {k}: {kinds:?}");
    }
}

/// The acceptance-scale model (issue 18, "Scale"): 1,000 workload
/// endpoints (200 groups of five, each group with its five policies), 1,000
/// policies of 10 rules (10,000 rules), 200 IP sets of 500 members
/// (100,000 in all); and the policy builder, for changing one.
fn scale_model() -> (
    FelixModel,
    impl Fn(usize) -> proto::Policy,
    impl Fn(usize) -> PolicyId,
) {
    let mut m = FelixModel::default();
    let (nsets, per_set, npol, rules_per, neps) =
        (200usize, 500usize, 1000usize, 10usize, 1000usize);
    for s in 0..nsets {
        let members = (0..per_set)
            .map(|i| {
                let a = 0x0a00_0000u32 + ((s as u32) << 12) + i as u32 * 3;
                format!("{}/32", Ipv4Addr::from(a))
            })
            .collect();
        m.ip_sets.insert(
            format!("s{s}"),
            Arc::new(IpSet {
                kind: IpSetType::Net,
                members,
            }),
        );
    }
    let id = |p: usize| PolicyId {
        name: format!("p{p}"),
        namespace: format!("ns{}", p % 50),
        kind: "NetworkPolicy".into(),
    };
    let policy = move |p: usize| {
        let rule = |r: usize| proto::Rule {
            action: if r % 4 == 3 { "deny" } else { "allow" }.into(),
            protocol: Some(proto::Protocol {
                number_or_name: Some(proto::protocol::NumberOrName::Name("tcp".into())),
            }),
            src_ip_set_ids: vec![format!("s{}", (p * rules_per + r) % nsets)],
            dst_ports: vec![proto::PortRange {
                first: 1000 + r as i32,
                last: 1000 + r as i32,
            }],
            ..Default::default()
        };
        proto::Policy {
            inbound_rules: (0..rules_per / 2).map(rule).collect(),
            outbound_rules: (rules_per / 2..rules_per).map(rule).collect(),
            tier: "default".into(),
            ..Default::default()
        }
    };
    for p in 0..npol {
        m.policies.insert(id(p), Arc::new(policy(p)));
    }
    for e in 0..neps {
        // Each endpoint: the five policies of its group (200 groups).
        let pols: Vec<PolicyId> = (0..5).map(|k| id((e % 200) * 5 + k)).collect();
        m.workload_endpoints.insert(
            proto::WorkloadEndpointId {
                orchestrator_id: "k8s".into(),
                workload_id: format!("ns{}/pod{e}", e % 50),
                endpoint_id: "eth0".into(),
            },
            Arc::new(proto::WorkloadEndpoint {
                name: format!("cali{e}"),
                mac: format!("02:00:0b:00:{:02x}:{:02x}", e >> 8, e & 0xff),
                ipv4_nets: vec![format!("{}/32", Ipv4Addr::from(0x0b00_0000u32 + e as u32))],
                tiers: vec![proto::TierInfo {
                    name: "default".into(),
                    ingress_policies: pols.clone(),
                    egress_policies: pols,
                    default_action: "Deny".into(),
                }],
                profile_ids: vec!["kns.default".into()],
                ..Default::default()
            }),
        );
    }
    m.profiles.insert(
        "kns.default".into(),
        Arc::new(proto::Profile {
            inbound_rules: vec![proto::Rule {
                action: "allow".into(),
                ..Default::default()
            }],
            outbound_rules: vec![proto::Rule {
                action: "allow".into(),
                ..Default::default()
            }],
        }),
    );
    (m, policy, id)
}

/// Resident memory of this process, kB (Linux).
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Per-packet cost of `c` over the scale model's traffic: sources drawn
/// from the IP sets' members (and other addresses), destinations from the
/// endpoints, TCP to the rules' ports; batches of 64 as the pipeline
/// classifies new connections. ns per packet, best of 5.
fn lookup_ns(c: &Classifier) -> f64 {
    let r = &mut Rng(0x5eed);
    let keys: Vec<FlowKey> = (0..65536)
        .map(|_| {
            let s = r.below(200) as u32;
            let src = 0x0a00_0000u32 + (s << 12) + r.below(600) as u32 * 3;
            let dst = 0x0b00_0000u32 + r.below(1000) as u32;
            let l4 = L4::Ports {
                sport: 40000,
                dport: 1000 + r.below(12) as u16,
            };
            FlowKey::v4(src, dst, 6, l4)
        })
        .collect();
    let mut out = vec![policy_compiler::Verdict::default(); 64];
    let mut scratch = c.new_scratch();
    let mut best = f64::MAX;
    let mut allowed = 0usize;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        for chunk in keys.chunks(64) {
            c.classify_batch(chunk, &mut out, &mut scratch);
            allowed += out.iter().filter(|v| v.allow).count();
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / keys.len() as f64);
    }
    assert!(allowed > 0);
    best
}

/// Scale figures (issue 18, "Scale", model of [`scale_model`]): the time
/// from the whole model (`InSync`) to a compiled classifier, from a
/// one-member IP set delta, and from one changed policy; the classifier's
/// size and the process's resident memory; the per-packet cost of
/// classification. Its assertions check the results (rules compiled,
/// nothing failing closed, every endpoint routed, the delta applied);
/// the times it prints are figures, never asserted (`--release
/// --nocapture` for the quoted ones).
#[test]
fn scale_figures() {
    use std::time::Instant;
    let rss0 = rss_kb();
    let (mut m, policy, id) = scale_model();
    let rss_model = rss_kb();
    let mut pc = PolicyCompiler::default();
    let run = |pc: &mut PolicyCompiler, m: &FelixModel, what: &str| {
        let t = Instant::now();
        let c = pc.compile(m);
        println!(
            "{what}: {:.1} ms (model -> IR {:.1} ms, IR -> classifier {:.1} ms), {} rules, {} IP sets parsed, {} fail closed",
            t.elapsed().as_secs_f64() * 1e3,
            c.report.ir_ms,
            c.report.compile_ms,
            c.report.rules,
            pc.parsed_last,
            c.report.fail_closed.len()
        );
        c
    };
    // The rest of the path to enforcing, as the control loop takes it
    // (`Runtime::apply_felix`): the model's state over a node whose 1,000
    // endpoint interfaces are attached ports, the diff against the
    // running state, and the pipeline's tables with the classifier. Not
    // timed: attaching the interfaces (once per pod, not per update) and
    // handing the tables to the workers (an `Arc` per worker).
    let mut base = NodeState::empty("scale");
    base.ports = (0..1000u32)
        .map(|e| PortSpec {
            name: format!("cali{e}"),
            interface: Some(format!("cali{e}")),
            queues: QueueSel::All,
            mode: XskMode::default(),
            mac: Some([2, 0, 0, 0, (e >> 8) as u8, e as u8]),
            addresses: Vec::new(),
            zone: 0,
        })
        .collect();
    let macs: Vec<[u8; 6]> = base.ports.iter().map(|p| p.mac.unwrap()).collect();
    let enforce = |m: &FelixModel, c: &engine::sources::felix::CompiledPolicy, what: &str| {
        let t = Instant::now();
        let (mut s, _) = felix::to_state(m, &base);
        s.policy = PolicyInput::Compiled(CompiledInput {
            origin: "felix".into(),
            classifier: c.classifier.clone(),
            host: c.host.clone(),
        });
        let t_state = t.elapsed();
        let d = StateDiff::between(&base, &s);
        let t_diff = t.elapsed();
        let tables = build::tables_with_policy(&s, &macs, c.classifier.clone()).unwrap();
        println!(
            "{what}, state and tables: {:.1} ms (to_state {:.1} ms, diff {:.1} ms, tables {:.1} ms; {} routes, {} neighbours, policy changed: {})",
            t.elapsed().as_secs_f64() * 1e3,
            t_state.as_secs_f64() * 1e3,
            (t_diff - t_state).as_secs_f64() * 1e3,
            (t.elapsed() - t_diff).as_secs_f64() * 1e3,
            s.routes.len(),
            s.neighbors.len(),
            d.policy
        );
        assert!(s.routes.len() >= 1000, "every endpoint routed");
        tables
    };
    let c = run(&mut pc, &m, "InSync (whole model)");
    drop(enforce(&m, &c, "InSync (whole model)"));
    assert_eq!(c.report.rules, 10_000 + 2);
    assert!(c.report.fail_closed.is_empty());
    println!(
        "model: {} endpoints, {} policies, {} IP set members",
        m.workload_endpoints.len(),
        m.policies.len(),
        m.ip_set_members()
    );
    println!(
        "memory: classifier {:.1} MB (its own estimate); RSS {:.1} MB before the model, {:.1} MB with the model, {:.1} MB with the compiler's state and classifier",
        c.classifier.memory() as f64 / 1e6,
        rss0 as f64 / 1e3,
        rss_model as f64 / 1e3,
        rss_kb() as f64 / 1e3
    );
    println!(
        "classification: {:.1} ns/packet (batches of 64, 64k new connections, best of 5)",
        lookup_ns(&c.classifier)
    );
    // One member added to one set.
    let set = Arc::make_mut(m.ip_sets.get_mut("s7").unwrap());
    set.members.insert("10.99.0.1/32".into());
    let c = run(&mut pc, &m, "one-member IP set delta");
    drop(enforce(&m, &c, "one-member IP set delta"));
    let k = FlowKey::new(
        "10.99.0.1".parse().unwrap(),
        "11.0.0.7".parse().unwrap(),
        6,
        L4::Ports {
            sport: 1,
            dport: 1007,
        },
    );
    let v = c.classifier.classify(&k, &mut c.classifier.new_scratch());
    assert!(v.ingress.endpoint.is_some());
    // One policy changed.
    let mut p = policy(3);
    p.inbound_rules[0].action = "deny".into();
    m.policies.insert(id(3), Arc::new(p));
    let c = run(&mut pc, &m, "one changed policy");
    drop(enforce(&m, &c, "one changed policy"));
    println!(
        "after the changes: classification {:.1} ns/packet",
        lookup_ns(&c.classifier)
    );
}

// ---------------------------------------------------------------------------
// `sluice policy eval --felix` (issue 18, item 5).

/// The model as the stream Felix would send (every object once, then
/// `InSync`), framed as `felix-shim --record` writes it.
fn stream_of(m: &FelixModel) -> Vec<u8> {
    use engine::sources::felix::codec::encode;
    use proto::to_dataplane::Payload;
    let mut msgs = vec![Payload::ConfigUpdate(proto::ConfigUpdate::default())];
    for (id, s) in &m.ip_sets {
        msgs.push(Payload::IpsetUpdate(proto::IpSetUpdate {
            id: id.clone(),
            members: s.members.iter().cloned().collect(),
            r#type: s.kind as i32,
        }));
    }
    for (name, p) in &m.profiles {
        msgs.push(Payload::ActiveProfileUpdate(proto::ActiveProfileUpdate {
            id: Some(proto::ProfileId { name: name.clone() }),
            profile: Some((**p).clone()),
        }));
    }
    for (id, p) in &m.policies {
        msgs.push(Payload::ActivePolicyUpdate(proto::ActivePolicyUpdate {
            id: Some(id.clone()),
            policy: Some((**p).clone()),
        }));
    }
    for (id, e) in &m.workload_endpoints {
        msgs.push(Payload::WorkloadEndpointUpdate(
            proto::WorkloadEndpointUpdate {
                id: Some(id.clone()),
                endpoint: Some((**e).clone()),
            },
        ));
    }
    msgs.push(Payload::InSync(proto::InSync {}));
    msgs.into_iter()
        .flat_map(|p| {
            encode(&proto::ToDataplane {
                sequence_number: 0,
                payload: Some(p),
            })
        })
        .collect()
}

/// A packet as a `policy eval` input line.
fn packet_line(k: &FlowKey) -> String {
    let mut v = json!({"proto": k.proto(), "src": k.src().to_string(), "dst": k.dst().to_string()});
    match k.l4() {
        L4::Ports { sport, dport } => {
            v["sport"] = json!(sport);
            v["dport"] = json!(dport);
        }
        L4::Icmp { ty, code } => {
            v["icmp_type"] = json!(ty);
            v["icmp_code"] = json!(code);
        }
        L4::None => {}
    }
    v.to_string()
}

#[test]
fn policy_eval_felix_answers_as_policy_eval_of_the_same_yaml() {
    use std::process::Command;
    let dir = std::env::temp_dir().join(format!("sluice-felix-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        )
    };
    let mut compared = 0;
    let mut decided_by_rule = 0;
    let mut denied = 0;
    // Scenarios without a host endpoint (named differently on the two
    // paths: a WorkloadEndpoint stand-in in YAML).
    for seed in (1..400u64)
        .filter(|&s| !generate(s).weps.iter().any(|w| w.host))
        .take(20)
    {
        let s = generate(seed);
        let yaml = dir.join("policy.yaml");
        let rec = dir.join("felix.rec");
        let pk = dir.join("packets.jsonl");
        std::fs::write(&yaml, to_yaml(&s)).unwrap();
        std::fs::write(&rec, stream_of(&to_felix(&s))).unwrap();
        let r = &mut Rng(seed.wrapping_mul(31) | 1);
        let lines: Vec<String> = packets(r, &s, 64).iter().map(packet_line).collect();
        std::fs::write(&pk, lines.join("\n") + "\n").unwrap();
        let (c1, a, e1) = run(&[
            "policy".as_ref(),
            "eval".as_ref(),
            "--policy".as_ref(),
            yaml.as_os_str(),
            "--packets".as_ref(),
            pk.as_os_str(),
        ]);
        let (c2, b, e2) = run(&[
            "policy".as_ref(),
            "eval".as_ref(),
            "--felix".as_ref(),
            rec.as_os_str(),
            "--packets".as_ref(),
            pk.as_os_str(),
        ]);
        assert_eq!((c1, c2), (Some(0), Some(0)), "seed {seed}: {e1} {e2}");
        assert!(e2.is_empty(), "seed {seed}: {e2}");
        assert_eq!(a.lines().count(), lines.len());
        assert_eq!(a, b, "seed {seed}");
        compared += lines.len();
        decided_by_rule += a.matches("\"policy\":").count();
        denied += a.matches("\"verdict\":\"deny\"").count();
    }
    // Both verdicts, and decisions by policy rules (the rest: end of tier,
    // profiles, no endpoint).
    assert!(
        compared >= 1000 && decided_by_rule >= 10 && denied > 100 && denied < compared * 3,
        "{compared} {decided_by_rule} {denied}"
    );
    // Without InSync: said on stderr, evaluated as it stands. Cut inside a
    // frame: the frames before it, exit 2.
    let s = generate(3);
    let full = stream_of(&to_felix(&s));
    let rec = dir.join("felix.rec");
    let pk = dir.join("packets.jsonl");
    std::fs::write(&pk, "{\"proto\": \"tcp\", \"src\": \"10.0.0.1\", \"sport\": 1, \"dst\": \"10.0.0.3\", \"dport\": 80}\n").unwrap();
    // The stream without its last frame, InSync.
    let insync = engine::sources::felix::codec::encode(&proto::ToDataplane {
        sequence_number: 0,
        payload: Some(proto::to_dataplane::Payload::InSync(proto::InSync {})),
    })
    .len();
    std::fs::write(&rec, &full[..full.len() - insync]).unwrap();
    let args = |rec: &std::path::Path| {
        vec![
            "policy".into(),
            "eval".into(),
            "--felix".into(),
            rec.as_os_str().to_owned(),
            "--packets".into(),
            pk.as_os_str().to_owned(),
        ]
    };
    let a: Vec<std::ffi::OsString> = args(&rec);
    let (code, out, err) = run(&a.iter().map(|x| x.as_os_str()).collect::<Vec<_>>());
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("no InSync"), "{err}");
    assert_eq!(out.lines().count(), 1);
    std::fs::write(&rec, &full[..full.len() - 3]).unwrap();
    let (code, out, err) = run(&a.iter().map(|x| x.as_os_str()).collect::<Vec<_>>());
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no InSync") && err.contains("whole frames before it"),
        "{err}"
    );
    assert_eq!(out.lines().count(), 1);
    // Not a stream at all: exit 2, naming the frame.
    std::fs::write(&rec, b"\x05\0\0\0\0\0\0\0\xff\xff\xff\xff\xff").unwrap();
    let (code, _, err) = run(&a.iter().map(|x| x.as_os_str()).collect::<Vec<_>>());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("frame 0"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
