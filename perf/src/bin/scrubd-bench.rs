//! Forwarding benchmark: scrubd against dpdk-testpmd io forwarding on identical virtual devices,
//! in the same run, per policy and worker count, reported as ratios (the absolute figures depend
//! on the machine; the ratio to testpmd says what scrubd's own work costs).

#![forbid(unsafe_code)]

use clap::Parser;
use perf::benchutil::{
    allowed_cpus, machine, median, mem_args, round_axis, scrubd_config, xml_escape, Machine,
    PlotArea, ScrubdConfig, COLORS,
};
use perf::pipebench::{self, Mix, Stage};
use serde::Serialize;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Measure scrubd's forwarding rate as a ratio to `dpdk-testpmd --forward-mode=io`.
///
/// Both run on the same devices: outside = `net_pcap0` with one `rx_pcap=<capture>` per queue
/// and `infinite_rx=1` (each queue replays the capture from memory at full speed), inside =
/// `net_null0,no-rx=1` (a sink). With N workers both get lcore 0 (main) plus N forwarding lcores
/// and N RX/TX queues on both ports, the same memory mode, burst and ring sizes, and the same
/// extra EAL arguments. Run it after `cargo build --release --workspace`, as root.
///
/// Policies (each with its own traffic; `--pcap` replaces the traffic of every policy):
///   pass            no [pipeline] stage (parse only); the stopddos spoofed SYN flood capture
///   clean           ACL + SYN cookies (auth) + rate limits; established TCP flows to an
///                   unprotected server, half pure ACKs, half 64-1448 B segments: all forwarded
///   syn-flood       same policy; the stopddos spoofed SYN flood to the protected /24: every SYN
///                   answered with a cookie
///   ack-flood       same policy; random-source ACKs with forged cookies: dropped
///   udp-reflection  same policy; DNS/NTP/memcached reflection to the protected /24: dropped by
///                   the per-source limits once each source's burst is spent
///
/// From a bundle made by ../shared/tools/make-bench-bundle.sh on a machine without DPDK:
///   export LD_LIBRARY_PATH=$PWD/.benchbundle/lib
///   .benchbundle/bin/scrubd-bench --scrubd .benchbundle/bin/scrubd \
///     --testpmd .benchbundle/bin/dpdk-testpmd --eal-arg=-d --eal-arg=$PWD/.benchbundle/pmds \
///     --pcap .benchbundle/pcaps/pkt.TCP.synflood.spoofed.pcap ...
/// (or SCRUBD_PCAPS=.benchbundle/pcaps, which finds the capture without --pcap).
#[derive(Parser)]
#[command(name = "scrubd-bench", version, verbatim_doc_comment)]
struct Args {
    /// Capture to replay for every policy (default: a capture or generated frames per policy).
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// EAL memory: "no-huge" (works anywhere) or "in-memory" (hugepages; reserve them first).
    #[arg(long, default_value = "no-huge", value_parser = ["no-huge", "in-memory"])]
    memory: String,
    /// The scrubd binary to measure.
    #[arg(long, default_value = "target/release/scrubd")]
    scrubd: PathBuf,
    /// The testpmd binary of the baseline.
    #[arg(long, default_value = "dpdk-testpmd")]
    testpmd: PathBuf,
    /// `[pipeline]` TOML used instead of the policy's (a policy of your own to measure).
    #[arg(long)]
    pipeline_toml: Option<PathBuf>,
    /// Worker counts to measure, comma separated (e.g. 1,2,4,8,14). One queue per worker on
    /// both ports, for both tools.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    workers: Vec<usize>,
    /// Policies to measure, comma separated: pass, clean, syn-flood, ack-flood, udp-reflection.
    #[arg(long, value_delimiter = ',', default_value = "pass")]
    policy: Vec<Policy>,
    /// Runs of each tool per (policy, workers); the median is reported.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Extra EAL argument for both tools, repeatable (e.g. `--eal-arg=-d --eal-arg=DIR`).
    #[arg(long = "eal-arg", allow_hyphen_values = true)]
    eal_args: Vec<String>,
    /// Distinct frames generated for the policies whose traffic is generated.
    #[arg(long, default_value_t = 4096)]
    frames: usize,
    /// Write every measurement and the medians as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG plot of Mpps per worker count (scrubd and testpmd, per policy) here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Instead of timing, run each tool once per policy under valgrind's callgrind (1 worker,
    /// `--seconds` of forwarding after start-up) and report the forwarding thread's
    /// instructions per received packet, split into DPDK's libraries and the tool's own code:
    /// a deterministic counterpart of the Mpps ratio (see `perf::callgrind`). Needs `valgrind`.
    #[arg(long)]
    instructions_via_callgrind: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Policy {
    Pass,
    Clean,
    SynFlood,
    AckFlood,
    UdpReflection,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::Pass => "pass",
            Policy::Clean => "clean",
            Policy::SynFlood => "syn-flood",
            Policy::AckFlood => "ack-flood",
            Policy::UdpReflection => "udp-reflection",
        }
    }
}

