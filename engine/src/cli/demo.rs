//! `sluice demo`: the embedded default. Builds a throwaway topology of
//! network namespaces joined by veth pairs, runs the live data plane
//! (`sluice run`, XDP + AF_XDP) in the node namespace between them with a
//! bundled policy, a service VIP and masquerade, drives real traffic
//! (ping, HTTP with curl against Python servers, iperf3), prints live rates
//! and a summary, and removes everything it created, also on Ctrl-C or a
//! failure.
//!
//! ```text
//!   client 10.80.1.2 ── cl0 ┐                ┌ w10 ── web1 10.80.2.2 :8080
//!                           │  node (sluice) │
//!  outside 192.0.2.100 ─ up0┘                └ w20 ── web2 10.80.3.2 :8080
//! ```
//! Service `web`: VIP 10.96.0.10:80 → web1, web2 (Maglev). Masquerade:
//! 10.80.0.0/16 leaving through `uplink` becomes 192.0.2.1. Policy: the web
//! pods accept TCP 8080 from the client only; the client accepts nothing
//! unsolicited (replies pass: policy judges new connections).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use crate::control::socket;

/// `sluice demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seconds of iperf3 TCP traffic (0 skips it).
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// HTTP requests to the service VIP.
    #[arg(long, default_value_t = 20)]
    pub requests: u32,
    /// Keep the topology and engine up until Ctrl-C (inspect it with
    /// `sluice ctl --socket ...`).
    #[arg(long)]
    pub keep: bool,
}

const VIP: &str = "10.96.0.10";
const CLIENT: &str = "10.80.1.2";
const WEB1: &str = "10.80.2.2";
const WEB2: &str = "10.80.3.2";
const OUTSIDE: &str = "192.0.2.100";
const NODE_UPLINK: &str = "192.0.2.1";

/// One veth pair: (namespace role, its interface, its address/len,
/// node-side interface, node address/len, peer MAC, node MAC, sluice port).
type Link = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const LINKS: [Link; 4] = [
    (
        "client",
        "eth0",
        "10.80.1.2/24",
        "cl0",
        "10.80.1.1/24",
        "02:00:00:80:01:02",
        "02:00:00:80:01:01",
        "client",
    ),
    (
        "web1",
        "eth0",
        "10.80.2.2/24",
        "w10",
        "10.80.2.1/24",
        "02:00:00:80:02:02",
        "02:00:00:80:02:01",
        "web1",
    ),
    (
        "web2",
        "eth0",
        "10.80.3.2/24",
        "w20",
        "10.80.3.1/24",
        "02:00:00:80:03:02",
        "02:00:00:80:03:01",
        "web2",
    ),
    (
        "outside",
        "eth0",
        "192.0.2.100/24",
        "up0",
        "192.0.2.1/24",
        "02:00:00:c0:02:64",
        "02:00:00:c0:02:01",
        "uplink",
    ),
];

/// The bundled policy (Calico v3).
pub const POLICY: &str = r#"# sluice demo: three workloads and what they may receive.
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: client, namespace: demo, labels: {role: client}}
spec: {interfaceName: cl0, ipNetworks: ["10.80.1.2/32"]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web1, namespace: demo, labels: {app: web}}
spec: {interfaceName: w10, ipNetworks: ["10.80.2.2/32"]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web2, namespace: demo, labels: {app: web}}
spec: {interfaceName: w20, ipNetworks: ["10.80.3.2/32"]}
---
# The web pods take TCP 8080 from clients, nothing else.
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-from-clients, namespace: demo}
spec:
  selector: app == 'web'
  types: [Ingress]
  ingress:
    - action: Allow
      protocol: TCP
      source: {selector: role == 'client'}
      destination: {ports: [8080]}
---
# The client may go anywhere; nothing unsolicited reaches it.
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: client-egress-only, namespace: demo}
spec:
  selector: role == 'client'
  types: [Ingress, Egress]
  egress:
    - action: Allow
"#;

/// A tiny HTTP server: answers who it is and who it saw.
const HTTP_SERVER: &str = r#"
import http.server, sys
name = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = f"{name} saw {self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"#;

