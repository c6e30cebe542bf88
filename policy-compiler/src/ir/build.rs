//! Building the IR (policy.md section 3, *Evaluation*): the endpoints and
//! their prefixes; per direction, the endpoint classes (endpoints to which
//! the same policies and profiles apply), one segment per tier and per
//! profile that some class walks, and each class's list of segments; the
//! decision table over both directions.

use ahash::AHashMap as HashMap;
use std::collections::BTreeMap;

use super::calico;
use super::k8s;
use super::policies::{applies, ordered_tiers, policies_by_tier, PolicyRef};
use super::resolve::{profiles_and_endpoints, wep_effective, Resolver};
use super::types::{
    Decision, DecisionInfo, Dir, DirIr, EndpointIr, Ir, IrError, IrRule, RuleAction, Segment,
    SegmentKind, Term, MAX_TERMS,
};
use crate::model::{
    Action, Cidr, K8sPolicy, PolicySet, Profile, Rule, Tier, TierAction, WorkloadEndpoint,
};
use crate::ranges::RangeSet;
use crate::selector::Labels;

/// Per tier and policy index: the policies that apply; the profiles.
type Signature = (Vec<(usize, usize)>, Vec<usize>);

/// What both directions read of the set.
struct Inputs<'s> {
    /// Tiers in evaluation order.
    tiers: Vec<Tier>,
    /// Per tier (as `tiers`), its policies in evaluation order.
    by_tier: Vec<Vec<PolicyRef<'s>>>,
    /// Profiles by name.
    profiles: HashMap<&'s str, &'s Profile>,
    /// Names of the profiles with a document and of those endpoints name
    /// without one, sorted: a profile's index in a [`Signature`].
    profile_names: Vec<&'s str>,
    /// WorkloadEndpoints in load order.
    weps: Vec<&'s WorkloadEndpoint>,
    /// Effective labels of each endpoint.
    wep_labels: Vec<Labels>,
}

/// Compile a policy set into the IR.
pub fn build(set: &PolicySet) -> Result<Ir, IrError> {
    let tiers = ordered_tiers(set);
    let (profiles, weps) = profiles_and_endpoints(set);
    let endpoints = endpoints(&weps)?;
    let wep_labels: Vec<Labels> = weps.iter().map(|w| wep_effective(w, &profiles)).collect();
    let mut res = Resolver::new(set, &weps, &wep_labels);
    let by_tier = policies_by_tier(set, &tiers)?;
    // Every profile named, with or without a document (a missing one
    // denies: Calico's default-drop profile).
    let mut profile_names: Vec<&str> = profiles.keys().copied().collect();
    profile_names.extend(
        weps.iter()
            .flat_map(|w| w.spec.profiles.iter().flatten())
            .map(String::as_str),
    );
    profile_names.sort_unstable();
    profile_names.dedup();
    let inputs = Inputs {
        tiers,
        by_tier,
        profiles,
        profile_names,
        weps,
        wep_labels,
    };
    let mut decisions = Decisions::new();
    let mut dirs: [DirIr; 2] = Default::default();
    for dir in [Dir::Egress, Dir::Ingress] {
        dirs[dir.idx()] = direction(&inputs, &mut res, dir, &mut decisions)?;
    }
    Ok(Ir {
        endpoints,
        dirs,
        decisions: decisions.0,
    })
}

/// The endpoints, in load order, with their prefixes; two endpoints
/// listing the same prefix are an error.
fn endpoints(weps: &[&WorkloadEndpoint]) -> Result<Vec<EndpointIr>, IrError> {
    let mut owners: HashMap<Cidr, usize> = HashMap::new();
    let mut endpoints = Vec::new();
    for (i, w) in weps.iter().enumerate() {
        let nets: Vec<Cidr> = w.spec.ip_networks.clone().unwrap_or_default();
        for c in &nets {
            if let Some(&o) = owners.get(c) {
                if o != i {
                    return Err(IrError::DuplicatePrefix {
                        prefix: c.to_string(),
                        a: weps[o].name.to_string(),
                        b: w.name.to_string(),
                    });
                }
            }
            owners.insert(*c, i);
        }
        endpoints.push(EndpointIr {
            name: w.name.to_string(),
            nets,
        });
    }
    Ok(endpoints)
}

