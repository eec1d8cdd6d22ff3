//! The real DPDK data path, end to end: EAL, net_pcap/net_null virtual ports, lcore workers,
//! the pipeline, and the summary. One scrubd process per scenario.

mod common;

use common::*;
use perf::gen::{mix, Side};
use std::time::Duration;

/// Packets cross the pair in both directions bit-exact and in order, and every port's
/// counters conserve packets.
#[test]
fn bidirectional_bit_exact_and_conserved() {
    let _g = lock();
    let s = Scenario::new("bidir");
    let out_rx = s.write_pcap("outside.pcap", &mix(Side::Outside, 3000, 11));
    let in_rx = s.write_pcap("inside.pcap", &mix(Side::Inside, 2000, 12));
    let (out_tx, in_tx) = (s.path("outside-tx.pcap"), s.path("inside-tx.pcap"));
    let cfg = s.config(
        "0,1",
        &[1],
        &pcap_vdev(0, &out_rx, &out_tx),
        &pcap_vdev(1, &in_rx, &in_tx),
        "exit_when_idle_ms = 300",
        8191,
    );
    let out = run_ok(&cfg);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("conservation (rx = forwarded + replied + dropped, every port): ok"),
        "{stdout}"
    );

    // Outside → inside and inside → outside, byte for byte, same order (one queue).
    assert_eq!(
        read_frames(&in_tx),
        read_frames(&out_rx),
        "outside frames reach the inside port unchanged"
    );
    assert_eq!(
        read_frames(&out_tx),
        read_frames(&in_rx),
        "inside frames reach the outside port unchanged"
    );

    let sum = s.summary();
    let ports = assert_conserved(&sum);
    assert_eq!(ports[0]["rx"], 3000);
    assert_eq!(ports[0]["forwarded"], 3000);
    assert_eq!(ports[1]["rx"], 2000);
    assert_eq!(ports[1]["forwarded"], 2000);
    // What one port forwarded is what the other port's PMD transmitted.
    assert_eq!(ports[1]["eth_opackets"], 3000);
    assert_eq!(ports[0]["eth_opackets"], 2000);
    assert_eq!(sum["stop_reason"], "idle");
}

/// Two workers, each owning one queue of each port (net_pcap gives one queue per rx_pcap):
/// nothing is lost or duplicated, and each queue's order is kept.
#[test]
fn two_workers_each_own_a_queue() {
    let _g = lock();
    let s = Scenario::new("twoq");
    let a = s.write_pcap("a.pcap", &mix(Side::Outside, 1500, 21));
    let b = s.write_pcap("b.pcap", &mix(Side::Outside, 1700, 22));
    let c = s.write_pcap("c.pcap", &mix(Side::Inside, 900, 23));
    let d = s.write_pcap("d.pcap", &mix(Side::Inside, 1100, 24));
    let tx = |n: &str| s.path(n);
    let cfg = s.config(
        // Three lcores on two CPUs: main on 0, both workers share CPU 1.
        "0@0,1@1,2@1",
        &[1, 2],
        &format!(
            "net_pcap0,rx_pcap={},rx_pcap={},tx_pcap={},tx_pcap={}",
            a.display(),
            b.display(),
            tx("o0.pcap").display(),
            tx("o1.pcap").display()
        ),
        &format!(
            "net_pcap1,rx_pcap={},rx_pcap={},tx_pcap={},tx_pcap={}",
            c.display(),
            d.display(),
            tx("i0.pcap").display(),
            tx("i1.pcap").display()
        ),
        "exit_when_idle_ms = 500",
        16383,
    );
    run_ok(&cfg);
    // Worker q reads queue q of the outside port and sends on queue q of the inside port.
    assert_eq!(read_frames(&tx("i0.pcap")), read_frames(&a));
    assert_eq!(read_frames(&tx("i1.pcap")), read_frames(&b));
    assert_eq!(read_frames(&tx("o0.pcap")), read_frames(&c));
    assert_eq!(read_frames(&tx("o1.pcap")), read_frames(&d));
    let sum = s.summary();
    let ports = assert_conserved(&sum);
    assert_eq!(ports[0]["rx"], 3200);
    assert_eq!(ports[1]["rx"], 2000);
    let workers = sum["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    assert_eq!(workers[0]["rx"], 1500 + 900);
    assert_eq!(workers[1]["rx"], 1700 + 1100);
}

/// SIGTERM mid-traffic: workers stop, the summary is printed with conservation intact, exit 0.
#[test]
fn sigterm_stops_gracefully_with_summary() {
    let _g = lock();
    let s = Scenario::new("sigterm");
    let rx = s.write_pcap("loop.pcap", &mix(Side::Outside, 200, 31));
    let cfg = s.config(
        "0,1",
        &[1],
        &format!("net_pcap0,rx_pcap={},infinite_rx=1", rx.display()),
        "net_null0,no-rx=1",
        "",
        8191,
    );
    let mut cmd = scrubd();
    cmd.arg("--config")
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    // Wait until the worker is up (the banner), then a little traffic.
    std::thread::sleep(Duration::from_millis(1500));
    let rc = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(rc.success());
    let out = wait_with_limit(child, Duration::from_secs(30));
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("stopped by signal"), "{stdout}");
    let sum = s.summary();
    let ports = assert_conserved(&sum);
    let rx = ports[0]["rx"].as_u64().unwrap();
    assert!(rx > 200, "the capture was replayed in a loop: rx {rx}");
    assert_eq!(
        ports[1]["eth_opackets"].as_u64().unwrap(),
        ports[0]["forwarded"].as_u64().unwrap()
    );
}

