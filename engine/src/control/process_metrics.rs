//! The standard process metrics, named as the Prometheus project's own
//! clients name them (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`),
//! read from `/proc/self` with `procfs` at each scrape. A value that cannot
//! be read is left out; the scrape goes on.

use procfs::process::{LimitValue, Process};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// What `/proc/self` says, each value if it could be read.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessNumbers {
    /// User and system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// The soft limit on open files (absent when unlimited).
    pub max_fds: Option<u64>,
    /// Since the Unix epoch, seconds.
    pub start_time_seconds: Option<f64>,
}

impl ProcessNumbers {
    /// Reads this process's numbers.
    pub fn read() -> ProcessNumbers {
        let Ok(me) = Process::myself() else {
            return ProcessNumbers::default();
        };
        let tps = procfs::ticks_per_second() as f64;
        let stat = me.stat().ok();
        ProcessNumbers {
            cpu_seconds: stat.as_ref().map(|s| (s.utime + s.stime) as f64 / tps),
            resident_bytes: stat.as_ref().map(|s| s.rss * procfs::page_size()),
            virtual_bytes: stat.as_ref().map(|s| s.vsize),
            open_fds: me.fd_count().ok().map(|n| n as u64),
            max_fds: me
                .limits()
                .ok()
                .and_then(|l| match l.max_open_files.soft_limit {
                    LimitValue::Value(n) => Some(n),
                    LimitValue::Unlimited => None,
                }),
            start_time_seconds: stat.as_ref().and_then(|s| {
                let boot = procfs::boot_time_secs().ok()?;
                Some(boot as f64 + s.starttime as f64 / tps)
            }),
        }
    }
}

/// The collector: reads [`ProcessNumbers`] at each scrape.
#[derive(Debug)]
pub struct ProcessMetrics;

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    d: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: Option<V>,
) -> Result<(), std::fmt::Error> {
    match v {
        Some(v) => {
            ConstGauge::new(v).encode(d.encode_descriptor(name, help, None, MetricType::Gauge)?)
        }
        None => Ok(()),
    }
}

impl Collector for ProcessMetrics {
    fn encode(&self, mut d: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let n = ProcessNumbers::read();
        if let Some(cpu) = n.cpu_seconds {
            ConstCounter::new(cpu).encode(d.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?)?;
        }
        gauge(
            &mut d,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            n.resident_bytes,
        )?;
        gauge(
            &mut d,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            n.virtual_bytes,
        )?;
        gauge(
            &mut d,
            "process_open_fds",
            "Number of open file descriptors.",
            n.open_fds,
        )?;
        gauge(
            &mut d,
            "process_max_fds",
            "Maximum number of open file descriptors (the soft limit).",
            n.max_fds,
        )?;
        gauge(
            &mut d,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            n.start_time_seconds,
        )
    }
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The numbers agree with what the test can see of itself.
    #[test]
    fn reads_this_process() {
        let before = ProcessNumbers::read();
        let files: Vec<std::fs::File> = (0..5)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        // Burn some CPU so the counter can be seen to move.
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let n = ProcessNumbers::read();
        let opened = n.open_fds.unwrap() - before.open_fds.unwrap();
        // Other tests' threads may open files meanwhile.
        assert!(opened >= 5, "{before:?} → {n:?}");
        assert!(n.max_fds.unwrap() >= n.open_fds.unwrap());
        assert!(
            n.cpu_seconds.unwrap() >= before.cpu_seconds.unwrap() + 0.01,
            "{n:?}"
        );
        assert!(n.resident_bytes.unwrap() > 1 << 20, "{n:?}");
        assert!(n.virtual_bytes.unwrap() >= n.resident_bytes.unwrap());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = n.start_time_seconds.unwrap();
        // Started before now, and not long ago (btime has 1 s resolution).
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
        drop(files);
    }
}
