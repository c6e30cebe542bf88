//! Staged policies from Felix (issue 18, spec felix.md section 3): never
//! enforced, but evaluated for accounting. The pending walk (staged
//! policies enforced where they stand) runs on every new connection the
//! pipeline judges; its decisions are counted per rule
//! (`Counters::staged_hits`), the connections whose verdict it would
//! change are counted, `explain` shows it, and a one-member IP set change
//! reaches it without a recompile.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use bench::packet::{self as pk, flags, Ip};
use common::*;
use engine::control::explain::{self, Query};
use engine::pipeline::{Action, DropReason, Pipeline};
use engine::sources::config::Config;
use engine::sources::felix::model::{FelixModel, IpSet};
use engine::sources::felix::proto::{self, IpSetType, PolicyId};
use engine::sources::felix::{CompiledPolicy, HowCompiled, PolicyCompiler};
use engine::state::{CompiledInput, PolicyInput};
use engine::tables::conntrack::Conntrack;
use engine::tables::Tables;
use policy_compiler::ir::{DecisionInfo, Dir};
use policy_compiler::model::Action as RuleAction;
use policy_compiler::{FlowKey, L4};
use serde_json::json;

const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
/// The kernel-reference config's backend pod (behind the pods port).
const POD: &str = "10.1.0.5";

fn syn(src: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let (c, pod) = (Ip::V4(src), Ip::p(POD));
    let seg = pk::tcp(c, pod, sport, dport, 1, 0, flags::SYN, &[]);
    pk::eth_ip(UPLINK_MAC, GW_MAC, &pk::ip(c, pod, 6, 64, &seg))
}

fn pid(name: &str, staged: bool) -> PolicyId {
    PolicyId {
        name: name.into(),
        namespace: String::new(),
        kind: if staged {
            "StagedGlobalNetworkPolicy".into()
        } else {
            "GlobalNetworkPolicy".into()
        },
    }
}

