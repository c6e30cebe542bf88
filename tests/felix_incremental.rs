//! Small updates give the same policy as a compile from scratch (issue 18,
//! "Scale"): a random model, then a random sequence of batches (IP set
//! members added and removed, sets replaced, removed and sent again with
//! another kind, policies changed, endpoints' tiers changed), each
//! compiled by one long-lived `PolicyCompiler` (which patches set tables
//! or reuses segment engines) and by a fresh one; every generated packet
//! must get the same verdict JSON from both.

// Test helpers unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use engine::sources::felix::model::{FelixModel, IpSet};
use engine::sources::felix::proto::{self, IpSetType, PolicyId};
use engine::sources::felix::{HowCompiled, PolicyCompiler};
use policy_compiler::{FlowKey, L4};
use proptest::prelude::*;

mod common;
use common::Rng;

const SETS: usize = 6;
const POLICIES: usize = 6;
const ENDPOINTS: usize = 6;
const PORTS: [u16; 4] = [80, 443, 53, 1000];

fn v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 1 + i as u8)
}

fn v6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1 + i as u16)
}

/// An address of the pool (12 IPv4, 6 IPv6; endpoints own the first).
fn addr(r: &mut Rng) -> IpAddr {
    if r.chance(75) {
        IpAddr::V4(v4(r.below(12)))
    } else {
        IpAddr::V6(v6(r.below(6)))
    }
}

fn member(r: &mut Rng, kind: IpSetType) -> String {
    let a = addr(r);
    match kind {
        IpSetType::IpAndPort => {
            let p = if r.chance(50) { "tcp" } else { "udp" };
            format!("{a},{p}:{}", PORTS[r.below(PORTS.len())])
        }
        _ => match a {
            IpAddr::V4(x) if r.chance(20) => format!("{x}/30"),
            IpAddr::V4(x) => format!("{x}/32"),
            IpAddr::V6(x) => format!("{x}/128"),
        },
    }
}

/// Set `s{i}`: even ones hold addresses, odd ones `ip,proto:port`.
fn set_kind(i: usize) -> IpSetType {
    if i.is_multiple_of(2) {
        IpSetType::Net
    } else {
        IpSetType::IpAndPort
    }
}

fn ip_set(r: &mut Rng, kind: IpSetType) -> IpSet {
    let n = r.below(5);
    IpSet {
        kind,
        members: (0..n).map(|_| member(r, kind)).collect(),
    }
}

fn addr_set(r: &mut Rng) -> String {
    format!("s{}", 2 * r.below(SETS / 2))
}

fn port_set(r: &mut Rng) -> String {
    format!("s{}", 2 * r.below(SETS / 2) + 1)
}

fn rule(r: &mut Rng) -> proto::Rule {
    let mut x = proto::Rule {
        action: ["allow", "deny", "pass", "log", ""][r.below(5)].into(),
        ..Default::default()
    };
    if r.chance(40) {
        let p = if r.chance(50) { "tcp" } else { "udp" };
        x.protocol = Some(proto::Protocol {
            number_or_name: Some(proto::protocol::NumberOrName::Name(p.into())),
        });
    }
    if r.chance(40) {
        x.src_ip_set_ids.push(addr_set(r));
    }
    if r.chance(20) {
        x.not_src_ip_set_ids.push(addr_set(r));
    }
    if r.chance(30) {
        x.dst_ip_set_ids.push(addr_set(r));
    }
    if r.chance(15) {
        x.not_dst_ip_set_ids.push(addr_set(r));
    }
    if r.chance(25) {
        let p = i32::from(PORTS[r.below(PORTS.len())]);
        x.dst_ports.push(proto::PortRange { first: p, last: p });
    }
    if r.chance(20) {
        x.dst_named_port_ip_set_ids.push(port_set(r));
    }
    if r.chance(10) {
        x.not_dst_named_port_ip_set_ids.push(port_set(r));
    }
    if r.chance(10) {
        x.dst_ip_port_set_ids.push(port_set(r));
    }
    x
}

fn policy(r: &mut Rng) -> proto::Policy {
    proto::Policy {
        inbound_rules: (0..1 + r.below(3)).map(|_| rule(r)).collect(),
        outbound_rules: (0..1 + r.below(3)).map(|_| rule(r)).collect(),
        tier: "default".into(),
        ..Default::default()
    }
}

