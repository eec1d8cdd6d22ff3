//! What a worker publishes every stats interval.

use hdrhistogram::Histogram;
use pipeline::offenders::OffenderEntry;
use pipeline::stage::syncookie::Status as SynCookieStatus;
use pipeline::VerdictCounters;

/// Largest latency a histogram tracks; longer ones are clamped to it (saturating record), so a
/// stalled worker shows up as max-latency instead of being lost.
pub const LATENCY_MAX_NS: u64 = 10_000_000_000;

/// The histogram every worker and the control side use: 1 ns .. 10 s at 3 significant digits.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("static histogram bounds are valid")
}

/// One worker's published state. Buffers are allocated by the control side and recycled, so a
/// worker fills them without allocating.
///
/// Exactness rule: every counter here is cumulative since the worker started, so a snapshot that
/// could not be published (ring full, no free buffer) loses nothing: the next one carries it.
/// The latency histogram is the only delta; the worker keeps recording into its pending
/// histogram until a publish succeeds, so it, too, is merged into the next snapshot.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Worker index (0-based, the order of `dataplane.workers`).
    pub worker: u16,
    pub lcore: u32,
    pub queue: u16,
    /// 1, 2, 3, ... per worker, in publish order.
    pub seq: u64,
    /// TSC when the snapshot was taken.
    pub tsc: u64,
    /// Per RX port, indexed like the daemon's port list; cumulative.
    pub per_port: Vec<VerdictCounters>,
    /// Indexed like `pipeline::Pipeline::stage_counter_names()`; cumulative.
    pub stages: Vec<u64>,
    /// Generation of the signature rule set the worker runs (0 = the one loaded at start).
    pub rules_generation: u64,
    /// Hits per rule index of generation `rules_generation`, cumulative since the worker
    /// installed that generation. Hits of earlier generations reach the control side with the
    /// retired rule set (see the daemon's reload path), not here.
    pub signature_hits: Vec<u64>,
    /// Latency (ns, RX burst → TX/free) of packets finished since the previous published
    /// snapshot of this worker.
    pub latency: Histogram<u64>,
    /// The worker's offender sketch, exported whole (cumulative).
    pub offenders: Vec<OffenderEntry>,
    /// TSC ticks spent in non-empty bursts / in the loop, cumulative.
    pub busy_tsc: u64,
    pub total_tsc: u64,
    /// The worker's SYN-cookie state (secret generation, allowlist use) when the stage runs.
    pub syncookie: Option<SynCookieStatus>,
    /// Intervals at which the worker could not publish (no free buffer or ring full) since
    /// it started; their data is in this snapshot.
    pub deferred: u64,
}

impl Snapshot {
    /// An empty buffer sized for `ports` ports and `stages` stage counters.
    pub fn new(worker: u16, ports: usize, stages: usize) -> Snapshot {
        Snapshot {
            worker,
            lcore: 0,
            queue: 0,
            seq: 0,
            tsc: 0,
            per_port: vec![VerdictCounters::default(); ports],
            stages: vec![0; stages],
            rules_generation: 0,
            signature_hits: Vec::new(),
            latency: new_latency_histogram(),
            offenders: Vec::new(),
            busy_tsc: 0,
            total_tsc: 0,
            syncookie: None,
            deferred: 0,
        }
    }
}
