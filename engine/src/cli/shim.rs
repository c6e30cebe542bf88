//! `sluice felix-shim`: the data-plane driver Felix starts
//! (`DataplaneDriver`; `shared/spec/felix.md` section 1). Felix restarts
//! often and kills its driver when it stops, and the data plane must not
//! stop with it, so the driver is only a relay: it takes Felix's pipes
//! (fd 3 carries `ToDataplane` frames in, fd 4 takes `FromDataplane`
//! frames back), connects to the long-lived `sluice run`'s Felix socket
//! and copies bytes both ways until either side closes. It neither
//! decodes nor buffers messages, so it adds no latency and cannot block
//! Felix on sluice's work.
//!
//! `--record FILE` also writes the stream from Felix to FILE, whole frames
//! in the same framing (a frame cut by the end of the stream is left
//! out), so a session can be replayed.
//!
//! Exit status: 0 when Felix closed its end, 1 when `sluice run` closed
//! the session (stopped, or a newer session replaced it) or could not be
//! reached, 2 when the pipes are not there.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use crossbeam::channel;

use crate::io::sys::inherited_fd;
use crate::sources::config::default_felix_socket;
use crate::sources::felix::{FrameDecoder, DEFAULT_MAX_FRAME};

/// `sluice felix-shim`.
#[derive(Debug, Args)]
pub struct ShimArgs {
    /// `sluice run`'s Felix socket (its config's `felix.socket`).
    #[arg(long, default_value_os_t = default_felix_socket())]
    pub socket: PathBuf,
    /// Also write the ToDataplane stream relayed to FILE, frame for frame.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Seconds to keep trying while `sluice run` is not listening yet.
    #[arg(long, default_value_t = 30)]
    pub connect_timeout: u64,
}

fn fail(code: i32, msg: impl std::fmt::Display) -> i32 {
    eprintln!("sluice felix-shim: {msg}");
    code
}

/// Connects, retrying every 200 ms for up to `limit`.
fn connect(path: &PathBuf, limit: Duration) -> io::Result<UnixStream> {
    let t0 = Instant::now();
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) if t0.elapsed() >= limit => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Writes the whole frames of what Felix sent to a file.
struct Recorder {
    file: File,
    dec: FrameDecoder,
}

impl Recorder {
    /// Takes bytes as relayed; false once recording stopped (an error,
    /// reported).
    fn take(&mut self, bytes: &[u8]) -> bool {
        self.dec.push(bytes);
        loop {
            match self.dec.next_frame() {
                Ok(None) => return true,
                Ok(Some(f)) => {
                    let framed = crate::sources::felix::codec::frame(f);
                    if let Err(e) = self.file.write_all(&framed) {
                        eprintln!("sluice felix-shim: --record: {e}; recording stopped");
                        return false;
                    }
                }
                Err(e) => {
                    eprintln!("sluice felix-shim: --record: {e}; recording stopped");
                    return false;
                }
            }
        }
    }
}

/// How the relay ended.
enum End {
    FelixClosed,
    SluiceClosed,
    Failed(String),
}

/// Runs `sluice felix-shim`; returns the exit status.
pub fn shim(a: ShimArgs) -> i32 {
    let pipes = (inherited_fd(3), inherited_fd(4));
    let (from_felix, to_felix) = match pipes {
        (Ok(i), Ok(o)) => (File::from(i), File::from(o)),
        (Err(e), _) | (_, Err(e)) => {
            return fail(
                2,
                format!(
                    "{e}: Felix starts its data-plane driver with its pipes on fd 3 \
                     (to the driver) and fd 4 (back to Felix)"
                ),
            )
        }
    };
    let mut recorder = match &a.record {
        Some(p) => match File::create(p) {
            Ok(file) => Some(Recorder {
                file,
                dec: FrameDecoder::new(DEFAULT_MAX_FRAME),
            }),
            Err(e) => return fail(2, format!("--record {}: {e}", p.display())),
        },
        None => None,
    };
    let up = match connect(&a.socket, Duration::from_secs(a.connect_timeout)) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                1,
                format!(
                    "{}: {e} (is `sluice run` running with a felix: section?)",
                    a.socket.display()
                ),
            )
        }
    };
    let down = match up.try_clone() {
        Ok(s) => s,
        Err(e) => return fail(1, e),
    };
    let (tx, rx) = channel::bounded::<End>(2);
    let tx2 = tx.clone();
    // Felix → sluice.
    let spawned = std::thread::Builder::new()
        .name("shim-up".into())
        .spawn(move || {
            let (mut from_felix, mut up) = (from_felix, up);
            let mut buf = vec![0u8; 256 << 10];
            let end = loop {
                let n = match from_felix.read(&mut buf) {
                    Ok(0) => {
                        let _ = up.shutdown(std::net::Shutdown::Write);
                        break End::FelixClosed;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => break End::Failed(format!("reading fd 3: {e}")),
                };
                if let Err(e) = up.write_all(&buf[..n]) {
                    break match e.kind() {
                        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                            End::SluiceClosed
                        }
                        _ => End::Failed(format!("writing to the Felix socket: {e}")),
                    };
                }
                if let Some(r) = &mut recorder {
                    if !r.take(&buf[..n]) {
                        recorder = None;
                    }
                }
            };
            let _ = tx.send(end);
        })
        .and_then(|_| {
            // sluice → Felix.
            std::thread::Builder::new()
                .name("shim-down".into())
                .spawn(move || {
                    // A plain read/write loop: `io::copy` splices a
                    // socket into a pipe, which holds small messages back
                    // until the socket closes.
                    let (mut down, mut to_felix) = (down, to_felix);
                    let mut buf = vec![0u8; 64 << 10];
                    let end = loop {
                        let n = match down.read(&mut buf) {
                            Ok(0) => break End::SluiceClosed,
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => break End::Failed(format!("reading the Felix socket: {e}")),
                        };
                        match to_felix.write_all(&buf[..n]) {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                                break End::FelixClosed
                            }
                            Err(e) => break End::Failed(format!("writing fd 4: {e}")),
                        }
                    };
                    let _ = tx2.send(end);
                })
        });
    if let Err(e) = spawned {
        return fail(1, format!("starting the relay: {e}"));
    }
    match rx.recv() {
        Ok(End::FelixClosed) => 0,
        Ok(End::SluiceClosed) => fail(
            1,
            "sluice run closed the session (stopped, or a newer session replaced this one)",
        ),
        Ok(End::Failed(e)) => fail(1, e),
        Err(_) => fail(1, "the relay stopped"),
    }
}
