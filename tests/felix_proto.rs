//! The Felix messages sluice defines (`engine/src/sources/felix/proto.rs`,
//! prost derive structs) against the shared `.proto` they mirror
//! (`shared/third_party/calico/felixbackend.proto`): both files are read
//! as text by small line parsers, and every message, field, oneof and
//! enum sluice defines must have the `.proto`'s number and a compatible
//! type, and every field of a message it defines must be there. A Calico
//! upgrade that renumbers, retypes or adds a field fails here, naming it.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// One field: its number, `single` / `repeated` / `map`, and its type
/// (scalar name, message or enum name, or `k,v` for a map), normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Field {
    number: u32,
    label: &'static str,
    ty: String,
}

/// Messages (name → field name → field) and enums (name → value name →
/// number), names normalised.
#[derive(Debug, Default)]
struct Schema {
    messages: BTreeMap<String, BTreeMap<String, Field>>,
    enums: BTreeMap<String, BTreeMap<String, i32>>,
    /// Rust only: a oneof's declared `tags` list, by oneof enum.
    oneof_tags: BTreeMap<String, BTreeSet<u32>>,
}

/// Lower case, no underscores, no path, no raw-identifier prefix: the
/// spelling both files agree on (`IPSetUpdate` = `IpSetUpdate`,
/// `ipset_update` = `IpsetUpdate`, `IngressBandwidth` = `ingress_bandwidth`).
fn norm(s: &str) -> String {
    let last = s.rsplit(['.', ':']).next().unwrap_or(s);
    last.trim_start_matches("r#")
        .replace('_', "")
        .to_ascii_lowercase()
}

const SCALARS: &[&str] = &[
    "string", "bytes", "bool", "double", "float", "int32", "int64", "uint32", "uint64", "sint32",
    "sint64", "fixed32", "fixed64", "sfixed32", "sfixed64",
];

fn parse_proto(text: &str) -> Schema {
    let mut s = Schema::default();
    // Open blocks: ("message" | "enum" | "oneof" | "service", name).
    let mut stack: Vec<(&str, String)> = Vec::new();
    for raw in text.lines() {
        let line = raw.split("//").next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.ends_with('{') && matches!(words[0], "message" | "enum" | "oneof" | "service") {
            stack.push((words[0], words[1].to_string()));
            if words[0] == "message" {
                s.messages.entry(norm(words[1])).or_default();
            }
            if words[0] == "enum" {
                s.enums.entry(norm(words[1])).or_default();
            }
            continue;
        }
        if line.starts_with('}') {
            stack.pop();
            continue;
        }
        if matches!(
            words[0],
            "reserved" | "option" | "rpc" | "syntax" | "package"
        ) {
            continue;
        }
        let Some((lhs, rhs)) = line.split_once('=') else {
            continue;
        };
        let number: i64 = rhs.trim().trim_end_matches(';').trim().parse().unwrap();
        let Some(block) = stack.iter().rev().find(|(k, _)| *k != "oneof") else {
            continue;
        };
        match block.0 {
            "enum" => {
                s.enums
                    .get_mut(&norm(&block.1))
                    .unwrap()
                    .insert(norm(lhs.trim()), number as i32);
            }
            "message" => {
                let lhs = lhs.trim();
                let (label, ty, name) = if let Some(m) = lhs.strip_prefix("map<") {
                    let (kv, name) = m.split_once('>').unwrap();
                    let kv: Vec<String> = kv.split(',').map(|x| norm(x.trim())).collect();
                    ("map", kv.join(","), name.trim())
                } else {
                    let w: Vec<&str> = lhs.split_whitespace().collect();
                    match w.as_slice() {
                        ["repeated", t, n] => ("repeated", norm(t), *n),
                        [t, n] => ("single", norm(t), *n),
                        _ => panic!("felixbackend.proto: cannot read {raw:?}"),
                    }
                };
                s.messages.get_mut(&norm(&block.1)).unwrap().insert(
                    norm(name),
                    Field {
                        number: number as u32,
                        label,
                        ty,
                    },
                );
            }
            _ => {}
        }
    }
    s
}

/// The value of `key = "..."` in a prost attribute.
fn attr_str<'a>(attr: &'a str, key: &str) -> Option<&'a str> {
    let at = attr.find(&format!("{key} = \""))? + key.len() + 4;
    let end = attr[at..].find('"')? + at;
    Some(&attr[at..end])
}

/// The type inside `Option<..>`, `Vec<..>` or `super::X`.
fn inner_type(t: &str) -> String {
    let t = t.trim().trim_end_matches(',');
    let t = t
        .strip_prefix("Option<")
        .or_else(|| t.strip_prefix("Vec<"))
        .map(|x| x.trim_end_matches('>'))
        .unwrap_or(t);
    norm(t)
}

