//! BGP FlowSpec in and health-driven announcements out (issue 16 items 2 and 3), against real
//! BGP daemons: gobgpd plays the operator's router and detection system, ExaBGP is scrubd's
//! speaker and runs `scrubctl bgp-bridge` as its process. Both run in a network namespace the
//! test creates (a veth pair, 192.0.2.1 = gobgpd, 192.0.2.2 = ExaBGP), removed on drop, also
//! when the test fails. scrubd itself needs no network: the bridge reaches it through its
//! control socket, and traffic comes from net_pcap vdevs replaying a capture in a loop.
//!
//! Times are measured and printed (`--nocapture`); the only bounds asserted are generous ones
//! (the bridge's interval and timeout plus 10 s), so a noisy machine does not fail the test.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NS_PREFIX: &str = "sfs";
const PROTECTED: &str = "203.0.113.0/24";
const INTERVAL_MS: u64 = 100;
const TIMEOUT_MS: u64 = 300;
const RATE: u64 = 20_000;

/// The discard route the test announces and later withdraws (UDP to 10.0.0.1 port 53).
const DNS_DISCARD: [&str; 8] = [
    "destination",
    "10.0.0.1/32",
    "protocol",
    "udp",
    "destination-port",
    "==53",
    "then",
    "discard",
];

/// Why the test cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    for b in ["exabgp", "gobgpd", "gobgp"] {
        if !common::have_installed(b) {
            return Some(format!("{b} not installed (scripts/install-deps.sh)"));
        }
    }
    common::netns::unavailable()
}

/// gobgpd and ExaBGP in their own namespace; everything is stopped and removed on drop.
struct Bgp {
    ns: String,
    gobgpd: Option<Child>,
    exabgp: Option<Child>,
    dir: PathBuf,
}

impl Bgp {
    fn start(dir: &Path, socket: &Path) -> Bgp {
        let ns = format!("{NS_PREFIX}{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let mut b = Bgp {
            ns: ns.clone(),
            gobgpd: None,
            exabgp: None,
            dir: dir.to_path_buf(),
        };
        run(&["ip", "netns", "add", &ns]);
        for cmd in [
            "ip link set lo up",
            "ip link add v0 type veth peer name v1",
            "ip link set v0 up",
            "ip link set v1 up",
            "ip addr add 192.0.2.1/24 dev v0",
            "ip addr add 192.0.2.2/24 dev v1",
        ] {
            let mut a = vec!["ip", "netns", "exec", &ns];
            a.extend(cmd.split(' '));
            run(&a);
        }
        let gobgp_conf = dir.join("gobgpd.toml");
        std::fs::write(
            &gobgp_conf,
            r#"[global.config]
  as = 65001
  router-id = "192.0.2.1"
  port = 179
  local-address-list = ["192.0.2.1"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "192.0.2.2"
    peer-as = 65002
  [neighbors.transport.config]
    passive-mode = true
    local-address = "192.0.2.1"
  [neighbors.timers.config]
    connect-retry = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-flowspec"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
"#,
        )
        .unwrap();
        b.gobgpd = Some(b.spawn(
            &[
                "gobgpd",
                "-f",
                gobgp_conf.to_str().unwrap(),
                "--api-hosts",
                "127.0.0.1:50051",
            ],
            "gobgpd.log",
        ));
        let exa_conf = dir.join("exabgp.conf");
        std::fs::write(
            &exa_conf,
            format!(
                r#"process scrubd {{
  run {ctl} --socket {sock} bgp-bridge --announce {PROTECTED} --interval-ms {INTERVAL_MS} --timeout-ms {TIMEOUT_MS};
  encoder json;
}}
neighbor 192.0.2.1 {{
  router-id 192.0.2.2;
  local-address 192.0.2.2;
  local-as 65002;
  peer-as 65001;
  family {{ ipv4 flow; ipv4 unicast; }}
  api {{ processes [ scrubd ]; receive {{ parsed; update; }} neighbor-changes; }}
}}
"#,
                ctl = scrubctl_bin().display(),
                sock = socket.display()
            ),
        )
        .unwrap();
        b.exabgp = Some(b.spawn(
            &[
                "env",
                "exabgp.daemon.user=root",
                "exabgp.api.ack=false",
                "exabgp.log.destination=stdout",
                "exabgp",
                exa_conf.to_str().unwrap(),
            ],
            "exabgp.log",
        ));
        b
    }

    fn spawn(&self, argv: &[&str], log: &str) -> Child {
        let out = std::fs::File::create(self.dir.join(log)).unwrap();
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"))
    }

    /// `gobgp ARGS` against gobgpd's API inside the namespace.
    fn gobgp(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "gobgp", "-p", "50051"])
            .args(args)
            .output()
            .expect("run gobgp");
        assert!(out.status.success(), "gobgp {args:?}: {}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `gobgp global rib -a ipv4-flowspec VERB match RULE` (`verb` add or del): a FlowSpec
    /// route announced or withdrawn by the operator's router.
    fn flowspec(&self, verb: &str, rule: &[&str]) -> String {
        let mut args = vec!["global", "rib", "-a", "ipv4-flowspec", verb, "match"];
        args.extend_from_slice(rule);
        self.gobgp(&args)
    }

    /// Whether gobgpd holds the protected prefix from ExaBGP.
    fn has_protected(&self) -> bool {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "gobgp", "-p", "50051"])
            .args(["global", "rib", "-a", "ipv4", PROTECTED, "-j"])
            .output();
        let Ok(out) = out else { return false };
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v.as_object().is_some_and(|m| !m.is_empty())
    }

    fn logs(&self) -> String {
        ["gobgpd.log", "exabgp.log"]
            .iter()
            .map(|f| {
                format!(
                    "--- {f}\n{}",
                    std::fs::read_to_string(self.dir.join(f)).unwrap_or_default()
                )
            })
            .collect()
    }

    /// Polls `pred` every 5 ms until it holds; returns how long it took. Panics with the
    /// daemons' logs after `limit`.
    fn until(&self, what: &str, limit: Duration, pred: impl Fn() -> bool) -> Duration {
        let t0 = Instant::now();
        while !pred() {
            assert!(
                t0.elapsed() < limit,
                "{what}: not within {limit:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        t0.elapsed()
    }
}

impl Drop for Bgp {
    fn drop(&mut self) {
        for c in [self.exabgp.take(), self.gobgpd.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
        // `ip netns exec` children die with the namespace's processes; make sure.
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).output();
                }
            });
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .expect("run");
    assert!(out.status.success(), "{argv:?}: {}", show(&out));
}

