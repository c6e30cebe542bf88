//! `ctl trace` and `ctl capture`: a request becomes a [`Tap`] on every
//! worker; its records are streamed back to the client that asked, on
//! that client's own thread, until the count, byte or time limit or the
//! client goes away, and the tap is removed.
//!
//! Trace: one JSON line per frame, its path through the stages as
//! `explain` reports it (conntrack, service, NAT, policy and what decided,
//! route, egress, verdict), read from the pipeline's own state. Capture:
//! pcapng ([`PcapngWriter`]), one interface per port; each frame as
//! received (inbound, with its verdict and, for a drop, the reason in the
//! comment) and, when forwarded, as sent (outbound, on the egress port).

use std::io::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, RecvTimeoutError};
use serde_json::{json, Value};

use super::ctfilter::CtFilter;
use super::explain::render_traced;
use crate::io::pcapng::{Direction, PcapngWriter};
use crate::pipeline::Action;
use crate::tables::Tables;
use crate::worker::tap::{Tap, TapFilter, TapRecord};

/// Records a tap may hold for a slow client before dropping.
const QUEUE: usize = 4096;

/// What a trace or capture asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct TapRequest {
    pub capture: bool,
    pub filter: TapFilter,
    /// Frames, pcapng bytes (capture), seconds.
    pub count: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Capture: which copies (`rx` frames received and not dropped,
    /// `tx` frames as sent, `drop` frames dropped).
    pub rx: bool,
    pub tx: bool,
    pub drop: bool,
}

impl TapRequest {
    /// From a `{"cmd": "trace" | "capture", ...}` request; `ports` names
    /// the ports by number.
    pub fn from_request(req: &Value, ports: &[String]) -> Result<TapRequest, String> {
        let capture = req.get("cmd").and_then(Value::as_str) == Some("capture");
        let f = CtFilter::from_request(req)?;
        let on = match req.get("on") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|v| {
                        let n = v.as_str().unwrap_or("");
                        ports
                            .iter()
                            .position(|p| p == n)
                            .map(|i| i as u16)
                            .ok_or_else(|| {
                                format!("on: no port named {n:?} (ports: {})", ports.join(", "))
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(v) => return Err(format!("on: {v} is not a list of port names")),
        };
        let num = |k: &str, d: f64| -> Result<f64, String> {
            match req.get(k) {
                None | Some(Value::Null) => Ok(d),
                Some(v) => v
                    .as_f64()
                    .filter(|x| *x > 0.0)
                    .ok_or_else(|| format!("{k}: {v} is not a positive number")),
            }
        };
        let what: Vec<String> = match req.get("what") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect(),
            _ => vec!["rx".into(), "tx".into(), "drop".into()],
        };
        for w in &what {
            if !matches!(w.as_str(), "rx" | "tx" | "drop") {
                return Err(format!("what: {w:?} is not rx, tx or drop"));
            }
        }
        Ok(TapRequest {
            capture,
            filter: TapFilter {
                proto: f.proto,
                addr: f.addr,
                port: f.port,
                src: f.src,
                dst: f.dst,
                sport: f.sport,
                dport: f.dport,
                ports: on,
            },
            count: num("count", if capture { 1000.0 } else { 10.0 })? as u64,
            bytes: num("bytes", 64.0 * 1024.0 * 1024.0)? as u64,
            seconds: num("seconds", 10.0)?,
            rx: what.iter().any(|w| w == "rx"),
            tx: what.iter().any(|w| w == "tx"),
            drop: what.iter().any(|w| w == "drop"),
        })
    }
}

/// A running tap and what its stream needs.
#[derive(Debug)]
pub struct TapSession {
    pub tap: Arc<Tap>,
    pub records: Receiver<TapRecord>,
    pub req: TapRequest,
    pub tables: Arc<Tables>,
    pub ports: Vec<String>,
}

impl TapSession {
    /// A tap for `req` (`id` names it), not yet on the workers.
    pub fn new(id: u64, req: TapRequest, tables: Arc<Tables>, ports: Vec<String>) -> TapSession {
        let (tx, rx) = channel::bounded(QUEUE);
        let tap = Arc::new(Tap {
            id,
            filter: req.filter.clone(),
            trace: !req.capture,
            capture: req.capture,
            remaining: AtomicI64::new(i64::try_from(req.count).unwrap_or(i64::MAX)),
            records: tx,
            dropped: AtomicU64::new(0),
        });
        TapSession {
            tap,
            records: rx,
            req,
            tables,
            ports,
        }
    }

