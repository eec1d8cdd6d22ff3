//! Optional Prometheus scrape endpoint: just enough HTTP/1.1 for `GET /metrics`.
//!
//! Every connection is answered once and closed (`Connection: close`), so there is no
//! keep-alive state to get wrong.
//!
//! One thread serves every connection from a `poll(2)` loop, with non-blocking sockets, so a
//! connection costs a buffer, not a thread, and a slow client holds up nobody: its bytes are
//! taken as they come. The limits, which the README documents and the tests check at their
//! boundaries:
//! - **Whole-request deadline** [`REQUEST_DEADLINE`] from accept to the last byte of the reply:
//!   reading the request and writing the reply together. A client trickling its header a byte
//!   at a time, or not reading its reply, is closed when it runs out, however often it sends
//!   (a per-read timeout would restart with every byte).
//! - **[`MAX_CONNECTIONS`] at once.** When all are in use, a new connection closes the oldest one
//!   still sending its request (or, if every one is being answered, the oldest one): a scraper
//!   sends its request as soon as it connects, so it is never the oldest for long, while clients
//!   that hold connections open to shut others out are the first to go.
//!
//! Replies: `GET`/`HEAD /metrics` (query string ignored) → 200
//! `text/plain; version=0.0.4; charset=utf-8`; other paths → 404; other methods → 405 with
//! `Allow: GET, HEAD`; headers over [`MAX_HEADER_BYTES`] → 431; unparsable request line → 400;
//! a render panic → 500.

use crate::accept::{self, WakePair};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Connections held at once, whatever state they are in.
pub const MAX_CONNECTIONS: usize = 64;
/// From accept to the last byte of the reply; a connection still open then is closed.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Produces the exposition text; called on the server thread for every scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

pub struct MetricsServer {
    addr: SocketAddr,
    wake: UnixStream,
    accept: Option<JoinHandle<()>>,
    open: Arc<AtomicUsize>,
}

/// Bind `addr` (port 0 picks a free one; see [`MetricsServer::local_addr`]) and serve.
pub fn serve_metrics(addr: SocketAddr, render: Render) -> Result<MetricsServer, io::Error> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let WakePair { rx, tx } = WakePair::new()?;
    let open = Arc::new(AtomicUsize::new(0));
    let loop_open = Arc::clone(&open);
    let accept = thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || serve_loop(listener, rx, render, loop_open))?;
    Ok(MetricsServer {
        addr,
        wake: tx,
        accept: Some(accept),
        open,
    })
}

