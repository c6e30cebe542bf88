//! The Felix socket of `sluice run`: one session at a time, each on its
//! own threads, reporting to the control thread as [`Event`]s.
//!
//! - The **listener** thread accepts connections (from `sluice
//!   felix-shim`) on the socket; a new connection replaces the current
//!   session (its socket is shut down, its threads end).
//! - A session's **reader** thread only reads: bytes into the
//!   [`FrameDecoder`], frames decoded, messages queued to the session
//!   thread. It never waits on anything else, so Felix's writes (through
//!   the shim) never stall on sluice's work.
//! - The **session** thread builds the [`FelixModel`]. Until `InSync` the
//!   model only grows; at `InSync` the control thread gets it whole
//!   ([`Update::initial`]); after that, what arrives together is one
//!   update: sent when the stream has been quiet for [`Options::quiet`]
//!   or the batch is [`Options::coalesce`] old, whichever is first.
//! - The **writer** thread writes what the control thread sends back
//!   ([`Outbox`]: `ProcessStatusUpdate`, endpoint status) so a slow
//!   reader on Felix's side never blocks the control thread.
//!
//! A frame over the cap, a message that does not decode or one the model
//! cannot take ([`Violation`]) ends the session with the error in
//! [`Event::Ended`]; the engine goes on with the tables it has.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender, TrySendError};

use super::codec::{self, FrameDecoder};
use super::model::{self, Applied, FelixModel};
use super::proto::{from_dataplane, FromDataplane, ToDataplane};

/// How the Felix socket runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub socket: PathBuf,
    /// The longest frame accepted (bytes).
    pub max_frame: u64,
    /// After `InSync`: a batch is handed over once the stream has been
    /// quiet this long...
    pub quiet: Duration,
    /// ... or once its first message is this old.
    pub coalesce: Duration,
}

impl Options {
    /// The socket at `socket` with the default coalescing (2 ms quiet, at
    /// most 20 ms).
    pub fn new(socket: PathBuf, max_frame: u64) -> Options {
        Options {
            socket,
            max_frame,
            quiet: Duration::from_millis(2),
            coalesce: Duration::from_millis(20),
        }
    }
}

/// A session's message counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames read (every message, known or not).
    pub messages: u64,
    pub bytes: u64,
    /// Messages by type (the `.proto`'s names).
    pub by_type: BTreeMap<&'static str, u64>,
    /// Messages whose payload this sluice does not know (a newer Felix).
    pub unknown: u64,
    /// Removes of objects never sent.
    pub ignored_removes: u64,
    /// Updates handed to the control thread.
    pub updates: u64,
}

/// What the Felix socket tells the control thread.
#[derive(Debug)]
pub enum Event {
    /// A session started; `out` sends messages back to Felix.
    Connected { session: u64, out: Outbox },
    /// The model changed (the first one of a session: at `InSync`).
    Update(Box<Update>),
    /// A session is over: Felix closed the stream, a new session replaced
    /// it, or `error` says what was wrong.
    Ended {
        session: u64,
        reason: String,
        error: bool,
        stats: Stats,
    },
}

/// A model to apply.
#[derive(Debug)]
pub struct Update {
    pub session: u64,
    pub model: FelixModel,
    /// The snapshot at `InSync` (else a batch of changes after it).
    pub initial: bool,
    /// When the batch's first message was read.
    pub first: Instant,
    /// Messages in this batch.
    pub batch: u64,
    pub stats: Stats,
}

/// Sends `FromDataplane` messages to the session's writer without ever
/// blocking: when its queue is full (Felix is not reading) the message is
/// dropped and counted.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: Sender<from_dataplane::Payload>,
    dropped: Arc<AtomicU64>,
}

impl Outbox {
    /// An outbox over a channel holding up to `cap` messages, and the
    /// channel's receiving end (what the session's writer drains; a test
    /// reads it).
    pub fn channel(cap: usize) -> (Outbox, Receiver<from_dataplane::Payload>) {
        let (tx, rx) = channel::bounded(cap);
        let out = Outbox {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (out, rx)
    }

    /// Queues one message; false if it was dropped (queue full or session
    /// over).
    pub fn send(&self, p: from_dataplane::Payload) -> bool {
        match self.tx.try_send(p) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The running listener; stops (ending the current session) when dropped.
#[derive(Debug)]
pub struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

/// Binds `path` (replacing a stale socket file, creating its directory).
fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            // A socket file nobody answers on is left from a previous run;
            // anything else there is not sluice's to remove.
            use std::os::unix::fs::FileTypeExt;
            if !std::fs::symlink_metadata(path)?.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way",
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process is listening there",
                ));
            }
            std::fs::remove_file(path)?;
            UnixListener::bind(path)
        }
        r => r,
    }
}