/// The decision table being built: `Decision(i)` stands for entry `i`.
struct Decisions(Vec<DecisionInfo>);

impl Decisions {
    /// The fixed entries: [`Decision::NONE`] and the two `no_match`.
    fn new() -> Decisions {
        Decisions(vec![
            DecisionInfo::NoEndpoint,
            DecisionInfo::NoMatch { dir: Dir::Egress },
            DecisionInfo::NoMatch { dir: Dir::Ingress },
        ])
    }

    /// Append `info`; its decision.
    fn add(&mut self, info: DecisionInfo) -> Decision {
        self.0.push(info);
        Decision(self.0.len() as u32 - 1)
    }
}

/// One direction of the IR.
fn direction(
    inputs: &Inputs<'_>,
    res: &mut Resolver<'_>,
    dir: Dir,
    decisions: &mut Decisions,
) -> Result<DirIr, IrError> {
    let sigs = signatures(inputs, res, dir);
    let (classes, endpoint_class) = classes(&sigs);
    let mut segments = Vec::new();
    let tier_seg = tier_segments(inputs, res, dir, &classes, decisions, &mut segments)?;
    let prof_seg = profile_segments(inputs, res, dir, &classes, decisions, &mut segments)?;
    Ok(DirIr {
        endpoint_class,
        class_segments: class_segments(&classes, &tier_seg, &prof_seg),
        segments,
    })
}

/// Per endpoint, the (tier, policy) pairs that apply to it in `dir` and
/// its profiles (indices into `profile_names`).
fn signatures(inputs: &Inputs<'_>, res: &Resolver<'_>, dir: Dir) -> Vec<Signature> {
    let profile_idx: HashMap<&str, usize> = inputs
        .profile_names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i))
        .collect();
    // Candidates per endpoint: the cluster-wide policies and those of
    // its namespace (a namespaced policy applies only there), in
    // (tier, policy) order.
    let mut global_pols: Vec<(usize, usize)> = Vec::new();
    let mut ns_pols: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    for (ti, ps) in inputs.by_tier.iter().enumerate() {
        for (pi, p) in ps.iter().enumerate() {
            match p.namespace() {
                Some(n) => ns_pols.entry(n).or_default().push((ti, pi)),
                None => global_pols.push((ti, pi)),
            }
        }
    }
    let no_pols: Vec<(usize, usize)> = Vec::new();
    let mut sigs: Vec<Signature> = Vec::with_capacity(inputs.weps.len());
    for (ei, w) in inputs.weps.iter().enumerate() {
        let ns = w.name.namespace.as_deref().unwrap_or("default");
        let nsl = res.ns_labels(ns);
        let mut cands: Vec<(usize, usize)> = global_pols.clone();
        cands.extend_from_slice(ns_pols.get(ns).unwrap_or(&no_pols));
        cands.sort_unstable();
        let mut pol = Vec::new();
        for (ti, pi) in cands {
            if applies(
                &inputs.by_tier[ti][pi],
                dir,
                ns,
                &inputs.wep_labels[ei],
                &nsl,
            ) {
                pol.push((ti, pi));
            }
        }
        let profs: Vec<usize> = w
            .spec
            .profiles
            .iter()
            .flatten()
            .map(|n| profile_idx[n.as_str()])
            .collect();
        sigs.push((pol, profs));
    }
    sigs
}

/// The classes (distinct signatures, sorted so that a policy's classes
/// tend to be contiguous) and each endpoint's class.
fn classes(sigs: &[Signature]) -> (Vec<Signature>, Vec<u32>) {
    let mut uniq: Vec<Signature> = sigs.to_vec();
    uniq.sort();
    uniq.dedup();
    let class_of: HashMap<&Signature, u32> = uniq
        .iter()
        .enumerate()
        .map(|(i, s)| (s, i as u32))
        .collect();
    let endpoint_class: Vec<u32> = sigs.iter().map(|s| class_of[s]).collect();
    (uniq, endpoint_class)
}

