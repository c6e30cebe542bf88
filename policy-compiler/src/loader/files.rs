//! Reading a set: paths into files (directories recursively, sorted), files
//! into YAML documents, documents and `kind: List` items into objects by
//! `apiVersion` and `kind`; then the cross-document checks.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

use super::checks::cross_document;
use super::node::Node;
use super::objects::{self, clean_path};
use super::report::{LoadError, Problem, Warning};
use crate::model::{Ignored, Loaded, Origin, PolicySet};

/// Load a policy set from files and directories.
pub fn load(paths: &[PathBuf]) -> Result<(PolicySet, Vec<Warning>), LoadError> {
    let mut l = Loader::default();
    let mut files = Vec::new();
    for p in paths {
        l.expand(p, &mut files);
    }
    for f in &files {
        match std::fs::read_to_string(f) {
            Ok(text) => l.load_text(f, &text),
            Err(e) => l.problem(f, None, "", format!("cannot read: {e}")),
        }
    }
    l.finish()
}

/// Load a policy set from YAML text (as if it were the file `name`).
pub fn load_str(name: &str, text: &str) -> Result<(PolicySet, Vec<Warning>), LoadError> {
    let mut l = Loader::default();
    l.load_text(Path::new(name), text);
    l.finish()
}

#[derive(Default)]
struct Loader {
    set: PolicySet,
    problems: Vec<Problem>,
}

impl Loader {
    fn problem(&mut self, file: &Path, doc: Option<usize>, field: &str, msg: String) {
        self.problems.push(Problem {
            file: file.to_path_buf(),
            doc,
            field: field.to_string(),
            msg,
        });
    }

    fn at(&mut self, o: &Origin, field: &str, msg: String) {
        self.problems.push(Problem::at(o, field, msg));
    }

    fn expand(&mut self, p: &Path, out: &mut Vec<PathBuf>) {
        if p.is_dir() {
            let mut stack = vec![p.to_path_buf()];
            let mut found = Vec::new();
            while let Some(d) = stack.pop() {
                match std::fs::read_dir(&d) {
                    Ok(rd) => {
                        for e in rd.flatten() {
                            let ep = e.path();
                            if ep.is_dir() {
                                stack.push(ep);
                            } else if ep.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                                found.push(ep);
                            }
                        }
                    }
                    Err(e) => self.problem(&d, None, "", format!("cannot read directory: {e}")),
                }
            }
            found.sort();
            out.extend(found);
        } else if p.exists() {
            out.push(p.to_path_buf());
        } else {
            self.problem(p, None, "", "no such file or directory".into());
        }
    }

    fn load_text(&mut self, file: &Path, text: &str) {
        for (doc, d) in serde_norway::Deserializer::from_str(text).enumerate() {
            let node = match Node::deserialize(d) {
                Ok(n) => n,
                Err(e) => {
                    self.problem(file, Some(doc), "", format!("YAML: {e}"));
                    // The parser cannot resume after a syntax error.
                    return;
                }
            };
            if let Err((path, key)) = node.check_duplicates(&mut String::new()) {
                self.problem(
                    file,
                    Some(doc),
                    &path,
                    format!("duplicate key `{key}` (YAML mapping keys must be unique)"),
                );
                continue;
            }
            let value = node.into_value();
            let origin = Origin {
                file: file.to_path_buf(),
                doc,
                prefix: String::new(),
            };
            match value {
                Value::Null => {}
                Value::Sequence(items) => {
                    for (i, v) in items.into_iter().enumerate() {
                        let o = Origin {
                            prefix: format!("[{i}]"),
                            ..origin.clone()
                        };
                        self.object(&o, v);
                    }
                }
                v => self.document(&origin, v),
            }
        }
    }

    /// A top-level document: an object or a `kind: List`.
    fn document(&mut self, origin: &Origin, v: Value) {
        if get_str(&v, "kind") == Some("List") {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields, rename_all = "camelCase")]
            struct List {
                #[serde(default)]
                api_version: Option<String>,
                // Declared so that `deny_unknown_fields` accepts it; never read.
                #[allow(dead_code)]
                kind: String,
                #[serde(default)]
                items: Option<Vec<Value>>,
                #[serde(default)]
                metadata: Ignored,
            }
            let l: List = match serde_path_to_error::deserialize(v) {
                Ok(l) => l,
                Err(e) => {
                    let p = e.path().to_string();
                    return self.at(origin, &clean_path(&p), e.into_inner().to_string());
                }
            };
            let _ = (l.api_version, l.metadata);
            for (i, item) in l.items.into_iter().flatten().enumerate() {
                let o = Origin {
                    prefix: format!("items[{i}]"),
                    ..origin.clone()
                };
                self.object(&o, item);
            }
        } else {
            self.object(origin, v);
        }
    }

    fn object(&mut self, o: &Origin, v: Value) {
        if !v.is_mapping() {
            return self.at(
                o,
                "",
                "a document must be a mapping with apiVersion and kind".into(),
            );
        }
        let Some(api) = get_str(&v, "apiVersion").map(str::to_string) else {
            return self.at(o, "apiVersion", "missing apiVersion".into());
        };
        let Some(kind) = get_str(&v, "kind").map(str::to_string) else {
            return self.at(o, "kind", "missing kind".into());
        };
        let r = match (api.as_str(), kind.as_str()) {
            ("projectcalico.org/v3", "Tier") => objects::tier(v),
            ("projectcalico.org/v3", "GlobalNetworkPolicy") => objects::calico_policy(v, true),
            ("projectcalico.org/v3", "NetworkPolicy") => objects::calico_policy(v, false),
            ("projectcalico.org/v3", "Profile") => objects::profile(v),
            ("projectcalico.org/v3", "WorkloadEndpoint") => objects::wep(v),
            ("projectcalico.org/v3", "GlobalNetworkSet") => objects::netset(v, true),
            ("projectcalico.org/v3", "NetworkSet") => objects::netset(v, false),
            ("networking.k8s.io/v1", "NetworkPolicy") => objects::k8s_policy(v),
            ("v1", "Namespace") => objects::namespace(v),
            ("projectcalico.org/v3", k @ ("HostEndpoint" | "StagedNetworkPolicy" | "StagedGlobalNetworkPolicy" | "StagedKubernetesNetworkPolicy")) => {
                Err(("kind".to_string(), format!("kind {k} is not supported (policy.md section 6)")))
            }
            ("crd.projectcalico.org/v1", _) => Err((
                "apiVersion".to_string(),
                "apiVersion crd.projectcalico.org/v1 is not supported (policy.md section 6; use projectcalico.org/v3)".to_string(),
            )),
            ("projectcalico.org/v3" | "networking.k8s.io/v1" | "v1", k) => {
                Err(("kind".to_string(), format!("unknown kind {k} for apiVersion {api}")))
            }
            (a, _) => Err(("apiVersion".to_string(), format!("unknown apiVersion {a}"))),
        };
        match r {
            Ok(obj) => self.set.objects.push(Loaded {
                origin: o.clone(),
                object: obj,
            }),
            Err((field, msg)) => self.at(o, &field, msg),
        }
    }

    /// Cross-document checks, then the result.
    fn finish(mut self) -> Result<(PolicySet, Vec<Warning>), LoadError> {
        let warnings = cross_document(&self.set, &mut self.problems);
        if self.problems.is_empty() {
            Ok((self.set, warnings))
        } else {
            Err(LoadError {
                problems: self.problems,
            })
        }
    }
}

