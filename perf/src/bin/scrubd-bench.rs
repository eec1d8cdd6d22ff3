//! Pass-through forwarding benchmark: scrubd against dpdk-testpmd io forwarding on identical
//! virtual devices, in the same run, reported as a ratio.

#![forbid(unsafe_code)]

use clap::Parser;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Measure scrubd's one-worker forwarding rate as a ratio to `dpdk-testpmd --forward-mode=io`.
///
/// Both run on the same devices: outside = `net_pcap0,rx_pcap=<capture>,infinite_rx=1` (replays the
/// capture from memory at full speed), inside = `net_null0,no-rx=1` (a sink). Each gets lcores
/// 0 (main) and 1 (forwarding), the same memory mode, the same burst and ring sizes. Run it
/// after `cargo build --release --workspace`, as root.
#[derive(Parser)]
#[command(name = "scrubd-bench", version, verbatim_doc_comment)]
struct Args {
    /// Capture to replay (default: shared/pcaps/stopddos/pkt.TCP.synflood.spoofed.pcap).
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// EAL memory: "no-huge" (works anywhere) or "in-memory" (hugepages; reserve them first).
    #[arg(long, default_value = "no-huge")]
    memory: String,
    /// The scrubd binary to measure.
    #[arg(long, default_value = "target/release/scrubd")]
    scrubd: PathBuf,
    /// Extra `[pipeline]` TOML appended to scrubd's config (a policy to measure).
    #[arg(long)]
    pipeline_toml: Option<PathBuf>,
}

fn count_frames(p: &Path) -> Result<usize, String> {
    pipeline::testutil::read_frames(p)
        .map(|f| f.len())
        .map_err(|e| e.to_string())
}

fn mem_args(memory: &str) -> Vec<String> {
    match memory {
        "in-memory" => vec!["--in-memory".into()],
        _ => vec!["--no-huge".into(), "-m".into(), "2048".into()],
    }
}

/// Run testpmd for `secs`, return the mean port-0 Rx-pps over the samples after the first.
fn testpmd(pcap: &Path, mbufs: usize, secs: u64, memory: &str) -> Result<f64, String> {
    let mut cmd = Command::new("dpdk-testpmd");
    cmd.args([
        "-l",
        "0,1",
        "--no-pci",
        "--file-prefix",
        "scrubd-bench-testpmd",
    ]);
    cmd.args(mem_args(memory));
    cmd.arg(format!(
        "--vdev=net_pcap0,rx_pcap={},infinite_rx=1",
        pcap.display()
    ));
    cmd.arg("--vdev=net_null0,no-rx=1");
    cmd.args([
        "--",
        "--forward-mode=io",
        "--auto-start",
        "--stats-period",
        "1",
        "--nb-cores=1",
    ]);
    cmd.args([
        "--burst=32",
        "--rxd=1024",
        "--txd=1024",
        &format!("--total-num-mbufs={mbufs}"),
    ]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("dpdk-testpmd: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
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
    let _ = child.wait();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = watchdog.join();
    // The first non-zero sample covers the start of forwarding; the rest are steady state.
    let first_live = samples
        .iter()
        .position(|v| *v > 0.0)
        .unwrap_or(samples.len());
    let steady: Vec<f64> = samples.iter().skip(first_live + 1).copied().collect();
    if steady.is_empty() {
        return Err(format!(
            "testpmd printed no usable Rx-pps samples ({samples:?})"
        ));
    }
    Ok(steady.iter().sum::<f64>() / steady.len() as f64)
}

struct ScrubdRun {
    pps: f64,
    tsc_hz: f64,
    rx: u64,
}

fn scrubd(a: &Args, pcap: &Path, mbufs: usize) -> Result<ScrubdRun, String> {
    let dir = std::env::temp_dir().join(format!("scrubd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let memory = if a.memory == "in-memory" {
        "memory = \"in-memory\""
    } else {
        "memory = \"no-huge\"\nmemory_mb = 2048"
    };
    let pipeline = match &a.pipeline_toml {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => String::new(),
    };
    let summary = dir.join("summary.json");
    let cfg = format!(
        r#"[eal]
lcores = "0,1"
{memory}
file_prefix = "scrubd-bench-scrubd"

[dataplane]
workers = [1]
burst = 32
rx_desc = 1024
tx_desc = 1024
mempool_mbufs = {mbufs}
mempool_cache = 256

[[port]]
name = "outside"
vdev = "net_pcap0,rx_pcap={pcap},infinite_rx=1"

[[port]]
name = "inside"
vdev = "net_null0,no-rx=1"

[[pair]]
outside = "outside"
inside = "inside"

[run]
duration_s = {secs}
summary_json = "{summary}"

{pipeline}
"#,
        pcap = pcap.display(),
        secs = a.seconds,
        summary = summary.display()
    );
    let cfg_path = dir.join("bench.toml");
    std::fs::write(&cfg_path, cfg).map_err(|e| e.to_string())?;
    let out = Command::new(&a.scrubd)
        .arg("--config")
        .arg(&cfg_path)
        .output()
        .map_err(|e| format!("{}: {e}", a.scrubd.display()))?;
    if !out.status.success() {
        return Err(format!(
            "scrubd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    let rx = s["rx_total"].as_u64().unwrap_or(0);
    let active = s["active_s"].as_f64().unwrap_or(0.0);
    if rx == 0 || active <= 0.0 {
        return Err(format!("scrubd moved no packets: {s}"));
    }
    Ok(ScrubdRun {
        pps: rx as f64 / active,
        tsc_hz: s["tsc_hz"].as_f64().unwrap_or(0.0),
        rx,
    })
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    let pcap = match a.pcap.clone().or_else(|| {
        pipeline::testutil::pcaps_dir()
            .ok()
            .map(|d| d.join("stopddos/pkt.TCP.synflood.spoofed.pcap"))
    }) {
        Some(p) => p,
        None => {
            eprintln!(
                "scrubd-bench: no --pcap given and shared/pcaps not found (set SCRUBD_PCAPS)"
            );
            return std::process::ExitCode::from(2);
        }
    };
    let frames = match count_frames(&pcap) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("scrubd-bench: {}: {e}", pcap.display());
            return std::process::ExitCode::FAILURE;
        }
    };
    // net_pcap's infinite_rx keeps the whole capture in mbufs; leave room for rings and caches.
    let mbufs = (frames + 16384).max(32767);
    println!(
        "capture: {} ({frames} frames), {} s per run, memory {}",
        pcap.display(),
        a.seconds,
        a.memory
    );
    let tp = match testpmd(&pcap, mbufs, a.seconds, &a.memory) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("scrubd-bench: testpmd: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let sd = match scrubd(&a, &pcap, mbufs) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("scrubd-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("dpdk-testpmd io fwd : {:>8.3} Mpps", tp / 1e6);
    println!(
        "scrubd              : {:>8.3} Mpps ({} packets, {:.0} TSC cycles/packet)",
        sd.pps / 1e6,
        sd.rx,
        if sd.pps > 0.0 {
            sd.tsc_hz / sd.pps
        } else {
            0.0
        }
    );
    println!("ratio scrubd/testpmd: {:>8.3}", sd.pps / tp);
    std::process::ExitCode::SUCCESS
}
