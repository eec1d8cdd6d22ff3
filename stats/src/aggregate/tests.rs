//! Aggregator tests: exactness under any publish order, rates, latency, offenders, exposition.

use super::*;
use crate::exposition::validate;
use crate::snapshot::LATENCY_MAX_NS;
use pipeline::stage::ratelimit::LimitClass;
use pipeline::verdict::{DropReason, Verdict};
use proptest::prelude::*;

const SEC: Duration = Duration::from_secs(1);

fn config(ports: usize, workers: usize) -> AggregatorConfig {
    AggregatorConfig {
        port_names: (0..ports).map(|i| format!("port{i}")).collect(),
        workers,
        window: Duration::from_secs(10),
        rate_window: SEC,
    }
}

fn stages() -> usize {
    Pipeline::stage_counter_names().len()
}

/// A worker as the data path runs it: true counters, a pending latency histogram that is
/// only cleared by a successful publish, and a seq that advances per publish.
struct SimWorker {
    id: u16,
    seq: u64,
    ports: Vec<VerdictCounters>,
    stages: Vec<u64>,
    pending: Histogram<u64>,
    deferred: u64,
    last: Option<Snapshot>,
    busy: u64,
    total: u64,
}

impl SimWorker {
    fn new(id: u16, ports: usize) -> SimWorker {
        SimWorker {
            id,
            seq: 0,
            ports: vec![VerdictCounters::default(); ports],
            stages: vec![0; stages()],
            pending: new_latency_histogram(),
            deferred: 0,
            last: None,
            busy: 0,
            total: 0,
        }
    }

    fn packets(&mut self, port: usize, n: u64, v: Verdict, bytes: u64, latency_ns: u64) {
        let c = &mut self.ports[port];
        for _ in 0..n {
            c.rx_packets += 1;
            c.rx_bytes += bytes;
            c.count(v);
            self.pending.record(latency_ns).unwrap();
        }
        let stage = usize::try_from(latency_ns).unwrap() % self.stages.len();
        self.stages[stage] += n;
        self.busy += n;
        self.total += 2 * n + 1;
    }

    /// A publish attempt; a failed one is only counted as deferred.
    fn publish(&mut self, ok: bool) -> Option<Snapshot> {
        if !ok {
            self.deferred += 1;
            return None;
        }
        self.seq += 1;
        let mut s = Snapshot::new(self.id, self.ports.len(), self.stages.len());
        s.seq = self.seq;
        s.per_port.clone_from(&self.ports);
        s.stages.clone_from(&self.stages);
        s.latency = self.pending.clone();
        s.busy_tsc = self.busy;
        s.total_tsc = self.total;
        s.deferred = self.deferred;
        self.pending.reset();
        self.last = Some(s.clone());
        Some(s)
    }
}

fn verdict(k: u8) -> Verdict {
    match k % 4 {
        0 => Verdict::Forward,
        1 => Verdict::Reply { len: 60 },
        2 => Verdict::Drop(DropReason::AclDeny),
        _ => Verdict::Drop(DropReason::RateLimited(LimitClass::UdpReflection)),
    }
}

#[derive(Clone, Debug)]
enum Ev {
    Packets {
        worker: usize,
        port: usize,
        n: u64,
        kind: u8,
    },
    Publish {
        worker: usize,
        ok: bool,
    },
    /// The control side sees the worker's previous snapshot again.
    Redeliver {
        worker: usize,
    },
}

fn event() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (0..3usize, 0..2usize, 1..20u64, any::<u8>()).prop_map(|(worker, port, n, kind)| {
            Ev::Packets {
                worker,
                port,
                n,
                kind,
            }
        }),
        (0..3usize, any::<bool>()).prop_map(|(worker, ok)| Ev::Publish { worker, ok }),
        (0..3usize).prop_map(|worker| Ev::Redeliver { worker }),
    ]
}

