//! Label selectors: Calico's selector language (policy.md section 2) parsed
//! into an AST, Kubernetes `LabelSelector` translated into the same AST, and
//! evaluation against a label map.
//!
//! Grammar (precedence: `!` binds tightest, then `&&`, then `||`):
//! ```text
//! expr    := and ( "||" and )*
//! and     := unary ( "&&" unary )*
//! unary   := "!" unary | primary
//! primary := "(" expr ")" | "all()" | "global()" | "has(" key ")"
//!          | key "==" str | key "!=" str | key "in" set | key "not" "in" set
//!          | key "contains" str | key "starts" "with" str | key "ends" "with" str
//! set     := "{" [ str ( "," str )* ] "}"
//! key     := [A-Za-z0-9_./-]+
//! str     := '"' [^"]* '"' | "'" [^']* "'"
//! ```
//! An empty selector is `all()`.

use std::collections::BTreeMap;
use std::fmt;

/// Effective labels of an object.
pub type Labels = BTreeMap<String, String>;

/// A parsed selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selector {
    /// `all()`.
    All,
    /// `global()` (only valid inside a rule's `namespaceSelector`).
    Global,
    /// `has(k)`.
    Has(String),
    /// `k == "v"`.
    Eq(String, String),
    /// `k != "v"` (true when `k` is absent).
    Ne(String, String),
    /// `k in {..}`.
    In(String, Vec<String>),
    /// `k not in {..}` (true when `k` is absent).
    NotIn(String, Vec<String>),
    /// `k contains "s"`.
    Contains(String, String),
    /// `k starts with "s"`.
    StartsWith(String, String),
    /// `k ends with "s"`.
    EndsWith(String, String),
    /// `!e`.
    Not(Box<Selector>),
    /// `e && f`.
    And(Box<Selector>, Box<Selector>),
    /// `e || f`.
    Or(Box<Selector>, Box<Selector>),
}

/// What `all()` and `global()` mean where a selector is evaluated
/// (policy.md section 3, *Selector scope*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalMode {
    /// Value of `all()`.
    pub all: bool,
    /// Value of `global()`.
    pub global: bool,
}

impl EvalMode {
    /// An ordinary selector: `all()` is true (`global()` cannot occur).
    pub const PLAIN: EvalMode = EvalMode {
        all: true,
        global: false,
    };
    /// A rule `namespaceSelector` tested on a namespaced object.
    pub const NAMESPACED: EvalMode = EvalMode {
        all: true,
        global: false,
    };
    /// A rule `namespaceSelector` tested on a GlobalNetworkSet (no labels).
    pub const GLOBAL_SET: EvalMode = EvalMode {
        all: false,
        global: true,
    };
}

/// A selector that failed to parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{msg} at offset {pos} in selector {src:?}")]
pub struct SelectorError {
    /// What is wrong.
    pub msg: String,
    /// Byte offset of the problem.
    pub pos: usize,
    /// The selector text.
    pub src: String,
}

impl Selector {
    /// Parse Calico selector text. `allow_global` permits `global()`.
    pub fn parse(src: &str, allow_global: bool) -> Result<Selector, SelectorError> {
        let mut p = Parser {
            s: src.as_bytes(),
            src,
            pos: 0,
            allow_global,
        };
        p.ws();
        if p.pos == p.s.len() {
            return Ok(Selector::All);
        }
        let e = p.expr()?;
        p.ws();
        if p.pos != p.s.len() {
            return Err(p.err("unexpected text"));
        }
        Ok(e)
    }

