//! Traffic generator and sink for the peer comparison (`bench/peers/`).
//!
//! - `peer-gen tx`: transmits 64-byte (or `--size`) UDP frames into an
//!   interface as fast as it can (the same generator for every peer),
//!   spread over `--flows` source ports. `--engine xdp` (default) runs a
//!   small XDP program in live-frames mode (`BPF_PROG_TEST_RUN`), the
//!   kernel's fastest software generator (what `xdp-trafficgen` does; that
//!   tool needs tracepoint BTF this kernel lacks); `--engine afxdp` sends
//!   from an AF_XDP socket in copy mode (frames written once into the UMEM
//!   and re-sent).
//! - `peer-gen sink`: attaches sluice's XDP program to an interface with
//!   no socket and `fail_mode: closed`, so every frame is dropped at the
//!   driver and counted per CPU; after `--warmup` seconds it samples the
//!   counter for `--seconds` and prints the delivered rate. Dropping at XDP
//!   keeps the sink's own cost (which runs on the sender's CPU with veth)
//!   minimal and equal for every peer.
//!
//! - `peer-gen xdp-fwd`: the ceiling forwarder (`bench::xdpfwd`): attaches
//!   an XDP program to two ports that sends what one receives out of the
//!   other (MACs rewritten, DEVMAP redirect) and runs until SIGINT/SIGTERM
//!   or `--seconds`; the attachments go away with the process.
//!
//! `tx` and `sink` print one JSON object. Pin them with `taskset -c`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use bench::packet::{self as pk, Ip};
use bench::trafficgen::TrafficGen;
use bench::xdpfwd::{Way, XdpFwd};
use engine::io::bpf::AttachMode;
use engine::io::bpf::{self, XdpCounter};
use engine::io::sys;
use engine::io::xsk::{BindMode, FramePool, RingSizes, SocketSpec, Umem, UmemConfig, XskSocket};
use engine::sources::config::Config;

#[derive(Parser, Debug)]
#[command(about = "generator and sink for the peer comparison")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Transmit UDP frames as fast as possible.
    Tx {
        /// Network namespace (/run/netns/NAME) to run in.
        #[arg(long)]
        netns: Option<String>,
        #[arg(long)]
        interface: String,
        /// Destination MAC (the device under test's ingress port).
        #[arg(long)]
        dst_mac: String,
        #[arg(long)]
        src_ip: String,
        #[arg(long)]
        dst_ip: String,
        /// Distinct flows (source ports).
        #[arg(long, default_value_t = 256)]
        flows: u16,
        /// Frame size without FCS (64 minimum).
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 0)]
        queue: u32,
        /// `xdp` (live frames) or `afxdp` (AF_XDP copy-mode socket).
        #[arg(long, default_value = "xdp")]
        engine: String,
        /// Offered rate in packets/second (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Frames per flush to the device (xdp engine): smaller bursts are
        /// gentler on a veth's 256-entry receive ring.
        #[arg(long, default_value_t = 64)]
        burst: u32,
        /// Frames per BPF_PROG_RUN call (xdp engine): each call has a fixed
        /// setup cost, so pacing works in calls of this many frames.
        #[arg(long, default_value_t = 1024)]
        call: u32,
        /// xdp engine: an interface (down, receiving nothing) to keep the
        /// generator attached to, so that each BPF_PROG_RUN call does not
        /// wait for an RCU grace period (see `TrafficGen::hold`). Without
        /// it the generator sends in bursts and cannot pace.
        #[arg(long)]
        hold_interface: Option<String>,
    },
    /// Forward between two ports in XDP (the ceiling peer).
    XdpFwd {
        #[arg(long)]
        netns: Option<String>,
        /// The two ports.
        #[arg(long)]
        a: String,
        #[arg(long)]
        b: String,
        /// Next hop's MAC out of `a` and out of `b`.
        #[arg(long)]
        a_next_mac: String,
        #[arg(long)]
        b_next_mac: String,
        /// Written once the forwarder is attached.
        #[arg(long)]
        ready_file: Option<std::path::PathBuf>,
        /// Run this long (0: until killed).
        #[arg(long, default_value_t = 0.0)]
        seconds: f64,
    },
    /// Count frames arriving on an interface (dropped by XDP).
    Sink {
        #[arg(long)]
        netns: Option<String>,
        #[arg(long)]
        interface: String,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
}

