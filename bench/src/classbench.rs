//! ClassBench filter sets and traces through the policy compiler, the
//! synthetic 100k sets, the synthetic Calico-style sets, and the
//! `dpdk-test-acl` peer (issue 3 item 6).
//!
//! **Mapping of a ClassBench set to a policy.** A filter set becomes one
//! endpoint that owns every IPv4 address (`0.0.0.0/0`) and one egress
//! segment (tier `default`, policy `classbench`) whose rule *i* is filter
//! *i*: `Allow`, one term with source prefix, destination prefix, protocol
//! (exact or any) and source/destination port ranges. The set is built as
//! IR directly, because two things of ClassBench are not expressible as
//! Calico YAML: protocol 0 and port ranges on non-port protocols (ICMP,
//! GRE, wildcard protocol). Every trace header is a TCP/UDP-shaped 5-tuple
//! (`L4::Ports`), whatever its protocol number, as in ClassBench. The flags
//! column is ignored, as `dpdk-test-acl` and `firstmatch/` ignore it. The
//! answer is `decided_by.rule` of the egress verdict; no match would be the
//! end-of-tier decision (it never happens on these traces).
//!
//! **100k sets.** ClassBench's `db_generator` is not available here, so the
//! 100k sets come from a documented synthetic model, reproducible by seed:
//! [`scale_set`] draws each new rule from a uniformly chosen rule of a
//! shipped 10k set (its prefix lengths, port ranges and protocol, so the
//! prefix-length pairs, port classes and protocol mix of the seed family
//! are kept) and re-draws the address bits: the top 8 bits are kept from
//! the template (ClassBench's address skew lives mostly there) and the bits
//! from 8 to the prefix length are random. Duplicate 5-tuples are dropped.
//! [`trace_for`] makes a trace like `trace_generator`: a random rule, a
//! random corner of it.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use policy_compiler::ir::{
    Decision, DecisionInfo, Dir, DirIr, EndpointIr, Ir, IrRule, RuleAction, Segment, SegmentKind,
    Term,
};
use policy_compiler::model::{Action, Cidr};
use policy_compiler::ranges::{AddrSet, RangeSet};

/// One ClassBench filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Source prefix (address, length).
    pub src: (u32, u8),
    /// Destination prefix.
    pub dst: (u32, u8),
    /// Source port range.
    pub sport: (u16, u16),
    /// Destination port range.
    pub dport: (u16, u16),
    /// Protocol: `None` is the wildcard (`0x00/0x00`).
    pub proto: Option<u8>,
}

impl Filter {
    /// Does the header match (flags ignored)?
    pub fn matches(&self, h: &Header) -> bool {
        let pm = |a: u32, (p, l): (u32, u8)| l == 0 || (a ^ p) >> (32 - l as u32) == 0;
        pm(h.src, self.src)
            && pm(h.dst, self.dst)
            && self.sport.0 <= h.sport
            && h.sport <= self.sport.1
            && self.dport.0 <= h.dport
            && h.dport <= self.dport.1
            && self.proto.is_none_or(|p| p == h.proto)
    }
}

/// One trace header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Source address.
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Protocol.
    pub proto: u8,
}

fn prefix(s: &str) -> Result<(u32, u8)> {
    let (a, l) = s.split_once('/').context("prefix without /")?;
    let a: std::net::Ipv4Addr = a.parse().context("bad address")?;
    let l: u8 = l.parse().context("bad length")?;
    if l > 32 {
        bail!("prefix length {l} > 32");
    }
    Ok((u32::from(a), l))
}

fn hex(s: &str) -> Result<u32> {
    let t = s.trim().trim_start_matches("0x").trim_start_matches("0X");
    u32::from_str_radix(t, 16).with_context(|| format!("bad hex {s:?}"))
}

/// Parse a ClassBench filter file.
/// The ClassBench sets under `root` that have a trace (`traces/NAME_trace`),
/// sorted: what `classbench` runs by default and `sluice-bench peers`
/// expects a ratio for.
pub fn traced_sets(root: &Path) -> Result<Vec<String>> {
    let traces = root.join("traces");
    let mut v: Vec<String> = std::fs::read_dir(&traces)
        .with_context(|| format!("{}", traces.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix("_trace"))
                .map(str::to_string)
        })
        .collect();
    v.sort();
    Ok(v)
}

