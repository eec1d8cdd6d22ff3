//! The control plane against a running scrubd: every scrubctl command checked against the
//! traffic sent, hot reload under traffic, socket security and bad requests. One scrubd process
//! per scenario (EAL initialises once per process).

mod common;

use common::*;
use perf::gen::{mix, Attack, Side};
use pipeline::stage::signature::VarValue;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A two-port config; `control` keys and `pipeline` tables are appended verbatim.
fn config(
    s: &Scenario,
    lcores: &str,
    workers: &[u32],
    ports: (&str, &str),
    control: &str,
    pipeline: &str,
) -> PathBuf {
    s.config_with(
        lcores,
        workers,
        ports.0,
        ports.1,
        "",
        16383,
        &format!("{control}\n\n{pipeline}"),
    )
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Finite known traffic, then every command: outputs must match what was sent.
#[test]
fn every_command_matches_the_traffic_sent() {
    let _g = lock();
    let s = Scenario::new("ctl-all");
    let (outside, kinds) = perf::gen::mix_with_attack(4000, 51, 3);
    let inside = mix(Side::Inside, 1500, 52);
    let out_rx = s.write_pcap("outside.pcap", &outside);
    let in_rx = s.write_pcap("inside.pcap", &inside);
    let rules = s.path("t.rules");
    std::fs::write(
        &rules,
        "drop udp any 11211 -> any any (msg:\"memcached reflection\"; content:\"VALUE \"; depth:6; sid:7;)\n",
    )
    .unwrap();
    let metrics_port = free_tcp_port();
    let cfg = config(
        &s,
        "0,1",
        &[1],
        (
            &pcap_vdev(0, &out_rx, &s.path("outside-tx.pcap")),
            &pcap_vdev(1, &in_rx, &s.path("inside-tx.pcap")),
        ),
        &format!("metrics_listen = \"127.0.0.1:{metrics_port}\"\nstats_interval_ms = 50"),
        &format!(
            "[pipeline.acl]\ndeny = [\"192.0.2.99/32\"]\n\n\
             [pipeline.syncookie]\nprotected = [\"198.51.100.20/32\"]\n\n\
             [pipeline.ratelimit.classes]\nicmp = {{ rate = 1000000, burst = 1000000 }}\n\n\
             [pipeline.signature]\nrule_files = [\"{}\"]\nstrict = true\n\n\
             [pipeline]\noffenders_capacity = 4096\n",
            rules.display()
        ),
    );
    let count = |k: Attack| kinds.iter().filter(|x| **x == Some(k)).count() as u64;
    let (syns, memcached, truncated) = (
        count(Attack::SpoofedSyn),
        count(Attack::MemcachedReflection),
        count(Attack::Truncated),
    );
    let legit = kinds.iter().filter(|k| k.is_none()).count() as u64;
    let d = Daemon::start(&cfg, &s.path("scrubd.sock"));

    // stats: exact per port, per reason, per stage, per rule, per worker.
    let st = d.wait_stats("all 5500 packets", |v| n(&v["total"]["rx_packets"]) == 5500);
    let o = &st["ports"][0];
    assert_eq!(o["name"], "outside");
    let oc = &o["counters"];
    assert_eq!(n(&oc["rx_packets"]), 4000);
    assert_eq!(n(&oc["forwarded"]), legit);
    assert_eq!(n(&oc["replied"]), syns);
    assert_eq!(n(&oc["drops"]["signature"]), memcached);
    assert_eq!(n(&oc["drops"]["malformed.ipv4_truncated"]), truncated);
    assert_eq!(n(&oc["dropped"]), memcached + truncated);
    assert_eq!(oc["conserved"], true);
    let ic = &st["ports"][1]["counters"];
    assert_eq!(n(&ic["rx_packets"]), 1500);
    assert_eq!(n(&ic["forwarded"]), 1500);
    assert_eq!(n(&st["stages"]["syncookie.syn_answered"]), syns);
    // The ACL judges what enters from outside (the inside is trusted by default): it saw every
    // IP packet of the outside mix that parsed, and denied none.
    let outside_ip = outside
        .iter()
        .filter(|f| {
            pipeline::wire::parse::parse(&f.data)
                .is_ok_and(|h| matches!(h.net, pipeline::Net::Ip(_)))
        })
        .count() as u64;
    assert_eq!(n(&st["stages"]["acl.no_match"]), outside_ip);
    assert_eq!(
        n(&st["stages"]["acl.denied_src"]) + n(&st["stages"]["acl.denied_dst"]),
        0
    );
    assert_eq!(n(&st["signature_hits"][0]["sid"]), 7);
    assert_eq!(n(&st["signature_hits"][0]["hits"]), memcached);
    let w = &st["workers"][0];
    assert_eq!(n(&w["counters"]["rx_packets"]), 5500);
    assert!(n(&w["snapshots"]) > 0);
    let human = d.ok(&["stats"]);
    for needle in [
        "outside",
        "inside",
        "4000",
        "1500",
        "signature",
        "malformed.ipv4_truncated",
    ] {
        assert!(
            human.contains(needle),
            "stats table lacks {needle}:\n{human}"
        );
    }

    // latency: every packet recorded once, percentiles ordered, hgrm file written.
    let hgrm = s.path("lat.hgrm");
    let lat = d.json(&["latency", "--hgrm", hgrm.to_str().unwrap()]);
    let m = &lat["merged"];
    assert_eq!(n(&m["count"]), 5500, "{lat}");
    assert!(n(&m["p50"]) <= n(&m["p99"]) && n(&m["p99"]) <= n(&m["p9999"]));
    assert!(n(&m["p9999"]) <= n(&m["max"]) && n(&m["max"]) > 0);
    assert_eq!(n(&lat["workers"][0]["count"]), 5500);
    let h = std::fs::read_to_string(&hgrm).expect("hgrm written");
    let rows: Vec<Vec<f64>> = h
        .lines()
        .filter(|l| {
            !l.trim().is_empty() && !l.trim_start().starts_with('#') && !l.contains("Value")
        })
        .map(|l| {
            l.split_whitespace()
                .filter_map(|t| t.parse().ok())
                .collect()
        })
        .filter(|r: &Vec<f64>| r.len() >= 3)
        .collect();
    assert!(rows.len() > 2, "{h}");
    assert_eq!(rows.last().unwrap()[2] as u64, 5500, "{h}");
    assert!((rows.last().unwrap()[1] - 1.0).abs() < 1e-9, "{h}");
    assert!(h.contains("#[Max") && h.contains("Total count"), "{h}");
    let human = d.ok(&["latency"]);
    assert!(
        human.contains("p99.99") || human.contains("99.99"),
        "{human}"
    );
    let reset = d.json(&["latency", "--reset"]);
    assert_eq!(n(&reset["merged"]["count"]), 5500);
    assert_eq!(
        n(&d.json(&["latency"])["merged"]["count"]),
        0,
        "reset cleared"
    );

    // status and ports.
    let status = d.json(&["status"]);
    assert_eq!(n(&status["workers"]), 1);
    assert_eq!(status["ports"], serde_json::json!(["outside", "inside"]));
    for stage in ["acl", "syncookie", "ratelimit", "signature"] {
        assert!(
            status["stages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == stage),
            "{status}"
        );
    }
    assert_eq!(n(&status["rules"]), 1);
    let ports = d.json(&["ports"]);
    assert_eq!(ports["ports"][0]["driver"], "net_pcap");
    assert_eq!(n(&ports["ports"][0]["stats"]["ipackets"]), 4000);
    assert_eq!(n(&ports["ports"][1]["stats"]["ipackets"]), 1500);
    assert_eq!(n(&ports["ports"][1]["stats"]["opackets"]), legit);
    assert!(ports["ports"][0]["xstats"].as_object().is_some());

    // offenders: the memcached reflectors, by the sketch, against an exact count of the frames.
    let mut by_src = std::collections::BTreeMap::<String, u64>::new();
    for (f, k) in outside.iter().zip(&kinds) {
        if *k == Some(Attack::MemcachedReflection) {
            let a = std::net::Ipv4Addr::new(f.data[26], f.data[27], f.data[28], f.data[29]);
            *by_src.entry(a.to_string()).or_insert(0) += 1;
        }
    }
    let off = d.json(&["offenders", "--reason", "signature", "--limit", "500"]);
    let srcs = off["sources"].as_array().expect("sources");
    assert!(!srcs.is_empty(), "{off}");
    let listed: u64 = srcs.iter().map(|e| n(&e["packets"])).sum();
    assert_eq!(
        listed, memcached,
        "distinct sources fit the sketch, so counts are exact: {off}"
    );
    for e in srcs {
        assert_eq!(e["reason"], "signature");
        assert_eq!(
            Some(&n(&e["packets"])),
            by_src.get(e["addr"].as_str().unwrap()),
            "{e}"
        );
    }
    let bad = d.ctl(&["offenders", "--reason", "no_such_reason"]);
    assert_eq!(bad.status.code(), Some(1), "{}", show(&bad));

    // block / allow lists.
    let listed = |list: &str| {
        d.json(&[list, "list"])["entries"]
            .as_array()
            .unwrap()
            .clone()
    };
    assert_eq!(listed("block").len(), 1, "the config's deny entry");
    d.ok(&["block", "add", "203.0.113.0/24", "--ttl", "600"]);
    let b = listed("block");
    let dyn_entry = b
        .iter()
        .find(|e| e["prefix"] == "203.0.113.0/24")
        .expect("added");
    assert_eq!(dyn_entry["source"], "dynamic");
    assert!(dyn_entry["expires_in_s"].as_f64().unwrap() > 590.0);
    d.ok(&["block", "del", "203.0.113.0/24"]);
    assert_eq!(listed("block").len(), 1);
    assert_eq!(
        d.ctl(&["block", "del", "203.0.113.0/24"]).status.code(),
        Some(1)
    );
    assert_eq!(
        d.ctl(&["block", "add", "not-a-prefix"]).status.code(),
        Some(1)
    );
    d.ok(&["allow", "add", "2001:db8::/32"]);
    assert_eq!(listed("allow")[0]["prefix"], "2001:db8::/32");
    d.ok(&["allow", "del", "2001:db8::/32"]);
    assert!(listed("allow").is_empty());

    // rate limits.
    let rl = d.json(&["ratelimit", "show"]);
    let icmp = rl["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "icmp")
        .unwrap()
        .clone();
    assert_eq!(n(&icmp["rate"]), 1_000_000);
    d.ok(&[
        "ratelimit",
        "set",
        "tcp_syn",
        "--rate",
        "100",
        "--burst",
        "200",
    ]);
    let rl = d.json(&["ratelimit", "show"]);
    let syn = rl["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "tcp_syn")
        .unwrap()
        .clone();
    assert_eq!(
        (syn["enabled"].clone(), n(&syn["rate"]), n(&syn["burst"])),
        (Value::Bool(true), 100, 200)
    );
    d.ok(&["ratelimit", "set", "tcp_syn", "--off"]);
    assert_eq!(
        d.ctl(&["ratelimit", "set", "bogus", "--off"]).status.code(),
        Some(1)
    );

    // SYN cookies: rotation moves every worker's secret generation by one.
    let gen = |v: &Value| n(&v["workers"][0]["secret_generation"]);
    let before = d.json(&["syncookie", "status"]);
    assert_eq!(n(&before["counters"]["syncookie.syn_answered"]), syns);
    d.ok(&["syncookie", "rotate"]);
    // At once: the worker publishes a snapshot ahead of its ack, so the status read right
    // after the command returns already shows the new generation.
    let after = d.json(&["syncookie", "status"]);
    assert_eq!(gen(&after), gen(&before) + 1, "{after}");

    // rules reload: a good file is swapped in, a bad one is refused with file:line.
    std::fs::write(
        &rules,
        "drop udp any 11211 -> any any (msg:\"memcached reflection\"; content:\"VALUE \"; depth:6; sid:7;)\n\
         alert tcp any any -> any 80 (msg:\"admin\"; content:\"GET /admin\"; sid:8;)\n",
    )
    .unwrap();
    let r = d.json(&["rules", "reload"]);
    assert_eq!(
        (
            n(&r["rules"]),
            n(&r["rules_generation"]),
            n(&r["workers_applied"])
        ),
        (2, 1, 1)
    );
    std::fs::write(
        &rules,
        "drop udp any any -> any any (msg:\"x\"; lua:\"/a/\"; sid:9;)\n",
    )
    .unwrap();
    let bad = d.ctl(&["rules", "reload"]);
    assert_eq!(bad.status.code(), Some(1), "{}", show(&bad));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("t.rules:1") && err.contains("lua"), "{err}");
    // file:line:col, as at start-up: no config-key prefix before the path.
    assert!(
        err.contains(&format!("{}:1:", rules.display())) && !err.contains("pipeline./"),
        "{err}"
    );
    let status = d.json(&["status"]);
    assert_eq!(
        (n(&status["rules"]), n(&status["rules_generation"])),
        (2, 1),
        "bad reload changed nothing"
    );
    // The hits of the retired generation are still counted.
    assert_eq!(
        n(&d.json(&["stats"])["signature_hits"][0]["hits"]),
        memcached
    );

    // Prometheus: through scrubctl and over HTTP.
    let text = d.json(&["metrics"])["text"].as_str().unwrap().to_string();
    assert!(text.contains("# TYPE"), "{text}");
    let mut http =
        std::net::TcpStream::connect(("127.0.0.1", metrics_port)).expect("metrics listener");
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    http.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("text/plain"), "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    let rx_line = body
        .lines()
        .find(|l| l.starts_with("scrubd_") && l.contains("rx_packets") && l.contains("outside"))
        .unwrap_or_else(|| panic!("no rx_packets sample for outside:\n{body}"));
    assert!(rx_line.ends_with(" 4000"), "{rx_line}");

    // DPDK telemetry: dpdk-telemetry.py shows scrubd's own command next to DPDK's.
    let script = Path::new("/usr/bin/dpdk-telemetry.py");
    if script.exists() {
        let prefix = format!("scrubd-test-{}-{}", s.name, std::process::id());
        let mut child = Command::new(script)
            .args(["-f", &prefix])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dpdk-telemetry.py");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"/scrubd/stats\n/\n")
            .unwrap();
        let out = wait_with_limit(child, Duration::from_secs(30));
        let text = String::from_utf8_lossy(&out.stdout);
        let reply: Value = text
            .lines()
            .find_map(|l| {
                let l = l.trim_start_matches("--> ").trim();
                serde_json::from_str::<Value>(l)
                    .ok()
                    .filter(|v| v.get("/scrubd/stats").is_some())
            })
            .unwrap_or_else(|| panic!("no /scrubd/stats reply:\n{}", show(&out)));
        let t = &reply["/scrubd/stats"]["total"];
        assert_eq!(n(&t["rx_packets"]), 5500, "{reply}");
        assert!(
            text.contains("/ethdev/stats"),
            "DPDK's own commands listed too: {text}"
        );
    } else {
        eprintln!("dpdk-telemetry.py not installed: telemetry not exercised here");
    }

    // top: two refreshes then exit.
    let top = d.ok(&["top", "--interval", "0.2", "--count", "2"]);
    assert!(top.contains("outside"), "{top}");

    // shutdown: final report with latency, exact stats path, socket removed.
    let out = d.shutdown();
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("stopped by scrubctl shutdown"), "{stdout}");
    assert!(stdout.contains("latency"), "{stdout}");
    assert!(
        stdout.contains("stats path (control-side totals = workers' final counters): exact"),
        "{stdout}"
    );
    let sum = s.summary();
    assert_conserved(&sum);
    assert_eq!(sum["stats_path_exact"], true);
    assert_eq!(
        n(&sum["latency"][0]["count"]),
        0,
        "reset above; nothing arrived since"
    );
    assert!(
        !s.path("scrubd.sock").exists(),
        "socket removed on shutdown"
    );
}

/// Reloads and ACL changes while traffic flows through two workers: nothing lost, nothing
/// counted twice, every packet judged by one whole rule set.
#[test]
fn hot_reload_under_traffic_loses_nothing() {
    reload_under_traffic("ctl-reload", &[], "", 20);
}

/// The same with all of Emerging Threats Open loaded beside the two test rules (issue 13): each
/// reload parses and compiles the whole set (about 21,000 rules) while both workers keep
/// forwarding, and still nothing is lost or judged twice.
#[test]
fn hot_reload_of_et_open_under_traffic_loses_nothing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rules/et-open");
    let mut et: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(d) => d
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "rules"))
            .collect(),
        Err(_) => {
            skip(&format!("{} absent", dir.display()));
            return;
        }
    };
    et.sort();
    assert!(et.len() > 40, "ET Open has 55 rule files: {et:?}");
    // Suricata's default address and port variables, which ET Open's headers use, as the
    // project defines them for loading ET Open.
    let mut vars = String::from("[pipeline.signature.vars]\n");
    for (k, v) in pipeline::stage::signature::suricata_default_vars() {
        let v = match v {
            VarValue::One(s) => format!("{s:?}"),
            VarValue::Many(l) => format!("{l:?}"),
        };
        vars.push_str(&format!("{k} = {v}\n"));
    }
    reload_under_traffic("ctl-reload-et", &et, &vars, 2);
}