fn enter(netns: &Option<String>) -> Result<()> {
    if let Some(ns) = netns {
        sys::enter_netns(&std::path::Path::new("/run/netns").join(ns))
            .with_context(|| format!("entering netns {ns}"))?;
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Tx {
            netns,
            interface,
            dst_mac,
            src_ip,
            dst_ip,
            flows,
            size,
            seconds,
            queue,
            engine,
            rate,
            burst,
            call,
            hold_interface,
        } => {
            enter(&netns)?;
            match engine.as_str() {
                "xdp" => tx_xdp(
                    &interface,
                    &dst_mac,
                    &src_ip,
                    &dst_ip,
                    flows,
                    size,
                    seconds,
                    Pace { rate, burst, call },
                    hold_interface.as_deref(),
                ),
                "afxdp" => tx(
                    &interface, &dst_mac, &src_ip, &dst_ip, flows, size, seconds, queue, rate,
                ),
                e => bail!("--engine {e}: xdp or afxdp"),
            }
        }
        Cmd::XdpFwd {
            netns,
            a,
            b,
            a_next_mac,
            b_next_mac,
            ready_file,
            seconds,
        } => {
            enter(&netns)?;
            xdp_fwd(&a, &b, &a_next_mac, &b_next_mac, ready_file, seconds)
        }
        Cmd::Sink {
            netns,
            interface,
            warmup,
            seconds,
        } => {
            enter(&netns)?;
            sink(&interface, warmup, seconds)
        }
    }
}

// One argument per generator setting (the command line's flags).
#[allow(clippy::too_many_arguments)]
fn tx(
    ifname: &str,
    dst_mac: &str,
    src_ip: &str,
    dst_ip: &str,
    flows: u16,
    size: usize,
    seconds: f64,
    queue: u32,
    rate: u64,
) -> Result<()> {
    let dst = engine::wire::parse_mac(dst_mac).context("--dst-mac")?;
    let src = sys::interface_mac(ifname)?;
    let ifindex = sys::if_nametoindex(ifname)?;
    if !(64..=1500).contains(&size) {
        bail!("--size must be 64..=1500");
    }
    let ring = 2048u32;
    let (umem, tokens) = Umem::new(UmemConfig {
        frames: ring * 2,
        frame_size: 2048,
        hugepages: false,
    })?;
    let spec = SocketSpec {
        ifname: ifname.to_string(),
        ifindex,
        queue,
    };
    let rings = RingSizes {
        fill: 64,
        completion: ring,
        rx: 64,
        tx: ring,
    };
    let mut sock = XskSocket::create(&umem, &spec, rings, BindMode::Copy, None, None)?;
    // Write one frame per UMEM chunk once: flow = chunk index % flows.
    let payload_len = size - 14 - 20 - 8;
    let (s, d) = (Ip::p(src_ip), Ip::p(dst_ip));
    let mut tokens = tokens;
    let mut len = 0u32;
    for (i, f) in tokens.iter_mut().enumerate() {
        let sport = 1024 + (i as u16 % flows.max(1));
        let seg = pk::udp(s, d, sport, 9, &vec![0x5a; payload_len], false);
        let frame = pk::eth_ip(dst, src, &pk::ip(s, d, 17, 64, &seg));
        len = frame.len() as u32;
        umem.bytes_mut(f, 0, len).copy_from_slice(&frame);
    }
    let mut pool = FramePool::new(tokens);
    let t0 = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    let mut kicks = 0u64;
    // Frames queued so far (for pacing); `sent` counts completions.
    let mut queued = 0u64;
    loop {
        let el = t0.elapsed();
        if el >= limit {
            break;
        }
        sent += u64::from(sock.complete(&mut pool));
        let mut want = sock.tx_free(64).min(pool.len()).min(64);
        if rate > 0 {
            let due = (rate as f64 * el.as_secs_f64()) as u64;
            want = want.min(due.saturating_sub(queued) as u32);
            if want == 0 {
                std::hint::spin_loop();
                continue;
            }
        }
        for _ in 0..want {
            if let Some(f) = pool.pop() {
                if let Err(f) = sock.tx_push(f, 0, len) {
                    pool.push(f);
                    break;
                }
                queued += 1;
            }
        }
        sock.tx_submit();
        kicks += 1;
        let _ = sock.kick_tx();
    }
    // Let the last frames complete.
    let end = Instant::now();
    while sock.tx_outstanding() > 0 && end.elapsed() < Duration::from_millis(200) {
        let _ = sock.kick_tx();
        sent += u64::from(sock.complete(&mut pool));
    }
    sent += u64::from(sock.complete(&mut pool));
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"sent": sent, "seconds": secs, "mpps": sent as f64 / secs / 1e6,
                           "kicks": kicks, "frame_bytes": len})
    );
    Ok(())
}

fn template(
    ifname: &str,
    dst_mac: &str,
    src_ip: &str,
    dst_ip: &str,
    size: usize,
) -> Result<Vec<u8>> {
    let dst = engine::wire::parse_mac(dst_mac).context("--dst-mac")?;
    let src = sys::interface_mac(ifname)?;
    if !(64..=1500).contains(&size) {
        bail!("--size must be 64..=1500");
    }
    let (s, d) = (Ip::p(src_ip), Ip::p(dst_ip));
    let seg = pk::udp(s, d, 1024, 9, &vec![0x5a; size - 14 - 20 - 8], true);
    Ok(pk::eth_ip(dst, src, &pk::ip(s, d, 17, 64, &seg)))
}

