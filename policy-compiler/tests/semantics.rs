//! policy.md, section by section, with answers worked out by hand (not by
//! the reference evaluator), through the compiled classifier. Every case is
//! also checked against the reference evaluator and the linear engine.

// Test helpers outside #[test] functions unwrap too: a failure is a test
// failure (clippy.toml allows it only inside #[test]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use policy_compiler::compile::{Builder, Config};
use policy_compiler::loader::load_str;
use policy_compiler::reference::{Packet, Reference};
use policy_compiler::{cli, FlowKey};
use serde_json::Value;

/// Evaluate `pkt` (a `policy eval` line) against `yaml`; returns the output
/// object, after checking that every engine and the reference agree.
fn eval(yaml: &str, pkt: &str) -> Value {
    let (set, _) = load_str("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    let key = cli::parse_packet(pkt).unwrap();
    let mut answers = Vec::new();
    for cfg in [Config::default(), Config::linear()] {
        let c = Builder::with_config(cfg).compile(&set).unwrap();
        let v = c.classify(&key, &mut c.new_scratch());
        answers.push(c.verdict_json(&v));
    }
    let r = Reference::new(&set).eval(&Packet {
        src: key.src(),
        dst: key.dst(),
        proto: key.proto(),
        l4: key.l4(),
    });
    assert_eq!(answers[0], answers[1], "engines differ");
    assert_eq!(answers[0], r, "classifier and reference differ");
    answers.remove(0)
}

/// `decided_by` of a direction, keys sorted (whatever serde_json's map
/// order is).
fn by(v: &Value, dir: &str) -> String {
    fn canon(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: std::collections::BTreeMap<String, Value> =
                    m.iter().map(|(k, v)| (k.clone(), canon(v))).collect();
                serde_json::to_value(sorted).unwrap()
            }
            x => x.clone(),
        }
    }
    let c = canon(&v[dir]["decided_by"]);
    match c {
        Value::Object(m) => {
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
            format!("{{{}}}", parts.join(","))
        }
        x => x.to_string(),
    }
}

fn tcp(src: &str, dst: &str, dport: u16) -> String {
    format!(
        r#"{{"proto": "tcp", "src": "{src}", "sport": 40000, "dst": "{dst}", "dport": {dport}}}"#
    )
}

const WEPS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web, namespace: prod, labels: {app: web}}
spec:
  ipNetworks: [10.0.0.1/32, "fd00::1/128"]
  ports: [{name: http, port: 8080, protocol: TCP}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: db, namespace: prod, labels: {app: db}}
spec:
  ipNetworks: [10.0.0.2/32, "fd00::2/128"]
  ports: [{name: http, port: 9090, protocol: TCP}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: client, namespace: dev, labels: {app: client}}
spec:
  ipNetworks: [10.0.1.5/32]
---
"#;

fn with(extra: &str) -> String {
    format!("{WEPS}{extra}")
}

// ---- section 3: types defaults ------------------------------------------

#[test]
fn types_default_from_rules() {
    // Egress rules only → [Egress]: ingress to web is not affected.
    let y = with(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: e}\nspec:\n  egress: [{action: Deny}]\n",
    );
    let v = eval(&y, &tcp("10.0.1.5", "10.0.0.1", 80));
    assert_eq!(
        v["ingress"]["decided_by"],
        serde_json::json!({"no_match": true})
    );
    assert_eq!(
        by(&v, "egress"),
        r#"{"policy":"e","rule":0,"tier":"default"}"#
    );
    // Neither → [Ingress]: applies to ingress, with no rules → end of tier.
    let y = with("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: n}\nspec: {}\n");
    let v = eval(&y, &tcp("10.0.1.5", "10.0.0.1", 80));
    assert_eq!(
        by(&v, "ingress"),
        r#"{"end_of_tier":true,"tier":"default"}"#
    );
    assert_eq!(by(&v, "egress"), r#"{"no_match":true}"#);
    // Empty types list = missing.
    let y = with("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: n}\nspec: {types: [], egress: [{action: Allow}]}\n");
    let v = eval(&y, &tcp("10.0.0.1", "10.0.1.5", 80));
    assert_eq!(v["egress"]["verdict"], "allow");
    // The client has no policy and no profile: its ingress is no_match.
    assert_eq!(by(&v, "ingress"), r#"{"no_match":true}"#);
    assert_eq!(v["verdict"], "deny");
}

// ---- section 3: order ----------------------------------------------------

#[test]
fn tier_and_policy_order() {
    let y = with(
        r#"apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: b-late}
spec: {order: 50}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: a-unordered}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: a-early}
spec: {order: 50}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: u}
spec: {tier: a-unordered, ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: l}
spec: {tier: b-late, ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: e}
spec: {tier: a-early, ingress: [{action: Pass}]}
"#,
    );
    // a-early (50, name tie-break) passes, b-late (50) denies.
    let v = eval(&y, &tcp("10.0.1.5", "10.0.0.1", 80));
    assert_eq!(
        by(&v, "ingress"),
        r#"{"policy":"l","rule":0,"tier":"b-late"}"#
    );
    // Policies: order ascending, missing last, ties by key.
    let y = with(
        r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: z-none}