/// Starts two workers on endless UDP traffic, half "AAAA", half "BBBB" payloads, with the rule
/// set `extra` plus one test rule dropping one of the two, then swaps the test rule `reloads`
/// times (and adds ACL entries) while traffic flows. `vars` is appended to the config.
fn reload_under_traffic(name: &str, extra: &[PathBuf], vars: &str, reloads: u64) {
    let _g = lock();
    let s = Scenario::new(name);
    // Two kinds of UDP payload; v1 drops "AAAA", v2 drops "BBBB".
    let frame = |i: u64, payload: &[u8]| {
        let mut v = Vec::new();
        udp_frame(&mut v, i, payload);
        perf::pcap::Frame {
            ts: Duration::from_micros(i),
            data: v,
        }
    };
    let frames: Vec<_> = (0..2000u64)
        .map(|i| {
            frame(
                i,
                if i % 2 == 0 {
                    b"AAAA-payload"
                } else {
                    b"BBBB-payload"
                },
            )
        })
        .collect();
    let q0 = s.write_pcap("q0.pcap", &frames[..1000]);
    let q1 = s.write_pcap("q1.pcap", &frames[1000..]);
    let rules = s.path("r.rules");
    let v1 = "drop udp any any -> any any (msg:\"A\"; content:\"AAAA\"; sid:1;)\n";
    let v2 = "drop udp any any -> any any (msg:\"B\"; content:\"BBBB\"; sid:2;)\n";
    std::fs::write(&rules, v1).unwrap();
    let files: Vec<String> = std::iter::once(&rules)
        .chain(extra)
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    let cfg = config(
        &s,
        "0,1,2@1",
        &[1, 2],
        (
            &format!(
                "net_pcap0,rx_pcap={},rx_pcap={},infinite_rx=1",
                q0.display(),
                q1.display()
            ),
            "net_null0,no-rx=1",
        ),
        "stats_interval_ms = 20",
        &format!(
            "[pipeline.signature]\nrule_files = [{}]\n{vars}",
            files.join(", ")
        ),
    );
    let d = Daemon::start(&cfg, &s.path("scrubd.sock"));
    d.wait_stats("traffic", |v| n(&v["total"]["rx_packets"]) > 10_000);
    let loaded = n(&d.json(&["status"])["rules"]);
    for i in 0..reloads {
        std::fs::write(&rules, if i % 2 == 0 { v2 } else { v1 }).unwrap();
        let before = n(&d.json(&["stats"])["total"]["rx_packets"]);
        let r = d.json(&["rules", "reload"]);
        assert_eq!(n(&r["workers_applied"]), 2, "{r}");
        assert_eq!(n(&r["rules_generation"]), i + 1);
        assert_eq!(n(&r["rules"]), loaded, "the same set every time: {r}");
        // The workers went on receiving while the set was compiled.
        let after = n(&d.json(&["stats"])["total"]["rx_packets"]);
        assert!(
            after > before,
            "no packets during reload {i}: {before} -> {after}"
        );
        eprintln!(
            "{name}: reload {i}: compiled in {} ms, {} packets received meanwhile",
            r["compile_ms"],
            after - before
        );
        if i % 5 == 0 {
            d.ok(&["block", "add", "192.0.2.0/24", "--ttl", "1"]);
        }
        // Every snapshot is internally consistent, also mid-reload.
        let st = d.json(&["stats"]);
        for p in st["ports"].as_array().unwrap() {
            assert_eq!(p["counters"]["conserved"], true, "{p}");
        }
    }
    let mid = d.json(&["stats"]);
    let out = d.shutdown();
    assert!(out.status.success(), "{}", show(&out));
    let sum = s.summary();
    let ports = assert_conserved(&sum);
    assert_eq!(sum["stats_path_exact"], true, "{}", show(&out));
    let o = &ports[0];
    assert!(n(&o["rx"]) >= n(&mid["total"]["rx_packets"]));
    // Every drop is a drop by one of the two test rules (the ET rules are `alert` rules: they
    // count, never drop), and their hits across all generations add up to exactly the drops:
    // no packet judged twice or by a half-installed set.
    assert_eq!(n(&o["dropped"]), n(&o["drops"]["signature"]));
    let hits = |sid: u64| -> u64 {
        sum["signature_hits"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| n(&h["sid"]) == sid)
            .map(|h| n(&h["hits"]))
            .sum()
    };
    let (h1, h2) = (hits(1), hits(2));
    assert_eq!(h1 + h2, n(&o["dropped"]), "{}", sum["signature_hits"]);
    // Both sets ran, and the forwarded packets are the other half of each generation's traffic.
    assert!(h1 > 0 && h2 > 0, "{}", sum["signature_hits"]);
    assert!(n(&o["forwarded"]) > 0);
    eprintln!(
        "{name}: {loaded} rules, {reloads} reloads, rx {} forwarded {} dropped {}",
        n(&o["rx"]),
        n(&o["forwarded"]),
        n(&o["dropped"])
    );
}

