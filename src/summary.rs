//! The end-of-run report: per-port traffic, drops by reason, rate, and the conservation check.

use crate::config::Config;
use dataplane::{PortStats, WorkerReport};
use pipeline::stage::signature::CompiledRules;
use pipeline::VerdictCounters;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct PortSummary {
    pub name: String,
    pub device: String,
    pub rx: u64,
    pub rx_bytes: u64,
    pub forwarded: u64,
    pub replied: u64,
    pub dropped: u64,
    pub drops: BTreeMap<String, u64>,
    /// What the PMD itself counted, to cross-check ours: summed across the resets some PMDs
    /// do when the link drops (net_memif when its peer quits), see `dataplane::StatsAcc`.
    pub eth_ipackets: u64,
    pub eth_opackets: u64,
    pub eth_imissed: u64,
    pub eth_rx_nombuf: u64,
    pub conserved: bool,
}

#[derive(Debug, Serialize)]
pub struct WorkerSummary {
    pub lcore: u32,
    pub queue: u16,
    pub rx: u64,
    pub busy_ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct RuleHits {
    pub sid: u32,
    pub msg: String,
    pub action: String,
    pub hits: u64,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub stop_reason: String,
    pub elapsed_s: f64,
    pub active_s: f64,
    pub rx_total: u64,
    pub mpps: f64,
    /// TSC ticks per second on this machine, to turn rates into cycles per packet.
    pub tsc_hz: u64,
    pub ports: Vec<PortSummary>,
    pub workers: Vec<WorkerSummary>,
    /// Per-stage counters summed over workers ("syncookie.syn_answered", ...).
    pub stages: BTreeMap<String, u64>,
    /// Signature rules that matched at least once.
    pub signature_hits: Vec<RuleHits>,
    pub conserved: bool,
    /// Latency percentiles (ns) from the control side's histograms: all workers merged, then
    /// each worker.
    pub latency: Vec<ctl::protocol::LatencyRow>,
    /// The control side's totals (sum of the workers' final snapshots) equal the workers' own
    /// counters, port by port: nothing was lost or counted twice on the stats path.
    pub stats_path_exact: bool,
}

/// What the control side saw by the end of the run.
pub struct ControlView {
    /// Per-port totals of the workers' final snapshots.
    pub totals: Vec<VerdictCounters>,
    /// Signature hits summed by sid over every rule generation (after a `rules reload` the
    /// workers' own stages hold only the newest set's hits).
    pub stats: ctl::protocol::StatsReport,
    pub latency: ctl::protocol::LatencyReport,
    /// The rule sets that ran (the first and the last), to name each hit rule's action.
    pub rule_sets: Vec<std::sync::Arc<CompiledRules>>,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        cfg: &Config,
        eth: &[PortStats],
        reports: &[WorkerReport],
        control: ControlView,
        tsc_hz: u64,
        elapsed: Duration,
        stop_reason: &str,
    ) -> Summary {
        let mut per_port = vec![VerdictCounters::default(); eth.len()];
        for r in reports {
            for (acc, c) in per_port.iter_mut().zip(&r.per_port) {
                acc.add(c);
            }
        }
        let port_summaries: Vec<PortSummary> = per_port
            .iter()
            .zip(eth)
            .zip(&cfg.ports)
            .map(|((c, eth), pc)| PortSummary {
                name: pc.name.clone(),
                device: pc.device_name().to_string(),
                rx: c.rx_packets,
                rx_bytes: c.rx_bytes,
                forwarded: c.forwarded,
                replied: c.replied,
                dropped: c.dropped(),
                drops: c.drop_breakdown().into_iter().collect(),
                eth_ipackets: eth.ipackets,
                eth_opackets: eth.opackets,
                eth_imissed: eth.imissed,
                eth_rx_nombuf: eth.rx_nombuf,
                conserved: c.conserved(),
            })
            .collect();
        let rx_total: u64 = per_port.iter().map(|c| c.rx_packets).sum();
        let first = reports
            .iter()
            .map(|r| r.first_rx_tsc)
            .filter(|&t| t > 0)
            .min();
        let last = reports.iter().map(|r| r.last_rx_tsc).max();
        let active_s = match (first, last) {
            (Some(f), Some(l)) if l > f && tsc_hz > 0 => (l - f) as f64 / tsc_hz as f64,
            _ => 0.0,
        };
        let mpps = if active_s > 0.0 {
            rx_total as f64 / active_s / 1e6
        } else {
            0.0
        };
        let workers = reports
            .iter()
            .map(|r| WorkerSummary {
                lcore: r.lcore,
                queue: r.queue,
                rx: r.per_port.iter().map(|c| c.rx_packets).sum(),
                busy_ratio: if r.total_tsc > 0 {
                    r.busy_tsc as f64 / r.total_tsc as f64
                } else {
                    0.0
                },
            })
            .collect();
        let conserved = port_summaries.iter().all(|p| p.conserved);
        let mut stages = BTreeMap::new();
        for r in reports {
            for (name, v) in r.pipeline.stage_counters() {
                *stages.entry(name.to_string()).or_insert(0) += v;
            }
        }
        let stats_path_exact =
            reports.iter().all(|r| r.final_published) && per_port == control.totals;
        let actions: BTreeMap<u32, String> = control
            .rule_sets
            .iter()
            .flat_map(|r| r.rules_info())
            .map(|i| (i.sid, format!("{:?}", i.action).to_lowercase()))
            .collect();
        let signature_hits = control
            .stats
            .signature_hits
            .into_iter()
            .map(|h| RuleHits {
                action: actions.get(&h.sid).cloned().unwrap_or_else(|| "-".into()),
                sid: h.sid,
                msg: h.msg,
                hits: h.hits,
            })
            .collect();
        let latency = std::iter::once(control.latency.merged)
            .chain(control.latency.workers)
            .collect();
        Summary {
            stop_reason: stop_reason.into(),
            elapsed_s: elapsed.as_secs_f64(),
            active_s,
            rx_total,
            mpps,
            tsc_hz,
            ports: port_summaries,
            workers,
            stages,
            signature_hits,
            conserved,
            latency,
            stats_path_exact,
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n=== scrubd summary (stopped by {}, ran {:.2} s) ===",
            self.stop_reason, self.elapsed_s
        );
        let _ = writeln!(
            s,
            "{:<12} {:<12} {:>12} {:>12} {:>10} {:>10} {:>12} {:>12}",
            "port", "device", "rx", "forwarded", "replied", "dropped", "eth-in", "eth-out"
        );
        for p in &self.ports {
            let _ = writeln!(
                s,
                "{:<12} {:<12} {:>12} {:>12} {:>10} {:>10} {:>12} {:>12}",
                p.name,
                p.device,
                p.rx,
                p.forwarded,
                p.replied,
                p.dropped,
                p.eth_ipackets,
                p.eth_opackets
            );
        }
        let mut any = false;
        for p in &self.ports {
            for (reason, n) in &p.drops {
                if !any {
                    let _ = writeln!(s, "drops by reason:");
                    any = true;
                }
                let _ = writeln!(s, "  {:<12} {:<36} {:>12}", p.name, reason, n);
            }
        }
        if !any {
            let _ = writeln!(s, "drops by reason: none");
        }
        let active: Vec<_> = self.stages.iter().filter(|(_, &v)| v > 0).collect();
        if !active.is_empty() {
            let _ = writeln!(s, "stage counters:");
            for (k, v) in active {
                let _ = writeln!(s, "  {k:<48} {v:>12}");
            }
        }
        for h in &self.signature_hits {
            let _ = writeln!(
                s,
                "  rule sid {:<10} {:<6} {:>12}  {}",
                h.sid, h.action, h.hits, h.msg
            );
        }
        for w in &self.workers {
            let _ = writeln!(
                s,
                "worker lcore {} queue {}: rx {} busy {:.1}%",
                w.lcore,
                w.queue,
                w.rx,
                w.busy_ratio * 100.0
            );
        }
        let _ = writeln!(
            s,
            "total rx {} packets in {:.3} s active: {:.3} Mpps",
            self.rx_total, self.active_s, self.mpps
        );
        if !self.latency.is_empty() {
            let _ = writeln!(
                s,
                "latency (µs, RX burst to TX/free) {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "packets", "p50", "p90", "p99", "p99.9", "p99.99", "max"
            );
            let us = |ns: u64| ns as f64 / 1000.0;
            for l in &self.latency {
                let _ = writeln!(
                    s,
                    "  {:<32} {:>12} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                    l.label,
                    l.count,
                    us(l.p50),
                    us(l.p90),
                    us(l.p99),
                    us(l.p999),
                    us(l.p9999),
                    us(l.max)
                );
            }
        }
        let _ = writeln!(
            s,
            "conservation (rx = forwarded + replied + dropped, every port): {}",
            if self.conserved { "ok" } else { "VIOLATED" }
        );
        let _ = writeln!(
            s,
            "stats path (control-side totals = workers' final counters): {}",
            if self.stats_path_exact {
                "exact"
            } else {
                "MISMATCH"
            }
        );
        s
    }
}