spec: {ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: b, namespace: prod}
spec: {order: 10, ingress: [{action: Allow, protocol: UDP}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: prod0}
spec: {order: 10, ingress: [{action: Log}, {action: Deny, protocol: UDP}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: a}
spec: {order: 20, ingress: [{action: Allow}]}
"#,
    );
    // key "prod/b" < "prod0": prod/b first; TCP: neither rule matches at 10;
    // then a (order 20) allows.
    let v = eval(&y, &tcp("10.0.1.5", "10.0.0.1", 80));
    assert_eq!(
        by(&v, "ingress"),
        r#"{"policy":"a","rule":0,"tier":"default"}"#
    );
    let udp = r#"{"proto": "udp", "src": "10.0.1.5", "sport": 1, "dst": "10.0.0.1", "dport": 53}"#;
    let v = eval(&y, udp);
    assert_eq!(
        by(&v, "ingress"),
        r#"{"policy":"prod/b","rule":0,"tier":"default"}"#
    );
    // Log never decides and keeps its index: prod0's Deny is rule 1.
    let v = eval(
        &y.replace(
            "spec: {order: 10, ingress: [{action: Allow, protocol: UDP}]}",
            "spec: {order: 11}",
        ),
        udp,
    );
    assert_eq!(
        by(&v, "ingress"),
        r#"{"policy":"prod0","rule":1,"tier":"default"}"#
    );
}

#[test]
fn tier_default_order_and_missing_tier() {
    let e = load_str("t.yaml", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: default}\nspec: {order: 5}\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("t.yaml doc 0: spec.order: the tier `default` always has order 1000000"),
        "{e}"
    );
    load_str("t.yaml", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: default}\nspec: {order: 1000000, defaultAction: Pass}\n").unwrap();
    let e = load_str("t.yaml", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec: {tier: nope}\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("doc 0: spec.tier: tier \"nope\" has no Tier document"),
        "{e}"
    );
    let e = load_str(
        "t.yaml",
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: knp.default.x}\n",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("reserved for Kubernetes NetworkPolicies"),
        "{e}"
    );
}

// ---- section 3: Pass, Log, end of tier ------------------------------------

#[test]
fn pass_and_end_of_tier() {
    let tiers = r#"apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: sec}
spec: {order: 1, defaultAction: DEFAULT}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: sec.p}
spec: {tier: sec, ingress: [{action: Pass, protocol: UDP}, {action: Log}, {action: Deny, protocol: ICMP}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow}
spec: {ingress: [{action: Allow}]}
"#;
    let deny = with(&tiers.replace("DEFAULT", "Deny"));
    let pass = with(&tiers.replace("DEFAULT", "Pass"));
    // TCP: nothing in sec matches → end of tier (Deny) or on to default.
    assert_eq!(
        by(&eval(&deny, &tcp("10.0.1.5", "10.0.0.1", 80)), "ingress"),
        r#"{"end_of_tier":true,"tier":"sec"}"#
    );
    assert_eq!(
        by(&eval(&pass, &tcp("10.0.1.5", "10.0.0.1", 80)), "ingress"),
        r#"{"policy":"allow","rule":0,"tier":"default"}"#
    );
    // UDP: Pass skips the rest of the tier, including its default Deny.
    let udp = r#"{"proto": "udp", "src": "10.0.1.5", "sport": 1, "dst": "10.0.0.1", "dport": 53}"#;
    assert_eq!(
        by(&eval(&deny, udp), "ingress"),
        r#"{"policy":"allow","rule":0,"tier":"default"}"#
    );
    // ICMP: Log goes on, the Deny decides (rule 2).
    let icmp = r#"{"proto": "icmp", "src": "10.0.1.5", "dst": "10.0.0.1", "icmp_type": 8, "icmp_code": 0}"#;
    assert_eq!(
        by(&eval(&pass, icmp), "ingress"),
        r#"{"policy":"sec.p","rule":2,"tier":"sec"}"#
    );
    // A tier whose policies do not apply to the endpoint is skipped.
    let y = deny.replace(
        "spec: {tier: sec, ingress",
        "spec: {tier: sec, selector: app == 'none', ingress",
    );
    assert_eq!(
        by(&eval(&y, &tcp("10.0.1.5", "10.0.0.1", 80)), "ingress"),
        r#"{"policy":"allow","rule":0,"tier":"default"}"#
    );
}

// ---- sections 2 and 3: profiles, labelsToApply ----------------------------