pub fn read_filters(path: &Path) -> Result<Vec<Filter>> {
    let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let parse = || -> Result<Filter> {
            let cols: Vec<&str> = line.trim_start_matches('@').split('\t').collect();
            if cols.len() < 5 {
                bail!("expected 6 tab-separated columns");
            }
            let range = |s: &str| -> Result<(u16, u16)> {
                let (a, b) = s.split_once(':').context("port range without ':'")?;
                Ok((a.trim().parse()?, b.trim().parse()?))
            };
            let (pv, pm) = cols[4].split_once('/').context("protocol without /")?;
            let (pv, pm) = (hex(pv)?, hex(pm)?);
            Ok(Filter {
                src: prefix(cols[0].trim())?,
                dst: prefix(cols[1].trim())?,
                sport: range(cols[2])?,
                dport: range(cols[3])?,
                proto: if pm == 0 { None } else { Some(pv as u8) },
            })
        };
        out.push(parse().with_context(|| format!("{} line {}", path.display(), i + 1))?);
    }
    Ok(out)
}

/// Parse a ClassBench trace.
pub fn read_trace(path: &Path) -> Result<Vec<Header>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut out = Vec::with_capacity(text.len() / 40);
    for (i, line) in text.lines().enumerate() {
        let mut it = line.split_ascii_whitespace();
        let mut next = || -> Result<u64> {
            it.next()
                .context("short line")?
                .parse::<u64>()
                .with_context(|| format!("{} line {}", path.display(), i + 1))
        };
        out.push(Header {
            src: next()? as u32,
            dst: next()? as u32,
            sport: next()? as u16,
            dport: next()? as u16,
            proto: next()? as u8,
        });
    }
    Ok(out)
}

/// Parse a `firstmatch/` file.
pub fn read_firstmatch(path: &Path) -> Result<Vec<i64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .map(|l| l.trim().parse::<i64>().context("bad firstmatch line"))
        .collect()
}

/// Write filters in ClassBench format (for `dpdk-test-acl`).
pub fn write_filters(path: &Path, fs: &[Filter]) -> Result<()> {
    let mut s = String::with_capacity(fs.len() * 80);
    for f in fs {
        let ip = |a: u32| std::net::Ipv4Addr::from(a).to_string();
        let (pv, pm) = match f.proto {
            Some(p) => (p, 0xff),
            None => (0, 0),
        };
        let _ = writeln!(
            s,
            "@{}/{}\t{}/{}\t{} : {}\t{} : {}\t0x{:02x}/0x{:02x}\t0x0000/0x0000\t",
            ip(f.src.0),
            f.src.1,
            ip(f.dst.0),
            f.dst.1,
            f.sport.0,
            f.sport.1,
            f.dport.0,
            f.dport.1,
            pv,
            pm
        );
    }
    std::fs::write(path, s).with_context(|| format!("write {}", path.display()))
}

/// Write a trace in ClassBench format.
pub fn write_trace(path: &Path, hs: &[Header], gen: &[usize]) -> Result<()> {
    let mut s = String::with_capacity(hs.len() * 45);
    for (h, g) in hs.iter().zip(gen) {
        let _ = writeln!(
            s,
            "{}\t{}\t{}\t{}\t{}\t0\t{}",
            h.src, h.dst, h.sport, h.dport, h.proto, g
        );
    }
    std::fs::write(path, s).with_context(|| format!("write {}", path.display()))
}

fn prefix_set((a, l): (u32, u8)) -> AddrSet {
    AddrSet::from_cidrs([&Cidr::new(std::net::IpAddr::V4(a.into()), l)]).only_family(4)
}

/// The IR of a filter set (see the module docs for the mapping).
pub fn filters_to_ir(fs: &[Filter]) -> Ir {
    let mut decisions = vec![
        DecisionInfo::NoEndpoint,
        DecisionInfo::NoMatch { dir: Dir::Egress },
        DecisionInfo::NoMatch { dir: Dir::Ingress },
    ];
    let mut rules = Vec::with_capacity(fs.len());
    for (i, f) in fs.iter().enumerate() {
        decisions.push(DecisionInfo::Rule {
            dir: Dir::Egress,
            tier: "default".into(),
            policy: "classbench".into(),
            rule: i as u32,
            action: Action::Allow,
        });
        rules.push(IrRule {
            decision: Decision(decisions.len() as u32 - 1),
            action: RuleAction::Allow,
            classes: RangeSet::single(0),
            terms: vec![Term {
                src: prefix_set(f.src),
                dst: prefix_set(f.dst),
                proto: match f.proto {
                    Some(p) => RangeSet::single(p as u128),
                    None => RangeSet::full(255),
                },
                sport: RangeSet::range(f.sport.0 as u128, f.sport.1 as u128),
                dport: RangeSet::range(f.dport.0 as u128, f.dport.1 as u128),
                checks: Vec::new(),
            }],
        });
    }
    decisions.push(DecisionInfo::EndOfTier {
        dir: Dir::Egress,
        tier: "default".into(),
    });
    let eot = Decision(decisions.len() as u32 - 1);
    let egress = DirIr {
        endpoint_class: vec![0],
        class_segments: vec![vec![0]],
        segments: vec![Segment {
            kind: SegmentKind::Tier("default".into()),
            miss: Some(eot),
            rules,
        }],
    };
    let ingress = DirIr {
        endpoint_class: vec![0],
        class_segments: vec![vec![]],
        segments: vec![],
    };
    Ir {
        endpoints: vec![EndpointIr {
            name: "classbench/all".into(),
            nets: vec![Cidr::new(std::net::IpAddr::V4(0.into()), 0)],
        }],
        dirs: [egress, ingress],
        decisions,
    }
}

