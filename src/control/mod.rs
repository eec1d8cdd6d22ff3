//! The control side of the daemon: the thread that drains the workers' rings into the stats
//! aggregator, the live policy the operator edits, and the command handler behind the socket.
//!
//! Nothing here runs on a worker lcore. Workers talk to it only through their lock-free rings
//! (`dataplane::channel`), so a slow or stuck control side can never stall packet processing:
//! at worst their snapshots are deferred (and merged into later ones).

pub mod flowspec;
pub mod handler;
pub mod live;

use dataplane::channel::{ControlEnd, ToCtl, Update};
use dataplane::PortHandle;
use flowspec::FlowspecLive;
use live::LivePolicy;
use pipeline::stage::ratelimit::AggregateLimiter;
use pipeline::stage::syncookie::SynCookieConfig;
use stats::aggregate::Aggregator;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the handler reports about a port without touching the `Port` object the main thread
/// owns.
#[derive(Clone, Debug)]
pub struct PortMeta {
    pub name: String,
    pub device: String,
    pub driver: String,
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub handle: PortHandle,
}

/// State shared by the control thread, the socket's client threads and the main lcore.
pub struct Shared {
    pub started: Instant,
    pub config_path: PathBuf,
    pub ports: Vec<PortMeta>,
    pub stats_interval_ms: u64,
    pub agg: Mutex<Aggregator>,
    pub live: Mutex<LivePolicy>,
    pub syncookie: Option<SynCookieConfig>,
    pub aggregate: Option<Arc<AggregateLimiter>>,
    /// Per worker: its rings, updates sent and updates acknowledged.
    ends: Vec<ControlEnd>,
    sent: Vec<AtomicU64>,
    acked: Vec<AtomicU64>,
    /// Serialises updates so every worker applies them in the same order.
    update_lock: Mutex<()>,
    /// One drainer at a time, so each ring's items are handled in the order the worker sent
    /// them (a rule set's final hits before the first snapshot of its successor).
    drain_lock: Mutex<()>,
    /// Set by `scrubctl shutdown`; the main lcore's monitor loop acts on it.
    pub shutdown: AtomicBool,
    /// Set once the workers are told to stop: updates are refused from then on.
    pub stopping: AtomicBool,
    /// Stages the workers run now (for `status`).
    pub stages: Mutex<Vec<String>>,
    /// BGP FlowSpec routes in force (`flowspec list`).
    pub flowspec: Mutex<FlowspecLive>,
}

/// A worker whose newest stats snapshot is older than this is stalled: ten missed intervals,
/// and never under a second, so one slow publish on a busy machine is not a stall. The log
/// warning and the health check (`scrubctl health`, the BGP bridge's withdrawal) use it alike.
pub fn stall_after_ms(stats_interval_ms: u64) -> u64 {
    (10 * stats_interval_ms).max(1000)
}