const STOPDDOS_SYN: &str = "pkt.TCP.synflood.spoofed.pcap";

/// The stopddos SYN flood capture: under `shared/pcaps/stopddos/` or, in a bundle, directly in
/// `$SCRUBD_PCAPS`.
fn stopddos_syn() -> Option<PathBuf> {
    let dir = pipeline::testutil::pcaps_dir().ok()?;
    [
        dir.join("stopddos").join(STOPDDOS_SYN),
        dir.join(STOPDDOS_SYN),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Where a policy's traffic comes from.
struct Traffic {
    pcap: PathBuf,
    frames: usize,
    what: String,
}

/// The capture of `policy`: `--pcap`, the stopddos capture, or generated frames written to a
/// pcap in `dir`.
fn traffic(a: &Args, policy: Policy, dir: &Path) -> Result<Traffic, String> {
    let from_file = |p: PathBuf, what: String| -> Result<Traffic, String> {
        let frames = pipeline::testutil::read_frames(&p)
            .map_err(|e| format!("{}: {e}", p.display()))?
            .len();
        if frames == 0 {
            return Err(format!("{}: no frames", p.display()));
        }
        Ok(Traffic {
            pcap: p,
            frames,
            what,
        })
    };
    if let Some(p) = &a.pcap {
        return from_file(p.clone(), "--pcap".into());
    }
    let mix = match policy {
        Policy::Pass | Policy::SynFlood => {
            if let Some(p) = stopddos_syn() {
                return from_file(p, "stopddos capture".into());
            }
            Mix::SynFlood
        }
        Policy::Clean => Mix::CleanTcp,
        Policy::AckFlood => Mix::AckFlood,
        Policy::UdpReflection => Mix::UdpReflection,
    };
    let frames: Vec<Vec<u8>> = if mix == Mix::CleanTcp {
        // Only the flows to the unprotected server: the others would need a live handshake
        // with this run's random cookie secret before they pass.
        pipebench::generate(mix, 2 * a.frames, 1)
            .frames
            .into_iter()
            .filter(|f| f.get(30..34) == Some(&pipebench::UNPROTECTED_SERVER[..]))
            .take(a.frames)
            .collect()
    } else {
        pipebench::generate(mix, a.frames, 1).frames
    };
    if frames.is_empty() {
        return Err(format!("{}: the generator made no frames", mix.name()));
    }
    let pcap = dir.join(format!("{}.pcap", policy.name()));
    let recs: Vec<perf::pcap::Frame> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| perf::pcap::Frame {
            ts: Duration::from_micros(i as u64),
            data: f.clone(),
        })
        .collect();
    perf::pcap::write(&pcap, &recs).map_err(|e| format!("{}: {e}", pcap.display()))?;
    Ok(Traffic {
        pcap,
        frames: frames.len(),
        what: format!("generated {}", mix.name()),
    })
}

/// The `[pipeline]` section of scrubd's config for `policy`, as TOML text.
fn pipeline_section(a: &Args, policy: Policy) -> Result<String, String> {
    let inner = match (&a.pipeline_toml, policy) {
        (Some(p), _) => {
            return std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
        }
        (None, Policy::Pass) => return Ok(String::new()),
        // ACL (1000 deny prefixes), SYN cookies for the protected /24, per-source rate limits.
        (None, _) => pipebench::policy_toml(Stage::RateLimit, None),
    };
    // policy_toml writes the pipeline's own sections; scrubd's config nests them.
    let table: toml::Table = toml::from_str(&inner).map_err(|e| format!("policy TOML: {e}"))?;
    let mut root = toml::Table::new();
    root.insert("pipeline".into(), toml::Value::Table(table));
    toml::to_string(&root).map_err(|e| format!("policy TOML: {e}"))
}

/// The lcore layout of one run: lcore 0 (main) on the first allowed CPU, workers 1..=N on the
/// others, round robin; with too few CPUs several lcores share one ("2@1").
struct Layout {
    /// EAL lcore list, e.g. "0,1,2@1".
    lcores: String,
    workers: Vec<u32>,
    /// Workers sharing a CPU with another lcore: the figure is then not a scaling figure.
    shared: bool,
}

fn layout(workers: usize, cpus: &[usize]) -> Layout {
    let main = cpus[0];
    let free: &[usize] = if cpus.len() > 1 { &cpus[1..] } else { cpus };
    let mut parts = vec![if main == 0 {
        "0".to_string()
    } else {
        format!("0@{main}")
    }];
    for w in 1..=workers {
        let cpu = free[(w - 1) % free.len()];
        parts.push(if cpu == w {
            w.to_string()
        } else {
            format!("{w}@{cpu}")
        });
    }
    Layout {
        lcores: parts.join(","),
        workers: (1..=workers as u32).collect(),
        shared: cpus.len() < 2 || workers > cpus.len() - 1,
    }
}

/// Buffers for `workers` queues: every ring and cache, plus one copy of the capture per queue
/// (net_pcap's infinite_rx keeps each queue's frames in mbufs).
fn mbufs_for(frames: usize, workers: usize) -> usize {
    let rings = 2 * workers * (1024 + 1024);
    let caches = workers * (4 * 32 + 256) + 256;
    (frames * workers + rings + caches + 8192).max(32767)
}

/// EAL memory in MiB for `mbufs` buffers of ~2.4 KiB (data room, headroom, header) and the rest.
fn memory_mb(mbufs: usize) -> usize {
    (mbufs * 2496 / (1024 * 1024) + 1024).max(2048)
}

fn outside_vdev(pcap: &Path, queues: usize) -> String {
    let mut v = String::from("net_pcap0");
    for _ in 0..queues {
        let _ = write!(v, ",rx_pcap={}", pcap.display());
    }
    v.push_str(",infinite_rx=1");
    v
}

/// The testpmd command line of a run, under `valgrind` when `callgrind` names an output prefix.
fn testpmd_command(
    a: &Args,
    t: &Traffic,
    l: &Layout,
    mbufs: usize,
    callgrind: Option<&Path>,
) -> Command {
    let n = l.workers.len();
    let mut cmd = perf::callgrind::command(&a.testpmd, callgrind);
    cmd.arg(format!("--lcores={}", l.lcores));
    cmd.args([
        "--no-pci",
        "--file-prefix",
        &format!("scrubd-bench-{}-t", std::process::id()),
    ]);
    cmd.args(mem_args(&a.memory, memory_mb(mbufs)));
    cmd.args(&a.eal_args);
    cmd.arg(format!("--vdev={}", outside_vdev(&t.pcap, n)));
    cmd.arg("--vdev=net_null0,no-rx=1");
    cmd.args([
        "--",
        "--forward-mode=io",
        "--auto-start",
        "--stats-period",
        "1",
    ]);
    cmd.args([
        format!("--nb-cores={n}"),
        format!("--rxq={n}"),
        format!("--txq={n}"),
        "--burst=32".into(),
        "--rxd=1024".into(),
        "--txd=1024".into(),
        format!("--total-num-mbufs={mbufs}"),
    ]);
    cmd
}

/// Run testpmd for `secs`, return the mean port-0 Rx-pps over the samples after the first.
fn testpmd(a: &Args, t: &Traffic, l: &Layout, mbufs: usize) -> Result<f64, String> {
    let mut cmd = testpmd_command(a, t, l, mbufs, None);
    let secs = a.seconds;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", a.testpmd.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    // The last lines of stderr, for the error when testpmd reports nothing (EAL and PMD
    // failures are printed there).
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let err_tail = std::thread::spawn(move || {
        let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tail.len() == 12 {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        Vec::from(tail).join("\n")
    });
    let pid = child.id().to_string();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done2 = std::sync::Arc::clone(&done);
    let pid2 = pid.clone();
    // Watchdog: a testpmd that never reports must not hang the benchmark.
    let watchdog = std::thread::spawn(move || {
        for _ in 0..(secs + 60) * 10 {
            if done2.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-INT", &pid2]).status();
    });
    let mut samples = Vec::new();
    let mut in_port0 = false;
    let mut stopping = false;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if line.contains("NIC statistics for port") {
            in_port0 = line.contains("port 0 ");
        }
        if in_port0 {
            if let Some(rest) = line.trim().strip_prefix("Rx-pps:") {
                if let Some(v) = rest
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                {
                    samples.push(v);
                }
                in_port0 = false;
            }
        }
        // One-second samples: stop once `secs` of them follow the first non-zero one.
        let first_live = samples.iter().position(|v| *v > 0.0);
        if !stopping && first_live.is_some_and(|i| samples.len() > i + secs as usize) {
            stopping = true;
            let _ = Command::new("kill").args(["-INT", &pid]).status();
        }
    }
    let status = child.wait();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = watchdog.join();
    let err_tail = err_tail.join().unwrap_or_default();
    // The first non-zero sample covers the start of forwarding; the rest are steady state.
    let first_live = samples
        .iter()
        .position(|v| *v > 0.0)
        .unwrap_or(samples.len());
    let steady: Vec<f64> = samples.iter().skip(first_live + 1).copied().collect();
    if steady.is_empty() {
        return Err(format!(
            "testpmd printed no usable Rx-pps samples ({samples:?}; {}); its stderr ends:\n{err_tail}",
            match status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            }
        ));
    }
    Ok(steady.iter().sum::<f64>() / steady.len() as f64)
}

/// One scrubd run: its rate and what it did with the packets.
#[derive(Clone, Debug, Serialize)]
struct ScrubdRun {
    pps: f64,
    tsc_hz: f64,
    rx: u64,
    forwarded: u64,
    replied: u64,
    dropped: u64,
}

fn scrubd(
    a: &Args,
    t: &Traffic,
    l: &Layout,
    mbufs: usize,
    pipeline: &str,
    dir: &Path,
    callgrind: Option<&Path>,
) -> Result<ScrubdRun, String> {
    let workers: Vec<usize> = l.workers.iter().map(|&w| w as usize).collect();
    let summary = dir.join("summary.json");
    let cfg = scrubd_config(&ScrubdConfig {
        lcores: &l.lcores,
        memory: &a.memory,
        memory_mb: memory_mb(mbufs),
        file_prefix: &format!("scrubd-bench-{}-s", std::process::id()),
        extra_args: Some(&a.eal_args),
        workers: &workers,
        mbufs,
        outside: &outside_vdev(&t.pcap, l.workers.len()),
        inside: "net_null0,no-rx=1",
        duration_s: Some(a.seconds),
        summary: &summary,
        socket: &dir.join("ctl.sock"),
        pipeline,
    });
    let cfg_path = dir.join("bench.toml");
    std::fs::write(&cfg_path, cfg).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&summary);
    let mut cmd = perf::callgrind::command(&a.scrubd, callgrind);
    let out = cmd
        .arg("--config")
        .arg(&cfg_path)
        .output()
        .map_err(|e| format!("{}: {e}", a.scrubd.display()))?;
    if !out.status.success() {
        return Err(format!(
            "scrubd failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let rx = s["rx_total"].as_u64().unwrap_or(0);
    let active = s["active_s"].as_f64().unwrap_or(0.0);
    if rx == 0 || active <= 0.0 {
        return Err(format!("scrubd moved no packets: {s}"));
    }
    let sum = |key: &str| -> u64 {
        s["ports"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p[key].as_u64()).sum())
            .unwrap_or(0)
    };
    Ok(ScrubdRun {
        pps: rx as f64 / active,
        tsc_hz: s["tsc_hz"].as_f64().unwrap_or(0.0),
        rx,
        forwarded: sum("forwarded"),
        replied: sum("replied"),
        dropped: sum("dropped"),
    })
}

/// One (policy, workers) cell: every run and the medians.
#[derive(Debug, Serialize)]
struct Row {
    policy: Policy,
    traffic: String,
    capture: String,
    capture_frames: usize,
    workers: usize,
    lcores: String,
    /// Workers share CPUs (with each other or the main lcore): not a scaling figure.
    cpus_shared: bool,
    testpmd_mpps: Vec<f64>,
    scrubd_mpps: Vec<f64>,
    scrubd_runs: Vec<ScrubdRun>,
    testpmd_mpps_median: f64,
    scrubd_mpps_median: f64,
    /// Median scrubd over median testpmd.
    ratio: f64,
    /// Median of each run's scrubd/testpmd, the two measured one after the other: on a busy
    /// machine the load drifts less within a pair than across the cell.
    paired_ratio: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    seconds: u64,
    repeat: usize,
    memory: String,
    eal_args: Vec<String>,
    rows: Vec<Row>,
}

/// Mpps per worker count: per policy, scrubd solid with circles, testpmd dashed with squares.
/// Written by hand: a few dozen elements do not justify a plotting crate.
fn svg(report: &Report) -> String {
    let area = PlotArea::new(760.0, 460.0, (70.0, 200.0, 40.0, 60.0));
    let (w, left, top, pw, ph) = (area.w, area.left, area.top, area.pw, area.ph);
    let max_workers = report.rows.iter().map(|r| r.workers).max().unwrap_or(1);
    let x_max = if max_workers <= 1 {
        2.0
    } else {
        max_workers as f64 * 1.05
    };
    let y_top = report
        .rows
        .iter()
        .flat_map(|r| [r.testpmd_mpps_median, r.scrubd_mpps_median])
        .fold(0.0f64, f64::max);
    let (step, y_max) = round_axis(y_top.max(0.1));
    let x = |v: f64| left + v / x_max * pw;
    let y = |v: f64| top + ph - v / y_max * ph;
    let mut s = String::new();
    area.open(&mut s);
    let shared = report.rows.iter().any(|r| r.cpus_shared);
    let title = format!(
        "scrubd vs dpdk-testpmd io, Mpps per worker count ({}{})",
        xml_escape(&report.machine.cpu_model),
        if shared {
            "; CPUs shared: not scaling figures"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="13">{title}</text>"#,
        w / 2.0
    );
    // Grid and y labels.
    let mut v = 0.0;
    while v <= y_max + step / 2.0 {
        area.y_grid(&mut s, y(v), v);
        v += step;
    }
    let mut counts: Vec<usize> = report.rows.iter().map(|r| r.workers).collect();
    counts.sort_unstable();
    counts.dedup();
    for c in &counts {
        area.x_tick(&mut s, x(*c as f64), c);
    }
    area.frame(
        &mut s,
        "workers (one RX/TX queue each on both ports)",
        "Mpps (median)",
    );
    let mut policies: Vec<Policy> = Vec::new();
    for r in &report.rows {
        if !policies.contains(&r.policy) {
            policies.push(r.policy);
        }
    }
    for (i, p) in policies.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut rows: Vec<&Row> = report.rows.iter().filter(|r| r.policy == *p).collect();
        rows.sort_by_key(|r| r.workers);
        for (tool, dash) in [("scrubd", ""), ("testpmd", r#" stroke-dasharray="6 4""#)] {
            let val = |r: &Row| {
                if tool == "scrubd" {
                    r.scrubd_mpps_median
                } else {
                    r.testpmd_mpps_median
                }
            };
            let pts: Vec<String> = rows
                .iter()
                .map(|r| format!("{:.1},{:.1}", x(r.workers as f64), y(val(r))))
                .collect();
            if pts.len() > 1 {
                let _ = writeln!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                    pts.join(" ")
                );
            }
            for r in &rows {
                let (cx, cy) = (x(r.workers as f64), y(val(r)));
                if tool == "scrubd" {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="4" fill="{color}"><title>{} scrubd, {} workers: {:.3} Mpps</title></circle>"#,
                        p.name(),
                        r.workers,
                        val(r)
                    );
                } else {
                    let _ = writeln!(
                        s,
                        r#"<rect x="{:.1}" y="{:.1}" width="8" height="8" fill="white" stroke="{color}" stroke-width="2"><title>{} testpmd, {} workers: {:.3} Mpps</title></rect>"#,
                        cx - 4.0,
                        cy - 4.0,
                        p.name(),
                        r.workers,
                        val(r)
                    );
                }
            }
        }
        let ly = top + 10.0 + i as f64 * 36.0;
        let lx = left + pw + 16.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/><circle cx="{}" cy="{ly}" r="4" fill="{color}"/><text x="{}" y="{}">{} scrubd</text>"#,
            lx + 24.0,
            lx + 12.0,
            lx + 30.0,
            ly + 4.0,
            p.name()
        );
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{}" x2="{}" y2="{}" stroke="{color}" stroke-width="2" stroke-dasharray="6 4"/><rect x="{}" y="{}" width="8" height="8" fill="white" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{} testpmd</text>"#,
            ly + 16.0,
            lx + 24.0,
            ly + 16.0,
            lx + 8.0,
            ly + 12.0,
            lx + 30.0,
            ly + 20.0,
            p.name()
        );
    }
    s.push_str("</svg>\n");
    s
}