/// A small deterministic RNG (splitmix64).
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The synthetic 100k model (module docs): `n` rules drawn from `template`.
pub fn scale_set(template: &[Filter], n: usize, seed: u64) -> Vec<Filter> {
    let mut r = Rng(seed);
    let mut seen = std::collections::HashSet::with_capacity(n * 2);
    let mut out = Vec::with_capacity(n);
    let redraw = |r: &mut Rng, (a, l): (u32, u8)| -> (u32, u8) {
        if l <= 8 {
            return (a, l);
        }
        let keep = 0xff00_0000u32;
        let mask = if l == 32 { u32::MAX } else { !(u32::MAX >> l) };
        (((a & keep) | (r.next_u64() as u32 & !keep)) & mask, l)
    };
    let mut tries = 0usize;
    while out.len() < n && tries < n * 20 {
        tries += 1;
        let t = template[r.below(template.len() as u64) as usize];
        let f = Filter {
            src: redraw(&mut r, t.src),
            dst: redraw(&mut r, t.dst),
            ..t
        };
        if seen.insert(f) {
            out.push(f);
        }
    }
    out
}

/// A trace like `trace_generator`: `n` headers, each a random corner of a
/// random rule. Returns the headers and the generating rule of each.
pub fn trace_for(fs: &[Filter], n: usize, seed: u64) -> (Vec<Header>, Vec<usize>) {
    let mut r = Rng(seed);
    let mut hs = Vec::with_capacity(n);
    let mut gen = Vec::with_capacity(n);
    for _ in 0..n {
        let i = r.below(fs.len() as u64) as usize;
        let f = fs[i];
        let corner = |r: &mut Rng, (a, l): (u32, u8)| -> u32 {
            let host = if l == 0 {
                u32::MAX
            } else {
                (1u64 << (32 - l)) as u32 - 1
            };
            if r.below(2) == 0 {
                a
            } else {
                a | host
            }
        };
        let pick = |r: &mut Rng, (lo, hi): (u16, u16)| if r.below(2) == 0 { lo } else { hi };
        hs.push(Header {
            src: corner(&mut r, f.src),
            dst: corner(&mut r, f.dst),
            sport: pick(&mut r, f.sport),
            dport: pick(&mut r, f.dport),
            proto: f.proto.unwrap_or(if r.below(2) == 0 { 0 } else { 255 }),
        });
        gen.push(i);
    }
    (hs, gen)
}

/// First match by brute force (the check for generated traces).
pub fn brute_first_match(fs: &[Filter], h: &Header) -> i64 {
    fs.iter()
        .position(|f| f.matches(h))
        .map_or(-1, |i| i as i64)
}

/// One `dpdk-test-acl` run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DpdkRun {
    /// Algorithm.
    pub alg: String,
    /// Packets per second.
    pub pps: f64,
    /// Cycles per packet.
    pub cycles_per_pkt: f64,
    /// Number of tries rte_acl built.
    pub tries: u32,
}

