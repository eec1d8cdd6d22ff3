//! Human-readable text for `scrubctl`'s replies. Pure functions of the report values, so the
//! layout is unit-tested without a daemon; `--json` bypasses all of this.

use crate::protocol::{
    Counters, Done, FlowspecReport, HealthReport, LatencyReport, LatencyRow, ListReport, Offender,
    OffendersReport, PortsReport, RatelimitReport, Rates, ReloadReport, StatsReport, StatusReport,
    SyncookieReport,
};
use std::fmt::Write as _;

/// Columns padded to their widest cell; text left-aligned, numbers right-aligned.
pub struct Table {
    headers: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// `cols`: (header, right-aligned).
    pub fn new(cols: &[(&str, bool)]) -> Table {
        Table {
            headers: cols.iter().map(|(h, _)| h.to_string()).collect(),
            right: cols.iter().map(|(_, r)| *r).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let ncol = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut s = String::new();
            for i in 0..ncol {
                let cell = line.get(i).map(String::as_str).unwrap_or("");
                let w = widths.get(i).copied().unwrap_or(0);
                if i > 0 {
                    s.push_str("  ");
                }
                if self.right.get(i).copied().unwrap_or(false) {
                    let _ = write!(s, "{cell:>w$}");
                } else {
                    let _ = write!(s, "{cell:<w$}");
                }
            }
            out.push_str(s.trim_end());
            out.push('\n');
        }
        out
    }
}

/// 1234567 → "1.23M": rates are estimates, three significant digits is all they carry.
pub fn si(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e12 {
        (v / 1e12, "T")
    } else if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        return format!("{v:.0}");
    };
    format!("{scaled:.2}{suffix}")
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub fn status(r: &StatusReport) -> String {
    let mut t = Table::new(&[("", false), ("", false)]);
    let mut kv = |k: &str, v: String| t.row(vec![k.to_string(), v]);
    kv("version", r.version.clone());
    kv("pid", r.pid.to_string());
    kv("config", r.config.clone());
    kv("uptime", format!("{:.1} s", r.uptime_s));
    kv("workers", r.workers.to_string());
    kv("ports", r.ports.join(", "));
    kv("stats interval", format!("{} ms", r.stats_interval_ms));
    kv("stages", r.stages.join(", "));
    kv(
        "rules",
        format!("{} (generation {})", r.rules, r.rules_generation),
    );
    kv("acl entries", r.acl_entries.to_string());
    kv("stopping", yes_no(r.stopping).into());
    // Drop the empty header line of the key/value table.
    t.render()
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect()
}

fn counter_cells(name: &str, c: &Counters, r: &Rates) -> Vec<String> {
    vec![
        name.to_string(),
        c.rx_packets.to_string(),
        c.forwarded.to_string(),
        c.replied.to_string(),
        c.dropped.to_string(),
        si(r.rx_pps),
        si(r.rx_bps),
        si(r.dropped_pps),
        if c.conserved { "ok" } else { "MISMATCH" }.into(),
    ]
}

