//! Checks across the documents of a set: objects defined twice, tiers
//! named by policies, prefixes listed by two endpoints (problems); profiles
//! named by endpoints (warnings).

use std::collections::{BTreeMap, HashMap};

use super::report::{Problem, Warning};
use crate::model::{Cidr, Object, ObjectName, Origin, PolicySet};

/// Every cross-document problem of `set` into `problems`, in the order of
/// the checks; the warnings.
pub(super) fn cross_document(set: &PolicySet, problems: &mut Vec<Problem>) -> Vec<Warning> {
    duplicate_objects(set, problems);
    missing_tiers(set, problems);
    shared_prefixes(set, problems);
    missing_profiles(set)
}

/// An object of a kind and name defined before.
fn duplicate_objects(set: &PolicySet, problems: &mut Vec<Problem>) {
    let mut seen: HashMap<(&'static str, ObjectName), Origin> = HashMap::new();
    for l in &set.objects {
        let key = (l.object.kind(), l.object.name());
        if let Some(first) = seen.get(&key) {
            let msg = format!(
                "duplicate {} {:?} (also defined in {}{})",
                key.0,
                key.1.to_string(),
                first,
                if first.prefix.is_empty() {
                    String::new()
                } else {
                    format!(" at {}", first.prefix)
                }
            );
            problems.push(Problem::at(&l.origin, "metadata.name", msg));
        } else {
            seen.insert(key, l.origin.clone());
        }
    }
}

/// A Calico policy naming a tier without a Tier document (other than
/// `default`).
fn missing_tiers(set: &PolicySet, problems: &mut Vec<Problem>) {
    let tiers: BTreeMap<String, ()> = set
        .objects
        .iter()
        .filter_map(|l| match &l.object {
            Object::Tier(t) => Some((t.name.clone(), ())),
            _ => None,
        })
        .collect();
    for l in &set.objects {
        if let Object::GlobalNetworkPolicy(p) | Object::NetworkPolicy(p) = &l.object {
            let t = p.tier();
            if t != "default" && !tiers.contains_key(t) {
                let msg = format!("tier {t:?} has no Tier document");
                problems.push(Problem::at(&l.origin, "spec.tier", msg));
            }
        }
    }
}

/// No two endpoints may list the same prefix.
fn shared_prefixes(set: &PolicySet, problems: &mut Vec<Problem>) {
    let mut owners: HashMap<Cidr, (ObjectName, Origin)> = HashMap::new();
    for l in &set.objects {
        if let Object::WorkloadEndpoint(w) = &l.object {
            for (i, c) in w.spec.ip_networks.iter().flatten().enumerate() {
                match owners.get(c) {
                    Some((other, oo)) if *other != w.name => problems.push(Problem::at(
                        &l.origin,
                        &format!("spec.ipNetworks[{i}]"),
                        format!("{c} is also listed by WorkloadEndpoint {other} ({oo})"),
                    )),
                    Some(_) => {}
                    None => {
                        owners.insert(*c, (w.name.clone(), l.origin.clone()));
                    }
                }
            }
        }
    }
}

/// Warnings: profiles named by endpoints without a Profile document (they
/// deny, policy.md section 3).
fn missing_profiles(set: &PolicySet) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let profiles: BTreeMap<&str, ()> = set
        .objects
        .iter()
        .filter_map(|l| match &l.object {
            Object::Profile(p) => Some((p.name.as_str(), ())),
            _ => None,
        })
        .collect();
    for l in &set.objects {
        if let Object::WorkloadEndpoint(w) = &l.object {
            for (i, p) in w.spec.profiles.iter().flatten().enumerate() {
                if !profiles.contains_key(p.as_str()) {
                    warnings.push(Warning {
                        origin: l.origin.clone(),
                        field: l.origin.field(&format!("spec.profiles[{i}]")),
                        msg: format!(
                            "profile {p:?} has no Profile document; it denies everything (Calico's default-drop profile)"
                        ),
                    });
                }
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::objects;
    use crate::model::Loaded;

    /// A set of the documents `docs` (one object each, documents 0, 1, ...
    /// of `t.yaml`).
    fn set(docs: &[&str]) -> PolicySet {
        let mut s = PolicySet::default();
        for (doc, d) in docs.iter().enumerate() {
            let v: serde_norway::Value = serde_norway::from_str(d).unwrap();
            let object = match v["kind"].as_str() {
                Some("Tier") => objects::tier(v),
                Some("GlobalNetworkPolicy") => objects::calico_policy(v, true),
                Some("Profile") => objects::profile(v),
                Some("WorkloadEndpoint") => objects::wep(v),
                k => panic!("{k:?}"),
            };
            s.objects.push(Loaded {
                origin: Origin {
                    file: "t.yaml".into(),
                    doc,
                    prefix: String::new(),
                },
                object: object.unwrap(),
            });
        }
        s
    }

    fn problems(docs: &[&str]) -> (Vec<String>, Vec<String>) {
        let mut p = Vec::new();
        let w = cross_document(&set(docs), &mut p);
        (
            p.iter().map(ToString::to_string).collect(),
            w.iter().map(ToString::to_string).collect(),
        )
    }

    const WEP: &str = "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: w, namespace: prod}\nspec: {ipNetworks: [10.0.0.1/32], profiles: [p]}\n";

    #[test]
    fn duplicates_and_shared_prefixes() {
        let other = WEP.replace("name: w,", "name: v,");
        let (p, _) = problems(&[WEP, WEP, &other]);
        assert_eq!(
            p,
            [
                "t.yaml doc 1: metadata.name: duplicate WorkloadEndpoint \"prod/w\" (also defined in t.yaml doc 0)",
                "t.yaml doc 2: spec.ipNetworks[0]: 10.0.0.1/32 is also listed by WorkloadEndpoint prod/w (t.yaml doc 0)",
            ]
        );
    }

    #[test]
    fn tiers_must_exist_profiles_should() {
        let gnp = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {tier: t}\n";
        let (p, w) = problems(&[gnp, WEP]);
        assert_eq!(
            p,
            ["t.yaml doc 0: spec.tier: tier \"t\" has no Tier document"]
        );
        assert_eq!(
            w,
            ["t.yaml doc 1: spec.profiles[0]: profile \"p\" has no Profile document; it denies everything (Calico's default-drop profile)"]
        );
        let tier = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\n";
        let prof = "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: p}\n";
        assert_eq!(problems(&[tier, gnp, prof, WEP]), (vec![], vec![]));
    }
}
