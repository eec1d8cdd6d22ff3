//! Protocol version 1: one JSON object per line each way over a Unix stream socket.
//!
//! Request:  `{"v":1,"id":7,"cmd":"block_add","args":{"prefix":"203.0.113.0/24","ttl_s":600}}`
//! Response: `{"v":1,"id":7,"ok":true,"data":{...}}` or
//!           `{"v":1,"id":7,"ok":false,"error":{"code":"bad_request","message":"..."}}`
//!
//! `id` is optional and echoed back so scripts can pipeline requests. Commands without arguments
//! may omit `args`. Requests are capped at [`MAX_REQUEST_BYTES`]; responses have no cap.
//!
//! The types live in their own crate so that both sides of the protocol can name them: the
//! control socket and `scrubctl` (crate `ctl`, which re-exports this as `ctl::protocol`) and
//! the stats aggregator that builds the reports (crate `stats`), without the data path pulling
//! in the socket server through `stats`.

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request line the daemon reads: a `block_add_many` of 100,000 prefixes fits (about
/// 2 MB for IPv4 /32s, 4.6 MB for the longest IPv6 form).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(flatten)]
    pub cmd: Command,
}

/// Every command, tagged by `cmd` with its arguments under `args`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(
    tag = "cmd",
    content = "args",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Command {
    Status,
    Stats,
    Latency {
        /// Clear the since-start histograms after reading them.
        #[serde(default)]
        reset: bool,
        /// Include the merged histogram in HdrHistogram percentile-distribution text.
        #[serde(default)]
        hgrm: bool,
    },
    /// Prometheus text exposition of every counter and latency quantile.
    Metrics,
    /// Re-read signature rule files and ACLs from the config file; publish atomically.
    RulesReload,
    BlockAdd {
        prefix: String,
        #[serde(default)]
        ttl_s: Option<u64>,
    },
    /// Many prefixes in one request, published as one table; all or nothing (a bad prefix is
    /// named as `prefixes[i]` and nothing is added).
    BlockAddMany {
        prefixes: Vec<String>,
        #[serde(default)]
        ttl_s: Option<u64>,
    },
    BlockDel {
        prefix: String,
    },
    BlockList,
    AllowAdd {
        prefix: String,
        #[serde(default)]
        ttl_s: Option<u64>,
    },
    AllowAddMany {
        prefixes: Vec<String>,
        #[serde(default)]
        ttl_s: Option<u64>,
    },
    AllowDel {
        prefix: String,
    },
    AllowList,
    RatelimitShow,
    RatelimitSet {
        /// A per-source class name (udp_reflection, icmp, tcp_syn, ip_fragment, other).
        class: String,
        /// Packets per second; with `burst`. Both absent and `off` true removes the limit.
        #[serde(default)]
        rate: Option<u64>,
        #[serde(default)]
        burst: Option<u64>,
        /// "token_bucket" (default) or "fixed_window".
        #[serde(default)]
        mode: Option<String>,
        #[serde(default)]
        off: bool,
    },
    SyncookieStatus,
    SyncookieRotate,
    Ports,
    Offenders {
        /// Entries per side (default 10).
        #[serde(default)]
        limit: Option<usize>,
        /// Only this drop reason (a name as in `stats`), e.g. "rate_limited.udp_reflection".
        #[serde(default)]
        reason: Option<String>,
    },
    Shutdown,
    /// A BGP FlowSpec route received from `peer` (RFC 8955/8956), in ExaBGP's component
    /// text; replaces the route with the same components from that peer. Refused whole, with
    /// the reason, when scrubd cannot evaluate a component or action.
    FlowspecAnnounce {
        peer: String,
        route: FlowspecRoute,
    },
    /// The route with these components from `peer` is withdrawn.
    FlowspecWithdraw {
        peer: String,
        route: FlowspecRoute,
    },
    /// Every route from `peer` is gone (its BGP session went down).
    FlowspecFlush {
        peer: String,
    },
    FlowspecList,
    /// Whether the box should attract traffic: workers polling, ports up, not stopping.
    Health,
}