/// The string at `key` of mapping `v`.
fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.as_mapping()?.get(key)?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Object;
    use crate::selector::Selector;

    fn err(text: &str) -> String {
        load_str("t.yaml", text).unwrap_err().to_string()
    }

    #[test]
    fn duplicate_key_is_named() {
        let e = err("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n");
        assert_eq!(
            e,
            "t.yaml doc 0: metadata.name: duplicate key `name` (YAML mapping keys must be unique)"
        );
    }

    #[test]
    fn port_error_has_path() {
        let e = err(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a}\n---\n\
             apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: b}\nspec:\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [80, \"80-90\"]\n",
        );
        assert_eq!(
            e,
            "t.yaml doc 1: spec.ingress[0].destination.ports[1]: \"80-90\" is not a port or range (use \"80:90\")"
        );
    }

    #[test]
    fn list_and_sequence_prefixes() {
        let e = err("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: b, labels: {x: 1}}\n");
        assert!(
            e.starts_with("t.yaml doc 0: items[1].metadata.labels.x: "),
            "{e}"
        );
        let e = err("- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n  spex: 1\n");
        assert!(
            e.starts_with("t.yaml doc 0: [0].spex: unknown field `spex`"),
            "{e}"
        );
    }

    #[test]
    fn nulls_and_empties_are_absent() {
        let (s, _) = load_str(
            "t.yaml",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec:\n  podSelector:\n    matchLabels:\n  egress:\n  - to:\n    ports:\n    - port: 53\n      protocol: UDP\n",
        )
        .unwrap();
        let Object::K8sNetworkPolicy(p) = &s.objects[0].object else {
            panic!()
        };
        assert_eq!(p.pod_selector, Selector::All);
        assert!(p.spec.egress.as_ref().unwrap()[0].to.is_none());
        assert_eq!(p.name.namespace.as_deref(), Some("default"));
    }
}
