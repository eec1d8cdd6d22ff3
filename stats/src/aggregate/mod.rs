//! The control thread's view of all workers, built from their snapshots.
//!
//! Exactness comes from the snapshot contract: counters are cumulative, so keeping only each
//! worker's newest snapshot (by `seq`) and summing across workers gives exact totals no matter
//! how many publishes were deferred, duplicated or drained late. The latency histogram is the
//! one delta, so it is merged exactly once, when its snapshot is first accepted.
//!
//! Nothing here trusts a snapshot's shape: ports, stages or rule indices beyond what the
//! aggregator knows are ignored or reported as unknown, never indexed blindly.

use crate::exposition::{Kind, Writer};
use crate::hgrm;
use crate::snapshot::{new_latency_histogram, Snapshot};
use ctl_protocol::{
    Counters, LatencyReport, LatencyRow, Offender, OffendersReport, PortStatsRow, Rates,
    SignatureHit, StatsReport, SyncookieWorkerRow, WorkerStatsRow,
};
use hdrhistogram::Histogram;
use pipeline::counters::{slot_name, DROP_SLOTS};
use pipeline::offenders::{OffenderEntry, Side};
use pipeline::stage::syncookie::Status as SynCookieStatus;
use pipeline::{Pipeline, VerdictCounters};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

mod prometheus;
mod reports;
#[cfg(test)]
mod tests;

/// The recent-latency window is kept as this many equal slices; expiring a whole slice at a
/// time keeps ingest O(1) while the covered span stays within one slice of the configured one.
pub const RECENT_SLICES: u64 = 10;

/// Refuse to merge a latency delta past this many recorded values: the histogram's own
/// percentile scan adds counts without saturation, and a corrupt snapshot must not be able to
/// make a report panic. At a billion packets per second it takes a century to get here.
const MAX_LATENCY_COUNT: u64 = 1 << 62;

/// Quantiles every latency view reports, with their Prometheus label spelling.
const QUANTILES: [(f64, &str); 5] = [
    (0.5, "0.5"),
    (0.9, "0.9"),
    (0.99, "0.99"),
    (0.999, "0.999"),
    (0.9999, "0.9999"),
];

/// Longest window accepted: beyond a day "recent" stops meaning anything and the rate
/// history would grow without purpose.
const MAX_WINDOW_MS: u64 = 86_400_000;
/// Shortest recent window: each of its slices must be at least a millisecond.
const MIN_WINDOW_MS: u64 = RECENT_SLICES;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    pub field: &'static str,
    pub problem: String,
}

fn check_ms(field: &'static str, v: u64, min: u64) -> Result<(), ConfigError> {
    if v < min || v > MAX_WINDOW_MS {
        return Err(ConfigError {
            field,
            problem: format!("{v} ms is outside {min}..={MAX_WINDOW_MS} ms"),
        });
    }
    Ok(())
}

/// What the aggregator is told at start; built by the daemon from its `[control]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregatorConfig {
    /// RX ports in the daemon's order; a snapshot's `per_port[i]` is `port_names[i]`.
    pub port_names: Vec<String>,
    pub workers: usize,
    /// Span of the "recent" latency view.
    pub window: Duration,
    /// Span rates are averaged over.
    pub rate_window: Duration,
}

impl AggregatorConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        check_ms("window", ms(self.window), MIN_WINDOW_MS)?;
        check_ms("rate_window", ms(self.rate_window), 1)?;
        if self.workers > usize::from(u16::MAX) + 1 {
            return Err(ConfigError {
                field: "workers",
                problem: format!("{} workers cannot be numbered by a u16", self.workers),
            });
        }
        Ok(())
    }
}

/// What [`Aggregator::ingest`] did with a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    Accepted,
    /// Its `seq` was not newer than the worker's newest accepted one (a duplicate or a late
    /// one); nothing of it was counted.
    Stale,
    /// Its worker index is not one the aggregator was configured with.
    UnknownWorker,
}

