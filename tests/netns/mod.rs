//! Network-namespace topologies for the live tests, removed on drop (also
//! when the test fails): client ns — veth — router ns (sluice runs here,
//! holding both ends `p0`/`p1`) — veth — server ns.
//!
//! ```text
//!  client            router (sluice --netns)            server
//!  c0 10.77.1.2 ── p0 10.77.1.1 | p1 10.77.2.1 ── s0 10.77.2.2
//! ```
//! Names carry the test process id, a tag and a per-process counter, so
//! parallel tests never collide. The client and server veths keep the
//! kernel's default offloads, as a pod's veth does: transmit checksum
//! offload on, so XDP receives partial checksums that sluice completes
//! ([`Topo::offloads_off`] turns that off for the test that covers the
//! other case).
#![allow(dead_code)]
// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CLIENT_IP: &str = "10.77.1.2";
pub const SERVER_IP: &str = "10.77.2.2";
pub const NODE_A: &str = "10.77.1.1";
pub const NODE_B: &str = "10.77.2.1";
const CLIENT_MAC: &str = "02:00:00:77:01:02";
const SERVER_MAC: &str = "02:00:00:77:02:02";

/// The last core: the worker runs there, traffic generators elsewhere.
pub fn worker_core() -> usize {
    core_affinity::get_core_ids()
        .unwrap()
        .iter()
        .map(|c| c.id)
        .max()
        .unwrap()
}

/// A JSON number, or the test fails naming the value.
pub fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

pub fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The three namespaces and their links.
pub struct Topo {
    pub client: String,
    pub router: String,
    pub server: String,
    /// Helper processes to kill on drop (besides every process left in the
    /// namespaces).
    children: Vec<Child>,
    dir: PathBuf,
    /// IPv6 addresses, routes and neighbours too ([`Topo::enable_v6`]).
    v6: bool,
}

