//! `scrubgen bench`: scrubd (and dpdk-testpmd as the baseline) against `scrubgen run`, two
//! DPDK processes joined by net_memif, swept over profiles and worker counts.

use perf::benchutil::{self, line_svg, median, Machine, Series, XAxis};
use perf::scrubgen::{RunReport, PROTECTED, SIGNATURE_RULE};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Profiles to sweep, comma separated (files; see perf/profiles/).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "perf/profiles/syn-flood.toml,perf/profiles/ack-flood.toml,perf/profiles/udp-reflection.toml,perf/profiles/legit.toml,perf/profiles/mixed.toml"
    )]
    pub profiles: Vec<PathBuf>,
    /// Worker counts to sweep (scrubd workers = generator workers = memif queue pairs).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub workers: Vec<usize>,
    /// Runs per (profile, workers) and tool; medians are reported next to every run.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Seconds of traffic per run.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Generator rate in packets/s (0: as fast as the device under test takes them).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// New packets per run (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub packets: u64,
    /// Skip the dpdk-testpmd baseline.
    #[arg(long)]
    pub no_baseline: bool,
    #[arg(long, default_value = "target/release/scrubd")]
    pub scrubd: PathBuf,
    #[arg(long, default_value = "dpdk-testpmd")]
    pub testpmd: PathBuf,
    /// The generator binary (default: this one).
    #[arg(long)]
    pub scrubgen: Option<PathBuf>,
    /// EAL memory for all processes: "no-huge" or "in-memory".
    #[arg(long, default_value = "no-huge", value_parser = ["no-huge", "in-memory"])]
    pub memory: String,
    /// Where the JSON, the markdown summary, the plots and the .hgrm files go.
    #[arg(long, default_value = "perf/results/scrubgen")]
    pub out: PathBuf,
    /// Fail (exit 1) unless every scrubd run's ground truth is exact: no false pass, no
    /// false drop, every answer-class packet answered, and scrubd's counters agree with the
    /// generator's. For CI at a small rate.
    #[arg(long)]
    pub expect_exact: bool,
}

/// The CPU placement of one run: the device under test's forwarding lcores on CPUs of their
/// own where there are enough, the generator's on the others.
#[derive(Clone, Debug, Serialize)]
pub struct Placement {
    pub dut_lcores: String,
    pub gen_lcores: String,
    /// Some lcores share a CPU with a busy one: not a scaling figure.
    pub shared: bool,
}

pub fn placement(workers: usize, cpus: &[usize]) -> Placement {
    let half = (cpus.len() / 2).max(1);
    let (gen_cpus, dut_cpus) = if cpus.len() >= 2 {
        (&cpus[..half], &cpus[half..])
    } else {
        (cpus, cpus)
    };
    let main = cpus[0];
    let list = |on: &[usize]| {
        let mut parts = vec![format!("0@{main}")];
        for w in 1..=workers {
            parts.push(format!("{w}@{}", on[(w - 1) % on.len()]));
        }
        parts.join(",")
    };
    Placement {
        dut_lcores: list(dut_cpus),
        gen_lcores: list(gen_cpus),
        shared: cpus.len() < 2 || workers > dut_cpus.len() || workers > gen_cpus.len(),
    }
}

/// scrubd's own figures for one run, from its summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScrubdFigures {
    pub rx: u64,
    pub forwarded: u64,
    pub replied: u64,
    pub dropped: u64,
    /// Forwarded packets the inside TX ring refused.
    pub tx_full: u64,
    /// Replies the outside TX ring refused, and replies that did not fit their buffer.
    pub reply_tx_full: u64,
    pub reply_failed: u64,
    /// Replies the SYN-cookie stage built: SYN-ACKs and RSTs to validated ACKs.
    pub syn_answered: u64,
    pub ack_validated: u64,
    /// Every reply built is either sent or counted as not sent:
    /// syn_answered + ack_validated = replied + reply_tx_full + reply_failed.
    pub replies_accounted: bool,
    pub eth_ipackets: u64,
    pub eth_opackets_inside: u64,
    pub conserved: bool,
    /// The generator's and scrubd's counts agree: sent = scrubd's outside rx, passed =
    /// forwarded, answered = replied.
    pub agrees_with_generator: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub tool: String,
    pub profile: String,
    pub workers: usize,
    pub repeat: usize,
    pub placement: Placement,
    pub generator: RunReport,
    pub scrubd: Option<ScrubdFigures>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub profile: String,
    pub workers: usize,
    pub scrubd_offered_mpps: Vec<f64>,
    pub testpmd_offered_mpps: Vec<f64>,
    pub scrubd_median_mpps: f64,
    pub testpmd_median_mpps: f64,
    pub ratio: f64,
    pub false_pass: Vec<u64>,
    pub false_drop: Vec<u64>,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub seconds: f64,
    pub rate_pps: u64,
    pub repeat: usize,
    pub memory: String,
    pub runs: Vec<Run>,
    pub cells: Vec<Cell>,
    /// Runs that failed (the tool crashed or the generator could not connect), with why.
    pub failures: Vec<String>,
}

