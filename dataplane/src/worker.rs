//! Poll-mode workers: one per lcore, each owning one RX and one TX queue on every port.

use crate::channel::{ToCtl, Update, WorkerEnd};
use crate::eal::{rdtsc, Eal};
use crate::error::DpdkError;
use crate::lcore::LcoreJob;
use dpdk_sys::rte_mbuf;
use pipeline::counters::{REPLY_FAILED_SLOT, REPLY_TX_FULL_SLOT, TX_FULL_SLOT};
use pipeline::{Direction, EmitOut, Meta, Pipeline, Verdict, VerdictCounters};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Largest burst a worker will request; the configured burst must not exceed it.
pub const MAX_BURST: usize = 256;

/// One direction a worker serves: packets received on `rx` (queue = the worker's queue) are
/// forwarded to `tx` and answered back out of `rx`.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub rx_port: u16,
    pub tx_port: u16,
    /// Index of the RX port in the daemon's port list (used for counters and `Meta::port`).
    pub rx_index: u16,
    /// Inbound when `rx_port` is the outside port of its pair, outbound when it is the inside.
    pub dir: Direction,
}

/// What one worker does: its lcore, its queue id on every port, the links it polls.
pub struct WorkerPlan {
    pub lcore: u32,
    pub queue: u16,
    pub burst: usize,
    pub links: Vec<Link>,
    /// Number of ports in the daemon's list, for sizing the per-port counters.
    pub ports: usize,
    pub pipeline: Pipeline,
    /// The worker's end of its rings to the control thread.
    pub channel: WorkerEnd,
    /// TSC ticks between two stats snapshots.
    pub stats_interval_tsc: u64,
    /// TSC frequency, to turn latency ticks into nanoseconds.
    pub tsc_hz: u64,
}

/// Values a worker publishes for the main lcore while it runs: plain atomics written once per
/// non-empty burst, so watching them costs the worker nothing but a relaxed store.
#[derive(Default, Debug)]
pub struct WorkerLive {
    pub rx_packets: AtomicU64,
    pub last_rx_tsc: AtomicU64,
}

/// What a worker hands back when it stops.
pub struct WorkerReport {
    pub lcore: u32,
    pub queue: u16,
    /// Counters per RX port (indexed like the daemon's port list).
    pub per_port: Vec<VerdictCounters>,
    /// TSC ticks spent in bursts that received at least one packet.
    pub busy_tsc: u64,
    /// Total TSC ticks the loop ran.
    pub total_tsc: u64,
    /// TSC of the first and the last non-empty burst (0 when nothing arrived): the active window
    /// over which a rate is meaningful for a finite replay.
    pub first_rx_tsc: u64,
    pub last_rx_tsc: u64,
    /// The worker's pipeline, handed back with its per-stage counters.
    pub pipeline: Pipeline,
    /// Snapshots published, and intervals deferred because no buffer was free.
    pub snapshots: u64,
    pub deferred: u64,
    /// Whether the last snapshot (taken after the loop stopped) reached the control side, so
    /// the control side's totals equal this report's.
    pub final_published: bool,
}

/// Shared stop flag plus per-worker live values.
pub struct Control {
    pub stop: AtomicBool,
    pub live: Vec<WorkerLive>,
}

impl Control {
    pub fn new(workers: usize) -> Arc<Control> {
        Arc::new(Control {
            stop: AtomicBool::new(false),
            live: (0..workers).map(|_| WorkerLive::default()).collect(),
        })
    }
}

/// Launch every plan on its lcore, call `monitor` on the main lcore until it returns false,
/// then raise the stop flag and wait for all workers (also when a launch failed, so that the
/// workers already running stop). Ports must stay started for the whole call, which the borrow
/// of `eal` and the caller's ownership of the ports guarantee. The launching, waiting and
/// panic catching are [`crate::lcore`]'s.
pub fn run_workers(
    eal: &Eal,
    plans: Vec<WorkerPlan>,
    control: &Arc<Control>,
    mut monitor: impl FnMut(&Control) -> bool,
) -> Result<Vec<WorkerReport>, DpdkError> {
    let jobs: Vec<LcoreJob<'_, WorkerReport>> = plans
        .into_iter()
        .enumerate()
        .map(|(idx, plan)| {
            let ctl = Arc::clone(control);
            let lcore = plan.lcore;
            let run: Box<dyn FnOnce() -> WorkerReport + Send> =
                Box::new(move || worker_loop(plan, &ctl, idx));
            (lcore, run)
        })
        .collect();
    crate::lcore::run_then_stop(
        eal,
        jobs,
        || monitor(control),
        || control.stop.store(true, Ordering::SeqCst),
    )
}

