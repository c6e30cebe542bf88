//! Felix drives `sluice run` end to end, as a real Felix would: `sluice
//! run` with a `felix:` section in the router namespace (see
//! `netns/mod.rs`), and `sluice felix-shim` started with two pipes on fd 3
//! and fd 4 exactly as Felix's `StartExtDataplaneDriver` hands them over.
//! The test plays Felix: it streams a snapshot, reads the status back,
//! checks `ctl felix` and the routes the model added, kills the shim in
//! the middle of a frame (the engine keeps forwarding), and resyncs from
//! new sessions, each replacing the last. Needs root.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod netns;

use std::io::{PipeWriter, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use engine::sources::felix::codec::{self, FrameReader};
use engine::sources::felix::proto::{self, from_dataplane, to_dataplane::Payload, ToDataplane};
use netns::*;

/// A `sluice felix-shim` with Felix's pipes: we write its fd 3 and read its
/// fd 4.
struct Shim {
    child: Child,
    to: Option<PipeWriter>,
    from: mpsc::Receiver<proto::FromDataplane>,
    seq: u64,
}

impl Shim {
    fn start(socket: &Path, record: Option<&Path>) -> Shim {
        let (fd3_r, fd3_w) = std::io::pipe().unwrap();
        let (fd4_r, fd4_w) = std::io::pipe().unwrap();
        // The shell moves the pipes to 3 and 4 (as Go's ExtraFiles does)
        // and execs the shim, which so gets exactly those descriptors.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"exec "$0" felix-shim "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(env!("CARGO_BIN_EXE_sluice"))
            .arg("--socket")
            .arg(socket);
        if let Some(r) = record {
            cmd.arg("--record").arg(r);
        }
        let child = cmd
            .stdin(Stdio::from(fd3_r))
            .stdout(Stdio::from(fd4_w))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Our copies of the child's ends went with `cmd`.
        drop(cmd);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = FrameReader::new(fd4_r, 1 << 20);
            while let Ok(Some(f)) = r.next_frame() {
                let m = codec::decode_from_dataplane(r.frames() - 1, &f).unwrap();
                if tx.send(m).is_err() {
                    return;
                }
            }
        });
        Shim {
            child,
            to: Some(fd3_w),
            from: rx,
            seq: 0,
        }
    }

    fn send(&mut self, p: Payload) {
        let m = ToDataplane {
            sequence_number: self.seq,
            payload: Some(p),
        };
        self.seq += 1;
        self.to
            .as_mut()
            .unwrap()
            .write_all(&codec::encode(&m))
            .unwrap();
    }

    /// The next `ProcessStatusUpdate` from fd 4.
    fn status(&mut self) -> proto::ProcessStatusUpdate {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(m) = self.from.recv_timeout(Duration::from_millis(100)) {
                if let Some(from_dataplane::Payload::ProcessStatusUpdate(p)) = m.payload {
                    return p;
                }
            }
        }
        panic!(
            "no ProcessStatusUpdate on fd 4 within 5 s (shim: {:?})",
            self.child.try_wait()
        );
    }

    /// Waits for the shim to exit; its status and stderr.
    fn wait(mut self, limit: Duration) -> (i32, String) {
        drop(self.to.take());
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut err)
                    .unwrap();
                return (st.code().unwrap_or(-1), err);
            }
            assert!(
                t0.elapsed() < limit,
                "felix-shim still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn felix(t: &Topo) -> serde_json::Value {
    let (code, v, err) = t.ctl(&["--json", "felix"]);
    assert_eq!(code, 0, "{err}");
    v
}