/// A reason name `offenders` was asked to filter by that is no drop reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown drop reason {name:?}; valid reasons: {}", valid.join(", "))]
pub struct UnknownReason {
    pub name: String,
    pub valid: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RetireError {
    #[error("worker {0} is not one of the configured workers")]
    UnknownWorker(u16),
    /// Retiring twice would count the final hits twice.
    #[error("worker {worker} already retired rule generation {generation}")]
    AlreadyRetired { worker: u16, generation: u64 },
}

/// One worker's newest accepted state plus its since-start latency.
struct WorkerState {
    seq: u64,
    snapshots: u64,
    last_at: Option<Instant>,
    lcore: u32,
    queue: u16,
    per_port: Vec<VerdictCounters>,
    stages: Vec<u64>,
    rules_generation: u64,
    signature_hits: Vec<u64>,
    offenders: Vec<OffenderEntry>,
    busy_tsc: u64,
    total_tsc: u64,
    deferred: u64,
    syncookie: Option<SynCookieStatus>,
    latency: Histogram<u64>,
    /// Rule generations whose final hits this worker handed over with `retire_rules`; its
    /// snapshots of these generations no longer count.
    retired: BTreeSet<u64>,
}

impl WorkerState {
    fn new(ports: usize, stages: usize) -> WorkerState {
        WorkerState {
            seq: 0,
            snapshots: 0,
            last_at: None,
            lcore: 0,
            queue: 0,
            per_port: vec![VerdictCounters::default(); ports],
            stages: vec![0; stages],
            rules_generation: 0,
            signature_hits: Vec::new(),
            offenders: Vec::new(),
            busy_tsc: 0,
            total_tsc: 0,
            deferred: 0,
            syncookie: None,
            latency: new_latency_histogram(),
            retired: BTreeSet::new(),
        }
    }

    fn counters(&self) -> VerdictCounters {
        let mut sum = VerdictCounters::default();
        for c in &self.per_port {
            add_saturating(&mut sum, c);
        }
        sum
    }
}

/// Cumulative totals at one ingest time, for rates.
struct RateSample {
    at: Instant,
    ports: Vec<VerdictCounters>,
    /// Per worker: rx packets, busy TSC, total TSC.
    workers: Vec<(u64, u64, u64)>,
}

struct Slice {
    idx: u64,
    hist: Histogram<u64>,
}

/// Where hits of a rule index end up: its sid when the generation's rule table is known,
/// otherwise kept apart so nothing is lost or merged wrongly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HitKey {
    Sid(u32),
    Unknown { generation: u64, index: usize },
}

/// Offender estimates are merged per (side, address, drop slot).
type OffenderKey = (Side, IpAddr, u16);

/// Control-side state fed by every worker's snapshots.
pub struct Aggregator {
    cfg: AggregatorConfig,
    start: Instant,
    workers: Vec<WorkerState>,
    stage_names: &'static [String],
    merged_latency: Histogram<u64>,
    latency_since: Instant,
    slice_len: Duration,
    recent: VecDeque<Slice>,
    spare_slices: Vec<Histogram<u64>>,
    samples: VecDeque<RateSample>,
    rules: BTreeMap<u64, Vec<(u32, String)>>,
    sid_msg: HashMap<u32, String>,
    /// Final hits of retired generations, summed over workers, by rule index.
    retired_hits: BTreeMap<u64, Vec<u64>>,
    /// `box="..."` on every Prometheus sample (`control.metrics_box`), if set.
    box_label: Option<String>,
}

impl Aggregator {
    /// Puts `box="<label>"` on every Prometheus sample (`None`: no box label).
    pub fn set_box_label(&mut self, label: Option<String>) {
        self.box_label = label;
    }

    pub fn new(cfg: AggregatorConfig) -> Result<Aggregator, ConfigError> {
        Aggregator::new_at(cfg, Instant::now())
    }

    /// As [`Aggregator::new`] with an explicit start time, so tests drive time themselves.
    pub fn new_at(cfg: AggregatorConfig, start: Instant) -> Result<Aggregator, ConfigError> {
        cfg.validate()?;
        let stage_names = Pipeline::stage_counter_names();
        let ports = cfg.port_names.len();
        let workers = (0..cfg.workers)
            .map(|_| WorkerState::new(ports, stage_names.len()))
            .collect();
        // Validated above: the window is at least RECENT_SLICES ms, so a slice is >= 1 ms.
        let slice_len = cfg.window / RECENT_SLICES as u32;
        Ok(Aggregator {
            cfg,
            start,
            workers,
            stage_names,
            merged_latency: new_latency_histogram(),
            latency_since: start,
            slice_len,
            recent: VecDeque::new(),
            spare_slices: Vec::new(),
            samples: VecDeque::new(),
            rules: BTreeMap::new(),
            sid_msg: HashMap::new(),
            retired_hits: BTreeMap::new(),
            box_label: None,
        })
    }