proptest! {
    /// Whatever mix of deferred publishes and duplicate deliveries, the totals equal what
    /// the workers really counted, the workers' rows add up to the ports, and every packet's
    /// latency is in the merged histogram exactly once.
    #[test]
    fn totals_are_exact(events in proptest::collection::vec(event(), 0..120)) {
        let t0 = Instant::now();
        let mut agg = Aggregator::new_at(config(2, 3), t0).unwrap();
        let mut sims: Vec<SimWorker> = (0..3).map(|i| SimWorker::new(i, 2)).collect();
        let mut recorded = 0u64;
        for (step, ev) in events.iter().enumerate() {
            let now = t0 + Duration::from_millis(step as u64 * 10);
            match *ev {
                Ev::Packets { worker, port, n, kind } => {
                    sims[worker].packets(port, n, verdict(kind), 100, 1000 + step as u64);
                    recorded += n;
                }
                Ev::Publish { worker, ok } => {
                    if let Some(s) = sims[worker].publish(ok) {
                        prop_assert_eq!(agg.ingest(&s, now), Ingested::Accepted);
                    }
                }
                Ev::Redeliver { worker } => {
                    if let Some(s) = sims[worker].last.clone() {
                        prop_assert_eq!(agg.ingest(&s, now), Ingested::Stale);
                    }
                }
            }
        }
        let end = t0 + Duration::from_secs(5);
        for s in &mut sims {
            let snap = s.publish(true).unwrap();
            agg.ingest(&snap, end);
        }
        let truth: Vec<VerdictCounters> = (0..2)
            .map(|p| sum_counters(&sims.iter().map(|s| s.ports[p].clone()).collect::<Vec<_>>()))
            .collect();
        prop_assert_eq!(agg.totals(), truth.clone());
        let report = agg.stats_report(end);
        prop_assert_eq!(&report.total, &counters(&sum_counters(&truth)));
        prop_assert!(report.total.conserved);
        let mut by_workers = VerdictCounters::default();
        for (row, sim) in report.workers.iter().zip(&sims) {
            prop_assert_eq!(&row.counters, &counters(&sum_counters(&sim.ports)));
            prop_assert_eq!(row.deferred, sim.deferred);
            prop_assert_eq!(row.snapshots, sim.seq);
            add_saturating(&mut by_workers, &sum_counters(&sim.ports));
        }
        prop_assert_eq!(counters(&by_workers), report.total);
        let lat = agg.latency_report(end, false, false);
        prop_assert_eq!(lat.merged.count, recorded);
        prop_assert_eq!(lat.workers.iter().map(|r| r.count).sum::<u64>(), recorded);
        let stage_sum: u64 = report.stages.values().sum();
        prop_assert_eq!(stage_sum, recorded);
    }
}

#[test]
fn older_and_duplicate_seq_are_ignored() {
    let t0 = Instant::now();
    let mut agg = Aggregator::new_at(config(1, 1), t0).unwrap();
    let mut w = SimWorker::new(0, 1);
    w.packets(0, 5, Verdict::Forward, 64, 100);
    let first = w.publish(true).unwrap();
    w.packets(0, 7, Verdict::Forward, 64, 200);
    let second = w.publish(true).unwrap();
    assert_eq!(agg.ingest(&second, t0), Ingested::Accepted);
    // The older one arrives late: counters must not go back, its latency is not added.
    assert_eq!(agg.ingest(&first, t0), Ingested::Stale);
    assert_eq!(agg.ingest(&second, t0), Ingested::Stale);
    assert_eq!(agg.totals()[0].rx_packets, 12);
    assert_eq!(agg.latency_report(t0, false, false).merged.count, 7);
    let mut zero = Snapshot::new(0, 1, stages());
    zero.seq = 0;
    assert_eq!(agg.ingest(&zero, t0), Ingested::Stale);
}

#[test]
fn deferred_publishes_lose_nothing() {
    let t0 = Instant::now();
    let mut agg = Aggregator::new_at(config(1, 2), t0).unwrap();
    let mut a = SimWorker::new(0, 1);
    let mut b = SimWorker::new(1, 1);
    for round in 0..10u64 {
        a.packets(0, 3, Verdict::Forward, 60, 500);
        b.packets(0, 2, Verdict::Drop(DropReason::AclDeny), 60, 900);
        // Worker b can publish only every third interval.
        for (w, ok) in [(&mut a, true), (&mut b, round % 3 == 2)] {
            if let Some(s) = w.publish(ok) {
                agg.ingest(&s, t0 + Duration::from_millis(100 * round));
            }
        }
    }
    let t = agg.totals();
    assert_eq!(t[0].rx_packets, 30 + 18);
    // b's last three rounds are still pending: exactly those are missing until it publishes.
    let pending = b.pending.len();
    assert_eq!(pending, 2);
    let s = b.publish(true).unwrap();
    agg.ingest(&s, t0 + SEC * 2);
    let r = agg.stats_report(t0 + SEC * 2);
    assert_eq!(r.total.rx_packets, 50);
    assert_eq!(r.total.drops["acl_deny"], 20);
    assert_eq!(r.workers[1].deferred, b.deferred);
    assert_eq!(r.workers[1].deferred, 7);
    assert_eq!(
        agg.latency_report(t0 + SEC * 2, false, false).merged.count,
        50
    );
}

