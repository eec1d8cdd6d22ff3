//! Per-source state holds for the box, not per worker (issue 9): one source's frames spread
//! over every queue, as RSS spreads a source's flows, still get exactly the configured limit.

mod common;

use common::*;
use perf::pcap::Frame;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// A UDP frame from `src`:`sport` to 198.51.100.20:`dport` with a 64-byte payload.
fn udp(src: Ipv4Addr, sport: u16, dport: u16) -> Frame {
    let mut data = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.octets(), [198, 51, 100, 20], 64)
        .udp(sport, dport)
        .write(&mut data, &[0x5a; 64])
        .expect("build frame");
    Frame {
        ts: Duration::ZERO,
        data,
    }
}

fn src_of(frame: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29])
}

/// Three memcached reflectors (limited: 10 pps, burst 100, per /32) and one DNS client
/// (unlimited class) each send 600 frames to ever-changing destination ports, spread over
/// `workers` queues round-robin. Every reflector must get at most burst + rate·t (t = the span
/// the workers received over) plus the stated tolerance, whatever the worker count; the
/// client gets everything.
fn limit_holds_with(workers: usize) {
    let _g = lock();
    let s = Scenario::new(&format!("persrc{workers}"));
    let reflectors: Vec<Ipv4Addr> = (1..=3).map(|i| Ipv4Addr::new(203, 0, 113, i)).collect();
    let client = Ipv4Addr::new(192, 0, 2, 77);
    let mut queues: Vec<Vec<Frame>> = vec![Vec::new(); workers];
    let mut k = 0usize;
    for i in 0..600u16 {
        for &r in &reflectors {
            queues[k % workers].push(udp(r, 11211, 1024 + i));
            k += 1;
        }
        queues[k % workers].push(udp(client, 40000 + i, 53));
        k += 1;
    }
    let mut out_vdev = String::from("net_pcap0");
    let mut in_vdev = String::from("net_pcap1");
    for (q, frames) in queues.iter().enumerate() {
        let rx = s.write_pcap(&format!("o{q}.pcap"), frames);
        let empty = s.write_pcap(&format!("i{q}.pcap"), &[]);
        out_vdev += &format!(
            ",rx_pcap={},tx_pcap={}",
            rx.display(),
            s.path(&format!("o{q}-tx.pcap")).display()
        );
        in_vdev += &format!(
            ",rx_pcap={},tx_pcap={}",
            empty.display(),
            s.path(&format!("i{q}-tx.pcap")).display()
        );
    }
    // Main lcore on CPU 0, every worker on CPU 1: lcores may share CPUs.
    let lcores = std::iter::once("0@0".to_string())
        .chain((1..=workers).map(|w| format!("{w}@1")))
        .collect::<Vec<_>>()
        .join(",");
    let ids: Vec<u32> = (1..=workers as u32).collect();
    let cfg = s.config_with(
        &lcores,
        &ids,
        &out_vdev,
        &in_vdev,
        "exit_when_idle_ms = 500",
        16383,
        "[pipeline.ratelimit]\nclasses.udp_reflection = { rate = 10, burst = 100 }\n",
    );
    run_ok(&cfg);
    let sum = s.summary();
    assert_conserved(&sum);
    let mut passed: HashMap<Ipv4Addr, u64> = HashMap::new();
    for q in 0..workers {
        for f in read_frames(&s.path(&format!("i{q}-tx.pcap"))) {
            *passed.entry(src_of(&f)).or_default() += 1;
        }
    }
    let active_s = sum["active_s"].as_f64().expect("active_s in summary");
    // burst + rate·t, rounded up, plus the insertion-race tolerance of workers − 1.
    let bound = 100 + (10.0 * active_s).ceil() as u64 + (workers as u64 - 1);
    for r in &reflectors {
        let n = passed.get(r).copied().unwrap_or(0);
        println!("{workers} workers: {r} passed {n} of 600 (bound {bound}, t = {active_s:.3} s)");
        assert!(n >= 100, "the burst passes: {n}");
        assert!(n <= bound, "{r}: {n} passed, bound {bound}");
    }
    assert_eq!(
        passed.get(&client).copied(),
        Some(600),
        "other traffic untouched"
    );
    let drops = sum["ports"][0]["drops"]["rate_limited.udp_reflection"]
        .as_u64()
        .expect("rate-limit drops counted");
    let limited: u64 = reflectors.iter().map(|r| passed[r]).sum();
    assert_eq!(
        drops + limited,
        1800,
        "every reflector frame passed or counted"
    );
}

#[test]
fn per_source_limit_holds_across_two_workers() {
    limit_holds_with(2);
}

#[test]
fn per_source_limit_holds_across_four_workers() {
    limit_holds_with(4);
}