/// One policy's instructions per packet on the forwarding thread (`--instructions-via-callgrind`).
#[derive(Debug, Serialize)]
struct IrRow {
    policy: Policy,
    traffic: String,
    testpmd: IrSplit,
    scrubd: IrSplit,
    /// testpmd's instructions per packet over scrubd's: the instruction-count counterpart of
    /// the Mpps ratio.
    ratio: f64,
    /// scrubd's verdicts over the run, as in the timed table.
    scrubd_run: ScrubdRun,
}

/// Instructions per received packet of one tool's forwarding thread, by where they ran.
#[derive(Debug, Serialize)]
struct IrSplit {
    packets: u64,
    per_packet: f64,
    /// In DPDK's libraries (`librte_*`: PMDs, mempool, ethdev).
    dpdk: f64,
    /// In the tool's own executable.
    own: f64,
    /// Elsewhere (libc, the dynamic loader's TLS lookups).
    other: f64,
}

impl IrSplit {
    fn new(cost: &perf::callgrind::ThreadCost, exe: &Path, packets: u64) -> IrSplit {
        let name = exe.file_name().map(|n| n.to_string_lossy().into_owned());
        let p = packets.max(1) as f64;
        let dpdk = cost.sum_where(|o| o.contains("librte_")) as f64 / p;
        let own = cost.sum_where(|o| {
            Path::new(o)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                == name
        }) as f64
            / p;
        let per_packet = cost.total as f64 / p;
        IrSplit {
            packets,
            per_packet,
            dpdk,
            own,
            other: (per_packet - dpdk - own).max(0.0),
        }
    }
}

