//! `sluice policy check` and `sluice policy eval` (cli.md). The `sluice`
//! binary wires clap to these; they write to the given writer and return a
//! [`CliError`] whose [`CliError::exit_code`] is the process's exit status
//! (0 ok, 1 runtime failure, 2 bad input) and whose `Display` is the message
//! for stderr, naming the file, document and field.
//!
//! This module is the compiler's edge: it is the only place in the crate
//! that reads a clock (to report the compile time).

use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::classifier::{Classifier, DirVerdict, FlowKey, Verdict, L4};
use crate::compile::{Builder, CompileError};
use crate::ir::DecisionInfo;
use crate::loader::{load, LoadError};
use crate::model::Protocol;

/// A failed `policy` command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The policy set did not load (exit 2).
    #[error("{0}")]
    Load(#[from] LoadError),
    /// The policy set did not compile (exit 2).
    #[error("{0}")]
    Compile(#[from] CompileError),
    /// A packet line is malformed (exit 2).
    #[error("packets line {line}: {msg}")]
    BadPacket {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// Reading or writing failed (exit 1).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    /// Exit status per cli.md.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Io(_) => 1,
            CliError::Load(_) | CliError::Compile(_) | CliError::BadPacket { .. } => 2,
        }
    }
}

/// `sluice policy check PATH...`: load and compile; print counts, compile
/// time and memory (and warnings), or return the errors.
pub fn check(paths: &[PathBuf], out: &mut dyn Write) -> Result<(), CliError> {
    let t0 = Instant::now();
    let (set, warnings) = load(paths)?;
    let t1 = Instant::now();
    let c = Builder::new().compile(&set)?;
    let t2 = Instant::now();
    let counts = set.counts();
    let st = c.stats();
    for w in &warnings {
        writeln!(out, "warning: {w}")?;
    }
    writeln!(out, "ok: {} objects loaded", set.objects.len())?;
    writeln!(
        out,
        "  tiers {}, globalnetworkpolicies {}, networkpolicies {}, k8s networkpolicies {}, profiles {}",
        counts.tiers,
        counts.global_network_policies,
        counts.network_policies,
        counts.k8s_network_policies,
        counts.profiles
    )?;
    writeln!(
        out,
        "  workloadendpoints {}, globalnetworksets {}, networksets {}, namespaces {}",
        counts.workload_endpoints,
        counts.global_network_sets,
        counts.network_sets,
        counts.namespaces
    )?;
    writeln!(
        out,
        "  rules written {}, rules compiled {}",
        counts.rules, st.rules
    )?;
    writeln!(
        out,
        "  endpoint classes egress {} ingress {}, segments egress {} ingress {}",
        st.classes[0], st.classes[1], st.segments[0], st.segments[1]
    )?;
    writeln!(
        out,
        "load time {:.3} ms, compile time {:.3} ms, memory {} bytes",
        (t1 - t0).as_secs_f64() * 1e3,
        (t2 - t1).as_secs_f64() * 1e3,
        st.memory_bytes
    )?;
    Ok(())
}

/// `sluice policy eval`: one JSON line per packet line, answered by the
/// compiled classifier.
pub fn eval(
    policies: &[PathBuf],
    packets: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (set, _warnings) = load(policies)?;
    let c = Builder::new().compile(&set)?;
    eval_with(&c, packets, out)
}

