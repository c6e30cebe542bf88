//! The architecture test: layers import only downward, and no two files
//! import each other, directly or around a loop.
//!
//! Every `.rs` file of `engine/src` and `policy-compiler/src` is parsed
//! (syn) and each path it names — `use` trees and paths in code, types and
//! patterns — is resolved (`crate::`, `super::`, `self::`, a child module)
//! to the file that defines the longest module prefix of the path. A path
//! through a parent's re-export is attributed to the parent, so a child
//! imports what it needs from the file that defines it. `mod child;`
//! declarations are ownership, not use, and are not edges.
//!
//! The engine's layers, lowest first (ARCHITECTURE.md; the crate docs say
//! why each sits where it does): `mem`, `wire`, `tables`, `pipeline`, `io`,
//! `state`, `worker`, `sources`, `control`, `cli`. A file may use its own
//! layer and the layers below it.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The engine's layers, lowest first.
const ENGINE_LAYERS: &[&str] = &[
    "mem", "wire", "tables", "pipeline", "io", "state", "worker", "sources", "control", "cli",
];

/// A module path (`["pipeline", "stages", "track"]`); the crate root is `[]`.
type ModPath = Vec<String>;

/// One use of a file by another: where, and the path as written.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: String,
    to: String,
    line: usize,
    path: String,
}

/// A crate's files by module path, and which module paths are inline
/// modules of which file.
struct Tree {
    /// Module path → file (relative to the crate's `src`).
    modules: BTreeMap<ModPath, String>,
    /// File → its source.
    files: BTreeMap<String, String>,
}

/// The module path of a file relative to `src` (`None`: a binary root).
fn module_of(rel: &str) -> Option<ModPath> {
    if rel == "main.rs" || rel.starts_with("bin/") {
        return None;
    }
    let no_ext = rel.strip_suffix(".rs")?;
    let mut parts: Vec<String> = no_ext.split('/').map(str::to_string).collect();
    match parts.last().map(String::as_str) {
        Some("lib") if parts.len() == 1 => parts.clear(),
        Some("mod") => {
            parts.pop();
        }
        _ => {}
    }
    Some(parts)
}

impl Tree {
    fn new(files: BTreeMap<String, String>) -> Tree {
        let mut modules = BTreeMap::new();
        for (rel, src) in &files {
            let Some(m) = module_of(rel) else { continue };
            let Ok(ast) = syn::parse_file(src) else {
                continue;
            };
            modules.insert(m.clone(), rel.clone());
            inline_modules(&ast.items, &m, rel, &mut modules);
        }
        Tree { modules, files }
    }

    fn read(src: &Path) -> Tree {
        let mut files = BTreeMap::new();
        let mut stack = vec![src.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let rel = p
                        .strip_prefix(src)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    files.insert(rel, std::fs::read_to_string(&p).unwrap());
                }
            }
        }
        Tree::new(files)
    }

    /// The file defining the longest module prefix of `path`.
    fn file_of(&self, path: &[String]) -> Option<&String> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.modules.get(&path[..n]))
    }

    /// Every use of one file by another.
    fn edges(&self) -> Vec<Edge> {
        let mut out = BTreeSet::new();
        for (rel, src) in &self.files {
            let Some(m) = module_of(rel) else { continue };
            let ast = syn::parse_file(src).unwrap_or_else(|e| panic!("{rel}: {e}"));
            let mut v = Collector {
                tree: self,
                file: rel,
                module: m,
                out: &mut out,
            };
            v.visit_file(&ast);
        }
        out.into_iter().collect()
    }
}

/// Records the inline modules (`mod x { ... }`) of a file under `at`.
fn inline_modules(
    items: &[syn::Item],
    at: &ModPath,
    file: &str,
    out: &mut BTreeMap<ModPath, String>,
) {
    for it in items {
        if let syn::Item::Mod(m) = it {
            if let Some((_, inner)) = &m.content {
                let mut p = at.clone();
                p.push(m.ident.to_string());
                out.insert(p.clone(), file.to_string());
                inline_modules(inner, &p, file, out);
            }
        }
    }
}

struct Collector<'a> {
    tree: &'a Tree,
    file: &'a str,
    /// The module the visitor is in (inline modules included).
    module: ModPath,
    out: &'a mut BTreeSet<Edge>,
}