/// Lock a mutex, recovering the data if a panicking thread poisoned it: the control side must
/// keep answering even after a bug in one request.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a command waits for every worker to acknowledge an update.
const APPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a publish polls for acknowledgments without sleeping.
const ACK_SPIN: Duration = Duration::from_micros(200);

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config_path: PathBuf,
        ports: Vec<PortMeta>,
        stats_interval_ms: u64,
        agg: Aggregator,
        live: LivePolicy,
        syncookie: Option<SynCookieConfig>,
        aggregate: Option<Arc<AggregateLimiter>>,
        ends: Vec<ControlEnd>,
        stages: Vec<String>,
        tsc_hz: u64,
    ) -> Shared {
        let n = ends.len();
        Shared {
            started: Instant::now(),
            config_path,
            ports,
            stats_interval_ms,
            agg: Mutex::new(agg),
            live: Mutex::new(live),
            syncookie,
            aggregate,
            sent: (0..n).map(|_| AtomicU64::new(0)).collect(),
            acked: (0..n).map(|_| AtomicU64::new(0)).collect(),
            ends,
            update_lock: Mutex::new(()),
            drain_lock: Mutex::new(()),
            shutdown: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stages: Mutex::new(stages),
            flowspec: Mutex::new(FlowspecLive::new(tsc_hz)),
        }
    }

    /// The Prometheus text of the aggregator plus the control side's own families: FlowSpec
    /// routes and the health the BGP bridge announces by.
    pub fn metrics(&self, now: Instant) -> String {
        use stats::exposition::Kind;
        // Before locking the aggregator: the health check reads it too.
        let healthy = self.health(now).healthy;
        let (active, announced, withdrawn, refused) = {
            let f = lock(&self.flowspec);
            (f.active() as u64, f.announced, f.withdrawn, f.refused)
        };
        lock(&self.agg).prometheus_with(now, |w| {
            let fams: [(&str, Kind, &str, u64); 5] = [
                (
                    "scrubd_flowspec_rules_active",
                    Kind::Gauge,
                    "BGP FlowSpec rules in force.",
                    active,
                ),
                (
                    "scrubd_flowspec_routes_announced_total",
                    Kind::Counter,
                    "FlowSpec routes accepted from BGP peers.",
                    announced,
                ),
                (
                    "scrubd_flowspec_routes_withdrawn_total",
                    Kind::Counter,
                    "FlowSpec routes withdrawn (or flushed with their peer's session).",
                    withdrawn,
                ),
                (
                    "scrubd_flowspec_routes_refused_total",
                    Kind::Counter,
                    "FlowSpec routes refused: malformed, or naming what scrubd cannot evaluate.",
                    refused,
                ),
                (
                    "scrubd_healthy",
                    Kind::Gauge,
                    "1 while workers poll, ports are up and scrubd is not stopping (the BGP bridge announces then).",
                    u64::from(healthy),
                ),
            ];
            for (name, kind, help, v) in fams {
                w.family(name, kind, help);
                w.sample(name, &[], v);
            }
        })
    }

    pub fn workers(&self) -> usize {
        self.ends.len()
    }

    /// Move everything the workers published into the aggregator; return emptied buffers.
    pub fn drain(&self) {
        let _one = lock(&self.drain_lock);
        for (w, end) in self.ends.iter().enumerate() {
            while let Some(item) = end.recv() {
                match item {
                    ToCtl::Snapshot(mut s) => {
                        let _ = lock(&self.agg).ingest(&s, Instant::now());
                        s.latency.reset();
                        end.recycle(s);
                    }
                    ToCtl::Applied(u) => {
                        self.on_applied(w, *u);
                        self.acked[w].fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
        }
    }

    /// The worker is done with whatever the update replaced: account for it and free it here.
    fn on_applied(&self, w: usize, u: Update) {
        match u {
            Update::Rules {
                generation, stage, ..
            } => {
                let hits = stage.as_ref().map(|s| s.counters()).unwrap_or(&[]);
                if let Err(e) = lock(&self.agg).retire_rules(w as u16, generation, hits) {
                    log::error!("worker {w}: retiring rule generation {generation}: {e}");
                }
            }
            Update::RateClass {
                applied: false,
                change,
            } => {
                log::warn!(
                    "worker {w} has no rate-limit stage; change of {} not applied",
                    change.class().name()
                );
            }
            Update::Acl(_)
            | Update::RateClass { .. }
            | Update::RotateCookie { .. }
            | Update::Flowspec(_) => {}
        }
    }

    /// Send one update to every worker (built per worker by `make`) and wait until all have
    /// applied it. Returns how many did within the timeout.
    pub fn publish(&self, mut make: impl FnMut(usize) -> Update) -> Result<usize, String> {
        if self.stopping.load(Ordering::Acquire) {
            return Err("scrubd is shutting down".into());
        }
        let _order = lock(&self.update_lock);
        let deadline = Instant::now() + APPLY_TIMEOUT;
        let mut targets = Vec::with_capacity(self.ends.len());
        for (w, end) in self.ends.iter().enumerate() {
            let mut u = Box::new(make(w));
            loop {
                match end.send(u) {
                    Ok(()) => break,
                    Err((_, back)) if Instant::now() < deadline => {
                        u = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => return Err(format!("worker {w}: {e}")),
                }
            }
            targets.push(self.sent[w].fetch_add(1, Ordering::AcqRel) + 1);
        }
        let start = Instant::now();
        loop {
            let done = targets
                .iter()
                .enumerate()
                .filter(|(w, t)| self.acked[*w].load(Ordering::Acquire) >= **t)
                .count();
            if done == targets.len() || Instant::now() >= deadline {
                return Ok(done);
            }
            // Acks arrive through the rings: drain here too, so a publish from the control
            // thread itself (ACL expiry) does not wait on its own loop.
            self.drain();
            // A polling worker applies an update within microseconds: yield for the first
            // 200 µs rather than sleep, or every publish (and so every `block add`) would
            // take at least a scheduler tick of ~1 ms.
            if start.elapsed() < ACK_SPIN {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

/// The control thread: pinned to a non-worker CPU, drains the rings every few milliseconds and
/// expires dynamic ACL entries, until `stop` is set; then drains one last time.
pub fn spawn_control_thread(
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    cpu: usize,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("scrubd-ctl".into())
        .spawn(move || {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                log::warn!("control thread: cannot pin to CPU {cpu}; running unpinned");
            }
            let mut next_expiry = Instant::now();
            let mut stalls = StallWatch::new(shared.stats_interval_ms);
            while !stop.load(Ordering::Acquire) {
                shared.drain();
                let now = Instant::now();
                stalls.check(&shared, now);
                if now >= next_expiry {
                    next_expiry = now + Duration::from_millis(250);
                    // The policy stays locked until the workers switched, as for a command: a
                    // concurrent `block add` must not publish in between (its table would be
                    // overtaken by this older one).
                    let mut live = lock(&shared.live);
                    if let Some(table) = live.expire(now) {
                        if let Err(e) = shared.publish(|_| Update::Acl(Some(Arc::clone(&table)))) {
                            log::error!("publishing expired ACL entries: {e}");
                        }
                    }
                    drop(live);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            shared.drain();
        })
}

/// Notices workers that stop publishing snapshots (a wedged lcore, a CPU taken away) and says
/// so once in the log, and again when they come back. Checked once a second.
struct StallWatch {
    limit_ms: f64,
    next: Instant,
    stalled: Vec<bool>,
}

impl StallWatch {
    fn new(stats_interval_ms: u64) -> StallWatch {
        StallWatch {
            // Ten missed intervals, and never under a second: one slow publish is not a stall.
            limit_ms: stall_after_ms(stats_interval_ms) as f64,
            next: Instant::now() + Duration::from_secs(1),
            stalled: Vec::new(),
        }
    }

    fn check(&mut self, shared: &Shared, now: Instant) {
        if now < self.next {
            return;
        }
        self.next = now + Duration::from_secs(1);
        let report = lock(&shared.agg).stats_report(now);
        self.stalled.resize(report.workers.len(), false);
        for (w, was) in report.workers.iter().zip(self.stalled.iter_mut()) {
            let stalled = w.snapshots > 0 && w.last_snapshot_age_ms > self.limit_ms;
            if stalled && !*was {
                log::warn!(
                    "worker {} (lcore {}) has published no stats for {:.1} s: stalled?",
                    w.worker,
                    w.lcore,
                    w.last_snapshot_age_ms / 1000.0
                );
            } else if !stalled && *was {
                log::info!("worker {} (lcore {}) publishes again", w.worker, w.lcore);
            }
            *was = stalled;
        }
    }
}

/// A JSON reply turned into DPDK telemetry's data model, so `/scrubd/*` shows the same fields
/// as `scrubctl --json`.
pub fn to_telemetry(v: &serde_json::Value) -> dataplane::TelemetryValue {
    use dataplane::TelemetryValue as T;
    use serde_json::Value as V;
    match v {
        V::Null => T::Str(String::new()),
        V::Bool(b) => T::U64(u64::from(*b)),
        V::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => T::U64(u),
            (None, Some(i)) => T::I64(i),
            _ => T::Str(format!("{:.3}", n.as_f64().unwrap_or(0.0))),
        },
        V::String(s) => T::Str(s.clone()),
        V::Array(a) => T::List(a.iter().map(to_telemetry).collect()),
        V::Object(o) => T::Dict(
            o.iter()
                .map(|(k, v)| (k.clone(), to_telemetry(v)))
                .collect(),
        ),
    }
}

/// Register scrubd's commands with DPDK telemetry: `/scrubd/stats`, `/scrubd/latency`,
/// `/scrubd/status` answer with the same data as the scrubctl commands of those names.
pub fn register_telemetry(eal: &dataplane::Eal, shared: &Arc<Shared>) -> Result<(), String> {
    use ctl::protocol::Command;
    let cmds: [(&str, &str, Command); 3] = [
        (
            "/scrubd/stats",
            "scrubd counters per port, worker, stage and drop reason, with rates",
            Command::Stats,
        ),
        (
            "/scrubd/latency",
            "scrubd per-packet latency percentiles in ns, per worker and merged",
            Command::Latency {
                reset: false,
                hgrm: false,
            },
        ),
        (
            "/scrubd/status",
            "scrubd version, uptime, workers, stages, rules",
            Command::Status,
        ),
    ];
    for (name, help, cmd) in cmds {
        let sh = Arc::clone(shared);
        let provider: dataplane::telemetry::Provider =
            Arc::new(move |_| match sh.handle(cmd.clone()) {
                Ok(v) => to_telemetry(&v),
                Err(e) => dataplane::TelemetryValue::Str(e.message),
            });
        dataplane::telemetry::register(eal, name, help, provider).map_err(|e| e.to_string())?;
    }
    Ok(())
}