/// Appends to `segments` one segment per tier where a policy applies to
/// some class (in tier order); returns the segment of each such tier.
fn tier_segments(
    inputs: &Inputs<'_>,
    res: &mut Resolver<'_>,
    dir: Dir,
    classes: &[Signature],
    decisions: &mut Decisions,
    segments: &mut Vec<Segment>,
) -> Result<HashMap<usize, u32>, IrError> {
    // Which classes each (tier, policy) applies to.
    let mut pol_classes: BTreeMap<(usize, usize), Vec<(u128, u128)>> = BTreeMap::new();
    for (ci, (pol, _)) in classes.iter().enumerate() {
        for &tp in pol {
            pol_classes
                .entry(tp)
                .or_default()
                .push((ci as u128, ci as u128));
        }
    }
    let mut tier_seg: HashMap<usize, u32> = HashMap::new();
    for (ti, ps) in inputs.by_tier.iter().enumerate() {
        let tier = &inputs.tiers[ti];
        let mut rules = Vec::new();
        let mut any = false;
        for (pi, p) in ps.iter().enumerate() {
            let Some(cls) = pol_classes.get(&(ti, pi)) else {
                continue;
            };
            any = true;
            let classes = RangeSet::from_ranges(cls.clone());
            let key = p.key();
            let owner = Owner::Policy {
                dir,
                tier: &tier.name,
                key: &key,
            };
            match p {
                PolicyRef::Calico(cp) => {
                    let list = if dir == Dir::Egress {
                        &cp.spec.egress
                    } else {
                        &cp.spec.ingress
                    };
                    let ns = cp.name.namespace.as_deref();
                    calico_rules(res, list, ns, &classes, &owner, decisions, &mut rules)?;
                }
                PolicyRef::K8s(kp) => {
                    k8s_rules(res, kp, &classes, &owner, decisions, &mut rules)?;
                }
            }
        }
        if !any {
            continue;
        }
        let miss = match tier.default_action {
            TierAction::Deny => Some(decisions.add(DecisionInfo::EndOfTier {
                dir,
                tier: tier.name.clone(),
            })),
            TierAction::Pass => None,
        };
        tier_seg.insert(ti, segments.len() as u32);
        segments.push(Segment {
            kind: SegmentKind::Tier(tier.name.clone()),
            miss,
            rules,
        });
    }
    Ok(tier_seg)
}

/// Appends to `segments` one segment per profile that some class walks
/// (in order of first use); returns the segment of each such profile.
fn profile_segments(
    inputs: &Inputs<'_>,
    res: &mut Resolver<'_>,
    dir: Dir,
    classes: &[Signature],
    decisions: &mut Decisions,
    segments: &mut Vec<Segment>,
) -> Result<HashMap<usize, u32>, IrError> {
    let mut prof_seg: HashMap<usize, u32> = HashMap::new();
    let all_classes = RangeSet::range(0, (classes.len().max(1) - 1) as u128);
    for (_, profs) in classes {
        for &pi in profs {
            if prof_seg.contains_key(&pi) {
                continue;
            }
            let name = inputs.profile_names[pi];
            let owner = Owner::Profile { dir, name };
            let mut rules = Vec::new();
            match inputs.profiles.get(name) {
                Some(prof) => {
                    let list = if dir == Dir::Egress {
                        &prof.spec.egress
                    } else {
                        &prof.spec.ingress
                    };
                    calico_rules(res, list, None, &all_classes, &owner, decisions, &mut rules)?;
                }
                // No Profile document: one Deny rule matching everything,
                // as Felix's default-drop profile (policy.md section 3).
                None => rules.push(IrRule {
                    decision: decisions.add(owner.decision(0, Action::Deny)),
                    action: RuleAction::Deny,
                    classes: all_classes.clone(),
                    terms: vec![Term::full()],
                }),
            }
            prof_seg.insert(pi, segments.len() as u32);
            segments.push(Segment {
                kind: SegmentKind::Profile(name.to_string()),
                miss: None,
                rules,
            });
        }
    }
    Ok(prof_seg)
}

/// Per class, the segments it walks: its tiers' (each once, in order),
/// then its profiles'.
fn class_segments(
    classes: &[Signature],
    tier_seg: &HashMap<usize, u32>,
    prof_seg: &HashMap<usize, u32>,
) -> Vec<Vec<u32>> {
    classes
        .iter()
        .map(|(pol, profs)| {
            let mut v: Vec<u32> = Vec::new();
            for &(ti, _) in pol {
                let s = tier_seg[&ti];
                if v.last() != Some(&s) {
                    v.push(s);
                }
            }
            v.extend(profs.iter().map(|pi| prof_seg[pi]));
            v
        })
        .collect()
}

