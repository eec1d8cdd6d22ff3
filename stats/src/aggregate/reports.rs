//! The reports the control socket serves: stats, latency, offenders.

use super::*;

impl Aggregator {
    pub fn stats_report(&self, now: Instant) -> StatsReport {
        let totals = self.totals();
        let span = self.rate_span();
        let mut ports = Vec::with_capacity(totals.len());
        for (i, (name, c)) in self.cfg.port_names.iter().zip(&totals).enumerate() {
            let rates = span
                .and_then(|(a, b, dt)| Some(rates(a.ports.get(i)?, b.ports.get(i)?, dt)))
                .unwrap_or_default();
            ports.push(PortStatsRow {
                name: name.clone(),
                counters: counters(c),
                rates,
            });
        }
        let mut total = VerdictCounters::default();
        for c in &totals {
            add_saturating(&mut total, c);
        }
        let total_rates = span
            .map(|(a, b, dt)| rates(&sum_counters(&a.ports), &sum_counters(&b.ports), dt))
            .unwrap_or_default();
        let workers = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let ticks =
                    span.and_then(|(a, b, dt)| Some((a.workers.get(i)?, b.workers.get(i)?, dt)));
                let rx_pps = ticks
                    .map(|(a, b, dt)| b.0.saturating_sub(a.0) as f64 / dt)
                    .unwrap_or(0.0);
                // Busy share over the rate window when there is one, else since start.
                let busy_pct = match ticks {
                    Some((a, b, _)) if b.2 > a.2 => {
                        pct(b.1.saturating_sub(a.1), b.2.saturating_sub(a.2))
                    }
                    _ => pct(w.busy_tsc, w.total_tsc),
                };
                let age = w
                    .last_at
                    .map_or(now.saturating_duration_since(self.start), |t| {
                        now.saturating_duration_since(t)
                    });
                WorkerStatsRow {
                    worker: u16::try_from(i).unwrap_or(u16::MAX),
                    lcore: w.lcore,
                    queue: w.queue,
                    counters: counters(&w.counters()),
                    rx_pps,
                    busy_pct,
                    snapshots: w.snapshots,
                    deferred: w.deferred,
                    last_snapshot_age_ms: age.as_secs_f64() * 1000.0,
                }
            })
            .collect();
        StatsReport {
            uptime_s: now.saturating_duration_since(self.start).as_secs_f64(),
            rate_window_s: span.map_or(0.0, |(_, _, dt)| dt),
            ports,
            workers,
            total: counters(&total),
            total_rates,
            stages: self.stage_totals(),
            signature_hits: self.signature_hits(),
        }
    }

    /// Latency percentiles; with `reset`, the since-start histograms start over after this
    /// read (the recent window is left alone: it expires by itself).
    pub fn latency_report(&mut self, now: Instant, reset: bool, hgrm: bool) -> LatencyReport {
        let cur = self.slice_index(now);
        self.expire_slices(cur);
        let first = cur.saturating_sub(RECENT_SLICES - 1);
        let mut recent = new_latency_histogram();
        for s in self.recent.iter().filter(|s| s.idx >= first) {
            merge_histogram(&mut recent, &s.hist);
        }
        let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
        let window_s = (elapsed - first as f64 * self.slice_len.as_secs_f64()).max(0.0);
        let report = LatencyReport {
            unit: "ns".to_string(),
            since_s: now
                .saturating_duration_since(self.latency_since)
                .as_secs_f64(),
            window_s,
            workers: self
                .workers
                .iter()
                .enumerate()
                .map(|(i, w)| latency_row(format!("worker {i}"), &w.latency))
                .collect(),
            merged: latency_row("all".to_string(), &self.merged_latency),
            recent: latency_row("all (recent)".to_string(), &recent),
            hgrm: hgrm.then(|| hgrm::write_percentiles(&self.merged_latency, 1.0)),
            reset,
        };
        if reset {
            for w in &mut self.workers {
                w.latency.reset();
            }
            self.merged_latency.reset();
            self.latency_since = now;
        }
        report
    }

    /// The workers' offender sketches merged: estimates of equal (side, address, reason) keys
    /// are summed, counts and error bounds alike. A key one worker's sketch no longer tracks
    /// adds nothing for that worker, so the sum can undercount such a key by at most that
    /// sketch's smallest count.
    pub fn offenders_report(
        &self,
        limit: usize,
        reason: Option<&str>,
    ) -> Result<OffendersReport, UnknownReason> {
        let slot = match reason {
            None => None,
            Some(name) => Some((0..DROP_SLOTS).find(|&s| slot_name(s) == name).ok_or_else(
                || UnknownReason {
                    name: name.to_string(),
                    valid: (0..DROP_SLOTS).map(slot_name).collect(),
                },
            )?),
        };
        let mut merged: HashMap<OffenderKey, (u64, u64)> = HashMap::new();
        for e in self.workers.iter().flat_map(|w| &w.offenders) {
            if slot.is_some_and(|s| usize::from(e.reason) != s) {
                continue;
            }
            let acc = merged.entry((e.side, e.addr, e.reason)).or_insert((0, 0));
            acc.0 = acc.0.saturating_add(e.count);
            acc.1 = acc.1.saturating_add(e.error);
        }
        let mut rows: Vec<(OffenderKey, (u64, u64))> = merged.into_iter().collect();
        rows.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
        let side = |want: Side| -> Vec<Offender> {
            rows.iter()
                .filter(|((s, _, _), _)| *s == want)
                .take(limit)
                .map(|((_, addr, r), (packets, error))| Offender {
                    addr: addr.to_string(),
                    reason: slot_name(usize::from(*r)),
                    packets: *packets,
                    error: *error,
                })
                .collect()
        };
        Ok(OffendersReport {
            reason: reason.map(str::to_string),
            sources: side(Side::Src),
            destinations: side(Side::Dst),
        })
    }
}