pub fn stats(r: &StatsReport) -> String {
    let mut out = format!(
        "uptime {:.1} s, rates over {:.1} s\n\n",
        r.uptime_s, r.rate_window_s
    );
    let mut t = Table::new(&[
        ("port", false),
        ("rx", true),
        ("fwd", true),
        ("replied", true),
        ("dropped", true),
        ("rx pps", true),
        ("rx bps", true),
        ("drop pps", true),
        ("conserved", false),
    ]);
    for p in &r.ports {
        t.row(counter_cells(&p.name, &p.counters, &p.rates));
    }
    t.row(counter_cells("total", &r.total, &r.total_rates));
    out.push_str(&t.render());

    let mut drops = Table::new(&[
        ("port", false),
        ("reason", false),
        ("packets", true),
        ("pps", true),
    ]);
    for p in &r.ports {
        for (reason, n) in &p.counters.drops {
            let rate = p.rates.drops_pps.get(reason).copied().unwrap_or(0.0);
            drops.row(vec![
                p.name.clone(),
                reason.clone(),
                n.to_string(),
                si(rate),
            ]);
        }
    }
    out.push_str("\ndrops by reason:\n");
    if drops.rows.is_empty() {
        out.push_str("  (none)\n");
    } else {
        out.push_str(&drops.render());
    }

    if !r.workers.is_empty() {
        let mut w = Table::new(&[
            ("worker", true),
            ("lcore", true),
            ("queue", true),
            ("rx", true),
            ("rx pps", true),
            ("busy %", true),
            ("snapshots", true),
            ("deferred", true),
            ("age ms", true),
        ]);
        for x in &r.workers {
            w.row(vec![
                x.worker.to_string(),
                x.lcore.to_string(),
                x.queue.to_string(),
                x.counters.rx_packets.to_string(),
                si(x.rx_pps),
                format!("{:.1}", x.busy_pct),
                x.snapshots.to_string(),
                x.deferred.to_string(),
                format!("{:.0}", x.last_snapshot_age_ms),
            ]);
        }
        out.push_str("\nworkers:\n");
        out.push_str(&w.render());
    }

    // Every stage counter exists whatever stages run; the table shows the ones that moved
    // (`--json` has them all).
    if r.stages.values().any(|v| *v > 0) {
        let mut s = Table::new(&[("stage counter", false), ("value", true)]);
        for (k, v) in r.stages.iter().filter(|(_, v)| **v > 0) {
            s.row(vec![k.clone(), v.to_string()]);
        }
        out.push('\n');
        out.push_str(&s.render());
    }
    if !r.signature_hits.is_empty() {
        let mut s = Table::new(&[("sid", true), ("hits", true), ("rule", false)]);
        for h in &r.signature_hits {
            s.row(vec![h.sid.to_string(), h.hits.to_string(), h.msg.clone()]);
        }
        out.push_str("\nsignature hits:\n");
        out.push_str(&s.render());
    }
    out
}

/// One live-view frame: a title line, then the same tables as `stats`.
pub fn top_frame(r: &StatsReport, refresh: u64, interval_s: f64) -> String {
    format!(
        "scrubctl top: refresh {refresh}, every {interval_s} s (Ctrl-C to quit)\n\n{}",
        stats(r)
    )
}

/// Nanoseconds below 100 µs read best as ns; above that, µs with one decimal.
fn latency_unit(rows: &[&LatencyRow]) -> (&'static str, f64) {
    let max = rows.iter().map(|r| r.max).max().unwrap_or(0);
    if max < 100_000 {
        ("ns", 1.0)
    } else {
        ("µs", 1000.0)
    }
}

fn lat(v: f64, div: f64) -> String {
    if div == 1.0 {
        format!("{v:.0}")
    } else {
        format!("{:.1}", v / div)
    }
}

pub fn latency(r: &LatencyReport) -> String {
    let mut rows: Vec<&LatencyRow> = r.workers.iter().collect();
    rows.push(&r.merged);
    rows.push(&r.recent);
    let (unit, div) = latency_unit(&rows);
    let mut out = format!(
        "latency in {unit}; since-start histograms cover {:.1} s, recent window {:.1} s\n",
        r.since_s, r.window_s
    );
    let mut t = Table::new(&[
        ("", false),
        ("count", true),
        ("min", true),
        ("mean", true),
        ("p50", true),
        ("p90", true),
        ("p99", true),
        ("p99.9", true),
        ("p99.99", true),
        ("max", true),
    ]);
    for row in rows {
        t.row(vec![
            row.label.clone(),
            row.count.to_string(),
            lat(row.min as f64, div),
            lat(row.mean, div),
            lat(row.p50 as f64, div),
            lat(row.p90 as f64, div),
            lat(row.p99 as f64, div),
            lat(row.p999 as f64, div),
            lat(row.p9999 as f64, div),
            lat(row.max as f64, div),
        ]);
    }
    out.push_str(&t.render());
    if r.reset {
        out.push_str("histograms reset\n");
    }
    out
}