impl Listener {
    /// Listens on `o.socket`; events go to `tx`.
    pub fn start(o: Options, tx: Sender<Event>) -> io::Result<Listener> {
        let l = bind(&o.socket).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("felix socket {}: {e}", o.socket.display()),
            )
        })?;
        l.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = o.socket.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-felix".into())
            .spawn(move || accept_loop(&l, &o, &tx, &flag))?;
        Ok(Listener {
            stop,
            thread: Some(thread),
            path,
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The current session, as the listener holds it.
struct Current {
    stream: UnixStream,
    replaced: Arc<AtomicBool>,
}

fn accept_loop(l: &UnixListener, o: &Options, tx: &Sender<Event>, stop: &AtomicBool) {
    let mut next = 1u64;
    let mut current: Option<Current> = None;
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((stream, _)) => {
                if let Some(c) = current.take() {
                    c.replaced.store(true, Ordering::Relaxed);
                    let _ = c.stream.shutdown(std::net::Shutdown::Both);
                }
                let id = next;
                next += 1;
                match start_session(id, stream, o, tx) {
                    Ok(c) => current = Some(c),
                    Err(e) => tracing::warn!("felix session {id}: not started: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!("felix socket: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    if let Some(c) = current {
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// What the reader hands the session thread.
enum Msg {
    Message(Box<ToDataplane>, u64),
    /// The stream ended: `Ok` between frames, `Err` with what was wrong.
    End(Result<(), String>),
}

fn start_session(
    id: u64,
    stream: UnixStream,
    o: &Options,
    tx: &Sender<Event>,
) -> io::Result<Current> {
    stream.set_nonblocking(false)?;
    let replaced = Arc::new(AtomicBool::new(false));
    let (mtx, mrx) = channel::unbounded::<Msg>();
    let (otx, orx) = channel::bounded::<from_dataplane::Payload>(64);
    let over = Arc::new(AtomicBool::new(false));
    let rd = stream.try_clone()?;
    let max = o.max_frame;
    std::thread::Builder::new()
        .name(format!("sluice-felix-rd{id}"))
        .spawn(move || read_loop(rd, max, &mtx))?;
    let wr = stream.try_clone()?;
    let flag = over.clone();
    std::thread::Builder::new()
        .name(format!("sluice-felix-wr{id}"))
        .spawn(move || write_loop(wr, &orx, &flag))?;
    let ctl = stream.try_clone()?;
    let (o2, tx2, rep) = (o.clone(), tx.clone(), replaced.clone());
    std::thread::Builder::new()
        .name(format!("sluice-felix-s{id}"))
        .spawn(move || {
            session_loop(id, &mrx, &o2, &tx2, &rep, &ctl);
            over.store(true, Ordering::Relaxed);
        })?;
    let _ = tx.send(Event::Connected {
        session: id,
        out: Outbox {
            tx: otx,
            dropped: Arc::new(AtomicU64::new(0)),
        },
    });
    Ok(Current { stream, replaced })
}

fn read_loop(mut s: UnixStream, max: u64, tx: &Sender<Msg>) {
    let mut dec = FrameDecoder::new(max);
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.send(Msg::End(Err(format!("reading: {e}"))));
                return;
            }
        };
        if n == 0 {
            let _ = tx.send(Msg::End(dec.finish().map_err(|e| e.to_string())));
            return;
        }
        dec.push(&buf[..n]);
        loop {
            // The index of the frame about to come out.
            let index = dec.frames();
            let decoded = match dec.next_frame() {
                Ok(None) => break,
                Ok(Some(f)) => {
                    let len = f.len() as u64;
                    codec::decode_to_dataplane(index, f).map(|m| (m, len))
                }
                Err(e) => {
                    let _ = tx.send(Msg::End(Err(e.to_string())));
                    return;
                }
            };
            match decoded {
                Ok((m, len)) => {
                    if tx.send(Msg::Message(Box::new(m), len)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Msg::End(Err(e.to_string())));
                    return;
                }
            }
        }
    }
}

fn write_loop(mut s: UnixStream, rx: &Receiver<from_dataplane::Payload>, over: &AtomicBool) {
    let mut seq = 0u64;
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(p) => {
                let m = FromDataplane {
                    sequence_number: seq,
                    payload: Some(p),
                };
                seq += 1;
                if codec::write_message(&mut s, &m).is_err() {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) if !over.load(Ordering::Relaxed) => {}
            Err(_) => return,
        }
    }
}

fn session_loop(
    id: u64,
    rx: &Receiver<Msg>,
    o: &Options,
    tx: &Sender<Event>,
    replaced: &AtomicBool,
    stream: &UnixStream,
) {
    let mut m = FelixModel::default();
    let mut st = Stats::default();
    // The first message of the batch not yet handed over, and its size.
    let mut pending: Option<(Instant, u64)> = None;
    let flush = |m: &FelixModel, st: &mut Stats, initial: bool, first: Instant, batch: u64| {
        st.updates += 1;
        let _ = tx.send(Event::Update(Box::new(Update {
            session: id,
            model: m.clone(),
            initial,
            first,
            batch,
            stats: st.clone(),
        })));
    };
    let end = |st: &Stats, reason: String, error: bool| {
        let _ = tx.send(Event::Ended {
            session: id,
            reason,
            error,
            stats: st.clone(),
        });
    };
    loop {
        let wait = match pending {
            Some((first, _)) => o.quiet.min(o.coalesce.saturating_sub(first.elapsed())),
            None => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(Msg::Message(msg, len)) => {
                st.messages += 1;
                st.bytes += len;
                let Some(p) = msg.payload else {
                    st.unknown += 1;
                    continue;
                };
                let kind = model::kind(&p);
                *st.by_type.entry(kind).or_default() += 1;
                let was_in_sync = m.in_sync;
                match m.apply(p) {
                    Ok(Applied::IgnoredRemove) => st.ignored_removes += 1,
                    Ok(Applied::InSync) if !was_in_sync => {
                        // The snapshot is complete: hand it over whole
                        // (with anything pending: there is none before).
                        let n = st.messages;
                        flush(&m, &mut st, true, Instant::now(), n);
                        pending = None;
                    }
                    Ok(_) if m.in_sync => {
                        let p = pending.get_or_insert((Instant::now(), 0));
                        p.1 += 1;
                    }
                    Ok(_) => {}
                    Err(v) => {
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                        end(
                            &st,
                            format!(
                                "protocol violation: message {} ({kind}): {v}",
                                st.messages - 1
                            ),
                            true,
                        );
                        return;
                    }
                }
            }
            Ok(Msg::End(r)) => {
                // What arrived whole before the end still counts.
                if let Some((first, n)) = pending.take() {
                    flush(&m, &mut st, false, first, n);
                }
                let (reason, error) = match r {
                    _ if replaced.load(Ordering::Relaxed) => {
                        ("replaced by a new session".to_string(), false)
                    }
                    Ok(()) => ("Felix closed the stream".to_string(), false),
                    Err(e) => (e, true),
                };
                end(&st, reason, error);
                return;
            }
            // Quiet for `quiet`, or the batch reached `coalesce`.
            Err(RecvTimeoutError::Timeout) => {
                if let Some((first, n)) = pending.take() {
                    flush(&m, &mut st, false, first, n);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                end(&st, "reader stopped".into(), true);
                return;
            }
        }
        // A stream that never pauses is still handed over every `coalesce`.
        if let Some((first, n)) = pending {
            if first.elapsed() >= o.coalesce {
                flush(&m, &mut st, false, first, n);
                pending = None;
            }
        }
    }
}

/// `t` as an RFC 3339 UTC timestamp to the second (`2026-01-02T03:04:05Z`),
/// the form Felix's own data plane reports.
pub fn iso8601(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use std::io::Write;

    use super::super::proto::{self, to_dataplane::Payload};
    use super::*;

    #[test]
    fn timestamps() {
        let at = |s: u64| iso8601(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_790_000_000), "2026-09-21T14:13:20Z");
    }

    fn send(s: &mut UnixStream, seq: u64, p: Payload) {
        let m = ToDataplane {
            sequence_number: seq,
            payload: Some(p),
        };
        s.write_all(&codec::encode(&m)).unwrap();
    }

    fn next(rx: &Receiver<Event>) -> Event {
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn sessions_build_until_in_sync_then_coalesce_and_replace() {
        let dir = std::env::temp_dir().join(format!("sluice-felix-{}", std::process::id()));
        let path = dir.join("felix.sock");
        let (tx, rx) = channel::unbounded();
        // A regular file in the way is refused, not removed.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, b"not a socket").unwrap();
        let (t2, _) = channel::unbounded();
        let e = Listener::start(Options::new(path.clone(), 1 << 20), t2).unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        std::fs::remove_file(&path).unwrap();
        let _l = Listener::start(Options::new(path.clone(), 1 << 20), tx).unwrap();
        let mut a = UnixStream::connect(&path).unwrap();
        let Event::Connected { session: 1, out } = next(&rx) else {
            panic!()
        };
        send(
            &mut a,
            0,
            Payload::ConfigUpdate(proto::ConfigUpdate::default()),
        );
        for i in 0..3 {
            send(
                &mut a,
                1 + i,
                Payload::IpsetUpdate(proto::IpSetUpdate {
                    id: format!("s{i}"),
                    members: vec!["10.0.0.1".into()],
                    r#type: 0,
                }),
            );
        }
        // An unknown payload (field 99) is counted, not an error.
        a.write_all(&codec::frame(&[0x9a, 0x06, 0])).unwrap();
        // Nothing is handed over before InSync.
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        send(&mut a, 5, Payload::InSync(proto::InSync {}));
        let Event::Update(u) = next(&rx) else {
            panic!()
        };
        assert!(u.initial && u.model.in_sync && u.model.configured);
        assert_eq!((u.model.ip_sets.len(), u.stats.unknown), (3, 1));
        // Two changes sent together: one update.
        let mut both = Vec::new();
        for (i, id) in ["s0", "s1"].into_iter().enumerate() {
            let m = ToDataplane {
                sequence_number: 6 + i as u64,
                payload: Some(Payload::IpsetRemove(proto::IpSetRemove { id: id.into() })),
            };
            both.extend(codec::encode(&m));
        }
        a.write_all(&both).unwrap();
        let Event::Update(u) = next(&rx) else {
            panic!()
        };
        assert!(!u.initial);
        assert_eq!((u.batch, u.model.ip_sets.len()), (2, 1));
        // Status goes back framed.
        assert!(out.send(from_dataplane::Payload::ProcessStatusUpdate(
            proto::ProcessStatusUpdate {
                iso_timestamp: "x".into(),
                uptime: 1.5
            }
        )));
        let mut r = codec::FrameReader::new(a.try_clone().unwrap(), 1 << 20);
        let f = r.next_frame().unwrap().unwrap();
        let back = codec::decode_from_dataplane(0, &f).unwrap();
        assert!(matches!(
            back.payload,
            Some(from_dataplane::Payload::ProcessStatusUpdate(p)) if p.uptime == 1.5
        ));
        // A second connection replaces the first.
        let mut b = UnixStream::connect(&path).unwrap();
        let mut ended = false;
        let mut connected = false;
        for _ in 0..2 {
            match next(&rx) {
                Event::Ended {
                    session: 1,
                    reason,
                    error: false,
                    ..
                } => {
                    assert!(reason.contains("replaced"), "{reason}");
                    ended = true;
                }
                Event::Connected { session: 2, .. } => connected = true,
                e => panic!("{e:?}"),
            }
        }
        assert!(ended && connected);
        // A frame over the cap ends that session with an error naming it.
        b.write_all(&(2u64 << 20).to_le_bytes()).unwrap();
        let Event::Ended {
            session: 2,
            reason,
            error: true,
            ..
        } = next(&rx)
        else {
            panic!()
        };
        assert!(reason.contains("over the limit"), "{reason}");
        // And a stream cut inside a frame is an error too.
        let mut c = UnixStream::connect(&path).unwrap();
        let _ = next(&rx);
        c.write_all(&[5, 0, 0, 0, 0, 0, 0, 0, 1, 2]).unwrap();
        drop(c);
        let Event::Ended {
            session: 3,
            reason,
            error: true,
            ..
        } = next(&rx)
        else {
            panic!()
        };
        assert!(reason.contains("ended inside frame 0"), "{reason}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
