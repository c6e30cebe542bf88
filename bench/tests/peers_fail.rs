//! A broken peer fails `sluice-bench peers`: a `dpdk-test-acl` that prints
//! nothing and exits 1, or exits 0 without figures, makes the command exit
//! non-zero naming the peer and why, never print a ratio of zero. Cheap: a
//! two-rule ClassBench set and a fake peer first on PATH.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_sluice-bench");

/// A two-filter ClassBench folder with a trace and its first matches.
fn classbench_dir(root: &Path) -> PathBuf {
    let d = root.join("classbench");
    for sub in ["rules", "traces", "firstmatch"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    std::fs::write(
        d.join("rules/tiny_2"),
        "@10.0.0.0/8\t192.168.0.0/16\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0000/0x0000\t\n\
         @0.0.0.0/0\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\t0x0000/0x0000\t\n",
    )
    .unwrap();
    // 10.1.2.3 -> 192.168.1.1:80/tcp (rule 0), 1.2.3.4 -> 5.6.7.8:53/udp (rule 1).
    std::fs::write(
        d.join("traces/tiny_2_trace"),
        "167838211\t3232235777\t1234\t80\t6\t0\t0\n16909060\t84281096\t1234\t53\t17\t0\t1\n",
    )
    .unwrap();
    std::fs::write(d.join("firstmatch/tiny_2_trace.firstmatch"), "0\n1\n").unwrap();
    d
}

/// A fake `dpdk-test-acl` running `body` in a folder of its own.
fn fake_peer(root: &Path, name: &str, body: &str) -> PathBuf {
    let bin = root.join(name);
    std::fs::create_dir_all(&bin).unwrap();
    let f = bin.join("dpdk-test-acl");
    std::fs::write(&f, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn peers(cb: &Path, bin: &Path) -> (Option<i32>, String) {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new(EXE)
        .args(["peers", "--sets", "tiny_2", "--skip-fib", "--skip-live"])
        .args(["--hugepages", "0"])
        .arg("--classbench")
        .arg(cb)
        .env("PATH", path)
        // The test harness may hold the CPU lock already.
        .env("SLUICE_PEERS_LOCKED", "1")
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn broken_dpdk_test_acl_fails_peers() {
    let root = std::env::temp_dir().join(format!("sluice-peers-fail-{}", std::process::id()));
    let cb = classbench_dir(&root);

    // Prints nothing, exits 1.
    let bin = fake_peer(&root, "exits1", "exit 1");
    let (code, text) = peers(&cb, &bin);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("FAILED acl") && text.contains("peer dpdk-test-acl failed"),
        "{text}"
    );
    assert!(
        text.contains("dpdk-test-acl --alg=scalar exited with exit status: 1"),
        "{text}"
    );
    assert!(!text.contains("0.00x"), "{text}");

    // Exits 0 without figures.
    let bin = fake_peer(&root, "silent", "echo 'EAL: probing'; exit 0");
    let (code, text) = peers(&cb, &bin);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("dpdk-test-acl --alg=scalar produced no figures"),
        "{text}"
    );
    assert!(!text.contains("0.00x"), "{text}");

    let _ = std::fs::remove_dir_all(&root);
}