pub fn list(r: &ListReport) -> String {
    if r.entries.is_empty() {
        return format!("{} list is empty\n", r.list);
    }
    let mut t = Table::new(&[("prefix", false), ("source", false), ("expires in", true)]);
    for e in &r.entries {
        t.row(vec![
            e.prefix.clone(),
            e.source.clone(),
            e.expires_in_s
                .map(|s| format!("{s:.0} s"))
                .unwrap_or_else(|| "never".into()),
        ]);
    }
    format!(
        "{} list ({} entries):\n{}",
        r.list,
        r.entries.len(),
        t.render()
    )
}

pub fn ratelimit(r: &RatelimitReport) -> String {
    let mut out = format!(
        "rate limiting {}, source table capacity {}\n",
        if r.enabled { "enabled" } else { "disabled" },
        r.table_capacity
    );
    let mut t = Table::new(&[
        ("class", false),
        ("enabled", false),
        ("rate pps", true),
        ("burst", true),
        ("mode", false),
        ("passed", true),
        ("dropped", true),
    ]);
    for c in &r.classes {
        t.row(vec![
            c.class.clone(),
            yes_no(c.enabled).into(),
            c.rate.to_string(),
            c.burst.to_string(),
            c.mode.clone(),
            c.passed.to_string(),
            c.dropped.to_string(),
        ]);
    }
    out.push_str(&t.render());
    if !r.aggregate.is_empty() {
        let mut a = Table::new(&[
            ("destination", false),
            ("rate pps", true),
            ("burst", true),
            ("available", true),
        ]);
        for g in &r.aggregate {
            a.row(vec![
                g.dst.clone(),
                g.rate.to_string(),
                g.burst.to_string(),
                g.available.to_string(),
            ]);
        }
        out.push_str("\naggregate limits:\n");
        out.push_str(&a.render());
    }
    out
}

pub fn syncookie(r: &SyncookieReport) -> String {
    let mut out = format!(
        "syncookies {}, mode {}, protecting {}\nsecret rotates every {} s, counter period {} s\n",
        if r.enabled { "enabled" } else { "disabled" },
        r.mode,
        if r.protected.is_empty() {
            "(nothing)".to_string()
        } else {
            r.protected.join(", ")
        },
        r.rotate_every_s,
        r.counter_period_s
    );
    let mut t = Table::new(&[
        ("worker", true),
        ("secret gen", true),
        ("allowlist", true),
        ("capacity", true),
    ]);
    for w in &r.workers {
        t.row(vec![
            w.worker.to_string(),
            w.secret_generation.to_string(),
            w.allowlist_occupied.to_string(),
            w.allowlist_capacity.to_string(),
        ]);
    }
    out.push_str(&t.render());
    if !r.counters.is_empty() {
        let mut c = Table::new(&[("counter", false), ("value", true)]);
        for (k, v) in &r.counters {
            c.row(vec![k.clone(), v.to_string()]);
        }
        out.push('\n');
        out.push_str(&c.render());
    }
    out
}