#[test]
fn profiles_and_labels_to_apply() {
    let y = r#"
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: p1}
spec:
  labelsToApply: {app: from-profile, team: blue}
  ingress: [{action: Pass, protocol: UDP}, {action: Deny, protocol: ICMP}]
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: p2}
spec:
  ingress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: w, namespace: ns, labels: {app: own, projectcalico.org/namespace: other}}
spec: {ipNetworks: [10.1.0.1/32], profiles: [p1, p2, missing]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: team}
spec:
  selector: team == 'blue' && app == 'own' && projectcalico.org/namespace == 'ns'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [443]}}]
"#;
    // labelsToApply adds team but does not override app; the namespace
    // label always holds the endpoint's own namespace.
    let v = eval(y, &tcp("10.9.9.9", "10.1.0.1", 443));
    assert_eq!(
        by(&v, "ingress"),
        r#"{"policy":"team","rule":0,"tier":"default"}"#
    );
    assert_eq!(v["ingress"]["endpoint"], "ns/w");
    // The policy applies, nothing matches → end of tier; profiles are only
    // reached when no tier decided.
    let v = eval(y, &tcp("10.9.9.9", "10.1.0.1", 80));
    assert_eq!(
        by(&v, "ingress"),
        r#"{"end_of_tier":true,"tier":"default"}"#
    );
    let y2 = y.replace("selector: team == 'blue'", "selector: team == 'red'");
    // No policy applies: profiles in order; p1 Pass → p2.
    let udp = r#"{"proto": "udp", "src": "10.9.9.9", "sport": 1, "dst": "10.1.0.1", "dport": 53}"#;
    assert_eq!(
        by(&eval(&y2, udp), "ingress"),
        r#"{"profile":"p2","rule":0}"#
    );
    let icmp = r#"{"proto": "icmp", "src": "10.9.9.9", "dst": "10.1.0.1", "icmp_type": 0}"#;
    assert_eq!(
        by(&eval(&y2, icmp), "ingress"),
        r#"{"profile":"p1","rule":1}"#
    );
    // A profile without a document denies (Calico's default-drop
    // profile), where it is reached: first in the list, before p1 and p2.
    let first = y2.replace("profiles: [p1, p2, missing]", "profiles: [missing, p1, p2]");
    for pkt in [udp, icmp] {
        let v = eval(&first, pkt);
        assert_eq!(v["verdict"], "deny");
        assert_eq!(by(&v, "ingress"), r#"{"profile":"missing","rule":0}"#);
        // Egress too: the default-drop profile has a Deny rule each way.
        assert_eq!(by(&eval(&first, pkt), "egress"), "null");
    }
    let out = tcp("10.1.0.1", "10.9.9.9", 80);
    assert_eq!(
        by(&eval(&first, &out), "egress"),
        r#"{"profile":"missing","rule":0}"#
    );
    // No profiles at all → no_match deny.
    let v = eval(
        &y2.replace("profiles: [p1, p2, missing]", "profiles: []"),
        udp,
    );
    assert_eq!(v["verdict"], "deny");
    assert_eq!(by(&v, "ingress"), r#"{"no_match":true}"#);
    let (_, w) = load_str("t.yaml", y).unwrap();
    assert!(w.iter().any(|w| w
        .to_string()
        .contains("profile \"missing\" has no Profile document")));
}

// ---- section 3: nets, notNets, selectors, notSelector, scopes --------------

#[test]
fn nets_notnets_selectors() {
    let y = with(
        r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: bad, labels: {list: bad}}
spec: {nets: [192.0.2.0/24]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partners, namespace: prod, labels: {list: partner}}
spec: {nets: [198.51.100.0/24]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  order: 1
  selector: app == 'web'
  ingress:
  - {action: Deny, source: {selector: list == 'bad'}}
  - {action: Allow, source: {nets: [10.0.0.0/8], notNets: [10.0.1.0/24]}}
  - {action: Allow, source: {notSelector: has(list), nets: [203.0.113.0/24]}}
  - {action: Allow, source: {selector: list == 'partner'}}
"#,
    );
    let d = |src: &str| by(&eval(&y, &tcp(src, "10.0.0.1", 80)), "ingress");
    assert_eq!(
        d("192.0.2.7"),
        r#"{"policy":"g","rule":0,"tier":"default"}"#
    );
    assert_eq!(d("10.0.0.2"), r#"{"policy":"g","rule":1,"tier":"default"}"#);
    assert_eq!(d("10.0.1.9"), r#"{"end_of_tier":true,"tier":"default"}"#);
    assert_eq!(
        d("203.0.113.5"),
        r#"{"policy":"g","rule":2,"tier":"default"}"#
    );
    // GNP without scope: the selector reaches namespaced sets too.
    assert_eq!(
        d("198.51.100.1"),
        r#"{"policy":"g","rule":3,"tier":"default"}"#
    );
}

#[test]
fn namespace_scopes() {
    let y = with(
        r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: gs, labels: {kind: set}}
spec: {nets: [192.0.2.0/24]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: ns-set, namespace: dev, labels: {kind: set}}
spec: {nets: [198.51.100.0/24]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: np, namespace: prod}
spec:
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [1]}, source: {selector: app == 'client'}}
  - {action: Allow, protocol: TCP, destination: {ports: [2]}, source: {selector: kind == 'set', namespaceSelector: global()}}
  - {action: Allow, protocol: TCP, destination: {ports: [3]}, source: {namespaceSelector: all()}}
  - {action: Allow, protocol: TCP, destination: {ports: [4]}, source: {namespaceSelector: "!has(env)"}}
  - {action: Allow, protocol: TCP, destination: {ports: [5]}, source: {notSelector: app == 'db'}}
"#,
    );
    let d = |src: &str, port: u16| by(&eval(&y, &tcp(src, "10.0.0.1", port)), "ingress");
    let eot = r#"{"end_of_tier":true,"tier":"default"}"#;
    // Rule 0: scope is the policy's namespace; client is in dev.
    assert_eq!(d("10.0.1.5", 1), eot);
    // Rule 1: global() picks the global set only.
    assert_eq!(
        d("192.0.2.1", 2),
        r#"{"policy":"prod/np","rule":1,"tier":"default"}"#
    );
    assert_eq!(d("198.51.100.1", 2), eot);
    // Rule 2: all() picks every namespaced object, not global sets.
    assert_eq!(
        d("198.51.100.1", 3),
        r#"{"policy":"prod/np","rule":2,"tier":"default"}"#
    );
    assert_eq!(
        d("10.0.1.5", 3),
        r#"{"policy":"prod/np","rule":2,"tier":"default"}"#
    );
    assert_eq!(d("192.0.2.1", 3), eot);
    // Rule 3: !has(env): dev has no Namespace doc (no env) and the global
    // set has no labels; prod has env.
    assert_eq!(
        d("10.0.1.5", 4),
        r#"{"policy":"prod/np","rule":3,"tier":"default"}"#
    );
    assert_eq!(
        d("192.0.2.1", 4),
        r#"{"policy":"prod/np","rule":3,"tier":"default"}"#
    );
    assert_eq!(d("10.0.0.2", 4), eot);
    // Rule 4: notSelector alone in a NetworkPolicy: addresses of prod that
    // are not db.
    assert_eq!(
        d("10.0.0.1", 5),
        r#"{"policy":"prod/np","rule":4,"tier":"default"}"#
    );
    assert_eq!(d("10.0.0.2", 5), eot);
    assert_eq!(d("10.0.1.5", 5), eot);
}