/// Real traffic nobody here wrote (shared captures) crosses untouched.
#[test]
fn real_captures_cross_untouched() {
    let dir = match pipeline::testutil::pcaps_dir() {
        Ok(d) => d,
        Err(e) => {
            skip(&format!("{e}"));
            return;
        }
    };
    let _g = lock();
    let s = Scenario::new("real");
    let outside = dir.join("suricata-verify/bug-4376/syn_retransmit_with_ts.pcap");
    let inside = dir.join("tcpdump/dns_tcp.pcap");
    let (out_tx, in_tx) = (s.path("o.pcap"), s.path("i.pcap"));
    let cfg = s.config(
        "0,1",
        &[1],
        &pcap_vdev(0, &outside, &out_tx),
        &pcap_vdev(1, &inside, &in_tx),
        "exit_when_idle_ms = 300",
        8191,
    );
    run_ok(&cfg);
    let (want_in, want_out) = (read_frames(&outside), read_frames(&inside));
    assert_eq!(want_in.len(), 254);
    assert_eq!(read_frames(&in_tx), want_in);
    assert_eq!(read_frames(&out_tx), want_out);
    assert_conserved(&s.summary());
}

#[test]
fn bad_config_exits_2_naming_file_and_key() {
    let s = Scenario::new("badcfg");
    let cfg = s.config("0,1", &[1], "net_null0", "net_null1", "", 8191);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("burst = 32", "burst = 999");
    std::fs::write(&cfg, text).unwrap();
    let out = run_config(&cfg, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: key `dataplane.burst`: must be 1..=256, got 999",
            cfg.display()
        )),
        "{err}"
    );
}

#[test]
fn missing_capture_is_a_clear_startup_error() {
    let _g = lock();
    let s = Scenario::new("nocap");
    let cfg = s.config(
        "0,1",
        &[1],
        "net_pcap0,rx_pcap=/nonexistent/x.pcap",
        "net_null0",
        "",
        8191,
    );
    let out = run_config(&cfg, Duration::from_secs(30));
    // Found before EAL starts, against the config file and key (tests/config_errors.rs has
    // the other mistakes of this kind).
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "scrubd: config error: {}: key `port[0].vdev`: rx_pcap \"/nonexistent/x.pcap\": No such file",
            cfg.display()
        )),
        "{err}"
    );
}

#[test]
fn help_teaches() {
    let out = scrubd().arg("--help").output().unwrap();
    assert!(out.status.success());
    let h = String::from_utf8_lossy(&out.stdout);
    for want in [
        "--config",
        "--check",
        "configs/demo.toml",
        "SIGTERM",
        "rx = forwarded + replied + dropped",
    ] {
        assert!(h.contains(want), "--help mentions {want}: {h}");
    }
}