/// Policies 2 and 5 are staged (the pending classifier must follow small
/// updates as the enforced one does).
fn pid(p: usize) -> PolicyId {
    PolicyId {
        name: format!("p{p}"),
        namespace: String::new(),
        kind: if p % 3 == 2 {
            "StagedGlobalNetworkPolicy".into()
        } else {
            "GlobalNetworkPolicy".into()
        },
    }
}

/// An endpoint's tiers: a subset of the policies, in index order (as Felix
/// orders them), in one or two tiers.
fn tiers(r: &mut Rng) -> Vec<proto::TierInfo> {
    let mut out = Vec::new();
    for (t, action) in [("t1", "Pass"), ("default", "Deny")] {
        let pols: Vec<PolicyId> = (0..POLICIES)
            .filter(|p| (*p < POLICIES / 2) == (t == "t1"))
            .filter(|_| r.chance(40))
            .map(pid)
            .collect();
        if !pols.is_empty() {
            out.push(proto::TierInfo {
                name: t.into(),
                ingress_policies: pols.clone(),
                egress_policies: pols,
                default_action: action.into(),
            });
        }
    }
    out
}

fn endpoint(r: &mut Rng, e: usize) -> proto::WorkloadEndpoint {
    proto::WorkloadEndpoint {
        name: format!("cali{e}"),
        ipv4_nets: vec![format!("{}/32", v4(e))],
        ipv6_nets: if e < 3 {
            vec![format!("{}/128", v6(e))]
        } else {
            vec![]
        },
        tiers: tiers(r),
        profile_ids: if r.chance(50) {
            vec!["open".into()]
        } else {
            vec![]
        },
        ..Default::default()
    }
}

fn wid(e: usize) -> proto::WorkloadEndpointId {
    proto::WorkloadEndpointId {
        orchestrator_id: "k8s".into(),
        workload_id: format!("ns/pod{e}"),
        endpoint_id: "eth0".into(),
    }
}

fn model(r: &mut Rng) -> FelixModel {
    let mut m = FelixModel::default();
    for i in 0..SETS {
        m.ip_sets
            .insert(format!("s{i}"), Arc::new(ip_set(r, set_kind(i))));
    }
    for p in 0..POLICIES {
        m.policies.insert(pid(p), Arc::new(policy(r)));
    }
    for e in 0..ENDPOINTS {
        m.workload_endpoints
            .insert(wid(e), Arc::new(endpoint(r, e)));
    }
    m.profiles.insert(
        "open".into(),
        Arc::new(proto::Profile {
            inbound_rules: vec![proto::Rule::default()],
            outbound_rules: vec![proto::Rule {
                action: "deny".into(),
                dst_ip_set_ids: vec!["s0".into()],
                ..Default::default()
            }],
        }),
    );
    m
}

/// One change to the model.
fn change(r: &mut Rng, m: &mut FelixModel) {
    match r.below(10) {
        // Members added or removed (an IPSetDeltaUpdate): the most common.
        0..=4 => {
            let i = r.below(SETS);
            let id = format!("s{i}");
            let Some(s) = m.ip_sets.get_mut(&id) else {
                m.ip_sets.insert(id, Arc::new(ip_set(r, set_kind(i))));
                return;
            };
            let s = Arc::make_mut(s);
            if r.chance(60) || s.members.is_empty() {
                let x = member(r, s.kind);
                s.members.insert(x);
            } else {
                let x = s.members.iter().nth(r.below(s.members.len())).cloned();
                s.members.remove(&x.unwrap());
            }
        }
        // A set replaced whole (an IPSetUpdate).
        5 => {
            let i = r.below(SETS);
            m.ip_sets
                .insert(format!("s{i}"), Arc::new(ip_set(r, set_kind(i))));
        }
        // A set removed, or sent with the other kind (endpoints fail
        // closed) — put right by a later change.
        6 => {
            let i = r.below(SETS);
            if r.chance(50) {
                m.ip_sets.remove(&format!("s{i}"));
            } else {
                let other = set_kind(i + 1);
                m.ip_sets
                    .insert(format!("s{i}"), Arc::new(ip_set(r, other)));
            }
        }
        7 | 8 => {
            m.policies
                .insert(pid(r.below(POLICIES)), Arc::new(policy(r)));
        }
        _ => {
            let e = r.below(ENDPOINTS);
            m.workload_endpoints
                .insert(wid(e), Arc::new(endpoint(r, e)));
        }
    }
}