/// Generator pacing.
#[derive(Clone, Copy, Debug)]
struct Pace {
    /// Packets per second (0: unlimited).
    rate: u64,
    /// Frames per flush.
    burst: u32,
    /// Frames per syscall.
    call: u32,
}

// One argument per generator setting (the command line's flags).
#[allow(clippy::too_many_arguments)]
fn tx_xdp(
    ifname: &str,
    dst_mac: &str,
    src_ip: &str,
    dst_ip: &str,
    flows: u16,
    size: usize,
    seconds: f64,
    pace: Pace,
    hold: Option<&str>,
) -> Result<()> {
    let Pace { rate, burst, call } = pace;
    let frame = template(ifname, dst_mac, src_ip, dst_ip, size)?;
    let ifindex = sys::if_nametoindex(ifname)?;
    let mut gen = TrafficGen::load(ifindex, u32::from(flows.max(1)), 1024)?;
    if let Some(h) = hold {
        let hi = sys::if_nametoindex(h).with_context(|| format!("--hold-interface {h}"))?;
        gen.hold(hi)
            .with_context(|| format!("attaching the generator to {h} (--hold-interface)"))?;
    }
    let t0 = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    if rate == 0 {
        while t0.elapsed() < limit {
            gen.run(&frame, ifindex, call.max(1), burst)?;
        }
    } else {
        // Paced: catch up with rate * elapsed in calls of `burst` to
        // `call` frames, flushed to the device every `burst` frames,
        // spinning in between (the generator has its core to itself). Each
        // call sets up and tears down a page pool and registers its memory
        // model in the kernel; calls of one frame (what plain catching up
        // gives at low rates) cost more than the frames and, with frames
        // still in flight, exhaust the kernel's memory-model ids
        // (BPF_PROG_TEST_RUN fails with ENOSPC).
        let mut sent = 0u64;
        let min_call = u64::from(burst.clamp(1, call.max(1)));
        loop {
            let el = t0.elapsed();
            if el >= limit {
                break;
            }
            let due = (rate as f64 * el.as_secs_f64()) as u64;
            if due >= sent + min_call {
                let n = (due - sent).min(u64::from(call.max(1)));
                gen.run(&frame, ifindex, n as u32, burst)?;
                sent += n;
            } else {
                std::hint::spin_loop();
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let sent = gen.built()?;
    println!(
        "{}",
        serde_json::json!({"engine": "xdp", "sent": sent, "seconds": secs,
                           "mpps": sent as f64 / secs / 1e6, "frame_bytes": frame.len()})
    );
    Ok(())
}

fn xdp_fwd(
    a: &str,
    b: &str,
    a_next_mac: &str,
    b_next_mac: &str,
    ready_file: Option<std::path::PathBuf>,
    seconds: f64,
) -> Result<()> {
    let (ai, bi) = (sys::if_nametoindex(a)?, sys::if_nametoindex(b)?);
    let (am, bm) = (sys::interface_mac(a)?, sys::interface_mac(b)?);
    let a_next = engine::wire::parse_mac(a_next_mac).context("--a-next-mac")?;
    let b_next = engine::wire::parse_mac(b_next_mac).context("--b-next-mac")?;
    let _fwd = XdpFwd::attach(&[
        Way {
            ifindex: ai,
            egress_ifindex: bi,
            dst: b_next,
            src: bm,
        },
        Way {
            ifindex: bi,
            egress_ifindex: ai,
            dst: a_next,
            src: am,
        },
    ])
    .with_context(|| format!("xdp-fwd between {a} and {b}"))?;
    if let Some(f) = ready_file {
        std::fs::write(&f, "ready\n").with_context(|| format!("writing {}", f.display()))?;
    }
    eprintln!("xdp-fwd: forwarding {a} <-> {b}");
    let t0 = Instant::now();
    while seconds <= 0.0 || t0.elapsed().as_secs_f64() < seconds {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn sink(ifname: &str, warmup: f64, seconds: f64) -> Result<()> {
    let y = format!(
        "ports:\n  - {{name: sink, interface: {ifname}}}\nxdp: {{fail_mode: closed, failsafe: []}}\n"
    );
    let cfg = Config::from_yaml(&y, "peer-gen sink", std::path::Path::new("."))?;
    let ifindex = sys::if_nametoindex(ifname)?;
    let (mut prog, mut maps) = bpf::load()?;
    maps.sync(&engine::state::build::xdp_contents(&cfg.state()))?;
    maps.set_port(ifindex, 0)?;
    prog.attach(ifname, ifindex, AttachMode::Native, None)?;
    let count = |m: &bpf::XdpMaps| -> Result<u64> { Ok(m.counters()?[XdpCounter::Rx as usize]) };
    std::thread::sleep(Duration::from_secs_f64(warmup));
    let c0 = count(&maps)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let c1 = count(&maps)?;
    let secs = t0.elapsed().as_secs_f64();
    prog.detach_all();
    let n = c1 - c0;
    println!(
        "{}",
        serde_json::json!({"delivered": n, "seconds": secs, "mpps": n as f64 / secs / 1e6})
    );
    Ok(())
}
