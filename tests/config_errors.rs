//! Config mistakes that only the machine can reveal (issue 10 item 7): each is caught by
//! `scrubd --check` where it can be known before EAL, and start-up fails on it with the same
//! message, naming the config file and the key; what only EAL or a PMD can find is translated
//! into an error against its key. One scrubd process per mistake.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// A config with two `net_null` ports (no traffic), `run` keys and `extra` control keys.
fn null_config(s: &Scenario, lcores: &str, workers: &[u32], extra: &str) -> PathBuf {
    s.config_with(
        lcores,
        workers,
        "net_null0,no-rx=1",
        "net_null1,no-rx=1",
        "duration_s = 0.3",
        8191,
        extra,
    )
}

/// Replaces `from` (which must occur) in the config file.
fn edit(cfg: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(cfg).unwrap();
    assert!(text.contains(from), "config has {from:?}:\n{text}");
    std::fs::write(cfg, text.replacen(from, to, 1)).unwrap();
}

fn check(cfg: &Path) -> Output {
    let mut cmd = scrubd();
    cmd.arg("--config").arg(cfg).arg("--check");
    run_with_limit(cmd, Duration::from_secs(30))
}

fn start(cfg: &Path) -> Output {
    run_config(cfg, Duration::from_secs(60))
}

/// The process failed and its stderr holds `<config path>: key `<key>`: ...<text>...`.
fn assert_names(out: &Output, cfg: &Path, key: &str, text: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "must fail: {}", show(out));
    let head = format!("{}: key `{key}`: ", cfg.display());
    let line = err
        .lines()
        .find(|l| l.contains(&head))
        .unwrap_or_else(|| panic!("no line with {head:?}:\n{}", show(out)));
    assert!(line.contains(text), "expected {text:?} in: {line}");
    err
}

/// Both `--check` and start-up refuse with the same message, before EAL says anything.
fn check_and_start_refuse(cfg: &Path, key: &str, text: &str) {
    let c = check(cfg);
    assert_eq!(c.status.code(), Some(2), "{}", show(&c));
    let err = assert_names(&c, cfg, key, text);
    assert!(!String::from_utf8_lossy(&c.stdout).contains(": ok"));
    assert!(!err.contains("EAL:"), "--check never starts EAL: {err}");
    let r = start(cfg);
    let err = assert_names(&r, cfg, key, text);
    assert!(!err.contains("EAL:"), "caught before EAL: {err}");
}

/// One more than the highest online CPU: a CPU this machine does not have.
fn absent_cpu() -> u32 {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    online
        .trim()
        .split([',', '-'])
        .filter_map(|c| c.parse::<u32>().ok())
        .max()
        .unwrap()
        + 1
}

#[test]
fn lcore_not_on_the_machine() {
    let _g = lock();
    let s = Scenario::new("cfgerr-lcore");
    let cpu = absent_cpu();
    // An lcore on a CPU of its own number ("-l" form)...
    let cfg = null_config(&s, &format!("0,{cpu}"), &[cpu], "");
    check_and_start_refuse(
        &cfg,
        "eal.lcores",
        &format!("lcore {cpu} runs on CPU {cpu}, which this machine does not offer"),
    );
    let r = start(&cfg);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        !all.contains("EAL common options"),
        "no EAL usage text: {all}"
    );
    // ...and one mapped onto an absent CPU ("lcore@cpu" form).
    let l = cpu + 1;
    let cfg = null_config(&s, &format!("0,1,{l}@{cpu}"), &[1, l], "");
    check_and_start_refuse(
        &cfg,
        "eal.lcores",
        &format!("lcore {l} runs on CPU {cpu} (\"{l}@{cpu}\")"),
    );
}

#[test]
fn missing_rx_pcap() {
    let _g = lock();
    let s = Scenario::new("cfgerr-rxpcap");
    let missing = s.path("nope.pcap");
    let cfg = s.config(
        "0,1",
        &[1],
        &pcap_vdev(0, &missing, &s.path("tx.pcap")),
        "net_null1,no-rx=1",
        "duration_s = 0.3",
        8191,
    );
    check_and_start_refuse(
        &cfg,
        "port[0].vdev",
        &format!("rx_pcap \"{}\": No such file", missing.display()),
    );
}

