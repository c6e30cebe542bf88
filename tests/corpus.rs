//! Every third-party capture in `shared/pcaps/` replays without a panic and
//! with every frame accounted for, or is rejected (exit 2) with a message
//! naming the file and the problem.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use engine::sources::config::Config;
use engine::worker::replay::{self, Input, ReplayOptions};

fn all_captures() -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(d).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the shared capture corpus is expected in ../shared/pcaps, \
                 next to the repository)",
                d.display()
            )
        });
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            ) {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(&shared().join("pcaps"), &mut v);
    v.sort();
    v
}

/// Files a reader must refuse, with the word the error must contain.
const REJECTED: &[(&str, &str)] = &[
    ("pcap-invalid-version-1.pcap", "version 1.4"),
    ("pcap-invalid-version-2.pcap", "version 2.5"),
    ("pcap-linktype-reserved-bits.pcap", "reserved bits"),
    ("pcapng-invalid-vers-1.pcapng", "version 0.1"),
    ("pcapng-invalid-vers-2.pcapng", "version 1.1"),
    ("pcapng-shb-option-too-long.pcapng", "corrupt"),
    ("ieee80211-arp.pcap", "IEEE802_11 (105)"),
    ("radiotap-arp.pcap", "IEEE802_11_RADIOTAP (127)"),
    ("nflog.pcap", "NFLOG (239)"),
    ("ppp-mpls-traceroute.pcap", "PPP (9)"),
    ("unsupported-linktype-160.pcap", "(160)"),
    ("unsupported-linktype-dbus.pcap", "DBUS (231)"),
];

/// Pipeline time is kept per loop, summed over workers: the loops add up
/// to the whole, every loop has its share, and a loop's ns/packet counts
/// that loop's frames only.
#[test]
fn pipeline_time_by_loop() {
    let cfg = Config::load(&fixtures().join("sluice.yaml")).unwrap();
    let tables = Arc::new(engine::state::build::replay_tables(&cfg.state()).unwrap());
    let inputs: Vec<Input> = all_captures()
        .into_iter()
        .filter(|p| p.parent().unwrap().ends_with("malformed"))
        .map(|path| Input { port: None, path })
        .collect();
    let s = replay::run(
        &cfg.state(),
        tables,
        &ReplayOptions {
            inputs,
            workers: 2,
            loops: 3,
            ..ReplayOptions::default()
        },
    )
    .unwrap();
    assert_eq!(s.busy_seconds_by_loop.len(), 3);
    assert!(s.busy_seconds_by_loop.iter().all(|&b| b > 0.0));
    let sum: f64 = s.busy_seconds_by_loop.iter().sum();
    assert!((sum - s.busy_seconds).abs() <= 1e-9 * s.busy_seconds.max(1.0));
    assert_eq!(s.packets, 3 * s.frames_read);
    let all = s.pipeline_ns_per_packet_of(0, 3);
    assert!((all - s.pipeline_ns_per_packet()).abs() <= 1e-6 * all);
    let first = s.pipeline_ns_per_packet_of(0, 1);
    let later = s.pipeline_ns_per_packet_of(1, 3);
    assert!(((first + 2.0 * later) / 3.0 - all).abs() <= 1e-6 * all);
    assert_eq!(s.pipeline_ns_per_packet_of(3, 3), 0.0);
}

/// Files in `malformed/` whose frames are not malformed at the layers sluice
/// parses, and why.
const MALFORMED_BUT_NOT_FOR_US: &[&str] = &[
    // ARP is the kernel's: sluice does not parse it.
    "arp-fuzzed.pcap",
    "arp-too-long-tha.pcap",
    // MPLS is not IP at the Ethernet layer: the kernel's.
    "mpls-6in6-4in6-trunc.pcap",
    "mpls-6in6-invalid-version.pcap",
    "mpls-label-trunc.pcap",
    // The damage is in the ICMP extension objects, which a router does not read.
    "icmp-extended-echo-oob.pcap",
    // Bad transport checksums: routers forward them (Linux does not verify
    // L4 checksums when forwarding); this one is also from 127.0.0.1.
    "ip4-tcp-bad-chksum.pcap",
    "ip6-udp-bad-chksum.pcap",
];

#[test]
fn every_shared_capture_is_accounted_for() {
    let cfg = Config::load(&fixtures().join("sluice.yaml")).unwrap();
    let tables = Arc::new(engine::state::build::replay_tables(&cfg.state()).unwrap());
    let files = all_captures();
    assert!(
        files.len() >= 140,
        "found {} captures under {}",
        files.len(),
        shared().display()
    );
    let (mut ok, mut rejected, mut frames_total) = (0, 0, 0u64);
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let opts = ReplayOptions {
            inputs: vec![Input {
                port: None,
                path: f.clone(),
            }],
            verdicts: None,
            ..ReplayOptions::default()
        };
        let res = std::panic::catch_unwind(|| replay::run(&cfg.state(), tables.clone(), &opts));
        let res = res.unwrap_or_else(|_| panic!("{name}: panicked"));
        match (res, REJECTED.iter().find(|r| r.0 == name)) {
            (Ok(s), None) => {
                let a = s.counters.actions;
                assert_eq!(
                    a[0] + a[1] + a[2],
                    s.frames_read,
                    "{name}: frames unaccounted"
                );
                assert_eq!(s.packets, s.frames_read, "{name}");
                frames_total += s.frames_read;
                let malformed = s
                    .counters
                    .drop_count(engine::pipeline::DropReason::Malformed);
                if f.parent().unwrap().ends_with("malformed")
                    && !MALFORMED_BUT_NOT_FOR_US.contains(&name)
                {
                    assert!(
                        malformed > 0,
                        "{name}: expected malformed drops, got {:?}",
                        s.counters
                    );
                }
                ok += 1;
            }
            (Err(e), Some((_, word))) => {
                let msg = e.to_string();
                assert_eq!(e.exit_code(), 2, "{name}: {msg}");
                assert!(msg.contains(name) && msg.contains(word), "{name}: {msg}");
                rejected += 1;
            }
            (Ok(_), Some(_)) => panic!("{name}: should have been rejected"),
            (Err(e), None) => panic!("{name}: rejected: {e}"),
        }
    }
    assert_eq!(rejected, REJECTED.len());
    assert!(
        ok > 120 && frames_total > 6000,
        "ok {ok}, frames {frames_total}"
    );
}

/// Fuzzed frames also go through the multi-worker path without trouble.
#[test]
fn malformed_folder_with_four_workers() {
    let cfg = Config::load(&fixtures().join("sluice.yaml")).unwrap();
    let tables = Arc::new(engine::state::build::replay_tables(&cfg.state()).unwrap());
    let inputs: Vec<Input> = all_captures()
        .into_iter()
        .filter(|p| p.parent().unwrap().ends_with("malformed"))
        .map(|path| Input { port: None, path })
        .collect();
    let one = replay::run(
        &cfg.state(),
        tables.clone(),
        &ReplayOptions {
            inputs: inputs.clone(),
            verdicts: Some(PathBuf::from("/dev/null")),
            ..ReplayOptions::default()
        },
    )
    .unwrap();
    let four = replay::run(
        &cfg.state(),
        tables,
        &ReplayOptions {
            inputs,
            workers: 4,
            verdicts: Some(PathBuf::from("/dev/null")),
            ..ReplayOptions::default()
        },
    )
    .unwrap();
    assert_eq!(one.actions, four.actions);
    assert_eq!(one.counters.actions, four.counters.actions);
}