/// Run `dpdk-test-acl` (timing run, `iter` iterations).
pub fn dpdk_run(rules: &Path, trace: &Path, alg: &str, iter: u32) -> Result<DpdkRun> {
    let out = Command::new("dpdk-test-acl")
        .args(["-l", "1", "--no-pci", "--log-level=1", "--"])
        .arg(format!("--rulesf={}", rules.display()))
        .arg(format!("--tracef={}", trace.display()))
        .args(["--rulenum=400000", "--tracenum=4000000"])
        .arg(format!("--iter={iter}"))
        .arg(format!("--alg={alg}"))
        .arg("--verbose=1")
        .output()
        .context("running dpdk-test-acl (is DPDK installed and are hugepages set up?)")?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "dpdk-test-acl --alg={alg} exited with {} (are hugepages set up?):\n{}",
            out.status,
            tail(&text, 15)
        );
    }
    let mut run = DpdkRun {
        alg: alg.to_string(),
        ..Default::default()
    };
    let mut found = false;
    for line in text.lines() {
        if let Some(t) = line.trim().strip_prefix("num_tries=") {
            run.tries = t.trim().parse().unwrap_or(0);
        }
        if line.contains("search_ip5tuples  @lcore") {
            for part in line.split(',') {
                let p = part.trim();
                if let Some(x) = p.strip_suffix("cycles/pkt") {
                    run.cycles_per_pkt = x.trim().parse().unwrap_or(0.0);
                }
                if let Some(x) = p.strip_suffix("pkt/sec") {
                    run.pps = x.trim().parse().unwrap_or(0.0);
                    found = true;
                }
            }
        }
    }
    if !(found && run.pps.is_finite() && run.pps > 0.0) {
        bail!(
            "dpdk-test-acl --alg={alg} produced no figures (no positive pkt/sec in a \
             `search_ip5tuples @lcore` line):\n{}",
            tail(&text, 15)
        );
    }
    Ok(run)
}

/// The last `n` lines of a tool's output, for an error message.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `dpdk-test-acl`'s answers (0-based rule index per header; `-1` none).
pub fn dpdk_results(rules: &Path, trace: &Path) -> Result<Vec<i64>> {
    let out = Command::new("dpdk-test-acl")
        .args(["-l", "1", "--no-pci", "--log-level=1", "--"])
        .arg(format!("--rulesf={}", rules.display()))
        .arg(format!("--tracef={}", trace.display()))
        .args([
            "--rulenum=400000",
            "--tracenum=4000000",
            "--iter=1",
            "--alg=scalar",
            "--verbose=2",
        ])
        .output()
        .context("running dpdk-test-acl")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut res = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("ipv4_5tuple: ") {
            if let Some((_, r)) = rest.split_once("result: ") {
                let v: i64 = r.trim().parse().unwrap_or(-1);
                // rte_acl returns userdata 0 (printed as -1) on no match.
                res.push(v);
            }
        }
    }
    Ok(res)
}

/// Synthetic Calico-style policy sets (for compile time, memory, lookups).
pub mod calico {
    use std::fmt::Write as _;