    /// Evaluate on `labels` with `all()`/`global()` as `mode` says.
    pub fn eval(&self, labels: &Labels, mode: EvalMode) -> bool {
        match self {
            Selector::All => mode.all,
            Selector::Global => mode.global,
            Selector::Has(k) => labels.contains_key(k),
            Selector::Eq(k, v) => labels.get(k).is_some_and(|x| x == v),
            Selector::Ne(k, v) => labels.get(k).is_none_or(|x| x != v),
            Selector::In(k, vs) => labels.get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Selector::NotIn(k, vs) => labels.get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            Selector::Contains(k, v) => labels.get(k).is_some_and(|x| x.contains(v.as_str())),
            Selector::StartsWith(k, v) => labels.get(k).is_some_and(|x| x.starts_with(v.as_str())),
            Selector::EndsWith(k, v) => labels.get(k).is_some_and(|x| x.ends_with(v.as_str())),
            Selector::Not(e) => !e.eval(labels, mode),
            Selector::And(a, b) => a.eval(labels, mode) && b.eval(labels, mode),
            Selector::Or(a, b) => a.eval(labels, mode) || b.eval(labels, mode),
        }
    }

    /// Evaluate an ordinary selector.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.eval(labels, EvalMode::PLAIN)
    }

    /// True when the selector contains `global()`.
    pub fn uses_global(&self) -> bool {
        match self {
            Selector::Global => true,
            Selector::Not(e) => e.uses_global(),
            Selector::And(a, b) | Selector::Or(a, b) => a.uses_global() || b.uses_global(),
            _ => false,
        }
    }

    /// Conjunction of a list (`all()` when empty).
    pub fn and_all(mut parts: Vec<Selector>) -> Selector {
        let Some(mut acc) = parts.pop() else {
            return Selector::All;
        };
        while let Some(p) = parts.pop() {
            acc = Selector::And(Box::new(p), Box::new(acc));
        }
        acc
    }
}

fn quote(s: &str) -> String {
    if s.contains('"') {
        format!("'{s}'")
    } else {
        format!("\"{s}\"")
    }
}

fn set(vs: &[String]) -> String {
    let parts: Vec<String> = vs.iter().map(|v| quote(v)).collect();
    format!("{{{}}}", parts.join(", "))
}

