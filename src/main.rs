//! scrubd: an inline DDoS scrubber on DPDK.

#![forbid(unsafe_code)]

mod config;
mod control;
mod start;
mod summary;

use clap::Parser;
use config::Config;
use dataplane::{run_workers, Control, Eal};
use log::info;
use pipeline::Policy;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
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
    /// Log level of the operator log on stderr: error, warn, info, debug or trace (overrides
    /// run.log_level; default info). Nothing is logged per packet at any level.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<log::LevelFilter>,
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
    start::init_logging(
        cli.log_level
            .or(cfg.run.log_level)
            .unwrap_or(log::LevelFilter::Info),
    );
    info!(
        "scrubd {} starting with {}",
        env!("CARGO_PKG_VERSION"),
        cli.config.display()
    );
    match run(&cli, &cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Start-up, run, shutdown: the whole life of the daemon on one screen. Each step lives in
/// `start` (or `summary`), in this order.
fn run(cli: &Cli, cfg: &Config) -> Result<(), Box<dyn std::error::Error>> {
    dataplane::signals::install_stop_handler()?;
    let file = cli.config.display().to_string();
    start::reclaim_prefix(cfg, &file)?;
    let eal =
        Eal::init("scrubd", &cfg.eal_args()).map_err(|e| cfg.start_error(&file, "eal", &e))?;
    let (secret, wall_clock) = start::cookie_keying(cfg, &file, eal.tsc_hz())?;
    let policy = Policy::build_with_clock(&cfg.pipeline, eal.tsc_hz(), secret, wall_clock)?;
    let pool = start::mempool(&eal, cfg, &file)?;
    let ports = start::ports(&eal, cfg, &file, &pool)?;
    let (plans, ends) = start::worker_plans(cfg, &policy, &ports, eal.tsc_hz());
    let control = start::control_plane(cli, cfg, &eal, &policy, &ports, ends)?;

    let started = Instant::now();
    info!(
        "{} worker(s) on lcores {:?}; Ctrl-C, SIGTERM or `scrubctl shutdown` to stop",
        cfg.dataplane.workers.len(),
        cfg.dataplane.workers
    );
    let handles: Vec<dataplane::PortHandle> = ports.iter().map(|p| p.handle()).collect();
    let (result, stop_reason, eth) = supervise(
        cli,
        cfg,
        &eal,
        plans,
        &control.shared,
        policy.cookie_clock(),
        started,
        &handles,
    );
    info!(
        "stopping ({stop_reason}) after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (control_view, pdump) = control.stop(&policy);
    let reports = result?;
    let sum = summary::Summary::build(
        cfg,
        &eth,
        &reports,
        control_view,
        eal.tsc_hz(),
        started.elapsed(),
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

/// Runs the workers until a stop condition (signal, `scrubctl shutdown`, duration, idle) and
/// returns their reports with the reason they stopped.
// Each argument is a distinct piece of the running daemon; a struct for one call adds nothing.
#[allow(clippy::too_many_arguments)]
fn supervise(
    cli: &Cli,
    cfg: &Config,
    eal: &Eal,
    plans: Vec<dataplane::WorkerPlan>,
    shared: &control::Shared,
    cookie_clock: Option<&pipeline::stage::syncookie::ClockSync>,
    started: Instant,
    ports: &[dataplane::PortHandle],
) -> (
    Result<Vec<dataplane::worker::WorkerReport>, dataplane::DpdkError>,
    &'static str,
    Vec<dataplane::PortStats>,
) {
    let tsc_hz = eal.tsc_hz();
    let duration = cli
        .duration
        .or(cfg.run.duration_s)
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64);
    let idle = cfg.run.exit_when_idle_ms.map(Duration::from_millis);
    let control = Control::new(cfg.dataplane.workers.len());
    let mut stop_reason = "signal";
    let mut synced = Instant::now();
    // The ports' own counters, sampled while traffic runs: net_memif zeroes them when its
    // peer disconnects, and a generator has usually quit before scrubd is stopped.
    let mut eth = vec![dataplane::StatsAcc::default(); ports.len()];
    let mut sampled = Instant::now();
    let result = run_workers(eal, plans, &control, |ctl| {
        std::thread::sleep(Duration::from_millis(10));
        if sampled.elapsed() >= ETH_SAMPLE {
            sampled = Instant::now();
            for (acc, p) in eth.iter_mut().zip(ports) {
                acc.sample(&p.stats());
            }
        }
        if let Some(clock) = cookie_clock.filter(|_| synced.elapsed() >= CLOCK_RESYNC) {
            synced = Instant::now();
            start::resync_cookie_clock(clock);
        }
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
    for (acc, p) in eth.iter_mut().zip(ports) {
        acc.sample(&p.stats());
    }
    (result, stop_reason, eth.iter().map(|a| a.total()).collect())
}

/// How often the ports' counters are sampled for the summary (see [`dataplane::StatsAcc`]):
/// a reset loses at most what arrived since the last sample, and a generator goes quiet for
/// longer than this before it disconnects.
const ETH_SAMPLE: Duration = Duration::from_millis(50);

/// How often the SYN cookies' TSC-to-wall-clock mapping is re-measured (with a shared key): a
/// TSC rate 100 ppm off drifts 1 ms in this time, and an NTP step is followed within it.
const CLOCK_RESYNC: Duration = Duration::from_secs(10);

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
