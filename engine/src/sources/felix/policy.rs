//! Policy from the Felix stream (`shared/spec/felix.md` section 3): a
//! [`FelixModel`]'s IP sets, policies, profiles and endpoints translated
//! into policy-compiler's IR ([`policy_compiler::ir::Ir`]) and compiled by
//! the same compiler, into the same kind of classifier, as the YAML path.
//! There is no second evaluator: tiers, `Pass`, end of tier, profiles and
//! `decided_by` are the IR's segment walk.
//!
//! Why here and not in policy-compiler: Felix has already resolved every
//! selector, namespace and named port into IP sets, so this front end
//! needs nothing of the compiler's model or resolver; it maps the proto
//! rule fields (the engine's prost types, which policy-compiler cannot
//! see) onto the IR's public term algebra. A copy of the messages as plain
//! types in policy-compiler would be a second definition of the stream.
//!
//! The translation, as Felix's iptables data plane renders it
//! (`felix/rules/policy.go`, `endpoints.go`):
//! - A rule is rendered per address family, after
//!   `FilterRuleToIPVersion`: a rule with an `ip_version` is kept only for
//!   it; each CIDR list keeps the CIDRs of the family, and a non-empty list
//!   that keeps none drops the rule for that family (a negated list holding
//!   the catch-all `0.0.0.0/0` / `::/0` too).
//! - Within a side, every field is ANDed: any positive net, no negated
//!   net, every positive IP set, no negated IP set, every
//!   `dst_ip_port_set_ids` set. Ports: a numeric range or a named-port IP
//!   set (`ip,proto:port` members) — ORed; negated ports: none of the
//!   ranges and none of the named-port sets. As in the YAML path, a packet
//!   without ports never matches a rule with ports.
//! - Actions: `""`/`allow`, `deny`, `next-tier`/`pass`, `log` (never
//!   decides; rule indices still count it).
//! - An endpoint walks, per direction, its tiers in order (a tier with no
//!   non-staged policy for the direction is skipped; staged kinds are never
//!   enforced), each ending in its `default_action` (`Pass` goes on,
//!   anything else denies), then its profiles; nothing matched denies.
//! - Staged policies are never enforced, but an endpoint whose tiers list
//!   any also gets a pending walk: the same tiers with the staged policies
//!   enforced where they stand (a tier of staged policies only is walked
//!   there, ending in its `default_action`), which is what Calico calls
//!   the flow's pending policies. It compiles into a second classifier
//!   kept inside the first ([`Classifier::staged`]), with the same set
//!   indices and decision numbers; the pipeline runs it on new
//!   connections for accounting only. A staged policy is named
//!   `staged:NAME` in decisions, as in Calico's flow logs.
//! - Host endpoints with expected addresses are endpoints at those
//!   addresses: their normal `tiers` and profiles judge traffic to and from
//!   the host, after the failsafe ports (always allowed). New connections
//!   routed to the host from a port that is not a workload's are judged by
//!   the ingress policy of the endpoint at their destination (Felix's
//!   `cali-from-host-endpoint` in INPUT; Felix picks the endpoint by the
//!   interface the packet came in on, sluice by the address it is for).
//!   The normal tiers of host endpoints without addresses are reported,
//!   not enforced.
//!
//! Host endpoints by interface ([`HostPolicy`], bound to ports by
//! [`crate::tables::host::HostTables::bind`], applied by the pipeline's
//! host stage `pipeline::stages::host`), as Felix's iptables data plane
//! renders them:
//! - Binding (`resolveHostEndpoints`, `felix/dataplane/linux/endpoint_mgr.go`):
//!   a non-workload interface gets the first endpoint in id order whose
//!   `name` is the interface or which, having no name, expects one of the
//!   interface's addresses; failing those, the first `*` endpoint. Workload
//!   interfaces (the workload endpoints' names and `InterfacePrefix`) never
//!   get one. sluice binds ports: a port's interface and its addresses.
//! - Each kind is the tiers' walk as for normal tiers, with these
//!   differences (`endpointIptablesChain`, `felix/rules/endpoints.go`): in
//!   untracked and pre-DNAT tiers no policy matching ends a tier without a
//!   drop ("there may be normal rules still to be applied") and the walk
//!   goes on to the next tier; after the last, the packet goes on to the
//!   normal processing. An allow sets the accept mark; untracked, it also
//!   `NOTRACK`s. A deny drops. Forward tiers end in the tier's default
//!   action like normal ones; a host endpoint without forward tiers
//!   allows forwarded traffic ("Allow forwarded traffic by default");
//!   profiles never apply to forward, pre-DNAT or untracked traffic.
//! - Untracked tiers (`HostEndpointToRawChains`; raw PREROUTING and
//!   OUTPUT): ingress rules judge every packet arriving on the interface,
//!   established or not, before conntrack, after the failsafe ports (whose
//!   match lets the packet go on, tracked: the raw failsafe chains
//!   `ACCEPT` without the mark; as `failsafeInChain("raw")`, the inbound
//!   ports as destination and the outbound ports as source, the replies to
//!   the host's own failsafe connections). An allow leaves no connection and no NAT,
//!   so a reply is judged again, by the untracked tiers of the interface
//!   it arrives on. Egress rules (raw OUTPUT) judge only what the host
//!   itself sends, which leaves through the kernel, not sluice: reported.
//!   On a `*` endpoint they are ignored, as Felix ignores them (reported).
//! - Pre-DNAT tiers (`HostEndpointToMangleIngressChains`; mangle
//!   PREROUTING after `RELATED,ESTABLISHED` is accepted): ingress rules
//!   only, on new connections arriving on the interface, whatever their
//!   destination, with the destination they arrived with (before service
//!   DNAT), after the failsafe ports.
//! - The accept mark (`filterInputChain`, `StaticFilterForwardChains`,
//!   `felix/rules/static.go`): a packet untracked or pre-DNAT policy
//!   accepted skips its incoming host endpoint's forward tiers (and, for
//!   the host, its normal policy); the workloads' policy and the outgoing
//!   host endpoint's forward tiers still apply.
//! - Forward tiers (`applyOnForward`; `HostEndpointToFilterChains`,
//!   filter FORWARD): a new connection forwarded in through the interface
//!   meets its ingress rules, one forwarded out through it its egress
//!   rules; both, besides the workloads' own policy, for traffic between
//!   a host endpoint and a local workload. No failsafe ports here.
//! - `DefaultEndpointToHostAction` (`filterWorkloadToHostChain`): a
//!   workload's new connection to the host is judged by the workload's
//!   egress policy, then `DROP` drops it, `ACCEPT` accepts it and `RETURN`
//!   leaves Calico's rules (the host's own INPUT rules, outside sluice,
//!   decide: it is delivered). The host endpoints' policy does not apply
//!   to it (their dispatch matches their own interfaces). ICMPv6 130–133,
//!   135 and 136 are accepted before the workload's policy; sluice lets
//!   130–137 through (routing already hands 133–137, router and neighbour
//!   discovery and redirects, to the kernel before any policy).
//! - Traffic to the host (this setting, the host endpoints' normal tiers,
//!   pre-DNAT): the kernel tracks the host's connections, and those the
//!   host opens leave through the kernel, not sluice, so a reply to one
//!   (a SYN/ACK, a UDP answer) looks new to sluice while the kernel
//!   accepts it as established before any of Felix's rules. sluice judges
//!   only packets for the host that can only open a connection (a TCP SYN
//!   without ACK, an ICMP request); UDP and other datagrams to the host
//!   are not judged (reported).
//!
//! Design: a host endpoint's kind compiles, by the same compiler, to a
//! classifier of its own whose one endpoint owns every address (the
//! interface selects it, not an address); its ingress verdict judges a
//! packet arriving through the interface, its egress verdict one leaving
//! through it. Every IR of a model shares one decision table, so a
//! decision id means the same whichever classifier gave it (counters,
//! `explain`'s `decided_by`), and each decision carries its effect for
//! the host stage ([`Effect`]: go on, accept, drop). The classifier's key
//! has no interface, so the interface is the pipeline's to check: per
//! port, a role (its endpoint, whether it is a workload's), with one
//! branch per batch for each pass no port needs and one indexed load per
//! frame otherwise; ports without a role keep the main classifier's path
//! and its memo of denials untouched (frames of ports with a role neither
//! use nor fill the memo, since their verdict depends on more than the
//! key). The alternative, the interface as one more classifier field,
//! would change every engine and the YAML path for what only ports with a
//! host endpoint need.
//! - Anything an endpoint's policy names that does not resolve (an IP set,
//!   policy or profile never sent, an IP set of the wrong type or with a
//!   malformed member, an unknown action or protocol) makes that endpoint
//!   fail closed in both directions: one deny-all segment whose decision
//!   is [`DecisionInfo::FailClosed`] naming the reference.
//!
//! Small updates stay small ([`PolicyCompiler`]):
//! - IP sets are not expanded into the rules: a rule names a set by index
//!   ([`SetCheck`]) and the classifier holds each set's members in its set
//!   table ([`SetMatch`]). A batch of updates that changes only the members
//!   of sets the policy already uses (every other part of the model as it
//!   was, each changed set still parsing to the same kind) replaces those
//!   sets' tables in a copy of the last classifier that shares its engines
//!   ([`Classifier::with_set`]); nothing is recompiled.
//! - Anything else compiles the model again, but set indices are kept
//!   across compiles and each tier is split into one segment per group of
//!   endpoint classes that share policies, so a changed policy changes only
//!   the segments of the endpoints that use it, and the compiler takes
//!   every other segment's engines from its cache
//!   ([`policy_compiler::EngineCache`]).
//! - Parsed IP sets are cached keyed by the model's `Arc`: a delta
//!   re-parses only that set. Translated rule lists are kept from one
//!   compile to the next, keyed by their policy's or profile's `Arc`
//!   (valid while the sets they check keep their kind and table index):
//!   a changed policy translates only itself.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use policy_compiler::ir::{
    Decision, DecisionInfo, Dir, DirIr, EndpointIr, Ir, IrRule, RuleAction, Segment, SegmentKind,
    SetCheck, SetSide, Term, ICMP_BASE, L4_MAX, PORT_MAX, PROTO_MAX,
};
use policy_compiler::model::{Action, Cidr};
use policy_compiler::ranges::{AddrSet, RangeSet};
use policy_compiler::{Classifier, EngineCache, SetMatch};

