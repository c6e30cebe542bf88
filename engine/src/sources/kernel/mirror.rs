//! The mirror's thread: follows the kernel's notifications and hands the
//! control thread one updated [`KernelView`] per burst of changes.
//!
//! Start: the notification socket subscribes first, then a second socket
//! dumps links, addresses, routes and neighbours, so no change falls
//! between the dump and the notifications (a change the dump already
//! shows is applied again, which changes nothing: see [`KernelView`]).
//! Coalescing: the first change of a burst starts a window; the view is
//! handed over when the kernel has been quiet for [`QUIET`] or the window
//! reaches `coalesce`, whichever comes first — a route flap of a thousand
//! messages is one table swap, a single `ip route add` is handed over
//! within about a millisecond. A notification socket that overflowed
//! (`ENOBUFS`: changes were lost) is answered with a fresh dump.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::Sender;

use super::netlink::{Kinds, Netlink};
use super::view::KernelView;

/// How long the kernel must be quiet before a burst is handed over.
pub const QUIET: Duration = Duration::from_millis(1);

/// A coalesced change of the kernel's state.
#[derive(Debug)]
pub struct Update {
    pub view: KernelView,
    /// When the first change of the burst was read.
    pub first: Instant,
    /// Messages applied since the last update.
    pub events: u64,
    /// Totals since the mirror started.
    pub malformed: u64,
    pub resyncs: u64,
}

/// The running mirror; stops (and joins its thread) when dropped.
#[derive(Debug)]
pub struct Mirror {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Dumps the kernel's state for `kinds` (links and addresses always).
pub fn dump(kinds: Kinds) -> io::Result<(KernelView, u64)> {
    let mut n = Netlink::open()?;
    let b = n.dump(kinds)?;
    let mut v = KernelView::default();
    for e in b.events {
        v.apply(e);
    }
    Ok((v, b.malformed))
}

impl Mirror {
    /// Subscribes, dumps the current state (returned) and starts the
    /// thread, which sends an [`Update`] on `tx` per burst of changes
    /// (bursts last at most `coalesce`).
    pub fn start(
        kinds: Kinds,
        coalesce: Duration,
        tx: Sender<Update>,
    ) -> io::Result<(KernelView, Mirror)> {
        let idle = Duration::from_millis(100);
        let mut events = Netlink::subscribe(kinds, idle)?;
        let (view, malformed) = dump(kinds)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let mut v = view.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-kernel".into())
            .spawn(move || {
                let mut st = Update {
                    view: KernelView::default(),
                    first: Instant::now(),
                    events: 0,
                    malformed,
                    resyncs: 0,
                };
                let mut pending: Option<Instant> = None;
                let mut short = false;
                while !flag.load(Ordering::Relaxed) {
                    // Short reads while a burst is open, long ones idle.
                    if short != pending.is_some() {
                        short = pending.is_some();
                        let _ = events.set_timeout(if short { QUIET } else { idle });
                    }
                    match events.read() {
                        Ok(b) => {
                            st.malformed += b.malformed;
                            if !b.events.is_empty() {
                                pending.get_or_insert_with(Instant::now);
                                st.events += b.events.len() as u64;
                                for e in b.events {
                                    v.apply(e);
                                }
                            }
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            if let Some(first) = pending.take() {
                                if send(&tx, &v, first, &mut st).is_err() {
                                    return;
                                }
                            }
                            continue;
                        }
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                            // Notifications were lost: start again from a
                            // dump.
                            st.resyncs += 1;
                            match dump(kinds) {
                                Ok((fresh, m)) => {
                                    v = fresh;
                                    st.malformed += m;
                                    pending.get_or_insert_with(Instant::now);
                                }
                                Err(e) => {
                                    tracing::warn!("kernel mirror: dump after overflow: {e}");
                                    std::thread::sleep(idle);
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!("kernel mirror: netlink: {e}");
                            std::thread::sleep(idle);
                        }
                    }
                    if let Some(first) = pending {
                        if first.elapsed() >= coalesce {
                            pending = None;
                            if send(&tx, &v, first, &mut st).is_err() {
                                return;
                            }
                        }
                    }
                }
            })?;
        Ok((
            view,
            Mirror {
                stop,
                thread: Some(thread),
            },
        ))
    }
}

fn send(tx: &Sender<Update>, v: &KernelView, first: Instant, st: &mut Update) -> Result<(), ()> {
    let u = Update {
        view: v.clone(),
        first,
        events: st.events,
        malformed: st.malformed,
        resyncs: st.resyncs,
    };
    st.events = 0;
    tx.send(u).map_err(|_| ())
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
