//! Felix drives `sluice run` end to end, as a real Felix would: `sluice
//! run` with a `felix:` section in the router namespace (see
//! `netns/mod.rs`), and `sluice felix-shim` started with two pipes on fd 3
//! and fd 4 exactly as Felix's `StartExtDataplaneDriver` hands them over.
//! The test plays Felix: it streams a snapshot, reads the status back,
//! checks `ctl felix` and the routes the model added, adds a pod (a veth
//! into a new namespace laid out as Calico's CNI plugin does — the pod's
//! address alone, `169.254.1.1` as its gateway answered by the node's
//! proxy ARP, no address on the node's side —, then its
//! `WorkloadEndpointUpdate`: attached as a
//! port, reachable as its policy allows, following a policy and an IP set
//! change, its status back on fd 4), a host endpoint whose forward tier
//! stops pings through the node until it is removed (its status on fd 4),
//! kills the shim in the middle of a
//! frame (the engine keeps forwarding), resyncs from new sessions, each
//! replacing the last, with an established TCP connection to the pod
//! still passing data after the resync, and removes the pod (detached,
//! its status removed). Needs root.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod netns;

use std::io::{PipeWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
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
    /// Endpoint status messages read so far: (workload id, status or
    /// `None` for a remove).
    endpoint_status: Vec<(String, Option<String>)>,
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
            endpoint_status: Vec::new(),
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

    /// Keeps an endpoint status message; gives back anything else.
    fn keep(&mut self, m: proto::FromDataplane) -> Option<from_dataplane::Payload> {
        match m.payload {
            Some(from_dataplane::Payload::WorkloadEndpointStatusUpdate(u)) => {
                let id = u.id.unwrap().workload_id;
                self.endpoint_status.push((id, u.status.map(|s| s.status)));
                None
            }
            Some(from_dataplane::Payload::WorkloadEndpointStatusRemove(r)) => {
                self.endpoint_status.push((r.id.unwrap().workload_id, None));
                None
            }
            // Host endpoints as `host:ID`.
            Some(from_dataplane::Payload::HostEndpointStatusUpdate(u)) => {
                let id = format!("host:{}", u.id.unwrap().endpoint_id);
                self.endpoint_status.push((id, u.status.map(|s| s.status)));
                None
            }
            Some(from_dataplane::Payload::HostEndpointStatusRemove(r)) => {
                let id = format!("host:{}", r.id.unwrap().endpoint_id);
                self.endpoint_status.push((id, None));
                None
            }
            p => p,
        }
    }

    /// Waits until the last status Felix got for workload `id` is `want`
    /// (`None`: removed); the statuses of `id` received so far.
    fn wait_endpoint(&mut self, id: &str, want: Option<&str>) -> Vec<Option<String>> {
        let t0 = Instant::now();
        loop {
            let seen: Vec<Option<String>> = self
                .endpoint_status
                .iter()
                .filter(|(w, _)| w == id)
                .map(|(_, s)| s.clone())
                .collect();
            if seen.last().map(|s| s.as_deref()) == Some(want) {
                return seen;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "endpoint {id}: wanted {want:?}, got {seen:?}"
            );
            if let Ok(m) = self.from.recv_timeout(Duration::from_millis(100)) {
                self.keep(m);
            }
        }
    }

    /// The next `ProcessStatusUpdate` from fd 4.
    fn status(&mut self) -> proto::ProcessStatusUpdate {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(m) = self.from.recv_timeout(Duration::from_millis(100)) {
                if let Some(from_dataplane::Payload::ProcessStatusUpdate(p)) = self.keep(m) {
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

/// A TCP echo server in namespace `ns` on `port`, for the test's life.
fn echo_server(ns: &str, port: u16) {
    let ready = in_netns(ns, move || TcpListener::bind(("0.0.0.0", port)).unwrap())
        .join()
        .unwrap();
    std::thread::spawn(move || {
        for c in ready.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let mut b = [0u8; 1024];
                while let Ok(n) = c.read(&mut b) {
                    if n == 0 || c.write_all(&b[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// A TCP connection from the client to `ip:port`, or `None` within 1 s.
fn connect(t: &Topo, ip: &str, port: u16) -> Option<TcpStream> {
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    in_netns(&t.client, move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()
    })
    .join()
    .unwrap()
}

/// Whether `c` echoes what it is sent within 2 s.
fn echoes(c: &mut TcpStream, what: &[u8]) -> bool {
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    if c.write_all(what).is_err() {
        return false;
    }
    let mut b = vec![0u8; what.len()];
    c.read_exact(&mut b).is_ok() && b == what
}

/// Whether the client gets a new connection to the pod's `port` through
/// (an echo, so both directions).
fn reaches(t: &Topo, pod: &Pod, port: u16) -> bool {
    connect(t, &pod.ip, port).is_some_and(|mut c| echoes(&mut c, b"hello"))
}

fn port_listed(t: &Topo, name: &str) -> Option<serde_json::Value> {
    let (code, v, err) = t.ctl(&["port", "list"]);
    assert_eq!(code, 0, "{err}");
    v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
}

fn pid(name: &str) -> proto::PolicyId {
    proto::PolicyId {
        name: name.into(),
        namespace: String::new(),
        kind: "GlobalNetworkPolicy".into(),
    }
}

fn staged_pid(name: &str) -> proto::PolicyId {
    proto::PolicyId {
        kind: "StagedGlobalNetworkPolicy".into(),
        ..pid(name)
    }
}

const POD_ID: &str = "default/pod-1";

fn pod_id() -> proto::WorkloadEndpointId {
    proto::WorkloadEndpointId {
        orchestrator_id: "k8s".into(),
        workload_id: POD_ID.into(),
        endpoint_id: "eth0".into(),
    }
}

/// The pod's policy: TCP from the IP set `s:clients` allowed to port 7001
/// (and 7002 with `both`); the rest denied (the tier's default).
fn pod_policy(both: bool) -> Payload {
    let last = if both { 7002 } else { 7001 };
    Payload::ActivePolicyUpdate(proto::ActivePolicyUpdate {
        id: Some(pid("pod-in")),
        policy: Some(proto::Policy {
            inbound_rules: vec![proto::Rule {
                action: "allow".into(),
                protocol: Some(proto::Protocol {
                    number_or_name: Some(proto::protocol::NumberOrName::Name("tcp".into())),
                }),
                dst_ports: vec![proto::PortRange { first: 7001, last }],
                src_ip_set_ids: vec!["s:clients".into()],
                ..Default::default()
            }],
            tier: "default".into(),
            ..Default::default()
        }),
    })
}

/// The pod's endpoint: its veth, MAC and address, the policy inbound.
fn pod_endpoint(pod: &Pod) -> Payload {
    Payload::WorkloadEndpointUpdate(proto::WorkloadEndpointUpdate {
        id: Some(pod_id()),
        endpoint: Some(proto::WorkloadEndpoint {
            name: pod.ifname.clone(),
            mac: pod.mac.clone(),
            ipv4_nets: vec![format!("{}/32", pod.ip)],
            tiers: vec![proto::TierInfo {
                name: "default".into(),
                ingress_policies: vec![pid("pod-in")],
                egress_policies: vec![],
                default_action: "Deny".into(),
            }],
            ..Default::default()
        }),
    })
}

/// The pod's endpoint with the staged policy `no-7001` ahead of its own.
fn pod_endpoint_staged(pod: &Pod) -> Payload {
    let Payload::WorkloadEndpointUpdate(mut u) = pod_endpoint(pod) else {
        unreachable!()
    };
    if let Some(t) = u.endpoint.as_mut().and_then(|e| e.tiers.first_mut()) {
        t.ingress_policies.insert(0, staged_pid("no-7001"));
    }
    Payload::WorkloadEndpointUpdate(u)
}

/// A snapshot: config, three IP sets, two policies, a profile, an
/// endpoint whose interface does not exist, the pod's with `pod`, a route
/// to another node's block through the server, a pool; then `InSync`.
fn snapshot(s: &mut Shim, with_route: bool, pod: Option<&Pod>) {
    let mut cfg = proto::ConfigUpdate::default();
    cfg.config.insert("InterfacePrefix".into(), "cali".into());
    s.send(Payload::ConfigUpdate(cfg));
    for (id, members) in [
        ("s:web", vec!["10.88.0.1/32", "10.88.0.2/32"]),
        ("s:db", vec!["10.88.0.9/32"]),
        ("s:clients", vec!["10.77.1.2/32"]),
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
    s.send(pod_policy(pod.is_some()));
    if let Some(p) = pod {
        s.send(pod_endpoint(p));
    }
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
    snapshot(&mut a, true, None);
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
        ("ip_sets", 3),
        ("ip_set_members", 4),
        ("policies", 2),
        ("profiles", 1),
        ("workload_endpoints", 1),
        ("routes", 1),
        ("pools", 1),
    ] {
        assert_eq!(m[k], n, "{k}: {v:#}");
    }
    assert_eq!(v["session"]["id"], 1);
    assert_eq!(v["session"]["messages"], 11);
    assert_eq!(v["applied"]["routes"], 1, "{v:#}");
    let unsupported: Vec<&str> = v["unsupported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["feature"].as_str().unwrap())
        .collect();
    // The policy is compiled and enforced; the endpoint whose interface
    // does not exist is down, and Felix is told.
    assert!(!unsupported.contains(&"policy"), "{v:#}");
    let eps = &v["endpoints"];
    assert_eq!(
        (eps["up"].as_u64(), eps["down"].as_u64()),
        (Some(0), Some(1)),
        "{v:#}"
    );
    assert!(
        eps["list"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("cali12345 does not exist"),
        "{v:#}"
    );
    a.wait_endpoint("default/web-0", Some("down"));
    assert!(v["policy"].is_object(), "{v:#}");
    assert!(v["last_apply_ms"].as_f64().is_some(), "{v:#}");
    assert!(has_route(&t, "10.88.1.0/26"));
    assert!(t.ping(&t.client, SERVER_IP, 2), "no ping through sluice");

    // A pod: its veth first (as the CNI does), then its endpoint. It is
    // attached as a port, up, and reachable on 7001 but not 7002.
    let pod = Pod::calico(&t, 1);
    echo_server(&pod.ns, 7001);
    echo_server(&pod.ns, 7002);
    let t0 = Instant::now();
    a.send(pod_endpoint(&pod));
    let seen = a.wait_endpoint(POD_ID, Some("up"));
    eprintln!("pod endpoint up {:?} after its update", t0.elapsed());
    assert_eq!(
        seen,
        vec![Some("up".to_string())],
        "up once, nothing before"
    );
    let port_name = format!("k8s/{POD_ID}/eth0");
    let e = port_listed(&t, &port_name).expect("the pod's port");
    assert_eq!(
        (e["from"].as_str(), e["state"].as_str()),
        (Some("felix"), Some("up")),
        "{e}"
    );
    assert!(t.xdp_attached(&pod.ifname));
    assert!(reaches(&t, &pod, 7001), "the pod's allowed port");
    assert!(!reaches(&t, &pod, 7002), "the pod's denied port");
    // The IP set changes: the client is no longer allowed; then again.
    let clients = |added: bool| {
        let m = vec!["10.77.1.2/32".to_string()];
        Payload::IpsetDeltaUpdate(proto::IpSetDeltaUpdate {
            id: "s:clients".into(),
            added_members: if added { m.clone() } else { vec![] },
            removed_members: if added { vec![] } else { m },
        })
    };
    a.send(clients(false));
    wait_felix(&t, "the client out of the set", |v| {
        v["model"]["ip_set_members"] == 3
    });
    assert!(!reaches(&t, &pod, 7001), "the IP set change is enforced");
    a.send(clients(true));
    wait_felix(&t, "the client back in the set", |v| {
        v["model"]["ip_set_members"] == 4
    });
    assert!(reaches(&t, &pod, 7001));
    // The policy changes: 7002 allowed too.
    a.send(pod_policy(true));
    let t0 = Instant::now();
    while !reaches(&t, &pod, 7002) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the policy change is not enforced"
        );
    }
    let (_, st, _) = t.ctl(&["stats"]);
    let p = st["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port_name.as_str())
        .unwrap()
        .clone();
    assert!(
        n(&p["tx"]) >= 1 && n(&p["rx"]) >= 1,
        "sluice forwarded the pod: {p}"
    );
    // A staged policy ahead of the pod's: never enforced (7001 still
    // reachable), its would-be denials counted in `ctl felix`.
    a.send(Payload::ActivePolicyUpdate(proto::ActivePolicyUpdate {
        id: Some(staged_pid("no-7001")),
        policy: Some(proto::Policy {
            inbound_rules: vec![proto::Rule {
                action: "deny".into(),
                dst_ports: vec![proto::PortRange {
                    first: 7001,
                    last: 7001,
                }],
                protocol: Some(proto::Protocol {
                    number_or_name: Some(proto::protocol::NumberOrName::Name("tcp".into())),
                }),
                ..Default::default()
            }],
            tier: "default".into(),
            ..Default::default()
        }),
    }));
    a.send(pod_endpoint_staged(&pod));
    wait_felix(&t, "the staged policy compiled", |v| {
        v["staged"].is_object()
    });
    assert!(reaches(&t, &pod, 7001), "a staged policy is never enforced");
    let v = wait_felix(&t, "the staged denial counted", |v| {
        v["staged"]["would_deny"].as_u64() >= Some(1)
    });
    let sp = &v["staged"]["policies"][0];
    assert_eq!(sp["policy"], "staged:no-7001", "{v:#}");
    assert!(sp["would_deny"].as_u64() >= Some(1), "{v:#}");
    // A host endpoint on the client's side of the node (p0) whose forward
    // tier denies ICMP in through it and allows the rest: the client's
    // pings to the server stop, TCP to the pod goes on; Felix is told it
    // is up; removed, the pings pass again and Felix is told.
    let any = |action: &str, proto: Option<&str>| proto::Rule {
        action: action.into(),
        protocol: proto.map(|p| proto::Protocol {
            number_or_name: Some(proto::protocol::NumberOrName::Name(p.into())),
        }),
        ..Default::default()
    };
    a.send(Payload::ActivePolicyUpdate(proto::ActivePolicyUpdate {
        id: Some(pid("no-ping-in")),
        policy: Some(proto::Policy {
            inbound_rules: vec![any("deny", Some("icmp")), any("allow", None)],
            outbound_rules: vec![any("allow", None)],
            tier: "default".into(),
            ..Default::default()
        }),
    }));
    let hep_id = || {
        Some(proto::HostEndpointId {
            endpoint_id: "node-p0".into(),
        })
    };
    a.send(Payload::HostEndpointUpdate(proto::HostEndpointUpdate {
        id: hep_id(),
        endpoint: Some(proto::HostEndpoint {
            name: "p0".into(),
            forward_tiers: vec![proto::TierInfo {
                name: "default".into(),
                ingress_policies: vec![pid("no-ping-in")],
                egress_policies: vec![pid("no-ping-in")],
                default_action: "Deny".into(),
            }],
            ..Default::default()
        }),
    }));
    a.wait_endpoint("host:node-p0", Some("up"));
    assert!(
        !t.ping(&t.client, SERVER_IP, 1),
        "the host endpoint's forward tier denies ICMP in through p0"
    );
    assert!(reaches(&t, &pod, 7001), "and allows the rest");
    a.send(Payload::HostEndpointRemove(proto::HostEndpointRemove {
        id: hep_id(),
    }));
    a.wait_endpoint("host:node-p0", None);
    assert!(t.ping(&t.client, SERVER_IP, 2), "the host endpoint is gone");
    // A connection that must outlive the session.
    let mut long = connect(&t, &pod.ip, 7001).expect("the long-lived connection");
    assert!(echoes(&mut long, b"before"));

    // After InSync, a change is applied as it comes.
    a.send(Payload::IpsetDeltaUpdate(proto::IpSetDeltaUpdate {
        id: "s:db".into(),
        added_members: vec!["10.88.0.10/32".into()],
        removed_members: vec![],
    }));
    wait_felix(&t, "the delta", |v| v["model"]["ip_set_members"] == 5);

    // Half a frame, then the shim dies: the session ends with the error,
    // the engine goes on forwarding with the routes it was given.
    let half = codec::encode(&ToDataplane {
        sequence_number: 99,
        payload: Some(Payload::IpsetRemove(proto::IpSetRemove {
            id: "s:web".into(),
        })),
    });
    let whole = a.seq;
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
            .contains(&format!("ended inside frame {whole}")),
        "{v:#}"
    );
    assert_eq!(v["model"]["ip_set_members"], 5, "the last model stays");
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
    assert_eq!(kinds.len() as u64, whole, "{kinds:?}");
    assert_eq!(
        (kinds[0], kinds[10], kinds[11], kinds[kinds.len() - 1]),
        (
            "ConfigUpdate",
            "InSync",
            "WorkloadEndpointUpdate",
            "IPSetDeltaUpdate"
        )
    );
    assert!(echoes(&mut long, b"between sessions"));

    // Session 2 resyncs without the route: its model replaces the last.
    let mut b = Shim::start(&sock, None);
    snapshot(&mut b, false, Some(&pod));
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
    // The established connection survived the resync; the new session
    // hears the pod is up.
    assert!(
        echoes(&mut long, b"after the resync"),
        "the connection did not survive the resync"
    );
    b.wait_endpoint(POD_ID, Some("up"));
    assert!(reaches(&t, &pod, 7002));
    // The pod goes: detached, its status removed.
    b.send(Payload::WorkloadEndpointRemove(
        proto::WorkloadEndpointRemove { id: Some(pod_id()) },
    ));
    b.wait_endpoint(POD_ID, None);
    assert!(
        port_listed(&t, &port_name).is_none(),
        "the pod's port stayed"
    );
    assert!(!t.xdp_attached(&pod.ifname), "XDP stayed on the pod's veth");
    assert!(!reaches(&t, &pod, 7001), "the removed pod is still reached");
    assert!(t.ping(&t.client, SERVER_IP, 1), "the rest keeps working");

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