use super::model::{EndpointToHost, FelixModel, IpSet, Settings};
use super::proto::{self, rule, IpSetType, PolicyId};
use crate::tables::host::{Binding, Effect, HostEndpointPolicy, HostPolicy, KindPolicy, ToHost};
use crate::wire::Family;

/// What an IP set's members are: addresses (`NET`, `IP`) or
/// `ip,proto:port` (`IP_AND_PORT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Addrs,
    IpPorts,
}

/// An IP set as parsed (its kind and lookup table), or why it could not be.
type ParsedSet = Arc<Result<(Kind, Arc<SetMatch>), String>>;

/// What the last compile did and could not do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyReport {
    /// Workload and host endpoints enforced.
    pub workload_endpoints: usize,
    pub host_endpoints: usize,
    /// Rules in the IR (both directions, every segment).
    pub rules: usize,
    /// Endpoints that fail closed, with why.
    pub fail_closed: Vec<(String, String)>,
    /// Staged policies in the model (never enforced; accounted by the
    /// pending classifier, [`Classifier::staged`]).
    pub staged: usize,
    /// Staged policies left out of the pending walk, with why (they do
    /// not resolve).
    pub staged_skipped: BTreeSet<String>,
    /// `(feature, what)`, as [`super::convert::Report::unsupported`].
    pub unsupported: Vec<(&'static str, String)>,
    /// Model → IR, IR → classifier, ms.
    pub ir_ms: f64,
    pub compile_ms: f64,
    /// How the last model was compiled.
    pub how: HowCompiled,
}

/// How a model was compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HowCompiled {
    /// Model → IR → classifier; segments whose rules had not changed took
    /// their engines from the cache.
    Full {
        segments_built: usize,
        segments_reused: usize,
    },
    /// Only IP set members changed: these sets' tables were replaced.
    SetsOnly { sets: usize },
}

impl Default for HowCompiled {
    fn default() -> HowCompiled {
        HowCompiled::Full {
            segments_built: 0,
            segments_reused: 0,
        }
    }
}

/// The compiled policy of a model.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    pub classifier: Arc<Classifier>,
    /// The host endpoints' untracked, pre-DNAT and forward tiers and
    /// `DefaultEndpointToHostAction`, bound to ports when tables are built.
    pub host: Arc<HostPolicy>,
    pub report: PolicyReport,
}

/// A host endpoint's kinds of tiers that are judged by interface, in the
/// order of [`HostIr::kinds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HostKind {
    Untracked,
    PreDnat,
    Forward,
}

/// What [`IrBuilder`] makes of one host endpoint for the per-interface
/// policy: its binding and the IR of each kind it has.
struct HostIr {
    id: String,
    binding: Binding,
    kinds: [Option<Ir>; 3],
}

/// Everything one model makes: the IR, the host endpoints' IRs, what
/// `DefaultEndpointToHostAction` does and its decision, each decision's
/// effect for the host IRs, the set table, the IP sets named, the report.
struct Built {
    ir: Ir,
    pending: Option<Ir>,
    hosts: Vec<HostIr>,
    to_host: (ToHost, Decision),
    effects: Arc<[Effect]>,
    sets: Vec<Arc<SetMatch>>,
    referenced: HashSet<String>,
    report: PolicyReport,
}

/// Compiles models, keeping what the next compile can reuse (see the
/// module docs).
#[derive(Debug, Default)]
pub struct PolicyCompiler {
    sets: HashMap<String, (Arc<IpSet>, ParsedSet)>,
    /// Set table index and kind of each IP set the last compile's rules
    /// check; indices stay while a set is used, so unchanged rules compile
    /// to the same terms.
    set_index: HashMap<String, (u32, Kind)>,
    engines: EngineCache,
    /// The pending classifier's engines (see [`Classifier::staged`]).
    pending_engines: EngineCache,
    /// Rule lists translated by the last compile, reused while their
    /// policy or profile and the kinds of the sets they check are the same
    /// (a changed policy translates only itself).
    translations: HashMap<(Owner, Dir), Translation>,
    last: Option<Last>,
    /// Sets parsed by the last compile (the others came from the cache).
    pub parsed_last: usize,
}

/// What the last compile read of the model, and its result.
#[derive(Debug)]
struct Last {
    settings: Settings,
    ip_sets: BTreeMap<String, Arc<IpSet>>,
    policies: BTreeMap<PolicyId, Arc<proto::Policy>>,
    profiles: BTreeMap<String, Arc<proto::Profile>>,
    workload_endpoints: BTreeMap<proto::WorkloadEndpointId, Arc<proto::WorkloadEndpoint>>,
    host_endpoints: BTreeMap<String, Arc<proto::HostEndpoint>>,
    /// Every IP set id the policy named (sent or not).
    referenced: HashSet<String>,
    compiled: CompiledPolicy,
}

/// Whether two maps of shared values hold the same entries.
fn same<K: Ord, V: PartialEq>(a: &BTreeMap<K, Arc<V>>, b: &BTreeMap<K, Arc<V>>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && (Arc::ptr_eq(va, vb) || va == vb))
}

impl PolicyCompiler {
    /// The model's policy, compiled (see the module docs).
    pub fn compile(&mut self, m: &FelixModel) -> CompiledPolicy {
        let t0 = Instant::now();
        if let Some(c) = self.sets_only(m) {
            return c;
        }
        let Built {
            ir,
            pending,
            hosts,
            to_host,
            effects,
            sets,
            referenced,
            mut report,
        } = self.ir_and_sets(m);
        let t1 = Instant::now();
        let builder = policy_compiler::Builder::new();
        // One group: the host endpoints' classifiers share the cache with
        // the main one, and the next compile finds all their engines.
        self.engines.begin_group();
        let mut classifier = builder.compile_ir_with(&ir, sets.clone(), &mut self.engines);
        if let Some(p) = pending {
            classifier = classifier.with_staged(builder.compile_ir_with(
                &p,
                sets.clone(),
                &mut self.pending_engines,
            ));
        }
        let classifier = Arc::new(classifier);
        let mut endpoints = Vec::with_capacity(hosts.len());
        for h in hosts {
            let [u, p, f] = h.kinds.map(|k| {
                k.map(|ir| KindPolicy {
                    classifier: Arc::new(builder.compile_ir_with(
                        &ir,
                        sets.clone(),
                        &mut self.engines,
                    )),
                    effects: effects.clone(),
                })
            });
            endpoints.push(HostEndpointPolicy {
                id: h.id,
                binding: h.binding,
                untracked: u,
                pre_dnat: p,
                forward: f,
            });
        }
        let host = Arc::new(HostPolicy {
            endpoints,
            workload_interfaces: m
                .workload_endpoints
                .values()
                .map(|w| w.name.clone())
                .filter(|n| !n.is_empty())
                .collect(),
            workload_prefixes: m.settings.interface_prefixes.clone(),
            to_host: Some(to_host),
            input_from: Some(if report.host_endpoints == 0 {
                u32::MAX
            } else {
                report.workload_endpoints as u32
            }),
        });
        self.engines.end_group();
        report.ir_ms = (t1 - t0).as_secs_f64() * 1e3;
        report.compile_ms = t1.elapsed().as_secs_f64() * 1e3;
        report.how = HowCompiled::Full {
            segments_built: self.engines.misses,
            segments_reused: self.engines.hits,
        };
        let compiled = CompiledPolicy {
            classifier,
            host,
            report,
        };
        self.last = Some(Last {
            settings: m.settings.clone(),
            ip_sets: m.ip_sets.clone(),
            policies: m.policies.clone(),
            profiles: m.profiles.clone(),
            workload_endpoints: m.workload_endpoints.clone(),
            host_endpoints: m.host_endpoints.clone(),
            referenced,
            compiled: compiled.clone(),
        });
        compiled
    }

    /// The last classifier with the changed IP sets' tables replaced, when
    /// only members of sets it already checks changed (see the module
    /// docs); `None` when the model must be compiled.
    fn sets_only(&mut self, m: &FelixModel) -> Option<CompiledPolicy> {
        let t0 = Instant::now();
        let last = self.last.as_ref()?;
        let unchanged = last.settings == m.settings
            && same(&last.policies, &m.policies)
            && same(&last.profiles, &m.profiles)
            && same(&last.workload_endpoints, &m.workload_endpoints)
            && same(&last.host_endpoints, &m.host_endpoints);
        if !unchanged {
            return None;
        }
        let mut changed: Vec<&String> = Vec::new();
        for (id, a) in &m.ip_sets {
            if last.ip_sets.get(id).is_none_or(|b| !Arc::ptr_eq(a, b)) {
                changed.push(id);
            }
        }
        changed.extend(
            last.ip_sets
                .keys()
                .filter(|id| !m.ip_sets.contains_key(*id)),
        );
        // Sets the policy does not name change nothing.
        changed.retain(|id| last.referenced.contains(*id));
        let changed: Vec<String> = changed.into_iter().cloned().collect();
        let mut classifier = (*last.compiled.classifier).clone();
        let mut host = (*last.compiled.host).clone();
        let mut parsed = 0;
        for id in &changed {
            let (index, kind) = *self.set_index.get(id)?;
            let cur = m.ip_sets.get(id)?;
            let p = Arc::new(parse_set(cur));
            parsed += 1;
            let Ok((k, table)) = p.as_ref() else {
                return None;
            };
            if *k != kind {
                return None;
            }
            classifier = classifier.with_set(index, table.clone())?;
            for e in &mut host.endpoints {
                for k in [&mut e.untracked, &mut e.pre_dnat, &mut e.forward]
                    .into_iter()
                    .flatten()
                {
                    k.classifier = Arc::new(k.classifier.with_set(index, table.clone())?);
                }
            }
            self.sets.insert(id.clone(), (cur.clone(), p.clone()));
        }
        let last = self.last.as_mut()?;
        let mut report = last.compiled.report.clone();
        report.how = HowCompiled::SetsOnly {
            sets: changed.len(),
        };
        report.ir_ms = 0.0;
        report.compile_ms = t0.elapsed().as_secs_f64() * 1e3;
        let compiled = CompiledPolicy {
            classifier: Arc::new(classifier),
            host: Arc::new(host),
            report,
        };
        last.ip_sets = m.ip_sets.clone();
        last.compiled = compiled.clone();
        self.parsed_last = parsed;
        Some(compiled)
    }