pub fn main(a: BenchArgs) -> Result<std::process::ExitCode, String> {
    if a.workers.is_empty() || a.workers.iter().any(|&w| w == 0 || w > 16) {
        return Err("--workers: counts in 1..=16".into());
    }
    let gen_bin = match &a.scrubgen {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| format!("own path: {e}"))?,
    };
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let dir = std::env::temp_dir().join(format!("scrubgen-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Kept on failure: the configs and the devices' logs say what went wrong.
    let report = sweep(&a, &gen_bin, &dir)
        .map_err(|e| format!("{e}\n(configs and logs kept in {})", dir.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    let md = markdown(&report);
    print!("{md}");
    let write = |name: &str, text: String| -> Result<(), String> {
        let p = a.out.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    write(
        "scrubgen.json",
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n",
    )?;
    write("scrubgen.md", md)?;
    write("scrubgen-mpps.svg", mpps_svg(&report))?;
    write("scrubgen-latency.svg", latency_svg(&report, &a.out))?;
    if a.expect_exact {
        let bad: Vec<String> = report
            .runs
            .iter()
            .filter(|r| r.tool == "scrubd")
            .filter_map(|r| inexact(r).map(|why| format!("{} run {}: {why}", r.profile, r.repeat)))
            .collect();
        let bad: Vec<String> = bad
            .into_iter()
            .chain(report.failures.iter().cloned())
            .collect();
        if !bad.is_empty() {
            eprintln!(
                "scrubgen bench: ground truth not exact:\n  {}",
                bad.join("\n  ")
            );
            return Ok(std::process::ExitCode::FAILURE);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Why a scrubd run's ground truth is not exact (None: it is).
pub fn inexact(r: &Run) -> Option<String> {
    let g = &r.generator;
    let mut why = Vec::new();
    if g.sent == 0 {
        why.push("nothing sent".to_string());
    }
    if g.false_pass > 0 {
        why.push(format!("false-pass {}", g.false_pass));
    }
    if g.false_drop > 0 {
        why.push(format!("false-drop {}", g.false_drop));
    }
    for c in &g.classes {
        if c.unanswered > 0 {
            why.push(format!("{} unanswered {}", c.class.name(), c.unanswered));
        }
    }
    if g.unsent > 0 || g.untracked > 0 || g.untagged_inside > 0 || g.untagged_outside > 0 {
        why.push(format!(
            "unsent {} untracked {} untagged {}/{}",
            g.unsent, g.untracked, g.untagged_inside, g.untagged_outside
        ));
    }
    match &r.scrubd {
        Some(s) if !s.agrees_with_generator || !s.conserved || !s.replies_accounted => {
            why.push(format!(
                "scrubd counters disagree: {s:?} vs sent {} passed {} answered {}",
                g.sent, g.passed, g.answered
            ))
        }
        None => why.push("no scrubd summary".into()),
        _ => {}
    }
    (!why.is_empty()).then(|| why.join(", "))
}

fn sweep(a: &BenchArgs, gen_bin: &Path, dir: &Path) -> Result<Report, String> {
    let cpus = benchutil::allowed_cpus();
    let m = benchutil::machine();
    eprintln!(
        "machine: {} ({} CPUs usable: {:?}), kernel {}; {} s per run, {} run(s) per cell",
        m.cpu_model, m.nproc, cpus, m.kernel, a.seconds, a.repeat
    );
    let rules = dir.join("scrubgen.rules");
    std::fs::write(&rules, format!("{SIGNATURE_RULE}\n")).map_err(|e| e.to_string())?;
    let mut runs = Vec::new();
    let mut cells = Vec::new();
    let mut failures = Vec::new();
    for profile in &a.profiles {
        let pname = profile
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Fail early, naming the file and key, before anything starts.
        perf::scrubgen::Profile::load(profile).map_err(|e| e.to_string())?;
        for &w in &a.workers {
            let pl = placement(w, &cpus);
            for k in 0..a.repeat.max(1) {
                let tools: &[&str] = if a.no_baseline {
                    &["scrubd"]
                } else {
                    &["testpmd", "scrubd"]
                };
                for &tool in tools {
                    let tag = format!("{pname}-w{w}-r{}-{tool}", k + 1);
                    // A failed run is reported and the sweep goes on: one crash must not cost
                    // the other figures.
                    let mut r = one_run(a, gen_bin, dir, profile, &rules, w, &pl, tool, &tag);
                    // The memif client connects once: if the server was not ready yet the link
                    // stays down ("links not up"). One more try then.
                    if r.as_ref().is_err_and(|e| e.contains("links not up")) {
                        eprintln!("  {tag}: links did not come up, once more");
                        r = one_run(a, gen_bin, dir, profile, &rules, w, &pl, tool, &tag);
                    }
                    let r = match r {
                        Ok(r) => r,
                        Err(e) => {
                            eprintln!("  {tag}: FAILED: {e}");
                            failures.push(format!("{tag}: {e}"));
                            continue;
                        }
                    };
                    let g = &r.generator;
                    eprintln!(
                        "  {tag}: offered {:.3} Mpps passed {:.3} answered {:.3}; false-pass {} \
                         false-drop {}; p50 {:.1} us p99 {:.1} us{}",
                        g.offered_mpps,
                        g.passed_mpps,
                        g.answered_mpps,
                        g.false_pass,
                        g.false_drop,
                        g.latency.p50_us,
                        g.latency.p99_us,
                        match &r.scrubd {
                            Some(s) => format!(
                                "; scrubd rx {} fwd {} reply {} drop {} (tx_full {}, reply_tx_full \
                                 {}) agrees {} replies accounted {}",
                                s.rx,
                                s.forwarded,
                                s.replied,
                                s.dropped,
                                s.tx_full,
                                s.reply_tx_full,
                                s.agrees_with_generator,
                                s.replies_accounted
                            ),
                            None => String::new(),
                        }
                    );
                    runs.push(Run {
                        tool: tool.into(),
                        profile: pname.clone(),
                        workers: w,
                        repeat: k + 1,
                        placement: pl.clone(),
                        generator: r.generator,
                        scrubd: r.scrubd,
                    });
                }
            }
            let of = |tool: &str| -> Vec<&Run> {
                runs.iter()
                    .filter(|r| r.tool == tool && r.profile == pname && r.workers == w)
                    .collect()
            };
            let s: Vec<f64> = of("scrubd")
                .iter()
                .map(|r| r.generator.offered_mpps)
                .collect();
            let t: Vec<f64> = of("testpmd")
                .iter()
                .map(|r| r.generator.offered_mpps)
                .collect();
            let lat = |f: fn(&RunReport) -> f64| {
                median(
                    &of("scrubd")
                        .iter()
                        .map(|r| f(&r.generator))
                        .collect::<Vec<_>>(),
                )
            };
            let (sm, tm) = (median(&s), median(&t));
            cells.push(Cell {
                profile: pname.clone(),
                workers: w,
                scrubd_offered_mpps: s,
                testpmd_offered_mpps: t,
                scrubd_median_mpps: sm,
                testpmd_median_mpps: tm,
                ratio: if tm > 0.0 { sm / tm } else { 0.0 },
                false_pass: of("scrubd")
                    .iter()
                    .map(|r| r.generator.false_pass)
                    .collect(),
                false_drop: of("scrubd")
                    .iter()
                    .map(|r| r.generator.false_drop)
                    .collect(),
                p50_us: lat(|g| g.latency.p50_us),
                p99_us: lat(|g| g.latency.p99_us),
                p999_us: lat(|g| g.latency.p999_us),
            });
        }
    }
    Ok(Report {
        machine: m,
        seconds: a.seconds,
        rate_pps: a.rate,
        repeat: a.repeat.max(1),
        memory: a.memory.clone(),
        runs,
        cells,
        failures,
    })
}

struct OneRun {
    generator: RunReport,
    scrubd: Option<ScrubdFigures>,
}

/// Kills (SIGINT, then SIGKILL) and reaps a child on every exit path.
struct Reaped(Option<Child>);

impl Reaped {
    fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.0.take()?;
        let _ = Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < grace {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }
}

impl Reaped {
    /// Wait up to `grace` for the child to exit by itself, then stop it.
    fn stop_after(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < grace {
            if let Ok(Some(s)) = self.0.as_mut()?.try_wait() {
                self.0 = None;
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop(Duration::from_secs(5))
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

#[allow(clippy::too_many_arguments)]
fn one_run(
    a: &BenchArgs,
    gen_bin: &Path,
    dir: &Path,
    profile: &Path,
    rules: &Path,
    workers: usize,
    pl: &Placement,
    tool: &str,
    tag: &str,
) -> Result<OneRun, String> {
    let pid = std::process::id();
    let out_sock = dir.join(format!("{tag}-out.sock"));
    let in_sock = dir.join(format!("{tag}-in.sock"));
    let summary = dir.join(format!("{tag}-summary.json"));
    let memif = |n: u8, sock: &Path, role: &str| {
        format!(
            "net_memif{n},role={role},socket={},socket-abstract=no,id=0",
            sock.display()
        )
    };
    let mut dut = match tool {
        "scrubd" => {
            let workers_list: Vec<usize> = (1..=workers).collect();
            let pipeline = format!(
                r#"[pipeline.syncookie]
protected = [{protected}]
non_tcp = {{ udp = "drop", icmp = "drop" }}

[pipeline.signature]
rule_files = ["{rules}"]"#,
                protected = PROTECTED.map(|p| format!("{p:?}")).join(", "),
                rules = rules.display(),
            );
            let cfg = benchutil::scrubd_config(&benchutil::ScrubdConfig {
                lcores: &pl.dut_lcores,
                memory: &a.memory,
                memory_mb: 1024,
                file_prefix: &format!("scrubgen-{pid}-dut"),
                extra_args: None,
                workers: &workers_list,
                mbufs: 16383 + workers * 8192,
                outside: &memif(0, &out_sock, "server"),
                inside: &memif(1, &in_sock, "server"),
                duration_s: None,
                summary: &summary,
                socket: &dir.join(format!("{tag}-ctl.sock")),
                pipeline: &pipeline,
            });
            let cfg_path = dir.join(format!("{tag}.toml"));
            std::fs::write(&cfg_path, cfg).map_err(|e| e.to_string())?;
            Command::new(&a.scrubd)
                .arg("--config")
                .arg(&cfg_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(dir.join(format!("{tag}-dut.log")))
                        .map_err(|e| e.to_string())?,
                ))
                .spawn()
                .map_err(|e| format!("{}: {e}", a.scrubd.display()))?
        }
        _ => {
            let mut c = Command::new(&a.testpmd);
            c.arg(format!("--lcores={}", pl.dut_lcores))
                .args(["--no-pci", "--file-prefix", &format!("scrubgen-{pid}-tp")])
                .args(benchutil::mem_args(&a.memory, 1024))
                .arg(format!("--vdev={}", memif(0, &out_sock, "server")))
                .arg(format!("--vdev={}", memif(1, &in_sock, "server")))
                .args([
                    "--",
                    "--forward-mode=io",
                    "--auto-start",
                    "--stats-period",
                    "1",
                ])
                .args([
                    format!("--nb-cores={workers}"),
                    format!("--rxq={workers}"),
                    format!("--txq={workers}"),
                    "--burst=32".into(),
                    "--rxd=1024".into(),
                    "--txd=1024".into(),
                ]);
            let log = std::fs::File::create(dir.join(format!("{tag}-dut.log")))
                .map_err(|e| e.to_string())?;
            let log2 = log.try_clone().map_err(|e| e.to_string())?;
            c.stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log2))
                .spawn()
                .map_err(|e| format!("{}: {e}", a.testpmd.display()))?
        }
    };
    let started = Instant::now();
    // The memif servers create their sockets at probe time but only accept the client's
    // interface once their ports started; a client that connects earlier is told "ID not
    // found" and never retries. So wait for the line each tool prints once it forwards.
    let marker = if tool == "scrubd" {
        "Ctrl-C, SIGTERM"
    } else {
        "packet forwarding - ports="
    };
    let log_path = dir.join(format!("{tag}-dut.log"));
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains(marker) && out_sock.exists() && in_sock.exists() {
            break;
        }
        if let Ok(Some(s)) = dut.try_wait() {
            return Err(format!(
                "{tool} exited before it forwarded ({s}); log: {}",
                log_path.display()
            ));
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = dut.kill();
            let _ = dut.wait();
            return Err(format!(
                "{tool}: not forwarding after 60 s; log: {}",
                log_path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut dut = Reaped(Some(dut));
    let json = dir.join(format!("{tag}.json"));
    let hgrm = a.out.join(format!("{tag}.hgrm"));
    let gen_err = dir.join(format!("{tag}-gen.log"));
    let gen_child = Command::new(gen_bin)
        .arg("run")
        .arg("--profile")
        .arg(profile)
        .args(["--rate", &a.rate.to_string()])
        .args(["--seconds", &a.seconds.to_string()])
        .args(["--packets", &a.packets.to_string()])
        .args(["--workers", &workers.to_string()])
        .args(["--lcores", &pl.gen_lcores])
        .args(["--file-prefix", &format!("scrubgen-{pid}-gen")])
        .args(["--memory", &a.memory])
        .arg("--outside")
        .arg(memif(0, &out_sock, "client"))
        .arg("--inside")
        .arg(memif(1, &in_sock, "client"))
        .arg("--json")
        .arg(&json)
        .arg("--hgrm")
        .arg(&hgrm)
        .args(["--quiet", "--wait-peer-quit", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(&gen_err).map_err(|e| e.to_string())?,
        ))
        .spawn()
        .map_err(|e| format!("{}: {e}", gen_bin.display()))?;
    let mut gen = Reaped(Some(gen_child));
    // The generator writes its report once its workers stopped polling, then waits for the
    // device under test to quit first (see `scrubgen run --wait-peer-quit`).
    let limit = Duration::from_secs_f64(a.seconds + 120.0);
    let t = Instant::now();
    let mut gen_status = None;
    while !json.exists() {
        if let Some(c) = gen.0.as_mut() {
            if let Ok(Some(s)) = c.try_wait() {
                gen_status = Some(s);
                gen.0 = None;
                break;
            }
        }
        if t.elapsed() > limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = dut.stop(Duration::from_secs(20));
    let gen_status = gen_status.or_else(|| gen.stop_after(Duration::from_secs(30)));
    // testpmd leaves its runtime directory behind, and a crashed process its own: every
    // prefix of this run is reclaimed (only once no live process holds it).
    for p in ["dut", "tp", "gen"] {
        let _ = dataplane::eal::PrefixFiles::new(&format!("scrubgen-{pid}-{p}")).reclaim();
    }
    let dut_log = || {
        let t = std::fs::read_to_string(dir.join(format!("{tag}-dut.log"))).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    if !gen_status.is_some_and(|s| s.success()) || !json.exists() {
        return Err(format!(
            "generator failed ({gen_status:?}): {}\n{tool} log ends:\n{}",
            std::fs::read_to_string(&gen_err).unwrap_or_default(),
            dut_log()
        ));
    }
    let generator: RunReport = serde_json::from_str(
        &std::fs::read_to_string(&json).map_err(|e| format!("{}: {e}", json.display()))?,
    )
    .map_err(|e| format!("{}: {e}", json.display()))?;
    let scrubd = if tool == "scrubd" {
        if !status.is_some_and(|s| s.success()) {
            return Err(format!("scrubd exited with {status:?}: {}", dut_log()));
        }
        Some(scrubd_figures(&summary, &generator)?)
    } else {
        None
    };
    Ok(OneRun { generator, scrubd })
}

fn scrubd_figures(summary: &Path, g: &RunReport) -> Result<ScrubdFigures, String> {
    let s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(summary).map_err(|e| format!("{}: {e}", summary.display()))?,
    )
    .map_err(|e| format!("{}: {e}", summary.display()))?;
    let port = |name: &str| -> serde_json::Value {
        s["ports"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name).cloned())
            .unwrap_or_default()
    };
    let (o, i) = (port("outside"), port("inside"));
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    let both = |k: &str| n(&o["drops"], k) + n(&i["drops"], k);
    let (replied, reply_tx_full, reply_failed) = (
        n(&o, "replied"),
        both("reply_tx_full"),
        both("reply_failed"),
    );
    let (syn_answered, ack_validated) = (
        n(&s["stages"], "syncookie.syn_answered"),
        n(&s["stages"], "syncookie.ack_validated"),
    );
    let f = ScrubdFigures {
        rx: n(&o, "rx") + n(&i, "rx"),
        forwarded: n(&o, "forwarded"),
        replied,
        dropped: n(&o, "dropped") + n(&i, "dropped"),
        tx_full: both("tx_full"),
        reply_tx_full,
        reply_failed,
        syn_answered,
        ack_validated,
        replies_accounted: syn_answered + ack_validated == replied + reply_tx_full + reply_failed,
        eth_ipackets: n(&o, "eth_ipackets"),
        eth_opackets_inside: n(&i, "eth_opackets"),
        conserved: s["conserved"].as_bool().unwrap_or(false),
        agrees_with_generator: false,
    };
    let agrees = f.rx == g.sent && f.forwarded == g.passed && f.replied == g.answered;
    Ok(ScrubdFigures {
        agrees_with_generator: agrees,
        ..f
    })
}

fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# scrubgen bench\n");
    let _ = writeln!(
        s,
        "Machine: {} ({} CPUs usable: {:?}), kernel {}. {} s per run, {} run(s) per tool and \
         cell, rate {}, memory {}. scrubd and dpdk-testpmd (io forwarding, the baseline) each \
         serve two net_memif ports; `scrubgen run` is the client on both, as a second DPDK \
         process. Mpps = packets the device under test took from the generator per second.\n",
        r.machine.cpu_model,
        r.machine.nproc,
        r.machine.allowed_cpus,
        r.machine.kernel,
        r.seconds,
        r.repeat,
        if r.rate_pps == 0 {
            "flat out".to_string()
        } else {
            format!("{} pps", r.rate_pps)
        },
        r.memory
    );
    let _ = writeln!(
        s,
        "| profile | workers | scrubd Mpps (median) | testpmd Mpps (median) | ratio | false-pass | false-drop | p50 µs | p99 µs | p99.9 µs |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for c in &r.cells {
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} | {:.3} | {:.2}x | {:?} | {:?} | {:.1} | {:.1} | {:.1} |",
            c.profile,
            c.workers,
            c.scrubd_median_mpps,
            c.testpmd_median_mpps,
            c.ratio,
            c.false_pass,
            c.false_drop,
            c.p50_us,
            c.p99_us,
            c.p999_us
        );
    }
    let _ = writeln!(s, "\nPer run (CPU placement: lcore@cpu; main lcore 0):\n");
    let _ = writeln!(
        s,
        "| run | tool | offered Mpps | passed Mpps | answered Mpps | false-pass | false-drop | p50 µs | p99 µs | p99.9 µs | DUT lcores | generator lcores | scrubd rx / fwd / reply / drop (tx_full, reply_tx_full) | agrees |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for run in &r.runs {
        let g = &run.generator;
        let _ = writeln!(
            s,
            "| {}-w{}-r{} | {} | {:.3} | {:.3} | {:.3} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |",
            run.profile,
            run.workers,
            run.repeat,
            run.tool,
            g.offered_mpps,
            g.passed_mpps,
            g.answered_mpps,
            g.false_pass,
            g.false_drop,
            g.latency.p50_us,
            g.latency.p99_us,
            g.latency.p999_us,
            run.placement.dut_lcores,
            run.placement.gen_lcores,
            run.scrubd
                .as_ref()
                .map(|f| format!(
                    "{} / {} / {} / {} ({}, {})",
                    f.rx, f.forwarded, f.replied, f.dropped, f.tx_full, f.reply_tx_full
                ))
                .unwrap_or_else(|| "-".into()),
            run.scrubd
                .as_ref()
                .map(|f| f.agrees_with_generator.to_string())
                .unwrap_or_else(|| "-".into()),
        );
    }
    if r.runs.iter().any(|x| x.placement.shared) {
        let _ = writeln!(
            s,
            "\nSome lcores share a CPU with another busy lcore: those figures are not scaling figures."
        );
    }
    let _ = writeln!(
        s,
        "\ntestpmd forwards everything, so its false-pass counts are the whole attack: only its \
         Mpps is a baseline."
    );
    if !r.failures.is_empty() {
        let _ = writeln!(s, "\nFailed runs:\n");
        for f in &r.failures {
            let first = f.lines().next().unwrap_or_default();
            let _ = writeln!(s, "* {first}");
        }
    }
    s
}

fn mpps_svg(r: &Report) -> String {
    let mut series = Vec::new();
    let mut profiles: Vec<&str> = Vec::new();
    for c in &r.cells {
        if !profiles.contains(&c.profile.as_str()) {
            profiles.push(&c.profile);
        }
    }
    for p in profiles {
        let cells: Vec<&Cell> = r.cells.iter().filter(|c| c.profile == p).collect();
        series.push(Series {
            name: format!("{p} scrubd"),
            points: cells
                .iter()
                .map(|c| (c.workers as f64, c.scrubd_median_mpps))
                .collect(),
            dashed: false,
        });
        if cells.iter().any(|c| c.testpmd_median_mpps > 0.0) {
            series.push(Series {
                name: format!("{p} testpmd"),
                points: cells
                    .iter()
                    .map(|c| (c.workers as f64, c.testpmd_median_mpps))
                    .collect(),
                dashed: true,
            });
        }
    }
    line_svg(
        &format!(
            "scrubd vs dpdk-testpmd over memif, median Mpps ({})",
            r.machine.cpu_model
        ),
        "workers (one memif queue pair each)",
        "Mpps taken from the generator",
        XAxis::Linear,
        &series,
    )
}

/// Latency percentile curves of each profile's median-rate scrubd run (read back from the
/// .hgrm files the runs wrote).
fn latency_svg(r: &Report, out: &Path) -> String {
    let mut series = Vec::new();
    for c in &r.cells {
        let mut runs: Vec<&Run> = r
            .runs
            .iter()
            .filter(|x| x.tool == "scrubd" && x.profile == c.profile && x.workers == c.workers)
            .collect();
        runs.sort_by(|a, b| {
            a.generator
                .offered_mpps
                .total_cmp(&b.generator.offered_mpps)
        });
        let Some(run) = runs.get(runs.len() / 2) else {
            continue;
        };
        let tag = format!("{}-w{}-r{}-scrubd", run.profile, run.workers, run.repeat);
        let text = std::fs::read_to_string(out.join(format!("{tag}.hgrm"))).unwrap_or_default();
        let points: Vec<(f64, f64)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let v: f64 = it.next()?.parse().ok()?;
                let q: f64 = it.next()?.parse().ok()?;
                (q < 1.0).then_some((q * 100.0, v))
            })
            .collect();
        if !points.is_empty() {
            series.push(Series {
                name: format!("{} w{}", c.profile, c.workers),
                points,
                dashed: false,
            });
        }
    }
    line_svg(
        "Latency through scrubd (generator TSC to generator TSC), median run",
        "percentile",
        "latency (µs)",
        XAxis::Percentile,
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_keeps_dut_and_generator_apart() {
        let p = placement(1, &[0, 1]);
        assert_eq!(p.dut_lcores, "0@0,1@1");
        assert_eq!(p.gen_lcores, "0@0,1@0");
        assert!(!p.shared);
        let p = placement(2, &[0, 1]);
        assert_eq!(p.dut_lcores, "0@0,1@1,2@1");
        assert!(p.shared);
        let p = placement(2, &[0, 1, 2, 3]);
        assert_eq!(p.dut_lcores, "0@0,1@2,2@3");
        assert_eq!(p.gen_lcores, "0@0,1@0,2@1");
        assert!(!p.shared);
    }
}