fn udp(src: [u8; 4], dst: [u8; 4], dport: u16, len: usize) -> perf::pcap::Frame {
    let mut data = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(40000, dport)
        .write(&mut data, &vec![0u8; len])
        .unwrap();
    perf::pcap::Frame {
        ts: Duration::ZERO,
        data,
    }
}

/// Holds one thread of scrubd stopped (ptrace SEIZE + INTERRUPT stops that thread alone, which
/// no signal can) until stdin closes; the kernel resumes it when the tracer exits.
const STALL_PY: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
tid = int(sys.argv[1])
if libc.ptrace(0x4206, tid, None, None) != 0 or libc.ptrace(0x4207, tid, None, None) != 0:
    sys.exit("ptrace: errno %d" % ctypes.get_errno())
os.waitpid(tid, 0x40000000)
print("stopped", flush=True)
sys.stdin.read()
"#;

/// The worker lcore's thread, by the name EAL gives it (`rte-worker-N` in DPDK 22.11).
fn worker_tid(pid: u32) -> u32 {
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .flatten()
    {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if ["rte-worker", "lcore-worker", "dpdk-worker"]
            .iter()
            .any(|n| comm.trim().starts_with(n))
        {
            return e.file_name().to_string_lossy().parse().expect("tid");
        }
    }
    panic!("no EAL worker thread in {pid}");
}

fn stage(s: &Value, name: &str) -> u64 {
    s["stages"][name].as_u64().unwrap_or(0)
}

fn drops(s: &Value, reason: &str) -> u64 {
    s["total"]["drops"][reason].as_u64().unwrap_or(0)
}

fn rules(d: &Daemon) -> Value {
    d.json(&["flowspec", "list"])
}

