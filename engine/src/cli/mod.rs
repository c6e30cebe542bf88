//! The `sluice` command line (`shared/spec/cli.md`). `main.rs` parses with
//! these clap types and calls [`main`]; each subcommand returns its exit
//! status (0 success, 1 runtime failure, 2 bad input) after printing any
//! error, naming the file and field, on stderr.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::sources::config::Config;
use crate::state::build;
use crate::worker::replay::{self, Input, ReplayOptions};

pub mod ctl;
pub mod demo;
pub mod felix_eval;
pub mod run;
pub mod shim;
pub mod table;

/// sluice: a userspace packet-processing engine.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the live data plane on real interfaces (AF_XDP) until SIGINT/SIGTERM.
    Run(run::RunArgs),
    /// The embedded default: a throwaway namespace topology, the live data
    /// plane between its namespaces, real traffic, a summary; then cleanup.
    Demo(demo::DemoArgs),
    /// Run the pipeline offline over capture files.
    Replay(ReplayArgs),
    /// Load, check and evaluate policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Talk to a running `sluice run` over its control socket.
    Ctl(ctl::CtlArgs),
    /// The data-plane driver Felix starts: relays its pipes (fd 3 in, fd 4
    /// out) to `sluice run`'s Felix socket.
    FelixShim(shim::ShimArgs),
}

/// `sluice replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Config file (YAML).
    #[arg(long)]
    pub config: PathBuf,
    /// Capture file, as FILE or PORT=FILE (repeatable: several are merged
    /// in timestamp order, each entering on its port).
    #[arg(long = "pcap", required = true, value_name = "[PORT=]FILE")]
    pub pcap: Vec<String>,
    /// Port frames of a plain FILE enter on (default: the first port).
    #[arg(long)]
    pub ingress: Option<String>,
    /// Worker threads (flows spread by a symmetric hash).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Replay the input this many times.
    #[arg(long, default_value_t = 1)]
    pub loops: u64,
    /// Start every loop with empty state.
    #[arg(long)]
    pub fresh_state: bool,
    /// Write DIR/<port>.pcap, DIR/kernel.pcap and DIR/drops.pcap.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Write one JSON line per input frame of the first loop.
    #[arg(long)]
    pub verdicts: Option<PathBuf>,
    /// Print one JSON object when done.
    #[arg(long)]
    pub json: bool,
    /// Batch size (default: the config's workers.batch).
    #[arg(long)]
    pub batch: Option<usize>,
}

/// `sluice policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load and compile a policy set; print counts and compile time, or errors.
    Check {
        /// Policy files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Verdicts for packets given as JSON lines.
    Eval {
        /// Policy files or directories.
        #[arg(
            long = "policy",
            required_unless_present = "felix",
            conflicts_with = "felix"
        )]
        policy: Vec<PathBuf>,
        /// A Felix stream recorded by `sluice felix-shim --record`: the
        /// policy it carries, built to the end of the file.
        #[arg(long)]
        felix: Option<PathBuf>,
        /// JSON lines of packets; `-` is stdin.
        #[arg(long)]
        packets: PathBuf,
    },
}

/// Runs a parsed command line; returns the exit status.
pub fn main(cli: Cli) -> i32 {
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Replay(a) => replay_cmd(a),
        Command::Policy(p) => policy_cmd(p),
        Command::Ctl(a) => ctl::ctl(a),
        Command::Demo(a) => demo::demo(a),
        Command::FelixShim(a) => shim::shim(a),
    }
}

fn fail(code: i32, msg: impl std::fmt::Display) -> i32 {
    eprintln!("sluice: {msg}");
    code
}

fn replay_cmd(a: ReplayArgs) -> i32 {
    let cfg = match Config::load(&a.config) {
        Ok(c) => c,
        Err(e) => return fail(2, e),
    };
    let state = cfg.state();
    let tables = match build::replay_tables(&state) {
        Ok(t) => Arc::new(t),
        Err(e) => return fail(2, e),
    };
    let names = state.port_names();
    let mut inputs = Vec::with_capacity(a.pcap.len());
    for s in &a.pcap {
        match Input::parse_checked(s, &names) {
            Ok(i) => inputs.push(i),
            Err(e) => return fail(2, e),
        }
    }
    let opts = ReplayOptions {
        inputs,
        ingress: a.ingress,
        workers: a.workers,
        loops: a.loops,
        fresh_state: a.fresh_state,
        out_dir: a.out_dir,
        verdicts: a.verdicts,
        progress: !a.json,
        batch: a.batch,
    };
    match replay::run(&state, tables, &opts) {
        Ok(s) => {
            for w in &s.warnings {
                eprintln!("sluice: {w}");
            }
            let mut out = std::io::stdout().lock();
            let r = if a.json {
                writeln!(out, "{}", s.to_json())
            } else {
                write!(out, "{}", s.to_text())
            };
            match r {
                // A truncated capture: the frames before the cut were
                // replayed and reported, and the input is still bad (as
                // tcpdump and tshark end on one).
                Ok(()) if !s.warnings.is_empty() => 2,
                Ok(()) => 0,
                Err(e) => fail(1, e),
            }
        }
        Err(e) => fail(e.exit_code(), e),
    }
}

fn policy_cmd(p: PolicyCommand) -> i32 {
    let mut out = std::io::stdout().lock();
    let r = match p {
        PolicyCommand::Check { paths } => policy_compiler::cli::check(&paths, &mut out),
        PolicyCommand::Eval {
            felix: Some(file),
            packets,
            ..
        } => {
            let mut err = std::io::stderr().lock();
            return if packets.as_os_str() == "-" {
                felix_eval::eval(&file, &mut std::io::stdin().lock(), &mut out, &mut err)
            } else {
                match std::fs::File::open(&packets) {
                    Ok(f) => {
                        felix_eval::eval(&file, &mut std::io::BufReader::new(f), &mut out, &mut err)
                    }
                    Err(e) => fail(2, format!("{}: cannot read: {e}", packets.display())),
                }
            };
        }
        PolicyCommand::Eval {
            policy, packets, ..
        } => {
            if packets.as_os_str() == "-" {
                policy_compiler::cli::eval(&policy, &mut std::io::stdin().lock(), &mut out)
            } else {
                match std::fs::File::open(&packets) {
                    Ok(f) => policy_compiler::cli::eval(
                        &policy,
                        &mut std::io::BufReader::new(f),
                        &mut out,
                    ),
                    Err(e) => return fail(2, format!("{}: cannot read: {e}", packets.display())),
                }
            }
        }
    };
    match r {
        Ok(()) => 0,
        Err(e) => fail(e.exit_code(), e),
    }
}