#[test]
fn rates_from_known_time_differences() {
    let t0 = Instant::now();
    let mut agg = Aggregator::new_at(config(2, 2), t0).unwrap();
    let mut a = SimWorker::new(0, 2);
    let mut b = SimWorker::new(1, 2);
    a.packets(0, 100, Verdict::Forward, 1000, 10);
    b.packets(1, 40, Verdict::Drop(DropReason::AclDeny), 100, 10);
    agg.ingest(&a.publish(true).unwrap(), t0);
    agg.ingest(&b.publish(true).unwrap(), t0);
    assert_eq!(
        agg.stats_report(t0).rate_window_s,
        0.0,
        "one sample: no rate yet"
    );

    // 2 s later: 300 more forwarded on port0 via a, 80 more acl drops on port1 via b.
    let t1 = t0 + SEC * 2;
    a.packets(0, 300, Verdict::Forward, 1000, 10);
    b.packets(1, 80, Verdict::Drop(DropReason::AclDeny), 100, 10);
    agg.ingest(&a.publish(true).unwrap(), t1);
    agg.ingest(&b.publish(true).unwrap(), t1);
    let r = agg.stats_report(t1);
    assert_eq!(r.rate_window_s, 2.0);
    assert_eq!(r.ports[0].rates.rx_pps, 150.0);
    assert_eq!(r.ports[0].rates.rx_bps, 150.0 * 1000.0 * 8.0);
    assert_eq!(r.ports[0].rates.forwarded_pps, 150.0);
    assert_eq!(r.ports[1].rates.dropped_pps, 40.0);
    assert_eq!(r.ports[1].rates.drops_pps["acl_deny"], 40.0);
    assert!(r.ports[0].rates.drops_pps.is_empty());
    assert_eq!(r.total_rates.rx_pps, 190.0);
    assert_eq!(r.workers[0].rx_pps, 150.0);
    assert_eq!(r.workers[1].rx_pps, 40.0);
    let busy = (300.0 / (2.0 * 300.0 + 1.0)) * 100.0;
    assert!((r.workers[0].busy_pct - busy).abs() < 1e-9);

    // Samples every 250 ms: the baseline is the newest one at least 1 s before the end.
    let mut t = t1;
    for _ in 0..6 {
        t += Duration::from_millis(250);
        a.packets(0, 10, Verdict::Forward, 1000, 10);
        agg.ingest(&a.publish(true).unwrap(), t);
    }
    let r = agg.stats_report(t);
    assert_eq!(r.rate_window_s, 1.0);
    assert_eq!(r.ports[0].rates.rx_pps, 40.0);
    assert_eq!(r.ports[1].rates.rx_pps, 0.0);
}

#[test]
fn worker_rows_describe_each_worker() {
    let t0 = Instant::now();
    let mut agg = Aggregator::new_at(config(1, 2), t0).unwrap();
    let mut a = SimWorker::new(0, 1);
    a.packets(0, 10, Verdict::Forward, 60, 10);
    let mut s = a.publish(true).unwrap();
    s.lcore = 3;
    s.queue = 1;
    s.busy_tsc = 25;
    s.total_tsc = 100;
    agg.ingest(&s, t0 + SEC);
    let r = agg.stats_report(t0 + SEC * 3);
    assert_eq!(r.uptime_s, 3.0);
    assert_eq!(r.workers.len(), 2);
    assert_eq!((r.workers[0].lcore, r.workers[0].queue), (3, 1));
    assert_eq!(r.workers[0].busy_pct, 25.0);
    assert_eq!(r.workers[0].snapshots, 1);
    assert_eq!(r.workers[0].last_snapshot_age_ms, 2000.0);
    // A silent worker is listed, aged since start.
    assert_eq!(r.workers[1].snapshots, 0);
    assert_eq!(r.workers[1].last_snapshot_age_ms, 3000.0);
    let names = Pipeline::stage_counter_names();
    assert_eq!(r.stages.len(), names.len());
    assert_eq!(r.stages[&names[10 % names.len()]], 10);
}