#[test]
fn tx_pcap_in_a_missing_directory() {
    let _g = lock();
    let s = Scenario::new("cfgerr-txpcap");
    let rx = s.write_pcap("rx.pcap", &[]);
    let cfg = s.config(
        "0,1",
        &[1],
        &pcap_vdev(0, &rx, &s.path("no-such-dir/tx.pcap")),
        "net_null1,no-rx=1",
        "duration_s = 0.3",
        8191,
    );
    check_and_start_refuse(&cfg, "port[0].vdev", "tx_pcap");
}

#[test]
fn pci_device_that_does_not_exist() {
    let _g = lock();
    let s = Scenario::new("cfgerr-pci");
    let cfg = null_config(&s, "0,1", &[1], "");
    edit(
        &cfg,
        "vdev = \"net_null1,no-rx=1\"",
        "pci = \"ffff:ff:1f.7\"",
    );
    check_and_start_refuse(
        &cfg,
        "port[1].pci",
        "no PCI device ffff:ff:1f.7 on this machine",
    );
}

/// A driver DPDK does not have: only EAL can tell (its vdev bus knows its drivers), and its
/// failure is reported against the port's key.
#[test]
fn vdev_of_an_unknown_driver() {
    let _g = lock();
    let s = Scenario::new("cfgerr-vdevdrv");
    let cfg = null_config(&s, "0,1", &[1], "");
    edit(&cfg, "net_null1,no-rx=1", "net_nosuch1");
    assert_names(
        &start(&cfg),
        &cfg,
        "port[1].vdev",
        "no DPDK driver takes \"net_nosuch1\"",
    );
}

/// A known driver that rejects its arguments probes no port.
#[test]
fn vdev_that_does_not_probe() {
    let _g = lock();
    let s = Scenario::new("cfgerr-vdevprobe");
    let cfg = null_config(&s, "0,1", &[1], "");
    edit(&cfg, "net_null1,no-rx=1", "net_null1,bogus=1");
    assert_names(
        &start(&cfg),
        &cfg,
        "port[1].vdev",
        "DPDK created no port from \"net_null1,bogus=1\"",
    );
}

/// net_pcap has one queue per rx_pcap: two workers need two.
#[test]
fn too_few_queues_for_the_workers() {
    let _g = lock();
    let s = Scenario::new("cfgerr-queues");
    let rx = s.write_pcap("rx.pcap", &[]);
    let cfg = s.config(
        "0,1,2@1",
        &[1, 2],
        &pcap_vdev(0, &rx, &s.path("tx.pcap")),
        "net_null1,no-rx=1",
        "duration_s = 0.3",
        8191,
    );
    assert_names(
        &start(&cfg),
        &cfg,
        "port[0].vdev",
        "has 1 RX queue(s), dataplane.workers needs 2",
    );
}

/// With infinite_rx, net_pcap keeps the whole capture in mbufs: a pool one mbuf short of
/// rings + caches + frames is refused before EAL (where DPDK would say only "rx_queue_setup
/// failed: Invalid argument"), and one of exactly that size runs.
#[test]
fn pool_too_small_for_the_ports() {
    let _g = lock();
    let s = Scenario::new("cfgerr-pool");
    let frames = perf::gen::mix(perf::gen::Side::Outside, 10_000, 5);
    let rx = s.write_pcap("loop.pcap", &frames);
    // 2 ports x 1 queue x (512 + 512) descriptors + 1 worker x (4 bursts of 32 + cache 64).
    let rings = 2 * (512 + 512) + (4 * 32 + 64);
    let need = rings + frames.len() as u32;
    let vdev = format!("net_pcap0,rx_pcap={},infinite_rx=1", rx.display());
    let cfg = s.config(
        "0,1",
        &[1],
        &vdev,
        "net_null1,no-rx=1",
        "duration_s = 0.3",
        need - 1,
    );
    check_and_start_refuse(
        &cfg,
        "dataplane.mempool_mbufs",
        &format!(
            "{} is too small: {need} needed ({rings} for the rings and caches, 10000 for the \
             frames infinite_rx keeps in memory: port[0] 10000)",
            need - 1
        ),
    );
    let cfg = s.config(
        "0,1",
        &[1],
        &vdev,
        "net_null1,no-rx=1",
        "duration_s = 0.3",
        need,
    );
    let ok = check(&cfg);
    assert!(ok.status.success(), "{}", show(&ok));
    run_ok(&cfg);
}