    pub fn config(&self) -> &AggregatorConfig {
        &self.cfg
    }

    /// Takes in one snapshot drained at `now`.
    pub fn ingest(&mut self, snap: &Snapshot, now: Instant) -> Ingested {
        let cur = self.slice_index(now);
        self.expire_slices(cur);
        let Some(w) = self.workers.get_mut(usize::from(snap.worker)) else {
            return Ingested::UnknownWorker;
        };
        if snap.seq <= w.seq {
            return Ingested::Stale;
        }
        w.seq = snap.seq;
        w.snapshots = w.snapshots.saturating_add(1);
        w.last_at = Some(now);
        w.lcore = snap.lcore;
        w.queue = snap.queue;
        // Ports or stages the snapshot lacks keep their previous (cumulative) values; extra
        // ones are not ours to report.
        for (dst, src) in w.per_port.iter_mut().zip(&snap.per_port) {
            dst.clone_from(src);
        }
        for (dst, src) in w.stages.iter_mut().zip(&snap.stages) {
            *dst = *src;
        }
        w.rules_generation = snap.rules_generation;
        w.signature_hits.clone_from(&snap.signature_hits);
        w.offenders.clone_from(&snap.offenders);
        w.busy_tsc = snap.busy_tsc;
        w.total_tsc = snap.total_tsc;
        w.deferred = snap.deferred;
        w.syncookie = snap.syncookie;

        // Every since-start view takes the delta or none does, so they never disagree.
        let fits = [&w.latency, &self.merged_latency]
            .iter()
            .all(|h| h.len().saturating_add(snap.latency.len()) <= MAX_LATENCY_COUNT);
        if fits {
            merge_histogram(&mut w.latency, &snap.latency);
            merge_histogram(&mut self.merged_latency, &snap.latency);
            match self.recent.back_mut() {
                // A `now` older than the newest slice (clock handed in out of order) goes to
                // the newest slice rather than being dropped.
                Some(s) if s.idx >= cur => merge_histogram(&mut s.hist, &snap.latency),
                _ => {
                    let mut hist = self
                        .spare_slices
                        .pop()
                        .unwrap_or_else(new_latency_histogram);
                    merge_histogram(&mut hist, &snap.latency);
                    self.recent.push_back(Slice { idx: cur, hist });
                }
            }
        }
        self.push_sample(now);
        Ingested::Accepted
    }

    /// Registers the meaning of rule index `i` of `generation`: `rules[i]` is (sid, msg).
    pub fn set_rules(&mut self, generation: u64, rules: Vec<(u32, String)>) {
        for (sid, msg) in &rules {
            self.sid_msg.insert(*sid, msg.clone());
        }
        self.rules.insert(generation, rules);
    }

    /// Hands over `worker`'s final hit counts of `generation` (which it no longer runs); from
    /// now on its snapshots of that generation do not count towards hits.
    pub fn retire_rules(
        &mut self,
        worker: u16,
        generation: u64,
        final_hits: &[u64],
    ) -> Result<(), RetireError> {
        let w = self
            .workers
            .get_mut(usize::from(worker))
            .ok_or(RetireError::UnknownWorker(worker))?;
        if !w.retired.insert(generation) {
            return Err(RetireError::AlreadyRetired { worker, generation });
        }
        let acc = self.retired_hits.entry(generation).or_default();
        if acc.len() < final_hits.len() {
            acc.resize(final_hits.len(), 0);
        }
        for (a, h) in acc.iter_mut().zip(final_hits) {
            *a = a.saturating_add(*h);
        }
        Ok(())
    }

    /// Per port, summed over workers' newest snapshots.
    pub fn totals(&self) -> Vec<VerdictCounters> {
        let mut t = vec![VerdictCounters::default(); self.cfg.port_names.len()];
        for w in &self.workers {
            for (acc, c) in t.iter_mut().zip(&w.per_port) {
                add_saturating(acc, c);
            }
        }
        t
    }