    /// YAML of a synthetic Calico set with about `rules` rules and a
    /// GlobalNetworkSet of `set_members` /32 members, deterministic in
    /// `seed`.
    ///
    /// Model: 200 namespaces × 5 apps, one WorkloadEndpoint per (namespace,
    /// app) pair with a /32 in 10.64.0.0/10 and a named port; tiers
    /// `security` (Pass default), and `default`. A GlobalNetworkPolicy in
    /// `security` denies sources in the big GlobalNetworkSet; NetworkPolicies
    /// (10 rules each) per namespace allow TCP/UDP ports from peer apps
    /// (selectors), CIDRs and named ports, with some `notNets`, `Log` and
    /// `Pass`, until `rules` rules are written.
    pub fn yaml(rules: usize, set_members: usize, seed: u64) -> String {
        let mut r = super::Rng(seed);
        let mut s = String::new();
        let apps = ["web", "api", "db", "cache", "queue"];
        let nss = 200usize;
        let _ = writeln!(
            s,
            "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: security}}\nspec: {{order: 100, defaultAction: Pass}}\n---"
        );
        for n in 0..nss {
            for (a, app) in apps.iter().enumerate() {
                let ip = 0x0a40_0000u32 + (n as u32) * 8 + a as u32;
                let _ = writeln!(
                    s,
                    "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {app}-{n}, namespace: ns{n}, labels: {{app: {app}, tier: t{}}}}}\nspec: {{ipNetworks: [{}/32], ports: [{{name: svc, port: {}, protocol: TCP}}]}}\n---",
                    a % 3,
                    std::net::Ipv4Addr::from(ip),
                    8000 + a
                );
            }
        }
        // The big IP set: /32s in 100.64.0.0/10, distinct.
        let _ = write!(
            s,
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {{name: blocklist, labels: {{list: block}}}}\nspec:\n  nets:\n"
        );
        let mut members = std::collections::BTreeSet::new();
        while members.len() < set_members {
            members.insert(0x6440_0000u32 | (r.next_u64() as u32 & 0x003f_ffff));
        }
        for m in &members {
            let _ = writeln!(s, "  - {}/32", std::net::Ipv4Addr::from(*m));
        }
        let _ = writeln!(
            s,
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: security.blocklist}}\nspec:\n  tier: security\n  order: 1\n  selector: all()\n  types: [Ingress, Egress]\n  ingress:\n  - action: Deny\n    source: {{selector: list == 'block'}}\n  - action: Pass\n  egress:\n  - action: Deny\n    destination: {{selector: list == 'block'}}\n  - action: Pass\n---"
        );
        let mut written = 4usize;
        let mut p = 0usize;
        while written < rules {
            let n = p % nss;
            let app = apps[p % apps.len()];
            let _ = writeln!(
                s,
                "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: pol-{p}, namespace: ns{n}}}\nspec:\n  order: {}\n  selector: app == '{app}'\n  types: [Ingress, Egress]\n  ingress:",
                p % 50
            );
            for k in 0..5 {
                let peer = apps[(p + k + 1) % apps.len()];
                let port = 1000 + r.below(60000) as u32;
                let rule = match k {
                    0 => format!("  - action: Allow\n    protocol: TCP\n    source: {{selector: app == '{peer}'}}\n    destination: {{ports: [{port}, svc]}}"),
                    1 => format!("  - action: Allow\n    protocol: UDP\n    source: {{nets: [{}/24], notNets: [{}/28]}}\n    destination: {{ports: ['{port}:{}']}}", std::net::Ipv4Addr::from(0x0a00_0000u32 | ((r.next_u64() as u32 & 0xffff) << 8)), std::net::Ipv4Addr::from(0x0a00_0000u32), port + 10),
                    2 => "  - action: Log\n    protocol: TCP".to_string(),
                    3 => format!("  - action: Deny\n    protocol: TCP\n    source: {{namespaceSelector: all(), selector: tier == 't{}'}}\n    destination: {{notPorts: [{port}]}}", k % 3),
                    _ => format!("  - action: Allow\n    protocol: TCP\n    source: {{selector: app == '{peer}'}}\n    destination: {{ports: [{port}]}}"),
                };
                let _ = writeln!(s, "{rule}");
            }
            let _ = writeln!(s, "  egress:");
            for k in 0..5 {
                let port = 1000 + r.below(60000) as u32;
                let rule = match k {
                    0 => format!("  - action: Allow\n    protocol: TCP\n    destination: {{selector: app == '{}', ports: [{port}]}}", apps[(p + k) % apps.len()]),
                    1 => format!("  - action: Allow\n    protocol: UDP\n    destination: {{nets: [{}/16], ports: [53]}}", std::net::Ipv4Addr::from(0x0a00_0000u32 | ((r.next_u64() as u32 & 0xff) << 16))),
                    2 => "  - action: Pass\n    protocol: ICMP".to_string(),
                    3 => format!("  - action: Deny\n    protocol: TCP\n    destination: {{notSelector: app == 'db', ports: ['{port}:{}']}}", port + 100),
                    _ => format!("  - action: Allow\n    protocol: TCP\n    destination: {{nets: [{}/32], ports: [{port}]}}", std::net::Ipv4Addr::from(r.next_u64() as u32)),
                };
                let _ = writeln!(s, "{rule}");
            }
            let _ = writeln!(s, "---");
            written += 10;
            p += 1;
        }
        s
    }

    /// Packets for a synthetic Calico set: endpoint-to-endpoint TCP/UDP
    /// flows, some from the IP set, deterministic in `seed`.
    pub fn packets(n: usize, seed: u64) -> Vec<policy_compiler::FlowKey> {
        let mut r = super::Rng(seed);
        (0..n)
            .map(|_| {
                let ep = |r: &mut super::Rng| {
                    0x0a40_0000u32 + (r.below(200) as u32) * 8 + r.below(5) as u32
                };
                let src = if r.below(10) == 0 {
                    0x6440_0000u32 | (r.next_u64() as u32 & 0x003f_ffff)
                } else {
                    ep(&mut r)
                };
                let dst = ep(&mut r);
                let proto = if r.below(4) == 0 { 17 } else { 6 };
                let dport = if r.below(2) == 0 {
                    8000 + r.below(5) as u16
                } else {
                    1000 + r.below(60000) as u16
                };
                policy_compiler::FlowKey::v4(
                    src,
                    dst,
                    proto,
                    policy_compiler::L4::Ports {
                        sport: 30000 + r.below(30000) as u16,
                        dport,
                    },
                )
            })
            .collect()
    }
}