// ---- section 3: ports, notPorts, named ports, protocols -------------------

#[test]
fn ports_and_named_ports() {
    let y = with(
        r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  ingress:
  - {action: Deny, protocol: TCP, destination: {ports: ["1000:1002", '22']}}
  - {action: Allow, protocol: TCP, destination: {ports: [http]}}
  - {action: Allow, protocol: UDP, destination: {ports: [dns]}}
  - {action: Allow, protocol: TCP, destination: {selector: app == 'db', notPorts: [http, 7000]}}
  - {action: Allow, protocol: 47}
"#,
    );
    let d = |dst: &str, port: u16| by(&eval(&y, &tcp("10.0.1.5", dst, port)), "ingress");
    let eot = r#"{"end_of_tier":true,"tier":"default"}"#;
    assert_eq!(
        d("10.0.0.1", 1001),
        r#"{"policy":"p","rule":0,"tier":"default"}"#
    );
    assert_eq!(
        d("10.0.0.1", 22),
        r#"{"policy":"p","rule":0,"tier":"default"}"#
    );
    // http is 8080 on web, 9090 on db.
    assert_eq!(
        d("10.0.0.1", 8080),
        r#"{"policy":"p","rule":1,"tier":"default"}"#
    );
    assert_eq!(
        d("10.0.0.2", 9090),
        r#"{"policy":"p","rule":1,"tier":"default"}"#
    );
    // db: 9090 is http there → rule 1 first; 8080 is not http on db and
    // not 7000 → rule 3; 7000 → nothing.
    assert_eq!(
        d("10.0.0.2", 8080),
        r#"{"policy":"p","rule":3,"tier":"default"}"#
    );
    assert_eq!(d("10.0.0.2", 7000), eot);
    // dns is UDP 53 on web only; a TCP packet to 53 is not it.
    let udp = r#"{"proto": "udp", "src": "10.0.1.5", "sport": 1, "dst": "10.0.0.1", "dport": 53}"#;
    assert_eq!(
        by(&eval(&y, udp), "ingress"),
        r#"{"policy":"p","rule":2,"tier":"default"}"#
    );
    assert_eq!(d("10.0.0.1", 53), eot);
    let gre = r#"{"proto": 47, "src": "10.0.1.5", "dst": "10.0.0.1"}"#;
    assert_eq!(
        by(&eval(&y, gre), "ingress"),
        r#"{"policy":"p","rule":4,"tier":"default"}"#
    );
    // Ports without a port protocol are rejected.
    let e = load_str("t.yaml", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec:\n  ingress: [{action: Allow, destination: {ports: [80]}}]\n").unwrap_err();
    assert!(e.to_string().contains("spec.ingress[0].destination.ports: ports are only allowed with protocol TCP, UDP or SCTP"), "{e}");
}

#[test]
fn icmp_and_ipv6() {
    let y = with(
        r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: i}
spec:
  ingress:
  - {action: Allow, protocol: ICMP, icmp: {type: 3, code: 1}}
  - {action: Deny, protocol: ICMP, notICMP: {type: 8}}
  - {action: Allow, protocol: ICMPv6, icmp: {type: 128}}
  - {action: Allow, ipVersion: 6, protocol: TCP, source: {nets: ["fd00::/64"]}}
  - {action: Deny, notProtocol: ICMP}
"#,
    );
    let icmp = |t: u8, c: u8| {
        format!(
            r#"{{"proto": "icmp", "src": "10.0.1.5", "dst": "10.0.0.1", "icmp_type": {t}, "icmp_code": {c}}}"#
        )
    };
    let d = |p: &str| by(&eval(&y, p), "ingress");
    assert_eq!(
        d(&icmp(3, 1)),
        r#"{"policy":"i","rule":0,"tier":"default"}"#
    );
    assert_eq!(
        d(&icmp(3, 0)),
        r#"{"policy":"i","rule":1,"tier":"default"}"#
    );
    assert_eq!(d(&icmp(8, 0)), r#"{"end_of_tier":true,"tier":"default"}"#);
    let v6 = r#"{"proto": "icmpv6", "src": "fd00::9", "dst": "fd00::1", "icmp_type": 128, "icmp_code": 0}"#;
    assert_eq!(d(v6), r#"{"policy":"i","rule":2,"tier":"default"}"#);
    let t6 = r#"{"proto": "tcp", "src": "fd00::9", "sport": 1, "dst": "fd00::2", "dport": 5}"#;
    let v = eval(&y, t6);
    assert_eq!(
        by(&v, "ingress"),
        r#"{"policy":"i","rule":3,"tier":"default"}"#
    );
    assert_eq!(v["ingress"]["endpoint"], "prod/db");
    // ipVersion 6 does not match IPv4.
    assert_eq!(
        d(&tcp("10.0.1.5", "10.0.0.1", 1)),
        r#"{"policy":"i","rule":4,"tier":"default"}"#
    );
    // icmp needs protocol ICMP/ICMPv6.
    let e = load_str("t.yaml", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec:\n  ingress: [{action: Allow, icmp: {type: 8}}]\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("spec.ingress[0].icmp: icmp needs protocol ICMP or ICMPv6"),
        "{e}"
    );
}

// ---- section 3: whole verdict, endpoints ----------------------------------

#[test]
fn whole_verdict_and_single_addresses() {
    let y = r#"
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: big, namespace: a}
spec: {ipNetworks: [10.2.4.4/32]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: small, namespace: a}
spec: {ipNetworks: [10.2.3.4]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: e}
spec: {types: [Egress], egress: [{action: Allow}]}
"#;
    let v = eval(y, &tcp("10.2.3.4", "10.2.4.4", 80));
    assert_eq!(v["egress"]["endpoint"], "a/small");
    assert_eq!(v["ingress"]["endpoint"], "a/big");
    assert_eq!(v["egress"]["verdict"], "allow");
    assert_eq!(v["ingress"]["verdict"], "deny");
    assert_eq!(v["verdict"], "deny");
    let v = eval(y, &tcp("10.9.9.9", "10.8.8.8", 80));
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["egress"]["decided_by"], Value::Null);
    let e = load_str("t.yaml", &format!("{y}---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: dup, namespace: b}}\nspec: {{ipNetworks: [10.2.3.4/32]}}\n")).unwrap_err();
    assert!(
        e.to_string().contains(
            "doc 3: spec.ipNetworks[0]: 10.2.3.4/32 is also listed by WorkloadEndpoint a/small"
        ),
        "{e}"
    );
    // Amended bullet 1: an endpoint's ipNetworks are single addresses; a
    // wider prefix is an error (Calico's validator), not a prefix it owns.
    let e = load_str("t.yaml", &y.replace("10.2.4.4/32", "10.2.0.0/16")).unwrap_err();
    assert!(
        e.to_string()
            .contains("doc 0: spec.ipNetworks[0]: 10.2.0.0/16 is not a single address (/32)"),
        "{e}"
    );
}