/// The scrubbing pipeline inside the real data path: attack frames mixed into legitimate
/// traffic are answered (spoofed SYNs to a protected address get SYN cookies out of the port
/// they came in on), dropped by a signature (memcached reflection) or dropped as malformed
/// (truncated headers); every legitimate frame crosses bit-exact, and the counters say so.
#[test]
fn pipeline_scrubs_attack_and_forwards_legit_in_the_data_path() {
    let _g = lock();
    let s = Scenario::new("scrub");
    let (outside, kinds) = perf::gen::mix_with_attack(4000, 41, 3);
    let inside = mix(Side::Inside, 1500, 42);
    let out_rx = s.write_pcap("outside.pcap", &outside);
    let in_rx = s.write_pcap("inside.pcap", &inside);
    let rules = s.path("t.rules");
    std::fs::write(
        &rules,
        "drop udp any 11211 -> any any (msg:\"memcached reflection\"; content:\"VALUE \"; depth:6; sid:7;)\n",
    )
    .unwrap();
    let (out_tx, in_tx) = (s.path("outside-tx.pcap"), s.path("inside-tx.pcap"));
    let cfg = s.config(
        "0,1",
        &[1],
        &pcap_vdev(0, &out_rx, &out_tx),
        &pcap_vdev(1, &in_rx, &in_tx),
        "exit_when_idle_ms = 300",
        8191,
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[pipeline.syncookie]\nprotected = [\"198.51.100.20/32\"]\n\n[pipeline.signature]\nrule_files = [\"{}\"]\n",
        rules.display()
    ));
    std::fs::write(&cfg, text).unwrap();
    run_ok(&cfg);

    use perf::gen::Attack;
    let count = |k: Attack| kinds.iter().filter(|x| **x == Some(k)).count() as u64;
    let (syns, memcached, truncated) = (
        count(Attack::SpoofedSyn),
        count(Attack::MemcachedReflection),
        count(Attack::Truncated),
    );
    assert!(syns > 0 && memcached > 0 && truncated > 0);
    let legit: Vec<Vec<u8>> = outside
        .iter()
        .zip(&kinds)
        .filter(|(_, k)| k.is_none())
        .map(|(f, _)| f.data.clone())
        .collect();

    // Every legitimate outside frame reaches the inside, unchanged and in order; nothing else does.
    assert_eq!(read_frames(&in_tx), legit);
    // Out of the outside port: the inside's frames plus one SYN-ACK per spoofed SYN.
    let sent_out = read_frames(&out_tx);
    let (synacks, others): (Vec<_>, Vec<_>) = sent_out.into_iter().partition(|f| {
        f.len() >= 54
            && f[12..14] == [0x08, 0x00]
            && f[23] == 6
            && f[14 + 20 + 13] == 0x12
            && f[26..30] == [198, 51, 100, 20]
    });
    assert_eq!(others, read_frames(&in_rx));
    assert_eq!(synacks.len() as u64, syns);

    let sum = s.summary();
    let ports = assert_conserved(&sum);
    let o = &ports[0];
    assert_eq!(o["rx"], 4000);
    assert_eq!(o["forwarded"], legit.len() as u64);
    assert_eq!(o["replied"], syns);
    assert_eq!(o["drops"]["signature"], memcached);
    assert_eq!(o["drops"]["malformed.ipv4_truncated"], truncated);
    assert_eq!(o["dropped"], memcached + truncated);
    assert_eq!(sum["stages"]["syncookie.syn_answered"], syns);
    assert_eq!(sum["signature_hits"][0]["sid"], 7);
    assert_eq!(sum["signature_hits"][0]["hits"], memcached);
}

/// The operator log: time-stamped, levelled lines on stderr; `--log-level` (or `run.log_level`)
/// filters them, and a bad level is refused by the command line.
#[test]
fn operator_log_has_levels_and_timestamps() {
    let _g = lock();
    let s = Scenario::new("log");
    let rx = s.write_pcap("outside.pcap", &mix(Side::Outside, 50, 31));
    let cfg = s.config(
        "0,1",
        &[1],
        &pcap_vdev(0, &rx, &s.path("o-tx.pcap")),
        &format!(
            "net_pcap1,rx_pcap={},tx_pcap={}",
            rx.display(),
            s.path("i-tx.pcap").display()
        ),
        "exit_when_idle_ms = 300",
        8191,
    );
    let out = run_ok(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("port 0 \"outside\"") && l.contains(" up:"))
        .unwrap_or_else(|| panic!("no port-up line in:\n{err}"));
    // `[2026-11-27T08:00:00Z INFO  scrubd] port 0 ...`: an RFC 3339 time, then the level.
    assert!(line.starts_with("[20") && line.contains("Z INFO"), "{line}");
    assert!(err.contains("stopping (idle)"), "{err}");

    let mut quiet = scrubd();
    quiet.args(["--config", cfg.to_str().unwrap(), "--log-level", "warn"]);
    let out = run_with_limit(quiet, Duration::from_secs(60));
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(" INFO "),
        "{}",
        show(&out)
    );

    let bad = scrubd()
        .args(["--config", cfg.to_str().unwrap(), "--log-level", "loud"])
        .output()
        .expect("run scrubd");
    assert_eq!(bad.status.code(), Some(2), "{}", show(&bad));
}
