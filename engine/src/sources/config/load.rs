//! Reading a config: the file, serde with the key path of every error, then
//! [`Config::validate`]'s cross references (route → port, neighbour →
//! port, families, duplicate names), each error naming the file and key.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::schema::{Config, ConfigError};
use crate::pipeline::MAX_BATCH;
use crate::wire::{self, Family};

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::from_yaml(&text, &file, &base)
    }

    /// Parses and validates config text; `file` names it in errors.
    pub fn from_yaml(text: &str, file: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let de = serde_norway::Deserializer::from_str(text);
        let mut cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde_norway prefixes the path itself; keep one copy.
            let msg = users_words(inner.strip_prefix(&format!("{path}: ")).unwrap_or(&inner));
            ConfigError::Invalid {
                file: file.to_string(),
                path: if path == "." { "(top)".into() } else { path },
                msg,
            }
        })?;
        cfg.base_dir = base_dir.to_path_buf();
        cfg.source = file.to_string();
        cfg.validate()?;
        Ok(cfg)
    }

    fn err(&self, path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.source.clone(),
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// Index of the port named `name`.
    pub fn port_index(&self, name: &str) -> Option<u16> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as u16)
    }

    /// Cross-reference checks; errors name the key path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ports.is_empty() {
            return Err(self.err("ports", "at least one port is required"));
        }
        if self.ports.len() > 250 {
            return Err(self.err("ports", "at most 250 ports"));
        }
        let mut names = HashSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            if p.name.is_empty() {
                return Err(self.err(format!("ports[{i}].name"), "must not be empty"));
            }
            if matches!(p.name.as_str(), "kernel" | "drops") {
                return Err(self.err(
                    format!("ports[{i}].name"),
                    format!(
                        "{:?} is reserved (replay writes kernel.pcap and drops.pcap)",
                        p.name
                    ),
                ));
            }
            if !names.insert(p.name.as_str()) {
                return Err(self.err(
                    format!("ports[{i}].name"),
                    format!("duplicate port {:?}", p.name),
                ));
            }
        }
        let w = &self.workers;
        if w.batch == 0 || w.batch > MAX_BATCH {
            return Err(self.err("workers.batch", format!("must be 1..={MAX_BATCH}")));
        }
        if let Some(n) = w.nice.filter(|n| !(-20..=19).contains(n)) {
            return Err(self.err("workers.nice", format!("{n}: must be -20..=19")));
        }
        if w.cores.is_empty() {
            return Err(self.err("workers.cores", "at least one core"));
        }
        let port_ref = |path: String, name: &str| -> Result<u16, ConfigError> {
            self.port_index(name)
                .ok_or_else(|| self.err(path, format!("no port named {name:?}")))
        };
        let mut prefixes = HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            port_ref(format!("routes[{i}].port"), &r.port)?;
            if r.prefix.network() != r.prefix.addr {
                return Err(self.err(
                    format!("routes[{i}].prefix"),
                    format!(
                        "{} has host bits set (did you mean {}/{}?)",
                        r.prefix,
                        wire::to_ip(r.prefix.family, r.prefix.network()),
                        r.prefix.len
                    ),
                ));
            }
            if let Some((what, range)) = crate::tables::special_range(&r.prefix) {
                return Err(self.err(
                    format!("routes[{i}].prefix"),
                    format!(
                        "{} lies inside {range} ({what}), which the node never forwards \
                         (Linux decides it before any route)",
                        r.prefix
                    ),
                ));
            }
            if !prefixes.insert((r.prefix.family, r.prefix.addr, r.prefix.len)) {
                return Err(self.err(
                    format!("routes[{i}].prefix"),
                    format!("duplicate route {}", r.prefix),
                ));
            }
            if let Some(via) = r.via {
                if wire::from_ip(via).0 != r.prefix.family {
                    return Err(self.err(
                        format!("routes[{i}].via"),
                        "gateway family differs from the prefix",
                    ));
                }
            }
        }
        let mut neigh = HashSet::new();
        for (i, n) in self.neighbors.iter().enumerate() {
            port_ref(format!("neighbors[{i}].port"), &n.port)?;
            if !neigh.insert(n.ip) {
                return Err(self.err(
                    format!("neighbors[{i}].ip"),
                    format!("duplicate neighbour {}", n.ip),
                ));
            }
        }
        let mut svc_names = HashSet::new();
        let mut svc_keys = HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            if !svc_names.insert(s.name.as_str()) {
                return Err(self.err(
                    format!("services[{i}].name"),
                    format!("duplicate service {:?}", s.name),
                ));
            }
            if !svc_keys.insert((s.vip, s.port, s.protocol)) {
                return Err(self.err(
                    format!("services[{i}]"),
                    "another service has the same vip, port and protocol",
                ));
            }
            for (j, b) in s.backends.iter().enumerate() {
                if b.0.is_ipv4() != s.vip.is_ipv4() {
                    return Err(self.err(
                        format!("services[{i}].backends[{j}]"),
                        "backend family differs from the vip",
                    ));
                }
            }
        }
        for (i, m) in self.masquerade.iter().enumerate() {
            let port = port_ref(format!("masquerade[{i}].port"), &m.port)?;
            match m.address {
                Some(a) if wire::from_ip(a).0 != m.from.family => {
                    return Err(self.err(
                        format!("masquerade[{i}].address"),
                        "address family differs from `from`",
                    ));
                }
                Some(_) => {}
                None => {
                    let has = self.ports[usize::from(port)]
                        .addresses
                        .iter()
                        .any(|a| a.family == m.from.family);
                    if !has {
                        return Err(self.err(
                            format!("masquerade[{i}].address"),
                            format!("port {:?} has no address of this family to masquerade to; set `address`", m.port),
                        ));
                    }
                }
            }
        }
        if self.conntrack.max_entries == 0 {
            return Err(self.err("conntrack.max_entries", "must be at least 1"));
        }
        if let Some(f) = &self.felix {
            if f.socket.as_os_str().is_empty() {
                return Err(self.err("felix.socket", "must not be empty"));
            }
            if f.max_frame < 1024 {
                return Err(self.err("felix.max_frame", "must be at least 1024 bytes"));
            }
        }
        Ok(())
    }

    /// Policy paths resolved against the config file's directory.
    pub fn policy_paths(&self) -> Vec<PathBuf> {
        self.policy
            .paths
            .iter()
            .map(|p| {
                if p.is_absolute() {
                    p.clone()
                } else {
                    self.base_dir.join(p)
                }
            })
            .collect()
    }

    /// The masquerade source address of entry `i`.
    pub fn masquerade_address(&self, i: usize) -> Option<(Family, u128)> {
        let m = self.masquerade.get(i)?;
        if let Some(a) = m.address {
            return Some(wire::from_ip(a));
        }
        let port = self.port_index(&m.port)?;
        self.ports[usize::from(port)]
            .addresses
            .iter()
            .find(|a| a.family == m.from.family)
            .map(|a| (a.family, a.addr))
    }
}

