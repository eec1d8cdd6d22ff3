//! Optional Prometheus scrape endpoint: just enough HTTP/1.1 for `GET /metrics`.
//!
//! A scraper connects every few seconds, so one short-lived thread per connection (capped) is
//! plenty; every connection is answered once and closed (`Connection: close`), so there is no
//! keep-alive state to get wrong.
//!
//! Replies: `GET`/`HEAD /metrics` (query string ignored) → 200
//! `text/plain; version=0.0.4; charset=utf-8`; other paths → 404; other methods → 405 with
//! `Allow: GET, HEAD`; headers over [`MAX_HEADER_BYTES`] → 431; unparsable request line → 400;
//! over [`MAX_CONNECTIONS`] at once → 503; a render panic → 500.

use crate::accept::{self, Wake, WakePair};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

pub const MAX_HEADER_BYTES: usize = 8 * 1024;
pub const MAX_CONNECTIONS: usize = 8;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Produces the exposition text; called on a connection thread for every scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

pub struct MetricsServer {
    addr: SocketAddr,
    wake: UnixStream,
    accept: Option<JoinHandle<()>>,
}

/// Bind `addr` (port 0 picks a free one; see [`MetricsServer::local_addr`]) and serve.
pub fn serve_metrics(addr: SocketAddr, render: Render) -> Result<MetricsServer, io::Error> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let WakePair { rx, tx } = WakePair::new()?;
    let accept = thread::Builder::new()
        .name("metrics-accept".into())
        .spawn(move || accept_loop(listener, rx, render))?;
    Ok(MetricsServer {
        addr,
        wake: tx,
        accept: Some(accept),
    })
}

impl MetricsServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting and join the accept thread; in-flight scrapes finish on their own
    /// (bounded by the I/O timeout).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(t) = self.accept.take() {
            accept::signal(&mut self.wake);
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, wake: UnixStream, render: Render) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        match accept::wait(listener.as_raw_fd(), &wake) {
            Ok(Wake::Stop) => return,
            Ok(Wake::Listener) => {}
            Err(_) => {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        }
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                continue
            }
            Err(_) => {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::AcqRel);
            let mut s = stream;
            let _ = write_reply(&mut s, 503, "Service Unavailable", &[], b"busy\n", true);
            continue;
        }
        let render = Arc::clone(&render);
        let act = Arc::clone(&active);
        let spawned = thread::Builder::new()
            .name("metrics-conn".into())
            .spawn(move || {
                serve_conn(stream, render.as_ref());
                act.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Head {
    Request {
        method: String,
        target: String,
    },
    TooLarge,
    Malformed,
    /// Closed or timed out before a full header arrived.
    Gone,
}

/// Read up to the blank line ending the header, never more than `MAX_HEADER_BYTES`.
fn read_head<R: Read>(r: &mut R) -> Head {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_head_end(&buf) {
            return parse_request_line(buf.get(..end).unwrap_or_default());
        }
        if buf.len() >= MAX_HEADER_BYTES {
            return Head::TooLarge;
        }
        let room = MAX_HEADER_BYTES.saturating_sub(buf.len()).min(chunk.len());
        match r.read(&mut chunk[..room]) {
            Ok(0) => return Head::Gone,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Head::Gone,
        }
    }
}

/// Accepts bare `\n\n` too; only the request line matters here.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn parse_request_line(head: &[u8]) -> Head {
    let Ok(text) = std::str::from_utf8(head) else {
        return Head::Malformed;
    };
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if v.starts_with("HTTP/1.") => Head::Request {
            method: m.to_string(),
            target: t.to_string(),
        },
        _ => Head::Malformed,
    }
}

fn serve_conn(mut s: TcpStream, render: &(dyn Fn() -> String + Send + Sync)) {
    let (method, target) = match read_head(&mut s) {
        Head::Request { method, target } => (method, target),
        Head::TooLarge => {
            let _ = write_reply(
                &mut s,
                431,
                "Request Header Fields Too Large",
                &[],
                b"header too large\n",
                true,
            );
            return;
        }
        Head::Malformed => {
            let _ = write_reply(&mut s, 400, "Bad Request", &[], b"bad request\n", true);
            return;
        }
        Head::Gone => return,
    };
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let _ = write_reply(
            &mut s,
            405,
            "Method Not Allowed",
            &[("Allow", "GET, HEAD")],
            b"method not allowed\n",
            true,
        );
        return;
    }
    if path != "/metrics" {
        let _ = write_reply(
            &mut s,
            404,
            "Not Found",
            &[],
            b"not found; try /metrics\n",
            !head_only,
        );
        return;
    }
    match panic::catch_unwind(AssertUnwindSafe(render)) {
        Ok(text) => {
            let _ = write_reply(
                &mut s,
                200,
                "OK",
                &[("Content-Type", CONTENT_TYPE)],
                text.as_bytes(),
                !head_only,
            );
        }
        Err(_) => {
            let _ = write_reply(
                &mut s,
                500,
                "Internal Server Error",
                &[],
                b"metrics rendering failed\n",
                !head_only,
            );
        }
    }
}

fn write_reply<W: Write>(
    w: &mut W,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    with_body: bool,
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    let has_type = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !has_type {
        out.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    }
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    w.write_all(out.as_bytes())?;
    if with_body {
        w.write_all(body)?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn head_parsing() {
        let mut c = Cursor::new(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec());
        assert_eq!(
            read_head(&mut c),
            Head::Request {
                method: "GET".into(),
                target: "/metrics?x=1".into()
            }
        );
        assert_eq!(
            read_head(&mut Cursor::new(b"GET /\n\n".to_vec())),
            Head::Malformed
        );
        assert_eq!(
            read_head(&mut Cursor::new(b"GET / SPDY/9\r\n\r\n".to_vec())),
            Head::Malformed
        );
        assert_eq!(
            read_head(&mut Cursor::new(b"GET / HTTP/1.1\r\n".to_vec())),
            Head::Gone
        );
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEADER_BYTES * 2, b'a');
        assert_eq!(read_head(&mut Cursor::new(big)), Head::TooLarge);
    }

    #[test]
    fn reply_has_length_and_close() {
        let mut out = Vec::new();
        write_reply(
            &mut out,
            200,
            "OK",
            &[("Content-Type", CONTENT_TYPE)],
            b"abc",
            true,
        )
        .unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Content-Length: 3\r\n"));
        assert!(s.contains("Connection: close\r\n"));
        assert_eq!(s.matches("Content-Type").count(), 1);
        assert!(s.ends_with("\r\n\r\nabc"));
    }
}