fn packets(r: &mut Rng, n: usize) -> Vec<FlowKey> {
    (0..n)
        .map(|_| {
            let (s, d) = if r.chance(75) {
                (IpAddr::V4(v4(r.below(12))), IpAddr::V4(v4(r.below(12))))
            } else {
                (IpAddr::V6(v6(r.below(6))), IpAddr::V6(v6(r.below(6))))
            };
            let (proto, l4) = match r.below(4) {
                0 => (1, L4::Icmp { ty: 8, code: 0 }),
                1 => (
                    17,
                    L4::Ports {
                        sport: PORTS[r.below(4)],
                        dport: PORTS[r.below(4)],
                    },
                ),
                _ => (
                    6,
                    L4::Ports {
                        sport: 40000,
                        dport: PORTS[r.below(4)],
                    },
                ),
            };
            FlowKey::new(s, d, proto, l4)
        })
        .collect()
}

/// Runs one sequence; returns how many batches were patched (set tables
/// only), how many reused some segment engines, and how many packets a
/// pending walk judged.
fn check_seed(seed: u64) -> Result<(usize, usize, usize), String> {
    let r = &mut Rng(seed | 1);
    let mut m = model(r);
    let mut inc = PolicyCompiler::default();
    inc.compile(&m);
    let (mut patched, mut reused, mut staged) = (0, 0, 0);
    for step in 0..12 {
        for _ in 0..1 + r.below(3) {
            change(r, &mut m);
        }
        let a = inc.compile(&m);
        let b = PolicyCompiler::default().compile(&m);
        match a.report.how {
            HowCompiled::SetsOnly { .. } => patched += 1,
            HowCompiled::Full {
                segments_reused, ..
            } => reused += usize::from(segments_reused > 0),
        }
        let (ca, cb) = (&a.classifier, &b.classifier);
        let keys = packets(r, 48);
        let mut out = vec![policy_compiler::Verdict::default(); keys.len()];
        ca.classify_batch(&keys, &mut out, &mut ca.new_scratch());
        for (k, batch) in keys.iter().zip(&out) {
            let x = ca.verdict_json(&ca.classify(k, &mut ca.new_scratch()));
            let y = cb.verdict_json(&cb.classify(k, &mut cb.new_scratch()));
            if x != y || ca.verdict_json(batch) != y {
                return Err(format!(
                    "seed {seed} step {step} ({:?}): {k:?}\n incremental: {x}\n batch: {}\n scratch: {y}\nmodel: {m:#?}",
                    a.report.how,
                    ca.verdict_json(batch)
                ));
            }
            // The pending walk (staged policies enforced) too.
            let pending = |c: &policy_compiler::Classifier| {
                c.staged()
                    .map(|p| p.verdict_json(&p.classify(k, &mut p.new_scratch())))
            };
            let (px, py) = (pending(ca), pending(cb));
            if px != py {
                return Err(format!(
                    "seed {seed} step {step} ({:?}): {k:?}\n incremental pending: {px:?}\n scratch pending: {py:?}\nmodel: {m:#?}",
                    a.report.how
                ));
            }
            staged += usize::from(py.is_some());
        }
    }
    Ok((patched, reused, staged))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn incremental_compiles_give_the_verdicts_of_a_compile_from_scratch(seed in any::<u64>()) {
        if let Err(e) = check_seed(seed) {
            prop_assert!(false, "{}", e);
        }
    }
}

#[test]
fn sequences_take_both_small_paths() {
    // The comparison above proves little unless batches are patched and
    // compiles reuse engines.
    let (mut patched, mut reused, mut staged) = (0, 0, 0);
    for seed in 1..40u64 {
        let (p, r, s) = check_seed(seed).unwrap();
        patched += p;
        reused += r;
        staged += s;
    }
    assert!(patched > 40, "{patched} batches patched");
    assert!(reused > 40, "{reused} compiles reused engines");
    assert!(staged > 1000, "{staged} packets judged by a pending walk");
}