/// `policy eval` against an already compiled classifier.
pub fn eval_with(
    c: &Classifier,
    packets: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut scratch = c.new_scratch();
    let mut line = String::new();
    let mut n = 0;
    loop {
        line.clear();
        if packets.read_line(&mut line)? == 0 {
            break;
        }
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        let key = parse_packet(&line).map_err(|msg| CliError::BadPacket { line: n, msg })?;
        let v = c.classify(&key, &mut scratch);
        serde_json::to_writer(&mut *out, &EvalOut::new(c, &v)).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Parse one `policy eval` input line.
pub fn parse_packet(line: &str) -> Result<FlowKey, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let o = v.as_object().ok_or("not a JSON object")?;
    let proto = match o.get("proto") {
        Some(serde_json::Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "tcp" => 6,
            "udp" => 17,
            "sctp" => 132,
            "udplite" => 136,
            "icmp" => 1,
            "icmpv6" => 58,
            _ => Protocol::parse(s).map_err(|e| format!("proto: {e}"))?.0,
        },
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .and_then(|x| u8::try_from(x).ok())
            .ok_or_else(|| format!("proto: {n} is not 0..255"))?,
        Some(x) => return Err(format!("proto: {x} is not a protocol")),
        None => return Err("missing proto".into()),
    };
    let addr = |k: &str| -> Result<IpAddr, String> {
        match o.get(k) {
            Some(serde_json::Value::String(s)) => s
                .parse()
                .map_err(|_| format!("{k}: {s:?} is not an IP address")),
            Some(x) => Err(format!("{k}: {x} is not an IP address")),
            None => Err(format!("missing {k}")),
        }
    };
    let src = addr("src")?;
    let dst = addr("dst")?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err("src and dst are of different IP families".into());
    }
    let num = |k: &str, max: u64| -> Result<Option<u64>, String> {
        match o.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Number(n)) => match n.as_u64() {
                Some(x) if x <= max => Ok(Some(x)),
                _ => Err(format!("{k}: {n} is not 0..{max}")),
            },
            Some(x) => Err(format!("{k}: {x} is not a number")),
        }
    };
    let l4 = if Protocol(proto).has_ports() {
        let sport = num("sport", 65535)?.ok_or("missing sport")?;
        let dport = num("dport", 65535)?.ok_or("missing dport")?;
        L4::Ports {
            sport: sport as u16,
            dport: dport as u16,
        }
    } else if Protocol(proto).is_icmp() {
        let ty = num("icmp_type", 255)?.ok_or("missing icmp_type")?;
        let code = num("icmp_code", 255)?.unwrap_or(0);
        L4::Icmp {
            ty: ty as u8,
            code: code as u8,
        }
    } else {
        L4::None
    };
    Ok(FlowKey::new(src, dst, proto, l4))
}

/// The output object, with keys in the order cli.md shows.
#[derive(Serialize)]
struct EvalOut<'a> {
    verdict: &'static str,
    egress: DirOut<'a>,
    ingress: DirOut<'a>,
}

#[derive(Serialize)]
struct DirOut<'a> {
    verdict: &'static str,
    endpoint: Option<&'a str>,
    decided_by: Option<DecidedBy<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum DecidedBy<'a> {
    Rule {
        tier: &'a str,
        policy: &'a str,
        rule: u32,
    },
    EndOfTier {
        tier: &'a str,
        end_of_tier: bool,
    },
    Profile {
        profile: &'a str,
        rule: u32,
    },
    NoMatch {
        no_match: bool,
    },
    FailClosed {
        fail_closed: &'a str,
    },
    Setting {
        setting: &'a str,
        value: &'a str,
    },
}

fn word(allow: bool) -> &'static str {
    if allow {
        "allow"
    } else {
        "deny"
    }
}

impl<'a> EvalOut<'a> {
    fn new(c: &'a Classifier, v: &Verdict) -> EvalOut<'a> {
        EvalOut {
            verdict: word(v.allow),
            egress: DirOut::new(c, &v.egress),
            ingress: DirOut::new(c, &v.ingress),
        }
    }
}

impl<'a> DirOut<'a> {
    fn new(c: &'a Classifier, d: &DirVerdict) -> DirOut<'a> {
        let by = match c.decision_info(d.decided_by) {
            DecisionInfo::NoEndpoint => None,
            DecisionInfo::NoMatch { .. } => Some(DecidedBy::NoMatch { no_match: true }),
            DecisionInfo::Rule {
                tier, policy, rule, ..
            } => Some(DecidedBy::Rule {
                tier,
                policy,
                rule: *rule,
            }),
            DecisionInfo::EndOfTier { tier, .. } => Some(DecidedBy::EndOfTier {
                tier,
                end_of_tier: true,
            }),
            DecisionInfo::Profile { profile, rule, .. } => Some(DecidedBy::Profile {
                profile,
                rule: *rule,
            }),
            DecisionInfo::FailClosed { reason, .. } => Some(DecidedBy::FailClosed {
                fail_closed: reason,
            }),
            DecisionInfo::Setting { setting, value, .. } => {
                Some(DecidedBy::Setting { setting, value })
            }
        };
        DirOut {
            verdict: word(d.allow),
            endpoint: d.endpoint.map(|e| c.endpoint_name(e)),
            decided_by: by,
        }
    }
}