    /// The IR of `m` and the report.
    pub fn ir(&mut self, m: &FelixModel) -> (Ir, PolicyReport) {
        let b = self.ir_and_sets(m);
        (b.ir, b.report)
    }

    /// The IR of `m`, its pending IR (staged policies enforced) when any
    /// endpoint walks a staged policy, the IRs of its host endpoints'
    /// kinds, the set table their checks index, the IP set ids they name,
    /// and the report.
    fn ir_and_sets(&mut self, m: &FelixModel) -> Built {
        self.sets
            .retain(|id, (a, _)| m.ip_sets.get(id).is_some_and(|cur| Arc::ptr_eq(a, cur)));
        self.parsed_last = 0;
        let mut b = IrBuilder {
            m,
            cache: self,
            referenced: HashSet::new(),
            used: HashMap::new(),
            rules: HashMap::new(),
            pending: HashMap::new(),
            recording: Vec::new(),
            translations: HashMap::new(),
            decisions: vec![
                DecisionInfo::NoEndpoint,
                DecisionInfo::NoMatch { dir: Dir::Egress },
                DecisionInfo::NoMatch { dir: Dir::Ingress },
            ],
            report: PolicyReport::default(),
            failsafe: HashSet::new(),
        };
        let eps = b.endpoints();
        let mut dirs: [DirIr; 2] = Default::default();
        for dir in [Dir::Egress, Dir::Ingress] {
            dirs[dir.idx()] = b.direction(&eps, dir);
        }
        b.report.rules = dirs
            .iter()
            .flat_map(|d| &d.segments)
            .map(|s| s.rules.len())
            .sum();
        // The pending walk, built after the enforced one so that the
        // enforced decisions keep their numbers; every IR carries every
        // decision.
        let pending_dirs = (!b.pending.is_empty()).then(|| {
            let peps: Vec<Ep> = eps
                .iter()
                .map(|e| Ep {
                    ir: e.ir.clone(),
                    steps: b.pending.get(&e.ir.name).unwrap_or(&e.steps).clone(),
                })
                .collect();
            let mut pd: [DirIr; 2] = Default::default();
            for dir in [Dir::Egress, Dir::Ingress] {
                pd[dir.idx()] = b.direction(&peps, dir);
            }
            pd
        });
        let host_dirs = b.host_kinds();
        let (action, value) = match m.settings.endpoint_to_host {
            EndpointToHost::Drop => (ToHost::Drop, "DROP"),
            EndpointToHost::Return => (ToHost::Return, "RETURN"),
            EndpointToHost::Accept => (ToHost::Accept, "ACCEPT"),
        };
        let to_host = (
            action,
            b.decision(DecisionInfo::Setting {
                dir: Dir::Egress,
                setting: "DefaultEndpointToHostAction".into(),
                value: value.into(),
            }),
        );
        // Every IR shares one decision table, so a decision id means the
        // same whichever classifier gave it (counters, `explain`).
        let effects: Arc<[Effect]> = b
            .decisions
            .iter()
            .enumerate()
            .map(|(i, d)| effect(d, b.failsafe.contains(&(i as u32))))
            .collect();
        let hosts = host_dirs
            .into_iter()
            .map(|(id, binding, kinds)| HostIr {
                id,
                binding,
                kinds: kinds.map(|k| {
                    k.map(|dirs| Ir {
                        endpoints: vec![EndpointIr {
                            name: "host-interface".into(),
                            nets: all_addresses(),
                        }],
                        dirs,
                        decisions: b.decisions.clone(),
                    })
                }),
            })
            .collect();
        let endpoints: Vec<EndpointIr> = eps.iter().map(|e| e.ir.clone()).collect();
        let pending = pending_dirs.map(|dirs| Ir {
            endpoints: endpoints.clone(),
            dirs,
            decisions: b.decisions.clone(),
        });
        let ir = Ir {
            endpoints,
            dirs,
            decisions: b.decisions,
        };
        let (referenced, used, report) = (b.referenced, b.used, b.report);
        self.translations = b.translations;
        // Indices of sets no longer used are free again; the table has a
        // slot per index (free ones empty: no rule names them).
        self.set_index.retain(|id, _| used.contains_key(id));
        let n = self.set_index.values().map(|v| v.0 + 1).max().unwrap_or(0);
        let empty = Arc::new(SetMatch::none());
        let mut table: Vec<Arc<SetMatch>> = (0..n).map(|_| empty.clone()).collect();
        for (id, (i, _)) in &self.set_index {
            if let Some(t) = used.get(id) {
                table[*i as usize] = t.clone();
            }
        }
        Built {
            ir,
            pending,
            hosts,
            to_host,
            effects,
            sets: table,
            referenced,
            report,
        }
    }

    /// The set table index of IP set `id` (of kind `kind`), kept from the
    /// last compile when it was used there, else the lowest free one.
    fn index_of(&mut self, id: &str, kind: Kind) -> u32 {
        if let Some((i, k)) = self.set_index.get_mut(id) {
            *k = kind;
            return *i;
        }
        let taken: HashSet<u32> = self.set_index.values().map(|v| v.0).collect();
        let i = (0..).find(|i| !taken.contains(i)).unwrap_or(0);
        self.set_index.insert(id.to_string(), (i, kind));
        i
    }

    /// IP set `id` parsed (from the cache when the model's set is the one
    /// parsed last time); `None` when it was never sent.
    fn set(&mut self, m: &FelixModel, id: &str) -> Option<ParsedSet> {
        let cur = m.ip_sets.get(id)?;
        if let Some((a, p)) = self.sets.get(id) {
            if Arc::ptr_eq(a, cur) {
                return Some(p.clone());
            }
        }
        let p = Arc::new(parse_set(cur));
        self.parsed_last += 1;
        self.sets.insert(id.to_string(), (cur.clone(), p.clone()));
        Some(p)
    }
}

/// Parses an IP set's members into its kind and lookup table.
fn parse_set(s: &IpSet) -> Result<(Kind, Arc<SetMatch>), String> {
    match s.kind {
        IpSetType::Ip | IpSetType::Net => {
            let mut cidrs = Vec::with_capacity(s.members.len());
            for m in &s.members {
                cidrs.push(Cidr::parse(m).map_err(|e| format!("member {e}"))?);
            }
            let a = AddrSet::from_cidrs(&cidrs);
            Ok((Kind::Addrs, Arc::new(SetMatch::addrs(&a))))
        }
        IpSetType::IpAndPort => {
            let mut v = Vec::with_capacity(s.members.len());
            for m in &s.members {
                v.push(parse_ip_port(m)?);
            }
            Ok((Kind::IpPorts, Arc::new(SetMatch::ip_ports(v))))
        }
    }
}

/// An `IP_AND_PORT` member, `ip,proto:port` (Felix writes `tcp`, `udp`
/// or `sctp`), as (IPv6?, address, protocol, port).
fn parse_ip_port(m: &str) -> Result<(bool, u128, u8, u16), String> {
    let bad = || format!("member {m:?} is not ip,proto:port");
    let (ip, pp) = m.split_once(',').ok_or_else(bad)?;
    let (p, port) = pp.split_once(':').ok_or_else(bad)?;
    let ip: IpAddr = ip.trim().parse().map_err(|_| bad())?;
    let proto = protocol_number(p).ok_or_else(bad)?;
    let port: u16 = port.trim().parse().map_err(|_| bad())?;
    Ok(match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a)), proto, port),
        IpAddr::V6(a) => (true, u128::from(a), proto, port),
    })
}

/// A protocol name as Felix and iptables spell it.
fn protocol_number(name: &str) -> Option<u8> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" => 58,
        "sctp" => 132,
        "udplite" => 136,
        n => return n.parse().ok(),
    })
}

fn protocol(p: &proto::Protocol) -> Result<u8, String> {
    match &p.number_or_name {
        Some(proto::protocol::NumberOrName::Number(n)) => {
            u8::try_from(*n).map_err(|_| format!("protocol {n} out of range"))
        }
        Some(proto::protocol::NumberOrName::Name(n)) => {
            protocol_number(n).ok_or_else(|| format!("unknown protocol {n:?}"))
        }
        None => Err("protocol without a number or name".into()),
    }
}

/// Whether a policy kind is staged (never enforced).
pub fn is_staged(kind: &str) -> bool {
    kind.starts_with("Staged")
}

/// The key naming a policy in verdicts: `name`, or `namespace/name` (as
/// the YAML path keys them: policy.md section 3).
pub fn policy_key(id: &PolicyId) -> String {
    // A staged policy may share its name with an enforced one: its key
    // says `staged:`, as Calico's flow logs name staged policies.
    let staged = if is_staged(&id.kind) { "staged:" } else { "" };
    if id.namespace.is_empty() {
        format!("{staged}{}", id.name)
    } else {
        format!("{}/{staged}{}", id.namespace, id.name)
    }
}

/// One rule translated: its index as written, action and terms.
#[derive(Debug)]
struct TRule {
    index: usize,
    action: Action,
    terms: Vec<Term>,
}

/// A rule list translated, or what in it does not resolve.
type TRules = Result<Arc<Vec<TRule>>, String>;