impl Topo {
    /// Builds the topology; `queues` rx/tx queues on the router's veths.
    pub fn new(tag: &str, queues: u32) -> Topo {
        // The tag is for people; the counter makes names unique within the
        // process whatever tags the tests pick (two tests sharing a tag
        // once deleted each other's namespaces).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = format!("sl{}{tag}{n}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("{base}-live"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let t = Topo {
            client: format!("{base}c"),
            router: format!("{base}r"),
            server: format!("{base}s"),
            children: Vec::new(),
            dir,
            v6: false,
        };
        // The guard exists before anything is created: a failure below
        // still removes whatever was made.
        for ns in [&t.client, &t.router, &t.server] {
            must(&["ip", "netns", "add", ns]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let q = queues.to_string();
        for (peer, ifn, mac, rif, rmac) in [
            (&t.client, "c0", CLIENT_MAC, "p0", "02:00:00:77:01:01"),
            (&t.server, "s0", SERVER_MAC, "p1", "02:00:00:77:02:01"),
        ] {
            must(&[
                "ip",
                "link",
                "add",
                ifn,
                "netns",
                peer,
                "address",
                mac,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                rif,
                "netns",
                &t.router,
                "address",
                rmac,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
            ]);
        }
        must(&[
            "ip",
            "-n",
            &t.client,
            "addr",
            "add",
            "10.77.1.2/24",
            "dev",
            "c0",
        ]);
        must(&["ip", "-n", &t.client, "link", "set", "c0", "up"]);
        must(&[
            "ip", "-n", &t.client, "route", "add", "default", "via", NODE_A,
        ]);
        must(&[
            "ip",
            "-n",
            &t.server,
            "addr",
            "add",
            "10.77.2.2/24",
            "dev",
            "s0",
        ]);
        must(&["ip", "-n", &t.server, "link", "set", "s0", "up"]);
        must(&[
            "ip", "-n", &t.server, "route", "add", "default", "via", NODE_B,
        ]);
        must(&[
            "ip",
            "-n",
            &t.router,
            "addr",
            "add",
            "10.77.1.1/24",
            "dev",
            "p0",
        ]);
        must(&[
            "ip",
            "-n",
            &t.router,
            "addr",
            "add",
            "10.77.2.1/24",
            "dev",
            "p1",
        ]);
        must(&["ip", "-n", &t.router, "link", "set", "p0", "up"]);
        must(&["ip", "-n", &t.router, "link", "set", "p1", "up"]);
        // The kernel forwards when sluice is not there (fail open).
        must(&[
            "ip",
            "netns",
            "exec",
            &t.router,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        t
    }

    /// Adds IPv6: `fd77:1::2` (client) and `fd77:2::2` (server) behind the
    /// node's `fd77:1::1` and `fd77:2::1`, without duplicate-address
    /// detection; [`Topo::config`] then routes both families.
    pub fn enable_v6(&mut self) {
        for (ns, ifn, addr, gw) in [
            (&self.client, "c0", "fd77:1::2/64", "fd77:1::1"),
            (&self.server, "s0", "fd77:2::2/64", "fd77:2::1"),
        ] {
            must(&["ip", "-n", ns, "addr", "add", addr, "dev", ifn, "nodad"]);
            must(&["ip", "-n", ns, "-6", "route", "add", "default", "via", gw]);
        }
        for (ifn, addr) in [("p0", "fd77:1::1/64"), ("p1", "fd77:2::1/64")] {
            must(&[
                "ip",
                "-n",
                &self.router,
                "addr",
                "add",
                addr,
                "dev",
                ifn,
                "nodad",
            ]);
        }
        self.v6 = true;
    }

    /// Turns transmit checksum offload off on the client's and server's
    /// veths (they then send full checksums).
    pub fn offloads_off(&self) {
        for (ns, ifn) in [(&self.client, "c0"), (&self.server, "s0")] {
            must(&["ip", "netns", "exec", ns, "ethtool", "-K", ifn, "tx", "off"]);
        }
    }

    /// A scratch directory removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `/run/netns/NAME`.
    pub fn ns_path(ns: &str) -> PathBuf {
        Path::new("/run/netns").join(ns)
    }

    /// The sluice config for this topology (`extra` is appended YAML).
    pub fn config(&self, cores: &[usize], extra: &str) -> PathBuf {
        // Metrics off unless the test asks for them.
        let metrics = if extra.contains("metrics:") {
            ""
        } else {
            "metrics: {listen: null}\n"
        };
        let y = format!(
            r#"ports:
  - {{name: a, interface: p0, addresses: ["10.77.1.1/24"{a6}]}}
  - {{name: b, interface: p1, addresses: ["10.77.2.1/24"{b6}]}}
workers: {{cores: {cores:?}, batch: 64}}
routes:
  - {{prefix: "10.77.1.0/24", port: a}}
  - {{prefix: "10.77.2.0/24", port: b}}
{r6}neighbors:
  - {{ip: "{CLIENT_IP}", mac: "{CLIENT_MAC}", port: a}}
  - {{ip: "{SERVER_IP}", mac: "{SERVER_MAC}", port: b}}
{n6}{metrics}control: {{socket: "{sock}"}}
{extra}"#,
            sock = self.control_socket().display(),
            a6 = if self.v6 { ", \"fd77:1::1/64\"" } else { "" },
            b6 = if self.v6 { ", \"fd77:2::1/64\"" } else { "" },
            r6 = if self.v6 {
                "  - {prefix: \"fd77:1::/64\", port: a}\n  - {prefix: \"fd77:2::/64\", port: b}\n"
            } else {
                ""
            },
            n6 = if self.v6 {
                format!(
                    "  - {{ip: \"fd77:1::2\", mac: \"{CLIENT_MAC}\", port: a}}\n  - {{ip: \"fd77:2::2\", mac: \"{SERVER_MAC}\", port: b}}\n"
                )
            } else {
                String::new()
            },
        );
        let p = self.dir.join("sluice.yaml");
        std::fs::write(&p, y).unwrap();
        p
    }

    /// The control socket the topology's configs use.
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// `sluice ctl ARGS` against this topology's engine: exit status and
    /// the JSON answer (Null when there is none), plus stderr.
    pub fn ctl(&self, args: &[&str]) -> (i32, serde_json::Value, String) {
        let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("ctl")
            .arg("--socket")
            .arg(self.control_socket())
            .args(args)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        let v = serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Null);
        (
            o.status.code().unwrap_or(-1),
            v,
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Runs `args` inside `ns`, asserting success.
    pub fn exec(&self, ns: &str, args: &[&str]) {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(args);
        must(&v);
    }

    /// Pings `dst` from `ns`; true if at least one reply came back.
    pub fn ping(&self, ns: &str, dst: &str, count: u32) -> bool {
        self.ping_waiting(ns, dst, count, 1)
    }

    /// [`Topo::ping`] waiting up to `wait_s` seconds for the last reply
    /// (a cold neighbour: the kernel's ND retransmits after 1 s).
    pub fn ping_waiting(&self, ns: &str, dst: &str, count: u32, wait_s: u32) -> bool {
        sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "ping",
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            &wait_s.to_string(),
            dst,
        ])
        .status
        .success()
    }

    /// Whether XDP is attached to the router's `ifname`.
    pub fn xdp_attached(&self, ifname: &str) -> bool {
        let o = sh(&["ip", "-n", &self.router, "link", "show", ifname]);
        String::from_utf8_lossy(&o.stdout).contains("prog/xdp")
    }

    /// Starts `sluice run` in the router namespace and waits until it is up.
    pub fn start_sluice(&mut self, config: &Path, extra: &[&str]) -> Sluice {
        let ready = self.dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--netns")
            .arg(&self.router)
            .arg("--ready-file")
            .arg(&ready)
            .arg("--json")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while !ready.exists() {
            if let Some(st) = child.try_wait().unwrap() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("sluice exited early ({st}): {err}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "sluice not ready after 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Sluice { child: Some(child) }
    }

    /// Keeps `child` to kill on drop.
    pub fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Fail-closed pins of this router namespace.
        if let Ok(m) = std::fs::metadata(Self::ns_path(&self.router)) {
            use std::os::unix::fs::MetadataExt;
            for ifn in ["p0", "p1"] {
                let _ = std::fs::remove_file(format!("/sys/fs/bpf/sluice/{}-{ifn}", m.ino()));
            }
        }
        for ns in [&self.client, &self.router, &self.server] {
            if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).output();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `sluice run`, killed on drop if still running.
pub struct Sluice {
    child: Option<Child>,
}

impl Sluice {
    pub fn pid(&self) -> String {
        self.child.as_ref().unwrap().id().to_string()
    }

    /// SIGINT, then the JSON report (and the exit status).
    pub fn stop(self) -> (i32, serde_json::Value, String) {
        self.stop_with("-INT")
    }

    /// `kill SIGNAL` (`-INT`, `-TERM`), then the JSON report and the exit
    /// status.
    pub fn stop_with(mut self, signal: &str) -> (i32, serde_json::Value, String) {
        must(&["kill", signal, &self.pid()]);
        let child = self.child.take().unwrap();
        let out = wait_timeout(child, Duration::from_secs(20));
        let code = out.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let v = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("report: {e}: {stdout:?}; stderr {stderr}"));
        (code, v, stderr)
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        let mut c = self.child.take().unwrap();
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn wait_timeout(mut child: Child, limit: Duration) -> std::process::Output {
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "sluice did not exit within {limit:?} after SIGINT: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A pod: a namespace of its own and a veth pair, `eth0` inside and
/// `pdN` in the router namespace, with `10.78.N.2/24` behind the node's
/// `10.78.N.1` (the kernel forwards until sluice takes the port). Removed
/// on drop (also when the test fails), whether or not the link was already
/// deleted.
pub struct Pod {
    pub ns: String,
    router: String,
    /// The router side's interface.
    pub ifname: String,
    pub ip: String,
    pub node_ip: String,
    pub mac: String,
    pub subnet: String,
}

impl Pod {
    /// Pod `n` (1..=250) of `t`.
    pub fn new(t: &Topo, n: u32) -> Pod {
        let p = Pod::veth(
            t,
            n,
            &format!("pd{n}"),
            &format!("10.78.{n}.1"),
            &format!("10.78.{n}.0/24"),
            &[],
            24,
        );
        must(&[
            "ip", "-n", &p.ns, "route", "add", "default", "via", &p.node_ip,
        ]);
        let node = format!("{}/24", p.node_ip);
        must(&[
            "ip", "-n", &p.router, "addr", "add", &node, "dev", &p.ifname,
        ]);
        must(&["ip", "-n", &p.router, "link", "set", &p.ifname, "up"]);
        p
    }

    /// Pod `n` (1..=250) of `t` as Calico's CNI plugin leaves it: the pod
    /// has its address alone (`/32`) with `169.254.1.1` as its gateway on
    /// the link; the node's side of the veth has no address, the MAC
    /// `ee:ee:ee:ee:ee:ee` and proxy ARP on (no delay), so the node's kernel
    /// answers the pod's ARP for the gateway; the node's route to the
    /// gateway address goes elsewhere (proxy ARP answers only for targets
    /// routed out of another interface: here towards the server, as a
    /// node's default route would).
    pub fn calico(t: &Topo, n: u32) -> Pod {
        let p = Pod::veth(
            t,
            n,
            &format!("cali{n}"),
            "169.254.1.1",
            &format!("10.78.{n}.2/32"),
            &["address", "ee:ee:ee:ee:ee:ee"],
            32,
        );
        must(&[
            "ip",
            "-n",
            &p.ns,
            "route",
            "add",
            "169.254.1.1",
            "dev",
            "eth0",
            "scope",
            "link",
        ]);
        must(&[
            "ip",
            "-n",
            &p.ns,
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
        ]);
        for (k, v) in [("proxy_arp", "1"), ("forwarding", "1")] {
            let key = format!("net.ipv4.conf.{}.{k}={v}", p.ifname);
            must(&["ip", "netns", "exec", &p.router, "sysctl", "-qw", &key]);
        }
        let delay = format!("net.ipv4.neigh.{}.proxy_delay=0", p.ifname);
        must(&["ip", "netns", "exec", &p.router, "sysctl", "-qw", &delay]);
        must(&["ip", "-n", &p.router, "link", "set", &p.ifname, "up"]);
        // The route the kernel checks before answering for the gateway.
        let _ = Command::new("ip")
            .args([
                "-n",
                &p.router,
                "route",
                "replace",
                "169.254.1.1/32",
                "via",
                SERVER_IP,
            ])
            .output();
        p
    }

    /// Pod `n`'s namespace and veth (the node's side `ifname`, with
    /// `host_args` added to its `ip link add`), its address with prefix
    /// length `len` on `eth0`, up; the rest is the caller's.
    fn veth(
        t: &Topo,
        n: u32,
        ifname: &str,
        node_ip: &str,
        subnet: &str,
        host_args: &[&str],
        len: u8,
    ) -> Pod {
        let p = Pod {
            ns: format!("{}d{n}", t.router),
            router: t.router.clone(),
            ifname: ifname.into(),
            ip: format!("10.78.{n}.2"),
            node_ip: node_ip.into(),
            mac: format!("02:00:00:78:{:02x}:02", n),
            subnet: subnet.into(),
        };
        must(&["ip", "netns", "add", &p.ns]);
        must(&["ip", "-n", &p.ns, "link", "set", "lo", "up"]);
        let mut add = vec![
            "ip", "link", "add", "eth0", "netns", &p.ns, "address", &p.mac, "type", "veth", "peer",
            "name", &p.ifname, "netns", &p.router,
        ];
        add.extend_from_slice(host_args);
        must(&add);
        let cidr = format!("{}/{len}", p.ip);
        must(&["ip", "-n", &p.ns, "addr", "add", &cidr, "dev", "eth0"]);
        must(&["ip", "-n", &p.ns, "link", "set", "eth0", "up"]);
        p
    }

    /// `sluice ctl port add` arguments for this pod, as port `name`.
    pub fn add_args(&self, name: &str) -> Vec<String> {
        [
            "port",
            "add",
            name,
            "--interface",
            &self.ifname,
            "--address",
            &format!("{}/24", self.node_ip),
            "--route",
            &self.subnet,
            "--neighbor",
            &format!("{}={}", self.ip, self.mac),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Deletes the pod's link under whoever uses it (a pod gone).
    pub fn delete_link(&self) {
        must(&["ip", "-n", &self.router, "link", "del", &self.ifname]);
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Ok(o) = Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
        {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).output();
            }
        }
        let _ = Command::new("ip")
            .args(["-n", &self.router, "link", "del", &self.ifname])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// Open descriptors of process `pid`.
pub fn fd_count(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Runs `f` on a thread inside network namespace `ns` (sockets it creates
/// live there).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = Topo::ns_path(ns);
    std::thread::spawn(move || {
        engine::io::sys::enter_netns(&path).unwrap();
        f()
    })
}