/// Copies a frame a stage emitted (see [`pipeline::emit`]) into a fresh mbuf from `like`'s
/// mempool, the pool the packet being judged came from: a mempool get (per-lcore cache, no
/// syscall, no heap). `None` when the pool is empty or the frame does not fit.
///
/// # Safety
/// `like` must point to a valid mbuf owned by the caller.
#[inline]
unsafe fn emitted_mbuf(like: *mut rte_mbuf, frame: &[u8]) -> Option<*mut rte_mbuf> {
    // SAFETY: the caller guarantees `like` is a valid mbuf; its pool outlives it.
    let pool = unsafe { (*like).pool };
    // SAFETY: pool is the valid mempool of a live mbuf.
    let m = unsafe { dpdk_sys::shim_rte_pktmbuf_alloc(pool) };
    if m.is_null() {
        return None;
    }
    // SAFETY: m was just allocated and is ours.
    let f = unsafe { crate::mbuf::view(m) };
    // SAFETY: m is ours and set_len checks the length against its buffer.
    if f.len + f.room < frame.len() || !unsafe { crate::mbuf::set_len(m, frame.len() as u16) } {
        // SAFETY: m is ours and referenced nowhere else.
        unsafe { dpdk_sys::shim_rte_pktmbuf_free_bulk([m].as_mut_ptr(), 1) };
        return None;
    }
    // SAFETY: the data area holds at least frame.len() bytes (checked above) and does not
    // overlap `frame`, which lives in the pipeline.
    unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), f.data, frame.len()) };
    Some(m)
}

/// Send `pkts` on (port, queue) and free what the TX ring did not take. Returns how many were
/// not sent, for the caller to move from its sent count to `tx_full`.
#[inline]
fn tx_or_free(port: u16, queue: u16, pkts: &mut [*mut rte_mbuf]) -> u64 {
    if pkts.is_empty() {
        return 0;
    }
    // SAFETY: port/queue were validated at setup and this worker is the only user of this TX
    // queue; pkts holds valid mbufs owned by us, whose ownership passes to the PMD when sent.
    let sent = unsafe {
        dpdk_sys::shim_rte_eth_tx_burst(port, queue, pkts.as_mut_ptr(), pkts.len() as u16)
    } as usize;
    let sent = sent.min(pkts.len());
    let rest = &mut pkts[sent..];
    if !rest.is_empty() {
        // SAFETY: the unsent tail is still ours; free_bulk handles refcounts and segments.
        unsafe { dpdk_sys::shim_rte_pktmbuf_free_bulk(rest.as_mut_ptr(), rest.len() as u32) };
    }
    rest.len() as u64
}

/// Everything a worker needs to publish stats, kept apart from the packet loop's state.
struct Publisher {
    channel: WorkerEnd,
    worker: u16,
    lcore: u32,
    queue: u16,
    /// Latency of packets finished since the last published snapshot.
    pending: hdrhistogram::Histogram<u64>,
    /// Nanoseconds per TSC tick, scaled by 2^16 so the conversion is one multiply and a shift.
    ns_per_tick_q16: u64,
    seq: u64,
    deferred: u64,
    /// Acks that met a full ring (cannot happen with the ring sizes `channel` picks; kept
    /// rather than lost if it ever does).
    #[allow(clippy::vec_box)] // the boxes travel back to the control side as they came
    outbox: Vec<Box<Update>>,
}

impl Publisher {
    #[inline]
    fn record_latency(&mut self, ticks: u64, packets: u64) {
        let ns = (u128::from(ticks) * u128::from(self.ns_per_tick_q16)) >> 16;
        let ns = (ns as u64).clamp(1, stats::LATENCY_MAX_NS);
        // In range by the clamp above, and the histogram does not auto-resize, so this neither
        // fails nor allocates.
        let _ = self.pending.record_n(ns, packets);
    }

    /// Fill a free buffer and send it; without one, count a deferral (the data stays here and
    /// goes out with the next snapshot).
    fn publish(
        &mut self,
        counters: &[VerdictCounters],
        pipeline: &Pipeline,
        tsc: u64,
        busy: u64,
        total: u64,
        count_deferral: bool,
    ) -> bool {
        let Some(mut buf) = self.channel.take_free() else {
            self.deferred += u64::from(count_deferral);
            return false;
        };
        self.seq += 1;
        buf.worker = self.worker;
        buf.lcore = self.lcore;
        buf.queue = self.queue;
        buf.seq = self.seq;
        buf.tsc = tsc;
        for (dst, src) in buf.per_port.iter_mut().zip(counters) {
            dst.clone_from(src);
        }
        pipeline.fill_stage_counters(&mut buf.stages);
        buf.rules_generation = pipeline.rules_generation();
        buf.signature_hits.clear();
        // Reallocates only the first time after a reload brought more rules.
        buf.signature_hits
            .extend_from_slice(pipeline.signature_hits());
        pipeline.export_offenders(&mut buf.offenders);
        buf.syncookie = pipeline.syncookie_status(tsc);
        // The control side resets histograms before recycling them, so the swap leaves an
        // empty pending histogram here without touching its memory.
        std::mem::swap(&mut buf.latency, &mut self.pending);
        buf.busy_tsc = busy;
        buf.total_tsc = total;
        buf.deferred = self.deferred;
        if let Err(item) = self.channel.send(ToCtl::Snapshot(buf)) {
            // Cannot happen (the ring holds the whole pool); undo so nothing is lost.
            if let ToCtl::Snapshot(mut b) = item {
                std::mem::swap(&mut b.latency, &mut self.pending);
                self.pending.add(&b.latency).ok();
            }
            self.seq -= 1;
            self.deferred += u64::from(count_deferral);
            return false;
        }
        true
    }