/// Everything the demo created; removed on drop.
struct Topology {
    prefix: String,
    dir: PathBuf,
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Topology {
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Starts `args` in `ns` in the background; its output goes to
    /// `DIR/<log>.log` (shown if something fails).
    fn spawn(&mut self, ns: &str, log: &str, args: &[&str]) -> Result<(), String> {
        let f = std::fs::File::create(self.dir.join(format!("{log}.log")))
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let f2 = f.try_clone().map_err(|e| e.to_string())?;
        let c = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .map_err(|e| format!("{args:?} in {ns}: {e}"))?;
        self.children.push(c);
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // SIGINT first (the engine detaches XDP and reports), then SIGKILL
        // whatever is still there after two seconds.
        for c in &self.children {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .output();
        }
        let t0 = Instant::now();
        for c in &mut self.children {
            while t0.elapsed() < Duration::from_secs(2) && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).output();
                }
            }
        }
        // Deleting a namespace deletes its ends of the veth pairs, and so
        // the pairs.
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_ok(args: &[&str]) -> Result<(), String> {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Runs `args` in `ns` with a time limit; (success, stdout).
fn in_ns(ns: &str, args: &[&str], limit: Duration, stop: &AtomicBool) -> (bool, String) {
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return (false, String::new());
    };
    let t0 = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if t0.elapsed() < limit && !stop.load(Ordering::Relaxed) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                break;
            }
        }
    }
    match child.wait_with_output() {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        ),
        Err(_) => (false, String::new()),
    }
}

fn build(t: &mut Topology) -> Result<(), String> {
    let node = t.ns("node");
    for role in ["node", "client", "web1", "web2", "outside"] {
        let ns = t.ns(role);
        run_ok(&["ip", "netns", "add", &ns])?;
        t.namespaces.push(ns.clone());
        run_ok(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
    }
    for (role, ifn, addr, nif, naddr, mac, nmac, _) in LINKS {
        let ns = t.ns(role);
        run_ok(&[
            "ip", "link", "add", ifn, "netns", &ns, "address", mac, "type", "veth", "peer", "name",
            nif, "netns", &node, "address", nmac,
        ])?;
        // Offloads stay at the kernel's defaults, as on a pod's veth:
        // sluice completes the partial checksums the veth hands it.
        run_ok(&["ip", "-n", &ns, "addr", "add", addr, "dev", ifn])?;
        run_ok(&["ip", "-n", &ns, "link", "set", ifn, "up"])?;
        let gw = naddr.split('/').next().unwrap_or(naddr);
        run_ok(&["ip", "-n", &ns, "route", "add", "default", "via", gw])?;
        run_ok(&["ip", "-n", &node, "addr", "add", naddr, "dev", nif])?;
        run_ok(&["ip", "-n", &node, "link", "set", nif, "up"])?;
    }
    Ok(())
}

fn config(t: &Topology, core: usize, metrics: Option<u16>) -> String {
    let mut ports = String::new();
    let mut routes = String::new();
    let mut neigh = String::new();
    for (_, _, addr, nif, naddr, mac, _, port) in LINKS {
        ports += &format!("  - {{name: {port}, interface: {nif}, addresses: [\"{naddr}\"]}}\n");
        let ip = addr.split('/').next().unwrap_or(addr);
        let net = match port {
            "uplink" => "0.0.0.0/0".to_string(),
            _ => {
                let p: Vec<&str> = ip.split('.').collect();
                format!("{}.{}.{}.0/24", p[0], p[1], p[2])
            }
        };
        if port == "uplink" {
            routes += "  - {prefix: \"192.0.2.0/24\", port: uplink}\n";
        }
        routes += &format!("  - {{prefix: \"{net}\", port: {port}}}\n");
        neigh += &format!("  - {{ip: \"{ip}\", mac: \"{mac}\", port: {port}}}\n");
    }
    format!(
        "# Written by `sluice demo`.\nports:\n{ports}workers: {{cores: [{core}], batch: 64}}\n\
         policy: {{paths: [\"{pol}\"]}}\nroutes:\n{routes}neighbors:\n{neigh}\
         services:\n  - {{name: web, vip: \"{VIP}\", port: 80, protocol: TCP, backends: [\"{WEB1}:8080\", \"{WEB2}:8080\"]}}\n\
         masquerade:\n  - {{from: \"10.80.0.0/16\", port: uplink, address: \"{NODE_UPLINK}\"}}\n\
         metrics: {{listen: {m}}}\ncontrol: {{socket: \"{sock}\"}}\n",
        pol = t.dir.join("policy.yaml").display(),
        m = metrics.map_or("null".to_string(), |p| format!("\"127.0.0.1:{p}\"")),
        sock = t.dir.join("control.sock").display(),
    )
}

fn ctl(t: &Topology, cmd: Value) -> Value {
    socket::request(&t.dir.join("control.sock"), &cmd).unwrap_or(Value::Null)
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Prints a rate line every second until `done`.
fn ticker(sock: PathBuf, done: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last: Option<(Instant, u64, u64, u64, u64)> = None;
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1000));
            let Ok(s) = socket::request(&sock, &json!({"cmd": "stats"})) else {
                continue;
            };
            let now = (
                Instant::now(),
                num(&s["rx"]),
                num(&s["bytes"]),
                num(&s["actions"]["forward"]),
                num(&s["actions"]["drop"]),
            );
            if let Some(l) = last {
                let dt = now.0.duration_since(l.0).as_secs_f64().max(1e-3);
                println!(
                    "  live: {:>8.1} kpps in, {:>8.1} Mbit/s, forward {:>8}/s, drop {:>5}/s, conntrack {}",
                    (now.1 - l.1) as f64 / dt / 1e3,
                    (now.2 - l.2) as f64 * 8.0 / dt / 1e6,
                    ((now.3 - l.3) as f64 / dt) as u64,
                    ((now.4 - l.4) as f64 / dt) as u64,
                    num(&s["conntrack"]["entries"]),
                );
            }
            last = Some(now);
        }
    })
}

fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()
        .map(|a| a.port())
}

fn wait_http(ns: &str, stop: &AtomicBool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) && !stop.load(Ordering::Relaxed) {
        let (ok, _) = in_ns(
            ns,
            &["curl", "-s", "-m", "1", "http://127.0.0.1:8080/"],
            Duration::from_secs(2),
            stop,
        );
        if ok {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Runs `sluice demo`; returns the exit status.
pub fn demo(a: DemoArgs) -> i32 {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("sluice demo: installing the signal handler: {e}");
            return 1;
        }
    }
    for tool in ["ip", "ethtool", "python3", "curl", "ping", "iperf3"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            eprintln!(
                "sluice demo: `{tool}` is not installed (scripts/ensure-deps.sh installs what the demo needs)"
            );
            return 1;
        }
    }
    let prefix = format!("sd{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("sluice-demo-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let mut t = Topology {
        prefix,
        dir,
        namespaces: Vec::new(),
        children: Vec::new(),
    };
    let code = match demo_in(&mut t, &a, &stop) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sluice demo: {e}");
            1
        }
    };
    println!("removing the demo's namespaces and links ...");
    drop(t);
    if stop.load(Ordering::Relaxed) {
        println!("stopped by signal; everything removed");
        return 130;
    }
    code
}

fn demo_in(t: &mut Topology, a: &DemoArgs, stop: &Arc<AtomicBool>) -> Result<(), String> {
    let interrupted = || {
        if stop.load(Ordering::Relaxed) {
            Err("interrupted".to_string())
        } else {
            Ok(())
        }
    };
    println!(
        "sluice demo: namespaces {p}-{{node,client,web1,web2,outside}}, veth pairs, sluice in {p}-node",
        p = t.prefix
    );
    build(t).map_err(|e| format!("building the topology (are you root?): {e}"))?;
    interrupted()?;
    std::fs::write(t.dir.join("policy.yaml"), POLICY).map_err(|e| e.to_string())?;
    let core = core_affinity::get_core_ids()
        .and_then(|c| c.iter().map(|c| c.id).max())
        .unwrap_or(0);
    let mport = free_port();
    let cfg_path = t.dir.join("sluice.yaml");
    std::fs::write(&cfg_path, config(t, core, mport)).map_err(|e| e.to_string())?;

    // Servers: HTTP on the web pods and outside, iperf3 outside.
    let script = t.dir.join("demo_server.py");
    std::fs::write(&script, HTTP_SERVER).map_err(|e| e.to_string())?;
    let sp = script.display().to_string();
    for (role, name, port) in [
        ("web1", "web1", "8080"),
        ("web2", "web2", "8080"),
        ("outside", "outside", "8080"),
        ("web1", "web1", "9090"),
        ("client", "client", "8080"),
    ] {
        let ns = t.ns(role);
        t.spawn(
            &ns,
            &format!("http-{name}-{port}"),
            &["python3", &sp, port, name],
        )?;
    }
    let out_ns = t.ns("outside");
    t.spawn(&out_ns, "iperf3", &["iperf3", "-s", "-p", "5201"])?;

    // The engine: `sluice run` in the node namespace.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let ready = t.dir.join("ready");
    let node = t.ns("node");
    let mut engine = Command::new(&exe)
        .args(["run", "--json", "--netns", &node, "--config"])
        .arg(&cfg_path)
        .arg("--ready-file")
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting sluice run: {e}"))?;
    let t0 = Instant::now();
    while !ready.exists() {
        if let Ok(Some(st)) = engine.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = engine.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return Err(format!("sluice run exited ({st}): {}", err.trim()));
        }
        if t0.elapsed() > Duration::from_secs(30) || stop.load(Ordering::Relaxed) {
            let _ = engine.kill();
            return Err("sluice run did not come up".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its stderr: the banner now, warnings later.
    if let Some(e) = engine.stderr.take() {
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(e).lines().map_while(Result::ok) {
                println!("  [engine] {l}");
            }
        });
    }
    let stdout = engine.stdout.take();
    t.children.push(engine);
    println!(
        "engine up: ports client, web1, web2, uplink; service web {VIP}:80 → {WEB1}:8080, {WEB2}:8080; \
         masquerade 10.80.0.0/16 → {NODE_UPLINK} on uplink"
    );
    if let Some(p) = mport {
        println!("metrics: curl http://127.0.0.1:{p}/metrics");
    }
    println!(
        "control: sluice ctl --socket {} stats",
        t.dir.join("control.sock").display()
    );
    let _ = std::io::stdout().flush();
    for role in ["web1", "web2"] {
        if !wait_http(&t.ns(role), stop) {
            interrupted()?;
            let log = std::fs::read_to_string(t.dir.join(format!("http-{role}-8080.log")))
                .unwrap_or_default();
            return Err(format!(
                "the HTTP server in {} did not start: {}",
                t.ns(role),
                log.trim()
            ));
        }
    }

    let done = Arc::new(AtomicBool::new(false));
    let tick = ticker(t.dir.join("control.sock"), done.clone());
    let client = t.ns("client");
    let outside = t.ns("outside");
    let long = Duration::from_secs(10);

    // 1. Ping through masquerade.
    let (ok, out) = in_ns(
        &client,
        &["ping", "-c", "5", "-i", "0.2", "-W", "1", OUTSIDE],
        long,
        stop,
    );
    let replies = out
        .lines()
        .find(|l| l.contains("received"))
        .unwrap_or("")
        .trim()
        .to_string();
    println!("[1] ping client → outside {OUTSIDE} (masqueraded): {replies}");
    let ping_ok = ok;
    interrupted()?;

    // 2. The service VIP, spread by Maglev.
    let mut per = std::collections::BTreeMap::<String, u32>::new();
    let mut failed = 0;
    for i in 0..a.requests {
        // A fresh source port each time: a new connection, a new choice.
        let sport = (42000 + i).to_string();
        let (ok, body) = in_ns(
            &client,
            &[
                "curl",
                "-s",
                "-m",
                "3",
                "--local-port",
                &sport,
                &format!("http://{VIP}/"),
            ],
            long,
            stop,
        );
        match body.split_whitespace().next() {
            Some(who) if ok => *per.entry(who.to_string()).or_default() += 1,
            _ => failed += 1,
        }
        interrupted()?;
    }
    println!(
        "[2] curl http://{VIP}/ ×{}: {}{}",
        a.requests,
        per.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    );

    // 3. What the outside sees.
    let (_, saw) = in_ns(
        &client,
        &["curl", "-s", "-m", "3", &format!("http://{OUTSIDE}:8080/")],
        long,
        stop,
    );
    let saw = saw.trim().to_string();
    println!("[3] curl client → outside: \"{saw}\" (the client is {CLIENT}: masqueraded)");
    interrupted()?;

    // 4. What policy denies. The denied curls give up after 0.5 s, before
    // the kernel's first SYN retransmission (initial RTO 1 s): a retransmit
    // is judged again, and the summary counts each probe once.
    let short = Duration::from_secs(3);
    let (d1, _) = in_ns(
        &client,
        &["curl", "-s", "-m", "0.5", &format!("http://{WEB1}:9090/")],
        short,
        stop,
    );
    let (d2, _) = in_ns(&client, &["ping", "-c", "1", "-W", "1", WEB1], short, stop);
    let (d3, _) = in_ns(
        &outside,
        &["curl", "-s", "-m", "0.5", &format!("http://{CLIENT}:8080/")],
        short,
        stop,
    );
    let word = |passed: bool| {
        if passed {
            "PASSED (unexpected)"
        } else {
            "blocked"
        }
    };
    println!(
        "[4] denied by policy: client → web1:9090 {}, ping client → web1 {}, outside → client {}",
        word(d1),
        word(d2),
        word(d3)
    );
    interrupted()?;

    // 5. Bulk TCP through masquerade.
    let mut iperf = String::new();
    if a.seconds > 0 {
        println!("[5] iperf3 client → outside, {} s:", a.seconds);
        let (_, out) = in_ns(
            &client,
            &["iperf3", "-c", OUTSIDE, "-t", &a.seconds.to_string(), "-J"],
            Duration::from_secs(a.seconds + 10),
            stop,
        );
        if let Ok(v) = serde_json::from_str::<Value>(&out) {
            let bps = v["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .unwrap_or(0.0);
            iperf = format!("{:.0} Mbit/s", bps / 1e6);
        }
        interrupted()?;
    }
    if a.keep {
        println!("--keep: the demo stays up; Ctrl-C removes it");
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = tick.join();

    // Summary from the engine itself.
    let stats = ctl(t, json!({"cmd": "stats"}));
    let services = ctl(t, json!({"cmd": "services"}));
    let ct = ctl(t, json!({"cmd": "conntrack", "limit": 1_000_000}));
    let snat = ct["entries"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|x| x["snat"] == true).count());
    println!("\nsummary (from sluice ctl):");
    println!(
        "  packets {}: forwarded {}, dropped {}, to the kernel {}",
        num(&stats["packets"]),
        num(&stats["actions"]["forward"]),
        num(&stats["actions"]["drop"]),
        num(&stats["actions"]["kernel"])
    );
    println!(
        "  new connections judged by policy: allowed {}, denied {} (drops.policy {})",
        num(&stats["policy"]["allowed"]),
        num(&stats["policy"]["denied"]),
        num(&stats["drops"]["policy"])
    );
    if let Some(b) = services["services"][0]["backends"].as_array() {
        println!(
            "  service web, connections per backend (conntrack): {}",
            b.iter()
                .map(|x| format!(
                    "{} {}",
                    x["address"].as_str().unwrap_or("?"),
                    num(&x["connections"])
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "  masqueraded connections tracked: {snat}; the outside saw {}",
        saw.split_whitespace().last().unwrap_or("nothing")
    );
    if !iperf.is_empty() {
        println!("  iperf3 through sluice: {iperf}");
    }

    // Stop the engine; its final report.
    let engine = t.children.pop();
    if let Some(mut e) = engine {
        let _ = Command::new("kill")
            .args(["-INT", &e.id().to_string()])
            .status();
        let _ = e.wait();
        if let Some(mut o) = stdout {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut o, &mut s);
            if let Ok(r) = serde_json::from_str::<Value>(s.trim()) {
                println!(
                    "  engine report: rx {} tx {}, XDP redirected {} and passed {} to the kernel",
                    num(&r["rx"]),
                    num(&r["tx"]),
                    r["xdp"].as_object().map_or(0, |m| m
                        .iter()
                        .filter(|(k, _)| k.starts_with("redirect"))
                        .map(|(_, v)| num(v))
                        .sum::<u64>()),
                    r["xdp"].as_object().map_or(0, |m| m
                        .iter()
                        .filter(|(k, _)| k.starts_with("pass"))
                        .map(|(_, v)| num(v))
                        .sum::<u64>())
                );
            }
        }
    }
    let spread_ok = per.len() == 2;
    let saw_ok = saw.ends_with(NODE_UPLINK);
    let denied_ok = !d1 && !d2 && !d3;
    let verdict = ping_ok && spread_ok && saw_ok && denied_ok && failed == 0;
    println!(
        "  checks: ping {}, both backends {}, masquerade {}, denials {}",
        ok_word(ping_ok),
        ok_word(spread_ok),
        ok_word(saw_ok),
        ok_word(denied_ok)
    );
    if verdict {
        Ok(())
    } else {
        Err("some checks failed (see above)".into())
    }
}

fn ok_word(b: bool) -> &'static str {
    if b {
        "ok"
    } else {
        "FAILED"
    }
}
