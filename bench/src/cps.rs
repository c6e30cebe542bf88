//! Connection setup offline: whole TCP connections through the pipeline,
//! the replay twin of `bench/peers/cps.sh` (sluice's figure without
//! AF_XDP, veth or the generator).
//!
//! Model: the live run's node (ports `gen` 10.70.1.1 and `sink` 10.70.2.1,
//! the service VIP 10.70.9.9:80, masquerade of 10.70.1.0/24 leaving `sink`
//! to 10.70.2.1, the same policy: `rules` denies, then the allow of TCP
//! 8080 from 10.70.1.0/24 on the backend). One client, 10.70.1.2, opens
//! `connections` connections from distinct ports (2000..) to the VIP; the
//! service has one backend, 10.70.2.2:8080, so the replies' addresses are
//! known: masquerade keeps a free source port (as Linux does), and each
//! port is used once per loop. Each connection is the live exchange, the
//! server closing first: SYN, SYN-ACK, ACK, request (32 bytes), reply (64),
//! server FIN, ACK, client FIN, ACK — 9 frames, client frames on `gen` and
//! server frames on `sink` (two captures merged by time). Connections go
//! in waves of `in_flight`: every connection of a wave takes its next step
//! before any takes the one after, so a connection's frames are
//! `in_flight` frames apart (never in one batch when that exceeds the batch
//! size). The replay starts from empty state on every loop, so every loop
//! opens every connection again; the replay must forward every frame, or
//! the model no longer matches the pipeline and [`replay`] says why.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use engine::sources::config::Config;
use engine::worker::replay::{self, Input, ReplayOptions};
use serde::Serialize;

use crate::packet::{self as pk, flags, Ip, Mac};
use crate::suite::workload::write_pcap;

/// Frames per connection.
pub const FRAMES_PER_CONNECTION: u64 = 9;
const GEN_PORT_MAC: Mac = [2, 0, 0, 0x70, 1, 1];
const SINK_PORT_MAC: Mac = [2, 0, 0, 0x70, 2, 1];
const CLIENT_MAC: Mac = [2, 0, 0, 0x70, 1, 2];
const BACKEND_MAC: Mac = [2, 0, 0, 0x70, 2, 2];
const CLIENT: [u8; 4] = [10, 70, 1, 2];
const VIP: [u8; 4] = [10, 70, 9, 9];
const BACKEND: [u8; 4] = [10, 70, 2, 2];
const MASQ: [u8; 4] = [10, 70, 2, 1];
const FIRST_PORT: u16 = 2000;

/// Knobs.
#[derive(Clone, Debug)]
pub struct CpsWorkload {
    /// Connections per loop (at most 63,000: one source port each).
    pub connections: u32,
    pub in_flight: usize,
    /// Deny rules before the allow.
    pub rules: usize,
}

impl Default for CpsWorkload {
    fn default() -> Self {
        CpsWorkload {
            connections: 60_000,
            in_flight: 256,
            rules: 10,
        }
    }
}

/// The config (YAML), for replay.
pub fn config_yaml() -> String {
    format!(
        "ports:\n  - {{name: gen, mac: \"{}\", addresses: [\"10.70.1.1/24\"]}}\n  - {{name: sink, mac: \"{}\", addresses: [\"10.70.2.1/24\"]}}\n\
         policy: {{paths: [\"policy/\"]}}\n\
         conntrack: {{max_entries: 1048576}}\n\
         routes:\n  - {{prefix: \"10.70.1.0/24\", port: gen}}\n  - {{prefix: \"10.70.2.0/24\", port: sink}}\n\
         neighbors:\n  - {{ip: \"10.70.1.2\", mac: \"{}\", port: gen}}\n  - {{ip: \"10.70.2.2\", mac: \"{}\", port: sink}}\n\
         services:\n  - {{name: web, vip: \"10.70.9.9\", port: 80, protocol: TCP, affinity: none, backends: [\"10.70.2.2:8080\"]}}\n\
         masquerade:\n  - {{from: \"10.70.1.0/24\", port: sink, address: \"10.70.2.1\"}}\n",
        engine::wire::mac_to_string(&GEN_PORT_MAC),
        engine::wire::mac_to_string(&SINK_PORT_MAC),
        engine::wire::mac_to_string(&CLIENT_MAC),
        engine::wire::mac_to_string(&BACKEND_MAC),
    )
}