// ---- section 4: Kubernetes NetworkPolicy ----------------------------------

#[test]
fn kubernetes_policies() {
    let y = with(
        r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: db}}}]
    ports: [{port: 5432}]
  - from: [{namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [dev]}]}}]
    ports: [{protocol: UDP, port: 8000, endPort: 8100}]
  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.0/24]}}]
  - ports: [{port: http}]
  egress:
  - to: [{podSelector: {matchLabels: {app: db}}}]
    ports: [{port: http}]
"#,
    );
    let d = |src: &str, dst: &str, port: u16, dir: &str| by(&eval(&y, &tcp(src, dst, port)), dir);
    let key =
        |r: u32| format!(r#"{{"policy":"prod/knp.default.web","rule":{r},"tier":"default"}}"#);
    let eot = r#"{"end_of_tier":true,"tier":"default"}"#;
    assert_eq!(d("10.0.0.2", "10.0.0.1", 5432, "ingress"), key(0));
    // ipBlock except: dev's 10.0.1.5 is excepted → no rule matches TCP 5432.
    assert_eq!(d("10.0.1.5", "10.0.0.1", 5432, "ingress"), eot);
    assert_eq!(d("10.200.0.1", "10.0.0.1", 5432, "ingress"), key(2));
    let udp =
        r#"{"proto": "udp", "src": "10.0.1.5", "sport": 1, "dst": "10.0.0.1", "dport": 8100}"#;
    assert_eq!(by(&eval(&y, udp), "ingress"), key(1));
    // Named port in ingress: any endpoint owning the destination declaring it.
    assert_eq!(d("192.0.2.1", "10.0.0.1", 8080, "ingress"), key(3));
    // Egress: policyTypes defaults to [Ingress, Egress] (egress has rules);
    // http is looked up on the peer's endpoints (db: 9090).
    assert_eq!(d("10.0.0.1", "10.0.0.2", 9090, "egress"), key(0));
    assert_eq!(d("10.0.0.1", "10.0.0.2", 8080, "egress"), eot);
    // Does not apply to db (podSelector), so db has no policy at all.
    assert_eq!(
        d("10.0.1.5", "10.0.0.2", 1, "ingress"),
        r#"{"no_match":true}"#
    );
}