impl Collector<'_> {
    /// Resolves a path as written in the current module; `None` for paths
    /// that name nothing of this crate (std, other crates, locals).
    fn resolve(&self, segs: &[String]) -> Option<ModPath> {
        let first = segs.first()?;
        let (mut base, rest) = match first.as_str() {
            "crate" => (Vec::new(), &segs[1..]),
            "self" => (self.module.clone(), &segs[1..]),
            "super" => {
                let mut b = self.module.clone();
                let mut i = 0;
                while segs.get(i).map(String::as_str) == Some("super") {
                    b.pop()?;
                    i += 1;
                }
                (b, &segs[i..])
            }
            _ => {
                // A child module of the current one, named bare.
                let mut child = self.module.clone();
                child.push(first.clone());
                if self.tree.modules.contains_key(&child) {
                    (self.module.clone(), segs)
                } else {
                    return None;
                }
            }
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn record(&mut self, segs: &[String], line: usize) {
        let Some(abs) = self.resolve(segs) else {
            return;
        };
        let Some(to) = self.tree.file_of(&abs) else {
            return;
        };
        if to != self.file {
            self.out.insert(Edge {
                from: self.file.to_string(),
                to: to.clone(),
                line,
                path: segs.join("::"),
            });
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, t: &syn::UseTree, line: usize) {
        match t {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree, line);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut full = prefix.clone();
                if n.ident != "self" {
                    full.push(n.ident.to_string());
                }
                self.record(&full, line);
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix.clone();
                if r.ident != "self" {
                    full.push(r.ident.to_string());
                }
                self.record(&full, line);
            }
            syn::UseTree::Glob(_) => {
                let p = prefix.clone();
                self.record(&p, line);
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t, line);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if m.content.is_some() {
            self.module.push(m.ident.to_string());
            syn::visit::visit_item_mod(self, m);
            self.module.pop();
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let line = u.use_token.span.start().line;
        self.use_tree(&mut Vec::new(), &u.tree, line);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if segs.len() > 1 {
            let line = p
                .segments
                .first()
                .map_or(0, |s| s.ident.span().start().line);
            self.record(&segs, line);
        }
        syn::visit::visit_path(self, p);
    }
}

/// Edges from a lower layer to a higher one.
fn upward(edges: &[Edge], layers: &[&str]) -> Vec<String> {
    let rank = |file: &str| {
        let top = file.split(['/', '.']).next().unwrap_or("");
        layers.iter().position(|l| *l == top)
    };
    edges
        .iter()
        .filter_map(|e| match (rank(&e.from), rank(&e.to)) {
            (Some(a), Some(b)) if b > a => Some(format!(
                "{}:{} uses {} ({}: layer {:?} is above {:?})",
                e.from, e.line, e.path, e.to, layers[b], layers[a]
            )),
            _ => None,
        })
        .collect()
}

/// Files that reach themselves through others (Tarjan's strongly
/// connected components with more than one file), each with its edges.
fn cycles(edges: &[Edge]) -> Vec<String> {
    let mut nodes: BTreeSet<&str> = BTreeSet::new();
    let mut adj: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        nodes.insert(&e.from);
        nodes.insert(&e.to);
        adj.entry(&e.from).or_default().insert(&e.to);
    }
    struct S<'a> {
        adj: &'a BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<&'a str>>,
    }
    fn strong<'a>(s: &mut S<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        let succ: Vec<&str> = s
            .adj
            .get(v)
            .map(|x| x.iter().copied().collect())
            .unwrap_or_default();
        for w in succ {
            if !s.index.contains_key(w) {
                strong(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort_unstable();
                s.out.push(comp);
            }
        }
    }
    let mut s = S {
        adj: &adj,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in nodes {
        if !s.index.contains_key(v) {
            strong(&mut s, v);
        }
    }
    s.out
        .iter()
        .map(|comp| {
            let inside: Vec<String> = edges
                .iter()
                .filter(|e| comp.contains(&e.from.as_str()) && comp.contains(&e.to.as_str()))
                .map(|e| format!("  {}:{} uses {} ({})", e.from, e.line, e.path, e.to))
                .collect();
            format!("cycle among {}:\n{}", comp.join(", "), inside.join("\n"))
        })
        .collect()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check(src: &Path, layers: &[&str]) -> Vec<String> {
    let tree = Tree::read(src);
    assert!(tree.files.len() > 5, "{}: no sources found", src.display());
    let edges = tree.edges();
    let mut problems = upward(&edges, layers);
    problems.extend(cycles(&edges));
    problems
}

#[test]
fn engine_layers_point_down_and_files_do_not_cycle() {
    let p = check(&root().join("engine/src"), ENGINE_LAYERS);
    assert!(p.is_empty(), "engine:\n{}", p.join("\n"));
}

#[test]
fn policy_compiler_files_do_not_cycle() {
    let p = check(&root().join("policy-compiler/src"), &[]);
    assert!(p.is_empty(), "policy-compiler:\n{}", p.join("\n"));
}

/// The checker itself finds what it must: an upward import (as
/// `use crate::control` under `tables/` would be), a cycle through a
/// parent's re-export, and a cycle of `super::` paths; and passes the same
/// shapes the right way round.
#[test]
fn the_checker_finds_upward_imports_and_cycles() {
    let tree = |files: &[(&str, &str)]| {
        Tree::new(
            files
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    };
    let up = tree(&[
        ("lib.rs", "pub mod tables; pub mod control;"),
        ("tables/mod.rs", "use crate::control::Runtime;"),
        ("control/mod.rs", "pub struct Runtime;"),
    ]);
    let p = upward(&up.edges(), ENGINE_LAYERS);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("tables/mod.rs:1 uses crate::control::Runtime"),
        "{p:?}"
    );
    // A child using its parent's item while the parent re-exports the child.
    let cyc = tree(&[
        ("lib.rs", "pub mod pipeline;"),
        (
            "pipeline/mod.rs",
            "pub mod stages; pub use stages::run; pub struct Meta;",
        ),
        (
            "pipeline/stages.rs",
            "use super::Meta; pub fn run(_: Meta) {}",
        ),
    ]);
    let c = cycles(&cyc.edges());
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(
        c[0].contains("pipeline/mod.rs, pipeline/stages.rs"),
        "{c:?}"
    );
    // The same with the shared item in a leaf file: no cycle.
    let ok = tree(&[
        ("lib.rs", "pub mod pipeline;"),
        (
            "pipeline/mod.rs",
            "pub mod meta; pub mod stages; pub use stages::run;",
        ),
        ("pipeline/meta.rs", "pub struct Meta;"),
        (
            "pipeline/stages.rs",
            "use super::meta::Meta; pub fn run(_: Meta) {}",
        ),
    ]);
    assert!(cycles(&ok.edges()).is_empty());
    // Two siblings calling each other by path in code.
    let sib = tree(&[
        ("lib.rs", "pub mod a; pub mod b;"),
        ("a.rs", "pub fn f() { crate::b::g() }"),
        ("b.rs", "pub fn g() {} pub fn h() { super::a::f() }"),
    ]);
    assert_eq!(cycles(&sib.edges()).len(), 1);
    // Test modules' `super::*` is the file itself.
    let t = tree(&[
        ("lib.rs", "pub mod a;"),
        (
            "a.rs",
            "pub fn f() {} #[cfg(test)] mod tests { use super::*; }",
        ),
    ]);
    assert!(t.edges().is_empty(), "{:?}", t.edges());
}

/// The files that opt into `unsafe`, expanded from a list as the lint
/// comment writes it (`engine/src/io/sys/{abi,calls}.rs, ...`).
fn expand_unsafe_list(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for word in text.split([' ', '\n', '`', ';']) {
        let w = word.trim_matches(|c: char| c == ',' || c == '.' || c == '`');
        if !w.ends_with(".rs") && !w.contains("}.rs") {
            continue;
        }
        match (w.find('{'), w.find('}')) {
            (Some(a), Some(b)) => {
                for part in w[a + 1..b].split(',') {
                    out.insert(format!("{}{}{}", &w[..a], part, &w[b + 1..]));
                }
            }
            _ => {
                out.insert(w.to_string());
            }
        }
    }
    out
}

/// The sentence that lists them, with comment markers and line breaks
/// taken out.
fn unsafe_sentence(file: &Path, marker: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let joined: String = text
        .lines()
        .map(|l| l.trim_start().trim_start_matches(marker).trim())
        .collect::<Vec<_>>()
        .join(" ");
    let start = joined
        .find("unsafe` is denied everywhere except")
        .or_else(|| joined.find("unsafe is denied everywhere except"))
        .unwrap_or_else(|| panic!("{}: no list of the files allowed unsafe", file.display()));
    let end = joined[start..].find("every block").unwrap() + start;
    joined[start..end].replace('`', "")
}

/// The list of files allowed `unsafe` is the same wherever it is written
/// (the workspace lints, the engine's crate docs, the io module's docs),
/// and it is exactly the files that opt in.
#[test]
fn the_unsafe_list_agrees_everywhere_and_with_the_code() {
    let root = root();
    let lints = unsafe_sentence(&root.join("Cargo.toml"), "#");
    for f in ["engine/src/lib.rs", "engine/src/io/mod.rs"] {
        let s = unsafe_sentence(&root.join(f), "//!");
        assert_eq!(
            expand_unsafe_list(&s),
            expand_unsafe_list(&lints),
            "{f} lists other files than Cargo.toml"
        );
    }
    let mut opted = BTreeSet::new();
    for dir in ["engine/src", "bench/src", "policy-compiler/src"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs")
                    && std::fs::read_to_string(&p)
                        .unwrap()
                        .lines()
                        .any(|l| l.trim_start().starts_with("#![allow(unsafe_code)]"))
                {
                    opted.insert(
                        p.strip_prefix(&root)
                            .unwrap()
                            .to_string_lossy()
                            .replace('\\', "/"),
                    );
                }
            }
        }
    }
    assert_eq!(
        opted,
        expand_unsafe_list(&lints),
        "files that opt into unsafe"
    );
}