    /// Hits by rule over all generations and workers, rules with hits only, most hits first.
    pub fn signature_hits(&self) -> Vec<SignatureHit> {
        let mut by_key: BTreeMap<HitKey, u64> = BTreeMap::new();
        for (generation, hits) in &self.retired_hits {
            self.attribute_hits(&mut by_key, *generation, hits);
        }
        for w in &self.workers {
            if !w.retired.contains(&w.rules_generation) {
                self.attribute_hits(&mut by_key, w.rules_generation, &w.signature_hits);
            }
        }
        let mut out: Vec<SignatureHit> = by_key
            .into_iter()
            .filter(|(_, hits)| *hits > 0)
            .map(|(key, hits)| match key {
                HitKey::Sid(sid) => SignatureHit {
                    sid,
                    msg: self.sid_msg.get(&sid).cloned().unwrap_or_default(),
                    hits,
                },
                HitKey::Unknown { generation, index } => SignatureHit {
                    sid: 0,
                    msg: format!("unknown rule {index} of generation {generation}"),
                    hits,
                },
            })
            .collect();
        out.sort_by(|a, b| {
            b.hits
                .cmp(&a.hits)
                .then(a.sid.cmp(&b.sid))
                .then_with(|| a.msg.cmp(&b.msg))
        });
        out
    }

    fn attribute_hits(&self, by_key: &mut BTreeMap<HitKey, u64>, generation: u64, hits: &[u64]) {
        let table = self.rules.get(&generation);
        for (index, &n) in hits.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let key = match table.and_then(|t| t.get(index)) {
                Some((sid, _)) => HitKey::Sid(*sid),
                None => HitKey::Unknown { generation, index },
            };
            let e = by_key.entry(key).or_insert(0);
            *e = e.saturating_add(n);
        }
    }

    /// Each worker's SYN-cookie state from its newest snapshot, for workers that run the stage.
    pub fn syncookie_workers(&self) -> Vec<SyncookieWorkerRow> {
        self.workers
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let s = w.syncookie.as_ref()?;
                Some(SyncookieWorkerRow {
                    worker: u16::try_from(i).unwrap_or(u16::MAX),
                    secret_generation: s.secret_generation,
                    allowlist_occupied: s.allowlist_occupied,
                    allowlist_capacity: s.allowlist_capacity,
                })
            })
            .collect()
    }

    /// Stage counters summed over workers, by name.
    pub fn stage_totals(&self) -> BTreeMap<String, u64> {
        let mut sums = vec![0u64; self.stage_names.len()];
        for w in &self.workers {
            for (s, v) in sums.iter_mut().zip(&w.stages) {
                *s = s.saturating_add(*v);
            }
        }
        self.stage_names.iter().cloned().zip(sums).collect()
    }

    fn slice_index(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let slice = self.slice_len.as_nanos().max(1);
        u64::try_from(elapsed / slice).unwrap_or(u64::MAX)
    }

    fn expire_slices(&mut self, cur: u64) {
        while self
            .recent
            .front()
            .is_some_and(|s| s.idx.saturating_add(RECENT_SLICES) <= cur)
        {
            if let Some(mut s) = self.recent.pop_front() {
                if self.spare_slices.len() < RECENT_SLICES as usize {
                    s.hist.reset();
                    self.spare_slices.push(s.hist);
                }
            }
        }
    }

    fn push_sample(&mut self, now: Instant) {
        let ports = self.totals();
        let workers = self
            .workers
            .iter()
            .map(|w| (w.counters().rx_packets, w.busy_tsc, w.total_tsc))
            .collect();
        match self.samples.back_mut() {
            // Snapshots drained in one batch share a `now`: one sample holds all of them.
            Some(last) if last.at >= now => {
                last.ports = ports;
                last.workers = workers;
            }
            _ => self.samples.push_back(RateSample {
                at: now,
                ports,
                workers,
            }),
        }
        // Keep exactly one sample at or before the window's start as the baseline.
        if let Some(newest) = self.samples.back().map(|s| s.at) {
            while self.samples.len() >= 2
                && self
                    .samples
                    .get(1)
                    .is_some_and(|s| newest.saturating_duration_since(s.at) >= self.cfg.rate_window)
            {
                self.samples.pop_front();
            }
        }
    }

    /// Baseline, newest sample and the seconds between them, when they differ.
    fn rate_span(&self) -> Option<(&RateSample, &RateSample, f64)> {
        let a = self.samples.front()?;
        let b = self.samples.back()?;
        let dt = b.at.saturating_duration_since(a.at).as_secs_f64();
        (dt > 0.0).then_some((a, b, dt))
    }
}