/// The busiest thread of a run under callgrind: the forwarding lcore.
fn busiest(prefix: &Path) -> Result<perf::callgrind::ThreadCost, String> {
    perf::callgrind::threads(prefix)?
        .into_iter()
        .next()
        .map(|(_, c)| c)
        .ok_or_else(|| format!("no callgrind output at {}.*", prefix.display()))
}

/// testpmd under callgrind: forwards until `secs` one-second samples followed the first
/// non-zero one, then stops on SIGINT; returns the packets its ports received.
fn testpmd_callgrind(
    a: &Args,
    t: &Traffic,
    l: &Layout,
    mbufs: usize,
    prefix: &Path,
) -> Result<u64, String> {
    let mut child = testpmd_command(a, t, l, mbufs, Some(prefix))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("valgrind {}: {e}", a.testpmd.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let pid = child.id().to_string();
    let (mut live, mut stopping, mut last_rx) = (0u64, false, None);
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Rx-pps:").and_then(|r| {
            r.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        }) {
            if v > 0.0 || live > 0 {
                live += 1;
            }
        }
        // The accumulated statistics printed at exit come last.
        if let Some(v) = line.strip_prefix("RX-packets:").and_then(|r| {
            r.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        }) {
            last_rx = Some(v);
        }
        if !stopping && live > a.seconds {
            stopping = true;
            let _ = Command::new("kill").args(["-INT", &pid]).status();
        }
    }
    let _ = child.wait();
    last_rx
        .filter(|&n| n > 0)
        .ok_or_else(|| "testpmd under valgrind printed no RX-packets total".to_string())
}

