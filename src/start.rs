//! The steps of start-up that `run` calls in order, and the control plane's shutdown.
//!
//! Each step turns a failure into an error that names the config file and key (through
//! `Config::start_error`/`port_error`), so an operator knows what to change.

use crate::config::Config;
use crate::control::live::LivePolicy;
use crate::control::{self, lock, PortMeta, Shared};
use crate::summary;
use crate::Cli;
use dataplane::channel::ControlEnd;
use dataplane::{Eal, Link, Mempool, Port, PortSetup, WorkerPlan};
use log::{info, warn};
use pipeline::{Direction, Pipeline, Policy};
use stats::aggregate::{Aggregator, AggregatorConfig};
use std::error::Error;
use std::os::unix::fs::DirBuilderExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The operator log on stderr: one line per event, stamped with the time and level
/// (`[2026-11-27T08:00:00Z INFO  scrubd] port 0 "outside" up ...`). Workers never log.
pub fn init_logging(level: log::LevelFilter) {
    let _ = env_logger::Builder::new()
        .filter_level(level)
        .format_target(false)
        .target(env_logger::Target::Stderr)
        .try_init();
}

/// A process killed with this prefix left its hugepages and runtime files: take them back
/// (refused while any live process uses the prefix).
pub fn reclaim_prefix(cfg: &Config, file: &str) -> Result<(), Box<dyn Error>> {
    let reclaimed = dataplane::eal::PrefixFiles::new(&cfg.eal.file_prefix)
        .reclaim()
        .map_err(|e| cfg.start_error(file, "eal.file_prefix", &e))?;
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
        warn!(
            "reclaimed what a dead process with prefix \"{}\" left: {}",
            cfg.eal.file_prefix,
            what.join(", ")
        );
    }
    Ok(())
}

/// The packet buffer pool, on the NUMA socket of the first worker.
pub fn mempool<'e>(eal: &'e Eal, cfg: &Config, file: &str) -> Result<Mempool<'e>, Box<dyn Error>> {
    let d = &cfg.dataplane;
    let socket = eal.socket_of_lcore(d.workers[0]);
    Ok(Mempool::new(
        eal,
        "scrubd_mbufs",
        d.mempool_mbufs,
        d.mempool_cache,
        socket,
    )
    .map_err(|e| cfg.start_error(file, "dataplane.mempool_mbufs", &e))?)
}

/// Every configured port, started with one RX and one TX queue per worker.
pub fn ports<'a>(
    eal: &'a Eal,
    cfg: &Config,
    file: &str,
    pool: &'a Mempool<'a>,
) -> Result<Vec<Port<'a>>, Box<dyn Error>> {
    let d = &cfg.dataplane;
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
        let port = Port::start(eal, p.device_name(), pool, &setup)
            .map_err(|e| cfg.port_error(file, i, &e))?;
        info!(
            "port {} \"{}\" ({}, driver {}) up: {} queue(s), rss {:?}, link {:?}",
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
    Ok(ports)
}

/// Both directions of every pair: outside → inside is inbound, inside → outside outbound.
fn links(cfg: &Config, ports: &[Port]) -> Vec<Link> {
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
    links
}

/// One plan per worker (its lcore, queue, links, pipeline and stats channel), and the control
/// side's ends of the channels.
pub fn worker_plans(
    cfg: &Config,
    policy: &Policy,
    ports: &[Port],
    tsc_hz: u64,
) -> (Vec<WorkerPlan>, Vec<ControlEnd>) {
    let d = &cfg.dataplane;
    let links = links(cfg, ports);
    let stage_names = Pipeline::stage_counter_names().len();
    let interval_tsc =
        (u128::from(tsc_hz) * u128::from(cfg.control.stats_interval_ms) / 1000) as u64;
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
    (plans, ends)
}

/// What runs beside the workers: the control thread, the socket server, the metrics
/// endpoint and the capture hook.
pub struct ControlPlane<'eal> {
    pub shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    server: ctl::server::Server,
    metrics: Option<ctl::http::MetricsServer>,
    /// Captures run inside the workers' bursts: dropped only after they have stopped.
    pdump: Option<dataplane::pdump::Pdump<'eal>>,
}

