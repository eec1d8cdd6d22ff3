//! The operator's view of a fleet (issue 16 item 4): `[control] metrics_box` puts `box="..."`
//! on every Prometheus sample (checked with promtool, as the stats tests do, over HTTP as a
//! scraper sees it), and every metric name and literal label value the shipped Grafana
//! dashboard (configs/fleet/grafana-dashboard.json) queries is one scrubd really exports.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const BOX: &str = "scrub-test-a";

fn repo(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// `promtool ARGS` with `stdin`; None when promtool is not installed.
fn promtool(args: &[&str], stdin: &str) -> Option<std::process::Output> {
    let child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    Some(child.wait_with_output().unwrap())
}

/// Every metric name a PromQL expression mentions.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("scrubd_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// `label="value"` and `label=~"a|b"` matchers of an expression, as (label, value) pairs.
fn literal_matchers(expr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for label in ["counter", "reason", "quantile"] {
        for op in ["=\"", "=~\""] {
            let pat = format!("{label}{op}");
            let mut rest = expr;
            while let Some(i) = rest.find(&pat) {
                let tail = &rest[i + pat.len()..];
                let end = tail.find('"').expect("closed matcher");
                for v in tail[..end].split('|') {
                    out.push((label.to_string(), v.to_string()));
                }
                rest = &tail[end..];
            }
        }
    }
    out
}

#[test]
fn box_label_on_every_sample_and_dashboard_queries_what_scrubd_exports() {
    let _serial = lock();
    let s = Scenario::new("fleet-metrics");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let frames = vec![perf::pcap::Frame {
        ts: Duration::ZERO,
        data: {
            let mut v = Vec::new();
            etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4([198, 51, 100, 1], [10, 0, 0, 1], 64)
                .udp(1, 2)
                .write(&mut v, b"x")
                .unwrap();
            v
        },
    }];
    let rx = s.write_pcap("rx.pcap", &frames);
    let sock = s.path("scrubd.sock");
    let cfg = s.config_with(
        "0@0,1@1",
        &[1],
        &pcap_vdev(0, &rx, &s.path("out-tx.pcap")),
        &format!("net_pcap1,tx_pcap={}", s.path("in-tx.pcap").display()),
        "",
        4096,
        &format!("metrics_listen = \"127.0.0.1:{port}\"\nmetrics_box = \"{BOX}\"\nstats_interval_ms = 50"),
    );
    let d = Daemon::start(&cfg, &sock);
    d.wait_stats("the frame", |s| s["total"]["rx_packets"] == 1);

    // As a scraper sees it.
    let mut http = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics listener");
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    http.read_to_string(&mut resp).unwrap();
    let (_, text) = resp.split_once("\r\n\r\n").expect("HTTP response");
    let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(samples.len() > 50, "{text}");
    for l in &samples {
        assert!(
            l.contains(&format!("{{box=\"{BOX}\"")),
            "sample without the box label first: {l}"
        );
    }
    assert!(
        text.contains(&format!("scrubd_healthy{{box=\"{BOX}\"}} 1\n")),
        "{text}"
    );
    assert!(text.contains(&format!(
        "scrubd_flowspec_rules_active{{box=\"{BOX}\"}} 0\n"
    )));
    match promtool(&["check", "metrics"], text) {
        Some(out) => assert!(out.status.success(), "promtool: {}", show(&out)),
        None => eprintln!("promtool not installed: lint skipped (apt-get install prometheus)"),
    }

    // The dashboard asks only for what exists.
    let families: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("configs/fleet/grafana-dashboard.json")).unwrap(),
    )
    .expect("dashboard is JSON");
    let mut exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("expr").to_string())
        .collect();
    exprs.extend(
        dash["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["definition"].as_str().map(str::to_string)),
    );
    assert!(exprs.len() >= 8, "{exprs:?}");
    let mut checked = 0;
    for e in &exprs {
        for name in metric_names(e) {
            assert!(
                families.contains(&name),
                "dashboard queries {name}, which scrubd does not export ({e})"
            );
            checked += 1;
        }
        for (label, value) in literal_matchers(e) {
            let series = format!("{label}=\"{value}\"");
            assert!(
                samples.iter().any(|l| l.contains(&series)),
                "dashboard matches {series}, which no exported series has ({e})"
            );
        }
    }
    assert!(checked >= 10, "{checked} metric references checked");
    // Every drop reason the dashboard's "drops by reason" panel can show is exported, FlowSpec's
    // included.
    for r in ["flowspec_discard", "flowspec_rate_limited", "acl_deny"] {
        assert!(text.contains(&format!("reason=\"{r}\"")), "{r}");
    }
    let out = d.shutdown();
    assert!(out.status.success(), "{}", show(&out));

    // The scrape example is a valid Prometheus config.
    let yml = repo("configs/fleet/prometheus.yml");
    if let Some(out) = promtool(&["check", "config", yml.to_str().unwrap()], "") {
        assert!(
            out.status.success(),
            "promtool check config: {}",
            show(&out)
        );
    }
}

#[test]
fn an_empty_box_label_is_refused_naming_the_key() {
    let _serial = lock();
    let s = Scenario::new("fleet-metrics-bad");
    let cfg = s.config_with(
        "0,1",
        &[1],
        "net_null0,no-rx=1",
        "net_null1,no-rx=1",
        "duration_s = 0.3",
        8191,
        "metrics_box = \" \"",
    );
    let out = run_config(&cfg, Duration::from_secs(60));
    assert!(!out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("control.metrics_box"), "{err}");
}
