//! The Prometheus text exposition of everything the aggregator knows.

use super::*;

impl Aggregator {
    /// Everything in Prometheus text format 0.0.4.
    pub fn prometheus(&self, now: Instant) -> String {
        self.prometheus_with(now, |_| {})
    }

    /// [`Aggregator::prometheus`] plus the families `extra` writes (the control side's own
    /// gauges), with the same box label.
    pub fn prometheus_with(&self, now: Instant, extra: impl FnOnce(&mut Writer)) -> String {
        let mut w = match &self.box_label {
            Some(b) => Writer::with_labels(vec![("box".to_string(), b.clone())]),
            None => Writer::new(),
        };
        w.family(
            "scrubd_uptime_seconds",
            Kind::Gauge,
            "Seconds since the stats aggregator started.",
        );
        w.sample(
            "scrubd_uptime_seconds",
            &[],
            now.saturating_duration_since(self.start).as_secs_f64(),
        );

        let totals = self.totals();
        let ports: Vec<(&str, &VerdictCounters)> = self
            .cfg
            .port_names
            .iter()
            .map(String::as_str)
            .zip(&totals)
            .collect();
        type Get = fn(&VerdictCounters) -> u64;
        let per_port: [(&str, &str, Get); 5] = [
            ("scrubd_rx_packets_total", "Packets received.", |c| {
                c.rx_packets
            }),
            ("scrubd_rx_bytes_total", "Bytes received.", |c| c.rx_bytes),
            (
                "scrubd_forwarded_packets_total",
                "Packets forwarded.",
                |c| c.forwarded,
            ),
            (
                "scrubd_replied_packets_total",
                "Packets answered in place (SYN cookies and the like).",
                |c| c.replied,
            ),
            ("scrubd_dropped_packets_total", "Packets dropped.", |c| {
                sum_drops(c)
            }),
        ];
        for (name, help, get) in per_port {
            w.family(name, Kind::Counter, &format!("{help} By RX port."));
            for (port, c) in &ports {
                w.sample(name, &[("port", port)], get(c));
            }
        }
        w.family(
            "scrubd_drops_total",
            Kind::Counter,
            "Packets dropped, by RX port and drop reason.",
        );
        let reasons: Vec<String> = (0..DROP_SLOTS).map(slot_name).collect();
        for (port, c) in &ports {
            for (reason, n) in reasons.iter().zip(c.drops.iter()) {
                w.sample(
                    "scrubd_drops_total",
                    &[("port", port), ("reason", reason)],
                    *n,
                );
            }
        }

        let labels: Vec<String> = (0..self.workers.len()).map(|i| i.to_string()).collect();
        let worker_counters: Vec<VerdictCounters> =
            self.workers.iter().map(WorkerState::counters).collect();
        for (name, help, get) in per_port {
            let name = name.replacen("scrubd_", "scrubd_worker_", 1);
            w.family(&name, Kind::Counter, &format!("{help} By worker."));
            for (l, c) in labels.iter().zip(&worker_counters) {
                w.sample(&name, &[("worker", l)], get(c));
            }
        }
        type WGet = fn(&WorkerState) -> u64;
        let worker_plain: [(&str, &str, WGet); 4] = [
            (
                "scrubd_worker_snapshots_total",
                "Stats snapshots received from the worker.",
                |w| w.snapshots,
            ),
            (
                "scrubd_worker_deferred_total",
                "Stats intervals the worker could not publish (their data came later).",
                |w| w.deferred,
            ),
            (
                "scrubd_worker_busy_tsc_total",
                "TSC ticks the worker spent on non-empty bursts.",
                |w| w.busy_tsc,
            ),
            (
                "scrubd_worker_loop_tsc_total",
                "TSC ticks the worker spent in its loop.",
                |w| w.total_tsc,
            ),
        ];
        for (name, help, get) in worker_plain {
            w.family(name, Kind::Counter, help);
            for (l, ws) in labels.iter().zip(&self.workers) {
                w.sample(name, &[("worker", l)], get(ws));
            }
        }

        w.family(
            "scrubd_stage_events_total",
            Kind::Counter,
            "Pipeline stage counters summed over workers.",
        );
        for (name, v) in self.stage_totals() {
            w.sample("scrubd_stage_events_total", &[("counter", &name)], v);
        }

        w.family(
            "scrubd_signature_hits_total",
            Kind::Counter,
            "Signature rule matches over all rule generations.",
        );
        for h in self.signature_hits() {
            w.sample(
                "scrubd_signature_hits_total",
                &[("sid", &h.sid.to_string()), ("msg", &h.msg)],
                h.hits,
            );
        }

        // Prometheus wants base units (seconds), so the histogram's nanoseconds are converted
        // here; `promtool check metrics` flags `_ns` as an abbreviated unit.
        let h = &self.merged_latency;
        w.family(
            "scrubd_latency_seconds",
            Kind::Summary,
            "Packet latency from RX burst to TX or free, seconds, since start or the last \
             latency reset. _sum is estimated from the histogram mean.",
        );
        for (q, label) in QUANTILES {
            w.sample(
                "scrubd_latency_seconds",
                &[("quantile", label)],
                ns_to_seconds(quantile(h, q)),
            );
        }
        w.sample(
            "scrubd_latency_seconds_sum",
            &[],
            h.mean() * h.len() as f64 / NS_PER_SECOND,
        );
        w.sample("scrubd_latency_seconds_count", &[], h.len());
        w.family(
            "scrubd_latency_max_seconds",
            Kind::Gauge,
            "Largest packet latency since start or the last latency reset, seconds.",
        );
        w.sample(
            "scrubd_latency_max_seconds",
            &[],
            ns_to_seconds(if h.is_empty() { 0 } else { h.max() }),
        );
        extra(&mut w);
        w.finish()
    }
}