pub fn ports(r: &PortsReport) -> String {
    let mut t = Table::new(&[
        ("port", false),
        ("id", true),
        ("device", false),
        ("driver", false),
        ("link", false),
        ("speed", true),
        ("queues rx/tx", true),
        ("ipackets", true),
        ("opackets", true),
        ("imissed", true),
        ("ierrors", true),
        ("rx_nombuf", true),
    ]);
    let stat = |p: &crate::protocol::PortInfo, k: &str| {
        p.stats
            .get(k)
            .map(u64::to_string)
            .unwrap_or_else(|| "-".into())
    };
    for p in &r.ports {
        t.row(vec![
            p.name.clone(),
            p.id.to_string(),
            p.device.clone(),
            p.driver.clone(),
            if p.link_up {
                if p.full_duplex {
                    "up fd"
                } else {
                    "up hd"
                }
            } else {
                "down"
            }
            .into(),
            format!("{} Mb/s", p.speed_mbps),
            format!("{}/{}", p.rx_queues, p.tx_queues),
            stat(p, "ipackets"),
            stat(p, "opackets"),
            stat(p, "imissed"),
            stat(p, "ierrors"),
            stat(p, "rx_nombuf"),
        ]);
    }
    let mut out = t.render();
    for p in &r.ports {
        let nonzero: Vec<_> = p.xstats.iter().filter(|(_, v)| **v != 0).collect();
        if nonzero.is_empty() {
            continue;
        }
        let mut x = Table::new(&[("xstat", false), ("value", true)]);
        for (k, v) in nonzero {
            x.row(vec![k.clone(), v.to_string()]);
        }
        let _ = write!(out, "\n{} non-zero xstats:\n{}", p.name, x.render());
    }
    out
}

fn offender_table(title: &str, rows: &[Offender]) -> String {
    if rows.is_empty() {
        return format!("{title}: (none)\n");
    }
    let mut t = Table::new(&[
        (title, false),
        ("reason", false),
        ("packets", true),
        ("± error", true),
    ]);
    for o in rows {
        t.row(vec![
            o.addr.clone(),
            o.reason.clone(),
            o.packets.to_string(),
            o.error.to_string(),
        ]);
    }
    t.render()
}

pub fn offenders(r: &OffendersReport) -> String {
    let mut out = String::new();
    if let Some(reason) = &r.reason {
        let _ = writeln!(out, "reason: {reason}");
    }
    out.push_str(&offender_table("sources", &r.sources));
    out.push('\n');
    out.push_str(&offender_table("destinations", &r.destinations));
    out
}

pub fn reload(r: &ReloadReport) -> String {
    let mut s = format!(
        "rules generation {}: {} rules, {} ACL entries, compiled in {:.1} ms, applied by {} workers\n",
        r.rules_generation, r.rules, r.acl_entries, r.compile_ms, r.workers_applied
    );
    if r.rules_skipped > 0 {
        s.push_str(&format!(
            "skipped {} rules (unsupported or malformed), by keyword: {}\n",
            r.rules_skipped, r.skipped_by_keyword
        ));
    }
    s
}

pub fn done(r: &Done) -> String {
    format!("{}\n", r.message)
}

pub fn flowspec(r: &FlowspecReport) -> String {
    let mut out = format!(
        "FlowSpec: {} active rule(s) of {}; {} announced, {} withdrawn, {} refused\n",
        r.rules.len(),
        r.capacity,
        r.announced,
        r.withdrawn,
        r.refused
    );
    if !r.rules.is_empty() {
        let mut t = Table::new(&[
            ("#", true),
            ("peer", false),
            ("action", false),
            ("age", true),
            ("route", false),
        ]);
        for (i, row) in r.rules.iter().enumerate() {
            t.row(vec![
                (i + 1).to_string(),
                row.peer.clone(),
                row.action.clone(),
                format!("{:.0}s", row.age_s),
                row.route.clone(),
            ]);
        }
        out.push_str(&t.render());
    }
    if !r.recent_refusals.is_empty() {
        out.push_str("recent refusals (newest last):\n");
        for f in &r.recent_refusals {
            out.push_str(&format!(
                "  {:.0}s ago from {}: {}: {}\n",
                f.age_s, f.peer, f.route, f.reason
            ));
        }
    }
    out
}

