//! The examples of spec/cli.md and spec/policy.md, through `cli::eval`.

// Test helpers outside #[test] functions unwrap too: a failure is a test
// failure (clippy.toml allows it only inside #[test]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;

use policy_compiler::cli;

fn write_tmp(name: &str, text: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("pc-examples-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    p
}

fn eval(policy: &str, packets: &str) -> Result<Vec<serde_json::Value>, cli::CliError> {
    let p = write_tmp("policy.yaml", policy);
    let mut out = Vec::new();
    cli::eval(&[p], &mut packets.as_bytes(), &mut out)?;
    Ok(String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect())
}

const CLI_EXAMPLE_POLICY: &str = r#"
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: wep3, namespace: ns1, labels: {app: web}}
spec:
  ipNetworks: [10.0.0.1/32]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-web, namespace: ns1}
spec:
  selector: app == 'web'
  types: [Egress]
  egress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [80]
"#;

#[test]
fn cli_md_eval_example() {
    let out = eval(
        CLI_EXAMPLE_POLICY,
        r#"{"proto": "tcp", "src": "10.0.0.1", "sport": 4242, "dst": "10.0.1.7", "dport": 80}"#,
    )
    .unwrap();
    let want: serde_json::Value = serde_json::from_str(
        r#"{"verdict": "allow",
 "egress":  {"verdict": "allow", "endpoint": "ns1/wep3", "decided_by": {"tier": "default", "policy": "ns1/allow-web", "rule": 0}},
 "ingress": {"verdict": "allow", "endpoint": null, "decided_by": null}}"#,
    )
    .unwrap();
    assert_eq!(out, vec![want]);
}

#[test]
fn cli_md_output_key_order() {
    let p = write_tmp("order.yaml", CLI_EXAMPLE_POLICY);
    let mut out = Vec::new();
    cli::eval(
        &[p],
        &mut r#"{"proto": "tcp", "src": "10.0.0.1", "sport": 4242, "dst": "10.0.1.7", "dport": 80}"#.as_bytes(),
        &mut out,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"verdict\":\"allow\",\"egress\":{\"verdict\":\"allow\",\"endpoint\":\"ns1/wep3\",\"decided_by\":{\"tier\":\"default\",\"policy\":\"ns1/allow-web\",\"rule\":0}},\"ingress\":{\"verdict\":\"allow\",\"endpoint\":null,\"decided_by\":null}}\n"
    );
}

#[test]
fn policy_md_port_error_example() {
    let p = write_tmp(
        "web.yaml",
        r#"apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: t}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: u}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: web}
spec:
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [80, "80-90"]
"#,
    );
    let e = cli::eval(
        std::slice::from_ref(&p),
        &mut "".as_bytes(),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        e.to_string(),
        format!(
            "{} doc 2: spec.ingress[0].destination.ports[1]: \"80-90\" is not a port or range (use \"80:90\")",
            p.display()
        )
    );
}

#[test]
fn bad_packet_line_names_the_line() {
    let e = eval(
        CLI_EXAMPLE_POLICY,
        "{\"proto\": \"tcp\", \"src\": \"10.0.0.1\", \"sport\": 1, \"dst\": \"10.0.1.7\", \"dport\": 80}\n{\"proto\": \"tcp\", \"src\": \"10.0.0.1\"}\n",
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert_eq!(e.to_string(), "packets line 2: missing dst");
}