/// Starts the control thread, the control socket, and where configured the Prometheus
/// endpoint, DPDK telemetry commands and the dpdk-dumpcap hook.
pub fn control_plane<'eal>(
    cli: &Cli,
    cfg: &Config,
    eal: &'eal Eal,
    policy: &Policy,
    ports: &[Port],
    ends: Vec<ControlEnd>,
) -> Result<ControlPlane<'eal>, Box<dyn Error>> {
    let c = &cfg.control;
    let d = &cfg.dataplane;
    let queues = d.workers.len() as u16;
    let mut agg = Aggregator::new(AggregatorConfig {
        port_names: cfg.ports.iter().map(|p| p.name.clone()).collect(),
        workers: d.workers.len(),
        window: Duration::from_secs(c.latency_window_s),
        rate_window: Duration::from_secs_f64(c.rate_window_s),
    })
    .map_err(|e| format!("control: {e}"))?;
    agg.set_rules(0, rule_info(policy.rules().map(|r| r.as_ref())));
    agg.set_box_label(c.metrics_box.clone());
    let live = LivePolicy::new(
        cli.config.clone(),
        cfg,
        policy.rules().cloned(),
        eal.tsc_hz(),
    )?;
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
        eal.tsc_hz(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu = c.cpu.unwrap_or(cfg.lcore_cpu(eal.main_lcore()) as usize);
    let thread = control::spawn_control_thread(Arc::clone(&shared), Arc::clone(&stop), cpu)?;
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
    info!(
        "control socket {} (scrubctl --socket {0})",
        c.socket.display()
    );
    let metrics = match c.metrics_listen {
        Some(addr) => {
            let sh = Arc::clone(&shared);
            let m = ctl::http::serve_metrics(addr, Arc::new(move || sh.metrics(Instant::now())))
                .map_err(|e| format!("control.metrics_listen {addr}: {e}"))?;
            info!("Prometheus metrics on http://{addr}/metrics");
            Some(m)
        }
        None => None,
    };
    if c.telemetry {
        control::register_telemetry(eal, &shared).map_err(|e| format!("DPDK telemetry: {e}"))?;
        info!(
            "DPDK telemetry: /scrubd/stats, /scrubd/latency, /scrubd/status (dpdk-telemetry.py -f {})",
            cfg.eal.file_prefix
        );
    }
    let pdump = if c.pdump {
        match dataplane::pdump::init(eal) {
            Ok(g) => {
                info!(
                    "pdump ready: dpdk-dumpcap --file-prefix={} -i <port> -w FILE",
                    cfg.eal.file_prefix
                );
                Some(g)
            }
            Err(e) => {
                warn!("dpdk-dumpcap captures unavailable: {e}");
                None
            }
        }
    } else {
        None
    };
    Ok(ControlPlane {
        shared,
        stop,
        thread,
        server,
        metrics,
        pdump,
    })
}