/// A UDP/IPv4 frame from 10.1.0.x to 10.2.0.1 with `payload` (checksums valid).
fn udp_frame(out: &mut Vec<u8>, i: u64, payload: &[u8]) {
    let src = [10, 1, (i >> 8) as u8, i as u8];
    let dst = [10, 2, 0, 1];
    let udp_len = 8 + payload.len();
    let ip_len = 20 + udp_len;
    out.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let mut ip = vec![
        0x45,
        0,
        (ip_len >> 8) as u8,
        ip_len as u8,
        0,
        1,
        0,
        0,
        64,
        17,
        0,
        0,
    ];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let sum = pipeline::wire::checksum::checksum(&ip);
    ip[10] = (sum >> 8) as u8;
    ip[11] = sum as u8;
    out.extend_from_slice(&ip);
    let mut udp = vec![
        0x30,
        0x39,
        0x1f,
        0x90,
        (udp_len >> 8) as u8,
        udp_len as u8,
        0,
        0,
    ];
    udp.extend_from_slice(payload);
    // UDP checksum 0 = none (IPv4).
    out.extend_from_slice(&udp);
}

/// Raw protocol: one request line, one response line.
fn raw(sock: &Path, line: &[u8]) -> Value {
    let mut c = UnixStream::connect(sock).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(line).unwrap();
    let mut r = BufReader::new(c);
    let mut resp = String::new();
    r.read_line(&mut resp).expect("response line");
    serde_json::from_str(&resp).unwrap_or_else(|e| panic!("{e}: {resp}"))
}