#[test]
fn kubernetes_policy_types_default() {
    let y = with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: d, namespace: prod}\nspec:\n  podSelector: {}\n  egress: []\n");
    // egress: [] → policyTypes [Ingress] only.
    let v = eval(&y, &tcp("10.0.0.1", "10.0.0.2", 1));
    assert_eq!(by(&v, "egress"), r#"{"no_match":true}"#);
    assert_eq!(
        by(&v, "ingress"),
        r#"{"end_of_tier":true,"tier":"default"}"#
    );
}

#[test]
fn flow_key_is_small() {
    assert!(std::mem::size_of::<FlowKey>() <= 48);
    assert!(std::mem::size_of::<policy_compiler::Verdict>() <= 40);
}

// ---- "Changes on 2026-12-05 to follow Calico", one test per bullet ------

fn udp(src: &str, dst: &str, dport: u16) -> String {
    format!(r#"{{"proto": "udp", "src": "{src}", "sport": 1, "dst": "{dst}", "dport": {dport}}}"#)
}

fn load_err(yaml: &str) -> String {
    load_str("t.yaml", yaml).unwrap_err().to_string()
}

#[test]
fn amended_not_selector_is_folded_into_the_positive_selector() {
    // Two owners of 192.0.2.7: a GlobalNetworkSet labelled bad and one
    // labelled good. With a positive selector the notSelector is tested
    // per owner: the good set still matches. Without one, any owner the
    // notSelector matches excludes the address.
    let y = with(
        r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: bad, labels: {list: bad}}
spec: {nets: [192.0.2.0/24]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: good, labels: {list: good}}
spec: {nets: [192.0.2.0/28]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  selector: app == 'web'
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: has(list), notSelector: list == 'bad'}}
  - {action: Allow, protocol: UDP, source: {notSelector: list == 'bad'}}
"#,
    );
    let d = |pkt: &str| by(&eval(&y, pkt), "ingress");
    let r0 = r#"{"policy":"g","rule":0,"tier":"default"}"#;
    let r1 = r#"{"policy":"g","rule":1,"tier":"default"}"#;
    let eot = r#"{"end_of_tier":true,"tier":"default"}"#;
    assert_eq!(d(&tcp("192.0.2.7", "10.0.0.1", 80)), r0, "good owns it too");
    assert_eq!(
        d(&tcp("192.0.2.77", "10.0.0.1", 80)),
        eot,
        "only bad owns it"
    );
    assert_eq!(d(&udp("192.0.2.7", "10.0.0.1", 80)), eot, "bad owns it");
    assert_eq!(d(&udp("203.0.113.1", "10.0.0.1", 80)), r1, "no owner");
    // In a NetworkPolicy the namespace is the scope: notSelector alone is
    // a positive selector over the namespace's objects.
    let np = with(
        r#"apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: n, namespace: prod}
spec:
  selector: app == 'web'
  ingress: [{action: Allow, source: {notSelector: app == 'db'}}]
"#,
    );
    let d = |src: &str| by(&eval(&np, &tcp(src, "10.0.0.1", 80)), "ingress");
    assert_eq!(
        d("10.0.0.1"),
        r#"{"policy":"prod/n","rule":0,"tier":"default"}"#
    );
    assert_eq!(d("10.0.0.2"), eot, "db is excluded");
    assert_eq!(d("10.0.1.5"), eot, "dev's client is outside the scope");
    assert_eq!(d("203.0.113.1"), eot, "no owner in the scope");
}