/// A rule list translated by an earlier compile: from which policy or
/// profile, and the sets its checks name (id, kind, table index).
#[derive(Debug)]
struct Translation {
    from: Source,
    rules: Arc<Vec<TRule>>,
    sets: Vec<(String, Kind, u32)>,
}

/// The object a rule list was translated from.
#[derive(Debug)]
enum Source {
    Policy(Arc<proto::Policy>),
    Profile(Arc<proto::Profile>),
}

impl Source {
    fn same(&self, o: &Source) -> bool {
        match (self, o) {
            (Source::Policy(a), Source::Policy(b)) => Arc::ptr_eq(a, b),
            (Source::Profile(a), Source::Profile(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// What an endpoint walks in one direction, step by step.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Step {
    /// A tier: its name, whether its default action passes, its
    /// non-staged policies in order.
    Tier(TierStep),
    /// A segment that is the same for every endpoint walking it.
    Shared(Shared),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TierStep {
    name: String,
    pass: bool,
    policies: Vec<PolicyId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Shared {
    /// The failsafe ports (host endpoints).
    Failsafe,
    /// The failsafe ports as Felix's raw table has them (untracked
    /// tiers, ingress): the inbound ports, and the replies to the
    /// outbound ones (their port as the source), which would otherwise
    /// meet untracked policy before conntrack.
    FailsafeRaw,
    Profile(String),
    /// Deny everything, for this reason.
    FailClosed(String),
}

/// Where a class walks a tier: (class, step index, the step).
type TierUse<'s> = (usize, usize, &'s TierStep);

/// An endpoint: its IR entry and what it walks per direction.
struct Ep {
    ir: EndpointIr,
    steps: [Vec<Step>; 2],
}

/// Whose rules: names them in decisions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Owner {
    Policy(PolicyId),
    Profile(String),
}

struct IrBuilder<'m, 'c> {
    m: &'m FelixModel,
    cache: &'c mut PolicyCompiler,
    /// Every IP set id named (sent or not).
    referenced: HashSet<String>,
    /// The sets checked, by id: their tables.
    used: HashMap<String, Arc<SetMatch>>,
    /// Translated rule lists by owner and direction.
    rules: HashMap<(Owner, Dir), TRules>,
    /// What each endpoint that has staged policies walks with them
    /// enforced (the pending walk), by endpoint name.
    pending: HashMap<String, [Vec<Step>; 2]>,
    /// The sets checked by the rule list being translated.
    recording: Vec<(String, Kind, u32)>,
    /// This compile's translations, for the next.
    translations: HashMap<(Owner, Dir), Translation>,
    decisions: Vec<DecisionInfo>,
    report: PolicyReport,
    /// Decisions of failsafe rules (for host IRs they let the packet go
    /// on: see [`effect`]).
    failsafe: HashSet<u32>,
}

impl IrBuilder<'_, '_> {
    fn decision(&mut self, info: DecisionInfo) -> Decision {
        self.decisions.push(info);
        Decision(self.decisions.len() as u32 - 1)
    }

    /// The endpoints, workload endpoints first (in id order), then host
    /// endpoints with addresses; an address listed twice stays with the
    /// first endpoint (reported).
    fn endpoints(&mut self) -> Vec<Ep> {
        let m = self.m;
        let mut out = Vec::new();
        let mut owners: HashMap<Cidr, String> = HashMap::new();
        let mut dups = Vec::new();
        let mut bad = Vec::new();
        let mut nets = |name: &str, addrs: &mut dyn Iterator<Item = &String>| {
            let mut v = Vec::new();
            for a in addrs {
                match Cidr::parse(a) {
                    Ok(c) => match owners.get(&c) {
                        Some(o) => dups.push(format!("{c} ({o} and {name})")),
                        None => {
                            owners.insert(c, name.to_string());
                            v.push(c);
                        }
                    },
                    Err(e) => bad.push(format!("{name}: {e}")),
                }
            }
            v
        };
        for (id, w) in &m.workload_endpoints {
            let name = if id.endpoint_id.is_empty() || id.endpoint_id == "eth0" {
                id.workload_id.clone()
            } else {
                format!("{}/{}", id.workload_id, id.endpoint_id)
            };
            let nets = nets(&name, &mut w.ipv4_nets.iter().chain(&w.ipv6_nets));
            let steps = self.steps(&name, &w.tiers, &w.profile_ids, false);
            out.push(Ep {
                ir: EndpointIr { name, nets },
                steps,
            });
        }
        self.report.workload_endpoints = out.len();
        let mut no_addr = Vec::new();
        for (id, h) in &m.host_endpoints {
            let name = format!("host:{id}");
            let nets = nets(
                &name,
                &mut h.expected_ipv4_addrs.iter().chain(&h.expected_ipv6_addrs),
            );
            if nets.is_empty() {
                if !h.tiers.is_empty() || !h.profile_ids.is_empty() {
                    no_addr.push(format!("{name} (interface {:?})", h.name));
                }
                continue;
            }
            let steps = self.steps(&name, &h.tiers, &h.profile_ids, true);
            out.push(Ep {
                ir: EndpointIr { name, nets },
                steps,
            });
            self.report.host_endpoints += 1;
        }
        let rep = &mut self.report.unsupported;
        for (list, feature, what) in [
            (&dups, "endpoint addresses", "address(es) listed by two endpoints (the first keeps it)"),
            (&bad, "endpoint addresses", "malformed endpoint address(es), not enforced"),
            (&no_addr, "host endpoints", "host endpoint(s) without expected addresses: their normal tiers and profiles are not enforced (sluice applies those by address; untracked, pre-DNAT and forward tiers are applied by interface)"),
        ] {
            if !list.is_empty() {
                rep.push((feature, format!("{} {what}: {}", list.len(), examples(list))));
            }
        }
        self.report.staged = m.policies.keys().filter(|id| is_staged(&id.kind)).count();
        let skipped: Vec<String> = self.report.staged_skipped.iter().cloned().collect();
        if !skipped.is_empty() {
            rep.push(("staged policies", format!("{} staged polic(ies) not accounted (they do not resolve; the enforced policy is unaffected): {}", skipped.len(), examples(&skipped))));
        }
        out
    }

    /// What an endpoint walks in each direction; both directions fail
    /// closed when anything either names does not resolve. When a tier
    /// lists staged policies, what it walks with them enforced where they
    /// stand is recorded in `pending` (a staged policy that does not
    /// resolve is left out of that walk and reported, never failing the
    /// endpoint).
    fn steps(
        &mut self,
        name: &str,
        tiers: &[proto::TierInfo],
        profiles: &[String],
        host: bool,
    ) -> [Vec<Step>; 2] {
        let mut out: [Vec<Step>; 2] = Default::default();
        let mut pending: [Vec<Step>; 2] = Default::default();
        let mut has_staged = false;
        let mut why: Option<String> = None;
        for dir in [Dir::Egress, Dir::Ingress] {
            let (steps, psteps) = (&mut out[dir.idx()], &mut pending[dir.idx()]);
            if host {
                steps.push(Step::Shared(Shared::Failsafe));
                psteps.push(Step::Shared(Shared::Failsafe));
            }
            for t in tiers {
                let ids = match dir {
                    Dir::Ingress => &t.ingress_policies,
                    Dir::Egress => &t.egress_policies,
                };
                let mut policies = Vec::new();
                let mut all = Vec::new();
                for id in ids {
                    let tr = self.translated(Owner::Policy(id.clone()), dir);
                    if is_staged(&id.kind) {
                        match tr {
                            Ok(_) => {
                                has_staged = true;
                                all.push(id.clone());
                            }
                            Err(e) => {
                                self.report.staged_skipped.insert(e);
                            }
                        }
                        continue;
                    }
                    if let Err(e) = tr {
                        why.get_or_insert(e);
                    }
                    policies.push(id.clone());
                    all.push(id.clone());
                }
                let pass = t.default_action.eq_ignore_ascii_case("pass");
                let tier = |policies| {
                    Step::Tier(TierStep {
                        name: t.name.clone(),
                        pass,
                        policies,
                    })
                };
                if !all.is_empty() {
                    psteps.push(tier(all));
                }
                if !policies.is_empty() {
                    steps.push(tier(policies));
                }
            }
            for p in profiles {
                if let Err(e) = self.translated(Owner::Profile(p.clone()), dir) {
                    why.get_or_insert(e);
                }
                steps.push(Step::Shared(Shared::Profile(p.clone())));
                psteps.push(Step::Shared(Shared::Profile(p.clone())));
            }
        }
        if let Some(reason) = why {
            self.report
                .fail_closed
                .push((name.to_string(), reason.clone()));
            let fail = Step::Shared(Shared::FailClosed(reason));
            return [vec![fail.clone()], vec![fail]];
        }
        if has_staged {
            self.pending.insert(name.to_string(), pending);
        }
        out
    }

    /// Each host endpoint (in id order): its binding and, per kind
    /// (untracked, pre-DNAT, forward), the two directions of the IR of its
    /// tiers of that kind, if it has any (see the module docs).
    #[allow(clippy::type_complexity)] // (id, binding, [kind → [dir → IR]]): used once, by the caller
    fn host_kinds(&mut self) -> Vec<(String, Binding, [Option<[DirIr; 2]>; 3])> {
        let m = self.m;
        let mut out = Vec::new();
        let (mut star_untracked, mut egress_only) = (Vec::new(), Vec::new());
        for (id, h) in &m.host_endpoints {
            let name = format!("host:{id}");
            let binding = match h.name.as_str() {
                "*" => Binding::All,
                "" => Binding::Addresses(
                    h.expected_ipv4_addrs
                        .iter()
                        .chain(&h.expected_ipv6_addrs)
                        .filter_map(|a| ip_of(a))
                        .collect(),
                ),
                n => Binding::Name(n.to_string()),
            };
            let mut kinds: [Option<[DirIr; 2]>; 3] = Default::default();
            for (k, kind, tiers) in [
                (0, HostKind::Untracked, &h.untracked_tiers),
                (1, HostKind::PreDnat, &h.pre_dnat_tiers),
                (2, HostKind::Forward, &h.forward_tiers),
            ] {
                if tiers.is_empty() {
                    continue;
                }
                if kind == HostKind::Untracked && binding == Binding::All {
                    star_untracked.push(name.clone());
                    continue;
                }
                if kind != HostKind::Forward
                    && tiers
                        .iter()
                        .any(|t| t.egress_policies.iter().any(|p| !is_staged(&p.kind)))
                {
                    egress_only.push(format!("{name} ({})", kind_name(kind)));
                }
                let steps = self.kind_steps(&name, tiers, kind);
                let eps = [Ep {
                    ir: EndpointIr {
                        name: name.clone(),
                        nets: all_addresses(),
                    },
                    steps,
                }];
                kinds[k] = Some([
                    self.direction(&eps, Dir::Egress),
                    self.direction(&eps, Dir::Ingress),
                ]);
            }
            out.push((id.clone(), binding, kinds));
        }
        let judged_to_host = self.report.host_endpoints > 0
            || (!m.workload_endpoints.is_empty()
                && m.settings.endpoint_to_host != EndpointToHost::Accept);
        let rep = &mut self.report.unsupported;
        if judged_to_host {
            rep.push(("datagrams to the host", "UDP and other datagrams to the host are not judged by host endpoint policy or DefaultEndpointToHostAction (sluice does not see the connections the host opens, so it cannot tell a reply from a new flow); TCP SYNs and ICMP requests are".to_string()));
        }
        for (list, feature, what) in [
            (&star_untracked, "untracked policy on all interfaces", "host endpoint(s) with interface \"*\" and untracked tiers: ignored, as Felix ignores them"),
            (&egress_only, "untracked or pre-DNAT egress", "host endpoint(s) with egress rules in untracked or pre-DNAT tiers: only their ingress rules are applied (untracked egress judges traffic the host sends, which leaves through the kernel, not sluice; pre-DNAT has no egress)"),
        ] {
            if !list.is_empty() {
                rep.push((feature, format!("{} {what}: {}", list.len(), examples(list))));
            }
        }
        out
    }

    /// What a host endpoint walks in each direction for one kind of its
    /// tiers: untracked and pre-DNAT ingress only, after the failsafe
    /// ports, each tier ending without a verdict; forward both ways, each
    /// tier ending in its default action. Both directions fail closed
    /// when anything named does not resolve.
    fn kind_steps(
        &mut self,
        name: &str,
        tiers: &[proto::TierInfo],
        kind: HostKind,
    ) -> [Vec<Step>; 2] {
        let mut out: [Vec<Step>; 2] = Default::default();
        let mut why: Option<String> = None;
        for dir in [Dir::Egress, Dir::Ingress] {
            if kind != HostKind::Forward && dir == Dir::Egress {
                continue;
            }
            let steps = &mut out[dir.idx()];
            match kind {
                HostKind::Untracked => steps.push(Step::Shared(Shared::FailsafeRaw)),
                HostKind::PreDnat => steps.push(Step::Shared(Shared::Failsafe)),
                HostKind::Forward => {}
            }
            for t in tiers {
                let ids = match dir {
                    Dir::Ingress => &t.ingress_policies,
                    Dir::Egress => &t.egress_policies,
                };
                let policies: Vec<PolicyId> = ids
                    .iter()
                    .filter(|i| !is_staged(&i.kind))
                    .cloned()
                    .collect();
                if policies.is_empty() {
                    continue;
                }
                for id in &policies {
                    if let Err(e) = self.translated(Owner::Policy(id.clone()), dir) {
                        why.get_or_insert(e);
                    }
                }
                steps.push(Step::Tier(TierStep {
                    name: t.name.clone(),
                    pass: kind != HostKind::Forward
                        || t.default_action.eq_ignore_ascii_case("pass"),
                    policies,
                }));
            }
        }
        if let Some(reason) = why {
            self.report
                .fail_closed
                .push((format!("{name} ({})", kind_name(kind)), reason.clone()));
            let fail = Step::Shared(Shared::FailClosed(reason));
            return [vec![fail.clone()], vec![fail]];
        }
        out
    }

    /// The translated rules of `owner` in `dir` (cached for this compile).
    fn translated(&mut self, owner: Owner, dir: Dir) -> TRules {
        let key = (owner, dir);
        if let Some(r) = self.rules.get(&key) {
            return r.clone();
        }
        let m = self.m;
        let (what, list, from) = match &key.0 {
            Owner::Policy(id) => {
                let what = format!("policy {}", policy_key(id));
                match m.policies.get(id) {
                    Some(p) => (what, Some(p.rules(dir)), Some(Source::Policy(p.clone()))),
                    None => (what, None, None),
                }
            }
            Owner::Profile(n) => {
                let what = format!("profile {n}");
                match m.profiles.get(n) {
                    Some(p) => (what, Some(p.rules(dir)), Some(Source::Profile(p.clone()))),
                    None => (what, None, None),
                }
            }
        };
        if let Some(from) = &from {
            if let Some(r) = self.reuse(&key, from) {
                self.rules.insert(key, Ok(r.clone()));
                return Ok(r);
            }
        }
        self.recording.clear();
        let r = match list {
            None => Err(format!("{what} was never sent")),
            Some(list) => {
                let mut out = Vec::with_capacity(list.len());
                let mut err = None;
                for (index, r) in list.iter().enumerate() {
                    match self.rule(r) {
                        Ok((action, terms)) => out.push(TRule {
                            index,
                            action,
                            terms,
                        }),
                        Err(e) => {
                            err = Some(format!("{what} {} rule {index}: {e}", dir.name()));
                            break;
                        }
                    }
                }
                match err {
                    Some(e) => Err(e),
                    None => Ok(Arc::new(out)),
                }
            }
        };
        if let (Ok(rules), Some(from)) = (&r, from) {
            let sets = std::mem::take(&mut self.recording);
            let t = Translation {
                from,
                rules: rules.clone(),
                sets,
            };
            self.translations.insert(key.clone(), t);
        }
        self.rules.insert(key, r.clone());
        r
    }

    /// The last compile's translation of `key`, if it was translated from
    /// `from` and every set it checks is still sent, parses to the same
    /// kind and keeps its table index (so its terms are what translating
    /// again would give); its sets are then marked used, as translating
    /// would.
    fn reuse(&mut self, key: &(Owner, Dir), from: &Source) -> Option<Arc<Vec<TRule>>> {
        // Taken out: used now or stale (translated again).
        let t = self.cache.translations.remove(key)?;
        if !t.from.same(from) {
            return None;
        }
        let mut tables = Vec::with_capacity(t.sets.len());
        for (id, kind, index) in &t.sets {
            let p = self.cache.set(self.m, id)?;
            let table = match p.as_ref() {
                Ok((k, table)) if k == kind => table.clone(),
                _ => return None,
            };
            if self.cache.set_index.get(id).map(|v| v.0) != Some(*index) {
                return None;
            }
            tables.push(table);
        }
        for ((id, kind, _), table) in t.sets.iter().zip(tables) {
            self.referenced.insert(id.clone());
            self.cache.index_of(id, *kind);
            self.used.insert(id.clone(), table);
        }
        let rules = t.rules.clone();
        self.translations.insert(key.clone(), t);
        Some(rules)
    }

    /// One rule: its action and terms over both families.
    fn rule(&mut self, r: &proto::Rule) -> Result<(Action, Vec<Term>), String> {
        let action = match r.action.as_str() {
            "" | "allow" => Action::Allow,
            "deny" => Action::Deny,
            "next-tier" | "pass" => Action::Pass,
            "log" => Action::Log,
            a => return Err(format!("unknown action {a:?}")),
        };
        if action == Action::Log {
            return Ok((action, Vec::new()));
        }
        let mut terms = Vec::new();
        for fam in [4u8, 6] {
            if let Some(f) = filter_to_family(r, fam) {
                terms.extend(self.family_terms(&f, fam)?);
            }
        }
        Ok((action, terms))
    }

    /// The terms of rule `r` (already filtered to `fam`) for packets of
    /// family `fam`.
    fn family_terms(&mut self, r: &Filtered<'_>, fam: u8) -> Result<Vec<Term>, String> {
        let mut base = Term::full();
        base.src = base.src.only_family(fam);
        base.dst = base.dst.only_family(fam);
        let rule = r.rule;
        if let Some(p) = &rule.protocol {
            base.proto = RangeSet::single(u128::from(protocol(p)?));
        }
        if let Some(p) = &rule.not_protocol {
            let n = RangeSet::single(u128::from(protocol(p)?));
            base.proto = base.proto.minus(&n, PROTO_MAX);
        }
        let icmp_bytes = |v: i32, what: &str| {
            u8::try_from(v).map_err(|_| format!("ICMP {what} {v} out of range"))
        };
        match &rule.icmp {
            Some(rule::Icmp::IcmpType(t)) => {
                let t = icmp_bytes(*t, "type")?;
                base.sport = RangeSet::single(ICMP_BASE + u128::from(t));
                base.dport = RangeSet::range(ICMP_BASE, ICMP_BASE + 255);
            }
            Some(rule::Icmp::IcmpTypeCode(tc)) => {
                let (t, c) = (icmp_bytes(tc.r#type, "type")?, icmp_bytes(tc.code, "code")?);
                base.sport = RangeSet::single(ICMP_BASE + u128::from(t));
                base.dport = RangeSet::single(ICMP_BASE + u128::from(c));
            }
            None => {}
        }
        let mut terms = if base.is_empty() { vec![] } else { vec![base] };
        let not_icmp = match &rule.not_icmp {
            Some(rule::NotIcmp::NotIcmpType(t)) => Some((icmp_bytes(*t, "type")?, None)),
            Some(rule::NotIcmp::NotIcmpTypeCode(tc)) => Some((
                icmp_bytes(tc.r#type, "type")?,
                Some(icmp_bytes(tc.code, "code")?),
            )),
            None => None,
        };
        if let Some((t, c)) = not_icmp {
            // Not (type t [and code c]): another type, or type t with
            // another code.
            let ty = RangeSet::single(ICMP_BASE + u128::from(t));
            let mut alts = vec![with_port(Side::Src, ty.complement(L4_MAX))];
            if let Some(c) = c {
                let mut x = with_port(Side::Src, ty);
                x.dport = RangeSet::single(ICMP_BASE + u128::from(c)).complement(L4_MAX);
                alts.push(x);
            }
            terms = and_terms(&terms, &alts);
        }
        for side in [Side::Src, Side::Dst] {
            if terms.is_empty() {
                break;
            }
            let t = self.side_terms(r, side)?;
            terms = and_terms(&terms, &t);
        }
        Ok(terms)
    }

    /// The terms of one side of a filtered rule.
    fn side_terms(&mut self, r: &Filtered<'_>, side: Side) -> Result<Vec<Term>, String> {
        let rule = r.rule;
        let (nets, not_nets, sets, not_sets, ports, named, not_ports, not_named) = match side {
            Side::Src => (
                &r.src_net,
                &r.not_src_net,
                &rule.src_ip_set_ids,
                &rule.not_src_ip_set_ids,
                &rule.src_ports,
                &rule.src_named_port_ip_set_ids,
                &rule.not_src_ports,
                &rule.not_src_named_port_ip_set_ids,
            ),
            Side::Dst => (
                &r.dst_net,
                &r.not_dst_net,
                &rule.dst_ip_set_ids,
                &rule.not_dst_ip_set_ids,
                &rule.dst_ports,
                &rule.dst_named_port_ip_set_ids,
                &rule.not_dst_ports,
                &rule.not_dst_named_port_ip_set_ids,
            ),
        };
        let mut addr = AddrSet::full();
        if !nets.is_empty() {
            addr = addr.intersect(&AddrSet::from_cidrs(nets.iter()));
        }
        if !not_nets.is_empty() {
            addr = addr.intersect(&AddrSet::from_cidrs(not_nets.iter()).complement());
        }
        let mut t = with_addr(side, addr);
        for id in sets {
            t.checks.push(self.check(id, side, false, Kind::Addrs)?);
        }
        for id in not_sets {
            t.checks.push(self.check(id, side, true, Kind::Addrs)?);
        }
        let mut terms = vec![normalized(t)];
        if side == Side::Dst {
            // Service matches: every set must hold (ip, proto, port).
            for id in &rule.dst_ip_port_set_ids {
                let c = self.check(id, side, false, Kind::IpPorts)?;
                terms = and_terms(&terms, &[Term::with_check(c)]);
            }
        }
        if !ports.is_empty() || !named.is_empty() {
            // A port in the ranges, or (ip, proto, port) in a named-port set.
            let mut alts = Vec::new();
            let nums = port_ranges(ports)?;
            if !nums.is_empty() {
                alts.push(with_port(side, nums));
            }
            for id in named {
                alts.push(Term::with_check(self.check(
                    id,
                    side,
                    false,
                    Kind::IpPorts,
                )?));
            }
            terms = and_terms(&terms, &alts);
        }
        if !not_ports.is_empty() || !not_named.is_empty() {
            // A port outside the ranges, and (ip, proto, port) in none of
            // the named-port sets.
            let nums = port_ranges(not_ports)?;
            let mut t = with_port(side, RangeSet::full(PORT_MAX).minus(&nums, L4_MAX));
            for id in not_named {
                t.checks.push(self.check(id, side, true, Kind::IpPorts)?);
            }
            terms = and_terms(&terms, &[normalized(t)]);
        }
        Ok(terms)
    }

    /// The check that `side` is (or with `negated`, is not) in IP set
    /// `id`, which must be of kind `kind`; an error when the set was never
    /// sent, does not parse or is of the other kind.
    fn check(
        &mut self,
        id: &str,
        side: Side,
        negated: bool,
        kind: Kind,
    ) -> Result<SetCheck, String> {
        if !self.referenced.contains(id) {
            self.referenced.insert(id.to_string());
        }
        let p = self
            .cache
            .set(self.m, id)
            .ok_or_else(|| format!("IP set {id:?} was never sent"))?;
        let table = match (p.as_ref(), kind) {
            (Err(e), _) => return Err(format!("IP set {id:?}: {e}")),
            (Ok((k, t)), _) if *k == kind => t.clone(),
            (Ok(_), Kind::Addrs) => {
                return Err(format!(
                    "IP set {id:?} is IP_AND_PORT where addresses are needed"
                ))
            }
            (Ok(_), Kind::IpPorts) => {
                return Err(format!(
                    "IP set {id:?} holds addresses where ip,proto:port members are needed"
                ))
            }
        };
        let set = self.cache.index_of(id, kind);
        self.used.insert(id.to_string(), table);
        self.recording.push((id.to_string(), kind, set));
        Ok(SetCheck {
            set,
            side: match side {
                Side::Src => SetSide::Src,
                Side::Dst => SetSide::Dst,
            },
            negated,
        })
    }

    /// One direction of the IR: classes (endpoints walking the same
    /// steps), segments, and each class's segments.
    fn direction(&mut self, eps: &[Ep], dir: Dir) -> DirIr {
        let d = dir.idx();
        let mut sigs: Vec<&Vec<Step>> = eps.iter().map(|e| &e.steps[d]).collect();
        sigs.sort();
        sigs.dedup();
        let class_of: HashMap<&Vec<Step>, u32> = sigs
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, i as u32))
            .collect();
        let endpoint_class: Vec<u32> = eps.iter().map(|e| class_of[&e.steps[d]]).collect();
        let mut segments: Vec<Segment> = Vec::new();
        // Segment of each (class, step).
        let mut seg_of: Vec<Vec<u32>> = sigs.iter().map(|s| vec![0; s.len()]).collect();
        let all = RangeSet::range(0, sigs.len().max(1) as u128 - 1);

        // Failsafe, profiles and fail-closed segments: one each, shared.
        let mut shared: HashMap<&Shared, u32> = HashMap::new();
        // Tiers: grouped by (name, pass); where each class uses them.
        let mut tiers: BTreeMap<(&str, bool), Vec<TierUse<'_>>> = BTreeMap::new();
        for (c, steps) in sigs.iter().enumerate() {
            for (i, s) in steps.iter().enumerate() {
                match s {
                    Step::Tier(t) => {
                        tiers.entry((&t.name, t.pass)).or_default().push((c, i, t));
                    }
                    Step::Shared(sh) => {
                        let seg = match shared.get(sh) {
                            Some(&seg) => seg,
                            None => {
                                let seg = segments.len() as u32;
                                segments.push(self.shared_segment(sh, dir, &all));
                                shared.insert(sh, seg);
                                seg
                            }
                        };
                        seg_of[c][i] = seg;
                    }
                }
            }
        }
        for ((name, pass), uses) in tiers {
            let lists: Vec<&Vec<PolicyId>> = uses.iter().map(|u| &u.2.policies).collect();
            // Per group of classes that share policies (so a changed
            // policy changes only its group's segment): one segment when
            // one order of the group's policies agrees with every class's
            // list (Felix sorts them one way for all); otherwise one
            // segment per distinct list. Each class walks one segment for
            // the tier either way.
            let mut groups: Vec<Vec<usize>> = Vec::new();
            for comp in sharing(&lists) {
                let cl: Vec<&Vec<PolicyId>> = comp.iter().map(|&k| lists[k]).collect();
                if merged_order(&cl).is_some() {
                    groups.push(comp);
                    continue;
                }
                let mut by: BTreeMap<&Vec<PolicyId>, Vec<usize>> = BTreeMap::new();
                for &k in &comp {
                    by.entry(lists[k]).or_default().push(k);
                }
                groups.extend(by.into_values());
            }
            for g in groups {
                let glists: Vec<&Vec<PolicyId>> = g.iter().map(|&k| lists[k]).collect();
                let order = merged_order(&glists).unwrap_or_default();
                let mut rules = Vec::new();
                for id in &order {
                    let classes = RangeSet::from_ranges(
                        g.iter()
                            .filter(|&&k| lists[k].contains(id))
                            .map(|&k| (uses[k].0 as u128, uses[k].0 as u128))
                            .collect(),
                    );
                    let Ok(tr) = self.translated(Owner::Policy(id.clone()), dir) else {
                        continue;
                    };
                    for r in tr.iter() {
                        if let Some(ir) =
                            self.ir_rule(r, &classes, dir, Some(name), &policy_key(id))
                        {
                            rules.push(ir);
                        }
                    }
                }
                let miss = (!pass).then(|| {
                    self.decision(DecisionInfo::EndOfTier {
                        dir,
                        tier: name.to_string(),
                    })
                });
                let seg = segments.len() as u32;
                segments.push(Segment {
                    kind: SegmentKind::Tier(name.to_string()),
                    miss,
                    rules,
                });
                for &k in &g {
                    let (c, i, _) = uses[k];
                    seg_of[c][i] = seg;
                }
            }
        }
        DirIr {
            endpoint_class,
            class_segments: seg_of,
            segments,
        }
    }

    /// The segment of a failsafe, profile or fail-closed step.
    fn shared_segment(&mut self, s: &Shared, dir: Dir, all: &RangeSet) -> Segment {
        match s {
            Shared::Failsafe | Shared::FailsafeRaw => {
                let (ports, key) = match dir {
                    Dir::Ingress => (&self.m.settings.failsafe_inbound, "failsafe-inbound"),
                    Dir::Egress => (&self.m.settings.failsafe_outbound, "failsafe-outbound"),
                };
                // (ports, the policy name in decisions, the port is the
                // source: replies).
                let mut lists = vec![(ports.clone(), key, false)];
                if matches!(s, Shared::FailsafeRaw) && dir == Dir::Ingress {
                    let out = self.m.settings.failsafe_outbound.clone();
                    lists.push((out, "failsafe-outbound-replies", true));
                }
                let mut rules = Vec::new();
                for (ports, key, reply) in lists {
                    for (i, p) in ports.iter().enumerate() {
                        let side = if reply { Side::Src } else { Side::Dst };
                        let mut t = with_port(side, RangeSet::single(u128::from(p.port)));
                        t.proto = RangeSet::single(u128::from(p.proto));
                        if let Some(net) = p.net.and_then(|n| Cidr::parse(&n.to_string()).ok()) {
                            // Inbound and replies: from the net; outbound: to it.
                            let a = AddrSet::from_cidrs([&net]);
                            match dir {
                                Dir::Ingress => t.src = a,
                                Dir::Egress => t.dst = a,
                            }
                        }
                        let decision = self.decision(DecisionInfo::Rule {
                            dir,
                            tier: "failsafe".into(),
                            policy: key.into(),
                            rule: i as u32,
                            action: Action::Allow,
                        });
                        self.failsafe.insert(decision.0);
                        rules.push(IrRule {
                            decision,
                            action: RuleAction::Allow,
                            classes: all.clone(),
                            terms: vec![t],
                        });
                    }
                }
                Segment {
                    kind: SegmentKind::Tier("failsafe".into()),
                    miss: None,
                    rules,
                }
            }
            Shared::Profile(name) => {
                let mut rules = Vec::new();
                if let Ok(tr) = self.translated(Owner::Profile(name.clone()), dir) {
                    for r in tr.iter() {
                        if let Some(ir) = self.ir_rule(r, all, dir, None, name) {
                            rules.push(ir);
                        }
                    }
                }
                Segment {
                    kind: SegmentKind::Profile(name.clone()),
                    miss: None,
                    rules,
                }
            }
            Shared::FailClosed(reason) => {
                let decision = self.decision(DecisionInfo::FailClosed {
                    dir,
                    reason: reason.clone(),
                });
                Segment {
                    kind: SegmentKind::Tier("fail-closed".into()),
                    miss: None,
                    rules: vec![IrRule {
                        decision,
                        action: RuleAction::Deny,
                        classes: all.clone(),
                        terms: vec![Term::full()],
                    }],
                }
            }
        }
    }

    /// The IR rule of a translated rule (`None` for `log`, which never
    /// decides); `tier` is `None` for a profile, whose name is `owner`.
    fn ir_rule(
        &mut self,
        r: &TRule,
        classes: &RangeSet,
        dir: Dir,
        tier: Option<&str>,
        owner: &str,
    ) -> Option<IrRule> {
        let action = match r.action {
            Action::Allow => RuleAction::Allow,
            Action::Deny => RuleAction::Deny,
            Action::Pass => RuleAction::Pass,
            Action::Log => return None,
        };
        let info = match tier {
            Some(t) => DecisionInfo::Rule {
                dir,
                tier: t.to_string(),
                policy: owner.to_string(),
                rule: r.index as u32,
                action: r.action,
            },
            None => DecisionInfo::Profile {
                dir,
                profile: owner.to_string(),
                rule: r.index as u32,
                action: r.action,
            },
        };
        Some(IrRule {
            decision: self.decision(info),
            action,
            classes: classes.clone(),
            terms: r.terms.clone(),
        })
    }
}

/// The lists grouped (by index, each group in index order, groups in
/// order of their first) so that lists sharing a policy are in one group.
fn sharing(lists: &[&Vec<PolicyId>]) -> Vec<Vec<usize>> {
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut parent: Vec<usize> = (0..lists.len()).collect();
    let mut first: HashMap<&PolicyId, usize> = HashMap::new();
    for (k, l) in lists.iter().enumerate() {
        for id in l.iter() {
            let o = *first.entry(id).or_insert(k);
            let (a, b) = (root(&mut parent, o), root(&mut parent, k));
            // The smaller index is the root: groups keep first-seen order.
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for k in 0..lists.len() {
        let r = root(&mut parent, k);
        groups.entry(r).or_default().push(k);
    }
    groups.into_values().collect()
}

/// An order of all policies in `lists` that keeps each list's order, if
/// there is one (a topological sort; ties by first appearance).
fn merged_order(lists: &[&Vec<PolicyId>]) -> Option<Vec<PolicyId>> {
    let mut index: HashMap<&PolicyId, usize> = HashMap::new();
    let mut nodes: Vec<&PolicyId> = Vec::new();
    for l in lists {
        for id in l.iter() {
            index.entry(id).or_insert_with(|| {
                nodes.push(id);
                nodes.len() - 1
            });
        }
    }
    let mut succ: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes.len()];
    for l in lists {
        for w in l.windows(2) {
            let (a, b) = (index[&w[0]], index[&w[1]]);
            if a == b {
                return None;
            }
            succ[a].insert(b);
        }
    }
    let mut indeg = vec![0usize; nodes.len()];
    for s in &succ {
        for &b in s {
            indeg[b] += 1;
        }
    }
    let mut ready: BTreeSet<usize> = (0..nodes.len()).filter(|&i| indeg[i] == 0).collect();
    let mut out = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_first() {
        out.push(nodes[i].clone());
        for &b in &succ[i] {
            indeg[b] -= 1;
            if indeg[b] == 0 {
                ready.insert(b);
            }
        }
    }
    (out.len() == nodes.len()).then_some(out)
}

/// A rule's CIDR lists for one family, after `FilterRuleToIPVersion`.
struct Filtered<'r> {
    rule: &'r proto::Rule,
    src_net: Vec<Cidr>,
    not_src_net: Vec<Cidr>,
    dst_net: Vec<Cidr>,
    not_dst_net: Vec<Cidr>,
}

/// `FilterRuleToIPVersion` (see the module docs): `None` when the rule
/// does not apply to family `fam`. A CIDR that does not parse counts as
/// of no family (so a list of only such CIDRs drops the rule).
fn filter_to_family(r: &proto::Rule, fam: u8) -> Option<Filtered<'_>> {
    let v = proto::IpVersion::try_from(r.ip_version).unwrap_or(proto::IpVersion::Any);
    let want = match fam {
        4 => proto::IpVersion::Ipv4,
        _ => proto::IpVersion::Ipv6,
    };
    if v != proto::IpVersion::Any && v != want {
        return None;
    }
    let filter = |nets: &[String], negated: bool| -> Option<Vec<Cidr>> {
        if nets.is_empty() {
            return Some(Vec::new());
        }
        let kept: Vec<Cidr> = nets
            .iter()
            .filter_map(|n| Cidr::parse(n).ok())
            .filter(|c| c.is_v4() == (fam == 4))
            .collect();
        if kept.is_empty() || (negated && kept.iter().any(|c| c.len == 0)) {
            return None;
        }
        Some(kept)
    };
    Some(Filtered {
        rule: r,
        src_net: filter(&r.src_net, false)?,
        not_src_net: filter(&r.not_src_net, true)?,
        dst_net: filter(&r.dst_net, false)?,
        not_dst_net: filter(&r.not_dst_net, true)?,
    })
}

/// Port ranges as a value set; a range outside 0..=65535 is an error.
fn port_ranges(ports: &[proto::PortRange]) -> Result<RangeSet, String> {
    let mut v = Vec::with_capacity(ports.len());
    for p in ports {
        let ok = |x: i32| (0..=65535).contains(&x);
        if !ok(p.first) || !ok(p.last) || p.first > p.last {
            return Err(format!(
                "port range {}:{} is not within 0-65535",
                p.first, p.last
            ));
        }
        v.push((p.first as u128, p.last as u128));
    }
    Ok(RangeSet::from_ranges(v))
}

/// Which side of a packet a rule field constrains.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

fn with_addr(side: Side, a: AddrSet) -> Term {
    let mut t = Term::full();
    match side {
        Side::Src => t.src = a,
        Side::Dst => t.dst = a,
    }
    t
}

fn with_port(side: Side, p: RangeSet) -> Term {
    let mut t = Term::full();
    set_port(&mut t, side, p);
    t
}

fn set_port(t: &mut Term, side: Side, p: RangeSet) {
    match side {
        Side::Src => t.sport = p,
        Side::Dst => t.dport = p,
    }
}

/// `t` with its checks sorted and without repeats (as `Term::and` keeps
/// them).
fn normalized(mut t: Term) -> Term {
    t.checks.sort_unstable();
    t.checks.dedup();
    t
}

/// Conjunction of two disjunctions of terms.
fn and_terms(a: &[Term], b: &[Term]) -> Vec<Term> {
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            if let Some(t) = x.and(y) {
                out.push(t);
            }
        }
    }
    out
}

/// What a decision does in a host endpoint's untracked, pre-DNAT or
/// forward tiers (`failsafe`: the decision of a failsafe rule, which lets
/// the packet go on to the normal processing, as Felix's raw and mangle
/// failsafe chains `ACCEPT` without the accept mark).
fn effect(d: &DecisionInfo, failsafe: bool) -> Effect {
    match d {
        DecisionInfo::Rule {
            action: Action::Allow,
            ..
        } if !failsafe => Effect::Accept,
        DecisionInfo::Rule {
            action: Action::Deny,
            ..
        }
        | DecisionInfo::EndOfTier { .. }
        | DecisionInfo::FailClosed { .. } => Effect::Deny,
        _ => Effect::Continue,
    }
}

fn kind_name(k: HostKind) -> &'static str {
    match k {
        HostKind::Untracked => "untracked",
        HostKind::PreDnat => "pre-DNAT",
        HostKind::Forward => "forward",
    }
}

/// Every address: the one endpoint of a host IR, which the interface,
/// not an address, selects.
fn all_addresses() -> Vec<Cidr> {
    ["0.0.0.0/0", "::/0"]
        .into_iter()
        .filter_map(|c| Cidr::parse(c).ok())
        .collect()
}

/// An expected address (`10.0.0.1`, or with a prefix length) as the
/// tables compare it.
fn ip_of(a: &str) -> Option<(Family, u128)> {
    let ip: IpAddr = a.split('/').next()?.trim().parse().ok()?;
    Some(match ip {
        IpAddr::V4(v) => (Family::V4, u128::from(u32::from(v))),
        IpAddr::V6(v) => (Family::V6, u128::from(v)),
    })
}

/// Up to three examples, for messages.
fn examples(v: &[String]) -> String {
    let mut s = v.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > 3 {
        s += ", ...";
    }
    s
}

/// A policy's or profile's rules for one direction.
trait RuleLists {
    fn rules(&self, dir: Dir) -> &[proto::Rule];
}

impl RuleLists for proto::Policy {
    fn rules(&self, dir: Dir) -> &[proto::Rule] {
        match dir {
            Dir::Ingress => &self.inbound_rules,
            Dir::Egress => &self.outbound_rules,
        }
    }
}

impl RuleLists for proto::Profile {
    fn rules(&self, dir: Dir) -> &[proto::Rule] {
        match dir {
            Dir::Ingress => &self.inbound_rules,
            Dir::Egress => &self.outbound_rules,
        }
    }
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use policy_compiler::{FlowKey, L4};