fn parse_rust(text: &str) -> Schema {
    let mut s = Schema::default();
    // Oneof enum (normalised) → the message it belongs to.
    let mut oneof_parent: BTreeMap<String, String> = BTreeMap::new();
    let mut derive = String::new();
    // ("struct" | "oneof" | "enum", normalised name) of the open item.
    let mut item: Option<(&str, String)> = None;
    let mut attr = String::new();
    let mut in_attr = false;
    // Open `pub mod`s: (indent, name).
    let mut modules: Vec<(usize, String)> = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        let indent = raw.len() - raw.trim_start().len();
        if let Some(m) = line.strip_prefix("pub mod ") {
            modules.push((indent, m.trim_end_matches(" {").to_string()));
            continue;
        }
        if line == "}" && modules.last().is_some_and(|(i, _)| *i == indent) {
            modules.pop();
            continue;
        }
        // A oneof enum's key: its module path and name, as prost's
        // `oneof = "..."` names it from the enclosing struct's module.
        let here = |name: &str| -> String {
            let mut p: Vec<String> = modules.iter().map(|(_, m)| m.clone()).collect();
            p.push(name.to_string());
            p.join("::").to_ascii_lowercase()
        };
        if in_attr {
            attr.push_str(line);
            in_attr = !line.ends_with(")]");
            continue;
        }
        if line.starts_with("#[derive(") {
            derive = line.to_string();
            continue;
        }
        if line.starts_with("#[prost(") {
            attr = line.to_string();
            in_attr = !line.ends_with(")]");
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name = norm(rest.split_whitespace().next().unwrap());
            s.messages.entry(name.clone()).or_default();
            item = Some(("struct", name));
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub enum ") {
            let name = norm(rest.split_whitespace().next().unwrap());
            if derive.contains("Enumeration") {
                s.enums.entry(name.clone()).or_default();
                item = Some(("enum", name));
            } else {
                let raw_name = rest.split_whitespace().next().unwrap();
                item = Some(("oneof", here(raw_name)));
            }
            continue;
        }
        if line == "}" {
            item = None;
            continue;
        }
        let Some((kind, name)) = &item else { continue };
        match *kind {
            "enum" => {
                if let Some((v, n)) = line.trim_end_matches(',').split_once(" = ") {
                    s.enums
                        .get_mut(name)
                        .unwrap()
                        .insert(norm(v), n.parse().unwrap());
                }
            }
            "struct" | "oneof" if !attr.is_empty() => {
                let a = std::mem::take(&mut attr);
                if let Some(path) = attr_str(&a, "oneof") {
                    // A oneof field: its variants carry the numbers.
                    let tags: BTreeSet<u32> = attr_str(&a, "tags")
                        .unwrap()
                        .split(',')
                        .map(|t| t.trim().parse().unwrap())
                        .collect();
                    oneof_parent.insert(here(path), name.clone());
                    s.oneof_tags.insert(here(path), tags);
                    continue;
                }
                let number: u32 = attr_str(&a, "tag").unwrap().parse().unwrap();
                let (fname, fty) = if *kind == "struct" {
                    let (n, t) = line.strip_prefix("pub ").unwrap().split_once(':').unwrap();
                    (n.to_string(), t.to_string())
                } else {
                    let (n, t) = line.split_once('(').unwrap();
                    (n.to_string(), t.trim_end_matches("),").to_string())
                };
                let body = a.trim_start_matches("#[prost(");
                let first = body.split([',', ' ', ')']).next().unwrap();
                let label = if a.contains("repeated") {
                    "repeated"
                } else if first.contains("map") {
                    "map"
                } else {
                    "single"
                };
                let ty = match first {
                    "message" => inner_type(&fty),
                    "enumeration" => norm(attr_str(&a, "enumeration").unwrap()),
                    "map" | "btree_map" | "hash_map" => {
                        let kv = attr_str(&a, first).unwrap();
                        let kv: Vec<String> = kv.split(',').map(|x| x.trim().to_string()).collect();
                        let v = if kv[1] == "message" {
                            // The value type is the field's map value.
                            let t = fty.trim().trim_end_matches(',');
                            let t = t.rsplit(',').next().unwrap();
                            norm(t.trim().trim_end_matches('>'))
                        } else {
                            norm(&kv[1])
                        };
                        format!("{},{v}", norm(&kv[0]))
                    }
                    scalar => {
                        assert!(SCALARS.contains(&scalar), "proto.rs: {a}");
                        scalar.to_string()
                    }
                };
                let parent = if *kind == "struct" {
                    name.clone()
                } else {
                    oneof_parent
                        .iter()
                        .find(|(k, _)| *k == name)
                        .map(|(_, p)| p.clone())
                        .unwrap_or_else(|| panic!("proto.rs: oneof {name} used by no struct"))
                };
                s.messages
                    .entry(parent)
                    .or_default()
                    .insert(norm(&fname), Field { number, label, ty });
                if *kind == "oneof" {
                    s.oneof_tags
                        .entry(format!("{name}#variants"))
                        .or_default()
                        .insert(number);
                }
            }
            _ => {}
        }
    }
    s
}

