//! A broken peer fails `sluice-bench cps`: a peer that completes no
//! connection, or a cps.sh that stops naming the peer, makes the command
//! exit 1 naming the peer, never print a ratio. Cheap: a fake cps.sh
//! (`SLUICE_CPS_SCRIPT`) and no offline replay.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_sluice-bench");

const OK_SLUICE: &str = "result sluice cps 20000.0 completed 200000 failed 0 setup_p50_us 900 setup_p99_us 2000 exchange_p50_us 2500 exchange_p99_us 4000 gen_busy 0.9 dut_busy 0.9 dut_us_per_conn 45.0";

fn fake_script(root: &Path, name: &str, body: &str) -> PathBuf {
    std::fs::create_dir_all(root).unwrap();
    let f = root.join(name);
    std::fs::write(&f, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    f
}

fn cps(script: &Path) -> (Option<i32>, String) {
    let o = Command::new(EXE)
        .args(["cps", "--peers", "sluice,kernel", "--skip-offline"])
        .env("SLUICE_CPS_SCRIPT", script)
        .env("SLUICE_PEERS_LOCKED", "1")
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn a_peer_that_completes_nothing_fails_cps() {
    let root = std::env::temp_dir().join(format!("sluice-cps-fail-{}", std::process::id()));

    // The kernel completes nothing, yet the script exits 0.
    let s = fake_script(
        &root,
        "nothing.sh",
        &format!("echo '{OK_SLUICE}'\necho 'result kernel cps 0.0 completed 0 failed 3170 setup_p50_us 0 setup_p99_us 0 exchange_p50_us 0 exchange_p99_us 0 gen_busy 0.2 dut_busy 0.1 dut_us_per_conn -'"),
    );
    let (code, text) = cps(&s);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("FAILED live")
            && text.contains("kernel conntrack + nftables (VIP + masquerade): completed no connection (3170 failed)"),
        "{text}"
    );
    assert!(!text.contains("sluice / kernel"), "{text}");

    // The kernel prints no figures at all.
    let s = fake_script(&root, "missing.sh", &format!("echo '{OK_SLUICE}'"));
    let (code, text) = cps(&s);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("kernel conntrack + nftables (VIP + masquerade): cps.sh printed no figures"),
        "{text}"
    );

    // The script stops, naming the peer.
    let s = fake_script(
        &root,
        "dies.sh",
        &format!("echo '{OK_SLUICE}'\necho 'cps.sh: error: kernel: completed no connection in 10s' >&2\nexit 1"),
    );
    let (code, text) = cps(&s);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("cps.sh: error: kernel: completed no connection in 10s"),
        "{text}"
    );
    assert!(!text.contains("sluice / kernel"), "{text}");

    // Both peers fine: exit 0 and the ratio.
    let k = OK_SLUICE.replace("result sluice cps 20000.0", "result kernel cps 25000.0");
    let s = fake_script(&root, "fine.sh", &format!("echo '{OK_SLUICE}'\necho '{k}'"));
    let (code, text) = cps(&s);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("sluice / kernel: 0.80x connections/s"),
        "{text}"
    );

    let _ = std::fs::remove_dir_all(&root);
}