/// Two workers swap rule generation 0 → 1 at different moments, with snapshots of the old
/// generation drained after the retirement; the hits by sid must equal the true hits.
#[test]
fn retired_hits_are_exact() {
    let t0 = Instant::now();
    let mut agg = Aggregator::new_at(config(1, 2), t0).unwrap();
    agg.set_rules(0, vec![(100, "a".into()), (200, "b".into())]);
    // Generation 1 reorders and replaces rules: index 0 is sid 200 now.
    agg.set_rules(1, vec![(200, "b2".into()), (300, "c".into())]);
    let mut truth: BTreeMap<u32, u64> = BTreeMap::new();
    let gen_sids = [[100u32, 200], [200, 300]];
    // Per worker: (seq, generation, hits of the generation it runs).
    let mut state = [(0u64, 0u64, vec![0u64; 2]), (0, 0, vec![0; 2])];
    let hit = |truth: &mut BTreeMap<u32, u64>,
               state: &mut [(u64, u64, Vec<u64>); 2],
               w: usize,
               idx: usize,
               n: u64| {
        let (_, generation, hits) = &mut state[w];
        hits[idx] += n;
        *truth
            .entry(gen_sids[*generation as usize][idx])
            .or_default() += n;
    };
    let snap = |state: &mut [(u64, u64, Vec<u64>); 2], w: usize| {
        let (seq, generation, hits) = &mut state[w];
        *seq += 1;
        let mut s = Snapshot::new(w as u16, 1, stages());
        s.seq = *seq;
        s.rules_generation = *generation;
        s.signature_hits = hits.clone();
        s
    };
    hit(&mut truth, &mut state, 0, 0, 5);
    hit(&mut truth, &mut state, 1, 1, 7);
    let s = snap(&mut state, 0);
    agg.ingest(&s, t0);
    let s = snap(&mut state, 1);
    agg.ingest(&s, t0);
    hit(&mut truth, &mut state, 0, 1, 3);
    // Worker 0 takes a snapshot, then swaps before the control side drains it.
    let late0 = snap(&mut state, 0);
    hit(&mut truth, &mut state, 0, 0, 2);
    let final0 = state[0].2.clone();
    state[0].1 = 1;
    state[0].2 = vec![0; 2];
    agg.retire_rules(0, 0, &final0).unwrap();
    assert_eq!(agg.ingest(&late0, t0 + SEC), Ingested::Accepted);
    hit(&mut truth, &mut state, 0, 0, 11);
    hit(&mut truth, &mut state, 1, 0, 4);
    let s = snap(&mut state, 0);
    agg.ingest(&s, t0 + SEC);
    let s = snap(&mut state, 1);
    agg.ingest(&s, t0 + SEC);
    let check = |agg: &Aggregator, truth: &BTreeMap<u32, u64>| {
        let got: BTreeMap<u32, u64> = agg
            .signature_hits()
            .iter()
            .map(|h| (h.sid, h.hits))
            .collect();
        let want: BTreeMap<u32, u64> = truth
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| (*s, *n))
            .collect();
        assert_eq!(got, want);
    };
    check(&agg, &truth);
    // Worker 1 swaps later; its final hits include some never seen in a snapshot.
    hit(&mut truth, &mut state, 1, 1, 6);
    let final1 = state[1].2.clone();
    state[1].1 = 1;
    state[1].2 = vec![0; 2];
    agg.retire_rules(1, 0, &final1).unwrap();
    check(&agg, &truth);
    hit(&mut truth, &mut state, 1, 1, 1);
    let s = snap(&mut state, 1);
    agg.ingest(&s, t0 + SEC * 2);
    check(&agg, &truth);
    assert_eq!(
        agg.retire_rules(1, 0, &final1),
        Err(RetireError::AlreadyRetired {
            worker: 1,
            generation: 0
        })
    );
    assert_eq!(
        agg.retire_rules(9, 0, &[]),
        Err(RetireError::UnknownWorker(9))
    );
    check(&agg, &truth);
    let hits = agg.stats_report(t0 + SEC * 2).signature_hits;
    assert!(
        hits.windows(2).all(|w| w[0].hits >= w[1].hits),
        "sorted by hits"
    );
    let sid200 = hits.iter().find(|h| h.sid == 200).unwrap();
    assert_eq!(sid200.msg, "b2", "the newest message of a sid is shown");
}