fn run_callgrind(a: &Args, cpus: &[usize], dir: &Path) -> Result<Vec<IrRow>, String> {
    let mut rows = Vec::new();
    for &policy in &a.policy {
        let t = traffic(a, policy, dir)?;
        let pipeline = pipeline_section(a, policy)?;
        let l = layout(1, cpus);
        let mbufs = mbufs_for(t.frames, 1);
        println!(
            "policy {}: {} ({} frames), each tool under callgrind for {} s of forwarding",
            policy.name(),
            t.what,
            t.frames,
            a.seconds
        );
        let tp_prefix = dir.join(format!("cg.testpmd.{}", policy.name()));
        let tp_rx = testpmd_callgrind(a, &t, &l, mbufs, &tp_prefix)
            .map_err(|e| format!("testpmd ({}): {e}", policy.name()))?;
        let sd_prefix = dir.join(format!("cg.scrubd.{}", policy.name()));
        let s = scrubd(a, &t, &l, mbufs, &pipeline, dir, Some(&sd_prefix))
            .map_err(|e| format!("scrubd ({}): {e}", policy.name()))?;
        let testpmd = IrSplit::new(&busiest(&tp_prefix)?, &a.testpmd, tp_rx);
        let scrubd = IrSplit::new(&busiest(&sd_prefix)?, &a.scrubd, s.rx);
        rows.push(IrRow {
            policy,
            traffic: t.what,
            ratio: if scrubd.per_packet > 0.0 {
                testpmd.per_packet / scrubd.per_packet
            } else {
                0.0
            },
            testpmd,
            scrubd,
            scrubd_run: s,
        });
    }
    Ok(rows)
}

