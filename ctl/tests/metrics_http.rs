//! The Prometheus endpoint over real TCP, its limits at their documented values.

use ctl::http::{serve_metrics, MetricsServer, CONTENT_TYPE, MAX_CONNECTIONS, REQUEST_DEADLINE};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn request(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn split(resp: &str) -> (&str, &str) {
    resp.split_once("\r\n\r\n").expect("header and body")
}

#[test]
fn get_metrics_and_errors() {
    let scrapes = Arc::new(AtomicUsize::new(0));
    let n = scrapes.clone();
    let server = serve_metrics(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(move || {
            n.fetch_add(1, Ordering::Relaxed);
            "scrubd_up 1\n".to_string()
        }),
    )
    .unwrap();
    let addr = server.local_addr();

    let r = request(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = split(&r);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains(&format!("Content-Type: {CONTENT_TYPE}")));
    assert!(CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
    assert!(head.contains("Content-Length: 12"));
    assert_eq!(body, "scrubd_up 1\n");

    let r = request(addr, b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 "));

    let r = request(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    let (head, body) = split(&r);
    assert!(head.starts_with("HTTP/1.1 200 ") && head.contains("Content-Length: 12"));
    assert_eq!(body, "");

    let r = request(addr, b"GET / HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    let r = request(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.1 405 ") && r.contains("Allow: GET, HEAD"),
        "{r}"
    );
    let r = request(addr, b"nonsense\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    big.resize(64 * 1024, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(&big);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431 "));

    // Only the two GETs and the HEAD rendered.
    assert_eq!(scrapes.load(Ordering::Relaxed), 3);
    server.shutdown();
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn render_panic_is_a_500_and_server_survives() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let server = serve_metrics(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(move || {
            if c.fetch_add(1, Ordering::Relaxed) == 0 {
                panic!("render failed");
            }
            "ok 1\n".to_string()
        }),
    )
    .unwrap();
    let r = request(server.local_addr(), b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 500 "), "{r}");
    let r = request(server.local_addr(), b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 ") && r.ends_with("ok 1\n"));
}

fn scrape_ok(addr: SocketAddr) {
    let r = request(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.ends_with("scrubd_up 1\n"), "{r}");
}

fn up_server() -> MetricsServer {
    serve_metrics(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(|| "scrubd_up 1\n".to_string()),
    )
    .unwrap()
}

/// A client that sends the start of a request and then one header byte every `every`, until
/// the server closes it (or `for_at_most` passes); returns when it started.
fn trickler(addr: SocketAddr, every: Duration, for_at_most: Duration) -> thread::JoinHandle<()> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").unwrap();
    thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < for_at_most {
            if s.write_all(b"a").is_err() {
                return;
            }
            thread::sleep(every);
        }
    })
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    false
}

/// The attack: 8 clients trickling their headers (the old endpoint's whole capacity)
/// and a scrape at the same time, which must succeed.
#[test]
fn eight_slow_clients_do_not_shut_out_a_scrape() {
    let server = up_server();
    let addr = server.local_addr();
    let slow: Vec<_> = (0..8)
        .map(|_| trickler(addr, Duration::from_millis(200), Duration::from_secs(3)))
        .collect();
    assert!(wait_for(|| server.open_connections() == 8));
    scrape_ok(addr);
    scrape_ok(addr);
    for t in slow {
        t.join().unwrap();
    }
}

/// At the documented cap: MAX_CONNECTIONS slow clients are all held; one more connection (the
/// scrape) closes the oldest slow one and is answered.
#[test]
fn past_the_connection_cap_the_oldest_slow_client_makes_room() {
    let server = up_server();
    let addr = server.local_addr();
    let mut slow: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s
        })
        .collect();
    assert!(wait_for(|| server.open_connections() == MAX_CONNECTIONS));
    scrape_ok(addr);
    // The oldest was closed without a reply; the rest are still open.
    let mut buf = [0u8; 16];
    match slow[0].read(&mut buf) {
        Ok(0) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("got {n} bytes instead of a close"),
    }
    assert!(wait_for(|| server.open_connections() == MAX_CONNECTIONS - 1));
    // A held one that finishes its request in time is still answered.
    let last = slow.last_mut().unwrap();
    last.write_all(b"\r\n").unwrap();
    let mut out = String::new();
    last.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
}

/// A header trickled a byte every 200 ms (never 5 s quiet) is cut at the whole-request
/// deadline, REQUEST_DEADLINE after connecting (±1 s), without a reply.
#[test]
fn trickled_request_is_cut_at_the_deadline() {
    assert_eq!(REQUEST_DEADLINE, Duration::from_secs(5), "README says 5 s");
    let server = up_server();
    let addr = server.local_addr();
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").unwrap();
    let mut w = s.try_clone().unwrap();
    let trickle = thread::spawn(move || {
        for _ in 0..100 {
            if w.write_all(b"a").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let took = start.elapsed();
    eprintln!("trickled request cut off after {took:?}");
    assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
    let one = Duration::from_secs(1);
    assert!(
        took + one >= REQUEST_DEADLINE && took <= REQUEST_DEADLINE + one,
        "{took:?}"
    );
    trickle.join().unwrap();
    assert!(wait_for(|| server.open_connections() == 0));
}

/// A client that asks for a reply far bigger than the socket buffers and never reads it is
/// cut at the same deadline (±1 s), counted from connect, however the writes went.
#[test]
fn stalled_reply_reader_is_cut_at_the_deadline() {
    let body = "# padding padding padding padding padding padding padding\n".repeat(300_000);
    let server = serve_metrics(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(move || body.clone()),
    )
    .unwrap();
    let start = Instant::now();
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert!(wait_for(|| server.open_connections() == 1));
    assert!(wait_for(|| server.open_connections() == 0));
    let took = start.elapsed();
    eprintln!("stalled reply reader cut off after {took:?}");
    let one = Duration::from_secs(1);
    assert!(
        took + one >= REQUEST_DEADLINE && took <= REQUEST_DEADLINE + one,
        "{took:?}"
    );
    // It got part of the reply, not all of it.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(out.len() < 300_000 * 59, "{}", out.len());
}