#[test]
fn hits_of_unknown_rules_are_kept_apart() {
    let t0 = Instant::now();
    let mut agg = Aggregator::new_at(config(1, 1), t0).unwrap();
    agg.set_rules(0, vec![(7, "seven".into())]);
    let mut s = Snapshot::new(0, 1, stages());
    s.seq = 1;
    s.signature_hits = vec![1, 2, 0, 4];
    agg.ingest(&s, t0);
    let hits = agg.signature_hits();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits.iter().map(|h| h.hits).sum::<u64>(), 7);
    assert!(hits.iter().any(|h| h.sid == 7 && h.hits == 1));
    assert!(hits
        .iter()
        .any(|h| h.msg == "unknown rule 3 of generation 0"));
}

#[test]
fn latency_percentiles_match_recorded_values() {
    let t0 = Instant::now();
    let mut agg = Aggregator::new_at(config(1, 2), t0).unwrap();
    let mut values: Vec<u64> = Vec::new();
    for w in 0..2u16 {
        let mut s = Snapshot::new(w, 1, stages());
        s.seq = 1;
        for i in 0..5000u64 {
            let v = 1_000 + (i * 7919 + u64::from(w) * 13) % 1_000_000;
            s.latency.record(v).unwrap();
            values.push(v);
        }
        agg.ingest(&s, t0);
    }
    values.sort_unstable();
    let exact = |q: f64| values[((q * values.len() as f64).ceil() as usize).max(1) - 1];
    let r = agg.latency_report(t0 + SEC, false, true);
    let m = &r.merged;
    assert_eq!(m.label, "all");
    assert_eq!(m.count, values.len() as u64);
    for (got, q) in [
        (m.p50, 0.5),
        (m.p90, 0.9),
        (m.p99, 0.99),
        (m.p999, 0.999),
        (m.p9999, 0.9999),
    ] {
        let want = exact(q);
        // Three significant digits: within 0.1% of the true value.
        assert!(
            got.abs_diff(want) <= want / 1000 + 1,
            "q{q}: {got} vs {want}"
        );
    }
    let (lo, hi) = (values[0], *values.last().unwrap());
    assert!(m.min <= lo && lo - m.min <= lo / 1000);
    assert!(m.max >= hi && m.max - hi <= hi / 1000);
    let mean = values.iter().sum::<u64>() as f64 / values.len() as f64;
    assert!((m.mean - mean).abs() / mean < 0.001);
    assert_eq!(r.workers.len(), 2);
    assert_eq!(r.workers[1].label, "worker 1");
    assert_eq!(r.workers[0].count, 5000);
    assert_eq!(r.recent.label, "all (recent)");
    assert_eq!(r.recent.count, m.count);
    assert_eq!(r.unit, "ns");
    let text = r.hgrm.unwrap();
    assert!(text.contains(&format!("Total count    = {:>12}]", values.len())));
    // Empty histograms report zeros rather than garbage.
    let empty = latency_row("x".into(), &new_latency_histogram());
    assert_eq!((empty.count, empty.min, empty.max, empty.p99), (0, 0, 0, 0));
}

#[test]
fn reset_clears_since_start_only() {
    let t0 = Instant::now();
    let mut agg = Aggregator::new_at(config(1, 1), t0).unwrap();
    let mut w = SimWorker::new(0, 1);
    w.packets(0, 10, Verdict::Forward, 60, 5_000);
    agg.ingest(&w.publish(true).unwrap(), t0 + SEC);
    let before = agg.latency_report(t0 + SEC * 2, true, false);
    assert!(before.reset);
    assert_eq!(before.merged.count, 10);
    assert_eq!(before.since_s, 2.0);
    let after = agg.latency_report(t0 + SEC * 3, false, false);
    assert!(!after.reset);
    assert_eq!(after.merged.count, 0);
    assert_eq!(after.workers[0].count, 0);
    assert_eq!(after.since_s, 1.0);
    assert_eq!(after.recent.count, 10, "the recent window is not reset");
    w.packets(0, 4, Verdict::Forward, 60, 7_000);
    agg.ingest(&w.publish(true).unwrap(), t0 + SEC * 3);
    let r = agg.latency_report(t0 + SEC * 3, false, false);
    assert_eq!(r.merged.count, 4);
    // Only the new value remains: min and max are the bounds of its one bucket.
    assert!(new_latency_histogram().equivalent(r.merged.min, r.merged.max));
    assert!(r.merged.min <= 7_000 && 7_000 <= r.merged.max);
    assert_eq!(r.recent.count, 14);
}