/// A serde message in a user's words: Rust's type names (`expected
/// usize`) become what the field takes.
fn users_words(msg: &str) -> String {
    let mut out = msg.to_string();
    for (rust, words) in [
        ("expected usize", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a sequence", "expected a list"),
        ("expected struct ", "expected a mapping of "),
    ] {
        out = out.replace(rust, words);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::config::schema::{Dur, MacAddr};
    use std::time::Duration;

    fn load(y: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(y, "test.yaml", Path::new("."))
    }

    const MIN: &str =
        "ports:\n  - {name: uplink, mac: \"02:00:00:00:00:01\", addresses: [\"192.0.2.1/24\"]}\n";

    #[test]
    fn defaults() {
        let c = load(MIN).unwrap();
        assert_eq!(c.workers.batch, 64);
        assert_eq!(c.conntrack.max_entries, 1 << 20);
        assert_eq!(
            c.conntrack.timeouts.tcp_established.0,
            Duration::from_secs(3600)
        );
        assert!(c.conntrack.tcp_loose);
        assert_eq!(c.ports[0].mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
    }

    #[test]
    fn unknown_key_names_path() {
        let e = load(&format!(
            "{MIN}routes:\n  - {{prefix: 10.0.0.0/8, port: uplink, gw: 1.2.3.4}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("test.yaml: routes[0]"), "{e}");
        assert!(e.contains("unknown field `gw`"), "{e}");
    }

    #[test]
    fn routes_into_special_ranges_are_refused() {
        for (prefix, range) in [
            ("127.5.0.0/16", "127.0.0.0/8 (martian"),
            ("0.1.2.0/24", "0.0.0.0/8 (martian"),
            ("240.0.0.0/4", "240.0.0.0/4 (martian"),
            ("224.1.0.0/16", "224.0.0.0/4 (local"),
            ("\"fe80::/64\"", "fe80::/10 (local"),
            ("\"ff02::1/128\"", "ff00::/8 (local"),
        ] {
            let e = load(&format!(
                "{MIN}routes:\n  - {{prefix: {prefix}, port: uplink}}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.starts_with("test.yaml: routes[0].prefix: "), "{e}");
            assert!(e.contains(&format!("lies inside {range}")), "{e}");
        }
        // Routes that only cover a special range are fine (the range wins).
        for prefix in ["0.0.0.0/0", "96.0.0.0/3", "\"::/0\"", "\"fe00::/7\""] {
            load(&format!(
                "{MIN}routes:\n  - {{prefix: {prefix}, port: uplink}}\n"
            ))
            .unwrap_or_else(|e| panic!("{prefix}: {e}"));
        }
    }

    #[test]
    fn bad_values_name_path() {
        let e = load(&format!(
            "{MIN}routes:\n  - {{prefix: 10.0.0.0/33, port: uplink}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("routes[0].prefix") && e.contains("prefix length"),
            "{e}"
        );
        let e = load(&format!(
            "{MIN}routes:\n  - {{prefix: 10.0.0.0/8, port: nowhere}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert_eq!(e, "test.yaml: routes[0].port: no port named \"nowhere\"");
        let e = load(&format!(
            "{MIN}routes:\n  - {{prefix: 10.0.0.1/8, port: uplink}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("host bits"), "{e}");
        let e = load(&format!("{MIN}conntrack:\n  timeouts: {{udp: 5x}}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("conntrack.timeouts.udp") && e.contains("unknown unit"),
            "{e}"
        );
        let e = load("ports:\n  - {name: a, mac: \"zz\"}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ports[0].mac") && e.contains("not a MAC"), "{e}");
        let e = load("workers: {batch: 64}\n").unwrap_err().to_string();
        assert!(e.contains("missing field `ports`"), "{e}");
        let e = load(&format!("{MIN}workers: {{batch: 1000}}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("workers.batch"), "{e}");
        let e = load(&format!("{MIN}workers: {{nice: -21}}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("workers.nice") && e.contains("-20..=19"), "{e}");
    }

    #[test]
    fn worker_nice_defaults_by_busy_poll() {
        let nice = |y: &str| load(&format!("{MIN}{y}")).unwrap().state().workers.nice;
        assert_eq!(nice(""), -20);
        assert_eq!(nice("workers: {busy_poll: true}\n"), 0);
        assert_eq!(nice("workers: {busy_poll: true, nice: -5}\n"), -5);
        assert_eq!(nice("workers: {nice: 3}\n"), 3);
    }

    #[test]
    fn errors_name_no_rust_types() {
        let e = load(&format!("{MIN}workers: {{batch: many}}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("workers.batch") && e.contains("expected a whole number"),
            "{e}"
        );
        assert!(!e.contains("usize"), "{e}");
        let e = load(&format!(
            "{MIN}xdp: {{failsafe: [{{protocol: TCP, port: 99999}}]}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(!e.contains("u16"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(Dur::parse("500ms").unwrap().0, Duration::from_millis(500));
        assert_eq!(Dur::parse("2m").unwrap().0, Duration::from_secs(120));
        assert_eq!(Dur::parse("1d").unwrap().0, Duration::from_secs(86400));
        assert!(Dur::parse("x").is_err());
    }
}
