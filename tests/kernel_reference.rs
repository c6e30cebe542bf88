//! Linux is the reference: for the same input frames, what sluice sends out
//! of each port is byte-identical to what the kernel sends when it forwards
//! with ip_forward and nftables dnat/masquerade.
//!
//! `pcap-fixtures/kernel/capture.sh` makes a router namespace forward real
//! sessions (curl to a service VIP, DNS-like UDP, ping, a refused
//! connection, and pod-initiated traffic through masquerade) and records its
//! input and output on both interfaces. The checked-in captures are
//! replayed here without privileges; the live test (root) captures afresh
//! and compares the same way.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;

fn kernel_dir() -> std::path::PathBuf {
    fixtures().join("kernel")
}

/// Replays `dir/{uplink,pods}-in.pcap` through sluice and returns the
/// verdicts.
fn replay(dir: &Path, out: &Path, workers: usize, extra: &[&str]) -> String {
    replay_with(dir, out, workers, "sluice.yaml", extra)
}

fn replay_with(dir: &Path, out: &Path, workers: usize, config: &str, extra: &[&str]) -> String {
    std::fs::create_dir_all(out).unwrap();
    let v = out.join("verdicts.jsonl");
    let (code, _, err) = run(sluice()
        .args(["replay", "--config"])
        .arg(kernel_dir().join(config))
        .arg(format!(
            "--pcap=uplink={}",
            dir.join("uplink-in.pcap").display()
        ))
        .arg(format!(
            "--pcap=pods={}",
            dir.join("pods-in.pcap").display()
        ))
        .arg("--workers")
        .arg(workers.to_string())
        .arg("--out-dir")
        .arg(out)
        .arg("--verdicts")
        .arg(&v)
        .args(extra));
    assert_eq!(code, 0, "{err}");
    std::fs::read_to_string(v).unwrap()
}

/// Compares sluice's output on each port with the kernel's, frame by frame.
fn assert_same_as_kernel(kernel: &Path, ours: &Path) {
    let mut total = 0;
    for port in ["uplink", "pods"] {
        let k = frames(&kernel.join(format!("{port}-out.pcap")));
        let s = frames(&ours.join(format!("{port}.pcap")));
        assert!(!k.is_empty(), "the kernel sent nothing on {port}");
        for (i, (a, b)) in k.iter().zip(&s).enumerate() {
            if a != b {
                let at: Vec<usize> = (0..a.len().min(b.len()))
                    .filter(|&j| a[j] != b[j])
                    .take(8)
                    .collect();
                panic!("{port} frame {i}: differs from the kernel's at bytes {at:?} (lengths {} vs {})", a.len(), b.len());
            }
        }
        assert_eq!(
            k.len(),
            s.len(),
            "{port}: kernel sent {} frames, sluice {}",
            k.len(),
            s.len()
        );
        total += k.len();
    }
    assert!(total >= 30, "only {total} frames compared");
}

#[test]
fn checked_in_sessions_match_the_kernel() {
    let tmp = TempDir::new("kref");
    replay(&kernel_dir(), tmp.path(), 1, &[]);
    assert_same_as_kernel(&kernel_dir(), tmp.path());
}

#[test]
fn sessions_show_nat_both_ways_with_valid_checksums() {
    require_tool("tshark");
    let tmp = TempDir::new("kref-tshark");
    replay(&kernel_dir(), tmp.path(), 1, &[]);
    let fields = |port: &str| {
        tshark_checked(
            &tmp.path().join(format!("{port}.pcap")),
            &[
                "ip.src",
                "ip.dst",
                "ip.checksum.status",
                "tcp.checksum.status",
                "udp.checksum.status",
            ],
        )
    };
    let up = fields("uplink");
    let pods = fields("pods");
    for l in up.iter().chain(&pods) {
        let f: Vec<&str> = l.split('\t').collect();
        assert!(
            !f[2..].iter().any(|s| s.split(',').any(|x| x == "0")),
            "bad checksum: {l}"
        );
    }
    // DNAT: the client talks to the VIP, the backend sees the client.
    assert!(
        up.iter().any(|l| l.starts_with("10.96.0.10\t192.0.2.100")),
        "replies from the VIP"
    );
    assert!(
        pods.iter().any(|l| l.starts_with("192.0.2.100\t10.1.0.5")),
        "requests to the backend"
    );
    // SNAT: the pod appears as the node outside, and gets its replies.
    assert!(
        up.iter().any(|l| l.starts_with("192.0.2.1\t192.0.2.100")),
        "masqueraded requests"
    );
    assert!(
        pods.iter().any(|l| l.starts_with("192.0.2.100\t10.1.0.5")),
        "replies to the pod"
    );
    // Pod-initiated traffic never shows the pod's address outside (the
    // client's pings to the pod do: they are not masqueraded).
    for l in up.iter().filter(|l| l.starts_with("10.1.0.5\t")) {
        assert!(
            l.ends_with("\t\t"),
            "only ICMP replies show the pod's address: {l}"
        );
    }
}

