//! The scrubctl binary against a fake-handler server.

mod common;

use common::*;
use ctl::protocol::{Command, StatsReport};
use std::path::Path;
use std::process::{Command as Proc, Output};

fn scrubctl(socket: &Path, args: &[&str]) -> Output {
    Proc::new(env!("CARGO_BIN_EXE_scrubctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("SCRUBD_SOCKET")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn status_human_and_json() {
    let fx = start();
    let o = scrubctl(&fx.path(), &["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("9.9.9-fake") && out.contains("outside, inside"),
        "{out}"
    );
    let o = scrubctl(&fx.path(), &["status", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["pid"], 4242);
    assert_eq!(fx.fake.calls(), vec![Command::Status, Command::Status]);
}

#[test]
fn stats_table() {
    let fx = start();
    let o = scrubctl(&fx.path(), &["stats"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let row = out.lines().find(|l| l.starts_with("outside")).unwrap();
    assert!(row.contains("1.23k"), "{out}");
    assert!(out.contains("signature"));
}

#[test]
fn latency_hgrm_written_to_file() {
    let fx = start();
    let file = fx.dir.path().join("out.hgrm");
    let o = scrubctl(
        &fx.path(),
        &["latency", "--reset", "--hgrm", file.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), HGRM);
    assert!(stdout(&o).contains("p99.99"));
    assert_eq!(
        fx.fake.calls(),
        vec![Command::Latency {
            reset: true,
            hgrm: true
        }]
    );
}

#[test]
fn top_redraws_count_times() {
    let fx = start();
    let o = scrubctl(&fx.path(), &["top", "--interval", "0.01", "--count", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("refresh 1") && out.contains("refresh 2") && !out.contains("refresh 3"));
    assert!(
        !out.contains('\x1b'),
        "no escape codes when stdout is not a terminal"
    );
    assert_eq!(fx.fake.calls(), vec![Command::Stats, Command::Stats]);
    let o = scrubctl(
        &fx.path(),
        &["top", "--json", "--interval", "0.01", "--count", "2"],
    );
    let docs: Vec<StatsReport> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs, vec![stats_report(), stats_report()]);
}

#[test]
fn mutating_subcommands_send_the_right_command() {
    let fx = start();
    for args in [
        &["block", "add", "203.0.113.0/24", "--ttl", "600"][..],
        &["allow", "del", "192.0.2.1/32"],
        &[
            "ratelimit",
            "set",
            "icmp",
            "--rate",
            "10",
            "--burst",
            "20",
            "--mode",
            "fixed_window",
        ],
        &["ratelimit", "set", "tcp_syn", "--off"],
        &["offenders", "--limit", "5", "--reason", "signature"],
        &["syncookie", "rotate"],
        &["rules", "reload"],
    ] {
        let o = scrubctl(&fx.path(), args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(
        fx.fake.calls(),
        vec![
            Command::BlockAdd {
                prefix: "203.0.113.0/24".into(),
                ttl_s: Some(600)
            },
            Command::AllowDel {
                prefix: "192.0.2.1/32".into()
            },
            Command::RatelimitSet {
                class: "icmp".into(),
                rate: Some(10),
                burst: Some(20),
                mode: Some("fixed_window".into()),
                off: false
            },
            Command::RatelimitSet {
                class: "tcp_syn".into(),
                rate: None,
                burst: None,
                mode: None,
                off: true
            },
            Command::Offenders {
                limit: Some(5),
                reason: Some("signature".into())
            },
            Command::SyncookieRotate,
            Command::RulesReload,
        ]
    );
}

#[test]
fn offenders_table() {
    let fx = start();
    let o = scrubctl(&fx.path(), &["offenders", "--reason", "signature"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("198.51.100.9") && out.contains("destinations: (none)"),
        "{out}"
    );
}

#[test]
fn metrics_prints_text_verbatim() {
    let fx = start();
    let o = scrubctl(&fx.path(), &["metrics"]);
    assert_eq!(stdout(&o), METRICS);
}

#[test]
fn daemon_error_exits_1_with_code_on_stderr() {
    let fx = start();
    let o = scrubctl(&fx.path(), &["block", "add", "not-a-prefix"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("invalid") && err.contains("not-a-prefix"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn usage_errors_exit_2_and_reach_no_daemon() {
    let fx = start();
    for args in [
        &["frobnicate"][..],
        &["ratelimit", "set", "icmp"],
        &["ratelimit", "set", "icmp", "--rate", "5"],
        &[
            "ratelimit",
            "set",
            "icmp",
            "--off",
            "--rate",
            "5",
            "--burst",
            "1",
        ],
        &[
            "ratelimit",
            "set",
            "icmp",
            "--rate",
            "5",
            "--burst",
            "1",
            "--mode",
            "leaky",
        ],
        &["top", "--interval", "0"],
        &["block", "add"],
    ] {
        let o = scrubctl(&fx.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    assert!(fx.fake.calls().is_empty());
}

#[test]
fn cannot_connect_exits_3_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sock");
    let o = scrubctl(&path, &["status"]);
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    assert!(
        err.contains(path.to_str().unwrap()) && err.contains("--socket"),
        "{err}"
    );
}

#[test]
fn socket_from_environment() {
    let fx = start();
    let o = Proc::new(env!("CARGO_BIN_EXE_scrubctl"))
        .arg("ports")
        .env("SCRUBD_SOCKET", fx.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("net_pcap0"));
    assert_eq!(fx.fake.calls(), vec![Command::Ports]);
}

#[test]
fn help_on_every_level_has_an_example() {
    for args in [
        &["--help"][..],
        &["latency", "--help"],
        &["block", "--help"],
        &["block", "add", "--help"],
        &["ratelimit", "set", "--help"],
        &["top", "--help"],
    ] {
        let o = Proc::new(env!("CARGO_BIN_EXE_scrubctl"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        let out = stdout(&o);
        assert!(out.contains("Example"), "{args:?}: {out}");
        assert!(out.contains("scrubctl "), "{args:?}");
    }
}

#[test]
fn block_add_from_a_file_is_one_request() {
    let fx = start();
    let file = fx.dir.path().join("attackers.txt");
    std::fs::write(
        &file,
        "# attackers\n192.0.2.1\n\n198.51.100.0/24  # botnet\n2001:db8::/32\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let o = scrubctl(&fx.path(), &["block", "add", "-f", f, "--ttl", "60"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = scrubctl(&fx.path(), &["allow", "add", "--file", f]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let list: Vec<String> = ["192.0.2.1", "198.51.100.0/24", "2001:db8::/32"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        fx.fake.calls(),
        vec![
            Command::BlockAddMany {
                prefixes: list.clone(),
                ttl_s: Some(60)
            },
            Command::AllowAddMany {
                prefixes: list,
                ttl_s: None
            },
        ]
    );
    // Either a prefix or a file, not both, not neither; a missing file is named.
    let o = scrubctl(&fx.path(), &["block", "add", "192.0.2.1", "-f", f]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = scrubctl(&fx.path(), &["block", "add"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = scrubctl(&fx.path(), &["block", "add", "-f", "/nonexistent/list.txt"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/list.txt"),
        "{}",
        stderr(&o)
    );
}