impl MetricsServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections open now (after the last pass of the loop), for tests and diagnostics.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Stop and join the server thread; connections still open are closed (each would have
    /// been within [`REQUEST_DEADLINE`] of its end anyway).
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

/// One connection: reading its request until the header is complete, then writing its reply.
struct Conn {
    stream: TcpStream,
    deadline: Instant,
    state: State,
}

enum State {
    Reading(Vec<u8>),
    Writing { out: Vec<u8>, sent: usize },
}

impl Conn {
    fn reading(&self) -> bool {
        matches!(self.state, State::Reading(_))
    }

    fn interest(&self) -> PollFlags {
        if self.reading() {
            PollFlags::POLLIN
        } else {
            PollFlags::POLLOUT
        }
    }

    /// Take what the socket has for us, or give it what it will take. `false`: done or failed,
    /// close it.
    fn advance(&mut self, render: &(dyn Fn() -> String + Send + Sync)) -> bool {
        if let State::Reading(buf) = &mut self.state {
            match read_available(&mut self.stream, buf) {
                Progress::More => return true,
                Progress::Closed => return false,
                Progress::Head(head) => {
                    self.state = State::Writing {
                        out: respond(head, render),
                        sent: 0,
                    };
                }
            }
        }
        let State::Writing { out, sent } = &mut self.state else {
            return true;
        };
        loop {
            let rest = out.get(*sent..).unwrap_or_default();
            if rest.is_empty() {
                let _ = self.stream.shutdown(Shutdown::Write);
                return false;
            }
            match self.stream.write(rest) {
                Ok(0) => return false,
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
    }
}

enum Progress {
    /// Header incomplete and the socket has nothing more now.
    More,
    /// EOF or an error before a complete header: nothing to answer.
    Closed,
    Head(Head),
}

/// Read what a non-blocking socket has, never holding more than `MAX_HEADER_BYTES`.
fn read_available<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Progress {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_head_end(buf) {
            return Progress::Head(parse_request_line(buf.get(..end).unwrap_or_default()));
        }
        if buf.len() >= MAX_HEADER_BYTES {
            return Progress::Head(Head::TooLarge);
        }
        let room = MAX_HEADER_BYTES.saturating_sub(buf.len()).min(chunk.len());
        match r.read(&mut chunk[..room]) {
            Ok(0) => return Progress::Closed,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::More,
            Err(_) => return Progress::Closed,
        }
    }
}

/// Which connection a newcomer replaces when all [`MAX_CONNECTIONS`] are open: the oldest still
/// sending its request, else the oldest (connections are kept in accept order).
fn victim(conns: &[Conn]) -> usize {
    conns.iter().position(Conn::reading).unwrap_or(0)
}

/// Milliseconds until the nearest deadline, rounded up so a wake-up is never early; -1 (wait
/// for ever) when no connection is open.
fn poll_timeout(conns: &[Conn], now: Instant) -> i32 {
    match conns.iter().map(|c| c.deadline).min() {
        None => -1,
        Some(d) => {
            let left = d.saturating_duration_since(now);
            let ms = left.as_micros().div_ceil(1000);
            i32::try_from(ms).unwrap_or(i32::MAX)
        }
    }
}

fn serve_loop(listener: TcpListener, wake: UnixStream, render: Render, open: Arc<AtomicUsize>) {
    let mut conns: Vec<Conn> = Vec::with_capacity(MAX_CONNECTIONS);
    // Which descriptors `poll` reported, in `fds` order: the listener, the wake end, then each
    // connection. Copied out so the connections can be advanced once `fds` (which borrows
    // them) is gone.
    let mut ready: Vec<bool> = Vec::with_capacity(MAX_CONNECTIONS + 2);
    loop {
        open.store(conns.len(), Ordering::Release);
        let timeout = PollTimeout::try_from(poll_timeout(&conns, Instant::now()))
            .unwrap_or(PollTimeout::NONE);
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(conns.len() + 2);
        fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
        fds.extend(
            conns
                .iter()
                .map(|c| PollFd::new(c.stream.as_fd(), c.interest())),
        );
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        }
        ready.clear();
        ready.extend(fds.iter().map(accept::has_events));
        drop(fds);
        if ready.get(1).copied().unwrap_or(false) {
            return;
        }
        let mut i = 2;
        conns.retain_mut(|c| {
            let fired = ready.get(i).copied().unwrap_or(false);
            i += 1;
            !fired || c.advance(render.as_ref())
        });
        let now = Instant::now();
        conns.retain(|c| c.deadline > now);
        if ready.first().copied().unwrap_or(false) {
            accept_all(&listener, &mut conns);
        }
    }
}

/// Accept every waiting connection (at most a listen backlog's worth per pass), making room
/// as [`victim`] says.
fn accept_all(listener: &TcpListener, conns: &mut Vec<Conn>) {
    for _ in 0..MAX_CONNECTIONS {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => {
                // Out of descriptors and the like: back off instead of spinning on poll.
                thread::sleep(Duration::from_millis(50));
                return;
            }
        };
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        if conns.len() >= MAX_CONNECTIONS {
            let v = victim(conns);
            conns.remove(v);
        }
        conns.push(Conn {
            stream,
            deadline: Instant::now() + REQUEST_DEADLINE,
            state: State::Reading(Vec::new()),
        });
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Head {
    Request { method: String, target: String },
    TooLarge,
    Malformed,
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

/// The whole reply to one request, header and body, ready to be written out.
fn respond(head: Head, render: &(dyn Fn() -> String + Send + Sync)) -> Vec<u8> {
    let (method, target) = match head {
        Head::Request { method, target } => (method, target),
        Head::TooLarge => {
            return reply(
                431,
                "Request Header Fields Too Large",
                &[],
                b"header too large\n",
                true,
            )
        }
        Head::Malformed => return reply(400, "Bad Request", &[], b"bad request\n", true),
    };
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return reply(
            405,
            "Method Not Allowed",
            &[("Allow", "GET, HEAD")],
            b"method not allowed\n",
            true,
        );
    }
    if path != "/metrics" {
        return reply(
            404,
            "Not Found",
            &[],
            b"not found; try /metrics\n",
            !head_only,
        );
    }
    match panic::catch_unwind(AssertUnwindSafe(render)) {
        Ok(text) => reply(
            200,
            "OK",
            &[("Content-Type", CONTENT_TYPE)],
            text.as_bytes(),
            !head_only,
        ),
        Err(_) => reply(
            500,
            "Internal Server Error",
            &[],
            b"metrics rendering failed\n",
            !head_only,
        ),
    }
}

fn reply(
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    with_body: bool,
) -> Vec<u8> {
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
    let mut out = out.into_bytes();
    if with_body {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn head_of(bytes: &[u8]) -> Option<Head> {
        match read_available(&mut Cursor::new(bytes.to_vec()), &mut Vec::new()) {
            Progress::Head(h) => Some(h),
            Progress::More | Progress::Closed => None,
        }
    }

    #[test]
    fn head_parsing() {
        assert_eq!(
            head_of(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(Head::Request {
                method: "GET".into(),
                target: "/metrics?x=1".into()
            })
        );
        assert_eq!(head_of(b"GET /\n\n"), Some(Head::Malformed));
        assert_eq!(head_of(b"GET / SPDY/9\r\n\r\n"), Some(Head::Malformed));
        // EOF before the blank line: nothing to answer.
        assert_eq!(head_of(b"GET / HTTP/1.1\r\n"), None);
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEADER_BYTES * 2, b'a');
        assert_eq!(head_of(&big), Some(Head::TooLarge));
    }

    /// A header arriving in pieces is kept between reads and answered once complete.
    #[test]
    fn head_in_pieces() {
        struct Trickle(Vec<&'static [u8]>);
        impl Read for Trickle {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                // Each piece, once taken, is followed by "nothing more for now".
                match self.0.first_mut() {
                    None => Err(io::ErrorKind::WouldBlock.into()),
                    Some([]) => {
                        self.0.remove(0);
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    Some(piece) => {
                        let n = piece.len().min(out.len());
                        out[..n].copy_from_slice(&piece[..n]);
                        *piece = &piece[n..];
                        Ok(n)
                    }
                }
            }
        }
        let mut r = Trickle(vec![b"GET /met", b"rics HTTP/1.1\r\n", b"\r\n"]);
        let mut buf = Vec::new();
        assert!(matches!(read_available(&mut r, &mut buf), Progress::More));
        assert!(matches!(read_available(&mut r, &mut buf), Progress::More));
        match read_available(&mut r, &mut buf) {
            Progress::Head(Head::Request { target, .. }) => assert_eq!(target, "/metrics"),
            _ => panic!("head not complete"),
        }
    }

    #[test]
    fn reply_has_length_and_close() {
        let out = reply(200, "OK", &[("Content-Type", CONTENT_TYPE)], b"abc", true);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Content-Length: 3\r\n"));
        assert!(s.contains("Connection: close\r\n"));
        assert_eq!(s.matches("Content-Type").count(), 1);
        assert!(s.ends_with("\r\n\r\nabc"));
    }

    #[test]
    fn newcomer_replaces_oldest_reader_else_oldest() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let _clients: Vec<_> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let conn = |state| Conn {
            stream: l.accept().unwrap().0,
            deadline: Instant::now() + REQUEST_DEADLINE,
            state,
        };
        let writing = || State::Writing {
            out: Vec::new(),
            sent: 0,
        };
        let conns = vec![
            conn(writing()),
            conn(State::Reading(Vec::new())),
            conn(writing()),
        ];
        assert_eq!(victim(&conns), 1);
        let conns: Vec<_> = conns.into_iter().filter(Conn::reading).collect();
        assert_eq!(victim(&conns), 0);
        assert_eq!(poll_timeout(&[], Instant::now()), -1);
        let t = poll_timeout(&conns, Instant::now());
        assert!(t > 0 && t <= REQUEST_DEADLINE.as_millis() as i32, "{t}");
    }
}
