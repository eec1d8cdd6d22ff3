//! A fleet of boxes sharing a SYN-cookie key (issue 16 item 1): a handshake answered by one
//! scrubd process authenticates on another, as when ECMP re-hashes a flow mid-handshake.
//! Two real scrubd processes, run one after the other on net_pcap ports; the client's RST is
//! built from the cookie in box A's transmitted SYN-ACK and replayed into box B.

mod common;

use common::*;
use perf::pcap::Frame;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CLIENT: [u8; 4] = [192, 0, 2, 44];
const SERVER: [u8; 4] = [198, 51, 100, 20];
const CPORT: u16 = 40123;
const SPORT: u16 = 443;

fn tcp(seq: u32, ack: u32, syn: bool, rst: bool) -> Frame {
    let mut b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(CLIENT, SERVER, 64)
        .tcp(CPORT, SPORT, seq, 64240);
    if syn {
        b = b
            .syn()
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap();
    }
    if rst {
        b = b.rst();
    }
    if ack != 0 {
        b = b.ack(ack);
    }
    let mut data = Vec::new();
    b.write(&mut data, &[]).expect("build frame");
    Frame {
        ts: Duration::ZERO,
        data,
    }
}

fn key_file(s: &Scenario, name: &str, hex: &str) -> PathBuf {
    let p = s.path(name);
    std::fs::write(&p, format!("{hex}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A one-worker box: outside replays `rx`, inside `inside`, SYN cookies for 198.51.100.0/24 keyed
/// by the shared key file `key` (rotation hourly, the default, spelled out).
fn box_config(s: &Scenario, rx: &Path, inside: &Path, run: &str, key: &Path) -> PathBuf {
    s.config_with(
        "0@0,1@1",
        &[1],
        &pcap_vdev(0, rx, &s.path("o-tx.pcap")),
        &pcap_vdev(1, inside, &s.path("i-tx.pcap")),
        run,
        8191,
        &format!(
            "[pipeline.syncookie]\nprotected = [\"198.51.100.0/24\"]\nrotate_every_s = 3600\n\
             shared_key_file = {:?}\n",
            key.display().to_string()
        ),
    )
}

/// Runs one box on `frames` (arriving from the outside) with the shared key in `key`;
/// returns its summary and what it sent back out of the outside port.
fn run_box(name: &str, key: &Path, frames: &[Frame]) -> (serde_json::Value, Vec<Vec<u8>>) {
    let s = Scenario::new(name);
    let rx = s.write_pcap("o.pcap", frames);
    let empty = s.write_pcap("i.pcap", &[]);
    let cfg = box_config(&s, &rx, &empty, "exit_when_idle_ms = 500", key);
    run_ok(&cfg);
    (s.summary(), read_frames(&s.path("o-tx.pcap")))
}

/// The SYN-ACK's sequence number: the cookie (in both modes).
fn cookie_of(synack: &[u8]) -> u32 {
    let p = etherparse::SlicedPacket::from_ethernet(synack).expect("SYN-ACK parses");
    match p.transport {
        Some(etherparse::TransportSlice::Tcp(t)) => {
            assert!(t.syn() && t.ack(), "a SYN-ACK");
            assert_eq!((t.source_port(), t.destination_port()), (SPORT, CPORT));
            t.sequence_number()
        }
        other => panic!("not TCP: {other:?}"),
    }
}

fn stage(sum: &serde_json::Value, counter: &str) -> u64 {
    sum["stages"][format!("syncookie.{counter}")]
        .as_u64()
        .unwrap_or_else(|| panic!("syncookie.{counter} in the summary: {sum}"))
}

#[test]
fn cookie_from_box_a_authenticates_on_box_b_with_the_same_key() {
    let _g = lock();
    let keys = Scenario::new("fleet-keys");
    let shared = key_file(
        &keys,
        "shared.key",
        "3f1e0c5a9b7d2468ace013579bdf2468a1b2c3d4e5f60718",
    );
    let other = key_file(
        &keys,
        "other.key",
        "0f1e0c5a9b7d2468ace013579bdf2468a1b2c3d4e5f60718",
    );

    // Box A answers the SYN.
    let (sum_a, out_a) = run_box("fleet-a", &shared, &[tcp(0x1000_0000, 0, true, false)]);
    assert_eq!(stage(&sum_a, "syn_answered"), 1);
    assert_eq!(out_a.len(), 1, "one SYN-ACK out of A's outside port");
    let cookie = cookie_of(&out_a[0]);

    // The client's RST (sequence number = the cookie, RFC 9293 §3.10.7.3) reaches box B.
    let rst = tcp(cookie, 0, false, true);
    let (sum_b, _) = run_box("fleet-b", &shared, std::slice::from_ref(&rst));
    assert_eq!(stage(&sum_b, "rst_validated"), 1, "{sum_b}");
    assert_eq!(stage(&sum_b, "cookie_invalid"), 0);
    assert_eq!(sum_b["ports"][0]["drops"]["auth_handshake"], 1, "{sum_b}");

    // A box with another key refuses it.
    let (sum_c, _) = run_box("fleet-c", &other, std::slice::from_ref(&rst));
    assert_eq!(stage(&sum_c, "rst_validated"), 0, "{sum_c}");
    assert_eq!(stage(&sum_c, "cookie_invalid"), 1, "{sum_c}");
}

#[test]
fn a_key_file_others_can_read_is_refused_at_start() {
    let _g = lock();
    let s = Scenario::new("fleet-mode");
    let key = key_file(&s, "k.key", "3f1e0c5a9b7d2468ace013579bdf2468");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let empty = s.write_pcap("e.pcap", &[]);
    let cfg = box_config(&s, &empty, &empty, "exit_when_idle_ms = 500", &key);
    let out = run_config(&cfg, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pipeline.syncookie.shared_key_file")
            && err.contains(&key.display().to_string())
            && err.contains("mode 0644"),
        "{err}"
    );
    assert!(!err.contains("3f1e0c5a"), "the key is never shown: {err}");
}

#[test]
fn commanded_rotation_is_refused_with_a_shared_key() {
    let _g = lock();
    let s = Scenario::new("fleet-rotate");
    let key = key_file(&s, "k.key", "3f1e0c5a9b7d2468ace013579bdf2468");
    let empty = s.write_pcap("e.pcap", &[]);
    let cfg = box_config(&s, &empty, &empty, "", &key);
    let d = Daemon::start(&cfg, &s.path("scrubd.sock"));
    // The per-worker view appears with the first stats report.
    let t0 = std::time::Instant::now();
    let before = loop {
        let st = d.json(&["syncookie", "status"]);
        if st["workers"].as_array().is_some_and(|w| !w.is_empty()) {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no workers in {st}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = d.ctl(&["syncookie", "rotate"]);
    assert!(!out.status.success(), "{}", show(&out));
    let said = show(&out);
    assert!(
        said.contains("refused") && said.contains("lockstep"),
        "{said}"
    );
    // The generation is the wall clock's (unix time / 3600), not a count from 0, and did not move.
    let after = d.json(&["syncookie", "status"]);
    assert_eq!(before["workers"], after["workers"]);
    let text = after.to_string();
    let unix_h = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600;
    assert!(
        text.contains(&format!("\"secret_generation\":{unix_h}"))
            || text.contains(&format!("\"secret_generation\":{}", unix_h - 1)),
        "generation {unix_h} in {text}"
    );
    let done = d.shutdown();
    let log = String::from_utf8_lossy(&done.stderr);
    assert!(log.contains("`syncookie rotate` refused"), "{log}");
    assert!(!log.contains("3f1e0c5a"), "the key is never logged: {log}");
}