/// Polls `ctl felix` until `ok` holds of it.
fn wait_felix(t: &Topo, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let v = felix(t);
        if ok(&v) {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{what}: {v:#}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn has_route(t: &Topo, prefix: &str) -> bool {
    let (_, v, _) = t.ctl(&["--json", "routes"]);
    v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["prefix"] == prefix && r["port"] == "b" && r["via"] == SERVER_IP)
}

fn pid(name: &str) -> proto::PolicyId {
    proto::PolicyId {
        name: name.into(),
        namespace: String::new(),
        kind: "GlobalNetworkPolicy".into(),
    }
}

/// A snapshot: config, two IP sets, a policy, a profile, a pod, a route
/// to another node's block through the server, a pool; then `InSync`.
fn snapshot(s: &mut Shim, with_route: bool) {
    let mut cfg = proto::ConfigUpdate::default();
    cfg.config.insert("InterfacePrefix".into(), "cali".into());
    s.send(Payload::ConfigUpdate(cfg));
    for (id, members) in [
        ("s:web", vec!["10.88.0.1/32", "10.88.0.2/32"]),
        ("s:db", vec!["10.88.0.9/32"]),
    ] {
        s.send(Payload::IpsetUpdate(proto::IpSetUpdate {
            id: id.into(),
            members: members.into_iter().map(String::from).collect(),
            r#type: proto::IpSetType::Net as i32,
        }));
    }
    s.send(Payload::ActivePolicyUpdate(proto::ActivePolicyUpdate {
        id: Some(pid("allow-web")),
        policy: Some(proto::Policy {
            inbound_rules: vec![proto::Rule {
                action: "allow".into(),
                src_ip_set_ids: vec!["s:web".into()],
                ..Default::default()
            }],
            tier: "default".into(),
            ..Default::default()
        }),
    }));
    s.send(Payload::ActiveProfileUpdate(proto::ActiveProfileUpdate {
        id: Some(proto::ProfileId {
            name: "kns.default".into(),
        }),
        profile: Some(proto::Profile::default()),
    }));
    s.send(Payload::WorkloadEndpointUpdate(
        proto::WorkloadEndpointUpdate {
            id: Some(proto::WorkloadEndpointId {
                orchestrator_id: "k8s".into(),
                workload_id: "default/web-0".into(),
                endpoint_id: "eth0".into(),
            }),
            endpoint: Some(proto::WorkloadEndpoint {
                name: "cali12345".into(),
                ipv4_nets: vec!["10.88.0.1/32".into()],
                ..Default::default()
            }),
        },
    ));
    if with_route {
        s.send(Payload::RouteUpdate(proto::RouteUpdate {
            types: proto::RouteType::RemoteWorkload as i32,
            dst: "10.88.1.0/26".into(),
            dst_node_ip: SERVER_IP.into(),
            ..Default::default()
        }));
    }
    s.send(Payload::IpamPoolUpdate(proto::IpamPoolUpdate {
        id: "10.88.0.0-16".into(),
        pool: Some(proto::IpamPool {
            cidr: "10.88.0.0/16".into(),
            ..Default::default()
        }),
    }));
    s.send(Payload::InSync(proto::InSync {}));
}

#[test]
fn felix_sessions_through_the_shim() {
    let mut t = Topo::new("fx", 1);
    let sock = t.dir().join("felix.sock");
    let record = t.dir().join("felix.rec");
    let cfg = t.config(
        &[worker_core()],
        &format!("felix: {{socket: \"{}\"}}\n", sock.display()),
    );
    let s = t.start_sluice(&cfg, &[]);
    let v = felix(&t);
    assert_eq!(
        (v["enabled"].as_bool(), v["connected"].as_bool()),
        (Some(true), Some(false)),
        "{v}"
    );

    // Session 1: a snapshot; the status comes back at InSync.
    let mut a = Shim::start(&sock, Some(&record));
    snapshot(&mut a, true);
    let st = a.status();
    assert!(st.uptime > 0.0, "{st:?}");
    let ts = st.iso_timestamp.as_bytes();
    assert!(
        ts.len() == 20 && ts[4] == b'-' && ts[10] == b'T' && ts[19] == b'Z',
        "{}",
        st.iso_timestamp
    );
    let v = wait_felix(&t, "session 1 in sync", |v| v["in_sync"] == true);
    let m = &v["model"];
    for (k, n) in [
        ("ip_sets", 2),
        ("ip_set_members", 3),
        ("policies", 1),
        ("profiles", 1),
        ("workload_endpoints", 1),
        ("routes", 1),
        ("pools", 1),
    ] {
        assert_eq!(m[k], n, "{k}: {v:#}");
    }
    assert_eq!(v["session"]["id"], 1);
    assert_eq!(v["session"]["messages"], 9);
    assert_eq!(v["applied"]["routes"], 1, "{v:#}");
    let unsupported: Vec<&str> = v["unsupported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["feature"].as_str().unwrap())
        .collect();
    // The policy is compiled and enforced; endpoints are not attached yet.
    assert!(
        !unsupported.contains(&"policy") && unsupported.contains(&"workload endpoints"),
        "{v:#}"
    );
    assert!(v["policy"].is_object(), "{v:#}");
    assert!(v["last_apply_ms"].as_f64().is_some(), "{v:#}");
    assert!(has_route(&t, "10.88.1.0/26"));
    assert!(t.ping(&t.client, SERVER_IP, 2), "no ping through sluice");

    // After InSync, a change is applied as it comes.
    a.send(Payload::IpsetDeltaUpdate(proto::IpSetDeltaUpdate {
        id: "s:db".into(),
        added_members: vec!["10.88.0.10/32".into()],
        removed_members: vec![],
    }));
    wait_felix(&t, "the delta", |v| v["model"]["ip_set_members"] == 4);

    // Half a frame, then the shim dies: the session ends with the error,
    // the engine goes on forwarding with the routes it was given.
    let half = codec::encode(&ToDataplane {
        sequence_number: 99,
        payload: Some(Payload::IpsetRemove(proto::IpSetRemove {
            id: "s:web".into(),
        })),
    });
    a.to.as_mut()
        .unwrap()
        .write_all(&half[..half.len() / 2])
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = a.child.kill();
    let v = wait_felix(&t, "session 1 ended", |v| v["connected"] == false);
    let end = &v["last_end"];
    assert_eq!(
        (end["session"].as_u64(), end["error"].as_bool()),
        (Some(1), Some(true)),
        "{v:#}"
    );
    assert!(
        end["reason"]
            .as_str()
            .unwrap()
            .contains("ended inside frame 10"),
        "{v:#}"
    );
    assert_eq!(v["model"]["ip_set_members"], 4, "the last model stays");
    assert!(has_route(&t, "10.88.1.0/26"));
    assert!(
        t.ping(&t.client, SERVER_IP, 2),
        "forwarding stopped with the session"
    );
    drop(a);

    // The record holds the frames relayed, whole, and no more.
    let mut r = FrameReader::new(std::fs::File::open(&record).unwrap(), 1 << 20);
    let mut kinds = Vec::new();
    while let Some(f) = r.next_frame().unwrap() {
        let m = codec::decode_to_dataplane(r.frames() - 1, &f).unwrap();
        kinds.push(engine::sources::felix::model::kind(&m.payload.unwrap()));
    }
    assert_eq!(kinds.len(), 10, "{kinds:?}");
    assert_eq!(
        (kinds[0], kinds[8], kinds[9]),
        ("ConfigUpdate", "InSync", "IPSetDeltaUpdate")
    );

    // Session 2 resyncs without the route: its model replaces the last.
    let mut b = Shim::start(&sock, None);
    snapshot(&mut b, false);
    b.status();
    let v = wait_felix(&t, "session 2 in sync", |v| {
        v["in_sync"] == true && v["session"]["id"] == 2
    });
    assert_eq!(
        (v["sessions"].as_u64(), v["model"]["routes"].as_u64()),
        (Some(2), Some(0))
    );
    assert!(!has_route(&t, "10.88.1.0/26"));
    assert!(t.ping(&t.client, SERVER_IP, 1));

    // Session 3 replaces session 2, whose shim is told and exits (so a
    // real Felix restarts); a shim whose Felix closes fd 3 exits 0.
    let c = Shim::start(&sock, None);
    let (code, err) = {
        let t0 = Instant::now();
        loop {
            if let Some(st) = b.child.try_wait().unwrap() {
                let mut e = String::new();
                std::io::Read::read_to_string(&mut b.child.stderr.take().unwrap(), &mut e).unwrap();
                break (st.code().unwrap_or(-1), e);
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "shim 2 still running"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("closed the session"), "{err}");
    let v = wait_felix(&t, "session 3", |v| v["session"]["id"] == 3);
    assert!(
        v["last_end"]["reason"]
            .as_str()
            .unwrap()
            .contains("replaced"),
        "{v:#}"
    );
    let (code, err) = c.wait(Duration::from_secs(5));
    assert_eq!(code, 0, "{err}");
    let v = wait_felix(&t, "session 3 ended", |v| v["connected"] == false);
    assert_eq!(v["last_end"]["reason"], "Felix closed the stream", "{v:#}");
    assert_eq!(v["failed_sessions"], 1);

    let (code, _, err) = s.stop();
    assert_eq!(code, 0, "{err}");
}