    /// Streams the records to `out` until a limit is reached or `out`
    /// fails (the client left); what was sent.
    pub fn stream(&self, out: &mut dyn Write) -> std::io::Result<Value> {
        let (frames, why) = if self.req.capture {
            let mut p = PcapngWriter::new(out, &self.ports)?;
            let r = self.pump(
                |r| {
                    self.write_capture(&mut p, r)?;
                    Ok(p.written() >= self.req.bytes)
                },
                &mut |_| Ok(()),
            );
            p.flush()?;
            r?
        } else {
            let out = std::cell::RefCell::new(out);
            let r = self.pump(
                |r| {
                    let mut v = match &r.report {
                        Some(rep) => render_traced(&self.tables, r.now, r.ingress, rep),
                        None => json!({}),
                    };
                    if let Some(m) = v.as_object_mut() {
                        m.insert("ts".into(), json!(r.ts as f64 / 1e9));
                        m.insert("worker".into(), json!(r.worker));
                        m.insert("ingress".into(), json!(self.port(r.ingress)));
                    }
                    writeln!(out.borrow_mut(), "{v}")?;
                    Ok(false)
                },
                &mut |_| out.borrow_mut().flush(),
            );
            out.borrow_mut().flush()?;
            r?
        };
        Ok(json!({"frames": frames, "ended_by": why,
                  "dropped": self.tap.dropped.load(Ordering::Relaxed)}))
    }

    /// Hands records to `each` (which says when the byte limit is
    /// reached) until a limit; `idle` runs when nothing came for a while
    /// (a flush, so a client that left is noticed). Frames sent and why
    /// it ended.
    fn pump(
        &self,
        mut each: impl FnMut(&TapRecord) -> std::io::Result<bool>,
        idle: &mut dyn FnMut(()) -> std::io::Result<()>,
    ) -> std::io::Result<(u64, &'static str)> {
        let deadline = Instant::now() + Duration::from_secs_f64(self.req.seconds);
        let mut frames = 0u64;
        loop {
            if frames >= self.req.count {
                return Ok((frames, "count"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .records
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(r) => {
                    frames += 1;
                    if each(&r)? {
                        return Ok((frames, "bytes"));
                    }
                }
                Err(RecvTimeoutError::Timeout) if left.is_zero() => return Ok((frames, "time")),
                Err(RecvTimeoutError::Timeout) => idle(())?,
                Err(RecvTimeoutError::Disconnected) => return Ok((frames, "stopped")),
            }
        }
    }

    fn port(&self, p: u16) -> String {
        self.ports
            .get(usize::from(p))
            .cloned()
            .unwrap_or_else(|| p.to_string())
    }

    fn verdict(&self, a: Action) -> String {
        match a {
            Action::Forward(p) => format!("forward to {}", self.port(p)),
            Action::Drop(d) => format!("drop: {}", d.name()),
            Action::Kernel => "to the kernel".into(),
            Action::ViaKernel => "forward via the kernel (next hop unresolved)".into(),
        }
    }

    fn write_capture<W: Write>(
        &self,
        p: &mut PcapngWriter<W>,
        r: &TapRecord,
    ) -> std::io::Result<()> {
        let dropped = matches!(r.action, Action::Drop(_));
        if let Some(rx) = &r.rx {
            if (dropped && self.req.drop) || (!dropped && self.req.rx) {
                let c = format!(
                    "rx port={} verdict={}",
                    self.port(r.ingress),
                    self.verdict(r.action)
                );
                p.packet(u32::from(r.ingress), r.ts, rx, Direction::Inbound, &c)?;
            }
        }
        if let (Some(tx), Action::Forward(e), true) = (&r.tx, r.action, self.req.tx) {
            let c = format!("tx port={} from={}", self.port(e), self.port(r.ingress));
            p.packet(u32::from(e), r.ts, tx, Direction::Outbound, &c)?;
        }
        Ok(())
    }
}