/// The policy (YAML): the backend as an endpoint, `rules` denies, the allow.
pub fn policy_yaml(rules: usize) -> String {
    let mut y = String::from(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: backend-2, namespace: bench, labels: {app: web}}\nspec: {ipNetworks: [\"10.70.2.2/32\"]}\n---\n\
         apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: web, namespace: bench}\nspec:\n  selector: app == 'web'\n  types: [Ingress]\n  ingress:\n",
    );
    for i in 0..rules {
        let _ = writeln!(
            y,
            "    - {{action: Deny, protocol: TCP, source: {{nets: [\"172.16.{}.{}/32\"]}}, destination: {{ports: [8080]}}}}",
            (i >> 8) & 255,
            i & 255
        );
    }
    y + "    - {action: Allow, protocol: TCP, source: {nets: [\"10.70.1.0/24\"]}, destination: {ports: [8080]}}\n"
}

/// Step `step` (0..9) of connection `i`: (from the client, frame).
fn frame(i: u32, step: u8) -> (bool, Vec<u8>) {
    let sport = FIRST_PORT + i as u16;
    let x = 1_000_000u32.wrapping_add(i.wrapping_mul(7919));
    let y = 5_000_000u32.wrapping_add(i.wrapping_mul(104_729));
    const A: u8 = flags::ACK;
    let req = [b'q'; 32];
    let rep = [b'y'; 64];
    // (client side, seq, ack, flags, payload)
    let (client, seq, ack, fl, payload): (bool, u32, u32, u8, &[u8]) = match step {
        0 => (true, x, 0, flags::SYN, &[]),
        1 => (false, y, x + 1, flags::SYN | A, &[]),
        2 => (true, x + 1, y + 1, A, &[]),
        3 => (true, x + 1, y + 1, flags::PSH | A, &req),
        4 => (false, y + 1, x + 33, flags::PSH | A, &rep),
        5 => (false, y + 65, x + 33, flags::FIN | A, &[]),
        6 => (true, x + 33, y + 66, A, &[]),
        7 => (true, x + 33, y + 66, flags::FIN | A, &[]),
        _ => (false, y + 66, x + 34, A, &[]),
    };
    let (src, dst, sp, dp) = if client {
        (Ip::V4(CLIENT), Ip::V4(VIP), sport, 80)
    } else {
        (Ip::V4(BACKEND), Ip::V4(MASQ), 8080, sport)
    };
    let seg = pk::tcp(src, dst, sp, dp, seq, ack, fl, payload);
    let ip = pk::ip(src, dst, 6, 64, &seg);
    let f = if client {
        pk::eth_ip(GEN_PORT_MAC, CLIENT_MAC, &ip)
    } else {
        pk::eth_ip(SINK_PORT_MAC, BACKEND_MAC, &ip)
    };
    (client, f)
}

/// A written workload.
#[derive(Clone, Debug)]
pub struct Written {
    pub config: PathBuf,
    pub gen_pcap: PathBuf,
    pub sink_pcap: PathBuf,
    pub connections: u32,
}

/// Writes config, policy and the two captures under `dir`.
pub fn write(w: &CpsWorkload, dir: &Path) -> Result<Written> {
    if w.connections == 0 || w.connections > 63_000 || w.in_flight == 0 {
        bail!(
            "cps workload: connections must be 1..=63000 (one source port each) and in_flight at least 1"
        );
    }
    std::fs::create_dir_all(dir.join("policy"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("sluice.yaml");
    std::fs::write(&config, config_yaml())?;
    std::fs::write(dir.join("policy/web.yaml"), policy_yaml(w.rules))?;
    let mut gen = Vec::new();
    let mut sink = Vec::new();
    let mut ts = 1_700_000_000_000_000_000u64;
    let mut start = 0u32;
    while start < w.connections {
        let end = (start + w.in_flight as u32).min(w.connections);
        for step in 0..FRAMES_PER_CONNECTION as u8 {
            for i in start..end {
                ts += 1000;
                let (client, f) = frame(i, step);
                if client {
                    gen.push((ts, f));
                } else {
                    sink.push((ts, f));
                }
            }
        }
        start = end;
    }
    let gen_pcap = dir.join("gen.pcap");
    let sink_pcap = dir.join("sink.pcap");
    write_pcap(&gen_pcap, &gen)?;
    write_pcap(&sink_pcap, &sink)?;
    Ok(Written {
        config,
        gen_pcap,
        sink_pcap,
        connections: w.connections,
    })
}

/// The offline figure.
#[derive(Clone, Debug, Serialize)]
pub struct Offline {
    pub connections: u64,
    pub loops: u64,
    pub frames_per_connection: u64,
    /// Connections per second of pipeline time, and of the whole replay
    /// loop (batch copies included).
    pub pipeline_cps: f64,
    pub wall_cps: f64,
    pub pipeline_ns_per_connection: f64,
    pub pipeline_ns_per_packet: f64,
}

/// Replays `loops` times on one worker (fresh state each loop); fails
/// when any frame is not forwarded.
pub fn replay(w: &Written, loops: u64, batch: usize) -> Result<Offline> {
    let cfg = Config::load(&w.config).with_context(|| format!("loading {}", w.config.display()))?;
    let state = cfg.state();
    let tables = Arc::new(engine::state::build::replay_tables(&state).context("building tables")?);
    let opts = ReplayOptions {
        inputs: vec![
            Input {
                port: Some("gen".into()),
                path: w.gen_pcap.clone(),
            },
            Input {
                port: Some("sink".into()),
                path: w.sink_pcap.clone(),
            },
        ],
        loops,
        fresh_state: true,
        batch: Some(batch),
        ..ReplayOptions::default()
    };
    let s = replay::run(&state, tables, &opts).context("replay")?;
    let c = &s.counters;
    let expected = u64::from(w.connections) * FRAMES_PER_CONNECTION * loops;
    if c.actions[0] != expected || s.packets != expected {
        let drops: Vec<String> = engine::pipeline::DropReason::ALL
            .iter()
            .filter(|r| c.drop_count(**r) > 0)
            .map(|r| format!("{} {}", r.name(), c.drop_count(*r)))
            .collect();
        bail!(
            "cps offline replay: {} of {expected} frames forwarded (dropped: {}; to the kernel: {}): the workload no longer matches the pipeline",
            c.actions[0],
            if drops.is_empty() { "none".to_string() } else { drops.join(", ") },
            c.actions[2]
        );
    }
    let conns = u64::from(w.connections) * loops;
    Ok(Offline {
        connections: conns,
        loops,
        frames_per_connection: FRAMES_PER_CONNECTION,
        pipeline_cps: conns as f64 / s.busy_seconds.max(1e-9),
        wall_cps: conns as f64 / s.seconds.max(1e-9),
        pipeline_ns_per_connection: s.busy_seconds * 1e9 / conns as f64,
        pipeline_ns_per_packet: s.pipeline_ns_per_packet(),
    })
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every frame of a small workload is forwarded: the SYN-ACKs and the
    /// server's frames find their connections (masquerade kept the ports),
    /// and the policy allows the client.
    #[test]
    fn small_workload_forwards_every_frame() {
        let dir = std::env::temp_dir().join(format!("sluice-cps-test-{}", std::process::id()));
        let w = write(
            &CpsWorkload {
                connections: 300,
                in_flight: 100,
                rules: 3,
            },
            &dir,
        )
        .unwrap();
        let o = replay(&w, 2, 64).unwrap();
        assert_eq!(o.connections, 600);
        assert!(o.pipeline_cps > 0.0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A denied client fails the replay, naming the drop.
    #[test]
    fn a_denied_client_fails_the_replay() {
        let dir = std::env::temp_dir().join(format!("sluice-cps-deny-{}", std::process::id()));
        let w = write(
            &CpsWorkload {
                connections: 10,
                in_flight: 10,
                rules: 0,
            },
            &dir,
        )
        .unwrap();
        std::fs::write(
            dir.join("policy/web.yaml"),
            policy_yaml(0).replace("action: Allow", "action: Deny"),
        )
        .unwrap();
        let e = replay(&w, 1, 64).unwrap_err().to_string();
        assert!(e.contains("policy"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