#[test]
fn recent_window_expires_with_time() {
    let t0 = Instant::now();
    let mut agg = Aggregator::new_at(config(1, 1), t0).unwrap();
    let mut w = SimWorker::new(0, 1);
    w.packets(0, 100, Verdict::Forward, 60, 1_000);
    agg.ingest(&w.publish(true).unwrap(), t0);
    w.packets(0, 50, Verdict::Forward, 60, 2_000);
    agg.ingest(&w.publish(true).unwrap(), t0 + SEC * 5);
    let r = agg.latency_report(t0 + SEC * 5, false, false);
    assert_eq!(r.recent.count, 150);
    assert_eq!(r.window_s, 5.0, "not more than has elapsed");
    // At 10.5 s the slice holding t=0 is out of the window.
    let r = agg.latency_report(t0 + Duration::from_millis(10_500), false, false);
    assert_eq!(r.recent.count, 50);
    assert!(r.recent.min <= 2_000 && 2_000 <= r.recent.max);
    assert!(new_latency_histogram().equivalent(r.recent.min, r.recent.max));
    assert!(r.window_s > 9.0 && r.window_s <= 10.0);
    assert_eq!(r.merged.count, 150);
    let r = agg.latency_report(t0 + SEC * 16, false, false);
    assert_eq!(r.recent.count, 0);
    // Expired slices are recycled, not leaked.
    assert!(agg.recent.is_empty());
    w.packets(0, 3, Verdict::Forward, 60, 3_000);
    agg.ingest(&w.publish(true).unwrap(), t0 + SEC * 17);
    assert_eq!(
        agg.latency_report(t0 + SEC * 17, false, false).recent.count,
        3
    );
    assert!(agg.recent.len() <= RECENT_SLICES as usize);
}

fn offender(side: Side, addr: &str, reason: usize, count: u64, error: u64) -> OffenderEntry {
    OffenderEntry {
        side,
        addr: addr.parse().unwrap(),
        reason: u16::try_from(reason).unwrap(),
        count,
        error,
    }
}

#[test]
fn offenders_merge_and_filter() {
    let t0 = Instant::now();
    let mut agg = Aggregator::new_at(config(1, 2), t0).unwrap();
    let acl = DropReason::AclDeny.slot();
    let udp = DropReason::RateLimited(LimitClass::UdpReflection).slot();
    let mut a = Snapshot::new(0, 1, stages());
    a.seq = 1;
    a.offenders = vec![
        offender(Side::Src, "192.0.2.1", acl, 10, 1),
        offender(Side::Src, "2001:db8::1", udp, 30, 0),
        offender(Side::Dst, "198.51.100.9", acl, 10, 1),
    ];
    let mut b = Snapshot::new(1, 1, stages());
    b.seq = 1;
    b.offenders = vec![
        offender(Side::Src, "192.0.2.1", acl, 25, 2),
        offender(Side::Src, "192.0.2.1", udp, 4, 0),
        offender(Side::Dst, "198.51.100.9", acl, 1, 0),
        offender(Side::Src, "203.0.113.5", 999, 1, 0),
    ];
    agg.ingest(&a, t0);
    agg.ingest(&b, t0);
    let r = agg.offenders_report(10, None).unwrap();
    assert_eq!(r.reason, None);
    let src: Vec<(&str, &str, u64, u64)> = r
        .sources
        .iter()
        .map(|o| (o.addr.as_str(), o.reason.as_str(), o.packets, o.error))
        .collect();
    assert_eq!(
        src,
        [
            ("192.0.2.1", "acl_deny", 35, 3),
            ("2001:db8::1", "rate_limited.udp_reflection", 30, 0),
            ("192.0.2.1", "rate_limited.udp_reflection", 4, 0),
            ("203.0.113.5", "unknown.999", 1, 0),
        ]
    );
    assert_eq!(r.destinations.len(), 1);
    assert_eq!(r.destinations[0].packets, 11);

    let r = agg
        .offenders_report(1, Some("rate_limited.udp_reflection"))
        .unwrap();
    assert_eq!(r.reason.as_deref(), Some("rate_limited.udp_reflection"));
    assert_eq!(r.sources.len(), 1);
    assert_eq!(r.sources[0].addr, "2001:db8::1");
    assert!(r.destinations.is_empty());

    let e = agg.offenders_report(10, Some("bogus")).unwrap_err();
    assert_eq!(e.name, "bogus");
    assert!(e.valid.iter().any(|v| v == "acl_deny"));
    assert_eq!(e.valid.len(), DROP_SLOTS);
    assert!(agg.offenders_report(0, None).unwrap().sources.is_empty());

    // A newer export replaces the worker's previous one (cumulative), not adds to it.
    a.seq = 2;
    a.offenders = vec![offender(Side::Src, "192.0.2.1", acl, 12, 1)];
    agg.ingest(&a, t0);
    let r = agg.offenders_report(10, Some("acl_deny")).unwrap();
    assert_eq!(r.sources[0].packets, 37);
}

