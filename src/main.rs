//! scrubd: an inline DDoS scrubber on DPDK.

mod config;
mod summary;

use clap::Parser;
use config::Config;
use dataplane::{run_workers, Control, Eal, Link, Mempool, Port, PortSetup, WorkerPlan};
use pipeline::Policy;
use std::path::PathBuf;
use std::process::ExitCode;
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
/// Stop with Ctrl-C (SIGINT) or SIGTERM: workers stop, the summary is printed, ports are closed.
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
    if let Err(e) = Policy::build(&cfg.pipeline, 1_000_000_000, [0; 16]) {
        eprintln!("scrubd: config error: {}: {e}", cli.config.display());
        return ExitCode::from(2);
    }
    if cli.check {
        println!("{}: ok", cli.config.display());
        println!("EAL arguments: {}", cfg.eal_args().join(" "));
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
    let eal = Eal::init("scrubd", &cfg.eal_args())?;
    let policy = Policy::build(&cfg.pipeline, eal.tsc_hz(), cookie_secret()?)?;
    let d = &cfg.dataplane;
    let socket = eal.socket_of_lcore(d.workers[0]);
    let pool = Mempool::new(
        &eal,
        "scrubd_mbufs",
        d.mempool_mbufs,
        d.mempool_cache,
        socket,
    )?;
    let queues = d.workers.len() as u16;
    let mut ports = Vec::with_capacity(cfg.ports.len());
    for p in &cfg.ports {
        let setup = PortSetup {
            rx_queues: queues,
            tx_queues: queues,
            rx_desc: d.rx_desc,
            tx_desc: d.tx_desc,
            promiscuous: p.promiscuous,
            mtu: p.mtu,
        };
        let port = Port::start(&eal, p.device_name(), &pool, &setup)
            .map_err(|e| format!("port \"{}\": {e}", p.name))?;
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
        });
        links.push(Link {
            rx_port: ports[i].id(),
            tx_port: ports[o].id(),
            rx_index: i as u16,
        });
    }
    let plans = d
        .workers
        .iter()
        .enumerate()
        .map(|(q, &lcore)| WorkerPlan {
            lcore,
            queue: q as u16,
            burst: d.burst,
            links: links.clone(),
            ports: ports.len(),
            pipeline: policy.worker(),
        })
        .collect();

    let duration = cli
        .duration
        .or(cfg.run.duration_s)
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64);
    let idle = cfg.run.exit_when_idle_ms.map(Duration::from_millis);
    let tsc_hz = eal.tsc_hz();
    let control = Control::new(d.workers.len());
    let started = Instant::now();
    eprintln!(
        "scrubd: {} worker(s) on lcores {:?}; Ctrl-C to stop",
        d.workers.len(),
        d.workers
    );
    let mut stop_reason = "signal";
    let reports = run_workers(&eal, plans, &control, |ctl| {
        std::thread::sleep(Duration::from_millis(10));
        if dataplane::signals::stop_requested() {
            stop_reason = "signal";
            return false;
        }
        if let Some(dur) = duration {
            if started.elapsed() >= dur {
                stop_reason = "duration";
                return false;
            }
        }
        if let Some(idle) = idle {
            let last = ctl
                .live
                .iter()
                .map(|l| l.last_rx_tsc.load(std::sync::atomic::Ordering::Relaxed))
                .max();
            let seen = ctl
                .live
                .iter()
                .any(|l| l.rx_packets.load(std::sync::atomic::Ordering::Relaxed) > 0);
            if let (true, Some(last)) = (seen, last) {
                let idle_ticks = dataplane::rdtsc().saturating_sub(last);
                if idle_ticks as f64 / tsc_hz as f64 >= idle.as_secs_f64() {
                    stop_reason = "idle";
                    return false;
                }
            }
        }
        true
    })?;
    let elapsed = started.elapsed();
    let sum = summary::Summary::build(cfg, &ports, &reports, &policy, tsc_hz, elapsed, stop_reason);
    // A closed stdout (`scrubd ... | head`) must not stop the orderly shutdown below.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), sum.render().as_bytes());
    if let Some(path) = cli.summary_json.as_ref().or(cfg.run.summary_json.as_ref()) {
        std::fs::write(path, serde_json::to_string_pretty(&sum)?)
            .map_err(|e| format!("cannot write summary to {}: {e}", path.display()))?;
    }
    // Ports close (flushing pcap writers) before the pool and the EAL go away.
    drop(ports);
    drop(pool);
    drop(eal);
    if !sum.conserved {
        return Err("packet conservation violated: see the summary".into());
    }
    Ok(())
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