pub fn health(h: &HealthReport) -> String {
    if h.healthy {
        format!(
            "healthy: {} worker(s) polling, ports up (stall limit {} ms)\n",
            h.workers, h.stall_after_ms
        )
    } else {
        format!("UNHEALTHY: {}\n", h.reasons.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::*;
    use std::collections::BTreeMap;

    /// Every line of a table has each column starting at the same character offset.
    fn column_starts(text: &str, needle_per_line: &[&str]) -> Vec<usize> {
        text.lines()
            .zip(needle_per_line)
            .map(|(l, n)| l.find(n).unwrap_or_else(|| panic!("{n:?} not in {l:?}")))
            .collect()
    }

    /// Byte offset just past each whitespace-separated token.
    fn token_ends(line: &str) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut prev_space = true;
        for (i, ch) in line.char_indices() {
            let space = ch == ' ';
            if space && !prev_space {
                ends.push(i);
            }
            prev_space = space;
        }
        if !prev_space {
            ends.push(line.len());
        }
        ends
    }

    #[test]
    fn si_prefixes() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(999.4), "999");
        assert_eq!(si(1234.0), "1.23k");
        assert_eq!(si(14_880_952.0), "14.88M");
        assert_eq!(si(10e9), "10.00G");
        assert_eq!(si(f64::NAN), "-");
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&[("name", false), ("n", true)]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["longer".into(), "12345".into()]);
        let s = t.render();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 3);
        // Right-aligned numbers end in the same column.
        assert_eq!(lines[1].len(), lines[2].len());
        assert!(lines[1].ends_with(" 1"));
        assert!(lines[2].starts_with("longer  12345"));
        assert!(s.lines().all(|l| l == l.trim_end()));
    }

    fn sample_stats() -> StatsReport {
        let mut drops = BTreeMap::new();
        drops.insert("signature".to_string(), 667u64);
        drops.insert("malformed.ipv4_truncated".to_string(), 666u64);
        let mut drops_pps = BTreeMap::new();
        drops_pps.insert("signature".to_string(), 1500.0);
        let outside = Counters {
            rx_packets: 10_000,
            rx_bytes: 1_000_000,
            forwarded: 8000,
            replied: 667,
            dropped: 1333,
            drops: drops.clone(),
            conserved: true,
        };
        let inside = Counters {
            rx_packets: 10_000,
            forwarded: 10_000,
            conserved: true,
            ..Default::default()
        };
        StatsReport {
            uptime_s: 12.5,
            rate_window_s: 2.0,
            ports: vec![
                PortStatsRow {
                    name: "outside".into(),
                    counters: outside.clone(),
                    rates: Rates {
                        rx_pps: 2_500_000.0,
                        rx_bps: 1.2e9,
                        dropped_pps: 3000.0,
                        drops_pps,
                        ..Default::default()
                    },
                },
                PortStatsRow {
                    name: "inside".into(),
                    counters: inside,
                    rates: Rates::default(),
                },
            ],
            workers: vec![WorkerStatsRow {
                worker: 0,
                lcore: 2,
                queue: 0,
                counters: outside.clone(),
                rx_pps: 2_500_000.0,
                busy_pct: 37.25,
                snapshots: 125,
                deferred: 1,
                last_snapshot_age_ms: 40.0,
            }],
            total: Counters {
                rx_packets: 20_000,
                forwarded: 18_000,
                replied: 667,
                dropped: 1333,
                drops,
                conserved: false,
                ..Default::default()
            },
            total_rates: Rates::default(),
            stages: [
                ("syncookie.syn_answered".to_string(), 667u64),
                ("acl.no_match".to_string(), 0),
            ]
            .into(),
            signature_hits: vec![SignatureHit {
                sid: 1_000_001,
                msg: "memcached reflection".into(),
                hits: 667,
            }],
        }
    }

    #[test]
    fn stats_tables() {
        let s = stats(&sample_stats());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "uptime 12.5 s, rates over 2.0 s");
        let header = lines[2];
        assert!(header.starts_with("port "));
        let out = lines[3];
        assert!(out.starts_with("outside"));
        assert!(out.contains("2.50M") && out.contains("1.20G") && out.contains("3.00k"));
        assert!(lines[5].starts_with("total") && lines[5].ends_with("MISMATCH"));
        // The "dropped" column (5th) ends at the same offset on the header and every row.
        let ends: Vec<usize> = lines[2..6].iter().map(|l| token_ends(l)[4]).collect();
        assert!(ends.windows(2).all(|w| w[0] == w[1]), "{ends:?}\n{s}");
        assert!(s.contains("drops by reason:"));
        let sig = s.lines().find(|l| l.contains("signature ")).unwrap();
        assert!(sig.starts_with("outside") && sig.contains("667") && sig.ends_with("1.50k"));
        assert!(s.contains("workers:"));
        assert!(s.contains("37.2") || s.contains("37.3"));
        assert!(s.contains("syncookie.syn_answered"));
        assert!(
            !s.contains("acl.no_match"),
            "zero stage counters are left out"
        );
        assert!(s.contains("1000001") && s.contains("memcached reflection"));
        let frame = top_frame(&sample_stats(), 3, 1.0);
        assert!(frame.starts_with("scrubctl top: refresh 3"));
        assert!(frame.ends_with(&s));
    }

    #[test]
    fn stats_without_drops_says_none() {
        let s = stats(&StatsReport::default());
        assert!(s.contains("drops by reason:\n  (none)"));
        assert!(!s.contains("workers:"));
    }

    fn lrow(label: &str, scale: u64) -> LatencyRow {
        LatencyRow {
            label: label.into(),
            count: 1000,
            min: 100 * scale,
            mean: 250.0 * scale as f64,
            p50: 200 * scale,
            p90: 400 * scale,
            p99: 800 * scale,
            p999: 1600 * scale,
            p9999: 3200 * scale,
            max: 6400 * scale,
        }
    }

    #[test]
    fn latency_unit_follows_magnitude() {
        let small = LatencyReport {
            unit: "ns".into(),
            since_s: 10.0,
            window_s: 1.0,
            workers: vec![lrow("worker 0", 1)],
            merged: lrow("all", 1),
            recent: lrow("all (recent)", 1),
            hgrm: None,
            reset: false,
        };
        let s = latency(&small);
        assert!(s.starts_with("latency in ns"));
        let all = s.lines().find(|l| l.starts_with("all ")).unwrap();
        assert!(all.contains(" 200 ") && all.ends_with(" 6400"));
        let big = LatencyReport {
            workers: vec![lrow("worker 0", 1000)],
            merged: lrow("all", 1000),
            recent: lrow("all (recent)", 1000),
            reset: true,
            ..small
        };
        let s = latency(&big);
        assert!(s.starts_with("latency in µs"));
        let all = s.lines().find(|l| l.starts_with("all ")).unwrap();
        assert!(all.contains(" 200.0 ") && all.ends_with(" 6400.0"), "{all}");
        assert!(s.ends_with("histograms reset\n"));
        // p50 column aligned across every row.
        let lines: Vec<&str> = s.lines().skip(1).take(4).collect();
        let starts = column_starts(&lines.join("\n"), &["p99.99", "3200.0", "3200.0", "3200.0"]);
        let header_end = starts[0] + "p99.99".len();
        assert!(
            starts[1..]
                .iter()
                .all(|&s| s + "3200.0".len() == header_end),
            "{s}"
        );
    }

    #[test]
    fn offenders_per_side() {
        let r = OffendersReport {
            reason: Some("signature".into()),
            sources: vec![
                Offender {
                    addr: "198.51.100.7".into(),
                    reason: "signature".into(),
                    packets: 5000,
                    error: 12,
                },
                Offender {
                    addr: "2001:db8::1".into(),
                    reason: "signature".into(),
                    packets: 40,
                    error: 0,
                },
            ],
            destinations: vec![],
        };
        let s = offenders(&r);
        assert!(s.starts_with("reason: signature\nsources "));
        assert!(s.contains("destinations: (none)"));
        let l1 = s.lines().nth(2).unwrap();
        let l2 = s.lines().nth(3).unwrap();
        assert!(l1.starts_with("198.51.100.7 ") && l1.ends_with(" 12"));
        assert_eq!(l1.len(), l2.len());
    }

    #[test]
    fn lists_and_small_reports() {
        let empty = ListReport {
            list: "block".into(),
            entries: vec![],
        };
        assert_eq!(list(&empty), "block list is empty\n");
        let l = ListReport {
            list: "allow".into(),
            entries: vec![
                ListEntry {
                    prefix: "10.0.0.0/8".into(),
                    source: "config".into(),
                    expires_in_s: None,
                },
                ListEntry {
                    prefix: "192.0.2.1/32".into(),
                    source: "dynamic".into(),
                    expires_in_s: Some(59.6),
                },
            ],
        };
        let s = list(&l);
        assert!(s.starts_with("allow list (2 entries):"));
        assert!(s.contains("never") && s.contains("60 s"));
        assert_eq!(
            done(&Done {
                message: "added".into()
            }),
            "added\n"
        );
        let r = reload(&ReloadReport {
            rules_generation: 4,
            rules: 12,
            acl_entries: 3,
            workers_applied: 2,
            compile_ms: 1.25,
            rules_skipped: 2,
            skipped_by_keyword: "flowbits=2".into(),
        });
        assert!(r.starts_with("rules generation 4: 12 rules, 3 ACL entries"));
        assert!(r.ends_with("skipped 2 rules (unsupported or malformed), by keyword: flowbits=2\n"));
        let st = status(&StatusReport {
            version: "0.1.0".into(),
            pid: 42,
            ports: vec!["outside".into(), "inside".into()],
            ..Default::default()
        });
        assert!(st.starts_with("version "));
        assert!(st.contains("outside, inside"));
        let pid_line = st.lines().find(|l| l.starts_with("pid")).unwrap();
        let ver_line = st.lines().next().unwrap();
        assert_eq!(pid_line.find("42"), ver_line.find("0.1.0"));
    }

    #[test]
    fn ratelimit_syncookie_ports() {
        let r = RatelimitReport {
            enabled: true,
            table_capacity: 65536,
            classes: vec![RateClassRow {
                class: "udp_reflection".into(),
                enabled: true,
                rate: 1000,
                burst: 2000,
                mode: "token_bucket".into(),
                passed: 10,
                dropped: 5,
            }],
            aggregate: vec![],
        };
        let s = ratelimit(&r);
        assert!(s.starts_with("rate limiting enabled, source table capacity 65536"));
        assert!(s.contains("udp_reflection") && s.contains("token_bucket"));
        assert!(!s.contains("aggregate"));
        let c = syncookie(&SyncookieReport {
            enabled: true,
            mode: "always".into(),
            protected: vec!["192.0.2.0/24".into()],
            rotate_every_s: 60,
            counter_period_s: 64,
            workers: vec![SyncookieWorkerRow {
                worker: 1,
                secret_generation: 7,
                allowlist_occupied: 3,
                allowlist_capacity: 4096,
            }],
            counters: BTreeMap::new(),
        });
        assert!(c.contains("protecting 192.0.2.0/24"));
        assert!(c.contains("4096"));
        let p = ports(&PortsReport {
            ports: vec![PortInfo {
                name: "outside".into(),
                device: "net_pcap0".into(),
                driver: "net_pcap".into(),
                link_up: true,
                full_duplex: true,
                speed_mbps: 10000,
                rx_queues: 2,
                tx_queues: 2,
                stats: [("ipackets".to_string(), 99u64)].into(),
                xstats: [("rx_good".to_string(), 5u64), ("tx_never".to_string(), 0)].into(),
                ..Default::default()
            }],
        });
        assert!(p.contains("up fd") && p.contains("10000 Mb/s") && p.contains("2/2"));
        assert!(p.contains("rx_good") && !p.contains("tx_never"));
        let row = p.lines().nth(1).unwrap();
        assert!(row.contains(" 99 ") && row.contains(" - "));
    }
}
