//! The control socket (`control.socket`, mode 0600) and the `/metrics`
//! HTTP listener, on their own threads, far from the fast path. Each
//! serves clients concurrently: a slow or idle client never delays
//! another. The control protocol is one JSON request line, one JSON
//! response line: `{"cmd": "stats"}` → `{"ok": true, ...}` or
//! `{"ok": false, "error": "..."}`; each connection gets a thread of its
//! own (at most [`MAX_CLIENTS`] at once), reads the line whole, however it
//! was split, and answers. `/metrics` is served by `tiny_http` (whole
//! requests, HTTP/1.1 keep-alive, a reader thread per connection).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use thiserror::Error;

/// Control-plane I/O errors, naming what failed.
#[derive(Debug, Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
    #[error("metrics listener {addr}: {source}")]
    Metrics {
        addr: String,
        source: std::io::Error,
    },
    #[error("control socket {path}: {msg}")]
    Protocol { path: String, msg: String },
}

/// A running server; stops (and removes its socket file) on drop.
#[derive(Debug)]
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Most control clients served at once; more are answered "busy".
pub const MAX_CLIENTS: usize = 32;

/// Serves the control socket at `path`, calling `handle` for each request.
pub fn serve_control<F>(path: &Path, handle: F) -> Result<Server, ControlError>
where
    F: Fn(&Value) -> Value + Send + Sync + 'static,
{
    serve_control_streaming(path, move |v, out| {
        writeln!(out, "{}", handle(v))?;
        out.flush()
    })
}

/// [`serve_control`] whose `handle` writes the answer itself: one JSON
/// line, or (`ctl trace`, `ctl capture`) a JSON line and then a stream,
/// until it returns.
pub fn serve_control_streaming<F>(path: &Path, handle: F) -> Result<Server, ControlError>
where
    F: Fn(&Value, &mut dyn Write) -> std::io::Result<()> + Send + Sync + 'static,
{
    let err = |source| ControlError::Socket {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    // A stale socket from a previous run: remove it only if nobody answers.
    if path.exists() && UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let handle = Arc::new(handle);
    let clients = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let thread = std::thread::Builder::new()
        .name("sluice-control".into())
        .spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                            clients.fetch_sub(1, Ordering::AcqRel);
                            let _ = stream.set_nonblocking(false);
                            let mut w = stream;
                            let _ = writeln!(
                                w,
                                "{}",
                                json!({"ok": false, "error": format!("busy: {MAX_CLIENTS} clients are being served")})
                            );
                            continue;
                        }
                        let (h, c) = (handle.clone(), clients.clone());
                        let spawned = std::thread::Builder::new()
                            .name("sluice-control-client".into())
                            .spawn(move || {
                                let _ = answer(stream, &*h);
                                c.fetch_sub(1, Ordering::AcqRel);
                            });
                        if spawned.is_err() {
                            clients.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
        .map_err(err)?;
    Ok(Server {
        stop,
        thread: Some(thread),
        path: Some(path.to_path_buf()),
    })
}

fn answer<F>(stream: UnixStream, handle: &F) -> std::io::Result<()>
where
    F: Fn(&Value, &mut dyn Write) -> std::io::Result<()>,
{
    stream.set_nonblocking(false)?;
    // Its own thread: an idle client only holds that thread, for this long.
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?)
        .take(1 << 20)
        .read_line(&mut line)?;
    let mut w = stream;
    match serde_json::from_str::<Value>(&line) {
        Ok(v) => handle(&v, &mut w),
        Err(e) => {
            let reply = json!({"ok": false, "error": format!("request is not JSON: {e}")});
            writeln!(w, "{reply}")?;
            w.flush()
        }
    }
}

/// Sends one request to the control socket at `path` and returns the reply.
pub fn request(path: &Path, req: &Value) -> Result<Value, ControlError> {
    let p = path.display().to_string();
    let mut s = UnixStream::connect(path).map_err(|source| ControlError::Socket {
        path: p.clone(),
        source,
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|source| ControlError::Socket {
            path: p.clone(),
            source,
        })?;
    writeln!(s, "{req}").map_err(|source| ControlError::Socket {
        path: p.clone(),
        source,
    })?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|source| ControlError::Socket {
            path: p.clone(),
            source,
        })?;
    serde_json::from_str(&line).map_err(|e| ControlError::Protocol {
        path: p,
        msg: format!("bad reply: {e}"),
    })
}