#[test]
fn amended_equal_orders_sort_on_name_namespace_kind() {
    // Keys sort "a-pol" < "prod/a" < "prod/knp.default.a"; Felix sorts
    // "a-pol//GlobalNetworkPolicy" ('-' is below '/') <
    // "a/prod/KubernetesNetworkPolicy" < "a/prod/NetworkPolicy".
    let y = with(
        r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: a-pol}
spec: {order: 1000, selector: app == 'web', ingress: [{action: Deny, protocol: UDP}]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: a, namespace: prod}
spec: {order: 1000, selector: app == 'web', ingress: [{action: Deny}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]
"#,
    );
    let d = |pkt: &str| by(&eval(&y, pkt), "ingress");
    assert_eq!(
        d(&udp("10.0.1.5", "10.0.0.1", 80)),
        r#"{"policy":"a-pol","rule":0,"tier":"default"}"#
    );
    // The Kubernetes policy runs before the Calico NetworkPolicy of the
    // same name and namespace (KubernetesNetworkPolicy < NetworkPolicy).
    assert_eq!(
        d(&tcp("10.0.1.5", "10.0.0.1", 80)),
        r#"{"policy":"prod/knp.default.a","rule":0,"tier":"default"}"#
    );
    assert_eq!(
        d(&tcp("10.0.1.5", "10.0.0.1", 81)),
        r#"{"policy":"prod/a","rule":0,"tier":"default"}"#
    );
}

