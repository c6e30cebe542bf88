//! `sluice ctl`: one request to a running `sluice run` over its control
//! socket (JSON lines, see [`crate::control::socket`]); the answer is
//! printed as tables for a person on a terminal, as JSON with `--json` or
//! when stdout is not a terminal (scripts and pipes get JSON unasked). Exit status: 0 when the engine answered `ok`, 2 when it
//! rejected the request (a bad reload, a malformed flow), 1 when it could
//! not be reached.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::control::socket;
use crate::sources::config::Config;

/// `sluice ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Control socket (default: the config's `control.socket`, else
    /// /run/sluice/control.sock).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// Read `control.socket` from this config file.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Print the answer as JSON (the default when stdout is not a
    /// terminal).
    #[arg(long, global = true, conflicts_with = "table")]
    pub json: bool,
    /// Print the answer as tables (the default on a terminal).
    #[arg(long, global = true)]
    pub table: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// What to ask.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Counters: per action, drop reason, port, worker; conntrack; XDP
    /// (since the last `--reset`, if any).
    Stats {
        /// Print the counters, then start them from zero for later `ctl
        /// stats` (the metrics endpoint's counters never reset).
        #[arg(long)]
        reset: bool,
    },
    /// Conntrack entries (state, tuples, translation, policy decision) the
    /// filter names, expired ones left out; `--delete` removes them (their
    /// next packet is judged again), `--flush` removes every entry.
    Conntrack {
        /// At most this many entries listed.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        #[command(flatten)]
        filter: CtFilterArgs,
        /// Delete the entries the filter names (a filter is required).
        #[arg(long, conflicts_with = "flush")]
        delete: bool,
        /// Delete every entry.
        #[arg(long)]
        flush: bool,
    },
    /// Services, backends and the connections tracked on each.
    Services,
    /// Routes, neighbours and the node's own addresses, each with its
    /// source (config or kernel).
    Routes,
    /// The kernel mirror: what it follows and took, what it left out,
    /// updates and how long they took to reach the workers.
    Kernel,
    /// The Felix session: connected since, in sync, what the model holds,
    /// the last update and how long it took, what is not applied yet,
    /// sessions and why the last one ended.
    Felix,
    /// Reload the config and policy (the running one stays if it is bad).
    Reload {
        /// Config file (default: `--config` if given, else the one `run`
        /// was started with).
        file: Option<PathBuf>,
    },
    /// What the running classifier, conntrack and NAT do with a flow, and
    /// which tier/policy/rule decided.
    Explain(ExplainArgs),
    /// The next real packets matching a filter, each with its path through
    /// the stages as `explain` reports it (one line each; JSON lines with
    /// `--json` or into a pipe).
    Trace(TapArgs),
    /// Frames as received, as sent and as dropped, matching a filter, as
    /// pcapng: one interface per port, each packet's direction and a
    /// comment with its port and verdict (`-w FILE`, or into a pipe:
    /// `sluice ctl capture | tshark -r -`).
    Capture {
        #[command(flatten)]
        tap: TapArgs,
        /// Write to FILE (`-`: stdout, which must not be a terminal).
        #[arg(short = 'w', long, value_name = "FILE")]
        write: Option<PathBuf>,
        /// Stop after this many bytes of pcapng.
        #[arg(long)]
        bytes: Option<u64>,
        /// Which copies: rx (received, not dropped), tx (as sent), drop
        /// (received and dropped); repeatable or comma-separated.
        #[arg(long, value_delimiter = ',', value_parser = ["rx", "tx", "drop"])]
        what: Vec<String>,
    },
    /// Add, remove or list ports while running (no restart).
    #[command(subcommand)]
    Port(PortCommand),
}

/// `ctl port`.
#[derive(Debug, Subcommand)]
pub enum PortCommand {
    /// Attach an interface as a new port: AF_XDP sockets on its queues, XDP
    /// on it, tables rebuilt with it (and the routes and neighbours given);
    /// the other ports keep forwarding.
    Add(PortAddArgs),
    /// Detach a port (XDP first: the kernel takes its traffic) and close its
    /// sockets; a port added with `port add` goes with its routes and
    /// neighbours; a config file's port is refused while the file's routes,
    /// neighbours or masquerade rules name it.
    Remove {
        /// The port's name.
        name: String,
    },
    /// Every port: number, interface, queues, up or down, config or ctl.
    List,
}

