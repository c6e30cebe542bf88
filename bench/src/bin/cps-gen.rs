//! Connection setup rate (CPS) load for `bench/peers/run.sh cps`.
//!
//! - `cps-gen client` keeps `--concurrency` TCP connections in flight to
//!   `--target` (a service VIP behind the device under test). Each one
//!   connects, sends a small request, reads the reply until the server
//!   closes, then closes; a finished connection is replaced at once. After
//!   `--warmup` seconds it counts for `--seconds`: completed connections per
//!   second, failures by kind, and percentiles of the setup latency
//!   (`connect()` until the handshake completes, i.e. the SYN-ACK came back)
//!   and of the whole exchange. One JSON object on stdout.
//! - `cps-gen server` accepts on `--listen`, reads the request, replies and
//!   closes first; it prints how many connections each client address
//!   opened (behind masquerade: one, the forwarder's).
//!
//! TIME_WAIT and port exhaustion: the server closes first, so TIME_WAIT
//! sits with the server, keyed by the client's (translated) address and
//! port; the client's close is passive (LAST_ACK, then nothing left), so its
//! ports are free again at once. The client binds every connection to the
//! next (address, port) pair of `--sources` x `--ports`, address by address,
//! so no 4-tuple repeats within a run: a repeated tuple would meet the
//! previous connection's conntrack entry, still closing in the forwarder,
//! and measure how each forwarder reopens one instead of how fast it sets
//! one up. The JSON says how many pairs were used and whether they wrapped.
//!
//! One thread each, nonblocking sockets and edge-triggered epoll; pin them
//! with `taskset -c` (run.sh puts client and server on the generator core).
//! The client's own ceiling is what one core of Linux TCP (both ends' stacks
//! run on that core) can open and close; run.sh reports each core's busy
//! share so a run can tell which side was the bound.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::Timespec;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The request: a fixed-size line, so the server knows when it has it.
const REQUEST: &[u8; 32] = b"GET /cps HTTP/1.0\r\nX-Pad: 000\r\n\r";
/// The reply's size (bytes of 'y').
const REPLY_LEN: usize = 64;

