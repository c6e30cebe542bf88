//! A YAML document as a plain tree that keeps repeated mapping keys (so a
//! repeated key is reported with its path; the typed pass alone would
//! silently keep one of them) and integers wider than 64 bits (as text, so
//! that they do not stop the load in ignored fields).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_norway::Value;

/// A YAML document as a plain tree that keeps repeated keys.
pub(super) enum Node {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    /// An integer wider than 64 bits, kept as text.
    Big(String),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A mapping key as text (in paths and messages).
    fn key_text(&self) -> String {
        match self {
            Node::Null => "null".into(),
            Node::Bool(b) => b.to_string(),
            Node::I64(n) => n.to_string(),
            Node::U64(n) => n.to_string(),
            Node::F64(n) => n.to_string(),
            Node::Big(s) | Node::Str(s) => s.clone(),
            Node::Seq(_) | Node::Map(_) => "<complex key>".into(),
        }
    }

    /// The first repeated mapping key below this node: its path (from
    /// `path`) and the key.
    pub(super) fn check_duplicates(&self, path: &mut String) -> Result<(), (String, String)> {
        match self {
            Node::Seq(items) => {
                for (i, n) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    n.check_duplicates(path)?;
                    path.truncate(len);
                }
            }
            Node::Map(entries) => {
                let mut seen = std::collections::HashSet::new();
                for (k, v) in entries {
                    let kt = k.key_text();
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&kt);
                    if !seen.insert(kt.clone()) {
                        return Err((path.clone(), kt));
                    }
                    v.check_duplicates(path)?;
                    path.truncate(len);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// As a plain YAML value.
    pub(super) fn into_value(self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::I64(n) => Value::Number(n.into()),
            Node::U64(n) => Value::Number(n.into()),
            Node::F64(n) => Value::Number(n.into()),
            Node::Big(s) | Node::Str(s) => Value::String(s),
            Node::Seq(items) => Value::Sequence(items.into_iter().map(Node::into_value).collect()),
            Node::Map(entries) => {
                let mut m = serde_norway::Mapping::new();
                for (k, v) in entries {
                    m.insert(k.into_value(), v.into_value());
                }
                Value::Mapping(m)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Node, D2::Error> {
                Node::deserialize(d)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
                Ok(Node::I64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
                Ok(Node::U64(v))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
                Ok(Node::Big(v.to_string()))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
                Ok(Node::Big(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
                Ok(Node::F64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some(n) = a.next_element::<Node>()? {
                    out.push(n);
                }
                Ok(Node::Seq(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = a.next_entry::<Node, Node>()? {
                    out.push((k, v));
                }
                Ok(Node::Map(out))
            }
            fn visit_enum<A: de::EnumAccess<'de>>(self, _a: A) -> Result<Node, A::Error> {
                Err(de::Error::custom("YAML tags are not supported"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> Node {
        Node::deserialize(serde_norway::Deserializer::from_str(text)).unwrap()
    }

    #[test]
    fn repeated_keys_are_found_with_their_path() {
        let n = node("a:\n  - {x: 1}\n  - {y: 1, y: 2}\n");
        assert_eq!(
            n.check_duplicates(&mut String::new()),
            Err(("a[1].y".to_string(), "y".to_string()))
        );
        assert_eq!(
            node("a: {x: 1, y: 2}").check_duplicates(&mut String::new()),
            Ok(())
        );
    }

    #[test]
    fn wide_integers_are_kept_as_text() {
        let v = node("n: 123456789012345678901234567890\nm: 7\n").into_value();
        assert_eq!(
            v["n"],
            Value::String("123456789012345678901234567890".into())
        );
        assert_eq!(v["m"], Value::Number(7.into()));
    }
}
