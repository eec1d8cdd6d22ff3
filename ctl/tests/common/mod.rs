//! A fake daemon for the socket tests: records every command and answers with canned reports.
#![allow(dead_code)]

use ctl::protocol::*;
use ctl::server::{serve, Handler, Server, ServerConfig};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upper bound on anything a test waits for, so a bug hangs no test forever.
pub const BOUND: Duration = Duration::from_secs(30);

pub const HGRM: &str = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n     100.000 0.000000000000          1           1.00\n";
pub const METRICS: &str =
    "# TYPE scrubd_rx_packets counter\nscrubd_rx_packets{port=\"outside\"} 10000\n";

#[derive(Default)]
pub struct Fake {
    pub calls: Mutex<Vec<Command>>,
    /// Size of the `metrics` text, to make replies that cannot fit a socket buffer.
    pub metrics_len: usize,
}

impl Fake {
    pub fn calls(&self) -> Vec<Command> {
        self.calls.lock().unwrap().clone()
    }
}

pub fn stats_report() -> StatsReport {
    let mut drops = BTreeMap::new();
    drops.insert("signature".to_string(), 7u64);
    let c = Counters {
        rx_packets: 100,
        rx_bytes: 6400,
        forwarded: 90,
        replied: 3,
        dropped: 7,
        drops,
        conserved: true,
    };
    StatsReport {
        uptime_s: 3.0,
        rate_window_s: 1.0,
        ports: vec![PortStatsRow {
            name: "outside".into(),
            counters: c.clone(),
            rates: Rates {
                rx_pps: 1234.0,
                ..Default::default()
            },
        }],
        total: c,
        ..Default::default()
    }
}

pub fn latency_row(label: &str) -> LatencyRow {
    LatencyRow {
        label: label.into(),
        count: 10,
        min: 100,
        mean: 150.0,
        p50: 140,
        p90: 180,
        p99: 200,
        p999: 210,
        p9999: 220,
        max: 230,
    }
}

impl Handler for Fake {
    fn handle(&self, cmd: Command) -> Result<serde_json::Value, ErrorBody> {
        self.calls.lock().unwrap().push(cmd.clone());
        let v = match cmd {
            Command::Status => serde_json::to_value(StatusReport {
                version: "9.9.9-fake".into(),
                pid: 4242,
                ports: vec!["outside".into(), "inside".into()],
                workers: 2,
                ..Default::default()
            }),
            Command::Stats => serde_json::to_value(stats_report()),
            Command::Latency { reset, hgrm } => serde_json::to_value(LatencyReport {
                unit: "ns".into(),
                since_s: 3.0,
                window_s: 1.0,
                workers: vec![latency_row("worker 0")],
                merged: latency_row("all"),
                recent: latency_row("all (recent)"),
                hgrm: hgrm.then(|| HGRM.to_string()),
                reset,
            }),
            Command::Metrics => {
                let mut text = METRICS.to_string();
                while text.len() < self.metrics_len {
                    text.push_str("# padding padding padding padding padding padding\n");
                }
                serde_json::to_value(MetricsReport { text })
            }
            Command::RulesReload => serde_json::to_value(ReloadReport {
                rules_generation: 2,
                rules: 5,
                acl_entries: 1,
                workers_applied: 2,
                compile_ms: 0.5,
                ..Default::default()
            }),
            Command::BlockList | Command::AllowList => serde_json::to_value(ListReport {
                list: if matches!(cmd, Command::BlockList) {
                    "block"
                } else {
                    "allow"
                }
                .into(),
                entries: vec![ListEntry {
                    prefix: "203.0.113.0/24".into(),
                    source: "dynamic".into(),
                    expires_in_s: Some(30.0),
                }],
            }),
            Command::Offenders { ref reason, .. } => serde_json::to_value(OffendersReport {
                reason: reason.clone(),
                sources: vec![Offender {
                    addr: "198.51.100.9".into(),
                    reason: "signature".into(),
                    packets: 77,
                    error: 1,
                }],
                destinations: vec![],
            }),
            Command::Ports => serde_json::to_value(PortsReport {
                ports: vec![PortInfo {
                    name: "outside".into(),
                    device: "net_pcap0".into(),
                    link_up: true,
                    ..Default::default()
                }],
            }),
            Command::RatelimitShow => serde_json::to_value(RatelimitReport::default()),
            Command::SyncookieStatus => serde_json::to_value(SyncookieReport::default()),
            Command::BlockAdd { ref prefix, .. } if prefix == "not-a-prefix" => {
                return Err(ErrorBody {
                    code: ErrorCode::Invalid,
                    message: format!("bad prefix {prefix:?}"),
                })
            }
            Command::BlockDel { ref prefix } if prefix == "panic" => panic!("fake handler panic"),
            other => serde_json::to_value(Done {
                message: format!("done: {other:?}"),
            }),
        };
        Ok(v.unwrap())
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub fake: Arc<Fake>,
    pub server: Option<Server>,
}

impl Fixture {
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("scrubd.sock")
    }
}

pub fn config(path: &Path) -> ServerConfig {
    ServerConfig {
        path: path.to_path_buf(),
        ..Default::default()
    }
}

pub fn start_with(fake: Fake, tweak: impl FnOnce(&mut ServerConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(fake);
    let mut cfg = config(&dir.path().join("scrubd.sock"));
    tweak(&mut cfg);
    let server = serve(cfg, fake.clone()).expect("serve");
    Fixture {
        dir,
        fake,
        server: Some(server),
    }
}

pub fn start() -> Fixture {
    start_with(Fake::default(), |_| {})
}

/// A raw connection for sending arbitrary bytes.
pub struct Raw {
    pub w: UnixStream,
    pub r: BufReader<UnixStream>,
}

impl Raw {
    pub fn connect(path: &Path) -> Raw {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(BOUND)).unwrap();
        s.set_write_timeout(Some(BOUND)).unwrap();
        Raw {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    /// Next response line; `None` on EOF or reset.
    pub fn recv(&mut self) -> Option<Response> {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).expect("response is JSON")),
        }
    }

    pub fn roundtrip(&mut self, line: &str) -> Response {
        self.send(format!("{line}\n").as_bytes());
        self.recv().expect("a response")
    }

    /// True when the server closed the connection (EOF or reset), as opposed to a timeout.
    pub fn closed(&mut self) -> bool {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => {
                e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut
            }
        }
    }
}

/// Poll `cond` until true or BOUND passes; the bound only keeps a broken build from hanging.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < BOUND {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

pub fn code(r: &Response) -> ErrorCode {
    assert!(!r.ok, "expected an error, got {r:?}");
    r.error.as_ref().unwrap().code
}