    /// Apply one queued update at a burst boundary and send the box back with what it replaced.
    ///
    /// Returns true when an update was applied; its ack then waits in the outbox so the caller
    /// can publish a snapshot first (see the worker loop).
    fn apply_update(&mut self, pipeline: &mut Pipeline) -> bool {
        if !self.outbox.is_empty() {
            self.flush_outbox();
            // Take no new update while an ack is still waiting: its ring room is reserved.
            if !self.outbox.is_empty() {
                return false;
            }
        }
        let Some(mut u) = self.channel.next_update() else {
            return false;
        };
        pipeline.apply(u.as_mut());
        self.outbox.push(u);
        true
    }

    fn flush_outbox(&mut self) {
        while let Some(u) = self.outbox.pop() {
            if let Err(ToCtl::Applied(u)) = self.channel.send(ToCtl::Applied(u)) {
                self.outbox.push(u);
                return;
            }
        }
    }
}

fn worker_loop(mut plan: WorkerPlan, control: &Control, idx: usize) -> WorkerReport {
    // A normal thread gets no mempool cache; EAL lcores do. Workers always run on EAL lcores.
    let q = plan.queue;
    let burst = plan.burst.clamp(1, MAX_BURST);
    let mut counters = vec![VerdictCounters::default(); plan.ports];
    let mut rx: [*mut rte_mbuf; MAX_BURST] = [std::ptr::null_mut(); MAX_BURST];
    let mut fwd: [*mut rte_mbuf; MAX_BURST] = [std::ptr::null_mut(); MAX_BURST];
    let mut rep: [*mut rte_mbuf; MAX_BURST] = [std::ptr::null_mut(); MAX_BURST];
    let mut drop: [*mut rte_mbuf; MAX_BURST] = [std::ptr::null_mut(); MAX_BURST];
    // Frames stages emit besides their verdicts: at most one per received packet.
    let mut emit_fwd: [*mut rte_mbuf; MAX_BURST] = [std::ptr::null_mut(); MAX_BURST];
    let mut emit_rep: [*mut rte_mbuf; MAX_BURST] = [std::ptr::null_mut(); MAX_BURST];
    let live = &control.live[idx];
    let mut publisher = Publisher {
        channel: plan.channel,
        worker: idx as u16,
        lcore: plan.lcore,
        queue: q,
        pending: stats::new_latency_histogram(),
        ns_per_tick_q16: ((1_000_000_000u128 << 16) / u128::from(plan.tsc_hz.max(1))) as u64,
        seq: 0,
        deferred: 0,
        outbox: Vec::with_capacity(4),
    };
    let interval = plan.stats_interval_tsc.max(1);
    let mut rx_total: u64 = 0;
    let mut busy: u64 = 0;
    let (mut first_rx, mut last_rx) = (0u64, 0u64);
    let start = rdtsc();
    let mut next_publish = start.wrapping_add(interval);
    while !control.stop.load(Ordering::Relaxed) {
        for link in &plan.links {
            // SAFETY: port/queue validated at setup; this worker owns RX queue q of the port;
            // rx has room for `burst` pointers.
            let n = unsafe {
                dpdk_sys::shim_rte_eth_rx_burst(link.rx_port, q, rx.as_mut_ptr(), burst as u16)
            } as usize;
            if n == 0 {
                continue;
            }
            let t0 = rdtsc();
            if first_rx == 0 {
                first_rx = t0;
            }
            last_rx = t0;
            let meta = Meta {
                port: link.rx_index,
                dir: link.dir,
                tsc: t0,
            };
            let c = &mut counters[usize::from(link.rx_index)];
            c.rx_packets += n as u64;
            let (mut nf, mut nr, mut nd) = (0usize, 0usize, 0usize);
            let (mut nef, mut ner) = (0usize, 0usize);
            for &m in &rx[..n] {
                // SAFETY: m was just returned by rx_burst and is owned by this worker.
                let f = unsafe { crate::mbuf::view(m) };
                // SAFETY: the first segment's data area is valid for len + room bytes and
                // nothing else aliases it while we hold the mbuf.
                let buf = unsafe { std::slice::from_raw_parts_mut(f.data, f.len + f.room) };
                let (len, pkt_len) = (f.len, f.pkt_len);
                c.rx_bytes += u64::from(pkt_len);
                let v = plan.pipeline.process(buf, len, &meta);
                if let Some((frame, out)) = plan.pipeline.take_emitted() {
                    // SAFETY: m is ours (freed or sent only below).
                    match unsafe { emitted_mbuf(m, frame) } {
                        Some(e) if out == EmitOut::Forward => {
                            emit_fwd[nef] = e;
                            nef += 1;
                        }
                        Some(e) => {
                            emit_rep[ner] = e;
                            ner += 1;
                        }
                        None => plan.pipeline.emit_failed(),
                    }
                }
                if let Verdict::Reply { len: new_len } = v {
                    // SAFETY: m is ours; set_len checks the new length against the buffer.
                    if !unsafe { crate::mbuf::set_len(m, new_len) } {
                        // A reply that does not fit its mbuf cannot be sent.
                        c.drops[REPLY_FAILED_SLOT] += 1;
                        drop[nd] = m;
                        nd += 1;
                        continue;
                    }
                }
                c.count(v);
                let (list, n) = match v {
                    Verdict::Forward => (&mut fwd, &mut nf),
                    Verdict::Reply { .. } => (&mut rep, &mut nr),
                    Verdict::Drop(_) => (&mut drop, &mut nd),
                };
                list[*n] = m;
                *n += 1;
            }
            let unsent_fwd = tx_or_free(link.tx_port, q, &mut fwd[..nf]);
            let unsent_rep = tx_or_free(link.rx_port, q, &mut rep[..nr]);
            c.forwarded -= unsent_fwd;
            c.replied -= unsent_rep;
            // Apart: a stage counted each reply it built; these never left.
            c.drops[TX_FULL_SLOT] += unsent_fwd;
            c.drops[REPLY_TX_FULL_SLOT] += unsent_rep;
            // Emitted frames are extra to rx = forwarded + replied + drops; those the TX ring
            // refuses are counted by the stage that emitted them.
            let unsent_emit = tx_or_free(link.tx_port, q, &mut emit_fwd[..nef])
                + tx_or_free(link.rx_port, q, &mut emit_rep[..ner]);
            for _ in 0..unsent_emit {
                plan.pipeline.emit_failed();
            }
            if nd > 0 {
                // SAFETY: these mbufs are ours and referenced nowhere else.
                unsafe { dpdk_sys::shim_rte_pktmbuf_free_bulk(drop.as_mut_ptr(), nd as u32) };
            }
            rx_total += n as u64;
            live.rx_packets.store(rx_total, Ordering::Relaxed);
            live.last_rx_tsc.store(t0, Ordering::Relaxed);
            // Every packet of the burst was received at t0 and has left (sent or freed) by
            // now: that span is its latency through scrubd.
            let spent = rdtsc().wrapping_sub(t0);
            publisher.record_latency(spent, n as u64);
            busy += spent;
        }
        // An applied update is published at once, ahead of its ack: whoever waits for the ack
        // (`syncookie rotate`, a block add) then finds the aggregator already showing it.
        let applied = publisher.apply_update(&mut plan.pipeline);
        let now = rdtsc();
        if applied || now >= next_publish {
            publisher.publish(
                &counters,
                &plan.pipeline,
                now,
                busy,
                now.wrapping_sub(start),
                true,
            );
            next_publish = now.wrapping_add(interval);
        }
        if applied {
            publisher.flush_outbox();
        }
    }
    // The final snapshot must reach the control side so its totals equal this report. The
    // control thread keeps recycling buffers until every worker has stopped; wait for one a
    // bounded time (one second) rather than forever.
    let end = rdtsc();
    let deadline = end.wrapping_add(plan.tsc_hz.max(1));
    let mut final_published = false;
    loop {
        publisher.flush_outbox();
        let total = end.wrapping_sub(start);
        if publisher.publish(&counters, &plan.pipeline, end, busy, total, false) {
            final_published = true;
            break;
        }
        if rdtsc() >= deadline {
            break;
        }
        // SAFETY: a CPU pause hint, no memory effects.
        unsafe { dpdk_sys::shim_rte_pause() };
    }
    WorkerReport {
        lcore: plan.lcore,
        queue: q,
        per_port: counters,
        busy_tsc: busy,
        total_tsc: end.wrapping_sub(start),
        first_rx_tsc: first_rx,
        last_rx_tsc: last_rx,
        pipeline: plan.pipeline,
        snapshots: publisher.seq,
        deferred: publisher.deferred,
        final_published,
    }
}
