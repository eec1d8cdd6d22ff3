//! scrubd: an inline DDoS scrubber on DPDK.

mod config;
mod control;
mod summary;

use clap::Parser;
use config::Config;
use control::live::LivePolicy;
use control::{lock, PortMeta, Shared};
use dataplane::{run_workers, Control, Eal, Link, Mempool, Port, PortSetup, WorkerPlan};
use pipeline::{Direction, Pipeline, Policy};
use stats::aggregate::{Aggregator, AggregatorConfig};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// scrubd sits inline between an outside and an inside port and forwards clean traffic in both
/// directions while it drops or answers attack traffic.
///
/// Every received packet is forwarded, answered, or dropped with a counted reason; the summary
/// printed at exit proves it per port (rx = forwarded + replied + dropped).
///
/// Examples:
///
///   scrubd --config configs/demo.toml            run the built-in demo on virtual ports
///
///   scrubd --config configs/vfio-2port.toml      run on two NICs bound to vfio-pci
///
///   scrubd --config my.toml --check              validate a config and print the EAL arguments
///
/// While it runs, `scrubctl` steers it over the control socket (control.socket in the config):
/// stats, latency, block/allow lists, rule reloads, rate limits, SYN-cookie rotation.
///
/// Stop with Ctrl-C (SIGINT), SIGTERM or `scrubctl shutdown`: workers stop, the summary with
/// counters and latency percentiles is printed, ports are closed.
#[derive(Parser, Debug)]
#[command(name = "scrubd", version, verbatim_doc_comment)]
struct Cli {
    /// TOML configuration file (see README "Configuration reference").
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration, print the EAL arguments it implies, and exit.
    #[arg(long)]
    check: bool,
    /// Stop after this many seconds (overrides run.duration_s).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Write the final summary as JSON here (overrides run.summary_json).
    #[arg(long, value_name = "PATH")]
    summary_json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scrubd: config error: {e}");
            return ExitCode::from(2);
        }
    };
    // Compile the scrubbing policy once here, with a nominal clock, so rule and ACL errors
    // surface as config errors before EAL starts; the real one is built with the TSC rate.
    let checked = match Policy::build(&cfg.pipeline, 1_000_000_000, [0; 16]) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("scrubd: config error: {}: {e}", cli.config.display());
            return ExitCode::from(2);
        }
    };
    // What the machine must offer (CPUs, files, devices, hugepages, free ports), checked
    // before EAL both here and for --check, so the two fail alike and name file and key.
    let host = cfg.check_host(&cli.config.display().to_string());
    if !host.is_empty() {
        for e in &host {
            eprintln!("scrubd: config error: {e}");
        }
        return ExitCode::from(2);
    }
    if cli.check {
        println!("{}: ok", cli.config.display());
        println!("EAL arguments: {}", cfg.eal_args().join(" "));
        // Rules that do not load are skipped (unless strict): say which and why.
        if let Some(r) = checked.rules() {
            print!("{}", r.load_report().render(50));
        }
        return ExitCode::SUCCESS;
    }
    match run(&cli, &cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scrubd: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli, cfg: &Config) -> Result<(), Box<dyn std::error::Error>> {
    dataplane::signals::install_stop_handler()?;
    let file = cli.config.display().to_string();
    // A process killed with this prefix left its hugepages and runtime files: take them back
    // (refused while any live process uses the prefix).
    let reclaimed = dataplane::eal::PrefixFiles::new(&cfg.eal.file_prefix)
        .reclaim()
        .map_err(|e| cfg.start_error(&file, "eal.file_prefix", &e))?;
    if !reclaimed.is_empty() {
        let mut what = Vec::new();
        if reclaimed.hugepage_files > 0 {
            what.push(format!(
                "{} hugepage file(s), {} MiB",
                reclaimed.hugepage_files,
                reclaimed.hugepage_bytes / (1024 * 1024)
            ));
        }
        if reclaimed.runtime_dir {
            what.push("its runtime directory".to_string());
        }
        eprintln!(
            "scrubd: reclaimed what a dead process with prefix \"{}\" left: {}",
            cfg.eal.file_prefix,
            what.join(", ")
        );
    }
    let eal =
        Eal::init("scrubd", &cfg.eal_args()).map_err(|e| cfg.start_error(&file, "eal", &e))?;
    let policy = Policy::build(&cfg.pipeline, eal.tsc_hz(), cookie_secret()?)?;
    let d = &cfg.dataplane;
    let socket = eal.socket_of_lcore(d.workers[0]);
    let pool = Mempool::new(
        &eal,
        "scrubd_mbufs",
        d.mempool_mbufs,
        d.mempool_cache,
        socket,
    )
    .map_err(|e| cfg.start_error(&file, "dataplane.mempool_mbufs", &e))?;
    let queues = d.workers.len() as u16;
    let mut ports = Vec::with_capacity(cfg.ports.len());
    for (i, p) in cfg.ports.iter().enumerate() {
        let setup = PortSetup {
            rx_queues: queues,
            tx_queues: queues,
            rx_desc: d.rx_desc,
            tx_desc: d.tx_desc,
            promiscuous: p.promiscuous,
            mtu: p.mtu,
        };
        let port = Port::start(&eal, p.device_name(), &pool, &setup)
            .map_err(|e| cfg.port_error(&file, i, &e))?;
        eprintln!(
            "scrubd: port {} \"{}\" ({}, driver {}) up: {} queue(s), rss {:?}, link {:?}",
            port.id(),
            p.name,
            p.device_name(),
            port.driver(),
            queues,
            port.rss(),
            port.link()
        );
        ports.push(port);
    }
    let index_of = |name: &str| {
        cfg.ports
            .iter()
            .position(|p| p.name == name)
            .expect("validated")
    };
    let mut links = Vec::new();
    for pair in &cfg.pairs {
        let (o, i) = (index_of(&pair.outside), index_of(&pair.inside));
        links.push(Link {
            rx_port: ports[o].id(),
            tx_port: ports[i].id(),
            rx_index: o as u16,
            dir: Direction::Inbound,
        });
        links.push(Link {
            rx_port: ports[i].id(),
            tx_port: ports[o].id(),
            rx_index: i as u16,
            dir: Direction::Outbound,
        });
    }
    let tsc_hz = eal.tsc_hz();
    let c = &cfg.control;
    let stage_names = Pipeline::stage_counter_names().len();
    let interval_tsc = (u128::from(tsc_hz) * u128::from(c.stats_interval_ms) / 1000) as u64;
    let mut ends = Vec::with_capacity(d.workers.len());
    let mut plans = Vec::with_capacity(d.workers.len());
    for (q, &lcore) in d.workers.iter().enumerate() {
        // Four buffers: the worker can publish while the control thread holds up to three.
        let (wend, cend) = dataplane::channel::channel(
            q as u16,
            ports.len(),
            stage_names,
            2 * cfg.pipeline.offenders_capacity,
            4,
            4,
        );
        ends.push(cend);
        plans.push(WorkerPlan {
            lcore,
            queue: q as u16,
            burst: d.burst,
            links: links.clone(),
            ports: ports.len(),
            pipeline: policy.worker(),
            channel: wend,
            stats_interval_tsc: interval_tsc,
            tsc_hz,
        });
    }
    let mut agg = Aggregator::new(AggregatorConfig {
        port_names: cfg.ports.iter().map(|p| p.name.clone()).collect(),
        workers: d.workers.len(),
        window: Duration::from_secs(c.latency_window_s),
        rate_window: Duration::from_secs_f64(c.rate_window_s),
    })
    .map_err(|e| format!("control: {e}"))?;
    agg.set_rules(0, rule_info(policy.rules().map(|r| r.as_ref())));
    let live = LivePolicy::new(cli.config.clone(), cfg, policy.rules().cloned(), tsc_hz)?;
    let port_meta = ports
        .iter()
        .zip(&cfg.ports)
        .map(|(p, pc)| PortMeta {
            name: pc.name.clone(),
            device: pc.device_name().to_string(),
            driver: p.driver().to_string(),
            rx_queues: queues,
            tx_queues: queues,
            handle: p.handle(),
        })
        .collect();
    let pc = &cfg.pipeline;
    let stages: Vec<String> = [
        ("acl", pc.acl.is_some()),
        ("syncookie", pc.syncookie.is_some()),
        ("ratelimit", pc.ratelimit.is_some()),
        ("signature", pc.signature.is_some()),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| n.to_string())
    .collect();
    let shared = Arc::new(Shared::new(
        cli.config.clone(),
        port_meta,
        c.stats_interval_ms,
        agg,
        live,
        pc.syncookie.clone(),
        policy.rate_limiter().map(|r| Arc::clone(r.aggregate())),
        ends,
        stages,
    ));
    let ctl_stop = Arc::new(AtomicBool::new(false));
    let cpu = c.cpu.unwrap_or(cfg.lcore_cpu(eal.main_lcore()) as usize);
    let ctl_thread =
        control::spawn_control_thread(Arc::clone(&shared), Arc::clone(&ctl_stop), cpu)?;
    if let Some(dir) = c.socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(dir)
                .map_err(|e| format!("control.socket: cannot create {}: {e}", dir.display()))?;
        }
    }
    let server = ctl::server::serve(
        ctl::server::ServerConfig {
            path: c.socket.clone(),
            mode: c.mode(),
            group: c.socket_group.clone(),
            allowed_uids: c.allowed_uids.clone(),
            ..ctl::server::ServerConfig::default()
        },
        Arc::clone(&shared) as Arc<dyn ctl::server::Handler>,
    )
    .map_err(|e| format!("control socket {}: {e}", c.socket.display()))?;
    eprintln!(
        "scrubd: control socket {} (scrubctl --socket {0})",
        c.socket.display()
    );
    let metrics = match c.metrics_listen {
        Some(addr) => {
            let sh = Arc::clone(&shared);
            let m = ctl::http::serve_metrics(
                addr,
                Arc::new(move || lock(&sh.agg).prometheus(Instant::now())),
            )
            .map_err(|e| format!("control.metrics_listen {addr}: {e}"))?;
            eprintln!("scrubd: Prometheus metrics on http://{addr}/metrics");
            Some(m)
        }
        None => None,
    };

    if c.telemetry {
        control::register_telemetry(&eal, &shared).map_err(|e| format!("DPDK telemetry: {e}"))?;
        eprintln!(
            "scrubd: DPDK telemetry: /scrubd/stats, /scrubd/latency, /scrubd/status (dpdk-telemetry.py -f {})",
            cfg.eal.file_prefix
        );
    }
    // Captures run inside the workers' rx/tx bursts, so the guard lives until they have stopped.
    let pdump = if c.pdump {
        match dataplane::pdump::init(&eal) {
            Ok(g) => {
                eprintln!(
                    "scrubd: pdump ready: dpdk-dumpcap --file-prefix={} -i <port> -w FILE",
                    cfg.eal.file_prefix
                );
                Some(g)
            }
            Err(e) => {
                eprintln!("scrubd: dpdk-dumpcap captures unavailable: {e}");
                None
            }
        }
    } else {
        None
    };

    let duration = cli
        .duration
        .or(cfg.run.duration_s)
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64);
    let idle = cfg.run.exit_when_idle_ms.map(Duration::from_millis);
    let control = Control::new(d.workers.len());
    let started = Instant::now();
    eprintln!(
        "scrubd: {} worker(s) on lcores {:?}; Ctrl-C, SIGTERM or `scrubctl shutdown` to stop",
        d.workers.len(),
        d.workers
    );
    let mut stop_reason = "signal";
    let result = run_workers(&eal, plans, &control, |ctl| {
        std::thread::sleep(Duration::from_millis(10));
        let stop = if dataplane::signals::stop_requested() {
            Some("signal")
        } else if shared.shutdown.load(Ordering::Acquire) {
            Some("scrubctl shutdown")
        } else if duration.is_some_and(|dur| started.elapsed() >= dur) {
            Some("duration")
        } else if idle.is_some_and(|idle| idle_for(ctl, tsc_hz) >= idle.as_secs_f64()) {
            Some("idle")
        } else {
            None
        };
        match stop {
            Some(r) => {
                stop_reason = r;
                // From here on updates are refused: the workers are about to leave their loops.
                shared.stopping.store(true, Ordering::Release);
                false
            }
            None => true,
        }
    });
    shared.stopping.store(true, Ordering::Release);
    // The workers published their final snapshots before returning; drain them, then stop.
    ctl_stop.store(true, Ordering::Release);
    if ctl_thread.join().is_err() {
        eprintln!("scrubd: the control thread panicked");
    }
    server.shutdown();
    if let Some(m) = metrics {
        m.shutdown();
    }
    let reports = result?;
    let elapsed = started.elapsed();
    let now = Instant::now();
    let (stats_report, latency, totals) = {
        let mut agg = lock(&shared.agg);
        (
            agg.stats_report(now),
            agg.latency_report(now, false, false),
            agg.totals(),
        )
    };
    let last_rules = lock(&shared.live).rules.clone();
    let control_view = summary::ControlView {
        totals,
        stats: stats_report,
        latency,
        rule_sets: policy
            .rules()
            .into_iter()
            .chain(last_rules.as_ref())
            .map(|r| r.as_ref())
            .collect(),
    };
    let sum = summary::Summary::build(
        cfg,
        &ports,
        &reports,
        control_view,
        tsc_hz,
        elapsed,
        stop_reason,
    );
    // A closed stdout (`scrubd ... | head`) must not stop the orderly shutdown below.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), sum.render().as_bytes());
    if let Some(path) = cli.summary_json.as_ref().or(cfg.run.summary_json.as_ref()) {
        std::fs::write(path, serde_json::to_string_pretty(&sum)?)
            .map_err(|e| format!("cannot write summary to {}: {e}", path.display()))?;
    }
    // The workers are gone, so no capture callback can still run; then ports close (flushing
    // pcap writers) before the pool and the EAL go away.
    drop(pdump);
    drop(ports);
    drop(pool);
    drop(eal);
    if !sum.conserved {
        return Err("packet conservation violated: see the summary".into());
    }
    if !sum.stats_path_exact {
        return Err("the control side's totals differ from the workers' final counters".into());
    }
    Ok(())
}

/// Seconds since the newest packet on any worker (0 before the first packet).
fn idle_for(ctl: &Control, tsc_hz: u64) -> f64 {
    let seen = ctl
        .live
        .iter()
        .any(|l| l.rx_packets.load(Ordering::Relaxed) > 0);
    let last = ctl
        .live
        .iter()
        .map(|l| l.last_rx_tsc.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    if !seen {
        return 0.0;
    }
    dataplane::rdtsc().saturating_sub(last) as f64 / tsc_hz.max(1) as f64
}

/// (sid, msg) per rule index, as the aggregator names signature hits.
fn rule_info(rules: Option<&pipeline::stage::signature::CompiledRules>) -> Vec<(u32, String)> {
    rules
        .map(|r| {
            r.rules_info()
                .iter()
                .map(|i| (i.sid, i.msg.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// 128 random bits keying the SYN cookies, read once at start-up (never on the packet path).
fn cookie_secret() -> Result<[u8; 16], String> {
    use std::io::Read;
    let mut k = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut k))
        .map_err(|e| format!("cannot read /dev/urandom for the SYN-cookie secret: {e}"))?;
    Ok(k)
}