fn ir_table(rows: &[IrRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<15} {:>12} {:>12} {:>7}   {:>9} {:>9} {:>9}   {:>9} {:>9}",
        "policy",
        "testpmd Ir",
        "scrubd Ir",
        "ratio",
        "sd dpdk",
        "sd own",
        "sd other",
        "tp dpdk",
        "tp own"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<15} {:>12.1} {:>12.1} {:>6.2}x   {:>9.1} {:>9.1} {:>9.1}   {:>9.1} {:>9.1}",
            r.policy.name(),
            r.testpmd.per_packet,
            r.scrubd.per_packet,
            r.ratio,
            r.scrubd.dpdk,
            r.scrubd.own,
            r.scrubd.other,
            r.testpmd.dpdk,
            r.testpmd.own
        );
    }
    s.push_str(
        "Ir: instructions per received packet on the forwarding thread (callgrind); ratio: \
         testpmd Ir / scrubd Ir\nsd/tp dpdk: in librte_* (PMDs, mempool, ethdev); own: in the \
         tool's executable; other: libc, ld.so\n",
    );
    s
}

fn run(a: &Args) -> Result<Report, String> {
    if a.workers.is_empty() || a.workers.contains(&0) {
        return Err("--workers: give worker counts of at least 1".into());
    }
    let cpus = allowed_cpus();
    let dir = std::env::temp_dir().join(format!("scrubd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = run_in(a, &cpus, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(a: &Args, cpus: &[usize], dir: &Path) -> Result<Report, String> {
    let m = machine();
    println!(
        "machine: {} ({} CPUs usable: {:?}), kernel {}",
        m.cpu_model, m.nproc, cpus, m.kernel
    );
    println!(
        "{} s per run, {} run(s) of each tool per cell (median), memory {}{}",
        a.seconds,
        a.repeat.max(1),
        a.memory,
        if a.eal_args.is_empty() {
            String::new()
        } else {
            format!(", extra EAL args {:?}", a.eal_args)
        }
    );
    let mut rows = Vec::new();
    for &policy in &a.policy {
        let t = traffic(a, policy, dir)?;
        let pipeline = pipeline_section(a, policy)?;
        println!(
            "policy {}: {} ({}, {} frames)",
            policy.name(),
            t.what,
            t.pcap.display(),
            t.frames
        );
        for &n in &a.workers {
            let l = layout(n, cpus);
            let mbufs = mbufs_for(t.frames, n);
            if l.shared {
                println!(
                    "  {n} worker(s) on lcores {}: more lcores than free CPUs ({}), so lcores \
                     share CPUs; these figures are NOT scaling figures",
                    l.lcores,
                    cpus.len().saturating_sub(1)
                );
            }
            let (mut tp, mut sd, mut runs) = (Vec::new(), Vec::new(), Vec::new());
            for k in 0..a.repeat.max(1) {
                let t_pps = testpmd(a, &t, &l, mbufs)
                    .map_err(|e| format!("testpmd ({}, {n} workers): {e}", policy.name()))?;
                let s = scrubd(a, &t, &l, mbufs, &pipeline, dir, None)
                    .map_err(|e| format!("scrubd ({}, {n} workers): {e}", policy.name()))?;
                println!(
                    "  run {}/{}: {n} worker(s): testpmd {:.3} Mpps, scrubd {:.3} Mpps \
                     (fwd {} reply {} drop {})",
                    k + 1,
                    a.repeat.max(1),
                    t_pps / 1e6,
                    s.pps / 1e6,
                    s.forwarded,
                    s.replied,
                    s.dropped
                );
                tp.push(t_pps / 1e6);
                sd.push(s.pps / 1e6);
                runs.push(s);
            }
            let (tm, sm) = (median(&tp), median(&sd));
            let pairs: Vec<f64> = tp
                .iter()
                .zip(&sd)
                .filter(|(t, _)| **t > 0.0)
                .map(|(t, s)| s / t)
                .collect();
            rows.push(Row {
                policy,
                traffic: t.what.clone(),
                capture: t.pcap.display().to_string(),
                capture_frames: t.frames,
                workers: n,
                lcores: l.lcores.clone(),
                cpus_shared: l.shared,
                testpmd_mpps: tp,
                scrubd_mpps: sd,
                scrubd_runs: runs,
                testpmd_mpps_median: tm,
                scrubd_mpps_median: sm,
                ratio: if tm > 0.0 { sm / tm } else { 0.0 },
                paired_ratio: median(&pairs),
            });
        }
    }
    Ok(Report {
        machine: m,
        seconds: a.seconds,
        repeat: a.repeat.max(1),
        memory: a.memory.clone(),
        eal_args: a.eal_args.clone(),
        rows,
    })
}

/// The verdict mix of the median run, in percent of received packets.
fn verdicts(r: &Row) -> String {
    let mut runs: Vec<&ScrubdRun> = r.scrubd_runs.iter().collect();
    runs.sort_by(|a, b| a.pps.total_cmp(&b.pps));
    let Some(s) = runs.get(runs.len() / 2) else {
        return String::new();
    };
    let pct = |v: u64| 100.0 * v as f64 / s.rx.max(1) as f64;
    format!(
        "fwd {:.0}% reply {:.0}% drop {:.0}%",
        pct(s.forwarded),
        pct(s.replied),
        pct(s.dropped)
    )
}

fn table(report: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<15} {:>7} {:>13} {:>13} {:>7} {:>7} {:>11}  scrubd verdicts",
        "policy", "workers", "testpmd Mpps", "scrubd Mpps", "ratio", "paired", "cycles/pkt"
    );
    for r in &report.rows {
        let tsc = r.scrubd_runs.first().map_or(0.0, |s| s.tsc_hz);
        let cycles = if r.scrubd_mpps_median > 0.0 {
            tsc * r.workers as f64 / (r.scrubd_mpps_median * 1e6)
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            "{:<15} {:>6}{} {:>13.3} {:>13.3} {:>6.2}x {:>6.2}x {:>11.0}  {}",
            r.policy.name(),
            r.workers,
            if r.cpus_shared { "*" } else { " " },
            r.testpmd_mpps_median,
            r.scrubd_mpps_median,
            r.ratio,
            r.paired_ratio,
            cycles,
            verdicts(r)
        );
    }
    if report.rows.iter().any(|r| r.cpus_shared) {
        s.push_str("* lcores share CPUs (more workers than free CPUs): not a scaling figure\n");
    }
    s.push_str(
        "ratio: median scrubd / median testpmd; paired: median of each run's scrubd / the \
         testpmd run just before it\ncycles/pkt: TSC cycles per packet per worker at scrubd's \
         median rate\n",
    );
    s
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    if a.instructions_via_callgrind {
        return main_callgrind(&a);
    }
    let report = match run(&a) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scrubd-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    print!("{}", table(&report));
    if let Some(p) = &a.json {
        let text = match serde_json::to_string_pretty(&report) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("scrubd-bench: JSON: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        if let Err(e) = std::fs::write(p, text + "\n") {
            eprintln!("scrubd-bench: {}: {e}", p.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    if let Some(p) = &a.svg {
        if let Err(e) = std::fs::write(p, svg(&report)) {
            eprintln!("scrubd-bench: {}: {e}", p.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}

fn main_callgrind(a: &Args) -> std::process::ExitCode {
    let dir = std::env::temp_dir().join(format!("scrubd-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("scrubd-bench: {}: {e}", dir.display());
        return std::process::ExitCode::FAILURE;
    }
    let m = machine();
    println!(
        "machine: {} ({} CPUs), kernel {}",
        m.cpu_model, m.nproc, m.kernel
    );
    let rows = run_callgrind(a, &allowed_cpus(), &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scrubd-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    print!("{}", ir_table(&rows));
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&rows).unwrap_or_default();
        if let Err(e) = std::fs::write(p, text + "\n") {
            eprintln!("scrubd-bench: {}: {e}", p.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_maps_extra_lcores_onto_shared_cpus() {
        let l = layout(1, &[0, 1]);
        assert_eq!(l.lcores, "0,1");
        assert!(!l.shared);
        let l = layout(3, &[0, 1]);
        assert_eq!(l.lcores, "0,1,2@1,3@1");
        assert_eq!(l.workers, vec![1, 2, 3]);
        assert!(l.shared);
        let l = layout(2, &[4, 5, 6]);
        assert_eq!(l.lcores, "0@4,1@5,2@6");
        assert!(!l.shared);
        let l = layout(1, &[3]);
        assert_eq!(l.lcores, "0@3,1@3");
        assert!(l.shared);
    }

    #[test]
    fn outside_port_has_one_rx_pcap_per_queue() {
        let v = outside_vdev(Path::new("/x/y.pcap"), 3);
        assert_eq!(v.matches("rx_pcap=/x/y.pcap").count(), 3);
        assert!(v.starts_with("net_pcap0,") && v.ends_with(",infinite_rx=1"));
    }

    #[test]
    fn mbufs_cover_one_capture_copy_per_queue() {
        let one = mbufs_for(40_000, 1);
        let four = mbufs_for(40_000, 4);
        assert!(one >= 40_000 + 2 * 2048);
        assert!(four >= 4 * 40_000 + 8 * 2048);
    }

    #[test]
    fn policy_section_nests_under_pipeline() {
        let a = Args::parse_from(["scrubd-bench"]);
        assert_eq!(pipeline_section(&a, Policy::Pass).unwrap(), "");
        let t: toml::Table = toml::from_str(&pipeline_section(&a, Policy::Clean).unwrap()).unwrap();
        let p = t["pipeline"].as_table().unwrap();
        for k in ["acl", "syncookie", "ratelimit"] {
            assert!(p.contains_key(k), "{k} missing: {p:?}");
        }
    }

    #[test]
    fn svg_has_a_point_per_tool_and_cell() {
        let row = |policy, workers, t, s| Row {
            policy,
            traffic: String::new(),
            capture: String::new(),
            capture_frames: 1,
            workers,
            lcores: String::new(),
            cpus_shared: false,
            testpmd_mpps: vec![t],
            scrubd_mpps: vec![s],
            scrubd_runs: Vec::new(),
            testpmd_mpps_median: t,
            scrubd_mpps_median: s,
            ratio: s / t,
            paired_ratio: s / t,
        };
        let r = Report {
            machine: machine(),
            seconds: 1,
            repeat: 1,
            memory: "no-huge".into(),
            eal_args: Vec::new(),
            rows: vec![
                row(Policy::Pass, 1, 10.0, 3.0),
                row(Policy::Pass, 2, 19.0, 6.0),
                row(Policy::Clean, 1, 9.0, 2.5),
            ],
        };
        let s = svg(&r);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        // Three cells, one circle (scrubd) each, plus one legend circle per policy.
        assert_eq!(s.matches("<circle").count(), 3 + 2);
        assert_eq!(
            s.matches("<polyline").count(),
            2,
            "only pass has two worker counts"
        );
        assert!(s.contains("pass scrubd, 2 workers: 6.000 Mpps"));
    }
}