fn add_saturating(acc: &mut VerdictCounters, o: &VerdictCounters) {
    acc.rx_packets = acc.rx_packets.saturating_add(o.rx_packets);
    acc.rx_bytes = acc.rx_bytes.saturating_add(o.rx_bytes);
    acc.forwarded = acc.forwarded.saturating_add(o.forwarded);
    acc.replied = acc.replied.saturating_add(o.replied);
    for (a, b) in acc.drops.iter_mut().zip(o.drops.iter()) {
        *a = a.saturating_add(*b);
    }
}

fn sum_counters(cs: &[VerdictCounters]) -> VerdictCounters {
    let mut t = VerdictCounters::default();
    for c in cs {
        add_saturating(&mut t, c);
    }
    t
}

fn sum_drops(c: &VerdictCounters) -> u64 {
    c.drops.iter().fold(0u64, |a, d| a.saturating_add(*d))
}

fn counters(c: &VerdictCounters) -> Counters {
    let dropped = sum_drops(c);
    // Checked, not saturating: a saturated sum must not pass as conserved.
    let exact_out = c
        .drops
        .iter()
        .try_fold(0u64, |a, d| a.checked_add(*d))
        .and_then(|d| d.checked_add(c.forwarded))
        .and_then(|d| d.checked_add(c.replied));
    Counters {
        rx_packets: c.rx_packets,
        rx_bytes: c.rx_bytes,
        forwarded: c.forwarded,
        replied: c.replied,
        dropped,
        drops: c
            .drops
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (slot_name(i), *n))
            .collect(),
        conserved: exact_out == Some(c.rx_packets),
    }
}

/// Per-second rates between two cumulative readings; a counter that went backwards (a worker
/// restarted) counts as no progress rather than a huge wrap.
fn rates(a: &VerdictCounters, b: &VerdictCounters, dt: f64) -> Rates {
    let per_s = |x: u64, y: u64| y.saturating_sub(x) as f64 / dt;
    Rates {
        rx_pps: per_s(a.rx_packets, b.rx_packets),
        rx_bps: per_s(a.rx_bytes, b.rx_bytes) * 8.0,
        forwarded_pps: per_s(a.forwarded, b.forwarded),
        replied_pps: per_s(a.replied, b.replied),
        dropped_pps: per_s(sum_drops(a), sum_drops(b)),
        drops_pps: a
            .drops
            .iter()
            .zip(b.drops.iter())
            .enumerate()
            .filter(|(_, (x, y))| y > x)
            .map(|(i, (x, y))| (slot_name(i), per_s(*x, *y)))
            .collect(),
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64 * 100.0).clamp(0.0, 100.0)
    }
}

const NS_PER_SECOND: f64 = 1e9;

fn ns_to_seconds(ns: u64) -> f64 {
    ns as f64 / NS_PER_SECOND
}

fn quantile(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

fn latency_row(label: String, h: &Histogram<u64>) -> LatencyRow {
    let empty = h.is_empty();
    LatencyRow {
        label,
        count: h.len(),
        min: if empty { 0 } else { h.min() },
        mean: h.mean(),
        p50: quantile(h, 0.5),
        p90: quantile(h, 0.9),
        p99: quantile(h, 0.99),
        p999: quantile(h, 0.999),
        p9999: quantile(h, 0.9999),
        max: if empty { 0 } else { h.max() },
    }
}

/// Adds `src` into `dst` without ever failing: histograms of our own layout are added
/// directly (saturating counts); any other layout is re-recorded value by value, clamped to
/// our range, so a foreign or corrupt histogram degrades to clamped values instead of an error.
fn merge_histogram(dst: &mut Histogram<u64>, src: &Histogram<u64>) {
    if src.is_empty() {
        return;
    }
    let same_layout =
        src.low() == dst.low() && src.high() == dst.high() && src.sigfig() == dst.sigfig();
    if same_layout && dst.add(src).is_ok() {
        return;
    }
    for v in src.iter_recorded() {
        dst.saturating_record_n(v.value_iterated_to(), v.count_at_value());
    }
}