/// With a policy that denies all unsolicited ingress to the backend pod
/// except its service ports, everything the kernel forwarded still leaves
/// sluice identically (service connections are allowed; the pod's own
/// masqueraded connections get their replies through conntrack) except the
/// client's unsolicited pings to the pod, which policy drops (and whose
/// echo replies then belong to no connection).
#[test]
fn replies_pass_under_a_deny_unsolicited_ingress_policy() {
    let tmp = TempDir::new("kref-policy");
    let verdicts = replay_with(&kernel_dir(), tmp.path(), 1, "sluice-policy.yaml", &[]);
    let policy_drops = verdicts
        .lines()
        .filter(|l| l.contains("\"policy\""))
        .count();
    assert!(
        policy_drops >= 1,
        "the unsolicited pings are denied: {verdicts}"
    );
    let client = u128::from(u32::from_be_bytes([192, 0, 2, 100]));
    let pod = u128::from(u32::from_be_bytes([10, 1, 0, 5]));
    let unsolicited_ping = |f: &[u8]| {
        engine::wire::parse(f).is_ok_and(|p| {
            p.proto == 1
                && ((p.src, p.dst, p.icmp_type) == (client, pod, 8)
                    || (p.src, p.dst, p.icmp_type) == (pod, client, 0))
        })
    };
    for port in ["uplink", "pods"] {
        let kernel: Vec<Vec<u8>> = frames(&kernel_dir().join(format!("{port}-out.pcap")))
            .into_iter()
            .filter(|f| !unsolicited_ping(f))
            .collect();
        let ours = frames(&tmp.path().join(format!("{port}.pcap")));
        assert_eq!(ours.len(), kernel.len(), "{port}");
        assert!(ours == kernel, "{port}: frames differ from the kernel's");
    }
}

#[test]
fn workers_give_the_same_frames() {
    let tmp = TempDir::new("kref-workers");
    let mut seen = Vec::new();
    for w in [1, 2, 4] {
        let out = tmp.path().join(format!("w{w}"));
        let verdicts = replay(&kernel_dir(), &out, w, &[]);
        let frames: Vec<_> = ["uplink", "pods", "kernel", "drops"]
            .iter()
            .map(|p| frames(&out.join(format!("{p}.pcap"))))
            .collect();
        seen.push((verdicts, frames));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
}

/// Root only: the kernel forwards fresh sessions now, sluice replays them.
#[test]
fn live_kernel_sessions_match() {
    require_tool("tcpdump");
    require_tool("nft");
    let tmp = TempDir::new("kref-live");
    let cap = tmp.path().join("capture");
    let tag = format!("{}", std::process::id() % 100_000);
    let (code, out, err) = run(std::process::Command::new(kernel_dir().join("capture.sh"))
        .arg(&cap)
        .arg(&tag));
    assert_eq!(code, 0, "capture failed: {out}{err}");
    // The veths keep the kernel's default offloads, as a pod's do, so
    // tcpdump records TCP and UDP checksums as partial (the pseudo-header
    // sum a device completes on the wire). Every captured frame, in and
    // out, is made what a wire would carry before replay and comparison.
    for f in ["uplink-in", "pods-in", "uplink-out", "pods-out"] {
        on_the_wire(&cap.join(format!("{f}.pcap")));
    }
    let ours = tmp.path().join("ours");
    replay(&cap, &ours, 1, &[]);
    assert_same_as_kernel(&cap, &ours);
}

/// Rewrites a capture with every frame's checksums completed
/// (`wire::build::fix_checksums`), timestamps kept.
fn on_the_wire(path: &Path) {
    let cap = engine::io::pcap::read_file(path, &[0; 6]).unwrap();
    let mut w = engine::io::pcap::PcapWriter::new(Vec::new()).unwrap();
    for (i, r) in cap.frames.iter().enumerate() {
        let mut f = cap.frame(i).to_vec();
        engine::wire::build::fix_checksums(&mut f);
        w.write(r.ts_ns, &f).unwrap();
    }
    std::fs::write(path, w.finish().unwrap()).unwrap();
}