/// Whose rules are translated: names them in decisions and errors.
enum Owner<'s> {
    /// A policy (by key) of a tier.
    Policy {
        dir: Dir,
        tier: &'s str,
        key: &'s str,
    },
    /// A profile.
    Profile { dir: Dir, name: &'s str },
}

impl Owner<'_> {
    fn dir(&self) -> Dir {
        match self {
            Owner::Policy { dir, .. } | Owner::Profile { dir, .. } => *dir,
        }
    }

    /// The policy's key, or `profile NAME`.
    fn what(&self) -> String {
        match self {
            Owner::Policy { key, .. } => key.to_string(),
            Owner::Profile { name, .. } => format!("profile {name}"),
        }
    }

    /// What rule `rule` (its index as written) decides.
    fn decision(&self, rule: usize, action: Action) -> DecisionInfo {
        match self {
            Owner::Policy { dir, tier, key } => DecisionInfo::Rule {
                dir: *dir,
                tier: tier.to_string(),
                policy: key.to_string(),
                rule: rule as u32,
                action,
            },
            Owner::Profile { dir, name } => DecisionInfo::Profile {
                dir: *dir,
                profile: name.to_string(),
                rule: rule as u32,
                action,
            },
        }
    }
}

/// `terms`, or [`IrError::TooComplex`] when rule `rule` of `owner` has
/// more than [`MAX_TERMS`].
fn within_limit(terms: Vec<Term>, owner: &Owner<'_>, rule: usize) -> Result<Vec<Term>, IrError> {
    if terms.len() > MAX_TERMS {
        return Err(IrError::TooComplex {
            what: owner.what(),
            rule,
            limit: MAX_TERMS,
        });
    }
    Ok(terms)
}

/// Appends to `rules` the IR rules of Calico rule list `list` (one
/// direction of a policy in namespace `ns`, or of a profile), applying to
/// `classes`. `Log` rules never decide and are left out; indices count
/// every rule as written.
fn calico_rules(
    res: &mut Resolver<'_>,
    list: &Option<Vec<Rule>>,
    ns: Option<&str>,
    classes: &RangeSet,
    owner: &Owner<'_>,
    decisions: &mut Decisions,
    rules: &mut Vec<IrRule>,
) -> Result<(), IrError> {
    for (ri, r) in list.iter().flatten().enumerate() {
        let action = match r.action {
            Action::Log => continue,
            Action::Allow => RuleAction::Allow,
            Action::Deny => RuleAction::Deny,
            Action::Pass => RuleAction::Pass,
        };
        let terms = within_limit(calico::rule_terms(res, r, ns), owner, ri)?;
        rules.push(IrRule {
            decision: decisions.add(owner.decision(ri, r.action)),
            action,
            classes: classes.clone(),
            terms,
        });
    }
    Ok(())
}