    fn wep(
        ip: &str,
        tiers: Vec<proto::TierInfo>,
        profiles: &[&str],
    ) -> Arc<proto::WorkloadEndpoint> {
        Arc::new(proto::WorkloadEndpoint {
            ipv4_nets: vec![ip.into()],
            tiers,
            profile_ids: profiles.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        })
    }

    fn wid(w: &str) -> proto::WorkloadEndpointId {
        proto::WorkloadEndpointId {
            orchestrator_id: "k8s".into(),
            workload_id: w.into(),
            endpoint_id: "eth0".into(),
        }
    }

    fn allow_from_set(set: &str) -> proto::Policy {
        proto::Policy {
            inbound_rules: vec![proto::Rule {
                action: "allow".into(),
                src_ip_set_ids: vec![set.into()],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn an_unresolved_ip_set_fails_the_endpoint_closed_and_only_it() {
        let mut m = FelixModel::default();
        let pid = PolicyId {
            name: "p".into(),
            namespace: "prod".into(),
            kind: "NetworkPolicy".into(),
        };
        m.policies
            .insert(pid.clone(), Arc::new(allow_from_set("ghost")));
        let tier = proto::TierInfo {
            name: "default".into(),
            ingress_policies: vec![pid],
            egress_policies: vec![],
            default_action: "Deny".into(),
        };
        m.workload_endpoints
            .insert(wid("prod/a"), wep("10.0.0.1/32", vec![tier], &[]));
        m.profiles.insert(
            "open".into(),
            Arc::new(proto::Profile {
                inbound_rules: vec![proto::Rule::default()],
                outbound_rules: vec![proto::Rule::default()],
            }),
        );
        m.workload_endpoints
            .insert(wid("prod/b"), wep("10.0.0.2/32", vec![], &["open"]));
        let c = PolicyCompiler::default().compile(&m);
        assert_eq!(c.report.fail_closed.len(), 1);
        assert_eq!(c.report.fail_closed[0].0, "prod/a");
        assert!(c.report.fail_closed[0]
            .1
            .contains("\"ghost\" was never sent"));
        let k = |s: &str, d: &str| {
            FlowKey::new(
                s.parse().unwrap(),
                d.parse().unwrap(),
                6,
                L4::Ports {
                    sport: 1,
                    dport: 80,
                },
            )
        };
        let cl = &c.classifier;
        // Both directions of a deny all; b's own traffic is untouched.
        for key in [k("10.0.0.2", "10.0.0.1"), k("10.0.0.1", "10.0.0.2")] {
            let v = cl.classify(&key, &mut cl.new_scratch());
            assert!(!v.allow);
            let d = if v.egress.allow { v.ingress } else { v.egress };
            assert!(matches!(
                cl.decision_info(d.decided_by),
                DecisionInfo::FailClosed { .. }
            ));
        }
        let v = cl.classify(&k("10.9.9.9", "10.0.0.2"), &mut cl.new_scratch());
        assert!(v.allow);
        // The set arrives: a is enforced, and the set is parsed once.
        let mut pc = PolicyCompiler::default();
        m.ip_sets.insert(
            "ghost".into(),
            Arc::new(IpSet {
                kind: IpSetType::Net,
                members: ["10.0.0.2/32".to_string()].into(),
            }),
        );
        let c = pc.compile(&m);
        assert!(c.report.fail_closed.is_empty());
        assert_eq!(pc.parsed_last, 1);
        let cl = &c.classifier;
        assert!(
            cl.classify(&k("10.0.0.2", "10.0.0.1"), &mut cl.new_scratch())
                .allow
        );
        assert!(
            !cl.classify(&k("10.0.0.3", "10.0.0.1"), &mut cl.new_scratch())
                .allow
        );
        pc.compile(&m);
        assert_eq!(pc.parsed_last, 0, "an unchanged set is not parsed again");
    }

    #[test]
    fn host_endpoint_kinds_follow_ip_set_updates_without_a_compile() {
        let mut m = FelixModel::default();
        let pid = PolicyId {
            name: "fwd".into(),
            namespace: String::new(),
            kind: "GlobalNetworkPolicy".into(),
        };
        m.policies
            .insert(pid.clone(), Arc::new(allow_from_set("clients")));
        let set = |members: &[&str]| {
            Arc::new(IpSet {
                kind: IpSetType::Net,
                members: members.iter().map(|s| s.to_string()).collect(),
            })
        };
        m.ip_sets.insert("clients".into(), set(&["10.0.0.1/32"]));
        m.host_endpoints.insert(
            "eth0".into(),
            Arc::new(proto::HostEndpoint {
                name: "eth0".into(),
                forward_tiers: vec![proto::TierInfo {
                    name: "default".into(),
                    ingress_policies: vec![pid],
                    egress_policies: vec![],
                    default_action: "Deny".into(),
                }],
                ..Default::default()
            }),
        );
        let key = |src: &str| {
            FlowKey::new(
                src.parse().unwrap(),
                "10.9.9.9".parse().unwrap(),
                6,
                L4::Ports {
                    sport: 1,
                    dport: 80,
                },
            )
        };
        let effect = |c: &CompiledPolicy, src: &str| {
            let k = c.host.endpoints[0].forward.as_ref().unwrap();
            let v = k
                .classifier
                .classify(&key(src), &mut k.classifier.new_scratch());
            k.effect(v.ingress.decided_by)
        };
        let mut pc = PolicyCompiler::default();
        let c = pc.compile(&m);
        assert!(
            c.report.unsupported.is_empty(),
            "{:?}",
            c.report.unsupported
        );
        assert_eq!(c.host.endpoints[0].binding, Binding::Name("eth0".into()));
        assert!(c.host.endpoints[0].untracked.is_none());
        assert_eq!(effect(&c, "10.0.0.1"), Effect::Accept);
        // End of tier: the tier's default action drops.
        assert_eq!(effect(&c, "10.0.0.2"), Effect::Deny);
        m.ip_sets
            .insert("clients".into(), set(&["10.0.0.1/32", "10.0.0.2/32"]));
        let c = pc.compile(&m);
        assert_eq!(c.report.how, HowCompiled::SetsOnly { sets: 1 });
        assert_eq!(effect(&c, "10.0.0.2"), Effect::Accept);
    }

    #[test]
    fn rules_are_filtered_per_family_as_felix_does() {
        let r = proto::Rule {
            src_net: vec!["10.0.0.0/8".into(), "fd00::/8".into()],
            dst_net: vec!["10.1.0.0/16".into()],
            ..Default::default()
        };
        let f4 = filter_to_family(&r, 4).unwrap();
        assert_eq!(f4.src_net.len(), 1);
        // IPv6: the destination list keeps nothing, so the rule is dropped.
        assert!(filter_to_family(&r, 6).is_none());
        // A negated list without the family's CIDRs drops the rule for
        // that family; so does a negated catch-all.
        let not4 = proto::Rule {
            not_src_net: vec!["10.0.0.0/8".into()],
            ..Default::default()
        };
        assert!(filter_to_family(&not4, 6).is_none());
        assert!(filter_to_family(&not4, 4).is_some());
        let catch_all = proto::Rule {
            not_src_net: vec!["::/0".into(), "10.0.0.0/8".into()],
            ..Default::default()
        };
        assert!(filter_to_family(&catch_all, 6).is_none());
        assert!(filter_to_family(&catch_all, 4).is_some());
        let v6 = proto::Rule {
            ip_version: proto::IpVersion::Ipv6 as i32,
            ..Default::default()
        };
        assert!(filter_to_family(&v6, 4).is_none());
    }

    #[test]
    fn classes_sharing_policies_are_grouped() {
        let id = |n: &str| PolicyId {
            name: n.into(),
            namespace: String::new(),
            kind: "GlobalNetworkPolicy".into(),
        };
        let (a, b, c, d) = (id("a"), id("b"), id("c"), id("d"));
        let l0 = vec![a.clone(), b.clone()];
        let l1 = vec![c.clone()];
        let l2 = vec![d.clone(), b];
        let l3 = vec![c, a];
        assert_eq!(sharing(&[&l0, &l1]), vec![vec![0], vec![1]]);
        assert_eq!(sharing(&[&l0, &l1, &l2]), vec![vec![0, 2], vec![1]]);
        // l3 joins l0's group and l1's.
        assert_eq!(sharing(&[&l0, &l1, &l2, &l3]), vec![vec![0, 1, 2, 3]]);
        assert_eq!(sharing(&[]), Vec::<Vec<usize>>::new());
        let _ = d;
    }

    #[test]
    fn conflicting_policy_orders_get_a_segment_each() {
        let id = |n: &str| PolicyId {
            name: n.into(),
            namespace: String::new(),
            kind: "GlobalNetworkPolicy".into(),
        };
        let (a, b, c) = (id("a"), id("b"), id("c"));
        assert_eq!(
            merged_order(&[&vec![a.clone(), c.clone()], &vec![b.clone(), c.clone()]]),
            Some(vec![a.clone(), b.clone(), c.clone()])
        );
        assert_eq!(
            merged_order(&[&vec![a.clone(), b.clone()], &vec![b, a]]),
            None
        );
    }
}