#[test]
fn flowspec_routes_from_a_bgp_peer_and_health_driven_announcement() {
    if let Some(why) = unavailable() {
        common::skip(&why);
        return;
    }
    let _serial = lock();
    let s = Scenario::new("flowspec");
    // Per loop of the capture: DNS to 10.0.0.1 (to be discarded), 1000-byte UDP to 10.0.0.2
    // (to be limited to RATE bytes/s), UDP to 10.0.0.3 (no rule).
    let src = [198, 51, 100, 7];
    let frames = vec![
        udp(src, [10, 0, 0, 1], 53, 40),
        udp(src, [10, 0, 0, 2], 9999, 972),
        udp(src, [10, 0, 0, 3], 9999, 40),
    ];
    let rx = s.write_pcap("rx.pcap", &frames);
    let sock = s.path("scrubd.sock");
    let cfg = s.config(
        "0@0,1@1",
        &[1],
        &format!("net_pcap0,rx_pcap={},infinite_rx=1", rx.display()),
        &format!("net_pcap1,tx_pcap={}", s.path("in-tx.pcap").display()),
        "",
        4096,
    );
    let d = Daemon::start(&cfg, &sock);
    let started = Instant::now();
    let bgp = Bgp::start(&s.dir, &sock);
    let limit = Duration::from_secs(30);

    // Health out: the protected prefix reaches the router once the session is up.
    let t = bgp.until("protected prefix announced", limit, || bgp.has_protected());
    eprintln!(
        "announcement seen by gobgpd {:.0} ms after starting the BGP daemons ({:.0} ms after scrubd's socket)",
        t.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3
    );

    // FlowSpec in: two rules scrubd evaluates, two it must refuse.
    let t0 = Instant::now();
    bgp.flowspec("add", &DNS_DISCARD);
    bgp.flowspec(
        "add",
        &[
            "destination",
            "10.0.0.2/32",
            "packet-length",
            ">500",
            "then",
            "rate-limit",
            &RATE.to_string(),
        ],
    );
    bgp.until("two rules active", limit, || {
        rules(&d)["rules"].as_array().is_some_and(|r| r.len() == 2)
    });
    // From before the first `gobgp` command (each one a process start and a gRPC call).
    let prop = t0.elapsed();
    eprintln!(
        "FlowSpec propagation: 2 routes from the first `gobgp ... add` to both active in scrubd: {:.0} ms",
        prop.as_secs_f64() * 1e3
    );
    bgp.flowspec(
        "add",
        &[
            "destination",
            "10.0.0.8/32",
            "dscp",
            "==10",
            "then",
            "discard",
        ],
    );
    bgp.flowspec(
        "add",
        &["destination", "10.0.0.9/32", "then", "redirect", "65000:1"],
    );
    bgp.until("two refusals", limit, || rules(&d)["refused"] == 2);
    let l = rules(&d);
    let active = l["rules"].as_array().unwrap();
    assert!(
        active.iter().all(|r| r["peer"] == "192.0.2.1"),
        "rules name the peer: {l}"
    );
    assert!(active.iter().any(|r| r["action"] == "discard"
        && r["route"]
            .as_str()
            .unwrap()
            .contains("destination-ipv4 10.0.0.1/32")));
    assert!(active
        .iter()
        .any(|r| r["action"] == format!("rate-limit {RATE} B/s")));
    let reasons: Vec<&str> = l["recent_refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.iter().any(|r| r.contains("dscp")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("redirect")),
        "{reasons:?}"
    );
    let human = d.ok(&["flowspec", "list"]);
    assert!(
        human.contains("192.0.2.1") && human.contains("refused"),
        "{human}"
    );

    // The rules take effect: DNS to 10.0.0.1 dropped, 10.0.0.2 held to RATE, 10.0.0.3 passes.
    let a = d.wait_stats("FlowSpec drops", |s| {
        drops(s, "flowspec_discard") > 1000 && drops(s, "flowspec_rate_limited") > 1000
    });
    let ta = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let b = d.json(&["stats"]);
    let dt = ta.elapsed().as_secs_f64();
    let passed = stage(&b, "flowspec.rate_passed") - stage(&a, "flowspec.rate_passed");
    // 1000-byte IP packets; the bucket passes at most RATE bytes/s plus its one-second burst
    // (counted from the first snapshot's time, a few hundred ms of slack either way).
    let bound = ((RATE as f64 * (dt + 1.5)) / 1000.0).ceil() as u64;
    eprintln!(
        "rate limit {RATE} B/s: {passed} packets of 1000 B passed in {dt:.2} s ({:.0} B/s), bound {bound}",
        passed as f64 * 1000.0 / dt
    );
    assert!(passed <= bound, "rate limit exceeded: {passed} > {bound}");
    assert!(passed > 0, "rate limit passes some: {b}");
    assert!(stage(&b, "flowspec.no_match") > 1000, "{b}");
    assert!(b["total"]["conserved"].as_bool().unwrap(), "{b}");
    let metrics = d.ok(&["metrics"]);
    assert!(
        metrics.contains("reason=\"flowspec_discard\"")
            && metrics.contains("scrubd_flowspec_rules_active"),
        "metrics carry FlowSpec drops and rules"
    );

    // Withdraw: the discard rule goes, its drops stop.
    let t0 = Instant::now();
    bgp.flowspec("del", &DNS_DISCARD);
    bgp.until("withdrawal applied", limit, || {
        rules(&d)["rules"].as_array().is_some_and(|r| r.len() == 1)
    });
    let wd = t0.elapsed();
    eprintln!(
        "FlowSpec withdrawal gobgp del → gone in scrubd: {:.0} ms",
        wd.as_secs_f64() * 1e3
    );
    let c1 = drops(
        &d.wait_stats("a snapshot after the withdrawal", |_| true),
        "flowspec_discard",
    );
    std::thread::sleep(Duration::from_millis(500));
    let c2 = drops(&d.json(&["stats"]), "flowspec_discard");
    // One snapshot interval may still carry drops from before the swap.
    std::thread::sleep(Duration::from_millis(500));
    let c3 = drops(&d.json(&["stats"]), "flowspec_discard");
    assert_eq!(c2, c3, "no discards after the withdrawal ({c1} {c2} {c3})");

    // Health: the worker alone stalls (the control side still answers): withdrawn once its
    // stats are older than the stall limit, announced again when it resumes.
    let stall_limit =
        Duration::from_millis(d.json(&["health"])["stall_after_ms"].as_u64().unwrap());
    let mut stall = Command::new("python3")
        .args(["-c", STALL_PY, &worker_tid(d.pid()).to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(stall.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(
        line.trim(),
        "stopped",
        "the stall helper stopped the worker"
    );
    let stalled = bgp.until(
        "withdrawal of a box with a stalled worker",
        stall_limit + Duration::from_millis(INTERVAL_MS) + Duration::from_secs(10),
        || !bgp.has_protected(),
    );
    let h = d.ctl(&["health"]);
    let why = String::from_utf8_lossy(&h.stdout).into_owned();
    drop(stall.stdin.take());
    let _ = stall.wait();
    assert!(
        !h.status.success() && why.contains("published no stats"),
        "{why}"
    );
    let resumed = bgp.until("announcement after the worker resumed", limit, || {
        bgp.has_protected()
    });
    eprintln!(
        "worker stall (stall limit {} ms + interval {INTERVAL_MS} ms, plus BGP): stalled → withdrawn at gobgpd in {:.0} ms; resumed → announced again in {:.0} ms",
        stall_limit.as_millis(),
        stalled.as_secs_f64() * 1e3,
        resumed.as_secs_f64() * 1e3
    );

    // A frozen scrubd (SIGSTOP: nothing answers) is withdrawn, and announced again when it
    // resumes.
    let stated = Duration::from_millis(INTERVAL_MS + TIMEOUT_MS);
    let pid = d.pid().to_string();
    run(&["kill", "-STOP", &pid]);
    let frozen = bgp.until(
        "withdrawal of a frozen box",
        stated + Duration::from_secs(10),
        || !bgp.has_protected(),
    );
    run(&["kill", "-CONT", &pid]);
    let back = bgp.until("announcement after resume", limit, || bgp.has_protected());
    // Killed: the socket is gone, the next check withdraws.
    run(&["kill", "-KILL", &pid]);
    let killed = bgp.until(
        "withdrawal of a killed box",
        stated + Duration::from_secs(10),
        || !bgp.has_protected(),
    );
    eprintln!(
        "failover (stated bound {} ms = interval {INTERVAL_MS} + timeout {TIMEOUT_MS}, plus BGP): \
         SIGSTOP → withdrawn at gobgpd in {:.0} ms; SIGCONT → announced again in {:.0} ms; \
         SIGKILL → withdrawn in {:.0} ms",
        stated.as_millis(),
        frozen.as_secs_f64() * 1e3,
        back.as_secs_f64() * 1e3,
        killed.as_secs_f64() * 1e3
    );
    drop(d);
}

/// Health follows the links: a port whose link goes down makes `scrubctl health` unhealthy,
/// naming the port (the bridge then withdraws, as tested above), and healthy again when it
/// comes back. The outside port is a TAP device, whose link is the interface's state.
#[test]
fn health_follows_link_state() {
    if let Some(why) = common::netns::unavailable() {
        common::skip(&why);
        return;
    }
    let _serial = lock();
    let s = Scenario::new("flowspec-link");
    let tap = format!("sfstap{}", std::process::id() % 100_000);
    let sock = s.path("scrubd.sock");
    let cfg = s.config(
        "0@0,1@1",
        &[1],
        &format!("net_tap0,iface={tap}"),
        "net_null1,no-rx=1",
        "",
        4096,
    );
    let d = Daemon::start(&cfg, &sock);
    let health = |want: bool| {
        let t0 = Instant::now();
        loop {
            let out = d.ctl(&["--json", "health"]);
            let h: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if h["healthy"] == want {
                assert_eq!(out.status.success(), want, "exit code follows health");
                return h;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "health never became {want}: {h}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    health(true);
    run(&["ip", "link", "set", &tap, "down"]);
    let h = health(false);
    assert_eq!(h["ports_down"], serde_json::json!(["outside"]), "{h}");
    assert!(
        h["reasons"][0]
            .as_str()
            .unwrap()
            .contains("link down: outside"),
        "{h}"
    );
    let m = d.ok(&["metrics"]);
    assert!(m.contains("scrubd_healthy 0\n"), "metrics follow health");
    run(&["ip", "link", "set", &tap, "up"]);
    health(true);
    let out = d.shutdown();
    assert!(out.status.success(), "{}", show(&out));
}