/// One FlowSpec route as the BGP daemon decoded it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlowspecRoute {
    /// Component name (`destination-ipv4`, `destination-port`, ...) → its values, OR-ed; the
    /// `&`-joined terms inside one value are AND-ed (`>=80&<=90`).
    #[serde(rename = "match")]
    pub components: BTreeMap<String, Vec<String>>,
    /// The route's extended communities as text (`rate-limit:0` is discard, `rate-limit:N` a
    /// byte rate, none of the FlowSpec actions is accept). Ignored by a withdrawal.
    #[serde(default)]
    pub communities: Vec<String>,
}

impl FlowspecRoute {
    /// The components as one line, `key value [ v1 v2 ]`, in component order: a route's name
    /// in lists and logs.
    pub fn text(&self) -> String {
        self.components
            .iter()
            .map(|(k, v)| match v.as_slice() {
                [one] => format!("{k} {one}"),
                many => format!("{k} [ {} ]", many.join(" ")),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, wrong shape, unknown command or argument.
    BadRequest,
    /// `v` is not a version this daemon speaks.
    UnsupportedVersion,
    /// Longer than MAX_REQUEST_BYTES.
    TooLarge,
    /// Well-formed but rejected (bad prefix, rules that fail to compile, ...).
    Invalid,
    /// The daemon could not do it (stage not configured, shutting down, ...).
    Unavailable,
    Internal,
}

// ---- reply payloads (the `data` of a successful response) ----

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    pub version: String,
    pub pid: u32,
    pub config: String,
    pub uptime_s: f64,
    pub workers: usize,
    pub ports: Vec<String>,
    pub stats_interval_ms: u64,
    /// Stages the pipeline runs now ("acl", "syncookie", "ratelimit", "signature").
    pub stages: Vec<String>,
    pub rules_generation: u64,
    pub rules: usize,
    pub acl_entries: usize,
    pub stopping: bool,
}

/// Verdict counters of one port (or of all ports together).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub forwarded: u64,
    pub replied: u64,
    pub dropped: u64,
    /// Non-zero drop reasons by name (`pipeline::counters::slot_name`).
    pub drops: BTreeMap<String, u64>,
    /// rx_packets == forwarded + replied + dropped.
    pub conserved: bool,
}

/// Rates over the recent window (per second).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Rates {
    pub rx_pps: f64,
    pub rx_bps: f64,
    pub forwarded_pps: f64,
    pub replied_pps: f64,
    pub dropped_pps: f64,
    /// Non-zero drop rates by reason.
    pub drops_pps: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PortStatsRow {
    pub name: String,
    pub counters: Counters,
    pub rates: Rates,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerStatsRow {
    pub worker: u16,
    pub lcore: u32,
    pub queue: u16,
    pub counters: Counters,
    pub rx_pps: f64,
    /// Share of loop time spent in non-empty bursts (0..=100).
    pub busy_pct: f64,
    /// Snapshots received from this worker, and intervals it had to defer (merged into later ones).
    pub snapshots: u64,
    pub deferred: u64,
    /// Milliseconds since the newest snapshot of this worker arrived.
    pub last_snapshot_age_ms: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SignatureHit {
    pub sid: u32,
    pub msg: String,
    pub hits: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StatsReport {
    pub uptime_s: f64,
    /// Seconds the rates are computed over.
    pub rate_window_s: f64,
    pub ports: Vec<PortStatsRow>,
    pub workers: Vec<WorkerStatsRow>,
    /// All ports together.
    pub total: Counters,
    pub total_rates: Rates,
    /// Stage counters summed over workers, by name.
    pub stages: BTreeMap<String, u64>,
    /// Rules with at least one hit, all generations summed by sid.
    pub signature_hits: Vec<SignatureHit>,
}

/// Latency percentiles in nanoseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencyRow {
    /// "worker 0", "all", "all (recent)".
    pub label: String,
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencyReport {
    pub unit: String,
    /// Seconds covered by the since-start histograms (since start or the last reset).
    pub since_s: f64,
    /// Seconds covered by the recent window.
    pub window_s: f64,
    pub workers: Vec<LatencyRow>,
    pub merged: LatencyRow,
    pub recent: LatencyRow,
    /// Percentile distribution of `merged` in HdrHistogram's .hgrm text, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hgrm: Option<String>,
    /// True when this request cleared the histograms after reading.
    pub reset: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MetricsReport {
    pub text: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ListEntry {
    pub prefix: String,
    /// "config" (from the config file, changed by `rules reload`) or "dynamic" (scrubctl).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ListReport {
    /// "block" or "allow".
    pub list: String,
    pub entries: Vec<ListEntry>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RateClassRow {
    pub class: String,
    pub enabled: bool,
    pub rate: u64,
    pub burst: u64,
    pub mode: String,
    pub passed: u64,
    pub dropped: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AggregateRow {
    pub dst: String,
    pub rate: u64,
    pub burst: u64,
    /// Tokens available now (shared by all workers).
    pub available: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RatelimitReport {
    pub enabled: bool,
    pub table_capacity: usize,
    pub classes: Vec<RateClassRow>,
    pub aggregate: Vec<AggregateRow>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SyncookieWorkerRow {
    pub worker: u16,
    pub secret_generation: u64,
    pub allowlist_occupied: usize,
    pub allowlist_capacity: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SyncookieReport {
    pub enabled: bool,
    pub mode: String,
    pub protected: Vec<String>,
    pub rotate_every_s: u32,
    pub counter_period_s: u32,
    pub workers: Vec<SyncookieWorkerRow>,
    /// syncookie.* stage counters summed over workers.
    pub counters: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PortInfo {
    pub name: String,
    pub id: u16,
    pub device: String,
    pub driver: String,
    pub link_up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
    pub rx_queues: u16,
    pub tx_queues: u16,
    /// rte_eth_stats: ipackets, opackets, ibytes, obytes, imissed, ierrors, oerrors, rx_nombuf.
    pub stats: BTreeMap<String, u64>,
    /// NIC extended statistics by name (rte_eth_xstats).
    pub xstats: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PortsReport {
    pub ports: Vec<PortInfo>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Offender {
    pub addr: String,
    pub reason: String,
    /// Estimated dropped packets; the true count lies in packets - error ..= packets.
    pub packets: u64,
    pub error: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct OffendersReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub sources: Vec<Offender>,
    pub destinations: Vec<Offender>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ReloadReport {
    pub rules_generation: u64,
    pub rules: usize,
    pub acl_entries: usize,
    /// Workers that acknowledged running the new set before the reply was sent.
    pub workers_applied: usize,
    pub compile_ms: f64,
    /// Rules that could not be evaluated and were skipped (Suricata-style loading).
    #[serde(default)]
    pub rules_skipped: usize,
    /// Skipped rules per keyword, most frequent first: `flowbits=12 pcre=3`.
    #[serde(default)]
    pub skipped_by_keyword: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FlowspecRow {
    pub peer: String,
    /// The route's components ([`FlowspecRoute::text`]).
    pub route: String,
    /// "discard", "rate-limit N B/s" or "accept".
    pub action: String,
    /// Seconds since it was announced.
    pub age_s: f64,
}

/// A route refused, with why.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FlowspecRefusal {
    pub peer: String,
    pub route: String,
    pub reason: String,
    pub age_s: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FlowspecReport {
    /// Active rules in evaluation order (the first match decides).
    pub rules: Vec<FlowspecRow>,
    pub capacity: usize,
    pub announced: u64,
    pub withdrawn: u64,
    /// Routes refused since start (malformed or not expressible).
    pub refused: u64,
    /// The most recent refusals, newest last.
    pub recent_refusals: Vec<FlowspecRefusal>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HealthReport {
    pub healthy: bool,
    /// Why not, one line each (empty when healthy).
    pub reasons: Vec<String>,
    pub workers: usize,
    /// Workers whose newest stats snapshot is older than `stall_after_ms`.
    pub stalled_workers: Vec<u16>,
    pub ports_down: Vec<String>,
    pub stall_after_ms: u64,
}

/// Reply of commands that only change something (block add, rotate, shutdown, ...).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Done {
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_shape() {
        let r: Request = serde_json::from_str(
            r#"{"v":1,"id":7,"cmd":"block_add","args":{"prefix":"203.0.113.0/24","ttl_s":600}}"#,
        )
        .unwrap();
        assert_eq!(r.id, Some(7));
        assert_eq!(
            r.cmd,
            Command::BlockAdd {
                prefix: "203.0.113.0/24".into(),
                ttl_s: Some(600)
            }
        );
        let s: Request = serde_json::from_str(r#"{"v":1,"cmd":"status"}"#).unwrap();
        assert_eq!(s.cmd, Command::Status);
        let back = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&back).unwrap(), s);
    }
}