/// Two workers, two ports with names that need escaping, a signature hit and latencies of
/// 1..4 us: every metric family has samples.
fn exposition_fixture() -> (Aggregator, AggregatorConfig, Instant) {
    let t0 = Instant::now();
    let mut cfg = config(2, 2);
    cfg.port_names = vec!["eth\"0\\".into(), "eth1\nx".into()];
    let mut agg = Aggregator::new_at(cfg.clone(), t0).unwrap();
    agg.set_rules(0, vec![(1, "quote \" and \\ and\nnewline".into())]);
    let mut a = SimWorker::new(0, 2);
    let mut b = SimWorker::new(1, 2);
    a.packets(0, 9, Verdict::Forward, 100, 1_000);
    a.packets(1, 4, Verdict::Drop(DropReason::AclDeny), 100, 2_000);
    b.packets(
        1,
        6,
        Verdict::Drop(DropReason::RateLimited(LimitClass::TcpSyn)),
        80,
        3_000,
    );
    b.packets(0, 2, Verdict::Reply { len: 60 }, 80, 4_000);
    let mut s = a.publish(true).unwrap();
    s.signature_hits = vec![5];
    agg.ingest(&s, t0);
    agg.ingest(&b.publish(true).unwrap(), t0);
    (agg, cfg, t0)
}

/// Prometheus's own linter on the whole document (naming conventions included, e.g. base
/// units). Skipped, saying so, where promtool is not installed (Debian: `prometheus`).
#[test]
fn prometheus_text_passes_promtool() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let (agg, _, t0) = exposition_fixture();
    let text = agg.prometheus(t0 + SEC);
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: promtool not found (apt-get install prometheus)");
            return;
        }
        Err(e) => panic!("running promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {said}\n{text}");
    assert!(said.trim().is_empty(), "promtool: {said}");
}

#[test]
fn prometheus_text_is_valid_and_consistent() {
    let (agg, cfg, t0) = exposition_fixture();
    let text = agg.prometheus(t0 + SEC);
    let samples = validate::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let find = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let hits: Vec<&validate::Sample> = samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels.len() == s.labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert_eq!(hits.len(), 1, "{name} {labels:?}");
        hits[0].value
    };
    for (i, name) in cfg.port_names.iter().enumerate() {
        let t = &agg.totals()[i];
        assert_eq!(
            find("scrubd_rx_packets_total", &[("port", name)]),
            t.rx_packets as f64
        );
        assert_eq!(
            find("scrubd_rx_bytes_total", &[("port", name)]),
            t.rx_bytes as f64
        );
        let by_reason: f64 = samples
            .iter()
            .filter(|s| s.name == "scrubd_drops_total" && s.labels["port"] == *name)
            .map(|s| s.value)
            .sum();
        assert_eq!(
            find("scrubd_dropped_packets_total", &[("port", name)]),
            by_reason
        );
        let out = find("scrubd_forwarded_packets_total", &[("port", name)])
            + find("scrubd_replied_packets_total", &[("port", name)])
            + by_reason;
        assert_eq!(out, t.rx_packets as f64);
    }
    assert_eq!(
        find(
            "scrubd_drops_total",
            &[("port", "eth1\nx"), ("reason", "rate_limited.tcp_syn")]
        ),
        6.0
    );
    assert_eq!(
        find("scrubd_worker_rx_packets_total", &[("worker", "1")]),
        8.0
    );
    assert_eq!(
        find(
            "scrubd_signature_hits_total",
            &[("sid", "1"), ("msg", "quote \" and \\ and\nnewline")]
        ),
        5.0
    );
    // Latency in seconds (base unit): 9 x 1 us, 4 x 2 us, 6 x 3 us, 2 x 4 us, to the
    // histogram's 3 significant digits.
    assert_eq!(find("scrubd_latency_seconds_count", &[]), 21.0);
    let near = |v: f64, want: f64| (v - want).abs() <= want * 0.002;
    let p50 = find("scrubd_latency_seconds", &[("quantile", "0.5")]);
    let p9999 = find("scrubd_latency_seconds", &[("quantile", "0.9999")]);
    let max = find("scrubd_latency_max_seconds", &[]);
    assert!(near(p50, 2e-6), "{p50}");
    assert!(near(max, 4e-6), "{max}");
    assert!(p50 <= p9999 && p9999 <= max);
    let sum = find("scrubd_latency_seconds_sum", &[]);
    assert!(near(sum, 43e-6), "{sum}");
    assert!(!text.contains("_ns"), "no abbreviated units: {text}");
    assert_eq!(find("scrubd_uptime_seconds", &[]), 1.0);
    let stage_total: f64 = samples
        .iter()
        .filter(|s| s.name == "scrubd_stage_events_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(stage_total, 21.0);
    assert!(samples.iter().all(|s| s.name.starts_with("scrubd_")));
    // An aggregator that saw nothing still exposes a valid document.
    let idle = Aggregator::new_at(config(1, 1), t0).unwrap();
    validate::parse(&idle.prometheus(t0)).unwrap();
}