/// `ctl port add`.
#[derive(Debug, Args)]
pub struct PortAddArgs {
    /// The port's name (routes and counters name it).
    pub name: String,
    /// The interface it is.
    #[arg(long)]
    pub interface: String,
    /// `all`, or queue ids separated by commas.
    #[arg(long, default_value = "all")]
    pub queues: String,
    /// AF_XDP bind mode: auto, copy or zerocopy.
    #[arg(long, default_value = "auto")]
    pub mode: String,
    /// Conntrack zone of traffic entering here.
    #[arg(long, default_value_t = 0)]
    pub zone: u16,
    /// A node address on this port (address/prefix); repeatable.
    #[arg(long = "address", value_name = "CIDR")]
    pub addresses: Vec<String>,
    /// A route out of this port: `PREFIX` (directly connected) or `PREFIX
    /// via GATEWAY`; repeatable.
    #[arg(long = "route", value_name = "PREFIX[ via GW]")]
    pub routes: Vec<String>,
    /// A static neighbour on this port, `IP=MAC`; repeatable.
    #[arg(long = "neighbor", value_name = "IP=MAC")]
    pub neighbors: Vec<String>,
}

impl PortAddArgs {
    fn request(&self) -> Result<Value, String> {
        let queues: Value = if self.queues == "all" {
            "all".into()
        } else {
            let q: Result<Vec<u32>, _> = self.queues.split(',').map(|q| q.trim().parse()).collect();
            q.map_err(|_| format!("--queues {:?}: `all` or numbers like 0,1", self.queues))?
                .into()
        };
        let routes = self
            .routes
            .iter()
            .map(|r| {
                let w: Vec<&str> = r.split_whitespace().collect();
                match w.as_slice() {
                    [p] => Ok(json!({"prefix": p})),
                    [p, "via", g] => Ok(json!({"prefix": p, "via": g})),
                    _ => Err(format!("--route {r:?}: `PREFIX` or `PREFIX via GATEWAY`")),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let neighbors = self
            .neighbors
            .iter()
            .map(|n| match n.split_once('=') {
                Some((ip, mac)) => Ok(json!({"ip": ip, "mac": mac})),
                None => Err(format!("--neighbor {n:?}: `IP=MAC`")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(json!({"cmd": "port", "op": "add",
                  "port": {"name": self.name, "interface": self.interface, "queues": queues,
                           "mode": self.mode, "zone": self.zone, "addresses": self.addresses},
                  "routes": routes, "neighbors": neighbors}))
    }
}

/// Which conntrack entries: every flag set must match.
#[derive(Debug, Args)]
pub struct CtFilterArgs {
    /// Protocol: tcp, udp, icmp, icmpv6, sctp, udplite or a number.
    #[arg(long)]
    pub proto: Option<String>,
    /// An address on either end of either direction.
    #[arg(long)]
    pub addr: Option<String>,
    /// A port on either end of either direction.
    #[arg(long)]
    pub port: Option<u16>,
    /// The original direction's source address.
    #[arg(long)]
    pub src: Option<String>,
    /// The original direction's destination address.
    #[arg(long)]
    pub dst: Option<String>,
    /// The original direction's source port.
    #[arg(long)]
    pub sport: Option<u16>,
    /// The original direction's destination port.
    #[arg(long)]
    pub dport: Option<u16>,
}

/// Which frames a trace or capture takes (every flag set must match; on
/// the frame as received) and when it ends.
#[derive(Debug, Args)]
pub struct TapArgs {
    /// Protocol: tcp, udp, icmp, icmpv6, sctp, udplite or a number.
    #[arg(long)]
    pub proto: Option<String>,
    /// Source or destination address.
    #[arg(long)]
    pub addr: Option<String>,
    /// Source or destination port.
    #[arg(long)]
    pub port: Option<u16>,
    #[arg(long)]
    pub src: Option<String>,
    #[arg(long)]
    pub dst: Option<String>,
    #[arg(long)]
    pub sport: Option<u16>,
    #[arg(long)]
    pub dport: Option<u16>,
    /// Only frames arriving on or leaving by this sluice port
    /// (repeatable).
    #[arg(long = "on", value_name = "PORT")]
    pub on: Vec<String>,
    /// Stop after this many frames (trace: 10, capture: 1000).
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

impl TapArgs {
    fn request(&self, cmd: &str) -> Value {
        let mut r = json!({"cmd": cmd, "proto": self.proto, "addr": self.addr, "port": self.port,
                           "src": self.src, "dst": self.dst, "sport": self.sport,
                           "dport": self.dport, "count": self.count, "seconds": self.timeout});
        if !self.on.is_empty() {
            r["on"] = json!(self.on);
        }
        r
    }
}

/// Streams a trace: each frame's line as it comes (a readable line on a
/// terminal, the JSON line otherwise), the summary on stderr.
fn trace(path: &std::path::Path, req: &Value, people: bool) -> i32 {
    use std::io::BufRead;
    let (head, mut r) = match socket::request_stream(path, req) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("sluice: {e}");
            return 1;
        }
    };
    if head["ok"] != Value::Bool(true) {
        eprintln!(
            "sluice: {}",
            head["error"].as_str().unwrap_or("trace refused")
        );
        return 2;
    }
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return 0,
            Ok(_) => {}
            Err(e) => {
                eprintln!("sluice: trace: {e}");
                return 1;
            }
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(d) = v.get("done") {
            eprintln!(
                "sluice: trace: {} frame(s), ended by {}{}",
                d["frames"],
                d["ended_by"].as_str().unwrap_or("?"),
                match d["dropped"].as_u64() {
                    Some(n) if n > 0 => format!(", {n} not shown (too many at once)"),
                    _ => String::new(),
                }
            );
            return 0;
        }
        if people {
            println!("{}", super::table::trace_line(&v));
        } else {
            println!("{}", v);
        }
    }
}

/// Streams a capture's pcapng to `-w FILE` or stdout.
fn capture(path: &std::path::Path, req: &Value, write: Option<&std::path::Path>) -> i32 {
    use std::io::IsTerminal;
    let to_stdout = write.is_none_or(|w| w.as_os_str() == "-");
    if to_stdout && std::io::stdout().is_terminal() {
        eprintln!(
            "sluice: capture writes pcapng: give -w FILE, or pipe it (sluice ctl capture | tshark -r -)"
        );
        return 2;
    }
    let (head, mut r) = match socket::request_stream(path, req) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("sluice: {e}");
            return 1;
        }
    };
    if head["ok"] != Value::Bool(true) {
        eprintln!(
            "sluice: {}",
            head["error"].as_str().unwrap_or("capture refused")
        );
        return 2;
    }
    let copied = match write.filter(|_| !to_stdout) {
        Some(f) => std::fs::File::create(f)
            .and_then(|mut out| std::io::copy(&mut r, &mut out))
            .map_err(|e| format!("{}: {e}", f.display())),
        None => std::io::copy(&mut r, &mut std::io::stdout().lock()).map_err(|e| e.to_string()),
    };
    match copied {
        Ok(n) => {
            eprintln!("sluice: capture: {n} bytes of pcapng");
            0
        }
        Err(e) => {
            eprintln!("sluice: capture: {e}");
            1
        }
    }
}

/// A flow for `explain`: flags, `--packet`, or a conntrack entry.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// tcp, udp, sctp, udplite, icmp, icmpv6 or a number.
    #[arg(long)]
    pub proto: Option<String>,
    /// Source address (IPv4 or IPv6).
    #[arg(long)]
    pub src: Option<String>,
    /// Source port (TCP, UDP, SCTP).
    #[arg(long)]
    pub sport: Option<u16>,
    /// Destination address.
    #[arg(long)]
    pub dst: Option<String>,
    /// Destination port (TCP, UDP, SCTP).
    #[arg(long)]
    pub dport: Option<u16>,
    /// ICMP type (ICMP and ICMPv6).
    #[arg(long)]
    pub icmp_type: Option<u8>,
    /// ICMP code.
    #[arg(long)]
    pub icmp_code: Option<u8>,
    /// Port the packet arrives on (default: the first).
    #[arg(long)]
    pub ingress: Option<String>,
    /// TCP flags as letters (`S`, `SA`, `A`, `FA`, `R`, `PA`); default: a
    /// SYN for a flow conntrack does not know, else what its state expects
    /// next.
    #[arg(long)]
    pub flags: Option<String>,
    /// TTL / hop limit as received (default 64).
    #[arg(long)]
    pub ttl: Option<u8>,
    /// The packet as `policy eval` JSON (`{"proto": "tcp", "src": ...}`).
    #[arg(long, value_name = "JSON", conflicts_with_all = ["proto", "src", "dst", "entry"])]
    pub packet: Option<String>,
    /// Explain a conntrack entry by id (from `ctl conntrack`).
    #[arg(long, conflicts_with_all = ["proto", "src", "dst"])]
    pub entry: Option<u64>,
}

impl ExplainArgs {
    fn request(&self) -> Result<Value, String> {
        if let Some(id) = self.entry {
            return Ok(json!({"cmd": "explain", "entry": id}));
        }
        let mut pkt = match &self.packet {
            Some(s) => serde_json::from_str::<Value>(s).map_err(|e| format!("--packet: {e}"))?,
            None => {
                let need = |v: &Option<String>, n: &str| {
                    v.clone()
                        .ok_or_else(|| format!("explain needs --{n} (or --packet, or --entry)"))
                };
                let mut p = json!({"proto": need(&self.proto, "proto")?,
                                   "src": need(&self.src, "src")?, "dst": need(&self.dst, "dst")?});
                for (k, v) in [
                    ("sport", self.sport.map(u64::from)),
                    ("dport", self.dport.map(u64::from)),
                    ("icmp_type", self.icmp_type.map(u64::from)),
                    ("icmp_code", self.icmp_code.map(u64::from)),
                ] {
                    if let Some(v) = v {
                        p[k] = v.into();
                    }
                }
                p
            }
        };
        if let Some(i) = &self.ingress {
            pkt["ingress"] = i.clone().into();
        }
        if let Some(f) = &self.flags {
            pkt["flags"] = f.clone().into();
        }
        if let Some(t) = self.ttl {
            pkt["ttl"] = t.into();
        }
        Ok(json!({"cmd": "explain", "packet": pkt}))
    }
}

/// Runs `sluice ctl`; returns the exit status.
pub fn ctl(a: CtlArgs) -> i32 {
    let path = match (&a.socket, &a.config) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) => match Config::load(c) {
            Ok(cfg) => cfg.control.socket,
            Err(e) => {
                eprintln!("sluice: {e}");
                return 2;
            }
        },
        (None, None) => crate::sources::config::ControlConfig::default().socket,
    };
    {
        use std::io::IsTerminal;
        let people = a.table || (!a.json && std::io::stdout().is_terminal());
        match &a.command {
            CtlCommand::Trace(t) => return trace(&path, &t.request("trace"), people),
            CtlCommand::Capture {
                tap,
                write,
                bytes,
                what,
            } => {
                let mut req = tap.request("capture");
                req["bytes"] = json!(bytes);
                if !what.is_empty() {
                    req["what"] = json!(what);
                }
                return capture(&path, &req, write.as_deref());
            }
            _ => {}
        }
    }
    let req = match &a.command {
        CtlCommand::Stats { reset } => json!({"cmd": "stats", "reset": reset}),
        CtlCommand::Conntrack {
            limit,
            filter: f,
            delete,
            flush,
        } => json!({"cmd": "conntrack", "limit": limit, "delete": delete, "flush": flush,
                    "proto": f.proto, "addr": f.addr, "port": f.port, "src": f.src,
                    "dst": f.dst, "sport": f.sport, "dport": f.dport}),
        CtlCommand::Services => json!({"cmd": "services"}),
        CtlCommand::Routes => json!({"cmd": "routes"}),
        CtlCommand::Kernel => json!({"cmd": "kernel"}),
        CtlCommand::Felix => json!({"cmd": "felix"}),
        CtlCommand::Reload { file } => match file.as_ref().or(a.config.as_ref()) {
            // Relative to where ctl runs, not where sluice runs.
            Some(f) => match std::fs::canonicalize(f) {
                Ok(f) => json!({"cmd": "reload", "config": f.display().to_string()}),
                Err(e) => {
                    eprintln!("sluice: {}: {e}", f.display());
                    return 2;
                }
            },
            None => json!({"cmd": "reload"}),
        },
        CtlCommand::Port(PortCommand::Add(p)) => match p.request() {
            Ok(r) => r,
            Err(m) => {
                eprintln!("sluice: {m}");
                return 2;
            }
        },
        CtlCommand::Port(PortCommand::Remove { name }) => {
            json!({"cmd": "port", "op": "remove", "name": name})
        }
        CtlCommand::Port(PortCommand::List) => json!({"cmd": "port", "op": "list"}),
        CtlCommand::Trace(_) | CtlCommand::Capture { .. } => return 2,
        CtlCommand::Explain(e) => match e.request() {
            Ok(r) => r,
            Err(m) => {
                eprintln!("sluice: {m}");
                return 2;
            }
        },
    };
    match socket::request(&path, &req) {
        Ok(reply) => {
            if reply["ok"] == Value::Bool(true) {
                use std::io::IsTerminal;
                let people = a.table || (!a.json && std::io::stdout().is_terminal());
                if people {
                    let cmd = req["cmd"].as_str().unwrap_or("");
                    print!("{}", super::table::render(cmd, &reply));
                } else {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&reply).unwrap_or_default()
                    );
                }
                0
            } else {
                eprintln!(
                    "sluice: {}",
                    reply["error"].as_str().unwrap_or("request failed")
                );
                2
            }
        }
        Err(e) => {
            eprintln!("sluice: {e} (is `sluice run` running?)");
            1
        }
    }
}