impl fmt::Display for Selector {
    /// Canonical text, fully parenthesised for compound expressions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => write!(f, "all()"),
            Selector::Global => write!(f, "global()"),
            Selector::Has(k) => write!(f, "has({k})"),
            Selector::Eq(k, v) => write!(f, "{k} == {}", quote(v)),
            Selector::Ne(k, v) => write!(f, "{k} != {}", quote(v)),
            Selector::In(k, vs) => write!(f, "{k} in {}", set(vs)),
            Selector::NotIn(k, vs) => write!(f, "{k} not in {}", set(vs)),
            Selector::Contains(k, v) => write!(f, "{k} contains {}", quote(v)),
            Selector::StartsWith(k, v) => write!(f, "{k} starts with {}", quote(v)),
            Selector::EndsWith(k, v) => write!(f, "{k} ends with {}", quote(v)),
            Selector::Not(e) => write!(f, "!({e})"),
            Selector::And(a, b) => write!(f, "({a} && {b})"),
            Selector::Or(a, b) => write!(f, "({a} || {b})"),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    pos: usize,
    allow_global: bool,
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

impl Parser<'_> {
    fn err(&self, msg: &str) -> SelectorError {
        SelectorError {
            msg: msg.to_string(),
            pos: self.pos,
            src: self.src.to_string(),
        }
    }

    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        if self.s[self.pos..].starts_with(tok.as_bytes()) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    /// Eat a keyword that must not run into a following key byte.
    fn eat_word(&mut self, w: &str) -> bool {
        self.ws();
        let end = self.pos + w.len();
        if self.s[self.pos..].starts_with(w.as_bytes())
            && self.s.get(end).is_none_or(|b| !is_key_byte(*b))
        {
            self.pos = end;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Result<Selector, SelectorError> {
        let mut e = self.and()?;
        while self.eat("||") {
            let r = self.and()?;
            e = Selector::Or(Box::new(e), Box::new(r));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Selector, SelectorError> {
        let mut e = self.unary()?;
        while self.eat("&&") {
            let r = self.unary()?;
            e = Selector::And(Box::new(e), Box::new(r));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Selector, SelectorError> {
        self.ws();
        if self.peek() == Some(b'!') && self.s.get(self.pos + 1) != Some(&b'=') {
            self.pos += 1;
            let e = self.unary()?;
            return Ok(Selector::Not(Box::new(e)));
        }
        self.primary()
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        self.ws();
        let start = self.pos;
        while self.pos < self.s.len() && is_key_byte(self.s[self.pos]) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err("expected a label key"));
        }
        Ok(self.src[start..self.pos].to_string())
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        self.ws();
        let q = match self.peek() {
            Some(q @ (b'"' | b'\'')) => q,
            _ => return Err(self.err("expected a quoted string")),
        };
        let start = self.pos + 1;
        let mut i = start;
        while i < self.s.len() && self.s[i] != q {
            i += 1;
        }
        if i >= self.s.len() {
            return Err(self.err("unterminated string"));
        }
        self.pos = i + 1;
        Ok(self.src[start..i].to_string())
    }

    fn set(&mut self) -> Result<Vec<String>, SelectorError> {
        if !self.eat("{") {
            return Err(self.err("expected '{'"));
        }
        let mut out = Vec::new();
        if self.eat("}") {
            return Ok(out);
        }
        loop {
            out.push(self.string()?);
            if self.eat("}") {
                return Ok(out);
            }
            if !self.eat(",") {
                return Err(self.err("expected ',' or '}'"));
            }
        }
    }

    fn primary(&mut self) -> Result<Selector, SelectorError> {
        self.ws();
        if self.eat("(") {
            let e = self.expr()?;
            if !self.eat(")") {
                return Err(self.err("expected ')'"));
            }
            return Ok(e);
        }
        let save = self.pos;
        if self.eat_word("all") && self.eat("(") {
            if !self.eat(")") {
                return Err(self.err("expected ')' after all("));
            }
            return Ok(Selector::All);
        }
        self.pos = save;
        if self.eat_word("global") && self.eat("(") {
            if !self.eat(")") {
                return Err(self.err("expected ')' after global("));
            }
            if !self.allow_global {
                self.pos = save;
                return Err(self.err("global() is only allowed in a rule's namespaceSelector"));
            }
            return Ok(Selector::Global);
        }
        self.pos = save;
        if self.eat_word("has") && self.eat("(") {
            let k = self.key()?;
            if !self.eat(")") {
                return Err(self.err("expected ')' after has(key"));
            }
            return Ok(Selector::Has(k));
        }
        self.pos = save;
        let k = self.key()?;
        if self.eat("==") {
            return Ok(Selector::Eq(k, self.string()?));
        }
        if self.eat("!=") {
            return Ok(Selector::Ne(k, self.string()?));
        }
        if self.eat_word("in") {
            return Ok(Selector::In(k, self.set()?));
        }
        if self.eat_word("not") {
            if !self.eat_word("in") {
                return Err(self.err("expected 'in' after 'not'"));
            }
            return Ok(Selector::NotIn(k, self.set()?));
        }
        if self.eat_word("contains") {
            return Ok(Selector::Contains(k, self.string()?));
        }
        if self.eat_word("starts") {
            if !self.eat_word("with") {
                return Err(self.err("expected 'with' after 'starts'"));
            }
            return Ok(Selector::StartsWith(k, self.string()?));
        }
        if self.eat_word("ends") {
            if !self.eat_word("with") {
                return Err(self.err("expected 'with' after 'ends'"));
            }
            return Ok(Selector::EndsWith(k, self.string()?));
        }
        self.ws();
        Err(self.err("expected an operator (==, !=, in, not in, contains, starts with, ends with)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn m(sel: &str, kv: &[(&str, &str)]) -> bool {
        Selector::parse(sel, false).unwrap().matches(&labels(kv))
    }

    #[test]
    fn operators() {
        assert!(m("", &[]));
        assert!(m("all()", &[]));
        assert!(m("has(a)", &[("a", "")]));
        assert!(!m("has(a)", &[("b", "")]));
        assert!(m("a == 'x'", &[("a", "x")]));
        assert!(m("a==\"x\"", &[("a", "x")]));
        assert!(!m("a == 'x'", &[]));
        assert!(m("a != 'x'", &[]));
        assert!(m("a != 'x'", &[("a", "y")]));
        assert!(!m("a != 'x'", &[("a", "x")]));
        assert!(m("a in {'x', \"y\"}", &[("a", "y")]));
        assert!(!m("a in {}", &[("a", "y")]));
        assert!(m("a not in {'x'}", &[]));
        assert!(!m("a not in  {'x'}", &[("a", "x")]));
        assert!(m("a contains 'ell'", &[("a", "hello")]));
        assert!(m("a starts with 'he'", &[("a", "hello")]));
        assert!(m("a ends with 'lo'", &[("a", "hello")]));
        assert!(!m("a ends with 'he'", &[("a", "hello")]));
        assert!(m("a == ''", &[("a", "")]));
        assert!(m("k8s.io/x-y_z == 'v'", &[("k8s.io/x-y_z", "v")]));
    }

    #[test]
    fn precedence() {
        // ! binds tighter than &&, && tighter than ||.
        let s = Selector::parse("!has(a) && has(b) || has(c)", false).unwrap();
        assert_eq!(s.to_string(), "((!(has(a)) && has(b)) || has(c))");
        assert!(s.matches(&labels(&[("c", "")])));
        assert!(!s.matches(&labels(&[("a", ""), ("b", "")])));
        let s = Selector::parse("has(a) || has(b) && has(c)", false).unwrap();
        assert_eq!(s.to_string(), "(has(a) || (has(b) && has(c)))");
        let s = Selector::parse("!(has(a) || has(b))", false).unwrap();
        assert!(s.matches(&labels(&[])));
        assert!(!s.matches(&labels(&[("b", "")])));
        assert!(m("!!has(a)", &[("a", "")]));
    }

    #[test]
    fn keywords_are_not_key_prefixes() {
        // A key may start with a keyword.
        assert!(m("allx == 'y'", &[("allx", "y")]));
        assert!(m("has_x == 'y'", &[("has_x", "y")]));
        assert!(m("index in {'y'}", &[("index", "y")]));
    }

    #[test]
    fn global_only_where_allowed() {
        assert!(Selector::parse("global()", false).is_err());
        let g = Selector::parse("global() || a == 'b'", true).unwrap();
        assert!(g.eval(&labels(&[]), EvalMode::GLOBAL_SET));
        assert!(!g.eval(&labels(&[]), EvalMode::NAMESPACED));
        let a = Selector::parse("all()", true).unwrap();
        assert!(!a.eval(&labels(&[]), EvalMode::GLOBAL_SET));
        assert!(a.eval(&labels(&[]), EvalMode::NAMESPACED));
        let n = Selector::parse("!has(env)", true).unwrap();
        assert!(n.eval(&labels(&[]), EvalMode::GLOBAL_SET));
    }

    #[test]
    fn errors() {
        for bad in [
            "a ==",
            "a == x",
            "a = 'x'",
            "has(a",
            "(a == 'x'",
            "a == 'x' &&",
            "a in {'x'",
            "a in {'x' 'y'}",
            "a == 'x",
            "&& a == 'x'",
            "a not 'x'",
            "a starts 'x'",
            "all",
            "a == 'x' b",
            "a ~ 'x'",
        ] {
            assert!(Selector::parse(bad, false).is_err(), "{bad} should fail");
        }
        let e = Selector::parse("a == x", false).unwrap_err();
        assert!(e.to_string().contains("quoted string"), "{e}");
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "a == 'x' && (b != \"y\" || !has(c))",
            "a in {'1', '2'} || b not in {} && c contains 'q'",
            "a starts with 'x' && a ends with 'y'",
        ] {
            let p = Selector::parse(s, false).unwrap();
            let q = Selector::parse(&p.to_string(), false).unwrap();
            assert_eq!(p, q);
        }
    }
}