#[derive(Parser, Debug)]
#[command(about = "connection setup rate load: client and server")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Keep connections in flight to a target and count them.
    Client {
        /// Network namespace (/run/netns/NAME) to run in.
        #[arg(long)]
        netns: Option<String>,
        /// Address and port to connect to (e.g. the service VIP).
        #[arg(long)]
        target: SocketAddrV4,
        /// First source address; `--source-count` consecutive addresses
        /// from it are used (they must be configured on the interface).
        #[arg(long)]
        sources: Ipv4Addr,
        #[arg(long, default_value_t = 1)]
        source_count: u32,
        /// Source ports, `LO-HI` inclusive.
        #[arg(long, default_value = "10000-60999")]
        ports: String,
        /// Connections in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// A connection not done after this long is a failure (timeout),
        /// aborted with a reset.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Accept, read the request, reply, close.
    Server {
        #[arg(long)]
        netns: Option<String>,
        #[arg(long)]
        listen: SocketAddrV4,
        /// Exit after this long and print the counts.
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Client {
            netns,
            target,
            sources,
            source_count,
            ports,
            concurrency,
            warmup,
            seconds,
            timeout_ms,
        } => {
            enter(&netns)?;
            let (lo, hi) = ports
                .split_once('-')
                .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
                .filter(|(a, b): &(u16, u16)| a <= b && *a > 0)
                .with_context(|| format!("--ports {ports:?}: expected LO-HI, 1 <= LO <= HI"))?;
            if concurrency == 0 || source_count == 0 {
                bail!("--concurrency and --source-count must be at least 1");
            }
            if !(seconds > 0.0 && warmup >= 0.0) {
                bail!("--seconds must be positive and --warmup not negative");
            }
            let c = Client {
                target: SockAddr::from(target),
                pairs: Pairs {
                    first: u32::from(sources),
                    count: source_count,
                    lo,
                    ports: u32::from(hi - lo) + 1,
                    next: 0,
                },
                concurrency,
                timeout: Duration::from_millis(timeout_ms),
            };
            let r = c.run(
                Duration::from_secs_f64(warmup),
                Duration::from_secs_f64(seconds),
            )?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Cmd::Server {
            netns,
            listen,
            seconds,
        } => {
            enter(&netns)?;
            let r = server(listen, Duration::from_secs_f64(seconds))?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
    }
}

fn enter(netns: &Option<String>) -> Result<()> {
    if let Some(ns) = netns {
        engine::io::sys::enter_netns(&std::path::Path::new("/run/netns").join(ns))
            .with_context(|| format!("entering netns {ns}"))?;
    }
    Ok(())
}

/// Source (address, port) pairs, address by address.
struct Pairs {
    first: u32,
    count: u32,
    lo: u16,
    ports: u32,
    next: u64,
}

impl Pairs {
    fn total(&self) -> u64 {
        u64::from(self.count) * u64::from(self.ports)
    }

    fn next(&mut self) -> SocketAddrV4 {
        let i = self.next % self.total();
        self.next += 1;
        let addr = self.first + (i / u64::from(self.ports)) as u32;
        let port = u32::from(self.lo) + (i % u64::from(self.ports)) as u32;
        SocketAddrV4::new(Ipv4Addr::from(addr), port as u16)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No socket (a start failed; retried on the next sweep).
    Idle,
    /// connect() issued, handshake not complete.
    Connecting,
    /// Request sent, reading the reply until the server closes.
    Waiting,
}

struct Slot {
    sock: Option<Socket>,
    phase: Phase,
    started: Instant,
    got: usize,
}

/// Failure counts by kind.
#[derive(Debug, Default, serde::Serialize)]
struct Failures {
    /// No handshake within the timeout (SYN or SYN-ACK lost, or the
    /// forwarder too slow).
    timeout_setup: u64,
    /// Handshake done, no complete reply and close within the timeout.
    timeout_reply: u64,
    /// Connection reset (RST) or refused.
    reset: u64,
    refused: u64,
    /// The server closed before the whole reply.
    short_reply: u64,
    /// Anything else (unreachable, ...).
    other: u64,
}

impl Failures {
    fn total(&self) -> u64 {
        self.timeout_setup
            + self.timeout_reply
            + self.reset
            + self.refused
            + self.short_reply
            + self.other
    }

    fn count_error(&mut self, e: &std::io::Error) {
        match e.kind() {
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => self.reset += 1,
            ErrorKind::ConnectionRefused => self.refused += 1,
            ErrorKind::TimedOut => self.timeout_setup += 1,
            _ => self.other += 1,
        }
    }
}

#[derive(Debug, serde::Serialize)]
struct Percentiles {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles {
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

#[derive(Debug, serde::Serialize)]
struct ClientReport {
    seconds: f64,
    concurrency: usize,
    /// Connections completed (reply read, server's close seen) in the window.
    completed: u64,
    cps: f64,
    failed: u64,
    failures: Failures,
    /// Microseconds from connect() to the completed handshake.
    setup_us: Percentiles,
    /// Microseconds from connect() to the server's close after the reply.
    exchange_us: Percentiles,
    warmup_completed: u64,
    warmup_failed: u64,
    /// Source pairs handed out, and how many exist (more: they wrapped).
    pairs_used: u64,
    pairs: u64,
    /// Binds that found their pair still taken (skipped).
    bind_busy: u64,
}

struct Client {
    target: SockAddr,
    pairs: Pairs,
    concurrency: usize,
    timeout: Duration,
}

/// What a run counts.
struct Tally {
    completed: u64,
    failures: Failures,
    setup: Histogram<u64>,
    exchange: Histogram<u64>,
}

impl Tally {
    fn new() -> Result<Tally> {
        // 1 us .. 100 s, 3 significant digits.
        let h = || Histogram::new_with_bounds(1, 100_000_000, 3).context("latency histogram");
        Ok(Tally {
            completed: 0,
            failures: Failures::default(),
            setup: h()?,
            exchange: h()?,
        })
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 100_000_000)
}

impl Client {
    fn run(mut self, warmup: Duration, seconds: Duration) -> Result<ClientReport> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC).context("epoll_create")?;
        let t0 = Instant::now();
        let mut slots: Vec<Slot> = (0..self.concurrency)
            .map(|_| Slot {
                sock: None,
                phase: Phase::Idle,
                started: t0,
                got: 0,
            })
            .collect();
        let window_start = t0 + warmup;
        let end = window_start + seconds;
        let mut warm = Tally::new()?;
        let mut tally = Tally::new()?;
        let mut bind_busy = 0u64;
        for (i, s) in slots.iter_mut().enumerate() {
            self.start(&ep, i, s, &mut warm, &mut bind_busy);
        }
        let mut events = Vec::with_capacity(256);
        let mut buf = [0u8; 512];
        let mut last_sweep = t0;
        let tick = Timespec {
            tv_sec: 0,
            tv_nsec: 5_000_000,
        };
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            events.clear();
            match epoll::wait(&ep, spare_capacity(&mut events), Some(&tick)) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(std::io::Error::from(e)).context("epoll_wait"),
            }
            for ev in &events {
                let i = ev.data.u64() as usize;
                let flags = ev.flags;
                let Some(s) = slots.get_mut(i) else { continue };
                let now = Instant::now();
                let t = if now >= window_start {
                    &mut tally
                } else {
                    &mut warm
                };
                let done = self.event(s, flags, now, t, &mut buf);
                if done {
                    self.start(&ep, i, s, t, &mut bind_busy);
                }
            }
            let now = Instant::now();
            if now.duration_since(last_sweep) >= Duration::from_millis(10) {
                last_sweep = now;
                let t = if now >= window_start {
                    &mut tally
                } else {
                    &mut warm
                };
                for (i, s) in slots.iter_mut().enumerate() {
                    let expired =
                        s.phase != Phase::Idle && now.duration_since(s.started) > self.timeout;
                    if expired {
                        if s.phase == Phase::Connecting {
                            t.failures.timeout_setup += 1;
                        } else {
                            t.failures.timeout_reply += 1;
                        }
                        abort(s);
                    }
                    if s.phase == Phase::Idle {
                        self.start(&ep, i, s, t, &mut bind_busy);
                    }
                }
            }
        }
        let secs = seconds.as_secs_f64();
        Ok(ClientReport {
            seconds: secs,
            concurrency: self.concurrency,
            completed: tally.completed,
            cps: tally.completed as f64 / secs,
            failed: tally.failures.total(),
            setup_us: percentiles(&tally.setup),
            exchange_us: percentiles(&tally.exchange),
            failures: tally.failures,
            warmup_completed: warm.completed,
            warmup_failed: warm.failures.total(),
            pairs_used: self.pairs.next,
            pairs: self.pairs.total(),
            bind_busy,
        })
    }

    /// Opens the slot's next connection; on failure the slot stays idle
    /// (the failure counted) and the next sweep tries again.
    fn start(
        &mut self,
        ep: &impl rustix::fd::AsFd,
        i: usize,
        s: &mut Slot,
        t: &mut Tally,
        bind_busy: &mut u64,
    ) {
        s.phase = Phase::Idle;
        s.sock = None;
        s.got = 0;
        // A pair still bound elsewhere (a previous lap's aborted
        // connection) is skipped; a few tries, then the next sweep.
        for _ in 0..8 {
            let sock = match Socket::new(
                Domain::IPV4,
                Type::STREAM.nonblocking(),
                Some(Protocol::TCP),
            ) {
                Ok(s) => s,
                Err(e) => {
                    t.failures.count_error(&e);
                    return;
                }
            };
            let src = self.pairs.next();
            if let Err(e) = sock.bind(&SockAddr::from(src)) {
                if e.kind() == ErrorKind::AddrInUse {
                    *bind_busy += 1;
                    continue;
                }
                t.failures.count_error(&e);
                return;
            }
            s.started = Instant::now();
            match sock.connect(&self.target) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                Err(e) => {
                    t.failures.count_error(&e);
                    return;
                }
            }
            let flags = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
            if let Err(e) = epoll::add(ep, &sock, EventData::new_u64(i as u64), flags) {
                t.failures.count_error(&std::io::Error::from(e));
                return;
            }
            s.sock = Some(sock);
            s.phase = Phase::Connecting;
            return;
        }
    }

    /// Handles one readiness event; true when the slot's connection is
    /// over (counted) and a new one should start.
    fn event(
        &self,
        s: &mut Slot,
        flags: EventFlags,
        now: Instant,
        t: &mut Tally,
        buf: &mut [u8],
    ) -> bool {
        let Some(sock) = s.sock.as_ref() else {
            return false;
        };
        if s.phase == Phase::Connecting {
            if !flags.intersects(EventFlags::OUT | EventFlags::ERR | EventFlags::HUP) {
                return false;
            }
            match sock.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    t.failures.count_error(&e);
                    abort(s);
                    return true;
                }
            }
            t.setup
                .saturating_record(micros(now.duration_since(s.started)));
            match (&*sock).write(REQUEST) {
                Ok(n) if n == REQUEST.len() => {}
                Ok(_) => {
                    t.failures.other += 1;
                    abort(s);
                    return true;
                }
                Err(e) => {
                    t.failures.count_error(&e);
                    abort(s);
                    return true;
                }
            }
            s.phase = Phase::Waiting;
            if !flags.intersects(EventFlags::IN | EventFlags::RDHUP | EventFlags::HUP) {
                return false;
            }
        }
        loop {
            match (&*sock).read(buf) {
                Ok(0) => {
                    if s.got >= REPLY_LEN {
                        t.completed += 1;
                        t.exchange
                            .saturating_record(micros(now.duration_since(s.started)));
                        // Passive close: the server's FIN came first.
                        s.sock = None;
                        s.phase = Phase::Idle;
                    } else {
                        t.failures.short_reply += 1;
                        abort(s);
                    }
                    return true;
                }
                Ok(n) => s.got += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    t.failures.count_error(&e);
                    abort(s);
                    return true;
                }
            }
        }
    }
}