/// Sends a request whose answer is a stream (`trace`, `capture`): the
/// first line (`{"ok": ...}`) and the connection to read the rest from
/// (no read timeout: the stream ends when the server's limits say).
pub fn request_stream(
    path: &Path,
    req: &Value,
) -> Result<(Value, BufReader<UnixStream>), ControlError> {
    let p = path.display().to_string();
    let io = |source| ControlError::Socket {
        path: p.clone(),
        source,
    };
    let mut s = UnixStream::connect(path).map_err(io)?;
    writeln!(s, "{req}").map_err(io)?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(io)?;
    let v = serde_json::from_str(&line).map_err(|e| ControlError::Protocol {
        path: p.clone(),
        msg: format!("bad reply: {e}"),
    })?;
    Ok((v, r))
}

/// Serves `GET /metrics` (OpenMetrics text, [`super::metrics::CONTENT_TYPE`])
/// on `addr`, rendering with `render` per scrape.
pub fn serve_metrics<F>(addr: std::net::SocketAddr, render: F) -> Result<Server, ControlError>
where
    F: Fn() -> Option<String> + Send + Sync + 'static,
{
    let server = tiny_http::Server::http(addr).map_err(|e| ControlError::Metrics {
        addr: addr.to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let render = Arc::new(render);
    let thread = std::thread::Builder::new()
        .name("sluice-metrics".into())
        .spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let req = match server.recv_timeout(Duration::from_millis(100)) {
                    Ok(Some(r)) => r,
                    Ok(None) => continue,
                    Err(_) => break,
                };
                let path = req.url().split('?').next().unwrap_or("");
                let ok =
                    *req.method() == tiny_http::Method::Get && matches!(path, "/metrics" | "/");
                let (code, body, ctype) = if !ok {
                    (
                        404,
                        "not found: try GET /metrics\n".to_string(),
                        "text/plain",
                    )
                } else if let Some(body) = render() {
                    (200, body, super::metrics::CONTENT_TYPE)
                } else {
                    // The engine did not answer in time: no exposition
                    // rather than an empty (invalid) one.
                    (503, "sluice is not answering\n".to_string(), "text/plain")
                };
                let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], ctype.as_bytes());
                let mut resp = tiny_http::Response::from_string(body).with_status_code(code);
                if let Ok(h) = header {
                    resp = resp.with_header(h);
                }
                // A client gone mid-answer is its own loss.
                let _ = req.respond(resp);
            }
        })
        .map_err(|source| ControlError::Metrics {
            addr: addr.to_string(),
            source,
        })?;
    Ok(Server {
        stop,
        thread: Some(thread),
        path: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_round_trip_and_permissions() {
        let dir = std::env::temp_dir().join(format!("sluice-ctl-{}", std::process::id()));
        let path = dir.join("control.sock");
        let srv = serve_control(&path, |v| json!({"ok": true, "echo": v["cmd"]})).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let r = request(&path, &json!({"cmd": "stats"})).unwrap();
        assert_eq!(r, json!({"ok": true, "echo": "stats"}));
        drop(srv);
        assert!(!path.exists(), "socket removed on stop");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn metrics_over_http() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let _srv = serve_metrics(addr, || Some("sluice_up 1\n".into())).unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        let ctype = out
            .lines()
            .find_map(|l| l.strip_prefix("Content-Type: "))
            .unwrap_or_else(|| panic!("no Content-Type: {out}"));
        assert_eq!(ctype, super::super::metrics::CONTENT_TYPE);
        assert!(out.ends_with("sluice_up 1\n"));
    }

    /// Ten idle clients on each server delay neither a scrape nor a
    /// control request; a request split over two writes is read whole.
    #[test]
    fn idle_clients_delay_no_one() {
        let dir = std::env::temp_dir().join(format!("sluice-idle-{}", std::process::id()));
        let path = dir.join("control.sock");
        let _ctl = serve_control(&path, |v| json!({"ok": true, "echo": v["cmd"]})).unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let _m = serve_metrics(addr, || Some("sluice_up 1\n".into())).unwrap();
        let idle_ctl: Vec<UnixStream> = (0..10)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let idle_http: Vec<std::net::TcpStream> = (0..10)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                // Half a request, never finished.
                write!(s, "GET /met").unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let t0 = std::time::Instant::now();
        let r = request(&path, &json!({"cmd": "stats"})).unwrap();
        assert_eq!(r["echo"], "stats");
        let ctl_took = t0.elapsed();
        let t0 = std::time::Instant::now();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        // Split over two writes.
        write!(s, "GET /metr").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        write!(s, "ics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let scrape_took = t0.elapsed();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.ends_with("sluice_up 1\n"), "{out}");
        assert!(
            ctl_took < Duration::from_millis(50),
            "ctl took {ctl_took:?}"
        );
        assert!(
            scrape_took < Duration::from_millis(50),
            "scrape took {scrape_took:?}"
        );
        drop((idle_ctl, idle_http));
        let _ = std::fs::remove_dir_all(dir);
    }
}
