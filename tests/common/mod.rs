//! Helpers shared by the end-to-end tests (included with `mod common;`).
#![allow(dead_code)]
// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `pcap-fixtures/`.
pub fn fixtures() -> PathBuf {
    repo().join("pcap-fixtures")
}

/// The shared third-party inputs (`../shared` next to the repository, or
/// `$SLUICE_SHARED`).
pub fn shared() -> PathBuf {
    std::env::var_os("SLUICE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared"))
}

/// The `sluice` binary built for this test run.
pub fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "sluice-test-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command, returning (status code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("command runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The tables of the kernel-reference config (`pcap-fixtures/kernel/sluice-policy.yaml`:
/// a backend pod 10.1.0.5 behind the pods port, the policy allowing TCP
/// 8080 and 9999 to it), for pipelines built in the test.
pub fn kernel_policy_tables() -> std::sync::Arc<engine::tables::Tables> {
    let cfg = engine::sources::config::Config::load(&fixtures().join("kernel/sluice-policy.yaml"))
        .unwrap();
    std::sync::Arc::new(engine::state::build::replay_tables(&cfg.state()).unwrap())
}

/// Runs `frames` (copies: the pipeline rewrites them) through `p` as one
/// batch arriving on port 0 at `now`; the actions in order.
pub fn send_batch(
    p: &mut engine::pipeline::Pipeline,
    now: u64,
    frames: &[Vec<u8>],
) -> Vec<engine::pipeline::Action> {
    let mut fs: Vec<Vec<u8>> = frames.to_vec();
    let mut b = engine::pipeline::Batch::new();
    for f in fs.iter_mut() {
        b.push(f.as_mut_slice(), 0).unwrap();
    }
    p.process(now, &mut b);
    b.slots().iter().map(|s| s.action).collect()
}

/// Reads every frame of a pcap written by sluice.
pub fn frames(path: &Path) -> Vec<Vec<u8>> {
    let cap = engine::io::pcap::read_file(path, &[0; 6]).expect("readable pcap");
    (0..cap.frames.len())
        .map(|i| cap.frame(i).to_vec())
        .collect()
}

/// Requires a tool on PATH; the test command installs it.
pub fn require_tool(tool: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "{tool} is required (scripts/test.sh installs it)");
}

/// `tshark -T fields` over `pcap` with IP, TCP and UDP checksum validation
/// on: one line per frame, the `fields` tab-separated (a checksum status is
/// 0 bad, 1 good, 2 unverified).
pub fn tshark_checked(pcap: &Path, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap).args([
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-T",
        "fields",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark runs");
    assert!(
        out.status.success(),
        "tshark {}: {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A small deterministic generator (xorshift64*) for generated test
/// scenarios: the same seed gives the same scenario on every machine.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True `pct` times in 100.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }

    pub fn word(&mut self, v: &[&'static str]) -> &'static str {
        v[self.below(v.len())]
    }
}