#[test]
fn malformed_snapshots_do_not_panic() {
    let t0 = Instant::now();
    let mut agg = Aggregator::new_at(config(2, 1), t0).unwrap();
    let mut huge = VerdictCounters {
        rx_packets: u64::MAX,
        rx_bytes: u64::MAX,
        forwarded: u64::MAX,
        replied: u64::MAX,
        drops: [u64::MAX; DROP_SLOTS],
    };
    // More ports and stages than configured, counters at the top of the range.
    let mut s = Snapshot::new(0, 5, stages() + 7);
    s.seq = u64::MAX;
    s.per_port = vec![huge.clone(); 5];
    s.stages = vec![u64::MAX; stages() + 7];
    s.signature_hits = vec![u64::MAX; 3];
    s.busy_tsc = u64::MAX;
    s.total_tsc = 1;
    s.offenders = vec![offender(Side::Src, "::", 0, u64::MAX, u64::MAX); 2];
    s.latency.record_n(LATENCY_MAX_NS, u64::MAX >> 1).unwrap();
    assert_eq!(agg.ingest(&s, t0), Ingested::Accepted);
    // A second worker's worth of the same would overflow; use a second aggregator worker slot.
    let mut agg2 = Aggregator::new_at(config(2, 2), t0).unwrap();
    agg2.ingest(&s, t0);
    s.worker = 1;
    agg2.ingest(&s, t0);
    for a in [&mut agg, &mut agg2] {
        a.retire_rules(0, 0, &[u64::MAX; 4]).unwrap();
        let r = a.stats_report(t0 + SEC);
        assert!(!r.total.conserved);
        assert_eq!(r.ports.len(), 2);
        a.latency_report(t0 + SEC, false, true);
        a.offenders_report(3, None).unwrap();
        validate::parse(&a.prometheus(t0 + SEC)).unwrap();
    }
    // Fewer ports/stages than configured; unknown worker; foreign histogram layout.
    let mut small = Snapshot::new(0, 0, 0);
    small.seq = 1;
    let mut agg3 = Aggregator::new_at(config(2, 1), t0).unwrap();
    assert_eq!(agg3.ingest(&small, t0), Ingested::Accepted);
    small.worker = 4;
    assert_eq!(agg3.ingest(&small, t0), Ingested::UnknownWorker);
    let mut foreign = Snapshot::new(0, 2, stages());
    foreign.seq = 2;
    foreign.latency = Histogram::new(2).unwrap();
    foreign.latency.record(LATENCY_MAX_NS * 100).unwrap();
    foreign.latency.record(3).unwrap();
    assert_eq!(agg3.ingest(&foreign, t0), Ingested::Accepted);
    let r = agg3.latency_report(t0, false, false);
    assert_eq!(r.merged.count, 2);
    assert!(r.merged.max >= LATENCY_MAX_NS);
    // A latency delta that would overflow the histograms' counts is refused whole.
    let mut flood = Snapshot::new(0, 2, stages());
    flood.seq = 3;
    flood.latency.record_n(5, MAX_LATENCY_COUNT).unwrap();
    agg3.ingest(&flood, t0);
    assert_eq!(agg3.latency_report(t0, false, false).merged.count, 2);
    huge.rx_packets = 0;
    assert!(!counters(&huge).conserved);
}

#[test]
fn config_validation() {
    let mut bad = config(1, 1);
    bad.rate_window = Duration::ZERO;
    assert_eq!(Aggregator::new(bad).err().unwrap().field, "rate_window");
    let mut bad = config(1, 1);
    bad.workers = 70_000;
    assert_eq!(Aggregator::new(bad).err().unwrap().field, "workers");
}