/// Closes with a reset (no TIME_WAIT, nothing lingering).
fn abort(s: &mut Slot) {
    if let Some(sock) = s.sock.take() {
        let _ = sock.set_linger(Some(Duration::ZERO));
    }
    s.phase = Phase::Idle;
}

#[derive(Debug, Default, serde::Serialize)]
struct ServerReport {
    accepted: u64,
    /// Accepted connections by the client address the server saw (the
    /// masquerade address behind a NAT-ing forwarder).
    peers: BTreeMap<String, u64>,
    replied: u64,
    /// Closed by the client before its request arrived, or errors.
    dropped: u64,
}

/// A connection the server waits on for its request.
struct Conn {
    sock: Socket,
    got: usize,
}

fn server(listen: SocketAddrV4, seconds: Duration) -> Result<ServerReport> {
    let l = Socket::new(
        Domain::IPV4,
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )
    .context("server socket")?;
    l.set_reuse_address(true).context("SO_REUSEADDR")?;
    l.bind(&SockAddr::from(listen))
        .with_context(|| format!("binding {listen}"))?;
    l.listen(4096).context("listen")?;
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).context("epoll_create")?;
    const LISTENER: u64 = u64::MAX;
    epoll::add(&ep, &l, EventData::new_u64(LISTENER), EventFlags::IN).context("epoll_ctl")?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut r = ServerReport::default();
    let mut peers: BTreeMap<Ipv4Addr, u64> = BTreeMap::new();
    let mut reply = [b'y'; REPLY_LEN];
    reply[REPLY_LEN - 1] = b'\n';
    let mut buf = [0u8; 512];
    let end = Instant::now() + seconds;
    let mut events = Vec::with_capacity(256);
    let tick = Timespec {
        tv_sec: 0,
        tv_nsec: 50_000_000,
    };
    while Instant::now() < end {
        events.clear();
        match epoll::wait(&ep, spare_capacity(&mut events), Some(&tick)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(std::io::Error::from(e)).context("epoll_wait"),
        }
        for ev in &events {
            let token = ev.data.u64();
            if token == LISTENER {
                // Accept what is queued; the listener stays level-triggered.
                for _ in 0..256 {
                    let sock = match l.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) {
                        Ok((s, from)) => {
                            let ip = from
                                .as_socket_ipv4()
                                .map_or(Ipv4Addr::UNSPECIFIED, |a| *a.ip());
                            *peers.entry(ip).or_insert(0) += 1;
                            s
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => {
                            r.dropped += 1;
                            break;
                        }
                    };
                    r.accepted += 1;
                    let mut c = Conn { sock, got: 0 };
                    match serve(&mut c, &reply, &mut buf) {
                        Served::Replied => r.replied += 1,
                        Served::Dropped => r.dropped += 1,
                        Served::Pending => {
                            let i = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            let flags = EventFlags::IN | EventFlags::RDHUP | EventFlags::ET;
                            if epoll::add(&ep, &c.sock, EventData::new_u64(i as u64), flags)
                                .is_err()
                            {
                                r.dropped += 1;
                                free.push(i);
                                continue;
                            }
                            conns[i] = Some(c);
                        }
                    }
                }
                continue;
            }
            let i = token as usize;
            let Some(c) = conns.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            match serve(c, &reply, &mut buf) {
                Served::Pending => continue,
                Served::Replied => r.replied += 1,
                Served::Dropped => r.dropped += 1,
            }
            // Dropping the socket closes it (and takes it out of epoll).
            conns[i] = None;
            free.push(i);
        }
    }
    r.peers = peers.into_iter().map(|(a, n)| (a.to_string(), n)).collect();
    Ok(r)
}

enum Served {
    Pending,
    Replied,
    Dropped,
}

/// Reads what has arrived; with the whole request, replies (the server
/// closes first when the caller drops the socket).
fn serve(c: &mut Conn, reply: &[u8], buf: &mut [u8]) -> Served {
    loop {
        match (&c.sock).read(buf) {
            Ok(0) => return Served::Dropped,
            Ok(n) => {
                c.got += n;
                if c.got >= REQUEST.len() {
                    return match (&c.sock).write(reply) {
                        Ok(n) if n == reply.len() => Served::Replied,
                        _ => Served::Dropped,
                    };
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Served::Pending,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Served::Dropped,
        }
    }
}