#[test]
fn socket_directory_not_writable() {
    let _g = lock();
    let s = Scenario::new("cfgerr-sockdir");
    let cfg = null_config(&s, "0,1", &[1], "");
    // sysfs takes no new files, for root neither.
    let sock = s.path("scrubd.sock").display().to_string();
    edit(&cfg, &sock, "/sys/kernel/scrubd-test.sock");
    check_and_start_refuse(
        &cfg,
        "control.socket",
        "cannot create the socket in /sys/kernel",
    );
    // A directory to create under one that does not exist either.
    let cfg = null_config(&s, "0,1", &[1], "");
    let deep = s.path("a/b/scrubd.sock");
    edit(&cfg, &sock, &deep.display().to_string());
    check_and_start_refuse(
        &cfg,
        "control.socket",
        "scrubd creates only the last directory",
    );
}

#[test]
fn metrics_port_in_use() {
    let _g = lock();
    let s = Scenario::new("cfgerr-metrics");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let cfg = null_config(&s, "0,1", &[1], &format!("metrics_listen = \"{addr}\""));
    check_and_start_refuse(
        &cfg,
        "control.metrics_listen",
        &format!("cannot listen on {addr}"),
    );
    drop(taken);
}

/// A second process on a file prefix a live scrubd uses: refused with the holder's pid
/// instead of EAL's "Cannot create lock"; the running one is untouched.
#[test]
fn file_prefix_in_use() {
    let _g = lock();
    let s = Scenario::new("cfgerr-prefix");
    let first = s.config_with(
        "0,1",
        &[1],
        "net_null0,no-rx=1",
        "net_null1,no-rx=1",
        "duration_s = 30",
        8191,
        "",
    );
    let mut child = spawn_until_socket(&first, &s.path("scrubd.sock"));
    let s2 = Scenario::new("cfgerr-prefix2");
    let second = null_config(&s2, "0,1", &[1], "");
    let prefix_line = std::fs::read_to_string(&first)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("file_prefix"))
        .unwrap()
        .to_string();
    let own = std::fs::read_to_string(&second)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("file_prefix"))
        .unwrap()
        .to_string();
    edit(&second, &own, &prefix_line);
    check_and_start_refuse(
        &second,
        "eal.file_prefix",
        &format!(
            "a live DPDK process (pid {}) already uses prefix",
            child.id()
        ),
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first one still runs"
    );
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let out = wait_with_limit(child, Duration::from_secs(30));
    assert!(out.status.success(), "{}", show(&out));
}

/// A rule-file error reads `file:line:col: ...` as the README promises, without a section
/// prefix in front of the path (issue 10 item 8).
#[test]
fn rule_error_reads_file_line_col() {
    let _g = lock();
    let s = Scenario::new("cfgerr-rules");
    let rules = s.path("x.rules");
    std::fs::write(
        &rules,
        "# one bad rule\n\ndrop udp any any -> any any (msg:\"x\"; lua:\"/a/\"; sid:1;)\n",
    )
    .unwrap();
    let cfg = null_config(
        &s,
        "0,1",
        &[1],
        &format!(
            "\n[pipeline.signature]\nrule_files = [\"{}\"]\nstrict = true\n",
            rules.display()
        ),
    );
    let out = check(&cfg);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!("{}:3:39: unsupported keyword 'lua'", rules.display());
    let line = err
        .lines()
        .find(|l| l.contains(&want))
        .unwrap_or_else(|| panic!("no {want:?} in:\n{err}"));
    assert!(
        line.ends_with(&want) || line.contains(&format!(": {want}")),
        "the path starts the location: {line}"
    );
    assert!(!err.contains("pipeline./"), "{err}");
}