#[test]
fn amended_a_missing_profile_denies() {
    // (profiles_and_labels_to_apply checks the decision and its place in
    // the profile list.) An endpoint whose only profile has no document
    // denies both ways, where it used to reach no_match after skipping it.
    let y = "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: w, namespace: ns}\nspec: {ipNetworks: [10.1.0.1/32], profiles: [kns.ns]}\n";
    let v = eval(y, &tcp("10.1.0.1", "10.1.0.1", 80));
    assert_eq!(v["verdict"], "deny");
    assert_eq!(by(&v, "egress"), r#"{"profile":"kns.ns","rule":0}"#);
    assert_eq!(by(&v, "ingress"), r#"{"profile":"kns.ns","rule":0}"#);
}

#[test]
fn amended_a_network_set_inherits_its_namespace_profile_labels() {
    let y = with(
        r#"apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.prod}
spec: {labelsToApply: {zone: inside, list: from-profile}}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: s, namespace: prod, labels: {list: own}}
spec: {nets: [198.51.100.0/24]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  selector: app == 'web'
  ingress:
  - {action: Allow, source: {selector: zone == 'inside' && list == 'own'}}
"#,
    );
    let v = eval(&y, &tcp("198.51.100.1", "10.0.0.1", 80));
    assert_eq!(
        by(&v, "ingress"),
        r#"{"policy":"g","rule":0,"tier":"default"}"#
    );
}

#[test]
fn amended_a_rule_with_cidrs_or_icmp_by_name_is_of_one_family() {
    let y = with(
        r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  selector: app == 'web'
  ingress:
  - {action: Allow, protocol: TCP, source: {notNets: [10.9.0.0/16]}}
  - {action: Allow, protocol: ICMP}
  - {action: Deny, protocol: 1}
  - {action: Allow, protocol: ICMPv6}
  - {action: Deny, protocol: ICMPv6, source: {notNets: [10.9.0.0/16]}}
"#,
    );
    let d = |pkt: &str| by(&eval(&y, pkt), "ingress");
    let rule = |i: u32| format!(r#"{{"policy":"g","rule":{i},"tier":"default"}}"#);
    let eot = r#"{"end_of_tier":true,"tier":"default"}"#;
    // notNets of IPv4 only: an IPv4 source outside it matches; an IPv6
    // source never does (it used to).
    assert_eq!(d(&tcp("10.0.1.5", "10.0.0.1", 80)), rule(0));
    assert_eq!(d(&tcp("10.9.0.1", "10.0.0.1", 80)), eot);
    assert_eq!(d(&tcp("fd00::9", "fd00::1", 80)), eot);
    // `ICMP` by name: IPv4 packets only; `ICMPv6` IPv6 only; the number 1
    // is not limited (an IPv6 packet with protocol 1 reaches rule 2).
    let icmp = |src: &str, dst: &str, p: &str| {
        format!(
            r#"{{"proto": "{p}", "src": "{src}", "dst": "{dst}", "icmp_type": 8, "icmp_code": 0}}"#
        )
    };
    assert_eq!(d(&icmp("10.0.1.5", "10.0.0.1", "icmp")), rule(1));
    assert_eq!(d(&icmp("fd00::9", "fd00::1", "icmp")), rule(2));
    assert_eq!(d(&icmp("fd00::9", "fd00::1", "icmpv6")), rule(3));
    assert_eq!(d(&icmp("10.0.1.5", "10.0.0.1", "icmpv6")), eot);
    // ICMPv6 with IPv4 CIDRs: of both families at once, so nothing (rule
    // 4 never decides: rule 3 is before it, and a rule of its own shows it).
    let y4 = y.replace(
        "  - {action: Allow, protocol: ICMPv6}\n",
        "  - {action: Log}\n",
    );
    let d4 = |pkt: &str| by(&eval(&y4, pkt), "ingress");
    assert_eq!(d4(&icmp("fd00::9", "fd00::1", "icmpv6")), eot);
}

#[test]
fn amended_rule_errors_as_calicos_validator() {
    let gnp = |rule: &str| {
        format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec:\n  ingress: [{rule}]\n")
    };
    for (rule, want) in [
        ("{action: Allow, protocol: tcp}", "spec.ingress[0].protocol: \"tcp\" is not a protocol"),
        ("{action: Allow, notProtocol: Udp}", "spec.ingress[0].notProtocol: \"Udp\" is not a protocol"),
        (
            "{action: Allow, protocol: UDPLite, destination: {ports: [53]}}",
            "spec.ingress[0].destination.ports: ports are only allowed with protocol TCP, UDP or SCTP",
        ),
        (
            "{action: Allow, protocol: 1, icmp: {type: 8}}",
            "spec.ingress[0].icmp: icmp needs protocol ICMP or ICMPv6 (by name)",
        ),
        (
            "{action: Allow, ipVersion: 6, protocol: ICMP}",
            "spec.ingress[0].protocol: ICMP is IPv4 only but ipVersion is 6",
        ),
        (
            "{action: Allow, ipVersion: 4, notProtocol: ICMPv6}",
            "spec.ingress[0].notProtocol: ICMPv6 is IPv6 only but ipVersion is 4",
        ),
        (
            "{action: Allow, ipVersion: 6, source: {nets: [10.0.0.0/8]}}",
            "spec.ingress[0].source.nets[0]: 10.0.0.0/8 is IPv4 but ipVersion is IPv6",
        ),
        (
            "{action: Allow, source: {nets: [10.0.0.0/8]}, destination: {notNets: ['fd00::/8']}}",
            "spec.ingress[0].destination.notNets[0]: fd00::/8 is IPv6 but source.nets[0] is IPv4",
        ),
        (
            "{action: Allow, source: {namespaceSelector: global() || has(x)}}",
            "global() cannot be combined with other terms",
        ),
    ] {
        let e = load_err(&gnp(rule));
        assert!(e.contains(want), "{rule}: {e}");
    }
    // Still accepted: numbers and strings of digits, ICMP by name with
    // its own version.
    for rule in [
        "{action: Allow, protocol: '17', destination: {ports: [53]}}",
        "{action: Allow, ipVersion: 4, protocol: ICMP, icmp: {type: 8}}",
        "{action: Allow, source: {namespaceSelector: global()}}",
    ] {
        assert!(load_str("t.yaml", &gnp(rule)).is_ok(), "{rule}");
    }
}

#[test]
fn amended_endpoint_ports_need_tcp_udp_or_sctp() {
    let wep = |ports: &str| {
        format!("apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: w, namespace: ns}}\nspec: {{ipNetworks: [10.1.0.1/32], ports: [{ports}]}}\n")
    };
    assert!(load_err(&wep("{name: http, port: 80}"))
        .contains("spec.ports[0]: missing field `protocol`"));
    assert!(load_err(&wep("{name: x, port: 80, protocol: UDPLite}"))
        .contains("spec.ports[0].protocol: a port's protocol must be TCP, UDP or SCTP"));
    assert!(load_str("t.yaml", &wep("{name: s, port: 80, protocol: SCTP}")).is_ok());
}
