//! `sluice demo` end to end (root, network namespaces): it builds its
//! topology, passes its own checks (ping and HTTP through masquerade, the
//! VIP spread over both backends, policy denials) and removes every
//! namespace it made, also when interrupted.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn demo_namespaces(pid: u32) -> Vec<String> {
    let o = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("sd{pid}-")))
        .map(String::from)
        .collect()
}

#[test]
fn demo_runs_its_checks_and_cleans_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--seconds", "1", "--requests", "12"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("checks: ping ok, both backends ok, masquerade ok, denials ok"),
        "{stdout}"
    );
    assert!(stdout.contains("the outside saw 192.0.2.1"), "{stdout}");
    assert!(
        stdout.contains("denied 3"),
        "three denied connections: {stdout}"
    );
    // The topology is gone. The demo's pid is in its namespace names.
    let line = stdout.lines().next().unwrap();
    let pid: u32 = line
        .split("namespaces sd")
        .nth(1)
        .and_then(|r| r.split('-').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no namespace prefix in {line:?}"));
    assert!(
        demo_namespaces(pid).is_empty(),
        "{:?}",
        demo_namespaces(pid)
    );
}

#[test]
fn interrupted_demo_removes_everything() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--seconds", "0", "--requests", "2", "--keep"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let t0 = Instant::now();
    let mut up = false;
    for l in lines.by_ref() {
        let l = l.unwrap();
        if l.contains("--keep: the demo stays up") {
            up = true;
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "demo too slow");
    }
    assert!(up, "the demo never came up");
    assert!(
        !demo_namespaces(pid).is_empty(),
        "namespaces exist while it runs"
    );
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(130), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("everything removed")),
        "{rest:?}"
    );
    assert!(
        demo_namespaces(pid).is_empty(),
        "{:?}",
        demo_namespaces(pid)
    );
}