impl<'eal> ControlPlane<'eal> {
    /// After the workers stopped (their final snapshots are in the rings): drain them, stop the
    /// control thread and the servers, and return the control side's view for the summary and
    /// the capture hook (to be dropped once the ports are done).
    pub fn stop(
        self,
        policy: &Policy,
    ) -> (summary::ControlView, Option<dataplane::pdump::Pdump<'eal>>) {
        self.shared.stopping.store(true, Ordering::Release);
        self.stop.store(true, Ordering::Release);
        if self.thread.join().is_err() {
            log::error!("the control thread panicked");
        }
        self.server.shutdown();
        if let Some(m) = self.metrics {
            m.shutdown();
        }
        let now = Instant::now();
        let (stats, latency, totals) = {
            let mut agg = lock(&self.shared.agg);
            (
                agg.stats_report(now),
                agg.latency_report(now, false, false),
                agg.totals(),
            )
        };
        let last_rules = lock(&self.shared.live).rules.clone();
        let view = summary::ControlView {
            totals,
            stats,
            latency,
            rule_sets: policy
                .rules()
                .cloned()
                .into_iter()
                .chain(last_rules)
                .collect(),
        };
        (view, self.pdump)
    }
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

/// What keys the SYN cookies: with `[pipeline.syncookie] shared_key_file`, the master derived
/// from the fleet's shared key and the TSC-to-wall-clock mapping that puts this box's secret
/// schedule in lockstep with the others; otherwise this box's own random secret and no mapping
/// (secrets rotate on the TSC, as always). Read once at start-up; the key is never logged.
pub fn cookie_keying(
    cfg: &Config,
    file: &str,
    tsc_hz: u64,
) -> Result<([u8; 16], Option<pipeline::stage::syncookie::WallClock>), String> {
    let Some(sc) = cfg.pipeline.syncookie.as_ref() else {
        return Ok((cookie_secret()?, None));
    };
    let Some(path) = sc.shared_key_file.as_ref() else {
        return Ok((cookie_secret()?, None));
    };
    let material = crate::config::read_shared_key(path).map_err(|e| {
        format!(
            "{file}: key `pipeline.syncookie.shared_key_file`: \"{}\": {e}",
            path.display()
        )
    })?;
    let master = pipeline::stage::syncookie::master_from_shared_key(&material);
    let (tsc, unix_ns) = read_clocks().ok_or(
        "the wall clock is before 1970; set it (NTP) before using a shared SYN-cookie key",
    )?;
    let wall = pipeline::stage::syncookie::WallClock {
        tsc_at_start: tsc,
        unix_ns_at_start: unix_ns,
        tsc_hz,
    };
    info!(
        "SYN-cookie secrets from the shared key in {} ({} bytes): in lockstep with the wall \
         clock (generation = unix time / {} s, counter = unix time / {} s); every box of the \
         fleet needs the same key and an NTP-synchronised clock; `syncookie rotate` is refused",
        path.display(),
        material.len(),
        sc.rotate_every_s,
        sc.counter_period_s
    );
    Ok((master, Some(wall)))
}

/// (TSC, ns since the Unix epoch) read together: the TSC halfway through reading the wall
/// clock, so the pair is off by at most half the time the clock read takes (well under a
/// microsecond), nothing next to a cookie counter period. `None` before 1970.
fn read_clocks() -> Option<(u64, u64)> {
    let before = dataplane::rdtsc();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let after = dataplane::rdtsc();
    let tsc = before.wrapping_add(after.wrapping_sub(before) / 2);
    Some((tsc, u64::try_from(unix.as_nanos()).ok()?))
}

/// Re-measures the SYN cookies' TSC-to-wall-clock mapping (shared key only; called by the
/// supervisor every few seconds, never on the packet path). A correction beyond 100 ms means
/// the clock was stepped or the TSC rate is off: the box's cookies may have left the fleet's
/// schedule for a while, so say so.
pub fn resync_cookie_clock(clock: &pipeline::stage::syncookie::ClockSync) {
    let Some((tsc, unix_ns)) = read_clocks() else {
        warn!("the wall clock is before 1970: SYN-cookie schedule not re-synchronised");
        return;
    };
    match clock.update(tsc, unix_ns) {
        Ok(ns) if ns.unsigned_abs() > 100_000_000 => warn!(
            "SYN-cookie wall-clock mapping corrected by {:.3} s (clock stepped, or TSC rate \
             off): cookies re-hashed to or from other boxes may have failed meanwhile",
            ns as f64 / 1e9
        ),
        Ok(ns) => log::debug!("SYN-cookie wall-clock mapping corrected by {ns} ns"),
        Err(e) => warn!("SYN-cookie wall-clock mapping not updated: {e}"),
    }
}

/// 128 random bits keying the SYN cookies, read once at start-up (never on the packet path).
pub fn cookie_secret() -> Result<[u8; 16], String> {
    use std::io::Read;
    let mut k = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut k))
        .map_err(|e| format!("cannot read /dev/urandom for the SYN-cookie secret: {e}"))?;
    Ok(k)
}