/// Socket mode and ownership, stale sockets, a live socket not stolen, bad and oversized
/// requests, a stalled client that does not block others, peer-credential refusal.
#[test]
fn socket_security_and_bad_requests() {
    let _g = lock();
    let s = Scenario::new("ctl-sock");
    let sock = s.path("scrubd.sock");
    // A stale socket file from a crashed daemon is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    // 20,000 deny entries make a `block list` reply of about a megabyte: it must arrive whole.
    let deny = s.path("deny.txt");
    let list: String = (0..20_000u32)
        .map(|i| format!("10.{}.{}.{}\n", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    std::fs::write(&deny, list).unwrap();
    let cfg = config(
        &s,
        "0,1",
        &[1],
        ("net_null0,no-rx=1", "net_null1,no-rx=1"),
        "socket_mode = \"0660\"\nsocket_group = \"root\"",
        &format!("[pipeline.acl]\ndeny_file = \"{}\"\n", deny.display()),
    );
    let d = Daemon::start(&cfg, &sock);
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    // A second daemon on the same socket refuses to start and says why.
    let s2 = Scenario::new("ctl-sock2");
    let cfg2 = config(
        &s2,
        "0,1",
        &[1],
        ("net_null0,no-rx=1", "net_null1,no-rx=1"),
        "",
        "",
    );
    let text = std::fs::read_to_string(&cfg2).unwrap().replace(
        &s2.path("scrubd.sock").display().to_string(),
        &sock.display().to_string(),
    );
    std::fs::write(&cfg2, text).unwrap();
    let out = run_config(&cfg2, Duration::from_secs(60));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another scrubd"), "{err}");
    assert!(
        UnixStream::connect(&sock).is_ok(),
        "the first daemon's socket survives"
    );

    let big_list = d.json(&["block", "list"]);
    let entries = big_list["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 20_000);
    assert_eq!(entries[19_999]["source"], "config");

    // Bad requests get error responses naming the problem.
    let e = raw(&sock, b"this is not json\n");
    assert_eq!(
        (e["ok"].clone(), e["error"]["code"].clone()),
        (Value::Bool(false), "bad_request".into())
    );
    let e = raw(&sock, b"{\"v\":1,\"id\":5,\"cmd\":\"frobnicate\"}\n");
    assert_eq!(e["error"]["code"], "bad_request");
    let e = raw(
        &sock,
        b"{\"v\":1,\"cmd\":\"block_add\",\"args\":{\"prefix\":\"1.2.3.4\",\"bogus\":1}}\n",
    );
    assert_eq!(e["error"]["code"], "bad_request");
    let e = raw(&sock, b"{\"v\":99,\"id\":6,\"cmd\":\"status\"}\n");
    assert_eq!(e["error"]["code"], "unsupported_version");
    let mut big = b"{\"v\":1,\"cmd\":\"block_add\",\"args\":{\"prefix\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'1', ctl::protocol::MAX_REQUEST_BYTES));
    big.extend_from_slice(b"\"}}\n");
    let mut c = UnixStream::connect(&sock).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The daemon replies and closes once the cap is passed, while this is still writing.
    let _ = c.write_all(&big);
    let mut resp = String::new();
    BufReader::new(c)
        .read_line(&mut resp)
        .expect("response line");
    let e: Value = serde_json::from_str(&resp).unwrap_or_else(|e| panic!("{e}: {resp}"));
    assert_eq!(e["error"]["code"], "too_large");
    let e = raw(
        &sock,
        b"{\"v\":1,\"id\":9,\"cmd\":\"block_add\",\"args\":{\"prefix\":\"300.0.0.0/8\"}}\n",
    );
    assert_eq!(
        (e["id"].clone(), e["error"]["code"].clone()),
        (9.into(), "invalid".into())
    );

    // A client that sends half a request and stalls does not hold up anyone else.
    let mut stalled = UnixStream::connect(&sock).unwrap();
    stalled.write_all(b"{\"v\":1,\"cmd\":\"sta").unwrap();
    let ok = raw(&sock, b"{\"v\":1,\"id\":1,\"cmd\":\"status\"}\n");
    assert_eq!(ok["ok"], true, "{ok}");
    // A flood of requests on one connection is answered in order.
    let c = UnixStream::connect(&sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut batch = Vec::new();
    for i in 0..500 {
        batch.extend_from_slice(format!("{{\"v\":1,\"id\":{i},\"cmd\":\"status\"}}\n").as_bytes());
    }
    let writer = {
        let mut w = c.try_clone().unwrap();
        std::thread::spawn(move || w.write_all(&batch))
    };
    let mut r = BufReader::new(c);
    for i in 0..500u64 {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!((n(&v["id"]), v["ok"].clone()), (i, Value::Bool(true)));
    }
    writer.join().unwrap().unwrap();
    drop(stalled);

    // Peer credentials: with the file mode opened to everyone, a process whose uid and groups
    // the daemon does not allow still gets in at the file level and is refused by SO_PEERCRED.
    if Path::new("/usr/bin/setpriv").exists() {
        // A copy the unprivileged user can execute, in a directory it can enter.
        let bin = s.path("scrubctl");
        std::fs::copy(scrubctl_bin(), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&s.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        let out = Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .arg("--socket")
            .arg(&sock)
            .arg("status")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("65534") || err.contains("not allowed") || err.contains("denied"),
            "{err}"
        );
    } else {
        eprintln!("setpriv not installed: peer-credential refusal not exercised here");
    }

    let out = d.shutdown();
    assert!(out.status.success(), "{}", show(&out));
    assert!(!sock.exists());
}

/// Issue 10, items 3 and 4, against a running scrubd: eight clients trickling an HTTP request
/// do not shut out a Prometheus scrape, and sixteen idle control-socket clients do not lock
/// root out (`scrubctl status` and `shutdown` still work).
#[test]
fn operator_gets_in_past_slow_and_idle_clients() {
    let _g = lock();
    let s = Scenario::new("ctl-access");
    let metrics_port = free_tcp_port();
    let cfg = config(
        &s,
        "0,1",
        &[1],
        ("net_null0,no-rx=1", "net_null1,no-rx=1"),
        &format!("metrics_listen = \"127.0.0.1:{metrics_port}\""),
        "",
    );
    let d = Daemon::start(&cfg, &s.path("scrubd.sock"));
    let addr = format!("127.0.0.1:{metrics_port}");
    let slow: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&addr).expect("connect to metrics");
            c.write_all(b"GET /met").expect("first bytes");
            c
        })
        .collect();
    let scrape = |what: &str| {
        let mut c = std::net::TcpStream::connect(&addr).expect("connect to metrics");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        c.read_to_string(&mut body).expect("scrape reply");
        assert!(
            body.starts_with("HTTP/1.") && body.contains(" 200 ") && body.contains("scrubd_"),
            "{what}: {}",
            &body[..body.len().min(200)]
        );
    };
    scrape("with 8 slow clients connected");
    let idle: Vec<UnixStream> = (0..16)
        .map(|_| UnixStream::connect(s.path("scrubd.sock")).expect("idle client"))
        .collect();
    let status = d.json(&["status"]);
    assert!(status.is_object(), "{status}");
    scrape("with 16 idle socket clients too");
    drop(slow);
    let out = d.shutdown();
    assert!(out.status.success(), "{}", show(&out));
    drop(idle);
}
