//! The batch path when one endpoint owns every address (a policy for one
//! endpoint, as ClassBench sets are compiled): each direction is one engine
//! call for the whole batch, and a `Pass` or a miss that goes on finishes
//! one key at a time. Its answers must be those of `classify`, for every
//! engine.

// Test helpers unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use policy_compiler::compile::{Builder, Config, EngineKind};
use policy_compiler::ir::{
    Decision, DecisionInfo, Dir, DirIr, EndpointIr, Ir, IrRule, RuleAction, Segment, SegmentKind,
    Term,
};
use policy_compiler::model::{Action, Cidr};
use policy_compiler::ranges::{AddrSet, RangeSet};
use policy_compiler::{FlowKey, Verdict, L4};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn prefix(r: &mut Rng) -> AddrSet {
    let len = [0u8, 8, 24, 30, 32][r.below(5) as usize];
    let a = 0x0a00_0000 | (r.below(16) as u32) << 2;
    let a = if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - len))
    };
    AddrSet::from_cidrs([&Cidr::new(std::net::IpAddr::V4(a.into()), len)]).only_family(4)
}

/// Two tiers (the first with `Pass` rules and no end of tier) for the
/// egress of one endpoint that owns `0.0.0.0/0`; no ingress policy.
fn ir(r: &mut Rng) -> Ir {
    let mut decisions = vec![
        DecisionInfo::NoEndpoint,
        DecisionInfo::NoMatch { dir: Dir::Egress },
        DecisionInfo::NoMatch { dir: Dir::Ingress },
    ];
    let mut segments = Vec::new();
    for (t, tier) in ["first", "second"].iter().enumerate() {
        let mut rules = Vec::new();
        for i in 0..40 {
            let action = match r.below(4) {
                0 => RuleAction::Deny,
                1 if t == 0 => RuleAction::Pass,
                _ => RuleAction::Allow,
            };
            decisions.push(DecisionInfo::Rule {
                dir: Dir::Egress,
                tier: (*tier).into(),
                policy: "p".into(),
                rule: i,
                action: match action {
                    RuleAction::Allow => Action::Allow,
                    RuleAction::Deny => Action::Deny,
                    RuleAction::Pass => Action::Pass,
                },
            });
            let lo = r.below(4) as u128 * 1000;
            rules.push(IrRule {
                decision: Decision(decisions.len() as u32 - 1),
                action,
                classes: RangeSet::single(0),
                terms: vec![Term {
                    src: prefix(r),
                    dst: prefix(r),
                    proto: if r.below(3) == 0 {
                        RangeSet::full(255)
                    } else {
                        RangeSet::single(6)
                    },
                    sport: RangeSet::range(0, 65535),
                    dport: RangeSet::range(lo, lo + r.below(3000) as u128),
                    checks: Vec::new(),
                }],
            });
        }
        let miss = (t == 1).then(|| {
            decisions.push(DecisionInfo::EndOfTier {
                dir: Dir::Egress,
                tier: (*tier).into(),
            });
            Decision(decisions.len() as u32 - 1)
        });
        segments.push(Segment {
            kind: SegmentKind::Tier((*tier).into()),
            miss,
            rules,
        });
    }
    Ir {
        endpoints: vec![EndpointIr {
            name: "ns/all".into(),
            nets: vec![Cidr::new(std::net::IpAddr::V4(0.into()), 0)],
        }],
        dirs: [
            DirIr {
                endpoint_class: vec![0],
                class_segments: vec![vec![0, 1]],
                segments,
            },
            DirIr {
                endpoint_class: vec![0],
                class_segments: vec![vec![]],
                segments: vec![],
            },
        ],
        decisions,
    }
}

#[test]
fn batch_equals_single_when_one_endpoint_owns_every_address() {
    let configs = [
        Config::default(),
        Config {
            engine: EngineKind::CutTree,
            ..Config::default()
        },
        Config {
            dfa_leaf: 0,
            ..Config::default()
        },
    ];
    for seed in 1..40u64 {
        let mut r = Rng(seed);
        let ir = ir(&mut r);
        let keys: Vec<FlowKey> = (0..200)
            .map(|_| {
                FlowKey::v4(
                    0x0a00_0000 | r.below(80) as u32,
                    0x0a00_0000 | r.below(80) as u32,
                    [6, 17][r.below(2) as usize],
                    L4::Ports {
                        sport: r.below(65536) as u16,
                        dport: r.below(6000) as u16,
                    },
                )
            })
            .collect();
        for cfg in &configs {
            let c = Builder::with_config(cfg.clone()).compile_ir(&ir);
            let mut s = c.new_scratch();
            let mut out = vec![Verdict::default(); keys.len()];
            c.classify_batch(&keys, &mut out, &mut s);
            for (k, v) in keys.iter().zip(&out) {
                assert_eq!(*v, c.classify(k, &mut s), "seed {seed}, {cfg:?}, {k:?}");
            }
        }
    }
}