/// Every difference between sluice's definitions and the `.proto`.
fn differences(proto: &Schema, rust: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    for (m, fields) in &rust.messages {
        let Some(pf) = proto.messages.get(m) else {
            out.push(format!("message {m}: not in the .proto"));
            continue;
        };
        for (f, rf) in fields {
            match pf.get(f) {
                None => out.push(format!("{m}.{f}: not in the .proto")),
                // Same number, label and type (an enum field's `i32` is checked
                // through its `enumeration = "..."` name).
                Some(x) if x != rf => {
                    out.push(format!("{m}.{f}: .proto has {x:?}, proto.rs has {rf:?}"))
                }
                Some(_) => {}
            }
        }
        for f in pf.keys() {
            if !fields.contains_key(f) {
                out.push(format!("{m}.{f}: in the .proto, missing from proto.rs"));
            }
        }
    }
    for (e, values) in &rust.enums {
        match proto.enums.get(e) {
            None => out.push(format!("enum {e}: not in the .proto")),
            Some(pv) if pv != values => out.push(format!(
                "enum {e}: .proto has {pv:?}, proto.rs has {values:?}"
            )),
            Some(_) => {}
        }
    }
    // A oneof's declared tags are exactly its variants' numbers.
    for (o, tags) in rust.oneof_tags.iter().filter(|(k, _)| !k.contains('#')) {
        let variants = rust.oneof_tags.get(&format!("{o}#variants"));
        if variants != Some(tags) {
            out.push(format!(
                "oneof {o}: tags {tags:?} but variants {variants:?}"
            ));
        }
    }
    out
}

fn files() -> (String, String) {
    let engine = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let proto_path = engine.join("../../shared/third_party/calico/felixbackend.proto");
    let proto = std::fs::read_to_string(&proto_path)
        .unwrap_or_else(|e| panic!("{}: {e}", proto_path.display()));
    let rust = std::fs::read_to_string(engine.join("src/sources/felix/proto.rs")).unwrap();
    (proto, rust)
}

#[test]
fn proto_rs_matches_the_shared_proto() {
    let (p, r) = files();
    let (p, r) = (parse_proto(&p), parse_rust(&r));
    // The parsers read what is there (not a vacuous pass).
    let fields: usize = r.messages.values().map(BTreeMap::len).sum();
    assert!(
        r.messages.len() >= 60 && fields >= 250,
        "{} messages, {fields} fields",
        r.messages.len()
    );
    assert_eq!(
        r.messages["todataplane"].len(),
        38,
        "ToDataplane: 37 payloads + sequence_number"
    );
    assert_eq!(r.messages["fromdataplane"].len(), 8);
    assert_eq!(r.enums.len(), 5);
    let diff = differences(&p, &r);
    assert!(
        diff.is_empty(),
        "proto.rs differs from felixbackend.proto:\n{}",
        diff.join("\n")
    );
    // Every payload Felix can send or read is defined.
    for env in ["todataplane", "fromdataplane"] {
        assert_eq!(
            p.messages[env].keys().collect::<Vec<_>>(),
            r.messages[env].keys().collect::<Vec<_>>()
        );
    }
}

#[test]
fn drift_is_caught() {
    let (p, r) = files();
    let rust = parse_rust(&r);
    for (from, to, expect) in [
        (
            "string dst_node_ip = 5;",
            "string dst_node_ip = 6;",
            "routeupdate.dstnodeip",
        ),
        (
            "bool masquerade = 2;",
            "string masquerade = 2;",
            "ipampool.masquerade",
        ),
        (
            "repeated string members = 2;",
            "string members = 2;",
            "ipsetupdate.members",
        ),
        ("NET = 2;", "NET = 3;", "enum ipsettype"),
        (
            "uint64 sequence_number = 15;",
            "uint64 sequence_number = 15;\n  Foo foo = 99;",
            "todataplane.foo",
        ),
        (
            "IPSetRemove ipset_remove = 4;",
            "IPSetRemove ipset_remove = 40;",
            "todataplane.ipsetremove",
        ),
    ] {
        assert!(p.contains(from), "{from}");
        let changed = parse_proto(&p.replacen(from, to, 1));
        let d = differences(&changed, &rust);
        assert!(
            d.iter().any(|l| l.starts_with(expect)),
            "{from} -> {to}: {d:?}"
        );
    }
    // A oneof whose tags list and variants disagree.
    let r2 = r.replacen(
        "tags = \"3, 4, 5, 6, 7, 9, 10\"",
        "tags = \"3, 4, 5, 6, 7, 9\"",
        1,
    );
    let d = differences(&parse_proto(&p), &parse_rust(&r2));
    assert!(
        d.iter().any(|l| l.contains("from_dataplane::payload")),
        "{d:?}"
    );
}
