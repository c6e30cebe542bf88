//! The third-party corpus in `shared/policies/`: `real/` loads and
//! compiles, `unsupported/` and `invalid/` are rejected whole with an error
//! naming the file, the document and the feature or problem.

// Test helpers outside #[test] functions unwrap too: a failure is a test
// failure (clippy.toml allows it only inside #[test]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use policy_compiler::compile::{Builder, Config};
use policy_compiler::loader::load;

fn base() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/policies"
    ))
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(base().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    v.sort();
    v
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().to_string()
}

#[test]
fn real_files_load_and_compile() {
    let fs = files("real");
    assert_eq!(fs.len(), 84, "real/ should hold 84 files");
    let tiers = base().join("tiers.yaml");
    let mut with_tiers = 0;
    for f in &fs {
        let set = match load(std::slice::from_ref(f)) {
            Ok((s, _)) => s,
            Err(e) => {
                // Only a tier defined elsewhere may be missing; then the
                // file loads together with tiers.yaml (policies/README.md).
                assert!(
                    e.problems
                        .iter()
                        .all(|p| p.msg.contains("has no Tier document")),
                    "{}: {e}",
                    name(f)
                );
                with_tiers += 1;
                load(&[tiers.clone(), f.clone()])
                    .unwrap_or_else(|e| panic!("{} with tiers.yaml: {e}", name(f)))
                    .0
            }
        };
        assert!(!set.objects.is_empty(), "{}", name(f));
        for cfg in [Config::default(), Config::linear()] {
            Builder::with_config(cfg)
                .compile(&set)
                .unwrap_or_else(|e| panic!("{}: {e}", name(f)));
        }
    }
    assert!(
        with_tiers >= 4,
        "files naming tiers they do not define: {with_tiers}"
    );
}

#[test]
fn real_directory_loads_as_one_set_with_tiers() {
    // The whole folder is not one consistent set (several files reuse
    // names), but every file is read, in sorted order, recursively.
    let e = load(&[base().join("real")]).unwrap_err();
    assert!(
        e.problems.iter().all(|p| p.msg.contains("duplicate")
            || p.msg.contains("has no Tier document")
            || p.msg.contains("is also listed")),
        "{e}"
    );
}

/// The feature each unsupported file must be rejected for.
fn expected_feature(file: &str) -> &'static [&'static str] {
    match file {
        f if f.contains("hostendpoint")
            || f.contains("hep-and")
            || f.contains("migration-seed") =>
        {
            &["HostEndpoint"]
        }
        f if f.contains("donottrack") => &["doNotTrack"],
        f if f.contains("applyonforward") => &["applyOnForward"],
        f if f.contains("prednat") => &["preDNAT"],
        f if f.contains("http-methods") || f.contains("app-policy-demo") => &["http"],
        f if f.contains("serviceaccountselector") => &["serviceAccountSelector"],
        f if f.contains("service-accounts") || f.contains("serviceaccounts") => {
            &["serviceAccounts"]
        }
        f if f.contains("services-match") => &["services match"],
        f if f.contains("staged--globalnetworkpolicy") => &["StagedGlobalNetworkPolicy"],
        f if f.contains("staged--networkpolicy") => &["StagedNetworkPolicy"],
        f if f.contains("staged--kubernetes") => &["StagedKubernetesNetworkPolicy"],
        f if f.contains("domains--domains") => &["domains"],
        f if f.contains("allowed-egress-domains") => &["allowedEgressDomains"],
        f if f.contains("empty-serviceaccountselector") => &["serviceAccountSelector"],
        f if f.contains("crd-v1") => &["crd.projectcalico.org/v1"],
        _ => &["not supported"],
    }
}

#[test]
fn unsupported_files_are_rejected_naming_the_feature() {
    let fs = files("unsupported");
    assert_eq!(fs.len(), 23);
    let tiers = base().join("tiers.yaml");
    for f in &fs {
        for paths in [vec![f.clone()], vec![tiers.clone(), f.clone()]] {
            let e = load(&paths).expect_err(&name(f));
            let text = e.to_string();
            assert!(text.contains(&name(f)), "{}: {text}", name(f));
            let p = e
                .problems
                .iter()
                .find(|p| p.file == *f && p.msg.contains("not supported"))
                .unwrap_or_else(|| panic!("{}: no unsupported-feature problem in {text}", name(f)));
            assert!(p.doc.is_some(), "{}: no document index: {p}", name(f));
            let want = expected_feature(&name(f));
            assert!(
                e.problems
                    .iter()
                    .any(|p| want.iter().any(|w| p.to_string().contains(w))),
                "{}: expected {want:?} in {text}",
                name(f)
            );
        }
    }
}

#[test]
fn unsupported_set_is_rejected_whole() {
    // A supported GNP and an unsupported one in one List: nothing loads.
    let f = base().join("unsupported/calicoctl-convert--policy-list-donottrack.yaml");
    let e = load(&[f]).unwrap_err();
    assert_eq!(e.problems.len(), 1, "{e}");
    assert!(
        e.to_string()
            .contains("doc 0: items[1].spec.doNotTrack: doNotTrack is not supported"),
        "{e}"
    );
    // HostEndpoint doc 4 and BGPPeer doc 7 in one file: both named.
    let f = base().join("unsupported/calico-repo--migration-seed-resources.yaml");
    let e = load(&[f]).unwrap_err().to_string();
    assert!(
        e.contains("doc 4: kind: kind HostEndpoint is not supported"),
        "{e}"
    );
    assert!(e.contains("doc 7: kind: unknown kind BGPPeer"), "{e}");
}

#[test]
fn invalid_duplicate_key_is_named() {
    let fs = files("invalid");
    assert_eq!(fs.len(), 1);
    let e = load(&fs).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("calico-docs--reference--workloadendpoint.yaml doc 0: spec.endpoint: duplicate key `endpoint`"), "{text}");
}