fn tcp_rule(action: &str, dport: Option<u16>) -> proto::Rule {
    proto::Rule {
        action: action.into(),
        protocol: Some(proto::Protocol {
            number_or_name: Some(proto::protocol::NumberOrName::Name("tcp".into())),
        }),
        dst_ports: dport
            .map(|p| proto::PortRange {
                first: i32::from(p),
                last: i32::from(p),
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

fn ingress_policy(rules: Vec<proto::Rule>) -> Arc<proto::Policy> {
    Arc::new(proto::Policy {
        inbound_rules: rules,
        tier: "default".into(),
        ..Default::default()
    })
}

/// The enforced `allow` policy: all TCP in.
fn allow_tcp() -> (PolicyId, Arc<proto::Policy>) {
    (
        pid("allow", false),
        ingress_policy(vec![tcp_rule("allow", None)]),
    )
}

/// A pipeline over `m`'s policy (and its tables) after SYNs from
/// 192.0.2.100 to the pod, one `(sport, dport)` per batch; their actions.
fn run(m: &FelixModel, conns: &[(u16, u16)]) -> (Arc<Tables>, Pipeline, Vec<Action>) {
    let c = PolicyCompiler::default().compile(m);
    let t = tables(&c);
    let mut p = Pipeline::new(t.clone(), Arc::new(Conntrack::new(1024, 1)));
    let frames: Vec<Vec<u8>> = conns
        .iter()
        .map(|&(sp, dp)| syn([192, 0, 2, 100], sp, dp))
        .collect();
    let actions = send_each(&mut p, &frames);
    (t, p, actions)
}

fn tier(name: &str, ingress: Vec<PolicyId>, default_action: &str) -> proto::TierInfo {
    proto::TierInfo {
        name: name.into(),
        ingress_policies: ingress,
        egress_policies: Vec::new(),
        default_action: default_action.into(),
    }
}

/// A model with the pod as a workload endpoint walking `tiers`, and
/// `policies`.
fn model(tiers: Vec<proto::TierInfo>, policies: Vec<(PolicyId, Arc<proto::Policy>)>) -> FelixModel {
    let mut m = FelixModel::default();
    m.workload_endpoints.insert(
        proto::WorkloadEndpointId {
            orchestrator_id: "k8s".into(),
            workload_id: "default/backend".into(),
            endpoint_id: "eth0".into(),
        },
        Arc::new(proto::WorkloadEndpoint {
            name: "calibackend".into(),
            ipv4_nets: vec![format!("{POD}/32")],
            tiers,
            ..Default::default()
        }),
    );
    m.policies.extend(policies);
    m
}

/// The kernel-reference tables with `p`'s classifier as the policy.
fn tables(p: &CompiledPolicy) -> Arc<Tables> {
    let cfg = Config::load(&fixtures().join("kernel/sluice-policy.yaml")).unwrap();
    let mut s = cfg.state();
    s.policy = PolicyInput::Compiled(CompiledInput {
        origin: "felix".into(),
        classifier: p.classifier.clone(),
        host: p.host.clone(),
    });
    Arc::new(engine::state::build::replay_tables(&s).unwrap())
}

/// The hits in `hits` (per decision id) of the decisions that are `info`
/// (the enforced and the pending walk number their decisions apart, so
/// one rule may have two ids).
fn hits(t: &Tables, hits: &[u64], info: &DecisionInfo) -> u64 {
    let ids: Vec<usize> = t
        .policy
        .decisions()
        .iter()
        .enumerate()
        .filter(|(_, d)| *d == info)
        .map(|(i, _)| i)
        .collect();
    assert!(
        !ids.is_empty(),
        "no decision {info}: {:?}",
        t.policy.decisions()
    );
    ids.iter().map(|&i| hits[i]).sum()
}

fn rule_decision(tier: &str, policy: &str, rule: u32, action: RuleAction) -> DecisionInfo {
    DecisionInfo::Rule {
        dir: Dir::Ingress,
        tier: tier.into(),
        policy: policy.into(),
        rule,
        action,
    }
}

/// Sends each frame in its own batch; the actions.
fn send_each(p: &mut Pipeline, frames: &[Vec<u8>]) -> Vec<Action> {
    frames
        .iter()
        .enumerate()
        .flat_map(|(i, f)| send_batch(p, 1_000 * (i as u64 + 1), std::slice::from_ref(f)))
        .collect()
}

/// A staged deny ahead of the enforced allow-all: every connection is
/// allowed, and the staged policy's would-be denials are counted on its
/// rule, the rest on the enforced rule the pending walk reaches.
#[test]
fn staged_policies_are_counted_never_enforced() {
    let m = model(
        vec![tier(
            "default",
            vec![pid("no-ssh", true), pid("allow", false)],
            "Deny",
        )],
        vec![
            (
                pid("no-ssh", true),
                ingress_policy(vec![tcp_rule("deny", Some(22))]),
            ),
            allow_tcp(),
        ],
    );
    let c = PolicyCompiler::default().compile(&m);
    assert!(c.classifier.staged().is_some(), "a pending classifier");
    assert!(
        !c.report
            .unsupported
            .iter()
            .any(|(f, _)| f.contains("staged")),
        "{:?}",
        c.report.unsupported
    );
    let conns = [
        (40001, 22),
        (40002, 22),
        (40003, 8080),
        (40004, 22),
        (40005, 9999),
    ];
    let (t, p, actions) = run(&m, &conns);
    assert!(
        actions.iter().all(|a| matches!(a, Action::Forward(_))),
        "staged policies are never enforced: {actions:?}"
    );
    let k = p.counters();
    let staged = rule_decision("default", "staged:no-ssh", 0, RuleAction::Deny);
    let allow = rule_decision("default", "allow", 0, RuleAction::Allow);
    assert_eq!(k.policy_allowed, 5);
    assert_eq!(hits(&t, &k.policy_hits, &allow), 5, "{:?}", k.policy_hits);
    assert_eq!(hits(&t, &k.staged_hits, &staged), 3, "{:?}", k.staged_hits);
    assert_eq!(hits(&t, &k.staged_hits, &allow), 2, "{:?}", k.staged_hits);
    assert_eq!(
        k.staged_hits.iter().sum::<u64>(),
        5,
        "one ingress decision each"
    );
    assert_eq!((k.pending_denied, k.pending_allowed), (3, 0));
    // What `ctl felix` shows per staged policy.
    let v = explain::staged_hits(t.policy.decisions(), &k.staged_hits);
    assert_eq!(
        v,
        json!([{"tier": "default", "policy": "staged:no-ssh", "would_allow": 0,
                "would_deny": 3, "would_pass": 0,
                "rules": [{"direction": "ingress", "rule": 0, "action": "would_deny", "hits": 3}]}])
    );
    // `explain` gives the pending walk beside the enforced verdict.
    let ct = Conntrack::new(64, 1);
    let q = Query::from_json(
        &json!({"proto": "tcp", "src": "192.0.2.7", "sport": 1234, "dst": POD, "dport": 22}),
        &t,
    )
    .unwrap();
    let e = explain::explain(&t, &ct, 0, &q);
    let pol = &e["policy"];
    assert_eq!(pol["verdict"], json!("allow"), "{e:#}");
    assert_eq!(pol["staged"]["verdict"], json!("deny"), "{e:#}");
    assert_eq!(pol["staged"]["changes_verdict"], json!(true), "{e:#}");
    assert_eq!(
        pol["staged"]["ingress"]["decided_by"]["policy"],
        json!("staged:no-ssh"),
        "{e:#}"
    );
}

/// A tier that lists only staged policies is skipped by the enforced walk
/// (it passes) but walked, with its default action, by the pending one.
#[test]
fn a_tier_of_staged_policies_only_ends_in_its_default_action_when_pending() {
    let m = model(
        vec![
            tier("security", vec![pid("web-only", true)], "Deny"),
            tier("default", vec![pid("allow", false)], "Deny"),
        ],
        vec![
            (
                pid("web-only", true),
                ingress_policy(vec![tcp_rule("allow", Some(8080))]),
            ),
            allow_tcp(),
        ],
    );
    let (t, p, actions) = run(&m, &[(40001, 8080), (40002, 22), (40003, 9999)]);
    assert!(
        actions.iter().all(|a| matches!(a, Action::Forward(_))),
        "{actions:?}"
    );
    let k = p.counters();
    let web = rule_decision("security", "staged:web-only", 0, RuleAction::Allow);
    let eot = DecisionInfo::EndOfTier {
        dir: Dir::Ingress,
        tier: "security".into(),
    };
    let sh = &k.staged_hits;
    assert_eq!((hits(&t, sh, &web), hits(&t, sh, &eot)), (1, 2), "{sh:?}");
    assert_eq!((k.pending_denied, k.pending_allowed), (2, 0));
}

/// An enforced denial that a staged policy would allow: each packet of
/// the denied flow is judged again, from the memo of denials after the
/// first, and each is counted as one the staged policy would allow.
#[test]
fn denials_answered_from_the_memo_count_the_pending_verdict_too() {
    let m = model(
        vec![tier(
            "default",
            vec![
                pid("ssh-ok", true),
                pid("no-ssh", false),
                pid("allow", false),
            ],
            "Deny",
        )],
        vec![
            (
                pid("ssh-ok", true),
                ingress_policy(vec![tcp_rule("allow", Some(22))]),
            ),
            (
                pid("no-ssh", false),
                ingress_policy(vec![tcp_rule("deny", Some(22))]),
            ),
            allow_tcp(),
        ],
    );
    let (t, mut p, mut actions) = run(&m, &[(40001, 22), (40001, 22)]);
    let f = syn([192, 0, 2, 100], 40001, 22);
    // Three more in one batch: the track stage's early memo answer.
    actions.extend(send_batch(&mut p, 9_000, &[f.clone(), f.clone(), f]));
    assert!(
        actions
            .iter()
            .all(|a| *a == Action::Drop(DropReason::Policy)),
        "{actions:?}"
    );
    let k = p.counters();
    let ok = rule_decision("default", "staged:ssh-ok", 0, RuleAction::Allow);
    assert_eq!(k.policy_denied, 5);
    assert_eq!(hits(&t, &k.staged_hits, &ok), 5, "{:?}", k.staged_hits);
    assert_eq!((k.pending_denied, k.pending_allowed), (0, 5));
}

/// A staged policy that does not resolve (an IP set never sent) is left
/// out of the pending walk and reported; the endpoint does not fail
/// closed and the enforced policy is as without it.
#[test]
fn a_staged_policy_that_does_not_resolve_changes_nothing_enforced() {
    let bad = proto::Rule {
        action: "deny".into(),
        src_ip_set_ids: vec!["never-sent".into()],
        ..Default::default()
    };
    let m = model(
        vec![tier(
            "default",
            vec![pid("broken", true), pid("allow", false)],
            "Deny",
        )],
        vec![
            (pid("broken", true), ingress_policy(vec![bad])),
            allow_tcp(),
        ],
    );
    let c = PolicyCompiler::default().compile(&m);
    assert!(
        c.report.fail_closed.is_empty(),
        "{:?}",
        c.report.fail_closed
    );
    assert!(
        c.classifier.staged().is_none(),
        "nothing staged left to account"
    );
    assert_eq!(c.report.staged_skipped.len(), 1, "{:?}", c.report);
    assert!(
        c.report
            .unsupported
            .iter()
            .any(|(f, w)| *f == "staged policies"
                && w.contains("staged:broken")
                && w.contains("never-sent")),
        "{:?}",
        c.report.unsupported
    );
    let k = FlowKey::new(
        "192.0.2.1".parse::<IpAddr>().unwrap(),
        POD.parse::<IpAddr>().unwrap(),
        6,
        L4::Ports {
            sport: 1,
            dport: 22,
        },
    );
    assert!(
        c.classifier
            .classify(&k, &mut c.classifier.new_scratch())
            .allow
    );
}

/// A one-member change of an IP set only a staged policy uses patches the
/// pending classifier's set table (no recompile) and changes its verdicts,
/// never the enforced ones.
#[test]
fn an_ip_set_delta_reaches_the_pending_walk() {
    let block = proto::Rule {
        action: "deny".into(),
        src_ip_set_ids: vec!["blocked".into()],
        ..Default::default()
    };
    let mut m = model(
        vec![tier(
            "default",
            vec![pid("block", true), pid("allow", false)],
            "Deny",
        )],
        vec![
            (pid("block", true), ingress_policy(vec![block])),
            allow_tcp(),
        ],
    );
    m.ip_sets.insert(
        "blocked".into(),
        Arc::new(IpSet {
            kind: IpSetType::Net,
            members: ["198.51.100.0/24".to_string()].into_iter().collect(),
        }),
    );
    let key = |src: &str| {
        FlowKey::new(
            src.parse::<IpAddr>().unwrap(),
            POD.parse::<IpAddr>().unwrap(),
            6,
            L4::Ports {
                sport: 1,
                dport: 80,
            },
        )
    };
    let verdicts = |c: &CompiledPolicy, src: &str| {
        let cl = &c.classifier;
        let pc = cl.staged().unwrap();
        (
            cl.classify(&key(src), &mut cl.new_scratch()).allow,
            pc.classify(&key(src), &mut pc.new_scratch()).allow,
        )
    };
    let mut pc = PolicyCompiler::default();
    let a = pc.compile(&m);
    assert_eq!(verdicts(&a, "198.51.100.9"), (true, false));
    assert_eq!(verdicts(&a, "192.0.2.9"), (true, true));
    Arc::make_mut(m.ip_sets.get_mut("blocked").unwrap())
        .members
        .insert("192.0.2.9/32".into());
    let b = pc.compile(&m);
    assert_eq!(b.report.how, HowCompiled::SetsOnly { sets: 1 });
    assert_eq!(verdicts(&b, "192.0.2.9"), (true, false));
    assert_eq!(verdicts(&b, "198.51.100.9"), (true, false));
}