/// Appends to `rules` the IR rules of Kubernetes policy `kp` in `owner`'s
/// direction, applying to `classes`: every rule allows.
fn k8s_rules(
    res: &mut Resolver<'_>,
    kp: &K8sPolicy,
    classes: &RangeSet,
    owner: &Owner<'_>,
    decisions: &mut Decisions,
    rules: &mut Vec<IrRule>,
) -> Result<(), IrError> {
    let egress = owner.dir() == Dir::Egress;
    let n = if egress {
        kp.spec.egress.as_ref().map_or(0, Vec::len)
    } else {
        kp.spec.ingress.as_ref().map_or(0, Vec::len)
    };
    for ri in 0..n {
        let terms = if egress {
            kp.spec
                .egress
                .as_ref()
                .map(|v| k8s::egress_terms(res, kp, &v[ri]))
        } else {
            kp.spec
                .ingress
                .as_ref()
                .map(|v| k8s::ingress_terms(res, kp, &v[ri]))
        }
        .unwrap_or_else(|| Ok(Vec::new()))
        .map_err(|msg| IrError::BadSelector {
            policy: owner.what(),
            msg,
        })?;
        let terms = within_limit(terms, owner, ri)?;
        rules.push(IrRule {
            decision: decisions.add(owner.decision(ri, Action::Allow)),
            action: RuleAction::Allow,
            classes: classes.clone(),
            terms,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Object;

    const SET: &str = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: first}
spec: {order: 10, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: all}
spec: {tier: first, selector: all(), ingress: [{action: Pass}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: web}
spec:
  selector: app == 'web'
  ingress: [{action: Log}, {action: Deny, protocol: UDP}]
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: base}
spec: {ingress: [{action: Allow}], egress: [{action: Allow}]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web1, namespace: prod, labels: {app: web}}
spec: {ipNetworks: [10.0.0.1/32]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: db, namespace: prod, labels: {app: db}}
spec: {ipNetworks: [10.0.0.2/32], profiles: [base]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web2, namespace: prod, labels: {app: web}}
spec: {ipNetworks: [10.0.0.3/32]}
"#;

    fn ir() -> Ir {
        build(&crate::loader::load_str("t.yaml", SET).unwrap().0).unwrap()
    }

    #[test]
    fn endpoints_with_the_same_policies_share_a_class() {
        let ir = ir();
        let names: Vec<&str> = ir.endpoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["prod/web1", "prod/db", "prod/web2"]);
        let ing = &ir.dirs[Dir::Ingress.idx()];
        let c = &ing.endpoint_class;
        assert_eq!(c[0], c[2]);
        assert_ne!(c[0], c[1]);
        assert_eq!(ing.num_classes(), 2);
        // Egress: no policy applies; only db has a profile.
        let eg = &ir.dirs[Dir::Egress.idx()];
        assert_eq!(eg.num_classes(), 2);
        assert!(eg.class_segments[eg.endpoint_class[0] as usize].is_empty());
    }

    #[test]
    fn segments_per_tier_and_profile() {
        let ir = ir();
        let ing = &ir.dirs[Dir::Ingress.idx()];
        let kinds: Vec<&SegmentKind> = ing.segments.iter().map(|s| &s.kind).collect();
        assert_eq!(
            kinds,
            [
                &SegmentKind::Tier("first".into()),
                &SegmentKind::Tier("default".into()),
                &SegmentKind::Profile("base".into()),
            ]
        );
        // `defaultAction: Pass` goes on; the default tier ends in a Deny.
        assert_eq!(ing.segments[0].miss, None);
        let end = ing.segments[1].miss.unwrap();
        assert_eq!(
            ir.decisions[end.0 as usize],
            DecisionInfo::EndOfTier {
                dir: Dir::Ingress,
                tier: "default".into()
            }
        );
        let web = ing.endpoint_class[0] as usize;
        let db = ing.endpoint_class[1] as usize;
        assert_eq!(ing.class_segments[web], [0, 1]);
        assert_eq!(ing.class_segments[db], [0, 2]);
    }

    #[test]
    fn log_rules_are_left_out_and_indices_kept() {
        let ir = ir();
        let rules = &ir.dirs[Dir::Ingress.idx()].segments[1].rules;
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].action, RuleAction::Deny);
        assert_eq!(
            ir.decisions[rules[0].decision.0 as usize],
            DecisionInfo::Rule {
                dir: Dir::Ingress,
                tier: "default".into(),
                policy: "web".into(),
                rule: 1,
                action: Action::Deny
            }
        );
        assert_eq!(
            ir.decisions[..3],
            [
                DecisionInfo::NoEndpoint,
                DecisionInfo::NoMatch { dir: Dir::Egress },
                DecisionInfo::NoMatch { dir: Dir::Ingress },
            ]
        );
    }

    #[test]
    fn two_endpoints_with_one_prefix_are_an_error() {
        let (mut set, _) = crate::loader::load_str("t.yaml", SET).unwrap();
        let mut copy = set
            .objects
            .iter()
            .find(|l| matches!(l.object, Object::WorkloadEndpoint(_)))
            .unwrap()
            .clone();
        if let Object::WorkloadEndpoint(w) = &mut copy.object {
            w.name.name = "copy".into();
        }
        set.objects.push(copy);
        assert_eq!(
            build(&set).err(),
            Some(IrError::DuplicatePrefix {
                prefix: "10.0.0.1/32".into(),
                a: "prod/web1".into(),
                b: "prod/copy".into()
            })
        );
    }
}
