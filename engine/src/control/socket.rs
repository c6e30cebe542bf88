//! The control socket (`control.socket`, mode 0600) and the `/metrics`
//! HTTP listener: small blocking servers on their own threads, far from the
//! fast path. The control protocol is one JSON request line, one JSON
//! response line: `{"cmd": "stats"}` → `{"ok": true, ...}` or
//! `{"ok": false, "error": "..."}`.

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

/// Serves the control socket at `path`, calling `handle` for each request.
pub fn serve_control<F>(path: &Path, handle: F) -> Result<Server, ControlError>
where
    F: Fn(&Value) -> Value + Send + 'static,
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
    let thread = std::thread::Builder::new()
        .name("sluice-control".into())
        .spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = answer(stream, &handle);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
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

fn answer<F: Fn(&Value) -> Value>(stream: UnixStream, handle: &F) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?)
        .take(1 << 20)
        .read_line(&mut line)?;
    let reply = match serde_json::from_str::<Value>(&line) {
        Ok(v) => handle(&v),
        Err(e) => json!({"ok": false, "error": format!("request is not JSON: {e}")}),
    };
    let mut w = stream;
    writeln!(w, "{reply}")?;
    w.flush()
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

/// Serves `GET /metrics` (Prometheus text) on `addr`, rendering with
/// `render` per scrape.
pub fn serve_metrics<F>(addr: std::net::SocketAddr, render: F) -> Result<Server, ControlError>
where
    F: Fn() -> String + Send + 'static,
{
    let err = |source| ControlError::Metrics {
        addr: addr.to_string(),
        source,
    };
    let listener = std::net::TcpListener::bind(addr).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = std::thread::Builder::new()
        .name("sluice-metrics".into())
        .spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        let mut buf = [0u8; 2048];
                        let n = stream.read(&mut buf).unwrap_or(0);
                        let req = String::from_utf8_lossy(&buf[..n]);
                        let (status, body, ctype) = if req.starts_with("GET /metrics") || req.starts_with("GET / ") {
                            ("200 OK", render(), "text/plain; version=0.0.4")
                        } else {
                            ("404 Not Found", "not found: try /metrics\n".to_string(), "text/plain")
                        };
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
        .map_err(err)?;
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
        let _srv = serve_metrics(addr, || "sluice_up 1\n".into()).unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.ends_with("sluice_up 1\n"));
    }
}
