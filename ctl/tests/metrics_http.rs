//! The Prometheus endpoint over real TCP.

use ctl::http::{serve_metrics, CONTENT_TYPE};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
