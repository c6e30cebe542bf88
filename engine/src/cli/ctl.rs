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
